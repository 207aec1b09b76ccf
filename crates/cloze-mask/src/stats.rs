//! What a masking run actually did, to compare against what it was configured to do.

use std::collections::BTreeMap;
use std::fmt;

use crate::corrupt::Corruption;

/// Counts accumulated over masked instances; [`MaskStats::merge`] combines
/// partial counts from parallel workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskStats {
    /// Instances observed.
    pub instances: u64,
    /// Tokens observed (specials included, padding excluded).
    pub tokens: u64,
    /// Tokens that could have been masked (in some unit).
    pub maskable_tokens: u64,
    /// Tokens selected for prediction.
    pub masked_tokens: u64,
    /// Selected tokens by outcome, indexed by [`Corruption::index`].
    pub corruptions: [u64; 4],
    /// Selected spans.
    pub spans: u64,
    /// Histogram of realised span lengths in units (index = length; 0 unused).
    pub span_lengths: Vec<u64>,
    /// Histogram of the span lengths drawn before clipping (index = length).
    pub drawn_lengths: Vec<u64>,
    /// Words whose similar-word lookup found no same-length candidate.
    pub failed_lookups: u64,
    /// Tokens of those words (each replaced by a random token instead).
    pub failed_lookup_tokens: u64,
    /// The failing words' token ids, with how often each failed.
    pub failed_words: BTreeMap<Vec<u32>, u64>,
}

fn bump(hist: &mut Vec<u64>, at: usize) {
    if hist.len() <= at {
        hist.resize(at + 1, 0);
    }
    hist[at] += 1;
}

impl MaskStats {
    /// Records one span of `units` units whose drawn length was `drawn`.
    pub fn record_span(&mut self, units: u32, drawn: u32) {
        self.spans += 1;
        bump(&mut self.span_lengths, units as usize);
        bump(&mut self.drawn_lengths, drawn as usize);
    }

    /// Records one selected token's outcome.
    pub fn record_outcome(&mut self, outcome: Corruption) {
        self.masked_tokens += 1;
        self.corruptions[outcome.index()] += 1;
    }

