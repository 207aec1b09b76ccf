//! BERT training forward + backward with and without masked-position gathering
//! (hidden 256, 4 layers, 4 heads, FFN 1024, vocab 30522, seq 128, batch 16, 2 threads).
//!
//! "full" projects every position onto the vocabulary and masks the loss, as HF's
//! BertForMaskedLM does; "gathered" projects only the ~15% masked positions.
//! Throughput is in tokens (batch x seq) per second.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::time::Duration;

use cloze_models::{BertConfig, BertForPreTraining, MlmInput};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

const BATCH: i64 = 16;
const SEQ: i64 = 128;

fn config() -> BertConfig {
    BertConfig {
        vocab_size: 30522,
        hidden_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 1024,
        ..Default::default()
    }
}

struct Batch {
    input: MlmInput,
    positions: Tensor,
    targets: Tensor,
    labels: Tensor,
}

fn batch() -> Batch {
    // libtorch's generator, seeded in `bench`, so every run sees the same batch.
    let opts = (Kind::Int64, Device::Cpu);
    let ids = Tensor::randint_low(5, 30522, [BATCH, SEQ], opts);
    let masked = Tensor::rand([BATCH * SEQ], (Kind::Float, Device::Cpu)).lt(0.15);
    let flat = ids.view([-1]);
    let positions = masked.nonzero().view([-1]);
    let targets = flat.index_select(0, &positions);
    let labels = flat.where_scalarother(&masked, -100);
    Batch {
        input: MlmInput::new(ids.shallow_clone())
            .with_attention_mask(Tensor::ones([BATCH, SEQ], opts)),
        positions,
        targets,
        labels,
    }
}

fn zero_grads(vs: &VarStore) {
    for mut v in vs.trainable_variables() {
        v.zero_grad();
    }
}

fn bench(c: &mut Criterion) {
    // As the `cloze` binary does at start-up.
    cloze_models::tune_cpu_allocator();
    cloze_models::flush_denormals();
    tch::set_num_threads(2);
    tch::manual_seed(0);
    let b = batch();
    let vs = VarStore::new(Device::Cpu);
    let model = BertForPreTraining::new_masked_lm(&vs.root(), &config()).expect("model");
    let mut g = c.benchmark_group("bert_mlm_train_fwd_bwd");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(25))
        .warm_up_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements((BATCH * SEQ) as u64));
    g.bench_function("full_projection", |bench| {
        bench.iter(|| {
            let out = model.forward_t(&b.input, None, true).expect("forward");
            let logits = out.mlm_logits.view([BATCH * SEQ, -1]);
            let loss =
                logits.cross_entropy_loss::<Tensor>(&b.labels, None, Reduction::Mean, -100, 0.0);
            loss.backward();
            zero_grads(&vs);
        })
    });
    g.bench_function("gathered_positions", |bench| {
        bench.iter(|| {
            let out = model
                .forward_t(&b.input, Some(&b.positions), true)
                .expect("forward");
            let loss = out.mlm_logits.cross_entropy_for_logits(&b.targets);
            loss.backward();
            zero_grads(&vs);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
