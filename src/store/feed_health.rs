//! A feed's health outside the walk itself: failed attempts and the back-off before the next,
//! blocking a feed whose cursor the API rejected, and the operator's `reset-cursor`.

use sqlx::PgPool;

use super::feeds::ensure_row;
use crate::config::Topic;

/// Blocks a feed whose stored cursor the API rejected, with the reason, so it is not polled
/// (nor restarted) until a person decides.
pub async fn block(pool: &PgPool, ledger_id: &str, topic: Topic, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE feed_cursors SET blocked_at = now(), blocked_reason = $3
         WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(crate::text::error_text(reason))
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt at a feed and when `run` may try it again; the error is stored
/// printable and cut to [`crate::text::MAX_ERROR_BYTES`].
pub async fn record_failure(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    error: &str,
    base: std::time::Duration,
    max: std::time::Duration,
) -> sqlx::Result<()> {
    ensure_row(pool, ledger_id, topic).await?;
    sqlx::query(
        "UPDATE feed_cursors SET consecutive_failures = consecutive_failures + 1,
             last_error = $3, last_error_at = now(),
             next_attempt_at = now() + least($5 * interval '1 millisecond',
                 $4 * interval '1 millisecond' * power(2, least(consecutive_failures, 30)))
         WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(crate::text::error_text(error))
    .bind(base.as_millis() as f64)
    .bind(max.as_millis() as f64)
    .execute(pool)
    .await?;
    Ok(())
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
