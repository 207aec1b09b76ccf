//! `cloze experiment mlmlm`: MLMLM (Clouatre et al. 2021) against its
//! baselines on the knowledge graphs reachable here.
//!
//! For each graph (UMLS, Nations, Kinships as the no-lexical-signal control,
//! the WN18RR-style graph built from WordNet and its zero-shot variant):
//!
//! - the frequency baseline (`cloze kg baseline --method frequency`);
//! - DistMult and ComplEx trained on the same split (`cloze kg baseline`);
//! - a masked LM (all-MiniLM-L6-v2 by default, its MLM head created)
//!   fine-tuned on the training triples (`cloze finetune --task link`) and
//!   ranked by the mean log-likelihood of each entity's tokens (`cloze kg
//!   eval`);
//!
//! all scored by filtered MR, MRR and Hits@1/3/10 on the test split, both
//! directions, ties at their mean rank, with training and evaluation wall
//! times. On the first graph the grouped scorer is also timed against the
//! naive one-row-per-candidate scorer on the same triples.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_fs::OutputKind;
use serde_json::{json, Value};

use super::report::{cell, markdown_table};
use super::{capture_once, os_args, read_json, resume_or, save, Steps};

/// Arguments of `cloze experiment mlmlm`.
#[derive(Debug, Args)]
pub struct MlmlmArgs {
    /// The experiment directory; running the command again continues it.
    #[arg(long, default_value = "runs/mlmlm")]
    pub out: PathBuf,
    /// The graphs (cached dataset names or graph directories), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "umls,nations,kinships,wn18rr-style,wn18rr-style-zeroshot"
    )]
    pub graphs: Vec<String>,
    /// The masked LM fine-tuned on each graph (a model directory or a cached
    /// checkpoint name).
    #[arg(long, default_value = "minilm")]
    pub model: String,
    /// Seeds of every trained method (seeds 1..=N).
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Passes over a graph's training questions (both directions of each
    /// triple) for the masked LM ...
    #[arg(long, default_value_t = 5.0)]
    pub epochs: f64,
    /// ... but at most this many steps ...
    #[arg(long, default_value_t = 1700)]
    pub max_steps: u64,
    /// ... and at most this many on a graph of more than 50,000 training
    /// triples (the WN18RR-style ones: their rows are also about five
    /// times longer, with the gloss of the given entity). On such a graph
    /// the embedding baseline is DistMult alone.
    #[arg(long, default_value_t = 400)]
    pub large_max_steps: u64,
    /// Test triples ranked per graph (the first N of the split; every
    /// method ranks the same ones).
    #[arg(long, default_value_t = 1000)]
    pub test_triples: usize,
    /// Training queries of an embedding baseline (epochs x both directions
    /// of every training triple): the preset's 100 epochs, fewer on a
    /// graph where 100 epochs would exceed this.
    #[arg(long, default_value_t = 600_000)]
    pub kge_queries: u64,
    /// Peak learning rate of the masked LM.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Questions per masked-LM step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Triples of the first graph's test split scored by both scorers for
    /// the timing comparison; fewer where the per-candidate scorer would
    /// score more than 100,000 rows (both directions x every entity), so a
    /// large first graph costs minutes, not hours.
    #[arg(long, default_value_t = 50)]
    pub timing_triples: usize,
    /// Masked-LM training precision; by default bf16 where the CPU
    /// multiplies bf16 in hardware, else fp32.
    #[arg(long)]
    pub precision: Option<cloze_models::Precision>,
    /// Where the Markdown report goes (default OUT/report.md).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Start over: removes what an earlier run of this experiment wrote.
    #[arg(long)]
    pub force: bool,
}

const FILES: &[&str] = &[
    "experiment.json",
    "runs",
    "results",
    "logs",
    "report.md",
    cloze_fs::MARKER,
];

/// The embedding baselines, as `cloze kg baseline --method` names them.
const EMBEDDINGS: &[&str] = &["distmult", "complex"];

fn kind() -> OutputKind {
    OutputKind::new("experiment mlmlm", "--force")
}

fn settings(a: &MlmlmArgs) -> Value {
    json!({
        "experiment": "mlmlm",
        "model": a.model,
        "epochs": a.epochs,
        "max_steps": a.max_steps,
        "large_max_steps": a.large_max_steps,
        "lr": a.lr,
        "batch_size": a.batch_size,
        "test_triples": a.test_triples,
        "kge_queries": a.kge_queries,
        "precision": super::precision_or_default(a.precision).to_string(),
    })
}

/// A file-system-safe name of a graph argument.
fn slug(graph: &str) -> String {
    Path::new(graph)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| graph.to_owned())
}

