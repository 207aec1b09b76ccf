//! Deterministic WordPiece vocabulary learning.
//!
//! WordPiece vocabularies are learned the way the `tokenizers` crate's
//! `WordPieceTrainer` learns them (byte-pair merges over characters, with
//! non-initial pieces written `##x`), but every step here has a fixed order:
//! words are sorted, the alphabet is sorted, and a merge whose count ties with
//! another's is chosen by the smaller pair of ids. `tokenizers` numbers the
//! `##x` pieces in the iteration order of a randomly seeded hash map, so its
//! ties (frequent in a small corpus) went differently from run to run and the
//! same corpus gave a different `vocab.txt` each time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

/// A symbol id in the vocabulary being learned.
type Id = u32;
/// Two adjacent symbols.
type Pair = (Id, Id);

/// Settings of [`learn_vocab`].
#[derive(Debug, Clone)]
pub(crate) struct LearnOptions<'a> {
    /// Target size, `reserved` included.
    pub vocab_size: usize,
    /// Merges of pairs seen fewer times than this are not made.
    pub min_frequency: u64,
    /// Keep only this many characters (the most frequent; ties by code
    /// point); words lose the others when pairs are counted.
    pub limit_alphabet: Option<usize>,
    /// Tokens placed first, in this order.
    pub reserved: &'a [&'a str],
    /// Marker of a piece that continues a word (`##`).
    pub prefix: &'a str,
}

/// Why the merge loop of [`learn_vocab`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The vocabulary reached the size asked for.
    Reached,
    /// No pair of adjacent symbols is left in any word.
    NoPairs,
    /// The most frequent remaining pair occurs `count` times, below `min_frequency`.
    BelowMinFrequency {
        /// How often the best remaining pair occurs.
        count: u64,
    },
    /// The caller asked to stop.
    Cancelled,
}

/// What [`learn_vocab`] produced and why it stopped where it did.
#[derive(Debug, Clone)]
pub(crate) struct Learned {
    /// Tokens in id order.
    pub tokens: Vec<String>,
    /// Distinct characters kept (the alphabet).
    pub alphabet: usize,
    /// `##x` continuation pieces added for characters seen inside words.
    pub continuation: usize,
    /// Merges made.
    pub merges: usize,
    /// Why the loop ended.
    pub stop: Stop,
}

/// Merges between two polls of `cancelled`.
const POLL_EVERY: usize = 256;

