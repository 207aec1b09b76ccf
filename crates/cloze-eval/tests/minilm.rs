//! The real all-MiniLM-L6-v2 checkpoint (fetched through `cloze_fetch::datasets`):
//! loads as an encoder with its own tokenizer, ranks a paraphrase above an unrelated
//! sentence, round-trips through save/load exactly, and length-sorted batching gives
//! the same embeddings as file order on real SOTU sentences.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cloze_eval::{cosine, encode, EncodeOptions, ModelTokenizer};
use cloze_models::hf::read_safetensors;
use cloze_models::{load_encoder, load_pretrained, save_pretrained, HeadStatus};
use tch::Device;

fn fetched(name: &str) -> PathBuf {
    let root = cloze_fetch::datasets::cache_root().unwrap();
    cloze_fetch::datasets::fetch(name, &root).unwrap().dir
}

#[test]
#[ignore = "network: fetches all-MiniLM-L6-v2 with `cloze data fetch minilm`"]
fn minilm_loads_as_an_encoder_and_ranks_a_paraphrase_first() {
    let dir = fetched("minilm");
    let enc = load_encoder(&dir, Device::Cpu).unwrap();
    assert!(enc.report.is_exact(), "{}", enc.report);
    assert_eq!(enc.config.hidden_size, 384);
    assert_eq!(enc.config.num_hidden_layers, 6);
    let full = load_pretrained(&dir, Device::Cpu).unwrap();
    assert_eq!(
        full.report.mlm_head,
        HeadStatus::Absent,
        "MiniLM ships no MLM head"
    );
    let tok = ModelTokenizer::from_dir(&dir, 128).unwrap();
    let texts = [
        "A man is playing a guitar on the stage.",
        "On stage, a guy plays the guitar.",
        "The central bank raised interest rates again.",
    ];
    let seqs = tok.encode_batch(&texts).unwrap();
    assert_eq!(seqs[0].first(), Some(&tok.cls));
    assert_eq!(seqs[0].last(), Some(&tok.sep));
    assert!(
        seqs[0].len() < 20,
        "the baked-in padding to 128 must be off"
    );
    let e = encode(&enc.model, &seqs, &EncodeOptions::for_tokenizer(&tok)).unwrap();
    let para = cosine(&e.embeddings.get(0), &e.embeddings.get(1)).unwrap();
    let unrelated = cosine(&e.embeddings.get(0), &e.embeddings.get(2)).unwrap();
    assert!(
        para > unrelated + 0.3,
        "paraphrase {para} vs unrelated {unrelated}"
    );
}

#[test]
#[ignore = "network: fetches all-MiniLM-L6-v2 with `cloze data fetch minilm`"]
fn minilm_save_and_reload_round_trips_every_tensor_exactly() {
    let dir = fetched("minilm");
    let enc = load_encoder(&dir, Device::Cpu).unwrap();
    let out = tempfile::tempdir().unwrap();
    save_pretrained(&enc.vs, &enc.config, out.path()).unwrap();
    let original = read_safetensors(&dir.join("model.safetensors")).unwrap();
    let saved = read_safetensors(&out.path().join("model.safetensors")).unwrap();
    for (k, t) in &original {
        if k.ends_with("position_ids") {
            assert!(!saved.contains_key(k), "buffers are not weights");
            continue;
        }
        assert!(saved[k].equal(t), "{k}");
    }
    assert_eq!(saved.len(), original.len() - 1);
    let again = load_encoder(out.path(), Device::Cpu).unwrap();
    assert!(again.report.is_exact());
    for (k, v) in enc.vs.variables() {
        assert!(again.vs.variables()[&k].equal(&v), "{k}");
    }
}

#[test]
#[ignore = "network: fetches all-MiniLM-L6-v2 and the SOTU corpus"]
fn length_sorted_batches_match_file_order_on_real_sentences() {
    let dir = fetched("minilm");
    let sotu = fetched("sotu").join("sotu.txt");
    let text = std::fs::read_to_string(sotu).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().count() >= 5)
        .take(300)
        .collect();
    let enc = load_encoder(&dir, Device::Cpu).unwrap();
    let tok = ModelTokenizer::from_dir(&dir, 128).unwrap();
    let seqs = tok.encode_batch(&lines).unwrap();
    let sorted = EncodeOptions {
        batch_size: 32,
        sort_by_length: true,
        keep_token_states: true,
        ..EncodeOptions::for_tokenizer(&tok)
    };
    let file_order = EncodeOptions {
        sort_by_length: false,
        ..sorted.clone()
    };
    let a = encode(&enc.model, &seqs, &sorted).unwrap();
    let b = encode(&enc.model, &seqs, &file_order).unwrap();
    let d = (&a.embeddings - &b.embeddings)
        .abs()
        .max()
        .double_value(&[]);
    assert!(d <= 1e-5, "embeddings differ by {d}");
    let (sa, sb) = (a.token_states.unwrap(), b.token_states.unwrap());
    for (x, y) in sa.iter().zip(&sb) {
        assert!((x - y).abs().max().double_value(&[]) <= 1e-5);
    }
    assert!(a.padded_positions < b.padded_positions);
}
