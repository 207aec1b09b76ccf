//! The `chinese-poetry` dataset: Tang couplets for the generation task "given
//! the first line of a couplet, write the second", and the Tang poems as a
//! pretraining corpus. Part of the dataset layer ([`crate::datasets`] registers
//! it and runs its converter); the generation metrics and baselines that read
//! its files live in `cloze-eval`.
//!
//! **Source.** `npm pack chinese-poetry@2.0.1`, members
//! `package/dist/quantangshi/poet.tang.N.json` (the Complete Tang Poems,
//! traditional script), read in numeric order of `N` (0, 1000, 2000, ...).
//! A poem's index (the `poem` field below) is its position in that order,
//! from 0: 57,607 poems. The Song poems beside them (`poet.song.*`) are not
//! used.
//!
//! **The couplet filter.** Each entry of a poem's `paragraphs` is one line of
//! the poem as printed, e.g. `秦川雄帝宅，函谷壯皇居。`. An entry is a couplet
//! when it ends in `。`, the rest splits at `，` into exactly two halves, both
//! halves consist of CJK ideographs only ([`cloze_text::words::is_cjk`]) and
//! they have the same length, 5 or 7 characters (regulated five- and
//! seven-character verse). The first half is the `source`, the second the
//! `target` ([`split_couplet`]). Of 268,283 entries, 236,591 are couplets
//! (160,262 of five characters, 76,329 of seven, from 53,719 poems); the
//! others are 13,916 entries with more or fewer than two halves, 7,982 with
//! halves of another equal length, 5,194 holding a character that is not an
//! ideograph (variant notes, blanks), 3,972 with halves of different lengths
//! and 628 not ending in `。`.
//!
//! **The split.** Whole poems go to one split, by a hash of the poem's text
//! (its paragraphs concatenated), so a poem the collection holds twice (it
//! attributes some poems to two authors) lands in one split:
//! `bucket = u64_be(sha256(seed_le64 ‖ "chinese-poetry" ‖ 0x00 ‖ text)[0..8])
//! mod 1000`, test below 10, valid below 20, train otherwise, with the seed
//! [`SPLIT_SEED`] (the rule of [`crate::tasks`]). Two further rules keep the
//! evaluation splits clean and small:
//!
//! 1. A valid or test couplet is dropped when its source or its target also
//!    occurs as a half-line anywhere in a train poem (every paragraph of a
//!    train poem cut at `，。？！；：、`), so no evaluation line can be looked
//!    up in the training data (7-8% of them; stock phrases recur in Tang
//!    verse).
//! 2. Valid and test keep at most [`MAX_EVAL_COUPLETS`] couplets each: their
//!    poems, in order of the full 64-bit hash (ties: poem index), are taken
//!    whole until the next one would pass the cap. The poems left over are in
//!    no split and not in the corpus.
//!
//! Result (pinned by the network test `tests/datasets.rs`): train 231,628
//! couplets from 52,596 poems; valid 1,997 from 452 poems (169 dropped as
//! overlapping, 327 by the cap); test 1,999 from 459 poems (213 overlapping,
//! 258 over the cap); `poems.txt` holds the 56,395 train poems (with or
//! without a couplet). `couplets.stats.json` records these counts.
//!
//! **Files.**
//! - `couplets.jsonl`: every couplet, in poem order: `{"source", "target",
//!   "poem"}` ([`Couplet`]).
//! - `train.jsonl`, `valid.jsonl`, `test.jsonl`: the same records, by split,
//!   in poem order.
//! - `poems.txt`: a pretraining corpus (BERT's text format: one paragraph
//!   entry per line, a blank line between poems) of the train poems only,
//!   every paragraph whether or not it is a couplet; a model pretrained on
//!   it has not seen a valid or test poem.
//! - `couplets.stats.json`: [`CoupletStats`], the counts above and the rule.
//!
//! ```
//! use cloze_fetch::poetry::{split_couplet, Split, SPLIT_SEED};
//!
//! assert_eq!(split_couplet("秦川雄帝宅，函谷壯皇居。"), Some(("秦川雄帝宅", "函谷壯皇居")));
//! assert_eq!(split_couplet("藹周廬兮，冒霜停雪，以茂以悅。"), None);
//! let (split, _hash) = Split::of_poem(SPLIT_SEED, "秦川雄帝宅，函谷壯皇居。");
//! assert!(Split::ALL.contains(&split));
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use cloze_text::words::is_cjk;

