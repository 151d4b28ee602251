//! `export::camt`: one ledger's `funds` feed for one closed ledger date as an ISO 20022
//! camt.053.001.02 bank-to-customer statement (`BkToCstmrStmt`), the format bookkeeping systems
//! import as a bank statement. The funds feed is the money Vipps MobilePay holds for the
//! merchant, so the ledger plays the part of the bank account.
//!
//! Every document is validated against the official schema ([`crate::export::xsd::camt053`],
//! embedded from `src/export/xsd/schemas/`) before it is returned: one that does not validate
//! is an error ([`CamtError::Schema`]) and never written. The mapping:
//!
//! | camt.053 element                        | carries                                                    |
//! |-----------------------------------------|------------------------------------------------------------|
//! | `GrpHdr/MsgId`                          | `VLS-<ledger>-<YYYY-MM-DD>`; see "Identifiers" below        |
//! | `GrpHdr/CreDtTm`, `Stmt/CreDtTm`        | [`Statement::created_at`], UTC                             |
//! | `Stmt/Id`                               | `<ledger>-<YYYY-MM-DD>`; see "Identifiers" below            |
//! | `Stmt/FrToDt`                           | the ledger date, `T00:00:00` to `T23:59:59`, no time zone  |
//! | `Acct/Id/Othr/Id`                       | the ledger id (at most 34 characters, else an error)       |
//! | `Acct/Id/Othr/SchmeNm/Prtry`, `Issr`    | `VippsMobilePayLedger`, `VippsMobilePay`                   |
//! | `Acct/Ccy`                              | the ledger's currency                                      |
//! | `Acct/Ownr/Id/OrgId/Othr`               | [`Statement::owner`] (`Id`, `SchmeNm/Prtry` = scheme), if given |
//! | `Bal` `OPBD`                            | the opening balance: `balance_before` of the date's first entry |
//! | `Bal` `CLBD`                            | the closing balance: `balance_after` of the date's last entry |
//! | `TxsSummry/TtlNtries`                   | count, sum of absolute amounts, net amount with `CdtDbtInd` |
//! | `TxsSummry/TtlCdtNtries`, `TtlDbtNtries`| count and sum of the credits (amount ≥ 0) and the debits   |
//! | `Ntry/NtryRef`                          | the entry's `seq`                                          |
//! | `Ntry/Amt`, `Ntry/CdtDbtInd`            | the absolute amount; `CRDT` when amount ≥ 0, else `DBIT`   |
//! | `Ntry/Sts`                              | `BOOK` (a closed ledger date is final)                     |
//! | `Ntry/BookgDt/Dt`, `Ntry/ValDt/Dt`      | the ledger date                                            |
//! | `Ntry/AcctSvcrRef`, `TxDtls/Refs/AcctSvcrRef` | `psp_reference` (omitted when empty)                 |
//! | `Ntry/BkTxCd/Prtry/Cd`, `Issr`          | the entry type as Vipps MobilePay names it (`capture`, `refund`, `payout-scheduled`, …), `VippsMobilePay` |
//! | `TxDtls/Refs/EndToEndId`                | the merchant's `reference`, or `NOTPROVIDED` when there is none or it is longer than 35 characters |
//! | `Ntry/AddtlNtryInf`                     | `<entry type>`, then `; reference: <reference>` when there is one |
//!
//! Amounts are unsigned in camt.053: every amount is written as its absolute value in the
//! currency's decimals (`crate::export::decimal`) with a `CdtDbtInd`, `CRDT` for ≥ 0 and `DBIT`
//! for < 0; balances, too, can be negative (`DBIT`). The schema allows 18 digits, so an amount or
//! sum of more than 18 digits in minor units is an error. `BkTxCd` carries no ISO `Domn` code: the
//! schema does not require one and the Vipps MobilePay entry types have no agreed mapping.
//!
//! Identifiers: `MsgId` and `Stmt/Id` are deterministic, so the same statement exported twice
//! has the same ids and an importer can recognise the duplicate. When the plain form is longer
//! than the 35 characters allowed, the ledger id in it is replaced by `H` and the first 16 hex
//! digits of its SHA-256 (`VLS-H1a2b…-2026-11-20`), which is stable too.
//!
//! Texts: identifiers (ledger id, owner, `psp_reference`, entry type) that the schema cannot
//! hold, because they are empty, too long or carry characters XML 1.0 forbids, are an error
//! ([`CamtError::InvalidField`]) naming the field, ledger and seq, never a silently changed id.
//! Free text (`AddtlNtryInf`) is cut to 499 characters plus `…` and forbidden characters are
//! replaced by a space. The merchant's `reference` (up to 64 characters at Vipps MobilePay) is
//! only used as `EndToEndId` when it fits; it is always kept whole (within 500) in `AddtlNtryInf`.
//! `&`, `<`, `>` and quotes are escaped by quick-xml; the document is UTF-8.
//!
//! Input that does not make one statement is rejected ([`CamtError::ForeignEntry`],
//! [`CamtError::ChainBroken`]): an entry of another ledger, topic, currency or date, entries
//! out of `seq` order, and a balance chain that does not run from the opening to the closing
//! balance. A date without entries is a valid statement with equal balances, no `TxsSummry`
//! and no `Ntry`.

