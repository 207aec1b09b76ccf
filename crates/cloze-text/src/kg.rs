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
//! A graph directory may also hold `entities.tsv` ([`ENTITY_TEXTS_FILE`]):
//! one line `name<TAB>label<TAB>description` per entity, for graphs whose
//! names are codes (the WordNet graph's `02084071n` is labelled `dog` and
//! described by its gloss). An entity it does not list keeps its
//! [`readable_name`] and has no description; a graph without the file (the
//! pykeen graphs) reads exactly as before.
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

/// The optional file of entity labels and descriptions in a graph directory.
pub const ENTITY_TEXTS_FILE: &str = "entities.tsv";

/// The label and description `entities.tsv` gives one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntityText {
    label: String,
    description: Option<String>,
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
    /// The texts of `entities.tsv` by entity id, `None` where the file gives
    /// none (or there is no file); empty until texts are attached. Private so
    /// that it always has one slot per entity or none at all.
    texts: Vec<Option<EntityText>>,
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

/// Parses the text of an `entities.tsv` against the sorted entity names of
/// the graph: one slot per entity, filled where a line names it.
fn parse_entity_texts(
    text: &str,
    path: &Path,
    entities: &[String],
) -> Result<Vec<Option<EntityText>>> {
    let mut texts: Vec<Option<EntityText>> = vec![None; entities.len()];
    // The line each entity was first given on, to name both lines of a duplicate.
    let mut given_on: HashMap<usize, u64> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| Error::Format {
            path: path.to_path_buf(),
            line: line_no,
            reason,
        };
        // A line whose description is empty may have lost its trailing tab to
        // an editor; two fields read as a label without a description.
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 2 && fields.len() != 3 {
            return Err(bad(format!(
                "expected name<TAB>label<TAB>description, found {} field(s)",
                fields.len()
            )));
        }
        let name = fields[0].trim();
        let label = fields[1].trim();
        if name.is_empty() {
            return Err(bad("an empty entity name".into()));
        }
        if label.is_empty() {
            return Err(bad(format!("an empty label for entity {name:?}")));
        }
        // Entity names are sorted by byte order, as `String`'s `Ord` compares.
        let id = entities
            .binary_search_by(|e| e.as_str().cmp(name))
            .map_err(|_| bad(format!("entity {name:?} occurs in no split file")))?;
        if let Some(first) = given_on.insert(id, line_no) {
            return Err(bad(format!(
                "entity {name:?} is listed twice (first on line {first})"
            )));
        }
        let description = fields
            .get(2)
            .map(|d| d.trim())
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        texts[id] = Some(EntityText {
            label: label.to_owned(),
            description,
        });
    }
    Ok(texts)
}

