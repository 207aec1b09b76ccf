//! `cloze-fs`: output directories that never clobber user data.
//!
//! The lowest layer, shared by every command that writes a directory
//! (`cloze data prepare`, `cloze tokenizer train`, `cloze pretrain`): it knows
//! nothing of corpora, tokenizers or tensors, and depends only on `std`,
//! `tempfile` and `serde_json`.
//!
//! The rule, in [`OutputDir`]:
//! 1. Before any work, [`OutputDir::check`] refuses an `--out` that is a
//!    regular file, the current directory (or one of its ancestors), a
//!    read-only directory or one inside a read-only parent, or a directory
//!    that holds one of the command's own inputs. It takes an exclusive lock
//!    ([`DirLock`]) so a second writer of the same output exits at once,
//!    naming the holder's PID, and it removes leftovers of earlier runs whose
//!    owner process is dead.
//! 2. The command writes into a temporary sibling ([`OutputDir::staging`]).
//! 3. [`OutputDir::publish`] renames the staging directory into place only if
//!    the target is missing, empty, or this command's own earlier output
//!    (recognised by its marker file) and `--force` was given. A failed
//!    publish puts the previous directory back.
//!
//! ```
//! use cloze_fs::{OutputDir, OutputKind};
//! # fn main() -> Result<(), cloze_fs::Error> {
//! let root = tempfile::tempdir().map_err(|e| cloze_fs::Error::io("creating", "tmp", e))?;
//! let kind = OutputKind::new("example", "--force");
//! let out = root.path().join("result");
//! let guard = OutputDir::check(&out, &kind, &[], false)?;
//! let staging = guard.staging()?;
//! std::fs::write(staging.path().join("data.txt"), "hello")
//!     .map_err(|e| cloze_fs::Error::io("writing", staging.path(), e))?;
//! guard.publish(staging)?;
//! assert!(out.join("data.txt").is_file());
//! // A second run without --force refuses to replace it.
//! assert!(OutputDir::check(&out, &kind, &[], false).is_err());
//! # Ok(())
//! # }
//! ```

pub mod digest;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

/// The marker file every published output directory carries: it names the
/// command that wrote it, so a later run can recognise its own output.
pub const MARKER: &str = ".cloze-output.json";

/// Everything that can go wrong while checking, locking or publishing an output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done ("creating", "renaming", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// `--out` names something that is not a directory.
    #[error("{path} is a file, not a directory: choose another {flag}")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
        /// The flag that named it.
        flag: String,
    },
    /// `--out` is the current directory or one of its ancestors.
    #[error("{path} is the current directory (or contains it); refusing to replace it: choose a new {flag} directory")]
    CurrentDirectory {
        /// The path given.
        path: PathBuf,
        /// The flag that named it.
        flag: String,
    },
    /// The output or its parent is read-only.
    #[error("{path} is read-only: choose another {flag} or make it writable")]
    ReadOnly {
        /// The read-only directory.
        path: PathBuf,
        /// The flag that named the output.
        flag: String,
    },
    /// The output directory holds one of the command's inputs.
    #[error("{out} holds an input of this command ({input}); it will never be replaced, not even with --force: choose another {flag}")]
    HoldsInput {
        /// The output directory.
        out: PathBuf,
        /// The input inside it.
        input: PathBuf,
        /// The flag that named the output.
        flag: String,
    },
    /// The output exists, is not empty, and was not written by this command.
    #[error("{path} already exists and is not the output of `cloze {command}` (it holds {sample}); refusing to replace it: remove it yourself or choose another {flag}")]
    NotOurs {
        /// The directory.
        path: PathBuf,
        /// The command that wanted to write it.
        command: String,
        /// A few of its entries, for the message.
        sample: String,
        /// The flag that named the output.
        flag: String,
    },
    /// The output is this command's own earlier output, and `--force` was not given.
    #[error("{path} already holds the output of an earlier `cloze {command}`: pass {force_flag} to replace it, or choose another {flag}")]
    Exists {
        /// The directory.
        path: PathBuf,
        /// The command.
        command: String,
        /// The flag that allows replacing it.
        force_flag: String,
        /// The flag that named the output.
        flag: String,
    },
    /// Another process holds the output's lock.
    #[error("{path} is being written by another process{}: wait for it to finish or choose another output", holder.map(|p| format!(" (PID {p})")).unwrap_or_default())]
    Locked {
        /// The output directory.
        path: PathBuf,
        /// The PID recorded by the holder, if it could be read.
        holder: Option<u32>,
    },
}

