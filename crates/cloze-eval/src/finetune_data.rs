//! Fine-tuning inputs: labelled examples read from files, their label set,
//! and their encoding into model inputs and padded batches.
//!
//! Two kinds of task, each with the file formats users already have:
//! - sequence classification ([`SeqExample`]): JSON lines `{"text": ..,
//!   "text_pair"?: .., "label"?: ..}` (a label may be a string or an integer),
//!   or TSV whose header names the `text`, `text_pair` and `label` columns;
//! - token classification ([`TagExample`]): JSON lines `{"tokens": [..],
//!   "labels": [..]}` (`"words"` works as `"tokens"`; `{"text": "..",
//!   "labels": [..]}` is one token per character, whitespace dropped), or
//!   CoNLL-style `token label` lines with a blank line between sentences.
//!
//! Labels become ids through a [`LabelSet`] fixed once (from the training
//! data, or from a checkpoint's `id2label`); an unknown label later is an
//! error naming it. Encoding follows HF's conventions so that a model
//! fine-tuned here reads inputs as transformers would: the tokenizer's
//! template (`[CLS] a [SEP] b [SEP]` for BERT) with segment ids 0/1 and
//! longest-first truncation for pairs, and for tags the label on the first
//! sub-token of each word with [`IGNORED_LABEL`] (-100) on the others.
//! [`collate`] pads examples into a [`cloze_mask::batch::Batch`], the contract
//! the trainer also reads for pretraining.
//!
//! Neighbours: the tokenizer is [`crate::ModelTokenizer`]; the scores of the
//! predictions are in [`crate::metrics`]; `cloze-train`'s `finetune` module
//! trains on the batches and the driver's `cloze finetune` and `cloze predict`
//! read the files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use cloze_mask::batch::{Batch, Targets};
use cloze_mask::IGNORED_LABEL;
use serde_json::{Map, Value};

use crate::text::{ModelTokenizer, WordIds};
use crate::{Error, Result};

/// One text (or text pair) and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqExample {
    /// The text (segment 0).
    pub text: String,
    /// The second text of a pair (segment 1), if any.
    pub text_pair: Option<String>,
    /// The label, when the file has one.
    pub label: Option<String>,
}

/// One sentence as words (or characters) and a label per word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagExample {
    /// The words, already split.
    pub words: Vec<String>,
    /// One label per word, when the file has them.
    pub labels: Option<Vec<String>>,
}

fn bad(path: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::BadExample {
        path: path.to_owned(),
        line,
        reason: reason.into(),
    }
}

/// The file's bytes; [`Error::Read`] naming it when that fails.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// The lines of a file as `(1-based line number, text)`, without line ends
/// (`\n` or `\r\n`) and without a leading byte-order mark. A line that is not
/// UTF-8 is [`Error::BadExample`] naming it.
fn lines<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<(usize, &'a str)>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // A final line end does not open another (empty) line.
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            std::str::from_utf8(raw)
                .map(|text| (i + 1, text))
                .map_err(|e| bad(path, i + 1, format!("not UTF-8 text ({e})")))
        })
        .collect()
}

/// The lowercased extension of `path`.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

fn is_json_lines(path: &Path) -> bool {
    matches!(
        extension(path).as_deref(),
        Some("jsonl" | "json" | "ndjson")
    )
}

/// A line as a JSON object, or [`Error::BadExample`] saying why not.
fn json_object(path: &Path, line: usize, text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(other) => Err(bad(
            path,
            line,
            format!("expected a JSON object, found {}", json_kind(&other)),
        )),
        Err(e) => Err(bad(path, line, format!("not valid JSON: {e}"))),
    }
}

/// What a JSON value is, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A JSON label as text: strings as they are, integers in decimal; anything
/// else (a fraction, a boolean, a list) is no label.
fn label_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Checks a label's text: an empty (or all-whitespace) label is an error.
fn nonempty_label(path: &Path, line: usize, label: String) -> Result<String> {
    if label.trim().is_empty() {
        Err(bad(path, line, "an empty label"))
    } else {
        Ok(label)
    }
}

/// Reads sequence-classification examples.
///
/// `.jsonl`, `.json` or `.ndjson`: one object per line, `{"text": ..,
/// "text_pair"?: .., "label"?: ..}`; a label may be a JSON string or integer
/// (integers become their decimal string), `null` or a missing field is no
/// label, other fields are ignored. `.tsv`: a header line naming the columns,
/// `text` required, `text_pair` and `label` optional, other columns ignored;
/// every row has the header's number of fields, and an empty `text_pair` or
/// `label` cell means none. Blank lines are skipped. With `require_labels`
/// every example must have a label (and a TSV header a `label` column).
///
/// Errors: [`Error::Read`] when the file cannot be read, [`Error::BadExample`]
/// naming the file and 1-based line of a malformed line (not JSON, no `text`,
/// a field of the wrong type, a missing label, wrong field count),
/// [`Error::NoExamples`] for a file without examples, and
/// [`Error::InvalidOption`] for another extension.
pub fn read_seq_examples(path: &Path, require_labels: bool) -> Result<Vec<SeqExample>> {
    let json = is_json_lines(path);
    if !json && extension(path).as_deref() != Some("tsv") {
        return Err(Error::InvalidOption {
            name: "input",
            reason: format!(
                "{}: sequence-classification examples are read from .jsonl, .json or .tsv files",
                path.display()
            ),
        });
    }
    let bytes = read_bytes(path)?;
    let lines = lines(path, &bytes)?;
    let mut lines = lines.into_iter().filter(|(_, l)| !l.trim().is_empty());
    let out = if json {
        lines
            .map(|(n, line)| seq_from_json(path, n, line, require_labels))
            .collect::<Result<Vec<_>>>()?
    } else {
        match lines.next() {
            Some((n, header)) => seq_from_tsv(path, n, header, lines, require_labels)?,
            None => Vec::new(),
        }
    };
    if out.is_empty() {
        return Err(Error::NoExamples {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

fn seq_from_json(path: &Path, n: usize, line: &str, require_labels: bool) -> Result<SeqExample> {
    let obj = json_object(path, n, line)?;
    let text = match obj.get("text") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(
                path,
                n,
                format!("\"text\" must be a string, not {}", json_kind(other)),
            ))
        }
        None => return Err(bad(path, n, "no \"text\" field")),
    };
    let text_pair = match obj.get("text_pair") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(bad(
                path,
                n,
                format!("\"text_pair\" must be a string, not {}", json_kind(other)),
            ))
        }
    };
    let label = match obj.get("label") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let label = label_text(v).ok_or_else(|| {
                bad(
                    path,
                    n,
                    format!("\"label\" must be a string or an integer, not {v}"),
                )
            })?;
            Some(nonempty_label(path, n, label)?)
        }
    };
    if require_labels && label.is_none() {
        return Err(bad(path, n, "no \"label\" (every example needs one here)"));
    }
    Ok(SeqExample {
        text,
        text_pair,
        label,
    })
}