use crate::archive::read_members;
use crate::error::{Error, Result};

/// The seed of the split hash. Changing it changes every split: it is fixed.
pub const SPLIT_SEED: u64 = 13;
/// The most couplets valid and test each hold.
pub const MAX_EVAL_COUPLETS: usize = 2_000;
/// Buckets (of 1000) below which a poem is in test.
pub const TEST_BUCKETS: u64 = 10;
/// Buckets (of 1000) below which a poem is in valid (and not in test).
pub const VALID_BUCKETS: u64 = 20;
/// The characters a half-line ends at, for the overlap rule.
pub const HALF_LINE_BREAKS: &[char] = &['，', '。', '？', '！', '；', '：', '、'];

const MEMBER_PREFIX: &str = "package/dist/quantangshi/poet.tang.";

/// One couplet: the line given and the line to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Couplet {
    /// The first half, without punctuation.
    pub source: String,
    /// The second half, without punctuation.
    pub target: String,
    /// The poem's index in the collection (see the module docs).
    pub poem: usize,
}

/// The split a poem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training poems.
    Train,
    /// Validation poems.
    Valid,
    /// Test poems.
    Test,
}

impl Split {
    /// Every split, in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// The split of a poem whose text is `text`, and the full 64-bit hash
    /// that orders the evaluation poems for the cap.
    pub fn of_poem(seed: u64, text: &str) -> (Split, u64) {
        let mut key = Vec::with_capacity(8 + 16 + text.len());
        key.extend_from_slice(&seed.to_le_bytes());
        key.extend_from_slice(b"chinese-poetry");
        key.push(0);
        key.extend_from_slice(text.as_bytes());
        let digest = cloze_fs::digest::sha256_hex(&key);
        let hash = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
        let split = match hash % 1000 {
            b if b < TEST_BUCKETS => Split::Test,
            b if b < VALID_BUCKETS => Split::Valid,
            _ => Split::Train,
        };
        (split, hash)
    }

    /// The split's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.jsonl",
            Split::Valid => "valid.jsonl",
            Split::Test => "test.jsonl",
        }
    }
}

/// The two halves of a paragraph entry that is a couplet (see the module
/// docs for the rule), or `None`.
pub fn split_couplet(paragraph: &str) -> Option<(&str, &str)> {
    classify(paragraph).ok()
}

/// Why a paragraph entry is not a couplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    NoFinalStop,
    NotTwoHalves,
    NotIdeographs,
    UnequalHalves,
    OtherLength,
}

fn classify(paragraph: &str) -> std::result::Result<(&str, &str), Reject> {
    let body = paragraph.strip_suffix('。').ok_or(Reject::NoFinalStop)?;
    let mut parts = body.split('，');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Reject::NotTwoHalves);
    };
    if !a.chars().chain(b.chars()).all(is_cjk) {
        return Err(Reject::NotIdeographs);
    }
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la != lb {
        return Err(Reject::UnequalHalves);
    }
    if la != 5 && la != 7 {
        return Err(Reject::OtherLength);
    }
    Ok((a, b))
}

/// What `couplets.stats.json` records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoupletStats {
    /// Poems read.
    pub poems: usize,
    /// Paragraph entries read.
    pub paragraphs: usize,
    /// Couplets kept by the filter.
    pub couplets: usize,
    /// Couplets of five characters a half.
    pub five: usize,
    /// Couplets of seven characters a half.
    pub seven: usize,
    /// Entries rejected, by reason.
    pub rejected: BTreeMap<String, usize>,
    /// Couplets per split file.
    pub split: BTreeMap<String, usize>,
    /// Poems per split file.
    pub split_poems: BTreeMap<String, usize>,
    /// Valid and test couplets dropped because a half occurs in a train poem.
    pub dropped_overlap: BTreeMap<String, usize>,
    /// Valid and test couplets left out by the cap.
    pub dropped_cap: BTreeMap<String, usize>,
    /// Poems in the corpus `poems.txt`.
    pub corpus_poems: usize,
    /// The split rule in words.
    pub rule: String,
    /// The split seed.
    pub seed: u64,
}

