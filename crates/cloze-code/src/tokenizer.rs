//! The code tokenizer: lexemes in, token ids out, each token carrying its
//! lexeme's category and the identifier occurrence it belongs to.
//!
//! An identifier is first cut into pieces at its camelCase, PascalCase,
//! snake_case and digit boundaries ([`split_identifier`]:
//! `parseHTTPResponse2` -> `parse`, `HTTP`, `Response`, `2`); each piece is
//! then cut by a WordPiece vocabulary trained with `cloze-text`'s trainer
//! ([`cloze_text::tokenizer::train_wordpiece_with`]) on the pieces of the
//! training lexemes, case kept (code is case-sensitive: `lowercase: false`,
//! no accent stripping). Keywords and punctuation are cut by the same
//! vocabulary (an operator such as `>>=` becomes one token per character,
//! BERT's pre-tokenizer splitting punctuation). A literal is cut as text and
//! keeps at most [`CodeTokenizerOptions::max_literal_tokens`] tokens, so one
//! long string cannot fill a model's window. Every lexeme yields at least
//! one token (`[UNK]` if nothing else).
//!
//! The sub-tokens of one identifier are glued back by concatenation with
//! WordPiece's `##` removed ([`CodeTokenizer::lexeme_texts`]), which gives
//! the identifier exactly unless a piece was `[UNK]`; literal text between
//! tokens loses its whitespace.
//!
//! A trained tokenizer is a directory: `tokenizer.json` and `vocab.txt`
//! (written by [`cloze_text::tokenizer::save_tokenizer_files`], loadable by
//! any BERT tooling) and `code_tokenizer.json` (this layer's settings).

use std::path::Path;

use cloze_core::NO_WORD;
use cloze_text::tokenizer::{train_wordpiece_with, TrainOptions, TrainReport};
use cloze_text::{Progress, SpecialTokens, TextTokenizer, WordBoundaries};
use serde::{Deserialize, Serialize};

use crate::category::CodeCategory;
use crate::error::{Error, IoContext, Result};
use crate::lex::Lexeme;

/// The settings file of a code tokenizer directory.
pub const CONFIG_FILE: &str = "code_tokenizer.json";

const FORMAT: &str = "cloze-code-tokenizer";
const FORMAT_VERSION: u32 = 1;

/// Splits an identifier into pieces whose concatenation is the identifier:
/// a new piece starts where a lowercase letter (or a letter without case)
/// is followed by an uppercase one, before the last capital of a run of
/// capitals followed by a lowercase letter (`HTTPServer` -> `HTTP`,
/// `Server`), between letters and digits, and around runs of any other
/// character (`_`, `$`, `#`), each run of one such character being a piece.
pub fn split_identifier(identifier: &str) -> Vec<&str> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Class {
        Upper,
        Lower,
        Digit,
        Other(char),
    }
    let class = |c: char| {
        if c.is_uppercase() {
            Class::Upper
        } else if c.is_alphabetic() {
            Class::Lower
        } else if c.is_numeric() {
            Class::Digit
        } else {
            Class::Other(c)
        }
    };
    let chars: Vec<(usize, char)> = identifier.char_indices().collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    for i in 1..chars.len() {
        let (at, c) = chars[i];
        let (prev, cur) = (class(chars[i - 1].1), class(c));
        let letter = |k: Class| matches!(k, Class::Upper | Class::Lower);
        let boundary = match (prev, cur) {
            (Class::Lower, Class::Upper) => true,
            (Class::Upper, Class::Upper) => chars
                .get(i + 1)
                .is_some_and(|&(_, next)| class(next) == Class::Lower),
            (a, b) if a == b => false,
            (a, b) if letter(a) && letter(b) => false,
            _ => true,
        };
        if boundary {
            pieces.push(&identifier[start..at]);
            start = at;
        }
    }
    if start < identifier.len() {
        pieces.push(&identifier[start..]);
    }
    pieces
}

