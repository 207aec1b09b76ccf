//! Code-aware pretraining batches after CugLM (Liu, Li, Zhao, Jin, "Multi-task
//! Learning based Pre-trained Language Model for Code Completion", ASE 2020,
//! arXiv 2012.14631): one transformer trained at once on a masked LM that
//! hides only identifiers, next-code-segment prediction (NCP), and a
//! left-to-right LM that shares every weight and differs only by its
//! attention mask; each predicted token also carries its syntactic category
//! for a category (type) head.
//!
//! The input is a corpus of [`CodeSequence`]s, one per source file: token ids,
//! the category of every token (an index the code layer defines; this crate
//! only carries it) and which identifier occurrence each token belongs to
//! ([`NO_WORD`] for keywords, punctuation and literals).
//!
//! **Examples.** Each file is cut into consecutive chunks of at most
//! `2 * W` tokens, `W = (max_len - 3) / 2`, and each chunk into a first half
//! `A` and a second half `B`; no cut falls inside an identifier (a cut that
//! would is moved back to the identifier's first sub-token). Chunks are
//! disjoint and cover the file, so a left-to-right pass over every example
//! predicts every token of the file once. Examples are numbered file by file.
//!
//! **Bidirectional row** (when the MLM or NCP is on): `[CLS] A [SEP] B' [SEP]`,
//! segment 0 then 1, every token seeing every token. With NCP, `B'` is the
//! true `B` with probability `1 - ncp_negative_prob` (label 0, as BERT's
//! IsNext) and otherwise a stretch of the same length from a different file
//! (label 1); the negative's file and chunk are drawn from the example's
//! stream and are never the example's own file. Without NCP, `B' = B` and the
//! row has no pair label. With the MLM, `identifier_mask_prob` of the row's
//! identifier occurrences (at least one when the row has any) are drawn and
//! every sub-token of each drawn identifier becomes a target; each drawn
//! identifier is replaced whole by `[MASK]` 80% of the time, by random
//! ordinary tokens 10%, and kept 10% (BERT's rule, decided once per
//! identifier). Keywords, punctuation and literals are never targets.
//!
//! **Left-to-right row** (when the LM is on): `[CLS] A B`, segment 0, token
//! `k` seeing tokens `0..=k`; position `k` predicts token `k + 1` (the
//! `[CLS]` predicts the chunk's first token), into `targets.response`.
//!
//! **Categories.** `targets.tokens` holds, at every position that predicts a
//! token (a masked identifier's sub-token, or a left-to-right position), the
//! category of the token it predicts, and [`IGNORED_LABEL`] elsewhere: the
//! category head and CugLM's type-then-identifier completion read it.
//!
//! **Rows of a batch.** Example `i` contributes its bidirectional row, then
//! its left-to-right row. `targets.pair` has one label per row when NCP is
//! on, [`IGNORED_LABEL`] on left-to-right rows. Every draw of example `i`
//! comes from `example_rng(seed, epoch, i)`.

use cloze_core::{SpecialTokens, NO_WORD};
use rand::RngCore;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batch::{Batch, MaskedTarget, Span, Targets, Visibility, VisibleBlock, IGNORED_LABEL};
use crate::error::{Error, Result};
use crate::rng::{example_rng, MaskRng};
use crate::special::{threshold, SpecialSet};

/// One source file as tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeSequence {
    /// Token ids, without special tokens.
    pub ids: Vec<u32>,
    /// Syntactic category index of each token.
    pub categories: Vec<u8>,
    /// The identifier occurrence each token belongs to (equal for the
    /// sub-tokens of one identifier, different for different occurrences),
    /// [`NO_WORD`] for tokens outside identifiers.
    pub identifiers: Vec<u32>,
}

impl CodeSequence {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the file has no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn check(&self, file: usize) -> Result<()> {
        if self.categories.len() != self.ids.len() || self.identifiers.len() != self.ids.len() {
            return Err(Error::InvalidValue {
                field: format!("code file {file}"),
                value: format!(
                    "{} ids, {} categories, {} identifier ids",
                    self.ids.len(),
                    self.categories.len(),
                    self.identifiers.len()
                ),
                expected: "one category and one identifier id per token",
            });
        }
        Ok(())
    }

