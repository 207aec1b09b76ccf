//! Knowledge-graph triples for link prediction (MLMLM, Clouatre et al.
//! 2021): the tab-separated `head<TAB>relation<TAB>tail` split files of the
//! small benchmark graphs (`umls`, `nations`, `kinships` as pykeen ships
//! them), their entity and relation vocabularies, readable names, the known
//! answers a filtered ranking removes, and which entities a split never saw
//! in training.
//!
//! Ids are assigned in sorted name order over all three splits, so they do
//! not depend on the order of the lines or on which split a name first
//! appears in.
//!
//! ```
//! use cloze_text::kg::{KnowledgeGraph, Split};
//!
//! let g = KnowledgeGraph::from_texts(
//!     "virus\tcauses\tdisease_or_syndrome\n",
//!     "bacterium\tcauses\tdisease_or_syndrome\n",
//!     "fungus\tcauses\tdisease_or_syndrome\n",
//! )?;
//! assert_eq!(g.entities, ["bacterium", "disease_or_syndrome", "fungus", "virus"]);
//! assert_eq!(g.entity_text(1), "disease or syndrome");
//! // Filtering knows every head that causes disease, from all splits.
//! assert_eq!(g.known_answers().heads_of(0, 1).map(|h| h.len()), Some(3));
//! assert_eq!(g.unseen_in_training(Split::Test), [2]);
//! # Ok::<(), cloze_text::error::Error>(())
//! ```

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result};

/// One triple as ids into [`KnowledgeGraph::entities`] and
/// [`KnowledgeGraph::relations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Triple {
    /// The head entity.
    pub head: u32,
    /// The relation.
    pub relation: u32,
    /// The tail entity.
    pub tail: u32,
}

/// Which split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `train.txt`.
    Train,
    /// `valid.txt`.
    Valid,
    /// `test.txt`.
    Test,
}

impl Split {
    /// The file name of the split.
    pub fn file(self) -> &'static str {
        match self {
            Split::Train => "train.txt",
            Split::Valid => "valid.txt",
            Split::Test => "test.txt",
        }
    }
}

/// A graph with its three splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeGraph {
    /// Entity names as the files spell them, in id order (sorted).
    pub entities: Vec<String>,
    /// Relation names as the files spell them, in id order (sorted).
    pub relations: Vec<String>,
    /// Training triples in file order.
    pub train: Vec<Triple>,
    /// Validation triples in file order.
    pub valid: Vec<Triple>,
    /// Test triples in file order.
    pub test: Vec<Triple>,
}

/// The raw string triples of one split file.
type RawTriples = Vec<(String, String, String)>;

fn parse_split(text: &str, path: &Path) -> Result<RawTriples> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = |reason: String| Error::Format {
            path: path.to_path_buf(),
            line: i as u64 + 1,
            reason,
        };
        if fields.len() != 3 {
            return Err(bad(format!(
                "expected head<TAB>relation<TAB>tail, found {} field(s)",
                fields.len()
            )));
        }
        if fields.iter().any(|f| f.trim().is_empty()) {
            return Err(bad("an empty head, relation or tail".into()));
        }
        out.push((
            fields[0].trim().to_owned(),
            fields[1].trim().to_owned(),
            fields[2].trim().to_owned(),
        ));
    }
    if out.is_empty() {
        return Err(Error::Format {
            path: path.to_path_buf(),
            line: 0,
            reason: "no triples".into(),
        });
    }
    Ok(out)
}