impl Error {
    /// An I/O error with what was being done and where.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::io(op, path, source)
}

/// Which command writes an output, for markers and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputKind {
    /// The command as the user types it after `cloze` (`"data prepare"`).
    pub command: String,
    /// The flag that allows replacing an earlier output (`"--force"`).
    pub force_flag: String,
    /// The flag that names the output (`"--out"`).
    pub out_flag: String,
    /// Files other than [`MARKER`] whose presence also marks this command's
    /// output (outputs written before markers existed), all of which must exist.
    pub legacy_markers: Vec<String>,
}

impl OutputKind {
    /// A kind for `command`, replaced only with `force_flag`; the output flag is `--out`.
    pub fn new(command: &str, force_flag: &str) -> Self {
        Self {
            command: command.to_string(),
            force_flag: force_flag.to_string(),
            out_flag: "--out".to_string(),
            legacy_markers: Vec::new(),
        }
    }

    /// Also recognise outputs that hold all of these files (written before markers).
    pub fn with_legacy_markers(mut self, files: &[&str]) -> Self {
        self.legacy_markers = files.iter().map(|f| f.to_string()).collect();
        self
    }

    /// Names the flag that gives the output (default `--out`).
    pub fn with_out_flag(mut self, flag: &str) -> Self {
        self.out_flag = flag.to_string();
        self
    }

    /// Whether `dir` is recognisably this command's earlier output.
    pub fn recognises(&self, dir: &Path) -> bool {
        if let Ok(text) = fs::read_to_string(dir.join(MARKER)) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                return v.get("command").and_then(|c| c.as_str()) == Some(self.command.as_str());
            }
        }
        !self.legacy_markers.is_empty() && self.legacy_markers.iter().all(|f| dir.join(f).exists())
    }

    /// Writes the marker into `dir` (normally the staging directory).
    pub fn write_marker(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MARKER);
        let json = serde_json::json!({
            "command": self.command,
            "written_by": format!("cloze {}", env!("CARGO_PKG_VERSION")),
            "pid": std::process::id(),
        });
        fs::write(&path, format!("{json:#}\n")).map_err(io("writing", &path))
    }
}

/// What the output path held when it was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// Nothing there yet.
    Missing,
    /// An empty directory.
    Empty,
    /// This command's own earlier output (and `--force` was given).
    Ours,
}

/// A checked, locked output directory: publish into it with [`OutputDir::publish`].
#[derive(Debug)]
pub struct OutputDir {
    out: PathBuf,
    parent: PathBuf,
    name: String,
    kind: OutputKind,
    force: bool,
    state: OutputState,
    _lock: DirLock,
}

/// The parent directory and final name of `out`, with `.`/`..` resolved
/// lexically against the current directory when needed.
fn split_out(out: &Path, flag: &str) -> Result<(PathBuf, String)> {
    let cwd =
        std::env::current_dir().map_err(io("reading the current directory", Path::new(".")))?;
    let abs = if out.is_absolute() {
        out.to_path_buf()
    } else {
        cwd.join(out)
    };
    // Lexical normalisation: `a/./b/../c` -> `a/c`.
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                norm.pop();
            }
            other => norm.push(other.as_os_str()),
        }
    }
    let real_cwd = fs::canonicalize(&cwd).unwrap_or(cwd);
    let real_norm = fs::canonicalize(&norm).unwrap_or_else(|_| norm.clone());
    if real_cwd.starts_with(&real_norm) || norm.file_name().is_none() {
        return Err(Error::CurrentDirectory {
            path: out.to_path_buf(),
            flag: flag.to_string(),
        });
    }
    let name = norm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = norm
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok((parent, name))
}

/// The nearest existing ancestor of `path` (itself if it exists).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

fn is_read_only(path: &Path) -> bool {
    // Permission bits, not a trial write: as root a trial write succeeds even
    // in a directory the user marked read-only, and the user's intent wins.
    fs::metadata(path)
        .map(|m| m.permissions().readonly())
        .unwrap_or(false)
}

