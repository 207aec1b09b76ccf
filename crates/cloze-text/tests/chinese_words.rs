//! Word ids for whole-word masking on real Chinese sentences (People's Daily
//! and review style), offline: a WordPiece vocabulary trained on the
//! sentences is character level for CJK, every character is one token, and
//! the tokens of one jieba word share one word id, so whole-word and n-gram
//! masking select jieba words. (`cloze-fetch/tests/real_text.rs` checks the
//! same on the full cached corpora; it needs the network.)

use cloze_text::tokenizer::{train_wordpiece, TrainOptions};
use cloze_text::words::{has_cjk, is_cjk, jieba, jieba_words};
use cloze_text::{TextTokenizer, WordBoundaries};

/// Sentences with their jieba segmentation (jieba-rs 0.11, HMM on).
const SEGMENTED: &[&str] = &[
    "中国 人民 决心 继承 邓小平 同志 的 遗志 ， 继续 把 建设 有 中国 特色 社会主义 事业 推向 前进 。",
    "国民经济 保持 了 “ 高 增长 、 低 通胀 ” 的 良好 发展 态势 。",
    "我们 使用 语言 模型 来 预测 下 一个 词 的 概率 。",
    "这 本书 的 内容 非常 丰富 ， 翻译 也 很 地道 ， 推荐 ！",
    "快递 太慢 了 ， 包装 也 破 了 ， 很 失望 。",
];

fn tokenizer() -> anyhow::Result<TextTokenizer> {
    let lines: Vec<String> = SEGMENTED.iter().map(|s| s.replace(' ', "")).collect();
    let options = TrainOptions {
        vocab_size: 400,
        min_frequency: 1,
        ..TrainOptions::default()
    };
    Ok(train_wordpiece(
        lines.iter().cloned().cycle().take(50),
        &options,
    )?)
}

/// The words the word ids describe: the text from the first token's start
/// to the last token's end of each run of equal ids.
fn words_from_ids(text: &str, word_ids: &[u32], offsets: &[(u32, u32)]) -> Vec<String> {
    let mut out: Vec<(u32, usize, usize)> = Vec::new();
    for (&w, &(a, b)) in word_ids.iter().zip(offsets) {
        match out.last_mut() {
            Some((last, _, end)) if *last == w => *end = b as usize,
            _ => out.push((w, a as usize, b as usize)),
        }
    }
    out.into_iter()
        .map(|(_, a, b)| text[a..b].to_string())
        .collect()
}

#[test]
fn vocabulary_is_character_level_for_cjk() -> anyhow::Result<()> {
    let tok = tokenizer()?;
    let mut cjk = 0;
    for id in 0..tok.vocab_size() {
        let token = tok.id_to_token(id).unwrap_or_default();
        let bare = token.trim_start_matches("##");
        if has_cjk(bare) {
            cjk += 1;
            assert_eq!(
                bare.chars().count(),
                1,
                "multi-character CJK token {token:?}"
            );
        }
    }
    assert!(cjk > 50, "{cjk} CJK tokens");
    Ok(())
}

#[test]
fn word_ids_group_characters_into_jieba_words() -> anyhow::Result<()> {
    let tok = tokenizer()?;
    for segmented in SEGMENTED {
        let gold: Vec<&str> = segmented.split(' ').collect();
        let text = gold.concat();
        // jieba itself cuts the sentence this way.
        let cut: Vec<&str> = jieba_words(jieba(), &text)
            .iter()
            .map(|&(a, b)| &text[a..b])
            .collect();
        assert_eq!(cut, gold, "jieba's segmentation changed");

        let auto = tok.encode(&text, WordBoundaries::Auto)?;
        let forced = tok.encode(&text, WordBoundaries::Jieba)?;
        assert_eq!(
            auto.word_ids, forced.word_ids,
            "Auto uses jieba for Chinese"
        );
        // One token per character, none unknown.
        assert_eq!(auto.ids.len(), text.chars().count(), "{text}");
        assert!(!auto.ids.contains(&tok.special_tokens().unk));
        // Ids are dense from 0 and follow the text.
        assert_eq!(auto.word_ids.first(), Some(&0));
        assert!(auto
            .word_ids
            .windows(2)
            .all(|w| w[1] == w[0] || w[1] == w[0] + 1));
        assert_eq!(words_from_ids(&text, &auto.word_ids, &auto.offsets), gold);
        // What `cloze data prepare` stores is the same.
        let (ids, word_ids) = tok.encode_ids_words(&text, WordBoundaries::Auto)?;
        assert_eq!((ids, word_ids), (auto.ids.clone(), auto.word_ids.clone()));
    }
    // Multi-character words really share an id: 邓小平 is three tokens of one word.
    let text = SEGMENTED[0].replace(' ', "");
    let e = tok.encode(&text, WordBoundaries::Auto)?;
    let start = text.find("邓小平").unwrap_or_default() as u32;
    let at = e
        .offsets
        .iter()
        .position(|o| o.0 == start)
        .unwrap_or_default();
    assert_eq!(e.word_ids[at], e.word_ids[at + 1]);
    assert_eq!(e.word_ids[at + 1], e.word_ids[at + 2]);
    assert_ne!(
        e.word_ids[at + 2],
        e.word_ids[at + 3],
        "同志 is the next word"
    );
    Ok(())
}

#[test]
fn mixed_text_keeps_latin_words_whole_and_cjk_characters_apart() -> anyhow::Result<()> {
    let tok = tokenizer()?;
    let text = "我们使用bert模型";
    let e = tok.encode(text, WordBoundaries::Auto)?;
    let words = words_from_ids(text, &e.word_ids, &e.offsets);
    assert_eq!(words, ["我们", "使用", "bert", "模型"]);
    // Every CJK character is a token of its own.
    for (&(a, b), _) in e.offsets.iter().zip(&e.ids) {
        let piece = &text[a as usize..b as usize];
        if piece.chars().any(is_cjk) {
            assert_eq!(piece.chars().count(), 1, "{piece:?}");
        }
    }
    Ok(())
}
