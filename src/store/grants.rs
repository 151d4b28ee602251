//! `grants` and `partners`: which partner could read which ledger of which merchant, when;
//! and whether each partner's keys work. History is never rewritten: a grant period is
//! opened, its `last_seen_at` moved, and closed once; re-granting opens a new period.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::report_api::Ledger;

/// A grant period as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct GrantRow {
    pub grant_id: i64,
    pub partner: String,
    pub ledger_id: String,
    pub merchant_scheme: Option<String>,
    pub merchant_id: Option<String>,
    pub granted_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub revoked_seen_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
}

/// What recording a sighting of a grant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantChange {
    /// A new period opened: first sighting, or seen again after a revocation.
    Opened,
    /// The open period was seen again.
    StillHeld,
    /// The sighting is older than a recorded end of access (the listing started before
    /// the revocation was seen): nothing changed.
    Outdated,
}

/// Why a grant period ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The ledger was missing from the partner's complete ledger list.
    AbsentFromList,
    /// The ledger's feed answered 404 to the partner's token.
    Feed404,
}

impl RevokeReason {
    /// The value stored in `grants.revoke_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::AbsentFromList => "absent_from_list",
            RevokeReason::Feed404 => "feed_404",
        }
    }
}

const GRANT_COLUMNS: &str = "grant_id, partner, ledger_id, merchant_scheme, merchant_id,
    granted_seen_at, last_seen_at, revoked_seen_at, revoke_reason";

/// Serialises the discovery of `partner` across instances until the transaction ends.
pub async fn lock_partner(conn: &mut PgConnection, partner: &str) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('vipps-ledger-sync discovery'), hashtext($1))",
    )
    .bind(partner)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that `partner` saw `ledger` in its list at `now`: moves `last_seen_at` of the open
/// period, or opens a new one, unless the partner's access was seen to end at or after `now`
/// (a listing that started before a revocation was recorded shows an older state: it can
/// neither reopen the period nor move it). `None` when the sighting was that old.
pub async fn record_seen(
    conn: &mut PgConnection,
    partner: &str,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> sqlx::Result<GrantChange> {
    let owner = ledger.owner.as_ref();
    let touched = sqlx::query(
        "UPDATE grants SET last_seen_at = GREATEST(last_seen_at, $3),
             merchant_scheme = $4, merchant_id = $5
         WHERE partner = $1 AND ledger_id = $2 AND revoked_seen_at IS NULL",
    )
    .bind(partner)
    .bind(&ledger.ledger_id)
    .bind(now)
    .bind(owner.map(|o| &o.scheme))
    .bind(owner.map(|o| &o.id))
    .execute(&mut *conn)
    .await?;
    if touched.rows_affected() > 0 {
        return Ok(GrantChange::StillHeld);
    }
    let opened = sqlx::query(
        "INSERT INTO grants (partner, ledger_id, merchant_scheme, merchant_id, granted_seen_at,
             last_seen_at)
         SELECT $1, $2, $3, $4, $5, $5
         WHERE NOT EXISTS (SELECT 1 FROM grants
             WHERE partner = $1 AND ledger_id = $2 AND revoked_seen_at >= $5)",
    )
    .bind(partner)
    .bind(&ledger.ledger_id)
    .bind(owner.map(|o| &o.scheme))
    .bind(owner.map(|o| &o.id))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(if opened.rows_affected() > 0 {
        // A new grant: its ledger's feeds are polled at the next pass, whatever their
        // schedule said (adaptive polling).
        sqlx::query("UPDATE feed_cursors SET next_poll_at = NULL WHERE ledger_id = $1")
            .bind(&ledger.ledger_id)
            .execute(conn)
            .await?;
        GrantChange::Opened
    } else {
        GrantChange::Outdated
    })
}

/// Closes `partner`'s open grants that a complete listing started at `listed_at` did not
/// show: every ledger it showed had its `last_seen_at` moved to at least `listed_at` by
/// [`record_seen`], so the others are older. Returns the closed periods. Call only after a
/// listing read through all its pages.
pub async fn close_absent(
    conn: &mut PgConnection,
    partner: &str,
    listed_at: DateTime<Utc>,
) -> sqlx::Result<Vec<GrantRow>> {
    sqlx::query_as(&format!(
        "UPDATE grants SET revoked_seen_at = $2, revoke_reason = 'absent_from_list'
         WHERE partner = $1 AND revoked_seen_at IS NULL AND last_seen_at < $2
         RETURNING {GRANT_COLUMNS}"
    ))
    .bind(partner)
    .bind(listed_at)
    .fetch_all(conn)
    .await
}

