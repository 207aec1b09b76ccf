//! Sentence encoding: last-layer token states and mean-pooled sentence embeddings,
//! and the file formats they are written in ([`write_embeddings`]).
//!
//! The model may run in bf16 (its weights cast once with
//! `cloze_models::Precision::cast_weights`); what [`encode`] returns is fp32
//! whatever the weights' type: the last hidden states are cast before pooling,
//! so the mean is summed in fp32 and the files hold fp32 values.

use std::collections::BTreeMap;
use std::path::Path;

use cloze_models::precision::to_fp32;
use cloze_models::BertModel;
use tch::{Device, Kind, Tensor};

use crate::batch::{
    check_batch_size, check_lengths, check_token_id, float_mask, pad_batch, plan_batches,
};
use crate::{Error, ModelTokenizer, Result};

/// How [`encode`] pads and batches its work.
///
/// Build it with [`EncodeOptions::new`] (or [`EncodeOptions::for_tokenizer`]) and
/// change the public fields; [`encode`] checks it with [`EncodeOptions::validate`]
/// before any work.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeOptions {
    /// The `[PAD]` id that shorter sequences of a batch are padded with (padding
    /// is masked out of attention and of the mean, so it never changes a result).
    pub pad_id: u32,
    /// Sequences per forward pass, at least 1.
    pub batch_size: usize,
    /// Order batches by length to cut padding; outputs stay in input order and
    /// equal (within float rounding) what file-order batching gives.
    pub sort_by_length: bool,
    /// Also return every sequence's token states (`[len, H]` each).
    pub keep_token_states: bool,
    /// Where the model's weights are; inputs are built there.
    pub device: Device,
}

impl EncodeOptions {
    /// Padding with `pad_id`, 32 sequences per forward pass sorted by length,
    /// sentence embeddings only, on the CPU.
    pub fn new(pad_id: u32) -> Self {
        EncodeOptions {
            pad_id,
            batch_size: 32,
            sort_by_length: true,
            keep_token_states: false,
            device: Device::Cpu,
        }
    }

    /// [`Self::new`] with the `[PAD]` id of a checkpoint's tokenizer.
    pub fn for_tokenizer(tok: &ModelTokenizer) -> Self {
        Self::new(tok.pad)
    }

    /// Checks the options against a model's vocabulary of `vocab_size` ids:
    /// `batch_size` at least 1 and `pad_id` inside the vocabulary; otherwise
    /// [`Error::InvalidOption`] naming the field.
    pub fn validate(&self, vocab_size: i64) -> Result<()> {
        check_batch_size(self.batch_size)?;
        check_token_id("pad_id", self.pad_id, vocab_size)
    }
}

/// What [`encode`] returns, in input order.
#[derive(Debug)]
pub struct Encoded {
    /// Mean of the token states over real (non-padding) tokens, `[N, H]` fp32, on the CPU.
    pub embeddings: Tensor,
    /// Token states of each sequence, `[len_i, H]` fp32 on the CPU, when asked for.
    pub token_states: Option<Vec<Tensor>>,
    /// Real tokens processed (the sum of sequence lengths).
    pub real_tokens: usize,
    /// Positions processed including padding (`sum of B * L` over batches).
    pub padded_positions: usize,
}

