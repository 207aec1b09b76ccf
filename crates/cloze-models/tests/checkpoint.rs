//! HF checkpoint io: key normalisation, reports, save/reload round trips, bad files.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cloze_models::hf::{read_safetensors, write_safetensors};
use cloze_models::{
    load_encoder, load_pretrained, save_pretrained, BertConfig, BertForPreTraining, Error,
    HeadStatus, MlmInput,
};
use tch::nn::VarStore;
use tch::{Device, Tensor};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-tiny-bert")
}

fn copy_config(to: &Path) {
    std::fs::copy(fixture().join("config.json"), to.join("config.json")).unwrap();
}

fn logits(model: &BertForPreTraining) -> Tensor {
    let ids = Tensor::from_slice(&[2i64, 17, 33, 4, 90, 51, 3]).unsqueeze(0);
    let _g = tch::no_grad_guard();
    model
        .forward_t(&MlmInput::new(ids), None, false)
        .unwrap()
        .mlm_logits
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn save_then_load_round_trips_every_tensor_and_the_key_set_is_hfs() {
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&p.vs, &p.config, dir.path()).unwrap();
    let original = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let saved = read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        saved.keys().collect::<Vec<_>>()
    );
    for (k, t) in &original {
        assert!(same(t, &saved[k]), "{k}");
    }
    // transformers refuses safetensors without format metadata.
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "BertForPreTraining");
    assert_eq!(
        config["transformers_version"], "5.24.0",
        "unknown fields survive"
    );
    let q = load_pretrained(dir.path(), Device::Cpu).unwrap();
    assert!(q.report.is_exact());
    assert!(same(&logits(&p.model), &logits(&q.model)));
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn unprefixed_legacy_names_and_an_untied_decoder_key_load_the_same_model() {
    let original = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let mut legacy = BTreeMap::new();
    for (k, t) in &original {
        let k = k.strip_prefix("bert.").unwrap_or(k).to_string();
        let k = k
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        legacy.insert(k, t.shallow_clone());
    }
    legacy.insert(
        "cls.predictions.decoder.weight".into(),
        original["bert.embeddings.word_embeddings.weight"].shallow_clone(),
    );
    legacy.insert(
        "embeddings.position_ids".into(),
        Tensor::arange(40, (tch::Kind::Int64, Device::Cpu)).unsqueeze(0),
    );
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &legacy).unwrap();
    copy_config(dir.path());
    let p = load_pretrained(dir.path(), Device::Cpu).unwrap();
    assert!(p.report.is_exact(), "{}", p.report);
    assert_eq!(
        p.report.ignored,
        vec![
            "cls.predictions.decoder.weight".to_string(),
            "embeddings.position_ids".to_string()
        ]
    );
    assert!(p.report.renamed.contains(&(
        "embeddings.LayerNorm.gamma".to_string(),
        "bert.embeddings.LayerNorm.weight".to_string()
    )));
    let reference = load_pretrained(&fixture(), Device::Cpu).unwrap();
    assert!(same(&logits(&p.model), &logits(&reference.model)));
}

#[test]
fn an_old_decoder_bias_loads_only_when_the_output_bias_is_missing() {
    let original = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let bias = original["cls.predictions.bias"].shallow_clone();
    // Only the alias: it becomes the output bias.
    let dir = with_tensors(|t| {
        let b = t.remove("cls.predictions.bias").unwrap();
        t.insert("cls.predictions.decoder.bias".into(), b);
    });
    let p = load_pretrained(dir.path(), Device::Cpu).unwrap();
    assert!(p.report.is_exact(), "{}", p.report);
    assert!(p.report.ignored.is_empty());
    assert!(p.report.renamed.contains(&(
        "cls.predictions.decoder.bias".to_string(),
        "cls.predictions.bias".to_string()
    )));
    assert!(p.vs.variables()["cls.predictions.bias"].equal(&bias));
    // Both: the canonical key wins and the alias is ignored, even if it differs.
    let dir = with_tensors(|t| {
        t.insert(
            "cls.predictions.decoder.bias".into(),
            t["cls.predictions.bias"].zeros_like(),
        );
    });
    let p = load_pretrained(dir.path(), Device::Cpu).unwrap();
    assert_eq!(p.report.ignored, ["cls.predictions.decoder.bias"]);
    assert!(p.vs.variables()["cls.predictions.bias"].equal(&bias));
    let mlm = &p.report.heads[0];
    assert_eq!(
        (mlm.prefix, mlm.status, mlm.checkpoint_keys),
        ("cls.predictions", HeadStatus::Loaded, 6)
    );
}

