//! prepare end to end on generated text, and its failure modes: every bad
//! input is a typed error and leaves nothing behind in the output's parent.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use anyhow::Result;
use cloze_text::prepare::{prepare, PrepareConfig};
use cloze_text::pretrain::{InstanceConfig, Mode};
use cloze_text::tokenizer::{train_wordpiece, TrainOptions};
use cloze_text::{Error, NoProgress, ShardSet, Split, TextTokenizer, NO_WORD};

fn corpus_text(docs: usize) -> String {
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda",
    ];
    let mut s = String::new();
    for d in 0..docs {
        for l in 0..(5 + d % 7) {
            let line: Vec<&str> = (0..(6 + (d * 7 + l * 3) % 11))
                .map(|k| words[(d + l + k * k) % words.len()])
                .collect();
            s.push_str(&format!("Doc{d} {}.\n", line.join(" ")));
        }
        s.push('\n');
    }
    s
}

fn tokenizer(text: &str) -> Result<TextTokenizer> {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    Ok(train_wordpiece(
        lines.into_iter(),
        &TrainOptions {
            vocab_size: 200,
            ..Default::default()
        },
    )?)
}

/// Only the named entries exist in `dir` (no partial directories left over).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    v.sort();
    v
}

#[test]
fn prepare_round_trips_and_is_thread_count_independent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = corpus_text(60);
    let corpus = dir.path().join("corpus.txt");
    fs::write(&corpus, &text)?;
    let tok = tokenizer(&text)?;
    let config = PrepareConfig {
        holdout_fraction: 0.2,
        chunk_bytes: 2000,
        instances: InstanceConfig {
            max_seq_length: 48,
            ..Default::default()
        },
        ..Default::default()
    };
    let out1 = dir.path().join("one");
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let r1 = pool1.install(|| prepare(&corpus, &tok, &out1, &config, &NoProgress))?;
    let out2 = dir.path().join("two");
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(3).build()?;
    pool2.install(|| prepare(&corpus, &tok, &out2, &config, &NoProgress))?;
    assert_eq!(r1.documents, 60);
    assert!(r1.eval.documents > 0 && r1.train.documents > r1.eval.documents);
    for f in entries(&out1).iter().filter(|f| f.ends_with(".bin")) {
        assert_eq!(
            fs::read(out1.join(f))?,
            fs::read(out2.join(f))?,
            "{f} differs with thread count"
        );
    }
    let set = ShardSet::open(&out1)?;
    let eval = ShardSet::open_split(&out1, Split::Eval)?;
    assert_eq!(set.len() as u64, r1.train.instances);
    assert_eq!(eval.len() as u64, r1.eval.instances);
    set.check_tokenizer(&tok)?;
    let sp = set.special_tokens().clone();
    for i in 0..set.len() {
        let inst = set.get(i)?;
        assert!(inst.len() <= 48);
        assert_eq!(inst.tokens[0], sp.cls);
        assert!(inst.pair_label.is_some());
        assert_eq!(inst.tokens.iter().filter(|&&t| t == sp.sep).count(), 2);
        for (t, w) in inst.tokens.iter().zip(&inst.word_ids) {
            assert_eq!(*w == NO_WORD, sp.all_special.contains(t));
        }
    }
    // Instances decode back to corpus words, and every document kept its own text in A.
    let stored = set.tokenizer()?;
    let text0 = stored.decode(&set.get(0)?.tokens)?;
    assert!(text0.contains("doc0"), "{text0}");
    Ok(())
}

#[test]
fn packed_and_sop_modes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = corpus_text(10);
    let corpus = dir.path().join("c.txt");
    fs::write(&corpus, &text)?;
    let tok = tokenizer(&text)?;
    for mode in [Mode::Packed, Mode::Sop] {
        let out = dir.path().join(format!("{mode:?}"));
        let config = PrepareConfig {
            instances: InstanceConfig {
                mode,
                max_seq_length: 32,
                ..Default::default()
            },
            ..Default::default()
        };
        prepare(&corpus, &tok, &out, &config, &NoProgress)?;
        let set = ShardSet::open(&out)?;
        assert!(!set.is_empty());
        let inst = set.get(0)?;
        match mode {
            Mode::Packed => assert!(inst.pair_label.is_none() && inst.len() == 32),
            _ => assert!(matches!(
                inst.pair_label,
                Some(cloze_text::PairLabel::Sop { .. })
            )),
        }
    }
    Ok(())
}

