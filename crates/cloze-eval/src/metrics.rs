//! Scores of fine-tuned classifiers and taggers: accuracy, macro-F1, span
//! precision/recall/F1 for BIO, BIOES (BILOU) and BMES tags, and Chinese
//! word-segmentation scores, with the BMES <-> words conversions they need.
//!
//! Plain functions over label ids or tag names, no tensors: the fine-tuning
//! evaluation of `cloze-train` (`finetune`) and the driver's `cloze predict`
//! call them on predictions they have already decoded; the ids and names come
//! from [`crate::finetune_data::LabelSet`]. Each function states the convention
//! it follows (scikit-learn for macro-F1, conlleval/seqeval for spans, the
//! SIGHAN bake-off for segmentation), so numbers compare with published ones.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

/// Fraction of the labelled positions where `pred` equals `gold`.
///
/// Pairs whose gold id is negative (`-100`, [`cloze_mask::IGNORED_LABEL`]:
/// no label there) are skipped. A gold id without a prediction (`pred`
/// shorter than `gold`) counts as wrong; predictions past the end of `gold`
/// are ignored. 0 when no position is labelled.
pub fn accuracy(gold: &[i64], pred: &[i64]) -> f64 {
    let mut total = 0usize;
    let mut right = 0usize;
    for (i, &g) in gold.iter().enumerate() {
        if g < 0 {
            continue;
        }
        total += 1;
        right += usize::from(pred.get(i) == Some(&g));
    }
    ratio(right, total)
}

/// Macro-averaged F1: the unweighted mean of the per-class F1 over the
/// classes that occur in `gold` or in `pred`.
///
/// This is scikit-learn's `f1_score(gold, pred, average="macro",
/// zero_division=0)` when given no `labels`: a class is averaged iff it
/// occurs in either list, and its F1 is `2·tp / (2·tp + fp + fn)`, which is 0
/// when it was never predicted right (a class only ever predicted, never
/// gold, counts with F1 0; a class in neither list does not count). Pairs
/// with a negative gold id are skipped as in [`accuracy`], and negative
/// predicted ids are no class (they count only as a miss of the gold class).
/// 0 when no position is labelled.
pub fn macro_f1(gold: &[i64], pred: &[i64]) -> f64 {
    // Per class: (true positives, false positives, false negatives).
    let mut counts: BTreeMap<i64, (usize, usize, usize)> = BTreeMap::new();
    for (i, &g) in gold.iter().enumerate() {
        if g < 0 {
            continue;
        }
        match pred.get(i).copied() {
            Some(p) if p == g => counts.entry(g).or_default().0 += 1,
            p => {
                counts.entry(g).or_default().2 += 1;
                if let Some(p) = p.filter(|&p| p >= 0) {
                    counts.entry(p).or_default().1 += 1;
                }
            }
        }
    }
    if counts.is_empty() {
        return 0.0;
    }
    let sum: f64 = counts
        .values()
        .map(|&(tp, fp, fn_)| ratio(2 * tp, 2 * tp + fp + fn_))
        .sum();
    sum / counts.len() as f64
}

/// `a / b`, 0 when `b` is 0.
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Precision, recall and F1 of predicted items (spans, words) against gold
/// ones, with the counts they come from.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Prf {
    /// `correct / predicted` (0 when nothing was predicted).
    pub precision: f64,
    /// `correct / gold` (0 when there is no gold item).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Gold items.
    pub gold: usize,
    /// Predicted items.
    pub predicted: usize,
    /// Predicted items that are gold items.
    pub correct: usize,
}

impl Prf {
    /// The scores of `correct` right items among `predicted`, against `gold`.
    pub fn from_counts(gold: usize, predicted: usize, correct: usize) -> Self {
        let precision = ratio(correct, predicted);
        let recall = ratio(correct, gold);
        // 2PR / (P + R) = 2c / (gold + predicted), without the rounding of P and R.
        let f1 = ratio(2 * correct, gold + predicted);
        Self {
            precision,
            recall,
            f1,
            gold,
            predicted,
            correct,
        }
    }
}

