//! Validation at the boundary and HF-style initialisation.
#![allow(clippy::unwrap_used)]

use cloze_models::{BertConfig, BertForPreTraining, Error, MlmInput};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn tiny() -> BertConfig {
    BertConfig {
        vocab_size: 50,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 8,
        ..Default::default()
    }
}

fn model() -> (VarStore, BertForPreTraining) {
    let vs = VarStore::new(Device::Cpu);
    let m = BertForPreTraining::new(&vs.root(), &tiny()).unwrap();
    (vs, m)
}

fn ids(v: &[i64], b: i64) -> Tensor {
    Tensor::from_slice(v).reshape([b, -1])
}

#[test]
fn bad_inputs_are_errors_not_aborts() {
    let (_vs, m) = model();
    let run =
        |input: MlmInput, pos: Option<Tensor>| m.forward_t(&input, pos.as_ref(), false).map(|_| ());
    assert!(run(MlmInput::new(ids(&[1, 2, 3, 4], 2)), None).is_ok());
    let e = run(MlmInput::new(Tensor::from_slice(&[1i64, 2, 3])), None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InputShape {
                what: "input_ids",
                ..
            }
        ),
        "{e}"
    );
    let e = run(
        MlmInput::new(Tensor::from_slice(&[1f32, 2.]).reshape([1, 2])),
        None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Error::InputShape {
            what: "input_ids",
            ..
        }
    ));
    let e = run(MlmInput::new(ids(&[1, 50], 1)), None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                what: "input_ids",
                max: 50,
                limit: 50,
                ..
            }
        ),
        "{e}"
    );
    let e = run(MlmInput::new(ids(&[1, -1], 1)), None).unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { min: -1, .. }));
    let e = run(MlmInput::new(ids(&[1; 9], 1)), None).unwrap_err();
    assert!(
        matches!(e, Error::SequenceTooLong { len: 9, max: 8 }),
        "{e}"
    );
    let e = run(
        MlmInput::new(ids(&[1, 2], 1)).with_token_type_ids(ids(&[0, 2], 1)),
        None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Error::IndexOutOfRange {
            what: "token_type_ids",
            ..
        }
    ));
    let e = run(
        MlmInput::new(ids(&[1, 2], 1)).with_token_type_ids(ids(&[0, 0, 0], 1)),
        None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Error::InputShape {
            what: "token_type_ids",
            ..
        }
    ));
    let e = run(
        MlmInput::new(ids(&[1, 2], 1)).with_position_ids(ids(&[0, 8], 1)),
        None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Error::IndexOutOfRange {
            what: "position_ids",
            ..
        }
    ));
    let e = run(
        MlmInput::new(ids(&[1, 2], 1)).with_attention_mask(ids(&[1, 1, 1], 1)),
        None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Error::InputShape {
            what: "attention_mask",
            ..
        }
    ));
    let e = run(
        MlmInput::new(ids(&[1, 2], 1)).with_attention_3d(ids(&[1, 1], 1)),
        None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Error::InputShape {
            what: "attention_3d",
            ..
        }
    ));
    let e = run(
        MlmInput::new(ids(&[1, 2], 1)),
        Some(Tensor::from_slice(&[2i64])),
    )
    .unwrap_err();
    assert!(matches!(e, Error::MaskedPositions { limit: 2, .. }), "{e}");
    let e = run(
        MlmInput::new(ids(&[1, 2], 1)),
        Some(Tensor::from_slice(&[0i32])),
    )
    .unwrap_err();
    assert!(matches!(e, Error::MaskedPositions { .. }));
    // Positions may be longer than 8 only through explicit ids, which are range-checked.
    assert!(run(
        MlmInput::new(ids(&[1, 2], 1)).with_position_ids(Tensor::from_slice(&[6i64, 7])),
        None
    )
    .is_ok());
}

#[test]
fn initialisation_follows_hf() {
    tch::manual_seed(7);
    let config = BertConfig {
        hidden_size: 64,
        num_attention_heads: 4,
        intermediate_size: 128,
        ..tiny()
    };
    let vs = VarStore::new(Device::Cpu);
    let _m = BertForPreTraining::new(&vs.root(), &config).unwrap();
    let vars = vs.variables();
    for (name, t) in &vars {
        if name.ends_with("LayerNorm.weight") {
            assert_eq!(t.min().double_value(&[]), 1.0, "{name}");
            assert_eq!(t.max().double_value(&[]), 1.0, "{name}");
        } else if name.ends_with("bias") {
            assert_eq!(t.abs().max().double_value(&[]), 0.0, "{name}");
        } else {
            let std = t.std(true).double_value(&[]);
            assert!((std - 0.02).abs() < 0.004, "{name}: std {std}");
        }
    }
    let word = &vars["bert.embeddings.word_embeddings.weight"];
    assert_eq!(
        word.get(0).abs().max().double_value(&[]),
        0.0,
        "padding row starts at zero"
    );
    assert!(
        !vars.contains_key("cls.predictions.decoder.weight"),
        "decoder is tied, not a variable"
    );
}

#[test]
fn the_tied_decoder_gets_gradient_through_gathered_positions() {
    let (vs, m) = model();
    let input =
        MlmInput::new(ids(&[3, 4, 5, 6, 7, 8], 2)).with_attention_mask(ids(&[1, 1, 0, 1, 1, 1], 2));
    let pos = Tensor::from_slice(&[1i64, 4]);
    let out = m.forward_t(&input, Some(&pos), true).unwrap();
    assert_eq!(out.mlm_logits.size(), vec![2, 50]);
    let targets = Tensor::from_slice(&[10i64, 11]);
    let loss = out.mlm_logits.cross_entropy_for_logits(&targets)
        + out
            .pair_logits
            .unwrap()
            .cross_entropy_for_logits(&Tensor::from_slice(&[0i64, 1]));
    loss.backward();
    let vars = vs.variables();
    let g = vars["bert.embeddings.word_embeddings.weight"].grad();
    // Rows 10 and 11 are never input tokens: their gradient comes only through the decoder.
    assert!(g.get(10).abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(
        vars["cls.seq_relationship.weight"]
            .grad()
            .abs()
            .sum(Kind::Float)
            .double_value(&[])
            > 0.0
    );
}
