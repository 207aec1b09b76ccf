//! `cloze mask-demo`: shows sentences under each masking strategy, so the
//! difference between token, whole-word, n-gram, span and similar-word masking
//! can be seen rather than described.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use cloze_mask::{Corruption, Masker, MaskingConfig, SelectConfig, Thesaurus, Vocab, WordCodec};
use cloze_text::{Instance, NO_WORD};

/// The seed article's example sentence ("use a language model to predict the
/// probability of the next word").
const ZH_ARTICLE: &str = "使用语言模型来预测下一个词的概率";
const ZH_EXTRA: &str = "我们今天很开心地学习自然语言处理";
const EN: &str = "language models predict the probability of the next word in a sentence";

/// Synonym groups used when the Cilin thesaurus is not cached.
const BUILTIN_GROUPS: &[&[&str]] = &[
    &["使用", "运用", "利用", "应用"],
    &["语言", "言语", "话语"],
    &["模型", "模子"],
    &["预测", "预计", "预言"],
    &["概率", "几率", "或然率"],
    &["开心", "高兴", "快乐", "愉快"],
    &["学习", "进修", "研习"],
    &["今天", "今日"],
    &["处理", "处置", "管理"],
    &["自然", "天然"],
    &["我们", "咱们"],
    &["predict", "forecast"],
    &["probability", "likelihood"],
    &["language", "tongue"],
    &["word", "term"],
    &["sentence", "clause"],
    &["models", "patterns"],
    &["next", "following"],
];

/// Arguments of `cloze mask-demo`.
#[derive(Debug, Args)]
pub struct MaskDemoArgs {
    /// Seed of the masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epochs shown per strategy (dynamic masking draws new masks each epoch).
    #[arg(long, default_value_t = 3)]
    pub samples: u64,
    /// Fraction of tokens selected (0.15 in the papers; raise it to see more).
    #[arg(long, default_value_t = 0.15)]
    pub rate: f64,
    /// A `cilin_tree.json` for similar words; default: the cached `cilin` dataset when fetched.
    #[arg(long)]
    pub cilin: Option<PathBuf>,
    /// A masking scheme file (TOML or JSON) to show as well.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The demo's vocabulary: specials, every CJK character it needs, English words
/// (words longer than six letters split into a four-letter piece and a `##`
/// remainder, to show sub-word units).
fn build_vocab(sentences: &[&str], extra_words: &BTreeSet<String>) -> Vocab {
    let mut tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let words = sentences
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .chain(extra_words.iter().cloned());
    for word in words {
        for piece in pieces(&word) {
            if seen.insert(piece.clone()) {
                tokens.push(piece);
            }
        }
    }
    Vocab::from_tokens(tokens)
}

fn pieces(word: &str) -> Vec<String> {
    if word.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) {
        word.chars().map(String::from).collect()
    } else if word.chars().count() > 6 {
        let head: String = word.chars().take(4).collect();
        let tail: String = word.chars().skip(4).collect();
        vec![head, format!("##{tail}")]
    } else {
        vec![word.to_owned()]
    }
}

/// `[CLS] words [SEP]`; Chinese words from jieba, English words from white space.
fn encode(vocab: &Vocab, jieba: &jieba_rs::Jieba, sentence: &str) -> Result<Instance> {
    let words: Vec<&str> = if sentence.is_ascii() {
        sentence.split_whitespace().collect()
    } else {
        jieba
            .cut(sentence, true)
            .into_iter()
            .map(|t| t.word)
            .filter(|w| !w.trim().is_empty())
            .collect()
    };
    let specials = vocab.special_tokens()?;
    let mut inst = Instance {
        tokens: vec![specials.cls],
        segment_ids: vec![0],
        word_ids: vec![NO_WORD],
        pair_label: None,
    };
    for (i, w) in words.iter().enumerate() {
        let ids = vocab
            .encode_word(w)
            .with_context(|| format!("demo vocabulary lacks {w}"))?;
        for id in ids {
            inst.tokens.push(id);
            inst.segment_ids.push(0);
            inst.word_ids.push(i as u32);
        }
    }
    inst.tokens.push(specials.sep);
    inst.segment_ids.push(0);
    inst.word_ids.push(NO_WORD);
    Ok(inst)
}

/// `tokens` without `[CLS]`/`[SEP]`, outcomes marked; spacing follows the
/// original tokens so a masked `##piece` stays attached to its word.
fn render(
    vocab: &Vocab,
    original: &[u32],
    tokens: &[u32],
    outcomes: &[Option<Corruption>],
    spaced: bool,
) -> String {
    let mut out = String::new();
    for (i, (&t, o)) in tokens
        .iter()
        .zip(outcomes)
        .enumerate()
        .skip(1)
        .take(tokens.len().saturating_sub(2))
    {
        let raw = vocab.token(t).unwrap_or("[UNK]");
        let cont = vocab
            .token(original[i])
            .is_some_and(|o| o.starts_with("##"));
        let text = raw.trim_start_matches("##");
        if spaced && i > 1 && !cont {
            out.push(' ');
        }
        match o {
            None => out.push_str(text),
            Some(Corruption::Mask) => out.push_str("[MASK]"),
            Some(Corruption::Random) => out.push_str(&format!("<{text}>")),
            Some(Corruption::Keep) => out.push_str(&format!("({text})")),
            Some(Corruption::Similar) => out.push_str(&format!("{{{text}}}")),
        }
    }
    out
}