impl OutputDir {
    /// Checks `out` before any work: see the crate documentation for the rule.
    /// `inputs` are the command's input files and directories; an output that
    /// holds one of them is refused even with `force`.
    pub fn check(out: &Path, kind: &OutputKind, inputs: &[&Path], force: bool) -> Result<Self> {
        let flag = kind.out_flag.as_str();
        let (parent, name) = split_out(out, flag)?;
        let target = parent.join(&name);
        if target.exists() && !target.is_dir() {
            return Err(Error::NotADirectory {
                path: out.to_path_buf(),
                flag: flag.to_string(),
            });
        }
        if let Some(a) = existing_ancestor(&parent) {
            if !a.is_dir() {
                return Err(Error::NotADirectory {
                    path: a.to_path_buf(),
                    flag: flag.to_string(),
                });
            }
            if is_read_only(a) {
                return Err(Error::ReadOnly {
                    path: a.to_path_buf(),
                    flag: flag.to_string(),
                });
            }
        }
        if target.is_dir() {
            if is_read_only(&target) {
                return Err(Error::ReadOnly {
                    path: out.to_path_buf(),
                    flag: flag.to_string(),
                });
            }
            let real_out = fs::canonicalize(&target).map_err(io("resolving", &target))?;
            for input in inputs {
                if let Ok(real_in) = fs::canonicalize(input) {
                    if real_in.starts_with(&real_out) {
                        return Err(Error::HoldsInput {
                            out: out.to_path_buf(),
                            input: input.to_path_buf(),
                            flag: flag.to_string(),
                        });
                    }
                }
            }
        }
        fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
        let lock = DirLock::acquire(&parent.join(format!(".{name}.lock")), &target)?;
        clean_orphans(&parent, &name);
        let state = Self::state_of(&target, out, kind, force)?;
        Ok(Self {
            out: out.to_path_buf(),
            parent,
            name,
            kind: kind.clone(),
            force,
            state,
            _lock: lock,
        })
    }

    fn state_of(target: &Path, out: &Path, kind: &OutputKind, force: bool) -> Result<OutputState> {
        if !target.exists() {
            return Ok(OutputState::Missing);
        }
        let mut entries: Vec<String> = fs::read_dir(target)
            .map_err(io("listing", target))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if entries.is_empty() {
            return Ok(OutputState::Empty);
        }
        if !kind.recognises(target) {
            entries.sort();
            let mut sample = entries
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if entries.len() > 3 {
                sample.push_str(&format!(" and {} more", entries.len() - 3));
            }
            return Err(Error::NotOurs {
                path: out.to_path_buf(),
                command: kind.command.clone(),
                sample,
                flag: kind.out_flag.clone(),
            });
        }
        if !force {
            return Err(Error::Exists {
                path: out.to_path_buf(),
                command: kind.command.clone(),
                force_flag: kind.force_flag.clone(),
                flag: kind.out_flag.clone(),
            });
        }
        Ok(OutputState::Ours)
    }

    /// What the output held when checked.
    pub fn state(&self) -> OutputState {
        self.state
    }

    /// The output path as given.
    pub fn path(&self) -> &Path {
        &self.out
    }

