//! Structural invariants: whole words and n-grams never split, specials and
//! padding never selected, lengths never changed, caps respected, and masks a
//! pure function of (seed, epoch, index) whatever the thread count.

mod common;

use std::sync::Arc;

use cloze_mask::{
    Batch, CorruptConfig, Granularity, Masker, MaskingConfig, PadTo, Schedule, SelectConfig,
    Thesaurus, UnitsConfig, Vocab,
};
use cloze_text::{Instance, NO_WORD};
use common::*;

fn schemes() -> Vec<MaskingConfig> {
    let mut ngram = MaskingConfig::macbert(None);
    ngram.corrupt = CorruptConfig::Bert {
        mask: 0.8,
        random: 0.1,
        keep: 0.1,
        per: Granularity::Unit,
    };
    vec![
        MaskingConfig::bert(Some(20)),
        MaskingConfig::whole_word(Some(20)),
        ngram,
        MaskingConfig::spanbert(),
    ]
}

/// Token ranges of the words of `inst`.
fn words(inst: &Instance) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, &w) in inst.word_ids.iter().enumerate() {
        if w == NO_WORD {
            continue;
        }
        match out.last_mut() {
            Some((_, end)) if *end == i && inst.word_ids[i - 1] == w => *end += 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

#[test]
fn words_and_spans_are_never_split_and_specials_never_masked() -> anyhow::Result<()> {
    let data = corpus(3_000, 8, 128);
    for config in schemes() {
        let by_words = config.units == UnitsConfig::Words;
        let masker = Masker::new(config.clone(), specials())?;
        for (i, inst) in data.iter().enumerate() {
            let m = masker.mask(inst, 42, 0, i as u64)?;
            assert_eq!(m.input_ids.len(), inst.len(), "length changed");
            let mut selected = vec![false; inst.len()];
            for p in &m.masked {
                let pos = p.pos as usize;
                assert!(
                    ![PAD, UNK, CLS, SEP, MASK].contains(&inst.tokens[pos]),
                    "special at {pos} selected"
                );
                assert_eq!(p.target, inst.tokens[pos]);
                selected[pos] = true;
            }
            for (pos, (&orig, &now)) in inst.tokens.iter().zip(&m.input_ids).enumerate() {
                if !selected[pos] {
                    assert_eq!(orig, now, "unselected token {pos} changed");
                }
            }
            assert!(
                m.masked.windows(2).all(|w| w[0].pos < w[1].pos),
                "positions sorted"
            );
            // Spans cover exactly the selected positions, each span contiguous.
            let mut from_spans = vec![false; inst.len()];
            for s in &m.spans {
                for pos in s.start..s.start + s.tokens {
                    assert!(!from_spans[pos as usize], "spans overlap");
                    from_spans[pos as usize] = true;
                }
            }
            assert_eq!(from_spans, selected, "spans and masked positions disagree");
            if by_words {
                for (a, b) in words(inst) {
                    let n = selected[a..b].iter().filter(|&&s| s).count();
                    assert!(
                        n == 0 || n == b - a,
                        "{:?}: word {a}..{b} split ({n} selected)",
                        config.name
                    );
                }
                // Each span starts and ends on word boundaries and never crosses [SEP].
                for s in &m.spans {
                    let (a, b) = (s.start as usize, (s.start + s.tokens) as usize);
                    assert!(
                        inst.word_ids[a] != NO_WORD
                            && (a == 0 || inst.word_ids[a - 1] != inst.word_ids[a])
                    );
                    assert!(b == inst.len() || inst.word_ids[b] != inst.word_ids[b - 1]);
                    assert!(
                        inst.word_ids[a..b].iter().all(|&w| w != NO_WORD),
                        "span crosses a special token"
                    );
                }
            }
            if let SelectConfig::Budget {
                max_predictions: Some(cap),
                ..
            } = config.select
            {
                assert!(m.masked.len() <= cap as usize);
            }
        }
    }
    Ok(())
}

#[test]
fn max_predictions_cap_binds_on_long_sequences() -> anyhow::Result<()> {
    let masker = Masker::new(MaskingConfig::bert(Some(5)), specials())?;
    for i in 0..200 {
        let m = masker.mask(&instance(128, i, false), 0, 0, i)?;
        assert_eq!(m.masked.len(), 5, "0.15 x 125 > 5, so the cap decides");
    }
    Ok(())
}

#[test]
fn similar_words_keep_the_length_and_failures_fall_back_to_random() -> anyhow::Result<()> {
    let vocab: Vec<String> = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "开", "心", "高", "兴", "乐", "快", "难",
        "过",
    ]
    .map(String::from)
    .to_vec();
    let vocab = Arc::new(Vocab::from_tokens(vocab));
    // 开心's only same-length synonyms are 高兴 and 快乐; 乐 (one char) cannot replace it.
    let thesaurus = Arc::new(Thesaurus::from_groups([vec![
        "开心".to_string(),
        "乐".to_string(),
        "高兴".to_string(),
        "快乐".to_string(),
    ]]));
    let specials = vocab.special_tokens()?;
    let mut config = MaskingConfig::macbert(None);
    config.select = SelectConfig::Budget {
        rate: 1.0,
        max_predictions: None,
        min_predictions: 1,
        lengths: cloze_mask::LengthsConfig::Single,
    };
    config.corrupt = CorruptConfig::SimilarWord {
        similar: 1.0,
        random: 0.0,
        keep: 0.0,
        source: None,
    };
    let masker = Masker::builder(config, specials)
        .word_codec(vocab)
        .similar_words(thesaurus)
        .build()?;
    // [CLS] 开心 难过 [SEP]: 开心 has synonyms, 难过 has none.
    let inst = Instance {
        tokens: vec![2, 5, 6, 11, 12, 3],
        segment_ids: vec![0; 6],
        word_ids: vec![NO_WORD, 0, 0, 1, 1, NO_WORD],
        pair_label: None,
    };
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..200 {
        let m = masker.mask(&inst, 0, 0, i)?;
        assert_eq!(m.input_ids.len(), 6);
        let first = (m.input_ids[1], m.input_ids[2]);
        assert!(
            first == (7, 8) || first == (10, 9),
            "开心 -> 高兴 or 快乐, got {first:?}"
        );
        seen.insert(first);
        assert_eq!(m.failed_lookups, vec![(3, 2)], "难过 has no similar word");
        assert!(
            m.input_ids[3..5].iter().all(|&t| t >= 5),
            "fallback is a random ordinary token"
        );
        assert!(!m.input_ids.contains(&4), "never [MASK]");
    }
    assert_eq!(seen.len(), 2, "both synonyms get used");
    Ok(())
}

fn batch_in_pool(
    masker: &Masker,
    data: &[Instance],
    threads: usize,
    first: u64,
) -> anyhow::Result<Batch> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    Ok(pool.install(|| masker.mask_batch(data, 99, 2, first))?)
}

