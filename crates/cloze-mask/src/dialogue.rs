//! Dialogue batches for a PLATO-style unified transformer (Bao et al.,
//! PLATO-2, arXiv 2006.16779, and PLATO-XL, arXiv 2109.09519): one network
//! reads the context bidirectionally and writes the response left to right,
//! told apart only by the attention mask; role embeddings say who speaks.
//!
//! A row is the context turns, each closed by `[SEP]`, after one `[CLS]`
//! (segment 0), then the response opened by `[CLS]` and closed by `[SEP]`
//! (segment 1), as Knover's `DialogReader` lays them out (`bos` =
//! `[CLS]`, `eos` = `[SEP]`; context type 0, response type 1):
//!
//! ```text
//! [CLS] c1 c1 [SEP] c2 [SEP] | [CLS] r1 r2 [SEP]
//!   0   0  0   0    1   1    |   0   0  0   0      roles (two-role scheme)
//! ```
//!
//! Position ids run on through the row (`0..len`). Knover restarts them in
//! every turn instead; continuous positions keep the order of the turns
//! visible to a model without role embeddings, which the role ablation needs
//! to be fair.
//!
//! **Targets**: response token `k` predicts response token `k + 1`
//! (`targets.response`): the opening `[CLS]` predicts the first word, the
//! last word predicts the closing `[SEP]`, which ends generation. A response
//! cut to `max_response_len` loses its `[SEP]`, so the model never learns to
//! stop where the cut fell.
//!
//! **Attention** ([`DialogueAttention`]): `Unified` (PLATO's): every context
//! token sees the whole context; response token `k` sees the context and
//! response tokens `0..=k`. `Causal`: every token sees itself and the tokens
//! before it, context included (a plain left-to-right LM, the ablation's
//! other arm). No token ever sees a later response token.
//!
//! **Roles** ([`RoleScheme`]): `None` gives the batch no role ids.
//! `Alternating` is Knover's default for `use_role` without custom roles:
//! context turn `i` of `n` takes role `(n - i) % 2`, so the last context turn
//! has role 1 and the response, like every second turn before it, role 0.
//! `Speaker` gives the responder role 0 (in the response and in every context
//! turn they speak) and the other speakers roles 1, 2, ... in order of their
//! latest turn, walking back from the response, capped at `num_roles - 1`
//! (the speakers beyond it share the last role); PLATO-XL assigns the
//! response role 0 and 128 role ids in all. The opening `[CLS]` has role 0.
//!
//! **Truncation**: the newest turns are kept whole while they fit
//! `max_context_len` (the `[CLS]` and every `[SEP]` counted), as Knover's
//! `_parse_src` does; when even the newest turn does not fit, its last
//! tokens are kept. A sample whose context is empty still trains: its row is
//! `[CLS] | [CLS] r1 .. [SEP]`.
//!
//! **Context MLM** (optional, `context_mask_prob > 0`): context tokens are
//! drawn with that probability and corrupted BERT's way (`[MASK]` 80%, a
//! random ordinary token 10%, kept 10%) into `targets.masked_lm`; the
//! response then reads the corrupted context. Every draw comes from the
//! example's stream `example_rng(seed, epoch, index)`.
//!
//! **Coherence** (optional, `coherence = true`): PLATO-2's response
//! coherence estimation. [`DialogueBuilder::batch_with_negatives`] appends,
//! per sample, two rows in which every token sees every other: the context
//! with its own response (pair label 0) and with a distractor response the
//! caller drew from another dialogue (pair label 1). A two-way head on
//! `[CLS]` learns to tell them apart, and its margin ranks candidate
//! responses.

use std::collections::HashMap;

use cloze_core::SpecialTokens;
use rand::RngCore;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batch::{Batch, MaskedTarget, Span, Targets, Visibility, VisibleBlock};
use crate::error::{Error, Result};
use crate::rng::example_rng;
use crate::special::{threshold, SpecialSet};

/// One dialogue sample as token ids without special tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialogueExample {
    /// Context turns, oldest first.
    pub context: Vec<Vec<u32>>,
    /// The speaker of each context turn: any ids, equal for the same person.
    pub speakers: Vec<u32>,
    /// The response's tokens.
    pub response: Vec<u32>,
    /// The responder, in the ids of `speakers`.
    pub responder: u32,
}