fn seq_from_tsv<'a>(
    path: &Path,
    header_line: usize,
    header: &str,
    rows: impl Iterator<Item = (usize, &'a str)>,
    require_labels: bool,
) -> Result<Vec<SeqExample>> {
    let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
    let col = |name: &str| -> Result<Option<usize>> {
        let mut at = cols.iter().enumerate().filter(|(_, c)| **c == name);
        match (at.next(), at.next()) {
            (Some(_), Some(_)) => Err(bad(
                path,
                header_line,
                format!("the header names the `{name}` column twice"),
            )),
            (first, _) => Ok(first.map(|(i, _)| i)),
        }
    };
    let text_col = col("text")?.ok_or_else(|| {
        bad(
            path,
            header_line,
            format!(
                "the header names no `text` column (it has: {})",
                cols.join(", ")
            ),
        )
    })?;
    let pair_col = col("text_pair")?;
    let label_col = col("label")?;
    if require_labels && label_col.is_none() {
        return Err(bad(
            path,
            header_line,
            format!(
                "the header names no `label` column (it has: {})",
                cols.join(", ")
            ),
        ));
    }
    rows.map(|(n, line)| {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != cols.len() {
            return Err(bad(
                path,
                n,
                format!(
                    "{} tab-separated fields, but the header has {}",
                    fields.len(),
                    cols.len()
                ),
            ));
        }
        let cell = |c: Option<usize>| {
            c.and_then(|c| fields.get(c))
                .filter(|f| !f.trim().is_empty())
        };
        let label = cell(label_col).map(|l| l.trim().to_owned());
        if require_labels && label.is_none() {
            return Err(bad(
                path,
                n,
                "an empty `label` (every example needs one here)",
            ));
        }
        Ok(SeqExample {
            text: fields[text_col].to_owned(),
            text_pair: cell(pair_col).map(|s| (*s).to_owned()),
            label,
        })
    })
    .collect()
}

