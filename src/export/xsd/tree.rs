//! `export::xsd::tree`: an XML document (a schema or an instance) read with quick-xml into a
//! small tree with namespaces resolved: each element's namespace and local name, its attributes
//! (namespace declarations taken out), its character data, its children, and the namespace
//! bindings in scope (a schema's `type="vp:money"` is resolved against them). Only UTF-8
//! documents without a DTD are read; anything else is an error with its line.

use std::rc::Rc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// The namespace bound to the `xml` prefix by the Namespaces in XML recommendation.
const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";

/// A namespace-qualified name: (namespace, local name).
pub(super) type Name = (Option<String>, String);

/// One element of a document.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) name: Name,
    /// The attributes other than namespace declarations: (name, normalized value).
    pub(super) attributes: Vec<(Name, String)>,
    /// The element's own character data (text, CDATA, references), concatenated, line ends
    /// normalized; the text of children is in the children.
    pub(super) text: String,
    pub(super) children: Vec<Node>,
    /// Byte offset of the start tag, for a line number in schema errors.
    pub(super) offset: usize,
    scope: Option<Rc<Binding>>,
}

/// One namespace declaration, linked to those of the enclosing elements.
#[derive(Debug)]
struct Binding {
    /// `None` for the default namespace (`xmlns="…"`).
    prefix: Option<String>,
    /// Empty for an undeclaration (`xmlns=""`).
    namespace: String,
    parent: Option<Rc<Binding>>,
}

impl Node {
    /// The value of the unqualified attribute `local`.
    pub(super) fn attribute(&self, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|((ns, name), _)| ns.is_none() && name == local)
            .map(|(_, value)| value.as_str())
    }

    /// The namespace `prefix` is bound to here (`None`: the default namespace), if any.
    pub(super) fn namespace_of(&self, prefix: Option<&str>) -> Option<String> {
        if prefix == Some("xml") {
            return Some(XML_NAMESPACE.to_owned());
        }
        resolve(&self.scope, prefix)
    }
}

/// Line (1-based) of byte `offset` in `text`.
pub(super) fn line_of(text: &[u8], offset: usize) -> usize {
    1 + text[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn resolve(scope: &Option<Rc<Binding>>, prefix: Option<&str>) -> Option<String> {
    let mut at = scope.as_ref();
    while let Some(b) = at {
        if b.prefix.as_deref() == prefix {
            return (!b.namespace.is_empty()).then(|| b.namespace.clone());
        }
        at = b.parent.as_ref();
    }
    None
}

/// A document that could not be read: the byte offset and what is wrong.
#[derive(Debug)]
pub(super) struct ReadError {
    pub(super) offset: usize,
    pub(super) message: String,
}

/// Reads `document` into its root element.
pub(super) fn parse(document: &[u8]) -> Result<Node, ReadError> {
    let fail = |offset: usize, message: String| ReadError { offset, message };
    let text = std::str::from_utf8(document)
        .map_err(|e| fail(e.valid_up_to(), "the document is not UTF-8".to_owned()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    let mut open: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let offset = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| fail(reader.error_position() as usize, e.to_string()))?;
        let outside = |t: &str| -> Result<(), ReadError> {
            match t.trim().is_empty() {
                true => Ok(()),
                false => Err(fail(offset, "text outside the root element".to_owned())),
            }
        };
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(fail(offset, "a second root element".to_owned()));
                }
                let scope = open.last().and_then(|p| p.scope.clone());
                open.push(element(&start, scope, offset).map_err(|m| fail(offset, m))?);
            }
            Event::End(_) => {
                let node = open.pop().expect("quick-xml matches end tags");
                match open.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let t = t.xml10_content().map_err(|e| fail(offset, e.to_string()))?;
                match open.last_mut() {
                    Some(node) => node.text.push_str(&t),
                    None => outside(&t)?,
                }
            }
            Event::CData(t) => {
                let t = t.xml10_content().map_err(|e| fail(offset, e.to_string()))?;
                match open.last_mut() {
                    Some(node) => node.text.push_str(&t),
                    None => return Err(fail(offset, "CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let c = match r
                    .resolve_char_ref()
                    .map_err(|e| fail(offset, e.to_string()))?
                {
                    Some(c) => c.to_string(),
                    None => match &*r.decode().map_err(|e| fail(offset, e.to_string()))? {
                        "lt" => "<".to_owned(),
                        "gt" => ">".to_owned(),
                        "amp" => "&".to_owned(),
                        "apos" => "'".to_owned(),
                        "quot" => "\"".to_owned(),
                        other => return Err(fail(offset, format!("undeclared entity &{other};"))),
                    },
                };
                match open.last_mut() {
                    Some(node) => node.text.push_str(&c),
                    None => return Err(fail(offset, "a reference outside the root".into())),
                }
            }
            Event::Decl(decl) => {
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|e| fail(offset, e.to_string()))?;
                    if !encoding.eq_ignore_ascii_case(b"utf-8") {
                        let name = String::from_utf8_lossy(&encoding).into_owned();
                        return Err(fail(
                            offset,
                            format!("encoding {name:?}: only UTF-8 is read"),
                        ));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(fail(offset, "a DTD (DOCTYPE) is not supported".to_owned()))
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Empty(_) => unreachable!("empty elements are expanded"),
            Event::Eof => break,
        }
    }
    match (root, open.last()) {
        (Some(root), None) => Ok(root),
        (_, Some(node)) => Err(fail(text.len(), format!("<{}> is not closed", node.name.1))),
        (None, None) => Err(fail(0, "no root element".to_owned())),
    }
}

/// A new element from its start tag: namespace declarations first, then its name and
/// attributes resolved against them.
fn element(
    start: &BytesStart<'_>,
    mut scope: Option<Rc<Binding>>,
    offset: usize,
) -> Result<Node, String> {
    let mut attributes = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let key = std::str::from_utf8(a.key.as_ref()).map_err(|e| e.to_string())?;
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("attribute {key}: {e}"))?
            .into_owned();
        let prefix = match key.split_once(':') {
            None if key == "xmlns" => None,
            Some(("xmlns", p)) => Some(p.to_owned()),
            _ => {
                attributes.push((key.to_owned(), value));
                continue;
            }
        };
        if prefix.is_some() && value.is_empty() {
            return Err(format!(
                "{key}=\"\": a prefix cannot be undeclared in XML 1.0"
            ));
        }
        scope = Some(Rc::new(Binding {
            prefix,
            namespace: value,
            parent: scope,
        }));
    }
    let qualify = |qname: &str, is_element: bool| -> Result<Name, String> {
        match qname.split_once(':') {
            Some(("xml", local)) => Ok((Some(XML_NAMESPACE.to_owned()), local.to_owned())),
            Some((prefix, local)) => match resolve(&scope, Some(prefix)) {
                Some(ns) => Ok((Some(ns), local.to_owned())),
                None => Err(format!("the prefix {prefix:?} of {qname} is not declared")),
            },
            // Unprefixed attributes are in no namespace; unprefixed elements in the default one.
            None if is_element => Ok((resolve(&scope, None), qname.to_owned())),
            None => Ok((None, qname.to_owned())),
        }
    };
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|e| e.to_string())?
        .to_owned();
    let name = qualify(&name, true)?;
    let attributes = attributes
        .into_iter()
        .map(|(key, value)| Ok((qualify(&key, false)?, value)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Node {
        name,
        attributes,
        text: String::new(),
        children: Vec::new(),
        offset,
        scope,
    })
}