impl KnowledgeGraph {
    /// Reads `train.txt`, `valid.txt` and `test.txt` from `dir`, and the
    /// entity texts of `entities.tsv` when the directory has one.
    ///
    /// A malformed line of any file is an error naming the file and line, as
    /// is an `entities.tsv` line naming an entity no split file mentions or
    /// an entity listed twice.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |split: Split| -> Result<RawTriples> {
            let path = dir.join(split.file());
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            parse_split(&text, &path)
        };
        let graph = Self::from_raw(read(Split::Train)?, read(Split::Valid)?, read(Split::Test)?);
        let path = dir.join(ENTITY_TEXTS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => graph.with_entity_texts_at(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(graph),
            Err(source) => Err(Error::Io { path, source }),
        }
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

    /// The graph with the entity texts of an `entities.tsv` given as text
    /// (tests, examples); errors name the file `entities.tsv`. Texts attached
    /// before are replaced.
    ///
    /// ```
    /// use cloze_text::kg::KnowledgeGraph;
    ///
    /// let g = KnowledgeGraph::from_texts(
    ///     "02084071n\t_hypernym\t02083346n\n",
    ///     "02083346n\t_hypernym\t02075296n\n",
    ///     "02084071n\t_hypernym\t01317541n\n",
    /// )?
    /// .with_entity_texts("02084071n\tdog\ta member of the genus Canis\n02083346n\tcanine\t\n")?;
    /// assert_eq!(g.entity_text(3), "dog");
    /// assert_eq!(g.entity_description(3), Some("a member of the genus Canis"));
    /// assert_eq!(g.entity_description(2), None);
    /// // An entity the file leaves out keeps its readable name.
    /// assert_eq!(g.entity_text(0), "01317541 n");
    /// # Ok::<(), cloze_text::error::Error>(())
    /// ```
    pub fn with_entity_texts(self, text: &str) -> Result<Self> {
        self.with_entity_texts_at(text, Path::new(ENTITY_TEXTS_FILE))
    }

    fn with_entity_texts_at(mut self, text: &str, path: &Path) -> Result<Self> {
        self.texts = parse_entity_texts(text, path, &self.entities)?;
        Ok(self)
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
            texts: Vec::new(),
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

    /// The text of an entity: its label from `entities.tsv` when the graph
    /// has one for it, else its [`readable_name`]; empty for an id out of
    /// range.
    pub fn entity_text(&self, id: u32) -> String {
        match self.entity_texts(id) {
            Some(text) => text.label.clone(),
            None => self
                .entities
                .get(id as usize)
                .map(|e| readable_name(e))
                .unwrap_or_default(),
        }
    }

    /// The description `entities.tsv` gives an entity (a WordNet gloss), or
    /// `None` when it gives none, the graph has no such file or the id is out
    /// of range.
    pub fn entity_description(&self, id: u32) -> Option<&str> {
        self.entity_texts(id)?.description.as_deref()
    }

    /// Whether the graph was read with entity texts (an `entities.tsv`).
    pub fn has_entity_texts(&self) -> bool {
        !self.texts.is_empty()
    }

    fn entity_texts(&self, id: u32) -> Option<&EntityText> {
        self.texts.get(id as usize)?.as_ref()
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
    fn entity_texts_replace_names_and_add_descriptions() {
        let g = KnowledgeGraph::from_texts(TRAIN, VALID, TEST)
            .unwrap()
            .with_entity_texts("b\tBee\ta flying insect\r\n\nc\tsea\t  \nd\tdee\n")
            .unwrap();
        assert!(g.has_entity_texts());
        assert_eq!(g.entity_text(1), "Bee");
        assert_eq!(g.entity_description(1), Some("a flying insect"));
        // An empty description, with or without its tab, is no description.
        assert_eq!(
            (g.entity_text(2), g.entity_description(2)),
            ("sea".into(), None)
        );
        assert_eq!(
            (g.entity_text(3), g.entity_description(3)),
            ("dee".into(), None)
        );
        // An entity left out falls back to its readable name.
        assert_eq!(
            (g.entity_text(0), g.entity_description(0)),
            ("a".into(), None)
        );
        assert_eq!(
            (g.entity_text(9), g.entity_description(9)),
            (String::new(), None)
        );
        let plain = KnowledgeGraph::from_texts(TRAIN, VALID, TEST).unwrap();
        assert!(!plain.has_entity_texts());
        assert_eq!(plain.entity_description(1), None);
        assert_eq!(plain.entity_text(1), "b");
    }

    #[test]
    fn bad_entity_texts_name_file_and_line() {
        let g = KnowledgeGraph::from_texts(TRAIN, VALID, TEST).unwrap();
        let err = |text: &str| g.clone().with_entity_texts(text).unwrap_err().to_string();
        assert_eq!(
            err("a\tA\n\nzz\tZed\tunknown\n"),
            "entities.tsv:3: entity \"zz\" occurs in no split file"
        );
        assert_eq!(
            err("a\n"),
            "entities.tsv:1: expected name<TAB>label<TAB>description, found 1 field(s)"
        );
        assert_eq!(
            err("a\tA\tx\ty\n"),
            "entities.tsv:1: expected name<TAB>label<TAB>description, found 4 field(s)"
        );
        assert_eq!(
            err("a\t \tx\n"),
            "entities.tsv:1: an empty label for entity \"a\""
        );
        assert_eq!(err("\tA\tx\n"), "entities.tsv:1: an empty entity name");
        assert_eq!(
            err("a\tA\nb\tB\na\tA again\n"),
            "entities.tsv:3: entity \"a\" is listed twice (first on line 1)"
        );
    }

    #[test]
    fn load_reads_entities_tsv_when_present() {
        let dir = tempfile::tempdir().unwrap();
        for (split, text) in [
            (Split::Train, TRAIN),
            (Split::Valid, VALID),
            (Split::Test, TEST),
        ] {
            std::fs::write(dir.path().join(split.file()), text).unwrap();
        }
        let plain = KnowledgeGraph::load(dir.path()).unwrap();
        assert_eq!(
            plain,
            KnowledgeGraph::from_texts(TRAIN, VALID, TEST).unwrap()
        );
        assert_eq!(plain.entity_text(2), "c");

        let path = dir.path().join(ENTITY_TEXTS_FILE);
        std::fs::write(&path, "c\tsea\tsalt water\n").unwrap();
        let g = KnowledgeGraph::load(dir.path()).unwrap();
        assert_eq!(g.entity_text(2), "sea");
        assert_eq!(g.entity_description(2), Some("salt water"));
        assert_eq!(g.train, plain.train);

        std::fs::write(&path, "c\tsea\tsalt water\nq\tcue\t\n").unwrap();
        let e = KnowledgeGraph::load(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Format { line: 2, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("{}:2: entity \"q\" occurs in no split file", path.display())
        );
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
