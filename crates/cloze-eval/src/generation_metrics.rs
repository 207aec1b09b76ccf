//! Scores of generated text against references, in the evaluation layer:
//! corpus BLEU-4 exactly as sacrebleu 2.x computes it, exact match and
//! character F1. Plain functions over strings, no tensors: the generation
//! experiment decodes with [`crate::generate`], turns ids back into text and
//! scores it here, beside the baselines of [`crate::generation_baselines`].
//!
//! **BLEU** ([`corpus_bleu`]) is Papineni et al. (2002) at the corpus level:
//! n-gram counts (n = 1..4) clipped by the reference's counts and summed over
//! the corpus, the geometric mean of the four precisions, times the brevity
//! penalty `exp(1 - r/c)` when the candidates' total length `c` is below the
//! references' `r`. It follows sacrebleu's `BLEU.compute_bleu` line by line:
//! one reference per candidate, no smoothing by default (the formula without
//! smoothing the brief of the generation experiment asks for; sacrebleu's own
//! default is [`Smoothing::Exp`], which differs only when some order has no
//! match at all), a score of 0 when nothing matches or some order has no
//! n-gram, and scores in 0..100.
//!
//! **Tokenisation** ([`Tokenizer`]) is sacrebleu's: [`Tokenizer::Zh`] (its
//! `zh` tokenizer, the one for Chinese output) puts spaces around every
//! character of its table of "Chinese" ranges and then runs the `13a`
//! regular-expression post-tokenizer (`TokenizerRegexp`) over the line, so
//! each CJK character is a token and Latin words, numbers and punctuation
//! split as in `13a`. The table is reproduced as Python evaluates it: two of
//! its ranges are written with 4-digit escapes (`'\u20000'`, `'\u2fa1d'`),
//! so they mean U+2001..=U+2A6D and U+2F81..=U+2FA1, not the supplementary
//! ideographs; a run of two or more supplementary-plane characters therefore
//! stays one token, as in sacrebleu. [`Tokenizer::Char`] (`char`) makes every
//! non-space character a token; [`Tokenizer::None`] (`none`) splits at white
//! space.
//!
//! **Exact match** ([`exact_match`]) compares the token sequences of the
//! tokenizer, so spacing does not count (`秦 川` equals `秦川`).
//! **Character F1** ([`char_f1`]) is, per pair, the F1 of the multisets of
//! non-space characters (SQuAD's token F1 with characters as tokens),
//! averaged over pairs.
//!
//! ```
//! use cloze_eval::generation_metrics::{corpus_bleu, BleuOptions};
//!
//! let bleu = corpus_bleu(&["今天天气很好"], &["今天天气很好"], &BleuOptions::default())?;
//! assert!((bleu.score - 100.0).abs() < 1e-9);
//! # Ok::<(), cloze_eval::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use cloze_core::Report;
use serde::Serialize;

use crate::error::{Error, Result};

/// The highest n-gram order of BLEU-4.
pub const MAX_ORDER: usize = 4;

/// How text is cut into tokens for BLEU and exact match (sacrebleu's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// sacrebleu's `zh`: every CJK character a token, the rest as `13a`.
    #[default]
    Zh,
    /// sacrebleu's `char`: every non-space character a token.
    Char,
    /// sacrebleu's `none`: tokens are the white-space separated words.
    None,
}

/// What BLEU does with an n-gram order without a single match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Smoothing {
    /// No smoothing: the score is 0.
    #[default]
    None,
    /// sacrebleu's `exp` (mteval-v13a's NIST smoothing): the k-th order
    /// without a match gets precision `1 / (2^k · total)`.
    Exp,
}

/// Settings of [`corpus_bleu`] and [`exact_match`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BleuOptions {
    /// How text is tokenised.
    pub tokenizer: Tokenizer,
    /// Smoothing of orders without matches.
    pub smoothing: Smoothing,
    /// Lower-case both sides first (sacrebleu's `-lc`).
    pub lowercase: bool,
}

/// A corpus BLEU score and its parts (sacrebleu's `BLEUScore`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bleu {
    /// BLEU in 0..100.
    pub score: f64,
    /// Matched n-grams per order (clipped).
    pub counts: [u64; MAX_ORDER],
    /// Candidate n-grams per order.
    pub totals: [u64; MAX_ORDER],
    /// Precisions per order, in 0..100 (smoothed where smoothing applied).
    pub precisions: [f64; MAX_ORDER],
    /// The brevity penalty.
    pub brevity_penalty: f64,
    /// Candidate tokens.
    pub sys_len: u64,
    /// Reference tokens.
    pub ref_len: u64,
}

