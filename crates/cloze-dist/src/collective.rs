//! The [`Collective`] seam the trainer talks to, the one-process [`Solo`],
//! and the helpers built on it: bucketed gradient allreduce, reductions of a
//! few numbers, broadcast of many tensors.

use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// How an allreduce combines the ranks' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Elementwise sum.
    Sum,
    /// Elementwise maximum.
    Max,
    /// Elementwise minimum.
    Min,
}

/// Collectives over the ranks of a job. Every rank must make the same calls
/// in the same order with tensors of the same shapes and kinds.
pub trait Collective {
    /// This process's rank (0 writes the run's files).
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world_size(&self) -> usize;
    /// Reduces each tensor across the ranks, in place on every rank.
    fn allreduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()>;
    /// Overwrites each tensor on every rank with rank `root`'s.
    fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Whether this rank writes the run's files (rank 0).
    fn is_writer(&self) -> bool {
        self.rank() == 0
    }
}

/// A job of one process: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn allreduce(&self, _: &[Tensor], _: ReduceOp) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: &[Tensor], _: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// Reduces a few numbers (losses, counts, flags) across the ranks: one
/// small allreduce of an f64 tensor.
pub fn reduce_values(coll: &dyn Collective, values: &mut [f64], op: ReduceOp) -> Result<()> {
    if coll.world_size() == 1 || values.is_empty() {
        return Ok(());
    }
    let t = Tensor::from_slice(values);
    coll.allreduce(std::slice::from_ref(&t), op)?;
    let out: Vec<f64> = Vec::<f64>::try_from(&t)?;
    values.copy_from_slice(&out);
    Ok(())
}

/// Overwrites `values` on every rank with rank `root`'s.
pub fn broadcast_values(coll: &dyn Collective, values: &mut [f64], root: usize) -> Result<()> {
    if coll.world_size() == 1 || values.is_empty() {
        return Ok(());
    }
    let t = Tensor::from_slice(values);
    coll.broadcast(std::slice::from_ref(&t), root)?;
    values.copy_from_slice(&Vec::<f64>::try_from(&t)?);
    Ok(())
}

/// Rank `root`'s bytes on every rank (a configuration, a serialised state):
/// the length first, then the bytes. Other ranks pass anything (it is
/// replaced).
pub fn broadcast_bytes(coll: &dyn Collective, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
    if coll.world_size() == 1 {
        return Ok(());
    }
    let mut len = [bytes.len() as f64];
    broadcast_values(coll, &mut len, root)?;
    let n = len[0] as usize;
    bytes.resize(n, 0);
    if n == 0 {
        return Ok(());
    }
    let t = Tensor::from_slice(bytes.as_slice());
    coll.broadcast(std::slice::from_ref(&t), root)?;
    *bytes = Vec::<u8>::try_from(&t)?;
    Ok(())
}

/// What one bucketed allreduce cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AllreduceStats {
    /// Buckets sent.
    pub buckets: usize,
    /// Bytes reduced (per rank).
    pub bytes: usize,
    /// Wall time, copies into and out of the buckets included.
    pub elapsed: Duration,
}