impl KnowledgeGraph {
    /// Reads `train.txt`, `valid.txt` and `test.txt` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |split: Split| -> Result<RawTriples> {
            let path = dir.join(split.file());
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            parse_split(&text, &path)
        };
        Ok(Self::from_raw(
            read(Split::Train)?,
            read(Split::Valid)?,
            read(Split::Test)?,
        ))
    }

    /// A graph from the text of its three split files (tests, examples).
    pub fn from_texts(train: &str, valid: &str, test: &str) -> Result<Self> {
        let p = |name: &str| Path::new(name).to_path_buf();
        Ok(Self::from_raw(
            parse_split(train, &p("train.txt"))?,
            parse_split(valid, &p("valid.txt"))?,
            parse_split(test, &p("test.txt"))?,
        ))
    }

    fn from_raw(train: RawTriples, valid: RawTriples, test: RawTriples) -> Self {
        let all = || train.iter().chain(&valid).chain(&test);
        let entities: BTreeSet<&str> = all()
            .flat_map(|(h, _, t)| [h.as_str(), t.as_str()])
            .collect();
        let relations: BTreeSet<&str> = all().map(|(_, r, _)| r.as_str()).collect();
        let entity_id: HashMap<&str, u32> = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (*e, i as u32))
            .collect();
        let relation_id: HashMap<&str, u32> = relations
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, i as u32))
            .collect();
        let ids = |raw: &RawTriples| -> Vec<Triple> {
            raw.iter()
                .map(|(h, r, t)| Triple {
                    head: entity_id[h.as_str()],
                    relation: relation_id[r.as_str()],
                    tail: entity_id[t.as_str()],
                })
                .collect()
        };
        KnowledgeGraph {
            train: ids(&train),
            valid: ids(&valid),
            test: ids(&test),
            entities: entities.into_iter().map(str::to_owned).collect(),
            relations: relations.into_iter().map(str::to_owned).collect(),
        }
    }

    /// The triples of `split`.
    pub fn split(&self, split: Split) -> &[Triple] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    /// The readable text of an entity ([`readable_name`]).
    pub fn entity_text(&self, id: u32) -> String {
        self.entities
            .get(id as usize)
            .map(|e| readable_name(e))
            .unwrap_or_default()
    }

    /// The readable text of a relation ([`readable_name`]).
    pub fn relation_text(&self, id: u32) -> String {
        self.relations
            .get(id as usize)
            .map(|r| readable_name(r))
            .unwrap_or_default()
    }

    /// Every true answer of every query over all three splits: what the
    /// filtered setting removes from a ranking (Bordes et al. 2013).
    pub fn known_answers(&self) -> KnownAnswers {
        let mut known = KnownAnswers::default();
        for t in self.train.iter().chain(&self.valid).chain(&self.test) {
            known
                .tails
                .entry((t.head, t.relation))
                .or_default()
                .insert(t.tail);
            known
                .heads
                .entry((t.relation, t.tail))
                .or_default()
                .insert(t.head);
        }
        known
    }

    /// Entities of `split` that no training triple mentions, sorted.
    pub fn unseen_in_training(&self, split: Split) -> Vec<u32> {
        let seen: HashSet<u32> = self.train.iter().flat_map(|t| [t.head, t.tail]).collect();
        let unseen: BTreeSet<u32> = self
            .split(split)
            .iter()
            .flat_map(|t| [t.head, t.tail])
            .filter(|e| !seen.contains(e))
            .collect();
        unseen.into_iter().collect()
    }
}

/// The true answers of head and tail queries ([`KnowledgeGraph::known_answers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownAnswers {
    tails: HashMap<(u32, u32), HashSet<u32>>,
    heads: HashMap<(u32, u32), HashSet<u32>>,
}

impl KnownAnswers {
    /// Every tail `t` with `(head, relation, t)` in the graph.
    pub fn tails_of(&self, head: u32, relation: u32) -> Option<&HashSet<u32>> {
        self.tails.get(&(head, relation))
    }

    /// Every head `h` with `(h, relation, tail)` in the graph.
    pub fn heads_of(&self, relation: u32, tail: u32) -> Option<&HashSet<u32>> {
        self.heads.get(&(relation, tail))
    }
}

