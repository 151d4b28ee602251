//! `export::xsd`: validation of XML documents against an XML Schema (XSD 1.0), in process, for
//! the documents this crate exports: camt.053.001.02 statements ([`camt053`]) and, later, Vipps
//! SettlementReport-3.0 files ([`settlement_report`]). The official schema files are embedded
//! (`schemas/`, provenance in its README) and parsed at run time, so they stay the source of
//! truth; each is parsed once per process.
//!
//! Why not a crate: there is no mature pure-Rust XSD validator (the one that exists, `xmlschema`,
//! is at 0.0.x, skips constructs it does not know instead of refusing them, and brings its own
//! XML parser), and binding libxml2 would need a C library the README's "Rust and PostgreSQL"
//! machine does not have. So this module implements the part of XML Schema 1.0 that both
//! official schemas use, and refuses everything else when the schema is loaded
//! ([`SchemaError::Unsupported`]), so a construct is never silently ignored:
//!
//! - `xs:schema` with `targetNamespace` (or none), `elementFormDefault` `qualified` or
//!   `unqualified`, `version`; `xs:annotation` anywhere (documentation only);
//! - global elements and `ref`s to them; local elements with a `type` or an anonymous type;
//!   `minOccurs`/`maxOccurs` (`unbounded` too) on elements, `xs:sequence` and `xs:choice`;
//! - named and anonymous `xs:complexType` with element content (`xs:sequence`, `xs:choice`,
//!   nested), empty content, or `xs:simpleContent` extending a simple type; attributes with a
//!   simple type and `use="required"`/`"optional"` (unqualified, as both schemas have them);
//! - named and anonymous `xs:simpleType` by `xs:restriction` of a built-in or named simple type,
//!   with the facets `enumeration`, `pattern` (translated to the `regex` crate's syntax, see
//!   `pattern.rs`), `length`, `minLength`, `maxLength`, `totalDigits`, `fractionDigits`,
//!   `minInclusive`, `maxInclusive`, `minExclusive`, `maxExclusive` (`fixed="true"` honoured);
//! - the built-in types `string`, `normalizedString`, `token`, `anyURI` (escapes, one `#`, a
//!   well-formed scheme), `boolean`, `decimal`, `integer`, `long`, `int`, `date`, `dateTime`,
//!   `gYear`, with their whitespace rules; decimals are compared exactly, never as floats.
//!
//! Content models are matched exactly (every way of reading the children is followed, so no
//! Unique Particle Attribution is assumed). Elements of one name in one content model must have
//! one type (XSD's "Element Declarations Consistent"), checked at load time.
//!
//! Where libxml2 (`xmllint`) departs from the recommendation, the recommendation is followed:
//! libxml2 refuses whitespace around `date`, `dateTime`, `gYear`, `long` and `int` values
//! (whose whitespace rule is "collapse"), limits `integer` to 24 digits, and checks more of a
//! URI. The tests list these cases; the exporters never write such values.
//!
//! [`Schema::validate`] returns every [`Violation`] found, each naming the element by its path
//! (`/Document/BkToCstmrStmt/Stmt[1]/Ntry[3]/Amt`: an index where the schema lets the element
//! repeat or the document repeats it; `/@Ccy` for an attribute) and the [`Rule`] it breaks.
//! Documents must be UTF-8 without a DTD; `xsi:schemaLocation` hints are ignored, `xsi:type` and
//! `xsi:nil` are refused.
//!
//! Cost, in a release build: loading the camt.053 schema takes about 3 ms (once per process);
//! validating a statement about 50 µs per entry (a 100-entry statement, 77 kB, about 5 ms),
//! roughly what writing it costs.

use std::fmt;
use std::sync::OnceLock;

mod compile;
mod content;
mod lexical;
mod model;
mod pattern;
mod simple;
mod tree;
mod validate;

pub use model::Schema;

#[cfg(test)]
pub(crate) mod second_opinion;
#[cfg(test)]
mod tests;

/// The ISO 20022 camt.053.001.02 schema, as published (`schemas/camt.053.001.02.xsd`).
pub const CAMT053_XSD: &str = include_str!("schemas/camt.053.001.02.xsd");

/// The Vipps settlement report schema 3.0, as published (`schemas/SettlementReport-3.0.xsd`).
pub const SETTLEMENT_REPORT_XSD: &str = include_str!("schemas/SettlementReport-3.0.xsd");

/// The camt.053.001.02 schema, parsed on first use.
pub fn camt053() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse(CAMT053_XSD).expect("the embedded camt.053 schema loads"))
}

