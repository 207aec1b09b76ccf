//! Summary statistics of pretraining instances: what `cloze data inspect` prints
//! about a split, available to anyone reading shards.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use crate::{Instance, PairLabel};

/// Instance lengths counted in [`LengthHistogram::BUCKETS`] equal buckets of
/// `max_seq_length / 8` tokens (rounded up), plus how often each sentence-pair
/// label occurs.
///
/// A length beyond `max_seq_length` is counted in the last bucket, so every
/// instance is counted once whatever the data. `Display` draws one line per bucket
/// (its token range, its count and a bar scaled to the fullest bucket) and a last
/// line with the label counts.
///
/// ```
/// use cloze_text::stats::LengthHistogram;
///
/// let h = LengthHistogram::from_lengths(64, [3, 8, 9, 64]);
/// assert_eq!(h.bucket_width(), 8);
/// assert_eq!(h.counts()[..2], [2, 1]);
/// assert_eq!(h.total(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthHistogram {
    width: usize,
    counts: [u64; LengthHistogram::BUCKETS],
    /// Each label seen, in order of first appearance, with its count. A short
    /// list rather than a map: `PairLabel` has no order and at most five values
    /// (none, two NSP, two SOP) occur.
    pair_labels: Vec<(Option<PairLabel>, u64)>,
}

impl LengthHistogram {
    /// The number of buckets.
    pub const BUCKETS: usize = 8;

    /// Width of the widest bar `Display` draws, in characters.
    const BAR: u64 = 50;

    /// An empty histogram for instances of at most `max_seq_length` tokens
    /// (taken as at least 8, so that no bucket is empty of range).
    pub fn new(max_seq_length: usize) -> Self {
        LengthHistogram {
            width: max_seq_length.max(Self::BUCKETS).div_ceil(Self::BUCKETS),
            counts: [0; Self::BUCKETS],
            pair_labels: Vec::new(),
        }
    }

    /// The histogram of `lengths`, without pair labels.
    pub fn from_lengths(max_seq_length: usize, lengths: impl IntoIterator<Item = usize>) -> Self {
        let mut h = Self::new(max_seq_length);
        for len in lengths {
            h.count_length(len);
        }
        h
    }

    /// The histogram of `instances`' lengths and pair labels.
    pub fn from_instances<'a>(
        max_seq_length: usize,
        instances: impl IntoIterator<Item = &'a Instance>,
    ) -> Self {
        let mut h = Self::new(max_seq_length);
        for inst in instances {
            h.add(inst);
        }
        h
    }

    /// Counts one instance: its length and its pair label.
    pub fn add(&mut self, instance: &Instance) {
        self.count_length(instance.len());
        let label = instance.pair_label;
        match self.pair_labels.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => self.pair_labels.push((label, 1)),
        }
    }

    fn count_length(&mut self, len: usize) {
        let bucket = (len.saturating_sub(1) / self.width).min(Self::BUCKETS - 1);
        self.counts[bucket] += 1;
    }

    /// Tokens per bucket.
    pub fn bucket_width(&self) -> usize {
        self.width
    }

    /// The count of each bucket; bucket `b` holds lengths
    /// `b * width + 1 ..= (b + 1) * width` (length 0 is counted in the first).
    pub fn counts(&self) -> &[u64; Self::BUCKETS] {
        &self.counts
    }

    /// Each bucket's range of lengths with its count.
    pub fn buckets(&self) -> impl Iterator<Item = (RangeInclusive<usize>, u64)> + '_ {
        let w = self.width;
        self.counts
            .iter()
            .enumerate()
            .map(move |(b, &n)| (b * w + 1..=(b + 1) * w, n))
    }

    /// Instances counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each pair label seen (`None` for single-segment instances) with its count,
    /// in order of first appearance; empty for [`Self::from_lengths`].
    pub fn pair_labels(&self) -> &[(Option<PairLabel>, u64)] {
        &self.pair_labels
    }
}

impl fmt::Display for LengthHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let most = self.counts.iter().copied().max().unwrap_or(1).max(1);
        for (range, n) in self.buckets() {
            writeln!(
                f,
                "  {:>4}-{:<4} {:>9} {}",
                range.start(),
                range.end(),
                n,
                "#".repeat((n * Self::BAR / most) as usize)
            )?;
        }
        // Labels by their debug name, sorted, so the line reads the same whatever
        // the order of the data.
        let labels: BTreeMap<String, u64> = self
            .pair_labels
            .iter()
            .map(|(l, n)| (format!("{l:?}"), *n))
            .collect();
        write!(f, "pair labels: {labels:?}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn instance(len: usize, pair_label: Option<PairLabel>) -> Instance {
        Instance {
            tokens: vec![5; len],
            segment_ids: vec![0; len],
            word_ids: vec![0; len],
            pair_label,
        }
    }

    #[test]
    fn lengths_fall_in_buckets_of_an_eighth_of_the_maximum() {
        let h = LengthHistogram::from_lengths(128, [0, 1, 16, 17, 32, 33, 112, 113, 128, 500]);
        assert_eq!(h.bucket_width(), 16);
        assert_eq!(h.counts(), &[3, 2, 1, 0, 0, 0, 1, 3]);
        assert_eq!(h.total(), 10);
        let ranges: Vec<_> = h.buckets().map(|(r, _)| r).collect();
        assert_eq!(ranges[0], 1..=16);
        assert_eq!(ranges[7], 113..=128);
        assert!(h.pair_labels().is_empty());
        // A maximum that does not divide by 8 rounds the width up; tiny maxima
        // still give buckets one token wide.
        assert_eq!(LengthHistogram::new(100).bucket_width(), 13);
        assert_eq!(LengthHistogram::new(3).bucket_width(), 1);
    }

    #[test]
    fn pair_labels_are_counted_and_printed_under_the_bars() {
        let nsp = |is_random_next| Some(PairLabel::Nsp { is_random_next });
        let insts = [
            instance(10, nsp(true)),
            instance(20, nsp(false)),
            instance(30, nsp(false)),
            instance(64, nsp(false)),
        ];
        let h = LengthHistogram::from_instances(64, &insts);
        assert_eq!(
            h.pair_labels(),
            &[(nsp(true), 1), (nsp(false), 3)],
            "in order of first appearance"
        );
        assert_eq!(h.counts(), &[0, 1, 1, 1, 0, 0, 0, 1]);
        let bar = "#".repeat(50);
        let want = format!(
            "     1-8            0 \n     9-16           1 {bar}\n    17-24           1 {bar}\n    \
             25-32           1 {bar}\n    33-40           0 \n    41-48           0 \n    \
             49-56           0 \n    57-64           1 {bar}\n\
             pair labels: {{\"Some(Nsp {{ is_random_next: false }})\": 3, \
             \"Some(Nsp {{ is_random_next: true }})\": 1}}"
        );
        assert_eq!(h.to_string(), want);
    }

    #[test]
    fn bars_scale_to_the_fullest_bucket_and_an_empty_histogram_draws_none() {
        let h = LengthHistogram::from_lengths(16, [2, 2, 2, 2, 4]);
        let lines: Vec<String> = h.to_string().lines().map(String::from).collect();
        assert_eq!(lines.len(), 9);
        assert!(
            lines[0].ends_with(&format!(" 4 {}", "#".repeat(50))),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(&format!(" 1 {}", "#".repeat(12))),
            "{}",
            lines[1]
        );
        let empty = LengthHistogram::new(16).to_string();
        assert!(!empty.contains('#'), "{empty}");
        assert!(empty.ends_with("pair labels: {}"), "{empty}");
    }
}
