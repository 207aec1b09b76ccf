//! One-shot pruning of one linear layer: magnitude and SparseGPT
//! (Frantar and Alistarh 2023, Algorithm 1 and the reference `fasterprune`).

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// H = (2/n) * sum over the n input rows x of x x^T, accumulated batch by
/// batch in fp32 (the scaling of SparseGPT's reference code).
#[derive(Debug)]
pub struct Hessian {
    h: Tensor,
    tokens: i64,
}

impl Hessian {
    /// An empty accumulator for inputs of `columns` features.
    pub fn new(columns: i64, device: Device) -> Result<Self> {
        Ok(Self {
            h: Tensor::f_zeros([columns, columns], (Kind::Float, device))?,
            tokens: 0,
        })
    }

    /// Adds the rows of `inputs` (`[..., columns]`).
    pub fn add_batch(&mut self, inputs: &Tensor) -> Result<()> {
        let cols = self.h.size()[0];
        if inputs.size().last().copied() != Some(cols) {
            return Err(Error::Shape(format!(
                "inputs of width {:?} for a Hessian of {cols} columns",
                inputs.size().last()
            )));
        }
        let x = tch::no_grad(|| inputs.f_reshape([-1, cols])?.f_to_kind(Kind::Float))?;
        let n = x.size()[0];
        if n == 0 {
            return Ok(());
        }
        let total = self.tokens + n;
        tch::no_grad(|| -> Result<()> {
            let _ = self.h.f_mul_scalar_(self.tokens as f64 / total as f64)?;
            let xs = x.f_mul_scalar((2.0 / total as f64).sqrt())?;
            let _ = self.h.f_add_(&xs.f_transpose(0, 1)?.f_matmul(&xs)?)?;
            Ok(())
        })?;
        self.tokens = total;
        Ok(())
    }

    /// Input rows seen.
    pub fn tokens(&self) -> i64 {
        self.tokens
    }

    /// The matrix `[columns, columns]`.
    pub fn matrix(&self) -> &Tensor {
        &self.h
    }
}

/// Which weights may be removed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Any weights.
    Unstructured,
    /// `n` zeros in every group of `m` consecutive input weights of a row
    /// (2:4 is what sparse tensor cores run).
    NM {
        /// Zeros per group.
        n: i64,
        /// Group size.
        m: i64,
    },
}

impl Pattern {
    /// Parses `n:m` (for example `2:4`).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::Pattern(format!("{text:?}: expected n:m with 0 < n < m, like 2:4"));
        let (n, m) = text.split_once(':').ok_or_else(bad)?;
        let n: i64 = n.trim().parse().map_err(|_| bad())?;
        let m: i64 = m.trim().parse().map_err(|_| bad())?;
        if n <= 0 || m <= n {
            return Err(bad());
        }
        Ok(Pattern::NM { n, m })
    }
}

/// How to prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneConfig {
    /// Fraction of weights removed, in (0, 1) (with n:m: n/m).
    pub sparsity: f64,
    /// Unstructured or n:m.
    pub pattern: Pattern,
    /// Columns per block of SparseGPT's sweep (128 in the paper).
    pub block_size: i64,
    /// Dampening added to the Hessian's diagonal, as a fraction of its mean (0.01).
    pub damp: f64,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            sparsity: 0.5,
            pattern: Pattern::Unstructured,
            block_size: 128,
            damp: 0.01,
        }
    }
}

impl PruneConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.sparsity > 0.0 && self.sparsity < 1.0) {
            return Err(Error::Sparsity(self.sparsity));
        }
        if let Pattern::NM { n, m } = self.pattern {
            if n <= 0 || m <= n {
                return Err(Error::Pattern(format!("{n}:{m}: need 0 < n < m")));
            }
            if self.block_size % m != 0 {
                return Err(Error::Pattern(format!(
                    "{n}:{m} needs a block size that is a multiple of {m} (got {})",
                    self.block_size
                )));
            }
        }
        if self.block_size <= 0 {
            return Err(Error::Pattern(format!("block size {}", self.block_size)));
        }
        if !(self.damp >= 0.0 && self.damp.is_finite()) {
            return Err(Error::Pattern(format!("damping {}", self.damp)));
        }
        Ok(())
    }
}

