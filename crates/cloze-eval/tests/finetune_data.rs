//! Fine-tuning data end to end: a file on disk -> examples -> label set ->
//! encoded examples -> a padded batch, for sequence and token classification,
//! with a real BERT WordPiece `tokenizer.json` written by the test.

use std::path::Path;

use anyhow::Result;
use cloze_eval::finetune_data::{
    collate, encode_seq, encode_tags, read_seq_examples, read_tag_examples, EncodedLabel, LabelSet,
};
use cloze_eval::metrics::{span_prf, TagScheme};
use cloze_eval::{Error, ModelTokenizer};
use cloze_mask::IGNORED_LABEL;
use serde_json::{json, Value};

/// The vocabulary, id = index.
const VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "play", "##ing", "##ed",
    "un", "##believ", "##able", "new", "york", "john", "lives", "in", ".", "我", "爱", "北", "京",
];

/// Writes a BERT WordPiece tokenizer (lowercasing, CJK characters split,
/// `[CLS] A [SEP] B [SEP]`) over [`VOCAB`] into `dir` and loads it.
fn tokenizer(dir: &Path) -> Result<ModelTokenizer> {
    let vocab: serde_json::Map<String, Value> = VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), i.into()))
        .collect();
    let added: Vec<Value> = VOCAB[..5]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let special = |s: &str, t: u32| json!({"SpecialToken": {"id": s, "type_id": t}});
    let seq = |s: &str, t: u32| json!({"Sequence": {"id": s, "type_id": t}});
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0),
                     seq("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string())?;
    Ok(ModelTokenizer::from_dir(dir, 512)?)
}