fn with_rate(mut config: MaskingConfig, rate: f64) -> MaskingConfig {
    match &mut config.select {
        SelectConfig::Budget { rate: r, .. } | SelectConfig::Bernoulli { rate: r, .. } => *r = rate,
    }
    config
}

/// Prints every sentence under every strategy.
pub fn run(args: MaskDemoArgs) -> Result<()> {
    let jieba = jieba_rs::Jieba::new();
    let cilin = args
        .cilin
        .clone()
        .or_else(|| Some(cloze_mask::masker::default_cilin_path()).filter(|p| p.exists()));
    let builtin = || {
        BUILTIN_GROUPS
            .iter()
            .map(|g| g.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    };
    let (thesaurus, source_note) = match &cilin {
        Some(path) => {
            let mut t = Thesaurus::load_cilin(path, false, "--cilin")?;
            let n = t.num_groups();
            // Cilin is Chinese only; the English sentence borrows the built-in English groups.
            builtin().filter(|g| g[0].is_ascii()).for_each(|g| t.add_group(g));
            let note = format!(
                "the HIT Cilin thesaurus ({n} synonym groups) from {}, plus {} built-in English groups",
                path.display(),
                t.num_groups() - n
            );
            (t, note)
        }
        None => (
            Thesaurus::from_groups(builtin()),
            format!(
                "a built-in list of {} synonym groups (the Cilin thesaurus is not cached; `cloze data fetch cilin` gets it)",
                BUILTIN_GROUPS.len()
            ),
        ),
    };
    let sentences = [ZH_ARTICLE, ZH_EXTRA, EN];
    let mut extra: BTreeSet<String> = thesaurus.words().map(str::to_owned).collect();
    for s in &sentences[..2] {
        extra.extend(jieba.cut(s, true).into_iter().map(|t| t.word.to_owned()));
    }
    let vocab = Arc::new(build_vocab(&sentences, &extra));
    let specials = vocab.special_tokens()?;
    println!("vocabulary: {} tokens built by this demo from its sentences and similar words (CJK characters one per", vocab.len());
    println!("token; English words, those over six letters split into a piece and a ##remainder), not a trained tokenizer.");
    println!("similar words: {source_note}");
    println!("legend: [MASK] masked, <x> random replacement, (x) kept but predicted, {{x}} similar word\n");

    let mut schemes: Vec<(String, MaskingConfig)> = vec![
        (
            "bert: tokens, 15%, 80/10/10".into(),
            MaskingConfig::bert(None),
        ),
        (
            "wwm: whole words, 15%, 80/10/10".into(),
            MaskingConfig::whole_word(None),
        ),
        (
            "macbert: n-grams of 1-4 words (40/30/20/10%), similar word 80 / random 10 / keep 10"
                .into(),
            MaskingConfig::macbert(None),
        ),
        (
            "span: geometric(0.2) word spans up to 10, 80/10/10".into(),
            MaskingConfig::spanbert(),
        ),
    ];
    if let Some(path) = &args.config {
        schemes.push((format!("{}", path.display()), MaskingConfig::load(path)?));
    }
    let instances: Vec<(Instance, bool)> = sentences
        .iter()
        .map(|s| encode(&vocab, &jieba, s).map(|i| (i, s.is_ascii())))
        .collect::<Result<_>>()?;
    for (label, config) in schemes {
        let config = with_rate(config, args.rate);
        let masker = Masker::builder(config, specials.clone())
            .word_codec(vocab.clone() as Arc<dyn WordCodec>)
            .similar_words(Arc::new(thesaurus.clone()))
            .build()?;
        println!("== {label}");
        for (index, (inst, spaced)) in instances.iter().enumerate() {
            println!(
                "   {}",
                render(
                    &vocab,
                    &inst.tokens,
                    &inst.tokens,
                    &vec![None; inst.len()],
                    *spaced
                )
            );
            for epoch in 0..args.samples {
                let m = masker.mask(inst, args.seed, epoch, index as u64)?;
                let mut outcomes = vec![None; inst.len()];
                for p in &m.masked {
                    outcomes[p.pos as usize] = Some(p.corruption);
                }
                let spans: Vec<String> = m.spans.iter().map(|s| s.units.to_string()).collect();
                let failed = if m.failed_lookups.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} word(s) without a same-length similar word -> random",
                        m.failed_lookups.len()
                    )
                };
                println!(
                    "   e{epoch} {}    [{} predicted, span lengths {}{failed}]",
                    render(&vocab, &inst.tokens, &m.input_ids, &outcomes, *spaced),
                    m.masked.len(),
                    spans.join(",")
                );
            }
        }
        println!();
    }
    Ok(())
}