#[test]
fn masks_do_not_depend_on_thread_count_or_batch_boundaries() -> anyhow::Result<()> {
    let data = corpus(256, 20, 128);
    for config in schemes() {
        let masker = Masker::new(config, specials())?;
        let one = batch_in_pool(&masker, &data, 1, 1000)?;
        let two = batch_in_pool(&masker, &data, 2, 1000)?;
        assert_eq!(one, two, "1 vs 2 threads");
        let four = batch_in_pool(&masker, &data, 4, 1000)?;
        assert_eq!(one, four, "1 vs 4 threads");
        // The same examples in a batch of their own get the same masks.
        let tail = batch_in_pool(&masker, &data[128..], 2, 1128)?;
        let row = |b: &Batch, r: usize, n: usize| b.row(r)[..n].to_vec();
        for r in 0..128 {
            let n = data[128 + r].len();
            assert_eq!(row(&one, 128 + r, n), row(&tail, r, n));
        }
        let single = masker.mask(&data[5], 99, 2, 1005)?;
        let got: Vec<u32> = one.row(5)[..data[5].len()]
            .iter()
            .map(|&t| t as u32)
            .collect();
        assert_eq!(got, single.input_ids, "mask and mask_batch agree");
    }
    Ok(())
}

#[test]
fn dynamic_masks_change_per_epoch_static_ones_cycle() -> anyhow::Result<()> {
    let inst = instance(128, 1, false);
    let dynamic = Masker::new(MaskingConfig::bert(None), specials())?;
    let e: Vec<_> = (0..3)
        .map(|e| dynamic.mask(&inst, 5, e, 7).map(|m| m.input_ids))
        .collect::<Result<_, _>>()?;
    assert!(e[0] != e[1] && e[1] != e[2]);
    let mut config = MaskingConfig::bert(None);
    config.schedule = Schedule::Static { dupe_factor: 2 };
    let stat = Masker::new(config, specials())?;
    let s: Vec<_> = (0..4)
        .map(|e| stat.mask(&inst, 5, e, 7).map(|m| m.input_ids))
        .collect::<Result<_, _>>()?;
    assert_eq!(s[0], s[2]);
    assert_eq!(s[1], s[3]);
    assert_ne!(s[0], s[1]);
    assert_eq!(s[0], e[0], "static copy 0 is dynamic epoch 0");
    Ok(())
}

