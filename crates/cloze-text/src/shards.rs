//! On-disk shards of unmasked instances: a little-endian, memory-mappable
//! binary format plus a JSON manifest, and the readers the trainer uses
//! (random access, seeded epoch permutations, a streaming shuffle buffer with
//! a resumable cursor).
//!
//! Shard file layout (format version 1), all integers little-endian:
//!
//! ```text
//! 0   magic  b"CLZSHRD1"                     8 bytes
//! 8   version u32, reserved u32             8 bytes
//! 16  instances n u64, tokens t u64         16 bytes
//! 32  offsets   (n+1) x u64   token offset of each instance; offsets[n] = t
//! ..  tokens    t x u32
//! ..  word_ids  t x u32      (u32::MAX = no word)
//! ..  segments  t x u8
//! ..  labels    n x u8       0 none, 1 NSP next, 2 NSP random, 3 SOP in order, 4 SOP swapped
//! ```
//!
//! A shard directory holds `manifest.json`, `tokenizer.json` (a copy of the
//! tokenizer, for decoding) and `train-NNNNN.bin` / `eval-NNNNN.bin`. It is
//! written under a temporary name and renamed into place when complete, so a
//! directory with a manifest is always whole. Shard file names in a manifest
//! must be plain names inside the directory: [`read_manifest`] refuses an
//! absolute name, `..` or a path separator ([`Error::UnsafeShardName`]), so a
//! damaged or hostile manifest cannot make cloze read (or hash) files
//! elsewhere.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::instance::{Instance, PairLabel, SpecialTokens};
use crate::pretrain::InstanceConfig;
use crate::tokenizer::{TextTokenizer, WordBoundaries};

/// Version of the binary shard format and manifest.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"CLZSHRD1";
const HEADER: usize = 32;
/// Manifest file name.
pub const MANIFEST: &str = "manifest.json";
/// Tokenizer copy file name.
pub const TOKENIZER: &str = "tokenizer.json";

/// Which part of a shard set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training instances.
    Train,
    /// Held-out instances (whole documents set aside).
    Eval,
}

impl Split {
    /// File-name prefix and manifest key.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Eval => "eval",
        }
    }
}

/// One shard file as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the directory.
    pub file: String,
    /// Instances in it.
    pub instances: u64,
    /// Tokens in it.
    pub tokens: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// sha256 of the file.
    pub sha256: String,
}

/// Counts of one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SplitInfo {
    /// Documents whose instances are in this split.
    pub documents: u64,
    /// Instances.
    pub instances: u64,
    /// Tokens (special tokens included).
    pub tokens: u64,
    /// Shard files in order.
    pub shards: Vec<ShardInfo>,
}

/// The manifest describing a shard directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] at writing time.
    pub format_version: u32,
    /// [`TextTokenizer::hash`] of the tokenizer used.
    pub tokenizer_hash: String,
    /// Its special tokens.
    pub special_tokens: SpecialTokens,
    /// Instance settings (mode, max length, short_seq_prob, seed).
    pub instances: InstanceConfig,
    /// Word boundary source.
    pub word_boundaries: WordBoundaries,
    /// Fraction of documents held out for evaluation.
    pub holdout_fraction: f64,
    /// The corpus path given to prepare.
    pub corpus: String,
    /// Documents read.
    pub documents: u64,
    /// Training split.
    pub train: SplitInfo,
    /// Held-out split.
    pub eval: SplitInfo,
    /// Writer version.
    pub created_by: String,
}

impl Manifest {
    /// The counts of a split.
    pub fn split(&self, split: Split) -> &SplitInfo {
        match split {
            Split::Train => &self.train,
            Split::Eval => &self.eval,
        }
    }
}

fn label_code(label: Option<PairLabel>) -> u8 {
    match label {
        None => 0,
        Some(PairLabel::Nsp {
            is_random_next: false,
        }) => 1,
        Some(PairLabel::Nsp {
            is_random_next: true,
        }) => 2,
        Some(PairLabel::Sop { swapped: false }) => 3,
        Some(PairLabel::Sop { swapped: true }) => 4,
    }
}

fn label_of(code: u8) -> Option<Option<PairLabel>> {
    Some(match code {
        0 => None,
        1 => Some(PairLabel::Nsp {
            is_random_next: false,
        }),
        2 => Some(PairLabel::Nsp {
            is_random_next: true,
        }),
        3 => Some(PairLabel::Sop { swapped: false }),
        4 => Some(PairLabel::Sop { swapped: true }),
        _ => return None,
    })
}

