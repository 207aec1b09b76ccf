//! The TypeScript rules of [`super`]: identifier categories from the node's
//! kind and its parent, and the scopes (the module and every function).

use tree_sitter::Node;

use super::{scan, text, Site, Table, Walker};
use crate::category::CodeCategory::{self, *};

/// Nodes with parameters and locals of their own (the module included).
const FUNCTION_LIKE: [&str; 9] = [
    "program",
    "function_declaration",
    "generator_function_declaration",
    "function_expression",
    "generator_function",
    "arrow_function",
    "method_definition",
    "class_static_block",
    "internal_module",
];

/// Destructuring pattern nodes: a name bound inside one is bound by the
/// declaration or parameter that holds the pattern.
const PATTERNS: [&str; 6] = [
    "object_pattern",
    "array_pattern",
    "pair_pattern",
    "assignment_pattern",
    "object_assignment_pattern",
    "rest_pattern",
];

/// The category of an identifier leaf, `None` for other named leaves.
pub(super) fn identifier(walker: &Walker<'_>, site: &Site<'_, '_>) -> Option<CodeCategory> {
    let node = site.node;
    let parent = site.ancestor_kind(0);
    let field = site.field.unwrap_or("");
    let resolve = || walker.resolve(text(walker.source, node));
    let category = match node.kind() {
        "type_identifier" => TypeName,
        "statement_identifier" => OtherIdentifier,
        "property_identifier" | "private_property_identifier" => match (parent, field) {
            ("member_expression", "property") => {
                let member = site.ancestor(0).and_then(|f| f.field);
                match (site.ancestor_kind(1), member) {
                    ("call_expression", Some("function")) => MethodName,
                    ("new_expression", Some("constructor")) => TypeName,
                    _ => FieldName,
                }
            }
            ("method_definition" | "method_signature" | "abstract_method_signature", "name") => {
                MethodName
            }
            ("nested_identifier", _) => PackageName,
            _ => FieldName,
        },
        "shorthand_property_identifier" => resolve().unwrap_or(FieldName),
        "shorthand_property_identifier_pattern" => pattern_owner(site).unwrap_or(Variable),
        "identifier" => match (parent, field) {
            (
                "function_declaration"
                | "generator_function_declaration"
                | "function_expression"
                | "generator_function"
                | "function_signature",
                "name",
            ) => MethodName,
            ("call_expression", "function") | ("decorator", _) => MethodName,
            ("new_expression", "constructor") => TypeName,
            ("enum_declaration", "name") => TypeName,
            ("required_parameter" | "optional_parameter", "pattern" | "name")
            | ("arrow_function", "parameter")
            | ("catch_clause", "parameter") => Parameter,
            ("variable_declarator", "name") => Variable,
            ("for_in_statement", "left") => {
                let declares = site
                    .ancestor(0)
                    .is_some_and(|f| f.node.child_by_field_name("kind").is_some());
                if declares {
                    Variable
                } else {
                    resolve().unwrap_or(OtherIdentifier)
                }
            }
            ("internal_module" | "module", "name")
            | ("namespace_import", _)
            | ("nested_identifier", _)
            | ("nested_type_identifier", "module") => PackageName,
            ("import_alias", _) if site.prev == Some("=") => PackageName,
            ("import_specifier" | "export_specifier" | "import_clause" | "import_alias", _) => {
                OtherIdentifier
            }
            (p, f) if PATTERNS.contains(&p) && f != "right" && f != "key" => pattern_owner(site)
                .or_else(resolve)
                .unwrap_or(OtherIdentifier),
            _ => resolve().unwrap_or(OtherIdentifier),
        },
        _ => return None,
    };
    Some(category)
}

/// What binds a name inside a destructuring pattern: a parameter or `catch`
/// clause (`parameter`), a variable declarator or `for .. of` (`variable`);
/// `None` for a destructuring assignment.
fn pattern_owner(site: &Site<'_, '_>) -> Option<CodeCategory> {
    let mut n = 0;
    while PATTERNS.contains(&site.ancestor_kind(n)) {
        n += 1;
    }
    match site.ancestor_kind(n) {
        "required_parameter" | "optional_parameter" | "catch_clause" => Some(Parameter),
        "variable_declarator" | "for_in_statement" => Some(Variable),
        _ => None,
    }
}

