//! Reading selected members out of the archives the package clients download:
//! wheels (zip), sdists and npm packs (gzip'd tar), Debian packages (`.deb`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result};

/// The container format of a downloaded archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    /// A zip file (Python wheel).
    Zip,
    /// A gzip'd tar file (Python sdist, npm pack).
    TarGz,
    /// A Debian package; read through `dpkg-deb --fsys-tarfile`.
    Deb,
}

impl ArchiveKind {
    /// Guesses the kind from the file name.
    pub(crate) fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".whl") || name.ends_with(".zip") {
            Some(Self::Zip)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if name.ends_with(".deb") {
            Some(Self::Deb)
        } else {
            None
        }
    }
}

/// Member paths are compared without a leading `./`, so `.deb` and tar paths
/// match the names the registry uses.
fn normalise(name: &str) -> &str {
    name.trim_start_matches("./")
}

/// Reads every member whose (normalised) path `want` accepts into memory.
///
/// Only regular files are returned; the map is ordered by path so conversions
/// that concatenate members are deterministic.
pub(crate) fn read_members(
    archive: &Path,
    want: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let kind = ArchiveKind::from_path(archive).ok_or_else(|| Error::Format {
        path: archive.to_path_buf(),
        line: 0,
        reason: "unknown archive type".into(),
    })?;
    let mut out = BTreeMap::new();
    match kind {
        ArchiveKind::Zip => {
            let file = File::open(archive).at(archive)?;
            out = read_zip_members(archive, std::io::BufReader::new(file), want)?;
        }
        ArchiveKind::TarGz => {
            let file = File::open(archive).at(archive)?;
            let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
            read_tar(archive, gz, want, &mut out)?;
        }
        ArchiveKind::Deb => {
            let program = "dpkg-deb";
            let mut child = Command::new(program)
                .arg("--fsys-tarfile")
                .arg(archive)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| Error::Spawn {
                    program: program.into(),
                    source,
                })?;
            let stdout = child.stdout.take().ok_or_else(|| Error::Format {
                path: archive.to_path_buf(),
                line: 0,
                reason: "dpkg-deb gave no output stream".into(),
            })?;
            let read = read_tar(archive, stdout, want, &mut out);
            let output = child.wait_with_output().at(archive)?;
            if !output.status.success() {
                return Err(Error::Command {
                    command: format!("{program} --fsys-tarfile {}", archive.display()),
                    status: output.status,
                    stderr: tail(&output.stderr),
                });
            }
            read?;
        }
    }
    Ok(out)
}

/// Reads every member of a zip archive read from `reader` (a file, or the
/// bytes of a zip nested in another archive) whose path `want` accepts;
/// `archive` names it in errors.
pub(crate) fn read_zip_members(
    archive: &Path,
    reader: impl Read + Seek,
    want: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut zip = zip::ZipArchive::new(reader).map_err(|source| Error::Zip {
        path: archive.to_path_buf(),
        source,
    })?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|source| Error::Zip {
            path: archive.to_path_buf(),
            source,
        })?;
        if !entry.is_file() {
            continue;
        }
        let name = normalise(entry.name()).to_string();
        if want(&name) {
            let mut buf = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut buf).at(archive)?;
            out.insert(name, buf);
        }
    }
    Ok(out)
}

fn read_tar(
    archive: &Path,
    reader: impl Read,
    want: &dyn Fn(&str) -> bool,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().at(archive)? {
        let mut entry = entry.at(archive)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().at(archive)?;
        let name = normalise(&path.to_string_lossy()).to_string();
        if want(&name) {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).at(archive)?;
            out.insert(name, buf);
        }
    }
    Ok(())
}

/// The last few hundred bytes of a command's stderr, for error messages.
pub(crate) fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(600)
        .map(|(i, _)| i)
        .unwrap_or(0);
    text[start..].to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn kind_follows_the_file_name() {
        let kind = |n: &str| ArchiveKind::from_path(Path::new(n));
        assert_eq!(kind("pkg-1.0-py3-none-any.whl"), Some(ArchiveKind::Zip));
        assert_eq!(kind("pkg-1.0.tar.gz"), Some(ArchiveKind::TarGz));
        assert_eq!(kind("pkg-1.0.tgz"), Some(ArchiveKind::TarGz));
        assert_eq!(kind("wordnet-base_3.0-37_all.deb"), Some(ArchiveKind::Deb));
        assert_eq!(kind("notes.txt"), None);
    }

    #[test]
    fn tar_gz_members_are_filtered_and_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack.tgz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(gz);
        for (name, body) in [("./package/a.txt", "alpha"), ("./package/b.json", "{}")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, body.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();

        let found = read_members(&path, &|n| n.ends_with(".txt")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found["package/a.txt"], b"alpha");
    }

    #[test]
    fn zip_members_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let options = zip::write::FileOptions::default();
        zip.add_directory("data/", options).unwrap();
        zip.start_file("data/x.txt", options).unwrap();
        zip.write_all(b"x").unwrap();
        zip.start_file("data/y.txt", options).unwrap();
        zip.write_all(b"y").unwrap();
        zip.finish().unwrap();

        let found = read_members(&path, &|n| n.starts_with("data/")).unwrap();
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(names, ["data/x.txt", "data/y.txt"]);
        assert_eq!(found["data/y.txt"], b"y");
    }

    #[test]
    fn unknown_archive_type_is_a_format_error() {
        let err = read_members(Path::new("notes.txt"), &|_| true).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
    }

    #[test]
    fn tail_keeps_the_end_of_long_output() {
        let long = "x".repeat(1000) + "the end";
        let t = tail(long.as_bytes());
        assert!(
            t.ends_with("the end") && t.chars().count() == 601,
            "{}",
            t.len()
        );
        assert_eq!(tail(b"  short\n"), "short");
    }
}
