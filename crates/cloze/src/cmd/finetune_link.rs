//! `cloze finetune --task link`: MLMLM (Clouatre et al. 2021) training of a
//! masked LM on a knowledge graph's training triples, both directions, the
//! asked entity's tokens all masked (`cloze_train::link`), on the same loop
//! and run-directory rules as the other fine-tuning tasks (`finetune.rs`
//! checks the directory and dispatches here): `finetune.toml`,
//! `metrics.jsonl`, checkpoints, `--resume`, Ctrl-C.
//!
//! `--train` names the graph: a directory of `train.txt`/`valid.txt`/
//! `test.txt` (and optionally `entities.tsv`) or a cached graph dataset
//! (`umls`, `nations`, `kinships`, `wn18rr-style`, ...). Every evaluation
//! ranks the first [`DEV_TRIPLES`] valid triples in both directions; the
//! checkpoint with the highest filtered MRR becomes `model/`, an HF
//! `BertForMaskedLM` with the base model's tokenizer, for `cloze kg eval`
//! and `cloze kg predict`. The base model may lack an MLM head (a sentence
//! encoder such as all-MiniLM-L6-v2): the head is then created, seeded, with
//! its decoder tied to the word embeddings.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cloze_eval::kg_score::{LinkTexts, TextLimits};
use cloze_eval::ModelTokenizer;
use cloze_mask::link::SlotLayout;
use cloze_text::kg::KnowledgeGraph;
use cloze_train::link::{LinkEval, LinkExample, LinkSource};
use cloze_train::trainer::HeldOut;
use cloze_train::BertPretrainer;

use super::finetune::{run_kind, train_and_export, Started, RUN_FILES};
use crate::cmd::run_dir::{self, shell_word};

/// Valid triples ranked at each evaluation during training (the first ones
/// in file order): enough to choose a checkpoint, few enough that scoring a
/// large graph's every entity stays a small share of the run.
pub const DEV_TRIPLES: usize = 500;

/// A graph and its texts tokenized for a model.
pub struct GraphTexts {
    /// The graph.
    pub graph: KnowledgeGraph,
    /// Its entity and relation texts as token ids.
    pub texts: LinkTexts,
    /// The row layout of the model's tokenizer.
    pub layout: SlotLayout,
    /// The model's tokenizer.
    pub tok: ModelTokenizer,
}

/// Loads the graph in `dir` and tokenizes its texts with the tokenizer of
/// `model_dir`, checking that the longest row fits `positions`.
pub fn graph_texts(dir: &Path, model_dir: &Path, positions: usize) -> Result<GraphTexts> {
    let graph = KnowledgeGraph::load(dir)
        .with_context(|| format!("reading the knowledge graph in {}", dir.display()))?;
    let limits = TextLimits::default();
    let tok = ModelTokenizer::from_dir(model_dir, positions)?;
    let labels: Vec<String> = (0..graph.entities.len() as u32)
        .map(|e| graph.entity_text(e))
        .collect();
    let descriptions: Vec<Option<String>> = (0..graph.entities.len() as u32)
        .map(|e| graph.entity_description(e).map(str::to_owned))
        .collect();
    let relations: Vec<String> = (0..graph.relations.len() as u32)
        .map(|r| graph.relation_text(r))
        .collect();
    let texts = LinkTexts::tokenize(&tok, &labels, &descriptions, &relations, limits)
        .with_context(|| format!("tokenizing the texts of {}", dir.display()))?;
    if texts.longest_row() > positions {
        bail!(
            "{} has {positions} positions, fewer than the {} tokens of the longest triple row of {}",
            model_dir.display(),
            texts.longest_row(),
            dir.display()
        );
    }
    let layout = SlotLayout {
        cls: tok.cls,
        sep: tok.sep,
        mask: tok.mask_id()?,
        pad: tok.pad,
    };
    Ok(GraphTexts {
        graph,
        texts,
        layout,
        tok,
    })
}

/// Runs the link-prediction fine-tuning that `finetune::run` dispatched.
pub fn run(s: Started, test: Option<&Path>) -> Result<()> {
    let Started {
        cfg,
        out_guard,
        mut lock,
        run_dir,
        resuming,
    } = s;
    if let Some(t) = test {
        bail!(
            "--test {} scores classifiers; rank the graph's test split with \
             `cloze kg eval --model {}/model --graph {}`",
            t.display(),
            shell_word(&run_dir),
            shell_word(&cfg.task.train)
        );
    }
    // 1. Graph, texts and model, checked before the run directory is touched.
    let base = cfg.task.base_model.clone();
    let base_config = cloze_models::hf::read_config(&base)
        .with_context(|| format!("reading the base model in {}", base.display()))?;
    let positions = usize::try_from(base_config.max_position_embeddings).unwrap_or(0);
    let g = graph_texts(&cfg.task.train, &base, positions)?;
    let examples = LinkExample::both_directions(&g.graph.train);
    let loop_cfg = cfg.loop_config(examples.len())?;
    let (mut model, init) =
        BertPretrainer::from_checkpoint(&base, false, cfg.run.seed, &[], tch::Device::Cpu)
            .with_context(|| format!("loading {}", base.display()))?;
    model.precision = cfg.run.precision;
    super::pretrain::warn_if_bf16_is_emulated(cfg.run.precision);
    let dev: Vec<_> = g.graph.valid.iter().take(DEV_TRIPLES).copied().collect();
    let eval = LinkEval::new(
        dev,
        g.graph.known_answers(),
        g.texts.clone(),
        g.layout,
        model.config.vocab_size,
        model.config.max_position_embeddings,
        cfg.eval.batch_size,
    );

    // 2. The run directory, then the loop.
    if let Some(guard) = &out_guard {
        lock = Some(run_dir::start(guard, &run_dir, &run_kind(), RUN_FILES)?);
    }
    if !resuming {
        for n in init.notices() {
            eprintln!("{n}");
        }
    }
    eprintln!(
        "fine-tuning for link prediction on {} ({} entities, {} relations): {} training \
         questions (both directions of {} triples) for {} steps; each evaluation ranks {} valid \
         triples",
        cfg.task.train.display(),
        g.graph.entities.len(),
        g.graph.relations.len(),
        examples.len(),
        g.graph.train.len(),
        loop_cfg.run.max_steps,
        g.graph.valid.len().min(DEV_TRIPLES)
    );
    let source = LinkSource::new(examples, g.texts, g.layout, cfg.run.seed);
    let result = train_and_export(
        &model,
        loop_cfg,
        resuming,
        &run_dir,
        &base,
        true,
        &source,
        Some(&eval as &dyn HeldOut),
    )
    .map(|done| {
        match done.best {
            Some((step, score)) => println!(
                "best valid filtered MRR {:.4} at step {step}; model (HuggingFace \
                 BertForMaskedLM, with tokenizer): {}",
                -score,
                done.model_dir.display()
            ),
            None => println!(
                "model of the last step (HuggingFace BertForMaskedLM, with tokenizer): {}",
                done.model_dir.display()
            ),
        }
        println!(
            "rank the test split with: cloze kg eval --model {} --graph {}",
            shell_word(&done.model_dir),
            shell_word(&cfg.task.train)
        );
    });
    drop(lock);
    drop(out_guard);
    result
}
