//! UniLM-v2 parts of the encoder: the relative position bias (s2s-ft's
//! `rel_pos_bins`/`max_rel_pos`, `bert.rel_pos_bias.weight`) and incremental
//! decoding over a key/value cache, checked against the full forward pass.
#![allow(clippy::unwrap_used)]

use cloze_models::hf::{load_weights, read_safetensors};
use cloze_models::{
    autocast, load_with, save_pretrained, BertConfig, BertForPreTraining, Error, KvCache, MlmInput,
    Precision,
};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 60;
const PSEUDO: i64 = 5;

fn config(relative: bool) -> BertConfig {
    BertConfig {
        vocab_size: VOCAB,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 64,
        // Small enough that the test sequences reach the logarithmic buckets
        // (distance >= 4) and the clamped last one (>= 10).
        rel_pos_bins: relative.then_some(16),
        max_rel_pos: relative.then_some(10),
        ..BertConfig::default()
    }
}

/// A masked-LM model whose weights are N(0, 0.3) rather than N(0, 0.02), so
/// that attention is far from uniform and a wrong mask, bias or cache would
/// show; the relative position bias gets N(0, 1).
fn model(relative: bool, seed: i64) -> (VarStore, BertForPreTraining) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let m = BertForPreTraining::new_masked_lm(&vs.root(), &config(relative)).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let scale = if name.contains("rel_pos_bias") {
                1.0
            } else {
                0.3
            };
            if !name.contains("LayerNorm") {
                t.copy_(&(t.randn_like() * scale));
            }
        }
    });
    (vs, m)
}

/// Serialises the tests: each seeds and draws from libtorch's global generator,
/// and the harness runs tests on several threads, so without the lock one
/// test's draws would land between another's seed and its draws.
fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// A tiny deterministic generator for token ids.
struct Lcg(u64);

impl Lcg {
    fn token(&mut self) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        10 + ((self.0 >> 33) % (VOCAB as u64 - 10)) as i64
    }
}

/// One row of a decoding batch as s2s-ft lays it out: a padded source, the
/// target tokens generated so far, and (in the full reference) one pseudo token.
#[derive(Clone)]
struct Row {
    source: Vec<i64>,
    source_len: usize,
    target: Vec<i64>,
}

impl Row {
    /// Ids, segment ids, position ids and the s2s-ft visibility of the full
    /// sequence `source + target + [P]`: source queries see the real source,
    /// target token i sees the source and targets 0..=i, the pseudo token sees
    /// the source, every target and itself. Padding (position 0) is seen by no
    /// one. Positions continue from the real source length, so the pseudo
    /// token sits at the position of the target token it predicts.
    fn full(&self) -> (Vec<i64>, Vec<i64>, Vec<i64>, Vec<Vec<u8>>) {
        let (ls, lt) = (self.source.len(), self.target.len());
        let n = self.source_len as i64;
        let mut ids = self.source.clone();
        ids.extend(&self.target);
        ids.push(PSEUDO);
        let mut types = vec![0; ls];
        types.extend(vec![1; lt + 1]);
        let mut pos: Vec<i64> = (0..ls as i64).map(|i| if i < n { i } else { 0 }).collect();
        pos.extend((0..=lt as i64).map(|i| n + i));
        let l = ls + lt + 1;
        let mut vis = vec![vec![0u8; l]; l];
        for (q, row) in vis.iter_mut().enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                let real_source = k < self.source_len;
                let target_key = k >= ls && k < ls + lt;
                *v = u8::from(if q < ls {
                    real_source
                } else if q < ls + lt {
                    real_source || (target_key && k <= q)
                } else {
                    real_source || target_key || k == q
                });
            }
        }
        (ids, types, pos, vis)
    }
}

/// The batch of full sequences (all rows have the same source and target lengths).
fn full_batch(rows: &[Row]) -> (MlmInput, Tensor) {
    let b = rows.len() as i64;
    let (mut ids, mut types, mut pos, mut vis) = (vec![], vec![], vec![], vec![]);
    for row in rows {
        let (i, t, p, v) = row.full();
        ids.extend(i);
        types.extend(t);
        pos.extend(p);
        vis.extend(v.into_iter().flatten());
    }
    let l = ids.len() as i64 / b;
    let vis = Tensor::from_slice(&vis).reshape([b, l, l]);
    let input = MlmInput::new(Tensor::from_slice(&ids).reshape([b, l]))
        .with_token_type_ids(Tensor::from_slice(&types).reshape([b, l]))
        .with_position_ids(Tensor::from_slice(&pos).reshape([b, l]))
        .with_attention_3d(vis.shallow_clone());
    (input, vis)
}

