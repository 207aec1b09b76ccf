//! `cloze pretrain --precision bf16` through the binary: the setting is saved
//! with the run, kill -9 and `--resume` reproduce the uninterrupted bf16 losses
//! bit for bit, and the saved model is an fp32 HF checkpoint.

mod common;

use common::{cloze, ok, prepare, pretrain};
use std::path::Path;
use std::process::Stdio;

/// `(step, loss)` of every train line of a run's metrics, in file order.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?)))
        .collect()
}

#[test]
fn a_bf16_run_killed_and_resumed_matches_the_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    const STEPS: u64 = 300;

    let straight = dir.path().join("straight");
    ok(
        pretrain(&data, &straight, STEPS)
            .args(["--precision", "bf16"])
            .output()
            .expect("spawn"),
        "straight bf16 run",
    );
    let saved = std::fs::read_to_string(straight.join("config.toml")).expect("config.toml");
    assert!(
        saved.contains("precision = \"bf16\""),
        "the run's config does not record its precision:\n{saved}"
    );
    let reference = losses(&straight);
    assert_eq!(reference.len() as u64, STEPS);

    // The same run, killed with SIGKILL while it checkpoints every step.
    let run = dir.path().join("killed");
    let mut child = pretrain(&data, &run, STEPS)
        .args(["--precision", "bf16", "--set", "checkpoint.every_steps=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let ckpts = run.join("checkpoints");
    let status = common::kill_9_once_checkpoints_exist(&mut child, &ckpts, 3);
    assert!(
        !status.success(),
        "the run finished before it was killed; the test proves nothing"
    );
    ok(
        cloze()
            .args(["pretrain", "--resume"])
            .arg(&run)
            .output()
            .expect("spawn"),
        "resume after kill -9",
    );
    // The metrics may hold lines past the checkpoint the run resumed from; the
    // last line of each step is the one that counts.
    let mut resumed = std::collections::BTreeMap::new();
    for (step, loss) in losses(&run) {
        resumed.insert(step, loss);
    }
    let resumed: Vec<(u64, f64)> = resumed.into_iter().collect();
    assert_eq!(
        resumed, reference,
        "the killed and resumed bf16 run differs from the uninterrupted one"
    );

    // What is saved is fp32, whatever the training precision.
    let model = straight.join("model").join("model.safetensors");
    let tensors = tch::Tensor::read_safetensors(&model).expect("model.safetensors");
    assert!(!tensors.is_empty());
    for (name, t) in &tensors {
        assert_eq!(t.kind(), tch::Kind::Float, "{name}");
    }
}

#[test]
fn an_unknown_precision_is_refused_naming_the_accepted_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cloze()
        .args([
            "pretrain",
            "--config",
            "bert-tiny",
            "--precision",
            "fp8",
            "--data",
        ])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fp8") && err.contains("bf16"), "{err}");
    assert!(!dir.path().join("run").exists());
}
