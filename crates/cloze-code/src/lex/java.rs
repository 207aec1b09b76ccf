//! The Java rules of [`super`]: identifier categories from the node's kind
//! and its parent, the scopes (method-like nodes and class bodies), and the
//! file's table of declared and imported types.

use tree_sitter::Node;

use super::{scan, text, Site, Table, Walker};
use crate::category::CodeCategory::{self, *};

/// Nodes whose names are types.
const TYPE_DECLARATIONS: [&str; 5] = [
    "class_declaration",
    "interface_declaration",
    "enum_declaration",
    "record_declaration",
    "annotation_type_declaration",
];

/// Nodes holding members of a type.
const BODIES: [&str; 5] = [
    "class_body",
    "interface_body",
    "enum_body",
    "enum_body_declarations",
    "annotation_type_body",
];

/// Nodes with parameters and locals of their own.
const METHOD_LIKE: [&str; 5] = [
    "method_declaration",
    "constructor_declaration",
    "compact_constructor_declaration",
    "lambda_expression",
    "static_initializer",
];

/// The category of an identifier leaf, `None` for other named leaves.
pub(super) fn identifier(walker: &Walker<'_>, site: &Site<'_, '_>) -> Option<CodeCategory> {
    let node = site.node;
    match node.kind() {
        "type_identifier" => return Some(TypeName),
        "identifier" => {}
        _ => return None,
    }
    let parent = site.ancestor_kind(0);
    let field = site.field.unwrap_or("");
    let category = match (parent, field) {
        (p, "name")
            if TYPE_DECLARATIONS.contains(&p)
                || p == "constructor_declaration"
                || p == "compact_constructor_declaration" =>
        {
            TypeName
        }
        (
            "method_declaration" | "method_invocation" | "annotation_type_element_declaration",
            "name",
        ) => MethodName,
        ("element_value_pair", "key") => MethodName,
        ("method_reference", _) if matches!(site.prev, Some("::" | "type_arguments")) => MethodName,
        ("formal_parameter", "name") => {
            if site.ancestor_kind(2) == "record_declaration" {
                FieldName
            } else {
                Parameter
            }
        }
        ("catch_formal_parameter", "name")
        | ("inferred_parameters", _)
        | ("lambda_expression", "parameters") => Parameter,
        ("variable_declarator", "name") => match site.ancestor_kind(1) {
            "field_declaration" | "constant_declaration" => FieldName,
            "spread_parameter" => Parameter,
            _ => Variable,
        },
        ("resource" | "enhanced_for_statement" | "instanceof_expression", "name") => Variable,
        ("record_pattern_component" | "type_pattern", _) => Variable,
        ("enum_constant", "name") | ("field_access", "field") => FieldName,
        ("labeled_statement" | "break_statement" | "continue_statement", _) => OtherIdentifier,
        ("annotation" | "marker_annotation", "name") => TypeName,
        ("scoped_identifier", _) => scoped(site),
        (
            "package_declaration"
            | "module_declaration"
            | "requires_module_directive"
            | "exports_module_directive"
            | "opens_module_directive",
            _,
        ) => PackageName,
        ("uses_module_directive" | "provides_module_directive", _) => TypeName,
        // `import Foo;`: a type of the unnamed package.
        ("import_declaration", _) => TypeName,
        _ => walker
            .resolve(text(walker.source, node))
            .unwrap_or(OtherIdentifier),
    };
    Some(category)
}

/// A segment of a dotted name `a.b.c` (nested `scoped_identifier`s): what
/// it is depends on where the whole name stands and how far from its end
/// the segment is.
fn scoped(site: &Site<'_, '_>) -> CodeCategory {
    // Climb to the outermost scoped_identifier, counting them.
    let mut chain = 0;
    while site.ancestor_kind(chain) == "scoped_identifier" {
        chain += 1;
    }
    // The first segment is the `scope` of the innermost node; every other
    // segment is the `name` of one node of the chain.
    let from_end = if site.field == Some("name") {
        chain - 1
    } else {
        chain
    };
    let last = from_end == 0;
    let Some(context) = site.ancestor(chain) else {
        return if last { OtherIdentifier } else { PackageName };
    };
    match context.node.kind() {
        "package_declaration"
        | "module_declaration"
        | "requires_module_directive"
        | "exports_module_directive"
        | "opens_module_directive" => PackageName,
        "import_declaration" => {
            let (is_static, star) = import_shape(context.node);
            match (is_static, star, from_end) {
                (false, false, 0) | (true, true, 0) | (true, false, 1) => TypeName,
                (true, false, 0) => OtherIdentifier,
                _ => PackageName,
            }
        }
        "annotation"
        | "marker_annotation"
        | "uses_module_directive"
        | "provides_module_directive" => {
            if last {
                TypeName
            } else {
                PackageName
            }
        }
        _ if last => OtherIdentifier,
        _ => PackageName,
    }
}

/// Whether an import declaration is `static` and whether it ends in `.*`.
fn import_shape(import: Node<'_>) -> (bool, bool) {
    let mut cursor = import.walk();
    let mut shape = (false, false);
    for child in import.children(&mut cursor) {
        match child.kind() {
            "static" => shape.0 = true,
            "asterisk" => shape.1 = true,
            _ => {}
        }
    }
    shape
}