/// The columns `from..` of every row of `t` along dim 1 (`[B, L, ...]`).
fn tail(t: &Tensor, from: i64) -> Tensor {
    let l = t.size()[1];
    t.narrow(1, from, l - from)
}

/// Decodes `steps` steps with the cache and checks every step's hidden states
/// and pseudo-token logits against a full forward pass over the same tokens;
/// `reorders` are (after step, beam indices) pairs applied to cache and rows.
fn decode_and_compare(relative: bool, reorders: &[(usize, Vec<i64>)]) {
    let (_vs, m) = model(relative, 17);
    let mut gen = Lcg(relative as u64 + 3);
    // Two sources of 6 and 4 real tokens, padded to 6.
    let mut rows: Vec<Row> = [6usize, 4]
        .iter()
        .map(|&n| Row {
            source: (0..6)
                .map(|i| if i < n { gen.token() } else { 0 })
                .collect(),
            source_len: n,
            target: vec![],
        })
        .collect();
    let ls = 6i64;
    let mut cache = KvCache::new();
    let _g = tch::no_grad_guard();
    for step in 0..7usize {
        let (full_input, vis) = full_batch(&rows);
        let full_hidden = m
            .bert()
            .forward_t(&full_input, false)
            .unwrap()
            .last_hidden_state;
        let full_logits = m.forward_t(&full_input, None, false).unwrap().mlm_logits;
        // The new tokens: the whole source and the pseudo token at step 0, then
        // the last generated token and the next pseudo token.
        let first_new = if step == 0 { 0 } else { ls + step as i64 - 1 };
        let new_input = MlmInput::new(tail(&full_input.input_ids, first_new))
            .with_token_type_ids(tail(full_input.token_type_ids.as_ref().unwrap(), first_new))
            .with_position_ids(tail(full_input.position_ids.as_ref().unwrap(), first_new));
        let visibility = tail(&vis, first_new);
        assert_eq!(cache.len(), first_new);
        let out = m
            .bert()
            .forward_incremental(&new_input, &visibility, &cache)
            .unwrap();
        let want = tail(&full_hidden, first_new);
        let d = max_diff(&out.hidden, &want);
        assert!(
            d < 1e-5,
            "relative {relative}, step {step}: hidden differ by {d}"
        );
        let l = full_logits.size()[1];
        let pseudo = out.hidden.narrow(1, out.hidden.size()[1] - 1, 1);
        let logits = m.mlm_logits(&pseudo).unwrap();
        let d = max_diff(&logits, &full_logits.narrow(1, l - 1, 1));
        assert!(
            d < 1e-5,
            "relative {relative}, step {step}: logits differ by {d}"
        );
        // Keep every new token but the pseudo one.
        let n_new = out.hidden.size()[1];
        let keep: Vec<i64> = (0..n_new - 1).collect();
        cache.append(&out, &keep).unwrap();
        assert_eq!(cache.len(), ls + step as i64);
        // "Generate" the next token of each row (any token will do: the check is
        // that both paths agree on what follows).
        for row in &mut rows {
            row.target.push(gen.token());
        }
        if let Some((_, beams)) = reorders.iter().find(|(after, _)| *after == step) {
            cache.reorder(&Tensor::from_slice(beams)).unwrap();
            rows = beams.iter().map(|&i| rows[i as usize].clone()).collect();
        }
    }
}

#[test]
fn incremental_decoding_matches_the_full_forward_at_every_step() {
    let _rng = rng_lock();
    for relative in [false, true] {
        decode_and_compare(relative, &[]);
    }
}

#[test]
fn incremental_decoding_matches_after_beam_reorders() {
    let _rng = rng_lock();
    for relative in [false, true] {
        // Swap the two rows (their sources differ in length), then repeat one.
        decode_and_compare(
            relative,
            &[(1, vec![1, 0]), (3, vec![1, 1]), (4, vec![0, 1])],
        );
    }
}