/// Reads token-classification examples.
///
/// `.jsonl`, `.json` or `.ndjson`: one object per line, `{"tokens": [..],
/// "labels": [..]}` (`"words"` is accepted for `"tokens"`, `"tags"` and
/// `"ner_tags"` for `"labels"`; labels may be strings or integers), or
/// `{"text": "..", "labels": [..]}`, which is one token per character (Unicode
/// scalar value) with whitespace dropped, as Chinese tagging data is written.
/// A line with an empty token list is an example with no words.
///
/// Any other extension is read CoNLL-style: one `token<whitespace>label` per
/// line, the label being the last column (columns between, such as
/// part-of-speech tags, are ignored); without `require_labels` a line with a
/// single column is a token without label (all tokens of a sentence must then
/// agree); a blank line ends a sentence; `-DOCSTART-` lines are skipped.
///
/// Errors: [`Error::Read`], [`Error::BadExample`] naming the file and 1-based
/// line (not JSON, no tokens, a missing label), [`Error::LabelCountMismatch`]
/// when a JSON example's label and token counts differ, and
/// [`Error::NoExamples`] for a file without examples.
pub fn read_tag_examples(path: &Path, require_labels: bool) -> Result<Vec<TagExample>> {
    let bytes = read_bytes(path)?;
    let lines = lines(path, &bytes)?;
    let out = if is_json_lines(path) {
        lines
            .into_iter()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, line)| tags_from_json(path, n, line, require_labels))
            .collect::<Result<Vec<_>>>()?
    } else {
        tags_from_conll(path, lines, require_labels)?
    };
    if out.is_empty() {
        return Err(Error::NoExamples {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

/// A JSON list of labels or tokens (strings or integers).
fn json_strings(path: &Path, n: usize, field: &str, v: &Value) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(bad(
            path,
            n,
            format!("\"{field}\" must be a list, not {}", json_kind(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            label_text(x).ok_or_else(|| {
                bad(
                    path,
                    n,
                    format!("item {i} of \"{field}\" is {x}, not a string"),
                )
            })
        })
        .collect()
}

fn tags_from_json(path: &Path, n: usize, line: &str, require_labels: bool) -> Result<TagExample> {
    let obj = json_object(path, n, line)?;
    let words = match (obj.get("tokens"), obj.get("words"), obj.get("text")) {
        (Some(t), _, _) => json_strings(path, n, "tokens", t)?,
        (None, Some(w), _) => json_strings(path, n, "words", w)?,
        (None, None, Some(Value::String(s))) => s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(String::from)
            .collect(),
        (None, None, Some(other)) => {
            return Err(bad(
                path,
                n,
                format!("\"text\" must be a string, not {}", json_kind(other)),
            ))
        }
        (None, None, None) => {
            return Err(bad(
                path,
                n,
                "no \"tokens\" (or \"words\") list and no \"text\" string",
            ))
        }
    };
    let field = ["labels", "tags", "ner_tags"]
        .into_iter()
        .find(|f| obj.get(*f).is_some_and(|v| !v.is_null()));
    let labels = match field {
        Some(f) => {
            let labels = json_strings(path, n, f, &obj[f])?;
            for l in &labels {
                if l.trim().is_empty() {
                    return Err(bad(path, n, format!("an empty label in \"{f}\"")));
                }
            }
            if labels.len() != words.len() {
                return Err(Error::LabelCountMismatch {
                    path: path.to_owned(),
                    line: n,
                    words: words.len(),
                    labels: labels.len(),
                });
            }
            Some(labels)
        }
        None if require_labels => {
            return Err(bad(
                path,
                n,
                "no \"labels\" list (every example needs one here)",
            ))
        }
        None => None,
    };
    Ok(TagExample { words, labels })
}

fn tags_from_conll(
    path: &Path,
    lines: Vec<(usize, &str)>,
    require_labels: bool,
) -> Result<Vec<TagExample>> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    let mut labels = Vec::new();
    // Whether the current sentence's tokens carry labels (set by its first).
    let mut labelled = None;
    let mut finish =
        |words: &mut Vec<String>, labels: &mut Vec<String>, labelled: &mut Option<bool>| {
            if !words.is_empty() {
                out.push(TagExample {
                    words: std::mem::take(words),
                    labels: labelled.unwrap_or(false).then(|| std::mem::take(labels)),
                });
            }
            labels.clear();
            *labelled = None;
        };
    for (n, line) in lines {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some((&token, rest)) = cols.split_first() else {
            finish(&mut words, &mut labels, &mut labelled);
            continue;
        };
        if token == "-DOCSTART-" {
            finish(&mut words, &mut labels, &mut labelled);
            continue;
        }
        let label = rest.last();
        if label.is_none() && require_labels {
            return Err(bad(
                path,
                n,
                format!("the token {token:?} has no label (expected `token label`)"),
            ));
        }
        if *labelled.get_or_insert(label.is_some()) != label.is_some() {
            return Err(bad(
                path,
                n,
                "some tokens of this sentence have a label column and others not",
            ));
        }
        words.push(token.to_owned());
        if let Some(l) = label {
            labels.push((*l).to_owned());
        }
    }
    finish(&mut words, &mut labels, &mut labelled);
    Ok(out)
}

/// The label names of a task in id order: id `i` is `names()[i]`. Built once
/// (from the training data, or from a checkpoint's `id2label`) and used for
/// every later file, so ids mean the same in training and prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet {
    labels: Vec<String>,
    ids: HashMap<String, i64>,
}

/// Sorts label names: by value when every name is an integer (`2` before
/// `10`), else by name.
fn sort_labels(names: &mut [String]) {
    let numbers: Option<Vec<i64>> = names.iter().map(|n| n.parse().ok()).collect();
    if numbers.is_some() {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    } else {
        names.sort();
    }
}

impl LabelSet {
    /// The labels in this order. An empty list, an empty name or a name listed
    /// twice is [`Error::BadLabels`].
    pub fn new(labels: Vec<String>) -> Result<Self> {
        if labels.is_empty() {
            return Err(Error::BadLabels("no label".into()));
        }
        let mut ids = HashMap::with_capacity(labels.len());
        for (i, l) in labels.iter().enumerate() {
            if l.is_empty() {
                return Err(Error::BadLabels(format!("label {i} is empty")));
            }
            if ids.insert(l.clone(), i as i64).is_some() {
                return Err(Error::BadLabels(format!("{l:?} is listed twice")));
            }
        }
        Ok(Self { labels, ids })
    }

    /// The labels the examples use, sorted: by value when every label is an
    /// integer (so `2` comes before `10`), else by name. No label at all is
    /// [`Error::BadLabels`].
    pub fn from_seq_examples(ex: &[SeqExample]) -> Result<Self> {
        let names: BTreeSet<&String> = ex.iter().filter_map(|e| e.label.as_ref()).collect();
        let mut names: Vec<String> = names.into_iter().cloned().collect();
        sort_labels(&mut names);
        Self::new(names)
    }

    /// The tags the examples use: `O` first when present (so the outside tag
    /// is id 0, as HF's NER models have it), then the rest sorted as
    /// [`Self::from_seq_examples`] sorts. No tag at all is [`Error::BadLabels`].
    pub fn from_tag_examples(ex: &[TagExample]) -> Result<Self> {
        let names: BTreeSet<&String> = ex.iter().flat_map(|e| e.labels.iter().flatten()).collect();
        let has_o = names.iter().any(|n| *n == "O");
        let mut names: Vec<String> = names.into_iter().filter(|n| *n != "O").cloned().collect();
        sort_labels(&mut names);
        if has_o {
            names.insert(0, "O".to_owned());
        }
        Self::new(names)
    }

    /// Rebuilds the set from HF's `config.json` `id2label` (`{"0": name, ..}`):
    /// the keys must be exactly `0..n` in decimal, else [`Error::BadLabels`].
    pub fn from_id2label(map: &BTreeMap<String, String>) -> Result<Self> {
        let mut slots: Vec<Option<&String>> = vec![None; map.len()];
        for (key, name) in map {
            let slot = key
                .parse::<usize>()
                .ok()
                .filter(|i| i.to_string() == *key)
                .and_then(|i| slots.get_mut(i))
                .ok_or_else(|| {
                    Error::BadLabels(format!(
                        "id2label key {key:?} is not an id from 0 to {}",
                        map.len().saturating_sub(1)
                    ))
                })?;
            *slot = Some(name);
        }
        // Every key is a distinct id below `map.len()`, so every slot is filled.
        Self::new(slots.into_iter().flatten().cloned().collect())
    }

    /// The id of `label`, or [`Error::UnknownLabel`] naming it and the known
    /// labels.
    pub fn id(&self, label: &str) -> Result<i64> {
        self.ids
            .get(label)
            .copied()
            .ok_or_else(|| Error::UnknownLabel {
                label: label.to_owned(),
                example: None,
                known: self.labels.join(", "),
            })
    }

    /// The id of `label` in example `example` (for the error message).
    fn id_in(&self, label: &str, example: usize) -> Result<i64> {
        self.id(label).map_err(|e| match e {
            Error::UnknownLabel { label, known, .. } => Error::UnknownLabel {
                label,
                example: Some(example),
                known,
            },
            other => other,
        })
    }

    /// The name of id `id`, `None` when out of range.
    pub fn name(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.labels.get(i))
            .map(String::as_str)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no label (never, for a set built by [`Self::new`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The names in id order.
    pub fn names(&self) -> &[String] {
        &self.labels
    }

    /// `{"0": name, ...}`, the `id2label` of HF's `config.json`.
    pub fn id2label(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect()
    }

    /// `{name: id, ...}`, the `label2id` of HF's `config.json`.
    pub fn label2id(&self) -> BTreeMap<String, i64> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i as i64))
            .collect()
    }
}

/// One example as the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedExample {
    /// Token ids with the special tokens (`[CLS]`, `[SEP]`).
    pub input_ids: Vec<u32>,
    /// Segment ids, one per input id (1 on the second text of a pair).
    pub token_type_ids: Vec<u32>,
    /// What the model should predict.
    pub label: EncodedLabel,
}

/// The target of an encoded example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodedLabel {
    /// No target (inputs to predict).
    None,
    /// A class id (sequence classification).
    Class(i64),
    /// A class id per input id (token classification): a word's label on its
    /// first sub-token, [`IGNORED_LABEL`] on its other sub-tokens, on special
    /// tokens and on words that were cut off.
    Tokens(Vec<i64>),
}

impl EncodedLabel {
    /// `none`, `class` or `tokens`, for messages.
    fn kind(&self) -> &'static str {
        match self {
            EncodedLabel::None => "none",
            EncodedLabel::Class(_) => "a class",
            EncodedLabel::Tokens(_) => "token labels",
        }
    }
}