/// The types declared anywhere outside method bodies, and the types
/// imported by a single-type import, as `type_name`.
pub(super) fn file_table<'s>(source: &'s str, root: Node<'_>) -> Table<'s> {
    let mut table = Table::new();
    scan(root, &mut |node| {
        let kind = node.kind();
        if TYPE_DECLARATIONS.contains(&kind) {
            if let Some(name) = node.child_by_field_name("name") {
                table.insert(text(source, name), TypeName);
            }
            return true;
        }
        if kind == "import_declaration" {
            if import_shape(node) == (false, false) {
                let mut cursor = node.walk();
                let named = node
                    .named_children(&mut cursor)
                    .find(|c| matches!(c.kind(), "scoped_identifier" | "identifier"));
                let last = named.map(|n| n.child_by_field_name("name").unwrap_or(n));
                if let Some(last) = last {
                    table.insert(text(source, last), TypeName);
                }
            }
            return false;
        }
        BODIES.contains(&kind)
    });
    table
}

/// The scope a node opens, if it opens one: a type body's fields, or a
/// method-like node's parameters and locals.
pub(super) fn scope<'s>(source: &'s str, site: &Site<'_, '_>) -> Option<Table<'s>> {
    let node = site.node;
    let kind = node.kind();
    if BODIES.contains(&kind) && kind != "enum_body_declarations" {
        return Some(fields(source, node, site));
    }
    // An instance initializer block.
    if kind == "block" && BODIES.contains(&site.ancestor_kind(0)) {
        return Some(locals(source, node, Table::new()));
    }
    if !METHOD_LIKE.contains(&kind) {
        return None;
    }
    let mut table = Table::new();
    match node.child_by_field_name("parameters") {
        Some(p) if p.kind() == "identifier" => {
            table.insert(text(source, p), Parameter);
        }
        Some(p) => parameters(source, p, &mut table),
        None => {}
    }
    if kind == "compact_constructor_declaration" {
        // Its parameters are the record's components: body -> record.
        if let Some(record) = site
            .ancestor(1)
            .filter(|f| f.node.kind() == "record_declaration")
        {
            if let Some(p) = record.node.child_by_field_name("parameters") {
                parameters(source, p, &mut table);
            }
        }
    }
    Some(locals(source, node, table))
}

/// The names declared by `formal_parameters` or `inferred_parameters`.
fn parameters<'s>(source: &'s str, list: Node<'_>, table: &mut Table<'s>) {
    let mut cursor = list.walk();
    for p in list.named_children(&mut cursor) {
        let name = match p.kind() {
            "formal_parameter" => p.child_by_field_name("name"),
            "spread_parameter" => {
                let mut c = p.walk();
                let declarator = p
                    .named_children(&mut c)
                    .find(|n| n.kind() == "variable_declarator");
                declarator.and_then(|d| d.child_by_field_name("name"))
            }
            "identifier" => Some(p),
            _ => None,
        };
        if let Some(name) = name {
            table.insert(text(source, name), Parameter);
        }
    }
}

/// `table` with the locals declared in `node`'s subtree added (not those
/// of nested lambdas, methods or classes).
fn locals<'s>(source: &'s str, node: Node<'_>, mut table: Table<'s>) -> Table<'s> {
    scan(node, &mut |n| {
        let kind = n.kind();
        let mut declare = |name: Option<Node<'_>>, category| {
            if let Some(name) = name.filter(|x| x.kind() == "identifier") {
                table.entry(text(source, name)).or_insert(category);
            }
        };
        match kind {
            "variable_declarator" => declare(n.child_by_field_name("name"), Variable),
            "resource" | "enhanced_for_statement" | "instanceof_expression" => {
                declare(n.child_by_field_name("name"), Variable)
            }
            "catch_formal_parameter" => declare(n.child_by_field_name("name"), Parameter),
            "record_pattern_component" | "type_pattern" => {
                let mut c = n.walk();
                let last = n.named_children(&mut c).last();
                declare(last, Variable);
            }
            k if TYPE_DECLARATIONS.contains(&k) => {
                declare(n.child_by_field_name("name"), TypeName);
                return false;
            }
            k if METHOD_LIKE.contains(&k) || BODIES.contains(&k) => return false,
            _ => {}
        }
        true
    });
    table
}

/// The fields a type body declares: field and constant declarators, enum
/// constants, and a record's components.
fn fields<'s>(source: &'s str, body: Node<'_>, site: &Site<'_, '_>) -> Table<'s> {
    let mut table = Table::new();
    let add_members = |list: Node<'_>, table: &mut Table<'s>| {
        let mut cursor = list.walk();
        for member in list.named_children(&mut cursor) {
            match member.kind() {
                "field_declaration" | "constant_declaration" => {
                    let mut c = member.walk();
                    for d in member.children_by_field_name("declarator", &mut c) {
                        if let Some(name) = d.child_by_field_name("name") {
                            table.insert(text(source, name), FieldName);
                        }
                    }
                }
                "enum_constant" => {
                    if let Some(name) = member.child_by_field_name("name") {
                        table.insert(text(source, name), FieldName);
                    }
                }
                _ => {}
            }
        }
    };
    add_members(body, &mut table);
    if body.kind() == "enum_body" {
        let mut cursor = body.walk();
        let decls: Vec<Node<'_>> = body
            .named_children(&mut cursor)
            .filter(|n| n.kind() == "enum_body_declarations")
            .collect();
        for d in decls {
            add_members(d, &mut table);
        }
    }
    if let Some(record) = site
        .ancestor(0)
        .filter(|f| f.node.kind() == "record_declaration")
    {
        if let Some(p) = record.node.child_by_field_name("parameters") {
            let mut components = Table::new();
            parameters(source, p, &mut components);
            for name in components.into_keys() {
                table.insert(name, FieldName);
            }
        }
    }
    table
}