/// Encodes token-id sequences (with their `[CLS]`/`[SEP]`) in eval mode without
/// gradients, in the type of the model's weights (fp32 or bf16); the results are
/// fp32 either way. Invalid options ([`EncodeOptions::validate`]) and sequences longer
/// than the model's positions ([`Error::TooLong`]; truncate when tokenizing) are
/// errors before any forward pass.
pub fn encode(model: &BertModel, seqs: &[Vec<u32>], opts: &EncodeOptions) -> Result<Encoded> {
    let _span = tracing::info_span!("encode", n = seqs.len(), batch = opts.batch_size).entered();
    opts.validate(model.config().vocab_size)?;
    check_lengths(seqs, model.config().max_position_embeddings)?;
    let (pad, device) = (opts.pad_id, opts.device);
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
        // A bf16 model returns bf16 states: pooling and what leaves are fp32, so
        // the mean of up to 512 states is not summed at bf16's 8-bit precision.
        let hidden = to_fp32(&model.forward_t(&p.input, false)?.last_hidden_state)?;
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

/// A file format for encoded sentences, written by [`write_embeddings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `.safetensors`: `sentence_embeddings` `[N, H]` float32, `token_ids` `[T]`
    /// and `offsets` `[N + 1]` int64 (sentence `i` is tokens
    /// `offsets[i]..offsets[i + 1]`), and `token_states` `[T, H]` when kept.
    Safetensors,
    /// `.jsonl`: one object per sentence with `index`, `line`, `text`,
    /// `truncated`, `tokens` (strings), `embedding`, and `token_states` (one array
    /// per token) when kept.
    JsonLines,
}

impl OutputFormat {
    /// The format a path's extension names: `.safetensors` or `.jsonl`; anything
    /// else is [`Error::UnknownOutputFormat`].
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(OutputFormat::Safetensors),
            Some("jsonl") => Ok(OutputFormat::JsonLines),
            _ => Err(Error::UnknownOutputFormat {
                path: path.to_path_buf(),
            }),
        }
    }

    /// The file extension of the format, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Safetensors => "safetensors",
            OutputFormat::JsonLines => "jsonl",
        }
    }
}

/// Where an encoded sentence came from, for the records [`write_embeddings`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceSource<'a> {
    /// The token ids that were encoded, special tokens included.
    pub ids: &'a [u32],
    /// The text as read.
    pub text: &'a str,
    /// Its line number in the input file, from 1.
    pub line: usize,
    /// Whether truncation shortened it before encoding.
    pub truncated: bool,
}

