//! Reading a directory of sources: path order, packages, files that do not
//! parse skipped with a count, non-UTF-8 handled as for text corpora, and
//! the splits (deterministic, the held-out package only in its own split).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use cloze_code::corpus::{path_bucket, source_files, split_of};
use cloze_code::{
    read_corpus, split_files, CodeFile, Error, Language, ReadOptions, Split, SplitOptions,
};
use cloze_text::NoProgress;

const GOOD_JAVA: &str = "package p;\nclass A { int f(int x) { return x + 1; } }\n";
const GOOD_TS: &str = "export const twice = (n: number): number => n * 2\n";

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Two packages of good files, a broken file, and files that are not read.
fn corpus(dir: &Path) {
    write(dir, "alpha/p/A.java", GOOD_JAVA.as_bytes());
    write(
        dir,
        "alpha/p/B.java",
        GOOD_JAVA.replace('A', "B").as_bytes(),
    );
    write(dir, "alpha/p/Broken.java", b"class Broken { void f( }\n");
    write(dir, "beta/src/twice.ts", GOOD_TS.as_bytes());
    write(dir, "beta/src/types.d.ts", b"export type T = number\n");
    write(dir, "beta/README.md", b"# not code\n");
    write(dir, ".hidden/H.java", GOOD_JAVA.as_bytes());
    write(dir, "Top.java", b"class Top {}\n");
}

#[test]
fn files_are_read_in_path_order_and_a_broken_one_is_skipped_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let read = read_corpus(dir.path(), &ReadOptions::default(), &NoProgress).unwrap();
    let paths: Vec<&str> = read.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Top.java",
            "alpha/p/A.java",
            "alpha/p/B.java",
            "beta/src/twice.ts"
        ]
    );
    let packages: Vec<&str> = read.files.iter().map(|f| f.package.as_str()).collect();
    assert_eq!(packages, [".", "alpha", "alpha", "beta"]);
    assert_eq!(read.files[3].language, Language::TypeScript);
    assert_eq!(read.skipped.len(), 1);
    assert_eq!(read.skipped[0].path, "alpha/p/Broken.java");
    assert!(
        read.skipped[0].reason.contains("does not parse"),
        "{}",
        read.skipped[0].reason
    );
    assert_eq!(read.lossy_files, 0);
    // The same corpus reads the same way again.
    let again = read_corpus(dir.path(), &ReadOptions::default(), &NoProgress).unwrap();
    assert_eq!(again.files, read.files);
}

#[test]
fn a_directory_without_sources_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes.txt", b"x");
    let err = read_corpus(dir.path(), &ReadOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, Error::NoSources { .. }), "{err}");
}

#[test]
fn invalid_utf8_fails_naming_the_line_unless_lossy() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p/Ok.java", GOOD_JAVA.as_bytes());
    let mut latin1 = b"class L {\n  String s = \"caf".to_vec();
    latin1.push(0xE9); // Latin-1 e-acute, not UTF-8
    latin1.extend_from_slice(b"\";\n}\n");
    write(dir.path(), "p/L.java", &latin1);

    let err = read_corpus(dir.path(), &ReadOptions::default(), &NoProgress).unwrap_err();
    match &err {
        Error::InvalidUtf8 { path, line } => {
            assert!(path.ends_with("p/L.java"), "{}", path.display());
            assert_eq!(*line, 2);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("lossy"), "{err}");

    let read = read_corpus(dir.path(), &ReadOptions { lossy_utf8: true }, &NoProgress).unwrap();
    assert_eq!(read.lossy_files, 1);
    assert_eq!(read.files.len(), 2);
    let literal = read.files[0]
        .lexemes
        .iter()
        .find(|l| l.text.starts_with('"'))
        .unwrap();
    assert_eq!(literal.text, "\"caf\u{FFFD}\"");
}

fn file(path: &str) -> CodeFile {
    CodeFile {
        path: path.into(),
        package: cloze_code::corpus::package_of(path).into(),
        language: Language::Java,
        lexemes: Vec::new(),
    }
}

#[test]
fn splits_are_deterministic_and_the_held_out_package_is_only_in_its_split() {
    let paths: Vec<String> = (0..600)
        .map(|i| format!("{}/p/F{i}.java", ["core", "net", "compiler"][i % 3]))
        .collect();
    let files: Vec<CodeFile> = paths.iter().map(|p| file(p)).collect();
    let options = SplitOptions {
        heldout_package: Some("compiler".into()),
        ..SplitOptions::default()
    };
    let splits = split_files(files.clone(), &options).unwrap();
    assert_eq!(splits.test_package.len(), 200);
    assert!(splits.test_package.iter().all(|f| f.package == "compiler"));
    for split in [Split::Train, Split::Valid, Split::Test] {
        assert!(splits.get(split).iter().all(|f| f.package != "compiler"));
    }
    let (train, valid, test) = (splits.train.len(), splits.valid.len(), splits.test.len());
    assert_eq!(train + valid + test, 400);
    assert!(
        (8..=32).contains(&valid) && (8..=32).contains(&test),
        "{valid} {test}"
    );

    // The same files split the same way; a file's split depends on its
    // path only, not on which other files are there.
    let again = split_files(files.clone(), &options).unwrap();
    assert_eq!(again.valid, splits.valid);
    let fewer = split_files(files[..300].to_vec(), &options).unwrap();
    let valid_all: BTreeSet<&str> = splits.valid.iter().map(|f| f.path.as_str()).collect();
    for f in &fewer.valid {
        assert!(valid_all.contains(f.path.as_str()), "{}", f.path);
    }
    for f in &splits.test {
        assert_eq!(split_of(&f.path, &f.package, &options), Split::Test);
    }
    // Pinned buckets: a change of the hash would move files between splits.
    assert_eq!(path_bucket("java.base/java/lang/String.java", 0), 33);
    assert_eq!(path_bucket("zod/v3/types.ts", 0), 37);
    // Another seed gives another split.
    let reseeded = SplitOptions {
        seed: 7,
        ..options.clone()
    };
    let other = split_files(files.clone(), &reseeded).unwrap();
    assert_ne!(other.valid, splits.valid);

    // An unknown held-out package is refused, naming the known ones.
    let wrong = SplitOptions {
        heldout_package: Some("nope".into()),
        ..SplitOptions::default()
    };
    let err = split_files(files.clone(), &wrong).unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("compiler, core, net"),
        "{err}"
    );
    let greedy = SplitOptions {
        valid_percent: 60,
        test_percent: 40,
        ..SplitOptions::default()
    };
    assert!(split_files(files, &greedy).is_err());
}

#[test]
fn source_files_skip_declarations_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let found: Vec<String> = source_files(dir.path())
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        found,
        [
            "Top.java",
            "alpha/p/A.java",
            "alpha/p/B.java",
            "alpha/p/Broken.java",
            "beta/src/twice.ts"
        ]
    );
}
