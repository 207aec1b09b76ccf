//! `cloze kg`: knowledge-graph link prediction with a masked LM (MLMLM,
//! Clouatre et al. 2021) and its baselines.
//!
//! - `cloze kg eval --model DIR --graph G`: ranks every entity for both
//!   directions of each test (or valid) triple by the mean log-likelihood of
//!   its tokens (`cloze_eval::kg_score`), and prints raw and filtered MR,
//!   MRR and Hits@1/3/10 for head, tail and both, with the wall time and the
//!   rows run through the model. `--per-candidate` runs the naive scorer
//!   (one row per query and candidate) instead, for the timing comparison.
//! - `cloze kg baseline --graph G --method frequency|distmult|complex`: the
//!   same table for a baseline trained here.
//! - `cloze kg predict --model DIR --graph G --head TEXT --relation TEXT`
//!   (or `--tail TEXT` for the head): the top-k entities of the graph, and any
//!   `--candidate TEXT`, for a query whose entity may be new text.
//!
//! A model trained with `cloze finetune --task link` is the usual `--model`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cloze_eval::kg_rank::HITS_AT;
use cloze_eval::kg_score::{MlmLinkScorer, Scoring};
use cloze_eval::link::{
    evaluate_links, Direction, FrequencyBaseline, LinkMetrics, LinkQuery, LinkScorer,
};
use cloze_models::Precision;
use cloze_text::kg::{KnowledgeGraph, Split};
use cloze_train::kge::{KgeConfig, KgeKind, KgeModel};
use tch::Device;

use super::finetune_link::{graph_texts, GraphTexts};

/// Arguments of `cloze kg`.
#[derive(Debug, Args)]
pub struct KgArgs {
    #[command(subcommand)]
    command: KgCommand,
}

#[derive(Debug, Subcommand)]
enum KgCommand {
    /// Raw and filtered MR, MRR and Hits@k of a masked LM on a graph's test or valid split.
    Eval(EvalArgs),
    /// The same table for a frequency or embedding (DistMult, ComplEx) baseline trained here.
    Baseline(BaselineArgs),
    /// The top-k entities for one query; its entity may be any text.
    Predict(PredictArgs),
}

/// The split to rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SplitArg {
    Valid,
    Test,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Valid => Split::Valid,
            SplitArg::Test => Split::Test,
        }
    }
}

#[derive(Debug, Args)]
struct GraphArgs {
    /// The graph: a directory of train.txt/valid.txt/test.txt (tab-separated
    /// head, relation, tail; optional entities.tsv) or a cached graph dataset
    /// (umls, nations, kinships, wn18rr-style, wn18rr-style-zeroshot).
    #[arg(long)]
    graph: String,
    /// The split ranked.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Rank only the first N triples of the split (both directions each).
    #[arg(long)]
    limit: Option<usize>,
    /// Print the metrics as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// A masked LM (HF format with tokenizer), e.g. RUN/model of `cloze finetune --task link`.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    graph: GraphArgs,
    /// Rows (sequences) per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Score with one row per query and candidate (the naive reference)
    /// instead of one per query and candidate length.
    #[arg(long)]
    per_candidate: bool,
    /// fp32, bf16 (weights cast once) or int8 (int8 linears, CPU only);
    /// log-probabilities in fp32.
    #[arg(long, default_value_t = Precision::Fp32)]
    precision: Precision,
}

/// A baseline method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// How often an entity fills the asked end of the relation in training.
    Frequency,
    /// DistMult (Yang et al. 2015) trained here (`cloze_train::kge`).
    Distmult,
    /// ComplEx (Trouillon et al. 2016) with N3 (Lacroix et al. 2018), trained here.
    Complex,
}

