//! The element writer the XML exports share (camt.053 statements, settlement reports):
//! every text goes through quick-xml's escaping, indented by two spaces.

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

pub(crate) type Io = std::io::Result<()>;

pub(crate) struct Xml(pub(crate) Writer<Vec<u8>>);

impl Xml {
    pub(crate) fn new() -> Self {
        Xml(Writer::new_with_indent(Vec::new(), b' ', 2))
    }

    /// Opens the elements `path`, outermost first.
    pub(crate) fn open(&mut self, path: &[&str]) -> Io {
        path.iter()
            .try_for_each(|name| self.0.write_event(Event::Start(BytesStart::new(*name))))
    }

    /// Closes the elements `path`, outermost first (the reverse of `open`).
    pub(crate) fn close(&mut self, path: &[&str]) -> Io {
        path.iter()
            .rev()
            .try_for_each(|name| self.0.write_event(Event::End(BytesEnd::new(*name))))
    }

    /// `<a><b>value</b></a>` for the path `[a, b]`.
    pub(crate) fn text(&mut self, path: &[&str], value: &str) -> Io {
        let (name, outer) = path.split_last().expect("a non-empty path");
        self.open(outer)?;
        self.0
            .create_element(*name)
            .write_text_content(BytesText::new(value))?;
        self.close(outer)
    }

    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.0.into_inner()
    }
}
