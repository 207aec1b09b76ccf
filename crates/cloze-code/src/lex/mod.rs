//! Lexing with tree-sitter: a source file becomes [`Lexeme`]s, each with
//! its text, place and [`CodeCategory`]. Comments are dropped; a file whose
//! tree holds an `ERROR` or `MISSING` node is refused with
//! [`Error::NotParseable`] (corpus readers skip it and count it).
//!
//! The categories are syntactic (see [`crate::category`]): read off the
//! node kinds of the tree-sitter grammars `tree-sitter-java` and
//! `tree-sitter-typescript` (0.23) and the node's parent, never from a type
//! checker. The rules:
//!
//! **Every language.** A leaf that is not an identifier is a `keyword` when
//! its text has a letter (`class`, `return`, `int`, `instanceof`, `this`),
//! else `punctuation` (`{`, `>>>=`, `@`). Literal nodes (strings,
//! characters, numbers, `true`/`false`, `null`, TypeScript's `undefined` and
//! regular expressions) are one `literal` lexeme each; a TypeScript template
//! string (or template literal type) is a `literal` for each stretch of
//! text between its `${..}` substitutions, whose contents are lexed as code. Zero-width tokens (an
//! automatic semicolon) are dropped.
//!
//! **Java** (`identifier`, `type_identifier`):
//!
//! | where | category |
//! |---|---|
//! | any `type_identifier` (types, type parameters, `throws`, `new T()`) | `type_name` |
//! | the name of a class, interface, enum, record or annotation type declaration; a constructor's name; an annotation's name (`@Override`) | `type_name` |
//! | the name of a method declaration, a method invocation, an annotation element (declared or `key = ..`); the method of a method reference (`String::valueOf`) | `method_name` |
//! | a formal, spread, catch or lambda parameter's name | `parameter` |
//! | a record component | `field_name` |
//! | a declarator of a field or interface constant, an enum constant, the field of a field access (`this.x`, `a.b`) | `field_name` |
//! | a declarator of a local variable, a resource, an enhanced-`for` variable, a pattern variable (`x instanceof T t`) | `variable` |
//! | the segments of a package, module, `requires`/`exports`/`opens` name | `package_name` |
//! | an import `a.b.C`: `a`, `b` are `package_name`, `C` `type_name`; `a.b.*`: all `package_name`; `import static a.b.C.m`: `C` `type_name`, `m` `other_identifier`; `import static a.b.C.*`: `C` `type_name` | |
//! | a qualified annotation name `@a.b.C`: `a`, `b` `package_name`, `C` `type_name` | |
//! | a label (`break outer`) | `other_identifier` |
//! | any other `identifier` (an expression) | resolved below |
//!
//! **TypeScript** (`identifier`, `type_identifier`, `property_identifier`,
//! `private_property_identifier`, `shorthand_property_identifier(_pattern)`,
//! `statement_identifier`):
//!
//! | where | category |
//! |---|---|
//! | any `type_identifier` (types, class, interface and type alias names, type parameters); an enum's name; the callee of `new` (`new Foo()`, `new a.Foo()`) | `type_name` |
//! | the name of a function declaration or expression, a method definition or signature; the callee of a call (`f(..)`, `x.f(..)`); a decorator | `method_name` |
//! | a parameter's name or a name bound by a parameter's destructuring pattern; a `catch` parameter | `parameter` |
//! | a name bound by a variable declarator (`const x`, `let {a, b: c}`), a `for (const x of ..)` variable | `variable` |
//! | a property: `x.p` (not called), a class field, an interface property, an object-literal or pattern key, an enum member | `field_name` |
//! | a namespace: `import * as NS`, `namespace A.B`, `NS` in the type `NS.T` | `package_name` |
//! | an imported or exported name (`import { a as b }`), a label | `other_identifier` |
//! | any other `identifier` (an expression), a shorthand property `{ x }` | resolved below |
//!
//! **Resolution.** An identifier used as an expression is looked up in a
//! table of names declared in the file, innermost scope first: the
//! enclosing method, constructor, lambda or function (its parameters
//! `parameter`, its locals `variable`, and in TypeScript its nested
//! function declarations `method_name` and classes and enums `type_name`),
//! then, in Java, the fields of each enclosing class body (`field_name`);
//! then the file: in Java the types declared in the file and the types it
//! imports by name (`type_name`), in TypeScript the module's variables,
//! functions, classes and `import * as` namespaces. A method's table holds
//! every declaration in its body regardless of block nesting or order (a
//! cheap approximation of scoping). A name found nowhere is
//! `other_identifier` (a shorthand property `{ x }` is then `field_name`):
//! `System` in `System.out`, a function imported by name and used as a
//! value.
//!
//! **Gaps of the TypeScript grammar.** `tree-sitter-typescript` 0.23 parses
//! neither variance annotations (`interface Effect<out A>`, TypeScript 4.7)
//! nor a call signature that starts a line after an object-type member
//! without `;` (the overload objects of `effect`'s `dual`), nor an escaped
//! backtick in a template literal type: on `ts-src` 197 of 855 files fail
//! to parse, all but one for these reasons. When a TypeScript file does not parse, the
//! lexer tries once more on a copy of the same length in which the
//! `in`/`out` of such type parameter lists are blanked, a `;` takes the
//! first indentation space of such a signature line and escaped backticks
//! are blanked; if that
//! copy parses cleanly, its lexemes are given with the original's text (the
//! variance words back as keywords, the added `;` left out), else the
//! original error stands. Java files get no second try.

