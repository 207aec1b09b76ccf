//! `cloze experiment continued-pretraining`: does continuing a published
//! encoder's pretraining on a domain corpus beat training the same
//! architecture from scratch for the same budget, and what does it do to the
//! encoder's sentence embeddings?
//!
//! all-MiniLM-L6-v2 (a sentence-embedding BERT without an MLM head) is
//! trained further with MLM on the State of the Union addresses
//! (`pretrain --init-from`, a fresh tied MLM head), and the same architecture
//! from a random initialisation gets the same steps, batch and data; each
//! over several seeds. Every model is scored on the held-out split's masked
//! tokens (`cloze eval`, the same masks for all) and on paraphrase pairs:
//! WordNet example sentences with a word replaced by a synonym from the same
//! synset, embedded with `cloze encode` (mean pooling), against the
//! published MiniLM.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_fs::OutputKind;
use serde_json::{json, Value};
use tch::{Kind, Tensor};

use super::report::{cell, markdown_table};
use super::{capture_once, has_checkpoint, os_args, read_json, save, step_once, Steps};

/// Arguments of `cloze experiment continued-pretraining`.
#[derive(Debug, Args)]
pub struct ContinuedArgs {
    /// The experiment directory. Running the command again with the same
    /// directory continues where it stopped; any other existing directory
    /// is refused.
    #[arg(long, default_value = "runs/continued-pretraining")]
    pub out: PathBuf,
    /// Pretraining seeds per arm (seeds 1..=N): data order, masks, dropout
    /// and the initialisation of whatever is not loaded.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Optimiser steps of every run (the budget both arms share).
    #[arg(long, default_value_t = 250)]
    pub steps: u64,
    /// Sequences per step (packed, at most 128 tokens each).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate when continuing from MiniLM.
    #[arg(long, default_value_t = 2e-4)]
    pub lr_continued: f64,
    /// Peak learning rate from scratch.
    #[arg(long, default_value_t = 1e-3)]
    pub lr_scratch: f64,
    /// `fp32` or `bf16`; by default bf16 where the CPU multiplies bf16 in
    /// hardware, else fp32.
    #[arg(long)]
    pub precision: Option<cloze_models::Precision>,
    /// Paraphrase pairs drawn from WordNet's example sentences.
    #[arg(long, default_value_t = 500)]
    pub pairs: usize,
    /// Where the Markdown report goes (default OUT/report.md).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Start over: removes what an earlier run of this experiment wrote in
    /// OUT, and nothing else.
    #[arg(long)]
    pub force: bool,
}

/// What the experiment writes in OUT (removed by `--force`).
const FILES: &[&str] = &[
    "experiment.json",
    "data",
    "paraphrases",
    "pretrain",
    "embeddings",
    "results",
    "logs",
    "report.md",
    cloze_fs::MARKER,
];

/// The two arms.
const ARMS: &[&str] = &["continued", "scratch"];

fn kind() -> OutputKind {
    OutputKind::new("experiment continued-pretraining", "--force")
}

fn precision_of(a: &ContinuedArgs) -> cloze_models::Precision {
    super::precision_or_default(a.precision)
}

/// The settings that must match when an experiment directory is continued.
fn settings(a: &ContinuedArgs) -> Value {
    json!({
        "experiment": "continued-pretraining",
        "steps": a.steps,
        "batch_size": a.batch_size,
        "lr_continued": a.lr_continued,
        "lr_scratch": a.lr_scratch,
        "precision": precision_of(a).to_string(),
        "pairs": a.pairs,
    })
}

