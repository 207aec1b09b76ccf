//! The tokenizer of a checkpoint directory, as inference needs it: text in, ids with
//! `[CLS]`/`[SEP]` out, no padding (batches are padded by [`crate::batch`]).

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationParams};

use crate::{Error, Result};

/// A checkpoint's `tokenizer.json` with padding off and truncation to a chosen length.
#[derive(Debug, Clone)]
pub struct ModelTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    /// `[CLS]` id.
    pub cls: u32,
    /// `[SEP]` id.
    pub sep: u32,
    /// `[PAD]` id.
    pub pad: u32,
    /// `[MASK]` id, if the vocabulary has one.
    pub mask: Option<u32>,
}

impl ModelTokenizer {
    /// Loads `dir/tokenizer.json` (or a tokenizer.json path). Padding baked into the
    /// file (all-MiniLM-L6-v2 pads to 128) is turned off; sequences are truncated to
    /// `max_len` tokens, special tokens included.
    pub fn from_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let path = if dir.is_dir() {
            dir.join("tokenizer.json")
        } else {
            dir.to_path_buf()
        };
        let tok_err = |source| Error::Tokenizer {
            path: path.clone(),
            source,
        };
        let mut inner = Tokenizer::from_file(&path).map_err(tok_err)?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(tok_err)?;
        let id = |token: &'static str| {
            inner.token_to_id(token).ok_or_else(|| Error::MissingToken {
                path: path.clone(),
                token,
            })
        };
        Ok(ModelTokenizer {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            mask: id("[MASK]").ok(),
            inner,
            path,
        })
    }

    /// Token ids of each text with `[CLS] ... [SEP]`, in input order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|source| Error::Tokenizer {
                path: self.path.clone(),
                source,
            })?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The string of a token id (`"[UNK]"`-style fallback never needed for ids from the model).
    pub fn id_to_token(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| format!("<{id}>"))
    }

    /// Decodes ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|source| Error::Tokenizer {
                path: self.path.clone(),
                source,
            })
    }
}