/// For a token-classification example: the position in `input_ids` of each
/// word's first sub-token (the one that carries its label and whose
/// prediction is the word's), `None` when truncation cut the word off or the
/// tokenizer gave it no token. What to predict for such a word is the
/// caller's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordPositions(pub Vec<Option<usize>>);

/// Encodes texts (and text pairs) with the tokenizer's template, for BERT
/// `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` with segment ids 0 and 1, at most
/// `max_len` ids: a single text keeps its start; a pair is cut longest first
/// like HF (the longer segment loses tokens until both fit, or each keeps
/// about half when both are long); see [`ModelTokenizer::encode_pairs`].
///
/// With `labels`, every example must have a label in the set:
/// [`Error::InvalidExample`] for one without, [`Error::UnknownLabel`] naming
/// the example for one outside the set. Without `labels` every label is
/// [`EncodedLabel::None`]. A `max_len` with no room for text is
/// [`Error::MaxLengthTooSmall`].
pub fn encode_seq(
    tok: &ModelTokenizer,
    ex: &[SeqExample],
    labels: Option<&LabelSet>,
    max_len: usize,
) -> Result<Vec<EncodedExample>> {
    let pairs: Vec<(&str, Option<&str>)> = ex
        .iter()
        .map(|e| (e.text.as_str(), e.text_pair.as_deref()))
        .collect();
    let encoded = tok.encode_pairs(&pairs, max_len)?;
    ex.iter()
        .zip(encoded)
        .enumerate()
        .map(|(i, (e, (input_ids, token_type_ids)))| {
            let label = match labels {
                None => EncodedLabel::None,
                Some(set) => {
                    let name = e.label.as_deref().ok_or_else(|| Error::InvalidExample {
                        example: i,
                        reason: "no label, but a label set was given".into(),
                    })?;
                    EncodedLabel::Class(set.id_in(name, i)?)
                }
            };
            Ok(EncodedExample {
                input_ids,
                token_type_ids,
                label,
            })
        })
        .collect()
}

/// Encodes pre-split sentences with the tokenizer's template (`[CLS] .. [SEP]`),
/// at most `max_len` ids (the end is cut), each word tokenized on its own (HF's
/// `is_split_into_words`), and returns with each example where its words
/// start ([`WordPositions`]).
///
/// With `labels`, HF's alignment: each word's label on its first sub-token,
/// [`IGNORED_LABEL`] on its later sub-tokens, on the special tokens and on
/// words cut off; a word the tokenizer maps to `[UNK]` still has its token
/// and its label. Every label of every example is checked against the set
/// (cut-off words included): [`Error::UnknownLabel`] names the example,
/// [`Error::InvalidExample`] an example without labels or with a label count
/// other than its word count. Without `labels` every label is
/// [`EncodedLabel::None`]. A `max_len` with no room for a word is
/// [`Error::MaxLengthTooSmall`].
pub fn encode_tags(
    tok: &ModelTokenizer,
    ex: &[TagExample],
    labels: Option<&LabelSet>,
    max_len: usize,
) -> Result<Vec<(EncodedExample, WordPositions)>> {
    let sentences: Vec<&[String]> = ex.iter().map(|e| e.words.as_slice()).collect();
    let encoded = tok.encode_words_batch(&sentences, max_len)?;
    ex.iter()
        .zip(encoded)
        .enumerate()
        .map(
            |(
                i,
                (
                    e,
                    WordIds {
                        ids: input_ids,
                        words: word_of,
                    },
                ),
            )| {
                let mut positions = vec![None; e.words.len()];
                for (pos, w) in word_of.iter().enumerate() {
                    if let Some(slot) = w.and_then(|w| positions.get_mut(w)) {
                        slot.get_or_insert(pos);
                    }
                }
                let label = match labels {
                    None => EncodedLabel::None,
                    Some(set) => {
                        let names = e.labels.as_ref().ok_or_else(|| Error::InvalidExample {
                            example: i,
                            reason: "no labels, but a label set was given".into(),
                        })?;
                        if names.len() != e.words.len() {
                            return Err(Error::InvalidExample {
                                example: i,
                                reason: format!(
                                    "{} words but {} labels",
                                    e.words.len(),
                                    names.len()
                                ),
                            });
                        }
                        let mut grid = vec![IGNORED_LABEL; input_ids.len()];
                        for (name, pos) in names.iter().zip(&positions) {
                            let id = set.id_in(name, i)?;
                            if let Some(slot) = pos.and_then(|p| grid.get_mut(p)) {
                                *slot = id;
                            }
                        }
                        EncodedLabel::Tokens(grid)
                    }
                };
                let token_type_ids = vec![0; input_ids.len()];
                Ok((
                    EncodedExample {
                        input_ids,
                        token_type_ids,
                        label,
                    },
                    WordPositions(positions),
                ))
            },
        )
        .collect()
}

