//! `reconciliations`: what comparing a ledger date with the API's daily report found; and the
//! reads and writes reconciliation needs (the stored side of a date, appending entries found
//! only in the report, the whole-ledger balance-chain check).

use chrono::NaiveDate;
use serde_json::Value;
use sqlx::PgPool;

use super::feeds::{self, ChainBreak};
use crate::config::Topic;
use crate::report_api::Entry;

/// A stored entry as reconciliation compares it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEntry {
    pub entry_key: Vec<u8>,
    pub seq: i64,
    pub entry_type: String,
    pub psp_reference: String,
    pub amount: i64,
    pub raw: Value,
}

/// The outcome of comparing one ledger date.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconciliationParams<'a> {
    pub ledger_id: &'a str,
    pub topic: Topic,
    pub ledger_date: NaiveDate,
    pub status: &'a str,
    pub api_entries: i32,
    pub stored_entries: i32,
    pub inserted: i32,
    pub only_stored: i32,
    pub differing: i32,
    pub details: Value,
    /// When to look again (open dates).
    pub recheck_after: Option<std::time::Duration>,
}

/// The ledger dates of a feed that still need a look: every date from its first to its
/// newest stored entry, but never after tomorrow (a date in the future cannot have closed,
/// and an absurd one must not make reconciliation ask for every day until then), less those
/// already reconciled and those not due yet.
pub async fn dates_due(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
) -> sqlx::Result<Vec<NaiveDate>> {
    sqlx::query_scalar(
        "WITH span AS (
             SELECT min(ledger_date) AS first, max(ledger_date) AS last FROM entries
             WHERE ledger_id = $1 AND topic = $2
         )
         SELECT d::date FROM span,
             generate_series(span.first, least(span.last, current_date + 1), interval '1 day') d
         WHERE NOT EXISTS (SELECT 1 FROM reconciliations r
             WHERE r.ledger_id = $1 AND r.topic = $2 AND r.ledger_date = d::date
               AND (r.status = 'ok' OR r.next_check_at > now()))
         ORDER BY 1",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .fetch_all(pool)
    .await
}

/// How many (ledger, date) pairs reconciled cleanly on every topic.
pub async fn reconciled_dates(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM reconciliation_status WHERE reconciled")
        .fetch_one(pool)
        .await
}

/// How many payouts have every ledger date they cover (the dates of their funds entries)
/// reconciled cleanly on every topic: what a per-payout exporter delivers (the demo checks it).
pub async fn reconciled_payouts(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM payouts p
         WHERE NOT EXISTS (
             SELECT 1 FROM entries e
             WHERE e.ledger_id = p.ledger_id AND e.topic = 'funds'
               AND e.seq BETWEEN p.first_seq AND p.last_seq
               AND NOT EXISTS (SELECT 1 FROM reconciliation_status s
                               WHERE s.ledger_id = e.ledger_id
                                 AND s.ledger_date = e.ledger_date AND s.reconciled))",
    )
    .fetch_one(pool)
    .await
}

/// The stored entries of one ledger date.
pub async fn stored_on(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    date: NaiveDate,
) -> sqlx::Result<Vec<StoredEntry>> {
    sqlx::query_as(
        "SELECT entry_key, seq, entry_type, psp_reference, amount, raw FROM entries
         WHERE ledger_id = $1 AND topic = $2 AND ledger_date = $3 ORDER BY seq",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(date)
    .fetch_all(pool)
    .await
}

/// Appends entries found only in a daily report, after the feed's newest entry, under the
/// feed's row lock (the cursor is not moved). Returns how many were new.
pub async fn append_found(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    entries: &[Entry],
) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let last_seq: i64 = sqlx::query_scalar(
        "SELECT last_seq FROM feed_cursors WHERE ledger_id = $1 AND topic = $2 FOR UPDATE",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let inserted = feeds::insert_unsequenced(&mut tx, ledger_id, topic, last_seq, entries).await?;
    sqlx::query(
        "UPDATE feed_cursors SET last_seq = last_seq + $3 WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(inserted as i64)
    .execute(&mut *tx)
    .await?;
    if inserted > 0 {
        feeds::notify_new_entries(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// Records the outcome of one ledger date (replacing an earlier one).
pub async fn record(pool: &PgPool, r: &ReconciliationParams<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO reconciliations (ledger_id, topic, ledger_date, status, api_entries,
             stored_entries, inserted, only_stored, differing, details, checked_at, next_check_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(),
             now() + $11 * interval '1 millisecond')
         ON CONFLICT (ledger_id, topic, ledger_date) DO UPDATE SET
             status = EXCLUDED.status, api_entries = EXCLUDED.api_entries,
             stored_entries = EXCLUDED.stored_entries,
             inserted = reconciliations.inserted + EXCLUDED.inserted,
             only_stored = EXCLUDED.only_stored, differing = EXCLUDED.differing,
             details = EXCLUDED.details, checked_at = now(),
             next_check_at = EXCLUDED.next_check_at",
    )
    .bind(r.ledger_id)
    .bind(r.topic.as_str())
    .bind(r.ledger_date)
    .bind(r.status)
    .bind(r.api_entries)
    .bind(r.stored_entries)
    .bind(r.inserted)
    .bind(r.only_stored)
    .bind(r.differing)
    .bind(&r.details)
    .bind(r.recheck_after.map(|d| d.as_millis() as f64))
    .execute(pool)
    .await?;
    Ok(())
}

/// Every break of the balance chain over a whole feed, in `seq` order; recorded in
/// `balance_chain_breaks` (once each).
pub async fn chain_breaks(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
) -> sqlx::Result<Vec<ChainBreak>> {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "WITH chain AS (
             SELECT seq, amount, balance_before, balance_after,
                    lag(balance_after) OVER (ORDER BY seq) AS previous_after
             FROM entries WHERE ledger_id = $1 AND topic = $2
         ), breaks AS (
             SELECT seq, 'link' AS kind, previous_after AS expected, balance_before AS actual
             FROM chain WHERE previous_after IS NOT NULL AND previous_after <> balance_before
             UNION ALL
             SELECT seq, 'arithmetic', balance_before + amount, balance_after
             FROM chain WHERE balance_before + amount <> balance_after
         ), recorded AS (
             INSERT INTO balance_chain_breaks (ledger_id, topic, seq, kind, expected, actual)
             SELECT $1, $2, seq, kind, expected, actual FROM breaks
             ON CONFLICT DO NOTHING
         )
         SELECT seq, kind, expected, actual FROM breaks ORDER BY seq, kind",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, kind, expected, actual)| ChainBreak {
            seq,
            kind: if kind == "link" { "link" } else { "arithmetic" },
            expected,
            actual,
        })
        .collect())
}