mod java;
mod prefix;
mod typescript;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tree_sitter::{Node, Parser, Tree};

use crate::category::CodeCategory;
use crate::error::{Error, Result};

/// A programming language the lexer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Java (`.java`), grammar `tree-sitter-java`.
    Java,
    /// TypeScript (`.ts`, declaration files `.d.ts` excluded), grammar
    /// `tree-sitter-typescript` (not TSX).
    TypeScript,
}

impl Language {
    /// Every language.
    pub const ALL: [Language; 2] = [Language::Java, Language::TypeScript];

    /// The language of a file from its name: `.java`, or `.ts` but not a
    /// declaration file `.d.ts`; `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".java") {
            Some(Language::Java)
        } else if name.ends_with(".ts") && !name.ends_with(".d.ts") {
            Some(Language::TypeScript)
        } else {
            None
        }
    }

    /// The lowercase name (`java`, `typescript`), as written in files.
    pub fn name(self) -> &'static str {
        match self {
            Language::Java => "java",
            Language::TypeScript => "typescript",
        }
    }

    /// The language of a name written by [`Self::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    fn grammar(self) -> tree_sitter::Language {
        match self {
            Language::Java => tree_sitter_java::LANGUAGE.into(),
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One token of source code with its syntactic category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lexeme {
    /// The source text (a whole string literal, quotes included).
    pub text: String,
    /// Its syntactic category.
    pub category: CodeCategory,
    /// Byte offset of its start in the source.
    pub start: u32,
    /// Byte offset just past its end.
    pub end: u32,
    /// 1-based line of its start.
    pub line: u32,
    /// 1-based column of its start, counted in bytes (tree-sitter's points).
    pub column: u32,
}

/// A reusable lexer for one language (it keeps its tree-sitter parser).
pub struct Lexer {
    language: Language,
    parser: Parser,
}

impl std::fmt::Debug for Lexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lexer")
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

impl Lexer {
    /// A lexer for `language`.
    pub fn new(language: Language) -> Result<Self> {
        let mut parser = Parser::new();
        parser
            .set_language(&language.grammar())
            .map_err(|source| Error::Grammar {
                language: language.name(),
                source,
            })?;
        Ok(Self { language, parser })
    }

    /// Its language.
    pub fn language(&self) -> Language {
        self.language
    }

    /// The lexemes of `source`, comments dropped; [`Error::NotParseable`]
    /// when the tree has an error or missing node.
    pub fn lex(&mut self, source: &str) -> Result<Vec<Lexeme>> {
        if u32::try_from(source.len()).is_err() {
            return Err(Error::TooLarge {
                bytes: source.len(),
            });
        }
        let error = match self.parse(source) {
            Ok(tree) => {
                let mut walker = Walker::new(source, self.language);
                walker.walk(&tree);
                return Ok(walker.out);
            }
            Err(e) => e,
        };
        if self.language != Language::TypeScript {
            return Err(error);
        }
        // A second try at what the TypeScript grammar cannot parse; the
        // first error is reported if that fails too.
        let Some(repaired) = typescript::repair(source) else {
            return Err(error);
        };
        let Ok(tree) = self.parse(&repaired.text) else {
            return Err(error);
        };
        let mut walker = Walker::new(&repaired.text, self.language);
        walker.walk(&tree);
        Ok(restore(source, walker.out, &repaired))
    }

    /// The lexemes of `source` even when it does not parse (code up to a
    /// cursor, an unfinished statement). The source is first completed so
    /// that it parses: whatever closes an open comment or literal, maybe a
    /// placeholder operand and a `;`, and the brackets left open (a few
    /// such endings are tried, shortest first); the lexemes of what was
    /// added are dropped, a literal cut at the end of `source`. When no
    /// ending makes it parse, the tree of tree-sitter's error recovery is
    /// walked as it is: a lexeme inside an error node then gets what the
    /// rules make of its place there. A source that parses gives what
    /// [`Self::lex`] gives.
    pub fn lex_lenient(&mut self, source: &str) -> Result<Vec<Lexeme>> {
        match self.lex(source) {
            Err(Error::NotParseable { .. }) => {}
            other => return other,
        }
        for ending in prefix::endings(source) {
            let completed = format!("{source}{ending}");
            if let Ok(lexemes) = self.lex(&completed) {
                return Ok(cut(source, lexemes));
            }
        }
        let tree = self
            .parser
            .parse(source, None)
            .ok_or_else(|| Error::NotParseable {
                line: 1,
                column: 1,
                what: "the parser gave no tree".into(),
            })?;
        let mut walker = Walker::new(source, self.language);
        walker.walk(&tree);
        Ok(walker.out)
    }

    fn parse(&mut self, source: &str) -> Result<Tree> {
        let tree = self
            .parser
            .parse(source, None)
            .ok_or_else(|| Error::NotParseable {
                line: 1,
                column: 1,
                what: "the parser gave no tree".into(),
            })?;
        let root = tree.root_node();
        if root.has_error() {
            return Err(first_error(root));
        }
        Ok(tree)
    }
}

/// The lexemes of a completed source that start inside `source`, the last
/// one cut at its end.
fn cut(source: &str, lexemes: Vec<Lexeme>) -> Vec<Lexeme> {
    let len = source.len();
    lexemes
        .into_iter()
        .filter(|l| (l.start as usize) < len)
        .map(|mut l| {
            if l.end as usize > len {
                l.end = len as u32;
                l.text = source.get(l.start as usize..len).unwrap_or("").to_string();
            }
            l
        })
        .collect()
}

/// Lexes the code before a cursor (or any source) leniently: see
/// [`Lexer::lex_lenient`].
pub fn lex_prefix(source: &str, language: Language) -> Result<Vec<Lexeme>> {
    Lexer::new(language)?.lex_lenient(source)
}

/// The lexemes of a repaired copy ([`typescript::repair`]) as lexemes of
/// the original: the inserted `;` dropped, the blanked variance keywords
/// put back, every text taken from the original.
fn restore(source: &str, lexemes: Vec<Lexeme>, repaired: &typescript::Repaired) -> Vec<Lexeme> {
    let mut out: Vec<Lexeme> = lexemes
        .into_iter()
        .filter(|l| !repaired.semicolons.contains(&(l.start as usize)))
        .map(|mut l| {
            l.text = source
                .get(l.start as usize..l.end as usize)
                .unwrap_or("")
                .to_string();
            l
        })
        .collect();
    for &(start, end) in &repaired.blanked {
        let before = source.get(..start).unwrap_or("");
        let line = before.matches('\n').count() as u32 + 1;
        let column = (start - before.rfind('\n').map_or(0, |p| p + 1)) as u32 + 1;
        out.push(Lexeme {
            text: source.get(start..end).unwrap_or("").to_string(),
            category: CodeCategory::Keyword,
            start: start as u32,
            end: end as u32,
            line,
            column,
        });
    }
    out.sort_by_key(|l| l.start);
    out
}

/// Lexes `source` as `language` (see the module docs for the categories).
pub fn lex(source: &str, language: Language) -> Result<Vec<Lexeme>> {
    Lexer::new(language)?.lex(source)
}

/// The [`Error::NotParseable`] naming the first error or missing node.
fn first_error(root: Node<'_>) -> Error {
    let mut found = None;
    scan(root, &mut |node| {
        if found.is_some() {
            return false;
        }
        if node.is_error() || node.is_missing() {
            found = Some(node);
            return false;
        }
        node.has_error()
    });
    let node = found.unwrap_or(root);
    let at = node.start_position();
    let what = if node.is_missing() {
        format!("missing {}", node.kind())
    } else {
        "syntax error".to_string()
    };
    Error::NotParseable {
        line: at.row as u32 + 1,
        column: at.column as u32 + 1,
        what,
    }
}

/// Visits the descendants of `root` in document order (not `root` itself);
/// `visit` returns whether to go into the node's children.
pub(crate) fn scan<'t>(root: Node<'t>, visit: &mut dyn FnMut(Node<'t>) -> bool) {
    let mut cursor = root.walk();
    if !cursor.goto_first_child() {
        return;
    }
    loop {
        let node = cursor.node();
        if visit(node) && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() || cursor.node().id() == root.id() {
                return;
            }
        }
    }
}

