//! `cloze dialogue`: PLATO-style dialogue models. `init` writes a randomly
//! initialised model from a preset (`configs/plato-tiny.toml`) and a
//! tokenizer; `cloze finetune --task dialogue` trains it (or any BERT) on
//! `cloze data dialogue` samples; `eval` scores a trained model on held-out
//! samples (response perplexity, hits@1 among candidates, distinct-1/2 of
//! generated responses), or with `--baseline unigram|retrieval --train
//! TRAIN.jsonl` a baseline fitted on the training samples
//! (`cloze_eval::dialogue_baselines`) in the model's tokens and layout, on
//! the same candidate sets; `cloze chat` talks with it.
//!
//! A dialogue model is an HF `BertForMaskedLM` directory whose `config.json`
//! also holds `role_type_size` (the role table, when it has roles) and a
//! `dialogue` object: the `cloze_mask::DialogueConfig` it was trained with,
//! so every command lays out rows exactly as training did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cloze_core::SpecialTokens;
use cloze_eval::dialogue::{
    distinct, hits_at_1_with, perplexity, sample, CandidateScorer, CoherenceScorer, Decoding,
    DialogueDecoder, DialogueScorer, PmiScorer, Sampling,
};
use cloze_eval::dialogue_baselines::{RetrievalBaseline, UnigramBaseline};
use cloze_eval::generate::{beam_search, greedy, GenerateOptions};
use cloze_eval::ModelTokenizer;
use cloze_mask::{DialogueBuilder, DialogueConfig, DialogueExample, RoleScheme};
use cloze_models::{BertConfig, BertForPreTraining};
use serde::{Deserialize, Serialize};

use crate::cmd::run_dir;

/// The key of the dialogue layout in a model's `config.json`.
pub const CONFIG_KEY: &str = "dialogue";

/// Dialogue samples read from `cloze data dialogue` JSON lines.
#[derive(Debug, Default)]
pub struct DialogueSet {
    /// One example per line.
    pub examples: Vec<DialogueExample>,
    /// The dialogue (scene, conversation) of each example.
    pub groups: Vec<String>,
    /// The response text of each example.
    pub responses: Vec<String>,
}

/// One line of `cloze data dialogue` output.
#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    dialogue: String,
    context: Vec<TurnLine>,
    response: TurnLine,
}

#[derive(Debug, Deserialize)]
struct TurnLine {
    speaker: String,
    text: String,
}

/// Turns `text` into token ids without `[CLS]`/`[SEP]`.
pub fn encode_turns(tok: &ModelTokenizer, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
    Ok(tok
        .encode_batch(texts)?
        .into_iter()
        .map(|v| v.get(1..v.len().saturating_sub(1)).unwrap_or(&[]).to_vec())
        .collect())
}

/// Reads `{"dialogue", "context": [{"speaker", "text"}], "response": {...}}`
/// lines (speakers become ids by name, per line).
pub fn read_samples(path: &Path, tok: &ModelTokenizer) -> Result<DialogueSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut set = DialogueSet::default();
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a dialogue sample (`cloze data dialogue` writes \
                 {{\"dialogue\", \"context\": [{{\"speaker\", \"text\"}}], \"response\": {{\"speaker\", \"text\"}}}})",
                path.display(),
                n + 1
            )
        })?;
        lines.push(l);
    }
    if lines.is_empty() {
        bail!("{} holds no dialogue samples", path.display());
    }
    // Every turn text in one tokenizer call.
    let mut texts: Vec<&str> = Vec::new();
    for l in &lines {
        texts.extend(l.context.iter().map(|t| t.text.as_str()));
        texts.push(l.response.text.as_str());
    }
    let mut ids = encode_turns(tok, &texts)?.into_iter();
    for l in lines {
        let mut speakers: HashMap<String, u32> = HashMap::new();
        let mut id_of = |s: &str| -> u32 {
            let next = speakers.len() as u32;
            *speakers.entry(s.to_owned()).or_insert(next)
        };
        let context: Vec<Vec<u32>> = l
            .context
            .iter()
            .map(|_| ids.next().unwrap_or_default())
            .collect();
        let turn_speakers = l.context.iter().map(|t| id_of(&t.speaker)).collect();
        let response = ids.next().unwrap_or_default();
        let responder = id_of(&l.response.speaker);
        set.examples.push(DialogueExample {
            context,
            speakers: turn_speakers,
            response,
            responder,
        });
        set.groups.push(l.dialogue);
        set.responses.push(l.response.text);
    }
    Ok(set)
}