/// True when `text` could be (part of) an identifier: non-empty, letters,
/// digits, `_` and `$` only.
pub fn is_identifier_text(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

/// True when the vocabulary token `token` (`##` marking a WordPiece
/// continuation) can carry on the identifier spelled `word` so far: a
/// WordPiece continuation always can; any other token only if it is
/// identifier text that [`split_identifier`] would cut off `word + token`
/// as a piece of its own (`get` + `Name`, `HTTP` + `Server`, `x` + `1`,
/// `foo` + `_`), which is how the tokenizer would have written that
/// identifier. `get` + `name` is no continuation (`getname` is one piece),
/// so after `get` a lowercase word starts the next lexeme. Token ids carry
/// no identifier boundary, so this rule is the only one there is; it
/// cannot tell `Name` in `getName` from a new identifier `Name` after
/// `get` (which code rarely writes: two identifiers are separated by
/// punctuation or a keyword, or differ in category).
pub fn continues_identifier(word: &str, token: &str) -> bool {
    if !is_identifier_text(word) {
        return false;
    }
    if let Some(rest) = token.strip_prefix("##") {
        return is_identifier_text(rest);
    }
    if !is_identifier_text(token) {
        return false;
    }
    let joined = format!("{word}{token}");
    let before = split_identifier(word);
    let after = split_identifier(&joined);
    after.len() == before.len() + 1
        && after[..before.len()] == before[..]
        && after[before.len()] == token
}

/// Settings of [`CodeTokenizer::train`].
#[derive(Debug, Clone)]
pub struct CodeTokenizerOptions {
    /// Target vocabulary size (the six reserved tokens included).
    pub vocab_size: usize,
    /// Minimum pair frequency for a WordPiece merge.
    pub min_frequency: u64,
    /// Most tokens kept of one literal (at least 1).
    pub max_literal_tokens: usize,
}

impl Default for CodeTokenizerOptions {
    fn default() -> Self {
        Self {
            vocab_size: 8000,
            min_frequency: 2,
            max_literal_tokens: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Config {
    format: String,
    version: u32,
    max_literal_tokens: usize,
    /// The category names in index order, so a reader can check them.
    categories: Vec<String>,
}

/// A sequence of lexemes as tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedCode {
    /// Token ids.
    pub ids: Vec<u32>,
    /// The category index ([`CodeCategory::index`]) of each token's lexeme.
    pub categories: Vec<u8>,
    /// For each token, the index of the identifier occurrence it belongs to
    /// (0, 1, .. in order; the same for all sub-tokens of one identifier),
    /// or [`NO_WORD`] for a token of a keyword, punctuation or literal.
    pub identifiers: Vec<u32>,
    /// The index of the lexeme each token came from.
    pub lexeme_of: Vec<u32>,
}

impl EncodedCode {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there is no token.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The category of token `i`.
    pub fn category(&self, i: usize) -> Option<CodeCategory> {
        self.categories
            .get(i)
            .and_then(|&c| CodeCategory::from_index(c))
    }
}

/// The code tokenizer: identifier splitting over a WordPiece vocabulary.
#[derive(Debug, Clone)]
pub struct CodeTokenizer {
    text: TextTokenizer,
    max_literal_tokens: usize,
}

impl CodeTokenizer {
    /// Trains the vocabulary on the lexemes of `files` (each item the
    /// lexemes of one file, e.g. the training split), as described in the
    /// module docs. Polls [`Progress::cancelled`]; returns the trainer's
    /// report too.
    pub fn train<'a, I>(
        files: I,
        options: &CodeTokenizerOptions,
        progress: &dyn Progress,
    ) -> Result<(Self, TrainReport)>
    where
        I: Iterator<Item = &'a [Lexeme]> + Send,
    {
        if options.max_literal_tokens == 0 {
            return Err(Error::Config(
                "max_literal_tokens must be at least 1".into(),
            ));
        }
        let texts = files.map(training_text);
        let trained = train_wordpiece_with(
            texts,
            &TrainOptions {
                vocab_size: options.vocab_size,
                lowercase: false,
                strip_accents: Some(false),
                min_frequency: options.min_frequency,
                limit_alphabet: None,
            },
            progress,
        )
        .map_err(|e| match e {
            cloze_text::Error::Cancelled => Error::Cancelled,
            e => Error::Text(e),
        })?;
        Ok((
            Self {
                text: trained.tokenizer,
                max_literal_tokens: options.max_literal_tokens,
            },
            trained.report,
        ))
    }

    /// Loads a directory written by [`Self::save_files`].
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&path).at(&path)?;
        let config: Config = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let bad = |reason: String| Error::BadTokenizer {
            path: path.clone(),
            reason,
        };
        if config.format != FORMAT || config.version != FORMAT_VERSION {
            return Err(bad(format!(
                "format {:?} version {} is not {FORMAT:?} version {FORMAT_VERSION}",
                config.format, config.version
            )));
        }
        let names: Vec<&str> = CodeCategory::ALL.iter().map(|c| c.name()).collect();
        if config.categories != names {
            return Err(bad(format!(
                "categories {:?} differ from this version's {:?}",
                config.categories, names
            )));
        }
        if config.max_literal_tokens == 0 {
            return Err(bad("max_literal_tokens is 0".into()));
        }
        let text = TextTokenizer::from_json_file(&dir.join("tokenizer.json"))?;
        Ok(Self {
            text,
            max_literal_tokens: config.max_literal_tokens,
        })
    }

    /// Writes `tokenizer.json`, `vocab.txt` and [`CONFIG_FILE`] into the
    /// existing directory `dir` (normally a staging directory the caller
    /// publishes under the `cloze-fs` rule).
    pub fn save_files(&self, dir: &Path) -> Result<()> {
        cloze_text::tokenizer::save_tokenizer_files(&self.text, dir)?;
        let config = Config {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            max_literal_tokens: self.max_literal_tokens,
            categories: CodeCategory::ALL
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
        };
        let path = dir.join(CONFIG_FILE);
        let mut json = serde_json::to_string_pretty(&config).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        json.push('\n');
        std::fs::write(&path, json).at(&path)
    }

    /// The WordPiece tokenizer underneath.
    pub fn text_tokenizer(&self) -> &TextTokenizer {
        &self.text
    }

    /// The special token ids (and vocabulary size).
    pub fn special_tokens(&self) -> &SpecialTokens {
        self.text.special_tokens()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> u32 {
        self.text.vocab_size()
    }

    /// Most tokens kept of one literal.
    pub fn max_literal_tokens(&self) -> usize {
        self.max_literal_tokens
    }

    /// The token string of an id (`##` marks a WordPiece continuation).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.text.id_to_token(id)
    }

    /// The token ids of one lexeme (at least one).
    pub fn lexeme_ids(&self, lexeme: &Lexeme) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        self.push_lexeme(lexeme, &mut ids)?;
        Ok(ids)
    }

    fn push_lexeme(&self, lexeme: &Lexeme, ids: &mut Vec<u32>) -> Result<()> {
        let start = ids.len();
        if lexeme.category.is_identifier() {
            for piece in split_identifier(&lexeme.text) {
                let (piece_ids, _) = self
                    .text
                    .encode_ids_words(piece, WordBoundaries::Tokenizer)?;
                ids.extend(piece_ids);
            }
        } else {
            let (mut piece_ids, _) = self
                .text
                .encode_ids_words(&lexeme.text, WordBoundaries::Tokenizer)?;
            if lexeme.category == CodeCategory::Literal {
                piece_ids.truncate(self.max_literal_tokens);
            }
            ids.extend(piece_ids);
        }
        if ids.len() == start {
            ids.push(self.text.special_tokens().unk);
        }
        Ok(())
    }

    /// Encodes lexemes: every sub-token carries its lexeme's category, its
    /// identifier occurrence (or [`NO_WORD`]) and its lexeme's index.
    pub fn encode(&self, lexemes: &[Lexeme]) -> Result<EncodedCode> {
        let mut out = EncodedCode::default();
        let mut identifier = 0u32;
        for (i, lexeme) in lexemes.iter().enumerate() {
            let start = out.ids.len();
            self.push_lexeme(lexeme, &mut out.ids)?;
            let n = out.ids.len() - start;
            let is_identifier = lexeme.category.is_identifier();
            let occurrence = if is_identifier { identifier } else { NO_WORD };
            out.categories
                .extend(std::iter::repeat_n(lexeme.category.index(), n));
            out.identifiers.extend(std::iter::repeat_n(occurrence, n));
            out.lexeme_of.extend(std::iter::repeat_n(i as u32, n));
            if is_identifier {
                identifier += 1;
            }
        }
        Ok(out)
    }

    /// The text of each lexeme of `encoded`, rebuilt from its tokens: an
    /// identifier's tokens glued (`##` removed), other lexemes' tokens
    /// joined WordPiece-style (a space before each token that does not start
    /// with `##`).
    pub fn lexeme_texts(&self, encoded: &EncodedCode) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut current: Option<u32> = None;
        for (i, &id) in encoded.ids.iter().enumerate() {
            let lexeme = encoded.lexeme_of.get(i).copied().unwrap_or(u32::MAX);
            let token = self.token_text(id).unwrap_or_default();
            let glue = encoded.category(i).is_some_and(CodeCategory::is_identifier);
            if current != Some(lexeme) || out.is_empty() {
                out.push(token.strip_prefix("##").unwrap_or(&token).to_string());
                current = Some(lexeme);
                continue;
            }
            let text = out.last_mut();
            if let Some(text) = text {
                match token.strip_prefix("##") {
                    Some(rest) => text.push_str(rest),
                    None if glue => text.push_str(&token),
                    None => {
                        text.push(' ');
                        text.push_str(&token);
                    }
                }
            }
        }
        out
    }
}