use super::xml::{Io, Xml};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};

use crate::export::{decimal, xsd};
use crate::store::export_rows::ExportEntryRow;

mod check;
use check::{check, indicator, Checked, CheckedEntry};

/// The XML namespace of camt.053.001.02.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02";

/// The only feed a statement is made of: the money held for the merchant.
const FUNDS_TOPIC: &str = "funds";

/// Largest amount in minor units the schema holds (`totalDigits` 18).
const MAX_AMOUNT_MINOR: i128 = 999_999_999_999_999_999;

/// `Max35Text`, the limit of most identifiers, in characters.
const MAX_ID: usize = 35;

/// `Max34Text`, the limit of `Acct/Id/Othr/Id`, in characters.
const MAX_ACCOUNT_ID: usize = 34;

/// `Max500Text`, the limit of `AddtlNtryInf`, in characters.
const MAX_INFO: usize = 500;

/// Issuer of the proprietary account scheme and bank transaction codes.
const ISSUER: &str = "VippsMobilePay";

/// One ledger's funds feed for one ledger date, ready to be written.
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    /// The ledger, written as the account id.
    pub ledger_id: &'a str,
    /// ISO 4217 code of the ledger's currency.
    pub currency: &'a str,
    /// The (closed) ledger date the statement covers.
    pub date: NaiveDate,
    /// Minor units: the balance before the date's first entry (from the chain).
    pub opening_balance: i64,
    /// Minor units: the balance after the date's last entry.
    pub closing_balance: i64,
    /// The date's funds entries of the ledger, by `seq`.
    pub entries: &'a [ExportEntryRow],
    /// When the statement is created (`CreDtTm`).
    pub created_at: DateTime<Utc>,
    /// The merchant owning the ledger as (scheme, id), e.g. `("business:NO:ORG", "987654321")`.
    pub owner: Option<(&'a str, &'a str)>,
}

/// Why a statement could not be written; each names the ledger and, for an entry, its seq.
#[derive(Debug, thiserror::Error)]
pub enum CamtError {
    /// An entry that does not belong in this statement.
    #[error("ledger {ledger} seq {seq}: {field} is {found:?}, the statement is for {expected:?}")]
    ForeignEntry {
        ledger: String,
        seq: i64,
        field: &'static str,
        found: String,
        expected: String,
    },
    /// The entries do not run from the opening to the closing balance.
    #[error("ledger {ledger}{}: balance chain broken: {detail}", at(.seq))]
    ChainBroken {
        ledger: String,
        seq: Option<i64>,
        detail: String,
    },
    /// A value the schema cannot hold (an identifier too long, empty or with forbidden
    /// characters; a malformed currency code; an amount of more than 18 digits).
    #[error("ledger {ledger}{}: {field} {reason}", at(.seq))]
    InvalidField {
        ledger: String,
        seq: Option<i64>,
        field: &'static str,
        reason: String,
    },
    /// The written document does not validate against the camt.053.001.02 schema: a bug in
    /// this module, caught before the statement leaves it.
    #[error(
        "ledger {ledger} {date}: the statement does not validate against camt.053.001.02: {}",
        listed(.violations)
    )]
    Schema {
        ledger: String,
        date: NaiveDate,
        violations: Vec<xsd::Violation>,
    },
    /// Writing the document failed (not expected for the in-memory buffer).
    #[error("writing the camt.053 document")]
    Write(#[from] std::io::Error),
}

