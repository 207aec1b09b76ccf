//! `cloze`: the thin driver. It parses arguments, installs the tracing subscriber
//! and composes the library crates; no modelling or data logic lives here.

mod cmd;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Masked-language-model pretraining toolkit.
#[derive(Debug, Parser)]
#[command(name = "cloze", version, about, propagate_version = true)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides both flags.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Threads for libtorch and for the data pipeline (default: all cores).
    ///
    /// `cloze pretrain` takes libtorch's thread count from the config's
    /// `run.threads` when this flag is absent; an explicit `--threads N` wins
    /// over it (as `--set run.threads=N` would, also with `--resume`, and is
    /// saved in the run's config.toml), with a warning when the two differ.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the libtorch build, devices and thread settings this binary runs with.
    Info(cmd::info::InfoArgs),
    /// Throughput benchmarks (JSON lines), compared with the peer where one exists.
    Bench(cmd::bench::BenchArgs),
    /// Show your sentences (or built-in ones) under each masking strategy (token, whole-word, n-gram, span, similar-word).
    MaskDemo(cmd::mask_demo::MaskDemoArgs),
    /// Datasets: fetch real corpora and checkpoints, list the cache, prepare and inspect shards.
    Data(cmd::data::DataArgs),
    /// Tokenizers: train a WordPiece vocabulary (tokenizer.json + vocab.txt).
    Tokenizer(cmd::tokenizer::TokenizerArgs),
    /// Write PNG curves of loss, accuracy and learning rate for a pretraining run.
    Plot(cmd::plot::PlotArgs),
    /// Pretrain a BERT on prepared shards (config presets, checkpoints, --resume, Ctrl-C safe).
    Pretrain(cmd::pretrain::PretrainArgs),
    /// One-shot pruning of a saved BERT (SparseGPT or magnitude, unstructured or 2:4), written as a plain HF checkpoint with zeros.
    Prune(cmd::prune::PruneArgs),
    /// Weight quantisation of a saved BERT (GPTQ or round-to-nearest, 2/3/4/8 bits), written in the GPTQ checkpoint layout.
    Quantize(cmd::quantize::QuantizeArgs),
    /// Start the ranks of a data-parallel `pretrain` on this machine, as torchrun does: `cloze launch --nproc-per-node 2 -- pretrain ...`.
    Launch(cmd::launch::LaunchArgs),
    /// Held-out MLM loss, perplexity and masked-token accuracy of a saved model, vs the unigram baseline.
    Eval(cmd::eval::EvalArgs),
    /// Top-k tokens with probabilities for every [MASK] of each text.
    FillMask(cmd::fill_mask::FillMaskArgs),
    /// Token states and mean-pooled sentence embeddings of each line (safetensors or JSONL).
    Encode(cmd::encode::EncodeArgs),
    /// Pseudo-log-likelihood and pseudo-perplexity of each line (Salazar et al. 2020).
    Score(cmd::score::ScoreArgs),
    /// Chinese spelling correction with the MLM and a confusion set; --eval sighan15 scores it.
    Correct(cmd::correct::CorrectArgs),
    /// Fine-tune a pretrained BERT for sequence or token classification (dev early stopping, best checkpoint, --resume, Ctrl-C safe).
    Finetune(cmd::finetune::FinetuneArgs),
    /// Labels of new inputs from a fine-tuned classifier, as JSON lines.
    Predict(cmd::predict::PredictArgs),
    /// Sequence-to-sequence generation with a UniLM-v2 model fine-tuned for it (greedy, key/value cache).
    Generate(cmd::generate::GenerateArgs),
    /// PLATO-style dialogue models: init from a preset, eval (perplexity, hits@1, distinct-n).
    Dialogue(cmd::dialogue::DialogueArgs),
    /// Talk with a dialogue model (multi-turn, several speakers; greedy, beam, top-k, top-p).
    Chat(cmd::chat::ChatArgs),
    /// Knowledge-graph link prediction with a masked LM (MLMLM): eval, baselines, predict.
    Kg(cmd::kg::KgArgs),
    /// Code models (CugLM): next-token accuracy of a model or a count baseline on a code split.
    Code(cmd::code::CodeArgs),
    /// The next tokens at a place in a Java or TypeScript file, with their predicted category.
    Complete(cmd::code::CompleteArgs),
    /// Reproduce a paper's claim end to end (data, pretraining, fine-tuning over seeds): a Markdown table and a PNG chart.
    Experiment(cmd::experiment::ExperimentArgs),
}

fn install_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false)
        .init();
}

/// Colour (ANSI escapes) only when standard error is a terminal and
/// `NO_COLOR` is unset or empty, so logs written to files and pipes stay plain.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Sets libtorch's intra-op threads and rayon's global pool explicitly, so runs are
/// reproducible and do not oversubscribe the cores.
fn set_threads(threads: Option<usize>) -> anyhow::Result<()> {
    let n = match threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1),
    };
    tch::set_num_threads(i32::try_from(n)?);
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Before anything allocates: keeps libtorch's per-step buffers in the heap
    // instead of mapping fresh pages every training step.
    let allocator_tuned = cloze_models::tune_cpu_allocator();
    // Also before libtorch starts threads (they inherit it): subnormal Adam
    // moments would otherwise slow every later step down.
    let denormals_flushed = cloze_models::flush_denormals();
    let cli = Cli::parse();
    install_tracing(cli.verbose, cli.quiet);
    tracing::debug!(allocator_tuned, denormals_flushed, "CPU runtime settings");
    tracing::debug!(command = ?cli.command, "starting");
    if let Err(e) = set_threads(cli.threads) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Info(a) => cmd::info::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::MaskDemo(a) => cmd::mask_demo::run(a),
        Command::Data(a) => cmd::data::run(a),
        Command::Tokenizer(a) => cmd::tokenizer::run(a),
        Command::Plot(a) => cmd::plot::run(a),
        Command::Pretrain(mut a) => {
            a.global_threads = cli.threads;
            cmd::pretrain::run(a)
        }
        Command::Launch(a) => cmd::launch::run(a),
        Command::Prune(a) => cmd::prune::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::FillMask(a) => cmd::fill_mask::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Encode(a) => cmd::encode::run(a),
        Command::Score(a) => cmd::score::run(a),
        Command::Correct(a) => cmd::correct::run(a),
        Command::Finetune(mut a) => {
            a.global_threads = cli.threads;
            cmd::finetune::run(a)
        }
        Command::Predict(a) => cmd::predict::run(a),
        Command::Kg(a) => cmd::kg::run(a),
        Command::Code(a) => cmd::code::run(a),
        Command::Complete(a) => cmd::code::complete(a),
        Command::Dialogue(a) => cmd::dialogue::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Experiment(a) => cmd::experiment::run(a, cli.threads),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<cmd::interrupt::Interrupted>() {
            // Stopped by Ctrl-C: not a failure of the command, but not a
            // finished job either, so `cloze pretrain && cloze eval` stops here.
            Some(stopped) => {
                eprintln!("{stopped}");
                std::process::ExitCode::from(cmd::interrupt::EXIT_INTERRUPTED)
            }
            None => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
