//! Stage 1: split an instance into maskable units (tokens or whole words).

use cloze_core::{Instance, NO_WORD};

use crate::config::UnitsConfig;
use crate::special::SpecialSet;

/// A run of consecutive tokens masked as one: `tokens[start .. start + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// First token position.
    pub start: u32,
    /// Number of tokens (at least 1).
    pub len: u32,
}

impl Unit {
    /// One past the last token position.
    #[inline]
    pub fn end(self) -> u32 {
        self.start + self.len
    }
}

/// The unit stage. Implementations must emit units in sequence order, never
/// overlapping and never covering a special token.
pub trait UnitSplitter: Send + Sync + std::fmt::Debug {
    /// Appends the maskable units of `instance` to `out` (which arrives empty).
    fn split(&self, instance: &Instance, specials: &SpecialSet, out: &mut Vec<Unit>);
}

/// Every non-special token is a unit.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenUnits;

impl UnitSplitter for TokenUnits {
    fn split(&self, instance: &Instance, specials: &SpecialSet, out: &mut Vec<Unit>) {
        out.extend(
            instance
                .tokens
                .iter()
                .enumerate()
                .filter(|(_, &t)| !specials.contains(t))
                .map(|(i, _)| Unit {
                    start: i as u32,
                    len: 1,
                }),
        );
    }
}

/// Consecutive tokens sharing a word id form a unit; tokens with [`NO_WORD`] or a
/// special id belong to none.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordUnits;

impl UnitSplitter for WordUnits {
    fn split(&self, instance: &Instance, specials: &SpecialSet, out: &mut Vec<Unit>) {
        let mut current: Option<(u32, Unit)> = None;
        for (i, (&tok, &word)) in instance.tokens.iter().zip(&instance.word_ids).enumerate() {
            let maskable = word != NO_WORD && !specials.contains(tok);
            match current {
                Some((w, ref mut unit)) if maskable && w == word && unit.end() == i as u32 => {
                    unit.len += 1;
                }
                _ => {
                    if let Some((_, unit)) = current.take() {
                        out.push(unit);
                    }
                    if maskable {
                        current = Some((
                            word,
                            Unit {
                                start: i as u32,
                                len: 1,
                            },
                        ));
                    }
                }
            }
        }
        if let Some((_, unit)) = current {
            out.push(unit);
        }
    }
}

/// The splitter a config names.
pub fn build_units(config: UnitsConfig) -> Box<dyn UnitSplitter> {
    match config {
        UnitsConfig::Tokens => Box::new(TokenUnits),
        UnitsConfig::Words => Box::new(WordUnits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloze_core::SpecialTokens;

    fn set() -> SpecialSet {
        SpecialSet::new(&SpecialTokens {
            vocab_size: 100,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: 3,
            mask: 4,
            pseudo_mask: None,
            all_special: vec![0, 1, 2, 3, 4],
        })
        .expect("valid")
    }

    fn instance() -> Instance {
        Instance {
            tokens: vec![2, 10, 11, 12, 3, 13, 14, 3],
            segment_ids: vec![0, 0, 0, 0, 0, 1, 1, 1],
            word_ids: vec![NO_WORD, 0, 0, 1, NO_WORD, 2, 2, NO_WORD],
            pair_label: None,
        }
    }

    #[test]
    fn words_group_subtokens_and_skip_specials() {
        let mut out = Vec::new();
        WordUnits.split(&instance(), &set(), &mut out);
        let spans: Vec<(u32, u32)> = out.iter().map(|u| (u.start, u.len)).collect();
        assert_eq!(spans, vec![(1, 2), (3, 1), (5, 2)]);
    }

    #[test]
    fn tokens_skip_specials() {
        let mut out = Vec::new();
        TokenUnits.split(&instance(), &set(), &mut out);
        let starts: Vec<u32> = out.iter().map(|u| u.start).collect();
        assert_eq!(starts, vec![1, 2, 3, 5, 6]);
    }
}
