//! all-MiniLM-L6-v2's tokenizer on the first 2,000 lines of the SOTU corpus,
//! both fetched through `cloze_fetch::datasets`:
//!
//! - a checkpoint directory with only its BERT `vocab.txt` (and a
//!   `tokenizer_config.json` giving its casing) tokenizes the text exactly as
//!   its `tokenizer.json` does, through both `TextTokenizer` (data
//!   preparation) and `ModelTokenizer` (inference);
//! - with domain words added (`TextTokenizer::with_added_tokens`), the fast
//!   path still gives exactly what `tokenizers` gives.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use cloze_eval::ModelTokenizer;
use cloze_text::tokenizer::{BertCasing, CasingSource, TextTokenizer};
use cloze_text::WordBoundaries;

fn fetched(name: &str) -> PathBuf {
    let root = cloze_fetch::datasets::cache_root().unwrap();
    cloze_fetch::datasets::fetch(name, &root).unwrap().dir
}

/// The first 2,000 non-blank lines of SOTU.
fn sotu_lines(sotu: &str) -> Vec<&str> {
    let lines: Vec<&str> = sotu
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(2000)
        .collect();
    assert_eq!(lines.len(), 2000);
    lines
}

/// MiniLM's `vocab.txt` alone in a new directory, with `tokenizer_config`
/// as its `tokenizer_config.json` when given.
fn vocab_only(minilm: &Path, tokenizer_config: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(minilm.join("vocab.txt"), dir.path().join("vocab.txt")).unwrap();
    if let Some(text) = tokenizer_config {
        std::fs::write(dir.path().join("tokenizer_config.json"), text).unwrap();
    }
    dir
}

/// Each line's ids with `[CLS]`/`[SEP]`, through the HF tokenizer `TextTokenizer` wraps.
fn with_specials(tok: &TextTokenizer, lines: &[&str]) -> Vec<Vec<u32>> {
    lines
        .iter()
        .map(|l| tok.inner().encode(*l, true).unwrap().get_ids().to_vec())
        .collect()
}