/// How tag names mark spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TagScheme {
    /// `B-X` begins a span of type X, `I-X` continues it, `O` is outside.
    Bio,
    /// BIO plus `E-X` (ends a span) and `S-X` (a one-token span). BILOU's
    /// `L-X`/`U-X` are read as `E-X`/`S-X`, and `M-X` as `I-X` (the BMES tags
    /// of Chinese NER data, which have `O` too).
    Bioes,
    /// Word segmentation (CWS): bare `B` begins a word, `M` continues it, `E`
    /// ends it, `S` is a one-character word; `I` is read as `M`. Every
    /// character belongs to a word (`O` or an unknown tag is read as `S`).
    Bmes,
}

/// A tag's position letter (`B`, `I`, `E`, `S` or `O`, after the aliases)
/// and its type (`""` for bare tags).
///
/// `O` is outside; `X-TYPE` or `X_TYPE` and bare `X`, with `X` one of
/// `B I E S L U M` (either case), are position tags, `L`/`U`/`M` read as
/// `E`/`S`/`I`. Any other name is read as `I-name` (the IO reading: a run of
/// the same name is one span). Under [`TagScheme::Bmes`], `O` and unknown
/// names are `S`.
fn parse_tag(tag: &str, scheme: TagScheme) -> (char, &str) {
    let bmes = scheme == TagScheme::Bmes;
    let position = position_tag(tag);
    match position {
        Some(('O', _)) | None if bmes => ('S', ""),
        Some(('O', _)) => ('O', ""),
        Some((letter, kind)) => {
            let letter = match letter {
                'L' => 'E',
                'U' => 'S',
                'M' => 'I',
                c => c,
            };
            (letter, kind)
        }
        None => ('I', tag),
    }
}

/// `(letter, type)` when `tag` is `O` or a position tag (see [`parse_tag`]),
/// the letter uppercased but not yet mapped.
fn position_tag(tag: &str) -> Option<(char, &str)> {
    let mut chars = tag.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let rest = chars.as_str();
    if !"BIESLUMO".contains(letter) {
        return None;
    }
    let kind = if rest.is_empty() {
        ""
    } else {
        rest.strip_prefix('-').or_else(|| rest.strip_prefix('_'))?
    };
    match letter {
        // `O` takes no type.
        'O' if !kind.is_empty() => None,
        _ => Some((letter, kind)),
    }
}

impl TagScheme {
    /// The scheme that label names follow, from their prefixes:
    /// - [`TagScheme::Bmes`] when every name is a bare letter of `B M E S`
    ///   (or `I`), there is no `O`, and an `M`, `E` or `S` occurs (CWS tags);
    /// - else [`TagScheme::Bioes`] when an `E`/`S` (or `L`/`U`) tag occurs;
    /// - else [`TagScheme::Bio`] when a `B` or `I` (or `M`) tag occurs.
    ///
    /// `None` when a name is none of these (`positive`, `NOUN`: not a tagging
    /// scheme with spans) or when every name is `O`.
    pub fn detect(labels: &[String]) -> Option<TagScheme> {
        let mut letters = HashSet::new();
        let mut all_bare = true;
        for l in labels {
            let (letter, kind) = position_tag(l)?;
            all_bare &= kind.is_empty() && l.chars().count() == 1;
            letters.insert(letter);
        }
        let has = |c: &[char]| c.iter().any(|c| letters.contains(c));
        if all_bare && !has(&['O', 'L', 'U']) && has(&['M', 'E', 'S']) {
            Some(TagScheme::Bmes)
        } else if has(&['E', 'S', 'L', 'U']) {
            Some(TagScheme::Bioes)
        } else if has(&['B', 'I', 'M']) {
            Some(TagScheme::Bio)
        } else {
            None
        }
    }
}

/// Whether a span of type `prev_type` tagged `prev` ends before a token
/// tagged `tag` of type `kind` (conlleval's `endOfChunk`, with seqeval's `S`).
fn ends(prev: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!((prev, tag), ('E' | 'S', _) | ('B' | 'I', 'B' | 'S' | 'O'))
        || (prev != 'O' && prev_type != kind)
}