    /// Whether a cut before token `at` would split an identifier.
    fn splits_identifier(&self, at: usize) -> bool {
        at > 0
            && at < self.len()
            && self.identifiers[at] != NO_WORD
            && self.identifiers[at] == self.identifiers[at - 1]
    }

    /// `at` moved back until it splits no identifier, but never to `floor`
    /// or below (an identifier longer than a whole half is then cut).
    fn cut_before(&self, at: usize, floor: usize) -> usize {
        let mut cut = at;
        while cut > floor + 1 && self.splits_identifier(cut) {
            cut -= 1;
        }
        if self.splits_identifier(cut) && cut == floor + 1 {
            at
        } else {
            cut
        }
    }
}

/// Settings of [`CodeBuilder`], with CugLM's defaults where the paper gives them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodeConfig {
    /// Longest row, special tokens included (the halves are
    /// `(max_len - 3) / 2` tokens at most).
    pub max_len: usize,
    /// Train the identifier MLM.
    pub mlm: bool,
    /// Train next-code-segment prediction.
    pub ncp: bool,
    /// Train the left-to-right LM.
    pub lm: bool,
    /// Share of a row's identifier occurrences that the MLM masks (15%, as
    /// BERT masks tokens).
    pub identifier_mask_prob: f64,
    /// Probability that NCP's second segment comes from another file (50%).
    pub ncp_negative_prob: f64,
}

impl Default for CodeConfig {
    fn default() -> Self {
        Self {
            max_len: 256,
            mlm: true,
            ncp: true,
            lm: true,
            identifier_mask_prob: 0.15,
            ncp_negative_prob: 0.5,
        }
    }
}

/// One example, where it lies in the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeChunk {
    /// The file.
    pub file: u32,
    /// First token of `A`.
    pub start: u32,
    /// First token of `B` (`A` is `start..mid`).
    pub mid: u32,
    /// One past the last token of `B`.
    pub end: u32,
}

/// Which kind a laid-out row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeRowKind {
    /// `[CLS] A [SEP] B' [SEP]`, bidirectional: MLM and NCP.
    Bidirectional,
    /// `[CLS] A B`, causal: the left-to-right LM.
    LeftToRight,
}

/// One row laid out, before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    /// Which task the row trains.
    pub kind: CodeRowKind,
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// Segment ids.
    pub segment_ids: Vec<u8>,
    /// Who sees whom (empty: everyone sees everyone).
    pub blocks: Vec<VisibleBlock>,
    /// `(position, original token)` of masked identifier sub-tokens.
    pub mlm_targets: Vec<(u32, u32)>,
    /// `(position, next token)` of left-to-right positions.
    pub next_targets: Vec<(u32, u32)>,
    /// `(position, category of the predicted token)` for every target above.
    pub categories: Vec<(u32, u8)>,
    /// NCP label (0 true continuation, 1 from another file), if NCP is on.
    pub pair: Option<u8>,
}

impl CodeRow {
    /// The row's `len x len` visibility as `[query][key]` 0/1 rows.
    pub fn dense(&self) -> Vec<Vec<u8>> {
        crate::batch::dense_row(&self.blocks, self.input_ids.len())
    }
}

/// Lays out CugLM rows over a corpus of files; see the module docs.
#[derive(Debug, Clone)]
pub struct CodeBuilder {
    config: CodeConfig,
    specials: SpecialTokens,
    set: SpecialSet,
    files: Vec<CodeSequence>,
    chunks: Vec<CodeChunk>,
}