/// The scope a function-like node opens: its parameters, then the names
/// its body declares (not those of nested functions or classes).
pub(super) fn scope<'s>(source: &'s str, site: &Site<'_, '_>) -> Option<Table<'s>> {
    let node = site.node;
    if !FUNCTION_LIKE.contains(&node.kind()) {
        return None;
    }
    let mut table = Table::new();
    if let Some(p) = node.child_by_field_name("parameter") {
        bind(source, p, Parameter, &mut table);
    }
    if let Some(list) = node.child_by_field_name("parameters") {
        let mut cursor = list.walk();
        for p in list.named_children(&mut cursor) {
            if matches!(p.kind(), "required_parameter" | "optional_parameter") {
                if let Some(pattern) = p
                    .child_by_field_name("pattern")
                    .or_else(|| p.child_by_field_name("name"))
                {
                    bind(source, pattern, Parameter, &mut table);
                }
            }
        }
    }
    let body = if node.kind() == "internal_module" {
        node.child_by_field_name("body")
    } else {
        Some(node)
    };
    if let Some(body) = body {
        declarations(source, body, &mut table);
    }
    Some(table)
}

/// The names a binding pattern binds, as `category` (first binding wins).
fn bind<'s>(source: &'s str, pattern: Node<'_>, category: CodeCategory, table: &mut Table<'s>) {
    match pattern.kind() {
        "identifier" | "shorthand_property_identifier_pattern" => {
            table.entry(text(source, pattern)).or_insert(category);
        }
        "object_pattern" | "array_pattern" | "rest_pattern" => {
            let mut cursor = pattern.walk();
            let parts: Vec<Node<'_>> = pattern.named_children(&mut cursor).collect();
            for part in parts {
                bind(source, part, category, table);
            }
        }
        "pair_pattern" => {
            if let Some(value) = pattern.child_by_field_name("value") {
                bind(source, value, category, table);
            }
        }
        "assignment_pattern" | "object_assignment_pattern" => {
            if let Some(left) = pattern.child_by_field_name("left") {
                bind(source, left, category, table);
            }
        }
        _ => {}
    }
}

/// Adds the declarations below `root` (not inside nested functions, classes
/// or namespaces, whose names are added but not their insides).
fn declarations<'s>(source: &'s str, root: Node<'_>, table: &mut Table<'s>) {
    scan(root, &mut |n| {
        let kind = n.kind();
        let name = n.child_by_field_name("name");
        match kind {
            "variable_declarator" => {
                if let Some(name) = name {
                    bind(source, name, Variable, table);
                }
            }
            "catch_clause" => {
                if let Some(p) = n.child_by_field_name("parameter") {
                    bind(source, p, Parameter, table);
                }
            }
            "for_in_statement" if n.child_by_field_name("kind").is_some() => {
                if let Some(left) = n.child_by_field_name("left") {
                    bind(source, left, Variable, table);
                }
            }
            "namespace_import" => {
                let mut cursor = n.walk();
                let id = n
                    .named_children(&mut cursor)
                    .find(|c| c.kind() == "identifier");
                if let Some(id) = id {
                    table.entry(text(source, id)).or_insert(PackageName);
                }
                return false;
            }
            "function_declaration" | "generator_function_declaration" => {
                if let Some(name) = name {
                    table.entry(text(source, name)).or_insert(MethodName);
                }
                return false;
            }
            "class_declaration" | "abstract_class_declaration" | "enum_declaration" => {
                if let Some(name) = name {
                    table.entry(text(source, name)).or_insert(TypeName);
                }
                return false;
            }
            "internal_module" | "module" => {
                if let Some(name) = name.filter(|x| x.kind() == "identifier") {
                    table.entry(text(source, name)).or_insert(PackageName);
                }
                return false;
            }
            k if FUNCTION_LIKE.contains(&k) || k == "class_body" || k == "class" => return false,
            _ => {}
        }
        true
    });
}

