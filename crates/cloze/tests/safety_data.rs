//! "Nothing lost" for `cloze data prepare` and `cloze tokenizer train`, through
//! the real binary: `--out` never replaces the user's data (its own earlier
//! output only with `--force`, never a directory holding an input), one writer
//! per output, Ctrl-C removes the staging directory and exits 130, `kill -9`
//! leftovers are removed by the next run, sizes are bounded before any work,
//! over-long lines and short vocabularies say what to do, and a manifest
//! cannot point outside its data directory.
//!
//! Corpora that must be read "slowly" are named pipes: the child blocks on
//! them until the test writes, so every interleaving here is deterministic.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cloze, fails_with, ok, write_corpus};

/// A PID above the kernel's `pid_max` (4194304): no process can have it.
const DEAD_PID: u32 = 4_194_305;

fn run(c: &mut Command) -> Output {
    c.output().expect("spawn cloze")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Trains a small tokenizer on `corpus` into `out`.
fn train(corpus: &Path, out: &Path) -> Command {
    let mut c = cloze();
    c.args(["tokenizer", "train", "--corpus"])
        .arg(corpus)
        .args(["--vocab-size", "120", "--min-frequency", "1", "--out"])
        .arg(out);
    c
}

/// `cloze data prepare` with small, quick settings.
fn prepare(corpus: &Path, tok: &Path, out: &Path) -> Command {
    let mut c = cloze();
    c.args(["data", "prepare", "--corpus"])
        .arg(corpus)
        .arg("--tokenizer")
        .arg(tok)
        .arg("--out")
        .arg(out)
        .args(["--mode", "packed"]);
    c
}

/// A corpus and a tokenizer trained on it, in `dir`.
fn corpus_and_tokenizer(dir: &Path) -> (PathBuf, PathBuf) {
    let corpus = dir.join("corpus.txt");
    write_corpus(&corpus, 20);
    let tok = dir.join("tok");
    ok(run(&mut train(&corpus, &tok)), "tokenizer train");
    (corpus, tok)
}

/// A child process killed when dropped, so a failing test leaves no process
/// blocked on a pipe. Its stderr is read as it is written, so a test can wait
/// for a message (see [`Running::wait_for_stderr`]).
struct Running {
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Running {
    fn spawn(mut c: Command) -> Self {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cloze");
        let mut pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr buffer")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child: Some(child),
            stderr,
            reader: Some(reader),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits (at most a minute) until the child has written `needle` to stderr.
    fn wait_for_stderr(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text =
                String::from_utf8_lossy(&self.stderr.lock().expect("stderr buffer")).into_owned();
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "no {needle:?} on stderr: {text}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit (at most a minute) and returns status and output
    /// (small: the binary runs with `-q`, so the stdout pipe never fills).
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child().try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "cloze did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        let child = self.child.take().expect("running");
        let mut out = child.wait_with_output().expect("output");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        out.stderr = std::mem::take(&mut *self.stderr.lock().expect("stderr buffer"));
        out
    }
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success(), "mkfifo failed");
}

/// Waits (at most a minute) until `dir` has an entry starting with `prefix`.
fn wait_for_entry(dir: &Path, prefix: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = fs::read_dir(dir)
            .expect("list dir")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        {
            return e.path();
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix}* appeared in {}: {:?}",
            dir.display(),
            entries(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `bytes` into the pipe `fifo` once its reader has opened it, then
/// closes it (end of file for the reader). Non-blocking, so a reader that
/// died makes this fail instead of hang.
fn feed_fifo(fifo: &Path, bytes: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut file = loop {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => break f,
            Err(e) => {
                assert!(Instant::now() < deadline, "no reader on the pipe: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        match file.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the reader stopped reading");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("writing the pipe: {e}"),
        }
    }
}

fn sigint(pid: u32) {
    let st = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill -INT");
    assert!(st.success());
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn prepare_refuses_an_out_that_holds_its_inputs_and_keeps_them() {
    // The reproduction: mkdir -p o/self && cp corpus.txt
    // tok/tokenizer.json o/self/ && cloze data prepare --corpus
    // o/self/corpus.txt --tokenizer o/self --out o/self
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let own = dir.path().join("o/self");
    fs::create_dir_all(&own).expect("mkdir");
    fs::copy(&corpus, own.join("corpus.txt")).expect("cp");
    fs::copy(tok.join("tokenizer.json"), own.join("tokenizer.json")).expect("cp");
    let text = fs::read(&corpus).expect("corpus");
    let tok_json = fs::read(tok.join("tokenizer.json")).expect("tokenizer");
    for force in [false, true] {
        let mut c = prepare(&own.join("corpus.txt"), &own, &own);
        if force {
            c.arg("--force");
        }
        let out = run(&mut c);
        fails_with(&out, "o/self");
        fails_with(&out, "--out");
        fails_with(&out, "holds an input");
        assert_eq!(fs::read(own.join("corpus.txt")).expect("corpus kept"), text);
        assert_eq!(
            fs::read(own.join("tokenizer.json")).expect("tokenizer kept"),
            tok_json
        );
        assert_eq!(entries(&own), ["corpus.txt", "tokenizer.json"]);
        assert_eq!(
            entries(&dir.path().join("o")),
            ["self"],
            "nothing left beside it"
        );
    }
    // An ancestor of the inputs is refused too.
    let out = run(&mut prepare(
        &own.join("corpus.txt"),
        &tok,
        &dir.path().join("o"),
    ));
    fails_with(&out, "holds an input");
    assert_eq!(fs::read(own.join("corpus.txt")).expect("corpus kept"), text);
}

#[test]
fn tokenizer_train_refuses_an_out_that_holds_the_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = dir.path().join("work");
    fs::create_dir(&holder).expect("mkdir");
    let corpus = holder.join("corpus.txt");
    write_corpus(&corpus, 10);
    let text = fs::read(&corpus).expect("corpus");
    let out = run(train(&corpus, &holder).arg("--force"));
    fails_with(&out, "holds an input");
    fails_with(&out, "--out");
    assert_eq!(fs::read(&corpus).expect("corpus kept"), text);
    assert_eq!(entries(&holder), ["corpus.txt"]);
}

#[test]
fn foreign_directories_are_never_replaced_even_with_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let thesis = dir.path().join("thesis");
    fs::create_dir(&thesis).expect("mkdir");
    fs::write(thesis.join("chapter1.tex"), "years of work").expect("write");
    for force in [false, true] {
        let mut c = prepare(&corpus, &tok, &thesis);
        if force {
            c.arg("--force");
        }
        let out = run(&mut c);
        fails_with(&out, "thesis");
        fails_with(&out, "chapter1.tex");
        fails_with(&out, "choose another --out");
        let mut c = train(&corpus, &thesis);
        if force {
            c.arg("--force");
        }
        let out = run(&mut c);
        fails_with(&out, "not the output of `cloze tokenizer train`");
        assert_eq!(entries(&thesis), ["chapter1.tex"]);
        assert_eq!(
            fs::read_to_string(thesis.join("chapter1.tex")).expect("kept"),
            "years of work"
        );
    }
    // Neither command accepts the other's output as its own.
    let data = dir.path().join("data");
    ok(run(&mut prepare(&corpus, &tok, &data)), "prepare");
    fails_with(
        &run(train(&corpus, &data).arg("--force")),
        "not the output of `cloze tokenizer train`",
    );
    fails_with(
        &run(prepare(&corpus, &tok, &tok).arg("--force")),
        "holds an input",
    );
}

#[test]
fn own_output_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let data = dir.path().join("data");
    ok(run(&mut prepare(&corpus, &tok, &data)), "first prepare");
    let manifest = fs::read(data.join("manifest.json")).expect("manifest");
    // Again without --force: refused, naming the flag; the output is untouched.
    let out = run(prepare(&corpus, &tok, &data).args(["--max-seq-length", "64"]));
    fails_with(&out, "--force");
    fails_with(&out, "data");
    assert_eq!(
        fs::read(data.join("manifest.json")).expect("kept"),
        manifest
    );
    // With --force: replaced.
    ok(
        run(prepare(&corpus, &tok, &data).args(["--max-seq-length", "64", "--force"])),
        "prepare --force",
    );
    let text = fs::read_to_string(data.join("manifest.json")).expect("manifest");
    assert!(text.contains("\"max_seq_length\": 64"), "{text}");

    let vocab = fs::read(tok.join("vocab.txt")).expect("vocab");
    let train100 = || {
        let mut c = cloze();
        c.args(["tokenizer", "train", "--corpus"])
            .arg(&corpus)
            .args(["--vocab-size", "100", "--min-frequency", "1", "--out"])
            .arg(&tok);
        c
    };
    let out = run(&mut train100());
    fails_with(&out, "--force");
    assert_eq!(fs::read(tok.join("vocab.txt")).expect("kept"), vocab);
    ok(run(train100().arg("--force")), "tokenizer train --force");
    assert_eq!(
        fs::read_to_string(tok.join("vocab.txt"))
            .expect("vocab")
            .lines()
            .count(),
        100
    );
    // An empty directory is not data: it is filled without --force.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    ok(
        run(&mut prepare(&corpus, &tok, &empty)),
        "prepare into empty dir",
    );
    assert!(empty.join("manifest.json").is_file());
    assert_eq!(
        entries(dir.path()),
        ["corpus.txt", "data", "empty", "tok"],
        "no staging directory or lock left"
    );
}

#[test]
fn out_that_is_a_file_the_current_directory_or_read_only_is_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let file = dir.path().join("notes.txt");
    fs::write(&file, "keep me").expect("write");
    fails_with(&run(&mut prepare(&corpus, &tok, &file)), "notes.txt");
    fails_with(&run(&mut train(&corpus, &file)), "is a file");
    assert_eq!(fs::read_to_string(&file).expect("kept"), "keep me");

    let work = dir.path().join("work");
    fs::create_dir(&work).expect("mkdir");
    fs::write(work.join("mine.txt"), "x").expect("write");
    for out_arg in [".", "sub/.."] {
        let out = run(prepare(&corpus, &tok, Path::new(out_arg))
            .arg("--force")
            .current_dir(&work));
        fails_with(&out, "current directory");
        let out = run(train(&corpus, Path::new(out_arg))
            .arg("--force")
            .current_dir(&work));
        fails_with(&out, "current directory");
    }
    assert_eq!(entries(&work), ["mine.txt"]);

    let ro = dir.path().join("ro");
    fs::create_dir(&ro).expect("mkdir");
    let mut perm = fs::metadata(&ro).expect("meta").permissions();
    perm.set_readonly(true);
    fs::set_permissions(&ro, perm).expect("chmod");
    fails_with(
        &run(&mut prepare(&corpus, &tok, &ro.join("data"))),
        "read-only",
    );
    fails_with(&run(&mut train(&corpus, &ro.join("tok"))), "read-only");
    assert!(entries(&ro).is_empty());
    let mut perm = fs::metadata(&ro).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&ro, perm).expect("chmod");
}

