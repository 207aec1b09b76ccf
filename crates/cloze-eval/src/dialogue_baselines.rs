//! Baselines a dialogue model must beat (issue 18's "done when"): a unigram
//! response model and a TF-IDF retrieval ranker, both fitted on the
//! training samples, scored on the same tokens and the same candidate sets
//! as the network of [`crate::dialogue`]. Neither needs tensors.
//!
//! - [`UnigramBaseline`]: a language model that ignores the context. Its
//!   counts are the tokens the network is trained to predict on every
//!   training sample ([`target_tokens`]: the response's words cut to
//!   `max_response_len - 1` as `cloze_mask::DialogueBuilder` lays them out,
//!   and the closing `[SEP]` when the cut keeps it). With add-one (Laplace)
//!   smoothing over the whole vocabulary of `V` ids (special tokens
//!   included), `p(t) = (count(t) + 1) / (N + V)`, `N` the tokens counted.
//!   [`UnigramBaseline::score`] gives the network's [`ResponseScore`] per
//!   sample, so [`crate::dialogue::perplexity`] and hits@1 (mean
//!   log-likelihood per token) are computed exactly as for the network.
//! - [`RetrievalBaseline`]: ranks each candidate response by the cosine
//!   similarity of TF-IDF vectors, the sample's context (every token of
//!   every context turn, as the sample holds them, not cut to the model's
//!   `max_context_len`) against the candidate response's tokens. Term
//!   frequency is the raw count in the text; the inverse document frequency
//!   is scikit-learn's smoothed one, `idf(t) = ln((1 + D) / (1 + df(t))) +
//!   1`, over the training samples' documents: each context turn and each
//!   response of every training sample is one document, as the samples hold
//!   them (a turn that recurs in later samples' contexts counts once per
//!   sample it appears in), `D` of them, `df(t)` holding `t`. A text with no
//!   tokens scores 0 against anything. It ranks; it is no language model
//!   and has no perplexity.
//!
//! Both implement [`CandidateScorer`], so [`hits_at_1_with`] ranks the
//! candidates of [`crate::dialogue::draw_candidates`] for them: the same
//! seed gives the same candidate sets as `DialogueScorer::hits_at_1_of`, and
//! a tie counts against the true response for all three.

use std::collections::{BTreeMap, HashMap};

use cloze_mask::{DialogueBuilder, DialogueExample};

use crate::dialogue::{target_tokens, CandidateScorer, ResponseScore};
use crate::error::{Error, Result};

#[cfg(doc)]
use crate::dialogue::hits_at_1_with;

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidOption { name, reason }
}

fn no_training(what: &str) -> Error {
    invalid(
        "train",
        format!("no training samples to fit the {what} baseline on"),
    )
}

/// The context-free unigram response model; see the module docs.
#[derive(Debug, Clone)]
pub struct UnigramBaseline {
    builder: DialogueBuilder,
    counts: Vec<u64>,
    total: u64,
}

impl UnigramBaseline {
    /// Counts the target tokens of `train` laid out by `builder` (the
    /// network's layout) over a vocabulary of `vocab_size` ids. Errors: no
    /// training sample, an empty vocabulary, a token id outside it.
    pub fn train(
        builder: &DialogueBuilder,
        vocab_size: usize,
        train: &[DialogueExample],
    ) -> Result<Self> {
        if train.is_empty() {
            return Err(no_training("unigram"));
        }
        if vocab_size == 0 {
            return Err(invalid("vocab_size", "0: no token to predict".to_owned()));
        }
        let mut counts = vec![0u64; vocab_size];
        let mut total = 0u64;
        for (i, ex) in train.iter().enumerate() {
            for t in target_tokens(builder, ex) {
                let c = counts.get_mut(t as usize).ok_or_else(|| {
                    invalid(
                        "train",
                        format!(
                            "sample {i} holds token {t}, outside the vocabulary of {vocab_size}"
                        ),
                    )
                })?;
                *c += 1;
                total += 1;
            }
        }
        Ok(Self {
            builder: builder.clone(),
            counts,
            total,
        })
    }

    /// Tokens counted (`N`).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Ids in the vocabulary (`V`).
    pub fn vocab_size(&self) -> usize {
        self.counts.len()
    }

    /// `ln p(token)`, add-one smoothed; `None` outside the vocabulary.
    pub fn log_prob(&self, token: u32) -> Option<f64> {
        let c = *self.counts.get(token as usize)?;
        let denominator = self.total as f64 + self.counts.len() as f64;
        Some(((c + 1) as f64 / denominator).ln())
    }