#[derive(Debug, Args)]
struct BaselineArgs {
    #[command(flatten)]
    graph: GraphArgs,
    /// The baseline.
    #[arg(long, value_enum)]
    method: Method,
    /// Seed of an embedding model's initialisation and query order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs of an embedding model (default: the preset's, 100).
    #[arg(long)]
    epochs: Option<usize>,
    /// Embedding size (default: the preset's, 200).
    #[arg(long)]
    dim: Option<usize>,
    /// Save the trained embeddings here (kge.safetensors + kge.json).
    #[arg(long)]
    save: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PredictArgs {
    /// A masked LM (HF format with tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// The graph whose entities are ranked.
    #[arg(long)]
    graph: String,
    /// The head entity's text (asks for the tail).
    #[arg(long, conflicts_with = "tail", required_unless_present = "tail")]
    head: Option<String>,
    /// The tail entity's text (asks for the head).
    #[arg(long)]
    tail: Option<String>,
    /// The relation: a relation name of the graph, its readable text, or any text.
    #[arg(long)]
    relation: String,
    /// Also rank this text as a candidate (repeatable): an entity the graph lacks.
    #[arg(long = "candidate")]
    candidates: Vec<String>,
    /// How many entities to print.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

/// Runs `cloze kg`.
pub fn run(a: KgArgs) -> Result<()> {
    match a.command {
        KgCommand::Eval(e) => eval(e),
        KgCommand::Baseline(b) => baseline(b),
        KgCommand::Predict(p) => predict(p),
    }
}

/// The graph directory of a `--graph` argument.
fn graph_dir(arg: &str) -> Result<PathBuf> {
    super::data::resolve(arg, "graph")
}

fn eval(a: EvalArgs) -> Result<()> {
    let dir = graph_dir(&a.graph.graph)?;
    let loaded = super::fill_mask::load_mlm(&a.model, Device::Cpu, a.precision)?;
    let positions = usize::try_from(loaded.config.max_position_embeddings).unwrap_or(0);
    let GraphTexts {
        graph,
        texts,
        layout,
        ..
    } = graph_texts(&dir, &a.model, positions)?;
    let scoring = if a.per_candidate {
        Scoring::PerCandidate
    } else {
        Scoring::ByLength
    };
    let scorer = MlmLinkScorer::new(
        &loaded.model,
        layout,
        texts,
        a.batch_size,
        scoring,
        Device::Cpu,
    )?;
    let triples = split_triples(&graph, &a.graph)?;
    let started = Instant::now();
    let metrics = evaluate_links(&scorer, &triples, &graph.known_answers(), a.batch_size)?;
    let seconds = started.elapsed().as_secs_f64();
    let counts = scorer.counts();
    let lengths = scorer.candidate_lengths();
    let extra = serde_json::json!({
        "model": a.model,
        "scoring": if a.per_candidate { "per_candidate" } else { "by_length" },
        "candidate_lengths": lengths,
        "candidates_per_length": scorer.candidates_per_length(),
        "rows": counts.rows,
        "forward_batches": counts.batches,
        "rows_per_query": counts.rows as f64 / counts.queries.max(1) as f64,
    });
    print_metrics(
        &a.graph,
        &dir,
        &graph,
        triples.len(),
        &metrics,
        seconds,
        extra,
    )?;
    if !a.graph.json {
        println!(
            "{} rows through the model in {} batches: {:.1} per query ({} distinct candidate lengths, {} candidates)",
            counts.rows,
            counts.batches,
            counts.rows as f64 / counts.queries.max(1) as f64,
            lengths.len(),
            graph.entities.len()
        );
    }
    Ok(())
}

fn baseline(a: BaselineArgs) -> Result<()> {
    let dir = graph_dir(&a.graph.graph)?;
    let graph = KnowledgeGraph::load(&dir)
        .with_context(|| format!("reading the knowledge graph in {}", dir.display()))?;
    let triples = split_triples(&graph, &a.graph)?;
    let known = graph.known_answers();
    let started = Instant::now();
    let (metrics, name, train_seconds) = match a.method {
        Method::Frequency => {
            let f = FrequencyBaseline::new(&graph);
            let train = started.elapsed().as_secs_f64();
            (
                evaluate_links(&f, &triples, &known, 256)?,
                "frequency",
                train,
            )
        }
        Method::Distmult | Method::Complex => {
            let kind = if a.method == Method::Distmult {
                KgeKind::DistMult
            } else {
                KgeKind::ComplEx
            };
            let mut config = KgeConfig::preset(kind);
            config.seed = a.seed;
            if let Some(e) = a.epochs {
                config.epochs = e;
            }
            if let Some(d) = a.dim {
                config.dim = d;
            }
            let bar = indicatif::ProgressBar::new(config.epochs as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] epoch {pos}/{len} {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(kind.name());
            let run = KgeModel::train(&graph, &config, Device::Cpu, &mut |p| {
                bar.set_position(p.epoch as u64);
                if let Some(m) = p.valid_mrr {
                    tracing::debug!(epoch = p.epoch, loss = p.loss, valid_mrr = m, "kge");
                }
            })?;
            bar.finish_and_clear();
            eprintln!(
                "{}: kept epoch {} of {} (valid filtered MRR {}), {:.1} s",
                kind.name(),
                run.kept_epoch,
                config.epochs,
                run.kept_valid_mrr.map_or("-".into(), |m| format!("{m:.4}")),
                run.seconds
            );
            if let Some(dir) = &a.save {
                run.model.save(dir)?;
            }
            let train = started.elapsed().as_secs_f64();
            (
                evaluate_links(&run.model, &triples, &known, 512)?,
                kind.name(),
                train,
            )
        }
    };
    let seconds = started.elapsed().as_secs_f64() - train_seconds;
    let extra = serde_json::json!({ "method": name, "train_seconds": train_seconds });
    print_metrics(
        &a.graph,
        &dir,
        &graph,
        triples.len(),
        &metrics,
        seconds,
        extra,
    )
}

fn split_triples(graph: &KnowledgeGraph, a: &GraphArgs) -> Result<Vec<cloze_text::kg::Triple>> {
    let all = graph.split(a.split.into());
    let n = a.limit.unwrap_or(all.len()).min(all.len());
    if n == 0 {
        bail!("no triples to rank (--limit 0 or an empty split)");
    }
    Ok(all[..n].to_vec())
}

/// Prints the table (or JSON) of `metrics`.
fn print_metrics(
    a: &GraphArgs,
    dir: &std::path::Path,
    graph: &KnowledgeGraph,
    triples: usize,
    metrics: &LinkMetrics,
    seconds: f64,
    extra: serde_json::Value,
) -> Result<()> {
    let split = match a.split {
        SplitArg::Valid => "valid",
        SplitArg::Test => "test",
    };
    let unseen = graph.unseen_in_training(a.split.into()).len();
    if a.json {
        let mut v = serde_json::json!({
            "graph": dir,
            "split": split,
            "triples": triples,
            "entities": graph.entities.len(),
            "unseen_entities": unseen,
            "seconds": seconds,
            "metrics": metrics.report(),
        });
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!(
        "{} {split}: {triples} triples, both directions, {} candidate entities ({unseen} never in training); \
         ties at their mean rank; {seconds:.1} s",
        dir.display(),
        graph.entities.len()
    );
    println!("| direction | setting | MR | MRR | Hits@1 | Hits@3 | Hits@10 |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let both = metrics.both();
    for (name, ranks) in [
        ("both", &both),
        ("head", &metrics.head),
        ("tail", &metrics.tail),
    ] {
        for (setting, s) in [("filtered", &ranks.filtered), ("raw", &ranks.raw)] {
            let hits: Vec<String> = HITS_AT
                .iter()
                .map(|&k| format!("{:.4}", s.hits(k).unwrap_or(f64::NAN)))
                .collect();
            println!(
                "| {name} | {setting} | {:.2} | {:.4} | {} |",
                s.mr(),
                s.mrr(),
                hits.join(" | ")
            );
        }
    }
    Ok(())
}

fn predict(a: PredictArgs) -> Result<()> {
    let dir = graph_dir(&a.graph)?;
    let loaded = super::fill_mask::load_mlm(&a.model, Device::Cpu, Precision::Fp32)?;
    let positions = usize::try_from(loaded.config.max_position_embeddings).unwrap_or(0);
    let GraphTexts {
        graph,
        mut texts,
        layout,
        tok,
    } = graph_texts(&dir, &a.model, positions)?;
    if a.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    // The query's entity and relation become one more entity and relation
    // text; graph names are matched first so a known relation reads as in
    // training.
    let strip = |text: &str| -> Result<Vec<u32>> {
        let ids = tok.encode_batch(&[text])?.pop().unwrap_or_default();
        let inner = ids
            .get(1..ids.len().saturating_sub(1))
            .unwrap_or(&[])
            .to_vec();
        if inner.is_empty() {
            bail!("{text:?} has no token under the model's tokenizer");
        }
        Ok(inner)
    };
    let relation_id = graph
        .relations
        .iter()
        .position(|r| *r == a.relation || cloze_text::kg::readable_name(r) == a.relation);
    let relation = match relation_id {
        Some(r) => r as u32,
        None => {
            texts.relations.push(strip(&a.relation)?);
            (texts.relations.len() - 1) as u32
        }
    };
    let (given, direction) = match (&a.head, &a.tail) {
        (Some(h), None) => (h.as_str(), Direction::Tail),
        (None, Some(t)) => (t.as_str(), Direction::Head),
        _ => bail!("give exactly one of --head and --tail"),
    };
    let known = match (0..graph.entities.len())
        .find(|&e| graph.entities[e] == given || graph.entity_text(e as u32) == given)
    {
        Some(e) => e as u32,
        None => {
            let mut ids = strip(given)?;
            ids.truncate(cloze_eval::kg_score::TextLimits::default().max_context);
            texts.contexts.push(ids.clone());
            texts.slots.push(ids);
            (texts.slots.len() - 1) as u32
        }
    };
    let mut names: Vec<String> = (0..graph.entities.len() as u32)
        .map(|e| graph.entity_text(e))
        .collect();
    names.resize(texts.slots.len(), String::new());
    if let Some(n) = names.get_mut(known as usize) {
        if n.is_empty() {
            *n = given.to_owned();
        }
    }
    for c in &a.candidates {
        let mut ids = strip(c)?;
        ids.truncate(cloze_eval::kg_score::TextLimits::default().max_slot);
        texts.contexts.push(ids.clone());
        texts.slots.push(ids);
        names.push(c.clone());
    }
    let scorer = MlmLinkScorer::new(
        &loaded.model,
        layout,
        texts,
        a.batch_size,
        Scoring::ByLength,
        Device::Cpu,
    )?;
    let q = LinkQuery {
        known,
        relation,
        direction,
    };
    let scores = scorer.score(&[q])?.pop().unwrap_or_default();
    let mut order: Vec<usize> = (0..scores.len()).filter(|&e| e != known as usize).collect();
    order.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]).then(x.cmp(&y)));
    let new_from = graph.entities.len();
    for (rank, &e) in order.iter().take(a.top_k).enumerate() {
        let tag = if e >= new_from {
            " (not in the graph)"
        } else {
            ""
        };
        println!(
            "{:>3}. {:<40} {:>9.4}{tag}",
            rank + 1,
            names.get(e).map(String::as_str).unwrap_or(""),
            scores[e]
        );
    }
    for (i, c) in a.candidates.iter().enumerate() {
        let e = scores.len() - a.candidates.len() + i;
        if let Some(r) = order.iter().position(|&x| x == e) {
            println!(
                "candidate {c:?}: rank {} of {}, score {:.4}",
                r + 1,
                order.len(),
                scores[e]
            );
        }
    }
    Ok(())
}