/// Runs the experiment.
pub fn run(a: ContinuedArgs, threads: Option<usize>) -> Result<()> {
    if a.seeds == 0 || a.steps == 0 || a.batch_size == 0 || a.pairs < 2 {
        bail!("--seeds, --steps and --batch-size must be at least 1, --pairs at least 2");
    }
    let started = Instant::now();
    let out = a.out.clone();
    let report_path = a.report.clone().unwrap_or_else(|| out.join("report.md"));
    let wanted = settings(&a);
    let _lock = super::claim_dir(&out, &kind(), FILES, &wanted, a.force)?;
    let seeds: Vec<u64> = (1..=a.seeds).collect();
    let runs = ARMS.len() * seeds.len();
    let total = 2 + runs * 2 + (1 + runs) * 3;
    let mut steps = Steps::new(&out.join("logs"), threads, total)?;
    let results = out.join("results");

    // 1. Data: the checkpoint, the corpus and WordNet; SOTU tokenized with
    //    MiniLM's own tokenizer; the paraphrase pairs.
    steps.run(
        "fetch",
        &os_args(["data", "fetch", "minilm", "sotu", "wordnet"]),
        false,
    )?;
    let data = out.join("data");
    step_once(
        &mut steps,
        &results,
        "prepare",
        &data.join(cloze_text::shards::MANIFEST),
        || {
            let mut v = os_args([
                "data",
                "prepare",
                "--corpus",
                "sotu",
                "--tokenizer",
                "minilm",
            ]);
            v.push("--out".into());
            v.push(data.clone().into_os_string());
            v.extend(os_args([
                "--mode",
                "packed",
                "--max-seq-length",
                "128",
                "--holdout-fraction",
                "0.05",
            ]));
            v
        },
    )?;
    let root = cloze_fetch::datasets::cache_root()?;
    let minilm = cloze_fetch::datasets::dataset_dir(&root, "minilm");
    let wordnet = cloze_fetch::datasets::dataset_dir(&root, "wordnet");
    let pairs_dir = out.join("paraphrases");
    if !pairs_dir.join("c.txt").exists() {
        let pairs = wordnet_paraphrases(&wordnet, a.pairs)?;
        std::fs::create_dir_all(&pairs_dir)
            .with_context(|| format!("creating {}", pairs_dir.display()))?;
        // Each example three ways: as is (a), its word replaced by a synonym
        // (b), and by the synonym of the example half the list away (c): the
        // same words but one, so only that word's meaning separates b from c.
        let half = pairs.len() / 2;
        let side = |f: &dyn Fn(usize, &Rewrite) -> String| -> String {
            let lines: Vec<String> = pairs.iter().enumerate().map(|(i, r)| f(i, r)).collect();
            lines.join("\n") + "\n"
        };
        let files = [
            ("a.txt", side(&|_, r| r.example.clone())),
            ("b.txt", side(&|_, r| r.with(&r.synonym))),
            (
                "c.txt",
                side(&|i, r| r.with(&pairs[(i + half) % pairs.len()].synonym)),
            ),
        ];
        for (name, text) in files {
            cloze_models::hf::write_atomic(&pairs_dir.join(name), text.as_bytes())?;
        }
    }

    // 2. Pretraining, seed by seed, both arms.
    let shape = scratch_shape(&minilm)?;
    for &seed in &seeds {
        for arm in ARMS {
            pretrain(&mut steps, &out, &results, &a, arm, seed, &shape)?;
        }
    }

    // 3. Held-out MLM on the same masks for every model; paraphrase embeddings.
    let mut models: Vec<(String, PathBuf)> = vec![("minilm".into(), minilm.clone())];
    for &seed in &seeds {
        for arm in ARMS {
            let name = format!("{arm}-seed{seed}");
            let model = out.join("pretrain").join(&name).join("model");
            let result = results.join("eval").join(format!("{name}.json"));
            capture_once(&mut steps, &format!("eval/{name}"), &result, || {
                let mut v = os_args(["eval", "--json", "--model"]);
                v.push(model.clone().into_os_string());
                v.push("--data".into());
                v.push(data.clone().into_os_string());
                v
            })?;
            models.push((name, model));
        }
    }
    for (name, model) in &models {
        for side in ["a", "b", "c"] {
            let emb = out
                .join("embeddings")
                .join(format!("{name}-{side}.safetensors"));
            if emb.exists() {
                steps.skip(&format!("encode/{name}-{side}"));
                continue;
            }
            std::fs::create_dir_all(out.join("embeddings"))?;
            let mut v = os_args([
                "encode",
                "--no-token-states",
                "--max-length",
                "128",
                "--model",
            ]);
            v.push(model.clone().into_os_string());
            v.push("--input".into());
            v.push(pairs_dir.join(format!("{side}.txt")).into_os_string());
            v.push("--output".into());
            v.push(emb.into_os_string());
            steps.run(&format!("encode/{name}-{side}"), &v, false)?;
        }
    }

    // 4. The report.
    let report = report(&out, &results, &a, &seeds)?;
    cloze_models::hf::write_atomic(&report_path, report.as_bytes())
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!("{report}");
    println!(
        "report: {} ({} steps run in {:.1} min)",
        report_path.display(),
        steps.ran(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// `--set model.*` flags giving a fresh model MiniLM's shape.
fn scratch_shape(minilm: &Path) -> Result<Vec<String>> {
    let c = cloze_models::hf::read_config(minilm)?;
    let m = cloze_train::bert::model_section(&c);
    Ok(vec![
        format!("model.hidden_size={}", m.hidden_size),
        format!("model.num_hidden_layers={}", m.num_hidden_layers),
        format!("model.num_attention_heads={}", m.num_attention_heads),
        format!("model.intermediate_size={}", m.intermediate_size),
        format!(
            "model.max_position_embeddings={}",
            m.max_position_embeddings
        ),
        format!("model.type_vocab_size={}", m.type_vocab_size),
        format!("model.hidden_dropout_prob={}", m.hidden_dropout_prob),
        format!(
            "model.attention_probs_dropout_prob={}",
            m.attention_probs_dropout_prob
        ),
        format!("model.initializer_range={}", m.initializer_range),
        format!("model.layer_norm_eps={:e}", m.layer_norm_eps),
        "init.scheme=hf".into(),
    ])
}

fn pretrain(
    steps: &mut Steps,
    out: &Path,
    results: &Path,
    a: &ContinuedArgs,
    arm: &str,
    seed: u64,
    shape: &[String],
) -> Result<()> {
    let name = format!("{arm}-seed{seed}");
    let run = out.join("pretrain").join(&name);
    let result = results.join("pretrain").join(format!("{name}.json"));
    let step = format!("pretrain/{name}");
    if run.join("model").join("config.json").exists() {
        steps.skip(&step);
        return Ok(());
    }
    let args = if has_checkpoint(&run) {
        let mut v = os_args(["pretrain", "--resume"]);
        v.push(run.clone().into_os_string());
        v
    } else {
        let mut v = os_args(["pretrain", "--config", "bert-tiny", "--data"]);
        v.push(out.join("data").into_os_string());
        v.push("--out".into());
        v.push(run.clone().into_os_string());
        let lr = if arm == "continued" {
            a.lr_continued
        } else {
            a.lr_scratch
        };
        let warmup = (a.steps / 10).max(1);
        v.extend(os_args([
            "--force".to_string(),
            "--max-steps".into(),
            a.steps.to_string(),
            "--batch-size".into(),
            a.batch_size.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--lr".into(),
            format!("{lr:e}"),
            "--precision".into(),
            precision_of(a).to_string(),
            "--set".into(),
            format!("schedule.warmup_steps={warmup}"),
            "--set".into(),
            format!("eval.every_steps={}", a.steps),
            "--set".into(),
            format!("checkpoint.every_steps={}", (a.steps / 4).max(1)),
        ]));
        if arm == "continued" {
            v.extend(os_args(["--init-from", "minilm"]));
        } else {
            for s in shape {
                v.push("--set".into());
                v.push(s.into());
            }
        }
        v
    };
    let (_, seconds) = steps.run(&step, &args, false)?;
    let previous = read_json(&result)
        .ok()
        .and_then(|r| r.get("seconds").and_then(Value::as_f64))
        .unwrap_or(0.0);
    save(&result, &json!({"seconds": previous + seconds}))
}

/// Up to `n` paraphrase pairs from WordNet 3.0's data files: an example
/// sentence of a synset, and the same sentence with the synset's word it
/// uses replaced by another word of the synset ("he needs a car to get to
/// work" / "he needs an automobile ..." without fixing the article). Pairs
/// are taken evenly spaced over all candidates (nouns, verbs, adjectives,
/// adverbs in file order), so the selection is fixed.
pub fn wordnet_paraphrases(dir: &Path, n: usize) -> Result<Vec<Rewrite>> {
    let mut all = Vec::new();
    for pos in ["noun", "verb", "adj", "adv"] {
        let path = dir.join(format!("data.{pos}"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| !l.starts_with("  ")) {
            let Some((head, gloss)) = line.split_once(" | ") else {
                continue;
            };
            let fields: Vec<&str> = head.split(' ').collect();
            let Some(count) = fields
                .get(3)
                .and_then(|c| usize::from_str_radix(c, 16).ok())
            else {
                continue;
            };
            let mut lemmas: Vec<String> = Vec::new();
            for k in 0..count {
                if let Some(w) = fields.get(4 + 2 * k) {
                    let w = w
                        .split('(')
                        .next()
                        .unwrap_or(w)
                        .replace('_', " ")
                        .to_lowercase();
                    if !lemmas.contains(&w) {
                        lemmas.push(w);
                    }
                }
            }
            if lemmas.len() < 2 {
                continue;
            }
            for example in gloss.split('"').skip(1).step_by(2) {
                let example = example.trim();
                if example.split_whitespace().count() < 5 {
                    continue;
                }
                if let Some(pair) = substitute(example, &lemmas) {
                    all.push(pair);
                }
            }
        }
    }
    if all.len() < 2 {
        bail!(
            "WordNet in {} gave {} paraphrase pairs",
            dir.display(),
            all.len()
        );
    }
    let n = n.min(all.len());
    let mut picked: Vec<Rewrite> = (0..n).map(|i| all[i * all.len() / n].clone()).collect();
    picked.dedup_by(|x, y| x.example == y.example);
    Ok(picked)
}

/// One example sentence and where its synset word sits.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewrite {
    /// The sentence as WordNet gives it.
    pub example: String,
    /// Byte range of the synset's word in it.
    pub at: std::ops::Range<usize>,
    /// Another word of the same synset.
    pub synonym: String,
}

impl Rewrite {
    /// The example with its word replaced by `word`.
    pub fn with(&self, word: &str) -> String {
        format!(
            "{}{word}{}",
            &self.example[..self.at.start],
            &self.example[self.at.end..]
        )
    }
}

/// The example with the first lemma it contains (as whole words) located,
/// and another lemma of the synset that neither contains it nor is
/// contained in it as the synonym.
fn substitute(example: &str, lemmas: &[String]) -> Option<Rewrite> {
    let lower = example.to_lowercase();
    if lower.len() != example.len() {
        return None;
    }
    for a in lemmas {
        let Some(at) = find_word(&lower, a) else {
            continue;
        };
        let b = lemmas
            .iter()
            .find(|b| *b != a && !b.contains(a.as_str()) && !a.contains(b.as_str()))?;
        return Some(Rewrite {
            example: example.to_string(),
            at: at..at + a.len(),
            synonym: b.clone(),
        });
    }
    None
}

/// The byte offset of `word` in `text` as a whole word (not inside another).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        if !is_word(before) && !is_word(after) {
            return Some(at);
        }
        from = at + word.len().max(1);
        while !text.is_char_boundary(from) {
            from += 1;
        }
    }
    None
}