#[test]
fn an_encoder_only_checkpoint_loads_and_says_the_mlm_head_is_absent() {
    let enc = load_encoder(&fixture(), Device::Cpu).unwrap();
    // Loading the encoder from a pretraining checkpoint leaves the heads unexpected.
    assert_eq!(enc.report.mlm_head, HeadStatus::NotBuilt);
    assert!(enc.report.unexpected.iter().all(|k| k.starts_with("cls.")));
    assert_eq!(enc.report.unexpected.len(), 7);
    assert!(enc.report.missing.is_empty());
    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&enc.vs, &enc.config, dir.path()).unwrap();
    let saved = read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    assert!(
        saved.contains_key("embeddings.word_embeddings.weight"),
        "BertModel keys have no prefix"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "BertModel");
    let p = load_pretrained(dir.path(), Device::Cpu).unwrap();
    assert_eq!(p.report.mlm_head, HeadStatus::Absent);
    assert_eq!(p.report.pair_head, HeadStatus::Absent);
    assert!(
        p.report.missing.iter().all(|k| k.starts_with("cls.")),
        "{}",
        p.report
    );
    assert!(p.report.unexpected.is_empty());
    assert!(
        p.report.to_string().contains("cls.predictions Absent"),
        "{}",
        p.report
    );
    assert_eq!(p.report.head("cls.predictions"), HeadStatus::Absent);
    assert_eq!(p.report.head("classifier"), HeadStatus::NotBuilt);
    assert!(p.report.heads.iter().all(|h| !h.in_checkpoint()));
}

#[test]
fn masked_lm_layout_matches_hfs_bert_for_masked_lm() {
    let config = BertConfig::from_file(&fixture().join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _m = BertForPreTraining::new_masked_lm(&vs.root(), &config).unwrap();
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(!names
        .iter()
        .any(|k| k.contains("pooler") || k.contains("seq_relationship")));
    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&vs, &config, dir.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "BertForMaskedLM");
}