    /// Each example's response log-likelihood over the tokens the network
    /// predicts for it, in order. Errors: a token outside the vocabulary.
    pub fn score(&self, examples: &[DialogueExample]) -> Result<Vec<ResponseScore>> {
        examples
            .iter()
            .enumerate()
            .map(|(i, ex)| {
                let targets = target_tokens(&self.builder, ex);
                let mut ll = 0.0;
                for &t in &targets {
                    ll += self.log_prob(t).ok_or_else(|| {
                        invalid(
                            "examples",
                            format!(
                                "sample {i} holds token {t}, outside the vocabulary of {}",
                                self.counts.len()
                            ),
                        )
                    })?;
                }
                Ok(ResponseScore {
                    log_likelihood: ll,
                    tokens: targets.len(),
                })
            })
            .collect()
    }
}

impl CandidateScorer for UnigramBaseline {
    /// Each pair's mean log-likelihood per token, as the network's.
    fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>> {
        Ok(self.score(pairs)?.iter().map(ResponseScore::mean).collect())
    }
}

/// The TF-IDF retrieval ranker; see the module docs.
#[derive(Debug, Clone)]
pub struct RetrievalBaseline {
    /// Documents holding each token.
    df: HashMap<u32, u64>,
    /// Documents in all (`D`).
    documents: u64,
}

impl RetrievalBaseline {
    /// Document frequencies over `train`'s context turns and responses.
    /// Errors: no training sample.
    pub fn train(train: &[DialogueExample]) -> Result<Self> {
        if train.is_empty() {
            return Err(no_training("retrieval"));
        }
        let mut df: HashMap<u32, u64> = HashMap::new();
        let mut documents = 0u64;
        let mut seen: Vec<u32> = Vec::new();
        for ex in train {
            for doc in ex.context.iter().chain(std::iter::once(&ex.response)) {
                documents += 1;
                seen.clear();
                seen.extend_from_slice(doc);
                seen.sort_unstable();
                seen.dedup();
                for &t in &seen {
                    *df.entry(t).or_insert(0) += 1;
                }
            }
        }
        Ok(Self { df, documents })
    }

    /// Documents counted (`D`).
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// `ln((1 + D) / (1 + df(token))) + 1`.
    pub fn idf(&self, token: u32) -> f64 {
        let df = self.df.get(&token).copied().unwrap_or(0);
        ((1 + self.documents) as f64 / (1 + df) as f64).ln() + 1.0
    }

    /// The TF-IDF vector of the tokens of `texts` taken together, in token
    /// order (so sums run in a fixed order and equal texts score equally).
    fn vector<'a>(&self, texts: impl IntoIterator<Item = &'a [u32]>) -> BTreeMap<u32, f64> {
        let mut tf: BTreeMap<u32, f64> = BTreeMap::new();
        for text in texts {
            for &t in text {
                *tf.entry(t).or_insert(0.0) += 1.0;
            }
        }
        for (t, w) in tf.iter_mut() {
            *w *= self.idf(*t);
        }
        tf
    }

    /// Cosine similarity of the TF-IDF vectors of `context` (all turns
    /// together) and `response`; 0 when either has no tokens.
    pub fn similarity(&self, context: &[Vec<u32>], response: &[u32]) -> f64 {
        let c = self.vector(context.iter().map(Vec::as_slice));
        let r = self.vector([response]);
        let norm = |v: &BTreeMap<u32, f64>| v.values().map(|w| w * w).sum::<f64>().sqrt();
        let (nc, nr) = (norm(&c), norm(&r));
        if nc == 0.0 || nr == 0.0 {
            return 0.0;
        }
        let dot: f64 = r.iter().filter_map(|(t, w)| c.get(t).map(|v| v * w)).sum();
        dot / (nc * nr)
    }
}