fn at(seq: &Option<i64>) -> String {
    seq.map(|s| format!(" seq {s}")).unwrap_or_default()
}

/// The first violations, and how many more there are.
fn listed(violations: &[xsd::Violation]) -> String {
    /// Violations named in the message; the error value holds them all.
    const SHOWN: usize = 3;
    let mut text = violations
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if violations.len() > SHOWN {
        text.push_str(&format!("; and {} more", violations.len() - SHOWN));
    }
    text
}

/// Writes `statement` as a UTF-8 camt.053.001.02 document, after checking it (see the module
/// documentation for what is rejected), and validates the document against the schema.
pub fn write(statement: &Statement<'_>) -> Result<Vec<u8>, CamtError> {
    let checked = check(statement)?;
    let mut out = Xml::new();
    out.document(statement, &checked)?;
    validated(statement, out.into_inner())
}

/// `document` if it validates against the camt.053.001.02 schema, else [`CamtError::Schema`].
fn validated(statement: &Statement<'_>, document: Vec<u8>) -> Result<Vec<u8>, CamtError> {
    match xsd::camt053().validate(&document) {
        Ok(()) => Ok(document),
        Err(violations) => Err(CamtError::Schema {
            ledger: statement.ledger_id.to_owned(),
            date: statement.date,
            violations,
        }),
    }
}

