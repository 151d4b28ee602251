//! Reconciliation: the mirror checks itself. Every closed ledger date of every consented feed
//! is compared with the API's daily report (the dates endpoint, through all its pages): the
//! same entries by key and content, counts and sums per entry type. Entries found only in the
//! report are inserted (idempotently) and reported; entries only in the database are reported,
//! never deleted. Dates still open are looked at again after 30 minutes. The balance chain is
//! checked across each whole feed. Results are in `reconciliations`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Topic;
use crate::report_api::{Entry, PartnerClient};
use crate::store::grants;
use crate::store::reconcile::{self, ReconciliationParams, StoredEntry};
use crate::sync::SyncContext;

/// An open date is not asked about again before this (the API asks for at least 30 minutes).
pub const OPEN_DATE_RECHECK: Duration = Duration::from_secs(30 * 60);

/// What reconciling one feed found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FeedVerification {
    pub ledger_id: String,
    pub topic: String,
    pub dates_ok: usize,
    pub dates_mismatch: usize,
    pub dates_open: usize,
    pub inserted: u64,
    pub only_stored: u64,
    pub differing: u64,
    pub chain_breaks: usize,
    pub error: Option<String>,
}

/// What `verify` found, per feed.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub feeds: Vec<FeedVerification>,
}

impl VerifyReport {
    /// True when nothing is wrong (open dates are not wrong: they are not done yet).
    pub fn clean(&self) -> bool {
        self.feeds.iter().all(|f| {
            f.error.is_none() && f.dates_mismatch == 0 && f.chain_breaks == 0 && f.inserted == 0
        })
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:<6} {:>8} {:>9} {:>5} {:>9} {:>12} {:>10} {:>7}",
            "ledger",
            "topic",
            "dates ok",
            "mismatch",
            "open",
            "inserted",
            "only stored",
            "differing",
            "breaks"
        )?;
        for v in &self.feeds {
            write!(
                f,
                "{:<12} {:<6} {:>8} {:>9} {:>5} {:>9} {:>12} {:>10} {:>7}",
                v.ledger_id,
                v.topic,
                v.dates_ok,
                v.dates_mismatch,
                v.dates_open,
                v.inserted,
                v.only_stored,
                v.differing,
                v.chain_breaks
            )?;
            match &v.error {
                Some(e) => writeln!(f, "  FAILED: {e}")?,
                None => writeln!(f)?,
            }
        }
        writeln!(
            f,
            "{}",
            if self.clean() {
                "reconciled: no differences"
            } else {
                "DIFFERENCES FOUND (see reconciliations)"
            }
        )
    }
}

/// Reconciles every consented feed's due dates, one feed at a time.
pub async fn verify(ctx: &SyncContext, cancel: &CancellationToken) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut after: Option<String> = None;
    loop {
        let chunk = grants::open_by_ledger(&ctx.pool, after.as_deref(), 500).await?;
        let Some((last, _)) = chunk.last() else { break };
        after = Some(last.clone());
        for (ledger_id, holders) in chunk {
            let Some(partner) = ctx.health.order(&ctx.partners, &holders).into_iter().next() else {
                continue;
            };
            for &topic in &ctx.settings.sync.topics {
                if cancel.is_cancelled() {
                    return Ok(report);
                }
                let mut feed = FeedVerification {
                    ledger_id: ledger_id.clone(),
                    topic: topic.to_string(),
                    ..Default::default()
                };
                if let Err(e) =
                    verify_feed(ctx, &partner, &ledger_id, topic, &mut feed, cancel).await
                {
                    tracing::error!(ledger = %ledger_id, %topic, error = format!("{e:#}"), "reconciliation failed");
                    feed.error = Some(format!("{e:#}"));
                }
                report.feeds.push(feed);
            }
        }
    }
    Ok(report)
}

async fn verify_feed(
    ctx: &SyncContext,
    partner: &PartnerClient,
    ledger_id: &str,
    topic: Topic,
    out: &mut FeedVerification,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    for date in reconcile::dates_due(&ctx.pool, ledger_id, topic).await? {
        // Stop between dates when asked: each date is recorded on its own.
        if cancel.is_cancelled() {
            return Ok(());
        }
        let fetched = fetch_closed_date(ctx, partner, ledger_id, topic, date, cancel).await?;
        if cancel.is_cancelled() {
            return Ok(());
        }
        let Some(report) = fetched else {
            out.dates_open += 1;
            reconcile::record(
                &ctx.pool,
                &ReconciliationParams {
                    ledger_id,
                    topic,
                    ledger_date: date,
                    status: "open",
                    api_entries: 0,
                    stored_entries: 0,
                    inserted: 0,
                    only_stored: 0,
                    differing: 0,
                    details: json!({}),
                    recheck_after: Some(OPEN_DATE_RECHECK),
                },
            )
            .await?;
            continue;
        };
        let outcome = compare_date(ctx, ledger_id, topic, date, report).await?;
        if outcome.status == "ok" {
            out.dates_ok += 1;
        } else {
            out.dates_mismatch += 1;
            ctx.metrics.reconciliation_mismatch();
            tracing::warn!(ledger = %ledger_id, %topic, %date, inserted = outcome.inserted, only_stored = outcome.only_stored, differing = outcome.differing, "ledger date differs from the API's daily report");
        }
        out.inserted += outcome.inserted as u64;
        ctx.metrics.entries_ingested(topic, outcome.inserted as u64);
        out.only_stored += outcome.only_stored as u64;
        out.differing += outcome.differing as u64;
        reconcile::record(&ctx.pool, &outcome).await?;
        ctx.metrics.progressed();
    }
    let breaks = reconcile::chain_breaks(&ctx.pool, ledger_id, topic).await?;
    for b in &breaks {
        tracing::warn!(ledger = %ledger_id, %topic, seq = b.seq, kind = b.kind, expected = b.expected, actual = b.actual, "balance chain break");
    }
    out.chain_breaks = breaks.len();
    Ok(())
}

