//! `ledgers` and `grants`: what each partner could see, and when.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::report_api::Ledger;

/// A grant period as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
}

/// Inserts or refreshes a ledger as listed at `now`.
pub async fn upsert_ledger(
    conn: &mut PgConnection,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let sales_units = ledger
        .raw
        .get("salesUnits")
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()));
    sqlx::query(
        "INSERT INTO ledgers (ledger_id, currency, owner_scheme, owner_id, payout_account_scheme,
             payout_account_id, settles_for_recipient_handles, sales_units, raw, first_seen_at,
             last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (ledger_id) DO UPDATE SET
             currency = EXCLUDED.currency,
             owner_scheme = EXCLUDED.owner_scheme,
             owner_id = EXCLUDED.owner_id,
             payout_account_scheme = EXCLUDED.payout_account_scheme,
             payout_account_id = EXCLUDED.payout_account_id,
             settles_for_recipient_handles = EXCLUDED.settles_for_recipient_handles,
             sales_units = EXCLUDED.sales_units,
             raw = EXCLUDED.raw,
             last_seen_at = GREATEST(ledgers.last_seen_at, EXCLUDED.last_seen_at)",
    )
    .bind(&ledger.ledger_id)
    .bind(&ledger.currency)
    .bind(ledger.owner.as_ref().map(|o| &o.scheme))
    .bind(ledger.owner.as_ref().map(|o| &o.id))
    .bind(ledger.payout_bank_account.as_ref().map(|a| &a.scheme))
    .bind(ledger.payout_bank_account.as_ref().map(|a| &a.id))
    .bind(&ledger.settles_for_recipient_handles)
    .bind(&sales_units)
    .bind(&ledger.raw)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that `partner` saw `ledger` in its list at `now`: moves `last_seen_at` of the open
/// period, or opens a new one.
pub async fn record_grant_seen(
    conn: &mut PgConnection,
    partner: &str,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> sqlx::Result<GrantChange> {
    let touched = sqlx::query(
        "UPDATE grants SET last_seen_at = GREATEST(last_seen_at, $3),
             merchant_scheme = $4, merchant_id = $5
         WHERE partner = $1 AND ledger_id = $2 AND revoked_seen_at IS NULL",
    )
    .bind(partner)
    .bind(&ledger.ledger_id)
    .bind(now)
    .bind(ledger.owner.as_ref().map(|o| &o.scheme))
    .bind(ledger.owner.as_ref().map(|o| &o.id))
    .execute(&mut *conn)
    .await?;
    if touched.rows_affected() > 0 {
        return Ok(GrantChange::StillHeld);
    }
    sqlx::query(
        "INSERT INTO grants (partner, ledger_id, merchant_scheme, merchant_id, granted_seen_at,
             last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(partner)
    .bind(&ledger.ledger_id)
    .bind(ledger.owner.as_ref().map(|o| &o.scheme))
    .bind(ledger.owner.as_ref().map(|o| &o.id))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(GrantChange::Opened)
}

/// Every grant period, oldest first.
pub async fn grants(conn: &mut PgConnection) -> sqlx::Result<Vec<GrantRow>> {
    sqlx::query_as(
        "SELECT grant_id, partner, ledger_id, merchant_scheme, merchant_id, granted_seen_at,
             last_seen_at, revoked_seen_at, revoke_reason
         FROM grants ORDER BY grant_id",
    )
    .fetch_all(conn)
    .await
}