/// A pruned weight matrix.
#[derive(Debug)]
pub struct Pruned {
    /// The new weight, the input's shape and kind.
    pub weight: Tensor,
    /// Zero weights in it.
    pub zeros: i64,
    /// SparseGPT's estimate of the added loss, sum over weights of
    /// (w - q)^2 / Hinv_ii^2 / 2 (0 for magnitude pruning).
    pub loss: f64,
}

fn count_zeros(w: &Tensor) -> Result<i64> {
    Ok(w.f_eq(0.0)?.f_sum(Kind::Int64)?.f_int64_value(&[])?)
}

fn check_nm(cols: i64, pattern: Pattern) -> Result<()> {
    if let Pattern::NM { n, m } = pattern {
        if cols % m != 0 {
            return Err(Error::Pattern(format!(
                "{n}:{m} needs a number of input columns divisible by {m}, this matrix has {cols}"
            )));
        }
    }
    Ok(())
}

/// A mask (true = remove) of exactly `round(sparsity * numel)` entries with
/// the smallest `score`, or of the n smallest in every m consecutive columns.
fn select(score: &Tensor, cfg: &PruneConfig) -> Result<Tensor> {
    let (rows, cols) = score.size2()?;
    match cfg.pattern {
        Pattern::Unstructured => {
            let k = (cfg.sparsity * (rows * cols) as f64).round() as i64;
            let mut mask = Tensor::f_zeros([rows * cols], (Kind::Bool, score.device()))?;
            if k > 0 {
                let idx = score
                    .f_reshape([-1])?
                    .f_argsort(0, false)?
                    .f_narrow(0, 0, k)?;
                let ones = Tensor::f_ones([k], (Kind::Bool, score.device()))?;
                let _ = mask.f_index_put_(&[Some(idx)], &ones, false)?;
            }
            Ok(mask.f_view([rows, cols])?)
        }
        Pattern::NM { n, m } => {
            let groups = score.f_view([rows, cols / m, m])?;
            let idx = groups.f_topk(n, -1, false, false)?.1;
            let mask = Tensor::f_zeros([rows, cols / m, m], (Kind::Bool, score.device()))?;
            let ones = Tensor::f_ones_like(&idx)?.f_to_kind(Kind::Bool)?;
            let mask = mask.f_scatter(-1, &idx, &ones)?;
            Ok(mask.f_view([rows, cols])?)
        }
    }
}

/// Magnitude pruning: the smallest |w| of the whole matrix (exactly
/// round(sparsity * numel) of them), or the n smallest of every m
/// consecutive input weights.
pub fn magnitude(weight: &Tensor, cfg: &PruneConfig) -> Result<Pruned> {
    cfg.validate()?;
    let (_, cols) = weight.size2()?;
    check_nm(cols, cfg.pattern)?;
    tch::no_grad(|| {
        let w = weight.f_to_kind(Kind::Float)?;
        let mask = select(&w.f_abs()?, cfg)?;
        let out = w.f_masked_fill(&mask, 0.0)?.f_to_kind(weight.kind())?;
        Ok(Pruned {
            zeros: count_zeros(&out)?,
            weight: out,
            loss: 0.0,
        })
    })
}