impl fmt::Display for Bleu {
    /// sacrebleu's line: `BLEU = 69.91 83.3/80.0/75.0/66.7 (BP = 0.920 ratio
    /// = 0.923 hyp_len = 12 ref_len = 13)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<String> = self.precisions.iter().map(|p| format!("{p:.1}")).collect();
        let ratio = if self.ref_len > 0 {
            self.sys_len as f64 / self.ref_len as f64
        } else {
            0.0
        };
        write!(
            f,
            "BLEU = {:.2} {} (BP = {:.3} ratio = {ratio:.3} hyp_len = {} ref_len = {})",
            self.score,
            p.join("/"),
            self.brevity_penalty,
            self.sys_len,
            self.ref_len
        )
    }
}

/// sacrebleu's `_UCODE_RANGES` as Python compares them (see the module docs
/// for the two ranges that differ from what their comments say).
const ZH_RANGES: &[(u32, u32)] = &[
    (0x3400, 0x4DB5),
    (0x4E00, 0x9FA5),
    (0x9FA6, 0x9FBB),
    (0xF900, 0xFA2D),
    (0xFA30, 0xFA6A),
    (0xFA70, 0xFAD9),
    (0x2001, 0x2A6D),
    (0x2F81, 0x2FA1),
    (0xFF00, 0xFFEF),
    (0x2E80, 0x2EFF),
    (0x3000, 0x303F),
    (0x31C0, 0x31EF),
    (0x2F00, 0x2FDF),
    (0x2FF0, 0x2FFF),
    (0x3100, 0x312F),
    (0x31A0, 0x31BF),
    (0xFE10, 0xFE1F),
    (0xFE30, 0xFE4F),
    (0x2600, 0x26FF),
    (0x2700, 0x27BF),
    (0x3200, 0x32FF),
    (0x3300, 0x33FF),
];

fn is_zh_char(c: char) -> bool {
    let c = c as u32;
    ZH_RANGES.iter().any(|&(a, b)| a <= c && c <= b)
}

/// Python's `str.isspace`: Unicode white space plus the ASCII separators
/// 0x1C-0x1F, which `str.split()` also splits at.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The first rule of sacrebleu's `TokenizerRegexp`: these ASCII symbols get
/// spaces around them.
fn is_13a_symbol(c: char) -> bool {
    matches!(c as u32, 0x7B..=0x7E | 0x5B..=0x60 | 0x20..=0x26 | 0x28..=0x2B | 0x3A..=0x40 | 0x2F)
}

