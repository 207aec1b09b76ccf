//! Turning token-id sequences into padded model inputs, and choosing batches.

use cloze_models::MlmInput;
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// A padded batch: the model input plus what is needed to map rows back.
#[derive(Debug)]
pub struct Padded {
    /// `input_ids` `[B, L]` and, when any row is padded, `attention_mask` `[B, L]`.
    pub input: MlmInput,
    /// Padded length `L`.
    pub len: i64,
    /// Unpadded length of each row.
    pub lengths: Vec<usize>,
}

/// Pads `rows` with `pad` to the longest row and moves the tensors to `device`.
/// The padding mask is omitted when no row is padded, which lets libtorch use its
/// unmasked attention kernel.
pub fn pad_batch(rows: &[&[u32]], pad: u32, device: Device) -> Result<Padded> {
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    if rows.is_empty() || len == 0 {
        return Err(Error::InvalidOption {
            name: "batch",
            reason: "empty batch or empty sequence".into(),
        });
    }
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for r in rows {
        ids.extend(r.iter().map(|&t| i64::from(t)));
        ids.extend(std::iter::repeat_n(i64::from(pad), len - r.len()));
        mask.extend(std::iter::repeat_n(1i64, r.len()));
        mask.extend(std::iter::repeat_n(0i64, len - r.len()));
    }
    let shape = [rows.len() as i64, len as i64];
    let input_ids = Tensor::f_from_slice(&ids)?
        .f_view(shape)?
        .f_to_device(device)?;
    let mut input = MlmInput::new(input_ids);
    if rows.iter().any(|r| r.len() < len) {
        input = input.with_attention_mask(
            Tensor::f_from_slice(&mask)?
                .f_view(shape)?
                .f_to_device(device)?,
        );
    }
    Ok(Padded {
        input,
        len: len as i64,
        lengths: rows.iter().map(|r| r.len()).collect(),
    })
}

/// Splits `0..lengths.len()` into batches of at most `batch_size` indices. With
/// `sort_by_length` the indices are ordered by decreasing length first (ties in input
/// order), so each batch holds similar lengths and little padding; otherwise batches
/// follow input order.
pub fn plan_batches(
    lengths: &[usize],
    batch_size: usize,
    sort_by_length: bool,
) -> Result<Vec<Vec<usize>>> {
    check_batch_size(batch_size)?;
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if sort_by_length {
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    }
    Ok(order.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

/// Checks every sequence against the model's position table.
pub fn check_lengths(seqs: &[Vec<u32>], max: i64) -> Result<()> {
    for (index, s) in seqs.iter().enumerate() {
        if s.len() as i64 > max {
            return Err(Error::TooLong {
                index,
                len: s.len(),
                max: max as usize,
            });
        }
    }
    Ok(())
}

/// Checks a batch size option: at least one sequence per forward pass.
pub(crate) fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::InvalidOption {
            name: "batch_size",
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Checks that a special-token option (`mask_id`, `pad_id`) is a row of the model's
/// vocabulary, so that a tokenizer/checkpoint mismatch is named here rather than
/// reported by the model as an id out of range somewhere in a batch.
pub(crate) fn check_token_id(name: &'static str, id: u32, vocab_size: i64) -> Result<()> {
    if i64::from(id) >= vocab_size {
        return Err(Error::InvalidOption {
            name,
            reason: format!("id {id} is outside the model's vocabulary of {vocab_size}"),
        });
    }
    Ok(())
}

/// Float view of an int mask, for pooling.
pub(crate) fn float_mask(input: &MlmInput, b: i64, l: i64) -> Result<Tensor> {
    Ok(match &input.attention_mask {
        Some(m) => m.f_to_kind(Kind::Float)?,
        None => Tensor::f_ones([b, l], (Kind::Float, input.input_ids.device()))?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_masks() {
        let p = pad_batch(&[&[1, 2, 3], &[4]], 0, Device::Cpu).unwrap();
        assert_eq!(
            Vec::<i64>::try_from(p.input.input_ids.flatten(0, -1)).unwrap(),
            vec![1, 2, 3, 4, 0, 0]
        );
        let m = p.input.attention_mask.as_ref().unwrap().flatten(0, -1);
        assert_eq!(Vec::<i64>::try_from(m).unwrap(), vec![1, 1, 1, 1, 0, 0]);
        let full = pad_batch(&[&[1, 2], &[3, 4]], 0, Device::Cpu).unwrap();
        assert!(full.input.attention_mask.is_none());
        assert!(pad_batch(&[], 0, Device::Cpu).is_err());
    }

    #[test]
    fn plans_sorted_and_file_order_batches() {
        let lens = [3, 9, 1, 9, 5];
        assert_eq!(
            plan_batches(&lens, 2, false).unwrap(),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(
            plan_batches(&lens, 2, true).unwrap(),
            vec![vec![1, 3], vec![4, 0], vec![2]]
        );
        assert!(plan_batches(&lens, 0, true).is_err());
    }
}