/// Learns a vocabulary from word counts and returns its tokens in id order,
/// with the counts that explain its size. `cancelled` is polled every few
/// hundred merges.
///
/// The result depends only on the multiset of words and on `options`, never
/// on the order in which the words were counted.
pub(crate) fn learn_vocab(
    counts: HashMap<String, u64>,
    options: &LearnOptions<'_>,
    cancelled: &dyn Fn() -> bool,
) -> Learned {
    let mut words: Vec<(String, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    words.sort_unstable();
    let mut vocab = Vocab::default();
    for token in options.reserved {
        vocab.intern(token);
    }
    let alphabet = alphabet(&words, options.limit_alphabet);
    for c in &alphabet {
        vocab.intern(&c.to_string());
    }
    // Continuation pieces for every character that occurs inside a word.
    let mut inner: BTreeSet<char> = BTreeSet::new();
    for (word, _) in &words {
        inner.extend(word.chars().skip(1).filter(|c| alphabet.contains(c)));
    }
    for c in &inner {
        vocab.intern(&format!("{}{c}", options.prefix));
    }
    let mut merges = 0usize;
    let mut stop = Stop::Reached;
    let mut symbols: Vec<Vec<Id>> = words
        .iter()
        .map(|(word, _)| {
            word.chars()
                .enumerate()
                .filter(|(_, c)| alphabet.contains(c))
                .filter_map(|(i, c)| {
                    if i == 0 {
                        vocab.id(&c.to_string())
                    } else {
                        vocab.id(&format!("{}{c}", options.prefix))
                    }
                })
                .collect()
        })
        .collect();
    let weights: Vec<i64> = words
        .iter()
        .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX))
        .collect();

    let mut pair_counts: HashMap<Pair, i64> = HashMap::new();
    let mut where_found: HashMap<Pair, Vec<usize>> = HashMap::new();
    for (w, syms) in symbols.iter().enumerate() {
        for p in syms.windows(2) {
            let pair = (p[0], p[1]);
            *pair_counts.entry(pair).or_default() += weights[w];
            where_found.entry(pair).or_default().push(w);
        }
    }
    // A max-heap on (count, smaller pair first); entries go stale when a
    // merge lowers a count and are refreshed when popped.
    let mut heap: BinaryHeap<(i64, Reverse<Pair>)> = pair_counts
        .iter()
        .map(|(pair, count)| (*count, Reverse(*pair)))
        .collect();
    let min_count = i64::try_from(options.min_frequency.max(1)).unwrap_or(i64::MAX);
    while vocab.len() < options.vocab_size {
        if merges.is_multiple_of(POLL_EVERY) && cancelled() {
            stop = Stop::Cancelled;
            break;
        }
        let Some((count, Reverse(pair))) = heap.pop() else {
            stop = Stop::NoPairs;
            break;
        };
        let current = pair_counts.get(&pair).copied().unwrap_or(0);
        if current != count {
            if current > 0 {
                heap.push((current, Reverse(pair)));
            }
            continue;
        }
        if count < min_count {
            stop = Stop::BelowMinFrequency {
                count: u64::try_from(count).unwrap_or(0),
            };
            break;
        }
        merges += 1;
        let left = vocab.token(pair.0).to_string();
        let right = vocab.token(pair.1);
        let merged = format!(
            "{left}{}",
            right.strip_prefix(options.prefix).unwrap_or(right)
        );
        let new = vocab.intern(&merged);
        let mut positions = where_found.remove(&pair).unwrap_or_default();
        positions.sort_unstable();
        positions.dedup();
        let mut grown: BTreeSet<Pair> = BTreeSet::new();
        for w in positions {
            let before = &symbols[w];
            if !before.windows(2).any(|p| (p[0], p[1]) == pair) {
                continue;
            }
            let after = merge_pair(before, pair, new);
            for p in before.windows(2) {
                *pair_counts.entry((p[0], p[1])).or_default() -= weights[w];
            }
            for p in after.windows(2) {
                let q = (p[0], p[1]);
                *pair_counts.entry(q).or_default() += weights[w];
                if q.0 == new || q.1 == new {
                    // Only pairs with the new symbol can have grown.
                    where_found.entry(q).or_default().push(w);
                    grown.insert(q);
                }
            }
            symbols[w] = after;
        }
        pair_counts.remove(&pair);
        for q in grown {
            if let Some(&c) = pair_counts.get(&q) {
                if c > 0 {
                    heap.push((c, Reverse(q)));
                }
            }
        }
    }
    Learned {
        tokens: vocab.tokens,
        alphabet: alphabet.len(),
        continuation: inner.len(),
        merges,
        stop,
    }
}

/// The characters kept: all, or the `limit` most frequent.
fn alphabet(words: &[(String, u64)], limit: Option<usize>) -> BTreeSet<char> {
    let mut freq: BTreeMap<char, u64> = BTreeMap::new();
    for (word, n) in words {
        for c in word.chars() {
            *freq.entry(c).or_default() += n;
        }
    }
    let mut chars: Vec<(char, u64)> = freq.into_iter().collect();
    if let Some(limit) = limit {
        chars.sort_by_key(|&(c, n)| (Reverse(n), c));
        chars.truncate(limit);
    }
    chars.into_iter().map(|(c, _)| c).collect()
}

/// Replaces every left-to-right occurrence of `pair` in `symbols` by `new`.
fn merge_pair(symbols: &[Id], pair: Pair, new: Id) -> Vec<Id> {
    let mut out = Vec::with_capacity(symbols.len());
    let mut i = 0;
    while i < symbols.len() {
        if i + 1 < symbols.len() && (symbols[i], symbols[i + 1]) == pair {
            out.push(new);
            i += 2;
        } else {
            out.push(symbols[i]);
            i += 1;
        }
    }
    out
}

/// Tokens in id order and the reverse index.
#[derive(Default)]
struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, Id>,
}

impl Vocab {
    fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The id of `token`, added at the end when new.
    fn intern(&mut self, token: &str) -> Id {
        if let Some(&id) = self.ids.get(token) {
            return id;
        }
        // A vocabulary never nears u32::MAX tokens: each one is a merge.
        let id = Id::try_from(self.tokens.len()).unwrap_or(Id::MAX);
        self.tokens.push(token.to_string());
        self.ids.insert(token.to_string(), id);
        id
    }

    fn id(&self, token: &str) -> Option<Id> {
        self.ids.get(token).copied()
    }