/// The special ids a dialogue builder needs, from the model's tokenizer.
pub fn specials(tok: &ModelTokenizer, vocab_size: i64) -> Result<SpecialTokens> {
    let (mask, unk) = (tok.mask_id()?, tok.token_id("[UNK]")?);
    let mut all = vec![tok.pad, unk, tok.cls, tok.sep, mask];
    let pseudo = tok.token_id("[PSEUDO_MASK]").ok();
    all.extend(pseudo);
    Ok(SpecialTokens {
        vocab_size: u32::try_from(vocab_size).context("vocabulary size")?,
        pad: tok.pad,
        unk,
        cls: tok.cls,
        sep: tok.sep,
        mask,
        pseudo_mask: pseudo,
        all_special: all,
    })
}

/// The layout stored in a model's config, if it is a dialogue model.
pub fn stored_layout(config: &BertConfig) -> Result<Option<DialogueConfig>> {
    config
        .extra
        .get(CONFIG_KEY)
        .map(|v| serde_json::from_value(v.clone()).context("the `dialogue` object of config.json"))
        .transpose()
}

/// Records `layout` in `config` (and the role table it needs).
pub fn store_layout(config: &mut BertConfig, layout: &DialogueConfig) -> Result<()> {
    config
        .extra
        .insert(CONFIG_KEY.to_owned(), serde_json::to_value(layout)?);
    if layout.roles != RoleScheme::None {
        config.role_type_size = Some(i64::from(layout.num_roles));
    }
    Ok(())
}

/// A dialogue model loaded for inference, with its tokenizer and layout.
pub struct Loaded {
    /// Keeps the weights alive.
    pub _vs: tch::nn::VarStore,
    /// The model.
    pub model: BertForPreTraining,
    /// Its tokenizer.
    pub tok: ModelTokenizer,
    /// The row layout it was trained with.
    pub builder: DialogueBuilder,
    /// Whether the checkpoint held the coherence (pair) head.
    pub pair_head: cloze_models::HeadStatus,
}

/// Loads `dir` as a dialogue model (refusing a model with no `dialogue` layout).
pub fn load(dir: &Path) -> Result<Loaded> {
    let loaded = cloze_models::load_pretrained(dir, tch::Device::Cpu)
        .with_context(|| format!("loading {}", dir.display()))?;
    let (tok, builder) = layout_of(dir, &loaded.config)?;
    Ok(Loaded {
        _vs: loaded.vs,
        model: loaded.model,
        tok,
        builder,
        pair_head: loaded.report.pair_head,
    })
}

/// The tokenizer and row layout of the dialogue model in `dir` whose
/// configuration is `config` (refusing a model with no `dialogue` layout).
fn layout_of(dir: &Path, config: &BertConfig) -> Result<(ModelTokenizer, DialogueBuilder)> {
    let Some(layout) = stored_layout(config)? else {
        bail!(
            "{} is not a dialogue model (its config.json has no `dialogue` layout): train one with \
             `cloze finetune --task dialogue`",
            dir.display()
        );
    };
    let tok = ModelTokenizer::from_dir(dir, 512)?;
    let builder = DialogueBuilder::new(layout, specials(&tok, config.vocab_size)?)?;
    Ok((tok, builder))
}

/// `cloze dialogue` subcommands.
#[derive(Debug, Args)]
pub struct DialogueArgs {
    #[command(subcommand)]
    command: DialogueCommand,
}

