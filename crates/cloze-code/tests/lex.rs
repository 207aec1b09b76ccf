//! Identifier categories on hand-checked Java and TypeScript snippets
//! (`tests/snippets/`): the expected category of every identifier, line by
//! line, written by hand from the rules in `cloze_code::lex`; and the rest
//! of the lexer's contract (comments dropped, literals whole, positions,
//! files that do not parse refused).

#![allow(clippy::unwrap_used)]

use cloze_code::CodeCategory::{self, *};
use cloze_code::{lex, Error, Language, Lexeme};

const JAVA: &str = include_str!("snippets/Box.java");
const TS: &str = include_str!("snippets/pipe.ts");

// Short names for the tables below.
const T: CodeCategory = TypeName;
const M: CodeCategory = MethodName;
const F: CodeCategory = FieldName;
const V: CodeCategory = Variable;
const P: CodeCategory = Parameter;
const K: CodeCategory = PackageName;
const O: CodeCategory = OtherIdentifier;

type Expected = &'static [(u32, &'static [(&'static str, CodeCategory)])];

/// Compares every identifier lexeme of `lexemes`, in order, with `expected`
/// (line, then the identifiers of that line in order).
fn check_identifiers(lexemes: &[Lexeme], expected: Expected) {
    let got: Vec<(u32, &str, CodeCategory)> = lexemes
        .iter()
        .filter(|l| l.category.is_identifier())
        .map(|l| (l.line, l.text.as_str(), l.category))
        .collect();
    let want: Vec<(u32, &str, CodeCategory)> = expected
        .iter()
        .flat_map(|(line, ids)| ids.iter().map(move |(t, c)| (*line, *t, *c)))
        .collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "identifier {i}");
    }
    assert_eq!(got.len(), want.len(), "number of identifiers");
}

/// `Box.java`, line by line: the rule behind each surprising entry is
/// noted.
const JAVA_EXPECTED: Expected = &[
    (1, &[("org", K), ("example", K), ("util", K)]),
    // A single-type import: the last segment is the type.
    (3, &[("java", K), ("util", K), ("List", T)]),
    // An on-demand import names a package only.
    (4, &[("java", K), ("util", K), ("concurrent", K)]),
    // A static import: the type, then a member of unknown kind.
    (5, &[("java", K), ("lang", K), ("Math", T), ("max", O)]),
    (8, &[("SuppressWarnings", T)]),
    (
        9,
        &[
            ("Box", T),
            ("T", T),
            ("Base", T),
            ("Comparable", T),
            ("Box", T),
            ("T", T),
        ],
    ),
    (10, &[("LIMIT", F)]),
    (11, &[("List", T), ("T", T), ("items", F)]),
    // A constructor is named by its class.
    (13, &[("Box", T), ("List", T), ("T", T), ("items", P)]),
    // `this.items` is a field access; the bare `items` the parameter,
    // which shadows the field.
    (14, &[("items", F), ("items", P)]),
    (17, &[("Override", T)]),
    (18, &[("compareTo", M), ("Box", T), ("T", T), ("other", P)]),
    (19, &[("total", V)]),
    // A bare `items` in a method without such a local: the field.
    (20, &[("T", T), ("item", V), ("items", F)]),
    (
        21,
        &[
            ("total", V),
            ("max", M),
            ("total", V),
            ("item", V),
            ("hashCode", M),
        ],
    ),
    (23, &[("limit", V), ("total", V)]),
    // A lambda sees the enclosing method's locals.
    (
        24,
        &[("Runnable", T), ("task", V), ("helper", M), ("limit", V)],
    ),
    // `System` is declared nowhere in the file.
    (
        25,
        &[
            ("items", F),
            ("forEach", M),
            ("x", P),
            ("System", O),
            ("out", F),
            ("println", M),
            ("x", P),
        ],
    ),
    (26, &[("outer", O)]),
    (27, &[("total", V), ("LIMIT", F)]),
    (28, &[("outer", O)]),
    (30, &[("total", V), ("other", P), ("items", F), ("size", M)]),
    (
        33,
        &[
            ("String", T),
            ("name", M),
            ("Object", T),
            ("o", P),
            ("String", T),
            ("rest", P),
        ],
    ),
    // A pattern variable is a local.
    (34, &[("o", P), ("String", T), ("s", V)]),
    (35, &[("s", V), ("rest", P), ("length", F)]),
    // `List` is imported by name: a type even as an expression; `String`
    // is not (java.lang is implicit), so it stays unresolved.
    (
        37,
        &[
            ("List", T),
            ("of", M),
            ("rest", P),
            ("stream", M),
            ("map", M),
            ("String", O),
            ("valueOf", M),
            ("findFirst", M),
            ("orElse", M),
        ],
    ),
    (40, &[("Color", T), ("RED", F), ("GREEN", F)]),
];

