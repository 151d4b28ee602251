//! The bytes each kind of exporter delivers for one ledger date, or for one payout.

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgPool;

use crate::config::{CsvFormulas, ExporterKind, ExporterSettings, ExporterTarget};
use crate::export::payouts::{self, PayoutLineRecord, PayoutRecord};
use crate::export::{camt, gbat10, journal, settlement, EntryRecord, Format, Sink, SummaryRecord};
use crate::store::export_log::DueDate;
use crate::store::export_rows::{self, ExportEntryRow};

/// The webhook's body.
#[derive(Serialize)]
struct WebhookBody<'a> {
    exporter: &'a str,
    idempotency_key: &'a str,
    /// 0 for the date's first delivery; 1, 2, … for each delivery after it.
    revision: i32,
    /// The key of the delivery this one replaces (null for revision 0).
    revises: Option<&'a str>,
    ledger_id: &'a str,
    ledger_date: String,
    reconciliation: &'a str,
    summary: Vec<SummaryRecord>,
    entries: Vec<EntryRecord>,
}

/// A webhook delivery's `Idempotency-Key`: `<exporter>:<ledger>:<date>` for the first
/// delivery of a date, the same on every retry and after a restart; `…:r<n>` for revision
/// `n` (a forced or corrected delivery), which names the key it revises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    pub key: String,
    pub revision: i32,
    pub revises: Option<String>,
}

impl DeliveryKey {
    /// For a payout, `<exporter>:<ledger>:<date>:<payout>`, the payout's reference written as
    /// in file names (as it is if plain, else encoded), so that no reference can make two
    /// keys equal or look like a revision.
    pub fn new(exporter: &ExporterSettings, date: &DueDate, revision: i32) -> Self {
        let mut base = format!("{}:{}:{}", exporter.name, date.ledger_id, date.ledger_date);
        if let Some(payout) = &date.payout {
            base = format!("{base}:{}", super::deliver::name_part(payout));
        }
        let of = |revision: i32| match revision {
            0 => base.clone(),
            n => format!("{base}:r{n}"),
        };
        DeliveryKey {
            key: of(revision),
            revision,
            revises: (revision > 0).then(|| of(revision - 1)),
        }
    }
}

/// The date's entries cannot be written in this exporter's format (a camt.053 field over the
/// schema's length, a voucher of mixed currencies): the date is held with this reason and
/// never written, while the ledger's other dates go on.
#[derive(Debug, thiserror::Error)]
#[error("cannot be written as {kind}: {reason}")]
pub struct Unrepresentable {
    pub kind: &'static str,
    pub reason: String,
}

/// The webhook's body for a payout (`payout-webhook`).
#[derive(Serialize)]
struct PayoutWebhookBody<'a> {
    exporter: &'a str,
    idempotency_key: &'a str,
    revision: i32,
    revises: Option<&'a str>,
    ledger_id: &'a str,
    payout: PayoutRecord,
    lines: Vec<PayoutLineRecord>,
}

