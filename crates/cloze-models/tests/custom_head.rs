//! A head defined outside the library, from its public blocks only: a 3-way
//! classifier over the mean of the real tokens' states. It runs forward, saves and
//! loads through the public API, with no entry in the head table and no edit to
//! cloze-models.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cloze_models::{
    dropout, hf, save_pretrained, BertConfig, BertModel, HeadStatus, LayerNorm, Linear, MlmInput,
};
use tch::nn::{Path, VarStore};
use tch::{Device, Kind, Tensor};

/// A downstream model: HF's `bert.*` encoder without pooler, then
/// `mean_classifier.{LayerNorm, out}` over the masked mean of the token states.
struct MeanPoolClassifier {
    bert: BertModel,
    norm: LayerNorm,
    out: Linear,
    dropout: f64,
}

impl MeanPoolClassifier {
    const CLASSES: i64 = 3;

    /// The same shape as the library's constructors, so `hf::load_with` takes it.
    fn new(p: &Path, config: &BertConfig) -> cloze_models::Result<Self> {
        let bert = BertModel::new_without_pooler(&(p / "bert"), config)?;
        let head = p / "mean_classifier";
        Ok(Self {
            bert,
            norm: LayerNorm::new(&(&head / "LayerNorm"), config)?,
            out: Linear::new(&(&head / "out"), config.hidden_size, Self::CLASSES, config)?,
            dropout: config.hidden_dropout_prob,
        })
    }

    /// `[B, 3]` logits.
    fn forward_t(&self, input: &MlmInput, train: bool) -> cloze_models::Result<Tensor> {
        let h = self.bert.forward_t(input, train)?.last_hidden_state;
        let (b, l) = (h.size()[0], h.size()[1]);
        let mask = match &input.attention_mask {
            Some(m) => m.f_to_kind(Kind::Float)?,
            None => Tensor::f_ones([b, l], (Kind::Float, h.device()))?,
        }
        .f_unsqueeze(-1)?;
        let mean = h
            .f_mul(&mask)?
            .f_sum_dim_intlist(1, false, Kind::Float)?
            .f_div(&mask.f_sum_dim_intlist(1, false, Kind::Float)?)?;
        let x = dropout(&self.norm.forward(&mean)?, self.dropout, train)?;
        self.out.forward(&x)
    }
}

fn config() -> BertConfig {
    BertConfig {
        vocab_size: 60,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 16,
        architectures: Some(vec!["MeanPoolClassifier".into()]),
        ..BertConfig::default()
    }
}

fn batch() -> MlmInput {
    MlmInput::new(Tensor::from_slice(&[2i64, 11, 12, 13, 3, 0, 2, 21, 22, 23, 24, 3]).view([2, 6]))
        .with_attention_mask(
            Tensor::from_slice(&[1i64, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]).view([2, 6]),
        )
}

#[test]
fn a_downstream_head_runs_saves_and_loads_through_the_public_api() {
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let model = MeanPoolClassifier::new(&vs.root(), &config()).unwrap();
    let logits = tch::no_grad(|| model.forward_t(&batch(), false)).unwrap();
    assert_eq!(logits.size(), [2, 3]);
    // Padding is left out of the mean: changing a padded token changes nothing.
    let other = MlmInput::new(
        Tensor::from_slice(&[2i64, 11, 12, 13, 3, 40, 2, 21, 22, 23, 24, 3]).view([2, 6]),
    )
    .with_attention_mask(batch().attention_mask.unwrap());
    let again = tch::no_grad(|| model.forward_t(&other, false)).unwrap();
    assert!((&logits - &again).abs().max().double_value(&[]) < 1e-6);

    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&vs, &config(), dir.path()).unwrap();
    let saved = hf::read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    let head_keys: Vec<&String> = saved.keys().filter(|k| !k.starts_with("bert.")).collect();
    assert_eq!(
        head_keys,
        [
            "mean_classifier.LayerNorm.bias",
            "mean_classifier.LayerNorm.weight",
            "mean_classifier.out.bias",
            "mean_classifier.out.weight"
        ]
    );
    // A layout HF has no class for keeps the architectures its config names.
    let written = BertConfig::from_file(&dir.path().join("config.json")).unwrap();
    assert_eq!(
        written.architectures,
        Some(vec!["MeanPoolClassifier".to_string()])
    );

    let back = hf::load_with(dir.path(), Device::Cpu, MeanPoolClassifier::new).unwrap();
    assert!(back.report.is_exact(), "{}", back.report);
    assert!(
        back.report.heads.is_empty(),
        "no head of the table is involved"
    );
    let reloaded = tch::no_grad(|| back.model.forward_t(&batch(), false)).unwrap();
    assert!(reloaded.equal(&logits), "bit-exact after save and reload");
}

#[test]
fn a_downstream_head_starts_from_a_pretrained_encoder() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-tiny-bert");
    let p = hf::load_with(&fixture, Device::Cpu, MeanPoolClassifier::new).unwrap();
    // The encoder came from the checkpoint, the new head keeps its initialisation, and
    // the checkpoint's pretraining heads and pooler were not taken.
    assert!(p
        .report
        .missing
        .iter()
        .all(|k| k.starts_with("mean_classifier.")));
    assert_eq!(p.report.missing.len(), 4);
    assert!(p
        .report
        .unexpected
        .iter()
        .all(|k| k.starts_with("cls.") || k.starts_with("bert.pooler.")));
    assert_eq!(p.report.head("cls.predictions"), HeadStatus::NotBuilt);
    assert!(p.report.heads.iter().all(|h| h.in_checkpoint()));
    let logits = tch::no_grad(|| p.model.forward_t(&batch(), false)).unwrap();
    assert_eq!(logits.size(), [2, 3]);
}
