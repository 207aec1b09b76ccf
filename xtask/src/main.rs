//! `cargo xtask`: the project's automation, with no libtorch dependency.
//!
//! Subcommands:
//! - `libtorch [--cuda] [--force]`: provision libtorch 2.13.0 from the PyTorch wheels
//!   through pip into a cache outside the clone, verified and atomically installed,
//!   then point `.libtorch` in the repository at it (or at the user's `LIBTORCH`).
//! - `env`: print the shell exports that make the built binaries run from any shell.
//! - `test [--offline] [--cuda] [ARGS..]`: provision if needed, then run every test.
//! - `demo`: the main job, end to end.
//! - `bench [NAME]`: the criterion benches.
//! - `ci`: what `.ci/run` does (formatting check, then `test`).

#![allow(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

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
            let dir = libtorch::ensure(&opts)?;
            println!("libtorch ready: {}", dir.display());
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
           libtorch [--cuda] [--force]  provision libtorch 2.13.0 (CPU by default) through pip\n  \
           env                          print shell exports for running built binaries elsewhere\n  \
           test [--offline] [--cuda]     provision libtorch if missing, then run every test\n  \
           demo                         the main job, end to end\n  \
           bench [NAME]                 run the criterion benches (all, or one by name)\n  \
           ci                           formatting check, then `test` (what .ci/run does)"
    );
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .args(args)
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
    libtorch::ensure(&libtorch::Options { cuda, force: false })?;
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
        // nextest does not run doc tests; the libtorch-free crates carry the doc examples.
        cargo(&["test", "--doc", "-p", "cloze-text", "-p", "cloze-mask"])
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

fn demo(args: Vec<String>) -> Result<()> {
    reject_rest(&args)?;
    libtorch::ensure(&libtorch::Options::default())?;
    cargo(&["build", "--release", "-p", "cloze"])?;
    let bin = repo_root().join("target/release/cloze");
    let status = Command::new(&bin)
        .arg("demo")
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("the demo failed ({status})");
    }
    Ok(())
}

fn bench(args: Vec<String>) -> Result<()> {
    libtorch::ensure(&libtorch::Options::default())?;
    let mut a = vec!["bench", "-p", "cloze-benches"];
    for name in &args {
        a.extend(["--bench", name.as_str()]);
    }
    cargo(&a)
}
