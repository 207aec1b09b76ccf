//! `cargo xtask`: the project's automation, with no libtorch dependency.
//!
//! Subcommands:
//! - `libtorch [--cuda] [--force]`: provision libtorch 2.13.0 from the PyTorch wheels
//!   through pip into a cache outside the clone, verified and atomically installed,
//!   then point `.libtorch` in the repository at it (or at the user's `LIBTORCH`);
//!   likewise the gloo C++ headers that cloze-dist's c10d shim includes (the wheel
//!   lacks them), from Debian's `libgloo-dev` through `apt-get download`, linked as
//!   `.gloo` (or the user's `CLOZE_GLOO_INCLUDE`).
//! - `env`: print the shell exports that make the built binaries run from any shell.
//! - `test [--offline] [--cuda] [ARGS..]`: provision if needed, then run every test.
//! - `demo`: the main job, end to end (`--precision fp32|bf16`; by default bf16
//!   where the CPU has bf16 GEMM instructions).
//! - `bench [NAME]`: the criterion benches.
//! - `ci`: what `.ci/run` does (formatting check, then `test`).
//!
//! Everything that builds the workspace (`test`, `ci`, `demo`, `bench`) provisions
//! first, as `libtorch` does.

#![allow(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod gloo;
mod libtorch;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        print_help();
        return Ok(());
    }
    let cmd = args.remove(0);
    match cmd.as_str() {
        "libtorch" => {
            let opts = libtorch::Options {
                cuda: take_flag(&mut args, "--cuda"),
                force: take_flag(&mut args, "--force"),
            };
            reject_rest(&args)?;
            let (torch, gloo) = provision(&opts)?;
            println!("libtorch ready: {}", torch.display());
            println!("gloo headers ready: {}", gloo.display());
            Ok(())
        }
        "env" => {
            reject_rest(&args)?;
            let dir = libtorch::linked_dir(&repo_root())?;
            println!("export LIBTORCH={}", dir.display());
            println!("export LIBTORCH_CXX11_ABI=1");
            println!(
                "export LD_LIBRARY_PATH={}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}",
                dir.join("lib").display()
            );
            // Only builds need the headers; print them when they are provisioned.
            if let Ok(gloo) = gloo::linked_include(&repo_root()) {
                println!("export CLOZE_GLOO_INCLUDE={}", gloo.display());
            }
            Ok(())
        }
        "test" => test(args),
        "ci" => {
            reject_rest(&args)?;
            cargo(&["fmt", "--all", "--", "--check"])
                .context("cargo fmt --check failed: run `cargo fmt --all`")?;
            test(Vec::new())
        }
        "demo" => demo(args),
        "bench" => bench(args),
        "help" | "-h" | "--help" => {
            print_help();
            Ok(())
        }
        other => {
            print_help();
            bail!("unknown xtask command `{other}`")
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         commands:\n  \
           libtorch [--cuda] [--force]  provision libtorch 2.13.0 (CPU by default) through pip,\n                               \
           and the gloo headers cloze-dist needs through apt-get\n  \
           env                          print shell exports for running built binaries elsewhere\n  \
           test [--offline] [--cuda]    provision libtorch and gloo if missing, then run every test\n  \
           demo [--precision P]         the main job, end to end (trains in bf16 where the CPU has it)\n  \
           bench [NAME]                 run the criterion benches (all, or one by name)\n  \
           ci                           formatting check, then `test` (what .ci/run does)"
    );
}

/// Provisions what building the workspace needs: libtorch, then the gloo headers
/// cloze-dist compiles its c10d shim against. Returns libtorch's directory and the
/// directory holding `gloo/`.
fn provision(opts: &libtorch::Options) -> Result<(PathBuf, PathBuf)> {
    let torch = libtorch::ensure(opts)?;
    let gloo = gloo::ensure()?;
    Ok((torch, gloo))
}

fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}

fn reject_rest(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("unexpected argument `{a}`");
    }
    Ok(())
}

pub(crate) fn repo_root() -> PathBuf {
    // xtask lives in <root>/xtask, so its manifest directory's parent is the root.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_env(args, &[])
}

fn cargo_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs every test. Tests marked `#[ignore = "network: ..."]` fetch real data through
/// the package clients and run too, unless `--offline`; tests whose name contains
/// `cuda` need a GPU and run only with `--cuda`.
fn test(mut args: Vec<String>) -> Result<()> {
    let offline = take_flag(&mut args, "--offline");
    let cuda = take_flag(&mut args, "--cuda");
    provision(&libtorch::Options { cuda, force: false })?;
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    if has_nextest() {
        let mut a = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
        if !offline {
            a.push("--run-ignored=all");
        }
        if !cuda {
            a.extend(["-E", "not test(/cuda/)"]);
        }
        a.extend(&extra);
        cargo(&a)?;
        // nextest does not run doc tests. Build them for the whole workspace (a subset
        // of packages would resolve features differently and rebuild dependencies);
        // doc-test binaries live outside target/, so the rpath does not reach libtorch.
        let lib = libtorch::linked_dir(&repo_root())?.join("lib");
        cargo_env(
            &["test", "--doc", "--workspace"],
            &[("LD_LIBRARY_PATH", lib.as_os_str())],
        )
    } else {
        let mut a = vec!["test", "--workspace", "--no-fail-fast"];
        a.extend(&extra);
        a.push("--");
        if !offline {
            a.push("--include-ignored");
        }
        if !cuda {
            a.extend(["--skip", "cuda"]);
        }
        cargo(&a)
    }
}