/// Random ids, segments, repeated position ids, padding and a random 3-D mask
/// with the diagonal visible.
fn random_input(b: i64, l: i64) -> (MlmInput, Tensor, Tensor) {
    let ids = Tensor::randint_low(6, VOCAB, [b, l], (Kind::Int64, Device::Cpu));
    let types = Tensor::randint(2, [b, l], (Kind::Int64, Device::Cpu));
    let pos = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 2, 3, 4, 5, 14, 15]).narrow(0, 0, l);
    let vis = Tensor::rand([b, l, l], (Kind::Float, Device::Cpu))
        .gt(0.4)
        .logical_or(&Tensor::eye(l, (Kind::Bool, Device::Cpu)));
    let mut pad = vec![1i64; (b * l) as usize];
    pad[(b * l - 1) as usize] = 0;
    pad[(b * l - 2) as usize] = 0;
    let pad = Tensor::from_slice(&pad).reshape([b, l]);
    let input = MlmInput::new(ids)
        .with_token_type_ids(types)
        .with_position_ids(pos)
        .with_attention_mask(pad.shallow_clone());
    (input, vis, pad)
}

fn with_3d(input: &MlmInput, vis: &Tensor) -> MlmInput {
    MlmInput {
        input_ids: input.input_ids.shallow_clone(),
        token_type_ids: input.token_type_ids.as_ref().map(Tensor::shallow_clone),
        position_ids: input.position_ids.as_ref().map(Tensor::shallow_clone),
        attention_mask: input.attention_mask.as_ref().map(Tensor::shallow_clone),
        attention_3d: Some(vis.shallow_clone()),
        role_ids: None,
    }
}

