//! A feed's health outside the walk itself: failed attempts and the back-off before the next,
//! blocking a feed whose cursor the API rejected, and the operator's `reset-cursor`.

use sqlx::PgPool;

use super::leases::Lease;
use crate::config::Topic;

/// Blocks a feed whose stored cursor the API rejected, with the reason, so it is not polled
/// (nor restarted) until a person decides; under `lease`, false (nothing written) when the
/// lease was taken over.
pub async fn block(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    reason: &str,
    lease: &Lease,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE feed_cursors SET blocked_at = now(), blocked_reason = $3
         WHERE ledger_id = $1 AND topic = $2 AND fence = $4",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(crate::text::error_text(reason))
    .bind(lease.fence)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A failed attempt at a feed: the error (stored printable and cut to
/// [`crate::text::MAX_ERROR_BYTES`]) and the back-off before `run` tries it again.
#[derive(Debug, Clone, Copy)]
pub struct FailureParams<'a> {
    pub ledger_id: &'a str,
    pub topic: Topic,
    pub error: &'a str,
    /// The first wait; it doubles with each consecutive failure…
    pub base: std::time::Duration,
    /// …up to this.
    pub max: std::time::Duration,
}

/// Records a failed attempt at a feed and when `run` may try it again, under `lease`; false
/// (nothing written) when the lease was taken over.
pub async fn record_failure(
    pool: &PgPool,
    failure: &FailureParams<'_>,
    lease: &Lease,
) -> sqlx::Result<bool> {
    let FailureParams {
        ledger_id,
        topic,
        error,
        base,
        max,
    } = *failure;
    let done = sqlx::query(
        "UPDATE feed_cursors SET consecutive_failures = consecutive_failures + 1,
             last_error = $3, last_error_at = now(),
             next_attempt_at = now() + least($5 * interval '1 millisecond',
                 $4 * interval '1 millisecond' * power(2, least(consecutive_failures, 30)))
         WHERE ledger_id = $1 AND topic = $2 AND fence = $6",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(crate::text::error_text(error))
    .bind(base.as_millis() as f64)
    .bind(max.as_millis() as f64)
    .bind(lease.fence)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Feeds that `run` leaves alone for now (backing off after failures): (ledger, topic).
pub async fn backing_off(pool: &PgPool) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT ledger_id, topic FROM feed_cursors WHERE next_attempt_at > now()
         ORDER BY ledger_id, topic",
    )
    .fetch_all(pool)
    .await
}

/// Unblocks a feed and forgets its cursor: the next sync reads it from the start, storing
/// only the entries that are missing. Returns false if the feed was never synced.
pub async fn reset_cursor(pool: &PgPool, ledger_id: &str, topic: Topic) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE feed_cursors SET cursor = NULL, blocked_at = NULL, blocked_reason = NULL,
             updated_at = now()
         WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
