//! Broken documents, one rule each, for both official schemas: each is rejected with the path
//! and rule expected, the unbroken ones validate, and xmllint, where installed, accepts and
//! rejects exactly the same documents.

use super::*;

/// A camt.053.001.02 statement of two entries, as the exporter writes them.
const CAMT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>VLS-100001-2026-01-06</MsgId><CreDtTm>2026-01-07T01:43:48Z</CreDtTm></GrpHdr>
    <Stmt>
      <Id>100001-2026-01-06</Id>
      <CreDtTm>2026-01-07T01:43:48Z</CreDtTm>
      <FrToDt><FrDtTm>2026-01-06T00:00:00</FrDtTm><ToDtTm>2026-01-06T23:59:59</ToDtTm></FrToDt>
      <Acct>
        <Id><Othr><Id>100001</Id><SchmeNm><Prtry>VippsMobilePayLedger</Prtry></SchmeNm><Issr>VippsMobilePay</Issr></Othr></Id>
        <Ccy>NOK</Ccy>
      </Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="NOK">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-01-06</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="NOK">200.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-01-06</Dt></Dt></Bal>
      <TxsSummry>
        <TtlNtries><NbOfNtries>2</NbOfNtries><Sum>300.00</Sum><TtlNetNtryAmt>200.00</TtlNetNtryAmt><CdtDbtInd>CRDT</CdtDbtInd></TtlNtries>
      </TxsSummry>
      <Ntry>
        <NtryRef>1</NtryRef>
        <Amt Ccy="NOK">250.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-01-06</Dt></BookgDt>
        <ValDt><Dt>2026-01-06</Dt></ValDt>
        <AcctSvcrRef>3300000012</AcctSvcrRef>
        <BkTxCd><Prtry><Cd>capture</Cd><Issr>VippsMobilePay</Issr></Prtry></BkTxCd>
        <NtryDtls><TxDtls><Refs><AcctSvcrRef>3300000012</AcctSvcrRef><EndToEndId>order-1</EndToEndId></Refs></TxDtls></NtryDtls>
        <AddtlNtryInf>capture; reference: order-1</AddtlNtryInf>
      </Ntry>
      <Ntry>
        <NtryRef>2</NtryRef>
        <Amt Ccy="NOK">50.00</Amt>
        <CdtDbtInd>DBIT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-01-06</Dt></BookgDt>
        <ValDt><Dt>2026-01-06</Dt></ValDt>
        <BkTxCd><Prtry><Cd>refund</Cd><Issr>VippsMobilePay</Issr></Prtry></BkTxCd>
        <NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs></TxDtls></NtryDtls>
        <AddtlNtryInf>refund</AddtlNtryInf>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"#;

/// One break: replace the first `from` by `to`; the first violation must be `rule` at `path`.
struct Break {
    from: &'static str,
    to: &'static str,
    path: &'static str,
    rule: Rule,
}

const fn brk(from: &'static str, to: &'static str, path: &'static str, rule: Rule) -> Break {
    Break {
        from,
        to,
        path,
        rule,
    }
}

const STMT: &str = "/Document/BkToCstmrStmt/Stmt[1]";