#[test]
fn a_second_writer_of_the_same_output_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let fifo = dir.path().join("slow-corpus");
    mkfifo(&fifo);
    let data = dir.path().join("data");
    // The first writer locks `data` and then waits for its corpus.
    let first = Running::spawn(prepare(&fifo, &tok, &data));
    wait_for_entry(dir.path(), ".data.partial-");
    let out = run(&mut prepare(&corpus, &tok, &data));
    fails_with(&out, "being written by another process");
    fails_with(&out, &format!("PID {}", first.pid()));
    let out = run(&mut train(&corpus, &data));
    fails_with(&out, &format!("PID {}", first.pid()));
    // The first one finishes normally once its corpus arrives.
    feed_fifo(&fifo, &fs::read(&corpus).expect("corpus"));
    ok(first.finish(), "first writer");
    assert!(data.join("manifest.json").is_file());
}

#[test]
fn ctrl_c_during_prepare_removes_the_staging_directory_and_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let fifo = dir.path().join("slow-corpus");
    mkfifo(&fifo);
    let before = entries(dir.path());
    for previous in [false, true] {
        let data = dir.path().join("data");
        let mut c = prepare(&fifo, &tok, &data);
        c.arg("--force");
        let child = Running::spawn(c);
        let staging = wait_for_entry(dir.path(), ".data.partial-");
        sigint(child.pid());
        // The corpus arrives once the interrupt is noted (the handler sets its
        // flag before printing); the next chunk boundary stops.
        child.wait_for_stderr("interrupt:");
        feed_fifo(&fifo, &fs::read(&corpus).expect("corpus"));
        let out = child.finish();
        assert_eq!(out.status.code(), Some(130), "stderr: {}", stderr(&out));
        assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
        assert!(!staging.exists(), "staging directory left behind");
        let mut expected = before.clone();
        if previous {
            expected.push("data".into());
            expected.sort();
            // The earlier output is exactly as it was.
            assert_eq!(
                fs::read(data.join("manifest.json")).expect("kept"),
                fs::read(dir.path().join("manifest.keep")).expect("copy")
            );
            expected.push("manifest.keep".into());
            expected.sort();
        }
        assert_eq!(entries(dir.path()), expected, "nothing left but the inputs");
        if !previous {
            ok(run(&mut prepare(&corpus, &tok, &data)), "prepare");
            fs::copy(data.join("manifest.json"), dir.path().join("manifest.keep")).expect("copy");
        }
    }
}