/// The Vipps SettlementReport-3.0 schema, parsed on first use.
pub fn settlement_report() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse(SETTLEMENT_REPORT_XSD).expect("the embedded settlement schema loads")
    })
}

/// Why a schema could not be loaded; `line` is in the schema text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    /// The schema is not well-formed XML (or not UTF-8, or has a DTD).
    #[error("schema line {line}: not readable XML: {message}")]
    Xml { line: usize, message: String },
    /// A construct of XML Schema this validator does not implement.
    #[error("schema line {line}: {what} is not supported")]
    Unsupported { line: usize, what: String },
    /// The schema breaks a rule of XML Schema (an unknown type, a bad facet value, …).
    #[error("schema line {line}: {message}")]
    Invalid { line: usize, message: String },
}

/// Why part of a schema is refused, before its line is known.
#[derive(Debug)]
enum Refusal {
    /// Not implemented by this validator.
    Unsupported(String),
    /// Wrong by the rules of XML Schema.
    Invalid(String),
}

impl Refusal {
    fn map(self, f: impl FnOnce(String) -> String) -> Refusal {
        match self {
            Refusal::Unsupported(m) => Refusal::Unsupported(f(m)),
            Refusal::Invalid(m) => Refusal::Invalid(f(m)),
        }
    }
}

/// One way a document breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The element (`/Document/…/Ntry[3]/Amt`) or attribute (`…/Amt/@Ccy`); `/` when the
    /// document could not be read.
    pub path: String,
    /// What kind of rule is broken.
    pub rule: Rule,
    /// What is wrong, in words, with the value or element names involved.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.message, self.rule)
    }
}

/// The rule a [`Violation`] breaks: the structure, a datatype, or a facet by its XSD name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Not well-formed XML, not UTF-8, or with a DTD.
    NotWellFormed,
    /// An element or attribute in another namespace than the schema declares.
    Namespace,
    /// A required element is missing (or the content ends too early).
    MissingElement,
    /// An element the content model does not have at all.
    UnexpectedElement,
    /// An element of the content model in the wrong place.
    OutOfOrder,
    /// More occurrences of an element than its `maxOccurs`.
    TooManyOccurrences,
    /// Character data where only elements (or nothing) may be.
    UnexpectedText,
    /// A `use="required"` attribute is missing.
    MissingAttribute,
    /// An attribute the type does not declare.
    UnexpectedAttribute,
    /// A value that is not in the lexical space of its built-in type (a bad date, not a number).
    Datatype,
    /// A value that is none of the type's `enumeration` values.
    Enumeration,
    /// A value no `pattern` of a restriction step matches.
    Pattern,
    /// A value of another `length` (in characters).
    Length,
    /// A value shorter than `minLength` characters.
    MinLength,
    /// A value longer than `maxLength` characters.
    MaxLength,
    /// A number with more significant digits than `totalDigits`.
    TotalDigits,
    /// A number with more digits after the point than `fractionDigits`.
    FractionDigits,
    /// A number below `minInclusive`.
    MinInclusive,
    /// A number above `maxInclusive`.
    MaxInclusive,
    /// A number not above `minExclusive`.
    MinExclusive,
    /// A number not below `maxExclusive`.
    MaxExclusive,
    /// An instance construct this validator refuses (`xsi:type`, `xsi:nil`).
    Unsupported,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::NotWellFormed => "not well-formed",
            Rule::Namespace => "namespace",
            Rule::MissingElement => "missing element",
            Rule::UnexpectedElement => "unexpected element",
            Rule::OutOfOrder => "out of order",
            Rule::TooManyOccurrences => "maxOccurs",
            Rule::UnexpectedText => "unexpected text",
            Rule::MissingAttribute => "missing attribute",
            Rule::UnexpectedAttribute => "unexpected attribute",
            Rule::Datatype => "datatype",
            Rule::Enumeration => "enumeration",
            Rule::Pattern => "pattern",
            Rule::Length => "length",
            Rule::MinLength => "minLength",
            Rule::MaxLength => "maxLength",
            Rule::TotalDigits => "totalDigits",
            Rule::FractionDigits => "fractionDigits",
            Rule::MinInclusive => "minInclusive",
            Rule::MaxInclusive => "maxInclusive",
            Rule::MinExclusive => "minExclusive",
            Rule::MaxExclusive => "maxExclusive",
            Rule::Unsupported => "unsupported",
        })
    }
}
