//! Loading schemas: what is supported loads and works; what is not is refused with its line,
//! never skipped.

use super::*;

/// A schema in `urn:t` (elements qualified) with `body` inside, starting on line 3.
fn schema(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n\
         <xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" xmlns:t=\"urn:t\" \
         targetNamespace=\"urn:t\" elementFormDefault=\"qualified\">\n{body}\n</xs:schema>"
    )
}

fn load_error(body: &str) -> SchemaError {
    Schema::parse(&schema(body)).expect_err("the schema must not load")
}

/// The load error as `unsupported <line>: <what>` or `invalid <line>: <message>`.
fn refused(body: &str) -> String {
    match load_error(body) {
        SchemaError::Unsupported { line, what } => format!("unsupported {line}: {what}"),
        SchemaError::Invalid { line, message } => format!("invalid {line}: {message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn constructs_outside_the_supported_subset_are_refused_with_their_line() {
    let cases = [
        ("<xs:import namespace=\"urn:x\"/>", "3: a global xs:import"),
        ("<xs:group name=\"g\"/>", "3: a global xs:group"),
        (
            "<xs:element name=\"a\">\n<xs:complexType><xs:all/></xs:complexType></xs:element>",
            "4: xs:all here",
        ),
        (
            "<xs:element name=\"a\"><xs:complexType>\n<xs:sequence><xs:any/></xs:sequence></xs:complexType></xs:element>",
            "4: xs:any in a content model",
        ),
        (
            "<xs:element name=\"a\"><xs:complexType mixed=\"true\"/></xs:element>",
            "3: mixed content",
        ),
        (
            "<xs:simpleType name=\"l\"><xs:list itemType=\"xs:int\"/></xs:simpleType>",
            "3: xs:list",
        ),
        ("<xs:element name=\"a\"/>", "3: an element without a type (xs:anyType)"),
        ("<xs:element name=\"a\" type=\"xs:duration\"/>", "3: the built-in type xs:duration"),
        (
            "<xs:element name=\"a\" type=\"xs:string\" nillable=\"true\"/>",
            "3: the attribute nillable on xs:element",
        ),
        (
            "<xs:element name=\"a\" type=\"xs:string\" default=\"x\"/>",
            "3: the attribute default on xs:element",
        ),
        (
            "<xs:element name=\"a\"><xs:complexType>\n<xs:attribute name=\"b\" type=\"xs:string\" fixed=\"1\"/></xs:complexType></xs:element>",
            "4: the attribute fixed on xs:attribute",
        ),
        (
            "<xs:element name=\"a\"><xs:complexType><xs:complexContent/></xs:complexType></xs:element>",
            "3: xs:complexContent here",
        ),
        (
            "<xs:element name=\"a\"><xs:complexType><xs:sequence>\n<xs:element name=\"b\" type=\"xs:string\" form=\"unqualified\"/></xs:sequence></xs:complexType></xs:element>",
            "4: the attribute form on xs:element",
        ),
        ("<xs:element name=\"a\" type=\"xs:string\" t:x=\"1\"/>", "3: the attribute x on xs:element"),
        (
            "<xs:element name=\"a\" type=\"xs:string\"><xs:key name=\"k\"/></xs:element>",
            "3: xs:key in xs:element",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(refused(body), format!("unsupported {expected}"), "{body}");
    }
}

#[test]
fn facets_the_validator_does_not_implement_or_that_do_not_apply_are_refused() {
    let restricted = |base: &str, facet: &str| {
        format!("<xs:simpleType name=\"s\"><xs:restriction base=\"{base}\">\n{facet}</xs:restriction></xs:simpleType>")
    };
    assert_eq!(
        refused(&restricted(
            "xs:string",
            "<xs:whiteSpace value=\"collapse\"/>"
        )),
        "unsupported 3: the facet whiteSpace"
    );
    assert_eq!(
        refused(&restricted("xs:decimal", "<xs:maxLength value=\"3\"/>")),
        "invalid 3: the facet maxLength does not apply to xs:decimal"
    );
    assert_eq!(
        refused(&restricted("xs:string", "<xs:totalDigits value=\"3\"/>")),
        "invalid 3: the facet totalDigits does not apply to xs:string"
    );
    assert_eq!(
        refused(&restricted(
            "xs:date",
            "<xs:minInclusive value=\"2026-01-01\"/>"
        )),
        "invalid 3: the facet minInclusive does not apply to xs:date"
    );
    assert_eq!(
        refused(&restricted("xs:string", "<xs:pattern value=\"\\i\\c*\"/>")),
        "unsupported 3: pattern \"\\\\i\\\\c*\": \\i (XML name characters)"
    );
    assert_eq!(
        refused(&restricted(
            "xs:string",
            "<xs:pattern value=\"[a-z-[aeiou]]\"/>"
        )),
        "unsupported 3: pattern \"[a-z-[aeiou]]\": class subtraction"
    );
    assert_eq!(
        refused(&restricted("xs:string", "<xs:pattern value=\"\\p{IsBasicLatin}\"/>")),
        "unsupported 3: pattern \"\\\\p{IsBasicLatin}\": \\p{IsBasicLatin} (only general categories are supported)"
    );
    assert_eq!(
        refused(&restricted("xs:decimal", "<xs:enumeration value=\"x\"/>")),
        "invalid 3: enumeration value: \"x\" is not a valid xs:decimal"
    );
    assert_eq!(
        refused(&restricted("xs:int", "<xs:totalDigits value=\"0\"/>")),
        "invalid 3: totalDigits must be at least 1"
    );
}

#[test]
fn a_schema_that_breaks_the_rules_of_xml_schema_is_refused() {
    assert_eq!(
        refused("<xs:element name=\"a\" type=\"t:Missing\"/>"),
        "invalid 3: the type t:Missing is not defined"
    );
    assert_eq!(
        refused("<xs:element name=\"a\" type=\"u:Missing\"/>"),
        "invalid 3: the prefix \"u\" is not declared"
    );
    assert_eq!(
        refused("<xs:element name=\"a\"><xs:complexType><xs:sequence>\n<xs:element ref=\"t:b\"/></xs:sequence></xs:complexType></xs:element>"),
        "invalid 4: the element t:b is not declared"
    );
    assert_eq!(
        refused("<xs:element name=\"a\"><xs:complexType><xs:sequence>\n<xs:element name=\"b\" type=\"xs:string\" minOccurs=\"2\" maxOccurs=\"1\"/></xs:sequence></xs:complexType></xs:element>"),
        "invalid 4: maxOccurs is below minOccurs"
    );
    assert_eq!(
        refused("<xs:simpleType name=\"s\"><xs:restriction base=\"t:r\"/></xs:simpleType>\n<xs:simpleType name=\"r\"><xs:restriction base=\"t:s\"/></xs:simpleType>"),
        "invalid 3: the type s derives from itself"
    );
    assert_eq!(
        refused("<xs:element name=\"a\"><xs:complexType><xs:sequence>\n<xs:element name=\"b\" type=\"xs:string\"/>\n<xs:element name=\"b\" type=\"xs:int\"/></xs:sequence></xs:complexType></xs:element>"),
        "invalid 5: two elements b of different types in one content model"
    );
    assert_eq!(
        refused("<xs:element name=\"a\" type=\"xs:string\"/>\n<xs:element name=\"a\" type=\"xs:string\"/>"),
        "invalid 4: a second global element a"
    );
    assert_eq!(
        refused("<xs:simpleType name=\"m\"><xs:restriction base=\"xs:decimal\"><xs:fractionDigits value=\"2\" fixed=\"true\"/></xs:restriction></xs:simpleType>\n\
                 <xs:simpleType name=\"n\"><xs:restriction base=\"t:m\"><xs:fractionDigits value=\"3\"/></xs:restriction></xs:simpleType>"),
        "invalid 4: fractionDigits is fixed at \"2\" in the base type and cannot become \"3\""
    );
    assert!(matches!(
        Schema::parse("<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">\n<xs:element>"),
        Err(SchemaError::Xml { .. })
    ));
}

#[test]
fn recursive_types_unqualified_locals_and_a_schema_without_namespace_work() {
    let xsd = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">\
        <xs:element name=\"tree\" type=\"Node\"/>\
        <xs:complexType name=\"Node\"><xs:sequence>\
          <xs:element name=\"node\" type=\"Node\" minOccurs=\"0\" maxOccurs=\"unbounded\"/>\
        </xs:sequence><xs:attribute name=\"id\" type=\"xs:int\" use=\"required\"/></xs:complexType>\
        </xs:schema>";
    let tree = Schema::parse(xsd).unwrap();
    assert_eq!(tree.target_namespace(), None);
    let doc = "<tree id=\"1\"><node id=\"2\"><node id=\"3\"/></node><node id=\"4\"/></tree>";
    assert_eq!(tree.validate(doc.as_bytes()), Ok(()));
    let bad = "<tree id=\"1\"><node id=\"2\"><node/></node></tree>";
    let v = tree.validate(bad.as_bytes()).unwrap_err();
    assert_eq!(v[0].path, "/tree/node[1]/node[1]");
    assert_eq!(v[0].rule, Rule::MissingAttribute);

    let unqualified = schema(
        "<xs:element name=\"a\"><xs:complexType><xs:sequence>\
        <xs:element name=\"b\" type=\"xs:string\"/></xs:sequence></xs:complexType></xs:element>",
    )
    .replace(" elementFormDefault=\"qualified\"", "");
    let loaded = Schema::parse(&unqualified).unwrap();
    assert_eq!(
        loaded.validate(b"<t:a xmlns:t=\"urn:t\"><b>x</b></t:a>"),
        Ok(())
    );
    let v = loaded
        .validate(b"<a xmlns=\"urn:t\"><b>x</b></a>")
        .unwrap_err();
    assert_eq!((v[0].path.as_str(), v[0].rule), ("/a/b", Rule::Namespace));
}

#[test]
fn groups_with_occurrence_bounds_are_matched_exactly() {
    // (x, y?){2,3} then x: needs every way of reading the children, not the greedy one.
    let xsd = schema("<xs:element name=\"a\"><xs:complexType><xs:sequence>\
        <xs:sequence minOccurs=\"2\" maxOccurs=\"3\">\
          <xs:element name=\"x\" type=\"xs:string\"/><xs:element name=\"y\" type=\"xs:string\" minOccurs=\"0\"/>\
        </xs:sequence>\
        <xs:choice><xs:element name=\"x\" type=\"xs:string\"/><xs:element name=\"z\" type=\"xs:string\"/></xs:choice>\
        </xs:sequence></xs:complexType></xs:element>");
    let model = Schema::parse(&xsd).unwrap();
    let doc = |kids: &str| {
        let body: String = kids.chars().map(|c| format!("<{c}/>")).collect();
        model.validate(format!("<a xmlns=\"urn:t\">{body}</a>").as_bytes())
    };
    for ok in ["xxx", "xyxx", "xyxyz", "xxxx", "xyxyxyx", "xxz"] {
        assert_eq!(doc(ok), Ok(()), "{ok}");
    }
    let rule = |kids: &str| doc(kids).unwrap_err()[0].rule;
    assert_eq!(rule("xx"), Rule::MissingElement);
    assert_eq!(rule("xxxxx"), Rule::TooManyOccurrences);
    assert_eq!(rule("xyy"), Rule::TooManyOccurrences);
    assert_eq!(rule("yx"), Rule::OutOfOrder);
    assert_eq!(rule("xxw"), Rule::UnexpectedElement);
}