/// How tokens learn who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RoleScheme {
    /// No role ids (the model needs no role embeddings).
    None,
    /// Two roles alternating back from the response (Knover's default).
    Alternating,
    /// The responder is role 0, the other speakers 1, 2, ... by recency.
    #[default]
    Speaker,
}

impl RoleScheme {
    /// The scheme's name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RoleScheme::None => "none",
            RoleScheme::Alternating => "alternating",
            RoleScheme::Speaker => "speaker",
        }
    }
}

/// Who sees whom inside a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DialogueAttention {
    /// Bidirectional context, left-to-right response (PLATO's unified mask).
    #[default]
    Unified,
    /// Left to right everywhere.
    Causal,
}

impl DialogueAttention {
    /// The mask's name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DialogueAttention::Unified => "unified",
            DialogueAttention::Causal => "causal",
        }
    }
}

/// Settings of [`DialogueBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialogueConfig {
    /// Longest context part, its `[CLS]` and every `[SEP]` included
    /// (Knover's `--max_src_len`, 128).
    pub max_context_len: usize,
    /// Longest response part, its `[CLS]` and `[SEP]` included (Knover's
    /// `--max_tgt_len`, 128; 64 here, enough for nearly every stage line).
    pub max_response_len: usize,
    /// How roles are assigned.
    pub roles: RoleScheme,
    /// Role ids available (the model's `role_type_size`; PLATO-XL: 128).
    pub num_roles: u32,
    /// The attention mask.
    pub attention: DialogueAttention,
    /// Probability that a context token is an MLM target (0: response loss only).
    pub context_mask_prob: f64,
    /// Also train PLATO-2's response coherence estimation (RCE): every
    /// training sample adds two fully bidirectional rows
    /// ([`DialogueBuilder::coherence_row`]), its context with its own
    /// response (pair label 0, coherent) and with a response drawn from
    /// another dialogue (pair label 1), for a two-way head on `[CLS]`.
    #[serde(default)]
    pub coherence: bool,
    /// Weight of the coherence loss against the response loss (1 by
    /// default): the shared encoder follows the sum of their gradients.
    #[serde(default = "one")]
    pub coherence_weight: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for DialogueConfig {
    fn default() -> Self {
        Self {
            max_context_len: 128,
            max_response_len: 64,
            roles: RoleScheme::Speaker,
            num_roles: 128,
            attention: DialogueAttention::Unified,
            context_mask_prob: 0.0,
            coherence: false,
            coherence_weight: 1.0,
        }
    }
}

/// One example laid out, before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogueRow {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// 0 for the context, 1 for the response.
    pub segment_ids: Vec<u8>,
    /// Role id per token (all 0 under [`RoleScheme::None`]).
    pub role_ids: Vec<u32>,
    /// Who sees whom.
    pub blocks: Vec<VisibleBlock>,
    /// `(position, next token)` of every response position that predicts.
    pub response_targets: Vec<(u32, u32)>,
    /// `(position, original token)` of the context MLM targets.
    pub mlm_targets: Vec<(u32, u32)>,
    /// Length of the context part (`[CLS]` and `[SEP]`s included).
    pub context_len: usize,
}

impl DialogueRow {
    /// The row's `len x len` visibility as `[query][key]` 0/1 rows.
    pub fn dense(&self) -> Vec<Vec<u8>> {
        crate::batch::dense_row(&self.blocks, self.input_ids.len())
    }
}

/// Lays out dialogue samples as PLATO-style rows; see the module docs.
#[derive(Debug, Clone)]
pub struct DialogueBuilder {
    config: DialogueConfig,
    specials: SpecialTokens,
    set: SpecialSet,
}

