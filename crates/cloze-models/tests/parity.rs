//! Parity with HuggingFace transformers on the hf-tiny-bert fixture (written by
//! transformers 5.24; see tests/fixtures/hf-tiny-bert/README.md).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cloze_models::hf::read_safetensors;
use cloze_models::{load_pretrained, HeadStatus, MlmInput};
use tch::{Device, Tensor};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-tiny-bert")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn reference() -> std::collections::BTreeMap<String, Tensor> {
    read_safetensors(&fixture().join("reference.safetensors")).unwrap()
}

fn reference_input(r: &std::collections::BTreeMap<String, Tensor>) -> MlmInput {
    MlmInput::new(r["input_ids"].shallow_clone())
        .with_token_type_ids(r["token_type_ids"].shallow_clone())
        .with_attention_mask(r["attention_mask"].shallow_clone())
}

#[test]
fn every_output_matches_transformers_within_1e5() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    assert!(p.report.is_exact(), "{}", p.report);
    assert_eq!(p.report.mlm_head, HeadStatus::Loaded);
    assert_eq!(p.report.pair_head, HeadStatus::Loaded);
    assert_eq!(p.report.loaded, 46);
    let r = reference();
    let input = reference_input(&r);
    let _g = tch::no_grad_guard();
    let emb = p.model.bert().embed(&input, false).unwrap();
    assert!(max_abs_diff(&emb, &r["embedding_output"]) < 1e-5);
    let enc = p.model.bert().forward_t(&input, false).unwrap();
    assert!(max_abs_diff(&enc.last_hidden_state, &r["last_hidden_state"]) < 1e-5);
    assert!(max_abs_diff(enc.pooler_output.as_ref().unwrap(), &r["pooler_output"]) < 1e-5);
    let out = p.model.forward_t(&input, None, false).unwrap();
    assert!(max_abs_diff(&out.mlm_logits, &r["mlm_logits"]) < 1e-5);
    assert!(max_abs_diff(out.pair_logits.as_ref().unwrap(), &r["nsp_logits"]) < 1e-5);
}

#[test]
fn gathered_positions_equal_rows_of_the_full_projection() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let r = reference();
    let input = reference_input(&r);
    let _g = tch::no_grad_guard();
    let pos = Tensor::from_slice(&[1i64, 4, 13, 17, 23]);
    let out = p.model.forward_t(&input, Some(&pos), false).unwrap();
    assert_eq!(out.mlm_logits.size(), vec![5, 96]);
    let want = r["mlm_logits"].reshape([24, 96]).index_select(0, &pos);
    assert!(max_abs_diff(&out.mlm_logits, &want) < 1e-5);
}

#[test]
fn a_3d_mask_equal_to_the_padding_mask_changes_nothing() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let r = reference();
    let _g = tch::no_grad_guard();
    let am = &r["attention_mask"];
    let m3 = am.unsqueeze(1).expand([2, 12, 12], false).contiguous();
    let input = MlmInput::new(r["input_ids"].shallow_clone())
        .with_token_type_ids(r["token_type_ids"].shallow_clone())
        .with_attention_3d(m3.shallow_clone());
    let h = p
        .model
        .bert()
        .forward_t(&input, false)
        .unwrap()
        .last_hidden_state;
    assert!(max_abs_diff(&h, &r["last_hidden_state"]) < 1e-5);
    // Both masks together mean the same as either.
    let both = reference_input(&r).with_attention_3d(m3);
    let h2 = p
        .model
        .bert()
        .forward_t(&both, false)
        .unwrap()
        .last_hidden_state;
    assert!(max_abs_diff(&h2, &r["last_hidden_state"]) < 1e-5);
}

#[test]
fn a_causal_3d_mask_makes_each_position_depend_only_on_its_prefix() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let r = reference();
    let _g = tch::no_grad_guard();
    let causal = |l: i64| {
        Tensor::ones([l, l], (tch::Kind::Int64, Device::Cpu))
            .tril(0)
            .unsqueeze(0)
    };
    let run = |ids: &Tensor| {
        let l = ids.size()[1];
        let input = MlmInput::new(ids.shallow_clone()).with_attention_3d(causal(l));
        p.model
            .bert()
            .forward_t(&input, false)
            .unwrap()
            .last_hidden_state
    };
    let ids = r["input_ids"].narrow(0, 1, 1); // the unpadded row
    let h = run(&ids);
    let plain = p
        .model
        .bert()
        .forward_t(&MlmInput::new(ids.shallow_clone()), false)
        .unwrap();
    assert!(
        max_abs_diff(&h, &plain.last_hidden_state) > 1e-3,
        "the mask must matter"
    );
    // Position 0 sees only itself, like a one-token sequence without any mask.
    let one = p
        .model
        .bert()
        .forward_t(&MlmInput::new(ids.narrow(1, 0, 1)), false)
        .unwrap();
    assert!(max_abs_diff(&h.narrow(1, 0, 1), &one.last_hidden_state) < 1e-5);
    for i in [2i64, 5, 9] {
        // Truncating after i leaves positions 0..=i unchanged ...
        let hp = run(&ids.narrow(1, 0, i + 1));
        assert!(
            max_abs_diff(&h.narrow(1, 0, i + 1), &hp) < 1e-5,
            "prefix {i}"
        );
        // ... and so does changing the token at i + 1, which changes position i + 1 itself.
        let changed = ids.copy();
        let _ = changed.narrow(1, i + 1, 1).fill_(50);
        let hc = run(&changed);
        assert!(max_abs_diff(&h.narrow(1, 0, i + 1), &hc.narrow(1, 0, i + 1)) < 1e-5);
        assert!(max_abs_diff(&h.select(1, i + 1), &hc.select(1, i + 1)) > 1e-3);
    }
}

#[test]
fn explicit_position_ids_are_used() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let r = reference();
    let _g = tch::no_grad_guard();
    let same =
        reference_input(&r).with_position_ids(Tensor::arange(12, (tch::Kind::Int64, Device::Cpu)));
    let h = p
        .model
        .bert()
        .forward_t(&same, false)
        .unwrap()
        .last_hidden_state;
    assert!(max_abs_diff(&h, &r["last_hidden_state"]) < 1e-5);
    let shifted = reference_input(&r).with_position_ids(
        Tensor::arange_start(5, 17, (tch::Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .repeat([2, 1]),
    );
    let h2 = p
        .model
        .bert()
        .forward_t(&shifted, false)
        .unwrap()
        .last_hidden_state;
    assert!(max_abs_diff(&h2, &r["last_hidden_state"]) > 1e-3);
}

#[test]
fn dropout_only_in_training() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let r = reference();
    let input = reference_input(&r);
    let _g = tch::no_grad_guard();
    let a = p
        .model
        .bert()
        .forward_t(&input, true)
        .unwrap()
        .last_hidden_state;
    let b = p
        .model
        .bert()
        .forward_t(&input, true)
        .unwrap()
        .last_hidden_state;
    assert!(max_abs_diff(&a, &b) > 1e-3);
    let c = p
        .model
        .bert()
        .forward_t(&input, false)
        .unwrap()
        .last_hidden_state;
    let d = p
        .model
        .bert()
        .forward_t(&input, false)
        .unwrap()
        .last_hidden_state;
    assert_eq!(max_abs_diff(&c, &d), 0.0);
}