/// Names declared in one scope and the category a use of each gets.
pub(crate) type Table<'s> = HashMap<&'s str, CodeCategory>;

/// One ancestor of the node being visited.
pub(crate) struct Frame<'t> {
    /// The ancestor.
    pub node: Node<'t>,
    /// Its field name in its own parent.
    pub field: Option<&'static str>,
    /// Whether entering it pushed a scope.
    scope: bool,
    /// The kind of the child visited last (the previous sibling of the
    /// child being visited).
    last_child: Option<&'static str>,
}

/// What the language-specific rules see of a node being visited.
pub(crate) struct Site<'a, 't> {
    /// The node.
    pub node: Node<'t>,
    /// Its field name in its parent.
    pub field: Option<&'static str>,
    /// The kind of its previous sibling.
    pub prev: Option<&'static str>,
    /// Its ancestors, the parent last.
    pub frames: &'a [Frame<'t>],
}

impl<'t> Site<'_, 't> {
    /// The `n`th ancestor (0: the parent).
    pub fn ancestor(&self, n: usize) -> Option<&Frame<'t>> {
        self.frames
            .len()
            .checked_sub(n + 1)
            .map(|i| &self.frames[i])
    }

    /// The kind of the `n`th ancestor, `""` above the root.
    pub fn ancestor_kind(&self, n: usize) -> &'static str {
        self.ancestor(n).map(|f| f.node.kind()).unwrap_or("")
    }
}

