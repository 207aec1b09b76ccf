//! Full BERT MLM training step (forward, backward, clipping, AdamW) at the size
//! the peer measures: hidden 256, 4 layers, 4 heads, FFN 1024, vocabulary 30522,
//! sequence 128, batch 16, 2 threads. Throughput is in tokens (batch x seq).
//! `cloze bench train --peer-python ...` runs the same step next to HF
//! transformers in one invocation and prints the ratio.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use cloze_train::bert::bert_config;
use cloze_train::config::{ModelConfig, OptimizerConfig};
use cloze_train::objective::Mlm;
use cloze_train::trainer::train_step;
use cloze_train::{AdamW, BertPretrainer, TensorBatch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    // As the `cloze` binary does at start-up.
    cloze_models::tune_cpu_allocator();
    cloze_models::flush_denormals();
    tch::set_num_threads(2);
    let mc = ModelConfig {
        hidden_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 1024,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        initializer_range: 0.02,
        layer_norm_eps: 1e-12,
    };
    let model =
        BertPretrainer::new(bert_config(&mc, 30522, 0), false, 0, tch::Device::Cpu).expect("model");
    let hp = OptimizerConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-6,
        max_grad_norm: 1.0,
    };
    let mut opt = AdamW::new(&model.vs, &hp).expect("optimiser");
    let batch = TensorBatch::synthetic(16, 128, 30522, 0.15, 0).expect("batch");
    let obj = Mlm { weight: 1.0 };
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(16 * 128));
    g.bench_function("bert_h256_l4_seq128_b16", |b| {
        b.iter(|| train_step(&model, &obj, &mut opt, &batch, 1e-4, 1.0).expect("step"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
