//! Fill-mask: the top-k vocabulary entries, with probabilities, at every `[MASK]`.

use cloze_models::BertForPreTraining;
use tch::{Device, Kind, Tensor};

use crate::batch::{check_lengths, pad_batch, plan_batches};
use crate::{Error, Result};

/// One candidate for a masked position.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// Vocabulary id.
    pub token_id: u32,
    /// Softmax probability over the vocabulary.
    pub probability: f64,
}

/// The predictions at one `[MASK]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaskPrediction {
    /// Index of the masked token in the sequence (`[CLS]` is 0).
    pub position: usize,
    /// The `top_k` candidates, most probable first.
    pub candidates: Vec<Candidate>,
}

/// Predicts every `mask_id` position of every sequence (which carry their `[CLS]`/`[SEP]`).
/// Several masks per sequence are predicted independently in one pass, as BERT's
/// MLM objective does. Only the masked rows are projected onto the vocabulary.
pub fn fill_mask(
    model: &BertForPreTraining,
    seqs: &[Vec<u32>],
    mask_id: u32,
    pad: u32,
    top_k: usize,
    batch_size: usize,
    device: Device,
) -> Result<Vec<Vec<MaskPrediction>>> {
    let _span = tracing::info_span!("fill_mask", n = seqs.len(), top_k).entered();
    let vocab = model.config().vocab_size as usize;
    if top_k == 0 || top_k > vocab {
        return Err(Error::InvalidOption {
            name: "top_k",
            reason: format!("{top_k} is not in 1..={vocab}"),
        });
    }
    check_lengths(seqs, model.config().max_position_embeddings)?;
    for (index, s) in seqs.iter().enumerate() {
        if !s.contains(&mask_id) {
            return Err(Error::NoMask { index });
        }
    }
    let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let _g = tch::no_grad_guard();
    let mut out: Vec<Vec<MaskPrediction>> = vec![Vec::new(); seqs.len()];
    for batch in plan_batches(&lengths, batch_size, true)? {
        let rows: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
        let p = pad_batch(&rows, pad, device)?;
        let mut flat = Vec::new();
        let mut owners = Vec::new();
        for (row, r) in rows.iter().enumerate() {
            for (pos, &t) in r.iter().enumerate() {
                if t == mask_id {
                    flat.push(row as i64 * p.len + pos as i64);
                    owners.push((batch[row], pos));
                }
            }
        }
        let positions = Tensor::f_from_slice(&flat)?.f_to_device(device)?;
        let logits = model
            .forward_t(&p.input, Some(&positions), false)?
            .mlm_logits;
        let probs = logits.f_softmax(-1, Kind::Float)?;
        let (vals, idx) = probs.f_topk(top_k as i64, -1, true, true)?;
        let vals = Vec::<f32>::try_from(vals.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
        let idx = Vec::<i64>::try_from(idx.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
        for (k, &(seq, pos)) in owners.iter().enumerate() {
            let candidates = (0..top_k)
                .map(|j| Candidate {
                    token_id: idx[k * top_k + j] as u32,
                    probability: f64::from(vals[k * top_k + j]),
                })
                .collect();
            out[seq].push(MaskPrediction {
                position: pos,
                candidates,
            });
        }
    }
    Ok(out)
}