#[derive(Deserialize)]
struct Poem {
    #[serde(default)]
    paragraphs: Vec<String>,
}

/// Reads the Tang poems of the archive in numeric file order.
fn read_poems(archive: &Path) -> Result<Vec<Vec<String>>> {
    let found = read_members(archive, &|n| {
        n.starts_with(MEMBER_PREFIX) && n.ends_with(".json")
    })?;
    let mut files = Vec::with_capacity(found.len());
    for (name, bytes) in found {
        let number = name
            .strip_prefix(MEMBER_PREFIX)
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Error::Format {
                path: archive.join(&name),
                line: 0,
                reason: "expected a file name poet.tang.<number>.json".into(),
            })?;
        files.push((number, name, bytes));
    }
    if files.is_empty() {
        return Err(Error::MissingMember {
            archive: archive.to_path_buf(),
            member: format!("{MEMBER_PREFIX}*.json"),
        });
    }
    files.sort_by_key(|(n, _, _)| *n);
    let mut poems = Vec::new();
    for (_, name, bytes) in files {
        let batch: Vec<Poem> = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: archive.join(&name),
            source,
        })?;
        poems.extend(batch.into_iter().map(|p| {
            p.paragraphs
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }));
    }
    Ok(poems)
}

/// The files [`convert`] writes, as bytes, so the rules can be tested
/// without an archive.
pub(crate) struct Converted {
    pub(crate) couplets: Vec<Couplet>,
    pub(crate) splits: [Vec<Couplet>; 3],
    pub(crate) corpus: String,
    pub(crate) stats: CoupletStats,
}

/// Applies the filter, the split, the overlap rule and the cap to poems
/// (each a list of paragraph entries), in collection order.
pub(crate) fn build(poems: &[Vec<String>], seed: u64, cap: usize) -> Converted {
    let mut stats = CoupletStats {
        poems: poems.len(),
        seed,
        rule: format!(
            "bucket = u64_be(sha256(seed_le64 || \"chinese-poetry\" || 0x00 || poem text)[0..8]) \
             mod 1000; test < {TEST_BUCKETS} <= valid < {VALID_BUCKETS} <= train; valid/test \
             couplets with a half occurring as a half-line of a train poem dropped; valid and \
             test capped at {cap} couplets, whole poems in hash order"
        ),
        ..CoupletStats::default()
    };
    let mut couplets = Vec::new();
    // Per poem: its split, hash and the range of its couplets.
    let mut meta = Vec::with_capacity(poems.len());
    for (index, paragraphs) in poems.iter().enumerate() {
        let first = couplets.len();
        for p in paragraphs {
            stats.paragraphs += 1;
            match classify(p) {
                Ok((a, b)) => {
                    if a.chars().count() == 5 {
                        stats.five += 1;
                    } else {
                        stats.seven += 1;
                    }
                    couplets.push(Couplet {
                        source: a.to_string(),
                        target: b.to_string(),
                        poem: index,
                    });
                }
                Err(r) => {
                    *stats.rejected.entry(format!("{r:?}")).or_default() += 1;
                }
            }
        }
        let (split, hash) = Split::of_poem(seed, &paragraphs.concat());
        meta.push((split, hash, first..couplets.len()));
    }
    stats.couplets = couplets.len();

    let mut train_halves: HashSet<&str> = HashSet::new();
    let mut corpus = String::new();
    for (paragraphs, (split, _, _)) in poems.iter().zip(&meta) {
        if *split != Split::Train || paragraphs.is_empty() {
            continue;
        }
        for p in paragraphs {
            train_halves.extend(p.split(HALF_LINE_BREAKS).filter(|h| !h.is_empty()));
        }
        if !corpus.is_empty() {
            corpus.push('\n');
        }
        for p in paragraphs {
            corpus.push_str(p);
            corpus.push('\n');
        }
        stats.corpus_poems += 1;
    }

    let mut splits: [Vec<Couplet>; 3] = Default::default();
    for (slot, split) in Split::ALL.into_iter().enumerate() {
        let name = split.file_name().to_string();
        let mut chosen: Vec<(usize, Vec<&Couplet>)> = Vec::new();
        if split == Split::Train {
            for (index, (s, _, range)) in meta.iter().enumerate() {
                if *s == Split::Train && !range.is_empty() {
                    chosen.push((index, couplets[range.clone()].iter().collect()));
                }
            }
        } else {
            let mut candidates: Vec<(u64, usize, Vec<&Couplet>)> = Vec::new();
            let mut overlap = 0;
            for (index, (s, hash, range)) in meta.iter().enumerate() {
                if *s != split {
                    continue;
                }
                let kept: Vec<&Couplet> = couplets[range.clone()]
                    .iter()
                    .filter(|c| {
                        let leaks = train_halves.contains(c.source.as_str())
                            || train_halves.contains(c.target.as_str());
                        overlap += usize::from(leaks);
                        !leaks
                    })
                    .collect();
                if !kept.is_empty() {
                    candidates.push((*hash, index, kept));
                }
            }
            stats.dropped_overlap.insert(name.clone(), overlap);
            candidates.sort_by_key(|(hash, index, _)| (*hash, *index));
            let mut total = 0;
            let mut over = 0;
            for (_, index, kept) in candidates {
                if over == 0 && total + kept.len() <= cap {
                    total += kept.len();
                    chosen.push((index, kept));
                } else {
                    over += kept.len();
                }
            }
            stats.dropped_cap.insert(name.clone(), over);
            chosen.sort_by_key(|(index, _)| *index);
        }
        stats.split_poems.insert(name.clone(), chosen.len());
        splits[slot] = chosen
            .into_iter()
            .flat_map(|(_, cs)| cs.into_iter().cloned())
            .collect();
        stats.split.insert(name, splits[slot].len());
    }
    Converted {
        couplets,
        splits,
        corpus,
        stats,
    }
}

