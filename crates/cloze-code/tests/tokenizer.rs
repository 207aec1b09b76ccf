//! The code tokenizer: sub-tokens carry their identifier's category and
//! occurrence index, non-identifier tokens carry `NO_WORD`, identifiers are
//! rebuilt exactly from their tokens, literals are capped, and a saved
//! tokenizer loads and encodes the same.

#![allow(clippy::unwrap_used)]

use cloze_code::tokenizer::CONFIG_FILE;
use cloze_code::{lex, CodeCategory, CodeTokenizer, CodeTokenizerOptions, Error, Language, Lexeme};
use cloze_core::NO_WORD;
use cloze_text::NoProgress;

const JAVA: &str = include_str!("snippets/Box.java");
const TS: &str = include_str!("snippets/pipe.ts");

fn files() -> Vec<Vec<Lexeme>> {
    vec![
        lex(JAVA, Language::Java).unwrap(),
        lex(TS, Language::TypeScript).unwrap(),
    ]
}

fn trained(vocab_size: usize) -> CodeTokenizer {
    let files = files();
    let options = CodeTokenizerOptions {
        vocab_size,
        min_frequency: 1,
        max_literal_tokens: 4,
    };
    let (tok, report) =
        CodeTokenizer::train(files.iter().map(Vec::as_slice), &options, &NoProgress).unwrap();
    assert!(report.vocab_size <= vocab_size);
    tok
}

#[test]
fn sub_tokens_carry_their_identifiers_category_and_occurrence() {
    // A small vocabulary, so that identifiers break into several tokens.
    let tok = trained(120);
    for lexemes in files() {
        let enc = tok.encode(&lexemes).unwrap();
        let n = enc.len();
        assert!(n >= lexemes.len());
        assert_eq!(
            (
                enc.categories.len(),
                enc.identifiers.len(),
                enc.lexeme_of.len()
            ),
            (n, n, n)
        );
        // Every lexeme has at least one token, in order.
        let mut seen = 0u32;
        for w in enc.lexeme_of.windows(2) {
            assert!(w[1] == w[0] || w[1] == w[0] + 1);
        }
        assert_eq!(enc.lexeme_of[0], 0);
        assert_eq!(*enc.lexeme_of.last().unwrap() as usize, lexemes.len() - 1);
        let mut multi = 0;
        let mut next_identifier = 0u32;
        let mut i = 0;
        while i < n {
            let lexeme = &lexemes[enc.lexeme_of[i] as usize];
            let mut j = i;
            while j < n && enc.lexeme_of[j] == enc.lexeme_of[i] {
                j += 1;
            }
            for t in i..j {
                assert_eq!(enc.categories[t], lexeme.category.index());
                if lexeme.category.is_identifier() {
                    assert_eq!(enc.identifiers[t], next_identifier, "{}", lexeme.text);
                } else {
                    assert_eq!(enc.identifiers[t], NO_WORD, "{}", lexeme.text);
                }
            }
            if lexeme.category.is_identifier() {
                next_identifier += 1;
                multi += usize::from(j - i > 1);
            }
            seen = seen.max(enc.lexeme_of[i]);
            i = j;
        }
        assert_eq!(seen as usize, lexemes.len() - 1);
        assert!(
            multi > 5,
            "only {multi} identifiers have several sub-tokens"
        );
        assert_eq!(
            next_identifier as usize,
            lexemes
                .iter()
                .filter(|l| l.category.is_identifier())
                .count()
        );

        // Identifiers come back exactly from their tokens.
        let texts = tok.lexeme_texts(&enc);
        assert_eq!(texts.len(), lexemes.len());
        for (text, lexeme) in texts.iter().zip(&lexemes) {
            if lexeme.category.is_identifier() {
                assert_eq!(text, &lexeme.text);
            }
        }
    }
}

#[test]
fn camel_case_pieces_start_new_tokens_and_case_is_kept() {
    let tok = trained(400);
    let lexeme = Lexeme {
        text: "findFirstItems".into(),
        category: CodeCategory::MethodName,
        start: 0,
        end: 14,
        line: 1,
        column: 1,
    };
    let ids = tok.lexeme_ids(&lexeme).unwrap();
    let tokens: Vec<String> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
    // Each camelCase piece starts a token of its own (no `##`) and case is
    // kept: the tokens glue back to the identifier, and the word-initial
    // tokens start exactly at `find`, `First`, `Items`.
    let glued: String = tokens
        .iter()
        .map(|t| t.strip_prefix("##").unwrap_or(t))
        .collect();
    assert_eq!(glued, "findFirstItems");
    let mut offset = 0;
    let mut starts = Vec::new();
    for t in &tokens {
        match t.strip_prefix("##") {
            Some(rest) => offset += rest.len(),
            None => {
                starts.push(offset);
                offset += t.len();
            }
        }
    }
    assert_eq!(starts, [0, 4, 9], "{tokens:?}");
}

#[test]
fn literals_are_capped_and_every_lexeme_has_a_token() {
    let tok = trained(200);
    let lexeme = |text: &str, category| Lexeme {
        text: text.into(),
        category,
        start: 0,
        end: text.len() as u32,
        line: 1,
        column: 1,
    };
    let long = lexeme("\"a b c d e f g h i j\"", CodeCategory::Literal);
    assert_eq!(tok.lexeme_ids(&long).unwrap().len(), 4);
    // A lexeme the vocabulary cannot say at all is one [UNK].
    let control = lexeme("\u{200b}", CodeCategory::Punctuation);
    assert_eq!(
        tok.lexeme_ids(&control).unwrap(),
        [tok.special_tokens().unk]
    );
}

#[test]
fn a_saved_tokenizer_loads_and_encodes_the_same() {
    let tok = trained(300);
    let dir = tempfile::tempdir().unwrap();
    tok.save_files(dir.path()).unwrap();
    for f in ["tokenizer.json", "vocab.txt", CONFIG_FILE] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let loaded = CodeTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(loaded.vocab_size(), tok.vocab_size());
    assert_eq!(loaded.max_literal_tokens(), 4);
    for lexemes in files() {
        assert_eq!(
            loaded.encode(&lexemes).unwrap(),
            tok.encode(&lexemes).unwrap()
        );
    }
    // A directory whose categories differ from this version's is refused.
    let path = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"keyword\"", "\"reserved\"")).unwrap();
    let err = CodeTokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::BadTokenizer { .. }), "{err}");
}