const CAMT_BREAKS: &[Break] = &[
    brk(
        "<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>BOOK</Sts>",
        "<CdtDbtInd>DBIT</CdtDbtInd>",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]",
        Rule::MissingElement,
    ),
    brk(
        "<Amt Ccy=\"NOK\">250.00</Amt>\n        <CdtDbtInd>CRDT</CdtDbtInd>",
        "<CdtDbtInd>CRDT</CdtDbtInd>\n        <Amt Ccy=\"NOK\">250.00</Amt>",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/CdtDbtInd",
        Rule::OutOfOrder,
    ),
    brk(
        "</MsgId>",
        "</MsgId><Foo>1</Foo>",
        "/Document/BkToCstmrStmt/GrpHdr/Foo",
        Rule::UnexpectedElement,
    ),
    brk(
        "<Sts>BOOK</Sts>",
        "<Sts>BOOK</Sts><Sts>BOOK</Sts>",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Sts[2]",
        Rule::TooManyOccurrences,
    ),
    brk(
        "<MsgId>VLS-100001-2026-01-06</MsgId>",
        "<MsgId>VLS-100001-2026-01-06-0123456789abcdef</MsgId>",
        "/Document/BkToCstmrStmt/GrpHdr/MsgId",
        Rule::MaxLength,
    ),
    brk(
        "<Id>100001-2026-01-06</Id>",
        "<Id></Id>",
        "/Document/BkToCstmrStmt/Stmt[1]/Id",
        Rule::MinLength,
    ),
    brk(
        "<CdtDbtInd>DBIT</CdtDbtInd>",
        "<CdtDbtInd>DEBT</CdtDbtInd>",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/CdtDbtInd",
        Rule::Enumeration,
    ),
    brk(
        "<Amt Ccy=\"NOK\">250.00",
        "<Amt Ccy=\"nok\">250.00",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Amt/@Ccy",
        Rule::Pattern,
    ),
    brk(
        "<Ccy>NOK</Ccy>",
        "<Ccy>NOKK</Ccy>",
        "/Document/BkToCstmrStmt/Stmt[1]/Acct/Ccy",
        Rule::Pattern,
    ),
    brk(
        ">250.00<",
        ">250.000001<",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Amt",
        Rule::FractionDigits,
    ),
    brk(
        ">250.00<",
        ">1234567890123456789<",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Amt",
        Rule::TotalDigits,
    ),
    brk(
        ">250.00<",
        ">-250.00<",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Amt",
        Rule::MinInclusive,
    ),
    brk(
        ">250.00<",
        ">250,00<",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Amt",
        Rule::Datatype,
    ),
    brk(
        "<BookgDt><Dt>2026-01-06",
        "<BookgDt><Dt>2026-02-30",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/BookgDt/Dt",
        Rule::Datatype,
    ),
    brk(
        "<CreDtTm>2026-01-07T01:43:48Z",
        "<CreDtTm>2026-01-07 01:43:48",
        "/Document/BkToCstmrStmt/GrpHdr/CreDtTm",
        Rule::Datatype,
    ),
    brk(
        "<Amt Ccy=\"NOK\">50.00",
        "<Amt>50.00",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/Amt",
        Rule::MissingAttribute,
    ),
    brk(
        "<Amt Ccy=\"NOK\">50.00",
        "<Amt Ccy=\"NOK\" Cur=\"NOK\">50.00",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/Amt/@Cur",
        Rule::UnexpectedAttribute,
    ),
    brk(
        "camt.053.001.02\">",
        "camt.053.001.03\">",
        "/Document",
        Rule::Namespace,
    ),
    brk(
        "<Ntry>\n        <NtryRef>2",
        "<Ntry xmlns=\"urn:other\">\n        <NtryRef>2",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]",
        Rule::Namespace,
    ),
    brk(
        "<Cd>OPBD</Cd>",
        "<Cd>OPBD</Cd><Prtry>x</Prtry>",
        "/Document/BkToCstmrStmt/Stmt[1]/Bal[1]/Tp/CdOrPrtry/Prtry",
        Rule::UnexpectedElement,
    ),
    brk(
        "<Acct>",
        "<Acct>text",
        "/Document/BkToCstmrStmt/Stmt[1]/Acct",
        Rule::UnexpectedText,
    ),
    brk(
        "<NtryRef>1</NtryRef>",
        "<NtryRef><Sub>1</Sub></NtryRef>",
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/NtryRef/Sub",
        Rule::UnexpectedElement,
    ),
    brk(
        "<Acct>",
        "<Acct xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:nil=\"true\">",
        "/Document/BkToCstmrStmt/Stmt[1]/Acct/@nil",
        Rule::Unsupported,
    ),
    brk("</Document>", "</Documen>", "/", Rule::NotWellFormed),
];