/// A name as words: underscores and hyphens become spaces, camel case and
/// letter-digit boundaries are split, and the result is lower case with
/// single spaces (`"acquired_abnormality"` -> `"acquired abnormality"`,
/// `"relBookTranslations"` -> `"rel book translations"`, `"person100"` ->
/// `"person 100"`).
pub fn readable_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 4);
    let mut prev: Option<char> = None;
    for c in raw.chars() {
        let c = if c == '_' || c == '-' { ' ' } else { c };
        if let Some(p) = prev {
            let boundary = (p.is_lowercase() && c.is_uppercase())
                || (p.is_alphabetic() && c.is_ascii_digit())
                || (p.is_ascii_digit() && c.is_alphabetic());
            if boundary {
                out.push(' ');
            }
        }
        out.extend(c.to_lowercase());
        prev = Some(c);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TRAIN: &str = "b\tlikes\ta\na\tlikes\tc\n\nc\tpart_of\tb\n";
    const VALID: &str = "a\tlikes\tb\n";
    const TEST: &str = "d\tpart_of\ta\r\n";

    #[test]
    fn ids_follow_sorted_names_and_splits_keep_file_order() {
        let g = KnowledgeGraph::from_texts(TRAIN, VALID, TEST).unwrap();
        assert_eq!(g.entities, ["a", "b", "c", "d"]);
        assert_eq!(g.relations, ["likes", "part_of"]);
        let t = |h, r, t| Triple {
            head: h,
            relation: r,
            tail: t,
        };
        assert_eq!(g.train, [t(1, 0, 0), t(0, 0, 2), t(2, 1, 1)]);
        assert_eq!(g.valid, [t(0, 0, 1)]);
        assert_eq!(g.test, [t(3, 1, 0)]);
        assert_eq!(g.relation_text(1), "part of");
        // The order of the lines does not change the ids.
        let swapped =
            KnowledgeGraph::from_texts("a\tlikes\tc\nc\tpart_of\tb\nb\tlikes\ta\n", VALID, TEST)
                .unwrap();
        assert_eq!(swapped.entities, g.entities);
        assert_eq!(swapped.train.len(), 3);
    }

    #[test]
    fn known_answers_span_all_splits() {
        let g = KnowledgeGraph::from_texts(TRAIN, VALID, TEST).unwrap();
        let k = g.known_answers();
        let tails: BTreeSet<u32> = k.tails_of(0, 0).unwrap().iter().copied().collect();
        assert_eq!(tails, BTreeSet::from([1, 2])); // a likes c (train), a likes b (valid)
        let heads: BTreeSet<u32> = k.heads_of(1, 0).unwrap().iter().copied().collect();
        assert_eq!(heads, BTreeSet::from([3]));
        assert!(k.tails_of(3, 0).is_none());
        assert_eq!(g.unseen_in_training(Split::Test), [3]);
        assert!(g.unseen_in_training(Split::Valid).is_empty());
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let e = KnowledgeGraph::from_texts("a\tb\n", VALID, TEST).unwrap_err();
        assert_eq!(
            e.to_string(),
            "train.txt:1: expected head<TAB>relation<TAB>tail, found 2 field(s)"
        );
        let e = KnowledgeGraph::from_texts(TRAIN, "x\t\ty\n", TEST).unwrap_err();
        assert!(e.to_string().starts_with("valid.txt:1: an empty"), "{e}");
        let e = KnowledgeGraph::from_texts(TRAIN, VALID, "\n\n").unwrap_err();
        assert_eq!(e.to_string(), "test.txt:0: no triples");
    }

    #[test]
    fn names_read_as_words() {
        assert_eq!(
            readable_name("acquired_abnormality"),
            "acquired abnormality"
        );
        assert_eq!(
            readable_name("relBookTranslations"),
            "rel book translations"
        );
        assert_eq!(readable_name("person100"), "person 100");
        assert_eq!(readable_name("intergovorgs3"), "intergovorgs 3");
        assert_eq!(readable_name("__x--Y_"), "x y");
        assert_eq!(readable_name("USA"), "usa");
    }
}
