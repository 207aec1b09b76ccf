//! Full BERT MLM training step (forward, backward, clipping, AdamW) at the size
//! the peer measures: hidden 256, 4 layers, 4 heads, FFN 1024, vocabulary 30522,
//! sequence 128, batch 16, 2 threads, in fp32 and with bf16 products. Throughput is in tokens (batch x seq).
//! `cloze bench train --peer-python ...` runs the same step next to HF
//! transformers in one invocation and prints the ratio.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use cloze_models::Precision;
use cloze_train::bench::{StepBench, StepShape};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    // As the `cloze` binary does at start-up.
    cloze_models::tune_cpu_allocator();
    cloze_models::flush_denormals();
    tch::set_num_threads(2);
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(16 * 128));
    for precision in Precision::ALL.into_iter().filter(|p| p.trains()) {
        let mut bench =
            StepBench::new(&StepShape::PEER, precision).expect("model, optimiser and batch");
        g.bench_function(format!("bert_h256_l4_seq128_b16_{precision}"), |b| {
            b.iter(|| bench.step().expect("step"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