fn expect_failure(corpus: &Path, tok: &TextTokenizer, root: &Path) -> Error {
    let out = root.join("out");
    let before = entries(root);
    let err = prepare(corpus, tok, &out, &PrepareConfig::default(), &NoProgress).unwrap_err();
    assert!(!out.exists(), "no output on failure");
    assert_eq!(entries(root), before, "no partial directory left behind");
    err
}

#[test]
fn bad_corpora_fail_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tok = tokenizer(&corpus_text(5))?;
    let root = dir.path();

    let err = expect_failure(&root.join("missing.txt"), &tok, root);
    assert!(err.to_string().contains("missing.txt"), "{err}");

    let bad = root.join("bad.txt");
    fs::write(&bad, b"good line\n\xc3\x28 broken\n")?;
    let err = expect_failure(&bad, &tok, root);
    assert!(matches!(err, Error::InvalidUtf8 { line: 2, .. }), "{err}");

    let empty = root.join("empty.txt");
    fs::write(&empty, "")?;
    assert!(matches!(
        expect_failure(&empty, &tok, root),
        Error::EmptyCorpus { .. }
    ));

    let huge = root.join("huge.txt");
    fs::write(&huge, "a".repeat(10 << 20))?;
    let err = expect_failure(&huge, &tok, root);
    assert!(matches!(err, Error::LineTooLong { line: 1, .. }), "{err}");
    assert!(err.to_string().contains("huge.txt:1"));
    Ok(())
}

#[test]
fn failed_prepare_keeps_previous_output_whole() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = corpus_text(8);
    let corpus = dir.path().join("c.txt");
    fs::write(&corpus, &text)?;
    let tok = tokenizer(&text)?;
    let out = dir.path().join("out");
    prepare(&corpus, &tok, &out, &PrepareConfig::default(), &NoProgress)?;
    let manifest = fs::read(out.join("manifest.json"))?;
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\n\xff\n");
    fs::write(&corpus, bytes)?;
    assert!(prepare(&corpus, &tok, &out, &PrepareConfig::default(), &NoProgress).is_err());
    assert_eq!(fs::read(out.join("manifest.json"))?, manifest);
    ShardSet::open(&out)?;
    Ok(())
}

#[test]
fn shards_from_another_tokenizer_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = corpus_text(8);
    let corpus = dir.path().join("c.txt");
    fs::write(&corpus, &text)?;
    let tok = tokenizer(&text)?;
    // Fewer tokens than the corpus's merges allow (about 95), so the
    // vocabulary differs from `tok`'s.
    let other = train_wordpiece(
        text.lines().map(str::to_string),
        &TrainOptions {
            vocab_size: 60,
            ..Default::default()
        },
    )?;
    let out = dir.path().join("out");
    prepare(&corpus, &tok, &out, &PrepareConfig::default(), &NoProgress)?;
    let set = ShardSet::open(&out)?;
    let err = set.check_tokenizer(&other).unwrap_err();
    assert!(matches!(err, Error::TokenizerMismatch { .. }), "{err}");
    set.check_tokenizer(&tok)?;
    Ok(())
}

#[test]
fn tokenizer_without_mask_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let json = dir.path().join("tokenizer.json");
    let text = corpus_text(3);
    let tok = tokenizer(&text)?;
    tok.save_json(&json)?;
    let edited = fs::read_to_string(&json)?.replace("[MASK]", "[MASQUE]");
    fs::write(&json, edited)?;
    let err = TextTokenizer::from_path(&json).unwrap_err();
    assert!(
        matches!(err, Error::MissingSpecialToken { ref token, .. } if token == "[MASK]"),
        "{err}"
    );
    Ok(())
}