/// Serialises instances into one shard file's bytes.
pub fn encode_shard(instances: &[Instance]) -> Vec<u8> {
    let n = instances.len();
    let t: usize = instances.iter().map(Instance::len).sum();
    let mut out = Vec::with_capacity(HEADER + 8 * (n + 1) + 9 * t + n);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(&(t as u64).to_le_bytes());
    let mut off = 0u64;
    out.extend_from_slice(&off.to_le_bytes());
    for i in instances {
        off += i.len() as u64;
        out.extend_from_slice(&off.to_le_bytes());
    }
    for i in instances {
        for &x in &i.tokens {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    for i in instances {
        for &x in &i.word_ids {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    for i in instances {
        out.extend_from_slice(&i.segment_ids);
    }
    for i in instances {
        out.push(label_code(i.pair_label));
    }
    out
}

/// Writes one shard file (fsync'd) and returns its manifest entry.
pub(crate) fn write_shard(dir: &Path, file: &str, instances: &[Instance]) -> Result<ShardInfo> {
    let bytes = encode_shard(instances);
    let path = dir.join(file);
    let mut w = BufWriter::new(File::create(&path).at(&path)?);
    w.write_all(&bytes).at(&path)?;
    let f = w.into_inner().map_err(|e| Error::Io {
        path: path.clone(),
        source: e.into_error(),
    })?;
    f.sync_all().at(&path)?;
    Ok(ShardInfo {
        file: file.to_string(),
        instances: instances.len() as u64,
        tokens: instances.iter().map(|i| i.len() as u64).sum(),
        bytes: bytes.len() as u64,
        sha256: cloze_fs::digest::sha256_hex(&bytes),
    })
}

/// One memory-mapped shard file.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    map: Mmap,
    n: usize,
    t: usize,
}

impl Shard {
    fn open(path: &Path, info: &ShardInfo) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let bad = |reason: String| Error::BadShard {
            path: path.to_path_buf(),
            reason,
        };
        // Safety of the map is the OS's: the file is read-only here and the
        // format is validated below; memmap2's `map` is the safe entry point.
        let map = map_file(&file, path)?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(bad("not a cloze shard (bad magic)".into()));
        }
        let version = u32::from_le_bytes(read4(&map, 8));
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let n = u64::from_le_bytes(read8(&map, 16)) as usize;
        let t = u64::from_le_bytes(read8(&map, 24)) as usize;
        let expected = HEADER as u128 + 8 * (n as u128 + 1) + 9 * t as u128 + n as u128;
        if map.len() as u128 != expected {
            return Err(bad(format!(
                "size {} bytes, header implies {expected} (truncated?)",
                map.len()
            )));
        }
        if n as u64 != info.instances || t as u64 != info.tokens {
            return Err(bad(format!(
                "holds {n} instances / {t} tokens, manifest says {} / {}",
                info.instances, info.tokens
            )));
        }
        let last = u64::from_le_bytes(read8(&map, HEADER + 8 * n)) as usize;
        if last != t {
            return Err(bad("offsets index does not end at the token count".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            n,
            t,
        })
    }

    fn offset(&self, i: usize) -> usize {
        u64::from_le_bytes(read8(&self.map, HEADER + 8 * i)) as usize
    }

    fn get(&self, i: usize) -> Result<Instance> {
        let (s, e) = (self.offset(i), self.offset(i + 1));
        if s > e || e > self.t {
            return Err(Error::BadShard {
                path: self.path.clone(),
                reason: format!("instance {i} has offsets {s}..{e}"),
            });
        }
        let tok_base = HEADER + 8 * (self.n + 1);
        let word_base = tok_base + 4 * self.t;
        let seg_base = word_base + 4 * self.t;
        let label_base = seg_base + self.t;
        let u32s = |base: usize| -> Vec<u32> {
            self.map[base + 4 * s..base + 4 * e]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let code = self.map[label_base + i];
        let pair_label = label_of(code).ok_or_else(|| Error::BadShard {
            path: self.path.clone(),
            reason: format!("instance {i} has label code {code}"),
        })?;
        Ok(Instance {
            tokens: u32s(tok_base),
            word_ids: u32s(word_base),
            segment_ids: self.map[seg_base + s..seg_base + e].to_vec(),
            pair_label,
        })
    }
}

#[allow(unsafe_code)]
fn map_file(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: shard files are immutable once published (written under a
    // temporary name, then renamed); the map is only read.
    unsafe { Mmap::map(file) }.at(path)
}

fn read8(b: &[u8], at: usize) -> [u8; 8] {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    x
}

fn read4(b: &[u8], at: usize) -> [u8; 4] {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    x
}

/// One split of a prepared shard directory, memory-mapped for cheap random access.
#[derive(Debug)]
pub struct ShardSet {
    dir: PathBuf,
    split: Split,
    manifest: Manifest,
    shards: Vec<Shard>,
    /// Cumulative instance counts: `starts[k]` is the global index of shard k's first instance.
    starts: Vec<u64>,
    len: u64,
}

impl ShardSet {
    /// Opens the training split of `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_split(dir, Split::Train)
    }

    /// Opens one split of `dir`, checking the manifest's format version and
    /// every shard's header and size against the manifest.
    pub fn open_split(dir: &Path, split: Split) -> Result<Self> {
        let manifest = read_manifest(dir)?;
        let info = manifest.split(split).clone();
        let mut shards = Vec::with_capacity(info.shards.len());
        let mut starts = Vec::with_capacity(info.shards.len());
        let mut len = 0u64;
        for s in &info.shards {
            starts.push(len);
            let shard = Shard::open(&dir.join(&s.file), s)?;
            len += shard.n as u64;
            shards.push(shard);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            split,
            manifest,
            shards,
            starts,
            len,
        })
    }

    /// Number of instances in the split.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the split holds no instance.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The split this set reads.
    pub fn split(&self) -> Split {
        self.split
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Instance `i` (0-based, shard order).
    pub fn get(&self, i: usize) -> Result<Instance> {
        let i = i as u64;
        if i >= self.len {
            return Err(Error::OutOfRange {
                index: i,
                len: self.len,
            });
        }
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        self.shards[k].get((i - self.starts[k]) as usize)
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Special tokens of the tokenizer the shards were made with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.manifest.special_tokens
    }

    /// Fails with [`Error::TokenizerMismatch`] unless `tokenizer` is the one
    /// the shards were made with.
    pub fn check_tokenizer(&self, tokenizer: &TextTokenizer) -> Result<()> {
        self.check_tokenizer_hash(tokenizer.hash())
    }

    /// [`ShardSet::check_tokenizer`] given only a hash.
    pub fn check_tokenizer_hash(&self, hash: &str) -> Result<()> {
        if hash != self.manifest.tokenizer_hash {
            return Err(Error::TokenizerMismatch {
                dir: self.dir.clone(),
                expected: self.manifest.tokenizer_hash.clone(),
                actual: hash.to_string(),
            });
        }
        Ok(())
    }

    /// The copy of the tokenizer stored with the shards.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        let tok = TextTokenizer::from_json_file(&self.dir.join(TOKENIZER))?;
        self.check_tokenizer(&tok)?;
        Ok(tok)
    }

    /// Re-hashes every shard file of the split against the manifest.
    pub fn verify(&self) -> Result<()> {
        for info in &self.manifest.split(self.split).shards {
            let path = self.dir.join(&info.file);
            let actual = cloze_fs::digest::sha256_file(&path).at(&path)?;
            if actual != info.sha256 {
                return Err(Error::BadShard {
                    path,
                    reason: format!("sha256 {actual}, manifest says {}", info.sha256),
                });
            }
        }
        Ok(())
    }
}

/// Reads and checks a directory's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).at(&path)?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(Error::BadShard {
            path,
            reason: format!(
                "format version {}, this build reads {FORMAT_VERSION}",
                manifest.format_version
            ),
        });
    }
    for info in manifest.train.shards.iter().chain(&manifest.eval.shards) {
        if !is_plain_file_name(&info.file) {
            return Err(Error::UnsafeShardName {
                manifest: path,
                file: info.file.clone(),
            });
        }
    }
    Ok(manifest)
}