/// The bytes to deliver for a date (or a payout), and how many entries they hold; a
/// webhook's body carries its delivery key.
pub(super) async fn produce(
    pool: &PgPool,
    exporter: &ExporterSettings,
    date: &DueDate,
    format: Format,
    delivery: Option<&DeliveryKey>,
) -> anyhow::Result<(Vec<u8>, i32)> {
    if let Some(payout) = &date.payout {
        return produce_payout(pool, exporter, date, payout, format, delivery).await;
    }
    let unrepresentable = |reason: String| Unrepresentable {
        kind: exporter.kind.as_str(),
        reason,
    };
    let csv_formulas = csv_formulas(exporter);
    let rows = crate::store::export_rows::entries_on(
        pool,
        &date.ledger_id,
        date.ledger_date,
        exporter.partner.as_deref(),
    )
    .await
    .context("reading the date's entries")?;
    let n = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    let bytes = match exporter.kind {
        ExporterKind::Entries => write_records(
            (format, csv_formulas),
            rows.into_iter().map(EntryRecord::from),
        )?,
        ExporterKind::Summary => write_records((format, csv_formulas), summarize(&rows))?,
        ExporterKind::Journal => {
            let lines =
                journal::voucher(&date.ledger_id, date.ledger_date, &rows, &exporter.accounts)
                    .map_err(|e| unrepresentable(e.to_string()))?;
            write_records((format, csv_formulas), lines)?
        }
        ExporterKind::Gbat10 => {
            let lines =
                journal::voucher(&date.ledger_id, date.ledger_date, &rows, &exporter.accounts)
                    .map_err(|e| unrepresentable(e.to_string()))?;
            if lines.is_empty() {
                Vec::new()
            } else {
                let number = crate::store::export_rows::voucher_number(
                    pool,
                    &date.ledger_id,
                    date.ledger_date,
                )
                .await
                .context("numbering the voucher")?;
                gbat10::voucher(number, date.ledger_date, &date.ledger_id, &lines)
                    .map_err(|e| unrepresentable(e.to_string()))?
                    .into_bytes()
            }
        }
        ExporterKind::Camt053 => {
            match statement(pool, &date.ledger_id, date.ledger_date, &rows).await {
                Ok(xml) => xml,
                Err(e) => match e.downcast::<camt::CamtError>() {
                    Ok(camt::CamtError::Write(io)) => return Err(io.into()),
                    Ok(data) => return Err(unrepresentable(data.to_string()).into()),
                    Err(other) => return Err(other),
                },
            }
        }
        ExporterKind::Webhook => {
            let delivery = delivery.context("a webhook body needs its delivery key")?;
            serde_json::to_vec(&WebhookBody {
                exporter: &exporter.name,
                idempotency_key: &delivery.key,
                revision: delivery.revision,
                revises: delivery.revises.as_deref(),
                ledger_id: &date.ledger_id,
                ledger_date: date.ledger_date.to_string(),
                reconciliation: &date.reconciliation,
                summary: summarize(&rows),
                entries: rows.into_iter().map(EntryRecord::from).collect(),
            })?
        }
        ExporterKind::Payouts
        | ExporterKind::SettlementXml
        | ExporterKind::SettlementCsv
        | ExporterKind::PayoutWebhook => {
            anyhow::bail!(
                "a {} exporter delivers payouts, not dates",
                exporter.kind.as_str()
            )
        }
    };
    Ok((bytes, n))
}

/// The bytes to deliver for one payout, and how many funds entries it covers.
async fn produce_payout(
    pool: &PgPool,
    exporter: &ExporterSettings,
    date: &DueDate,
    reference: &str,
    format: Format,
    delivery: Option<&DeliveryKey>,
) -> anyhow::Result<(Vec<u8>, i32)> {
    let payout = export_rows::payout(
        pool,
        &date.ledger_id,
        reference,
        exporter.partner.as_deref(),
    )
    .await
    .context("reading the payout")?
    .with_context(|| format!("payout {reference} is no longer in the database"))?;
    let n = i32::try_from(payout.entries).unwrap_or(i32::MAX);
    let csv_formulas = csv_formulas(exporter);
    let bytes = match exporter.kind {
        ExporterKind::SettlementXml | ExporterKind::SettlementCsv => {
            let csv = (exporter.kind == ExporterKind::SettlementCsv).then_some(csv_formulas);
            match crate::export::settlement_document(pool, vec![payout], csv).await {
                Ok((document, _)) => document,
                Err(e) => {
                    return Err(match e.downcast::<settlement::SettlementError>() {
                        Ok(settlement::SettlementError::Write(io)) => io.into(),
                        Ok(data) => Unrepresentable {
                            kind: exporter.kind.as_str(),
                            reason: data.to_string(),
                        }
                        .into(),
                        Err(other) => other,
                    })
                }
            }
        }
        ExporterKind::Payouts | ExporterKind::PayoutWebhook => {
            let transactions = export_rows::payout_transactions(
                pool,
                &date.ledger_id,
                std::slice::from_ref(&payout.payout_reference),
            )
            .await
            .context("reading the payout's transactions")?;
            let lines = payouts::lines(&payout, &transactions);
            if exporter.kind == ExporterKind::Payouts {
                write_records((format, csv_formulas), lines)?
            } else {
                let delivery = delivery.context("a webhook body needs its delivery key")?;
                serde_json::to_vec(&PayoutWebhookBody {
                    exporter: &exporter.name,
                    idempotency_key: &delivery.key,
                    revision: delivery.revision,
                    revises: delivery.revises.as_deref(),
                    ledger_id: &date.ledger_id,
                    payout: PayoutRecord::from(payout),
                    lines,
                })?
            }
        }
        other => anyhow::bail!("a {} exporter delivers dates, not payouts", other.as_str()),
    };
    Ok((bytes, n))
}

