//! `cloze-code`: the code layer of code-aware MLM (CugLM, issue 19). It
//! lexes Java and TypeScript with tree-sitter into lexemes that carry a
//! *syntactic* category (keyword, punctuation, literal, and for identifiers
//! type name, method name, field, variable, parameter, package, other),
//! reads directories of sources into lexed files split by file and by
//! package, and tokenizes lexemes into sub-tokens that keep their
//! identifier's category and occurrence.
//!
//! The categories come from tree-sitter node kinds and their parents (and a
//! per-file table of declared names), not from a type checker: CugLM's
//! "types" are static types, ours are syntactic categories
//! ([`category`], rules in [`mod@lex`]).
//!
//! Neighbours: it builds on `cloze-text` (the WordPiece trainer and
//! tokenizer under [`CodeTokenizer`], the progress callbacks, the UTF-8
//! policy of text corpora) and `cloze-core` ([`cloze_core::NO_WORD`]);
//! `cloze-fetch` provides the `jdk-src` and `ts-src` datasets it reads;
//! `cloze-mask` builds CugLM's training rows from [`EncodedCode`]'s ids,
//! categories and identifier occurrences; the `cloze` driver runs
//! `cloze data code`. This crate never links libtorch.
//!
//! Lex a Java snippet and look at the categories of its identifiers:
//!
//! ```
//! use cloze_code::{lex, CodeCategory, Language};
//!
//! let source = r#"
//! class Counter {
//!     private int count;
//!     // Comments are dropped.
//!     void add(int step) {
//!         int next = count + step;
//!         this.count = next;
//!         System.out.println(next);
//!     }
//! }
//! "#;
//! let lexemes = lex(source, Language::Java)?;
//! let category = |text: &str| {
//!     lexemes.iter().find(|l| l.text == text).map(|l| l.category)
//! };
//! assert_eq!(category("Counter"), Some(CodeCategory::TypeName));
//! assert_eq!(category("count"), Some(CodeCategory::FieldName));
//! assert_eq!(category("add"), Some(CodeCategory::MethodName));
//! assert_eq!(category("step"), Some(CodeCategory::Parameter));
//! assert_eq!(category("next"), Some(CodeCategory::Variable));
//! assert_eq!(category("println"), Some(CodeCategory::MethodName));
//! assert_eq!(category("System"), Some(CodeCategory::OtherIdentifier));
//! assert_eq!(category("int"), Some(CodeCategory::Keyword));
//! assert_eq!(category("{"), Some(CodeCategory::Punctuation));
//! assert!(lexemes.iter().all(|l| !l.text.starts_with("//")));
//!
//! // A file that does not parse is an error callers skip and count.
//! assert!(lex("class {", Language::Java).is_err());
//! # Ok::<(), cloze_code::Error>(())
//! ```

pub mod category;
pub mod corpus;
pub mod error;
pub mod lex;
pub mod tokenizer;

pub use category::CodeCategory;
pub use corpus::{
    read_corpus, split_files, CodeCorpus, CodeFile, CodeSplits, ReadOptions, SkippedFile, Split,
    SplitOptions,
};
pub use error::{Error, Result};
pub use lex::{lex, lex_prefix, Language, Lexeme, Lexer};
pub use tokenizer::{
    continues_identifier, is_identifier_text, split_identifier, CodeTokenizer,
    CodeTokenizerOptions, EncodedCode,
};