/// The whole daily report of a date, or `None` while the date is open (or when stopped on
/// request). Its pages are held in memory for the comparison, so their bytes are bounded
/// (`limits.max_report_bytes_per_date`), and so is the walk: a cursor seen twice means the
/// pages go round in a circle.
async fn fetch_closed_date(
    ctx: &SyncContext,
    partner: &PartnerClient,
    ledger_id: &str,
    topic: Topic,
    date: NaiveDate,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Vec<Entry>>> {
    let max_bytes = ctx.settings.limits.max_report_bytes_per_date;
    let mut entries = Vec::new();
    let mut bytes = 0u64;
    let mut cursors = crate::report_api::walk::Cursors::default();
    let mut cursor: Option<String> = None;
    for number in 1u64.. {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let page = partner
            .dates(ledger_id, topic, date, cursor.as_deref())
            .await
            .with_context(|| format!("fetching the daily report of {date}, page {number}"))?;
        if page.try_later {
            return Ok(None);
        }
        bytes += page.bytes as u64;
        if bytes > max_bytes {
            anyhow::bail!(
                "the daily report of {date} is over limits.max_report_bytes_per_date ({max_bytes} bytes) after {number} pages; not compared"
            );
        }
        entries.extend(page.items);
        match page.cursor {
            Some(next) if page.has_more => {
                if let Some(first) = cursors.repeat(&next) {
                    anyhow::bail!(
                        "the daily report of {date} goes round in a circle: page {number} returned the cursor of page {first}; not compared"
                    );
                }
                cursor = Some(next);
            }
            _ => return Ok(Some(entries)),
        }
    }
    unreachable!("the loop above returns")
}

/// Compares one closed date; inserts what only the report has.
async fn compare_date<'a>(
    ctx: &SyncContext,
    ledger_id: &'a str,
    topic: Topic,
    date: NaiveDate,
    api: Vec<Entry>,
) -> anyhow::Result<ReconciliationParams<'a>> {
    let stored = reconcile::stored_on(&ctx.pool, ledger_id, topic, date).await?;
    let by_key: HashMap<&[u8], &StoredEntry> =
        stored.iter().map(|s| (s.entry_key.as_slice(), s)).collect();
    let keys: Vec<[u8; 32]> = api.iter().map(Entry::key).collect();
    let mut missing = Vec::new();
    let mut differing = Vec::new();
    for (entry, key) in api.iter().zip(&keys) {
        match by_key.get(key.as_slice()) {
            None => missing.push(entry.clone()),
            Some(s)
                if s.amount != entry.amount
                    || s.entry_type != entry.entry_type
                    || s.raw != entry.raw_value() =>
            {
                differing.push(json!({"seq": s.seq, "psp_reference": s.psp_reference, "stored_amount": s.amount, "api_amount": entry.amount}));
            }
            Some(_) => {}
        }
    }
    let only_stored: Vec<_> = stored
        .iter()
        .filter(|s| !keys.iter().any(|k| k.as_slice() == s.entry_key.as_slice()))
        .map(|s| json!({"seq": s.seq, "psp_reference": s.psp_reference, "entry_type": s.entry_type, "amount": s.amount}))
        .collect();
    let inserted = if missing.is_empty() {
        0
    } else {
        reconcile::append_found(&ctx.pool, ledger_id, topic, &missing).await?
    };
    let api_sums = sums_by_type(api.iter().map(|e| (e.entry_type.as_str(), e.amount)));
    let stored_sums = sums_by_type(stored.iter().map(|s| (s.entry_type.as_str(), s.amount)));
    let clean = missing.is_empty() && differing.is_empty() && only_stored.is_empty();
    Ok(ReconciliationParams {
        ledger_id,
        topic,
        ledger_date: date,
        status: if clean { "ok" } else { "mismatch" },
        api_entries: api.len() as i32,
        stored_entries: stored.len() as i32,
        inserted: inserted as i32,
        only_stored: only_stored.len() as i32,
        differing: differing.len() as i32,
        details: json!({
            "inserted": missing.iter().map(|e| json!({"psp_reference": e.psp_reference, "entry_type": e.entry_type, "amount": e.amount})).collect::<Vec<_>>(),
            "only_stored": only_stored,
            "differing": differing,
            "api_by_type": by_type_json(&api_sums),
            "stored_by_type": by_type_json(&stored_sums),
        }),
        recheck_after: None,
    })
}

/// Per entry type: how many entries and their exact sum (in `i128`: no sum of `i64` amounts
/// overflows it).
pub fn sums_by_type<'a>(
    items: impl Iterator<Item = (&'a str, i64)>,
) -> BTreeMap<String, (i64, i128)> {
    let mut by: BTreeMap<String, (i64, i128)> = BTreeMap::new();
    for (entry_type, amount) in items {
        let slot = by.entry(entry_type.to_owned()).or_default();
        slot.0 += 1;
        slot.1 += i128::from(amount);
    }
    by
}

/// `{type: {"entries": n, "sum": s}}`; a sum beyond what a JSON reader can take as a 64-bit
/// integer is written as a string of digits, never rounded.
fn by_type_json(sums: &BTreeMap<String, (i64, i128)>) -> serde_json::Value {
    sums.iter()
        .map(|(t, (n, s))| {
            let sum = match i64::try_from(*s) {
                Ok(fits) => json!(fits),
                Err(_) => json!(s.to_string()),
            };
            (t.clone(), json!({"entries": n, "sum": sum}))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