/// `pipe.ts`, line by line.
const TS_EXPECTED: Expected = &[
    (1, &[("Option", K)]),
    // Names imported by name: their kind is not in this file.
    (2, &[("dual", O), ("LazyArg", O)]),
    (5, &[("Shape", T)]),
    (6, &[("kind", F)]),
    (7, &[("area", M), ("scale", P)]),
    (10, &[("Circle", T), ("Shape", T)]),
    (11, &[("kind", F)]),
    (12, &[("#radius", F)]),
    (13, &[("constructor", M), ("radius", P)]),
    (14, &[("#radius", F), ("radius", P)]),
    (16, &[("area", M), ("scale", P)]),
    (17, &[("factor", V), ("Math", O), ("PI", F), ("scale", P)]),
    (18, &[("factor", V), ("#radius", F)]),
    (22, &[("Mode", T), ("Fast", F), ("Slow", F)]),
    // A destructured parameter binds `label` and `n`; `size` is the key.
    (
        24,
        &[
            ("describe", V),
            ("shape", P),
            ("Shape", T),
            ("label", P),
            ("size", F),
            ("n", P),
            ("Options", T),
        ],
    ),
    // Identifiers inside template substitutions are code.
    (
        25,
        &[
            ("text", V),
            ("label", P),
            ("shape", P),
            ("kind", F),
            ("n", P),
        ],
    ),
    (26, &[("part", V), ("text", V)]),
    (27, &[("text", V), ("part", V)]),
    // `Option` the namespace (type and value positions) and the type.
    (
        29,
        &[
            ("opt", V),
            ("Option", K),
            ("Option", T),
            ("Option", K),
            ("some", M),
            ("n", P),
        ],
    ),
    // The shorthand `{ text }` resolves to the local; the enum is a type.
    (
        30,
        &[
            ("format", M),
            ("text", V),
            ("Mode", T),
            ("Fast", F),
            ("text", V),
            ("extra", F),
            ("Circle", T),
        ],
    ),
    (
        33,
        &[("format", M), ("value", P), ("args", P), ("Array", T)],
    ),
    (35, &[("value", P), ("trim", M)]),
    (36, &[("err", P)]),
    // A callee is a method name whatever it is.
    (37, &[("String", M), ("err", P)]),
];

#[test]
fn java_identifier_categories_match_the_hand_checked_table() {
    let lexemes = lex(JAVA, Language::Java).unwrap();
    check_identifiers(&lexemes, JAVA_EXPECTED);
}

#[test]
fn typescript_identifier_categories_match_the_hand_checked_table() {
    let lexemes = lex(TS, Language::TypeScript).unwrap();
    check_identifiers(&lexemes, TS_EXPECTED);
}

