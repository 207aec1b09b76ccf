//! Issue 11 ("Nothing lost"), the inference side, through the real binary: a
//! `[MASK]` cut off by truncation, truncated lines counted (or refused with
//! `--strict`), `--max-length` checked against the model before any work, NaN
//! weights refused, `cloze eval` on something that is not prepared data, the line
//! number of a bad metrics record in `cloze plot`, and logs without ANSI escapes
//! when stderr is not a terminal or `NO_COLOR` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cloze, fails_with, fixture, model_dir, ok};

/// The fixture's `max_position_embeddings`.
const MAX_POS: usize = 40;

/// `n` words `w5 w6 ...` (cycling through the vocabulary).
fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{}", 5 + i % 91))
        .collect::<Vec<_>>()
        .join(" ")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs `cloze -q ARGS...` with `--model DIR --device cpu` appended.
fn run_on(model: &Path, args: &[&str]) -> Output {
    cloze()
        .args(args)
        .arg("--model")
        .arg(model)
        .args(["--device", "cpu"])
        .output()
        .expect("spawn")
}

/// An input file: line 1 short, line 2 blank, line 3 of `long` words, line 4 short.
fn input_with_a_long_line(dir: &Path, long: usize) -> PathBuf {
    let p = dir.join("in.txt");
    std::fs::write(&p, format!("w5 w6 w7\n\n{}\nw8 w9\n", words(long))).expect("input");
    p
}

#[test]
fn fill_mask_says_a_mask_beyond_the_maximum_length_was_cut_off() {
    let dir = model_dir();
    // 45 words then [MASK]: the mask is token 46 ([CLS] is 0), past the 40 positions.
    let text = format!("{} [MASK]", words(45));
    let out = run_on(dir.path(), &["fill-mask", &text]);
    fails_with(
        &out,
        &format!("[MASK] at token 46 is beyond the maximum length {MAX_POS}"),
    );
    let err = stderr(&out);
    assert!(!err.contains("no [MASK]"), "{err}");
    assert!(err.contains("text 1"), "{err}");
    // Below the model's limit the advice names the flag.
    let out = run_on(
        dir.path(),
        &["fill-mask", "--max-length", "8", "w5 [MASK]", &text],
    );
    fails_with(&out, "text 2");
    fails_with(&out, "[MASK] at token 46 is beyond the maximum length 8");
    fails_with(&out, "raise --max-length");
    // One mask kept and one cut off is still an error: half an answer is not one.
    let out = run_on(
        dir.path(),
        &[
            "fill-mask",
            "--max-length",
            "8",
            "w5 [MASK] w6 w7 w8 w9 w10 w11 [MASK]",
        ],
    );
    fails_with(&out, "[MASK] at token 9 is beyond the maximum length 8");
    // A text with no mask at all keeps its own message.
    let out = run_on(dir.path(), &["fill-mask", "w5 w6"]);
    fails_with(&out, "contains no [MASK]");
}

#[test]
fn fill_mask_counts_truncated_texts_and_strict_refuses_them() {
    let dir = model_dir();
    let long = format!("w5 [MASK] {}", words(60));
    let out = ok(
        run_on(dir.path(), &["fill-mask", "--json", "w5 [MASK] w7", &long]),
        "fill-mask",
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("1 of 2 texts were truncated to {MAX_POS} tokens")),
        "{err}"
    );
    assert!(err.contains("text 2"), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines[0]["truncated"], false);
    assert_eq!(lines[1]["truncated"], true);
    let out = run_on(
        dir.path(),
        &["fill-mask", "--strict", "w5 [MASK] w7", &long],
    );
    fails_with(&out, "text 2");
    fails_with(&out, "--strict");
    fails_with(&out, "64 tokens");
    assert!(out.stdout.is_empty(), "nothing predicted before refusing");
}