#[test]
fn prepare_replaces_only_its_own_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = corpus_text(8);
    let corpus = dir.path().join("c.txt");
    fs::write(&corpus, &text)?;
    let tok = tokenizer(&text)?;
    let config = PrepareConfig::default();

    // A directory of someone else's files is never replaced.
    let foreign = dir.path().join("thesis");
    fs::create_dir(&foreign)?;
    fs::write(foreign.join("chapter1.tex"), "years of work")?;
    let err = prepare(&corpus, &tok, &foreign, &config, &NoProgress).unwrap_err();
    assert!(
        matches!(err, Error::Output(cloze_fs::Error::NotOurs { .. })),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(foreign.join("chapter1.tex"))?,
        "years of work"
    );

    // Nor a directory holding the corpus.
    let holder = dir.path().join("holder");
    fs::create_dir(&holder)?;
    let inner = holder.join("corpus.txt");
    fs::write(&inner, &text)?;
    let err = prepare(&inner, &tok, &holder, &config, &NoProgress).unwrap_err();
    assert!(
        matches!(err, Error::Output(cloze_fs::Error::HoldsInput { .. })),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&inner)?, text);

    // Its own earlier output is replaced, and carries the marker.
    let out = dir.path().join("out");
    prepare(&corpus, &tok, &out, &config, &NoProgress)?;
    assert!(out.join(cloze_fs::MARKER).is_file());
    prepare(&corpus, &tok, &out, &config, &NoProgress)?;
    ShardSet::open(&out)?;
    assert_eq!(
        entries(dir.path()),
        ["c.txt", "holder", "out", "thesis"],
        "no staging directory or lock left behind"
    );
    Ok(())
}

/// Asks to stop once `after` chunks have been reported.
struct StopAfter {
    after: u64,
    seen: std::sync::atomic::AtomicU64,
}

impl cloze_text::Progress for StopAfter {
    fn advance(&self, _n: u64) {
        self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn cancelled(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::SeqCst) >= self.after
    }
}

#[test]
fn cancelled_prepare_publishes_nothing_and_keeps_the_previous_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = corpus_text(60);
    let corpus = dir.path().join("c.txt");
    fs::write(&corpus, &text)?;
    let tok = tokenizer(&text)?;
    let config = PrepareConfig {
        chunk_bytes: 1000,
        ..Default::default()
    };
    let out = dir.path().join("out");
    for previous in [false, true] {
        let manifest = previous.then(|| fs::read(out.join("manifest.json")).unwrap());
        let progress = StopAfter {
            after: 2,
            seen: Default::default(),
        };
        let err = prepare(&corpus, &tok, &out, &config, &progress).unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert_eq!(progress.seen.load(std::sync::atomic::Ordering::SeqCst), 2);
        match manifest {
            None => assert!(!out.exists()),
            Some(m) => assert_eq!(fs::read(out.join("manifest.json"))?, m),
        }
        let left: Vec<String> = entries(dir.path());
        assert!(
            left.iter().all(|e| e == "c.txt" || e == "out"),
            "leftovers: {left:?}"
        );
        prepare(&corpus, &tok, &out, &config, &NoProgress)?;
    }
    Ok(())
}

#[test]
fn max_seq_length_beyond_the_bound_is_refused_before_any_work() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = corpus_text(3);
    let corpus = dir.path().join("c.txt");
    fs::write(&corpus, &text)?;
    let tok = tokenizer(&text)?;
    for bad in [100_000usize, 4_294_967_296] {
        let config = PrepareConfig {
            instances: InstanceConfig {
                max_seq_length: bad,
                ..Default::default()
            },
            ..Default::default()
        };
        let err =
            prepare(&corpus, &tok, &dir.path().join("out"), &config, &NoProgress).unwrap_err();
        assert!(
            matches!(err, Error::SeqLengthOutOfRange { value, max, .. }
                if value == bad && max == cloze_text::pretrain::MAX_SEQ_LENGTH),
            "{err}"
        );
        assert_eq!(entries(dir.path()), ["c.txt"], "nothing created");
    }
    Ok(())
}
