//! Payouts as an accountant books them: one record per payout (`export --kind payouts`),
//! from the `payout_totals` view (docs/schema.md): the amount paid out and the bank account,
//! and what it settles: the transactions' captures, refunds and other movements, the fees
//! charged for them and the fees retained, each in minor units and as a decimal.

use serde::Serialize;

use super::decimal;
use crate::store::export_rows::PayoutRow;

/// One payout; the column names are documented in README.md, "Exporting".
#[derive(Debug, Serialize)]
pub struct PayoutRecord {
    pub ledger_id: String,
    pub payout_reference: String,
    pub bank_reference: Option<String>,
    pub time: String,
    pub first_ledger_date: Option<String>,
    pub last_ledger_date: Option<String>,
    pub entries: i64,
    pub bank_account: Option<String>,
    pub currency: String,
    pub paid_out_minor: i128,
    pub paid_out: String,
    pub transactions: i64,
    pub captured_minor: i128,
    pub captured: String,
    pub refunded_minor: i128,
    pub refunded: String,
    pub transactions_other_minor: i128,
    pub transactions_other: String,
    pub fees_charged_minor: i128,
    pub fees_charged: String,
    pub fees_retained_minor: i128,
    pub fees_retained: String,
    pub ledger_other_minor: i128,
    pub ledger_other: String,
}

impl From<PayoutRow> for PayoutRecord {
    fn from(r: PayoutRow) -> Self {
        let c = r.currency.as_str();
        PayoutRecord {
            ledger_id: r.ledger_id.clone(),
            payout_reference: r.payout_reference.clone(),
            bank_reference: r.bank_reference.clone(),
            time: r.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            first_ledger_date: r.first_ledger_date.map(|d| d.to_string()),
            last_ledger_date: r.last_ledger_date.map(|d| d.to_string()),
            entries: r.entries,
            bank_account: match (&r.bank_account_scheme, &r.bank_account_id) {
                (Some(scheme), Some(id)) => Some(format!("{scheme} {id}")),
                (None, Some(id)) => Some(id.clone()),
                _ => None,
            },
            paid_out_minor: r.paid_out.0,
            paid_out: decimal(r.paid_out.0, c),
            transactions: r.transactions,
            captured_minor: r.captured.0,
            captured: decimal(r.captured.0, c),
            refunded_minor: r.refunded.0,
            refunded: decimal(r.refunded.0, c),
            transactions_other_minor: r.transactions_other.0,
            transactions_other: decimal(r.transactions_other.0, c),
            fees_charged_minor: r.fees_charged.0,
            fees_charged: decimal(r.fees_charged.0, c),
            fees_retained_minor: r.fees_retained.0,
            fees_retained: decimal(r.fees_retained.0, c),
            ledger_other_minor: r.ledger_other.0,
            ledger_other: decimal(r.ledger_other.0, c),
            currency: r.currency,
        }
    }
}
