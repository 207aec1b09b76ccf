//! [`CodeCategory`]: what a lexeme is, from syntax alone.
//!
//! These are *syntactic* categories, read off tree-sitter node kinds and
//! the node's parent (a name in a method declaration, the field of a field
//! access, a declarator in a local variable declaration), plus a small
//! per-file table of declared names for plain identifiers used as
//! expressions. They are not static types: CugLM (Liu et al., ASE 2020)
//! predicts an identifier's type as a type checker reports it (`String`,
//! `List<Integer>`); here the "type" of `count` is `variable` or
//! `parameter` or `field_name`, whatever its declaration or position says.
//! The rules, language by language, are in [`mod@crate::lex`].

use serde::{Deserialize, Serialize};

/// The syntactic category of a lexeme: three non-identifier kinds and seven
/// identifier kinds (see the module docs: syntax, not static types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeCategory {
    /// A reserved word (`class`, `return`, `const`), a primitive or
    /// predefined type keyword (`int`, `void`, `string`), `this`, `super`.
    Keyword,
    /// Punctuation and operators (`{`, `;`, `.`, `>>>=`, `=>`, `@`).
    Punctuation,
    /// A string, template string (outside its substitutions), character,
    /// number, boolean, `null`/`undefined` or regular-expression literal.
    Literal,
    /// A type's name: where a type is expected (`type_identifier`), where a
    /// class, interface, enum or record is declared, an annotation's name,
    /// a constructor's name, the class after `new` (TypeScript), the type
    /// imported by a Java import.
    TypeName,
    /// A method or function name where it is declared or called
    /// (`foo` in `foo(..)` and `x.foo(..)`), a method reference's method.
    MethodName,
    /// A field or property: declared in a class or interface, accessed as
    /// `x.f`, an object-literal key, an enum constant.
    FieldName,
    /// A local variable where it is declared or used (resolved through the
    /// enclosing method's declarations).
    Variable,
    /// A method, lambda or catch parameter where it is declared or used.
    Parameter,
    /// A package, module or namespace path segment (`java.util` in an
    /// import, `Option` in `import * as Option`, `Effect` in `Effect.Effect`).
    PackageName,
    /// Any other identifier: labels, names whose declaration is not in the
    /// file (an imported function used as a value, `System` in
    /// `System.out`).
    OtherIdentifier,
}

impl CodeCategory {
    /// The number of categories.
    pub const COUNT: usize = 10;

    /// Every category, in index order.
    pub const ALL: [CodeCategory; Self::COUNT] = [
        CodeCategory::Keyword,
        CodeCategory::Punctuation,
        CodeCategory::Literal,
        CodeCategory::TypeName,
        CodeCategory::MethodName,
        CodeCategory::FieldName,
        CodeCategory::Variable,
        CodeCategory::Parameter,
        CodeCategory::PackageName,
        CodeCategory::OtherIdentifier,
    ];

    /// The category's index (`0..COUNT`), the id a model's category head
    /// predicts.
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The category of an index, `None` past [`Self::COUNT`].
    pub fn from_index(index: u8) -> Option<Self> {
        Self::ALL.get(index as usize).copied()
    }

    /// The lowercase snake-case name (`type_name`), as written in files.
    pub fn name(self) -> &'static str {
        match self {
            CodeCategory::Keyword => "keyword",
            CodeCategory::Punctuation => "punctuation",
            CodeCategory::Literal => "literal",
            CodeCategory::TypeName => "type_name",
            CodeCategory::MethodName => "method_name",
            CodeCategory::FieldName => "field_name",
            CodeCategory::Variable => "variable",
            CodeCategory::Parameter => "parameter",
            CodeCategory::PackageName => "package_name",
            CodeCategory::OtherIdentifier => "other_identifier",
        }
    }

    /// The category of a name written by [`Self::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// True for the seven identifier categories.
    pub fn is_identifier(self) -> bool {
        !matches!(
            self,
            CodeCategory::Keyword | CodeCategory::Punctuation | CodeCategory::Literal
        )
    }
}

impl std::fmt::Display for CodeCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_names_and_kinds_round_trip() {
        for (i, c) in CodeCategory::ALL.into_iter().enumerate() {
            assert_eq!(c.index() as usize, i);
            assert_eq!(CodeCategory::from_index(c.index()), Some(c));
            assert_eq!(CodeCategory::from_name(c.name()), Some(c));
            let json = serde_json::to_string(&c).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", c.name()));
        }
        assert_eq!(CodeCategory::from_index(CodeCategory::COUNT as u8), None);
        let identifiers = CodeCategory::ALL
            .iter()
            .filter(|c| c.is_identifier())
            .count();
        assert_eq!(identifiers, 7);
        assert!(!CodeCategory::Literal.is_identifier());
        assert!(CodeCategory::OtherIdentifier.is_identifier());
    }
}
