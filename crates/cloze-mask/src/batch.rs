//! Collation: masked instances as plain row-major `Vec`s the trainer turns into
//! tensors. This is the contract between masking and the models.

/// One position whose original token the model must predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MaskedTarget {
    /// Row in the batch.
    pub row: u32,
    /// Position in the row.
    pub pos: u32,
    /// The original token id.
    pub target: u32,
}

/// A collated batch. Later objectives (UniLM-v2 pseudo-masking) add optional
/// fields, so build one with `..Default::default()` rather than listing every field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Number of rows.
    pub batch_size: usize,
    /// Padded length of every row.
    pub seq_len: usize,
    /// `batch_size * seq_len` token ids, row-major, padded with `[PAD]`.
    pub input_ids: Vec<i64>,
    /// Segment (token type) ids, 0 on padding.
    pub token_type_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Positions to predict, sorted by `(row, pos)`; the model gathers only these.
    pub masked: Vec<MaskedTarget>,
    /// NSP/SOP class per row when every instance has a pair label.
    pub pair_labels: Option<Vec<i64>>,
}

impl Batch {
    /// Row `row` of `input_ids`.
    pub fn row(&self, row: usize) -> &[i64] {
        &self.input_ids[row * self.seq_len..(row + 1) * self.seq_len]
    }

    /// Number of real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    /// HuggingFace-style dense labels: the target at masked positions, `ignore`
    /// (HF uses -100) everywhere else; for parity checks against HF's collator.
    pub fn dense_labels(&self, ignore: i64) -> Vec<i64> {
        let mut labels = vec![ignore; self.batch_size * self.seq_len];
        for m in &self.masked {
            labels[m.row as usize * self.seq_len + m.pos as usize] = i64::from(m.target);
        }
        labels
    }

    /// Flat indices `row * seq_len + pos` of the masked positions, in order
    /// (what an `index_select` over the flattened hidden states needs).
    pub fn masked_flat_positions(&self) -> Vec<i64> {
        self.masked
            .iter()
            .map(|m| i64::from(m.row) * self.seq_len as i64 + i64::from(m.pos))
            .collect()
    }

    /// The targets of the masked positions, in order.
    pub fn masked_targets(&self) -> Vec<i64> {
        self.masked.iter().map(|m| i64::from(m.target)).collect()
    }
}