#[test]
fn encode_counts_truncated_lines_and_strict_names_the_first() {
    let dir = model_dir();
    let input = input_with_a_long_line(dir.path(), 50);
    let output = dir.path().join("out.jsonl");
    let encode = |extra: &[&str]| {
        cloze()
            .arg("encode")
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(extra)
            .arg("--model")
            .arg(dir.path())
            .args(["--device", "cpu"])
            .output()
            .expect("spawn")
    };
    let out = ok(encode(&[]), "encode");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("1 of 3 lines were truncated to {MAX_POS} tokens")),
        "{err}"
    );
    assert!(err.contains("line 3 of"), "the file's line number: {err}");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows[1]["line"], 3);
    assert_eq!(rows[1]["truncated"], true);
    assert_eq!(rows[1]["tokens"].as_array().map(Vec::len), Some(MAX_POS));
    assert_eq!(rows[2]["truncated"], false);
    // --max-len is still accepted (the old name).
    let out = ok(encode(&["--max-len", "4"]), "encode --max-len");
    let err = stderr(&out);
    assert!(
        err.contains("2 of 3 lines were truncated to 4 tokens (the first is line 1 of"),
        "{err}"
    );

    std::fs::remove_file(&output).expect("remove");
    let out = encode(&["--strict"]);
    fails_with(&out, "line 3 of");
    fails_with(&out, "52 tokens, more than --max-length 40 (--strict)");
    assert!(!output.exists(), "nothing written when --strict refuses");
}

#[test]
fn encode_never_writes_over_its_own_input() {
    let dir = model_dir();
    let input = dir.path().join("texts.jsonl");
    std::fs::write(&input, "the first line\nthe second line\n").expect("input");
    let out = cloze()
        .arg("encode")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join(".").join("texts.jsonl"))
        .arg("--model")
        .arg(dir.path())
        .args(["--device", "cpu"])
        .output()
        .expect("spawn");
    fails_with(&out, "is the --input file");
    assert_eq!(
        std::fs::read_to_string(&input).expect("input kept"),
        "the first line\nthe second line\n"
    );
}

#[test]
fn score_echoes_the_text_it_scored_and_counts_truncation() {
    let dir = model_dir();
    let input = input_with_a_long_line(dir.path(), 50);
    let out = ok(
        cloze()
            .arg("score")
            .arg("--input")
            .arg(&input)
            .args(["--max-length", "10"])
            .arg("--model")
            .arg(dir.path())
            .args(["--device", "cpu"])
            .output()
            .expect("spawn"),
        "score",
    );
    let err = stderr(&out);
    assert!(
        err.contains("1 of 3 lines were truncated to 10 tokens"),
        "{err}"
    );
    assert!(err.contains("line 3 of"), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["scored_text"], "w5 w6 w7");
    assert_eq!(lines[0]["truncated"], false);
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[1]["text"], words(50));
    assert_eq!(lines[1]["scored_text"], words(8));
    assert_eq!(lines[1]["truncated"], true);
    assert_eq!(lines[1]["tokens"], 8);
    assert_eq!(lines[3]["truncated"], 1);
    let out = cloze()
        .arg("score")
        .arg("--input")
        .arg(&input)
        .args(["--max-length", "10", "--strict"])
        .arg("--model")
        .arg(dir.path())
        .args(["--device", "cpu"])
        .output()
        .expect("spawn");
    fails_with(&out, "line 3 of");
    fails_with(&out, "more than --max-length 10 (--strict)");
    assert!(out.stdout.is_empty());
}

#[test]
fn max_length_is_checked_against_the_model_before_any_work() {
    let dir = model_dir();
    // Weights that would fail to load: the length check must come first.
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").expect("write");
    let input = input_with_a_long_line(dir.path(), 5);
    let output = dir.path().join("out.safetensors");
    for huge in ["100000", "4294967296", "41"] {
        let runs: [Vec<&str>; 3] = [
            vec!["fill-mask", "--max-length", huge, "w5 [MASK]"],
            vec![
                "encode",
                "--max-length",
                huge,
                "--input",
                input.to_str().expect("utf-8"),
                "--output",
                output.to_str().expect("utf-8"),
            ],
            vec![
                "score",
                "--max-length",
                huge,
                "--input",
                input.to_str().expect("utf-8"),
            ],
        ];
        for args in runs {
            let out = run_on(dir.path(), &args);
            fails_with(&out, &format!("--max-length {huge} exceeds"));
            fails_with(&out, &format!("max_position_embeddings ({MAX_POS})"));
            assert!(!stderr(&out).contains("safetensors"), "{}", stderr(&out));
        }
    }
    assert!(!output.exists());
    // Too small to hold any text besides [CLS] and [SEP].
    let out = run_on(dir.path(), &["fill-mask", "--max-length", "2", "w5 [MASK]"]);
    fails_with(&out, "--max-length 2");
    fails_with(&out, "no room for text");
    let out = run_on(dir.path(), &["fill-mask", "--max-length", "0", "w5 [MASK]"]);
    fails_with(&out, "--max-length 0");
}

