//! Leases on (ledger, topic) units, so that several instances share the work: a unit is
//! walked by the one instance holding its live lease, and every page it commits must still
//! carry the lease's fence (`feeds::commit_page` refuses a late commit from a stalled holder).

use sqlx::PgPool;

use super::feeds::ensure_row;
use crate::config::Topic;

/// A unit's lease: who holds it, and the fencing token every commit must still match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub fence: i64,
    pub ttl: std::time::Duration,
}

/// Takes the lease of a unit for `holder` if nobody holds a live one; `None` when another
/// instance does. Every acquisition gets a new, larger fence.
pub async fn acquire_lease(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    holder: &str,
    ttl: std::time::Duration,
) -> sqlx::Result<Option<Lease>> {
    ensure_row(pool, ledger_id, topic).await?;
    let fence: Option<i64> = sqlx::query_scalar(
        "UPDATE feed_cursors SET lease_holder = $3, fence = fence + 1,
             lease_expires_at = now() + $4 * interval '1 millisecond'
         WHERE ledger_id = $1 AND topic = $2
             AND (lease_holder IS NULL OR lease_expires_at < now())
         RETURNING fence",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(holder)
    .bind(ttl.as_millis() as f64)
    .fetch_optional(pool)
    .await?;
    Ok(fence.map(|fence| Lease {
        holder: holder.to_owned(),
        fence,
        ttl,
    }))
}

/// Gives a lease back, if it is still ours.
pub async fn release_lease(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    lease: &Lease,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE feed_cursors SET lease_holder = NULL, lease_expires_at = NULL
         WHERE ledger_id = $1 AND topic = $2 AND fence = $3",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(lease.fence)
    .execute(pool)
    .await?;
    Ok(())
}

/// Releases every lease `holder` (this process) still has: after work was abandoned at the
/// drain deadline, so the next run need not wait `sync.lease_ttl` for its units. A commit of
/// the abandoned work that still lands is a whole page checked against its fence, as ever.
pub async fn release_leases_of(pool: &PgPool, holder: &str) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE feed_cursors SET lease_holder = NULL, lease_expires_at = NULL
         WHERE lease_holder = $1",
    )
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