/// The text of a node (empty if its range is not on character boundaries,
/// which tree-sitter never produces for a `&str` source).
pub(crate) fn text<'s>(source: &'s str, node: Node<'_>) -> &'s str {
    source.get(node.start_byte()..node.end_byte()).unwrap_or("")
}

struct Walker<'s> {
    source: &'s str,
    language: Language,
    out: Vec<Lexeme>,
    /// Innermost scope last.
    scopes: Vec<Table<'s>>,
    /// Names declared or imported anywhere in the file (Java's types).
    file: Table<'s>,
    /// `(template node id, lexeme index)` of the last template piece.
    template_tail: Option<(usize, usize)>,
}

impl<'s> Walker<'s> {
    fn new(source: &'s str, language: Language) -> Self {
        Self {
            source,
            language,
            out: Vec::new(),
            scopes: Vec::new(),
            file: Table::new(),
            template_tail: None,
        }
    }

    fn walk(&mut self, tree: &Tree) {
        let root = tree.root_node();
        if self.language == Language::Java {
            self.file = java::file_table(self.source, root);
        }
        let mut cursor = tree.walk();
        let mut frames: Vec<Frame<'_>> = Vec::new();
        loop {
            let node = cursor.node();
            let field = cursor.field_name();
            let prev = frames
                .last_mut()
                .and_then(|f| f.last_child.replace(node.kind()));
            let descend = self.visit(node, field, prev, &frames);
            if let Some(scope) = descend {
                if cursor.goto_first_child() {
                    frames.push(Frame {
                        node,
                        field,
                        scope,
                        last_child: None,
                    });
                    continue;
                }
                if scope {
                    self.scopes.pop();
                }
            }
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return;
                }
                if let Some(frame) = frames.pop() {
                    if frame.scope {
                        self.scopes.pop();
                    }
                }
            }
        }
    }

    /// Emits what `node` is (if a leaf or a literal) and says whether to go
    /// into its children: `Some(pushed a scope)`, or `None`.
    fn visit(
        &mut self,
        node: Node<'_>,
        field: Option<&'static str>,
        prev: Option<&'static str>,
        frames: &[Frame<'_>],
    ) -> Option<bool> {
        let kind = node.kind();
        let named = node.is_named();
        if named && is_comment(self.language, kind) {
            return None;
        }
        let parent = frames.last().map(|f| f.node);
        if let Some(p) = parent.filter(|p| is_template(p.kind())) {
            if !matches!(kind, "template_substitution" | "template_type") {
                self.template_piece(p.id(), node);
                return None;
            }
        }
        if named && is_template(kind) {
            return Some(false);
        }
        if named && is_literal(self.language, kind) {
            self.emit(node, CodeCategory::Literal);
            return None;
        }
        if node.child_count() == 0 {
            if node.start_byte() == node.end_byte() {
                return None;
            }
            let site = Site {
                node,
                field,
                prev,
                frames,
            };
            let category = self.leaf_category(&site);
            self.emit(node, category);
            return None;
        }
        let site = Site {
            node,
            field,
            prev,
            frames,
        };
        let scope = match self.language {
            Language::Java => java::scope(self.source, &site),
            Language::TypeScript => typescript::scope(self.source, &site),
        };
        match scope {
            Some(table) => {
                self.scopes.push(table);
                Some(true)
            }
            None => Some(false),
        }
    }

    fn leaf_category(&self, site: &Site<'_, '_>) -> CodeCategory {
        let node = site.node;
        let kind = node.kind();
        if node.is_named() {
            let rule = match self.language {
                Language::Java => java::identifier(self, site),
                Language::TypeScript => typescript::identifier(self, site),
            };
            if let Some(category) = rule {
                return category;
            }
        }
        let t = text(self.source, node);
        if kind == "underscore_pattern" || t.chars().any(char::is_alphabetic) {
            CodeCategory::Keyword
        } else {
            CodeCategory::Punctuation
        }
    }

    /// The category a use of `name` gets: innermost scope first, then the
    /// file's table.
    fn resolve(&self, name: &str) -> Option<CodeCategory> {
        self.scopes
            .iter()
            .rev()
            .find_map(|s| s.get(name))
            .or_else(|| self.file.get(name))
            .copied()
    }

    fn emit(&mut self, node: Node<'_>, category: CodeCategory) {
        let at = node.start_position();
        self.out.push(Lexeme {
            text: text(self.source, node).to_string(),
            category,
            start: node.start_byte() as u32,
            end: node.end_byte() as u32,
            line: at.row as u32 + 1,
            column: at.column as u32 + 1,
        });
    }

    /// A piece of a template string outside its substitutions: joined to
    /// the previous piece of the same template when they touch.
    fn template_piece(&mut self, template: usize, node: Node<'_>) {
        if node.start_byte() == node.end_byte() {
            return;
        }
        if let Some((id, index)) = self.template_tail {
            let last = index + 1 == self.out.len() && id == template;
            if let Some(lexeme) = self
                .out
                .get_mut(index)
                .filter(|l| last && l.end as usize == node.start_byte())
            {
                lexeme.end = node.end_byte() as u32;
                lexeme.text = self
                    .source
                    .get(lexeme.start as usize..lexeme.end as usize)
                    .unwrap_or("")
                    .to_string();
                return;
            }
        }
        self.emit(node, CodeCategory::Literal);
        self.template_tail = Some((template, self.out.len() - 1));
    }
}

/// A template string (`` `a${b}` ``) or template literal type; its text
/// outside substitutions is literal.
fn is_template(kind: &str) -> bool {
    matches!(kind, "template_string" | "template_literal_type")
}

fn is_comment(language: Language, kind: &str) -> bool {
    match language {
        Language::Java => matches!(kind, "line_comment" | "block_comment"),
        Language::TypeScript => matches!(kind, "comment" | "html_comment" | "hash_bang_line"),
    }
}

fn is_literal(language: Language, kind: &str) -> bool {
    match language {
        Language::Java => matches!(
            kind,
            "string_literal"
                | "character_literal"
                | "decimal_integer_literal"
                | "hex_integer_literal"
                | "octal_integer_literal"
                | "binary_integer_literal"
                | "decimal_floating_point_literal"
                | "hex_floating_point_literal"
                | "true"
                | "false"
                | "null_literal"
        ),
        Language::TypeScript => matches!(
            kind,
            "string" | "number" | "regex" | "true" | "false" | "null" | "undefined"
        ),
    }
}