#[test]
fn batch_layout_padding_and_labels() -> anyhow::Result<()> {
    let data: Vec<Instance> = [13usize, 30, 21]
        .iter()
        .enumerate()
        .map(|(i, &n)| instance(n, i as u64, true))
        .collect();
    let masker = Masker::new(MaskingConfig::bert(None), specials())?;
    let b = masker.mask_batch(&data, 1, 0, 0)?;
    assert_eq!(
        (b.batch_size, b.seq_len),
        (3, 32),
        "30 rounded up to a multiple of 8"
    );
    assert_eq!(b.input_ids.len(), 96);
    assert!(
        b.targets
            .masked_lm
            .windows(2)
            .all(|w| (w[0].row, w[0].pos) < (w[1].row, w[1].pos)),
        "sorted by (row, pos)"
    );
    for (r, inst) in data.iter().enumerate() {
        let row = b.row(r);
        assert!(
            row[inst.len()..].iter().all(|&t| t == i64::from(PAD)),
            "padded with [PAD]"
        );
        let attn = &b.attention_mask[r * 32..(r + 1) * 32];
        assert_eq!(attn.iter().sum::<i64>(), inst.len() as i64);
        let types = &b.token_type_ids[r * 32..r * 32 + inst.len()];
        assert!(types
            .iter()
            .zip(&inst.segment_ids)
            .all(|(&a, &s)| a == i64::from(s)));
        for m in b.targets.masked_lm.iter().filter(|m| m.row as usize == r) {
            assert!((m.pos as usize) < inst.len(), "padding never masked");
            assert_eq!(m.target, inst.tokens[m.pos as usize]);
        }
    }
    let labels = b.dense_labels(-100);
    assert_eq!(
        labels.iter().filter(|&&l| l != -100).count(),
        b.targets.masked_lm.len()
    );
    let expected: Vec<i64> = data
        .iter()
        .map(|x| i64::from(x.pair_label.map_or(9, |p| p.class())))
        .collect();
    assert_eq!(b.targets.pair.as_deref(), Some(&expected[..]));
    let mut no_labels = data.clone();
    no_labels[1].pair_label = None;
    assert_eq!(masker.mask_batch(&no_labels, 1, 0, 0)?.targets.pair, None);

    let mut config = MaskingConfig::bert(None);
    config.collate.pad_to = PadTo::BatchMax;
    assert_eq!(
        Masker::new(config.clone(), specials())?
            .mask_batch(&data, 1, 0, 0)?
            .seq_len,
        30
    );
    config.collate.pad_to = PadTo::Fixed { len: 16 };
    let e = Masker::new(config, specials())?
        .mask_batch(&data, 1, 0, 0)
        .expect_err("30 > 16");
    assert!(
        matches!(
            e,
            cloze_mask::Error::TooLong {
                index: 1,
                len: 30,
                fixed: 16
            }
        ),
        "{e}"
    );
    Ok(())
}

#[test]
fn ragged_instances_are_rejected() -> anyhow::Result<()> {
    let mut inst = instance(20, 0, false);
    inst.word_ids.pop();
    let masker = Masker::new(MaskingConfig::bert(None), specials())?;
    assert!(matches!(
        masker.mask(&inst, 0, 0, 3),
        Err(cloze_mask::Error::RaggedInstance { index: 3, .. })
    ));
    assert!(masker
        .mask_batch(&[instance(20, 1, false), inst], 0, 0, 10)
        .is_err());
    Ok(())
}

#[test]
fn word2vec_source_named_in_the_config_supplies_neighbours() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cloze-mask-w2v-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("vectors.txt");
    // 开心's nearest neighbour is 高兴; 难过 is far from both.
    std::fs::write(&path, "3 3\n开心 1 0.1 0\n高兴 0.9 0.2 0\n难过 -1 0 0.5\n")?;
    let vocab: Vec<String> = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "开", "心", "高", "兴", "难", "过",
    ]
    .map(String::from)
    .to_vec();
    let vocab = Arc::new(Vocab::from_tokens(vocab));
    let mut config = MaskingConfig::macbert(Some(cloze_mask::SimilarSourceConfig::Word2vec {
        path,
        top_k: 1,
        min_similarity: 0.5,
        max_words: None,
    }));
    config.select = SelectConfig::Budget {
        rate: 1.0,
        max_predictions: None,
        min_predictions: 1,
        lengths: cloze_mask::LengthsConfig::Single,
    };
    config.corrupt = match config.corrupt {
        CorruptConfig::SimilarWord { source, .. } => CorruptConfig::SimilarWord {
            similar: 1.0,
            random: 0.0,
            keep: 0.0,
            source,
        },
        other => other,
    };
    let masker = Masker::builder(config, vocab.special_tokens()?)
        .word_codec(vocab)
        .build()?;
    let inst = Instance {
        tokens: vec![2, 5, 6, 9, 10, 3],
        segment_ids: vec![0; 6],
        word_ids: vec![NO_WORD, 0, 0, 1, 1, NO_WORD],
        pair_label: None,
    };
    let m = masker.mask(&inst, 0, 0, 0)?;
    assert_eq!(&m.input_ids[1..3], &[7, 8], "开心 -> 高兴");
    assert_eq!(
        m.failed_lookups,
        vec![(3, 2)],
        "难过 has no neighbour above 0.5"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