impl CandidateScorer for RetrievalBaseline {
    /// Each pair's [`RetrievalBaseline::similarity`].
    fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>> {
        Ok(pairs
            .iter()
            .map(|p| self.similarity(&p.context, &p.response))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::dialogue::{draw_candidates, hits_at_1_with, perplexity, DialogueScorer};
    use cloze_core::SpecialTokens;
    use cloze_mask::DialogueConfig;
    use cloze_models::{BertConfig, BertForPreTraining};

    const SEP: u32 = 3;

    fn builder(max_response_len: usize) -> DialogueBuilder {
        let specials = SpecialTokens {
            vocab_size: 40,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: SEP,
            mask: 4,
            pseudo_mask: None,
            all_special: vec![0, 1, 2, 3, 4],
        };
        let config = DialogueConfig {
            max_response_len,
            num_roles: 8,
            ..DialogueConfig::default()
        };
        DialogueBuilder::new(config, specials).expect("valid settings")
    }

    fn sample(context: &[&[u32]], response: &[u32]) -> DialogueExample {
        DialogueExample {
            context: context.iter().map(|t| t.to_vec()).collect(),
            speakers: (0..context.len() as u32).collect(),
            response: response.to_vec(),
            responder: context.len() as u32,
        }
    }

    /// Records every pair it is asked to score (and scores them 0).
    #[derive(Default)]
    struct Recorder(RefCell<Vec<DialogueExample>>);

    impl CandidateScorer for Recorder {
        fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>> {
            self.0.borrow_mut().extend_from_slice(pairs);
            Ok(vec![0.0; pairs.len()])
        }
    }

    /// Wraps a scorer and records the pairs it scores.
    struct Tap<'a>(&'a dyn CandidateScorer, RefCell<Vec<DialogueExample>>);

    impl CandidateScorer for Tap<'_> {
        fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>> {
            self.1.borrow_mut().extend_from_slice(pairs);
            self.0.score_candidates(pairs)
        }
    }

    #[test]
    fn unigram_perplexity_is_the_hand_computed_value() -> Result<()> {
        // Vocabulary 40. Targets: [5, 6, SEP] and [5, SEP]: N = 5, counts
        // 5:2, 6:1, SEP:2, so p = (c + 1) / 45.
        let b = builder(64);
        let train = [sample(&[&[10]], &[5, 6]), sample(&[&[11]], &[5])];
        let u = UnigramBaseline::train(&b, 40, &train)?;
        assert_eq!((u.total(), u.vocab_size()), (5, 40));
        let test = [sample(&[&[12]], &[5, 7]), sample(&[], &[6])];
        let s = u.score(&test)?;
        // [5, 7, SEP]: 3/45, 1/45, 3/45; [6, SEP]: 2/45, 3/45.
        let ll0 = (3.0f64 / 45.0).ln() + (1.0f64 / 45.0).ln() + (3.0f64 / 45.0).ln();
        assert!((s[0].log_likelihood - ll0).abs() < 1e-12);
        assert_eq!((s[0].tokens, s[1].tokens), (3, 2));
        // exp(-ll / 5) = (45^5 / (3 * 1 * 3 * 2 * 3))^(1/5).
        let by_hand = (45f64.powi(5) / 54.0).powf(0.2);
        assert!(
            (perplexity(&s) - by_hand).abs() < 1e-9,
            "{}",
            perplexity(&s)
        );
        assert!((by_hand - 20.2644).abs() < 1e-3, "{by_hand}");
        // A token never seen still has probability 1 / (N + V).
        assert!((u.log_prob(39).unwrap_or(0.0) - (1.0f64 / 45.0).ln()).abs() < 1e-12);
        assert!(u.log_prob(40).is_none());
        assert!(u.score(&[sample(&[], &[40])]).is_err());
        Ok(())
    }

    #[test]
    fn unigram_counts_the_networks_targets_cut_the_same_way() -> Result<()> {
        // max_response_len 3: [CLS] and two words fit, so a three-word
        // response keeps two and loses its [SEP]; a one-word one keeps both.
        let b = builder(3);
        assert_eq!(target_tokens(&b, &sample(&[&[9]], &[5, 6, 7])), vec![5, 6]);
        assert_eq!(target_tokens(&b, &sample(&[&[9]], &[5])), vec![5, SEP]);
        let u = UnigramBaseline::train(&b, 40, &[sample(&[&[9]], &[5, 6, 7])])?;
        assert_eq!(u.total(), 2);
        assert_eq!(u.log_prob(7), u.log_prob(SEP), "7 was cut, [SEP] dropped");
        assert!(u.log_prob(5) > u.log_prob(7));
        // The network scores the same number of tokens per sample.
        let (_vs, m) = model()?;
        let scorer = DialogueScorer {
            model: &m,
            builder: &b,
            batch_size: 2,
        };
        let test = [
            sample(&[&[9, 10]], &[5, 6, 7]),
            sample(&[&[9]], &[5]),
            sample(&[], &[]),
        ];
        let net: Vec<usize> = scorer.score(&test)?.iter().map(|s| s.tokens).collect();
        let uni: Vec<usize> = u.score(&test)?.iter().map(|s| s.tokens).collect();
        assert_eq!(net, uni);
        assert_eq!(uni, vec![2, 2, 1]);
        Ok(())
    }