#[test]
fn sequence_pairs_from_tsv_to_a_batch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tok = tokenizer(dir.path())?;
    let train = dir.path().join("train.tsv");
    std::fs::write(
        &train,
        "label\ttext\ttext_pair\tsource\n\
         entail\tThe cat sat.\tthe cat sat\tweb\n\
         \n\
         contra\tJohn lives in New York\tthe cat sat in the cat\tnews\n",
    )?;
    let examples = read_seq_examples(&train, true)?;
    assert_eq!(examples.len(), 2);
    let labels = LabelSet::from_seq_examples(&examples)?;
    assert_eq!(labels.names(), ["contra", "entail"]);

    let encoded = encode_seq(&tok, &examples, Some(&labels), 10)?;
    // [CLS] the cat sat . [SEP] the cat sat [SEP]: 10 ids, nothing cut.
    assert_eq!(encoded[0].input_ids, [2, 5, 6, 7, 19, 3, 5, 6, 7, 3]);
    assert_eq!(encoded[0].token_type_ids, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    // 5 + 6 tokens in room for 7: cutting only the longer segment would leave
    // it shorter than the other, so both are cut, the longer keeping the odd
    // token (HF's longest_first): john lives in | the cat sat in.
    assert_eq!(encoded[1].input_ids, [2, 16, 17, 18, 3, 5, 6, 7, 18, 3]);
    assert_eq!(encoded[1].token_type_ids, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    assert_eq!(encoded[1].label, EncodedLabel::Class(0));

    let short = encode_seq(&tok, &examples[..1], Some(&labels), 16)?;
    let batch = collate(&[&short[0], &encoded[1]], tok.pad)?;
    assert_eq!((batch.batch_size, batch.seq_len), (2, 10));
    assert_eq!(batch.attention_mask.iter().sum::<i64>(), 20);
    assert_eq!(batch.targets.class, Some(vec![1, 0]));
    assert_eq!(batch.targets.tokens, None);
    Ok(())
}

#[test]
fn conll_tags_to_a_batch_and_back_to_spans() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tok = tokenizer(dir.path())?;
    let train = dir.path().join("train.conll");
    std::fs::write(
        &train,
        "-DOCSTART- -X- -X- O\n\n\
         John NNP B-PER\nlives VBZ O\nin IN O\nNew NNP B-LOC\nYork NNP I-LOC\n\n\
         unbelievable JJ O\nplaying VBG O\n",
    )?;
    let examples = read_tag_examples(&train, true)?;
    assert_eq!(examples.len(), 2);
    let labels = LabelSet::from_tag_examples(&examples)?;
    assert_eq!(labels.names(), ["O", "B-LOC", "B-PER", "I-LOC"]);
    assert_eq!(TagScheme::detect(labels.names()), Some(TagScheme::Bio));

    let encoded = encode_tags(&tok, &examples, Some(&labels), 32)?;
    let ig = IGNORED_LABEL;
    let (first, positions) = &encoded[0];
    assert_eq!(first.input_ids, [2, 16, 17, 18, 14, 15, 3]);
    assert_eq!(
        first.label,
        EncodedLabel::Tokens(vec![ig, 2, 0, 0, 1, 3, ig])
    );
    assert_eq!(positions.0, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
    let (second, positions) = &encoded[1];
    // [CLS] un ##believ ##able play ##ing [SEP]: later pieces are ignored.
    assert_eq!(second.input_ids, [2, 11, 12, 13, 8, 9, 3]);
    assert_eq!(
        second.label,
        EncodedLabel::Tokens(vec![ig, 0, ig, ig, 0, ig, ig])
    );
    assert_eq!(positions.0, [Some(1), Some(4)]);

    let batch = collate(&[&encoded[0].0, &encoded[1].0], tok.pad)?;
    assert_eq!((batch.batch_size, batch.seq_len), (2, 7));
    let tokens = batch.targets.tokens.clone().unwrap_or_default();
    assert_eq!(tokens.len(), 14);

    // A "model" that predicts the gold ids at the word positions reads back
    // the gold tags, so span scores are perfect.
    let decode = |row: usize, positions: &[Option<usize>]| -> Vec<String> {
        positions
            .iter()
            .map(|p| {
                p.and_then(|p| labels.name(tokens[row * batch.seq_len + p]))
                    .unwrap_or("O")
                    .to_owned()
            })
            .collect()
    };
    let pred: Vec<Vec<String>> = encoded
        .iter()
        .enumerate()
        .map(|(row, (_, pos))| decode(row, &pos.0))
        .collect();
    let gold: Vec<Vec<String>> = examples
        .iter()
        .map(|e| e.labels.clone().unwrap_or_default())
        .collect();
    assert_eq!(pred, gold);
    let scores = span_prf(&gold, &pred, TagScheme::Bio);
    assert_eq!((scores.gold, scores.correct), (2, 2));
    assert_eq!(scores.f1, 1.0);
    Ok(())
}

#[test]
fn a_dev_file_with_an_unseen_label_is_an_error_naming_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tok = tokenizer(dir.path())?;
    let train = dir.path().join("train.jsonl");
    std::fs::write(
        &train,
        "{\"text\": \"the cat\", \"label\": 0}\n{\"text\": \"sat\", \"label\": 1}\n",
    )?;
    let dev = dir.path().join("dev.jsonl");
    std::fs::write(&dev, "{\"text\": \"the cat sat\", \"label\": 2}\n")?;
    let labels = LabelSet::from_seq_examples(&read_seq_examples(&train, true)?)?;
    let err = encode_seq(&tok, &read_seq_examples(&dev, true)?, Some(&labels), 16)
        .expect_err("label 2 is not a training label");
    assert!(
        matches!(&err, Error::UnknownLabel { label, example: Some(0), .. } if label == "2"),
        "{err:?}"
    );
    assert!(err.to_string().contains("0, 1"), "{err}");
    // The same file read for prediction (no labels asked for) encodes.
    let unlabelled = encode_seq(&tok, &read_seq_examples(&dev, false)?, None, 16)?;
    assert_eq!(unlabelled[0].label, EncodedLabel::None);
    Ok(())
}
