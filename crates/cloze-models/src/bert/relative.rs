//! The T5-style relative position bias of UniLM-v2 (Bao et al. 2020, arXiv
//! 2002.12804), as microsoft/unilm's s2s-ft implements it
//! (`s2s_ft/modeling.py`: `relative_position_bucket`, `BertModel.rel_pos_bias`).
//!
//! Every query/key pair gets a learned per-head scalar added to its attention
//! score, chosen by the bucket of the distance `key position - query position`.
//! Distances are taken between *position ids*, not indices: UniLM-v2's pseudo
//! tokens `[P]` share the position id of the token they stand for, so the two
//! are at distance 0 from each other and at the same distance from everyone
//! else. One weight serves every layer, and the bias is computed once per
//! forward pass.

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use super::BertConfig;
use crate::Result;

/// T5's bidirectional `relative_position_bucket` (Raffel et al. 2020, from Mesh
/// TensorFlow), exactly as s2s-ft computes it: of `num_buckets`, the lower half
/// is for keys before (or at) the query and the upper half for keys after it;
/// within a half, distances below `max_exact = num_buckets / 4` have a bucket
/// each, and larger ones share logarithmically wider buckets up to
/// `max_distance`, beyond which all fall into the half's last bucket.
///
/// `relative_position` holds `key position - query position` (any integer
/// kind, any shape); the result is int64 of the same shape with values in
/// `0..num_buckets`. The logarithm is taken in fp32 with the same operations
/// as the PyTorch original, so buckets agree with s2s-ft's at every distance.
/// `num_buckets >= 4` and `max_distance > num_buckets / 4` are the caller's
/// to ensure ([`BertConfig::validate`] does for a model's config).
pub fn relative_position_bucket(
    relative_position: &Tensor,
    num_buckets: i64,
    max_distance: i64,
) -> Result<Tensor> {
    let relative = relative_position.f_to_kind(Kind::Int64)?;
    let half = num_buckets / 2;
    let upper = relative
        .f_gt(0)?
        .f_to_kind(Kind::Int64)?
        .f_mul_scalar(half)?;
    let n = relative.f_abs()?;
    let max_exact = half / 2;
    let is_small = n.f_lt(max_exact)?;
    // The logarithmic buckets, computed for every entry and used only where
    // n >= max_exact. Clamping n there first keeps log(0) = -inf (and its
    // undefined cast to an integer) out of the computation; it changes no
    // value that is used.
    let large = n
        .f_clamp_min(max_exact)?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(max_exact as f64)?
        .f_log()?
        .f_div_scalar((max_distance as f64 / max_exact as f64).ln())?
        .f_mul_scalar((half - max_exact) as f64)?
        // Truncation toward zero, as PyTorch's `.to(torch.long)`.
        .f_to_kind(Kind::Int64)?
        .f_add_scalar(max_exact)?
        .f_clamp_max(half - 1)?;
    Ok(upper.f_add(&n.f_where_self(&is_small, &large)?)?)
}

/// The relative position bias: `rel_pos_bias.weight` `[num_attention_heads,
/// rel_pos_bins]` under the encoder's path (HF key `bert.rel_pos_bias.weight`
/// in a `BertFor*` checkpoint), s2s-ft's `nn.Linear(rel_pos_bins,
/// num_attention_heads, bias=False)` applied to the one-hot bucket.
///
/// Built by [`crate::BertModel`] only when [`BertConfig::rel_pos_bins`] is
/// positive; initialised N(0, `initializer_range`) as HF's `_init_weights`
/// initialises every `nn.Linear`.
#[derive(Debug)]
pub struct RelativePositionBias {
    weight: Tensor,
    num_buckets: i64,
    max_distance: i64,
}

impl RelativePositionBias {
    /// Creates `weight` under `p` (`p` is the encoder's `rel_pos_bias` path);
    /// `None` when the config leaves the bias out.
    pub fn new(p: &Path, config: &BertConfig) -> Result<Option<Self>> {
        let Some((num_buckets, max_distance)) = config.relative_position() else {
            return Ok(None);
        };
        let weight = p.f_var(
            "weight",
            &[config.num_attention_heads, num_buckets],
            Init::Randn {
                mean: 0.0,
                stdev: config.initializer_range,
            },
        )?;
        Ok(Some(RelativePositionBias {
            weight,
            num_buckets,
            max_distance,
        }))
    }

