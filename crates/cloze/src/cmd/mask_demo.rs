//! `cloze mask-demo`: shows sentences under each masking strategy, so the
//! difference between token, whole-word, n-gram, span and similar-word masking
//! can be seen rather than described.
//!
//! - Text: the `TEXT` arguments and the non-blank lines of `--input FILE`
//!   (`-` reads standard input); without either, a built-in Chinese and
//!   English set.
//! - Tokens: `--tokenizer` (a `tokenizer.json` or `vocab.txt`, a directory
//!   holding one, or a cached dataset such as `minilm`, resolved as `cloze
//!   data prepare` resolves its `--tokenizer`) encodes the text as `data
//!   prepare` does, word ids from jieba for Chinese. Without it the demo
//!   builds a vocabulary from the text itself (CJK characters one per token,
//!   English words over six letters split into a piece and a `##` remainder),
//!   enough to see the schemes but not a trained tokenizer.
//! - Schemes: the four built-in ones (BERT, whole-word, MacBERT n-grams,
//!   SpanBERT spans), plus `--config FILE`; `--masking FILE` shows that one
//!   scheme alone. `--rate` replaces every shown scheme's selection rate;
//!   without it each keeps its own (15% for the built-in ones).
//! - Similar words: the HIT Cilin thesaurus when cached (or `--cilin`), plus
//!   built-in English groups; otherwise a small built-in list. A scheme's own
//!   `corrupt.source` is replaced by it.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use cloze_mask::{Corruption, Masker, MaskingConfig, Thesaurus, Vocab, WordCodec};
use cloze_text::{Instance, SpecialTokens, TextTokenizer, WordBoundaries, NO_WORD};

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
    /// Sentences to mask (default: a built-in Chinese and English set).
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
    /// A file of sentences to mask, one per line (blank lines skipped; `-` reads
    /// standard input); shown after the TEXT arguments.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The tokenizer to encode the text with: a tokenizer.json or vocab.txt, a
    /// directory holding one (a `cloze tokenizer train` output, a model), or a
    /// cached dataset name such as `minilm`. Default: a vocabulary the demo
    /// builds from the text itself.
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<String>,
    /// Show only this masking scheme (a TOML or JSON file such as
    /// configs/masking/wwm.toml) instead of the built-in four.
    #[arg(long, value_name = "CONFIG", conflicts_with = "config")]
    pub masking: Option<PathBuf>,
    /// A masking scheme file (TOML or JSON) to show after the built-in four.
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Seed of the masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epochs shown per strategy (dynamic masking draws new masks each epoch).
    #[arg(long, default_value_t = 3)]
    pub samples: u64,
    /// Fraction of tokens selected by every scheme shown (default: each
    /// scheme's own, 0.15 for the built-in ones; raise it to see more).
    #[arg(long)]
    pub rate: Option<f64>,
    /// A `cilin_tree.json` for similar words; default: the cached `cilin` dataset when fetched.
    #[arg(long)]
    pub cilin: Option<PathBuf>,
}

/// One sentence ready to mask, with what each position shows when unchanged.
struct Shown {
    instance: Instance,
    /// Per position (`[CLS]` and `[SEP]` included): the text of the token as
    /// it stands in the sentence.
    surface: Vec<String>,
    /// Per position: whether a space precedes the token in the sentence.
    space_before: Vec<bool>,
}

/// How the demo turns text into tokens and token ids back into text.
enum DemoTokens {
    /// A vocabulary built from the demo's own text and similar words.
    Builtin(Arc<Vocab>),
    /// A trained tokenizer (`--tokenizer`).
    Trained(Arc<TextTokenizer>),
}

impl DemoTokens {
    fn specials(&self) -> Result<SpecialTokens> {
        Ok(match self {
            Self::Builtin(v) => v.special_tokens()?,
            Self::Trained(t) => t.special_tokens().clone(),
        })
    }

    fn codec(&self) -> Arc<dyn WordCodec> {
        match self {
            Self::Builtin(v) => v.clone(),
            Self::Trained(t) => t.clone(),
        }
    }

    /// The text of token `id`, without a `##` continuation mark.
    fn text(&self, id: u32) -> String {
        let raw = match self {
            Self::Builtin(v) => v.token(id).map(str::to_owned),
            Self::Trained(t) => t.id_to_token(id),
        };
        let raw = raw.unwrap_or_else(|| "[UNK]".into());
        raw.trim_start_matches("##").to_owned()
    }

