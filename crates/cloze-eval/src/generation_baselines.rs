//! Source/target pairs for generation and the baselines a generation model
//! is reported against, in the evaluation layer. The pairs are the JSONL of
//! `cloze-fetch`'s `chinese-poetry` dataset (`train.jsonl`, `valid.jsonl`,
//! `test.jsonl`: `{"source", "target", "poem"}`) or any file of
//! `{"source", "target"}` lines; the baselines need no model, and their
//! outputs are scored by [`crate::generation_metrics`] like a model's.
//!
//! - [`copy_source_baseline`]: the prediction is the source itself (for
//!   couplets: the right length, and the characters couplets often repeat).
//! - [`nearest_neighbour_baseline`]: the target of the training pair whose
//!   source shares the most characters with the test source (a multiset
//!   overlap: each character counts as often as it occurs in both; white
//!   space ignored); ties go to the lower training index, and a source that
//!   shares nothing gets the target of training pair 0. An inverted index
//!   from characters to training pairs keeps it to the pairs that share
//!   something.
//! - [`aligned_char_baseline`]: each source character replaced by the target
//!   character most often found at the same position of a training pair of
//!   equal length (a character-by-character "translation table": the two
//!   lines of a couplet correspond position by position, 白日 against 黃河);
//!   ties go to the lower code point, and a character never seen in a
//!   training source becomes the most frequent target character.
//!
//! ```
//! use cloze_eval::generation_baselines::{nearest_neighbour_baseline, Pair};
//!
//! let train = vec![
//!     Pair::new("白日依山盡", "黃河入海流"),
//!     Pair::new("欲窮千里目", "更上一層樓"),
//! ];
//! let guess = nearest_neighbour_baseline(&train, &["千里江陵一日還"]);
//! assert_eq!(guess, ["更上一層樓"]);
//! ```

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One source/target pair (other fields of a JSONL line are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// The input text.
    pub source: String,
    /// The text to generate.
    pub target: String,
}

impl Pair {
    /// A pair from two strings.
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        Pair {
            source: source.into(),
            target: target.into(),
        }
    }
}

/// Reads JSONL pairs (`{"source": .., "target": .., ...}` a line; blank
/// lines skipped). A file without a pair is an error.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut pairs = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let pair: Pair = serde_json::from_str(&line).map_err(|e| Error::BadExample {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!("expected {{\"source\": .., \"target\": ..}}: {e}"),
        })?;
        pairs.push(pair);
    }
    if pairs.is_empty() {
        return Err(Error::NoExamples {
            path: path.to_path_buf(),
        });
    }
    Ok(pairs)
}

/// The copy baseline: each prediction is its source.
pub fn copy_source_baseline<S: AsRef<str>>(sources: &[S]) -> Vec<String> {
    sources.iter().map(|s| s.as_ref().to_owned()).collect()
}

/// Character counts of a text, white space ignored, sorted by character.
fn char_counts(text: &str) -> Vec<(char, u32)> {
    let mut counts: HashMap<char, u32> = HashMap::new();
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        *counts.entry(c).or_insert(0) += 1;
    }
    let mut v: Vec<(char, u32)> = counts.into_iter().collect();
    v.sort_unstable();
    v
}

/// For each query, the index of the training pair whose source shares the
/// most characters with it and that overlap (see the module docs for the
/// rule and ties). With no training pairs every answer is `None`.
pub fn nearest_neighbours<S: AsRef<str>>(
    train: &[Pair],
    queries: &[S],
) -> Vec<Option<(usize, u32)>> {
    if train.is_empty() {
        return vec![None; queries.len()];
    }
    let mut index: HashMap<char, Vec<(u32, u32)>> = HashMap::new();
    for (i, pair) in train.iter().enumerate() {
        for (c, n) in char_counts(&pair.source) {
            index.entry(c).or_default().push((i as u32, n));
        }
    }
    let mut scores = vec![0u32; train.len()];
    let mut touched: Vec<u32> = Vec::new();
    queries
        .iter()
        .map(|q| {
            for (c, k) in char_counts(q.as_ref()) {
                for &(i, n) in index.get(&c).map(Vec::as_slice).unwrap_or(&[]) {
                    if scores[i as usize] == 0 {
                        touched.push(i);
                    }
                    scores[i as usize] += k.min(n);
                }
            }
            let mut best = (0usize, 0u32);
            for &i in &touched {
                let s = scores[i as usize];
                if s > best.1 || (s == best.1 && (i as usize) < best.0) {
                    best = (i as usize, s);
                }
                scores[i as usize] = 0;
            }
            touched.clear();
            Some(best)
        })
        .collect()
}

