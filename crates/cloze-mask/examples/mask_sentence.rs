//! Masks a sentence with `cloze-mask` alone: a vocabulary file (or a built-in
//! one), a masking scheme from `configs/masking/`, and the masks it draws.
//!
//! ```sh
//! cargo run -p cloze-mask --example mask_sentence -- configs/masking/wwm.toml
//! ```

use cloze_core::{Instance, NO_WORD};
use cloze_mask::{Masker, MaskingConfig, Vocab};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scheme = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "configs/masking/wwm.toml".into());
    let config = MaskingConfig::load(&scheme)?;
    // A toy word-level vocabulary: the five BERT specials, then one id per word.
    let sentence = "the people of this nation shall protect the common defense of our union";
    let words: Vec<&str> = sentence.split(' ').collect();
    let mut tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    for w in &words {
        if !tokens.iter().any(|t| t == w) {
            tokens.push(w.to_string());
        }
    }
    let vocab = Vocab::from_tokens(tokens);
    let specials = vocab.special_tokens()?;
    let mut ids = vec![specials.cls];
    let mut word_ids = vec![NO_WORD];
    for (i, w) in words.iter().enumerate() {
        ids.push(vocab.id(w).ok_or("word missing from the vocabulary")?);
        word_ids.push(i as u32);
    }
    ids.push(specials.sep);
    word_ids.push(NO_WORD);
    let instance = Instance {
        segment_ids: vec![0; ids.len()],
        tokens: ids,
        word_ids,
        pair_label: None,
    };
    let masker = Masker::builder(config, specials)
        .word_codec(std::sync::Arc::new(vocab.clone()))
        .build()?;
    for epoch in 0..3 {
        let masked = masker.mask(&instance, 42, epoch, 0)?;
        let shown: Vec<&str> = masked
            .input_ids
            .iter()
            .map(|&t| vocab.token(t).unwrap_or("?"))
            .collect();
        println!("epoch {epoch}: {}", shown.join(" "));
    }
    Ok(())
}