    /// Records a failed similar-word lookup for the word with these tokens.
    pub fn record_failed_lookup(&mut self, word: &[u32]) {
        self.failed_lookups += 1;
        self.failed_lookup_tokens += word.len() as u64;
        *self.failed_words.entry(word.to_vec()).or_default() += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &MaskStats) {
        self.instances += other.instances;
        self.tokens += other.tokens;
        self.maskable_tokens += other.maskable_tokens;
        self.masked_tokens += other.masked_tokens;
        for (a, b) in self.corruptions.iter_mut().zip(other.corruptions) {
            *a += b;
        }
        self.spans += other.spans;
        for (hist, theirs) in [
            (&mut self.span_lengths, &other.span_lengths),
            (&mut self.drawn_lengths, &other.drawn_lengths),
        ] {
            if hist.len() < theirs.len() {
                hist.resize(theirs.len(), 0);
            }
            for (a, b) in hist.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        self.failed_lookups += other.failed_lookups;
        self.failed_lookup_tokens += other.failed_lookup_tokens;
        for (w, n) in &other.failed_words {
            *self.failed_words.entry(w.clone()).or_default() += n;
        }
    }

    /// Selected tokens over maskable tokens.
    pub fn mask_rate(&self) -> f64 {
        ratio(self.masked_tokens, self.maskable_tokens)
    }

    /// The share of selected tokens with outcome `c`.
    pub fn corruption_share(&self, c: Corruption) -> f64 {
        ratio(self.corruptions[c.index()], self.masked_tokens)
    }

    /// Tokens of the words for which a similar word was looked up: those
    /// replaced by a similar word plus those whose lookup failed and fell back
    /// to a random word. Zero for schemes without similar-word corruption.
    pub fn similar_lookup_tokens(&self) -> u64 {
        self.corruptions[Corruption::Similar.index()] + self.failed_lookup_tokens
    }

    /// The similar-word hit rate: of the tokens whose word was to become a
    /// similar word, the share that got one from the source (Cilin or
    /// word2vec) rather than falling back to a random word. Counted in tokens,
    /// so a two-character word weighs twice a one-character one; `None` when
    /// nothing was looked up.
    pub fn similar_hit_rate(&self) -> Option<f64> {
        let tried = self.similar_lookup_tokens();
        (tried > 0).then(|| ratio(self.corruptions[Corruption::Similar.index()], tried))
    }

    /// Mean realised span length in units.
    pub fn mean_span_length(&self) -> f64 {
        let total: u64 = self
            .span_lengths
            .iter()
            .enumerate()
            .map(|(l, n)| l as u64 * n)
            .sum();
        ratio(total, self.spans)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn histogram(f: &mut fmt::Formatter<'_>, hist: &[u64]) -> fmt::Result {
    let total: u64 = hist.iter().sum();
    for (len, &n) in hist.iter().enumerate().skip(1) {
        if n > 0 {
            write!(f, " {len}:{:.1}%", 100.0 * ratio(n, total))?;
        }
    }
    Ok(())
}

impl fmt::Display for MaskStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "instances {}  tokens {}  maskable {}  masked {} ({:.2}% of maskable, {:.2}% of all)",
            self.instances,
            self.tokens,
            self.maskable_tokens,
            self.masked_tokens,
            100.0 * self.mask_rate(),
            100.0 * ratio(self.masked_tokens, self.tokens),
        )?;
        writeln!(
            f,
            "corruption  [MASK] {:.1}%  random {:.1}%  kept {:.1}%  similar {:.1}%",
            100.0 * self.corruption_share(Corruption::Mask),
            100.0 * self.corruption_share(Corruption::Random),
            100.0 * self.corruption_share(Corruption::Keep),
            100.0 * self.corruption_share(Corruption::Similar),
        )?;
        write!(
            f,
            "spans {}  mean length {:.2} units  lengths",
            self.spans,
            self.mean_span_length()
        )?;
        histogram(f, &self.span_lengths)?;
        write!(f, "\ndrawn lengths")?;
        histogram(f, &self.drawn_lengths)?;
        if let Some(rate) = self.similar_hit_rate() {
            write!(
                f,
                "\nsimilar-word hit rate {:.1}% ({} of {} tokens replaced from the similar-word \
                 source; {} tokens in {} word{} fell back to a random word)",
                100.0 * rate,
                self.corruptions[Corruption::Similar.index()],
                self.similar_lookup_tokens(),
                self.failed_lookup_tokens,
                self.failed_lookups,
                if self.failed_lookups == 1 { "" } else { "s" },
            )?;
        }
        write!(f, "\nfailed similar-word lookups {}", self.failed_lookups)?;
        if !self.failed_words.is_empty() {
            let mut top: Vec<(&Vec<u32>, &u64)> = self.failed_words.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            write!(f, " (most frequent, as token ids:")?;
            for (w, n) in top.into_iter().take(10) {
                write!(f, " {w:?}x{n}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_word_hit_rate_counts_tokens_of_hits_and_fallbacks() {
        let mut s = MaskStats::default();
        assert_eq!(s.similar_hit_rate(), None, "no lookup, no rate");
        assert!(!s.to_string().contains("hit rate"));
        // A two-token word replaced by a similar word, one kept token, and a
        // two-token word whose lookup failed (its tokens became random).
        for o in [Corruption::Similar, Corruption::Similar, Corruption::Keep] {
            s.record_outcome(o);
        }
        s.record_failed_lookup(&[7, 8]);
        s.record_outcome(Corruption::Random);
        s.record_outcome(Corruption::Random);
        assert_eq!(s.failed_lookups, 1);
        assert_eq!(s.failed_lookup_tokens, 2);
        assert_eq!(s.similar_lookup_tokens(), 4);
        assert_eq!(s.similar_hit_rate(), Some(0.5));
        let text = s.to_string();
        assert!(
            text.contains("similar-word hit rate 50.0% (2 of 4 tokens"),
            "{text}"
        );
        assert!(text.contains("2 tokens in 1 word fell back"), "{text}");

        let mut total = MaskStats::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(total.failed_lookup_tokens, 4);
        assert_eq!(total.similar_lookup_tokens(), 8);
        assert_eq!(total.similar_hit_rate(), Some(0.5));
    }
}