/// The nearest-neighbour baseline: for each source, the target of its
/// nearest training pair ([`nearest_neighbours`]); empty strings when there
/// is no training pair.
pub fn nearest_neighbour_baseline<S: AsRef<str>>(train: &[Pair], sources: &[S]) -> Vec<String> {
    nearest_neighbours(train, sources)
        .into_iter()
        .map(|n| n.map(|(i, _)| train[i].target.clone()).unwrap_or_default())
        .collect()
}

/// The position-aligned character table of [`aligned_char_baseline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlignedChars {
    best: HashMap<char, char>,
    fallback: Option<char>,
}

impl AlignedChars {
    /// Counts aligned characters over the training pairs whose source and
    /// target have the same number of non-space characters.
    pub fn fit(train: &[Pair]) -> Self {
        let mut pairs: HashMap<(char, char), u64> = HashMap::new();
        let mut targets: HashMap<char, u64> = HashMap::new();
        for p in train {
            let s: Vec<char> = p.source.chars().filter(|c| !c.is_whitespace()).collect();
            let t: Vec<char> = p.target.chars().filter(|c| !c.is_whitespace()).collect();
            if s.len() != t.len() {
                continue;
            }
            for (&a, &b) in s.iter().zip(&t) {
                *pairs.entry((a, b)).or_insert(0) += 1;
                *targets.entry(b).or_insert(0) += 1;
            }
        }
        // Highest count first, then the lower character.
        let better =
            |new: (u64, char), old: (u64, char)| new.0 > old.0 || (new.0 == old.0 && new.1 < old.1);
        let mut best: HashMap<char, (u64, char)> = HashMap::new();
        for ((a, b), n) in pairs {
            match best.get(&a) {
                Some(&old) if !better((n, b), old) => {}
                _ => {
                    best.insert(a, (n, b));
                }
            }
        }
        let mut fallback: Option<(u64, char)> = None;
        for (b, n) in targets {
            if fallback.is_none_or(|old| better((n, b), old)) {
                fallback = Some((n, b));
            }
        }
        AlignedChars {
            best: best.into_iter().map(|(a, (_, b))| (a, b)).collect(),
            fallback: fallback.map(|(_, b)| b),
        }
    }

    /// The prediction for one source (white space dropped; with an empty
    /// table the source itself).
    pub fn predict(&self, source: &str) -> String {
        source
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| self.best.get(&c).copied().or(self.fallback).unwrap_or(c))
            .collect()
    }
}