#[test]
fn ctrl_c_during_tokenizer_train_writes_nothing_and_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus.txt");
    write_corpus(&corpus, 20);
    let fifo = dir.path().join("slow-corpus");
    mkfifo(&fifo);
    let before = entries(dir.path());
    let child = Running::spawn(train(&fifo, &dir.path().join("tok")));
    // The lock exists once the Ctrl-C handler is installed.
    wait_for_entry(dir.path(), ".tok.lock");
    sigint(child.pid());
    child.wait_for_stderr("interrupt:");
    feed_fifo(&fifo, &fs::read(&corpus).expect("corpus"));
    let out = child.finish();
    assert_eq!(out.status.code(), Some(130), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(dir.path()), before);
}

#[test]
fn kill_9_leftovers_are_removed_by_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let fifo = dir.path().join("slow-corpus");
    mkfifo(&fifo);
    let data = dir.path().join("data");
    let mut child = Running::spawn(prepare(&fifo, &tok, &data));
    let staging = wait_for_entry(dir.path(), ".data.partial-");
    child.child().kill().expect("kill -9");
    child.child().wait().expect("wait");
    assert!(staging.is_dir(), "kill -9 leaves the staging directory");
    // A leftover of another dead process, and one of a replaced output.
    let fake = dir.path().join(format!(".data.partial-{DEAD_PID}-abcdef"));
    let fake_old = dir.path().join(format!(".data.old-{DEAD_PID}"));
    let fake_tok = dir.path().join(format!(".tok.partial-{DEAD_PID}-abcdef"));
    for d in [&fake, &fake_old, &fake_tok] {
        fs::create_dir(d).expect("mkdir");
        fs::write(d.join("train-00000.bin"), vec![0u8; 4096]).expect("write");
    }
    ok(run(&mut prepare(&corpus, &tok, &data)), "next prepare");
    assert!(!staging.exists() && !fake.exists() && !fake_old.exists());
    assert!(data.join("manifest.json").is_file());
    ok(
        run(train(&corpus, &tok).arg("--force")),
        "next tokenizer train",
    );
    assert!(!fake_tok.exists());
    assert_eq!(
        entries(dir.path()),
        ["corpus.txt", "data", "slow-corpus", "tok"]
    );
}

