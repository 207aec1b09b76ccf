//! The source-code datasets `jdk-src` and `ts-src`: their conversions on
//! tiny hand-built archives (a `.deb` holding a `src.zip`, npm packs), and,
//! ignored by default and run by `cargo xtask test`, the real archives
//! fetched through apt-get and npm into the user's cache.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use cloze_fetch::code::{
    convert_jdk_src, convert_ts_src, read_manifest, JDK_MODULES, MANIFEST, TS_PACKAGES,
};
use cloze_fetch::datasets::{self, cache_root, fetch};

// ----- hand-built archives ---------------------------------------------------

/// A zip of `(name, text)` members, as bytes.
fn zip_bytes(members: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in members {
        zip.start_file(*name, zip::write::FileOptions::default())
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A gzip'd tar of `(name, bytes)` members.
fn tar_gz(members: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, body) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *body).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A Debian package (an `ar` archive of `debian-binary`, `control.tar.gz`
/// and `data.tar.gz`) whose file system holds `members`.
fn deb(path: &Path, members: &[(&str, &[u8])]) {
    let control = tar_gz(&[(
        "./control",
        b"Package: tiny\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n",
    )]);
    let data = tar_gz(members);
    let mut out = b"!<arch>\n".to_vec();
    for (name, body) in [
        ("debian-binary", b"2.0\n".as_slice()),
        ("control.tar.gz", &control),
        ("data.tar.gz", &data),
    ] {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            "100644",
            body.len()
        );
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    fs::write(path, out).unwrap();
}

fn has_dpkg_deb() -> bool {
    std::process::Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every file below `dir` (relative, `/`-separated) with its text.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                out.insert(rel.replace('\\', "/"), fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A `src.zip` with one file per kept module, a module that is not kept,
/// and a non-Java file.
fn src_zip(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut members: Vec<(String, String)> = JDK_MODULES
        .iter()
        .map(|m| (format!("{m}/p/A.java"), format!("class A {{}} // {m}\n")))
        .collect();
    members.push(("jdk.localedata/p/L.java".into(), "class L {}\n".into()));
    members.push(("java.base/p/notes.html".into(), "<p>\n".into()));
    for (n, t) in extra {
        members.push(((*n).into(), (*t).into()));
    }
    let refs: Vec<(&str, &str)> = members
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    zip_bytes(&refs)
}

const SRC_ZIP: &str = "./usr/lib/jvm/openjdk-17/lib/src.zip";

#[test]
fn jdk_src_keeps_the_chosen_modules_java_files_as_module_paths() -> Result<()> {
    if !has_dpkg_deb() {
        eprintln!("skipped: dpkg-deb is not installed (the .deb reader needs it)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("openjdk-17-source_1_all.deb");
    let zip = src_zip(&[("java.base/java/lang/Deep.java", "class Deep {}\n")]);
    deb(&archive, &[(SRC_ZIP, &zip), ("./usr/share/doc/x", b"x")]);
    let out = dir.path().join("out");
    fs::create_dir(&out)?;
    convert_jdk_src(&archive, &out)?;

    let files = tree(&out);
    let mut expected: Vec<String> = JDK_MODULES
        .iter()
        .map(|m| format!("{m}/p/A.java"))
        .collect();
    expected.push("java.base/java/lang/Deep.java".into());
    expected.push(MANIFEST.into());
    expected.sort();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(files["java.sql/p/A.java"], "class A {} // java.sql\n");

    // The manifest lists every source with its size and checksum.
    let manifest = read_manifest(&out)?;
    assert_eq!(manifest.len(), JDK_MODULES.len() + 1);
    for (path, bytes, sha) in &manifest {
        let text = &files[path];
        assert_eq!(*bytes, text.len() as u64, "{path}");
        assert_eq!(*sha, cloze_fs::digest::sha256_hex(text.as_bytes()));
    }
    Ok(())
}

#[test]
fn jdk_src_refuses_a_missing_module_and_a_path_outside_the_output() -> Result<()> {
    if !has_dpkg_deb() {
        eprintln!("skipped: dpkg-deb is not installed (the .deb reader needs it)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    // No java.sql sources.
    let zip = zip_bytes(&[
        ("java.base/p/A.java", "class A {}"),
        ("java.logging/p/A.java", "class A {}"),
    ]);
    let archive = dir.path().join("a.deb");
    deb(&archive, &[(SRC_ZIP, &zip)]);
    let err = convert_jdk_src(&archive, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("java.net.http/**/*.java"), "{err}");

    // A member climbing out of its module is refused before anything is written.
    let zip = src_zip(&[("java.base/../../escape.java", "class E {}")]);
    deb(&archive, &[(SRC_ZIP, &zip)]);
    let out = dir.path().join("out");
    fs::create_dir(&out)?;
    let err = convert_jdk_src(&archive, &out).unwrap_err().to_string();
    assert!(err.contains("not a plain relative path"), "{err}");
    assert!(!dir.path().join("escape.java").exists());

    // A package without src.zip names the member it lacks.
    deb(&archive, &[("./usr/share/doc/x", b"x")]);
    let err = convert_jdk_src(&archive, &out).unwrap_err().to_string();
    assert!(err.contains("lib/src.zip"), "{err}");
    Ok(())
}

/// An npm pack of `package` with a source, a nested source, a declaration
/// file, a `.tsx` file and a compiled file outside `src/`.
fn npm_pack(dir: &Path, package: &str) -> PathBuf {
    let path = dir.join(format!("{package}-1.0.0.tgz"));
    let index = format!("export const name = \"{package}\"\n");
    let bytes = tar_gz(&[
        ("package/package.json", b"{}"),
        ("package/src/index.ts", index.as_bytes()),
        ("package/src/internal/util.ts", b"export const x = 1\n"),
        ("package/src/types.d.ts", b"export type T = 1\n"),
        ("package/src/view.tsx", b"export const v = 1\n"),
        ("package/dist/index.js", b"exports.x = 1\n"),
    ]);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn ts_src_keeps_src_ts_files_of_each_package_without_declarations() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let archives: Vec<PathBuf> = TS_PACKAGES
        .iter()
        .map(|p| npm_pack(dir.path(), p))
        .collect();
    let out = dir.path().join("out");
    fs::create_dir(&out)?;
    convert_ts_src(&archives, &out)?;
    let files = tree(&out);
    let mut expected: Vec<String> = TS_PACKAGES
        .iter()
        .flat_map(|p| [format!("{p}/index.ts"), format!("{p}/internal/util.ts")])
        .collect();
    expected.push(MANIFEST.into());
    expected.sort();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(files["zod/index.ts"], "export const name = \"zod\"\n");
    assert_eq!(read_manifest(&out)?.len(), 2 * TS_PACKAGES.len());

    // Each pack must bring sources; the wrong number of packs is refused.
    let empty = dir.path().join("empty-1.0.0.tgz");
    fs::write(&empty, tar_gz(&[("package/package.json", b"{}")]))?;
    let err = convert_ts_src(&[archives[0].clone(), empty, archives[2].clone()], &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("package/src/**/*.ts"), "{err}");
    assert!(convert_ts_src(&archives[..2], &out).is_err());
    Ok(())
}

#[test]
fn code_datasets_are_registered_with_a_manifest() -> Result<()> {
    for name in ["jdk-src", "ts-src"] {
        let d = datasets::find(name)?;
        assert_eq!(d.files, [MANIFEST]);
        assert_eq!(d.corpus, None);
    }
    let ts = datasets::find("ts-src")?;
    assert_eq!(ts.downloads().len(), 3);
    assert_eq!(ts.sources(), "npm effect@3.22.4 (+2 more)");
    Ok(())
}

// ----- the real archives -----------------------------------------------------

/// Fetches `name` and checks every manifest row against the file on disk;
/// returns the number of files per top-level directory.
fn fetched(name: &str) -> Result<(PathBuf, BTreeMap<String, usize>)> {
    let root = cache_root()?;
    let f = fetch(name, &root)?;
    assert!(datasets::list(&root)
        .iter()
        .any(|l| l.dataset.name == name && l.cached));
    let mut per_package = BTreeMap::new();
    for (path, bytes, _) in read_manifest(&f.dir)? {
        assert_eq!(fs::metadata(f.dir.join(&path))?.len(), bytes, "{path}");
        let package = path.split('/').next().unwrap_or_default().to_string();
        *per_package.entry(package).or_insert(0) += 1;
    }
    Ok((f.dir, per_package))
}

#[test]
#[ignore = "network: apt-get download openjdk-17-source"]
fn jdk_src_has_the_six_modules() -> Result<()> {
    let (dir, per_module) = fetched("jdk-src")?;
    let expected: BTreeMap<String, usize> = [
        ("java.base", 3_091),
        ("java.logging", 35),
        ("java.net.http", 144),
        ("java.sql", 77),
        ("jdk.compiler", 406),
        ("jdk.httpserver", 44),
    ]
    .into_iter()
    .map(|(m, n)| (m.to_string(), n))
    .collect();
    assert_eq!(per_module, expected);
    let string = fs::read_to_string(dir.join("java.base/java/lang/String.java"))?;
    assert!(string.contains("public final class String"));
    assert!(!dir.join("jdk.localedata").exists());
    Ok(())
}

#[test]
#[ignore = "network: npm pack effect, zod, rxjs"]
fn ts_src_has_the_three_packages() -> Result<()> {
    let (dir, per_package) = fetched("ts-src")?;
    let counts: Vec<(&str, usize)> = per_package.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    assert_eq!(counts, [("effect", 363), ("rxjs", 251), ("zod", 241)]);
    assert!(dir.join("effect/Effect.ts").is_file());
    Ok(())
}