#[test]
#[ignore = "network: fetches all-MiniLM-L6-v2 and the SOTU corpus"]
fn a_vocab_txt_only_directory_tokenizes_sotu_like_its_tokenizer_json_twin() {
    let minilm = fetched("minilm");
    let sotu = std::fs::read_to_string(fetched("sotu").join("sotu.txt")).unwrap();
    let lines = sotu_lines(&sotu);
    assert!(
        lines
            .iter()
            .filter(|l| l.chars().any(char::is_uppercase))
            .count()
            > 1000,
        "the text must exercise lower-casing"
    );

    let dir = vocab_only(&minilm, Some(r#"{"do_lower_case": true}"#));
    let casing = BertCasing::for_vocab(&dir.path().join("vocab.txt")).unwrap();
    assert_eq!(casing.lowercase_from, CasingSource::TokenizerConfig);
    assert!(casing.lowercase);

    // TextTokenizer: the fast path's ids and word ids, and the ids with
    // special tokens through `tokenizers`.
    let json = TextTokenizer::from_path(&minilm).unwrap();
    let vocab = TextTokenizer::from_path(dir.path()).unwrap();
    assert!(json.source().ends_with("tokenizer.json"));
    assert!(vocab.source().ends_with("vocab.txt"));
    assert!(vocab.has_fast_path());
    assert_eq!(vocab.special_tokens(), json.special_tokens());
    let mut tokens = 0;
    for line in &lines {
        let a = json.encode(line, WordBoundaries::Tokenizer).unwrap();
        let b = vocab.encode(line, WordBoundaries::Tokenizer).unwrap();
        assert_eq!(a, b, "{line}");
        tokens += a.ids.len();
    }
    assert!(tokens > 50_000, "only {tokens} tokens compared");
    let expected = with_specials(&json, &lines);
    assert_eq!(with_specials(&vocab, &lines), expected);
    assert!(expected
        .iter()
        .all(|ids| ids.first() == Some(&101) && ids.last() == Some(&102)));

    // ModelTokenizer: the directory as inference commands load it.
    let json = ModelTokenizer::from_dir(&minilm, 512).unwrap();
    let vocab_tok = ModelTokenizer::from_dir(dir.path(), 512).unwrap();
    assert_eq!(
        (vocab_tok.cls, vocab_tok.sep, vocab_tok.pad, vocab_tok.mask),
        (json.cls, json.sep, json.pad, json.mask)
    );
    let a = json.tokenize_batch(&lines).unwrap();
    let b = vocab_tok.tokenize_batch(&lines).unwrap();
    assert_eq!(a, b);
    let ids: Vec<Vec<u32>> = a
        .into_iter()
        .map(|t| t.untruncated.unwrap_or(t.ids))
        .collect();
    assert_eq!(ids, expected, "ModelTokenizer and TextTokenizer agree");

    // The config is what decides: told the vocabulary is cased, the same
    // directory tokenizes differently.
    let cased = vocab_only(&minilm, Some(r#"{"do_lower_case": false}"#));
    let cased = TextTokenizer::from_path(cased.path()).unwrap();
    let differ = with_specials(&cased, &lines)
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .count();
    assert!(differ > 1000, "only {differ} lines differ when cased");

    // With no configuration the guess from the vocabulary is right too:
    // MiniLM's pieces include `ℝ`, an upper-case letter without a
    // lower-case form, which does not make the vocabulary cased.
    let bare = vocab_only(&minilm, None);
    let casing = BertCasing::for_vocab(&bare.path().join("vocab.txt")).unwrap();
    assert_eq!(
        (casing.lowercase, casing.lowercase_from),
        (true, CasingSource::VocabGuess)
    );
    let bare = TextTokenizer::from_path(bare.path()).unwrap();
    assert_eq!(with_specials(&bare, &lines), expected);
}

#[test]
#[ignore = "network: fetches all-MiniLM-L6-v2 and the SOTU corpus"]
fn added_tokens_keep_the_fast_path_exact_on_sotu() {
    let minilm = fetched("minilm");
    let sotu = std::fs::read_to_string(fetched("sotu").join("sotu.txt")).unwrap();
    let lines = sotu_lines(&sotu);
    let tok = TextTokenizer::from_path(&minilm).unwrap();
    // Words of the early addresses that MiniLM splits into pieces, one
    // capitalised as the text has it, one across punctuation, and two it
    // already has (skipped).
    let domain: Vec<String> = [
        "savages",
        "requisite",
        "Barbary",
        "amity",
        "tranquillity",
        "heretofore",
        "fellow-citizens",
        "plenipotentiary",
        "depredations",
        "commerce",
        "treasury",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (grown, added) = tok.with_added_tokens(&domain).unwrap();
    assert_eq!(added, 9, "commerce and treasury are in the vocabulary");
    assert!(grown.has_fast_path());
    let (mut with_added, mut added_ids) = (0, 0);
    for line in &lines {
        let fast = grown.encode(line, WordBoundaries::Tokenizer).unwrap();
        let reference = grown
            .encode_reference(line, WordBoundaries::Tokenizer)
            .unwrap();
        assert_eq!(fast, reference, "{line}");
        let n = reference
            .ids
            .iter()
            .filter(|&&i| i >= tok.vocab_size())
            .count();
        added_ids += n;
        with_added += usize::from(n > 0);
        let (ids, word_ids) = grown
            .encode_ids_words(line, WordBoundaries::Tokenizer)
            .unwrap();
        assert_eq!((ids, word_ids), (reference.ids, reference.word_ids));
    }
    assert!(with_added > 100, "{with_added} lines hold an added token");
    assert!(
        with_added < 1900,
        "{with_added}: most lines must keep the fast path"
    );
    assert!(added_ids > with_added);
}