#[derive(Debug, Subcommand)]
enum DialogueCommand {
    /// Write a randomly initialised dialogue model from a preset and a tokenizer.
    Init(InitArgs),
    /// Held-out response perplexity, hits@1 among candidates, distinct-1/2 of generated responses.
    Eval(EvalArgs),
}

/// The preset file: a `[model]` shape and the role table size.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Preset {
    model: cloze_train::config::ModelConfig,
    #[serde(default)]
    dialogue: Option<DialogueConfig>,
}

/// Arguments of `cloze dialogue init`.
#[derive(Debug, Args)]
struct InitArgs {
    /// A preset name (plato-tiny) or a TOML file with `[model]` (BERT shape)
    /// and optionally `[dialogue]` (row layout), like configs/plato-tiny.toml.
    #[arg(long, default_value = "plato-tiny")]
    config: PathBuf,
    /// Tokenizer directory (tokenizer.json), e.g. from `cloze tokenizer train`.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output model directory (created; an existing non-empty directory is refused
    /// unless it is an earlier `cloze dialogue init` output and --force is given).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Replace --out when it holds an earlier `cloze dialogue init` output.
    #[arg(long)]
    force: bool,
}

/// How `cloze dialogue eval` ranks hits@1 candidates with the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Mean log-likelihood per token given the context.
    Likelihood,
    /// That minus the same with no context (`cloze_eval::dialogue::PmiScorer`).
    Pmi,
    /// The pair head's coherence margin over context and candidate read both
    /// ways (a model trained with `dialogue.coherence = true`).
    Coherence,
}

impl RankBy {
    /// The name on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            RankBy::Likelihood => "likelihood",
            RankBy::Pmi => "pmi",
            RankBy::Coherence => "coherence",
        }
    }
}

/// A baseline of `cloze dialogue eval --baseline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// Context-free unigram counts of the training responses' target tokens,
    /// add-one smoothed over the vocabulary (perplexity and hits@1).
    Unigram,
    /// TF-IDF cosine of the context against each candidate response (hits@1
    /// only: not a language model).
    Retrieval,
}

impl Baseline {
    /// The name on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Unigram => "unigram",
            Baseline::Retrieval => "retrieval",
        }
    }
}

/// Arguments of `cloze dialogue eval`.
#[derive(Debug, Args)]
struct EvalArgs {
    /// The dialogue model (a `cloze finetune --task dialogue` run's RUN/model);
    /// with --baseline only its tokenizer and row layout are read.
    #[arg(long)]
    model: PathBuf,
    /// Score a baseline fitted on --train instead of the model (its weights
    /// are not loaded): the same samples, tokens and candidate sets.
    #[arg(long, value_enum, requires = "train")]
    baseline: Option<Baseline>,
    /// Training samples a --baseline is fitted on (`cloze data dialogue`'s
    /// train.jsonl).
    #[arg(long, requires = "baseline")]
    train: Option<PathBuf>,
    /// Held-out samples (`cloze data dialogue`'s valid.jsonl or test.jsonl).
    #[arg(long)]
    data: PathBuf,
    /// Responses ranked per sample for hits@1 (the true one and others drawn
    /// from other dialogues).
    #[arg(long, default_value_t = 10)]
    candidates: usize,
    /// Rank only this many samples for hits@1, evenly spaced through the
    /// file (0: every sample); perplexity always covers every sample.
    #[arg(long, default_value_t = 0)]
    rank_samples: usize,
    /// Samples whose responses are generated (greedy) for distinct-1/2; 0 skips
    /// generation (a baseline generates nothing).
    #[arg(long, default_value_t = 200, conflicts_with = "baseline")]
    generate: usize,
    /// Longest generated response in tokens.
    #[arg(long, default_value_t = 32, conflicts_with = "baseline")]
    max_len: usize,
    /// How the model ranks hits@1 candidates: `likelihood` (mean
    /// log-likelihood per token given the context), `pmi` (that minus the
    /// same without the context: how much the context raised it) or
    /// `coherence` (the pair head of a model trained with
    /// `dialogue.coherence = true`).
    #[arg(long, value_enum, default_value_t = RankBy::Likelihood, conflicts_with = "baseline")]
    rank_by: RankBy,
    /// Samples scored together.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Seed of the distractor draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of words.
    #[arg(long)]
    json: bool,
}