/// The camt.053 document on the shared element writer.
trait Camt {
    fn amount(&mut self, name: &str, minor: i64, currency: &str) -> Io;
    fn document(&mut self, s: &Statement<'_>, c: &Checked<'_>) -> Io;
    fn account(&mut self, s: &Statement<'_>) -> Io;
    fn balance(&mut self, code: &str, minor: i64, s: &Statement<'_>) -> Io;
    fn summary(&mut self, s: &Statement<'_>, c: &Checked<'_>) -> Io;
    fn entry(&mut self, s: &Statement<'_>, e: &CheckedEntry<'_>) -> Io;
}

impl Camt for Xml {
    /// `<name Ccy="…">absolute decimal</name>`.
    fn amount(&mut self, name: &str, minor: i64, currency: &str) -> Io {
        self.0
            .create_element(name)
            .with_attribute(("Ccy", currency))
            .write_text_content(BytesText::new(&decimal(minor.abs(), currency)))?;
        Ok(())
    }

    fn document(&mut self, s: &Statement<'_>, c: &Checked<'_>) -> Io {
        let created = s.created_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        self.0
            .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let mut document = BytesStart::new("Document");
        document.push_attribute(("xmlns", NAMESPACE));
        self.0.write_event(Event::Start(document))?;
        self.open(&["BkToCstmrStmt", "GrpHdr"])?;
        self.text(&["MsgId"], &c.msg_id)?;
        self.text(&["CreDtTm"], &created)?;
        self.close(&["GrpHdr"])?;

        self.open(&["Stmt"])?;
        self.text(&["Id"], &c.stmt_id)?;
        self.text(&["CreDtTm"], &created)?;
        self.open(&["FrToDt"])?;
        self.text(&["FrDtTm"], &format!("{}T00:00:00", s.date))?;
        self.text(&["ToDtTm"], &format!("{}T23:59:59", s.date))?;
        self.close(&["FrToDt"])?;
        self.account(s)?;
        self.balance("OPBD", s.opening_balance, s)?;
        self.balance("CLBD", s.closing_balance, s)?;
        if !c.entries.is_empty() {
            self.summary(s, c)?;
        }
        for e in &c.entries {
            self.entry(s, e)?;
        }
        self.close(&["Document", "BkToCstmrStmt", "Stmt"])
    }

    fn account(&mut self, s: &Statement<'_>) -> Io {
        self.open(&["Acct", "Id", "Othr"])?;
        self.text(&["Id"], s.ledger_id)?;
        self.text(&["SchmeNm", "Prtry"], "VippsMobilePayLedger")?;
        self.text(&["Issr"], ISSUER)?;
        self.close(&["Id", "Othr"])?;
        self.text(&["Ccy"], s.currency)?;
        if let Some((scheme, id)) = s.owner {
            let owner = ["Ownr", "Id", "OrgId", "Othr"];
            self.open(&owner)?;
            self.text(&["Id"], id)?;
            self.text(&["SchmeNm", "Prtry"], scheme)?;
            self.close(&owner)?;
        }
        self.close(&["Acct"])
    }

    fn balance(&mut self, code: &str, minor: i64, s: &Statement<'_>) -> Io {
        self.open(&["Bal"])?;
        self.text(&["Tp", "CdOrPrtry", "Cd"], code)?;
        self.amount("Amt", minor, s.currency)?;
        self.text(&["CdtDbtInd"], indicator(minor))?;
        self.text(&["Dt", "Dt"], &s.date.to_string())?;
        self.close(&["Bal"])
    }

    fn summary(&mut self, s: &Statement<'_>, c: &Checked<'_>) -> Io {
        let ccy = s.currency;
        self.open(&["TxsSummry", "TtlNtries"])?;
        self.text(&["NbOfNtries"], &c.entries.len().to_string())?;
        self.text(&["Sum"], &decimal(c.total, ccy))?;
        self.text(&["TtlNetNtryAmt"], &decimal(c.net.abs(), ccy))?;
        self.text(&["CdtDbtInd"], indicator(c.net))?;
        self.close(&["TtlNtries"])?;
        for (name, (count, sum)) in [("TtlCdtNtries", c.credits), ("TtlDbtNtries", c.debits)] {
            self.open(&[name])?;
            self.text(&["NbOfNtries"], &count.to_string())?;
            self.text(&["Sum"], &decimal(sum, ccy))?;
            self.close(&[name])?;
        }
        self.close(&["TxsSummry"])
    }

    fn entry(&mut self, s: &Statement<'_>, e: &CheckedEntry<'_>) -> Io {
        let date = s.date.to_string();
        self.open(&["Ntry"])?;
        self.text(&["NtryRef"], &e.seq.to_string())?;
        self.amount("Amt", e.amount, s.currency)?;
        self.text(&["CdtDbtInd"], indicator(e.amount))?;
        self.text(&["Sts"], "BOOK")?;
        self.text(&["BookgDt", "Dt"], &date)?;
        self.text(&["ValDt", "Dt"], &date)?;
        if let Some(psp) = e.psp_reference {
            self.text(&["AcctSvcrRef"], psp)?;
        }
        self.open(&["BkTxCd", "Prtry"])?;
        self.text(&["Cd"], e.entry_type)?;
        self.text(&["Issr"], ISSUER)?;
        self.close(&["BkTxCd", "Prtry"])?;
        let refs = ["NtryDtls", "TxDtls", "Refs"];
        self.open(&refs)?;
        if let Some(psp) = e.psp_reference {
            self.text(&["AcctSvcrRef"], psp)?;
        }
        self.text(&["EndToEndId"], e.end_to_end_id)?;
        self.close(&refs)?;
        self.text(&["AddtlNtryInf"], &e.info)?;
        self.close(&["Ntry"])
    }
}

#[cfg(test)]
mod tests;
