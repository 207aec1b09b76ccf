//! `cloze pretrain` never loses user data and says what to do: the run
//! directory is checked before any work, `--force` removes only what a run
//! wrote, one writer per run, a second Ctrl-C quits cleanly with 130, data
//! longer than the model is refused up front, and `--resume` refuses changes,
//! damage and going backwards with the exact command to use instead.
//! Every test drives the real binary on a tiny model.

mod common;

use common::{cloze, fails_with, ok, prepare, pretrain};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Entry names of a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The run's complete checkpoints, by directory name.
fn checkpoints(run: &Path) -> Vec<String> {
    names(&run.join("checkpoints"))
        .into_iter()
        .filter(|n| n.starts_with("step-"))
        .collect()
}

fn resume(run: &Path) -> Command {
    let mut c = cloze();
    c.args(["pretrain", "--resume"]).arg(run);
    c
}

fn sigint(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits until `ready` holds, failing the test if the child exits first or it takes too long.
fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < Duration::from_secs(120), "{what}: timed out");
        if let Some(status) = child.try_wait().expect("poll") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("{what}: pretrain exited early ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metrics_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn out_that_is_a_file_the_current_dir_read_only_or_foreign_is_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").expect("write");
    let out = pretrain(&data, &file, 5).output().expect("spawn");
    fails_with(&out, "--out");
    assert!(stderr(&out).contains("notes.txt"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "keep me");

    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).expect("mkdir");
    std::fs::write(cwd.join("x.txt"), "x").expect("write");
    let out = pretrain(&data, Path::new("."), 5)
        .current_dir(&cwd)
        .output()
        .expect("spawn");
    fails_with(&out, "current directory");
    assert_eq!(names(&cwd), ["x.txt"]);

    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    let mut perm = std::fs::metadata(&ro).expect("meta").permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(&ro, perm.clone()).expect("chmod");
    let out = pretrain(&data, &ro.join("run"), 5).output().expect("spawn");
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&ro, perm).expect("chmod back");
    fails_with(&out, "read-only");
    assert!(names(&ro).is_empty(), "{:?}", names(&ro));

    // A directory that is not a run is never replaced, not even with --force.
    let foreign = dir.path().join("thesis");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("thesis.tex"), "years of work").expect("write");
    let out = pretrain(&data, &foreign, 5)
        .arg("--force")
        .output()
        .expect("spawn");
    fails_with(&out, "thesis.tex");
    assert_eq!(names(&foreign), ["thesis.tex"]);
}

#[test]
fn an_existing_run_needs_resume_or_force_and_force_removes_only_what_a_run_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    let out = ok(
        pretrain(&data, &run, 5).output().expect("spawn"),
        "first run",
    );
    // Eval lines reach a log that is not a terminal (the progress bar is hidden there).
    assert!(
        stderr(&out).contains("held-out loss mlm"),
        "{}",
        stderr(&out)
    );
    assert!(
        run.join(".cloze-output.json").is_file(),
        "the run is marked"
    );

    // The user's own files in the run directory, and stale run output.
    std::fs::write(run.join("notes.txt"), "mine").expect("write");
    std::fs::create_dir(run.join("analysis")).expect("mkdir");
    std::fs::write(run.join("analysis/table.csv"), "a,b").expect("write");
    std::fs::create_dir_all(run.join("checkpoints/step-00000099")).expect("mkdir");
    std::fs::create_dir_all(run.join("plots")).expect("mkdir");
    std::fs::write(run.join("plots/old.png"), "png").expect("write");

    let out = pretrain(&data, &run, 5).output().expect("spawn");
    fails_with(&out, "--resume");
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(
        run.join("checkpoints/step-00000005").is_dir(),
        "nothing removed"
    );

    let out = ok(
        pretrain(&data, &run, 5)
            .arg("--force")
            .output()
            .expect("spawn"),
        "--force",
    );
    assert!(stdout(&out).contains("trained 5 steps"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(run.join("notes.txt")).expect("kept"),
        "mine"
    );
    assert!(run.join("analysis/table.csv").is_file(), "kept");
    assert!(
        !run.join("checkpoints/step-00000099").exists(),
        "old checkpoints removed"
    );
    assert!(!run.join("plots").exists(), "old plots removed");
    assert_eq!(checkpoints(&run), ["step-00000005"]);
}