/// One pass of a two-character rule of `TokenizerRegexp` (`re.sub` scans left
/// to right, and a match consumes both characters).
fn pair_rule(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    emit: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            emit(chars[i], chars[i + 1], &mut out);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu's `TokenizerRegexp` (the `13a` post-tokenizer), on a line.
fn regexp_tokenize(line: &str) -> Vec<String> {
    let mut chars = Vec::with_capacity(line.len() + 8);
    for c in line.chars() {
        if is_13a_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let stop = |c: char| c == '.' || c == ',';
    // ([^0-9])([\.,]) -> \1 \2
    let chars = pair_rule(
        &chars,
        |a, b| !digit(a) && stop(b),
        |a, b, out| out.extend([a, ' ', b, ' ']),
    );
    // ([\.,])([^0-9]) ->  \1 \2
    let chars = pair_rule(
        &chars,
        |a, b| stop(a) && !digit(b),
        |a, b, out| out.extend([' ', a, ' ', b]),
    );
    // ([0-9])(-) -> \1 \2
    let chars = pair_rule(
        &chars,
        |a, b| digit(a) && b == '-',
        |a, b, out| out.extend([a, ' ', b, ' ']),
    );
    let text: String = chars.into_iter().collect();
    text.split(is_py_space)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Tokenises one line as sacrebleu does.
pub fn tokenize(text: &str, tokenizer: Tokenizer) -> Vec<String> {
    match tokenizer {
        Tokenizer::Zh => {
            let line = text.trim_matches(is_py_space);
            let mut spaced = String::with_capacity(line.len() * 2);
            for c in line.chars() {
                if is_zh_char(c) {
                    spaced.push(' ');
                    spaced.push(c);
                    spaced.push(' ');
                } else {
                    spaced.push(c);
                }
            }
            regexp_tokenize(&spaced)
        }
        Tokenizer::Char => text
            .chars()
            .filter(|&c| !is_py_space(c))
            .map(String::from)
            .collect(),
        Tokenizer::None => text
            .split(is_py_space)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

fn prepared(text: &str, options: &BleuOptions) -> Vec<String> {
    if options.lowercase {
        tokenize(&text.to_lowercase(), options.tokenizer)
    } else {
        tokenize(text, options.tokenizer)
    }
}

fn check_counts(candidates: usize, references: usize) -> Result<()> {
    if candidates != references {
        return Err(Error::CountMismatch {
            candidates,
            references,
        });
    }
    Ok(())
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

/// Corpus BLEU-4 of `candidates` against one reference each (see the module
/// docs). An empty corpus scores 0.
pub fn corpus_bleu<C: AsRef<str>, R: AsRef<str>>(
    candidates: &[C],
    references: &[R],
    options: &BleuOptions,
) -> Result<Bleu> {
    check_counts(candidates.len(), references.len())?;
    let mut counts = [0u64; MAX_ORDER];
    let mut totals = [0u64; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0u64, 0u64);
    for (c, r) in candidates.iter().zip(references) {
        let c = prepared(c.as_ref(), options);
        let r = prepared(r.as_ref(), options);
        sys_len += c.len() as u64;
        ref_len += r.len() as u64;
        for n in 1..=MAX_ORDER {
            totals[n - 1] += c.len().saturating_sub(n - 1) as u64;
            let reference = ngram_counts(&r, n);
            for (gram, count) in ngram_counts(&c, n) {
                counts[n - 1] += count.min(reference.get(gram).copied().unwrap_or(0));
            }
        }
    }
    Ok(compute_bleu(
        counts,
        totals,
        sys_len,
        ref_len,
        options.smoothing,
    ))
}

/// sacrebleu's `BLEU.compute_bleu` (without `effective_order`).
fn compute_bleu(
    counts: [u64; MAX_ORDER],
    totals: [u64; MAX_ORDER],
    sys_len: u64,
    ref_len: u64,
    smoothing: Smoothing,
) -> Bleu {
    let brevity_penalty = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    let mut bleu = Bleu {
        score: 0.0,
        counts,
        totals,
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    };
    if counts.iter().all(|&c| c == 0) {
        return bleu;
    }
    let mut smooth = 1.0;
    for n in 0..MAX_ORDER {
        if totals[n] == 0 {
            break;
        }
        precisions[n] = if counts[n] == 0 {
            match smoothing {
                Smoothing::Exp => {
                    smooth *= 2.0;
                    100.0 / (smooth * totals[n] as f64)
                }
                Smoothing::None => 0.0,
            }
        } else {
            100.0 * counts[n] as f64 / totals[n] as f64
        };
    }
    // sacrebleu's my_log: log(0) is -9999999999, which makes the score 0.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let mean = precisions.iter().map(|&p| log(p)).sum::<f64>() / MAX_ORDER as f64;
    bleu.precisions = precisions;
    bleu.score = brevity_penalty * mean.exp();
    bleu
}

/// The fraction of pairs whose token sequences are equal (tokens of
/// `options`; 0 for an empty corpus).
pub fn exact_match<C: AsRef<str>, R: AsRef<str>>(
    candidates: &[C],
    references: &[R],
    options: &BleuOptions,
) -> Result<f64> {
    check_counts(candidates.len(), references.len())?;
    let same = candidates
        .iter()
        .zip(references)
        .filter(|(c, r)| prepared(c.as_ref(), options) == prepared(r.as_ref(), options))
        .count();
    Ok(fraction(same as f64, candidates.len()))
}

fn fraction(sum: f64, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// The F1 of the non-space characters of one pair (1 when both are empty,
/// 0 when only one is).
pub fn pair_char_f1(candidate: &str, reference: &str) -> f64 {
    let mut counts: HashMap<char, i64> = HashMap::new();
    let mut c_len = 0usize;
    let mut r_len = 0usize;
    for ch in reference.chars().filter(|&c| !is_py_space(c)) {
        *counts.entry(ch).or_insert(0) += 1;
        r_len += 1;
    }
    let mut common = 0usize;
    for ch in candidate.chars().filter(|&c| !is_py_space(c)) {
        c_len += 1;
        if let Some(n) = counts.get_mut(&ch) {
            if *n > 0 {
                *n -= 1;
                common += 1;
            }
        }
    }
    if c_len == 0 && r_len == 0 {
        return 1.0;
    }
    if common == 0 {
        return 0.0;
    }
    let p = common as f64 / c_len as f64;
    let r = common as f64 / r_len as f64;
    2.0 * p * r / (p + r)
}

/// The mean over pairs of [`pair_char_f1`] (0 for an empty corpus).
pub fn char_f1<C: AsRef<str>, R: AsRef<str>>(candidates: &[C], references: &[R]) -> Result<f64> {
    check_counts(candidates.len(), references.len())?;
    let sum: f64 = candidates
        .iter()
        .zip(references)
        .map(|(c, r)| pair_char_f1(c.as_ref(), r.as_ref()))
        .sum();
    Ok(fraction(sum, candidates.len()))
}

/// Every generation score of a corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationScores {
    /// Corpus BLEU-4.
    pub bleu: Bleu,
    /// Fraction of exact matches.
    pub exact_match: f64,
    /// Mean character F1.
    pub char_f1: f64,
    /// Pairs scored.
    pub count: usize,
}

impl GenerationScores {
    /// As named values: accuracies `bleu` (BLEU / 100, so the summary prints
    /// it as a percentage), `exact_match` and `char_f1`, and the count
    /// `generated`.
    pub fn report(&self) -> Report {
        Report::new()
            .accuracy("bleu", self.bleu.score / 100.0)
            .accuracy("exact_match", self.exact_match)
            .accuracy("char_f1", self.char_f1)
            .count("generated", self.count as u64)
    }
}

/// BLEU, exact match and character F1 of `candidates` against `references`.
pub fn score_generation<C: AsRef<str>, R: AsRef<str>>(
    candidates: &[C],
    references: &[R],
    options: &BleuOptions,
) -> Result<GenerationScores> {
    Ok(GenerationScores {
        bleu: corpus_bleu(candidates, references, options)?,
        exact_match: exact_match(candidates, references, options)?,
        char_f1: char_f1(candidates, references)?,
        count: candidates.len(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bleu(c: &[&str], r: &[&str]) -> Bleu {
        corpus_bleu(c, r, &BleuOptions::default()).unwrap()
    }

    #[test]
    fn identical_text_scores_100() {
        let b = bleu(&["秦川雄帝宅", "函谷壯皇居"], &["秦川雄帝宅", "函谷壯皇居"]);
        assert!((b.score - 100.0).abs() < 1e-9);
        assert_eq!(b.brevity_penalty, 1.0);
        assert_eq!(b.counts, [10, 8, 6, 4]);
        assert_eq!(b.totals, b.counts);
    }

    #[test]
    fn a_hand_computed_corpus() {
        // Candidate 1 (6 characters) is the reference (7) less its last
        // character: all 6/5/4/3 n-grams match. Candidate 2 shares 今天天气:
        // 4/6 unigrams, 3/5 bigrams, 2/4 trigrams, 1/3 four-grams. The
        // product of the precisions is 10/12 · 8/10 · 6/8 · 4/6 = 1/3 and
        // BP = exp(1 - 13/12). sacrebleu 2.6 (`tokenize="zh"`,
        // `smooth_method="none"`) prints the same line.
        let b = bleu(
            &["猫坐在垫子上", "今天天气很好"],
            &["猫坐在垫子上面", "今天天气不错"],
        );
        assert_eq!(b.counts, [10, 8, 6, 4]);
        assert_eq!(b.totals, [12, 10, 8, 6]);
        assert_eq!((b.sys_len, b.ref_len), (12, 13));
        let expected = 100.0 * (-1.0f64 / 12.0).exp() * (1.0f64 / 3.0).powf(0.25);
        assert!((b.score - expected).abs() < 1e-9, "{}", b.score);
        assert_eq!(
            b.to_string(),
            "BLEU = 69.91 83.3/80.0/75.0/66.7 (BP = 0.920 ratio = 0.923 hyp_len = 12 ref_len = 13)"
        );
    }

    #[test]
    fn clipping_and_the_zero_rules() {
        // "的的的" against "的": one unigram counts once, no bigram matches,
        // so without smoothing the score is 0.
        let b = bleu(&["的的的的"], &["的"]);
        assert_eq!(b.counts[0], 1);
        assert_eq!(b.score, 0.0);
        // Nothing matches at all: 0 whatever the smoothing.
        let exp = BleuOptions {
            smoothing: Smoothing::Exp,
            ..BleuOptions::default()
        };
        assert_eq!(corpus_bleu(&["甲乙"], &["丙丁"], &exp).unwrap().score, 0.0);
        // A candidate shorter than 4 tokens has no four-gram: total 0, score 0.
        let b = bleu(&["一二三"], &["一二三"]);
        assert_eq!(b.totals[3], 0);
        assert_eq!(b.score, 0.0);
        // Empty corpus.
        assert_eq!(bleu(&[], &[]).score, 0.0);
    }

    #[test]
    fn exp_smoothing_fills_orders_without_matches() {
        // 5 characters, one wrong in the middle: 4/5, 2/4, 0/3, 0/2. With
        // exp smoothing the third gets 100 / (2·3), the fourth 100 / (4·2).
        let exp = BleuOptions {
            smoothing: Smoothing::Exp,
            ..BleuOptions::default()
        };
        let b = corpus_bleu(&["秦川甲帝宅"], &["秦川雄帝宅"], &exp).unwrap();
        assert_eq!(b.counts, [4, 2, 0, 0]);
        let p = [80.0, 50.0, 100.0 / 6.0, 100.0 / 8.0];
        for (got, want) in b.precisions.iter().zip(p) {
            assert!((got - want).abs() < 1e-9);
        }
        let expected = p.iter().map(|x: &f64| x.ln()).sum::<f64>() / 4.0;
        assert!((b.score - expected.exp()).abs() < 1e-9);
        // sacrebleu 2.6 with smooth_method="exp": BLEU = 30.21.
        assert_eq!(format!("{:.2}", b.score), "30.21");
        assert_eq!(bleu(&["秦川甲帝宅"], &["秦川雄帝宅"]).score, 0.0);
    }

    #[test]
    fn the_zh_tokenizer_matches_sacrebleu() {
        // Outputs of sacrebleu 2.6's TokenizerZh on the same lines.
        let cases = [
            (
                "Hello, world! 2024年3.5元。",
                "Hello , world ! 2024 年 3.5 元 。",
            ),
            (
                "  秦川雄帝宅，函谷壯皇居。 ",
                "秦 川 雄 帝 宅 ， 函 谷 壯 皇 居 。",
            ),
            (
                "a.b,c 1,000.5 x-1 3-4 e.g., \"q\" (p) [x] {y} a/b a&b #1",
                "a . b , c 1,000.5 x-1 3 - 4 e . g . , \" q \" ( p ) [ x ] { y } a / b a & b # 1",
            ),
            ("A𠀋𠀌B — “引号”…", "A𠀋𠀌B — “ 引 号 ” …"),
            ("U.S.A., 1.5.", "U . S . A . , 1.5."),
        ];
        for (line, want) in cases {
            assert_eq!(tokenize(line, Tokenizer::Zh).join(" "), want, "{line}");
        }
        assert_eq!(
            tokenize(" ab c。d ", Tokenizer::Char),
            ["a", "b", "c", "。", "d"]
        );
        assert_eq!(tokenize(" ab  c ", Tokenizer::None), ["ab", "c"]);
    }

    #[test]
    fn exact_match_ignores_spacing_and_char_f1_counts_characters() {
        let opts = BleuOptions::default();
        let em = exact_match(&["秦 川 雄", "函谷"], &["秦川雄", "函谷關"], &opts).unwrap();
        assert_eq!(em, 0.5);
        // 函谷 against 函谷關: p = 1, r = 2/3, F1 = 0.8.
        assert!((pair_char_f1("函谷", "函谷關") - 0.8).abs() < 1e-12);
        // Repeats count once per occurrence: 天天 vs 天: p 1/2, r 1, F1 2/3.
        assert!((pair_char_f1("天天", "天") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(pair_char_f1("", ""), 1.0);
        assert_eq!(pair_char_f1("甲", ""), 0.0);
        let f = char_f1(&["函谷", "甲"], &["函谷關", "乙"]).unwrap();
        assert!((f - 0.4).abs() < 1e-12);
        assert!(matches!(
            char_f1(&["a"], &["a", "b"]),
            Err(Error::CountMismatch {
                candidates: 1,
                references: 2
            })
        ));
    }

    #[test]
    fn lowercasing_is_optional() {
        let lc = BleuOptions {
            lowercase: true,
            ..BleuOptions::default()
        };
        assert_eq!(
            exact_match(&["Tang Poem"], &["tang poem"], &lc).unwrap(),
            1.0
        );
        assert_eq!(
            exact_match(&["Tang Poem"], &["tang poem"], &BleuOptions::default()).unwrap(),
            0.0
        );
    }

    #[test]
    fn scores_report_named_values() {
        let s =
            score_generation(&["秦川雄帝宅"], &["秦川雄帝宅"], &BleuOptions::default()).unwrap();
        let r = s.report();
        assert!((r.accuracies["bleu"] - 1.0).abs() < 1e-12);
        assert_eq!(r.accuracies["exact_match"], 1.0);
        assert_eq!(r.accuracies["char_f1"], 1.0);
        assert_eq!(r.counts["generated"], 1);
    }
}
