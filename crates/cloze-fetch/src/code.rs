//! The source-code datasets, registered in [`crate::datasets`], read by
//! `cloze-code` (lexing with tree-sitter) and `cloze data code`:
//!
//! - `jdk-src`: the Java sources of the JDK 17 class library, from Debian's
//!   `openjdk-17-source` package (its `lib/src.zip`, GPLv2 with the
//!   Classpath exception), restricted to the modules of [`JDK_MODULES`]:
//!   `java.base` (the core library, 3,091 files) and five smaller ones of
//!   different kinds (logging, the HTTP client, JDBC, the `javac` compiler,
//!   the HTTP server). The locale data tables (`jdk.localedata`) and the GUI
//!   toolkit are left out. Kept byte for byte as `<module>/<path>.java`, the
//!   layout of `src.zip` (`java.base/java/lang/String.java`).
//! - `ts-src`: the TypeScript sources of three npm packages ([`TS_PACKAGES`]:
//!   `effect`, `zod`, `rxjs`, all MIT): every `package/src/**/*.ts` that is
//!   not a declaration file (`.d.ts`), kept byte for byte as
//!   `<package>/<path>.ts` (`zod/v3/types.ts`).
//!
//! The top-level directory of a file (a JDK module, an npm package) is its
//! *package* for the cross-project split ([`JDK_HELD_OUT`], [`TS_HELD_OUT`]
//! are the packages held out by default). Beside the sources,
//! [`MANIFEST`] lists every file with its size and sha256, one a line
//! (`path<TAB>bytes<TAB>sha256`, sorted by path); the dataset's record
//! (`fetched.json`) checksums the manifest, so the thousands of sources are
//! covered without listing them in the registry.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::archive::{read_members, read_zip_members};
use crate::datasets::write_file;
use crate::error::{Error, IoContext, Result};

/// The file of a code dataset listing its sources (`path<TAB>bytes<TAB>sha256`).
pub const MANIFEST: &str = "manifest.tsv";

/// The JDK modules kept in `jdk-src`.
pub const JDK_MODULES: [&str; 6] = [
    "java.base",
    "java.logging",
    "java.net.http",
    "java.sql",
    "jdk.compiler",
    "jdk.httpserver",
];

/// The module `cloze data code --corpus jdk-src` holds out for the
/// cross-project test: `javac` is a program of its own, written by another
/// team than the core library it is trained with.
pub const JDK_HELD_OUT: &str = "jdk.compiler";

/// The npm packages of `ts-src`, in the order of the dataset's archives.
pub const TS_PACKAGES: [&str; 3] = ["effect", "zod", "rxjs"];

/// The package `cloze data code --corpus ts-src` holds out for the
/// cross-project test (the smallest of the three).
pub const TS_HELD_OUT: &str = "zod";

/// Where `src.zip` sits in the `openjdk-17-source` package.
const SRC_ZIP: &str = "usr/lib/jvm/openjdk-17/lib/src.zip";

/// The TypeScript sources inside an npm pack.
const TS_ROOT: &str = "package/src/";

/// `name` as a relative path of normal components only, so a member can be
/// written below the output directory and nowhere else.
fn safe_relative(archive: &Path, name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    let normal = path.components().all(|c| matches!(c, Component::Normal(_)));
    if name.is_empty() || !normal {
        return Err(Error::Format {
            path: archive.to_path_buf(),
            line: 0,
            reason: format!("member {name:?} is not a plain relative path"),
        });
    }
    Ok(path.to_path_buf())
}

/// Writes each `(relative path, bytes)` below `out` and the manifest.
fn write_sources(archive: &Path, out: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let mut manifest = String::new();
    for (name, bytes) in files {
        let path = out.join(safe_relative(archive, name)?);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at(dir)?;
        }
        write_file(&path, bytes)?;
        manifest.push_str(&format!(
            "{name}\t{}\t{}\n",
            bytes.len(),
            cloze_fs::digest::sha256_hex(bytes)
        ));
    }
    write_file(&out.join(MANIFEST), manifest.as_bytes())
}

