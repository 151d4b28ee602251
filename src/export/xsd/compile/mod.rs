//! `export::xsd::compile`: loading a schema: the XSD text read into a tree, then every global
//! element and named type compiled into the [`Schema`] model (used or not, so a construct the
//! validator does not support fails the load wherever it is). Named complex types get their
//! index before their content is compiled, so recursive types work; simple types may not
//! derive from themselves.

use std::collections::HashMap;

use super::lexical::Builtin;
use super::model::{ElementDecl, Schema, TypeId};
use super::simple::SimpleType;
use super::tree::{self, Name, Node};
use super::SchemaError;

mod definitions;

/// The namespace of XML Schema itself.
const XS: &str = "http://www.w3.org/2001/XMLSchema";

/// The type of a declaration whose type is being compiled; every one is replaced before
/// [`Schema::parse`] returns.
const PENDING: TypeId = TypeId::Simple(usize::MAX);

impl Schema {
    /// Loads the XSD `xsd`; anything it uses that this module does not implement is an error.
    pub fn parse(xsd: &str) -> std::result::Result<Schema, SchemaError> {
        let root = tree::parse(xsd.as_bytes()).map_err(|e| SchemaError::Xml {
            line: tree::line_of(xsd.as_bytes(), e.offset),
            message: e.message,
        })?;
        let mut c = Compiler {
            src: xsd.as_bytes(),
            qualified: false,
            types: HashMap::new(),
            element_nodes: HashMap::new(),
            ready: Vec::new(),
            simple_ids: HashMap::new(),
            complex_ids: HashMap::new(),
            builtins: HashMap::new(),
            deriving: Vec::new(),
            schema: Schema {
                target_namespace: None,
                globals: HashMap::new(),
                elements: Vec::new(),
                complex: Vec::new(),
                simple: Vec::new(),
            },
        };
        c.schema_element(&root)?;
        Ok(c.schema)
    }
}

struct Compiler<'a> {
    src: &'a [u8],
    /// `elementFormDefault="qualified"`: local elements are in the target namespace.
    qualified: bool,
    /// Named simple and complex types, not yet compiled.
    types: HashMap<Name, &'a Node>,
    element_nodes: HashMap<Name, &'a Node>,
    /// Per element declaration: whether its type is set (global ones are reserved first).
    ready: Vec<bool>,
    simple_ids: HashMap<Name, usize>,
    complex_ids: HashMap<Name, usize>,
    builtins: HashMap<Builtin, usize>,
    /// Simple types being compiled, to refuse a circular derivation.
    deriving: Vec<Name>,
    schema: Schema,
}

type Result<T> = std::result::Result<T, SchemaError>;

impl<'a> Compiler<'a> {
    fn line(&self, node: &Node) -> usize {
        tree::line_of(self.src, node.offset)
    }

    fn unsupported(&self, node: &Node, what: impl Into<String>) -> SchemaError {
        SchemaError::Unsupported {
            line: self.line(node),
            what: what.into(),
        }
    }

    fn invalid(&self, node: &Node, message: impl Into<String>) -> SchemaError {
        SchemaError::Invalid {
            line: self.line(node),
            message: message.into(),
        }
    }

    /// Refuses attributes outside `allowed` (and any qualified one) on `node`.
    fn only(&self, node: &Node, allowed: &[&str]) -> Result<()> {
        match node
            .attributes
            .iter()
            .find(|((ns, local), _)| ns.is_some() || !allowed.contains(&local.as_str()))
        {
            Some(((_, local), _)) => {
                Err(self.unsupported(node, format!("the attribute {local} on xs:{}", node.name.1)))
            }
            None => Ok(()),
        }
    }

