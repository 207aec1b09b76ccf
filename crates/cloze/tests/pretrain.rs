//! End-to-end tests of `cloze pretrain`, `cloze eval` and `cloze plot` on a tiny
//! corpus the test writes itself: Ctrl-C, resume, config typos, data/tokenizer
//! mismatches and the plots.

mod common;

use common::{cloze, ok, prepare, pretrain};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn config_typo_is_reported_by_field_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/bert-tiny.toml"
    ))
    .expect("preset readable");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("weight_decay", "weight_dacay")).expect("write");
    let out = cloze()
        .args(["pretrain", "--config"])
        .arg(&bad)
        .args(["--data", "."])
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weight_dacay"), "{err}");
    let out = cloze()
        .args(["pretrain", "--set", "optimizer.lrate=1", "--data", "."])
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("optimizer.lrate"));
}

#[test]
fn ctrl_c_checkpoints_then_resume_finishes_and_plots_and_eval_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    let mut child = pretrain(&data, &run, 100_000)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for training to be under way (the first metrics line), then press Ctrl-C.
    let metrics = run.join("metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|s| s.lines().count() < 3)
        .unwrap_or(true)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        if let Some(status) = child.try_wait().expect("poll") {
            let out = child.wait_with_output().expect("output");
            panic!(
                "pretrain exited early ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    // Stopped by Ctrl-C is not a finished job: status 130, and the message
    // gives the exact command that continues the run.
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted at step"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "continue with: cloze pretrain --resume {}",
            run.display()
        )),
        "{stderr}"
    );
    let ckpts: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints")
        .collect();
    assert!(!ckpts.is_empty());

    // Resume and finish a few more steps.
    let done = std::fs::read_to_string(&metrics)
        .expect("metrics")
        .lines()
        .count();
    let out = ok(
        cloze()
            .args(["pretrain", "--resume"])
            .arg(&run)
            .args(["--max-steps", &(done as u64 + 6).to_string()])
            .output()
            .expect("spawn"),
        "resume",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unigram"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(run.join("model/model.safetensors").exists());
    assert!(run.join("model/tokenizer.json").exists());

    // Plots are PNG files.
    ok(
        cloze().arg("plot").arg(&run).output().expect("spawn"),
        "plot",
    );
    for name in ["loss.png", "accuracy.png", "lr.png"] {
        let bytes = std::fs::read(run.join("plots").join(name)).expect("png written");
        assert!(bytes.starts_with(b"\x89PNG"), "{name} is not a PNG");
    }

    // Standalone eval agrees with the data, and refuses data made with another tokenizer.
    let out = ok(
        cloze()
            .args(["eval", "--model"])
            .arg(run.join("model"))
            .arg("--data")
            .arg(&data)
            .arg("--json")
            .output()
            .expect("spawn"),
        "eval",
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("eval json");
    assert!(
        m["accuracies"]["mlm"].as_f64().is_some()
            && m["accuracies"]["unigram"].as_f64().is_some()
            && m["losses"]["mlm"].as_f64().is_some(),
        "{m}"
    );

    let other = tempfile::tempdir().expect("tempdir");
    let other_data = prepare(other.path(), 150);
    let out = cloze()
        .args(["eval", "--model"])
        .arg(run.join("model"))
        .arg("--data")
        .arg(&other_data)
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tokenizer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cloze()
        .args(["pretrain", "--resume"])
        .arg(&run)
        .arg("--data")
        .arg(&other_data)
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tokenizer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nan_loss_stops_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    let out = pretrain(&data, &run, 50)
        .args(["--lr", "1e30", "--set", "optimizer.max_grad_norm=0.0"])
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the loss became"), "{err}");
}

#[test]
fn kill_9_during_checkpointing_leaves_a_resumable_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    // A checkpoint every step, so the kill most likely lands in or near a write.
    let mut child = pretrain(&data, &run, 100_000)
        .args(["--set", "checkpoint.every_steps=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let ckpts = run.join("checkpoints");
    let _ = common::kill_9_once_checkpoints_exist(&mut child, &ckpts, 3);
    let out = ok(
        cloze()
            .args(["pretrain", "--resume"])
            .arg(&run)
            .args(["--max-steps", "400"])
            .output()
            .expect("spawn"),
        "resume after kill -9",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("trained 400 steps"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Partial writes were cleaned away; only complete checkpoints remain.
    for e in std::fs::read_dir(&ckpts).expect("checkpoints") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("step-"), "{name}");
    }
}