/// True when `name` names a file directly inside a directory: one normal
/// path component, no separator of any platform, not `.` or `..`, no NUL.
fn is_plain_file_name(name: &str) -> bool {
    use std::path::Component;
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return false;
    }
    let mut components = Path::new(name).components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(c)), None) if c == name
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::instance::NO_WORD;

    fn inst(k: u32, len: usize, label: Option<PairLabel>) -> Instance {
        let mut tokens = vec![2];
        tokens.extend((0..len as u32).map(|x| 10 + k * 100 + x));
        tokens.push(3);
        let mut word_ids = vec![NO_WORD];
        word_ids.extend((0..len as u32).map(|x| x / 2));
        word_ids.push(NO_WORD);
        Instance {
            segment_ids: (0..tokens.len()).map(|x| u8::from(x > len / 2)).collect(),
            tokens,
            word_ids,
            pair_label: label,
        }
    }

    fn manifest(train: Vec<ShardInfo>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            tokenizer_hash: "abc".into(),
            special_tokens: SpecialTokens {
                vocab_size: 100,
                pad: 0,
                unk: 1,
                cls: 2,
                sep: 3,
                mask: 4,
                pseudo_mask: None,
                all_special: vec![0, 1, 2, 3, 4],
            },
            instances: InstanceConfig::default(),
            word_boundaries: WordBoundaries::Auto,
            holdout_fraction: 0.0,
            corpus: "mem".into(),
            documents: 1,
            train: SplitInfo {
                documents: 1,
                instances: train.iter().map(|s| s.instances).sum(),
                tokens: train.iter().map(|s| s.tokens).sum(),
                shards: train,
            },
            eval: SplitInfo::default(),
            created_by: "test".into(),
        }
    }

    fn write_set(dir: &Path, shards: &[Vec<Instance>]) -> Vec<ShardInfo> {
        let infos: Vec<ShardInfo> = shards
            .iter()
            .enumerate()
            .map(|(k, s)| write_shard(dir, &format!("train-{k:05}.bin"), s).unwrap())
            .collect();
        std::fs::write(
            dir.join(MANIFEST),
            serde_json::to_vec(&manifest(infos.clone())).unwrap(),
        )
        .unwrap();
        infos
    }

    #[test]
    fn round_trip_random_access_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<Instance> = (0..5)
            .map(|k| {
                inst(
                    k,
                    3 + k as usize,
                    Some(PairLabel::Nsp {
                        is_random_next: k % 2 == 0,
                    }),
                )
            })
            .collect();
        let b: Vec<Instance> = (5..8)
            .map(|k| inst(k, 7, Some(PairLabel::Sop { swapped: k == 6 })))
            .collect();
        let c: Vec<Instance> = vec![inst(8, 1, None)];
        write_set(dir.path(), &[a.clone(), b.clone(), Vec::new(), c.clone()]);
        let set = ShardSet::open(dir.path()).unwrap();
        let all: Vec<Instance> = a.into_iter().chain(b).chain(c).collect();
        assert_eq!(set.len(), all.len());
        for (i, want) in all.iter().enumerate() {
            assert_eq!(&set.get(i).unwrap(), want);
        }
        assert!(matches!(set.get(all.len()), Err(Error::OutOfRange { .. })));
        set.verify().unwrap();
        assert!(ShardSet::open_split(dir.path(), Split::Eval)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn truncated_or_foreign_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), &[(0..4).map(|k| inst(k, 5, None)).collect()]);
        let p = dir.path().join("train-00000.bin");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let err = ShardSet::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::BadShard { .. }) && err.to_string().contains("truncated"),
            "{err}"
        );
        std::fs::write(&p, b"hello world, this is not a shard at all").unwrap();
        assert!(ShardSet::open(dir.path())
            .unwrap_err()
            .to_string()
            .contains("magic"));
        std::fs::remove_file(dir.path().join(MANIFEST)).unwrap();
        assert!(matches!(ShardSet::open(dir.path()), Err(Error::Io { .. })));
    }

    #[test]
    fn shard_names_outside_the_directory_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let infos = write_set(&dir, &[vec![inst(0, 2, None)]]);
        // A copy of the shard beside the directory: a name reaching it must
        // be refused even though the file is a valid shard.
        std::fs::copy(dir.join(&infos[0].file), root.path().join("outside.bin")).unwrap();
        let outside = root.path().join("outside.bin");
        for bad in [
            "../outside.bin".to_string(),
            outside.display().to_string(),
            "sub/train-00000.bin".to_string(),
            "..".to_string(),
            ".".to_string(),
            String::new(),
            "a\\b.bin".to_string(),
        ] {
            let mut m = manifest(infos.clone());
            m.train.shards[0].file = bad.clone();
            std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
            let err = ShardSet::open(&dir).unwrap_err();
            assert!(
                matches!(&err, Error::UnsafeShardName { file, .. } if *file == bad),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("manifest.json"), "{err}");
        }
        // Eval shards are checked too.
        let mut m = manifest(infos.clone());
        m.eval.shards.push(ShardInfo {
            file: "../outside.bin".into(),
            ..infos[0].clone()
        });
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(matches!(
            ShardSet::open(&dir),
            Err(Error::UnsafeShardName { .. })
        ));
        // Dots inside a plain name are harmless.
        assert!(is_plain_file_name("train..v2.bin"));
        assert!(is_plain_file_name("train-00000.bin"));
    }

    #[test]
    fn tokenizer_hash_mismatch_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), &[vec![inst(0, 2, None)]]);
        let set = ShardSet::open(dir.path()).unwrap();
        set.check_tokenizer_hash("abc").unwrap();
        assert!(matches!(
            set.check_tokenizer_hash("xyz"),
            Err(Error::TokenizerMismatch { .. })
        ));
    }
}
