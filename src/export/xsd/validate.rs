//! `export::xsd::validate`: a document checked against a loaded [`Schema`]: the root must be a
//! global element; each element's attributes, text and children are checked against its type,
//! and every child the content model knows is checked in turn, so one pass reports every
//! violation, each with the path of the element or attribute.

use std::collections::HashMap;

use super::content::{self, Mismatch};
use super::model::{AttributeDecl, Content, Model, TypeId};
use super::simple::SimpleType;
use super::tree::{self, Name, Node};
use super::{Rule, Schema, Violation};

/// The namespace of `xsi:` attributes.
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

impl Schema {
    /// Validates the UTF-8 XML `document`: Ok, or every violation found, in document order
    /// (per element: attributes, content, then its children).
    pub fn validate(&self, document: &[u8]) -> Result<(), Vec<Violation>> {
        let root = tree::parse(document).map_err(|e| {
            let line = tree::line_of(document, e.offset);
            vec![violation(
                "/",
                Rule::NotWellFormed,
                format!("line {line}: {}", e.message),
            )]
        })?;
        let mut out = Vec::new();
        let path = format!("/{}", root.name.1);
        match self.globals.get(&root.name) {
            Some(&id) => self.element(&root, id, &path, &mut out),
            None => out.push(match self.globals.keys().find(|n| n.1 == root.name.1) {
                Some(declared) => {
                    violation(&path, Rule::Namespace, in_namespace(&root.name, declared))
                }
                None => {
                    let message = format!(
                        "the root element {} is not declared by the schema",
                        root.name.1
                    );
                    violation(&path, Rule::UnexpectedElement, message)
                }
            }),
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }

    fn element(&self, node: &Node, decl: usize, path: &str, out: &mut Vec<Violation>) {
        let (attributes, content) = match self.elements[decl].ty {
            TypeId::Simple(s) => (&[][..], &Content::Simple(s)),
            TypeId::Complex(c) => (&self.complex[c].attributes[..], &self.complex[c].content),
        };
        self.attributes(node, attributes, path, out);
        match content {
            Content::Simple(s) => self.text(node, &self.simple[*s], path, out),
            Content::Elements(model) => self.children(node, model, path, out),
            Content::Empty => {
                if let Some(child) = node.children.first() {
                    let message = format!(
                        "element {} is not allowed: {} has empty content",
                        child.name.1, node.name.1
                    );
                    out.push(violation(
                        &format!("{path}/{}", child.name.1),
                        Rule::UnexpectedElement,
                        message,
                    ));
                } else if !node.text.trim().is_empty() {
                    out.push(violation(
                        path,
                        Rule::UnexpectedText,
                        format!("text in {}, which has empty content", node.name.1),
                    ));
                }
            }
        }
    }

    /// The text of an element of simple type (or simple content).
    fn text(&self, node: &Node, ty: &SimpleType, path: &str, out: &mut Vec<Violation>) {
        if let Some(child) = node.children.first() {
            let message = format!(
                "element {} is not allowed: {} holds a value of a simple type",
                child.name.1, node.name.1
            );
            out.push(violation(
                &format!("{path}/{}", child.name.1),
                Rule::UnexpectedElement,
                message,
            ));
        } else if let Err((rule, message)) = ty.check(&node.text) {
            out.push(violation(path, rule, message));
        }
    }

    fn attributes(
        &self,
        node: &Node,
        declared: &[AttributeDecl],
        path: &str,
        out: &mut Vec<Violation>,
    ) {
        for ((ns, local), value) in &node.attributes {
            let at = format!("{path}/@{local}");
            match (ns.as_deref(), declared.iter().find(|d| &d.name == local)) {
                (Some(XSI), _)
                    if matches!(
                        local.as_str(),
                        "schemaLocation" | "noNamespaceSchemaLocation"
                    ) => {}
                (Some(XSI), _) => out.push(violation(
                    &at,
                    Rule::Unsupported,
                    format!("xsi:{local} is not supported"),
                )),
                (None, Some(d)) => {
                    if let Err((rule, message)) = self.simple[d.ty].check(value) {
                        out.push(violation(&at, rule, message));
                    }
                }
                (Some(ns), Some(_)) => {
                    out.push(violation(
                        &at,
                        Rule::Namespace,
                        format!(
                            "attribute {local} is in namespace {ns}; the schema has it in none"
                        ),
                    ));
                }
                (_, None) => out.push(violation(
                    &at,
                    Rule::UnexpectedAttribute,
                    format!("{} has no attribute {local}", node.name.1),
                )),
            }
        }
        for d in declared.iter().filter(|d| d.required) {
            if !node
                .attributes
                .iter()
                .any(|((ns, local), _)| ns.is_none() && local == &d.name)
            {
                out.push(violation(
                    path,
                    Rule::MissingAttribute,
                    format!("the required attribute {} is missing", d.name),
                ));
            }
        }
    }

    fn children(&self, node: &Node, model: &Model, path: &str, out: &mut Vec<Violation>) {
        if !node.text.trim().is_empty() {
            out.push(violation(
                path,
                Rule::UnexpectedText,
                format!("text in {}, which holds only elements", node.name.1),
            ));
        }
        let names: Vec<&Name> = node.children.iter().map(|c| &c.name).collect();
        // Paths show local names, so positions count local names too.
        let mut totals: HashMap<&str, usize> = HashMap::new();
        for child in &node.children {
            *totals.entry(&child.name.1).or_default() += 1;
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let paths: Vec<String> = node
            .children
            .iter()
            .map(|child| {
                let local = child.name.1.as_str();
                let position = seen.entry(local).or_default();
                *position += 1;
                let repeats = totals[local] > 1
                    || model.names.iter().any(|(n, e)| n.1 == local && e.repeats());
                match repeats {
                    true => format!("{path}/{local}[{position}]"),
                    false => format!("{path}/{local}"),
                }
            })
            .collect();
        if let Err(mismatch) = content::check(self, model, &names) {
            let list = |names: &[Name]| match names {
                [one] => one.1.clone(),
                many => format!(
                    "one of {}",
                    many.iter()
                        .map(|n| n.1.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            out.push(match mismatch {
                Mismatch::Missing { expected, before } => {
                    let place = match before {
                        Some(i) => format!("before {}", node.children[i].name.1),
                        None => format!("at the end of {}", node.name.1),
                    };
                    violation(
                        path,
                        Rule::MissingElement,
                        format!("missing {} {place}", list(&expected)),
                    )
                }
                Mismatch::Unknown { index } => {
                    let message = format!(
                        "element {} is not allowed in {}",
                        names[index].1, node.name.1
                    );
                    violation(&paths[index], Rule::UnexpectedElement, message)
                }
                Mismatch::Namespace { index, expected } => violation(
                    &paths[index],
                    Rule::Namespace,
                    in_namespace(names[index], &expected),
                ),
                Mismatch::TooMany { index, max } => {
                    let max = max.map_or("the allowed number".to_owned(), |m| m.to_string());
                    let message = format!("more than {max} {} in {}", names[index].1, node.name.1);
                    violation(&paths[index], Rule::TooManyOccurrences, message)
                }
                Mismatch::Complete { index } => {
                    let message = format!(
                        "element {} cannot follow: {} is complete",
                        names[index].1, node.name.1
                    );
                    violation(&paths[index], Rule::UnexpectedElement, message)
                }
                Mismatch::OutOfOrder { index, expected } => {
                    let message = format!(
                        "element {} is out of order: expected {} here",
                        names[index].1,
                        list(&expected)
                    );
                    violation(&paths[index], Rule::OutOfOrder, message)
                }
            });
        }
        for (child, child_path) in node.children.iter().zip(&paths) {
            if let Some(entry) = model.names.get(&child.name) {
                self.element(child, entry.element, child_path, out);
            }
        }
    }
}

fn violation(path: &str, rule: Rule, message: String) -> Violation {
    Violation {
        path: path.to_owned(),
        rule,
        message,
    }
}

/// "element X is in namespace A; the schema has it in B".
fn in_namespace(found: &Name, declared: &Name) -> String {
    let ns = |n: &Name| n.0.clone().unwrap_or_else(|| "no namespace".to_owned());
    format!(
        "element {} is in {}; the schema has it in {}",
        found.1,
        ns(found),
        ns(declared)
    )
}