/// Per (topic, entry type, currency): entries and their sum, as the summary export writes
/// them. The same grouping as the `daily_summary` view that `export --kind summary` reads,
/// done here on the rows a delivery has already read rather than by a second query per date.
pub fn summarize(rows: &[ExportEntryRow]) -> Vec<SummaryRecord> {
    // Sums in i128: a sum of i64 amounts cannot overflow it.
    let mut by: std::collections::BTreeMap<(&str, &str, &str), (i64, i128)> = Default::default();
    for r in rows {
        let slot = by
            .entry((r.topic.as_str(), r.entry_type.as_str(), r.currency.as_str()))
            .or_default();
        slot.0 += 1;
        slot.1 += i128::from(r.amount);
    }
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    by.into_iter()
        .map(
            |((topic, entry_type, currency), (entries, sum))| SummaryRecord {
                ledger_id: first.ledger_id.clone(),
                topic: topic.to_owned(),
                ledger_date: first.ledger_date.map(|d| d.to_string()),
                entry_type: entry_type.to_owned(),
                currency: currency.to_owned(),
                entries,
                amount_minor: sum,
                amount: crate::export::decimal(sum, currency),
            },
        )
        .collect()
}

/// The camt.053 statement of a date's `funds` entries.
pub async fn statement(
    pool: &PgPool,
    ledger_id: &str,
    date: NaiveDate,
    rows: &[ExportEntryRow],
) -> anyhow::Result<Vec<u8>> {
    let funds: Vec<ExportEntryRow> = rows
        .iter()
        .filter(|r| r.topic == "funds")
        .cloned()
        .collect();
    let info = crate::store::export_rows::ledger_info(pool, ledger_id)
        .await?
        .with_context(|| format!("ledger {ledger_id} is not in the database"))?;
    let (opening, closing) = match (funds.first(), funds.last()) {
        (Some(first), Some(last)) => (first.balance_before, last.balance_after),
        _ => {
            let b = crate::store::export_rows::funds_balance_before(pool, ledger_id, date).await?;
            (b, b)
        }
    };
    let currency = funds
        .first()
        .map(|r| r.currency.clone())
        .or(info.currency.clone())
        .with_context(|| format!("ledger {ledger_id}: currency unknown"))?;
    let owner = match (&info.owner_scheme, &info.owner_id) {
        (Some(s), Some(i)) => Some((s.as_str(), i.as_str())),
        _ => None,
    };
    let xml = camt::write(&camt::Statement {
        ledger_id,
        currency: &currency,
        date,
        opening_balance: opening,
        closing_balance: closing,
        entries: &funds,
        created_at: chrono::Utc::now(),
        owner,
    })?;
    Ok(xml)
}

/// What the exporter's CSV does with formula-like cells (webhooks carry JSON: the default).
fn csv_formulas(exporter: &ExporterSettings) -> CsvFormulas {
    match &exporter.target {
        ExporterTarget::Directory { csv_formulas, .. } => *csv_formulas,
        ExporterTarget::Webhook { .. } => CsvFormulas::default(),
    }
}

fn write_records<T: Serialize>(
    (format, csv_formulas): (Format, CsvFormulas),
    records: impl IntoIterator<Item = T>,
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut sink = Sink::new(format, csv_formulas, &mut out);
    for r in records {
        sink.write(&r)?;
    }
    sink.finish()?;
    Ok(out)
}