/// Whether this CPU multiplies bf16 matrices in hardware (what makes
/// `--precision bf16` faster than fp32 here).
fn cpu_has_bf16_gemm() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The demo's training precision: `--precision P` if given, else bf16 where
/// the CPU has bf16 GEMM instructions and fp32 elsewhere.
fn demo_precision(args: &mut Vec<String>) -> Result<(String, &'static str)> {
    if let Some(i) = args.iter().position(|a| a == "--precision") {
        let Some(value) = args.get(i + 1).cloned() else {
            bail!("--precision needs a value: fp32 or bf16");
        };
        if value != "fp32" && value != "bf16" {
            bail!("--precision {value}: expected fp32 or bf16");
        }
        args.drain(i..i + 2);
        return Ok((value, "as asked"));
    }
    Ok(if cpu_has_bf16_gemm() {
        (
            "bf16".into(),
            "this CPU has avx512_bf16; pass --precision fp32 for full precision",
        )
    } else {
        ("fp32".into(), "this CPU has no bf16 GEMM instructions")
    })
}

fn demo(mut args: Vec<String>) -> Result<()> {
    let (precision, why) = demo_precision(&mut args)?;
    reject_rest(&args)?;
    println!("demo: training in {precision} ({why})");
    provision(&libtorch::Options::default())?;
    cargo(&["build", "--release", "-p", "cloze"])?;
    let root = repo_root();
    let bin = root.join("target/release/cloze");
    // Everything the demo writes stays under runs/demo (ignored by git); the
    // corpus itself is cached outside the clone by `cloze data fetch`. Each
    // step passes --force, which replaces only that command's own earlier
    // output (recognised by its marker), so a rerun of the demo starts over.
    let work = root.join("runs/demo");
    let tok = work.join("tokenizer");
    let data = work.join("data");
    let run = work.join("run");
    let corpus = cache_dir().join("data/sotu/sotu.txt");
    let (tok_s, data_s, run_s, corpus_s) = (
        path_str(&tok)?,
        path_str(&data)?,
        path_str(&run)?,
        path_str(&corpus)?,
    );
    let model_s = path_str(&run.join("model"))?;
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("fetch the State of the Union corpus", vec!["data", "fetch", "sotu"]),
        (
            "train a WordPiece tokenizer (8,192 ids)",
            vec!["tokenizer", "train", "--corpus", &corpus_s, "--vocab-size", "8192", "--out", &tok_s, "--force"],
        ),
        (
            "prepare shards with a held-out split",
            vec![
                "data", "prepare", "--corpus", &corpus_s, "--tokenizer", &tok_s, "--out", &data_s,
                "--mode", "packed", "--max-seq-length", "128", "--holdout-fraction", "0.03", "--force",
            ],
        ),
        (
            "pretrain bert-tiny (Ctrl-C checkpoints; continue with `cloze pretrain --resume runs/demo/run`)",
            vec![
                "pretrain", "--config", "configs/bert-tiny.toml", "--data", &data_s, "--out", &run_s, "--force",
                "--precision", &precision,
            ],
        ),
        (
            "evaluate on the held-out split against the unigram baseline, with fill-mask examples",
            vec!["eval", "--model", &model_s, "--data", &data_s, "--examples", "2", "--fail-below-baseline"],
        ),
        ("plot loss, accuracy and learning rate", vec!["plot", &run_s]),
    ];
    for (i, (what, argv)) in steps.iter().enumerate() {
        println!(
            "\n== demo step {}/{}: {what}\n   cloze {}",
            i + 1,
            steps.len(),
            argv.join(" ")
        );
        let status = Command::new(&bin)
            .args(argv)
            .current_dir(&root)
            .status()
            .with_context(|| format!("running {}", bin.display()))?;
        if !status.success() {
            bail!("demo step `cloze {}` failed ({status})", argv.join(" "));
        }
    }
    println!(
        "\n== demo done: run directory {} (config.toml, metrics.jsonl, checkpoints/, model/, plots/)",
        run.display()
    );
    Ok(())
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

/// `$CLOZE_CACHE_DIR`, else `$XDG_CACHE_HOME/cloze`, else `$HOME/.cache/cloze`.
fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CLOZE_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cloze");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/cloze")
}

fn bench(args: Vec<String>) -> Result<()> {
    provision(&libtorch::Options::default())?;
    let mut a = vec!["bench", "-p", "cloze-benches"];
    for name in &args {
        a.extend(["--bench", name.as_str()]);
    }
    cargo(&a)
}
