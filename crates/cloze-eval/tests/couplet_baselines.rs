//! The couplet task's baselines on the real `chinese-poetry` test split
//! (fetched through `npm pack` into the user's cache, so ignored by default
//! and run by `cargo xtask test`): the figures a generation model is
//! reported against.

#![allow(clippy::unwrap_used)]

use anyhow::Result;
use cloze_eval::generation_baselines::{
    aligned_char_baseline, copy_source_baseline, nearest_neighbour_baseline, read_pairs,
};
use cloze_eval::generation_metrics::{score_generation, BleuOptions};
use cloze_fetch::datasets::{cache_root, fetch};

#[test]
#[ignore = "network: npm pack chinese-poetry"]
fn couplet_baselines_on_the_test_split() -> Result<()> {
    let dir = fetch("chinese-poetry", &cache_root()?)?.dir;
    let train = read_pairs(&dir.join("train.jsonl"))?;
    let test = read_pairs(&dir.join("test.jsonl"))?;
    let sources: Vec<&str> = test.iter().map(|p| p.source.as_str()).collect();
    let targets: Vec<&str> = test.iter().map(|p| p.target.as_str()).collect();
    let options = BleuOptions::default();

    let copy = score_generation(&copy_source_baseline(&sources), &targets, &options)?;
    let nn = score_generation(
        &nearest_neighbour_baseline(&train, &sources),
        &targets,
        &options,
    )?;
    println!(
        "copy source:       {}  exact {:.4}  char-F1 {:.4}",
        copy.bleu, copy.exact_match, copy.char_f1
    );
    println!(
        "nearest neighbour: {}  exact {:.4}  char-F1 {:.4}",
        nn.bleu, nn.exact_match, nn.char_f1
    );
    let aligned = score_generation(&aligned_char_baseline(&train, &sources), &targets, &options)?;
    println!(
        "aligned characters: {}  exact {:.4}  char-F1 {:.4}",
        aligned.bleu, aligned.exact_match, aligned.char_f1
    );
    assert_eq!(copy.count, 1_999);
    // The pinned data give pinned figures.
    let figures = |s: &cloze_eval::generation_metrics::GenerationScores| {
        (format!("{:.2}", s.bleu.score), format!("{:.4}", s.char_f1))
    };
    assert_eq!(figures(&copy), ("0.00".into(), "0.0085".into()));
    assert_eq!(figures(&nn), ("0.33".into(), "0.0226".into()));
    assert_eq!(figures(&aligned), ("0.00".into(), "0.0569".into()));
    // The split drops every test couplet whose lines occur in a train poem,
    // so neither baseline can find the answer.
    assert_eq!(copy.exact_match, 0.0);
    assert_eq!(nn.exact_match, 0.0);
    // Same length as the reference: no brevity penalty for the copy.
    assert!(copy.bleu.brevity_penalty > 0.999);
    Ok(())
}