/// Runs `cloze dialogue ...`.
pub fn run(args: DialogueArgs) -> Result<()> {
    match args.command {
        DialogueCommand::Init(a) => init(a),
        DialogueCommand::Eval(a) => eval(a),
    }
}

/// The presets built into the binary.
const PRESETS: &[(&str, &str)] = &[(
    "plato-tiny",
    include_str!("../../../../configs/plato-tiny.toml"),
)];

fn init(a: InitArgs) -> Result<()> {
    let text = match PRESETS.iter().find(|(name, _)| Path::new(name) == a.config) {
        Some((_, text)) if !a.config.exists() => (*text).to_owned(),
        _ => std::fs::read_to_string(&a.config).with_context(|| {
            format!(
                "reading {} (a preset name is one of: {})",
                a.config.display(),
                PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            )
        })?,
    };
    let preset: Preset =
        toml::from_str(&text).with_context(|| format!("parsing {}", a.config.display()))?;
    let tok = ModelTokenizer::from_dir(&a.tokenizer, 512)?;
    let vocab = tok.vocab_size();
    let mut config = cloze_train::bert::bert_config(&preset.model, vocab, tok.pad);
    let layout = preset.dialogue.unwrap_or_default();
    store_layout(&mut config, &layout)?;
    config.architectures = Some(vec!["BertForMaskedLM".to_owned()]);
    config.validate()?;
    // Checked against the vocabulary before anything is written.
    DialogueBuilder::new(layout, specials(&tok, config.vocab_size)?)?;
    let kind = cloze_fs::OutputKind::new("dialogue-init", "--force");
    let guard = cloze_fs::OutputDir::check(&a.out, &kind, &[&a.tokenizer], a.force)?;
    let mut files = vec!["config.json", "model.safetensors", cloze_fs::MARKER];
    files.extend(super::finetune::TOKENIZER_FILES);
    let lock = run_dir::start(&guard, &a.out, &kind, &files)?;
    tch::manual_seed(cloze_core::rng::torch_seed(
        a.seed,
        cloze_core::rng::Stream::ModelInit,
        0,
    ));
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = BertForPreTraining::new_masked_lm(&vs.root(), &config)?;
    cloze_models::save_pretrained(&vs, &config, &a.out)?;
    super::finetune::copy_tokenizer(&a.tokenizer, &a.out)?;
    drop(lock);
    println!(
        "dialogue model ({} layers, hidden {}, {} ids, roles {}, {} attention) initialised in {}",
        config.num_hidden_layers,
        config.hidden_size,
        config.vocab_size,
        layout.roles.name(),
        layout.attention.name(),
        a.out.display()
    );
    Ok(())
}

/// The samples `--rank-samples` asks to rank among `n_all`: every one (0),
/// or that many evenly spaced.
fn ranked_samples(rank_samples: usize, n_all: usize) -> Vec<usize> {
    match rank_samples {
        0 => (0..n_all).collect(),
        k => (0..k.min(n_all))
            .map(|i| i * n_all / k.min(n_all))
            .collect(),
    }
}