#[test]
fn comments_are_dropped_and_everything_else_is_kept_in_order() {
    for (source, language) in [(JAVA, Language::Java), (TS, Language::TypeScript)] {
        let lexemes = lex(source, language).unwrap();
        for l in &lexemes {
            assert!(
                !l.text.starts_with("//") && !l.text.starts_with("/*"),
                "{l:?}"
            );
            assert_eq!(&source[l.start as usize..l.end as usize], l.text);
            let line_start = source[..l.start as usize].rfind('\n').map_or(0, |p| p + 1);
            assert_eq!(l.column as usize, l.start as usize - line_start + 1);
            assert_eq!(
                l.line as usize,
                source[..l.start as usize].matches('\n').count() + 1
            );
        }
        assert!(lexemes.windows(2).all(|w| w[0].end <= w[1].start));
        // No word of the comments survives.
        for word in ["doc", "comment", "Doc"] {
            assert!(lexemes.iter().all(|l| !l.text.contains(word)), "{word}");
        }
    }
}

#[test]
fn literals_keywords_and_punctuation() {
    let java = lex(JAVA, Language::Java).unwrap();
    let category = |lexemes: &[Lexeme], text: &str| {
        lexemes.iter().find(|l| l.text == text).map(|l| l.category)
    };
    for (text, want) in [
        ("\"unchecked\"", Literal),
        ("10", Literal),
        ("'c'", Literal),
        ("int", Keyword),
        ("instanceof", Keyword),
        ("this", Keyword),
        ("->", Punctuation),
        ("::", Punctuation),
        ("...", Punctuation),
        ("@", Punctuation),
    ] {
        assert_eq!(category(&java, text), Some(want), "{text}");
    }
    let ts = lex(TS, Language::TypeScript).unwrap();
    for (text, want) in [
        ("\"./Option.js\"", Literal),
        ("/ab+c/g", Literal),
        ("undefined", Literal),
        ("2", Literal),
        ("string", Keyword),
        ("readonly", Keyword),
        ("=>", Punctuation),
        ("**", Punctuation),
        ("${", Punctuation),
    ] {
        assert_eq!(category(&ts, text), Some(want), "{text}");
    }
    // A template string is a literal around each substitution.
    let line: Vec<(&str, CodeCategory)> = ts
        .iter()
        .filter(|l| l.line == 25 && l.column >= 14)
        .map(|l| (l.text.as_str(), l.category))
        .collect();
    assert_eq!(
        line,
        [
            ("`", Literal),
            ("${", Punctuation),
            ("label", Parameter),
            ("}", Punctuation),
            (": ", Literal),
            ("${", Punctuation),
            ("shape", Parameter),
            (".", Punctuation),
            ("kind", FieldName),
            ("}", Punctuation),
            (" ", Literal),
            ("${", Punctuation),
            ("n", Parameter),
            ("}", Punctuation),
            ("`", Literal),
        ]
    );
}

#[test]
fn a_source_that_does_not_parse_is_refused_with_its_place() {
    let err = lex("class A {\n  void f() { int x = ; }\n}\n", Language::Java).unwrap_err();
    match err {
        Error::NotParseable { line, .. } => assert_eq!(line, 2),
        other => panic!("{other}"),
    }
    assert!(matches!(
        lex("const x = (1 + ;\n", Language::TypeScript),
        Err(Error::NotParseable { .. })
    ));
    // An unterminated construct gives a missing node.
    assert!(lex("class A { void f() { g(1) } }", Language::Java).is_err());
}

