//! `cloze tokenizer train`, `cloze data prepare` and `cloze data inspect` from the
//! command line, on a corpus the test writes itself: the happy path with masking
//! statistics, `--add-tokens` growing the saved tokenizer, and bad input failing
//! with a clear message, a non-zero exit and nothing left behind.

use std::path::Path;
use std::process::{Command, Output};

fn cloze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloze"))
        .arg("-q")
        .args(args)
        .output()
        .expect("run cloze")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn write_corpus(path: &Path) {
    let words = [
        "people", "nation", "congress", "freedom", "treaty", "commerce", "union", "liberty",
    ];
    let mut text = String::new();
    for d in 0..40 {
        for s in 0..6 {
            let a = words[(d + s) % words.len()];
            let b = words[(d * 3 + s * 5) % words.len()];
            text.push_str(&format!(
                "The {a} of this {b} shall endure, said the speaker {d}.\n"
            ));
        }
        text.push('\n');
    }
    std::fs::write(path, text).expect("write corpus");
}

fn assert_fails_with(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure, got success");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

/// Writes the test corpus and trains a small tokenizer on it; returns (corpus, tokenizer dir).
fn corpus_and_tokenizer(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let corpus = dir.join("corpus.txt");
    write_corpus(&corpus);
    let tok = dir.join("tok");
    let out = cloze(&[
        "tokenizer",
        "train",
        "--corpus",
        p(&corpus),
        "--vocab-size",
        "200",
        "--out",
        p(&tok),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tok.join("tokenizer.json").exists() && tok.join("vocab.txt").exists());
    (corpus, tok)
}

#[test]
fn train_prepare_inspect_with_masking_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let shards = dir.path().join("shards");
    let out = cloze(&[
        "data",
        "prepare",
        "--corpus",
        p(&corpus),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&shards),
        "--holdout-fraction",
        "0.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wwm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/masking/wwm.toml");
    let out = cloze(&[
        "data",
        "inspect",
        p(&shards),
        "--examples",
        "1",
        "--masking",
        p(&wwm),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("train:") && text.contains("eval:"), "{text}");
    assert!(
        text.contains("masking") && text.contains("train instances"),
        "{text}"
    );
    assert!(text.contains("[CLS]"), "no decoded example: {text}");
}

#[test]
fn bad_input_fails_cleanly_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, tok) = corpus_and_tokenizer(dir.path());

    // Each bad corpus must fail naming the problem and leave no output directory.
    let prepare_fails = |corpus: &Path, out_name: &str, needle: &str| {
        let out_dir = dir.path().join(out_name);
        let out = cloze(&[
            "data",
            "prepare",
            "--corpus",
            p(corpus),
            "--tokenizer",
            p(&tok),
            "--out",
            p(&out_dir),
        ]);
        assert_fails_with(&out, needle);
        assert!(!out_dir.exists(), "{out_name} was left behind");
    };
    prepare_fails(&dir.path().join("nope.txt"), "out-missing", "nope.txt");
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"fine line\nbroken \xff\xfe line\n").expect("write");
    prepare_fails(&bad, "out-bad", "bad.txt");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, b"").expect("write");
    prepare_fails(&empty, "out-empty", "empty");

    let out = cloze(&["data", "inspect", p(&dir.path().join("no-shards"))]);
    assert_fails_with(&out, "no-shards");

    let out = cloze(&["data", "fetch", "no-such-dataset"]);
    assert_fails_with(&out, "no-such-dataset");
}

#[test]
fn prepare_with_added_tokens_saves_a_grown_tokenizer_and_uses_the_new_ids() {
    use cloze_text::{ShardSet, Split, TextTokenizer, WordBoundaries};

    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let original = TextTokenizer::from_path(&tok).expect("trained tokenizer");
    let before = original.vocab_size();
    // The trained vocabulary splits the domain word into several pieces.
    let split = original
        .encode("gerrymandering", WordBoundaries::Tokenizer)
        .expect("encode");
    assert!(split.ids.len() > 1, "{:?}", split.ids);

    // The corpus mentions the domain word, capitalised too (the tokenizer lower-cases).
    let mut text = std::fs::read_to_string(&corpus).expect("corpus");
    for d in 0..5 {
        text.push_str(&format!(
            "Gerrymandering of this union shall end, said the speaker {d}.\n\
             The people oppose gerrymandering.\n\n"
        ));
    }
    let domain = dir.path().join("domain.txt");
    std::fs::write(&domain, &text).expect("write corpus");
    let tokens = dir.path().join("tokens.txt");
    // `people` is in the vocabulary and the repeat is dropped: two new tokens.
    std::fs::write(
        &tokens,
        "# domain words\ngerrymandering\n\npeople\nfilibuster\ngerrymandering\n",
    )
    .expect("write tokens");
    let shards = dir.path().join("shards");
    let out = cloze(&[
        "data",
        "prepare",
        "--corpus",
        p(&domain),
        "--tokenizer",
        p(&tok),
        "--add-tokens",
        p(&tokens),
        "--out",
        p(&shards),
        "--mode",
        "packed",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "added 2 tokens from {} (2 skipped: already in the vocabulary or listed twice); \
         vocabulary size {before} -> {}",
        tokens.display(),
        before + 2
    );
    assert!(stdout.contains(&report), "{stdout}");

    // The saved tokenizer is the original vocabulary plus exactly the new tokens.
    let saved = TextTokenizer::from_json_file(&shards.join("tokenizer.json")).expect("saved");
    assert_eq!(saved.vocab_size(), before + 2);
    for id in 0..before {
        assert_eq!(saved.id_to_token(id), original.id_to_token(id), "id {id}");
    }
    assert_eq!(saved.id_to_token(before).as_deref(), Some("gerrymandering"));
    assert_eq!(saved.id_to_token(before + 1).as_deref(), Some("filibuster"));
    assert_eq!(
        saved.special_tokens().all_special,
        original.special_tokens().all_special
    );

    // The shards hold the word as its single new id, never its old pieces.
    let train = ShardSet::open_split(&shards, Split::Train).expect("shards");
    assert_eq!(train.special_tokens().vocab_size, before + 2);
    let mut found = 0;
    for i in 0..train.len() {
        let inst = train.get(i).expect("instance");
        found += inst.tokens.iter().filter(|&&t| t == before).count();
        assert!(
            !inst.tokens.windows(split.ids.len()).any(|w| w == split.ids),
            "instance {i} holds the old pieces"
        );
        assert!(
            !inst.tokens.contains(&(before + 1)),
            "filibuster is not in the corpus"
        );
    }
    assert_eq!(found, 10, "each of the 10 mentions is one token");
    // `data inspect` reloads the saved tokenizer and checks its hash.
    let out = cloze(&["data", "inspect", p(&shards), "--examples", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("(vocab {})", before + 2)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A bad token list is refused by file and line, and nothing is written.
    std::fs::write(&tokens, "gerrymandering\nspike protein\n").expect("write tokens");
    let refused = dir.path().join("refused");
    let out = cloze(&[
        "data",
        "prepare",
        "--corpus",
        p(&domain),
        "--tokenizer",
        p(&tok),
        "--add-tokens",
        p(&tokens),
        "--out",
        p(&refused),
    ]);
    assert_fails_with(&out, "tokens.txt:2");
    assert!(!refused.exists(), "refused output was created");
}