#[test]
fn a_run_directory_holding_the_data_is_never_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    prepare(dir.path(), 200);
    let run = dir.path().join("run");
    let data = run.join("data");
    std::fs::create_dir(&run).expect("mkdir");
    ok(
        cloze()
            .args(["data", "prepare", "--corpus"])
            .arg(dir.path().join("corpus.txt"))
            .arg("--tokenizer")
            .arg(dir.path().join("tok"))
            .arg("--out")
            .arg(&data)
            .args(["--mode", "packed", "--max-seq-length", "32"])
            .args(["--holdout-fraction", "0.2"])
            .output()
            .expect("spawn"),
        "data prepare inside the run directory",
    );
    let before = names(&data);
    for force in [false, true] {
        let mut c = pretrain(&data, &run, 5);
        if force {
            c.arg("--force");
        }
        let out = c.output().expect("spawn");
        fails_with(&out, "holds an input");
        assert_eq!(names(&data), before, "the data is untouched");
        assert_eq!(names(&run), ["data"]);
    }
}

#[test]
fn a_second_writer_is_refused_naming_the_first_ones_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    let mut first = pretrain(&data, &run, 100_000)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&mut first, "training under way", || {
        metrics_lines(&run) >= 3
    });
    let config = std::fs::read(run.join("config.toml")).expect("config");
    let pid = first.id().to_string();

    let fresh = pretrain(&data, &run, 5).output().expect("spawn");
    fails_with(&fresh, &pid);
    let forced = pretrain(&data, &run, 5)
        .arg("--force")
        .output()
        .expect("spawn");
    fails_with(&forced, &pid);
    let resumed = resume(&run)
        .args(["--max-steps", "7"])
        .output()
        .expect("spawn");
    fails_with(&resumed, &pid);
    assert!(
        stderr(&resumed).contains("another process"),
        "{}",
        stderr(&resumed)
    );

    assert!(
        first.try_wait().expect("poll").is_none(),
        "the first run goes on"
    );
    assert_eq!(
        std::fs::read(run.join("config.toml")).expect("config"),
        config
    );
    let lines = metrics_lines(&run);
    wait_for(&mut first, "the first run keeps writing", || {
        metrics_lines(&run) > lines
    });
    sigint(&first);
    let out = first.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // The lock died with the process: the run can be continued now.
    let latest = checkpoints(&run).pop().expect("a checkpoint");
    let step: u64 = latest["step-".len()..].parse().expect("step");
    ok(
        resume(&run)
            .args(["--max-steps", &(step + 2).to_string()])
            .output()
            .expect("spawn"),
        "resume after the first writer stopped",
    );
}

#[test]
fn a_second_ctrl_c_quits_at_once_with_130_and_the_last_checkpoint_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    // Two libtorch threads and a wider model, so the second press lands while
    // libtorch is busy (in a step or in the checkpoint the first press asked for).
    let mut child = pretrain(&data, &run, 100_000)
        .args([
            "--set",
            "run.threads=2",
            "--set",
            "checkpoint.every_steps=3",
        ])
        .args([
            "--set",
            "model.hidden_size=128",
            "--set",
            "model.intermediate_size=512",
        ])
        .args(["--set", "data.batch_size=32"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&mut child, "a checkpoint", || {
        run.join("checkpoints").is_dir() && !checkpoints(&run).is_empty()
    });
    sigint(&child);
    std::thread::sleep(Duration::from_millis(15));
    // The first press may already have finished; a second signal then finds no process.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    // Which press ended it depends on timing; both must end the same way.
    eprintln!("stderr after two Ctrl-C:\n{err}");
    assert_eq!(out.status.code(), Some(130), "status {}: {err}", out.status);
    for bad in [
        "terminate called",
        "Segmentation",
        "libtorch",
        "backtrace",
        "c10::",
        "panicked",
    ] {
        assert!(!err.contains(bad), "stderr mentions {bad:?}:\n{err}");
    }
    // Whatever was being written when the process quit, the newest complete
    // checkpoint verifies and the run resumes from it.
    let latest = checkpoints(&run).pop().expect("a checkpoint survives");
    let step: u64 = latest["step-".len()..].parse().expect("step");
    let out = ok(
        resume(&run)
            .args(["--max-steps", &(step + 2).to_string()])
            .output()
            .expect("spawn"),
        "resume after two Ctrl-C",
    );
    assert!(
        stdout(&out).contains(&format!("trained {} steps", step + 2)),
        "{}",
        stdout(&out)
    );
    for name in names(&run.join("checkpoints")) {
        assert!(name.starts_with("step-"), "leftover {name}");
    }
}

#[test]
fn data_longer_than_the_position_embeddings_is_refused_before_the_run_dir_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200); // --max-seq-length 32
    let run = dir.path().join("run");
    let out = pretrain(&data, &run, 5)
        .args(["--set", "model.max_position_embeddings=30"])
        .output()
        .expect("spawn");
    fails_with(&out, "model.max_position_embeddings");
    let err = stderr(&out);
    assert!(err.contains("32") && err.contains("30"), "{err}");
    assert!(err.contains("--max-seq-length"), "{err}");
    assert!(!run.exists(), "no run directory is left behind");
}

