//! `export::camt::check`: everything a statement must satisfy before a byte is written (one
//! ledger, one date, the funds feed, an unbroken chain, fields the schema can hold), and the
//! identifiers and texts derived from it.

use chrono::NaiveDate;
use sha2::{Digest as _, Sha256};

use super::{
    CamtError, Statement, FUNDS_TOPIC, MAX_ACCOUNT_ID, MAX_AMOUNT_MINOR, MAX_ID, MAX_INFO,
};

/// What `check` established, so writing cannot fail on content.
pub(super) struct Checked<'a> {
    pub(super) msg_id: String,
    pub(super) stmt_id: String,
    pub(super) entries: Vec<CheckedEntry<'a>>,
    /// Count and sum (minor units) of the entries with amount ≥ 0.
    pub(super) credits: (usize, i64),
    /// Count and sum of the absolute amounts of the entries with amount < 0.
    pub(super) debits: (usize, i64),
    /// Sum of all absolute amounts.
    pub(super) total: i64,
    /// Closing minus opening balance.
    pub(super) net: i64,
}

pub(super) struct CheckedEntry<'a> {
    pub(super) seq: i64,
    pub(super) amount: i64,
    pub(super) psp_reference: Option<&'a str>,
    pub(super) end_to_end_id: &'a str,
    pub(super) entry_type: &'a str,
    pub(super) info: String,
}

pub(super) fn check<'a>(s: &Statement<'a>) -> Result<Checked<'a>, CamtError> {
    let ledger = s.ledger_id;
    let invalid = |seq: Option<i64>, field: &'static str, reason: String| CamtError::InvalidField {
        ledger: ledger.to_owned(),
        seq,
        field,
        reason,
    };
    identifier(s.ledger_id, MAX_ACCOUNT_ID).map_err(|r| invalid(None, "ledger_id", r))?;
    if s.currency.len() != 3 || !s.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            None,
            "currency",
            format!("{:?} is not an ISO 4217 code", s.currency),
        ));
    }
    if let Some((scheme, id)) = s.owner {
        identifier(scheme, MAX_ID).map_err(|r| invalid(None, "owner scheme", r))?;
        identifier(id, MAX_ID).map_err(|r| invalid(None, "owner id", r))?;
    }
    amount(s.opening_balance.into()).map_err(|r| invalid(None, "opening_balance", r))?;
    amount(s.closing_balance.into()).map_err(|r| invalid(None, "closing_balance", r))?;

    let chain = |seq: Option<i64>, detail: String| CamtError::ChainBroken {
        ledger: ledger.to_owned(),
        seq,
        detail,
    };
    let mut entries = Vec::with_capacity(s.entries.len());
    let (mut credits, mut debits) = ((0usize, 0i128), (0usize, 0i128));
    let mut balance = s.opening_balance;
    let mut previous_seq: Option<i64> = None;
    for e in s.entries {
        let seq = e.seq;
        let foreign = |field, found: &str, expected: &str| CamtError::ForeignEntry {
            ledger: e.ledger_id.clone(),
            seq,
            field,
            found: found.to_owned(),
            expected: expected.to_owned(),
        };
        if e.ledger_id != ledger {
            return Err(foreign("ledger_id", &e.ledger_id, ledger));
        }
        if e.topic != FUNDS_TOPIC {
            return Err(foreign("topic", &e.topic, FUNDS_TOPIC));
        }
        if e.currency != s.currency {
            return Err(foreign("currency", &e.currency, s.currency));
        }
        if e.ledger_date != Some(s.date) {
            let found = e.ledger_date.map(|d| d.to_string()).unwrap_or_default();
            return Err(foreign("ledger_date", &found, &s.date.to_string()));
        }
        if let Some(prev) = previous_seq.filter(|&p| p >= seq) {
            return Err(chain(Some(seq), format!("seq follows seq {prev}")));
        }
        previous_seq = Some(seq);
        if e.balance_before != balance {
            return Err(chain(
                Some(seq),
                format!(
                    "balance_before is {} but the chain is at {balance}",
                    e.balance_before
                ),
            ));
        }
        if i128::from(e.balance_before) + i128::from(e.amount) != i128::from(e.balance_after) {
            return Err(chain(
                Some(seq),
                format!(
                    "balance_before {} + amount {} is not balance_after {}",
                    e.balance_before, e.amount, e.balance_after
                ),
            ));
        }
        amount(e.amount.into()).map_err(|r| invalid(Some(seq), "amount", r))?;
        amount(e.balance_after.into()).map_err(|r| invalid(Some(seq), "balance_after", r))?;
        balance = e.balance_after;

        let totals = if e.amount >= 0 {
            &mut credits
        } else {
            &mut debits
        };
        totals.0 += 1;
        totals.1 += i128::from(e.amount).abs();

        identifier(&e.entry_type, MAX_ID).map_err(|r| invalid(Some(seq), "entry_type", r))?;
        let psp_reference = if e.psp_reference.is_empty() {
            None
        } else {
            identifier(&e.psp_reference, MAX_ID)
                .map_err(|r| invalid(Some(seq), "psp_reference", r))?;
            Some(e.psp_reference.as_str())
        };
        let reference = e.reference.as_deref().filter(|r| !r.is_empty());
        let end_to_end_id = reference
            .filter(|r| identifier(r, MAX_ID).is_ok())
            .unwrap_or("NOTPROVIDED");
        let mut info = e.entry_type.clone();
        if let Some(r) = reference {
            info.push_str("; reference: ");
            info.push_str(r);
        }
        entries.push(CheckedEntry {
            seq,
            amount: e.amount,
            psp_reference,
            end_to_end_id,
            entry_type: &e.entry_type,
            info: free_text(&info, MAX_INFO),
        });
    }
    let net = i128::from(s.opening_balance)
        + s.entries.iter().map(|e| i128::from(e.amount)).sum::<i128>();
    if balance != s.closing_balance || net != i128::from(s.closing_balance) {
        return Err(chain(
            previous_seq,
            format!(
                "the entries end at {balance}, the closing balance is {}",
                s.closing_balance
            ),
        ));
    }
    let sum = |field, v: i128| {
        amount(v)
            .map(|()| v as i64)
            .map_err(|r| invalid(None, field, r))
    };
    Ok(Checked {
        msg_id: identifier_for("VLS-", ledger, s.date),
        stmt_id: identifier_for("", ledger, s.date),
        entries,
        credits: (credits.0, sum("sum of credits", credits.1)?),
        debits: (debits.0, sum("sum of debits", debits.1)?),
        total: sum("sum of all entries", credits.1 + debits.1)?,
        net: sum("net amount", net - i128::from(s.opening_balance))?,
    })
}