/// Writes what [`encode`] returned for `sentences` (in the same order) to `path`
/// in `format`, atomically (the file appears whole or not at all); `tok` names the
/// tokens of the JSON lines format. Sentences that do not match `encoded` (count,
/// token-state lengths) are [`Error::InvalidOption`].
pub fn write_embeddings(
    path: &Path,
    format: OutputFormat,
    encoded: &Encoded,
    sentences: &[SentenceSource<'_>],
    tok: &ModelTokenizer,
) -> Result<()> {
    check_matches(encoded, sentences)?;
    match format {
        OutputFormat::Safetensors => write_safetensors(path, encoded, sentences),
        OutputFormat::JsonLines => write_json_lines(path, encoded, sentences, tok),
    }
}

/// Refuses sentences that are not the ones `encoded` holds, so that no file pairs
/// a text with another text's embedding.
fn check_matches(encoded: &Encoded, sentences: &[SentenceSource<'_>]) -> Result<()> {
    let rows = encoded.embeddings.size().first().copied().unwrap_or(0);
    let mismatch = |reason: String| {
        Err(Error::InvalidOption {
            name: "sentences",
            reason,
        })
    };
    if rows != sentences.len() as i64 {
        return mismatch(format!(
            "{} sentences for {rows} embeddings",
            sentences.len()
        ));
    }
    if let Some(states) = &encoded.token_states {
        for (i, (st, s)) in states.iter().zip(sentences).enumerate() {
            if st.size().first().copied() != Some(s.ids.len() as i64) {
                return mismatch(format!(
                    "sentence {i} has {} ids but {:?} token states",
                    s.ids.len(),
                    st.size()
                ));
            }
        }
    }
    Ok(())
}

fn write_safetensors(
    path: &Path,
    encoded: &Encoded,
    sentences: &[SentenceSource<'_>],
) -> Result<()> {
    let mut out = BTreeMap::new();
    out.insert(
        "sentence_embeddings".to_string(),
        encoded.embeddings.shallow_clone(),
    );
    let mut offsets = Vec::with_capacity(sentences.len() + 1);
    offsets.push(0i64);
    let mut ids = Vec::new();
    for s in sentences {
        ids.extend(s.ids.iter().map(|&t| i64::from(t)));
        offsets.push(ids.len() as i64);
    }
    out.insert("offsets".to_string(), Tensor::f_from_slice(&offsets)?);
    out.insert("token_ids".to_string(), Tensor::f_from_slice(&ids)?);
    if let Some(states) = &encoded.token_states {
        out.insert("token_states".to_string(), Tensor::f_cat(states, 0)?);
    }
    Ok(cloze_models::hf::write_safetensors(path, &out)?)
}

fn write_json_lines(
    path: &Path,
    encoded: &Encoded,
    sentences: &[SentenceSource<'_>],
    tok: &ModelTokenizer,
) -> Result<()> {
    let mut text = String::new();
    for (i, s) in sentences.iter().enumerate() {
        let embedding = Vec::<f32>::try_from(encoded.embeddings.f_get(i as i64)?)?;
        let mut obj = serde_json::json!({
            "index": i,
            "line": s.line,
            "text": s.text,
            "truncated": s.truncated,
            "tokens": s.ids.iter().map(|&t| tok.id_to_token(t)).collect::<Vec<_>>(),
            "embedding": embedding,
        });
        if let Some(states) = &encoded.token_states {
            let st = states[i].f_to_kind(Kind::Float)?;
            let rows: Vec<Vec<f32>> = (0..st.size()[0])
                .map(|r| Ok(Vec::<f32>::try_from(st.f_get(r)?)?))
                .collect::<Result<_>>()?;
            obj["token_states"] = serde_json::json!(rows);
        }
        text.push_str(&obj.to_string());
        text.push('\n');
    }
    Ok(cloze_models::hf::write_atomic(path, text.as_bytes())?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_fixture as fixture;

    #[test]
    fn the_extension_chooses_the_format() {
        let f = |p: &str| OutputFormat::from_path(Path::new(p));
        assert_eq!(f("out/e.safetensors").unwrap(), OutputFormat::Safetensors);
        assert_eq!(f("e.jsonl").unwrap(), OutputFormat::JsonLines);
        for bad in ["e.csv", "e", "e.JSONL.gz"] {
            assert!(
                matches!(f(bad), Err(Error::UnknownOutputFormat { ref path }) if path == Path::new(bad)),
                "{bad}"
            );
        }
        for format in [OutputFormat::Safetensors, OutputFormat::JsonLines] {
            let path = format!("x.{}", format.extension());
            assert_eq!(f(&path).unwrap(), format);
        }
    }

    #[test]
    fn options_out_of_their_domain_are_named() {
        let o = EncodeOptions::new(0);
        assert_eq!(
            (o.batch_size, o.sort_by_length, o.keep_token_states),
            (32, true, false)
        );
        assert!(o.validate(96).is_ok());
        let zero = EncodeOptions {
            batch_size: 0,
            ..o.clone()
        };
        assert!(matches!(
            zero.validate(96),
            Err(Error::InvalidOption {
                name: "batch_size",
                ..
            })
        ));
        assert!(matches!(
            EncodeOptions::new(96).validate(96),
            Err(Error::InvalidOption { name: "pad_id", .. })
        ));
    }

    #[test]
    fn a_bf16_model_gives_fp32_results_close_to_fp32() {
        let seqs = vec![
            vec![2, 17, 33, 4, 90, 51, 3, 60, 61, 3],
            vec![2, 5, 6, 7, 8, 4, 9, 10, 11, 12, 13, 3],
            vec![2, 40, 3],
        ];
        let opts = EncodeOptions {
            keep_token_states: true,
            batch_size: 2,
            ..EncodeOptions::new(0)
        };
        let fp32 = cloze_models::load_encoder(&fixture(), Device::Cpu).unwrap();
        let mut bf16 = cloze_models::load_encoder(&fixture(), Device::Cpu).unwrap();
        cloze_models::Precision::Bf16
            .cast_weights(&mut bf16.vs)
            .unwrap();
        // The cast reached the model: its raw output is bf16.
        let raw = tch::no_grad(|| {
            bf16.model.forward_t(
                &cloze_models::MlmInput::new(Tensor::from_slice(&[2i64, 5, 3]).unsqueeze(0)),
                false,
            )
        })
        .unwrap();
        assert_eq!(raw.last_hidden_state.kind(), Kind::BFloat16);
        let want = encode(&fp32.model, &seqs, &opts).unwrap();
        let got = encode(&bf16.model, &seqs, &opts).unwrap();
        assert_eq!(got.embeddings.kind(), Kind::Float);
        assert_eq!(got.embeddings.size(), want.embeddings.size());
        let states = got.token_states.as_ref().unwrap();
        assert!(states.iter().all(|t| t.kind() == Kind::Float));
        for i in 0..seqs.len() as i64 {
            let c = cosine(&got.embeddings.get(i), &want.embeddings.get(i)).unwrap();
            assert!(c >= 0.999, "sentence {i}: cosine {c} to fp32");
        }
        // Not the same numbers, though: the products did run in bf16.
        let diff = (&got.embeddings - &want.embeddings)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff > 0.0, "bf16 weights gave exactly the fp32 embeddings");
    }

    #[test]
    fn both_formats_hold_the_same_embeddings_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        crate::text::tests::tokenizer(dir.path());
        let tok = ModelTokenizer::from_dir(dir.path(), 40).unwrap();
        let p = cloze_models::load_encoder(&fixture(), Device::Cpu).unwrap();
        let texts = ["w5 w6 w7 w8", "w9 w10"];
        let seqs = tok.encode_batch(&texts).unwrap();
        let opts = EncodeOptions {
            keep_token_states: true,
            ..EncodeOptions::for_tokenizer(&tok)
        };
        let enc = encode(&p.model, &seqs, &opts).unwrap();
        let sentences: Vec<SentenceSource<'_>> = seqs
            .iter()
            .zip(texts)
            .enumerate()
            .map(|(i, (ids, text))| SentenceSource {
                ids,
                text,
                line: 2 * i + 1,
                truncated: false,
            })
            .collect();
        let st = dir.path().join("e.safetensors");
        let jl = dir.path().join("e.jsonl");
        write_embeddings(&st, OutputFormat::Safetensors, &enc, &sentences, &tok).unwrap();
        write_embeddings(&jl, OutputFormat::JsonLines, &enc, &sentences, &tok).unwrap();

        let t = cloze_models::hf::read_safetensors(&st).unwrap();
        assert_eq!(Vec::<i64>::try_from(&t["offsets"]).unwrap(), vec![0, 6, 10]);
        assert_eq!(
            Vec::<i64>::try_from(&t["token_ids"]).unwrap(),
            vec![2, 5, 6, 7, 8, 3, 2, 9, 10, 3]
        );
        assert_eq!(t["token_states"].size(), vec![10, 32]);
        assert!(t["sentence_embeddings"].equal(&enc.embeddings));

        let rows: Vec<serde_json::Value> = std::fs::read_to_string(&jl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["line"], 3);
        assert_eq!(rows[1]["text"], "w9 w10");
        assert_eq!(
            rows[1]["tokens"],
            serde_json::json!(["[CLS]", "w9", "w10", "[SEP]"])
        );
        let e1: Vec<f32> = serde_json::from_value(rows[1]["embedding"].clone()).unwrap();
        assert_eq!(e1, Vec::<f32>::try_from(enc.embeddings.get(1)).unwrap());
        let states: Vec<Vec<f32>> =
            serde_json::from_value(rows[0]["token_states"].clone()).unwrap();
        assert_eq!(states.len(), 6);
        assert_eq!(
            states[5],
            Vec::<f32>::try_from(enc.token_states.as_ref().unwrap()[0].get(5)).unwrap()
        );

        // Sentences that are not the encoded ones are refused, and nothing is written.
        let other = dir.path().join("other.jsonl");
        let err = write_embeddings(&other, OutputFormat::JsonLines, &enc, &sentences[..1], &tok)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    name: "sentences",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!other.exists());
    }
}