/// The `.java` members of [`JDK_MODULES`] in a `src.zip` read from `zip`
/// (`archive` names it in errors), keyed by their path in the zip; every
/// module must have at least one.
fn jdk_sources(
    archive: &Path,
    zip: impl std::io::Read + std::io::Seek,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let found = read_zip_members(archive, zip, &|n| {
        n.ends_with(".java")
            && n.split_once('/')
                .is_some_and(|(module, _)| JDK_MODULES.contains(&module))
    })?;
    for module in JDK_MODULES {
        let prefix = format!("{module}/");
        if !found.keys().any(|k| k.starts_with(&prefix)) {
            return Err(Error::MissingMember {
                archive: archive.join(SRC_ZIP),
                member: format!("{module}/**/*.java"),
            });
        }
    }
    Ok(found)
}

/// Converts the `openjdk-17-source` package (`archive`, a `.deb`) into
/// `<module>/<path>.java` below `out` plus [`MANIFEST`].
pub fn convert_jdk_src(archive: &Path, out: &Path) -> Result<()> {
    let mut found = read_members(archive, &|n| n == SRC_ZIP)?;
    let zip = found.remove(SRC_ZIP).ok_or_else(|| Error::MissingMember {
        archive: archive.to_path_buf(),
        member: SRC_ZIP.into(),
    })?;
    let sources = jdk_sources(&archive.join(SRC_ZIP), std::io::Cursor::new(zip))?;
    write_sources(archive, out, &sources)
}

/// Converts the npm packs of [`TS_PACKAGES`] (`archives`, in that order)
/// into `<package>/<path>.ts` below `out` plus [`MANIFEST`]; each pack must
/// hold at least one source file.
pub fn convert_ts_src(archives: &[PathBuf], out: &Path) -> Result<()> {
    if archives.len() != TS_PACKAGES.len() {
        return Err(Error::Config(format!(
            "ts-src is made of {} npm packs ({}), got {} archives",
            TS_PACKAGES.len(),
            TS_PACKAGES.join(", "),
            archives.len()
        )));
    }
    let mut sources = BTreeMap::new();
    for (archive, package) in archives.iter().zip(TS_PACKAGES) {
        let found = read_members(archive, &|n| {
            n.starts_with(TS_ROOT) && n.ends_with(".ts") && !n.ends_with(".d.ts")
        })?;
        if found.is_empty() {
            return Err(Error::MissingMember {
                archive: archive.clone(),
                member: format!("{TS_ROOT}**/*.ts"),
            });
        }
        for (name, bytes) in found {
            let rest = name.strip_prefix(TS_ROOT).unwrap_or(&name);
            sources.insert(format!("{package}/{rest}"), bytes);
        }
    }
    let first = archives.first().map(PathBuf::as_path).unwrap_or(out);
    write_sources(first, out, &sources)
}

/// Reads a code dataset's [`MANIFEST`]: `(relative path, bytes, sha256)`
/// per source file, sorted by path.
pub fn read_manifest(dir: &Path) -> Result<Vec<(String, u64, String)>> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).at(&path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: &str| Error::Format {
            path: path.clone(),
            line: i as u64 + 1,
            reason: reason.into(),
        };
        let mut fields = line.split('\t');
        let (Some(name), Some(bytes), Some(sha), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected path<TAB>bytes<TAB>sha256"));
        };
        let bytes = bytes.parse().map_err(|_| bad("bytes is not a number"))?;
        rows.push((name.to_string(), bytes, sha.to_string()));
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn members_outside_the_output_are_refused() {
        let a = Path::new("a.zip");
        assert!(safe_relative(a, "java.base/java/lang/String.java").is_ok());
        for bad in ["../x.java", "/etc/x.java", "a/../../x.java", ""] {
            assert!(safe_relative(a, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_registry_downloads_the_packages_in_order() {
        let d = crate::datasets::find("ts-src").unwrap();
        let specs: Vec<String> = d.downloads().iter().map(|d| d.source.to_string()).collect();
        assert_eq!(specs.len(), TS_PACKAGES.len());
        for (spec, package) in specs.iter().zip(TS_PACKAGES) {
            assert!(spec.starts_with(&format!("npm {package}@")), "{spec}");
        }
        assert!(TS_PACKAGES.contains(&TS_HELD_OUT));
        assert!(JDK_MODULES.contains(&JDK_HELD_OUT));
    }
}