#[test]
fn max_seq_length_beyond_the_maximum_is_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let before = entries(dir.path());
    for bad in ["4294967296", "100000", "8193", "4"] {
        let data = dir.path().join("data");
        let out = run(prepare(&corpus, &tok, &data).args(["--max-seq-length", bad]));
        fails_with(&out, "--max-seq-length");
        fails_with(&out, "8192");
        assert_eq!(entries(dir.path()), before, "{bad}: something was created");
    }
    ok(
        run(prepare(&corpus, &tok, &dir.path().join("data")).args(["--max-seq-length", "8192"])),
        "the maximum itself is accepted",
    );
}

#[test]
fn over_long_lines_name_max_line_bytes_in_both_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let long = dir.path().join("long.txt");
    let mut text = fs::read_to_string(&corpus).expect("corpus");
    text.push_str(&format!("{}\n", "word ".repeat(100)));
    fs::write(&long, text).expect("write");

    let out = run(prepare(&long, &tok, &dir.path().join("data")).args(["--max-line-bytes", "200"]));
    fails_with(&out, "--max-line-bytes");
    fails_with(&out, "longer than 200 bytes");
    fails_with(&out, "long.txt");
    assert!(!dir.path().join("data").exists());

    let out = run(train(&long, &dir.path().join("tok2")).args(["--max-line-bytes", "200"]));
    fails_with(&out, "--max-line-bytes");
    fails_with(&out, "longer than 200 bytes");
    assert!(!dir.path().join("tok2").exists());
    // A limit that fits is accepted by both.
    ok(
        run(train(&long, &dir.path().join("tok2")).args(["--max-line-bytes", "1000"])),
        "tokenizer train --max-line-bytes",
    );
    ok(
        run(prepare(&long, &tok, &dir.path().join("data")).args(["--max-line-bytes", "1000"])),
        "data prepare --max-line-bytes",
    );
}

