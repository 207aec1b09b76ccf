//! Driver-level checks: the help lists working subcommands, and logging flags work.

use std::process::Command;

fn cloze() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloze"))
}

fn subcommands() -> Vec<String> {
    let out = cloze().arg("--help").output().expect("run cloze --help");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8 help");
    let section = text.split("Commands:").nth(1).expect("a Commands: section");
    let section = section.split("Options:").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_listed_subcommand_has_working_help() {
    let subs = subcommands();
    assert!(
        subs.iter().any(|s| s == "info"),
        "info missing from {subs:?}"
    );
    for s in &subs {
        let out = cloze()
            .args([s.as_str(), "--help"])
            .output()
            .expect("run subcommand help");
        assert!(out.status.success(), "`cloze {s} --help` failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Usage: cloze"),
            "`cloze {s} --help` printed no usage"
        );
    }
}

#[test]
fn unknown_subcommand_fails() {
    let out = cloze().arg("no-such-command").output().expect("run cloze");
    assert!(!out.status.success());
}

#[test]
fn verbosity_flags_and_rust_log_control_the_log() {
    // `info` logs nothing at info level, so use a debug-level event from the driver.
    let quiet = cloze().args(["-q", "info"]).output().expect("run");
    assert!(quiet.status.success());
    let verbose = cloze()
        .args(["-vv", "info"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    assert!(verbose.status.success());
    let v = String::from_utf8_lossy(&verbose.stderr);
    assert!(
        v.contains("TRACE") || v.contains("DEBUG"),
        "no debug output with -vv: {v}"
    );
    let q = String::from_utf8_lossy(&quiet.stderr);
    assert!(
        !q.contains("DEBUG") && !q.contains("INFO"),
        "-q still logs: {q}"
    );
    let env = cloze()
        .args(["-q", "info"])
        .env("RUST_LOG", "debug")
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&env.stderr).contains("DEBUG"),
        "RUST_LOG=debug ignored"
    );
    assert!(cloze()
        .args(["-q", "-v", "info"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(false));
}

#[test]
fn info_reports_libtorch_threads() {
    let out = cloze().arg("info").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("libtorch intra-op threads:"), "{text}");
}

#[test]
fn threads_flag_sets_libtorch_threads() {
    let out = cloze()
        .args(["--threads", "1", "info"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("libtorch intra-op threads: 1"));
    let zero = cloze()
        .args(["--threads", "0", "info"])
        .output()
        .expect("run");
    assert!(!zero.status.success());
}