/// Runs the experiment.
pub fn run(a: MlmlmArgs, threads: Option<usize>) -> Result<()> {
    if a.seeds == 0 || a.graphs.is_empty() || a.batch_size == 0 || a.epochs <= 0.0 {
        bail!("--seeds, --graphs, --batch-size and --epochs must be positive");
    }
    let started = Instant::now();
    let out = a.out.clone();
    let report_path = a.report.clone().unwrap_or_else(|| out.join("report.md"));
    let _lock = super::claim_dir(&out, &kind(), FILES, &settings(&a), a.force)?;
    let seeds: Vec<u64> = (1..=a.seeds).collect();
    let per_graph = 1 + seeds.len() * (EMBEDDINGS.len() + 2);
    let total = 1 + a.graphs.len() * per_graph + 2;
    let mut steps = Steps::new(&out.join("logs"), threads, total)?;
    let results = out.join("results");
    let precision = super::precision_or_default(a.precision).to_string();

    // 1. Every dataset that is a name (graphs and the model).
    let names: Vec<&str> = a
        .graphs
        .iter()
        .map(String::as_str)
        .chain([a.model.as_str()])
        .filter(|g| !Path::new(g).exists())
        .collect();
    if !names.is_empty() {
        steps.run(
            "fetch",
            &os_args(["data", "fetch"].into_iter().chain(names)),
            false,
        )?;
    } else {
        steps.skip("fetch");
    }
    let model = super::super::data::resolve(&a.model, "model")?;

    // 2. Graph by graph: the baselines, then the masked LM.
    for (gi, graph) in a.graphs.iter().enumerate() {
        let g = slug(graph);
        let res = results.join(&g);
        let limit = a.test_triples.to_string();
        let graph_arg = |limit: &str| -> Vec<std::ffi::OsString> {
            os_args(["--graph", graph.as_str(), "--json", "--limit", limit])
        };
        let (train, entities) = graph_size(graph)?;
        let kge_epochs = kge_epochs_for(train, a.kge_queries);
        capture_once(
            &mut steps,
            &format!("{g}/frequency"),
            &res.join("frequency.json"),
            || {
                let mut v = os_args(["kg", "baseline", "--method", "frequency"]);
                v.extend(graph_arg(&limit));
                v
            },
        )?;
        // ComplEx costs twice DistMult's products; on a large graph only
        // DistMult runs, to keep the experiment within hours on two cores.
        let embeddings: &[&str] = if train > LARGE_GRAPH {
            &EMBEDDINGS[..1]
        } else {
            EMBEDDINGS
        };
        for &seed in &seeds {
            for m in embeddings {
                capture_once(
                    &mut steps,
                    &format!("{g}/{m}-seed{seed}"),
                    &res.join(format!("{m}-seed{seed}.json")),
                    || {
                        let mut v = os_args(["kg", "baseline", "--method", m]);
                        v.extend(os_args([
                            "--seed".to_string(),
                            seed.to_string(),
                            "--epochs".into(),
                            kge_epochs.to_string(),
                        ]));
                        v.extend(graph_arg(&limit));
                        v
                    },
                )?;
            }
            let run = out.join("runs").join(format!("{g}-seed{seed}"));
            let trained = res.join(format!("train-seed{seed}.json"));
            if trained.exists() {
                steps.skip(&format!("{g}/train-seed{seed}"));
            } else {
                let max_steps = steps_for(train, &a);
                let args = resume_or("finetune", &run, || {
                    let mut v = os_args(["finetune", "--task", "link", "--model"]);
                    v.push(model.clone().into_os_string());
                    v.extend(os_args([
                        "--train".to_string(),
                        graph.clone(),
                        "--epochs".into(),
                        a.epochs.to_string(),
                        "--lr".into(),
                        a.lr.to_string(),
                        "--batch-size".into(),
                        a.batch_size.to_string(),
                        "--seed".into(),
                        seed.to_string(),
                        "--precision".into(),
                        precision.clone(),
                        "--patience".into(),
                        "0".into(),
                        "--set".into(),
                        format!("run.max_steps={max_steps}"),
                        "--out".into(),
                    ]));
                    v.push(run.clone().into_os_string());
                    v
                });
                let (_, seconds) = steps.run(&format!("{g}/train-seed{seed}"), &args, false)?;
                save(&trained, &json!({"seconds": seconds}))?;
            }
            let model_dir = run.join("model");
            let eval_args = |limit: &str, extra: &[&str]| {
                let mut v = os_args(["kg", "eval", "--model"]);
                v.push(model_dir.clone().into_os_string());
                v.extend(graph_arg(limit));
                v.extend(os_args(extra.iter().copied()));
                v
            };
            capture_once(
                &mut steps,
                &format!("{g}/eval-seed{seed}"),
                &res.join(format!("mlmlm-seed{seed}.json")),
                || eval_args(&limit, &[]),
            )?;
            if gi == 0 && seed == 1 {
                let timing = timing_triples_for(a.timing_triples, entities);
                if timing < a.timing_triples {
                    tracing::info!(
                        "scoring speed: {timing} of the requested {} test triples ({entities} \
                         entities: at most {TIMING_ROWS} per-candidate rows)",
                        a.timing_triples
                    );
                }
                let timing = timing.to_string();
                capture_once(
                    &mut steps,
                    &format!("{g}/timing-grouped"),
                    &res.join("timing-grouped.json"),
                    || eval_args(&timing, &[]),
                )?;
                capture_once(
                    &mut steps,
                    &format!("{g}/timing-per-candidate"),
                    &res.join("timing-per-candidate.json"),
                    || eval_args(&timing, &["--per-candidate"]),
                )?;
            }
        }
    }

    // 3. The report.
    let text = report(&results, &a, &seeds)?;
    cloze_models::hf::write_atomic(&report_path, text.as_bytes())
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!("{text}");
    println!(
        "report: {} ({} steps run in {:.1} min)",
        report_path.display(),
        steps.ran(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// Training triples above which a graph is large (`--large-max-steps`).
const LARGE_GRAPH: usize = 50_000;

/// The masked LM's steps on a graph of `train` triples: `--epochs` passes over its training
/// questions, capped by `--max-steps` (`--large-max-steps` on a large graph).
fn steps_for(train: usize, a: &MlmlmArgs) -> u64 {
    let questions = 2.0 * train as f64;
    let steps = (a.epochs * questions / a.batch_size as f64).ceil() as u64;
    let cap = if train > LARGE_GRAPH {
        a.large_max_steps
    } else {
        a.max_steps
    };
    steps.clamp(1, cap.max(1))
}

/// The training triples and the entities of `graph`.
fn graph_size(graph: &str) -> Result<(usize, usize)> {
    let dir = super::super::data::resolve(graph, "graph")?;
    let g = cloze_text::kg::KnowledgeGraph::load(&dir)
        .with_context(|| format!("reading the knowledge graph in {}", dir.display()))?;
    Ok((g.train.len(), g.entities.len()))
}

/// The most rows the per-candidate scorer of the timing comparison scores.
const TIMING_ROWS: usize = 100_000;

/// Test triples of the timing comparison on a graph of `entities`: the
/// `requested` number, fewer (at least one) where the per-candidate scorer
/// would exceed [`TIMING_ROWS`] rows (two directions, every entity a row).
fn timing_triples_for(requested: usize, entities: usize) -> usize {
    requested.min((TIMING_ROWS / (2 * entities).max(1)).max(1))
}

/// Epochs of an embedding baseline on a graph of `train` triples: the preset's 100, fewer
/// when 100 passes would exceed `budget` training queries.
fn kge_epochs_for(train: usize, budget: u64) -> u64 {
    let per_epoch = (2 * train).max(1) as u64;
    (budget / per_epoch).clamp(1, 100)
}

/// A filtered metric of one stored `kg eval`/`kg baseline` result.
fn metric(v: &Value, name: &str) -> Option<f64> {
    let out = &v["output"]["metrics"];
    out["accuracies"][name]
        .as_f64()
        .or_else(|| out["losses"][name].as_f64())
}

fn report(results: &Path, a: &MlmlmArgs, seeds: &[u64]) -> Result<String> {
    let mut text =
        String::from("# MLMLM: link prediction with a masked LM against its baselines\n\n");
    text.push_str(&format!(
        "Command: `cloze experiment mlmlm --graphs {} --model {} --seeds {} --epochs {} \
         --max-steps {} --large-max-steps {} --lr {} --batch-size {} --test-triples {}`. Filtered ranks on the test split, both \
         directions, ties at their mean rank; mean ± sd over seeds where there are several. \
         Train seconds: wall time of the training step (the masked LM's includes its \
         evaluations on {} valid triples); eval seconds: ranking the test split.\n\n",
        a.graphs.join(","),
        a.model,
        seeds.len(),
        a.epochs,
        a.max_steps,
        a.large_max_steps,
        a.lr,
        a.batch_size,
        a.test_triples,
        super::super::finetune_link::DEV_TRIPLES,
    ));
    for graph in &a.graphs {
        let g = slug(graph);
        let res = results.join(&g);
        let mut rows = Vec::new();
        let mut header_note = String::new();
        let mut methods: Vec<(String, Vec<Value>, Vec<f64>)> = Vec::new();
        if let Ok(v) = read_json(&res.join("frequency.json")) {
            let train = v["output"]["train_seconds"].as_f64().unwrap_or(0.0);
            methods.push(("frequency".into(), vec![v], vec![train]));
        }
        for m in EMBEDDINGS {
            let runs: Vec<Value> = seeds
                .iter()
                .filter_map(|s| read_json(&res.join(format!("{m}-seed{s}.json"))).ok())
                .collect();
            let train = runs
                .iter()
                .filter_map(|v| v["output"]["train_seconds"].as_f64())
                .collect();
            if !runs.is_empty() {
                methods.push(((*m).to_string(), runs, train));
            }
        }
        let mut mlm = Vec::new();
        let mut mlm_train = Vec::new();
        for s in seeds {
            if let Ok(v) = read_json(&res.join(format!("mlmlm-seed{s}.json"))) {
                mlm.push(v);
                if let Ok(t) = read_json(&res.join(format!("train-seed{s}.json"))) {
                    mlm_train.extend(t["seconds"].as_f64());
                }
            }
        }
        if !mlm.is_empty() {
            methods.push((format!("MLMLM ({})", a.model), mlm, mlm_train));
        }
        if let Some((_, runs, _)) = methods.first() {
            let o = &runs[0]["output"];
            header_note = format!(
                "{} entities, {} test triples, {} test entities never in training",
                o["entities"], o["triples"], o["unseen_entities"]
            );
        }
        for (name, runs, train) in &methods {
            let vals = |k: &str| -> Vec<f64> { runs.iter().filter_map(|v| metric(v, k)).collect() };
            let eval: Vec<f64> = runs
                .iter()
                .filter_map(|v| v["output"]["seconds"].as_f64())
                .collect();
            rows.push(vec![
                name.clone(),
                cell(&vals("mr"), 1.0, 1),
                cell(&vals("mrr"), 1.0, 3),
                cell(&vals("hits@1"), 1.0, 3),
                cell(&vals("hits@3"), 1.0, 3),
                cell(&vals("hits@10"), 1.0, 3),
                cell(train, 1.0, 0),
                cell(&eval, 1.0, 1),
            ]);
        }
        text.push_str(&format!("## {g}\n\n{header_note}\n\n"));
        text.push_str(&markdown_table(
            &[
                "method", "MR", "MRR", "Hits@1", "Hits@3", "Hits@10", "train s", "eval s",
            ],
            &[false, true, true, true, true, true, true, true],
            &rows,
        ));
        text.push('\n');
    }
    if let Some(first) = a.graphs.first() {
        let res = results.join(slug(first));
        if let (Ok(grouped), Ok(naive)) = (
            read_json(&res.join("timing-grouped.json")),
            read_json(&res.join("timing-per-candidate.json")),
        ) {
            let secs = |v: &Value| v["output"]["seconds"].as_f64().unwrap_or(f64::NAN);
            let rows = |v: &Value| v["output"]["rows"].as_f64().unwrap_or(f64::NAN);
            text.push_str(&format!(
                "## Scoring speed ({})\n\nThe first {} test triples, both directions, every \
                 entity a candidate, in one run: grouped by candidate length {:.1} s ({} rows), \
                 one row per candidate {:.1} s ({} rows): {:.1}x faster, {:.1}x fewer rows. \
                 Metrics agree: MRR {:.4} and {:.4}.\n",
                slug(first),
                grouped["output"]["triples"]
                    .as_u64()
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                secs(&grouped),
                rows(&grouped),
                secs(&naive),
                rows(&naive),
                secs(&naive) / secs(&grouped),
                rows(&naive) / rows(&grouped),
                metric(&grouped, "mrr").unwrap_or(f64::NAN),
                metric(&naive, "mrr").unwrap_or(f64::NAN),
            ));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timing_comparison_is_capped_on_a_large_graph() {
        // umls (135 entities): the requested 50 triples are 13,500 rows.
        assert_eq!(timing_triples_for(50, 135), 50);
        // 40,533 entities: 81,066 rows per triple, so one triple.
        assert_eq!(timing_triples_for(50, 40_533), 1);
        // 10,000 entities: 5 triples make exactly the 100,000-row cap.
        assert_eq!(timing_triples_for(50, 10_000), 5);
        // Never below one triple, even past the cap; an empty graph is harmless.
        assert_eq!(timing_triples_for(50, 1_000_000), 1);
        assert_eq!(timing_triples_for(3, 0), 3);
    }
}