    fn model() -> Result<(tch::nn::VarStore, BertForPreTraining)> {
        tch::manual_seed(3);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let config = BertConfig {
            vocab_size: 40,
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 64,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            role_type_size: Some(8),
            ..BertConfig::default()
        };
        let m = BertForPreTraining::new_masked_lm(&vs.root(), &config)?;
        Ok((vs, m))
    }

    /// Twelve samples from four dialogues, each response distinct.
    fn test_set() -> (Vec<DialogueExample>, Vec<String>) {
        let examples = (0..12u32)
            .map(|i| sample(&[&[10 + i % 5, 20 + i % 7]], &[5 + i % 3, 30 + i % 9]))
            .collect();
        let groups = (0..12).map(|i| format!("d{}", i % 4)).collect();
        (examples, groups)
    }

    #[test]
    fn baselines_rank_the_candidate_sets_the_network_ranks() -> Result<()> {
        let (examples, groups) = test_set();
        let which = [0, 3, 4, 7, 11];
        let b = builder(64);
        let (_vs, m) = model()?;
        let net = DialogueScorer {
            model: &m,
            builder: &b,
            batch_size: 4,
        };
        let unigram = UnigramBaseline::train(&b, 40, &examples)?;
        let retrieval = RetrievalBaseline::train(&examples)?;
        let seed = 17;
        let mut seen = Vec::new();
        for scorer in [
            &net as &dyn CandidateScorer,
            &unigram as &dyn CandidateScorer,
            &retrieval as &dyn CandidateScorer,
        ] {
            let tap = Tap(scorer, RefCell::default());
            let (h, n) = hits_at_1_with(&tap, &examples, &groups, &which, 4, seed)?;
            assert_eq!(n, which.len());
            assert!((0.0..=1.0).contains(&h));
            seen.push(tap.1.into_inner());
        }
        assert_eq!(seen[0], seen[1]);
        assert_eq!(seen[0], seen[2]);
        // The network's own method ranks through the same draw...
        let tap = Tap(&net, RefCell::default());
        assert_eq!(
            net.hits_at_1_of(&examples, &groups, &which, 4, seed)?,
            hits_at_1_with(&tap, &examples, &groups, &which, 4, seed)?
        );
        // ...which pairs each sample's context with the drawn responses.
        let sets = draw_candidates(&groups, &which, 4, seed)?;
        let expected: Vec<DialogueExample> = sets
            .iter()
            .flat_map(|s| {
                s.responses.iter().map(|&j| DialogueExample {
                    response: examples[j].response.clone(),
                    ..examples[s.sample].clone()
                })
            })
            .collect();
        assert_eq!(seen[0], expected);
        for s in &sets {
            assert_eq!(s.responses[0], s.sample);
            assert_eq!(s.responses.len(), 4);
            assert!(s.responses[1..]
                .iter()
                .all(|&j| groups[j] != groups[s.sample]));
        }
        Ok(())
    }

    #[test]
    fn the_shared_draw_is_the_one_the_network_always_made() -> Result<()> {
        // The draw as `DialogueScorer::hits_at_1_of` wrote it before it was
        // shared: the network's numbers must not move.
        use cloze_core::rng::{rng_for, Stream};
        use rand::Rng;
        let (_, groups) = test_set();
        let (candidates, seed) = (5, 9);
        let n = groups.len();
        let sets = draw_candidates(&groups, &(0..n).collect::<Vec<_>>(), candidates, seed)?;
        assert_eq!(sets.len(), n);
        for (i, set) in sets.iter().enumerate() {
            let mut rng = rng_for(seed, Stream::Sampling, i as u64);
            let mut picks = Vec::new();
            for _ in 0..candidates * 50 {
                if picks.len() + 1 == candidates {
                    break;
                }
                let j = rng.random_range(0..n);
                if groups[j] != groups[i] && !picks.contains(&j) {
                    picks.push(j);
                }
            }
            assert_eq!(set.sample, i);
            assert_eq!(set.responses[0], i);
            assert_eq!(set.responses[1..], picks[..]);
        }
        // A different seed draws differently.
        assert_ne!(
            draw_candidates(&groups, &[0, 1, 2], candidates, seed)?,
            draw_candidates(&groups, &[0, 1, 2], candidates, seed + 1)?
        );
        Ok(())
    }

