//! Leases on (ledger, topic) units, so that several instances share the work: a unit is
//! walked by the one instance holding its live lease, and every write to the unit's state
//! must still carry the lease's fence (a page with its cursor, caught-up, blocked, a failure
//! and its back-off, the release): a stalled holder's late writes change nothing. A lease is
//! live until `lease_expires_at`, unless its holder's presence (`presence.rs`) is gone: a
//! dead instance's leases are free at once.

use sqlx::PgPool;

use crate::config::Topic;

/// A unit's lease: who holds it, and the fencing token every write must still match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub fence: i64,
    pub ttl: std::time::Duration,
}

/// Takes the lease of a unit for `holder` (whose presence key is `key`, if it has one) if
/// nobody holds a live one; `None` when another instance does. A lease is free when nobody
/// holds it, when it has expired, or when its holder's presence is gone (the process died).
/// Every acquisition gets a new, larger fence.
pub async fn acquire_lease(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    holder: &str,
    key: Option<i64>,
    ttl: std::time::Duration,
) -> sqlx::Result<Option<Lease>> {
    ensure_row(pool, ledger_id, topic).await?;
    let fence: Option<i64> = sqlx::query_scalar(concat!(
        "UPDATE feed_cursors SET lease_holder = $3, lease_key = $5, fence = fence + 1,
             lease_expires_at = now() + $4 * interval '1 millisecond'
         WHERE ledger_id = $1 AND topic = $2
             AND (lease_holder IS NULL OR lease_expires_at < now()
                  OR (lease_key IS NOT NULL AND NOT ",
        presence_alive!(),
        "))
         RETURNING fence"
    ))
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(holder)
    .bind(ttl.as_millis() as f64)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(fence.map(|fence| Lease {
        holder: holder.to_owned(),
        fence,
        ttl,
    }))
}

/// Gives a lease back, if it is still ours (a stale holder's release changes nothing).
pub async fn release_lease(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    lease: &Lease,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE feed_cursors SET lease_holder = NULL, lease_expires_at = NULL, lease_key = NULL
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
        "UPDATE feed_cursors SET lease_holder = NULL, lease_expires_at = NULL, lease_key = NULL
         WHERE lease_holder = $1",
    )
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Creates a feed's cursor row if it does not exist yet.
pub(super) async fn ensure_row<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    ledger_id: &str,
    topic: Topic,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO feed_cursors (ledger_id, topic) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .execute(executor)
    .await?;
    Ok(())
}