const SETTLEMENT_BREAKS: &[Break] = &[
    brk(
        "<NumOfTransactions>8</NumOfTransactions>",
        "",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[2]",
        Rule::MissingElement,
    ),
    brk(
        "<Country>Norway</Country>",
        "",
        "/SettlementReport/VippsInfo",
        Rule::MissingElement,
    ),
    brk(
        "<SettlementDate>2018-03-01</SettlementDate>\n                  <SettlementID>2000001</SettlementID>",
        "<SettlementID>2000001</SettlementID>\n                  <SettlementDate>2018-03-01</SettlementDate>",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/SettlementID",
        Rule::OutOfOrder,
    ),
    brk(
        "</Country>",
        "</Country><Comment>x</Comment>",
        "/SettlementReport/VippsInfo/Comment",
        Rule::UnexpectedElement,
    ),
    brk(
        "<ReportReferenceNum>",
        "<ReportReferenceNum>1</ReportReferenceNum><ReportReferenceNum>",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/ReportReferenceNum[2]",
        Rule::TooManyOccurrences,
    ),
    brk(
        "<SettlementType>Net<",
        "<SettlementType>Netto<",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/SettlementType",
        Rule::Enumeration,
    ),
    brk(
        "<TransactionRefundAmount>0.00<",
        "<TransactionRefundAmount>5.00<",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/TransactionInfo[1]/TransactionRefundAmount",
        Rule::Pattern,
    ),
    brk(
        "<TransactionCaptureAmount>15.00<",
        "<TransactionCaptureAmount>-15.00<",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/TransactionInfo[1]/TransactionCaptureAmount",
        Rule::Pattern,
    ),
    brk(
        "<TransactionCaptureAmount>15.00<",
        "<TransactionCaptureAmount>15.001<",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/TransactionInfo[1]/TransactionCaptureAmount",
        Rule::FractionDigits,
    ),
    brk(
        "<SettlementDate>2018-03-01<",
        "<SettlementDate>2018-02-29<",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/SettlementDate",
        Rule::Datatype,
    ),
    brk(
        "<TransactionTime>2018-03-01T11:30:11.005+01:00<",
        "<TransactionTime>2018-03-01<",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/TransactionInfo[1]/TransactionTime",
        Rule::Datatype,
    ),
    brk(
        "<SettlementID>2000001<",
        "<SettlementID>9223372036854775808<",
        "/SettlementReport/SettlementDetailsInfo[1]/PaymentsInfo/SettlementInfo[1]/SettlementID",
        Rule::Datatype,
    ),
    brk(
        "<SettlementReport xmlns",
        "<SettlementReport id=\"1\" xmlns",
        "/SettlementReport/@id",
        Rule::UnexpectedAttribute,
    ),
    brk(
        "SettlementReport-3.0.xsd\">",
        "SettlementReport-2.0.xsd\">",
        "/SettlementReport",
        Rule::Namespace,
    ),
];

/// Applies each break to `base`: the path and rule of the first violation must be the
/// expected ones; xmllint must reach the same verdict. Returns how many documents xmllint saw.
fn check_corpus(
    base: &str,
    breaks: &[Break],
    validate: fn(&[u8]) -> Result<(), Vec<Violation>>,
    xsd: &str,
) -> usize {
    assert_eq!(
        validate(base.as_bytes()),
        Ok(()),
        "the unbroken document validates"
    );
    let xsd = second_opinion::schema_file(xsd);
    let mut asked = usize::from(second_opinion::xmllint(&xsd, base.as_bytes()).is_some());
    for b in breaks {
        let broken = base.replacen(b.from, b.to, 1);
        assert_ne!(broken, base, "{:?} is not in the document", b.from);
        let violations = validate(broken.as_bytes()).expect_err(b.to);
        let first = &violations[0];
        assert_eq!(
            (first.path.as_str(), first.rule),
            (b.path, b.rule),
            "{:?} → {:?}: {violations:#?}",
            b.from,
            b.to
        );
        asked += usize::from(second_opinion::xmllint(&xsd, broken.as_bytes()).is_some());
    }
    asked
}

#[test]
fn broken_camt_053_statements_are_rejected_with_the_right_path_and_rule() {
    let asked = check_corpus(
        CAMT,
        CAMT_BREAKS,
        second_opinion::camt053,
        "camt.053.001.02.xsd",
    );
    eprintln!(
        "xmllint agreed on {asked} of {} camt.053 documents",
        CAMT_BREAKS.len() + 1
    );
}

#[test]
fn broken_settlement_reports_are_rejected_with_the_right_path_and_rule() {
    let asked = check_corpus(
        EXAMPLE_NET,
        SETTLEMENT_BREAKS,
        second_opinion::settlement_report,
        "SettlementReport-3.0.xsd",
    );
    let gross = check_corpus(
        EXAMPLE_GROSS,
        &SETTLEMENT_BREAKS[1..2],
        second_opinion::settlement_report,
        "SettlementReport-3.0.xsd",
    );
    eprintln!(
        "xmllint agreed on {} of {} settlement documents",
        asked + gross,
        SETTLEMENT_BREAKS.len() + 3
    );
}

#[test]
fn the_path_names_the_repeated_element_by_its_position() {
    let broken = CAMT.replacen(
        "<NtryRef>2</NtryRef>",
        "<NtryRef>2</NtryRef><NtryRef>3</NtryRef>",
        1,
    );
    let violations = camt053().validate(broken.as_bytes()).unwrap_err();
    assert_eq!(violations[0].path, format!("{STMT}/Ntry[2]/NtryRef[2]"));
    assert_eq!(violations[0].message, "more than 1 NtryRef in Ntry");
    let missing = CAMT.replacen("<Sts>BOOK</Sts>", "", 1);
    let violations = camt053().validate(missing.as_bytes()).unwrap_err();
    assert_eq!(violations[0].message, "missing Sts before BookgDt");
}
