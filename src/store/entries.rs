//! Reading `entries` back: for comparisons (the demo, tests) and summaries for people.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::config::Topic;

/// A stored entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EntryRow {
    pub ledger_id: String,
    pub topic: String,
    pub seq: i64,
    pub entry_key: Vec<u8>,
    pub psp_reference: String,
    pub entry_type: String,
    pub time: DateTime<Utc>,
    pub ledger_date: Option<NaiveDate>,
    pub reference: Option<String>,
    pub currency: String,
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    pub recipient_handle: Option<String>,
    pub raw: Value,
}

/// Per (ledger, topic): how many entries, their sum, and the newest balance.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct FeedSummaryRow {
    pub ledger_id: String,
    pub topic: String,
    pub entries: i64,
    #[sqlx(try_from = "String")]
    pub amount_sum: super::MinorSum,
    pub balance: Option<i64>,
    pub currency: Option<String>,
    pub caught_up_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub blocked_reason: Option<String>,
    /// Conflicting re-deliveries recorded for this feed.
    pub conflicts: i64,
}

/// Every entry of one feed in feed order.
pub async fn feed_entries(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
) -> sqlx::Result<Vec<EntryRow>> {
    sqlx::query_as(
        "SELECT ledger_id, topic, seq, entry_key, psp_reference, entry_type, time, ledger_date,
             reference, currency, amount, balance_before, balance_after, recipient_handle, raw
         FROM entries WHERE ledger_id = $1 AND topic = $2 ORDER BY seq",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .fetch_all(pool)
    .await
}

/// Summary of every feed with a cursor, by ledger and topic.
pub async fn feed_summaries(pool: &PgPool) -> sqlx::Result<Vec<FeedSummaryRow>> {
    sqlx::query_as(
        "SELECT c.ledger_id, c.topic,
             (SELECT count(*) FROM entries e WHERE e.ledger_id = c.ledger_id AND e.topic = c.topic) AS entries,
             (SELECT coalesce(sum(amount), 0)::text FROM entries e
                 WHERE e.ledger_id = c.ledger_id AND e.topic = c.topic) AS amount_sum,
             c.last_balance_after AS balance,
             l.currency, c.caught_up_at, c.consecutive_failures, c.last_error, c.next_attempt_at,
             c.blocked_reason,
             (SELECT count(*) FROM entry_conflicts x
                 WHERE x.ledger_id = c.ledger_id AND x.topic = c.topic) AS conflicts
         FROM feed_cursors c JOIN ledgers l USING (ledger_id)
         ORDER BY c.ledger_id, c.topic",
    )
    .fetch_all(pool)
    .await
}

/// Number of stored entries.
pub async fn count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(pool)
        .await
}
