//! `cloze bench train --ranks N`: data-parallel training on this machine.
//! In one run: one process with all `--torch-threads` over the global batch,
//! then N processes (c10d, Gloo over loopback), each with its share of the
//! threads and of the batch, summing gradients every step. Reports the
//! tokens/s of both, their ratio, and the allreduce time per step.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cloze_dist::{Collective, GroupOptions, Launch, ProcessGroup};
use cloze_train::bench::{StepBench, StepObjective, StepShape};
use serde_json::json;

use super::train::{measure, TrainArgs};

fn shape(a: &TrainArgs, batch: i64) -> StepShape {
    StepShape {
        hidden: a.hidden,
        layers: a.layers,
        heads: a.heads,
        ffn: a.ffn.unwrap_or(4 * a.hidden),
        vocab: a.vocab,
        seq: a.seq,
        batch,
    }
}

/// A rank (started by [`run`]): times `--steps` data-parallel steps of its
/// slice and prints one JSON line.
pub fn run_rank(a: &TrainArgs) -> Result<()> {
    let launch = Launch::from_env()?.context("a bench rank needs torchrun's variables")?;
    let group = ProcessGroup::connect(&launch, &GroupOptions::default())?;
    tch::set_num_threads(a.torch_threads);
    let mut bench = StepBench::with_objective(&shape(a, a.batch), a.precision, StepObjective::Mlm)?;
    for _ in 0..2 {
        bench.step_data_parallel(&group)?;
    }
    group.barrier()?;
    let t = Instant::now();
    let mut allreduce = 0.0;
    for _ in 0..a.steps {
        allreduce += bench.step_data_parallel(&group)?.1;
    }
    let step_s = t.elapsed().as_secs_f64() / f64::from(a.steps.max(1));
    println!(
        "{}",
        json!({"rank": group.rank(), "step_s": step_s,
               "allreduce_s": allreduce / f64::from(a.steps.max(1)),
               "params": bench.num_params()})
    );
    Ok(())
}

/// Runs the comparison.
pub fn run(a: &TrainArgs, ranks: usize) -> Result<()> {
    let global = a.batch;
    if global % ranks as i64 != 0 {
        bail!("--batch {global} does not split evenly over --ranks {ranks}");
    }
    let threads_each = (a.torch_threads / ranks as i32).max(1);
    tch::set_num_threads(a.torch_threads);
    let one = measure(a, a.precision)?;
    println!(
        "{}",
        json!({"what": "one_process_tokens_per_s", "value": (one.tokens_per_s * 10.0).round() / 10.0,
               "threads": a.torch_threads, "batch": global, "precision": a.precision.name()})
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let children = (0..ranks)
        .map(|r| {
            Command::new(&exe)
                .args(["bench", "train", "--rank-child"])
                .args([
                    "--hidden",
                    &a.hidden.to_string(),
                    "--layers",
                    &a.layers.to_string(),
                ])
                .args([
                    "--heads",
                    &a.heads.to_string(),
                    "--vocab",
                    &a.vocab.to_string(),
                ])
                .args(["--ffn", &a.ffn.unwrap_or(4 * a.hidden).to_string()])
                .args([
                    "--seq",
                    &a.seq.to_string(),
                    "--batch",
                    &(global / ranks as i64).to_string(),
                ])
                .args([
                    "--torch-threads",
                    &threads_each.to_string(),
                    "--steps",
                    &a.steps.to_string(),
                ])
                .args(["--precision", a.precision.name()])
                .env("RANK", r.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("WORLD_SIZE", ranks.to_string())
                .env("LOCAL_WORLD_SIZE", ranks.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting bench rank {r}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut step_s: f64 = 0.0;
    let mut allreduce_s = 0.0;
    for (r, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("bench rank {r} failed ({})", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line: serde_json::Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .with_context(|| format!("bench rank {r} printed no result"))?;
        step_s = step_s.max(line["step_s"].as_f64().unwrap_or(f64::NAN));
        allreduce_s += line["allreduce_s"].as_f64().unwrap_or(f64::NAN) / ranks as f64;
    }
    let tps = (global * a.seq) as f64 / step_s;
    let ratio = tps / one.tokens_per_s;
    let grad_mib = one.params as f64 * 4.0 / (1024.0 * 1024.0);
    println!(
        "{}",
        json!({"what": "data_parallel_tokens_per_s", "value": (tps * 10.0).round() / 10.0,
               "ranks": ranks, "threads_per_rank": threads_each, "batch_per_rank": global / ranks as i64,
               "step_ms": (step_s * 1e4).round() / 10.0,
               "allreduce_ms_per_step": (allreduce_s * 1e4).round() / 10.0,
               "allreduce_mib_per_step": (grad_mib * 10.0).round() / 10.0})
    );
    println!(
        "{}",
        json!({"what": "data_parallel_ratio", "vs_one_process": (ratio * 100.0).round() / 100.0})
    );
    eprintln!(
        "{ranks} processes x {threads_each} thread(s): {tps:.0} tokens/s ({:.0} ms/step, of which allreduce {:.1} ms for {grad_mib:.1} MiB of gradients); \
         1 process x {} threads: {:.0} tokens/s -> {ratio:.2}x (same run)",
        step_s * 1e3,
        allreduce_s * 1e3,
        a.torch_threads,
        one.tokens_per_s
    );
    Ok(())
}