/// Sums `tensors` (gradients) across the ranks in place, packed into flat
/// buckets of about `bucket_bytes` (fewer, larger messages than one per
/// tensor; all buckets are in flight at once). Tensors are bucketed in the
/// order given, each bucket holding one kind.
pub fn allreduce_buckets(
    coll: &dyn Collective,
    tensors: &[Tensor],
    bucket_bytes: usize,
) -> Result<AllreduceStats> {
    let started = Instant::now();
    if coll.world_size() == 1 || tensors.is_empty() {
        return Ok(AllreduceStats::default());
    }
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes = 0usize;
    let mut current_kind: Option<Kind> = None;
    let mut bytes = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let kind = t.f_kind()?;
        let size = t.numel() * kind.elt_size_in_bytes();
        bytes += size;
        if !current.is_empty()
            && (current_bytes + size > bucket_bytes || current_kind != Some(kind))
        {
            buckets.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(i);
        current_bytes += size;
        current_kind = Some(kind);
    }
    if !current.is_empty() {
        buckets.push(current);
    }
    tch::no_grad(|| -> Result<()> {
        let flats = buckets
            .iter()
            .map(|b| {
                let parts: Vec<Tensor> = b
                    .iter()
                    .map(|&i| tensors[i].f_reshape([-1]))
                    .collect::<std::result::Result<_, _>>()?;
                Ok(Tensor::f_cat(&parts, 0)?)
            })
            .collect::<Result<Vec<Tensor>>>()?;
        coll.allreduce(&flats, ReduceOp::Sum)?;
        for (b, flat) in buckets.iter().zip(&flats) {
            let mut at = 0i64;
            for &i in b {
                let t = &tensors[i];
                let n = t.numel() as i64;
                let mut dst = t.shallow_clone();
                dst.f_copy_(&flat.f_narrow(0, at, n)?.f_view(t.size().as_slice())?)?;
                at += n;
            }
        }
        Ok(())
    })?;
    Ok(AllreduceStats {
        buckets: buckets.len(),
        bytes,
        elapsed: started.elapsed(),
    })
}

/// Broadcasts every tensor from `root` (parameters and optimiser state at
/// the start of a run), without recording gradients.
pub fn broadcast_all(coll: &dyn Collective, tensors: &[Tensor], root: usize) -> Result<()> {
    if coll.world_size() == 1 || tensors.is_empty() {
        return Ok(());
    }
    if tensors.iter().any(|t| !t.is_contiguous()) {
        return Err(Error::BadInput("broadcast needs contiguous tensors".into()));
    }
    tch::no_grad(|| coll.broadcast(tensors, root))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fake group of `world` ranks seen from rank 0 whose peers all hold
    /// the same values as this rank: a sum multiplies by `world`.
    struct Mirror(usize);
    impl Collective for Mirror {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            self.0
        }
        fn allreduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
            for t in tensors {
                if op == ReduceOp::Sum {
                    let mut t = t.shallow_clone();
                    let _ = t.f_mul_scalar_(self.0 as f64)?;
                }
            }
            Ok(())
        }
        fn broadcast(&self, _: &[Tensor], _: usize) -> Result<()> {
            Ok(())
        }
        fn barrier(&self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn buckets_reduce_every_tensor_in_place() {
        let a = Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([2, 2]);
        let b = Tensor::from_slice(&[5f32]);
        let c = Tensor::from_slice(&[6f32, 7.]);
        let ts = [a.shallow_clone(), b.shallow_clone(), c.shallow_clone()];
        // 12 bytes per bucket: [a] alone (16 bytes), then [b, c].
        let stats = allreduce_buckets(&Mirror(3), &ts, 12).unwrap();
        assert_eq!(stats.buckets, 2);
        assert_eq!(stats.bytes, 28);
        assert_eq!(
            Vec::<f32>::try_from(a.reshape([-1])).unwrap(),
            vec![3., 6., 9., 12.]
        );
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![15.]);
        assert_eq!(Vec::<f32>::try_from(&c).unwrap(), vec![18., 21.]);
        assert_eq!(a.size(), vec![2, 2]);
    }

    #[test]
    fn one_rank_changes_nothing() {
        let a = Tensor::from_slice(&[1f32, 2.]);
        let stats = allreduce_buckets(&Solo, std::slice::from_ref(&a), 1).unwrap();
        assert_eq!(stats.buckets, 0);
        let mut v = [1.5, 2.5];
        reduce_values(&Solo, &mut v, ReduceOp::Sum).unwrap();
        assert_eq!(v, [1.5, 2.5]);
        reduce_values(&Mirror(2), &mut v, ReduceOp::Sum).unwrap();
        assert_eq!(v, [3.0, 5.0]);
    }
}
