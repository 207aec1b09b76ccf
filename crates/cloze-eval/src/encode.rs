//! Sentence encoding: last-layer token states and mean-pooled sentence embeddings.

use cloze_models::BertModel;
use tch::{Device, Kind, Tensor};

use crate::batch::{check_lengths, float_mask, pad_batch, plan_batches};
use crate::Result;

/// How [`encode`] batches its work.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Order batches by length to cut padding; outputs stay in input order and
    /// equal (within float rounding) what file-order batching gives.
    pub sort_by_length: bool,
    /// Also return every sequence's token states (`[len, H]` each).
    pub keep_token_states: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            batch_size: 32,
            sort_by_length: true,
            keep_token_states: false,
        }
    }
}

/// What [`encode`] returns, in input order.
#[derive(Debug)]
pub struct Encoded {
    /// Mean of the token states over real (non-padding) tokens, `[N, H]`, on the CPU.
    pub embeddings: Tensor,
    /// Token states of each sequence, `[len_i, H]` on the CPU, when asked for.
    pub token_states: Option<Vec<Tensor>>,
    /// Real tokens processed (the sum of sequence lengths).
    pub real_tokens: usize,
    /// Positions processed including padding (`sum of B * L` over batches).
    pub padded_positions: usize,
}

/// Encodes token-id sequences (with their `[CLS]`/`[SEP]`) in eval mode without
/// gradients. Sequences longer than the model's positions are an error; truncate
/// when tokenizing.
pub fn encode(
    model: &BertModel,
    seqs: &[Vec<u32>],
    pad: u32,
    device: Device,
    opts: &EncodeOptions,
) -> Result<Encoded> {
    let _span = tracing::info_span!("encode", n = seqs.len(), batch = opts.batch_size).entered();
    check_lengths(seqs, model.config().max_position_embeddings)?;
    let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let batches = plan_batches(&lengths, opts.batch_size, opts.sort_by_length)?;
    let _g = tch::no_grad_guard();
    let h = model.config().hidden_size;
    let mut pooled: Vec<Option<Tensor>> = (0..seqs.len()).map(|_| None).collect();
    let mut states: Vec<Option<Tensor>> = (0..seqs.len()).map(|_| None).collect();
    let (mut real, mut padded) = (0usize, 0usize);
    for batch in &batches {
        let rows: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
        let p = pad_batch(&rows, pad, device)?;
        let b = rows.len() as i64;
        let hidden = model.forward_t(&p.input, false)?.last_hidden_state;
        let m = float_mask(&p.input, b, p.len)?;
        let sum = hidden.f_mul(&m.f_unsqueeze(-1)?)?.f_sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Float,
        )?;
        let mean = sum.f_div(
            &m.f_sum_dim_intlist([1i64].as_slice(), true, Kind::Float)?
                .f_clamp_min(1e-9)?,
        )?;
        let mean = mean.f_to_device(Device::Cpu)?;
        let hidden_cpu = if opts.keep_token_states {
            Some(hidden.f_to_device(Device::Cpu)?)
        } else {
            None
        };
        for (row, &i) in batch.iter().enumerate() {
            pooled[i] = Some(mean.f_get(row as i64)?);
            if let Some(hc) = &hidden_cpu {
                states[i] = Some(
                    hc.f_get(row as i64)?
                        .f_narrow(0, 0, p.lengths[row] as i64)?
                        .f_contiguous()?,
                );
            }
        }
        real += p.lengths.iter().sum::<usize>();
        padded += (b * p.len) as usize;
    }
    let pooled: Vec<Tensor> = pooled.into_iter().flatten().collect();
    let embeddings = if pooled.is_empty() {
        Tensor::f_zeros([0, h], (Kind::Float, Device::Cpu))?
    } else {
        Tensor::f_stack(&pooled, 0)?
    };
    let token_states = if opts.keep_token_states {
        Some(states.into_iter().flatten().collect())
    } else {
        None
    };
    Ok(Encoded {
        embeddings,
        token_states,
        real_tokens: real,
        padded_positions: padded,
    })
}

/// Cosine similarity of two vectors `[H]`.
pub fn cosine(a: &Tensor, b: &Tensor) -> Result<f64> {
    let dot = a.f_dot(b)?.f_double_value(&[])?;
    let na = a.f_norm()?.f_double_value(&[])?;
    let nb = b.f_norm()?.f_double_value(&[])?;
    Ok(dot / (na * nb).max(1e-12))
}
