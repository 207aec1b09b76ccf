//! The small review fixes, through the real binary: one rule for the global
//! `--threads` against `run.threads` in `cloze pretrain`, and `cloze
//! mask-demo` on the user's own text with a trained tokenizer.

mod common;

use std::path::Path;

use cloze_train::config::TrainConfig;
use common::{cloze, fails_with, ok, prepare, pretrain, train_tokenizer};

/// The `run.threads` a run saved in its config.toml.
fn saved_threads(run: &Path) -> i32 {
    TrainConfig::load(&run.join("config.toml"))
        .expect("saved config.toml loads")
        .run
        .threads
}

/// The thread count recorded in the run's newest checkpoint.
fn checkpoint_threads(run: &Path) -> i32 {
    let (_, dir) = cloze_train::checkpoint::latest(run).expect("a checkpoint");
    cloze_train::checkpoint::verify(&dir)
        .expect("intact checkpoint")
        .state
        .threads
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const OVERRIDE_WARNING: &str = "overrides run.threads";

#[test]
fn global_threads_overrides_run_threads_with_a_warning_and_is_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);

    // --threads 1 against a config saying 2 (the last --set wins over SMALL's;
    // the global flag may follow the subcommand): the flag wins, is saved,
    // and a warning names both values.
    let run = dir.path().join("explicit");
    let out = ok(
        pretrain(&data, &run, 2)
            .args(["--set", "run.threads=2", "--threads", "1"])
            .output()
            .expect("spawn"),
        "pretrain --threads 1",
    );
    let err = stderr(&out);
    assert!(
        err.contains("--threads 1 overrides run.threads = 2 of the config"),
        "no override warning:\n{err}"
    );
    assert_eq!(saved_threads(&run), 1);
    assert_eq!(checkpoint_threads(&run), 1);

    // Without --threads the config's value applies, silently.
    let run = dir.path().join("config");
    let out = ok(
        pretrain(&data, &run, 2)
            .args(["--set", "run.threads=2"])
            .output()
            .expect("spawn"),
        "pretrain without --threads",
    );
    assert!(!stderr(&out).contains(OVERRIDE_WARNING), "{}", stderr(&out));
    assert_eq!(saved_threads(&run), 2);
    assert_eq!(checkpoint_threads(&run), 2);

    // --threads equal to run.threads: nothing to warn about.
    let run2 = dir.path().join("agree");
    let out = ok(
        pretrain(&data, &run2, 1)
            .args(["--set", "run.threads=2", "--threads", "2"])
            .output()
            .expect("spawn"),
        "pretrain --threads 2",
    );
    assert!(!stderr(&out).contains(OVERRIDE_WARNING), "{}", stderr(&out));
    assert_eq!(saved_threads(&run2), 2);

    // On --resume the flag overrides the run's saved value (an allowed
    // change), and the checkpoints written from then on record it.
    let out = ok(
        cloze()
            .args(["--threads", "1", "pretrain", "--resume"])
            .arg(&run)
            .args(["--max-steps", "4"])
            .output()
            .expect("spawn"),
        "pretrain --resume --threads 1",
    );
    let err = stderr(&out);
    assert!(
        err.contains("--threads 1 overrides run.threads = 2 of the run's saved config.toml"),
        "no override warning on resume:\n{err}"
    );
    assert_eq!(saved_threads(&run), 1);
    assert_eq!(checkpoint_threads(&run), 1);
}

#[test]
fn threads_rule_is_in_the_help() {
    let out = ok(
        cloze()
            .args(["pretrain", "--help"])
            .output()
            .expect("spawn"),
        "pretrain --help",
    );
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--threads"), "{help}");
    assert!(help.contains("run.threads"), "{help}");
}

/// `cloze mask-demo` with the cache pointed at an empty directory, so the
/// output does not depend on what this machine has fetched.
fn mask_demo(cache: &Path) -> std::process::Command {
    let mut c = cloze();
    c.env("CLOZE_CACHE_DIR", cache).arg("mask-demo");
    c
}

