//! Fill-mask, pseudo-log-likelihood and encoding on the hf-tiny-bert fixture,
//! checked against direct computations with the model.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cloze_eval::{
    encode, fill_mask, pseudo_log_likelihood, EncodeOptions, Error, FillMaskOptions, MaskedLm,
    PllOptions,
};
use cloze_models::{load_pretrained, MlmInput};
use tch::{Device, Kind, Tensor};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cloze-models/tests/fixtures/hf-tiny-bert")
}

const CLS: u32 = 2;
const SEP: u32 = 3;
const MASK: u32 = 4;
const PAD: u32 = 0;

/// Sequences of varied lengths, deterministic.
fn sequences(n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let len = 3 + (i * 7) % 19;
            let mut s = vec![CLS];
            s.extend((0..len).map(|j| 5 + ((i * 31 + j * 17) % 90) as u32));
            s.push(SEP);
            s
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn single(seq: &[u32]) -> MlmInput {
    MlmInput::new(
        Tensor::from_slice(&seq.iter().map(|&t| i64::from(t)).collect::<Vec<_>>()).unsqueeze(0),
    )
}

#[test]
fn length_sorted_encoding_equals_file_order_and_unpadded_runs() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let seqs = sequences(23);
    let sorted = EncodeOptions {
        batch_size: 5,
        sort_by_length: true,
        keep_token_states: true,
        ..EncodeOptions::new(PAD)
    };
    let file_order = EncodeOptions {
        sort_by_length: false,
        ..sorted.clone()
    };
    let a = encode(p.model.bert(), &seqs, &sorted).unwrap();
    let b = encode(p.model.bert(), &seqs, &file_order).unwrap();
    assert_eq!(a.embeddings.size(), vec![23, 32]);
    assert!(max_abs_diff(&a.embeddings, &b.embeddings) <= 1e-5);
    assert_eq!(a.real_tokens, seqs.iter().map(Vec::len).sum::<usize>());
    assert!(
        a.padded_positions < b.padded_positions,
        "sorting must cut padding"
    );
    let (sa, sb) = (a.token_states.unwrap(), b.token_states.unwrap());
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(sa[i].size(), vec![s.len() as i64, 32]);
        assert!(max_abs_diff(&sa[i], &sb[i]) <= 1e-5);
        // Each sequence alone, unpadded: the same states and their plain mean.
        let _g = tch::no_grad_guard();
        let h = p
            .model
            .bert()
            .forward_t(&single(s), false)
            .unwrap()
            .last_hidden_state
            .squeeze_dim(0);
        assert!(max_abs_diff(&sa[i], &h) <= 1e-5, "sequence {i}");
        assert!(
            max_abs_diff(
                &a.embeddings.get(i as i64),
                &h.mean_dim(0, false, Kind::Float)
            ) <= 1e-5
        );
    }
}

#[test]
fn fill_mask_ranks_by_the_models_probabilities_at_every_mask() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let mut seqs = sequences(6);
    seqs[0][1] = MASK;
    seqs[0][3] = MASK;
    seqs[1][2] = MASK;
    for s in seqs.iter_mut().skip(2) {
        s[1] = MASK;
    }
    let opts = FillMaskOptions {
        top_k: 5,
        batch_size: 4,
        ..FillMaskOptions::new(MASK, PAD)
    };
    let out = fill_mask(&p.model, &seqs, &opts).unwrap();
    assert_eq!(out[0].len(), 2, "two masks, two predictions");
    assert_eq!(out[0][0].position, 1);
    assert_eq!(out[0][1].position, 3);
    let _g = tch::no_grad_guard();
    for (s, preds) in seqs.iter().zip(&out) {
        let logits = p
            .model
            .forward_t(&single(s), None, false)
            .unwrap()
            .mlm_logits
            .squeeze_dim(0);
        for pred in preds {
            let probs = logits.get(pred.position as i64).softmax(-1, Kind::Float);
            let best = probs.argmax(0, false).int64_value(&[]);
            assert_eq!(i64::from(pred.candidates[0].token_id), best);
            for w in pred.candidates.windows(2) {
                assert!(w[0].probability >= w[1].probability);
            }
            for c in &pred.candidates {
                let want = probs.double_value(&[i64::from(c.token_id)]);
                assert!((c.probability - want).abs() < 1e-5);
            }
        }
    }
    let no_mask = sequences(1);
    assert!(matches!(
        fill_mask(&p.model, &no_mask, &opts),
        Err(Error::NoMask { index: 0 })
    ));
    assert!(matches!(
        fill_mask(
            &p.model,
            &seqs,
            &FillMaskOptions {
                top_k: 0,
                ..opts.clone()
            }
        ),
        Err(Error::InvalidOption { name: "top_k", .. })
    ));
    let too_long = vec![vec![MASK; 41]];
    assert!(matches!(
        fill_mask(
            &p.model,
            &too_long,
            &FillMaskOptions {
                top_k: 1,
                ..opts.clone()
            }
        ),
        Err(Error::TooLong { .. })
    ));
}

