//! Code completion metrics and the count-based baselines they are compared
//! with (CugLM, Liu et al., ASE 2020, reports next-token accuracy on all
//! tokens and on identifiers).
//!
//! - [`CompletionScores`]: top-1 and top-5 next-token accuracy over all
//!   predicted tokens, over identifier tokens, and per syntactic category,
//!   tallied from a model's logits ([`CompletionScores::tally_logits`]) or
//!   from ranked candidates ([`CompletionScores::tally_ranked`]).
//! - [`NgramModel`]: an order-`n` token model with backoff (the frequency
//!   baseline is order 1); it ranks the next token by the counts of the
//!   longest context seen in training, filling the list from shorter
//!   contexts. Counts are exact and the ranking breaks ties by the smaller
//!   id, so it is deterministic.
//!
//! - [`complete_words`]: whole-identifier completion for `cloze complete`:
//!   a beam search over a model's next-token distributions that extends
//!   every identifier-like first token piece by piece until the identifier
//!   ends, and ranks whole identifiers (and single non-identifier tokens)
//!   by their probability.
//!
//! The categories are the code layer's indices; which of them are
//! identifiers is the caller's to say.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tch::Tensor;

use crate::error::{Error, Result};

/// Top-1 and top-5 hits over `n` predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Hits {
    /// Predictions tallied.
    pub n: u64,
    /// The true token ranked first.
    pub top1: u64,
    /// The true token among the first five.
    pub top5: u64,
}

impl Hits {
    /// `top1 / n` (0 for no predictions).
    pub fn top1_rate(&self) -> f64 {
        self.top1 as f64 / self.n.max(1) as f64
    }

    /// `top5 / n` (0 for no predictions).
    pub fn top5_rate(&self) -> f64 {
        self.top5 as f64 / self.n.max(1) as f64
    }

    fn add(&mut self, rank: Option<usize>) {
        self.n += 1;
        if rank == Some(0) {
            self.top1 += 1;
        }
        if rank.is_some_and(|r| r < 5) {
            self.top5 += 1;
        }
    }
}

/// Next-token accuracy, overall, on identifiers and per category.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompletionScores {
    /// Every predicted token.
    pub all: Hits,
    /// Tokens whose category is an identifier category.
    pub identifiers: Hits,
    /// Per category index.
    pub by_category: BTreeMap<u8, Hits>,
}

impl CompletionScores {
    /// Tallies one prediction: the rank of the true token among the
    /// candidates (`None` when it is not among the first five).
    pub fn tally_rank(&mut self, rank: Option<usize>, category: u8, identifier: bool) {
        self.all.add(rank);
        if identifier {
            self.identifiers.add(rank);
        }
        self.by_category.entry(category).or_default().add(rank);
    }

    /// Tallies ranked candidate lists (best first) against their targets.
    pub fn tally_ranked(
        &mut self,
        ranked: &[Vec<u32>],
        targets: &[u32],
        categories: &[u8],
        is_identifier: impl Fn(u8) -> bool,
    ) -> Result<()> {
        check_lengths(ranked.len(), targets.len(), categories.len())?;
        for ((cands, &t), &c) in ranked.iter().zip(targets).zip(categories) {
            let rank = cands.iter().take(5).position(|&x| x == t);
            self.tally_rank(rank, c, is_identifier(c));
        }
        Ok(())
    }

    /// Tallies `[N, V]` logits against `N` targets and their categories.
    pub fn tally_logits(
        &mut self,
        logits: &Tensor,
        targets: &[u32],
        categories: &[u8],
        is_identifier: impl Fn(u8) -> bool,
    ) -> Result<()> {
        let size = logits.size();
        if size.len() != 2 || size[0] != targets.len() as i64 {
            return Err(Error::InvalidOption {
                name: "logits",
                reason: format!(
                    "shape {size:?} for {} targets: expected [{}, V]",
                    targets.len(),
                    targets.len()
                ),
            });
        }
        if targets.is_empty() {
            return Ok(());
        }
        let k = size[1].min(5);
        let top = tch::no_grad(|| logits.f_topk(k, -1, true, true))?.1;
        let flat: Vec<i64> = Vec::<i64>::try_from(top.f_reshape([-1])?)?;
        let ranked: Vec<Vec<u32>> = flat
            .chunks(k.max(1) as usize)
            .map(|c| c.iter().map(|&x| x as u32).collect())
            .collect();
        self.tally_ranked(&ranked, targets, categories, is_identifier)
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &CompletionScores) {
        let add = |a: &mut Hits, b: &Hits| {
            a.n += b.n;
            a.top1 += b.top1;
            a.top5 += b.top5;
        };
        add(&mut self.all, &other.all);
        add(&mut self.identifiers, &other.identifiers);
        for (c, h) in &other.by_category {
            add(self.by_category.entry(*c).or_default(), h);
        }
    }
}