/// Closes `partner`'s open grant on `ledger_id`, if any, for `reason`, at the database's
/// clock (the one `entries.synced_at` is stamped with, so the consent rule compares like with
/// like). Only a period opened at or before `observed_at` (when what says access ended was
/// seen, database clock) is closed: a grant seen again after that is newer than the
/// observation.
pub async fn close(
    pool: &PgPool,
    partner: &str,
    ledger_id: &str,
    reason: RevokeReason,
    observed_at: DateTime<Utc>,
) -> sqlx::Result<Option<GrantRow>> {
    sqlx::query_as(&format!(
        "UPDATE grants SET revoked_seen_at = GREATEST(now(), last_seen_at), revoke_reason = $3
         WHERE partner = $1 AND ledger_id = $2 AND revoked_seen_at IS NULL
           AND granted_seen_at <= $4
         RETURNING {GRANT_COLUMNS}"
    ))
    .bind(partner)
    .bind(ledger_id)
    .bind(reason.as_str())
    .bind(observed_at)
    .fetch_optional(pool)
    .await
}

/// Up to `limit` ledgers with at least one open grant, after `after` in id order, with the
/// partners holding one (oldest first). Read in chunks so memory does not grow with the
/// number of ledgers.
pub async fn open_by_ledger(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<(String, Vec<String>)>> {
    sqlx::query_as(
        "SELECT ledger_id, array_agg(partner ORDER BY granted_seen_at, partner)
         FROM grants WHERE revoked_seen_at IS NULL AND ($1::text IS NULL OR ledger_id > $1)
         GROUP BY ledger_id ORDER BY ledger_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Grant periods, oldest first: all of them, or those of one ledger, or only the open ones;
/// with `partner`, only that partner's (a partner never sees another's).
pub async fn list(
    pool: &PgPool,
    ledger_id: Option<&str>,
    open_only: bool,
    partner: Option<&str>,
) -> sqlx::Result<Vec<GrantRow>> {
    sqlx::query_as(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants
         WHERE ($1::text IS NULL OR ledger_id = $1) AND (NOT $2 OR revoked_seen_at IS NULL)
           AND ($3::text IS NULL OR partner = $3)
         ORDER BY partner, merchant_scheme, merchant_id, ledger_id, grant_id"
    ))
    .bind(ledger_id)
    .bind(open_only)
    .bind(partner)
    .fetch_all(pool)
    .await
}

/// Records a complete, successful listing by `partner` (and clears any failure).
pub async fn partner_listed(
    conn: &mut PgConnection,
    partner: &str,
    listed: usize,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO partners (partner, last_listing_at, last_listed) VALUES ($1, $2, $3)
         ON CONFLICT (partner) DO UPDATE SET last_listing_at = $2, last_listed = $3,
             failed_at = NULL, last_error = NULL, keys_refused = false",
    )
    .bind(partner)
    .bind(now)
    .bind(i32::try_from(listed).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks `partner` failed with `error` (which must hold no secret); `keys_refused` when the
/// API refused its keys rather than failing for a while.
pub async fn partner_failed(
    pool: &PgPool,
    partner: &str,
    error: &str,
    keys_refused: bool,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO partners (partner, failed_at, last_error, keys_refused) VALUES ($1, $2, $3, $4)
         ON CONFLICT (partner) DO UPDATE SET failed_at = $2, last_error = $3, keys_refused = $4",
    )
    .bind(partner)
    .bind(now)
    .bind(crate::text::error_text(error))
    .bind(keys_refused)
    .execute(pool)
    .await?;
    Ok(())
}

/// A partner's health.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct PartnerRow {
    pub partner: String,
    pub last_listing_at: Option<DateTime<Utc>>,
    pub last_listed: Option<i32>,
    pub failed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The failure is the API refusing the keys (not a 5xx, timeout or 429).
    pub keys_refused: bool,
}

/// Every partner that ever ran.
pub async fn partners(pool: &PgPool) -> sqlx::Result<Vec<PartnerRow>> {
    sqlx::query_as(
        "SELECT partner, last_listing_at, last_listed, failed_at, last_error, keys_refused
         FROM partners ORDER BY partner",
    )
    .fetch_all(pool)
    .await
}
