//! Statistical tests over at least 100k examples: every realised rate must sit
//! within tight bounds (binomial z-scores, chi-square at p < 1e-4) of its config.

mod common;

use std::sync::Arc;

use cloze_mask::{
    CorruptConfig, Corruption, Granularity, LengthsConfig, Masker, MaskingConfig, SelectConfig,
    Thesaurus, Vocab,
};
use common::*;

const N: usize = 100_000;

/// Chi-square critical values at p = 1e-4 for 2, 3 and 9 degrees of freedom.
const CHI2_DF2: f64 = 18.42;
const CHI2_DF3: f64 = 21.11;
const CHI2_DF9: f64 = 33.72;

fn corpus_100k() -> Vec<cloze_text::Instance> {
    corpus(N, 16, 64)
}

#[test]
fn budget_mask_rate_and_80_10_10_split() -> anyhow::Result<()> {
    let data = corpus_100k();
    let masker = Masker::new(MaskingConfig::bert(None), specials())?;
    let s = masker.stats(&data, 7, 0, 0)?;
    assert_eq!(s.instances, N as u64);
    // Stochastic rounding makes the expected count exactly 0.15 x maskable; each
    // example deviates by a Bernoulli(frac) term, so sd <= sqrt(N / 4).
    let expected = 0.15 * s.maskable_tokens as f64;
    let sd = (N as f64 / 4.0).sqrt();
    let z = (s.masked_tokens as f64 - expected) / sd;
    assert!(
        z.abs() < 5.0,
        "mask rate {} (z = {z:.2})\n{s}",
        s.mask_rate()
    );
    let c = &s.corruptions;
    let chi = chi_square(&c[..3], &[0.8, 0.1, 0.1]);
    assert!(chi < CHI2_DF2, "80/10/10 chi-square {chi:.2}: {c:?}");
    assert_eq!(c[Corruption::Similar.index()], 0);
    Ok(())
}

#[test]
fn bernoulli_rate_is_binomial_and_custom_split_holds() -> anyhow::Result<()> {
    let data = corpus_100k();
    let mut config = MaskingConfig::bert(None);
    config.select = SelectConfig::Bernoulli {
        rate: 0.2,
        max_predictions: None,
    };
    config.corrupt = CorruptConfig::Bert {
        mask: 0.5,
        random: 0.3,
        keep: 0.2,
        per: Granularity::Token,
    };
    let s = Masker::new(config, specials())?.stats(&data, 11, 3, 0)?;
    let n = s.maskable_tokens as f64;
    let z = (s.masked_tokens as f64 - 0.2 * n) / (n * 0.2 * 0.8).sqrt();
    assert!(z.abs() < 4.5, "binomial z = {z:.2}\n{s}");
    let chi = chi_square(&s.corruptions[..3], &[0.5, 0.3, 0.2]);
    assert!(
        chi < CHI2_DF2,
        "50/30/20 chi-square {chi:.2}: {:?}",
        s.corruptions
    );
    Ok(())
}

#[test]
fn whole_word_mask_rate_stays_on_budget() -> anyhow::Result<()> {
    let data = corpus_100k();
    let s = Masker::new(MaskingConfig::whole_word(None), specials())?.stats(&data, 5, 0, 0)?;
    // Whole words cannot always fill the budget exactly (a 3-token word does not
    // fit in 2 remaining tokens), so the rate may fall short but never exceeds it.
    let budget_sd = (N as f64 / 4.0).sqrt();
    assert!(
        s.masked_tokens as f64 <= 0.15 * s.maskable_tokens as f64 + 5.0 * budget_sd,
        "{s}"
    );
    assert!(s.mask_rate() > 0.145, "whole-word rate\n{s}");
    Ok(())
}

#[test]
fn ngram_lengths_follow_40_30_20_10() -> anyhow::Result<()> {
    let data = corpus_100k();
    let mut config = MaskingConfig::macbert(None);
    config.corrupt = CorruptConfig::Bert {
        mask: 0.8,
        random: 0.1,
        keep: 0.1,
        per: Granularity::Token,
    };
    let s = Masker::new(config, specials())?.stats(&data, 3, 0, 0)?;
    let drawn = bins(&s.drawn_lengths, 4);
    let chi = chi_square(&drawn, &[0.4, 0.3, 0.2, 0.1]);
    assert!(
        chi < CHI2_DF3,
        "n-gram length chi-square {chi:.2}: {drawn:?}"
    );
    assert!(
        s.span_lengths.len() <= 5,
        "no n-gram longer than 4: {:?}",
        s.span_lengths
    );
    // Clipping (budget, sequence end, neighbours) only ever shortens spans; these
    // sequences are short (budgets of 2-10 tokens for 2-token words on average),
    // so it shortens many.
    assert!(
        s.mean_span_length() < 2.0 && s.mean_span_length() > 1.3,
        "{s}"
    );
    assert!(s.spans > N as u64, "{s}");
    Ok(())
}