    /// A fresh temporary sibling `.NAME.partial-PID-XXXX` to write into. It is
    /// removed when dropped (an error, Ctrl-C); after `kill -9` the next run of
    /// any command on the same output removes it, since its PID is dead.
    pub fn staging(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&format!(".{}.partial-{}-", self.name, std::process::id()))
            .tempdir_in(&self.parent)
            .map_err(io("creating a staging directory in", &self.parent))
    }

    /// Writes the marker into `staging` and renames it into place, replacing
    /// the earlier output only in the [`OutputState::Ours`] case. If any step
    /// fails the previous directory is put back.
    pub fn publish(self, staging: tempfile::TempDir) -> Result<PathBuf> {
        self.kind.write_marker(staging.path())?;
        let target = self.parent.join(&self.name);
        // Checked again under the lock: the state may have changed since `check`
        // (a user copying files in while a long job ran).
        let state = Self::state_of(&target, &self.out, &self.kind, self.force)?;
        match state {
            OutputState::Missing => {
                fs::rename(staging.path(), &target).map_err(io("renaming into", &target))?;
            }
            OutputState::Empty => {
                fs::remove_dir(&target).map_err(io("removing the empty directory", &target))?;
                fs::rename(staging.path(), &target).map_err(io("renaming into", &target))?;
            }
            OutputState::Ours => {
                let old = self
                    .parent
                    .join(format!(".{}.old-{}", self.name, std::process::id()));
                fs::rename(&target, &old).map_err(io("moving aside", &target))?;
                if let Err(e) = fs::rename(staging.path(), &target) {
                    // Put the previous output back exactly as it was.
                    let _ = fs::rename(&old, &target);
                    return Err(Error::io("renaming into", &target, e));
                }
                if let Err(e) = fs::remove_dir_all(&old) {
                    tracing::warn!(path = %old.display(), error = %e, "could not remove the replaced output; the next run will");
                }
            }
        }
        // The directory now lives at `target`; do not let the TempDir delete it.
        let _ = staging.keep();
        if let Ok(f) = File::open(&self.parent) {
            let _ = f.sync_all();
        }
        Ok(target)
    }
}

/// Whether a process with this PID exists (Linux `/proc`; elsewhere assumed alive,
/// so leftovers are never removed on a guess).
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

/// Removes `.NAME.partial-PID-*` and `.NAME.old-PID` siblings of `parent/NAME`
/// whose PID is dead. Failures are logged, never fatal: a leftover costs disk
/// space, not correctness.
pub fn clean_orphans(parent: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let partial = format!(".{name}.partial-");
    let old = format!(".{name}.old-");
    for e in entries.filter_map(|e| e.ok()) {
        let file = e.file_name().to_string_lossy().into_owned();
        let pid = if let Some(rest) = file.strip_prefix(&partial) {
            rest.split('-').next().and_then(|p| p.parse::<u32>().ok())
        } else if let Some(rest) = file.strip_prefix(&old) {
            rest.parse::<u32>().ok()
        } else {
            None
        };
        if let Some(pid) = pid {
            if !pid_alive(pid) {
                let path = e.path();
                match fs::remove_dir_all(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), pid, "removed the leftover of a dead process")
                    }
                    Err(err) => {
                        tracing::warn!(path = %path.display(), error = %err, "could not remove a leftover")
                    }
                }
            }
        }
    }
}

