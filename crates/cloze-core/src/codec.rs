//! The tokenizer's view of a word, as similar-word masking needs it.

/// Converts between a word's surface form and its token ids (the tokenizer's view).
pub trait WordCodec: Send + Sync {
    /// The word spelled by `tokens` (e.g. WordPiece `["un", "##able"]` -> `"unable"`),
    /// or `None` when they spell no word.
    fn decode_word(&self, tokens: &[u32]) -> Option<String>;
    /// The token ids of `word` on its own, or `None` when it has no exact
    /// tokenization (it would contain `[UNK]`).
    fn encode_word(&self, word: &str) -> Option<Vec<u32>>;
}
