//! Masking + collation throughput in sequences/s: 128-token sequences, batches
//! of 32, 2 rayon threads, token and whole-word masking (HF's collator does
//! 9,300 and 5,000 sequences/s here; `cloze bench mask` prints the ratio).

use cloze_mask::synthetic::{bert_base_specials, synthetic_instances};
use cloze_mask::{Masker, MaskingConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SEQ_LEN: usize = 128;
const BATCH: usize = 32;
const THREADS: usize = 2;

fn masking(c: &mut Criterion) {
    let specials = bert_base_specials();
    let data = synthetic_instances(4096, SEQ_LEN, &specials, 0).expect("BERT specials are valid");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()
        .expect("thread pool");
    let mut group = c.benchmark_group("mask_128x32_2threads");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, config) in [
        ("token", MaskingConfig::bert(Some(20))),
        ("whole_word", MaskingConfig::whole_word(Some(20))),
        ("ngram", {
            let mut c = MaskingConfig::spanbert();
            c.select = MaskingConfig::macbert(None).select;
            c
        }),
    ] {
        let masker = Masker::new(config, specials.clone()).expect("valid scheme");
        let batches: Vec<&[cloze_text::Instance]> = data.chunks(BATCH).collect();
        let mut step = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let i = step % batches.len();
                step += 1;
                pool.install(|| {
                    masker.mask_batch(
                        batches[i],
                        0,
                        (step / batches.len()) as u64,
                        (i * BATCH) as u64,
                    )
                })
                .expect("masking succeeds")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, masking);
criterion_main!(benches);
