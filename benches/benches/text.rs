//! Whole `prepare` throughput (tokenize + word ids + instances + shard write)
//! on real SOTU text with the all-MiniLM (BERT uncased WordPiece) tokenizer,
//! compared as a ratio with the HF fast tokenizer's ~600 k tokens/s measured
//! on this kind of machine (tokenization alone, ../shared/DATA.md).
//!
//! Needs the `sotu` and `minilm` datasets (fetched into the cache on first run).

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::path::PathBuf;

use cloze_fetch::datasets::{cache_root, fetch};
use cloze_text::prepare::{peak_rss_bytes, prepare, PrepareConfig};
use cloze_text::{NoProgress, TextTokenizer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// HF fast BERT tokenizer on SOTU, 2 threads (tokens/s), from the peer script.
const PEER_TOKENS_PER_SECOND: f64 = 600_000.0;
/// Bytes of SOTU text per measured prepare (whole documents).
const SLICE_BYTES: usize = 2 << 20;

fn setup() -> (PathBuf, TextTokenizer, PathBuf) {
    let root = cache_root().expect("cache directory");
    let sotu = fetch("sotu", &root).expect("fetch sotu");
    let minilm = fetch("minilm", &root).expect("fetch minilm");
    let tok = TextTokenizer::from_path(&minilm.dir).expect("minilm tokenizer");
    let text = std::fs::read_to_string(sotu.dir.join("sotu.txt")).expect("sotu text");
    // Cut at a document boundary after SLICE_BYTES.
    let cut = text[SLICE_BYTES.min(text.len())..]
        .find("\n\n")
        .map_or(text.len(), |i| SLICE_BYTES + i);
    let work = std::env::temp_dir().join(format!("cloze-bench-text-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("bench dir");
    let corpus = work.join("sotu-slice.txt");
    std::fs::write(&corpus, &text[..cut]).expect("write slice");
    (corpus, tok, work)
}

fn bench_prepare(c: &mut Criterion) {
    let (corpus, tok, work) = setup();
    let out = work.join("shards");
    let config = PrepareConfig::default();
    let first = prepare(&corpus, &tok, &out, &config, &NoProgress).expect("prepare");
    let mut group = c.benchmark_group("text");
    group.sample_size(10);
    group.throughput(Throughput::Elements(first.text_tokens));
    group.bench_function("prepare_sotu_2MB_nsp", |b| {
        b.iter(|| prepare(&corpus, &tok, &out, &config, &NoProgress).expect("prepare"))
    });
    group.finish();
    // One more timed run to print the figure and the peer ratio beside criterion's.
    let r = prepare(&corpus, &tok, &out, &config, &NoProgress).expect("prepare");
    println!(
        "prepare: {:.0} tokens/s on {} threads = {:.2}x the HF fast tokenizer's {:.0} tokens/s; peak RSS {:.1} MiB",
        r.tokens_per_second,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        r.tokens_per_second / PEER_TOKENS_PER_SECOND,
        PEER_TOKENS_PER_SECOND,
        peak_rss_bytes().unwrap_or(0) as f64 / f64::from(1 << 20)
    );
    let _ = std::fs::remove_dir_all(&work);
}

criterion_group!(benches, bench_prepare);
criterion_main!(benches);