#[test]
fn pseudo_log_likelihood_equals_masking_each_token_in_turn() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let seqs = sequences(4);
    let opts = PllOptions {
        skip: vec![CLS, SEP],
        batch_size: 7,
        ..PllOptions::new(MASK, PAD)
    };
    let scores = pseudo_log_likelihood(&p.model, &seqs, &opts).unwrap();
    let again = pseudo_log_likelihood(
        &p.model,
        &seqs,
        &PllOptions {
            batch_size: 64,
            ..opts.clone()
        },
    )
    .unwrap();
    let _g = tch::no_grad_guard();
    for (i, s) in seqs.iter().enumerate() {
        let mut pll = 0.0;
        for pos in 1..s.len() - 1 {
            let mut m = s.clone();
            m[pos] = MASK;
            let logits = p
                .model
                .forward_t(&single(&m), None, false)
                .unwrap()
                .mlm_logits;
            let logp = logits.get(0).get(pos as i64).log_softmax(-1, Kind::Float);
            pll += logp.double_value(&[i64::from(s[pos])]);
        }
        assert_eq!(scores[i].tokens, s.len() - 2);
        assert!(
            (scores[i].pll - pll).abs() < 1e-4,
            "{} vs {pll}",
            scores[i].pll
        );
        assert!(
            (scores[i].pll - again[i].pll).abs() < 1e-4,
            "batch size must not matter"
        );
        let pppl = (-pll / (s.len() - 2) as f64).exp();
        assert!((scores[i].pseudo_perplexity - pppl).abs() / pppl < 1e-4);
    }
    let corpus = cloze_eval::corpus_pseudo_perplexity(&scores);
    let n: usize = scores.iter().map(|s| s.tokens).sum();
    let total: f64 = scores.iter().map(|s| s.pll).sum();
    assert!((corpus - (-total / n as f64).exp()).abs() < 1e-9);
}

/// Sequences whose fill-mask and PLL results were recorded before both functions
/// went through [`MaskedLm`] (softmax then top-k on the model's logits).
fn recorded_sequences() -> Vec<Vec<u32>> {
    vec![vec![2, 17, 23, 4, 31, 3], vec![2, 4, 40, 41, 4, 60, 70, 3]]
}

#[test]
fn fill_mask_through_a_trait_object_gives_the_recorded_numbers() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let model: &dyn MaskedLm = &p.model;
    let opts = FillMaskOptions {
        top_k: 3,
        batch_size: 8,
        ..FillMaskOptions::new(MASK, PAD)
    };
    let out = fill_mask(model, &recorded_sequences(), &opts).unwrap();
    // (sequence, mask position, top 3 as (token id, probability)).
    let recorded = [
        (
            0usize,
            3usize,
            [
                (24u32, 1.966816001e-2f64),
                (67, 1.830542088e-2),
                (49, 1.738715917e-2),
            ],
        ),
        (
            1,
            1,
            [
                (24, 1.970041171e-2),
                (49, 1.865227148e-2),
                (16, 1.836450957e-2),
            ],
        ),
        (
            1,
            4,
            [
                (24, 2.066101134e-2),
                (66, 1.890888438e-2),
                (16, 1.840416715e-2),
            ],
        ),
    ];
    assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2]);
    let preds = out.iter().flatten();
    for ((seq, position, want), got) in recorded.iter().zip(preds) {
        assert_eq!(got.position, *position, "sequence {seq}");
        for (c, (id, prob)) in got.candidates.iter().zip(want) {
            assert_eq!(c.token_id, *id, "sequence {seq} position {position}");
            assert!(
                (c.probability - prob).abs() < 1e-7,
                "sequence {seq} position {position} token {id}: {} vs {prob}",
                c.probability
            );
        }
    }
}

#[test]
fn pseudo_log_likelihood_through_a_trait_object_gives_the_recorded_numbers() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let model: &dyn MaskedLm = &p.model;
    let opts = PllOptions {
        skip: vec![CLS, SEP],
        batch_size: 8,
        ..PllOptions::new(MASK, PAD)
    };
    let scores = pseudo_log_likelihood(model, &recorded_sequences(), &opts).unwrap();
    let recorded = [
        (-1.834990788e1, 4, 9.824623887e1),
        (-2.854054022e1, 6, 1.163678976e2),
    ];
    for (s, (pll, tokens, pppl)) in scores.iter().zip(recorded) {
        assert_eq!(s.tokens, tokens);
        assert!((s.pll - pll).abs() < 1e-5, "{} vs {pll}", s.pll);
        assert!((s.pseudo_perplexity - pppl).abs() / pppl < 1e-6);
    }
}

#[test]
fn invalid_options_fail_before_any_forward_pass() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let seqs = recorded_sequences();
    let too_many = FillMaskOptions {
        top_k: 97,
        ..FillMaskOptions::new(MASK, PAD)
    };
    assert!(matches!(
        fill_mask(&p.model, &seqs, &too_many),
        Err(Error::InvalidOption { name: "top_k", .. })
    ));
    let no_batch = PllOptions {
        batch_size: 0,
        ..PllOptions::new(MASK, PAD)
    };
    assert!(matches!(
        pseudo_log_likelihood(&p.model, &seqs, &no_batch),
        Err(Error::InvalidOption {
            name: "batch_size",
            ..
        })
    ));
    // A [MASK] id from another vocabulary is named, not left to fail in the model.
    assert!(matches!(
        pseudo_log_likelihood(&p.model, &seqs, &PllOptions::new(103, PAD)),
        Err(Error::InvalidOption {
            name: "mask_id",
            ..
        })
    ));
}