/// A copy of a source with two gaps of the TypeScript grammar (0.23)
/// worked around, byte for byte the same length as the original so every
/// offset, line and column stays valid.
pub(super) struct Repaired {
    /// The repaired text.
    pub text: String,
    /// Byte ranges of variance annotations (`in`, `out`) blanked out; they
    /// are keywords of the original.
    pub blanked: Vec<(usize, usize)>,
    /// Byte offsets where a whitespace character became `;`.
    pub semicolons: Vec<usize>,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The word (identifier characters) ending just before `end`.
fn word_before(bytes: &[u8], end: usize) -> (usize, &[u8]) {
    let mut start = end;
    while start > 0 && is_ident_byte(bytes[start - 1]) {
        start -= 1;
    }
    (start, &bytes[start..end])
}

/// Works around what `tree-sitter-typescript` 0.23 cannot parse, for a
/// second try at a file that failed:
///
/// - variance annotations on type parameters (`interface Brand<in out K>`,
///   TypeScript 4.7): in the type parameter list of an `interface`,
///   `class` or `type` declaration, each `in` or `out` before a parameter
///   name is blanked with spaces;
/// - a call signature that starts a line in an object type after a member
///   without `;` (`<A>(self: A): B` below `(f: F): (self: A) => B`, the
///   overloads of `dual`): the first indentation space of such a line
///   becomes `;` when the previous line of code ends like a type (a name,
///   `>`, `)`, `]`) and the line starts with `<` or `(`;
/// - an escaped backtick in a template literal type (`` `a \`b\`` ``):
///   every escaped backtick of the file becomes two spaces (the lexemes'
///   text comes from the original, so a literal keeps its escapes).
///
/// `None` when neither applies.
pub(super) fn repair(source: &str) -> Option<Repaired> {
    let mut bytes = source.as_bytes().to_vec();
    let mut blanked = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        // `<` right after `interface|class|type Name` (spaces allowed).
        let mut j = i;
        while j > 0 && bytes[j - 1].is_ascii_whitespace() {
            j -= 1;
        }
        let (name_start, name) = word_before(&bytes, j);
        let mut k = name_start;
        while k > 0 && bytes[k - 1].is_ascii_whitespace() {
            k -= 1;
        }
        let (kw_start, keyword) = word_before(&bytes, k);
        let declares = !name.is_empty()
            && k < name_start
            && matches!(keyword, b"interface" | b"class" | b"type")
            && (kw_start == 0 || !is_ident_byte(bytes[kw_start - 1]));
        i += 1;
        if !declares {
            continue;
        }
        let mut depth = 1;
        let mut at_parameter = true;
        while i < bytes.len() && depth > 0 {
            let b = bytes[i];
            if at_parameter && b.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            if at_parameter && bytes[i..].starts_with(b"/*") {
                i = find(&bytes[i..], b"*/").map_or(bytes.len(), |p| i + p + 2);
                continue;
            }
            if at_parameter && bytes[i..].starts_with(b"//") {
                i = find(&bytes[i..], b"\n").map_or(bytes.len(), |p| i + p + 1);
                continue;
            }
            if at_parameter && depth == 1 {
                let (start, word) = {
                    let mut end = i;
                    while end < bytes.len() && is_ident_byte(bytes[end]) {
                        end += 1;
                    }
                    (i, &bytes[i..end])
                };
                let end = start + word.len();
                let followed = end < bytes.len() && bytes[end].is_ascii_whitespace();
                if (word == b"in" || word == b"out") && followed {
                    let mut next = end;
                    while next < bytes.len() && bytes[next].is_ascii_whitespace() {
                        next += 1;
                    }
                    if next < bytes.len() && is_ident_byte(bytes[next]) {
                        bytes[start..end].fill(b' ');
                        blanked.push((start, end));
                        i = end;
                        continue;
                    }
                }
            }
            at_parameter = false;
            match b {
                b'<' => depth += 1,
                b'>' if i > 0 && bytes[i - 1] != b'=' => depth -= 1,
                b',' if depth == 1 => at_parameter = true,
                _ => {}
            }
            i += 1;
        }
    }
    let semicolons = signature_semicolons(&mut bytes);
    let escapes = blank_escaped_backticks(&mut bytes);
    if blanked.is_empty() && semicolons.is_empty() && escapes == 0 {
        return None;
    }
    let text = String::from_utf8(bytes).ok()?;
    Some(Repaired {
        text,
        blanked,
        semicolons,
    })
}