/// Paraphrase metrics of one model from its embeddings of the three sides
/// in `emb` (`NAME-{a,b,c}.safetensors`): the mean cosine of an example with
/// its synonym rewrite, the mean cosine with its random-word rewrite, and how
/// often the synonym rewrite is the closer of the two.
fn paraphrase_metrics(emb: &Path, name: &str) -> Result<(f64, f64, f64)> {
    let load = |side: &str| -> Result<Tensor> {
        super::compress::unit_embeddings(&emb.join(format!("{name}-{side}.safetensors")))
    };
    let (a, b, c) = (load("a")?, load("b")?, load("c")?);
    let cos = |x: &Tensor| -> Result<Tensor> {
        Ok(a.f_mul(x)?
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Double)?)
    };
    let (ab, ac) = (cos(&b)?, cos(&c)?);
    let mean = |t: &Tensor| -> Result<f64> { Ok(t.f_mean(Kind::Double)?.f_double_value(&[])?) };
    let preferred = mean(&ab.f_gt_tensor(&ac)?.f_to_kind(Kind::Double)?)?;
    Ok((mean(&ab)?, mean(&ac)?, preferred))
}

fn value_at(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

fn report(out: &Path, results: &Path, a: &ContinuedArgs, seeds: &[u64]) -> Result<String> {
    let emb = out.join("embeddings");
    let mut rows = Vec::new();
    let (pc, rc, h1) = paraphrase_metrics(&emb, "minilm")?;
    rows.push(vec![
        "all-MiniLM-L6-v2 as published".to_string(),
        "-".into(),
        "n/a (no MLM head)".into(),
        "n/a".into(),
        format!("{pc:.3}"),
        format!("{rc:.3}"),
        format!("{:.1}", h1 * 100.0),
        "-".into(),
    ]);
    let mut unigram = Vec::new();
    for arm in ARMS {
        let (mut acc, mut ppl, mut p, mut r, mut h, mut secs) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for seed in seeds {
            let name = format!("{arm}-seed{seed}");
            let eval = read_json(&results.join("eval").join(format!("{name}.json")))?;
            acc.extend(value_at(&eval, "/output/accuracies/mlm@mask"));
            ppl.extend(value_at(&eval, "/output/losses/mlm").map(f64::exp));
            unigram.extend(value_at(&eval, "/output/accuracies/unigram@mask"));
            let (x, y, z) = paraphrase_metrics(&emb, &name)?;
            p.push(x);
            r.push(y);
            h.push(z);
            if let Ok(t) = read_json(&results.join("pretrain").join(format!("{name}.json"))) {
                secs.extend(value_at(&t, "/seconds"));
            }
        }
        let (label, lr) = if *arm == "continued" {
            ("MiniLM + MLM on SOTU (continued)", a.lr_continued)
        } else {
            ("same architecture from scratch", a.lr_scratch)
        };
        rows.push(vec![
            label.to_string(),
            format!("{lr:e}"),
            cell(&acc, 100.0, 1),
            cell(&ppl, 1.0, 1),
            cell(&p, 1.0, 3),
            cell(&r, 1.0, 3),
            cell(&h, 100.0, 1),
            cell(&secs, 1.0 / 60.0, 1),
        ]);
    }
    let table = markdown_table(
        &[
            "model",
            "peak lr",
            "held-out acc. at [MASK] (%)",
            "held-out perplexity",
            "cosine, synonym rewrite",
            "cosine, random-word rewrite",
            "synonym closer (%)",
            "train min",
        ],
        &[false, true, true, true, true, true, true, true],
        &rows,
    );
    let n_pairs = std::fs::read_to_string(out.join("paraphrases").join("a.txt"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    Ok(format!(
        "# Continued pretraining vs from scratch\n\n\
         {steps} steps of {batch} packed sequences (<= 128 tokens) of State of the Union text, \
         {prec}, seeds {seeds:?} (mean ± sample sd). Held-out: the 5% of speeches left out of \
         training, scored by `cloze eval` on the same masks for every model; the unigram \
         baseline there is {uni}%. Paraphrases: {n_pairs} WordNet example sentences, each compared \
         (cosine of mean-pooled embeddings) with itself rewritten twice: its synset's word \
         replaced by a synonym from the synset, and by another example's synonym (a random \
         word); both rewrites share every other word, so only the meaning of one word \
         separates them. \"Synonym closer\" counts how often the synonym rewrite is nearer.\n\n{table}",
        steps = a.steps,
        batch = a.batch_size,
        prec = precision_of(a),
        uni = cell(&unigram, 100.0, 1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synonym_replaces_a_whole_word_only() {
        let lemmas = vec!["car".to_string(), "automobile".to_string()];
        let r = substitute("the scar on his car was deep", &lemmas).expect("car is found");
        assert_eq!(r.with(&r.synonym), "the scar on his automobile was deep");
        assert_eq!(r.with("horse"), "the scar on his horse was deep");
        assert!(substitute("a scary carpet indeed here", &lemmas).is_none());
        assert_eq!(find_word("car-park car", "car"), Some(9));
    }
}