fn check_lengths(a: usize, b: usize, c: usize) -> Result<()> {
    if a != b || b != c {
        return Err(Error::InvalidOption {
            name: "predictions",
            reason: format!("{a} predictions, {b} targets and {c} categories: expected one each"),
        });
    }
    Ok(())
}

/// The context key of an n-gram: up to `n - 1` previous tokens.
type Context = Vec<u32>;

/// An order-`n` count model with backoff; see the module docs.
#[derive(Debug, Clone)]
pub struct NgramModel {
    order: usize,
    /// `tables[k]`: for contexts of length `k`, the most frequent next
    /// tokens, best first (at most [`NgramModel::KEEP`]), ranked once at
    /// training time so that a prediction is a few lookups.
    tables: Vec<HashMap<Context, Vec<u32>>>,
}

impl NgramModel {
    /// Candidates kept per context: enough for top-5 accuracy.
    pub const KEEP: usize = 8;

    /// Counts every `order`-gram of `sequences` (each sequence on its own:
    /// no n-gram crosses two). `order` 1 is the frequency baseline.
    pub fn train<'a>(order: usize, sequences: impl IntoIterator<Item = &'a [u32]>) -> Result<Self> {
        if order == 0 {
            return Err(Error::InvalidOption {
                name: "order",
                reason: "an n-gram model needs an order of at least 1".into(),
            });
        }
        let mut counts: Vec<HashMap<Context, HashMap<u32, u64>>> = vec![HashMap::new(); order];
        for seq in sequences {
            for (i, &next) in seq.iter().enumerate() {
                for (k, table) in counts.iter_mut().enumerate() {
                    if k > i {
                        break;
                    }
                    let ctx = seq[i - k..i].to_vec();
                    *table.entry(ctx).or_default().entry(next).or_default() += 1;
                }
            }
        }
        let tables = counts
            .into_iter()
            .map(|table| {
                table
                    .into_iter()
                    .map(|(ctx, next)| {
                        let mut c: Vec<(u32, u64)> = next.into_iter().collect();
                        c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                        c.truncate(Self::KEEP);
                        (ctx, c.into_iter().map(|(t, _)| t).collect())
                    })
                    .collect()
            })
            .collect();
        Ok(Self { order, tables })
    }

    /// The model's order.
    pub fn order(&self) -> usize {
        self.order
    }

    /// The `k` (at most [`NgramModel::KEEP`]) most likely next tokens
    /// after `context` (its last `order - 1` tokens count), best first: the
    /// longest seen context's counts, then shorter contexts' for the places
    /// left, then the most frequent tokens.
    pub fn predict(&self, context: &[u32], k: usize) -> Vec<u32> {
        let k = k.min(Self::KEEP);
        let mut out: Vec<u32> = Vec::with_capacity(k);
        let longest = (self.order - 1).min(context.len());
        for len in (0..=longest).rev() {
            let ctx = &context[context.len() - len..];
            if let Some(ranked) = self.tables[len].get(ctx) {
                for &t in ranked {
                    if out.len() == k {
                        return out;
                    }
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }
}

/// What [`complete_words`] needs to know of the vocabulary (the code layer
/// implements it over its tokenizer; the rules there are its own).
pub trait WordPieces {
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// The text of token `id` (`##` marking a WordPiece continuation), or
    /// `None` for an id without one (special tokens).
    fn text(&self, id: u32) -> Option<String>;
    /// True when `token` can open an identifier (or keyword: token ids do
    /// not tell them apart).
    fn starts_word(&self, token: &str) -> bool;
    /// True when `token` can carry on the word spelled `word` so far.
    fn continues_word(&self, word: &str, token: &str) -> bool;
}

/// Settings of [`complete_words`].
#[derive(Debug, Clone)]
pub struct WordSearch {
    /// Candidates returned (and the beam width).
    pub k: usize,
    /// Most pieces of one word; longer words are not proposed.
    pub max_pieces: usize,
    /// The start of the word already typed at the cursor (empty: none):
    /// every candidate is a word that starts with it.
    pub prefix: String,
}

impl Default for WordSearch {
    fn default() -> Self {
        Self {
            k: 5,
            max_pieces: 8,
            prefix: String::new(),
        }
    }
}

/// One candidate of [`complete_words`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordCompletion {
    /// The word (or the single token) as it would be typed.
    pub text: String,
    /// Its token ids.
    pub pieces: Vec<u32>,
    /// Natural log of its probability (summed over the piece sequences of
    /// the same text the search found).
    pub log_prob: f64,
    /// False for a single token that cannot open a word (punctuation, a
    /// literal piece).
    pub word: bool,
}

impl WordCompletion {
    /// Its probability.
    pub fn probability(&self) -> f64 {
        self.log_prob.exp()
    }
}

/// The text of `word` followed by `token`.
fn glue(word: &str, token: &str) -> String {
    format!("{word}{}", token.strip_prefix("##").unwrap_or(token))
}

/// True when `text` can still become, or already is, a word starting with `prefix`.
fn agrees(text: &str, prefix: &str) -> bool {
    text.starts_with(prefix) || prefix.starts_with(text)
}

/// Whole-word completion (see the module docs). `next` gives, for each
/// continuation (token ids appended to the caller's prompt; the first call
/// asks for the empty one), the model's next-token probabilities over the
/// vocabulary. A word's probability is the product of its pieces'
/// probabilities and of the word ending after them: one minus the
/// probability of every token that could carry it on
/// ([`WordPieces::continues_word`]). A token that cannot open a word is a
/// candidate of its own (not with a prefix). The beam keeps the `k` most
/// likely unfinished words per step and stops a word that can no longer
/// beat the `k`-th finished one (probabilities only shrink as pieces are
/// added); words of more than `max_pieces` pieces are dropped. The same
/// text reached through different pieces is one candidate with the summed
/// probability. Returns at most `k` candidates, most likely first (ties by
/// text).
pub fn complete_words<P, F>(
    pieces: &P,
    search: &WordSearch,
    mut next: F,
) -> Result<Vec<WordCompletion>>
where
    P: WordPieces + ?Sized,
    F: FnMut(&[Vec<u32>]) -> Result<Vec<Vec<f32>>>,
{
    if search.k == 0 || search.max_pieces == 0 {
        return Err(Error::InvalidOption {
            name: "k",
            reason: "word completion needs k and max_pieces of at least 1".into(),
        });
    }
    let v = pieces.vocab_size();
    let texts: Vec<Option<String>> = (0..v as u32).map(|i| pieces.text(i)).collect();
    let mut ask = |rows: &[Vec<u32>]| -> Result<Vec<Vec<f32>>> {
        let out = next(rows)?;
        if out.len() != rows.len() || out.iter().any(|d| d.len() != v) {
            return Err(Error::InvalidOption {
                name: "next",
                reason: format!(
                    "{} distributions for {} continuations, over a vocabulary of {v}",
                    out.len(),
                    rows.len()
                ),
            });
        }
        Ok(out)
    };
    let prefix = search.prefix.as_str();
    let mut finished: Vec<WordCompletion> = Vec::new();
    // (pieces, text, log probability) of the unfinished words.
    let mut beam: Vec<(Vec<u32>, String, f64)> = Vec::new();
    let first = ask(&[Vec::new()])?.remove(0);
    for (id, text) in texts.iter().enumerate() {
        let (Some(text), p) = (text, first[id]) else {
            continue;
        };
        if p <= 0.0 {
            continue;
        }
        let lp = f64::from(p).ln();
        if text.starts_with("##") {
            // Carries on the prompt's last lexeme, which is complete.
            continue;
        }
        if pieces.starts_word(text) {
            if agrees(text, prefix) {
                beam.push((vec![id as u32], text.clone(), lp));
            }
        } else if prefix.is_empty() {
            finished.push(WordCompletion {
                text: text.clone(),
                pieces: vec![id as u32],
                log_prob: lp,
                word: false,
            });
        }
    }
    let by_prob = |a: &f64, b: &f64| b.total_cmp(a);
    let keep_best = |beam: &mut Vec<(Vec<u32>, String, f64)>, k: usize| {
        beam.sort_by(|a, b| by_prob(&a.2, &b.2).then_with(|| a.0.cmp(&b.0)));
        beam.truncate(k);
    };
    keep_best(&mut beam, search.k);
    for _ in 0..search.max_pieces {
        // A word can only lose probability: drop those that cannot reach the top k.
        finished.sort_by(|a, b| by_prob(&a.log_prob, &b.log_prob));
        if let Some(kth) = finished.get(search.k - 1).map(|c| c.log_prob) {
            beam.retain(|w| w.2 > kth);
        }
        if beam.is_empty() {
            break;
        }
        let rows: Vec<Vec<u32>> = beam.iter().map(|w| w.0.clone()).collect();
        let dists = ask(&rows)?;
        let mut grown = Vec::new();
        for ((ids, text, lp), dist) in beam.into_iter().zip(dists) {
            let mut carry_on = 0.0f64;
            for (id, t) in texts.iter().enumerate() {
                let Some(t) = t else { continue };
                if !pieces.continues_word(&text, t) {
                    continue;
                }
                let p = f64::from(dist[id]);
                carry_on += p;
                let longer = glue(&text, t);
                if p > 0.0 && ids.len() < search.max_pieces && agrees(&longer, prefix) {
                    let mut more = ids.clone();
                    more.push(id as u32);
                    grown.push((more, longer, lp + p.ln()));
                }
            }
            let ends = (1.0 - carry_on).max(0.0);
            if ends > 0.0 && text.starts_with(prefix) {
                finished.push(WordCompletion {
                    text,
                    pieces: ids,
                    log_prob: lp + ends.ln(),
                    word: true,
                });
            }
        }
        beam = grown;
        keep_best(&mut beam, search.k);
    }
    // One candidate per text, its probabilities summed.
    let mut merged: Vec<WordCompletion> = Vec::new();
    for c in finished {
        match merged
            .iter_mut()
            .find(|m| m.text == c.text && m.word == c.word)
        {
            Some(m) => {
                let (hi, lo) = if m.log_prob >= c.log_prob {
                    (m.log_prob, c.log_prob)
                } else {
                    (c.log_prob, m.log_prob)
                };
                if c.log_prob > m.log_prob {
                    m.pieces = c.pieces;
                }
                m.log_prob = hi + (lo - hi).exp().ln_1p();
            }
            None => merged.push(c),
        }
    }
    merged.sort_by(|a, b| by_prob(&a.log_prob, &b.log_prob).then_with(|| a.text.cmp(&b.text)));
    merged.truncate(search.k);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ngram_model_prefers_the_longest_seen_context() -> Result<()> {
        let a: &[u32] = &[1, 2, 3, 1, 2, 3, 1, 2, 4];
        let b: &[u32] = &[5, 2, 6, 5, 2, 6];
        let m = NgramModel::train(3, [a, b])?;
        // After (1, 2): 3 twice, 4 once.
        assert_eq!(m.predict(&[9, 1, 2], 2), vec![3, 4]);
        // After (5, 2): 6; then the bigram context (2) adds 3 before 4.
        assert_eq!(m.predict(&[5, 2], 3), vec![6, 3, 4]);
        // An unseen context falls back to frequency: 2 is the most common.
        assert_eq!(m.predict(&[7, 7], 1), vec![2]);
        // Order 1 is the frequency baseline.
        let f = NgramModel::train(1, [a, b])?;
        assert_eq!(f.predict(&[1, 2], 2), vec![2, 1]);
        assert!(NgramModel::train(0, [a]).is_err());
        Ok(())
    }

    #[test]
    fn scores_count_top1_top5_identifiers_and_categories() -> Result<()> {
        let mut s = CompletionScores::default();
        let ranked = vec![vec![7, 1, 2], vec![1, 2, 3, 4, 9, 8], vec![3]];
        s.tally_ranked(&ranked, &[7, 9, 8], &[2, 2, 0], |c| c == 2)?;
        assert_eq!(
            s.all,
            Hits {
                n: 3,
                top1: 1,
                top5: 2
            }
        );
        assert_eq!(
            s.identifiers,
            Hits {
                n: 2,
                top1: 1,
                top5: 2
            }
        );
        assert_eq!(
            s.by_category[&0],
            Hits {
                n: 1,
                top1: 0,
                top5: 0
            }
        );
        assert!(s.tally_ranked(&ranked, &[1], &[0], |_| false).is_err());

        let logits = Tensor::from_slice(&[0.1f32, 0.9, 0.0, 0.5, 0.2, 0.3]).view([2, 3]);
        let mut t = CompletionScores::default();
        t.tally_logits(&logits, &[1, 2], &[1, 1], |_| true)?;
        assert_eq!(
            t.all,
            Hits {
                n: 2,
                top1: 1,
                top5: 2
            }
        );
        s.merge(&t);
        assert_eq!(s.all.n, 5);
        assert!((t.all.top1_rate() - 0.5).abs() < 1e-12);
        Ok(())
    }

    /// A hand-made vocabulary: camel-case words, `##s`, punctuation.
    struct Toy;

    const TOY: [&str; 8] = ["[CLS]", "get", "Name", "name", "(", "##s", "Value", "set"];

    impl WordPieces for Toy {
        fn vocab_size(&self) -> usize {
            TOY.len()
        }
        fn text(&self, id: u32) -> Option<String> {
            (id > 0).then(|| TOY[id as usize].to_string())
        }
        fn starts_word(&self, token: &str) -> bool {
            token.chars().all(char::is_alphanumeric)
        }
        fn continues_word(&self, _word: &str, token: &str) -> bool {
            token.starts_with("##") || token.starts_with(char::is_uppercase)
        }
    }

    /// Next-token probabilities of the toy model after each continuation.
    fn toy_next(rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        Ok(rows
            .iter()
            .map(|r| {
                let mut p = vec![0.0f32; TOY.len()];
                match r.as_slice() {
                    [] => {
                        p[1] = 0.5; // get
                        p[7] = 0.2; // set
                        p[4] = 0.3; // (
                    }
                    [1] => {
                        p[2] = 0.6; // get Name
                        p[6] = 0.1; // get Value
                        p[4] = 0.3; // get (
                    }
                    [1, 2] => {
                        p[5] = 0.4; // getName ##s
                        p[4] = 0.6;
                    }
                    _ => p[4] = 1.0,
                }
                p
            })
            .collect())
    }

    fn texts_and_probs(c: &[WordCompletion]) -> Vec<(String, f64)> {
        c.iter()
            .map(|c| (c.text.clone(), c.probability()))
            .collect()
    }

    fn assert_close(got: &[(String, f64)], want: &[(&str, f64)]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((t, p), (wt, wp)) in got.iter().zip(want) {
            assert_eq!(t, wt, "{got:?}");
            assert!((p - wp).abs() < 1e-6, "{t}: {p} vs {wp}");
        }
    }

    #[test]
    fn whole_words_are_ranked_by_pieces_times_the_end() -> Result<()> {
        let all = WordSearch {
            k: 6,
            ..WordSearch::default()
        };
        let got = complete_words(&Toy, &all, toy_next)?;
        // getName = 0.5 * 0.6 * (1 - 0.4): after it, `##s` would carry on.
        assert_close(
            &texts_and_probs(&got),
            &[
                ("(", 0.3),
                ("set", 0.2),
                ("getName", 0.18),
                ("get", 0.15),
                ("getNames", 0.12),
                ("getValue", 0.05),
            ],
        );
        let names = got
            .iter()
            .find(|c| c.text == "getNames")
            .map(|c| c.pieces.clone());
        assert_eq!(names, Some(vec![1, 2, 5]));
        assert!(!got[0].word && got[1].word);
        // A narrower beam stops words that can no longer reach the top k.
        let three = WordSearch {
            k: 3,
            ..WordSearch::default()
        };
        let mut calls = 0;
        let got = complete_words(&Toy, &three, |rows: &[Vec<u32>]| {
            calls += rows.len();
            toy_next(rows)
        })?;
        assert_close(
            &texts_and_probs(&got),
            &[("(", 0.3), ("set", 0.2), ("getName", 0.18)],
        );
        // [], [get], [set], [get Name]: getValue and getNames were cut.
        assert_eq!(calls, 4);
        Ok(())
    }

    #[test]
    fn a_typed_prefix_keeps_only_words_that_start_with_it() -> Result<()> {
        let search = WordSearch {
            k: 5,
            prefix: "getN".into(),
            ..WordSearch::default()
        };
        let got = complete_words(&Toy, &search, toy_next)?;
        assert_close(
            &texts_and_probs(&got),
            &[("getName", 0.18), ("getNames", 0.12)],
        );
        // A piece limit drops longer words.
        let short = WordSearch {
            max_pieces: 2,
            ..search
        };
        let got = complete_words(&Toy, &short, toy_next)?;
        assert_close(&texts_and_probs(&got), &[("getName", 0.18)]);
        Ok(())
    }

    #[test]
    fn word_completion_rejects_bad_settings_and_bad_distributions() {
        let zero = WordSearch {
            k: 0,
            ..WordSearch::default()
        };
        assert!(complete_words(&Toy, &zero, toy_next).is_err());
        let short = |rows: &[Vec<u32>]| Ok(vec![vec![0.5f32; 3]; rows.len()]);
        assert!(complete_words(&Toy, &WordSearch::default(), short).is_err());
    }
}
