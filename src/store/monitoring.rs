//! Read-only queries for monitoring: where every consented feed stands (lag, last success,
//! failures), how many ledgers are in each state, which partners failed, the latest feed
//! errors. Used by `/metrics` (at scrape time, under a statement timeout) and by `status`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::config::Topic;

/// The states of a ledger, in the order they are decided (the first that applies):
/// `no_access` (no open grant: not polled), `blocked` (a feed's cursor was rejected; waits for
/// `reset-cursor`), `failing` (a feed's last attempt failed; it backs off), `caught_up` (every
/// configured topic reached the feed's end at least once), `syncing` (the rest: not yet
/// caught up).
pub const LEDGER_STATES: &[&str] = &["caught_up", "syncing", "failing", "blocked", "no_access"];

/// One feed (ledger, topic) of a ledger with an open grant.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct FeedHealthRow {
    pub ledger_id: String,
    pub topic: String,
    /// Seconds from the `time` of the feed's last stored entry (highest `seq`) to now; `None`
    /// when nothing is stored.
    pub lag_seconds: Option<f64>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub caught_up_at: Option<DateTime<Utc>>,
    pub blocked_reason: Option<String>,
}

/// A feed's latest error.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct FeedErrorRow {
    pub ledger_id: String,
    pub topic: String,
    pub at: DateTime<Utc>,
    pub error: String,
    /// Failed attempts since the last success (0: it has recovered since).
    pub consecutive_failures: i32,
}

/// What a scrape reads from the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitoringSnapshot {
    pub feeds: Vec<FeedHealthRow>,
    /// (state, ledgers) for the states that occur.
    pub ledger_states: Vec<(String, i64)>,
    /// Partners whose last ledger listing failed.
    pub partners_failed: Vec<String>,
    /// The adaptive polling schedule now.
    pub polling: super::poll_schedule::ScheduleSummary,
}

/// `SELECT 1`: whether the database answers at all (`/readyz`).
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

fn topic_names(topics: &[Topic]) -> Vec<&'static str> {
    topics.iter().map(|t| t.as_str()).collect()
}

/// The feeds of `topics` of every ledger with an open grant.
pub async fn feed_health(
    conn: &mut PgConnection,
    topics: &[Topic],
) -> sqlx::Result<Vec<FeedHealthRow>> {
    sqlx::query_as(
        "SELECT c.ledger_id, c.topic,
             extract(epoch FROM now() - e.time)::float8 AS lag_seconds,
             c.last_success_at, c.consecutive_failures, c.caught_up_at, c.blocked_reason
         FROM feed_cursors c
         LEFT JOIN entries e
             ON e.ledger_id = c.ledger_id AND e.topic = c.topic AND e.seq = c.last_seq
         WHERE c.topic = ANY($1) AND EXISTS (SELECT 1 FROM grants g
             WHERE g.ledger_id = c.ledger_id AND g.revoked_seen_at IS NULL)
         ORDER BY c.ledger_id, c.topic",
    )
    .bind(topic_names(topics))
    .fetch_all(conn)
    .await
}

/// How many ledgers are in each of [`LEDGER_STATES`] (states with none are absent).
pub async fn ledger_states(
    conn: &mut PgConnection,
    topics: &[Topic],
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT state, count(*)::int8 FROM (
             SELECT CASE
                 WHEN NOT EXISTS (SELECT 1 FROM grants g
                     WHERE g.ledger_id = l.ledger_id AND g.revoked_seen_at IS NULL) THEN 'no_access'
                 WHEN EXISTS (SELECT 1 FROM feed_cursors c
                     WHERE c.ledger_id = l.ledger_id AND c.blocked_at IS NOT NULL) THEN 'blocked'
                 WHEN EXISTS (SELECT 1 FROM feed_cursors c WHERE c.ledger_id = l.ledger_id
                     AND c.topic = ANY($1) AND c.consecutive_failures > 0) THEN 'failing'
                 WHEN (SELECT count(*) FROM feed_cursors c WHERE c.ledger_id = l.ledger_id
                     AND c.topic = ANY($1) AND c.caught_up_at IS NOT NULL) >= cardinality($1)
                     THEN 'caught_up'
                 ELSE 'syncing'
             END AS state
             FROM ledgers l
         ) s GROUP BY state ORDER BY state",
    )
    .bind(topic_names(topics))
    .fetch_all(conn)
    .await
}

/// Partners whose keys the API refused at their last listing (`partners.keys_refused`); a
/// listing that failed for a while (5xx, timeouts, 429s) does not count.
pub async fn failed_partners(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT partner FROM partners WHERE keys_refused ORDER BY 1")
        .fetch_all(conn)
        .await
}

/// The `limit` most recent feed errors, newest first, recovered ones included.
pub async fn recent_errors(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<FeedErrorRow>> {
    sqlx::query_as(
        "SELECT ledger_id, topic, last_error_at AS at, last_error AS error, consecutive_failures
         FROM feed_cursors WHERE last_error IS NOT NULL AND last_error_at IS NOT NULL
         ORDER BY last_error_at DESC, ledger_id, topic LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Everything a scrape needs, in one read-only transaction whose statements may run at most
/// `timeout_ms` milliseconds each; the whole read is bounded by the same time again.
pub async fn snapshot(
    pool: &PgPool,
    topics: &[Topic],
    timeout_ms: u64,
) -> anyhow::Result<MonitoringSnapshot> {
    let read = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
            .execute(&mut *tx)
            .await?;
        let snapshot = MonitoringSnapshot {
            feeds: feed_health(&mut tx, topics).await?,
            ledger_states: ledger_states(&mut tx, topics).await?,
            partners_failed: failed_partners(&mut tx).await?,
            polling: super::poll_schedule::summary(&mut tx, chrono::Utc::now()).await?,
        };
        tx.commit().await?;
        Ok::<_, sqlx::Error>(snapshot)
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), read).await {
        Ok(done) => Ok(done?),
        Err(_) => anyhow::bail!("the monitoring queries took longer than {timeout_ms} ms"),
    }
}