fn eval(a: EvalArgs) -> Result<()> {
    if let Some(baseline) = a.baseline {
        return eval_baseline(&a, baseline);
    }
    let m = load(&a.model)?;
    if a.rank_by == RankBy::Coherence && m.pair_head != cloze_models::HeadStatus::Loaded {
        bail!(
            "{} has no trained coherence head (cls.seq_relationship): train it with \
             `cloze finetune --task dialogue --set dialogue.coherence=true`, or rank by \
             likelihood or pmi",
            a.model.display()
        );
    }
    let set = read_samples(&a.data, &m.tok)?;
    let scorer = DialogueScorer {
        model: &m.model,
        builder: &m.builder,
        batch_size: a.batch_size,
    };
    let bar = indicatif::ProgressBar::new_spinner()
        .with_message(format!("scoring {} responses", set.examples.len()));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let scores = scorer.score(&set.examples)?;
    let ppl = perplexity(&scores);
    bar.set_message(format!("ranking among {} candidates", a.candidates));
    let which = ranked_samples(a.rank_samples, set.examples.len());
    let (pmi, coherence) = (
        PmiScorer(&scorer),
        CoherenceScorer {
            model: &m.model,
            builder: &m.builder,
            batch_size: a.batch_size,
        },
    );
    let ranker: &dyn CandidateScorer = match a.rank_by {
        RankBy::Likelihood => &scorer,
        RankBy::Pmi => &pmi,
        RankBy::Coherence => &coherence,
    };
    let (hits, ranked) = hits_at_1_with(
        ranker,
        &set.examples,
        &set.groups,
        &which,
        a.candidates,
        a.seed,
    )?;
    let n = a.generate.min(set.examples.len());
    let (d1, d2, generated) = if n > 0 {
        bar.set_message(format!("generating {n} responses"));
        let decoder = DialogueDecoder {
            model: &m.model,
            builder: &m.builder,
            decoding: Decoding::Cached,
            max_len: a.max_len,
        };
        let options = GenerateOptions {
            batch_size: a.batch_size,
            ..GenerateOptions::new(m.tok.sep, a.max_len)
        };
        let out = greedy(&decoder, &set.examples[..n], &options)?;
        let tokens: Vec<Vec<u32>> = out.into_iter().map(|g| g.tokens).collect();
        (
            Some(distinct(&tokens, 1)),
            Some(distinct(&tokens, 2)),
            tokens,
        )
    } else {
        (None, None, Vec::new())
    };
    bar.finish_and_clear();
    let tokens: usize = scores.iter().map(|s| s.tokens).sum();
    if a.json {
        let examples: Vec<serde_json::Value> = generated
            .iter()
            .take(5)
            .enumerate()
            .map(|(i, g)| {
                Ok(serde_json::json!({
                    "response": set.responses[i],
                    "generated": m.tok.decode(g)?,
                }))
            })
            .collect::<Result<_>>()?;
        println!(
            "{}",
            serde_json::json!({
                "samples": set.examples.len(),
                "response_tokens": tokens,
                "perplexity": ppl,
                "hits_at_1": hits,
                "rank_by": a.rank_by,
                "ranked": ranked,
                "candidates": a.candidates,
                "generated": n,
                "distinct_1": d1,
                "distinct_2": d2,
                "examples": examples,
            })
        );
    } else {
        println!(
            "{} samples ({tokens} response tokens): perplexity {ppl:.2}; hits@1 {:.1}% among {} \
             candidates by {} ({ranked} ranked; chance {:.1}%); {}",
            set.examples.len(),
            100.0 * hits,
            a.candidates,
            a.rank_by.name(),
            100.0 / a.candidates as f64,
            match (d1, d2) {
                (Some(d1), Some(d2)) =>
                    format!("distinct-1 {d1:.3}, distinct-2 {d2:.3} over {n} greedy responses"),
                _ => "distinct-1/2 n/a (--generate 0)".to_string(),
            }
        );
    }
    Ok(())
}

