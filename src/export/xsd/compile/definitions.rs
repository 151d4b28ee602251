//! `export::xsd::compile::definitions`: type definitions as the schema writes them: simple
//! types (a restriction with facets), complex types (a content model, simple content, or
//! nothing, plus attributes), attributes, and content models of elements, sequences and
//! choices with their occurrence bounds.

use std::collections::HashMap;

use super::{Compiler, Result, PENDING};
use crate::export::xsd::model::{AttributeDecl, ComplexType, Content, ElementDecl, Entry};
use crate::export::xsd::model::{Model, Particle, Term, TypeId};
use crate::export::xsd::simple::{Facet, SimpleType};
use crate::export::xsd::tree::{Name, Node};
use crate::export::xsd::Refusal;

impl<'a> Compiler<'a> {
    /// An `xs:simpleType`: one `xs:restriction` of a simple type, with facets.
    pub(super) fn simple_type(&mut self, node: &'a Node, type_name: &str) -> Result<usize> {
        let restriction = match self.children(node)?.as_slice() {
            [r] if r.name.1 == "restriction" => *r,
            [other] => return Err(self.unsupported(other, format!("xs:{}", other.name.1))),
            _ => return Err(self.invalid(node, "xs:simpleType needs one xs:restriction")),
        };
        self.only(restriction, &["base"])?;
        let base = self.required(restriction, "base")?;
        let TypeId::Simple(base) = self.type_by_name(restriction, base)? else {
            return Err(self.invalid(restriction, format!("{base} is not a simple type")));
        };
        let mut facets = Vec::new();
        for f in self.children(restriction)? {
            self.only(f, &["value", "fixed"])?;
            let fixed = match f.attribute("fixed") {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => return Err(self.invalid(f, format!("fixed={other:?}"))),
            };
            if !self.children(f)?.is_empty() {
                return Err(self.invalid(f, format!("children inside xs:{}", f.name.1)));
            }
            let value = self.required(f, "value")?;
            facets.push(Facet {
                name: &f.name.1,
                value,
                fixed,
            });
        }
        let ty = SimpleType::restrict(&self.schema.simple[base], type_name, &facets).map_err(
            |refusal| match refusal {
                Refusal::Unsupported(what) => self.unsupported(restriction, what),
                Refusal::Invalid(message) => self.invalid(restriction, message),
            },
        )?;
        self.schema.simple.push(ty);
        Ok(self.schema.simple.len() - 1)
    }

    pub(super) fn reserve_complex(&mut self) -> usize {
        self.schema.complex.push(ComplexType {
            attributes: Vec::new(),
            content: Content::Empty,
        });
        self.schema.complex.len() - 1
    }

    /// Fills the reserved complex type `id` from its definition `node`.
    pub(super) fn complex_type(&mut self, node: &'a Node, id: usize) -> Result<()> {
        if node.attribute("mixed").is_some_and(|m| m != "false") {
            return Err(self.unsupported(node, "mixed content"));
        }
        let mut content = Content::Empty;
        let mut attributes = Vec::new();
        for (i, child) in self.children(node)?.into_iter().enumerate() {
            match child.name.1.as_str() {
                "sequence" | "choice" if i == 0 => {
                    let mut names = HashMap::new();
                    let root = self.particle(child, &mut names, Some(1))?;
                    content = Content::Elements(Model { root, names });
                }
                "simpleContent" if i == 0 => {
                    let (base, more) = self.simple_content(child)?;
                    content = Content::Simple(base);
                    attributes.extend(more);
                }
                "attribute" => attributes.push(self.attribute(child)?),
                other => return Err(self.unsupported(child, format!("xs:{other} here"))),
            }
        }
        for (i, a) in attributes.iter().enumerate() {
            if attributes[..i].iter().any(|b| b.name == a.name) {
                return Err(self.invalid(node, format!("the attribute {} twice", a.name)));
            }
        }
        self.schema.complex[id] = ComplexType {
            attributes,
            content,
        };
        Ok(())
    }

    /// `xs:simpleContent` with an `xs:extension` of a simple type adding attributes.
    fn simple_content(&mut self, node: &'a Node) -> Result<(usize, Vec<AttributeDecl>)> {
        self.only(node, &[])?;
        let extension = match self.children(node)?.as_slice() {
            [e] if e.name.1 == "extension" => *e,
            _ => return Err(self.unsupported(node, "xs:simpleContent other than one xs:extension")),
        };
        self.only(extension, &["base"])?;
        let base = self.required(extension, "base")?;
        let TypeId::Simple(base) = self.type_by_name(extension, base)? else {
            return Err(self.unsupported(extension, "simple content extending a complex type"));
        };
        let mut attributes = Vec::new();
        for child in self.children(extension)? {
            match child.name.1.as_str() {
                "attribute" => attributes.push(self.attribute(child)?),
                other => return Err(self.unsupported(child, format!("xs:{other} in xs:extension"))),
            }
        }
        Ok((base, attributes))
    }