#[test]
fn an_empty_cache_and_every_token_equals_the_plain_forward() {
    let _rng = rng_lock();
    for relative in [false, true] {
        let (_vs, m) = model(relative, 5);
        let (input, vis, _) = random_input(3, 11);
        let _g = tch::no_grad_guard();
        let full = m.bert().forward_t(&with_3d(&input, &vis), false).unwrap();
        let inc = m
            .bert()
            .forward_incremental(&input, &vis, &KvCache::new())
            .unwrap();
        let d = max_diff(&inc.hidden, &full.last_hidden_state);
        assert!(d < 1e-5, "relative {relative}: {d}");
        assert_eq!(inc.new_kv.len(), 2);
        assert_eq!(inc.new_kv[0].0.size(), [3, 4, 11, 8]);
        assert_eq!(inc.position_ids.size(), [3, 11]);
        // Default positions continue the cache: 0..L on an empty one.
        let plain = MlmInput::new(input.input_ids.shallow_clone());
        let all = Tensor::ones([3, 11, 11], (Kind::Bool, Device::Cpu));
        let inc = m
            .bert()
            .forward_incremental(&plain, &all, &KvCache::new())
            .unwrap();
        let full = m.bert().forward_t(&plain, false).unwrap();
        assert!(max_diff(&inc.hidden, &full.last_hidden_state) < 1e-5);
        // A 2-D visibility is shared by every row.
        let shared = vis.get(0);
        let inc = m
            .bert()
            .forward_incremental(&plain, &shared, &KvCache::new())
            .unwrap();
        let rows = Tensor::stack(&[&shared, &shared, &shared], 0);
        let full = m.bert().forward_t(&with_3d(&plain, &rows), false).unwrap();
        assert!(max_diff(&inc.hidden, &full.last_hidden_state) < 1e-5);
        assert_eq!(
            Vec::<i64>::try_from(inc.position_ids.get(2)).unwrap(),
            (0..11).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_zero_bias_weight_gives_the_model_without_the_option() {
    let _rng = rng_lock();
    let (vs_plain, plain) = model(false, 9);
    let (vs_rel, rel) = model(true, 10);
    // Same weights everywhere, zero relative bias.
    tch::no_grad(|| {
        let from = vs_plain.variables();
        for (name, mut t) in vs_rel.variables() {
            match from.get(&name) {
                Some(src) => t.copy_(src),
                None => {
                    assert_eq!(name, "bert.rel_pos_bias.weight");
                    assert_eq!(t.size(), [4, 16]);
                    let _ = t.zero_();
                }
            }
        }
    });
    assert!(rel.bert().rel_pos_bias().is_some() && plain.bert().rel_pos_bias().is_none());
    let (input, vis, _) = random_input(2, 11);
    let _g = tch::no_grad_guard();
    for input in [
        with_3d(&input, &vis),
        MlmInput::new(input.input_ids.shallow_clone()),
    ] {
        let a = plain.forward_t(&input, None, false).unwrap().mlm_logits;
        let b = rel.forward_t(&input, None, false).unwrap().mlm_logits;
        assert!(max_diff(&a, &b) < 1e-6);
    }
    // A non-zero bias changes the outputs.
    tch::no_grad(|| {
        let mut w = vs_rel.variables()["bert.rel_pos_bias.weight"].shallow_clone();
        w.copy_(&w.randn_like());
    });
    let input = with_3d(&input, &vis);
    let a = plain.forward_t(&input, None, false).unwrap().mlm_logits;
    let b = rel.forward_t(&input, None, false).unwrap().mlm_logits;
    assert!(max_diff(&a, &b) > 1e-2);
}

#[test]
fn tokens_with_the_same_position_id_are_treated_alike() {
    let _rng = rng_lock();
    let (_vs, m) = model(true, 21);
    // Tokens 3 and 4: same id, segment and position, and every query sees both;
    // only the relative bias by index (not by position id) would tell them apart.
    let ids = Tensor::from_slice(&[7i64, 12, 30, 41, 41]).unsqueeze(0);
    let input = MlmInput::new(ids).with_position_ids(Tensor::from_slice(&[0i64, 1, 2, 3, 3]));
    let h = tch::no_grad(|| m.bert().forward_t(&input, false).unwrap().last_hidden_state);
    // Equal up to the float noise of libtorch's threaded kernels (about 1e-6);
    // a bias by index differs by more than 1e-3, as below.
    assert!(max_diff(&h.narrow(1, 3, 1), &h.narrow(1, 4, 1)) < 1e-5);
    // And a token one position further away is not treated alike.
    let input = MlmInput::new(input.input_ids.shallow_clone())
        .with_position_ids(Tensor::from_slice(&[0i64, 1, 2, 3, 4]));
    let h2 = tch::no_grad(|| m.bert().forward_t(&input, false).unwrap().last_hidden_state);
    assert!(max_diff(&h2.narrow(1, 3, 1), &h2.narrow(1, 4, 1)) > 1e-3);
}

fn save_rel_model(dir: &std::path::Path) -> (VarStore, BertForPreTraining) {
    let (vs, m) = model(true, 33);
    save_pretrained(&vs, &config(true), dir).unwrap();
    (vs, m)
}

#[test]
fn the_bias_saves_and_reloads_bit_exactly_under_its_s2s_ft_name() {
    let _rng = rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let (vs, m) = save_rel_model(dir.path());
    let saved = read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    assert_eq!(saved["bert.rel_pos_bias.weight"].size(), [4, 16]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (json["rel_pos_bins"].clone(), json["max_rel_pos"].clone()),
        (16.into(), 10.into())
    );
    assert_eq!(json["architectures"][0], "BertForMaskedLM");
    let back = load_with(dir.path(), Device::Cpu, BertForPreTraining::new_masked_lm).unwrap();
    assert!(back.report.is_exact(), "{}", back.report);
    assert_eq!(back.config.relative_position(), Some((16, 10)));
    let before = vs.variables();
    for (name, t) in back.vs.variables() {
        assert!(t.equal(&before[&name]), "{name}");
    }
    let (input, vis, _) = random_input(2, 11);
    let input = with_3d(&input, &vis);
    let _g = tch::no_grad_guard();
    let a = m.forward_t(&input, None, false).unwrap().mlm_logits;
    let b = back
        .model
        .forward_t(&input, None, false)
        .unwrap()
        .mlm_logits;
    assert!(a.equal(&b));
}

#[test]
fn a_checkpoint_and_config_that_disagree_about_the_bias_do_not_load() {
    let _rng = rng_lock();
    // Weights with the bias, config without: the key is unexpected.
    let dir = tempfile::tempdir().unwrap();
    save_rel_model(dir.path());
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let obj = json.as_object_mut().unwrap();
    obj.remove("rel_pos_bins");
    obj.remove("max_rel_pos");
    std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
    match load_with(dir.path(), Device::Cpu, BertForPreTraining::new_masked_lm) {
        Err(Error::CheckpointMismatch {
            missing,
            unexpected,
        }) => {
            assert!(missing.is_empty());
            assert_eq!(unexpected, ["bert.rel_pos_bias.weight"]);
        }
        other => panic!("{:?}", other.map(|p| p.report)),
    }
    // The bare loader reports it like any other key.
    let vs = VarStore::new(Device::Cpu);
    let _plain = BertForPreTraining::new_masked_lm(&vs.root(), &config(false)).unwrap();
    let report = load_weights(&vs, dir.path()).unwrap();
    assert_eq!(report.unexpected, ["bert.rel_pos_bias.weight"]);
    assert!(report.missing.is_empty());

    // Config with the bias, weights without: the key is missing.
    let dir = tempfile::tempdir().unwrap();
    let (vs, _m) = model(false, 2);
    save_pretrained(&vs, &config(true), dir.path()).unwrap();
    match load_with(dir.path(), Device::Cpu, BertForPreTraining::new_masked_lm) {
        Err(Error::CheckpointMismatch {
            missing,
            unexpected,
        }) => {
            assert_eq!(missing, ["bert.rel_pos_bias.weight"]);
            assert!(unexpected.is_empty());
        }
        other => panic!("{:?}", other.map(|p| p.report)),
    }
}

#[test]
fn training_reaches_the_bias_weight_through_both_attention_paths() {
    let _rng = rng_lock();
    for attention_dropout in [0.0, 0.1] {
        tch::manual_seed(4);
        let c = BertConfig {
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: attention_dropout,
            ..config(true)
        };
        let vs = VarStore::new(Device::Cpu);
        let m = BertForPreTraining::new_masked_lm(&vs.root(), &c).unwrap();
        let (input, vis, _) = random_input(2, 11);
        let input = with_3d(&input, &vis);
        let out = m.bert().forward_t(&input, true).unwrap().last_hidden_state;
        if attention_dropout == 0.0 {
            // Without dropout the training path computes the eval output.
            let eval = tch::no_grad(|| m.bert().forward_t(&input, false).unwrap());
            assert!(max_diff(&out, &eval.last_hidden_state) < 1e-5);
        }
        (&out * out.randn_like()).sum(Kind::Float).backward();
        let grad = vs.variables()["bert.rel_pos_bias.weight"].grad();
        let norm = grad.norm().double_value(&[]);
        assert!(
            norm.is_finite() && norm > 0.0,
            "dropout {attention_dropout}: {norm}"
        );
    }
}

#[test]
fn bf16_products_stay_close_to_fp32_with_the_bias_and_the_cache() {
    let _rng = rng_lock();
    let (_vs, m) = model(true, 8);
    let (input, vis, _) = random_input(2, 11);
    let _g = tch::no_grad_guard();
    let full = m
        .bert()
        .forward_t(&with_3d(&input, &vis), false)
        .unwrap()
        .last_hidden_state;
    let bf16 = autocast(Precision::Bf16, || {
        m.bert()
            .forward_t(&with_3d(&input, &vis), false)
            .unwrap()
            .last_hidden_state
    });
    assert_eq!(bf16.kind(), Kind::Float, "the residual stream stays fp32");
    let d = max_diff(&full, &bf16);
    assert!(d.is_finite() && d < 0.25, "{d}");
    let inc = autocast(Precision::Bf16, || {
        m.bert()
            .forward_incremental(&input, &vis, &KvCache::new())
            .unwrap()
    });
    assert_eq!(
        inc.new_kv[0].0.kind(),
        Kind::BFloat16,
        "keys in the products' type"
    );
    let d = max_diff(&full, &inc.hidden);
    assert!(d.is_finite() && d < 0.25, "{d}");
}

#[test]
fn bad_incremental_inputs_are_typed_errors() {
    let _rng = rng_lock();
    let (_vs, m) = model(true, 1);
    let bert = m.bert();
    let _g = tch::no_grad_guard();
    let ids = Tensor::from_slice(&[11i64, 12, 13, 14]).reshape([2, 2]);
    let vis = Tensor::ones([2, 2, 2], (Kind::Bool, Device::Cpu));
    let empty = KvCache::new();
    let e = bert
        .forward_incremental(
            &MlmInput::new(ids.shallow_clone()),
            &vis.narrow(2, 0, 1),
            &empty,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InputShape {
                what: "visibility",
                ..
            }
        ),
        "{e}"
    );
    let e = bert
        .forward_incremental(
            &MlmInput::new(ids.shallow_clone()).with_attention_3d(vis.shallow_clone()),
            &vis,
            &empty,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InputShape {
                what: "attention_3d",
                ..
            }
        ),
        "{e}"
    );
    let e = bert
        .forward_incremental(
            &MlmInput::new(ids.f_add_scalar(VOCAB).unwrap()),
            &vis,
            &empty,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                what: "input_ids",
                ..
            }
        ),
        "{e}"
    );

    let out = bert
        .forward_incremental(&MlmInput::new(ids.shallow_clone()), &vis, &empty)
        .unwrap();
    let mut cache = KvCache::new();
    let e = cache.append(&out, &[0, 2]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                what: "keep",
                max: 2,
                limit: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(cache.is_empty(), "a refused append changes nothing");
    cache.append(&out, &[]).unwrap();
    assert!(cache.is_empty());
    cache.append(&out, &[0, 1]).unwrap();
    assert_eq!((cache.len(), cache.batch_size()), (2, Some(2)));
    // The cache holds 2 rows: a batch of 1 does not fit until it is reordered.
    let one = MlmInput::new(Tensor::from_slice(&[15i64]).reshape([1, 1]));
    let vis1 = Tensor::ones([1, 1, 3], (Kind::Bool, Device::Cpu));
    let e = bert.forward_incremental(&one, &vis1, &cache).unwrap_err();
    assert!(matches!(e, Error::CacheMismatch { .. }), "{e}");
    let e = cache.reorder(&Tensor::from_slice(&[2i64])).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                what: "beam_indices",
                ..
            }
        ),
        "{e}"
    );
    let e = cache.reorder(&Tensor::from_slice(&[0.5f32])).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InputShape {
                what: "beam_indices",
                ..
            }
        ),
        "{e}"
    );
    cache.reorder(&Tensor::from_slice(&[1i64])).unwrap();
    assert_eq!(cache.batch_size(), Some(1));
    let next = bert.forward_incremental(&one, &vis1, &cache).unwrap();
    // Default positions continue after the cache.
    assert_eq!(next.position_ids.int64_value(&[0, 0]), 2);
    // Another model's step does not append to this cache.
    let (_vs3, other) = {
        let vs = VarStore::new(Device::Cpu);
        let c = BertConfig {
            num_hidden_layers: 3,
            ..config(true)
        };
        let m = BertForPreTraining::new_masked_lm(&vs.root(), &c).unwrap();
        (vs, m)
    };
    let foreign = other
        .bert()
        .forward_incremental(
            &one,
            &Tensor::ones([1, 1, 1], (Kind::Bool, Device::Cpu)),
            &KvCache::new(),
        )
        .unwrap();
    let e = cache.append(&foreign, &[0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::CacheMismatch {
                what: "number of layers",
                ..
            }
        ),
        "{e}"
    );
    // Default positions past the table are refused.
    let long = MlmInput::new(Tensor::full([1, 63], 11, (Kind::Int64, Device::Cpu)));
    let vis_long = Tensor::ones([1, 63, 65], (Kind::Bool, Device::Cpu));
    let e = bert
        .forward_incremental(&long, &vis_long, &cache)
        .unwrap_err();
    assert!(
        matches!(e, Error::SequenceTooLong { len: 65, max: 64 }),
        "{e}"
    );
    // The MLM projection checks the width of what it is given.
    let e = m
        .mlm_logits(&Tensor::zeros([1, 31], (Kind::Float, Device::Cpu)))
        .unwrap_err();
    assert!(matches!(e, Error::InputShape { what: "hidden", .. }), "{e}");
    assert_eq!(m.mlm_logits(&next.hidden).unwrap().size(), [1, 1, VOCAB]);
}