/// The third repair of [`repair`]: every escaped backtick becomes two
/// spaces; returns how many.
fn blank_escaped_backticks(bytes: &mut [u8]) -> usize {
    let mut count = 0;
    let mut backslashes = 0;
    for i in 0..bytes.len() {
        match bytes[i] {
            b'\\' => backslashes += 1,
            b'`' if backslashes % 2 == 1 => {
                bytes[i - 1] = b' ';
                bytes[i] = b' ';
                count += 1;
                backslashes = 0;
            }
            _ => backslashes = 0,
        }
    }
    count
}

/// The second repair of [`repair`]; returns where `;` was put.
fn signature_semicolons(bytes: &mut [u8]) -> Vec<usize> {
    let mut out = Vec::new();
    // The last byte of the previous line of code (comments and blank lines
    // skipped), if it ended like a type.
    let mut previous_end = false;
    let mut in_block_comment = false;
    let mut line_start = 0;
    while line_start < bytes.len() {
        let line_end = bytes[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| line_start + p);
        let line = &bytes[line_start..line_end];
        let indent = line.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let code = &line[indent..];
        let was_in_comment = in_block_comment;
        if let Some(open) = find(code, b"/*") {
            in_block_comment = find(&code[open..], b"*/").is_none();
        } else if in_block_comment && find(code, b"*/").is_some() {
            in_block_comment = false;
        }
        let comment = was_in_comment || code.starts_with(b"/*") || code.starts_with(b"//");
        if code.is_empty() || comment {
            line_start = line_end + 1;
            continue;
        }
        let starts_signature = looks_like_signature(code);
        let after_type = previous_end;
        previous_end = ends_like_type(code.trim_ascii_end());
        if starts_signature && after_type && indent > 0 {
            bytes[line_start] = b';';
            out.push(line_start);
        }
        line_start = line_end + 1;
    }
    out
}

/// Whether a line of code ends the way a member's type can end: a name
/// that is not a keyword expecting more, `>` that is not `=>`, `)`, `]`.
fn ends_like_type(line: &[u8]) -> bool {
    match line.last() {
        Some(b')' | b']') => true,
        Some(b'>') => !line.ends_with(b"=>"),
        Some(&b) if is_ident_byte(b) => {
            let (_, word) = word_before(line, line.len());
            !matches!(
                word,
                b"extends"
                    | b"as"
                    | b"is"
                    | b"keyof"
                    | b"typeof"
                    | b"in"
                    | b"of"
                    | b"return"
                    | b"new"
                    | b"await"
                    | b"yield"
                    | b"case"
                    | b"throw"
                    | b"satisfies"
                    | b"readonly"
                    | b"infer"
                    | b"unique"
                    | b"else"
                    | b"do"
            )
        }
        _ => false,
    }
}

/// Whether a line starts like a call signature: `<T` or a lone `<` (type
/// parameters), or
/// `(` then `)`, `...` or a parameter name followed by `:`, `?`, `,` or `)`.
fn looks_like_signature(code: &[u8]) -> bool {
    match code {
        [b'<'] => true,
        [b'<', next, ..] => is_ident_byte(*next),
        [b'(', rest @ ..] => {
            if rest.starts_with(b")") || rest.starts_with(b"...") {
                return true;
            }
            let name = rest.iter().take_while(|&&b| is_ident_byte(b)).count();
            name > 0 && matches!(rest.get(name), Some(b':' | b'?' | b',' | b')'))
        }
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