/// Pads encoded examples into one [`Batch`]: rows as long as the longest
/// example, `pad_id` after each row with attention 0 and segment 0 there,
/// and the targets: `targets.class` (one per row) for class labels,
/// `targets.tokens` (row-major `[batch_size * seq_len]`, [`IGNORED_LABEL`]
/// on padding) for token labels, neither for unlabelled examples;
/// `masked_lm` stays empty.
///
/// All examples must have the same kind of label, and each its token types
/// (and token labels) as long as its ids: [`Error::InvalidExample`] names the
/// first that does not. An empty slice is [`Error::InvalidOption`].
pub fn collate(examples: &[&EncodedExample], pad_id: u32) -> Result<Batch> {
    let Some(first) = examples.first() else {
        return Err(Error::InvalidOption {
            name: "examples",
            reason: "no example to collate".into(),
        });
    };
    for (i, e) in examples.iter().enumerate() {
        let len = e.input_ids.len();
        let problem = if std::mem::discriminant(&e.label) != std::mem::discriminant(&first.label) {
            Some(format!(
                "its label is {} but example 0's is {}",
                e.label.kind(),
                first.label.kind()
            ))
        } else if e.token_type_ids.len() != len {
            Some(format!(
                "{len} ids but {} token types",
                e.token_type_ids.len()
            ))
        } else {
            match &e.label {
                EncodedLabel::Tokens(t) if t.len() != len => {
                    Some(format!("{len} ids but {} token labels", t.len()))
                }
                _ => None,
            }
        };
        if let Some(reason) = problem {
            return Err(Error::InvalidExample { example: i, reason });
        }
    }
    let rows = examples.len();
    let seq_len = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(0);
    let mut input_ids = vec![i64::from(pad_id); rows * seq_len];
    let mut token_type_ids = vec![0; rows * seq_len];
    let mut attention_mask = vec![0; rows * seq_len];
    let mut class = Vec::new();
    let mut tokens = Vec::new();
    for (r, e) in examples.iter().enumerate() {
        let row = r * seq_len..r * seq_len + e.input_ids.len();
        for ((dst, &id), (tt, &t)) in input_ids[row.clone()].iter_mut().zip(&e.input_ids).zip(
            token_type_ids[row.clone()]
                .iter_mut()
                .zip(&e.token_type_ids),
        ) {
            *dst = i64::from(id);
            *tt = i64::from(t);
        }
        attention_mask[row].fill(1);
        match &e.label {
            EncodedLabel::None => {}
            EncodedLabel::Class(c) => class.push(*c),
            EncodedLabel::Tokens(t) => {
                tokens.extend_from_slice(t);
                tokens.resize((r + 1) * seq_len, IGNORED_LABEL);
            }
        }
    }
    let targets = match first.label {
        EncodedLabel::None => Targets::default(),
        EncodedLabel::Class(_) => Targets {
            class: Some(class),
            ..Targets::default()
        },
        EncodedLabel::Tokens(_) => Targets {
            tokens: Some(tokens),
            ..Targets::default()
        },
    };
    Ok(Batch {
        batch_size: rows,
        seq_len,
        input_ids,
        token_type_ids,
        attention_mask,
        targets,
        ..Batch::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The WordPiece vocabulary of the tests, id = index.
    const VOCAB: &[&str] = &[
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "play", "##ing", "##ed",
        "un", "##believ", "##able", "new", "york", "john", "lives", "in", ".", "我", "爱", "北",
        "京", "a", "b", "c", "d", "e", "f",
    ];

    /// A BERT WordPiece `tokenizer.json` (lowercasing, CJK characters split,
    /// `[CLS] A [SEP] B [SEP]` template) over [`VOCAB`].
    fn wordpiece_tokenizer(dir: &Path) -> ModelTokenizer {
        let vocab: serde_json::Map<String, Value> = VOCAB
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), i.into()))
            .collect();
        let added: Vec<Value> = VOCAB[..5]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let special =
            |s: &str, t: u32| serde_json::json!({"SpecialToken": {"id": s, "type_id": t}});
        let seq = |s: &str, t: u32| serde_json::json!({"Sequence": {"id": s, "type_id": t}});
        let tok = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
                "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0),
                         seq("B", 1), special("[SEP]", 1)],
                "special_tokens": {
                    "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                    "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                "vocab": vocab}
        });
        std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
        ModelTokenizer::from_dir(dir, 64).unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn seq(text: &str, pair: Option<&str>, label: Option<&str>) -> SeqExample {
        SeqExample {
            text: text.to_owned(),
            text_pair: pair.map(str::to_owned),
            label: label.map(str::to_owned),
        }
    }

    #[test]
    fn sequence_examples_from_json_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.jsonl",
            "\u{feff}{\"text\": \"x y\", \"label\": 1, \"id\": 7}\r\n\n  \n\
             {\"text\": \"z\", \"text_pair\": \"w\", \"label\": \"neg\"}\n\
             {\"text\": \"v\", \"text_pair\": null, \"label\": null}\n",
        );
        assert_eq!(
            read_seq_examples(&p, false).unwrap(),
            vec![
                seq("x y", None, Some("1")),
                seq("z", Some("w"), Some("neg")),
                seq("v", None, None)
            ]
        );
        let e = read_seq_examples(&p, true).unwrap_err().to_string();
        assert!(e.contains("a.jsonl, line 5") && e.contains("label"), "{e}");
    }

    #[test]
    fn malformed_json_lines_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (
                "{\"text\": \"a\", \"label\": 1}\n{oops\n",
                "line 2",
                "not valid JSON",
            ),
            ("[1, 2]\n", "line 1", "expected a JSON object"),
            ("{\"label\": 1}\n", "line 1", "no \"text\""),
            ("{\"text\": 3}\n", "line 1", "\"text\" must be a string"),
            (
                "\n{\"text\": \"a\", \"label\": 1.5}\n",
                "line 2",
                "string or an integer",
            ),
            (
                "{\"text\": \"a\", \"label\": \"\"}\n",
                "line 1",
                "empty label",
            ),
            (
                "{\"text\": \"a\", \"text_pair\": [1]}\n",
                "line 1",
                "\"text_pair\"",
            ),
        ];
        for (i, (body, line, reason)) in cases.iter().enumerate() {
            let p = write(d.path(), &format!("bad{i}.jsonl"), body);
            let err = read_seq_examples(&p, false).unwrap_err();
            assert!(matches!(err, Error::BadExample { .. }), "{err:?}");
            let e = err.to_string();
            assert!(
                e.contains(&format!("bad{i}.jsonl, {line}")) && e.contains(reason),
                "{e}"
            );
        }
        let p = write(d.path(), "bytes.jsonl", "");
        std::fs::write(&p, b"{\"text\": \"a\"}\n{\"text\": \"\xff\"}\n").unwrap();
        let e = read_seq_examples(&p, false).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn sequence_examples_from_tsv() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.tsv",
            "id\tlabel\ttext\ttext_pair\n7\tpos\tgood film\tsee it\n\n8\t\tbad\t\n",
        );
        assert_eq!(
            read_seq_examples(&p, false).unwrap(),
            vec![
                seq("good film", Some("see it"), Some("pos")),
                seq("bad", None, None)
            ]
        );
        let e = read_seq_examples(&p, true).unwrap_err().to_string();
        assert!(
            e.contains("a.tsv, line 4") && e.contains("empty `label`"),
            "{e}"
        );

        let no_text = write(d.path(), "b.tsv", "sentence\tlabel\nx\t1\n");
        let e = read_seq_examples(&no_text, true).unwrap_err().to_string();
        assert!(
            e.contains("b.tsv, line 1") && e.contains("no `text` column") && e.contains("sentence"),
            "{e}"
        );
        let no_label = write(d.path(), "c.tsv", "text\nx\n");
        assert_eq!(read_seq_examples(&no_label, false).unwrap().len(), 1);
        let e = read_seq_examples(&no_label, true).unwrap_err().to_string();
        assert!(e.contains("no `label` column"), "{e}");
        let ragged = write(d.path(), "d.tsv", "text\tlabel\nx\t1\ny\n");
        let e = read_seq_examples(&ragged, true).unwrap_err().to_string();
        assert!(
            e.contains("d.tsv, line 3") && e.contains("1 tab-separated"),
            "{e}"
        );
        let twice = write(d.path(), "e.tsv", "text\ttext\nx\ty\n");
        assert!(read_seq_examples(&twice, false).is_err());
        let header_only = write(d.path(), "f.tsv", "text\tlabel\n");
        assert!(matches!(
            read_seq_examples(&header_only, false),
            Err(Error::NoExamples { .. })
        ));
        let csv = write(d.path(), "g.csv", "text,label\nx,1\n");
        assert!(matches!(
            read_seq_examples(&csv, false),
            Err(Error::InvalidOption { .. })
        ));
    }

    #[test]
    fn empty_and_missing_files_are_errors() {
        let d = tempfile::tempdir().unwrap();
        for name in ["a.jsonl", "b.tsv", "c.conll"] {
            let p = write(d.path(), name, "\n \n");
            let err = if name.ends_with("conll") {
                read_tag_examples(&p, false).unwrap_err()
            } else {
                read_seq_examples(&p, false).unwrap_err()
            };
            assert!(matches!(err, Error::NoExamples { .. }), "{err:?}");
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = read_tag_examples(&d.path().join("missing.txt"), false).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err:?}");
    }

    #[test]
    fn tag_examples_from_json_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.jsonl",
            "{\"tokens\": [\"EU\", \"rejects\"], \"labels\": [\"B-ORG\", \"O\"]}\n\
             {\"words\": [\"Peter\"], \"ner_tags\": [3]}\n\
             {\"text\": \"迈向 新世纪\", \"labels\": [\"B\", \"E\", \"B\", \"M\", \"E\"]}\n\
             {\"tokens\": [\"x\"]}\n",
        );
        let ex = read_tag_examples(&p, false).unwrap();
        assert_eq!(ex[0].words, strings(&["EU", "rejects"]));
        assert_eq!(ex[0].labels, Some(strings(&["B-ORG", "O"])));
        assert_eq!(ex[1].labels, Some(strings(&["3"])));
        assert_eq!(ex[2].words, strings(&["迈", "向", "新", "世", "纪"]));
        assert_eq!(ex[3].labels, None);
        let e = read_tag_examples(&p, true).unwrap_err().to_string();
        assert!(e.contains("a.jsonl, line 4") && e.contains("labels"), "{e}");

        let counts = write(
            d.path(),
            "b.jsonl",
            "\n{\"text\": \"我爱 北京\", \"labels\": [\"O\", \"O\", \"B-LOC\"]}\n",
        );
        let err = read_tag_examples(&counts, true).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LabelCountMismatch {
                    line: 2,
                    words: 4,
                    labels: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .contains("b.jsonl, line 2: 4 tokens but 3 labels"));
        let no_tokens = write(d.path(), "c.jsonl", "{\"labels\": [\"O\"]}\n");
        let e = read_tag_examples(&no_tokens, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.jsonl, line 1") && e.contains("no \"tokens\""),
            "{e}"
        );
        let not_list = write(d.path(), "d.jsonl", "{\"tokens\": \"a b\"}\n");
        let e = read_tag_examples(&not_list, false).unwrap_err().to_string();
        assert!(e.contains("must be a list"), "{e}");
    }

    #[test]
    fn tag_examples_from_conll() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "train.txt",
            "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\n\n\
             -DOCSTART- -X- O O\nPeter\tB-PER\nBlackburn I-PER\n",
        );
        let ex = read_tag_examples(&p, true).unwrap();
        assert_eq!(
            ex,
            vec![
                TagExample {
                    words: strings(&["EU", "rejects"]),
                    labels: Some(strings(&["B-ORG", "O"])),
                },
                TagExample {
                    words: strings(&["Peter", "Blackburn"]),
                    labels: Some(strings(&["B-PER", "I-PER"])),
                },
            ]
        );
        let unlabelled = write(d.path(), "test.txt", "EU\nrejects\n\nPeter\n");
        let ex = read_tag_examples(&unlabelled, false).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[1].labels, None);
        let e = read_tag_examples(&unlabelled, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.txt, line 1") && e.contains("\"EU\" has no label"),
            "{e}"
        );
        let mixed = write(d.path(), "mixed.txt", "a O\nb O\n\nc O\nd\n");
        let e = read_tag_examples(&mixed, false).unwrap_err().to_string();
        assert!(
            e.contains("mixed.txt, line 5") && e.contains("others not"),
            "{e}"
        );
    }

    #[test]
    fn label_sets_are_sorted_deterministically() {
        let ex: Vec<SeqExample> = ["10", "2", "1", "2"]
            .iter()
            .map(|l| seq("x", None, Some(l)))
            .collect();
        let set = LabelSet::from_seq_examples(&ex).unwrap();
        assert_eq!(set.names(), strings(&["1", "2", "10"]));
        assert_eq!(set.id("10").unwrap(), 2);
        let ex = vec![
            seq("x", None, Some("pos")),
            seq("x", None, None),
            seq("x", None, Some("neg")),
            seq("x", None, Some("10")),
        ];
        let set = LabelSet::from_seq_examples(&ex).unwrap();
        assert_eq!(set.names(), strings(&["10", "neg", "pos"]));
        assert_eq!(set.name(1), Some("neg"));
        assert_eq!(set.name(3), None);
        assert_eq!(set.name(-1), None);
        assert_eq!((set.len(), set.is_empty()), (3, false));

        let tags = vec![
            TagExample {
                words: strings(&["a", "b", "c"]),
                labels: Some(strings(&["I-PER", "O", "B-PER"])),
            },
            TagExample {
                words: strings(&["d"]),
                labels: Some(strings(&["B-LOC"])),
            },
        ];
        let set = LabelSet::from_tag_examples(&tags).unwrap();
        assert_eq!(set.names(), strings(&["O", "B-LOC", "B-PER", "I-PER"]));

        let err = LabelSet::from_seq_examples(&[seq("x", None, None)]).unwrap_err();
        assert!(matches!(err, Error::BadLabels(_)), "{err:?}");
        assert!(LabelSet::new(strings(&["a", "b", "a"])).is_err());
        assert!(LabelSet::new(Vec::new()).is_err());
        assert!(LabelSet::new(strings(&["a", ""])).is_err());
    }

    #[test]
    fn label_sets_round_trip_through_id2label() {
        let set = LabelSet::new(strings(&["neg", "neu", "pos"])).unwrap();
        let id2label = set.id2label();
        assert_eq!(id2label.get("0").map(String::as_str), Some("neg"));
        assert_eq!(id2label.get("2").map(String::as_str), Some("pos"));
        assert_eq!(set.label2id().get("neu"), Some(&1));
        assert_eq!(LabelSet::from_id2label(&id2label).unwrap(), set);
        // Twelve labels: keys sort as strings ("10" < "2") but ids are numbers.
        let many = LabelSet::new((0..12).map(|i| format!("L{i}")).collect()).unwrap();
        assert_eq!(LabelSet::from_id2label(&many.id2label()).unwrap(), many);

        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        for bad in [
            map(&[("0", "a"), ("2", "b")]),
            map(&[("0", "a"), ("01", "b")]),
            map(&[("-1", "a")]),
            map(&[("x", "a")]),
            map(&[("0", "a"), ("1", "a")]),
            map(&[]),
        ] {
            assert!(
                matches!(LabelSet::from_id2label(&bad), Err(Error::BadLabels(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_labels_name_the_label_and_the_known_ones() {
        let set = LabelSet::new(strings(&["neg", "pos"])).unwrap();
        let e = set.id("meh").unwrap_err().to_string();
        assert!(e.contains("\"meh\"") && e.contains("neg, pos"), "{e}");
        assert!(!e.contains("example"), "{e}");

        let d = tempfile::tempdir().unwrap();
        let tok = wordpiece_tokenizer(d.path());
        let ex = vec![
            seq("the cat", None, Some("pos")),
            seq("the cat", None, Some("meh")),
        ];
        let err = encode_seq(&tok, &ex, Some(&set), 16).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownLabel { label, example: Some(1), .. } if label == "meh"),
            "{err:?}"
        );
        assert!(err.to_string().contains("in example 1"), "{err}");
        let err = encode_seq(&tok, &[seq("a", None, None)], Some(&set), 16).unwrap_err();
        assert!(
            matches!(err, Error::InvalidExample { example: 0, .. }),
            "{err:?}"
        );

        let tags = LabelSet::new(strings(&["O", "B-PER"])).unwrap();
        let ex = vec![TagExample {
            words: strings(&["john", "lives", "in", "york"]),
            labels: Some(strings(&["B-PER", "O", "O", "B-LOC"])),
        }];
        // The unknown label belongs to a word that truncation cuts off: still an error.
        let err = encode_tags(&tok, &ex, Some(&tags), 4).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownLabel { label, example: Some(0), .. } if label == "B-LOC"),
            "{err:?}"
        );
        let uneven = vec![TagExample {
            words: strings(&["john", "lives"]),
            labels: Some(strings(&["B-PER"])),
        }];
        let err = encode_tags(&tok, &uneven, Some(&tags), 16).unwrap_err();
        assert!(err.to_string().contains("2 words but 1 labels"), "{err}");
    }

    #[test]
    fn sequences_and_pairs_are_encoded_with_segments() {
        let d = tempfile::tempdir().unwrap();
        let tok = wordpiece_tokenizer(d.path());
        let set = LabelSet::new(strings(&["neg", "pos"])).unwrap();
        let ex = vec![
            seq("The cat sat.", None, Some("pos")),
            seq("the cat", Some("sat"), Some("neg")),
        ];
        let enc = encode_seq(&tok, &ex, Some(&set), 16).unwrap();
        // [CLS] the cat sat . [SEP]
        assert_eq!(enc[0].input_ids, vec![2, 5, 6, 7, 19, 3]);
        assert_eq!(enc[0].token_type_ids, vec![0; 6]);
        assert_eq!(enc[0].label, EncodedLabel::Class(1));
        // [CLS] the cat [SEP] sat [SEP]
        assert_eq!(enc[1].input_ids, vec![2, 5, 6, 3, 7, 3]);
        assert_eq!(enc[1].token_type_ids, vec![0, 0, 0, 0, 1, 1]);
        assert_eq!(enc[1].label, EncodedLabel::Class(0));
        let unlabelled = encode_seq(&tok, &ex, None, 16).unwrap();
        assert_eq!(unlabelled[0].label, EncodedLabel::None);
        assert_eq!(unlabelled[1].input_ids, enc[1].input_ids);
    }

    #[test]
    fn pair_truncation_cuts_the_longest_first_and_keeps_both_within_max_len() {
        let d = tempfile::tempdir().unwrap();
        let tok = wordpiece_tokenizer(d.path());
        let ex = vec![
            // 6 + 2 tokens, room for 4 (7 - 3 specials): only the long one is cut,
            // to 2 (HF: the short segment keeps all of its 2, the long one the rest).
            seq("the cat sat the cat sat", Some("a b"), None),
            // 6 + 5 tokens, room for 4: both are long, so each keeps half.
            seq("a b c d e f", Some("the cat sat new york"), None),
            // A single text keeps its start: 5 tokens.
            seq("a b c d e f", None, None),
            // Fits: untouched.
            seq("a", Some("b"), None),
        ];
        let enc = encode_seq(&tok, &ex, None, 7).unwrap();
        assert_eq!(enc[0].input_ids, vec![2, 5, 6, 3, 24, 25, 3]);
        assert_eq!(enc[1].input_ids, vec![2, 24, 25, 3, 5, 6, 3]);
        assert_eq!(enc[2].input_ids, vec![2, 24, 25, 26, 27, 28, 3]);
        assert_eq!(enc[3].input_ids, vec![2, 24, 3, 25, 3]);
        for e in &enc {
            assert!(e.input_ids.len() <= 7);
            assert_eq!(e.token_type_ids.len(), e.input_ids.len());
        }
        let enc = encode_seq(&tok, &ex[1..2], None, 8).unwrap();
        // Room for 5: a b c (3, the longer segment keeps one more) + the cat (2).
        assert_eq!(enc[0].input_ids, vec![2, 24, 25, 26, 3, 5, 6, 3]);
        assert_eq!(enc[0].token_type_ids, vec![0, 0, 0, 0, 0, 1, 1, 1]);
        // Three specials for a pair: 3 leaves no room.
        assert!(matches!(
            encode_seq(&tok, &ex, None, 3),
            Err(Error::MaxLengthTooSmall { added: 3, .. })
        ));
        assert!(encode_seq(&tok, &ex[2..3], None, 3).is_ok());
    }

    #[test]
    fn tags_go_on_the_first_sub_token_of_each_word() {
        let d = tempfile::tempdir().unwrap();
        let tok = wordpiece_tokenizer(d.path());
        let ex = vec![TagExample {
            words: strings(&["John", "unbelievable", "playing", "xyzzy", "."]),
            labels: Some(strings(&["B-PER", "O", "O", "B-MISC", "O"])),
        }];
        let set = LabelSet::from_tag_examples(&ex).unwrap();
        assert_eq!(set.names(), strings(&["O", "B-MISC", "B-PER"]));
        let out = encode_tags(&tok, &ex, Some(&set), 32).unwrap();
        let (enc, positions) = &out[0];
        // [CLS] john un ##believ ##able play ##ing [UNK] . [SEP]
        assert_eq!(enc.input_ids, vec![2, 16, 11, 12, 13, 8, 9, 1, 19, 3]);
        assert_eq!(enc.token_type_ids, vec![0; 10]);
        assert_eq!(
            positions.0,
            vec![Some(1), Some(2), Some(5), Some(7), Some(8)]
        );
        let ig = IGNORED_LABEL;
        // john=B-PER(2), un=O(0) ##believ ##able ignored, play=O ##ing ignored,
        // [UNK]=B-MISC(1) (an unknown word keeps its token and label), .=O.
        assert_eq!(
            enc.label,
            EncodedLabel::Tokens(vec![ig, 2, 0, ig, ig, 0, ig, 1, 0, ig])
        );

        // Truncated to 6: [CLS] john un ##believ ##able [SEP]; the first piece of
        // "unbelievable" survives, so it keeps its label; later words are gone.
        let out = encode_tags(&tok, &ex, Some(&set), 6).unwrap();
        let (enc, positions) = &out[0];
        assert_eq!(enc.input_ids, vec![2, 16, 11, 12, 13, 3]);
        assert_eq!(positions.0, vec![Some(1), Some(2), None, None, None]);
        assert_eq!(enc.label, EncodedLabel::Tokens(vec![ig, 2, 0, ig, ig, ig]));

        // Without a label set: no targets, same positions.
        let out = encode_tags(&tok, &ex, None, 32).unwrap();
        assert_eq!(out[0].0.label, EncodedLabel::None);
        assert_eq!(out[0].1 .0[3], Some(7));
    }

    #[test]
    fn chinese_tags_are_one_token_per_character() {
        let d = tempfile::tempdir().unwrap();
        let tok = wordpiece_tokenizer(d.path());
        let p = write(
            d.path(),
            "zh.jsonl",
            "{\"text\": \"我爱 北京\", \"labels\": [\"O\", \"O\", \"B-LOC\", \"I-LOC\"]}\n",
        );
        let ex = read_tag_examples(&p, true).unwrap();
        let set = LabelSet::from_tag_examples(&ex).unwrap();
        assert_eq!(set.names(), strings(&["O", "B-LOC", "I-LOC"]));
        let out = encode_tags(&tok, &ex, Some(&set), 16).unwrap();
        let (enc, positions) = &out[0];
        assert_eq!(enc.input_ids, vec![2, 20, 21, 22, 23, 3]);
        assert_eq!(positions.0, vec![Some(1), Some(2), Some(3), Some(4)]);
        let ig = IGNORED_LABEL;
        assert_eq!(enc.label, EncodedLabel::Tokens(vec![ig, 0, 0, 1, 2, ig]));
    }

    #[test]
    fn a_word_without_tokens_has_no_position() {
        let d = tempfile::tempdir().unwrap();
        let tok = wordpiece_tokenizer(d.path());
        let set = LabelSet::new(strings(&["O", "X"])).unwrap();
        // A zero-width space is removed by BERT's normaliser: no token.
        let ex = vec![
            TagExample {
                words: strings(&["the", "\u{200b}", "cat"]),
                labels: Some(strings(&["O", "X", "X"])),
            },
            TagExample {
                words: Vec::new(),
                labels: Some(Vec::new()),
            },
        ];
        let out = encode_tags(&tok, &ex, Some(&set), 16).unwrap();
        assert_eq!(out[0].0.input_ids, vec![2, 5, 6, 3]);
        assert_eq!(out[0].1 .0, vec![Some(1), None, Some(2)]);
        let ig = IGNORED_LABEL;
        assert_eq!(out[0].0.label, EncodedLabel::Tokens(vec![ig, 0, 1, ig]));
        assert_eq!(out[1].0.input_ids, vec![2, 3]);
        assert_eq!(out[1].1 .0, Vec::<Option<usize>>::new());
    }

    fn encoded(ids: &[u32], types: &[u32], label: EncodedLabel) -> EncodedExample {
        EncodedExample {
            input_ids: ids.to_vec(),
            token_type_ids: types.to_vec(),
            label,
        }
    }

    #[test]
    fn collate_pads_and_fills_the_targets() {
        let a = encoded(&[2, 5, 3], &[0, 0, 0], EncodedLabel::Class(1));
        let b = encoded(&[2, 5, 3, 6, 3], &[0, 0, 0, 1, 1], EncodedLabel::Class(0));
        let batch = collate(&[&a, &b], 0).unwrap();
        assert_eq!((batch.batch_size, batch.seq_len), (2, 5));
        assert_eq!(batch.input_ids, vec![2, 5, 3, 0, 0, 2, 5, 3, 6, 3]);
        assert_eq!(batch.token_type_ids, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(batch.targets.class, Some(vec![1, 0]));
        assert_eq!(batch.targets.tokens, None);
        assert!(batch.targets.masked_lm.is_empty());
        assert_eq!(batch.real_tokens(), 8);

        let ig = IGNORED_LABEL;
        let t1 = encoded(&[2, 7, 3], &[0; 3], EncodedLabel::Tokens(vec![ig, 4, ig]));
        let t2 = encoded(&[2, 3], &[0; 2], EncodedLabel::Tokens(vec![ig, ig]));
        let batch = collate(&[&t2, &t1], 9).unwrap();
        assert_eq!(batch.input_ids, vec![2, 3, 9, 2, 7, 3]);
        assert_eq!(batch.targets.tokens, Some(vec![ig, ig, ig, ig, 4, ig]));
        assert_eq!(batch.targets.class, None);

        let n = encoded(&[2, 3], &[0; 2], EncodedLabel::None);
        let batch = collate(&[&n], 0).unwrap();
        assert_eq!(batch.targets, Targets::default());

        let err = collate(&[&a, &t1], 0).unwrap_err();
        assert!(
            matches!(err, Error::InvalidExample { example: 1, .. }),
            "{err:?}"
        );
        assert!(collate(&[&n, &a], 0).is_err());
        let short = encoded(&[2, 3], &[0], EncodedLabel::None);
        assert!(collate(&[&short], 0).is_err());
        let uneven = encoded(&[2, 3], &[0; 2], EncodedLabel::Tokens(vec![ig]));
        assert!(collate(&[&uneven], 0).is_err());
        assert!(collate(&[], 0).is_err());
    }
}