/// The aligned-character baseline (see the module docs).
pub fn aligned_char_baseline<S: AsRef<str>>(train: &[Pair], sources: &[S]) -> Vec<String> {
    let table = AlignedChars::fit(train);
    sources.iter().map(|s| table.predict(s.as_ref())).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_neighbour_shares_the_most_characters_and_ties_go_low() {
        let train = vec![
            Pair::new("甲乙丙丁戊", "t0"),
            Pair::new("甲乙己庚辛", "t1"),
            Pair::new("甲甲甲子丑", "t2"),
            Pair::new("乙甲寅卯辰", "t3"),
        ];
        let queries = ["甲乙", "甲甲甲", "己庚辛", "天地人", "甲 甲"];
        let n = nearest_neighbours(&train, &queries);
        // 甲乙: pairs 0, 1 and 3 share two; the lowest index wins.
        assert_eq!(n[0], Some((0, 2)));
        // 甲甲甲: pair 2 holds 甲 three times; the others once.
        assert_eq!(n[1], Some((2, 3)));
        assert_eq!(n[2], Some((1, 3)));
        // Nothing shared: pair 0 with overlap 0.
        assert_eq!(n[3], Some((0, 0)));
        // White space is ignored; 甲 twice: pair 2 shares two.
        assert_eq!(n[4], Some((2, 2)));
        assert_eq!(
            nearest_neighbour_baseline(&train, &queries),
            ["t0", "t2", "t1", "t0", "t2"]
        );
        assert_eq!(nearest_neighbour_baseline(&[], &["甲"]), [""]);
    }

    #[test]
    fn the_neighbour_matches_a_brute_force_search() {
        let chars: Vec<char> = "天地玄黃宇宙洪荒日月".chars().collect();
        let text = |seed: usize, len: usize| -> String {
            (0..len)
                .map(|j| chars[(seed * 7 + j * j * 3 + seed / 3) % chars.len()])
                .collect()
        };
        let train: Vec<Pair> = (0..200)
            .map(|i| Pair::new(text(i, 5), format!("{i}")))
            .collect();
        let queries: Vec<String> = (0..50).map(|i| text(i * 13 + 5, 7)).collect();
        let fast = nearest_neighbours(&train, &queries);
        for (q, got) in queries.iter().zip(fast) {
            let overlap = |s: &str| -> u32 {
                let a = char_counts(q);
                let b: HashMap<char, u32> = char_counts(s).into_iter().collect();
                a.iter()
                    .map(|(c, k)| (*k).min(*b.get(c).unwrap_or(&0)))
                    .sum()
            };
            let mut best = (0, overlap(&train[0].source));
            for (i, p) in train.iter().enumerate() {
                let o = overlap(&p.source);
                if o > best.1 {
                    best = (i, o);
                }
            }
            assert_eq!(got, Some(best), "{q}");
        }
    }

    #[test]
    fn aligned_characters_take_the_most_frequent_partner() {
        let train = vec![
            Pair::new("白日", "黃河"),
            Pair::new("白雲", "青山"),
            Pair::new("白日", "黃沙"),
            Pair::new("紅日", "綠河"),
            Pair::new("長短句", "不"),
        ];
        // 白 -> 黃 (twice) over 青 (once); 日 -> 河 (twice) over 沙; 雲 ->
        // 山; 紅 -> 綠; an unseen character -> the most frequent target
        // character (河 and 黃 twice each: the lower code point, 河 U+6CB3).
        assert_eq!(
            aligned_char_baseline(&train, &["白日", "紅雲", "天"]),
            ["黃河", "綠山", "河"]
        );
        // The unequal pair is not counted: 長 is unseen.
        assert_eq!(AlignedChars::fit(&train).predict("長"), "河");
        assert_eq!(AlignedChars::fit(&[]).predict("天 地"), "天地");
    }

    #[test]
    fn copy_baseline_copies() {
        assert_eq!(copy_source_baseline(&["秦川雄帝宅"]), ["秦川雄帝宅"]);
    }

    #[test]
    fn pairs_are_read_from_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(
            f,
            r#"{{"source":"秦川雄帝宅","target":"函谷壯皇居","poem":0}}"#
        )
        .unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"source":"a","target":"b"}}"#).unwrap();
        drop(f);
        let pairs = read_pairs(&path).unwrap();
        assert_eq!(
            pairs,
            [Pair::new("秦川雄帝宅", "函谷壯皇居"), Pair::new("a", "b")]
        );
        std::fs::write(&path, "{\"source\": 1}\n").unwrap();
        assert!(matches!(
            read_pairs(&path),
            Err(Error::BadExample { line: 1, .. })
        ));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(read_pairs(&path), Err(Error::NoExamples { .. })));
    }
}