    /// The XSD children of `node` but annotations; refuses text and foreign elements.
    fn children(&self, node: &'a Node) -> Result<Vec<&'a Node>> {
        if !node.text.trim().is_empty() {
            return Err(self.invalid(node, format!("text inside xs:{}", node.name.1)));
        }
        let mut out = Vec::new();
        for child in &node.children {
            if child.name.0.as_deref() != Some(XS) {
                return Err(self.unsupported(child, format!("the element {}", child.name.1)));
            }
            if child.name.1 != "annotation" {
                out.push(child);
            }
        }
        Ok(out)
    }

    fn required(&self, node: &'a Node, attribute: &str) -> Result<&'a str> {
        node.attribute(attribute)
            .ok_or_else(|| self.invalid(node, format!("xs:{} without {attribute}", node.name.1)))
    }

    /// A QName attribute value resolved against the namespaces in scope at `node`.
    fn qname(&self, node: &Node, value: &str) -> Result<Name> {
        let (prefix, local) = match value.split_once(':') {
            Some((p, l)) => (Some(p), l),
            None => (None, value),
        };
        match (node.namespace_of(prefix), prefix) {
            (None, Some(p)) => Err(self.invalid(node, format!("the prefix {p:?} is not declared"))),
            (ns, _) => Ok((ns, local.to_owned())),
        }
    }

    fn schema_element(&mut self, root: &'a Node) -> Result<()> {
        if root.name != (Some(XS.to_owned()), "schema".to_owned()) {
            return Err(self.invalid(root, "the root element is not xs:schema"));
        }
        self.only(
            root,
            &[
                "targetNamespace",
                "elementFormDefault",
                "attributeFormDefault",
                "version",
            ],
        )?;
        let target = root.attribute("targetNamespace").map(str::to_owned);
        self.schema.target_namespace = target.clone();
        self.qualified = match root.attribute("elementFormDefault") {
            Some("qualified") => true,
            None | Some("unqualified") => false,
            Some(other) => return Err(self.invalid(root, format!("elementFormDefault {other:?}"))),
        };
        if root
            .attribute("attributeFormDefault")
            .is_some_and(|f| f != "unqualified")
        {
            return Err(self.unsupported(root, "attributeFormDefault other than unqualified"));
        }
        let globals = self.children(root)?;
        for node in &globals {
            let kind = node.name.1.as_str();
            if !matches!(kind, "element" | "complexType" | "simpleType") {
                return Err(self.unsupported(node, format!("a global xs:{kind}")));
            }
            let name = (target.clone(), self.required(node, "name")?.to_owned());
            let duplicate = match kind {
                "element" => self.element_nodes.insert(name.clone(), node).is_some(),
                _ => self.types.insert(name.clone(), node).is_some(),
            };
            if duplicate {
                return Err(self.invalid(node, format!("a second global {kind} {}", name.1)));
            }
            if kind == "element" {
                self.schema
                    .globals
                    .insert(name.clone(), self.schema.elements.len());
                self.schema.elements.push(ElementDecl { name, ty: PENDING });
                self.ready.push(false);
            }
        }
        for node in globals {
            let name = (
                target.clone(),
                node.attribute("name").unwrap_or_default().to_owned(),
            );
            match node.name.1.as_str() {
                "element" => self.global_element(&name).map(drop)?,
                _ => self.named_type(node, &name).map(drop)?,
            }
        }
        Ok(())
    }

    /// The global element `name`, its type compiled on first use.
    fn global_element(&mut self, name: &Name) -> Result<usize> {
        let id = self.schema.globals[name];
        if !std::mem::replace(&mut self.ready[id], true) {
            let node = self.element_nodes[name];
            self.only(node, &["name", "type"])?;
            let ty = self.element_type(node, id)?;
            self.schema.elements[id].ty = ty;
        }
        Ok(id)
    }

    /// The type of the element declaration `node` (id `decl`): named or anonymous.
    fn element_type(&mut self, node: &'a Node, decl: usize) -> Result<TypeId> {
        let children = self.children(node)?;
        match (node.attribute("type"), children.as_slice()) {
            (Some(ty), []) => self.type_by_name(node, ty),
            (None, [anonymous]) if anonymous.name.1 == "complexType" => {
                self.only(anonymous, &["mixed"])?;
                let id = self.reserve_complex();
                self.schema.elements[decl].ty = TypeId::Complex(id);
                self.complex_type(anonymous, id)?;
                Ok(TypeId::Complex(id))
            }
            (None, [anonymous]) if anonymous.name.1 == "simpleType" => {
                self.only(anonymous, &[])?;
                let hint = format!("the type of {}", self.schema.elements[decl].name.1);
                Ok(TypeId::Simple(self.simple_type(anonymous, &hint)?))
            }
            (None, []) => Err(self.unsupported(node, "an element without a type (xs:anyType)")),
            (_, [.., other]) if !matches!(other.name.1.as_str(), "complexType" | "simpleType") => {
                Err(self.unsupported(other, format!("xs:{} in xs:element", other.name.1)))
            }
            _ => Err(self.invalid(node, "an element with more than one type")),
        }
    }

    /// The type `qname` names at `node`.
    fn type_by_name(&mut self, node: &Node, qname: &str) -> Result<TypeId> {
        let name = self.qname(node, qname)?;
        if name.0.as_deref() == Some(XS) {
            let builtin = Builtin::by_name(&name.1)
                .ok_or_else(|| self.unsupported(node, format!("the built-in type {qname}")))?;
            let simple = &mut self.schema.simple;
            let id = *self.builtins.entry(builtin).or_insert_with(|| {
                simple.push(SimpleType::builtin(builtin));
                simple.len() - 1
            });
            return Ok(TypeId::Simple(id));
        }
        match self.types.get(&name).copied() {
            Some(definition) => self.named_type(definition, &name),
            None => Err(self.invalid(node, format!("the type {qname} is not defined"))),
        }
    }

    /// The named type `definition` (`name`), compiled on first use.
    fn named_type(&mut self, definition: &'a Node, name: &Name) -> Result<TypeId> {
        if let Some(&id) = self.complex_ids.get(name) {
            return Ok(TypeId::Complex(id));
        }
        if let Some(&id) = self.simple_ids.get(name) {
            return Ok(TypeId::Simple(id));
        }
        if definition.name.1 == "complexType" {
            self.only(definition, &["name", "mixed"])?;
            let id = self.reserve_complex();
            self.complex_ids.insert(name.clone(), id);
            self.complex_type(definition, id)?;
            return Ok(TypeId::Complex(id));
        }
        if self.deriving.contains(name) {
            return Err(self.invalid(
                definition,
                format!("the type {} derives from itself", name.1),
            ));
        }
        self.only(definition, &["name"])?;
        self.deriving.push(name.clone());
        let id = self.simple_type(definition, &name.1)?;
        self.deriving.pop();
        self.simple_ids.insert(name.clone(), id);
        Ok(TypeId::Simple(id))
    }
}