/// An identifier as the schema holds it, or why not.
pub(super) fn identifier(value: &str, max: usize) -> Result<(), String> {
    let len = value.chars().count();
    if len == 0 {
        Err("is empty".to_owned())
    } else if len > max {
        Err(format!("{value:?} is longer than {max} characters"))
    } else if !value.chars().all(xml_char) {
        Err(format!("{value:?} has a character XML 1.0 forbids"))
    } else {
        Ok(())
    }
}

/// Minor units the schema's amounts (18 digits) hold, or why not.
pub(super) fn amount(minor: i128) -> Result<(), String> {
    if minor.abs() <= MAX_AMOUNT_MINOR {
        Ok(())
    } else {
        Err(format!("{minor} has more than 18 digits"))
    }
}

/// Free text cut to `max` characters (the last being `…` when cut), forbidden characters as
/// spaces.
pub(super) fn free_text(value: &str, max: usize) -> String {
    let clean = value.chars().map(|c| if xml_char(c) { c } else { ' ' });
    if value.chars().count() <= max {
        clean.collect()
    } else {
        clean.take(max - 1).chain(std::iter::once('…')).collect()
    }
}

/// Whether XML 1.0 allows `c` in a document.
pub(super) fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `<prefix><ledger>-<date>`, or, when longer than 35 characters, the ledger replaced by `H`
/// and 16 hex digits of its SHA-256.
pub(super) fn identifier_for(prefix: &str, ledger: &str, date: NaiveDate) -> String {
    let plain = format!("{prefix}{ledger}-{date}");
    if plain.chars().count() <= MAX_ID {
        return plain;
    }
    let digest = Sha256::digest(ledger.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}H{hex}-{date}")
}

/// `CRDT` for ≥ 0, `DBIT` below.
pub(super) fn indicator(minor: i64) -> &'static str {
    if minor >= 0 {
        "CRDT"
    } else {
        "DBIT"
    }
}