/// The upper Cholesky factor of the damped inverse Hessian, as SparseGPT
/// and GPTQ use it. Inputs that are always zero (a zero on H's diagonal)
/// carry no information: their diagonal becomes 1 and their weights in `w`
/// are zeroed. `damp` times the mean diagonal is added to the diagonal.
pub(crate) fn inverse_cholesky_upper(h: &Tensor, damp: f64, w: &mut Tensor) -> Result<Tensor> {
    let h = h.f_to_kind(Kind::Float)?.f_detach_copy()?;
    let mut diag = h.f_diagonal(0, 0, 1)?;
    let dead = diag.f_eq(0.0)?;
    diag.f_copy_(&diag.f_masked_fill(&dead, 1.0)?)?;
    *w = w.f_masked_fill(&dead.f_unsqueeze(0)?, 0.0)?;
    let mean_diag = diag.f_mean(Kind::Float)?.f_double_value(&[])?;
    let _ = diag.f_add_scalar_(damp * mean_diag)?;
    let not_pd = |e: tch::TchError| Error::NotPositiveDefinite(e.to_string());
    let l = h.f_linalg_cholesky(false).map_err(not_pd)?;
    let hinv = Tensor::f_cholesky_inverse(&l, false)?;
    hinv.f_linalg_cholesky(true).map_err(not_pd)
}

/// SparseGPT for one layer: `weight` `[out, in]`, `h` its input Hessian
/// `[in, in]` ([`Hessian`]). Columns are swept in blocks; within a block the
/// mask is chosen once (unstructured: exactly round(sparsity * rows * block
/// columns) weights of the block with the smallest w^2 / [H^-1]_cc^2, where
/// the reference code takes a threshold that can remove a few more; n:m: per
/// row and group, at the group's first column), then each column is zeroed
/// where masked and its error spread over the block's remaining columns
/// through the Cholesky factor of H^-1; after the block the accumulated
/// error updates all later columns at once (the lazy batch update).
pub fn sparsegpt(weight: &Tensor, h: &Tensor, cfg: &PruneConfig) -> Result<Pruned> {
    cfg.validate()?;
    let (rows, cols) = weight.size2()?;
    if h.size() != [cols, cols] {
        return Err(Error::Shape(format!(
            "a Hessian of shape {:?} for a weight with {cols} input columns",
            h.size()
        )));
    }
    check_nm(cols, cfg.pattern)?;
    tch::no_grad(|| {
        let mut w = weight.f_to_kind(Kind::Float)?.f_contiguous()?;
        let hinv = inverse_cholesky_upper(h, cfg.damp, &mut w)?;
        let mut loss = 0.0;
        let mut i1 = 0;
        while i1 < cols {
            let i2 = (i1 + cfg.block_size).min(cols);
            let count = i2 - i1;
            let mut w1 = w.f_narrow(1, i1, count)?.f_detach_copy()?;
            let q1 = Tensor::f_zeros_like(&w1)?;
            let err1 = Tensor::f_zeros_like(&w1)?;
            let hinv1 = hinv.f_narrow(0, i1, count)?.f_narrow(1, i1, count)?;
            let d1 = hinv1.f_diagonal(0, 0, 1)?;
            let mask1 = match cfg.pattern {
                Pattern::Unstructured => {
                    let score = w1.f_square()?.f_div(&d1.f_square()?.f_unsqueeze(0)?)?;
                    Some(select(&score, cfg)?)
                }
                Pattern::NM { .. } => None,
            };
            let mut nm_mask: Option<Tensor> = None;
            for i in 0..count {
                let wcol = w1.f_select(1, i)?;
                let d = d1.f_double_value(&[i])?;
                let remove = match (&mask1, cfg.pattern) {
                    (Some(m), _) => m.f_select(1, i)?,
                    (None, Pattern::NM { n: _, m }) => {
                        if i % m == 0 {
                            let group = w1.f_narrow(1, i, m)?;
                            let dg = d1.f_narrow(0, i, m)?;
                            let score = group.f_square()?.f_div(&dg.f_square()?.f_unsqueeze(0)?)?;
                            nm_mask = Some(select(&score, cfg)?);
                        }
                        match &nm_mask {
                            Some(g) => g.f_select(1, i % m)?,
                            None => return Err(Error::Pattern("n:m mask missing".into())),
                        }
                    }
                    (None, Pattern::Unstructured) => {
                        return Err(Error::Pattern("unstructured mask missing".into()))
                    }
                };
                let q = wcol.f_masked_fill(&remove, 0.0)?;
                let diff = wcol.f_sub(&q)?;
                loss += diff.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])? / (d * d) / 2.0;
                let err = diff.f_div_scalar(d)?;
                // Spread this column's error over the block's later columns.
                let row = hinv1.f_select(0, i)?.f_narrow(0, i, count - i)?;
                let update = err.f_unsqueeze(1)?.f_matmul(&row.f_unsqueeze(0)?)?;
                let mut tail = w1.f_narrow(1, i, count - i)?;
                let _ = tail.f_sub_(&update)?;
                q1.f_select(1, i)?.f_copy_(&q)?;
                err1.f_select(1, i)?.f_copy_(&err)?;
            }
            w.f_narrow(1, i1, count)?.f_copy_(&q1)?;
            if i2 < cols {
                let later = hinv.f_narrow(0, i1, count)?.f_narrow(1, i2, cols - i2)?;
                let mut rest = w.f_narrow(1, i2, cols - i2)?;
                let _ = rest.f_sub_(&err1.f_matmul(&later)?)?;
            }
            w1 = Tensor::f_zeros([0], (Kind::Float, weight.device()))?;
            let _ = w1;
            i1 = i2;
        }
        let _ = rows;
        let out = w.f_to_kind(weight.kind())?;
        Ok(Pruned {
            zeros: count_zeros(&out)?,
            weight: out,
            loss,
        })
    })
}