#[test]
fn ngram_realised_lengths_are_close_to_drawn_on_long_sequences() -> anyhow::Result<()> {
    // With 512-token sequences the budget is ~77 tokens, so clipping is rare and
    // the realised distribution stays within 1.5 points of the configured one
    // (placing spans after drawing their length is what makes this hold).
    let data = corpus(4_000, 512, 512);
    let mut config = MaskingConfig::macbert(None);
    config.corrupt = CorruptConfig::Bert {
        mask: 0.8,
        random: 0.1,
        keep: 0.1,
        per: Granularity::Token,
    };
    let s = Masker::new(config, specials())?.stats(&data, 3, 0, 0)?;
    eprintln!("{s}");
    let realised = bins(&s.span_lengths, 4);
    let total: u64 = realised.iter().sum();
    for (i, (&r, p)) in realised.iter().zip([0.4, 0.3, 0.2, 0.1]).enumerate() {
        let share = r as f64 / total as f64;
        assert!(
            (share - p).abs() < 0.015,
            "length {}: {share:.3} vs {p}\n{s}",
            i + 1
        );
    }
    Ok(())
}

#[test]
fn span_lengths_follow_clipped_geometric() -> anyhow::Result<()> {
    let data = corpus(N, 64, 96);
    let config = MaskingConfig::spanbert();
    let expected = LengthsConfig::Geometric { p: 0.2, max: 10 }.probabilities();
    let s = Masker::new(config, specials())?.stats(&data, 9, 0, 0)?;
    let drawn = bins(&s.drawn_lengths, 10);
    let chi = chi_square(&drawn, &expected);
    assert!(chi < CHI2_DF9, "span length chi-square {chi:.2}: {drawn:?}");
    assert!(s.span_lengths.len() <= 11);
    let mean_drawn: f64 = expected
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1) as f64 * p)
        .sum();
    // SpanBERT reports a mean span length of 3.8 words for this distribution.
    assert!(
        (mean_drawn - 3.8).abs() < 0.01,
        "clipped geometric(0.2) mean is 3.8, got {mean_drawn}"
    );
    assert!(
        s.mean_span_length() <= mean_drawn && s.mean_span_length() > 2.5,
        "{s}"
    );
    Ok(())
}

#[test]
fn similar_word_split_80_10_10_never_uses_mask() -> anyhow::Result<()> {
    // Every word of the synthetic corpus is a token "t<id>" standing alone, and
    // each has a same-length synonym, so no lookup fails.
    let mut tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    tokens.extend((5..VOCAB).map(|i| format!("t{i}")));
    let vocab = Arc::new(Vocab::from_tokens(tokens));
    let mut groups: Vec<Vec<String>> = (5..VOCAB - 1)
        .step_by(2)
        .map(|i| vec![format!("t{i}"), format!("t{}", i + 1)])
        .collect();
    groups.push(vec![format!("t{}", VOCAB - 1), "t5".into()]);
    let thesaurus = Arc::new(Thesaurus::from_groups(groups));
    let mut config = MaskingConfig::macbert(None);
    config.units = cloze_mask::UnitsConfig::Tokens;
    let masker = Masker::builder(config, specials())
        .word_codec(vocab)
        .similar_words(thesaurus)
        .build()?;
    let data = corpus_100k();
    let s = masker.stats(&data, 1, 0, 0)?;
    let c = &s.corruptions;
    assert_eq!(c[Corruption::Mask.index()], 0, "MacBERT never shows [MASK]");
    assert_eq!(s.failed_lookups, 0, "{s}");
    let chi = chi_square(&[c[3], c[1], c[2]], &[0.8, 0.1, 0.1]);
    assert!(
        chi < CHI2_DF2,
        "similar/random/keep chi-square {chi:.2}: {c:?}"
    );
    Ok(())
}