#[test]
fn typescript_constructs_the_grammar_lacks_are_repaired_not_skipped() {
    // Variance annotations (TypeScript 4.7) and call signatures on their
    // own lines after a member without `;` (the overloads of `dual`).
    let source = "\
export interface Box<in out A, out B = never> {
  readonly value: A
}
export const map: {
  /** data-last */
  <A, B>(f: (a: A) => B): (self: Box<A>) => Box<B>
  /** data-first */
  <A, B>(self: Box<A>, f: (a: A) => B): Box<B>
} = dual(2, (self, f) => self)
";
    let lexemes = lex(source, Language::TypeScript).unwrap();
    // Every lexeme is the original text at its place; no `;` was added.
    for l in &lexemes {
        assert_eq!(&source[l.start as usize..l.end as usize], l.text);
    }
    assert!(lexemes.iter().all(|l| l.text != ";"));
    let variance: Vec<(&str, CodeCategory)> = lexemes
        .iter()
        .filter(|l| l.line == 1)
        .map(|l| (l.text.as_str(), l.category))
        .take(9)
        .collect();
    assert_eq!(
        variance,
        [
            ("export", Keyword),
            ("interface", Keyword),
            ("Box", TypeName),
            ("<", Punctuation),
            ("in", Keyword),
            ("out", Keyword),
            ("A", TypeName),
            (",", Punctuation),
            ("out", Keyword),
        ]
    );
    let line8: Vec<&str> = lexemes
        .iter()
        .filter(|l| l.line == 8)
        .map(|l| l.text.as_str())
        .take(3)
        .collect();
    assert_eq!(line8, ["<", "A", ","]);

    // An escaped backtick in a template literal type; the literal keeps it.
    let source = "type Hint<T extends string> = `use \\`${T}\\``\nexport const x = 1\n";
    let lexemes = lex(source, Language::TypeScript).unwrap();
    let tail: Vec<(&str, CodeCategory)> = lexemes
        .iter()
        .filter(|l| l.line == 1)
        .skip(8)
        .map(|l| (l.text.as_str(), l.category))
        .collect();
    assert_eq!(
        tail,
        [
            ("`use \\`", Literal),
            ("${", Punctuation),
            ("T", TypeName),
            ("}", Punctuation),
            ("\\``", Literal),
        ]
    );
}

#[test]
fn languages_follow_file_names() {
    use std::path::Path;
    let of = |p: &str| Language::from_path(Path::new(p));
    assert_eq!(of("java.base/java/lang/String.java"), Some(Language::Java));
    assert_eq!(of("zod/v3/types.ts"), Some(Language::TypeScript));
    assert_eq!(of("zod/index.d.ts"), None);
    assert_eq!(of("view.tsx"), None);
    assert_eq!(of("README.md"), None);
    for l in Language::ALL {
        assert_eq!(Language::from_name(l.name()), Some(l));
    }
}

#[test]
fn a_prefix_that_does_not_parse_is_lexed_leniently() {
    use cloze_code::lex_prefix;
    // Code up to a cursor: the statement is unfinished.
    let prefix = "class A {\n  int count;\n  void add(int step) {\n    int next = count + step;\n    System.out.pri";
    assert!(lex(prefix, Language::Java).is_err());
    let lexemes = lex_prefix(prefix, Language::Java).unwrap();
    let texts: Vec<&str> = lexemes.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.last(), Some(&"pri"));
    let category = |text: &str| lexemes.iter().find(|l| l.text == text).map(|l| l.category);
    assert_eq!(category("add"), Some(MethodName));
    assert_eq!(category("step"), Some(Parameter));
    assert_eq!(category("next"), Some(Variable));
    for l in &lexemes {
        assert_eq!(&prefix[l.start as usize..l.end as usize], l.text);
    }
    // A source that parses lexes as with `lex`.
    assert_eq!(
        lex_prefix(JAVA, Language::Java).unwrap(),
        lex(JAVA, Language::Java).unwrap()
    );
    // A literal still open at the cursor is cut there.
    let open_string = "class A { String f() { return \"ab";
    let lexemes = lex_prefix(open_string, Language::Java).unwrap();
    let last = lexemes.last().unwrap();
    assert_eq!((last.text.as_str(), last.category), ("\"ab", Literal));
    let ts = "const total = items.reduce((sum, x) => sum + x, 0)\nconsole.lo";
    let lexemes = lex_prefix(ts, Language::TypeScript).unwrap();
    assert_eq!(lexemes.last().map(|l| l.text.as_str()), Some("lo"));
}