    fn token(&self, id: Id) -> &str {
        &self.tokens[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(vocab_size: usize) -> LearnOptions<'static> {
        LearnOptions {
            vocab_size,
            min_frequency: 1,
            limit_alphabet: None,
            reserved: &["[PAD]", "[UNK]"],
            prefix: "##",
        }
    }

    fn counts(words: &[(&str, u64)]) -> HashMap<String, u64> {
        words.iter().map(|(w, n)| (w.to_string(), *n)).collect()
    }

    #[test]
    fn merges_most_frequent_pairs_first() {
        let vocab = learn_vocab(
            counts(&[
                ("hug", 10),
                ("pug", 5),
                ("pun", 12),
                ("bun", 4),
                ("hugs", 5),
            ]),
            &options(20),
            &|| false,
        )
        .tokens;
        // Reserved, then the sorted alphabet, then sorted continuation pieces.
        let start = [
            "[PAD]", "[UNK]", "b", "g", "h", "n", "p", "s", "u", "##g", "##n", "##s", "##u",
        ];
        assert_eq!(&vocab[..13], start);
        // ##u ##g (20) > p ##u (17) > ##u ##n (16) > h ##u (15); after the first
        // merge p ##u falls to 12 and h ##u to 0, so ##un comes second and hug
        // (h ##ug, 15) third.
        assert_eq!(&vocab[13..16], ["##ug", "##un", "hug"]);
        assert!(vocab.len() <= 20);
    }

    #[test]
    fn ties_do_not_depend_on_insertion_order() {
        // 91 = 13 * 7 distinct words, many with equal counts.
        let words: Vec<(String, u64)> = (0..91)
            .map(|i| (format!("w{}x{}", i % 13, i % 7), 1 + (i % 3) as u64))
            .collect();
        let forward: HashMap<String, u64> = words.iter().cloned().collect();
        let mut reversed = HashMap::new();
        for (w, n) in words.iter().rev() {
            reversed.insert(w.clone(), *n);
        }
        let a = learn_vocab(forward, &options(60), &|| false).tokens;
        let b = learn_vocab(reversed, &options(60), &|| false).tokens;
        assert_eq!(a, b);
        assert_eq!(a.len(), 60);
    }

    #[test]
    fn min_frequency_and_alphabet_limit_are_honoured() {
        let vocab = learn_vocab(
            counts(&[("ab", 3), ("cd", 1), ("zq", 1)]),
            &LearnOptions {
                min_frequency: 2,
                limit_alphabet: Some(3),
                ..options(100)
            },
            &|| false,
        )
        .tokens;
        // a and b (3 each) are kept, then the tie at 1 goes to the smaller c.
        assert!(vocab.contains(&"a".to_string()) && vocab.contains(&"c".to_string()));
        assert!(!vocab.contains(&"z".to_string()) && !vocab.contains(&"##q".to_string()));
        assert!(vocab.contains(&"ab".to_string()), "{vocab:?}");
        assert!(!vocab.contains(&"cd".to_string()), "below min_frequency");
    }

    #[test]
    fn the_report_says_why_the_vocabulary_is_short() {
        let words = counts(&[("ab", 3), ("cd", 1)]);
        let learned = learn_vocab(
            words.clone(),
            &LearnOptions {
                min_frequency: 2,
                ..options(100)
            },
            &|| false,
        );
        // [PAD] [UNK] a b c d ##b ##d ab: one merge, then "c ##d" occurs once.
        assert_eq!((learned.alphabet, learned.continuation), (4, 2));
        assert_eq!(learned.merges, 1);
        assert_eq!(learned.stop, Stop::BelowMinFrequency { count: 1 });
        assert_eq!(learned.tokens.len(), 9);
        let all = learn_vocab(words.clone(), &options(100), &|| false);
        assert_eq!((all.merges, all.stop), (2, Stop::NoPairs));
        let enough = learn_vocab(words.clone(), &options(9), &|| false);
        assert_eq!((enough.tokens.len(), enough.stop), (9, Stop::Reached));
        let stopped = learn_vocab(words, &options(100), &|| true);
        assert_eq!((stopped.merges, stopped.stop), (0, Stop::Cancelled));
    }

    #[test]
    fn merge_pair_is_greedy_left_to_right() {
        assert_eq!(merge_pair(&[1, 1, 1, 2, 1, 1], (1, 1), 9), [9, 1, 2, 9]);
    }
}
