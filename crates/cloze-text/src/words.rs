//! Word boundaries for whole-word masking. Chinese text is segmented with
//! jieba and each character token takes the id of the jieba word containing
//! it (the Chinese-BERT-wwm way); English words come from the tokenizer.

use std::sync::OnceLock;

use jieba_rs::Jieba;

/// The process-wide jieba segmenter with its embedded dictionary (loading the
/// dictionary costs a few hundred milliseconds, so it is done once).
pub fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

/// True for CJK unified ideographs (the characters BERT splits one per token).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// True when `text` holds at least one CJK character.
pub fn has_cjk(text: &str) -> bool {
    text.chars().any(is_cjk)
}

/// Byte ranges of jieba's words in `text` (HMM on for unknown words). The
/// ranges cover the text in order, white space included.
pub fn jieba_words(jieba: &Jieba, text: &str) -> Vec<(usize, usize)> {
    jieba
        .cut(text, true)
        .into_iter()
        .map(|t| (t.byte_start, t.byte_end))
        .collect()
}

/// Assigns each token (given by its byte offsets into `text`) the index of the
/// jieba word holding the token's first byte, renumbered densely from 0 in
/// token order. Tokens never straddle jieba words for CJK text (BERT splits
/// every CJK character), so all characters of a word share one id.
pub fn jieba_word_ids(jieba: &Jieba, text: &str, offsets: &[(u32, u32)]) -> Vec<u32> {
    let words = jieba_words(jieba, text);
    let mut out = Vec::with_capacity(offsets.len());
    let mut w = 0usize;
    let mut next = 0u32;
    let mut prev_word: Option<usize> = None;
    for &(start, _) in offsets {
        let start = start as usize;
        // Offsets increase along the sequence, so the word cursor only moves forward.
        while w + 1 < words.len() && words[w].1 <= start {
            w += 1;
        }
        if prev_word != Some(w) {
            next += 1;
            prev_word = Some(w);
        }
        out.push(next - 1);
    }
    out
}

/// Precision, recall and F1 of a predicted segmentation against a gold one,
/// both given as word sequences over the same characters (words compared as
/// character spans).
pub fn segmentation_prf(gold: &[&str], predicted: &[&str]) -> (f64, f64, f64) {
    fn spans(words: &[&str]) -> Vec<(usize, usize)> {
        let mut pos = 0;
        words
            .iter()
            .map(|w| {
                let n = w.chars().count();
                pos += n;
                (pos - n, pos)
            })
            .collect()
    }
    let (g, p) = (spans(gold), spans(predicted));
    let (mut i, mut j, mut hit) = (0, 0, 0usize);
    while i < g.len() && j < p.len() {
        match g[i].cmp(&p[j]) {
            std::cmp::Ordering::Equal => {
                hit += 1;
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    let precision = if p.is_empty() {
        0.0
    } else {
        hit as f64 / p.len() as f64
    };
    let recall = if g.is_empty() {
        0.0
    } else {
        hit as f64 / g.len() as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn jieba_words_cover_text() {
        let text = "我们在北京大学学习 AI。";
        let words = jieba_words(jieba(), text);
        assert_eq!(words.first().map(|w| w.0), Some(0));
        assert_eq!(words.last().map(|w| w.1), Some(text.len()));
        assert!(words.windows(2).all(|w| w[0].1 == w[1].0));
    }

    #[test]
    fn character_tokens_share_their_word_id() {
        let text = "我们在北京大学学习";
        let offsets: Vec<(u32, u32)> = text
            .char_indices()
            .map(|(i, c)| (i as u32, (i + c.len_utf8()) as u32))
            .collect();
        let ids = jieba_word_ids(jieba(), text, &offsets);
        let words: Vec<&str> = jieba_words(jieba(), text)
            .iter()
            .map(|&(s, e)| &text[s..e])
            .collect();
        // Rebuild words from ids and compare with jieba's cut.
        let mut rebuilt: Vec<String> = Vec::new();
        for (k, c) in text.chars().enumerate() {
            if k == 0 || ids[k] != ids[k - 1] {
                rebuilt.push(String::new());
            }
            rebuilt.last_mut().unwrap().push(c);
        }
        assert_eq!(rebuilt, words);
        assert!(ids.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
    }

    #[test]
    fn prf_counts_exact_spans() {
        let (p, r, f) = segmentation_prf(&["北京", "大学", "生"], &["北京大学", "生"]);
        assert!((p - 0.5).abs() < 1e-9 && (r - 1.0 / 3.0).abs() < 1e-9);
        assert!((f - 0.4).abs() < 1e-9);
        assert_eq!(segmentation_prf(&["a", "b"], &["a", "b"]).2, 1.0);
    }
}