/// The fixture with a NaN and an infinity in one weight, as a model directory.
fn nan_model_dir(key_suffix: &str) -> (tempfile::TempDir, String) {
    let dir = model_dir();
    let path = dir.path().join("model.safetensors");
    let mut t = cloze_models::hf::read_safetensors(&path).expect("read");
    let key = t
        .keys()
        .find(|k| k.ends_with(key_suffix))
        .expect("key")
        .clone();
    let bad = t[&key].copy();
    let flat = bad.view([-1]);
    let _ = flat.narrow(0, 0, 1).fill_(f64::NAN);
    let _ = flat.narrow(0, 1, 1).fill_(f64::INFINITY);
    t.insert(key.clone(), bad);
    cloze_models::hf::write_safetensors(&path, &t).expect("write");
    (dir, key)
}

#[test]
fn nan_weights_are_refused_by_fill_mask_encode_and_score() {
    let (dir, key) = nan_model_dir("encoder.layer.0.output.dense.weight");
    let input = input_with_a_long_line(dir.path(), 5);
    let output = dir.path().join("out.jsonl");
    let runs: [Vec<&str>; 3] = [
        vec!["fill-mask", "w5 [MASK]"],
        vec![
            "encode",
            "--input",
            input.to_str().expect("utf-8"),
            "--output",
            output.to_str().expect("utf-8"),
        ],
        vec!["score", "--input", input.to_str().expect("utf-8")],
    ];
    for args in runs {
        let out = run_on(dir.path(), &args);
        fails_with(
            &out,
            &format!("checkpoint tensor `{key}` holds 1 NaN and 1 infinite"),
        );
        assert!(out.stdout.is_empty(), "{args:?} printed results");
    }
    assert!(!output.exists());
}

/// Reads `special_tokens.vocab_size` from a prepared data directory's manifest.
fn prepared_vocab_size(data: &Path) -> i64 {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    m["special_tokens"]["vocab_size"]
        .as_i64()
        .unwrap_or_else(|| panic!("no special_tokens.vocab_size in {m}"))
}

#[test]
fn eval_refuses_what_is_not_prepared_data_or_a_model_and_nan_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::prepare(dir.path(), 200);
    let model = dir.path().join("model");
    std::fs::create_dir(&model).expect("mkdir");
    let eval = |model: &Path, data: &Path| {
        cloze()
            .arg("eval")
            .arg("--model")
            .arg(model)
            .arg("--data")
            .arg(data)
            .output()
            .expect("spawn")
    };
    // A directory that is not prepared data (here: the tokenizer's).
    let not_data = dir.path().join("tok");
    let out = eval(&model, &not_data);
    fails_with(
        &out,
        &format!(
            "{} is not a `cloze data prepare` output (no manifest.json); prepare it with `cloze data prepare ... --out {}`",
            not_data.display(),
            not_data.display()
        ),
    );
    let out = eval(&model, &dir.path().join("missing"));
    fails_with(&out, "does not exist");
    fails_with(&out, "cloze data prepare");
    // A model directory without config.json / model.safetensors.
    let out = eval(&model, &data);
    fails_with(
        &out,
        "is not a checkpoint directory (no config.json, no model.safetensors)",
    );
    // A run directory passed as --model points at RUN/model.
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("model")).expect("mkdir");
    std::fs::copy(fixture().join("config.json"), run.join("model/config.json")).expect("copy");
    let out = eval(&run, &data);
    fails_with(
        &out,
        &format!("pass --model {}", run.join("model").display()),
    );
    // A run directory passed as --data names the data it was trained on.
    std::fs::write(
        run.join("model/cloze_data.json"),
        serde_json::json!({"tokenizer_sha256": "0", "vocab_size": 96, "data_dir": "/where/the/data/is"})
            .to_string(),
    )
    .expect("record");
    let out = eval(&run.join("model"), &run);
    fails_with(&out, "is not a `cloze data prepare` output");
    fails_with(
        &out,
        "it looks like a pretraining run, whose data is /where/the/data/is",
    );

    // A model of the data's vocabulary whose weights hold a NaN.
    let mut c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("config.json")).expect("config"),
    )
    .expect("json");
    c["vocab_size"] = prepared_vocab_size(&data).into();
    let config: cloze_models::BertConfig = serde_json::from_value(c).expect("config");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _m = cloze_models::BertForPreTraining::new(&vs.root(), &config).expect("model");
    const KEY: &str = "bert.encoder.layer.1.attention.output.dense.weight";
    let vars = vs.variables();
    tch::no_grad(|| {
        let _ = vars[KEY].view([-1]).narrow(0, 5, 3).fill_(f64::NAN);
    });
    cloze_models::save_pretrained(&vs, &config, &model).expect("save");
    let out = eval(&model, &data);
    fails_with(&out, &format!("checkpoint tensor `{KEY}` holds 3 NaN"));
    assert!(out.stdout.is_empty());
}

