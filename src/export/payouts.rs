//! Payouts as an accountant books them: one record per payout (`export --kind payouts`),
//! from the `payout_totals` view (docs/schema.md): the amount paid out and the bank account,
//! and what it settles: the transactions' captures, refunds and other movements, the fees
//! charged for them and the fees retained, each in minor units and as a decimal; and, for
//! the scheduled `payouts` exporter, one file per payout of its lines ([`lines`]).

use serde::Serialize;

use super::decimal;
use crate::store::export_rows::{PayoutRow, PayoutTransactionRow};

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

/// One line of a payout's file (the scheduled `payouts` exporter, one file per payout): a
/// transaction it settles, its fees retained, its other ledger-level movements, and the
/// payout itself, last. `amount` is what the line added to the payout: the amounts of the
/// other lines sum to the `payout` line's, which is what reached the bank. A transaction's
/// `fees_charged` is what the fees feed charged for it (negative), and `net` its amount after
/// them; on net settlement the `fees-retained` line is where those fees left the payout.
#[derive(Debug, Serialize)]
pub struct PayoutLineRecord {
    pub ledger_id: String,
    pub payout_reference: String,
    pub bank_reference: Option<String>,
    pub bank_account: Option<String>,
    /// `transaction`, `fees-retained`, `other` or `payout`.
    pub line: &'static str,
    pub psp_reference: Option<String>,
    pub reference: Option<String>,
    pub recipient_handle: Option<String>,
    pub time: String,
    pub currency: String,
    pub amount_minor: i128,
    pub amount: String,
    pub fees_charged_minor: i128,
    pub fees_charged: String,
    pub net_minor: i128,
    pub net: String,
}

/// A payout's lines: its transactions by time, then `fees-retained` and `other` (when not
/// zero), then the payout.
pub fn lines(payout: &PayoutRow, transactions: &[PayoutTransactionRow]) -> Vec<PayoutLineRecord> {
    let c = payout.currency.as_str();
    let totals = PayoutRecord::from(payout.clone());
    let line = |line: &'static str,
                t: Option<&PayoutTransactionRow>,
                time: String,
                amount: i128,
                fees: i128| PayoutLineRecord {
        ledger_id: payout.ledger_id.clone(),
        payout_reference: payout.payout_reference.clone(),
        bank_reference: payout.bank_reference.clone(),
        bank_account: totals.bank_account.clone(),
        line,
        psp_reference: t.map(|t| t.psp_reference.clone()),
        reference: t.and_then(|t| t.reference.clone()),
        recipient_handle: t.and_then(|t| t.recipient_handle.clone()),
        time,
        currency: payout.currency.clone(),
        amount_minor: amount,
        amount: decimal(amount, c),
        fees_charged_minor: fees,
        fees_charged: decimal(fees, c),
        net_minor: amount + fees,
        net: decimal(amount + fees, c),
    };
    let mut out: Vec<PayoutLineRecord> = transactions
        .iter()
        .filter(|t| t.payout_reference == payout.payout_reference)
        .map(|t| {
            line(
                "transaction",
                Some(t),
                t.first_time
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                t.captured.0 + t.refunded.0 + t.other.0,
                t.fees.0,
            )
        })
        .collect();
    for (name, amount) in [
        ("fees-retained", payout.fees_retained.0),
        ("other", payout.ledger_other.0),
    ] {
        if amount != 0 {
            out.push(line(name, None, totals.time.clone(), amount, 0));
        }
    }
    out.push(line(
        "payout",
        None,
        totals.time.clone(),
        payout.paid_out.0,
        0,
    ));
    out
}