fn wwm() -> &'static str {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/masking/wwm.toml"
    )
}

#[test]
fn mask_demo_masks_the_users_text_with_a_trained_tokenizer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = train_tokenizer(dir.path(), 200);
    let input = dir.path().join("more.txt");
    std::fs::write(&input, "\nour citizens must defend our liberty\n\n").expect("write");
    let out = ok(
        mask_demo(&dir.path().join("cache"))
            .arg("--tokenizer")
            .arg(&tok)
            .arg("--masking")
            .arg(wwm())
            .arg("--input")
            .arg(&input)
            .args(["--rate", "0.5", "--samples", "2"])
            .arg("The people shall protect the union")
            .output()
            .expect("spawn"),
        "mask-demo --tokenizer",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tokens of the tokenizer"), "{text}");
    assert!(!text.contains("built by this demo"), "{text}");
    // Only the one scheme asked for, with the rate asked for.
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(headers.len(), 1, "{text}");
    assert!(headers[0].ends_with("wwm.toml"), "{text}");
    // Both sentences, as written (the tokenizer lower-cases; the demo shows
    // the sentence's own characters), then masked twice each.
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"The people shall protect the union"),
        "{text}"
    );
    assert!(
        lines.contains(&"our citizens must defend our liberty"),
        "{text}"
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("e0 ")).count(), 2);
    assert_eq!(lines.iter().filter(|l| l.starts_with("e1 ")).count(), 2);
    assert!(text.contains("[MASK]"), "half the words masked: {text}");
}

#[test]
fn mask_demo_without_a_tokenizer_builds_a_vocabulary_from_the_users_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(
        mask_demo(dir.path())
            .args(["--samples", "1", "--rate", "0.4"])
            .arg("a brave little sentence of my own")
            .output()
            .expect("spawn"),
        "mask-demo TEXT",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("built by this demo"), "{text}");
    // The four built-in schemes, each showing the user's sentence and not the built-in ones.
    assert_eq!(text.lines().filter(|l| l.starts_with("== ")).count(), 4);
    assert_eq!(
        text.lines()
            .filter(|l| l.trim() == "a brave little sentence of my own")
            .count(),
        4,
        "{text}"
    );
    assert!(!text.contains("使用语言模型"), "{text}");
    assert!(text.contains("40%"), "labels show the rate used: {text}");
}

#[test]
fn mask_demo_without_text_shows_the_built_in_sentences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(
        mask_demo(dir.path())
            .args(["--samples", "1"])
            .output()
            .expect("spawn"),
        "mask-demo",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().filter(|l| l.starts_with("== ")).count(), 4);
    assert!(
        text.contains("   使用语言模型来预测下一个词的概率\n"),
        "{text}"
    );
    assert!(text
        .contains("   language models predict the probability of the next word in a sentence\n"));
}

#[test]
fn mask_demo_refuses_bad_inputs_before_printing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let missing = dir.path().join("no-such-tokenizer");
    let out = mask_demo(&cache)
        .arg("--tokenizer")
        .arg(&missing)
        .output()
        .expect("spawn");
    fails_with(&out, "no-such-tokenizer");

    // A dataset name resolves through the cache, which here is empty.
    let out = mask_demo(&cache)
        .args(["--tokenizer", "minilm"])
        .output()
        .expect("spawn");
    fails_with(&out, "cloze data fetch minilm");

    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "\n  \n").expect("write");
    let out = mask_demo(&cache)
        .arg("--input")
        .arg(&blank)
        .output()
        .expect("spawn");
    fails_with(&out, "holds no text");
    assert!(out.stdout.is_empty(), "nothing printed before the refusal");

    let out = mask_demo(&cache)
        .arg("--masking")
        .arg(dir.path().join("nope.toml"))
        .output()
        .expect("spawn");
    fails_with(&out, "nope.toml");
}
