//! Fill a `[MASK]` with a HuggingFace BERT checkpoint: `cloze-models` loads it,
//! `cloze-eval` predicts through the [`MaskedLm`] interface.
//!
//! ```text
//! cargo run -p cloze-eval --example fill_mask [CHECKPOINT_DIR] [TEXT WITH [MASK]]
//! ```
//!
//! The directory defaults to the tiny test fixture of `cloze-models`. When it holds a
//! `tokenizer.json` the text (default: "the capital of france is [MASK] .") is
//! tokenized with it and candidates are printed as tokens; the fixture has no
//! tokenizer (its 96 ids are not words), so a fixed id sequence is filled instead
//! and candidates are printed as ids.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cloze_eval::{fill_mask, FillMaskOptions, MaskedLm, ModelTokenizer};
use cloze_models::{load_pretrained, HeadStatus};
use tch::Device;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../cloze-models/tests/fixtures/hf-tiny-bert")
        },
        PathBuf::from,
    );
    let text: Vec<String> = args.collect();
    let text = if text.is_empty() {
        "the capital of france is [MASK] .".to_string()
    } else {
        text.join(" ")
    };

    let loaded = load_pretrained(&dir, Device::Cpu)
        .with_context(|| format!("loading the checkpoint in {}", dir.display()))?;
    if loaded.report.mlm_head != HeadStatus::Loaded {
        bail!(
            "{} has no trained MLM head (cls.predictions.*): its predictions would be noise",
            dir.display()
        );
    }
    // Any masked LM will do from here on: the functions take `&dyn MaskedLm`.
    let model: &dyn MaskedLm = &loaded.model;

    let tokenizer = dir.join("tokenizer.json");
    let (shown, seq, opts, tok) = if tokenizer.is_file() {
        let max_len = usize::try_from(model.max_positions())?;
        let tok = ModelTokenizer::from_dir(&dir, max_len)?;
        let seq = tok
            .encode_batch(&[text.as_str()])?
            .pop()
            .context("the tokenizer returned no sequence")?;
        let opts = FillMaskOptions::for_tokenizer(&tok)?;
        (text, seq, opts, Some(tok))
    } else {
        // The fixture's ids: [PAD]=0 [CLS]=2 [SEP]=3 [MASK]=4, then plain ids.
        let seq = vec![2, 17, 23, 4, 31, 3];
        (
            format!("ids {seq:?} (no tokenizer.json in {})", dir.display()),
            seq,
            FillMaskOptions::new(4, 0),
            None,
        )
    };
    let predictions = fill_mask(model, &[seq], &opts)?;

    println!("{shown}");
    for prediction in &predictions[0] {
        println!("  [MASK] at token {}:", prediction.position);
        for c in &prediction.candidates {
            let name = match &tok {
                Some(tok) => tok.id_to_token(c.token_id),
                None => format!("id {}", c.token_id),
            };
            println!("    {name:<16} {:.4}", c.probability);
        }
    }
    Ok(())
}