#[test]
fn a_pair_objective_on_data_without_pair_labels_is_refused_before_the_run_dir_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200); // --mode packed: no pair labels
    let run = dir.path().join("run");
    let out = pretrain(&data, &run, 5)
        .args(["--set", r#"objective.kind="mlm_sop""#])
        .output()
        .expect("spawn");
    fails_with(&out, "--mode sop");
    let err = stderr(&out);
    assert!(err.contains("--mode packed"), "{err}");
    assert!(!err.contains("step      0"), "no evaluation ran: {err}");
    assert!(!run.exists(), "no run directory is left behind");
}

#[test]
fn masking_that_selects_nothing_is_an_error_about_the_masking_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    for sets in [
        &[
            "masking.select.rate=0.0",
            "masking.select.min_predictions=0",
        ][..],
        &[r#"masking.select={ type = "bernoulli", rate = 0.0 }"#][..],
    ] {
        let mut c = pretrain(&data, &run, 5);
        for s in sets {
            c.args(["--set", s]);
        }
        let out = c.output().expect("spawn");
        fails_with(&out, "select.rate");
        let err = stderr(&out);
        assert!(err.contains("masking"), "{err}");
        assert!(!err.contains("the loss became"), "{err}");
        assert!(!err.contains("optimizer.lr"), "{err}");
        assert!(!run.exists());
    }
}

/// The suggested command on a line of `text` that starts with `prefix`, as arguments.
fn suggested(text: &str, prefix: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"));
    let args = line
        .trim()
        .strip_prefix("cloze ")
        .unwrap_or_else(|| panic!("not a cloze command: {line}"));
    args.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn resume_refuses_changes_going_backwards_and_damage_with_the_command_to_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    ok(pretrain(&data, &run, 10).output().expect("spawn"), "run");
    assert_eq!(checkpoints(&run), ["step-00000005", "step-00000010"]);
    let config = std::fs::read(run.join("config.toml")).expect("config");

    // Flags that would change the run are listed, saved -> requested.
    let out = resume(&run)
        .args(["--lr", "1e-4", "--batch-size", "4", "--max-steps", "20"])
        .args(["--set", "optimizer.weight_decay=0.5"])
        .output()
        .expect("spawn");
    fails_with(&out, "optimizer.lr: 0.002 -> 0.0001");
    let err = stderr(&out);
    assert!(err.contains("data.batch_size: 8 -> 4"), "{err}");
    assert!(err.contains("optimizer.weight_decay: 0.01 -> 0.5"), "{err}");
    assert!(
        !err.contains("run.max_steps: "),
        "--max-steps is allowed: {err}"
    );
    let out = resume(&run)
        .args(["--config", "bert-mini"])
        .output()
        .expect("spawn");
    fails_with(&out, "model.hidden_size");
    assert_eq!(
        std::fs::read(run.join("config.toml")).expect("config"),
        config
    );

    // Going backwards.
    let out = resume(&run)
        .args(["--max-steps", "3"])
        .output()
        .expect("spawn");
    fails_with(&out, "already at step 10");
    assert!(stderr(&out).contains("--max-steps 3"), "{}", stderr(&out));

    // A damaged newest checkpoint names the newest intact one and the command.
    let opt = run.join("checkpoints/step-00000010/optimizer.safetensors");
    let mut bytes = std::fs::read(&opt).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&opt, bytes).expect("write");
    let out = resume(&run)
        .args(["--max-steps", "15"])
        .output()
        .expect("spawn");
    fails_with(&out, "damaged");
    let args = suggested(&stderr(&out), "resume from it with:");
    assert!(
        args.windows(2).any(|w| w == ["--from-checkpoint", "5"]),
        "{args:?}"
    );
    let out = ok(
        Command::new(env!("CARGO_BIN_EXE_cloze"))
            .arg("-q")
            .args(&args)
            .output()
            .expect("spawn"),
        "the suggested command",
    );
    assert!(
        stdout(&out).contains("trained 15 steps"),
        "{}",
        stdout(&out)
    );
    let kept: PathBuf = run.join("checkpoints/superseded-step-00000010");
    assert!(kept.join("optimizer.safetensors").is_file(), "kept aside");
    assert!(
        checkpoints(&run).ends_with(&["step-00000010".into(), "step-00000015".into()]),
        "{:?}",
        checkpoints(&run)
    );
}