impl DialogueBuilder {
    /// Checks the settings against the vocabulary's special tokens.
    pub fn new(config: DialogueConfig, specials: SpecialTokens) -> Result<Self> {
        let invalid = |field: &str, value: String, expected: &'static str| {
            Err(Error::InvalidValue {
                field: field.to_owned(),
                value,
                expected,
            })
        };
        if config.max_context_len < 2 {
            return invalid(
                "dialogue.max_context_len",
                config.max_context_len.to_string(),
                "at least 2 ([CLS] and one token)",
            );
        }
        if config.max_response_len < 2 {
            return invalid(
                "dialogue.max_response_len",
                config.max_response_len.to_string(),
                "at least 2 ([CLS] and one token to predict)",
            );
        }
        if config.roles != RoleScheme::None && config.num_roles < 2 {
            return invalid(
                "dialogue.num_roles",
                config.num_roles.to_string(),
                "at least 2 when roles are used",
            );
        }
        let p = config.context_mask_prob;
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::RateOutOfRange {
                field: "dialogue.context_mask_prob".into(),
                value: p,
            });
        }
        let w = config.coherence_weight;
        if !(w.is_finite() && w >= 0.0) {
            return invalid(
                "dialogue.coherence_weight",
                w.to_string(),
                "a finite weight of at least 0",
            );
        }
        let set = SpecialSet::new(&specials)?;
        Ok(Self {
            config,
            specials,
            set,
        })
    }

    /// The settings.
    pub fn config(&self) -> &DialogueConfig {
        &self.config
    }

    /// Role of each context turn and of the response under the configured scheme.
    pub fn roles(&self, ex: &DialogueExample) -> (Vec<u32>, u32) {
        let n = ex.context.len();
        match self.config.roles {
            RoleScheme::None => (vec![0; n], 0),
            RoleScheme::Alternating => ((0..n).map(|i| ((n - i) % 2) as u32).collect(), 0),
            RoleScheme::Speaker => {
                let cap = self.config.num_roles.saturating_sub(1);
                let mut assigned: HashMap<u32, u32> = HashMap::new();
                assigned.insert(ex.responder, 0);
                let mut next = 1u32;
                let mut roles = vec![0u32; n];
                for i in (0..n).rev() {
                    let speaker = ex.speakers.get(i).copied().unwrap_or(u32::MAX);
                    let role = *assigned.entry(speaker).or_insert_with(|| {
                        let r = next.min(cap);
                        next += 1;
                        r
                    });
                    roles[i] = role;
                }
                (roles, 0)
            }
        }
    }

    /// Lays out example `index` of `epoch` under `seed`.
    pub fn row(&self, ex: &DialogueExample, seed: u64, epoch: u64, index: u64) -> DialogueRow {
        self.layout(ex, true, Some((seed, epoch, index)))
    }

    /// The row a decoder reads: the context and the response's opening
    /// `[CLS]`, then `ex.response` as the prefix generated so far, with no
    /// closing `[SEP]` and no context MLM; its last position predicts the
    /// next token. The prefix is not cut to `max_response_len`.
    pub fn prompt(&self, ex: &DialogueExample) -> DialogueRow {
        self.layout(ex, false, None)
    }

    /// The row that response coherence estimation classifies (PLATO-2's
    /// evaluation model): `ex`'s context and response laid out as a training
    /// row (response cut to `max_response_len`, closed by `[SEP]` when the
    /// cut keeps it; same segments and roles), but with every real token
    /// seeing every other, no response targets and no context MLM.
    pub fn coherence_row(&self, ex: &DialogueExample) -> DialogueRow {
        let mut row = self.layout(ex, true, None);
        let len = row.input_ids.len() as u32;
        row.blocks = vec![VisibleBlock {
            queries: Span::new(0, len),
            keys: vec![Span::new(0, len)],
        }];
        row.response_targets.clear();
        row
    }

    /// `cut`: lay out a training row (response cut to `max_response_len`
    /// and closed by `[SEP]`) rather than a decoding prompt; `draw` is the
    /// `(seed, epoch, index)` of a training row's context MLM.
    fn layout(
        &self,
        ex: &DialogueExample,
        cut: bool,
        draw: Option<(u64, u64, u64)>,
    ) -> DialogueRow {
        let s = &self.specials;
        let (turn_roles, response_role) = self.roles(ex);
        // Newest turns first while they fit; the newest is cut to its end
        // when it alone is too long.
        let budget = self.config.max_context_len - 1;
        let mut used = 0usize;
        let mut first = ex.context.len();
        let mut cut_newest: Option<usize> = None;
        for (i, turn) in ex.context.iter().enumerate().rev() {
            let need = turn.len() + 1;
            if used + need <= budget {
                used += need;
                first = i;
            } else {
                if i + 1 == ex.context.len() {
                    cut_newest = Some(budget - 1);
                    first = i;
                }
                break;
            }
        }
        let mut input_ids = vec![s.cls];
        let mut role_ids = vec![0u32];
        for (i, turn) in ex.context.iter().enumerate().skip(first) {
            let tokens = match cut_newest {
                Some(keep) if i + 1 == ex.context.len() => &turn[turn.len() - keep..],
                _ => &turn[..],
            };
            input_ids.extend_from_slice(tokens);
            input_ids.push(s.sep);
            role_ids.resize(input_ids.len(), turn_roles[i]);
        }
        let nc = input_ids.len();
        let max_r = self.config.max_response_len;
        input_ids.push(s.cls);
        let words = if cut {
            ex.response.len().min(max_r - 1)
        } else {
            ex.response.len()
        };
        input_ids.extend_from_slice(&ex.response[..words]);
        if cut && words + 2 <= max_r {
            input_ids.push(s.sep);
        }
        let len = input_ids.len();
        role_ids.resize(len, response_role);
        let mut segment_ids = vec![0u8; nc];
        segment_ids.resize(len, 1);
        let response_targets = (nc..len - 1)
            .map(|p| (p as u32, input_ids[p + 1]))
            .collect();

        // Context MLM: corrupt after the response targets are read, so they
        // stay the true next tokens.
        let mut mlm_targets = Vec::new();
        if let Some((seed, epoch, index)) = draw.filter(|_| self.config.context_mask_prob > 0.0) {
            let mut rng = example_rng(seed, epoch, index);
            let pick = threshold(self.config.context_mask_prob);
            let (mask_to, random_to) = (threshold(0.8), threshold(0.9));
            for (p, id) in input_ids.iter_mut().enumerate().take(nc) {
                if self.set.contains(*id) || u64::from(rng.next_u32()) >= pick {
                    continue;
                }
                mlm_targets.push((p as u32, *id));
                let how = u64::from(rng.next_u32());
                if how < mask_to {
                    *id = s.mask;
                } else if how < random_to {
                    *id = self.set.random_ordinary(&mut rng);
                }
            }
        }

        let (nc32, len32) = (nc as u32, len as u32);
        let blocks = match self.config.attention {
            DialogueAttention::Unified => {
                let mut b = vec![VisibleBlock {
                    queries: Span::new(0, nc32),
                    keys: vec![Span::new(0, nc32)],
                }];
                b.extend((nc32..len32).map(|q| VisibleBlock {
                    queries: Span::new(q, q + 1),
                    keys: vec![Span::new(0, q + 1)],
                }));
                b
            }
            DialogueAttention::Causal => (0..len32)
                .map(|q| VisibleBlock {
                    queries: Span::new(q, q + 1),
                    keys: vec![Span::new(0, q + 1)],
                })
                .collect(),
        };
        DialogueRow {
            input_ids,
            segment_ids,
            role_ids,
            blocks,
            response_targets,
            mlm_targets,
            context_len: nc,
        }
    }

    /// Examples `first_index..` of `epoch` as one padded batch (rows built in
    /// parallel; a pure function of the examples, seed, epoch and index).
    pub fn batch(
        &self,
        examples: &[DialogueExample],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Batch {
        let rows: Vec<DialogueRow> = examples
            .par_iter()
            .enumerate()
            .map(|(i, ex)| self.row(ex, seed, epoch, first_index + i as u64))
            .collect();
        self.collate(rows)
    }

    /// [`DialogueBuilder::batch`] plus response coherence estimation rows:
    /// the `B` training rows, then for every example its
    /// [`DialogueBuilder::coherence_row`] (pair label 0), then the same
    /// context with `negatives[i]` as the response (pair label 1). The
    /// training rows' pair label is [`crate::batch::IGNORED_LABEL`]. Errors
    /// when `negatives` does not hold one response per example.
    pub fn batch_with_negatives(
        &self,
        examples: &[DialogueExample],
        negatives: &[Vec<u32>],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Result<Batch> {
        if negatives.len() != examples.len() {
            return Err(Error::InvalidValue {
                field: "negatives".to_owned(),
                value: format!("{} for {} examples", negatives.len(), examples.len()),
                expected: "one distractor response per example",
            });
        }
        let mut rows: Vec<DialogueRow> = examples
            .par_iter()
            .enumerate()
            .map(|(i, ex)| self.row(ex, seed, epoch, first_index + i as u64))
            .collect();
        let b = rows.len();
        rows.extend(examples.iter().map(|ex| self.coherence_row(ex)));
        rows.extend(examples.iter().zip(negatives).map(|(ex, neg)| {
            self.coherence_row(&DialogueExample {
                response: neg.clone(),
                ..ex.clone()
            })
        }));
        let mut batch = self.collate(rows);
        let mut labels = vec![crate::batch::IGNORED_LABEL; b];
        labels.resize(2 * b, 0);
        labels.resize(3 * b, 1);
        batch.targets.pair = Some(labels);
        Ok(batch)
    }

    /// Pads laid-out rows into a batch.
    pub fn collate(&self, rows: Vec<DialogueRow>) -> Batch {
        let l = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        let b = rows.len();
        let with_roles = self.config.roles != RoleScheme::None;
        let mut batch = Batch {
            batch_size: b,
            seq_len: l,
            input_ids: vec![i64::from(self.specials.pad); b * l],
            token_type_ids: vec![0; b * l],
            attention_mask: vec![0; b * l],
            position_ids: None,
            visibility: Some(Visibility {
                rows: Vec::with_capacity(b),
            }),
            role_ids: with_roles.then(|| vec![0; b * l]),
            targets: Targets::default(),
        };
        for (r, row) in rows.into_iter().enumerate() {
            let start = r * l;
            for (k, &id) in row.input_ids.iter().enumerate() {
                batch.input_ids[start + k] = i64::from(id);
                batch.token_type_ids[start + k] = i64::from(row.segment_ids[k]);
                batch.attention_mask[start + k] = 1;
                if let Some(roles) = batch.role_ids.as_mut() {
                    roles[start + k] = i64::from(row.role_ids[k]);
                }
            }
            let target = |&(pos, target): &(u32, u32)| MaskedTarget {
                row: r as u32,
                pos,
                target,
            };
            batch
                .targets
                .response
                .extend(row.response_targets.iter().map(target));
            batch
                .targets
                .masked_lm
                .extend(row.mlm_targets.iter().map(target));
            if let Some(v) = batch.visibility.as_mut() {
                v.rows.push(row.blocks);
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ids: 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], 4 [MASK], words from 10.
    fn specials() -> SpecialTokens {
        SpecialTokens {
            vocab_size: 40,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: 3,
            mask: 4,
            pseudo_mask: None,
            all_special: vec![0, 1, 2, 3, 4],
        }
    }

    fn builder(config: DialogueConfig) -> DialogueBuilder {
        DialogueBuilder::new(config, specials()).expect("valid settings")
    }

    fn example() -> DialogueExample {
        // Speaker 7 says "10 11", speaker 8 says "12", speaker 7 answers "13 14".
        DialogueExample {
            context: vec![vec![10, 11], vec![12]],
            speakers: vec![7, 8],
            response: vec![13, 14],
            responder: 7,
        }
    }

    #[test]
    fn the_unified_mask_of_a_worked_example_entry_by_entry() {
        let row = builder(DialogueConfig::default()).row(&example(), 0, 0, 0);
        // [CLS] 10 11 [SEP] 12 [SEP] | [CLS] 13 14 [SEP]
        assert_eq!(row.input_ids, vec![2, 10, 11, 3, 12, 3, 2, 13, 14, 3]);
        assert_eq!(row.segment_ids, vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(row.context_len, 6);
        #[rustfmt::skip]
        let expected: Vec<Vec<u8>> = vec![
            vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0], // context sees the context
            vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            vec![1, 1, 1, 1, 1, 1, 1, 0, 0, 0], // response [CLS]
            vec![1, 1, 1, 1, 1, 1, 1, 1, 0, 0], // 13
            vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0], // 14
            vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1], // [SEP]
        ];
        assert_eq!(row.dense(), expected);
        // Each response token predicts the next one; [SEP] predicts nothing.
        assert_eq!(row.response_targets, vec![(6, 13), (7, 14), (8, 3)]);
        assert!(row.mlm_targets.is_empty());
    }

    #[test]
    fn a_coherence_row_is_the_training_row_read_both_ways() {
        let b = builder(DialogueConfig {
            context_mask_prob: 1.0,
            ..DialogueConfig::default()
        });
        let row = b.coherence_row(&example());
        // The training row's tokens, segments and roles, uncorrupted...
        assert_eq!(row.input_ids, vec![2, 10, 11, 3, 12, 3, 2, 13, 14, 3]);
        assert_eq!(row.segment_ids, vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(row.role_ids, vec![0, 0, 0, 0, 1, 1, 0, 0, 0, 0]);
        // ...every token sees every token, and nothing is predicted.
        assert_eq!(row.dense(), vec![vec![1u8; 10]; 10]);
        assert!(row.response_targets.is_empty());
        assert!(row.mlm_targets.is_empty());
    }

    #[test]
    fn coherence_rows_follow_the_training_rows_with_their_labels() {
        let b = builder(DialogueConfig {
            coherence: true,
            ..DialogueConfig::default()
        });
        let mut other = example();
        other.response = vec![20, 21, 22];
        let examples = [example(), other];
        let negatives = vec![vec![30], vec![31, 32]];
        let batch = b
            .batch_with_negatives(&examples, &negatives, 1, 0, 0)
            .expect("one negative each");
        assert_eq!(batch.batch_size, 6);
        assert_eq!(batch.targets.pair, Some(vec![-100, -100, 0, 0, 1, 1]));
        // The first two rows are the plain training batch.
        let plain = b.batch(&examples, 1, 0, 0);
        assert_eq!(batch.targets.response, plain.targets.response);
        let l = batch.seq_len;
        assert_eq!(&batch.input_ids[..l], &plain.input_ids[..l]);
        // Row 4 is example 0's context with the first distractor, padded.
        let row4: Vec<i64> = batch.row(4).iter().copied().filter(|&t| t != 0).collect();
        assert_eq!(row4, vec![2, 10, 11, 3, 12, 3, 2, 30, 3]);
        assert_eq!(batch.row(3)[..10], [2, 10, 11, 3, 12, 3, 2, 20, 21, 22][..]);
        assert!(b
            .batch_with_negatives(&examples, &negatives[..1], 1, 0, 0)
            .is_err());
    }

    #[test]
    fn a_prompt_is_the_row_without_its_end() {
        let b = builder(DialogueConfig {
            context_mask_prob: 1.0,
            ..DialogueConfig::default()
        });
        let mut ex = example();
        ex.response = vec![13];
        let prompt = b.prompt(&ex);
        // No [SEP] after the prefix, no context corruption.
        assert_eq!(prompt.input_ids, vec![2, 10, 11, 3, 12, 3, 2, 13]);
        assert!(prompt.mlm_targets.is_empty());
        assert_eq!(prompt.response_targets, vec![(6, 13)]);
        let full = builder(DialogueConfig::default()).row(&ex, 0, 0, 0);
        assert_eq!(
            prompt.dense()[..],
            full.dense()[..8]
                .iter()
                .map(|r| r[..8].to_vec())
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn the_causal_mask_is_lower_triangular() {
        let row = builder(DialogueConfig {
            attention: DialogueAttention::Causal,
            ..DialogueConfig::default()
        })
        .row(&example(), 0, 0, 0);
        for (q, keys) in row.dense().iter().enumerate() {
            for (k, &v) in keys.iter().enumerate() {
                assert_eq!(v, u8::from(k <= q), "query {q} key {k}");
            }
        }
    }

    #[test]
    fn roles_follow_the_speakers_of_a_hand_made_scene() {
        // Hamlet (1), Horatio (2), Marcellus (3), Hamlet, Horatio; Hamlet answers.
        let ex = DialogueExample {
            context: vec![vec![10], vec![11], vec![12], vec![13], vec![14]],
            speakers: vec![1, 2, 3, 1, 2],
            response: vec![15],
            responder: 1,
        };
        let speaker = builder(DialogueConfig::default());
        // Responder 0; Horatio spoke last (1), Marcellus before him (2).
        assert_eq!(speaker.roles(&ex), (vec![0, 1, 2, 0, 1], 0));
        let row = speaker.row(&ex, 0, 0, 0);
        assert_eq!(row.role_ids, vec![0, 0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 0, 0, 0]);
        // Knover's two roles: (n - i) % 2 back from the response.
        let alternating = builder(DialogueConfig {
            roles: RoleScheme::Alternating,
            ..DialogueConfig::default()
        });
        assert_eq!(alternating.roles(&ex), (vec![1, 0, 1, 0, 1], 0));
        // A cap of 2 roles folds every other speaker into role 1.
        let capped = builder(DialogueConfig {
            num_roles: 2,
            ..DialogueConfig::default()
        });
        assert_eq!(capped.roles(&ex), (vec![0, 1, 1, 0, 1], 0));
        // No roles: the batch carries none.
        let none = builder(DialogueConfig {
            roles: RoleScheme::None,
            ..DialogueConfig::default()
        });
        assert!(none.batch(&[ex], 0, 0, 0).role_ids.is_none());
    }

    #[test]
    fn truncation_keeps_the_newest_turns_and_cuts_long_responses() {
        let ex = DialogueExample {
            context: vec![vec![10, 11, 12], vec![13, 14], vec![15]],
            speakers: vec![1, 2, 1],
            response: vec![16, 17, 18, 19],
            responder: 2,
        };
        let b = builder(DialogueConfig {
            max_context_len: 6,
            max_response_len: 4,
            ..DialogueConfig::default()
        });
        let row = b.row(&ex, 0, 0, 0);
        // Context: [CLS] 13 14 [SEP] 15 [SEP]; response [CLS] 16 17 18, no [SEP].
        assert_eq!(row.input_ids, vec![2, 13, 14, 3, 15, 3, 2, 16, 17, 18]);
        assert_eq!(row.response_targets, vec![(6, 16), (7, 17), (8, 18)]);
        // A newest turn longer than the budget keeps its end.
        let long = DialogueExample {
            context: vec![vec![10, 11, 12, 13, 14, 15, 16]],
            speakers: vec![1],
            response: vec![17],
            responder: 2,
        };
        let row = b.row(&long, 0, 0, 0);
        assert_eq!(&row.input_ids[..6], &[2, 13, 14, 15, 16, 3]);
        // No context at all still gives a row to train on.
        let empty = DialogueExample {
            response: vec![17],
            ..DialogueExample::default()
        };
        assert_eq!(b.row(&empty, 0, 0, 0).input_ids, vec![2, 2, 17, 3]);
    }

    #[test]
    fn context_mlm_is_seeded_and_leaves_the_response_alone() {
        let b = builder(DialogueConfig {
            context_mask_prob: 0.5,
            ..DialogueConfig::default()
        });
        let ex = DialogueExample {
            context: vec![(10..30).collect(), (30..40).collect()],
            speakers: vec![1, 2],
            response: vec![11, 12, 13],
            responder: 1,
        };
        let a = b.row(&ex, 3, 1, 9);
        assert_eq!(a, b.row(&ex, 3, 1, 9));
        assert_ne!(a.mlm_targets, b.row(&ex, 3, 1, 10).mlm_targets);
        assert!(!a.mlm_targets.is_empty());
        for &(pos, original) in &a.mlm_targets {
            assert!((pos as usize) < a.context_len);
            assert!(original >= 10);
        }
        assert_eq!(&a.input_ids[a.context_len..], &[2, 11, 12, 13, 3]);
        assert_eq!(
            a.response_targets,
            vec![(33, 11), (34, 12), (35, 13), (36, 3)]
        );
    }

    #[test]
    fn batches_pad_and_carry_every_part() {
        let b = builder(DialogueConfig::default());
        let short = DialogueExample {
            response: vec![10],
            ..DialogueExample::default()
        };
        let batch = b.batch(&[example(), short], 0, 0, 0);
        assert_eq!((batch.batch_size, batch.seq_len), (2, 10));
        assert_eq!(&batch.input_ids[10..14], &[2, 2, 10, 3]);
        assert_eq!(&batch.attention_mask[10..], &[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(batch.targets.response.len(), 3 + 2);
        assert_eq!(
            batch.targets.response[3],
            MaskedTarget {
                row: 1,
                pos: 1,
                target: 10
            }
        );
        // Padding keys are invisible to every query of the short row.
        let dense = batch
            .visibility
            .as_ref()
            .expect("dialogue rows have a mask")
            .dense(2, 10, &batch.attention_mask);
        let short_rows = &dense[100..];
        assert!(short_rows
            .chunks(10)
            .all(|q| q[4..].iter().all(|&v| v == 0)));
    }

    #[test]
    fn bad_settings_are_refused() {
        for config in [
            DialogueConfig {
                max_context_len: 1,
                ..DialogueConfig::default()
            },
            DialogueConfig {
                max_response_len: 1,
                ..DialogueConfig::default()
            },
            DialogueConfig {
                num_roles: 1,
                ..DialogueConfig::default()
            },
            DialogueConfig {
                context_mask_prob: 1.5,
                ..DialogueConfig::default()
            },
            DialogueConfig {
                coherence_weight: -1.0,
                ..DialogueConfig::default()
            },
            DialogueConfig {
                coherence_weight: f64::NAN,
                ..DialogueConfig::default()
            },
        ] {
            assert!(DialogueBuilder::new(config, specials()).is_err());
        }
    }
}
