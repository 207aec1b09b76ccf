//! Data-parallel pretraining through the real binary: `cloze launch` with
//! two ranks trains, writes only through rank 0 and resumes; a rank killed
//! with SIGKILL makes the other fail naming it, and the restarted job
//! (torchrun's restart count) continues from the last checkpoint; an
//! unreachable master is a clear error.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cloze, fails_with, kill_9_once_checkpoints_exist, ok, prepare, SMALL};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// `cloze pretrain` arguments of a small run.
fn pretrain_args(data: &Path, out: &Path, steps: u64) -> Vec<String> {
    let mut v: Vec<String> = vec!["pretrain".into(), "--config".into(), "bert-tiny".into()];
    v.push("--data".into());
    v.push(data.display().to_string());
    v.push("--out".into());
    v.push(out.display().to_string());
    v.push("--max-steps".into());
    v.push(steps.to_string());
    v.extend(SMALL.iter().map(|s| s.to_string()));
    v
}

fn train_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .collect()
}

#[test]
fn launch_two_ranks_trains_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = prepare(tmp.path(), 200);
    let run = tmp.path().join("run");
    let out = ok(
        cloze()
            .args(["launch", "--nproc-per-node", "2", "--"])
            .args(pretrain_args(&data, &run, 6))
            .output()
            .expect("spawn"),
        "cloze launch",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("trained 6 steps"), "{stdout}");
    assert!(run.join("model").join("model.safetensors").is_file());
    let records = train_records(&run);
    assert_eq!(records.len(), 6, "one line per step from rank 0 only");
    for r in &records {
        let s = r["allreduce_s"].as_f64().expect("allreduce_s is logged");
        assert!(s > 0.0, "{r}");
    }
    // Resume the two-rank run with two ranks, to step 8.
    ok(
        cloze()
            .args([
                "launch",
                "--nproc-per-node",
                "2",
                "--",
                "pretrain",
                "--resume",
            ])
            .arg(&run)
            .args(["--max-steps", "8"])
            .output()
            .expect("spawn"),
        "cloze launch --resume",
    );
    let records = train_records(&run);
    assert_eq!(records.last().map(|r| r["step"].as_u64()), Some(Some(8)));
    // A command that is not pretrain is refused.
    fails_with(
        &cloze()
            .args(["launch", "--nproc-per-node", "2", "--", "eval"])
            .output()
            .expect("spawn"),
        "only data-parallel command",
    );
}

/// Starts rank `rank` of 2 of `args` with torchrun's variables.
fn rank(args: &[String], rank: usize, port: u16, restart: u32) -> std::process::Child {
    cloze()
        .args(args)
        .args(["--dist-timeout", "20"])
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("LOCAL_WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("TORCHELASTIC_RESTART_COUNT", restart.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a rank")
}

#[test]
fn a_killed_rank_is_named_and_the_restarted_job_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = prepare(tmp.path(), 200);
    let run = tmp.path().join("run");
    let args = pretrain_args(&data, &run, 400);
    let port = free_port();
    let survivor = rank(&args, 0, port, 0);
    let mut victim = rank(&args, 1, port, 0);
    let status = kill_9_once_checkpoints_exist(&mut victim, &run.join("checkpoints"), 1);
    assert!(!status.success());
    let killed = Instant::now();
    let out = survivor.wait_with_output().expect("rank 0 ends");
    assert!(
        killed.elapsed() < Duration::from_secs(40),
        "rank 0 noticed within the timeout: {:?}",
        killed.elapsed()
    );
    fails_with(&out, "lost rank 1");
    let done_before: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("step-")?
                .parse()
                .ok()
        })
        .collect();
    let last = done_before.iter().copied().max().expect("a checkpoint");

    // The job restarts (torchrun's restart count 1) with the same command,
    // fewer steps to keep the test short: it resumes from the checkpoint.
    let args = pretrain_args(&data, &run, last + 3);
    let port = free_port();
    let r0 = rank(&args, 0, port, 1);
    let r1 = rank(&args, 1, port, 1);
    let out0 = ok(r0.wait_with_output().expect("rank 0"), "restarted rank 0");
    ok(r1.wait_with_output().expect("rank 1"), "restarted rank 1");
    let stderr = String::from_utf8_lossy(&out0.stderr);
    let records = train_records(&run);
    let steps: Vec<u64> = records.iter().filter_map(|r| r["step"].as_u64()).collect();
    assert_eq!(
        steps.last(),
        Some(&(last + 3)),
        "resumed to the end: {steps:?}\n{stderr}"
    );
    // Nothing before the checkpoint was trained twice: the log continues
    // from it (steps after it that died in flight were rolled back).
    let mut sorted = steps.clone();
    sorted.dedup();
    assert_eq!(sorted, steps, "each step logged once: {steps:?}");
}

#[test]
fn an_unreachable_master_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_cloze"))
        .args(["-q", "pretrain", "--data"])
        .arg(tmp.path())
        .args(["--dist-timeout", "2"])
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", free_port().to_string())
        .output()
        .expect("spawn");
    fails_with(&out, "could not join the process group as rank 1 of 2");
    fails_with(&out, "MASTER_PORT");
}