    /// `[CLS] sentence [SEP]` with word ids.
    fn show(&self, jieba: &jieba_rs::Jieba, sentence: &str) -> Result<Shown> {
        let specials = self.specials()?;
        let mut shown = Shown {
            instance: Instance {
                tokens: vec![specials.cls],
                segment_ids: vec![0],
                word_ids: vec![NO_WORD],
                pair_label: None,
            },
            surface: vec![String::new()],
            space_before: vec![false],
        };
        let mut push = |id: u32, word: u32, surface: String, space: bool| {
            shown.instance.tokens.push(id);
            shown.instance.segment_ids.push(0);
            shown.instance.word_ids.push(word);
            shown.surface.push(surface);
            shown.space_before.push(space);
        };
        match self {
            Self::Builtin(vocab) => {
                for (i, (word, space)) in demo_words(jieba, sentence).into_iter().enumerate() {
                    // The vocabulary was built from exactly these pieces.
                    for (k, piece) in pieces(word).into_iter().enumerate() {
                        let id = vocab
                            .id(&piece)
                            .with_context(|| format!("demo vocabulary lacks {piece}"))?;
                        let surface = piece.trim_start_matches("##").to_owned();
                        push(id, i as u32, surface, space && k == 0);
                    }
                }
            }
            Self::Trained(tok) => {
                let e = tok.encode(sentence, WordBoundaries::Auto)?;
                let mut prev_end = None;
                for ((&id, &word), &(start, end)) in e.ids.iter().zip(&e.word_ids).zip(&e.offsets) {
                    // Unchanged tokens show the sentence's own characters
                    // (case and accents kept), except `[UNK]`: unknown
                    // tokens are never masked, and the reader should see why.
                    let surface = sentence
                        .get(start as usize..end as usize)
                        .filter(|s| !s.is_empty() && id != specials.unk)
                        .map_or_else(|| self.text(id), str::to_owned);
                    let space = prev_end.is_some_and(|p| start > p);
                    prev_end = Some(end);
                    push(id, word, surface, space);
                }
            }
        }
        shown.instance.tokens.push(specials.sep);
        shown.instance.segment_ids.push(0);
        shown.instance.word_ids.push(NO_WORD);
        shown.surface.push(String::new());
        shown.space_before.push(false);
        Ok(shown)
    }
}

/// The words of a sentence for the built-in vocabulary, each with whether a
/// space precedes it: white-space words for ASCII text, jieba's words otherwise.
fn demo_words<'a>(jieba: &jieba_rs::Jieba, sentence: &'a str) -> Vec<(&'a str, bool)> {
    if sentence.is_ascii() {
        return sentence
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| (w, i > 0))
            .collect();
    }
    let mut words = Vec::new();
    let mut space = false;
    for t in jieba.cut(sentence, true) {
        if t.word.trim().is_empty() {
            space = !words.is_empty();
        } else {
            words.push((t.word, space));
            space = false;
        }
    }
    words
}

/// The built-in vocabulary: specials, then the pieces of every word of the
/// sentences and of `extra_words`, in first-seen order.
fn build_vocab(sentences: &[String], extra_words: &BTreeSet<String>) -> Vocab {
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

/// A word's pieces in the built-in vocabulary.
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

/// The sentence of `tokens` without `[CLS]`/`[SEP]`, outcomes marked; spacing
/// follows the original sentence, so a masked `##piece` stays attached to its word.
fn render(
    tokens: &DemoTokens,
    shown: &Shown,
    ids: &[u32],
    outcomes: &[Option<Corruption>],
) -> String {
    let mut out = String::new();
    for i in 1..ids.len().saturating_sub(1) {
        if shown.space_before[i] {
            out.push(' ');
        }
        let (t, own) = (ids[i], &shown.surface[i]);
        match outcomes[i] {
            None => out.push_str(own),
            Some(Corruption::Mask) => out.push_str("[MASK]"),
            Some(Corruption::Random) => out.push_str(&format!("<{}>", tokens.text(t))),
            Some(Corruption::Keep) => out.push_str(&format!("({own})")),
            Some(Corruption::Similar) => out.push_str(&format!("{{{}}}", tokens.text(t))),
        }
    }
    out
}

/// `config` with its selection rate replaced by `rate`, when given.
fn with_rate(mut config: MaskingConfig, rate: Option<f64>) -> MaskingConfig {
    if let Some(rate) = rate {
        config.select.set_rate(rate);
    }
    config
}

/// The selection rate of a scheme, as a percentage for its label.
fn rate_label(config: &MaskingConfig) -> String {
    let rate = config.select.rate();
    format!("{}%", (rate * 1000.0).round() / 10.0)
}

/// The schemes to show, labelled, with `--rate` applied.
fn schemes(args: &MaskDemoArgs) -> Result<Vec<(String, MaskingConfig)>> {
    let load = |path: &Path| {
        MaskingConfig::load(path).with_context(|| format!("masking config {}", path.display()))
    };
    if let Some(path) = &args.masking {
        return Ok(vec![(
            path.display().to_string(),
            with_rate(load(path)?, args.rate),
        )]);
    }
    let builtin = [
        ("bert: tokens", "80/10/10", MaskingConfig::bert(None)),
        (
            "wwm: whole words",
            "80/10/10",
            MaskingConfig::whole_word(None),
        ),
        (
            "macbert: n-grams of 1-4 words (40/30/20/10%)",
            "similar word 80 / random 10 / keep 10",
            MaskingConfig::macbert(None),
        ),
        (
            "span: geometric(0.2) word spans up to 10",
            "80/10/10",
            MaskingConfig::spanbert(),
        ),
    ];
    let mut out: Vec<(String, MaskingConfig)> = builtin
        .into_iter()
        .map(|(what, corrupt, config)| {
            let config = with_rate(config, args.rate);
            (
                format!("{what}, {}, {corrupt}", rate_label(&config)),
                config,
            )
        })
        .collect();
    if let Some(path) = &args.config {
        out.push((
            path.display().to_string(),
            with_rate(load(path)?, args.rate),
        ));
    }
    Ok(out)
}

/// The sentences to show: TEXT arguments, then `--input` lines; else the built-in set.
fn sentences(args: &MaskDemoArgs) -> Result<Vec<String>> {
    let mut out: Vec<String> = args
        .texts
        .iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(path) = &args.input {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            s
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --input {}", path.display()))?
        };
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
        anyhow::ensure!(
            !out.is_empty(),
            "--input {} holds no text (every line is blank)",
            path.display()
        );
    }
    if out.is_empty() {
        out = [ZH_ARTICLE, ZH_EXTRA, EN].map(String::from).to_vec();
    }
    Ok(out)
}