fn train_record(step: u64) -> String {
    serde_json::to_string(&cloze_train::metrics::MetricsRecord::Train(
        cloze_train::metrics::TrainMetrics {
            step,
            loss: 5.0 - step as f64 * 0.1,
            report: cloze_core::Report::new().loss("mlm", 5.0 - step as f64 * 0.1),
            lr: 1e-3,
            grad_norm: 1.0,
            tokens_per_s: 1000.0,
            tokens_seen: step * 100,
            elapsed_s: step as f64,
            skipped: 0,
            allreduce_s: None,
        },
    ))
    .expect("serialise")
}

#[test]
fn plot_names_the_file_line_of_a_bad_metrics_record() {
    let run = tempfile::tempdir().expect("tempdir");
    let metrics = run.path().join("metrics.jsonl");
    std::fs::write(
        &metrics,
        format!(
            "{}\n{}\n{{\"kind\": \"train\", \"step\": 3,\n{}\n",
            train_record(1),
            train_record(2),
            train_record(4)
        ),
    )
    .expect("write");
    let out = cloze().arg("plot").arg(run.path()).output().expect("spawn");
    fails_with(&out, "metrics.jsonl line 3");
    let err = stderr(&out);
    assert!(!err.contains("line 1"), "{err}");
    // A blank line counts as a line of the file too.
    std::fs::write(
        &metrics,
        format!(
            "{}\n\n{}\n\n{}\nnot json\n",
            train_record(1),
            train_record(2),
            train_record(3)
        ),
    )
    .expect("write");
    let out = cloze().arg("plot").arg(run.path()).output().expect("spawn");
    fails_with(&out, "metrics.jsonl line 6, column");
    // An incomplete last record (a run writing it, or killed mid-write) is skipped.
    std::fs::write(
        &metrics,
        format!("{}\n{}\n{{\"kind\": \"tr", train_record(1), train_record(2)),
    )
    .expect("write");
    let out = ok(
        cloze().arg("plot").arg(run.path()).output().expect("spawn"),
        "plot with an incomplete last line",
    );
    assert!(stderr(&out).contains("line 3: ignoring an incomplete last record"));
    assert!(run.path().join("plots/loss.png").is_file());
}

/// `cloze` without `-q`, so that info-level logs are written.
fn cloze_logging() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloze"))
}

#[test]
fn logs_to_a_pipe_carry_no_ansi_escapes() {
    let dir = model_dir();
    for verbose in [None, Some("-v")] {
        for no_color in [false, true] {
            let mut c = cloze_logging();
            c.args(verbose);
            c.arg("fill-mask").arg("--model").arg(dir.path());
            c.args(["--device", "cpu", "w5 [MASK] w7"]);
            if no_color {
                c.env("NO_COLOR", "1");
            } else {
                c.env_remove("NO_COLOR");
            }
            let out = ok(c.output().expect("spawn"), "fill-mask");
            let err = stderr(&out);
            assert!(err.contains("model loaded"), "info logs are written: {err}");
            assert!(
                err.contains("INFO"),
                "the level is shown, in plain text: {err}"
            );
            assert!(!err.contains("\x1b["), "ANSI escape in piped logs: {err:?}");
        }
    }
}

/// Runs `cloze ARGS` under a pseudo-terminal (util-linux `script`), returning what
/// the terminal received, or `None` where `script` is not available.
fn on_a_terminal(args: &[&str], no_color: bool) -> Option<String> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line = std::iter::once(env!("CARGO_BIN_EXE_cloze"))
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"]);
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let out = c.output().ok()?;
    assert!(
        out.status.success(),
        "{line} under script: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let dir = model_dir();
    let model = dir.path().to_str().expect("utf-8");
    let args = [
        "fill-mask",
        "--model",
        model,
        "--device",
        "cpu",
        "w5 [MASK] w7",
    ];
    let Some(coloured) = on_a_terminal(&args, false) else {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    };
    // The control: on a terminal, without NO_COLOR, the logs are coloured.
    assert!(coloured.contains("model loaded"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_a_terminal(&args, true).expect("script ran once already");
    assert!(plain.contains("model loaded"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR ignored: {plain:?}");
}