/// `cloze dialogue eval --baseline`: the baseline fitted on `--train` and
/// scored on `--data` in the tokens and row layout of `--model` (whose
/// weights are not read), on the candidate sets the model would rank; the
/// fields of the model's evaluation, with what a baseline lacks as null.
fn eval_baseline(a: &EvalArgs, baseline: Baseline) -> Result<()> {
    let Some(train_path) = &a.train else {
        bail!("--baseline needs --train (the training samples it is fitted on)");
    };
    let config = cloze_models::hf::read_config(&a.model)
        .with_context(|| format!("reading the configuration of {}", a.model.display()))?;
    let (tok, builder) = layout_of(&a.model, &config)?;
    let train = read_samples(train_path, &tok)?;
    let set = read_samples(&a.data, &tok)?;
    let which = ranked_samples(a.rank_samples, set.examples.len());
    // (perplexity and its tokens, hits@1 and samples ranked, what it was fitted on)
    let (ppl, tokens, (hits, ranked), fitted) = match baseline {
        Baseline::Unigram => {
            let vocab = usize::try_from(config.vocab_size).context("vocabulary size")?;
            let u = UnigramBaseline::train(&builder, vocab, &train.examples)?;
            let scores = u.score(&set.examples)?;
            let tokens: usize = scores.iter().map(|s| s.tokens).sum();
            let ranking =
                hits_at_1_with(&u, &set.examples, &set.groups, &which, a.candidates, a.seed)?;
            let fitted = format!("{} target tokens", u.total());
            (Some(perplexity(&scores)), Some(tokens), ranking, fitted)
        }
        Baseline::Retrieval => {
            let r = RetrievalBaseline::train(&train.examples)?;
            let ranking =
                hits_at_1_with(&r, &set.examples, &set.groups, &which, a.candidates, a.seed)?;
            (None, None, ranking, format!("{} documents", r.documents()))
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "baseline": baseline.name(),
                "model": a.model,
                "train_samples": train.examples.len(),
                "samples": set.examples.len(),
                "response_tokens": tokens,
                "perplexity": ppl,
                "hits_at_1": hits,
                "ranked": ranked,
                "candidates": a.candidates,
                "generated": 0,
                "distinct_1": null,
                "distinct_2": null,
            })
        );
    } else {
        let ppl = match (ppl, tokens) {
            (Some(p), Some(t)) => format!("{t} response tokens: perplexity {p:.2}"),
            _ => "perplexity n/a: not a language model".to_owned(),
        };
        println!(
            "{} baseline (fitted on {} training samples, {fitted}; tokens and layout of {}): \
             {} samples ({ppl}); hits@1 {:.1}% among {} candidates ({ranked} ranked; chance \
             {:.1}%); distinct-1/2 n/a (a baseline generates nothing)",
            baseline.name(),
            train.examples.len(),
            a.model.display(),
            set.examples.len(),
            100.0 * hits,
            a.candidates,
            100.0 / a.candidates as f64
        );
    }
    Ok(())
}

/// Generation settings shared by `cloze chat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// The most probable token at every step.
    Greedy,
    /// Beam search (`--beam`).
    Beam,
    /// Sampling from the `--top-k` most probable tokens.
    TopK,
    /// Nucleus sampling from the tokens holding `--top-p` of the probability.
    TopP,
}

/// Generates one response to `ex`'s context.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    m: &Loaded,
    ex: &DialogueExample,
    strategy: Strategy,
    beam: usize,
    top_k: usize,
    top_p: f64,
    max_len: usize,
    seed: u64,
) -> Result<Vec<u32>> {
    let decoder = DialogueDecoder {
        model: &m.model,
        builder: &m.builder,
        decoding: Decoding::Cached,
        max_len,
    };
    let options = GenerateOptions {
        beam_size: beam.max(1),
        ..GenerateOptions::new(m.tok.sep, max_len)
    };
    let src = std::slice::from_ref(ex);
    let out = match strategy {
        Strategy::Greedy => greedy(&decoder, src, &options)?,
        Strategy::Beam => beam_search(&decoder, src, &options)?,
        Strategy::TopK | Strategy::TopP => {
            let s = Sampling {
                top_k: if strategy == Strategy::TopK { top_k } else { 0 },
                top_p: if strategy == Strategy::TopP {
                    top_p
                } else {
                    1.0
                },
                seed,
                ..Sampling::default()
            };
            sample(&decoder, src, &options, &s)?
        }
    };
    Ok(out.into_iter().next().map(|g| g.tokens).unwrap_or_default())
}
