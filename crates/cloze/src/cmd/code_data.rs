//! A `cloze data code` directory (or a code model's directory) as the
//! trainer and the evaluations read it: the code tokenizer, its special
//! tokens, and each split's files encoded into `cloze_mask::CodeSequence`s.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cloze_code::{CodeCategory, CodeTokenizer, Lexeme};
use cloze_core::SpecialTokens;
use cloze_mask::CodeSequence;
use serde::{Deserialize, Serialize};

/// The file a code model's directory carries beside `config.json`: what the
/// evaluations and `cloze complete` need to lay out its rows.
pub const MODEL_FILE: &str = "code_model.json";

/// The contents of [`MODEL_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeModelInfo {
    /// The longest row the model was trained on.
    pub max_len: usize,
    /// Whether its left-to-right prediction is type-then-token.
    pub typed: bool,
    /// The category names, in index order.
    pub categories: Vec<String>,
}

/// A code data (or model) directory, opened.
pub struct CodeData {
    /// The directory.
    pub dir: PathBuf,
    /// Its tokenizer.
    pub tokenizer: CodeTokenizer,
    /// The tokenizer's special tokens.
    pub specials: SpecialTokens,
}

/// One line of a split file: a lexed source file.
#[derive(Debug, Deserialize)]
struct Record {
    path: String,
    #[serde(default)]
    package: String,
    lexemes: Vec<(String, String)>,
}

/// The categories' names in index order.
pub fn category_names() -> Vec<String> {
    (0..CodeCategory::COUNT as u8)
        .filter_map(CodeCategory::from_index)
        .map(|c| c.name().to_owned())
        .collect()
}

/// Whether category index `c` is an identifier category.
pub fn is_identifier(c: u8) -> bool {
    CodeCategory::from_index(c).is_some_and(CodeCategory::is_identifier)
}

/// The name of category index `c`.
pub fn category_name(c: u8) -> &'static str {
    CodeCategory::from_index(c).map_or("?", CodeCategory::name)
}

impl CodeData {
    /// Opens `dir`: its `tokenizer/` subdirectory (a data directory) or the
    /// directory itself (a model directory).
    pub fn open(dir: &Path) -> Result<Self> {
        let tok_dir = if dir.join("tokenizer").is_dir() {
            dir.join("tokenizer")
        } else {
            dir.to_owned()
        };
        let tokenizer = CodeTokenizer::from_dir(&tok_dir).with_context(|| {
            format!(
                "reading the code tokenizer of {} (a `cloze data code` output or a code model)",
                dir.display()
            )
        })?;
        let specials = tokenizer.special_tokens().clone();
        Ok(Self {
            dir: dir.to_owned(),
            tokenizer,
            specials,
        })
    }

    /// The number of token categories.
    pub fn num_categories(&self) -> i64 {
        CodeCategory::COUNT as i64
    }

    /// The lexed files of split `name` (`train`, `valid`, `test`,
    /// `test-package`), in file order, with their paths and packages.
    pub fn split_files(&self, name: &str) -> Result<Vec<(String, String, Vec<Lexeme>)>> {
        let path = self.dir.join(format!("{name}.jsonl"));
        let file = std::fs::File::open(&path)
            .with_context(|| format!("opening {} (split {name:?})", path.display()))?;
        let mut out = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a lexed file", path.display(), i + 1))?;
            let mut lexemes = Vec::with_capacity(r.lexemes.len());
            for (text, cat) in r.lexemes {
                let Some(category) = CodeCategory::from_name(&cat) else {
                    bail!("{}:{}: unknown category {cat:?}", path.display(), i + 1);
                };
                lexemes.push(Lexeme {
                    text,
                    category,
                    start: 0,
                    end: 0,
                    line: 0,
                    column: 0,
                });
            }
            out.push((r.path, r.package, lexemes));
        }
        Ok(out)
    }

    /// Split `name` encoded, one sequence per file.
    pub fn split(&self, name: &str) -> Result<Vec<CodeSequence>> {
        self.split_files(name)?
            .iter()
            .map(|(path, _, lexemes)| {
                self.encode(lexemes)
                    .with_context(|| format!("encoding {path}"))
            })
            .collect()
    }

    /// Lexemes as a sequence of the mask layer.
    pub fn encode(&self, lexemes: &[Lexeme]) -> Result<CodeSequence> {
        let e = self.tokenizer.encode(lexemes)?;
        Ok(CodeSequence {
            ids: e.ids,
            categories: e.categories,
            identifiers: e.identifiers,
        })
    }

    /// Writes the tokenizer and [`MODEL_FILE`] into a model directory.
    pub fn export_with(&self, model_dir: &Path, max_len: usize, typed: bool) -> Result<()> {
        self.tokenizer.save_files(model_dir)?;
        let info = CodeModelInfo {
            max_len,
            typed,
            categories: category_names(),
        };
        let path = model_dir.join(MODEL_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&info)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// A code model's [`MODEL_FILE`], checked against this build's categories.
pub fn model_info(model_dir: &Path) -> Result<CodeModelInfo> {
    let path = model_dir.join(MODEL_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} ({} is not a code model: train one with `cloze pretrain --config cuglm-tiny`)",
            path.display(),
            model_dir.display()
        )
    })?;
    let info: CodeModelInfo =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if info.categories != category_names() {
        bail!(
            "{} names the categories {:?}; this build has {:?}",
            path.display(),
            info.categories,
            category_names()
        );
    }
    Ok(info)
}