/// Whether a token tagged `tag` of type `kind` starts a span after one tagged
/// `prev` of type `prev_type` (conlleval's `startOfChunk`, with seqeval's `S`).
fn starts(prev: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!((prev, tag), (_, 'B' | 'S') | ('E' | 'S' | 'O', 'E' | 'I'))
        || (tag != 'O' && prev_type != kind)
}

/// The spans `(start, end exclusive, type)` one tag sequence marks, in order
/// (`type` is `""` for bare tags).
///
/// Decoding is conlleval's (and seqeval's default, non-strict mode), lenient
/// with ill-formed sequences: a span ends before `B`, `S` or `O`, after `E` or
/// `S`, and where the type changes; a span starts at `B` or `S`, at an `I` or
/// `E` that follows `O`, `E` or `S`, and where the type changes. So an `I-X`
/// after `O` starts a span, and `B-X I-Y` is two spans. Under
/// [`TagScheme::Bmes`] the spans are the words of [`bmes_to_words`].
pub fn spans(tags: &[&str], scheme: TagScheme) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let (mut prev, mut prev_type) = ('O', "");
    let mut begin = 0;
    // A final `O` closes the last span.
    for (i, tag) in tags.iter().copied().chain(["O"]).enumerate() {
        let (letter, kind) = if i == tags.len() {
            ('O', "")
        } else {
            parse_tag(tag, scheme)
        };
        if ends(prev, letter, prev_type, kind) {
            out.push((begin, i, prev_type.to_owned()));
        }
        if starts(prev, letter, prev_type, kind) {
            begin = i;
        }
        (prev, prev_type) = (letter, kind);
    }
    out
}

/// Micro-averaged span precision, recall and F1 over sentences (the
/// conlleval / seqeval convention): the spans of each sentence are decoded
/// with [`spans`], and a predicted span is correct when the same sentence has
/// a gold span with the same start, end and type. Sentences are paired in
/// order; one missing on either side counts as having no span.
pub fn span_prf(gold: &[Vec<String>], pred: &[Vec<String>], scheme: TagScheme) -> Prf {
    let decode = |tags: Option<&Vec<String>>| -> HashSet<(usize, usize, String)> {
        let tags: Vec<&str> = tags.into_iter().flatten().map(String::as_str).collect();
        spans(&tags, scheme).into_iter().collect()
    };
    count_matches(gold.len().max(pred.len()), |i| {
        (decode(gold.get(i)), decode(pred.get(i)))
    })
}

/// Gold, predicted and correct items summed over `n` sentences.
fn count_matches<T: Eq + std::hash::Hash>(
    n: usize,
    sets: impl Fn(usize) -> (HashSet<T>, HashSet<T>),
) -> Prf {
    let (mut gold, mut predicted, mut correct) = (0, 0, 0);
    for i in 0..n {
        let (g, p) = sets(i);
        gold += g.len();
        predicted += p.len();
        correct += g.intersection(&p).count();
    }
    Prf::from_counts(gold, predicted, correct)
}

/// Chinese word-segmentation precision, recall and F1 (the SIGHAN bake-off
/// convention, as its `score` script counts): each sentence's words become
/// character spans (in Unicode scalar values), and a predicted word is
/// correct when a gold word of the same sentence has both the same start and
/// the same end. Precision is over the predicted words, recall over the gold
/// ones, micro-averaged over sentences paired in order (a missing sentence
/// has no words); empty words are ignored.
pub fn cws_prf(gold_words: &[Vec<String>], pred_words: &[Vec<String>]) -> Prf {
    let spans_of = |words: Option<&Vec<String>>| -> HashSet<(usize, usize)> {
        let mut at = 0;
        let mut out = HashSet::new();
        for w in words.into_iter().flatten() {
            let n = w.chars().count();
            if n > 0 {
                out.insert((at, at + n));
                at += n;
            }
        }
        out
    };
    count_matches(gold_words.len().max(pred_words.len()), |i| {
        (spans_of(gold_words.get(i)), spans_of(pred_words.get(i)))
    })
}