/// An exclusive OS lock on a lock file, released when dropped or when the
/// process dies (even by `kill -9`), so it can never go stale. The holder's
/// PID is written into the file for the message of the next writer.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock at `lock_path`, guarding `guarded` (named in the error),
    /// without waiting: if another process holds it, fails with [`Error::Locked`].
    pub fn acquire(lock_path: &Path, guarded: &Path) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(lock_path)
                .map_err(io("opening the lock file", lock_path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(Error::Locked {
                        path: guarded.to_path_buf(),
                        holder: text.trim().parse().ok(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::io("locking", lock_path, e));
                }
            }
            // The previous holder removes the file when it is done; if that
            // happened between our open and our lock, we hold a lock on a file
            // nobody else can see: start over with the new one.
            let same = match (file.metadata(), fs::metadata(lock_path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            file.set_len(0).map_err(io("writing", lock_path))?;
            file.seek(SeekFrom::Start(0))
                .map_err(io("writing", lock_path))?;
            write!(file, "{}", std::process::id()).map_err(io("writing", lock_path))?;
            let _ = file.flush();
            return Ok(Self {
                file,
                path: lock_path.to_path_buf(),
            });
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Remove the file while still holding the lock, so the next writer
        // either opens it before removal (and re-checks the inode) or creates a new one.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kind() -> OutputKind {
        OutputKind::new("test write", "--force")
    }

    fn publish_file(out: &Path, force: bool, body: &str) -> Result<PathBuf> {
        let guard = OutputDir::check(out, &kind(), &[], force)?;
        let staging = guard.staging()?;
        fs::write(staging.path().join("f.txt"), body).unwrap();
        guard.publish(staging)
    }

    #[test]
    fn missing_and_empty_targets_are_published() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("a");
        publish_file(&out, false, "1").unwrap();
        assert_eq!(fs::read_to_string(out.join("f.txt")).unwrap(), "1");
        let empty = root.path().join("empty");
        fs::create_dir(&empty).unwrap();
        publish_file(&empty, false, "2").unwrap();
        assert_eq!(fs::read_to_string(empty.join("f.txt")).unwrap(), "2");
    }

    #[test]
    fn own_output_needs_force_and_foreign_output_is_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("a");
        publish_file(&out, false, "1").unwrap();
        assert!(matches!(
            publish_file(&out, false, "2"),
            Err(Error::Exists { .. })
        ));
        assert_eq!(fs::read_to_string(out.join("f.txt")).unwrap(), "1");
        publish_file(&out, true, "2").unwrap();
        assert_eq!(fs::read_to_string(out.join("f.txt")).unwrap(), "2");

        let foreign = root.path().join("b");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("thesis.tex"), "x").unwrap();
        let err = publish_file(&foreign, true, "2").unwrap_err();
        assert!(matches!(err, Error::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains("thesis.tex"), "{err}");
        assert_eq!(fs::read_to_string(foreign.join("thesis.tex")).unwrap(), "x");
        // Another command's output is foreign too.
        let other = OutputKind::new("other", "--force");
        assert!(OutputDir::check(&out, &other, &[], true).is_err());
    }

    #[test]
    fn inputs_files_current_dir_and_read_only_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("a");
        publish_file(&out, false, "1").unwrap();
        let input = out.join("f.txt");
        let err = OutputDir::check(&out, &kind(), &[&input], true).unwrap_err();
        assert!(matches!(err, Error::HoldsInput { .. }), "{err}");

        let file = root.path().join("plain.txt");
        fs::write(&file, "x").unwrap();
        assert!(matches!(
            OutputDir::check(&file, &kind(), &[], true),
            Err(Error::NotADirectory { .. })
        ));
        assert!(matches!(
            OutputDir::check(Path::new("."), &kind(), &[], true),
            Err(Error::CurrentDirectory { .. })
        ));
        assert!(matches!(
            OutputDir::check(Path::new("sub/.."), &kind(), &[], true),
            Err(Error::CurrentDirectory { .. })
        ));

        let ro = root.path().join("ro");
        fs::create_dir(&ro).unwrap();
        let mut perm = fs::metadata(&ro).unwrap().permissions();
        perm.set_readonly(true);
        fs::set_permissions(&ro, perm).unwrap();
        let err = OutputDir::check(&ro.join("x"), &kind(), &[], false).unwrap_err();
        assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
        assert!(!ro.join("x").exists());
        let err = OutputDir::check(&ro, &kind(), &[], false).unwrap_err();
        assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    }

    #[test]
    fn second_writer_is_refused_with_the_holders_pid() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("a");
        let first = OutputDir::check(&out, &kind(), &[], false).unwrap();
        let err = OutputDir::check(&out, &kind(), &[], false).unwrap_err();
        match &err {
            Error::Locked { holder, .. } => assert_eq!(*holder, Some(std::process::id())),
            other => panic!("expected Locked, got {other}"),
        }
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(first);
        assert!(OutputDir::check(&out, &kind(), &[], false).is_ok());
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        // PIDs above the kernel's pid_max cannot exist.
        let dead = root.path().join(".a.partial-4194305-abc");
        let dead_old = root.path().join(".a.old-4194306");
        let live = root
            .path()
            .join(format!(".a.partial-{}-xyz", std::process::id()));
        let other = root.path().join(".b.partial-4194305-abc");
        for d in [&dead, &dead_old, &live, &other] {
            fs::create_dir(d).unwrap();
        }
        let _guard = OutputDir::check(&root.path().join("a"), &kind(), &[], false).unwrap();
        assert!(!dead.exists() && !dead_old.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn dropped_staging_leaves_the_previous_output_untouched() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("a");
        publish_file(&out, false, "1").unwrap();
        {
            let guard = OutputDir::check(&out, &kind(), &[], true).unwrap();
            let staging = guard.staging().unwrap();
            fs::write(staging.path().join("f.txt"), "half").unwrap();
            // An error here: guard and staging are dropped unpublished.
        }
        assert_eq!(fs::read_to_string(out.join("f.txt")).unwrap(), "1");
        let names: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a".to_string()], "leftovers: {names:?}");
    }
}