/// trace((W - W') H (W - W')^T): the squared output error on the
/// calibration inputs, times 2/n.
pub fn reconstruction_error(old: &Tensor, new: &Tensor, h: &Tensor) -> Result<f64> {
    tch::no_grad(|| {
        let d = old
            .f_to_kind(Kind::Float)?
            .f_sub(&new.f_to_kind(Kind::Float)?)?;
        let h = h.f_to_kind(Kind::Float)?;
        Ok(d.f_matmul(&h)?
            .f_mul(&d)?
            .f_sum(Kind::Double)?
            .f_double_value(&[])?)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A 32 x 256 layer and 512 inputs whose columns are correlated (mixed
    /// from 64 factors plus noise), as real activations are.
    fn layer() -> (Tensor, Tensor) {
        tch::manual_seed(11);
        let opts = (Kind::Float, Device::Cpu);
        let z = Tensor::randn([512, 64], opts);
        let a = Tensor::randn([64, 256], opts);
        let x = z.matmul(&a) + Tensor::randn([512, 256], opts).f_mul_scalar(0.3).unwrap();
        let w = Tensor::randn([32, 256], opts);
        (w, x)
    }

    fn hessian(x: &Tensor) -> Tensor {
        let mut h = Hessian::new(x.size()[1], Device::Cpu).unwrap();
        h.add_batch(x).unwrap();
        h.matrix().shallow_clone()
    }

    fn output_error(w: &Tensor, q: &Tensor, x: &Tensor) -> f64 {
        x.matmul(&(w - q).tr())
            .square()
            .sum(Kind::Double)
            .double_value(&[])
    }

    #[test]
    fn hessian_of_two_batches_is_two_over_n_xtx() {
        let (_, x) = layer();
        let mut h = Hessian::new(256, Device::Cpu).unwrap();
        h.add_batch(&x.narrow(0, 0, 200)).unwrap();
        h.add_batch(&x.narrow(0, 200, 312).view([2, 156, 256]))
            .unwrap();
        assert_eq!(h.tokens(), 512);
        let want = x.tr().matmul(&x) * (2.0 / 512.0);
        let diff = (h.matrix() - &want).abs().max().double_value(&[]);
        let scale = want.abs().max().double_value(&[]);
        assert!(diff < 1e-4 * scale, "{diff} vs {scale}");
        assert!(h
            .add_batch(&Tensor::zeros([3, 5], (Kind::Float, Device::Cpu)))
            .is_err());
    }

    #[test]
    fn sparsegpt_meets_the_sparsity_exactly_and_beats_magnitude() {
        let (w, x) = layer();
        let h = hessian(&x);
        let cfg = PruneConfig::default();
        let s = sparsegpt(&w, &h, &cfg).unwrap();
        let m = magnitude(&w, &cfg).unwrap();
        // 32 rows x 128 columns per block, half of each: exact.
        assert_eq!(s.zeros, 32 * 256 / 2);
        assert_eq!(m.zeros, 32 * 256 / 2);
        let (es, em) = (
            output_error(&w, &s.weight, &x),
            output_error(&w, &m.weight, &x),
        );
        assert!(es < 0.8 * em, "SparseGPT {es} vs magnitude {em}");
        // The trace form is the same error, times 2/n.
        let tr = reconstruction_error(&w, &s.weight, &h).unwrap();
        assert!((tr - es * 2.0 / 512.0).abs() < 1e-3 * tr, "{tr} vs {es}");
        assert!(s.loss > 0.0);
    }

    #[test]
    fn two_four_pattern_holds_in_every_group() {
        let (w, x) = layer();
        let h = hessian(&x);
        let cfg = PruneConfig {
            pattern: Pattern::parse("2:4").unwrap(),
            ..PruneConfig::default()
        };
        let s = sparsegpt(&w, &h, &cfg).unwrap();
        let m = magnitude(&w, &cfg).unwrap();
        for out in [&s.weight, &m.weight] {
            let zeros_per_group =
                out.eq(0.0)
                    .view([32, 64, 4])
                    .sum_dim_intlist(-1, false, Kind::Int64);
            let all_two = zeros_per_group.eq(2).all().int64_value(&[]);
            assert_eq!(all_two, 1, "every group of 4 has exactly 2 zeros");
        }
        let (es, em) = (
            output_error(&w, &s.weight, &x),
            output_error(&w, &m.weight, &x),
        );
        assert!(es < em, "2:4 SparseGPT {es} vs magnitude {em}");
    }

    #[test]
    fn dead_inputs_lose_their_weights_without_nan() {
        let (w, x) = layer();
        let x = x.shallow_clone();
        let _ = x.select(1, 7).fill_(0.0);
        let h = hessian(&x);
        let s = sparsegpt(&w, &h, &PruneConfig::default()).unwrap();
        assert_eq!(
            s.weight
                .select(1, 7)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        assert_eq!(s.weight.isnan().any().int64_value(&[]), 0);
    }

    #[test]
    fn bad_settings_are_errors() {
        for s in [0.0, 1.0, 1.5, f64::NAN, -0.1] {
            let cfg = PruneConfig {
                sparsity: s,
                ..PruneConfig::default()
            };
            assert!(matches!(cfg.validate(), Err(Error::Sparsity(_))), "{s}");
        }
        for p in ["4:2", "2:2", "0:4", "x", "2:", ""] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
        assert_eq!(Pattern::parse("2:4").unwrap(), Pattern::NM { n: 2, m: 4 });
        // 2:3 cannot tile 256 columns (nor a block of 128).
        let w = Tensor::ones([2, 6], (Kind::Float, Device::Cpu));
        let cfg = PruneConfig {
            pattern: Pattern::NM { n: 2, m: 3 },
            block_size: 6,
            ..PruneConfig::default()
        };
        assert!(magnitude(&w, &cfg).is_ok());
        let w8 = Tensor::ones([2, 8], (Kind::Float, Device::Cpu));
        assert!(matches!(magnitude(&w8, &cfg), Err(Error::Pattern(_))));
        let h = Tensor::eye(5, (Kind::Float, Device::Cpu));
        assert!(matches!(
            sparsegpt(&w, &h, &PruneConfig::default()),
            Err(Error::Shape(_))
        ));
    }
}