/// The words that characters and their BMES tags spell, every character in
/// exactly one word. Tolerant of ill-formed sequences, the same reading as
/// [`spans`] under [`TagScheme::Bmes`]: a `B` or `S` always starts a new word,
/// as does any character after an `E` or `S`; otherwise `M` and `E` continue
/// the current word (an `M` or `E` first in the sentence starts one). `I` is
/// read as `M`, `O` and unknown tags as `S`, a prefix type (`B-NR`) is
/// ignored, and a character without a tag (`tags` shorter) is a word of its
/// own; tags past the last character are ignored.
pub fn bmes_to_words(chars: &[String], tags: &[String]) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut prev = 'S';
    for (i, c) in chars.iter().enumerate() {
        let tag = tags.get(i).map_or('S', |t| parse_tag(t, TagScheme::Bmes).0);
        match words.last_mut() {
            Some(word) if !matches!(tag, 'B' | 'S') && !matches!(prev, 'E' | 'S') => {
                word.push_str(c);
            }
            _ => words.push(c.clone()),
        }
        prev = tag;
    }
    words
}

/// The characters (Unicode scalar values) of a segmented sentence and their
/// BMES tags: `S` for a one-character word, else `B`, `M`..., `E`. Empty words
/// are skipped.
pub fn words_to_bmes(words: &[String]) -> (Vec<String>, Vec<String>) {
    let mut chars = Vec::new();
    let mut tags = Vec::new();
    for w in words {
        let n = w.chars().count();
        for (i, c) in w.chars().enumerate() {
            let tag = match (i, n) {
                (_, 1) => "S",
                (0, _) => "B",
                (i, n) if i + 1 == n => "E",
                _ => "M",
            };
            chars.push(c.to_string());
            tags.push(tag.to_owned());
        }
    }
    (chars, tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn span(s: usize, e: usize, t: &str) -> (usize, usize, String) {
        (s, e, t.to_owned())
    }

    #[test]
    fn accuracy_skips_ignored_positions_and_counts_missing_predictions() {
        assert!(close(accuracy(&[0, 1, 2, 1], &[0, 1, 1, 0]), 0.5));
        // -100 is no label: 2 labelled positions, 1 right.
        assert!(close(accuracy(&[-100, 1, 2, -100], &[5, 1, 0, 5]), 0.5));
        // The third gold has no prediction: 2 of 3.
        assert!(close(accuracy(&[0, 1, 2], &[0, 1]), 2.0 / 3.0));
        assert_eq!(accuracy(&[], &[]), 0.0);
        assert_eq!(accuracy(&[-100], &[0]), 0.0);
    }

    #[test]
    fn macro_f1_of_a_three_class_confusion() {
        // gold 0 0 0 0 1 1 1 2 2 2
        // pred 0 0 1 2 1 1 0 2 2 1
        // class 0: tp 2, fp 1 (a 1 predicted as 0), fn 2 -> 4 / (4+1+2) = 4/7
        // class 1: tp 2, fp 2, fn 1                      -> 4 / (4+2+1) = 4/7
        // class 2: tp 2, fp 1, fn 1                      -> 4 / (4+1+1) = 2/3
        // macro = (4/7 + 4/7 + 2/3) / 3 = (12/21 + 12/21 + 14/21) / 3 = 38/63;
        // accuracy = 6/10.
        let gold = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
        let pred = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1];
        assert!(close(macro_f1(&gold, &pred), 38.0 / 63.0));
        assert!(close(accuracy(&gold, &pred), 0.6));
        // Classes absent from both lists do not count: ids 0 and 2 never
        // occur here, so the mean is over classes 1 and 3 only.
        assert!(close(macro_f1(&[1, 3], &[1, 3]), 1.0));
        // A class only predicted counts with F1 0: class 0 has tp 1, fn 1 ->
        // 2/3; class 1 has fp 1 -> 0; mean 1/3.
        assert!(close(macro_f1(&[0, 0], &[0, 1]), 1.0 / 3.0));
        // Ignored gold positions are skipped, their predictions too.
        assert!(close(macro_f1(&[-100, 0, 1], &[1, 0, 1]), 1.0));
        assert_eq!(macro_f1(&[], &[]), 0.0);
    }

    #[test]
    fn prf_from_counts() {
        let p = Prf::from_counts(4, 2, 1);
        assert!(close(p.precision, 0.5) && close(p.recall, 0.25));
        // 2 * 0.5 * 0.25 / 0.75 = 1/3
        assert!(close(p.f1, 1.0 / 3.0));
        assert_eq!(Prf::from_counts(0, 0, 0).f1, 0.0);
    }

    #[test]
    fn bio_decoding_is_conllevals() {
        let tags = [
            "B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER", "B-ORG", "B-ORG",
        ];
        assert_eq!(
            spans(&tags, TagScheme::Bio),
            vec![
                span(0, 2, "PER"),
                // An I- after O starts a span.
                span(3, 5, "LOC"),
                // B- always starts a new span; a type change starts one too.
                span(5, 6, "LOC"),
                span(6, 7, "PER"),
                span(7, 8, "ORG"),
                span(8, 9, "ORG"),
            ]
        );
        // Bare BIO chunks (no type) and a span running to the end.
        assert_eq!(
            spans(&["O", "B", "I", "B", "I"], TagScheme::Bio),
            vec![span(1, 3, ""), span(3, 5, "")]
        );
    }

    #[test]
    fn bio_span_scores_count_exact_span_and_type() {
        // Sentence 1: gold PER(0,2) LOC(3,5); predicted PER(0,2) ORG(3,5) LOC(6,7)
        //   -> gold 2, predicted 3, correct 1 (ORG has the right span but the wrong type).
        // Sentence 2: gold LOC(1,3); predicted "O I-LOC I-LOC" -> LOC(1,3), lenient start
        //   -> gold 1, predicted 1, correct 1.
        // Sentence 3: gold PER(0,3); predicted PER(0,2) -> wrong end: 1, 1, 0.
        // Total: gold 4, predicted 5, correct 2: P = 2/5, R = 1/2, F1 = 4/9.
        let gold = vec![
            strings(&["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]),
            strings(&["O", "B-LOC", "I-LOC"]),
            strings(&["B-PER", "I-PER", "I-PER"]),
        ];
        let pred = vec![
            strings(&["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC"]),
            strings(&["O", "I-LOC", "I-LOC"]),
            strings(&["B-PER", "I-PER", "O"]),
        ];
        let s = span_prf(&gold, &pred, TagScheme::Bio);
        assert_eq!((s.gold, s.predicted, s.correct), (4, 5, 2));
        assert!(close(s.precision, 0.4));
        assert!(close(s.recall, 0.5));
        assert!(close(s.f1, 4.0 / 9.0));
        // A missing predicted sentence has no span: recall drops, precision not.
        let s = span_prf(&gold, &pred[..2], TagScheme::Bio);
        assert_eq!((s.gold, s.predicted, s.correct), (4, 4, 2));
    }

    #[test]
    fn bioes_and_bilou_decoding() {
        let tags = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "E-ORG", "B-MISC"];
        assert_eq!(
            spans(&tags, TagScheme::Bioes),
            vec![
                span(0, 1, "PER"),
                span(1, 4, "LOC"),
                // An E- after O is a one-token span; a B- at the end closes there.
                span(5, 6, "ORG"),
                span(6, 7, "MISC"),
            ]
        );
        let bilou = ["U-PER", "B-LOC", "I-LOC", "L-LOC"];
        assert_eq!(
            spans(&bilou, TagScheme::Bioes),
            vec![span(0, 1, "PER"), span(1, 4, "LOC")]
        );
        // Chinese NER's BMES-with-O: M- is I-.
        let bmeso = ["B-NR", "M-NR", "E-NR", "O", "S-NS"];
        assert_eq!(
            spans(&bmeso, TagScheme::Bioes),
            vec![span(0, 3, "NR"), span(4, 5, "NS")]
        );
    }

    #[test]
    fn schemes_are_detected_from_the_label_names() {
        let d = |v: &[&str]| TagScheme::detect(&strings(v));
        assert_eq!(d(&["O", "B-PER", "I-PER"]), Some(TagScheme::Bio));
        assert_eq!(d(&["O", "B", "I"]), Some(TagScheme::Bio));
        assert_eq!(
            d(&["O", "B-K", "I-K", "E-K", "S-K"]),
            Some(TagScheme::Bioes)
        );
        assert_eq!(
            d(&["O", "B-K", "I-K", "L-K", "U-K"]),
            Some(TagScheme::Bioes)
        );
        assert_eq!(d(&["O", "B-NR", "M-NR", "E-NR"]), Some(TagScheme::Bioes));
        assert_eq!(d(&["B", "M", "E", "S"]), Some(TagScheme::Bmes));
        assert_eq!(d(&["B", "I", "E", "S"]), Some(TagScheme::Bmes));
        assert_eq!(d(&["positive", "negative"]), None);
        assert_eq!(d(&["NOUN", "SYM"]), None);
        assert_eq!(d(&["O"]), None);
    }

    #[test]
    fn bmes_and_words_round_trip() {
        let words = strings(&["迈向", "充满", "希望", "的", "新世纪"]);
        let (chars, tags) = words_to_bmes(&words);
        assert_eq!(chars.concat(), "迈向充满希望的新世纪");
        assert_eq!(tags.concat(), "BEBEBESBME");
        assert_eq!(bmes_to_words(&chars, &tags), words);
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        assert_eq!(
            spans(&refs, TagScheme::Bmes),
            vec![
                span(0, 2, ""),
                span(2, 4, ""),
                span(4, 6, ""),
                span(6, 7, ""),
                span(7, 10, "")
            ]
        );
    }

    #[test]
    fn ill_formed_bmes_still_covers_every_character() {
        let chars = strings(&["a", "b", "c", "d", "e", "f", "g"]);
        // M first starts a word; E continues it and ends it; the E after it
        // starts a new one; B; S ends the B-word early; M after S starts a word;
        // `g` has no tag.
        let tags = strings(&["M", "E", "E", "B", "S", "M"]);
        assert_eq!(
            bmes_to_words(&chars, &tags),
            strings(&["ab", "c", "d", "e", "f", "g"])
        );
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let words: Vec<(usize, usize)> = spans(&refs, TagScheme::Bmes)
            .into_iter()
            .map(|(s, e, _)| (s, e))
            .collect();
        assert_eq!(words, vec![(0, 2), (2, 3), (3, 4), (4, 5), (5, 6)]);
        // O and unknown tags are one-character words under BMES.
        assert_eq!(
            bmes_to_words(&strings(&["x", "y", "z"]), &strings(&["B", "O", "E"])),
            strings(&["x", "y", "z"])
        );
    }

    #[test]
    fn cws_counts_words_whose_both_boundaries_match() {
        // Gold:      迈向 | 充满 | 希望 | 的 | 新世纪   spans (0,2)(2,4)(4,6)(6,7)(7,10)
        // Predicted: 迈 | 向 | 充满 | 希望的 | 新世纪   spans (0,1)(1,2)(2,4)(4,7)(7,10)
        //   -> gold 5, predicted 5, correct 2 ((2,4) and (7,10)).
        // Sentence 2: gold 你好 (0,2); predicted 你好 (0,2) -> 1, 1, 1.
        // Sentence 3: gold 我们 (0,2); predicted 我 | 们 (0,1)(1,2) -> 1, 2, 0.
        // Totals: gold 7, predicted 8, correct 3: P = 3/8, R = 3/7,
        // F1 = 2·3 / (7 + 8) = 2/5.
        let gold = vec![
            strings(&["迈向", "充满", "希望", "的", "新世纪"]),
            strings(&["你好"]),
            strings(&["我们"]),
        ];
        let pred = vec![
            strings(&["迈", "向", "充满", "希望的", "新世纪"]),
            strings(&["你好"]),
            strings(&["我", "们"]),
        ];
        let s = cws_prf(&gold, &pred);
        assert_eq!((s.gold, s.predicted, s.correct), (7, 8, 3));
        assert!(close(s.precision, 3.0 / 8.0));
        assert!(close(s.recall, 3.0 / 7.0));
        assert!(close(s.f1, 0.4));
        // The same through BMES tags and span_prf.
        let tags = |ws: &[Vec<String>]| -> Vec<Vec<String>> {
            ws.iter().map(|w| words_to_bmes(w).1).collect()
        };
        let via_tags = span_prf(&tags(&gold), &tags(&pred), TagScheme::Bmes);
        assert_eq!(via_tags, s);
    }
}