fn jsonl(rows: &[Couplet], path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rows.len() * 64);
    for row in rows {
        serde_json::to_writer(&mut out, row).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The converter of the `chinese-poetry` dataset: reads the Tang poems of the
/// npm pack and writes the files of the module docs into `out`.
pub(crate) fn convert(archive: &Path, out: &Path) -> Result<()> {
    let poems = read_poems(archive)?;
    let converted = build(&poems, SPLIT_SEED, MAX_EVAL_COUPLETS);
    if converted.couplets.is_empty() {
        return Err(Error::Format {
            path: archive.to_path_buf(),
            line: 0,
            reason: "no couplet found in the Tang poems".into(),
        });
    }
    tracing::info!(
        poems = converted.stats.poems,
        couplets = converted.stats.couplets,
        train = converted.splits[0].len(),
        valid = converted.splits[1].len(),
        test = converted.splits[2].len(),
        "chinese-poetry converted"
    );
    let path = out.join("couplets.jsonl");
    crate::datasets::write_file(&path, &jsonl(&converted.couplets, &path)?)?;
    for (split, rows) in Split::ALL.into_iter().zip(&converted.splits) {
        let path = out.join(split.file_name());
        crate::datasets::write_file(&path, &jsonl(rows, &path)?)?;
    }
    crate::datasets::write_file(&out.join("poems.txt"), converted.corpus.as_bytes())?;
    let path = out.join("couplets.stats.json");
    let mut stats = serde_json::to_vec_pretty(&converted.stats).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    stats.push(b'\n');
    crate::datasets::write_file(&path, &stats)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn poem(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_filter_keeps_five_and_seven_character_couplets_only() {
        assert_eq!(
            split_couplet("秦川雄帝宅，函谷壯皇居。"),
            Some(("秦川雄帝宅", "函谷壯皇居"))
        );
        assert_eq!(
            classify("雲日隱層闕風，煙出綺疎雲日。"),
            Err(Reject::OtherLength),
            "six characters a half is neither five nor seven"
        );
        assert_eq!(
            split_couplet("黃河遠上白雲間，一片孤城萬仞山。"),
            Some(("黃河遠上白雲間", "一片孤城萬仞山"))
        );
        assert_eq!(classify("秦川雄帝宅，函谷壯皇居"), Err(Reject::NoFinalStop));
        assert_eq!(classify("秦川雄帝宅。"), Err(Reject::NotTwoHalves));
        assert_eq!(
            classify("藹周廬兮，冒霜停雪，以茂以悅。"),
            Err(Reject::NotTwoHalves)
        );
        assert_eq!(
            classify("秦川雄帝□，函谷壯皇居。"),
            Err(Reject::NotIdeographs)
        );
        assert_eq!(
            classify("秦川雄帝，函谷壯皇居。"),
            Err(Reject::UnequalHalves)
        );
        assert_eq!(classify("秦川雄，函谷壯。"), Err(Reject::OtherLength));
    }

    #[test]
    fn the_split_is_a_pure_function_of_the_text() {
        let a = Split::of_poem(SPLIT_SEED, "秦川雄帝宅，函谷壯皇居。");
        assert_eq!(a, Split::of_poem(SPLIT_SEED, "秦川雄帝宅，函谷壯皇居。"));
        // Over many texts the buckets come out near 1% / 1% / 98%.
        let mut counts = [0usize; 3];
        for i in 0..20_000 {
            let (s, _) = Split::of_poem(SPLIT_SEED, &format!("poem {i}"));
            counts[s as usize] += 1;
        }
        assert!(counts[1] > 120 && counts[1] < 290, "{counts:?}");
        assert!(counts[2] > 120 && counts[2] < 290, "{counts:?}");
    }

    /// Poems whose split is forced by searching for texts that hash there.
    fn poem_in(split: Split, stem: &str, lines: &[&str]) -> Vec<String> {
        for salt in 0.. {
            let mut p = poem(lines);
            p.push(format!("{stem}{salt}"));
            if Split::of_poem(SPLIT_SEED, &p.concat()).0 == split {
                return p;
            }
        }
        unreachable!()
    }

    #[test]
    fn evaluation_couplets_never_share_a_line_with_train_poems_and_are_capped() {
        let train = poem_in(Split::Train, "t", &["白日依山盡，黃河入海流。"]);
        let leak = poem_in(
            Split::Test,
            "x",
            &["白日依山盡，欲窮千里目。", "更上一層樓，春眠不覺曉。"],
        );
        let clean_a = poem_in(Split::Test, "a", &["處處聞啼鳥，夜來風雨聲。"]);
        let clean_b = poem_in(
            Split::Test,
            "b",
            &["花落知多少，床前明月光。", "疑是地上霜，舉頭望明月。"],
        );
        let valid = poem_in(Split::Valid, "v", &["低頭思故鄉，千山鳥飛絕。"]);
        let poems = vec![train, leak, clean_a, clean_b, valid];
        let c = build(&poems, SPLIT_SEED, 2);
        assert_eq!(c.couplets.len(), 7);
        assert_eq!(c.splits[0].len(), 1);
        assert_eq!(c.splits[1].len(), 1);
        assert_eq!(c.splits[1][0].poem, 4);
        // The leaking couplet (its source is a train half-line) is dropped;
        // the cap of 2 takes whole poems in hash order and stops at the first
        // that does not fit.
        assert_eq!(c.stats.dropped_overlap["test.jsonl"], 1);
        let test = &c.splits[2];
        assert!(test.len() <= 2);
        assert!(test.iter().all(|x| x.source != "白日依山盡"));
        assert_eq!(
            c.stats.dropped_cap["test.jsonl"] + test.len(),
            4,
            "{:?}",
            c.stats
        );
        // Test is written in poem order.
        assert!(test.windows(2).all(|w| w[0].poem <= w[1].poem));
        // The corpus is the train poem alone.
        assert_eq!(c.stats.corpus_poems, 1);
        assert!(c.corpus.starts_with("白日依山盡，黃河入海流。\n"));
        assert!(!c.corpus.contains("\n\n"));
    }

    #[test]
    fn corpus_separates_poems_with_a_blank_line() {
        let a = poem_in(Split::Train, "a", &["秦川雄帝宅，函谷壯皇居。"]);
        let b = poem_in(Split::Train, "b", &["綺殿千尋起，離宮百雉餘。"]);
        let c = build(&[a.clone(), b.clone()], SPLIT_SEED, 10);
        let docs: Vec<&str> = c.corpus.split("\n\n").collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].lines().collect::<Vec<_>>(), a);
        assert_eq!(c.splits[0].len(), 2);
        assert_eq!(c.splits[0][1].poem, 1);
    }
}