    #[test]
    fn retrieval_ranks_a_response_sharing_a_rare_context_word_first() -> Result<()> {
        // 5 is in every training document, 9 in one.
        let train = [
            sample(&[&[5, 6], &[5, 7]], &[5, 8]),
            sample(&[&[5, 9]], &[5, 6]),
        ];
        let r = RetrievalBaseline::train(&train)?;
        assert_eq!(r.documents(), 5);
        let idf = |df: f64| (6.0 / (1.0 + df)).ln() + 1.0;
        assert!((r.idf(5) - idf(5.0)).abs() < 1e-12);
        assert!((r.idf(9) - idf(1.0)).abs() < 1e-12);
        assert!((r.idf(42) - idf(0.0)).abs() < 1e-12);
        let context = vec![vec![5, 9], vec![6]];
        let rare = r.similarity(&context, &[9, 8]);
        let common = r.similarity(&context, &[5, 8]);
        assert!(rare > common && common > 0.0, "{rare} vs {common}");
        // By hand: context (5: idf5, 9: idf1, 6: idf(2)), response (9: idf1, 8: idf(1)).
        let (a, b, c) = (idf(5.0), idf(1.0), idf(2.0));
        let by_hand = b * b / ((a * a + b * b + c * c).sqrt() * (b * b + b * b).sqrt());
        assert!((rare - by_hand).abs() < 1e-12);
        assert_eq!(r.similarity(&context, &[]), 0.0);
        assert_eq!(r.similarity(&[], &[9]), 0.0);

        // In a ranking: the truth shares the rare word with its context,
        // the distractors only the common one.
        let test = vec![
            sample(&[&[5, 9]], &[9, 8]),
            sample(&[&[5, 6]], &[5, 7]),
            sample(&[&[5, 7]], &[5, 6]),
        ];
        let groups: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (h, n) = hits_at_1_with(&r, &test, &groups, &[0], 3, 0)?;
        assert_eq!((h, n), (1.0, 1));
        Ok(())
    }

    #[test]
    fn ties_count_against_the_truth() -> Result<()> {
        let groups: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // Every response the same: every score ties, so no hit, for both.
        let same: Vec<DialogueExample> = (0..3).map(|i| sample(&[&[10 + i]], &[5, 6])).collect();
        let b = builder(64);
        let u = UnigramBaseline::train(&b, 40, &same)?;
        assert_eq!(
            hits_at_1_with(&u, &same, &groups, &[0, 1, 2], 3, 0)?,
            (0.0, 3)
        );
        let r = RetrievalBaseline::train(&same)?;
        assert_eq!(
            hits_at_1_with(&r, &same, &groups, &[0, 1, 2], 3, 0)?,
            (0.0, 3)
        );
        // Contexts sharing no word with any candidate: all 0, no hit.
        let apart: Vec<DialogueExample> = (0..3).map(|i| sample(&[&[10 + i]], &[20 + i])).collect();
        assert_eq!(
            hits_at_1_with(&r, &apart, &groups, &[0, 1, 2], 3, 0)?,
            (0.0, 3)
        );
        // The unigram model prefers the frequent response: a hit only where
        // the truth is the most frequent, strictly.
        let train = [sample(&[], &[7]), sample(&[], &[7]), sample(&[], &[8])];
        let u = UnigramBaseline::train(&b, 40, &train)?;
        let test = vec![
            sample(&[&[1]], &[7]),
            sample(&[&[2]], &[8]),
            sample(&[&[3]], &[9]),
        ];
        let (h, n) = hits_at_1_with(&u, &test, &groups, &[0, 1, 2], 3, 0)?;
        assert_eq!(n, 3);
        assert!((h - 1.0 / 3.0).abs() < 1e-12, "{h}");
        // The recorder's constant scores are all ties too.
        let rec = Recorder::default();
        assert_eq!(
            hits_at_1_with(&rec, &test, &groups, &[0, 1, 2], 3, 0)?,
            (0.0, 3)
        );
        assert_eq!(rec.0.borrow().len(), 9);
        Ok(())
    }

    #[test]
    fn empty_training_data_is_an_error() {
        let b = builder(64);
        let e = UnigramBaseline::train(&b, 40, &[])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("no training samples")));
        let e = RetrievalBaseline::train(&[]).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("no training samples")));
        assert!(UnigramBaseline::train(&b, 0, &[sample(&[], &[5])]).is_err());
        // A training token outside the vocabulary is refused, not skipped.
        assert!(UnigramBaseline::train(&b, 40, &[sample(&[], &[45])]).is_err());
    }
}
