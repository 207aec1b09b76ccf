//! The token-category head of code-aware models (CugLM's type head): its
//! variables follow `code_category_size`, it saves and loads by name, the
//! category it is conditioned on changes the token prediction, and bad
//! category ids are typed errors.
#![allow(clippy::unwrap_used)]

use cloze_models::{
    save_pretrained, BertConfig, BertForPreTraining, CategoryHead, Error, MlmInput,
};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn config() -> BertConfig {
    BertConfig {
        vocab_size: 50,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 32,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        code_category_size: Some(5),
        ..BertConfig::default()
    }
}

fn states(m: &BertForPreTraining) -> Tensor {
    let ids = Tensor::from_slice(&[2i64, 10, 11, 12, 3]).view([1, 5]);
    m.bert()
        .forward_t(&MlmInput::new(ids), false)
        .unwrap()
        .last_hidden_state
        .view([5, 16])
}

#[test]
fn the_head_predicts_categories_and_its_condition_steers_the_tokens() {
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let m = BertForPreTraining::new(&vs.root(), &config()).unwrap();
    let head = CategoryHead::new(&vs.root(), &config()).unwrap();
    let h = states(&m);
    assert_eq!(head.forward(&h).unwrap().size(), vec![5, 5]);

    let cats = |v: &[i64]| Tensor::from_slice(v);
    let a = m
        .mlm_logits(&head.condition(&h, &cats(&[0, 0, 0, 0, 0])).unwrap())
        .unwrap();
    let b = m
        .mlm_logits(&head.condition(&h, &cats(&[0, 3, 0, 0, 0])).unwrap())
        .unwrap();
    // Only the row whose category changed predicts differently.
    let diff = (&a - &b).abs().sum_dim_intlist(1, false, Kind::Float);
    let per_row: Vec<f64> = (0..5).map(|i| diff.double_value(&[i])).collect();
    assert!(per_row[1] > 1e-4, "{per_row:?}");
    for (i, d) in per_row.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(*d < 1e-6, "row {i} changed: {d}");
    }

    assert!(matches!(
        head.condition(&h, &cats(&[0, 5, 0, 0, 0])),
        Err(Error::IndexOutOfRange { limit: 5, .. })
    ));
    assert!(matches!(
        head.condition(&h, &cats(&[0, 1])),
        Err(Error::InputShape { .. })
    ));
}

#[test]
fn the_head_saves_loads_and_needs_a_category_count() {
    tch::manual_seed(6);
    let vs = VarStore::new(Device::Cpu);
    let m = BertForPreTraining::new(&vs.root(), &config()).unwrap();
    let head = CategoryHead::new(&vs.root(), &config()).unwrap();
    assert_eq!(
        vs.variables()["cls.category.type_embeddings.weight"].size(),
        vec![5, 16]
    );
    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&vs, m.config(), dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["code_category_size"], 5);

    let loaded = cloze_models::hf::read_config(dir.path()).unwrap();
    assert_eq!(loaded.code_category_size, Some(5));
    let vs2 = VarStore::new(Device::Cpu);
    let m2 = BertForPreTraining::new(&vs2.root(), &loaded).unwrap();
    let head2 = CategoryHead::new(&vs2.root(), &loaded).unwrap();
    let report = cloze_models::hf::load_weights(&vs2, dir.path()).unwrap();
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{report}"
    );
    let h = states(&m);
    assert!(head.forward(&h).unwrap().allclose(
        &head2.forward(&states(&m2)).unwrap(),
        1e-6,
        1e-6,
        false
    ));

    let plain = BertConfig {
        code_category_size: None,
        ..config()
    };
    let vs3 = VarStore::new(Device::Cpu);
    assert!(matches!(
        CategoryHead::new(&vs3.root(), &plain),
        Err(Error::InvalidConfig { .. })
    ));
}