/// The training text of one file: its lexemes' pieces separated by spaces
/// (identifiers cut by [`split_identifier`], other lexemes whole).
fn training_text(lexemes: &[Lexeme]) -> String {
    let mut text = String::new();
    for lexeme in lexemes {
        if lexeme.category.is_identifier() {
            for piece in split_identifier(&lexeme.text) {
                text.push_str(piece);
                text.push(' ');
            }
        } else {
            text.push_str(&lexeme.text);
            text.push(' ');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_continues_an_identifier_only_where_the_split_would_cut() {
        for (word, token) in [
            ("get", "Name"),
            ("HTTP", "Server"),
            ("x", "1"),
            ("foo", "_"),
            ("foo_", "bar"),
            ("Buf", "##fer"),
            ("MAX_", "VALUE"),
        ] {
            assert!(continues_identifier(word, token), "{word} + {token}");
        }
        for (word, token) in [
            ("get", "name"),    // `getname` is one piece
            ("URL", "S"),       // `URLS` is one piece
            ("x", "("),         // punctuation
            ("", "foo"),        // nothing to continue
            ("foo", "##"),      // an empty continuation
            ("a.b", "C"),       // not an identifier so far
            ("HTTPS", "erver"), // re-cuts the word: `HTTP` + `Server`
        ] {
            assert!(!continues_identifier(word, token), "{word} + {token}");
        }
        assert!(is_identifier_text("$foo_1"));
        assert!(!is_identifier_text("a-b"));
        assert!(!is_identifier_text(""));
    }

    #[test]
    fn identifiers_split_at_case_digit_and_underscore_boundaries() {
        let cases: [(&str, &[&str]); 12] = [
            ("getValue", &["get", "Value"]),
            ("parseHTTPResponse2", &["parse", "HTTP", "Response", "2"]),
            ("HTTPServer", &["HTTP", "Server"]),
            ("MAX_VALUE", &["MAX", "_", "VALUE"]),
            ("__proto__", &["__", "proto", "__"]),
            ("utf8Decoder", &["utf", "8", "Decoder"]),
            ("sha256", &["sha", "256"]),
            ("x", &["x"]),
            ("URL", &["URL"]),
            ("$scope", &["$", "scope"]),
            ("#private", &["#", "private"]),
            ("größeWert", &["größe", "Wert"]),
        ];
        for (identifier, pieces) in cases {
            let got = split_identifier(identifier);
            assert_eq!(got, pieces, "{identifier}");
            assert_eq!(got.concat(), identifier);
        }
        assert!(split_identifier("").is_empty());
    }
}
