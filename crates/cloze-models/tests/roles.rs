//! PLATO-style role embeddings: a config with `role_type_size` gains
//! `bert.embeddings.role_embeddings.weight`, which saves and loads like every
//! other weight; role ids change the encoding; bad role ids are typed errors.
#![allow(clippy::unwrap_used)]

use cloze_models::{load_pretrained, save_pretrained, BertConfig, BertForPreTraining, MlmInput};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn config(roles: Option<i64>) -> BertConfig {
    BertConfig {
        vocab_size: 50,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 32,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        role_type_size: roles,
        ..BertConfig::default()
    }
}

fn ids() -> Tensor {
    Tensor::from_slice(&[2i64, 10, 11, 3, 2, 12, 3]).view([1, 7])
}

fn hidden(m: &BertForPreTraining, input: &MlmInput) -> Tensor {
    m.bert().forward_t(input, false).unwrap().last_hidden_state
}

#[test]
fn role_embeddings_save_load_and_change_the_encoding() {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let m = BertForPreTraining::new_masked_lm(&vs.root(), &config(Some(4))).unwrap();
    let key = "bert.embeddings.role_embeddings.weight";
    let vars = vs.variables();
    assert_eq!(vars[key].size(), vec![4, 16]);

    let roles = Tensor::from_slice(&[0i64, 1, 1, 1, 0, 0, 0]).view([1, 7]);
    let with = hidden(
        &m,
        &MlmInput::new(ids()).with_role_ids(roles.shallow_clone()),
    );
    let zeros = hidden(
        &m,
        &MlmInput::new(ids()).with_role_ids(Tensor::zeros([1, 7], (Kind::Int64, Device::Cpu))),
    );
    let absent = hidden(&m, &MlmInput::new(ids()));
    // No role ids means role 0 everywhere; other roles change the states.
    assert!(zeros.allclose(&absent, 0.0, 0.0, false));
    assert!((&with - &zeros).abs().max().double_value(&[]) > 1e-4);

    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&vs, m.config(), dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["role_type_size"], 4);
    let back = load_pretrained(dir.path(), Device::Cpu).unwrap();
    // A masked-LM save lacks only the pooler and NSP head that
    // `load_pretrained` also builds; the role table is found.
    assert!(
        !back.report.missing.iter().any(|k| k.contains("role"))
            && back.report.unexpected.is_empty(),
        "{:?} {:?}",
        back.report.missing,
        back.report.unexpected
    );
    let again = hidden(&back.model, &MlmInput::new(ids()).with_role_ids(roles));
    assert!(again.allclose(&with, 0.0, 0.0, false));
}

#[test]
fn a_plain_config_has_no_role_table_and_refuses_role_ids() {
    let vs = VarStore::new(Device::Cpu);
    let m = BertForPreTraining::new_masked_lm(&vs.root(), &config(None)).unwrap();
    assert!(!vs.variables().keys().any(|k| k.contains("role")));
    let text = m.config().to_json_string().unwrap();
    assert!(!text.contains("role_type_size"));
    let roles = Tensor::zeros([1, 7], (Kind::Int64, Device::Cpu));
    let err = m
        .bert()
        .forward_t(&MlmInput::new(ids()).with_role_ids(roles), false)
        .unwrap_err();
    assert!(err.to_string().contains("role_type_size"), "{err}");
}

#[test]
fn role_ids_out_of_range_or_misshapen_are_errors() {
    let vs = VarStore::new(Device::Cpu);
    let m = BertForPreTraining::new_masked_lm(&vs.root(), &config(Some(2))).unwrap();
    let too_big = Tensor::from_slice(&[0i64, 0, 0, 0, 0, 0, 2]).view([1, 7]);
    assert!(m
        .bert()
        .forward_t(&MlmInput::new(ids()).with_role_ids(too_big), false)
        .is_err());
    let short = Tensor::zeros([1, 6], (Kind::Int64, Device::Cpu));
    assert!(m
        .bert()
        .forward_t(&MlmInput::new(ids()).with_role_ids(short), false)
        .is_err());
    let negative = BertConfig {
        role_type_size: Some(-1),
        ..config(None)
    };
    assert!(negative.validate().is_err());
}
