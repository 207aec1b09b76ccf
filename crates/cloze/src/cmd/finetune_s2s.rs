//! `cloze finetune --task seq2seq`: UniLM-v2 sequence-to-sequence fine-tuning
//! as microsoft/unilm's s2s-ft does it (`cloze_mask::Seq2SeqBuilder` rows,
//! `cloze_train::s2s`'s loss with label smoothing 0.1), on the same loop and
//! with the same run-directory rules as classification (`finetune.rs`
//! checks the directory and dispatches here before any work): data read and
//! checked first, `finetune.toml`, `metrics.jsonl`, checkpoints, `--resume`,
//! Ctrl-C. The run ends with `model/`: the checkpoint with the lowest dev
//! loss (the last step without `--dev`) as an HF `BertForMaskedLM` with the
//! base model's tokenizer, ready for `cloze generate`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cloze_core::SpecialTokens;
use cloze_eval::ModelTokenizer;
use cloze_mask::{Seq2SeqBuilder, Seq2SeqConfig, Seq2SeqExample};
use cloze_models::HeadStatus;
use cloze_train::s2s::{Seq2SeqEval, Seq2SeqSource};
use cloze_train::trainer::HeldOut;
use cloze_train::BertPretrainer;

use super::finetune::{run_kind, train_and_export, Started, RUN_FILES};
use crate::cmd::run_dir::{self, shell_word};

/// The longest target, its final `[SEP]` included (s2s-ft's default
/// `--max_target_seq_length`); the source gets `task.max_length`.
pub const MAX_TARGET_LEN: usize = 48;

/// `{"source", "target"}` JSON lines, tokenized without special tokens.
fn read_pairs(path: &Path, tok: &ModelTokenizer) -> Result<Vec<Seq2SeqExample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sources = Vec::new();
    let mut targets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a JSON object", path.display(), n + 1))?;
        let field = |name: &str| {
            v[name].as_str().map(str::to_owned).with_context(|| {
                format!(
                    "{} line {}: no string field `{name}` (seq2seq lines hold `source` and `target`)",
                    path.display(),
                    n + 1
                )
            })
        };
        sources.push(field("source")?);
        targets.push(field("target")?);
    }
    if sources.is_empty() {
        bail!("{} holds no source/target pairs", path.display());
    }
    let strip = |ids: Vec<Vec<u32>>| -> Vec<Vec<u32>> {
        ids.into_iter()
            .map(|v| v.get(1..v.len().saturating_sub(1)).unwrap_or(&[]).to_vec())
            .collect()
    };
    let source_refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let target_refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let s = strip(tok.encode_batch(&source_refs)?);
    let t = strip(tok.encode_batch(&target_refs)?);
    Ok(s.into_iter()
        .zip(t)
        .map(|(source, target)| Seq2SeqExample { source, target })
        .collect())
}

/// Runs the seq2seq fine-tuning that `finetune::run` dispatched.
pub fn run(s: Started, test: Option<&Path>) -> Result<()> {
    let Started {
        cfg,
        out_guard,
        mut lock,
        run_dir,
        resuming,
    } = s;
    if let Some(t) = test {
        bail!(
            "--test {} scores classifiers; score generation with `cloze generate --model {}/model --input FILE`",
            t.display(),
            shell_word(&run_dir)
        );
    }
    // 1. Data and model, checked before the run directory is touched.
    let base = cfg.task.base_model.clone();
    let base_config = cloze_models::hf::read_config(&base)
        .with_context(|| format!("reading the base model in {}", base.display()))?;
    let positions = usize::try_from(base_config.max_position_embeddings).unwrap_or(0);
    let max_source = cfg.task.max_length;
    if max_source + MAX_TARGET_LEN > positions {
        bail!(
            "--max-length {max_source} (the source) plus {MAX_TARGET_LEN} target tokens exceeds the \
             model's {positions} positions; lower --max-length to {} or less",
            positions.saturating_sub(MAX_TARGET_LEN)
        );
    }
    let tok = ModelTokenizer::from_dir(&base, max_source)?;
    let train = read_pairs(&cfg.task.train, &tok)?;
    let dev = cfg
        .task
        .dev
        .as_deref()
        .map(|p| read_pairs(p, &tok))
        .transpose()?;
    let pseudo = tok.token_id("[PSEUDO_MASK]")?;
    let (mask, unk) = (tok.mask_id()?, tok.token_id("[UNK]")?);
    let specials = SpecialTokens {
        vocab_size: u32::try_from(base_config.vocab_size).context("vocabulary size")?,
        pad: tok.pad,
        unk,
        cls: tok.cls,
        sep: tok.sep,
        mask,
        pseudo_mask: Some(pseudo),
        all_special: vec![tok.pad, unk, tok.cls, tok.sep, mask, pseudo],
    };
    let builder = Seq2SeqBuilder::new(
        Seq2SeqConfig {
            max_source_len: max_source,
            max_target_len: MAX_TARGET_LEN,
            ..Seq2SeqConfig::default()
        },
        specials,
    )?;
    let loop_cfg = cfg.loop_config(train.len())?;
    let loaded = cloze_models::load_pretrained(&base, tch::Device::Cpu)
        .with_context(|| format!("loading {}", base.display()))?;
    if loaded.report.mlm_head != HeadStatus::Loaded {
        bail!(
            "{} has no trained masked-LM head: seq2seq fine-tuning predicts target tokens with it \
             (pretrain with `cloze pretrain --config unilmv2-tiny` or start from a BertForMaskedLM)",
            base.display()
        );
    }
    let model = BertPretrainer {
        vs: loaded.vs,
        model: loaded.model,
        config: loaded.config,
        precision: cfg.run.precision,
    };

    // 2. The run directory, then the loop.
    if let Some(guard) = &out_guard {
        lock = Some(run_dir::start(guard, &run_dir, &run_kind(), RUN_FILES)?);
    }
    eprintln!(
        "fine-tuning for generation on {} pairs for {} steps (sources up to {max_source} tokens, \
         targets up to {MAX_TARGET_LEN})",
        train.len(),
        loop_cfg.run.max_steps
    );
    let eval = dev
        .as_ref()
        .map(|d| Seq2SeqEval::new(d, &builder, cfg.run.seed, cfg.eval.batch_size));
    let source = Seq2SeqSource::new(train, builder, cfg.run.seed);
    let result = train_and_export(
        &model,
        loop_cfg,
        resuming,
        &run_dir,
        &base,
        cfg.task.dev.is_some(),
        &source,
        eval.as_ref().map(|e| e as &dyn HeldOut),
    )
    .map(|done| match done.best {
        Some((step, loss)) => println!(
            "lowest dev loss {loss:.4} at step {step}; model (HuggingFace BertForMaskedLM, \
             with tokenizer): {}",
            done.model_dir.display()
        ),
        None => println!(
            "model of the last step (HuggingFace BertForMaskedLM, with tokenizer): {}",
            done.model_dir.display()
        ),
    });
    drop(lock);
    drop(out_guard);
    result
}
