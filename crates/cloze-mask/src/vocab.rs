//! A plain token list (`vocab.txt`) as a [`WordCodec`] and a source of
//! [`SpecialTokens`], for callers that have no tokenizer object at hand.

use std::collections::HashMap;
use std::path::Path;

use cloze_core::SpecialTokens;

use crate::error::{Error, Result};
use crate::similar::WordCodec;

/// A vocabulary: token strings indexed by id, BERT conventions (`##` marks a
/// word-internal WordPiece, CJK characters are tokens of their own).
#[derive(Debug, Clone)]
pub struct Vocab {
    tokens: Vec<String>,
    index: HashMap<String, u32>,
    max_piece_chars: usize,
}

impl Vocab {
    /// From tokens in id order; later duplicates are ignored for lookups.
    pub fn from_tokens(tokens: Vec<String>) -> Self {
        let mut index = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            index.entry(t.clone()).or_insert(i as u32);
        }
        let max_piece_chars = tokens
            .iter()
            .map(|t| t.trim_start_matches("##").chars().count())
            .max()
            .unwrap_or(0);
        Self {
            tokens,
            index,
            max_piece_chars,
        }
    }

    /// Reads a `vocab.txt`: one token per line, the line number being its id.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::from_tokens(text.lines().map(str::to_owned).collect()))
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `token`.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// The token with id `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The BERT special tokens; an error names the first one missing.
    ///
    /// Every bracketed token (`[unused0]`, `[M]`...) counts as special too, so it is
    /// never masked nor drawn as a random replacement.
    pub fn special_tokens(&self) -> Result<SpecialTokens> {
        let bracketed = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.len() > 2 && t.starts_with('[') && t.ends_with(']'))
            .map(|(i, _)| i as u32);
        SpecialTokens::from_lookup(self.tokens.len() as u32, |t| self.id(t), bracketed)
            .map_err(|e| Error::MissingSpecialToken { token: e.token })
    }

    /// Greedy longest-match WordPiece of one piece of text without CJK characters.
    fn wordpiece(&self, piece: &str, out: &mut Vec<u32>) -> Option<()> {
        let chars: Vec<char> = piece.chars().collect();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len().min(start + self.max_piece_chars);
            let mut found = None;
            while end > start {
                let s: String = chars[start..end].iter().collect();
                let key = if start > 0 { format!("##{s}") } else { s };
                if let Some(id) = self.id(&key) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            out.push(found?);
            start = end;
        }
        Some(())
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

impl WordCodec for Vocab {
    fn decode_word(&self, tokens: &[u32]) -> Option<String> {
        let mut word = String::new();
        for &t in tokens {
            let s = self.token(t)?;
            word.push_str(s.strip_prefix("##").unwrap_or(s));
        }
        Some(word)
    }

    fn encode_word(&self, word: &str) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        let mut rest = String::new();
        for c in word.chars() {
            if is_cjk(c) {
                if !rest.is_empty() {
                    self.wordpiece(&rest, &mut out)?;
                    rest.clear();
                }
                out.push(self.id(c.encode_utf8(&mut [0; 4]))?);
            } else {
                rest.push(c);
            }
        }
        if !rest.is_empty() {
            self.wordpiece(&rest, &mut out)?;
        }
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vocab {
        Vocab::from_tokens(tokens.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn missing_mask_is_named() {
        let v = vocab(&["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]);
        let e = v.special_tokens().expect_err("no mask");
        assert!(matches!(e, Error::MissingSpecialToken { token: "[MASK]" }));
        assert!(e.to_string().contains("[MASK]"));
    }

    #[test]
    fn wordpiece_and_cjk_round_trip() {
        let v = vocab(&[
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##believ", "##able", "语", "言",
        ]);
        let s = v.special_tokens().expect("complete");
        assert_eq!(s.all_special, vec![0, 1, 2, 3, 4]);
        assert_eq!(v.encode_word("unbelievable"), Some(vec![5, 6, 7]));
        assert_eq!(v.decode_word(&[5, 6, 7]).as_deref(), Some("unbelievable"));
        assert_eq!(v.encode_word("语言"), Some(vec![8, 9]));
        assert_eq!(v.encode_word("语法"), None);
    }
}
