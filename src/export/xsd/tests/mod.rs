//! Tests of `export::xsd`: the official schemas load and the official examples validate
//! (here); a schema using what is not supported fails to load (`schemas.rs`); values of every
//! supported type and facet are judged as XML Schema judges them (`values.rs`); broken
//! documents are rejected with the right path and rule, and xmllint, where installed, agrees
//! on every document (`corpus.rs`).

use super::second_opinion;
use super::*;

mod corpus;
mod schemas;
mod values;

/// The official example settlement reports (Vipps), byte for byte (`tests/data/README.md`).
const EXAMPLE_GROSS: &str =
    include_str!("../../../../tests/data/SettlementReport-Example-Gross.xml");
const EXAMPLE_NET: &str = include_str!("../../../../tests/data/SettlementReport-Example-Net.xml");

#[test]
fn both_official_schemas_load_with_their_target_namespaces() {
    assert_eq!(
        camt053().target_namespace(),
        Some("urn:iso:std:iso:20022:tech:xsd:camt.053.001.02")
    );
    assert_eq!(
        settlement_report().target_namespace(),
        Some("http://vipps.no/xmlschema/SettlementReport-3.0.xsd")
    );
    assert_eq!(
        camt053().target_namespace(),
        Some(crate::export::camt::NAMESPACE),
        "the writer's namespace is the schema's"
    );
}

#[test]
fn the_official_gross_and_net_examples_validate_against_the_settlement_schema() {
    for example in [EXAMPLE_GROSS, EXAMPLE_NET] {
        if let Err(v) = second_opinion::settlement_report(example.as_bytes()) {
            panic!("{v:#?}");
        }
    }
}

#[test]
fn a_violation_reads_as_path_message_and_rule() {
    let broken = EXAMPLE_NET.replacen("<SettlementType>Net<", "<SettlementType>Netto<", 1);
    let violations = settlement_report().validate(broken.as_bytes()).unwrap_err();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(
        violations[0].to_string(),
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/SettlementType: \
         \"Netto\" is not one of the values of settlementType (Gross, Net) (enumeration)"
    );
}

#[test]
fn every_violation_in_a_document_is_reported_in_document_order() {
    let broken = EXAMPLE_NET
        .replacen(
            "<SettlementDate>2018-03-01<",
            "<SettlementDate>2018-03-32<",
            1,
        )
        .replacen("<TransactionID>5001145476<", "<TransactionID>x<", 1)
        .replacen("<Country>Norway</Country>", "", 1);
    let violations = settlement_report().validate(broken.as_bytes()).unwrap_err();
    let found: Vec<_> = violations
        .iter()
        .map(|v| (v.path.as_str(), v.rule))
        .collect();
    let info = "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]";
    assert_eq!(
        found,
        [
            (&*format!("{info}/SettlementDate"), Rule::Datatype),
            (
                &*format!("{info}/TransactionInfo[1]/TransactionID"),
                Rule::Datatype
            ),
            ("/SettlementReport/VippsInfo", Rule::MissingElement),
        ]
    );
}
