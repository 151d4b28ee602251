//! `export::xsd::model`: a loaded schema as the validator uses it: element declarations,
//! complex types (attributes and content) and simple types, addressed by index, with every
//! type reference resolved. Built by `compile`, read by `content` and `validate`.

use std::collections::HashMap;

use super::simple::SimpleType;
use super::tree::Name;

/// A loaded schema: parse one with [`Schema::parse`], validate documents with
/// [`Schema::validate`].
#[derive(Debug)]
pub struct Schema {
    pub(super) target_namespace: Option<String>,
    /// The global elements: the roots a document may have.
    pub(super) globals: HashMap<Name, usize>,
    pub(super) elements: Vec<ElementDecl>,
    pub(super) complex: Vec<ComplexType>,
    pub(super) simple: Vec<SimpleType>,
}

impl Schema {
    /// The schema's `targetNamespace`.
    pub fn target_namespace(&self) -> Option<&str> {
        self.target_namespace.as_deref()
    }
}

/// An element declaration, global or local.
#[derive(Debug)]
pub(super) struct ElementDecl {
    pub(super) name: Name,
    pub(super) ty: TypeId,
}

/// A simple or complex type, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TypeId {
    Simple(usize),
    Complex(usize),
}

#[derive(Debug)]
pub(super) struct ComplexType {
    pub(super) attributes: Vec<AttributeDecl>,
    pub(super) content: Content,
}

/// An (unqualified) attribute of a complex type.
#[derive(Debug)]
pub(super) struct AttributeDecl {
    pub(super) name: String,
    /// A simple type.
    pub(super) ty: usize,
    pub(super) required: bool,
}

#[derive(Debug)]
pub(super) enum Content {
    /// No children, no text.
    Empty,
    /// Text of a simple type, no children.
    Simple(usize),
    /// Children as the model says, whitespace between them.
    Elements(Model),
}

/// A content model: its particle tree and, by name, the elements it has.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) root: Particle,
    pub(super) names: HashMap<Name, Entry>,
}

/// What a content model says about the elements of one name in it.
#[derive(Debug)]
pub(super) struct Entry {
    /// The declaration (all of one name have one type).
    pub(super) element: usize,
    /// The most occurrences the model allows (`None`: unbounded).
    pub(super) max: Option<u32>,
}

impl Entry {
    /// Whether the element may occur more than once (its path then carries an index).
    pub(super) fn repeats(&self) -> bool {
        self.max.is_none_or(|m| m > 1)
    }
}

/// A term with its occurrence bounds (`max: None` is unbounded).
#[derive(Debug)]
pub(super) struct Particle {
    pub(super) min: u32,
    pub(super) max: Option<u32>,
    pub(super) term: Term,
}

#[derive(Debug)]
pub(super) enum Term {
    Element(usize),
    Sequence(Vec<Particle>),
    Choice(Vec<Particle>),
}