#[test]
fn a_vocabulary_smaller_than_asked_for_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus.txt");
    write_corpus(&corpus, 20);
    let out = ok(
        run(cloze()
            .args(["tokenizer", "train", "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(dir.path().join("tok"))),
        "tokenizer train",
    );
    let err = stderr(&out);
    assert!(err.contains("fewer than the 30522 asked for"), "{err}");
    assert!(err.contains("distinct characters"), "{err}");
    assert!(err.contains("--min-frequency (2)"), "{err}");
    let vocab = fs::read_to_string(dir.path().join("tok/vocab.txt")).expect("vocab");
    let n = vocab.lines().count();
    assert!(err.contains(&format!("vocabulary has {n} tokens")), "{err}");
    assert!(err.contains(&format!("--vocab-size {n}")), "{err}");
    // Asking for exactly what the corpus gives is quiet.
    let out = ok(
        run(cloze()
            .args(["tokenizer", "train", "--corpus"])
            .arg(&corpus)
            .args(["--vocab-size", &n.to_string(), "--out"])
            .arg(dir.path().join("tok-exact"))),
        "tokenizer train exact",
    );
    assert!(!stderr(&out).contains("fewer than"), "{}", stderr(&out));
}

#[test]
fn manifest_shard_names_must_stay_inside_the_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, tok) = corpus_and_tokenizer(dir.path());
    let data = dir.path().join("data");
    ok(run(&mut prepare(&corpus, &tok, &data)), "prepare");
    // A valid shard outside the directory, reachable by the names below.
    fs::copy(data.join("train-00000.bin"), dir.path().join("outside.bin")).expect("copy");
    let original = fs::read_to_string(data.join("manifest.json")).expect("manifest");
    let outside = dir.path().join("outside.bin");
    for bad in [
        "../outside.bin".to_string(),
        outside.display().to_string(),
        "sub/train-00000.bin".to_string(),
    ] {
        let mut m: serde_json::Value = serde_json::from_str(&original).expect("json");
        m["train"]["shards"][0]["file"] = serde_json::Value::String(bad.clone());
        fs::write(
            data.join("manifest.json"),
            serde_json::to_string_pretty(&m).expect("json"),
        )
        .expect("write");
        let out = run(cloze().args(["data", "inspect"]).arg(&data).arg("--verify"));
        fails_with(&out, &format!("{bad:?}"));
        fails_with(&out, "not a plain file name inside the data directory");
    }
    fs::write(data.join("manifest.json"), original).expect("restore");
    ok(
        run(cloze().args(["data", "inspect"]).arg(&data).arg("--verify")),
        "inspect the intact data",
    );
}