impl CodeBuilder {
    /// Checks the settings and the files, and cuts the files into examples.
    pub fn new(
        config: CodeConfig,
        specials: SpecialTokens,
        files: Vec<CodeSequence>,
    ) -> Result<Self> {
        let invalid = |field: &str, value: String, expected: &'static str| {
            Err(Error::InvalidValue {
                field: field.to_owned(),
                value,
                expected,
            })
        };
        if config.max_len < 5 {
            return invalid(
                "code.max_len",
                config.max_len.to_string(),
                "at least 5 ([CLS], [SEP], [SEP] and a token per segment)",
            );
        }
        if !(config.mlm || config.ncp || config.lm) {
            return invalid(
                "code.{mlm,ncp,lm}",
                "all false".into(),
                "at least one task switched on",
            );
        }
        for (field, p) in [
            ("code.identifier_mask_prob", config.identifier_mask_prob),
            ("code.ncp_negative_prob", config.ncp_negative_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::RateOutOfRange {
                    field: field.into(),
                    value: p,
                });
            }
        }
        if config.mlm && config.identifier_mask_prob == 0.0 {
            return Err(Error::SelectsNothing {
                field: "code.identifier_mask_prob".into(),
                value: 0.0,
                why: "",
            });
        }
        for (i, f) in files.iter().enumerate() {
            f.check(i)?;
        }
        if config.ncp && files.iter().filter(|f| !f.is_empty()).count() < 2 {
            return invalid(
                "code.ncp",
                "true".into(),
                "a corpus of at least two non-empty files (NCP draws its negatives from another file)",
            );
        }
        let set = SpecialSet::new(&specials)?;
        let half = (config.max_len - 3) / 2;
        let mut chunks = Vec::new();
        for (f, file) in files.iter().enumerate() {
            let mut start = 0usize;
            while start < file.len() {
                let mut end = (start + 2 * half).min(file.len());
                if end < file.len() {
                    end = file.cut_before(end, start);
                }
                let mid = file.cut_before(start + (end - start).div_ceil(2), start);
                chunks.push(CodeChunk {
                    file: f as u32,
                    start: start as u32,
                    mid: mid as u32,
                    end: end as u32,
                });
                start = end;
            }
        }
        Ok(Self {
            config,
            specials,
            set,
            files,
            chunks,
        })
    }

    /// The settings.
    pub fn config(&self) -> &CodeConfig {
        &self.config
    }

    /// The files.
    pub fn files(&self) -> &[CodeSequence] {
        &self.files
    }

    /// The examples, file by file.
    pub fn chunks(&self) -> &[CodeChunk] {
        &self.chunks
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the corpus yields no example.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The rows of example `index` in `epoch` under `seed`: the bidirectional
    /// row (when the MLM or NCP is on), then the left-to-right row (when the
    /// LM is on). An index past the end wraps around.
    pub fn rows(&self, index: u64, seed: u64, epoch: u64) -> Vec<CodeRow> {
        let mut out = Vec::with_capacity(2);
        if self.chunks.is_empty() {
            return out;
        }
        let chunk = self.chunks[(index % self.chunks.len() as u64) as usize];
        let mut rng = example_rng(seed, epoch, index);
        if self.config.mlm || self.config.ncp {
            out.push(self.bidirectional(chunk, &mut rng));
        }
        if self.config.lm {
            out.push(self.left_to_right(chunk));
        }
        out
    }

    /// The left-to-right row of example `index` alone (what next-token
    /// evaluation reads, whatever the training tasks).
    pub fn left_to_right_row(&self, index: usize) -> Option<CodeRow> {
        self.chunks.get(index).map(|&c| self.left_to_right(c))
    }

    fn left_to_right(&self, c: CodeChunk) -> CodeRow {
        let file = &self.files[c.file as usize];
        let span = c.start as usize..c.end as usize;
        let mut row = self.prompt(&file.ids[span.clone()]);
        // The last position predicts nothing: the chunk ends there.
        row.next_targets.pop();
        row.categories = span
            .enumerate()
            .map(|(k, t)| (k as u32, file.categories[t]))
            .collect();
        row
    }

    /// The left-to-right row a decoder reads for the code `ids` (without
    /// specials): `[CLS] ids` under the causal mask, every position
    /// predicting the token after it; the last position's target (the
    /// token to complete, unknown here) is a placeholder 0, and no
    /// categories are given.
    pub fn prompt(&self, ids: &[u32]) -> CodeRow {
        let mut input_ids = Vec::with_capacity(ids.len() + 1);
        input_ids.push(self.specials.cls);
        input_ids.extend_from_slice(ids);
        let len = input_ids.len() as u32;
        let next_targets = (0..len)
            .map(|p| (p, input_ids.get(p as usize + 1).copied().unwrap_or(0)))
            .collect();
        let blocks = (0..len)
            .map(|q| VisibleBlock {
                queries: Span::new(q, q + 1),
                keys: vec![Span::new(0, q + 1)],
            })
            .collect();
        CodeRow {
            kind: CodeRowKind::LeftToRight,
            segment_ids: vec![0; input_ids.len()],
            input_ids,
            blocks,
            mlm_targets: Vec::new(),
            next_targets,
            categories: Vec::new(),
            pair: None,
        }
    }

    /// A stretch of `len` tokens from a random chunk of a file other than
    /// `own`, cut so that no identifier is split at its end.
    fn negative(&self, own: u32, len: usize, rng: &mut MaskRng) -> (u32, usize, usize) {
        // Rejection sampling over chunks: with at least two non-empty files a
        // foreign chunk exists, and the expected number of draws is at most
        // (all chunks) / (foreign chunks).
        loop {
            let c = self.chunks[(rng.next_u64() % self.chunks.len() as u64) as usize];
            if c.file == own {
                continue;
            }
            let file = &self.files[c.file as usize];
            let start = c.start as usize;
            let mut end = (start + len).min(file.len());
            if end < file.len() {
                end = file.cut_before(end, start);
            }
            return (c.file, start, end);
        }
    }

    fn bidirectional(&self, c: CodeChunk, rng: &mut MaskRng) -> CodeRow {
        let s = &self.specials;
        let file = &self.files[c.file as usize];
        let (a, b) = (
            c.start as usize..c.mid as usize,
            c.mid as usize..c.end as usize,
        );
        let mut pair = None;
        let (b_file, b_span) = if self.config.ncp {
            let draw = u64::from(rng.next_u32());
            if draw < threshold(self.config.ncp_negative_prob) {
                pair = Some(1);
                let (f, start, end) = self.negative(c.file, b.len().max(1), rng);
                (f, start..end)
            } else {
                pair = Some(0);
                (c.file, b)
            }
        } else {
            (c.file, b)
        };
        // The row's tokens with their origin (file, index) for the masking.
        let mut input_ids = vec![s.cls];
        let mut segment_ids = vec![0u8];
        let mut origin: Vec<Option<(u32, usize)>> = vec![None];
        for t in a {
            input_ids.push(file.ids[t]);
            segment_ids.push(0);
            origin.push(Some((c.file, t)));
        }
        input_ids.push(s.sep);
        segment_ids.push(0);
        origin.push(None);
        for t in b_span {
            input_ids.push(self.files[b_file as usize].ids[t]);
            segment_ids.push(1);
            origin.push(Some((b_file, t)));
        }
        input_ids.push(s.sep);
        segment_ids.push(1);
        origin.push(None);

        let mut mlm_targets = Vec::new();
        let mut categories = Vec::new();
        if self.config.mlm {
            // Identifier occurrences of the row, in order, as position runs.
            let identifier = |o: Option<(u32, usize)>| {
                o.and_then(|(f, t)| {
                    let id = self.files[f as usize].identifiers[t];
                    (id != NO_WORD).then_some((f, id))
                })
            };
            let mut runs: Vec<(usize, usize)> = Vec::new();
            let mut prev = None;
            for (p, &o) in origin.iter().enumerate() {
                let key = identifier(o);
                match (key, prev) {
                    (Some(k), Some(q)) if k == q => {
                        if let Some(last) = runs.last_mut() {
                            last.1 = p + 1;
                        }
                    }
                    (Some(_), _) => runs.push((p, p + 1)),
                    (None, _) => {}
                }
                prev = key;
            }
            if !runs.is_empty() {
                let want = ((runs.len() as f64 * self.config.identifier_mask_prob).round()
                    as usize)
                    .clamp(1, runs.len());
                // A partial Fisher-Yates shuffle picks `want` runs.
                let mut order: Vec<usize> = (0..runs.len()).collect();
                for i in 0..want {
                    let j = i + (rng.next_u64() % (order.len() - i) as u64) as usize;
                    order.swap(i, j);
                }
                let mut picked: Vec<usize> = order[..want].to_vec();
                picked.sort_unstable();
                let (mask_to, random_to) = (threshold(0.8), threshold(0.9));
                for r in picked {
                    let (lo, hi) = runs[r];
                    let how = u64::from(rng.next_u32());
                    for p in lo..hi {
                        let original = input_ids[p];
                        mlm_targets.push((p as u32, original));
                        if let Some((f, t)) = origin[p] {
                            categories.push((p as u32, self.files[f as usize].categories[t]));
                        }
                        if how < mask_to {
                            input_ids[p] = s.mask;
                        } else if how < random_to {
                            input_ids[p] = self.set.random_ordinary(rng);
                        }
                    }
                }
            }
        }
        CodeRow {
            kind: CodeRowKind::Bidirectional,
            input_ids,
            segment_ids,
            blocks: Vec::new(),
            mlm_targets,
            next_targets: Vec::new(),
            categories,
            pair,
        }
    }

    /// Examples `indices` of `epoch` as one padded batch (rows built in
    /// parallel; a pure function of the corpus, seed, epoch and indices).
    pub fn batch(&self, indices: &[u64], seed: u64, epoch: u64) -> Batch {
        let rows: Vec<CodeRow> = indices
            .par_iter()
            .flat_map_iter(|&i| self.rows(i, seed, epoch))
            .collect();
        self.collate(rows)
    }

    /// Pads laid-out rows into a batch.
    pub fn collate(&self, rows: Vec<CodeRow>) -> Batch {
        let l = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        let b = rows.len();
        let causal = rows.iter().any(|r| !r.blocks.is_empty());
        let mut batch = Batch {
            batch_size: b,
            seq_len: l,
            input_ids: vec![i64::from(self.specials.pad); b * l],
            token_type_ids: vec![0; b * l],
            attention_mask: vec![0; b * l],
            visibility: causal.then(|| Visibility {
                rows: Vec::with_capacity(b),
            }),
            targets: Targets {
                pair: self.config.ncp.then(|| Vec::with_capacity(b)),
                tokens: Some(vec![IGNORED_LABEL; b * l]),
                ..Targets::default()
            },
            ..Batch::default()
        };
        for (r, row) in rows.into_iter().enumerate() {
            let start = r * l;
            for (k, &id) in row.input_ids.iter().enumerate() {
                batch.input_ids[start + k] = i64::from(id);
                batch.token_type_ids[start + k] = i64::from(row.segment_ids[k]);
                batch.attention_mask[start + k] = 1;
            }
            let target = |&(pos, target): &(u32, u32)| MaskedTarget {
                row: r as u32,
                pos,
                target,
            };
            batch
                .targets
                .masked_lm
                .extend(row.mlm_targets.iter().map(target));
            batch
                .targets
                .response
                .extend(row.next_targets.iter().map(target));
            if let Some(grid) = batch.targets.tokens.as_mut() {
                for &(pos, cat) in &row.categories {
                    grid[start + pos as usize] = i64::from(cat);
                }
            }
            if let Some(pairs) = batch.targets.pair.as_mut() {
                pairs.push(row.pair.map_or(IGNORED_LABEL, i64::from));
            }
            if let Some(v) = batch.visibility.as_mut() {
                v.rows.push(row.blocks);
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    // Ids: 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], 4 [MASK]; code tokens from 10.
    fn specials() -> SpecialTokens {
        SpecialTokens {
            vocab_size: 1000,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: 3,
            mask: 4,
            pseudo_mask: None,
            all_special: vec![0, 1, 2, 3, 4],
        }
    }

    /// A file of `n` tokens where every third token starts a two-token
    /// identifier (category 5); the rest are punctuation (category 1). Ids
    /// are `base + position` so a token's file and place can be read back.
    fn file(base: u32, n: usize) -> CodeSequence {
        let mut f = CodeSequence::default();
        let mut ident = 0u32;
        for i in 0..n {
            f.ids.push(base + i as u32);
            match i % 3 {
                0 if i + 1 < n => {
                    f.categories.push(5);
                    f.identifiers.push(ident);
                }
                1 if i >= 1 && f.identifiers[i - 1] != NO_WORD => {
                    f.categories.push(5);
                    f.identifiers.push(ident);
                    ident += 1;
                }
                _ => {
                    f.categories.push(1);
                    f.identifiers.push(NO_WORD);
                }
            }
        }
        f
    }

    fn corpus() -> Vec<CodeSequence> {
        vec![file(100, 40), file(300, 25), file(500, 60)]
    }

    fn builder(config: CodeConfig) -> CodeBuilder {
        CodeBuilder::new(config, specials(), corpus()).expect("valid builder")
    }

    fn small() -> CodeConfig {
        CodeConfig {
            max_len: 19,
            ..CodeConfig::default()
        }
    }

    #[test]
    fn chunks_cover_every_file_once_and_never_split_an_identifier() {
        let b = builder(small());
        for (f, file) in b.files().iter().enumerate() {
            let mine: Vec<_> = b.chunks().iter().filter(|c| c.file == f as u32).collect();
            assert_eq!(mine.first().map(|c| c.start), Some(0));
            assert_eq!(mine.last().map(|c| c.end as usize), Some(file.len()));
            for w in mine.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            for c in &mine {
                assert!(c.start < c.mid && c.mid <= c.end, "{c:?}");
                assert!((c.end - c.start) as usize <= 16, "{c:?}");
                for cut in [c.mid, c.end] {
                    assert!(
                        !file.splits_identifier(cut as usize),
                        "{c:?} splits at {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_whole_identifiers_are_masked() {
        let b = builder(CodeConfig {
            identifier_mask_prob: 0.5,
            ..small()
        });
        let mut seen = 0;
        for i in 0..b.len() as u64 {
            for seed in 0..5 {
                let rows = b.rows(i, seed, 0);
                let bi = &rows[0];
                assert_eq!(bi.kind, CodeRowKind::Bidirectional);
                let masked: HashSet<u32> = bi.mlm_targets.iter().map(|t| t.0).collect();
                for &(pos, original) in &bi.mlm_targets {
                    seen += 1;
                    // Ids are base + position: the original token says where it came from.
                    let (f, t) = locate(&b, original);
                    let ident = f.identifiers[t];
                    assert_ne!(
                        ident, NO_WORD,
                        "a non-identifier token {original} was masked"
                    );
                    // Every sub-token of that identifier sits masked next to it.
                    for (u, &other) in f.identifiers.iter().enumerate() {
                        if other == ident {
                            let offset = u as i64 - t as i64;
                            let p = (pos as i64 + offset) as u32;
                            assert!(masked.contains(&p), "identifier {ident} masked in part");
                        }
                    }
                }
                // The categories are the masked tokens' own.
                assert_eq!(bi.categories.len(), bi.mlm_targets.len());
                assert!(bi.categories.iter().all(|&(_, c)| c == 5));
            }
        }
        assert!(seen > 0);
    }

    fn locate(b: &CodeBuilder, id: u32) -> (&CodeSequence, usize) {
        let f = b
            .files()
            .iter()
            .find(|f| {
                f.ids
                    .first()
                    .is_some_and(|&s| id >= s && id < s + f.len() as u32)
            })
            .expect("an id of the corpus");
        (f, (id - f.ids[0]) as usize)
    }

    #[test]
    fn ncp_negatives_come_from_another_file_and_positives_continue() {
        let b = builder(CodeConfig {
            mlm: false,
            ..small()
        });
        let (mut pos, mut neg) = (0, 0);
        for i in 0..b.len() as u64 {
            for seed in 0..20 {
                let row = &b.rows(i, seed, 0)[0];
                let c = b.chunks()[i as usize];
                let own = &b.files()[c.file as usize];
                let sep = row.input_ids.iter().position(|&t| t == 3).expect("a [SEP]");
                let second = &row.input_ids[sep + 1..row.input_ids.len() - 1];
                match row.pair {
                    Some(0) => {
                        pos += 1;
                        assert_eq!(second, &own.ids[c.mid as usize..c.end as usize]);
                    }
                    Some(1) => {
                        neg += 1;
                        for &t in second {
                            let (f, _) = locate(&b, t);
                            assert!(!std::ptr::eq(f, own), "a negative from its own file");
                        }
                    }
                    other => panic!("pair label {other:?}"),
                }
            }
        }
        assert!(pos > 0 && neg > 0, "{pos} positives, {neg} negatives");
    }

    #[test]
    fn the_left_to_right_row_is_causal_and_predicts_the_next_token() {
        let b = builder(small());
        let row = b.left_to_right_row(1).expect("example 1");
        let c = b.chunks()[1];
        let f = &b.files()[c.file as usize];
        assert_eq!(row.input_ids[0], 2);
        assert_eq!(
            &row.input_ids[1..],
            &f.ids[c.start as usize..c.end as usize]
        );
        let dense = row.dense();
        for (q, keys) in dense.iter().enumerate() {
            for (k, &v) in keys.iter().enumerate() {
                assert_eq!(v, u8::from(k <= q), "query {q} key {k}");
            }
        }
        for (k, &(pos, next)) in row.next_targets.iter().enumerate() {
            assert_eq!(pos as usize, k);
            assert_eq!(next, row.input_ids[k + 1]);
            let (p, cat) = row.categories[k];
            assert_eq!(p, pos);
            assert_eq!(cat, f.categories[c.start as usize + k]);
        }
    }

    #[test]
    fn batches_are_seeded_and_carry_every_part() {
        let b = builder(small());
        let batch = b.batch(&[0, 1, 2], 7, 0);
        assert_eq!(batch, b.batch(&[0, 1, 2], 7, 0));
        assert_ne!(batch, b.batch(&[0, 1, 2], 8, 0));
        assert_eq!(batch.batch_size, 6);
        let pairs = batch.targets.pair.as_ref().expect("NCP labels");
        for (r, &p) in pairs.iter().enumerate() {
            if r % 2 == 1 {
                assert_eq!(p, IGNORED_LABEL, "a left-to-right row has no NCP label");
            } else {
                assert!(p == 0 || p == 1);
            }
        }
        let v = batch.visibility.as_ref().expect("causal rows");
        assert!(v.rows[0].is_empty() && !v.rows[1].is_empty());
        let grid = batch.targets.tokens.as_ref().expect("categories");
        let labelled = grid.iter().filter(|&&c| c != IGNORED_LABEL).count();
        assert_eq!(
            labelled,
            batch.targets.masked_lm.len() + batch.targets.response.len()
        );
    }

    #[test]
    fn ablations_drop_their_rows_and_labels() {
        let lm_only = builder(CodeConfig {
            mlm: false,
            ncp: false,
            ..small()
        });
        let batch = lm_only.batch(&[0, 1], 1, 0);
        assert_eq!(batch.batch_size, 2);
        assert!(batch.targets.pair.is_none() && batch.targets.masked_lm.is_empty());
        let no_ncp = builder(CodeConfig {
            ncp: false,
            lm: false,
            ..small()
        });
        let batch = no_ncp.batch(&[0, 1], 1, 0);
        assert!(batch.targets.pair.is_none() && batch.visibility.is_none());
        assert!(!batch.targets.masked_lm.is_empty() && batch.targets.response.is_empty());
    }

    #[test]
    fn bad_settings_and_files_are_refused() {
        let bad = |config: CodeConfig, files: Vec<CodeSequence>| {
            CodeBuilder::new(config, specials(), files).is_err()
        };
        assert!(bad(
            CodeConfig {
                max_len: 4,
                ..small()
            },
            corpus()
        ));
        assert!(bad(
            CodeConfig {
                mlm: false,
                ncp: false,
                lm: false,
                ..small()
            },
            corpus()
        ));
        assert!(bad(
            CodeConfig {
                ncp_negative_prob: 1.5,
                ..small()
            },
            corpus()
        ));
        assert!(bad(small(), vec![file(100, 40)]), "NCP needs two files");
        let mut ragged = file(100, 10);
        ragged.categories.pop();
        assert!(bad(small(), vec![ragged, file(300, 10)]));
    }
}