#[test]
fn truncated_or_corrupt_safetensors_is_an_error() {
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    for cut in [bytes.len() - 100, 20, 4] {
        let dir = tempfile::tempdir().unwrap();
        copy_config(dir.path());
        std::fs::write(dir.path().join("model.safetensors"), &bytes[..cut]).unwrap();
        let err = load_pretrained(dir.path(), Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "{cut}: {err:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let mut garbage = bytes.clone();
    garbage[8..40].copy_from_slice(&[b'#'; 32]);
    std::fs::write(dir.path().join("model.safetensors"), &garbage).unwrap();
    assert!(matches!(
        load_pretrained(dir.path(), Device::Cpu),
        Err(Error::Safetensors { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    copy_config(empty.path());
    assert!(matches!(
        load_pretrained(empty.path(), Device::Cpu),
        Err(Error::NoWeights { .. })
    ));
    assert!(matches!(
        load_pretrained(Path::new("/nonexistent/x"), Device::Cpu),
        Err(Error::Io { .. })
    ));
}

fn with_config(edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap())
            .unwrap();
    edit(&mut c);
    std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    dir
}

#[test]
fn a_config_that_disagrees_with_the_weights_is_an_error() {
    let d = with_config(|c| c["hidden_size"] = 48.into());
    assert!(matches!(
        load_pretrained(d.path(), Device::Cpu),
        Err(Error::CheckpointShape { .. })
    ));
    let d = with_config(|c| c["vocab_size"] = 100.into());
    match load_pretrained(d.path(), Device::Cpu) {
        Err(Error::CheckpointShape {
            key,
            expected,
            found,
        }) => {
            assert!(
                key.contains("word_embeddings") || key == "cls.predictions.bias",
                "{key}"
            );
            assert_eq!(expected[0], 100);
            assert_eq!(found[0], 96);
        }
        other => panic!("{other:?}"),
    }
    let d = with_config(|c| c["num_hidden_layers"] = 3.into());
    match load_pretrained(d.path(), Device::Cpu) {
        Err(Error::CheckpointMismatch {
            missing,
            unexpected,
        }) => {
            assert!(
                missing
                    .iter()
                    .all(|k| k.starts_with("bert.encoder.layer.2.")),
                "{missing:?}"
            );
            assert_eq!(missing.len(), 16);
            assert!(unexpected.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let d = with_config(|c| c["num_hidden_layers"] = 1.into());
    match load_pretrained(d.path(), Device::Cpu) {
        Err(Error::CheckpointMismatch { unexpected, .. }) => {
            assert_eq!(unexpected.len(), 16);
            assert!(unexpected[0].starts_with("bert.encoder.layer.1."));
        }
        other => panic!("{other:?}"),
    }
    let d = with_config(|c| c["num_attention_heads"] = 5.into());
    assert!(matches!(
        load_pretrained(d.path(), Device::Cpu),
        Err(Error::InvalidConfig {
            field: "num_attention_heads",
            ..
        })
    ));
    let d = with_config(|c| c["hidden_act"] = "bogus".into());
    assert!(matches!(
        load_pretrained(d.path(), Device::Cpu),
        Err(Error::Json { .. })
    ));
}

/// The fixture with `edit` applied to its tensors, in a fresh directory.
fn with_tensors(edit: impl Fn(&mut BTreeMap<String, Tensor>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let mut t = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    edit(&mut t);
    write_safetensors(&dir.path().join("model.safetensors"), &t).unwrap();
    dir
}

fn key_ending(t: &BTreeMap<String, Tensor>, suffix: &str) -> String {
    t.keys().find(|k| k.ends_with(suffix)).unwrap().clone()
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    const QUERY: &str = "encoder.layer.1.attention.self.query.weight";
    let d = with_tensors(|t| {
        let key = key_ending(t, QUERY);
        let bad = t[&key].copy();
        let flat = bad.view([-1]);
        let _ = flat.narrow(0, 3, 1).fill_(f64::NAN);
        let _ = flat.narrow(0, 7, 2).fill_(f64::INFINITY);
        t.insert(key, bad);
    });
    for result in [
        load_pretrained(d.path(), Device::Cpu).map(|_| ()),
        load_encoder(d.path(), Device::Cpu).map(|_| ()),
    ] {
        match result {
            Err(e @ Error::NonFiniteWeights { .. }) => {
                let Error::NonFiniteWeights {
                    key,
                    nan,
                    inf,
                    numel,
                } = &e
                else {
                    unreachable!()
                };
                assert!(key.ends_with(QUERY), "{key}");
                assert_eq!((*nan, *inf, *numel), (1, 2, 32 * 32));
                assert!(e.to_string().contains(QUERY), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The resume path copies weights without the check (the trainer has its own
    // integrity rules); `check_finite` is there for it.
    let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
    cloze_models::hf::load_weights(&p.vs, d.path()).unwrap();
    let vars = p.vs.variables();
    assert!(matches!(
        cloze_models::hf::check_finite(vars.iter().map(|(k, t)| (k.as_str(), t))),
        Err(Error::NonFiniteWeights { .. })
    ));
}

#[test]
fn non_finite_values_in_tensors_the_model_does_not_take_are_not_an_error() {
    let d = with_tensors(|t| {
        t.insert(
            "classifier.weight".into(),
            Tensor::from_slice(&[f32::NAN, 1.0]),
        );
    });
    let p = load_pretrained(d.path(), Device::Cpu).unwrap();
    assert_eq!(p.report.unexpected, vec!["classifier.weight".to_string()]);
}

#[test]
fn check_finite_covers_half_precision_and_skips_integers() {
    let half = Tensor::from_slice(&[1.0f32, f32::NEG_INFINITY]).to_kind(tch::Kind::Half);
    let ints = Tensor::from_slice(&[1i64, 2]);
    let fine = Tensor::from_slice(&[0.5f32; 4]);
    let empty = Tensor::zeros([0], (tch::Kind::Float, Device::Cpu));
    // Finite half-precision values whose sum overflows to infinity are still finite.
    let big = Tensor::from_slice(&[60000.0f32, 60000.0]).to_kind(tch::Kind::Half);
    cloze_models::hf::check_finite([("a", &fine), ("b", &ints), ("c", &empty), ("d", &big)])
        .unwrap();
    match cloze_models::hf::check_finite([("a", &fine), ("h", &half)]) {
        Err(Error::NonFiniteWeights { key, nan, inf, .. }) => {
            assert_eq!((key.as_str(), nan, inf), ("h", 0, 1));
        }
        other => panic!("{other:?}"),
    }
}