    fn attribute(&mut self, node: &'a Node) -> Result<AttributeDecl> {
        self.only(node, &["name", "type", "use"])?;
        let name = self.required(node, "name")?.to_owned();
        let required = match node.attribute("use") {
            None | Some("optional") => false,
            Some("required") => true,
            Some(other) => return Err(self.unsupported(node, format!("use={other:?}"))),
        };
        let ty = match (node.attribute("type"), self.children(node)?.as_slice()) {
            (Some(ty), []) => self.type_by_name(node, ty)?,
            (None, [s]) if s.name.1 == "simpleType" => {
                self.only(s, &[])?;
                TypeId::Simple(self.simple_type(s, &format!("the type of @{name}"))?)
            }
            (None, []) => return Err(self.unsupported(node, "an attribute without a type")),
            _ => return Err(self.invalid(node, "an attribute with more than one type")),
        };
        match ty {
            TypeId::Simple(ty) => Ok(AttributeDecl { name, ty, required }),
            TypeId::Complex(_) => Err(self.invalid(node, "an attribute of a complex type")),
        }
    }

    /// A particle (element, sequence or choice) and its occurrence bounds; `names` collects
    /// the elements by name, `outer` is the most times the enclosing groups may occur.
    fn particle(
        &mut self,
        node: &'a Node,
        names: &mut HashMap<Name, Entry>,
        outer: Option<u32>,
    ) -> Result<Particle> {
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| self.invalid(node, format!("{v:?} is not an occurrence count")))
        };
        let min = node
            .attribute("minOccurs")
            .map(number)
            .transpose()?
            .unwrap_or(1);
        let max = match node.attribute("maxOccurs") {
            Some("unbounded") => None,
            Some(v) => Some(number(v)?),
            None => Some(1),
        };
        if max.is_some_and(|m| m < min) {
            return Err(self.invalid(node, "maxOccurs is below minOccurs"));
        }
        let times = outer.zip(max).map(|(a, b)| a.saturating_mul(b));
        let term = match node.name.1.as_str() {
            "element" => Term::Element(self.local_element(node, names, times)?),
            group @ ("sequence" | "choice") => {
                self.only(node, &["minOccurs", "maxOccurs"])?;
                let mut items = Vec::new();
                for child in self.children(node)? {
                    items.push(self.particle(child, names, times)?);
                }
                match group {
                    "sequence" => Term::Sequence(items),
                    _ => Term::Choice(items),
                }
            }
            other => return Err(self.unsupported(node, format!("xs:{other} in a content model"))),
        };
        Ok(Particle { min, max, term })
    }

    /// A local element declaration or a `ref` to a global one, entered in `names`.
    fn local_element(
        &mut self,
        node: &'a Node,
        names: &mut HashMap<Name, Entry>,
        times: Option<u32>,
    ) -> Result<usize> {
        let id = if let Some(reference) = node.attribute("ref") {
            self.only(node, &["ref", "minOccurs", "maxOccurs"])?;
            let name = self.qname(node, reference)?;
            if !self.element_nodes.contains_key(&name) {
                return Err(self.invalid(node, format!("the element {reference} is not declared")));
            }
            self.global_element(&name)?
        } else {
            self.only(node, &["name", "type", "minOccurs", "maxOccurs"])?;
            let local = self.required(node, "name")?.to_owned();
            let ns = self
                .qualified
                .then(|| self.schema.target_namespace.clone())
                .flatten();
            let id = self.schema.elements.len();
            self.schema.elements.push(ElementDecl {
                name: (ns, local),
                ty: PENDING,
            });
            self.ready.push(true);
            let ty = self.element_type(node, id)?;
            self.schema.elements[id].ty = ty;
            id
        };
        let name = self.schema.elements[id].name.clone();
        match names.get_mut(&name) {
            None => {
                names.insert(
                    name,
                    Entry {
                        element: id,
                        max: times,
                    },
                );
            }
            Some(entry) => {
                let (a, b) = (
                    &self.schema.elements[entry.element],
                    &self.schema.elements[id],
                );
                if entry.element != id && a.ty != b.ty {
                    let m = format!(
                        "two elements {} of different types in one content model",
                        name.1
                    );
                    return Err(self.invalid(node, m));
                }
                entry.max = entry.max.zip(times).map(|(a, b)| a.saturating_add(b));
            }
        }
        Ok(id)
    }
}