    /// The weight, `[num_attention_heads, rel_pos_bins]` (the variable itself).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The per-head bias `[B, heads, Lq, Lk]` for queries at position ids
    /// `query_positions` `[B, Lq]` and keys at `key_positions` `[B, Lk]` (a
    /// batch of 1 broadcasts), in `kind` (the attention products' type).
    ///
    /// A lookup of the weight's columns by bucket equals s2s-ft's one-hot
    /// vector times the weight exactly (one non-zero term per sum) and skips
    /// the `[B, Lq, Lk, bins]` one-hot tensor; gradients reach the weight
    /// through the lookup.
    pub fn forward(
        &self,
        query_positions: &Tensor,
        key_positions: &Tensor,
        kind: Kind,
    ) -> Result<Tensor> {
        let q = query_positions.f_to_kind(Kind::Int64)?;
        let k = key_positions.f_to_kind(Kind::Int64)?;
        // [B, Lq, Lk]: key minus query, as s2s-ft's
        // `position_ids.unsqueeze(-2) - position_ids.unsqueeze(-1)`.
        let relative = k.f_unsqueeze(-2)?.f_sub(&q.f_unsqueeze(-1)?)?;
        let buckets = relative_position_bucket(&relative, self.num_buckets, self.max_distance)?;
        let table = self.weight.f_tr()?;
        let bias =
            Tensor::f_embedding(&table, &buckets, -1, false, false)?.f_permute([0, 3, 1, 2])?;
        Ok(if bias.kind() == kind {
            bias
        } else {
            bias.f_to_kind(kind)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(distances: &[i64], num_buckets: i64, max_distance: i64) -> Vec<i64> {
        let t = relative_position_bucket(&Tensor::from_slice(distances), num_buckets, max_distance)
            .unwrap();
        Vec::<i64>::try_from(t).unwrap()
    }

    #[test]
    fn buckets_match_hand_computed_t5_values() {
        // s2s-ft's UniLM-v2 setting: 32 buckets, max distance 128. Per direction
        // 16 buckets, 8 exact; a distance n >= 8 goes to
        // 8 + floor(ln(n / 8) / ln(128 / 8) * 8), at most 15; keys after the
        // query (positive distances) add 16.
        let cases: &[(i64, i64)] = &[
            (0, 0),
            (-1, 1),
            (1, 17),
            (-7, 7),
            (7, 23),
            (-8, 8), // ln 1 = 0: the first logarithmic bucket
            (8, 24),
            (12, 25),  // 8 + floor(0.4055 / 2.7726 * 8 = 1.170)
            (-17, 10), // 8 + floor(0.7538 / 2.7726 * 8 = 2.175)
            (-20, 10), // 8 + floor(0.9163 / 2.7726 * 8 = 2.644)
            (30, 27),  // 16 + 8 + floor(1.3218 / 2.7726 * 8 = 3.814)
            (-60, 13), // 8 + floor(2.0149 / 2.7726 * 8 = 5.814)
            (-127, 15),
            (-128, 15), // at max_distance: clamped to the last bucket
            (128, 31),
            (-1000, 15), // beyond max_distance
            (1000, 31),
        ];
        let (d, want): (Vec<i64>, Vec<i64>) = cases.iter().copied().unzip();
        assert_eq!(buckets(&d, 32, 128), want);
        // A small table: 8 buckets, max distance 16 (4 per direction, 2 exact;
        // n >= 2 goes to 2 + floor(ln(n / 2) / ln 8 * 2), at most 3).
        let cases: &[(i64, i64)] = &[
            (0, 0),
            (-1, 1),
            (1, 5),
            (-2, 2),
            (-3, 2), // 2 + floor(0.390)
            (-5, 2), // 2 + floor(0.881)
            (-6, 3), // 2 + floor(1.057)
            (6, 7),
            (-100, 3),
            (100, 7),
        ];
        let (d, want): (Vec<i64>, Vec<i64>) = cases.iter().copied().unzip();
        assert_eq!(buckets(&d, 8, 16), want);
        // Narrow integer kinds are widened before the subtraction is used.
        let t = relative_position_bucket(&Tensor::from_slice(&[-3i32, 3]), 32, 128).unwrap();
        assert_eq!(Vec::<i64>::try_from(t).unwrap(), [3, 19]);
    }

    #[test]
    fn equal_position_ids_get_equal_bias_rows_and_columns() -> Result<()> {
        let _rng = crate::rng_lock();
        tch::manual_seed(5);
        let config = BertConfig {
            hidden_size: 8,
            num_attention_heads: 2,
            rel_pos_bins: Some(8),
            max_rel_pos: Some(16),
            ..BertConfig::default()
        };
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let bias = RelativePositionBias::new(&(vs.root() / "rel_pos_bias"), &config)?
            .expect("enabled by the config");
        // UniLM-v2 layout: tokens at positions 2 and 3 and their pseudo tokens.
        let pos = Tensor::from_slice(&[0i64, 1, 2, 3, 2, 3]).unsqueeze(0);
        let b = bias.forward(&pos, &pos, Kind::Float)?;
        assert_eq!(b.size(), [1, 2, 6, 6]);
        let row = |i: i64| b.get(0).narrow(1, i, 1);
        let col = |j: i64| b.get(0).narrow(2, j, 1);
        assert!(row(2).equal(&row(4)) && row(3).equal(&row(5)));
        assert!(col(2).equal(&col(4)) && col(3).equal(&col(5)));
        // A pseudo token and its real token are at distance 0 from each other.
        let at = |h: i64, i: i64, j: i64| b.double_value(&[0, h, i, j]);
        for h in 0..2 {
            assert_eq!(at(h, 2, 4), at(h, 0, 0));
            assert_eq!(at(h, 5, 3), at(h, 0, 0));
            // ... and a bucket is a weight column: distance +1 is bucket 5.
            assert_eq!(at(h, 2, 3), bias.weight().double_value(&[h, 5]));
        }
        Ok(())
    }
}