/// The similar-word source and a line describing it.
fn thesaurus(args: &MaskDemoArgs) -> Result<(Thesaurus, String)> {
    let cilin = args
        .cilin
        .clone()
        .or_else(|| Some(cloze_mask::masker::default_cilin_path()).filter(|p| p.exists()));
    let builtin = || {
        BUILTIN_GROUPS
            .iter()
            .map(|g| g.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    };
    Ok(match &cilin {
        Some(path) => {
            let mut t = Thesaurus::load_cilin(path, false, "--cilin")?;
            let n = t.num_groups();
            // Cilin is Chinese only; English text borrows the built-in English groups.
            builtin()
                .filter(|g| g[0].is_ascii())
                .for_each(|g| t.add_group(g));
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
    })
}

/// The tokens of the demo: `--tokenizer`, or a vocabulary built from the
/// sentences and the similar words (so similar-word replacements encode).
fn demo_tokens(
    args: &MaskDemoArgs,
    jieba: &jieba_rs::Jieba,
    sentences: &[String],
    thesaurus: &Thesaurus,
) -> Result<DemoTokens> {
    if let Some(spec) = &args.tokenizer {
        let path = crate::cmd::data::resolve(spec, "tokenizer")?;
        let tok = TextTokenizer::from_path(&path)
            .with_context(|| format!("loading the tokenizer {}", path.display()))?;
        println!(
            "vocabulary: {} tokens of the tokenizer {}",
            tok.vocab_size(),
            tok.source().display()
        );
        return Ok(DemoTokens::Trained(Arc::new(tok)));
    }
    let mut extra: BTreeSet<String> = thesaurus.words().map(str::to_owned).collect();
    for s in sentences.iter().filter(|s| !s.is_ascii()) {
        extra.extend(demo_words(jieba, s).into_iter().map(|(w, _)| w.to_owned()));
    }
    let vocab = build_vocab(sentences, &extra);
    println!("vocabulary: {} tokens built by this demo from its sentences and similar words (CJK characters one per", vocab.len());
    println!("token; English words, those over six letters split into a piece and a ##remainder), not a trained tokenizer");
    println!("(--tokenizer DIR uses one).");
    Ok(DemoTokens::Builtin(Arc::new(vocab)))
}

/// Prints every sentence under every scheme.
pub fn run(args: MaskDemoArgs) -> Result<()> {
    // Everything that can be refused is refused before anything is printed.
    let schemes = schemes(&args)?;
    let sentences = sentences(&args)?;
    let jieba = jieba_rs::Jieba::new();
    let (thesaurus, source_note) = thesaurus(&args)?;
    let tokens = demo_tokens(&args, &jieba, &sentences, &thesaurus)?;
    let specials = tokens.specials()?;
    println!("similar words: {source_note}");
    println!("legend: [MASK] masked, <x> random replacement, (x) kept but predicted, {{x}} similar word\n");

    let shown: Vec<Shown> = sentences
        .iter()
        .map(|s| tokens.show(&jieba, s))
        .collect::<Result<_>>()?;
    let thesaurus = Arc::new(thesaurus);
    for (label, config) in schemes {
        // A similar-word scheme takes the demo's thesaurus instead of the
        // source its config names; the other schemes ignore it.
        let masker = Masker::builder(config, specials.clone())
            .word_codec(tokens.codec())
            .similar_words(thesaurus.clone())
            .build()
            .with_context(|| format!("building the masker {label}"))?;
        println!("== {label}");
        for (index, s) in shown.iter().enumerate() {
            let inst = &s.instance;
            println!(
                "   {}",
                render(&tokens, s, &inst.tokens, &vec![None; inst.len()])
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
                    render(&tokens, s, &m.input_ids, &outcomes),
                    m.masked.len(),
                    spans.join(",")
                );
            }
        }
        println!();
    }
    Ok(())
}
