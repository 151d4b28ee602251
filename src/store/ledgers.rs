//! `ledgers` and `merchants`: every ledger ever listed, and the organisations owning them.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::report_api::Ledger;

/// Inserts or refreshes a ledger as listed at `now`; `changed_at` moves (database clock) only
/// when the listed description differs from the stored one.
pub async fn upsert_ledger(
    conn: &mut PgConnection,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let sales_units = serde_json::to_value(&ledger.sales_units).unwrap_or_default();
    sqlx::query(
        "INSERT INTO ledgers (ledger_id, currency, owner_scheme, owner_id, payout_account_scheme,
             payout_account_id, settles_for_recipient_handles, sales_units, raw, first_seen_at,
             last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $10)
         ON CONFLICT (ledger_id) DO UPDATE SET
             currency = EXCLUDED.currency,
             owner_scheme = EXCLUDED.owner_scheme,
             owner_id = EXCLUDED.owner_id,
             payout_account_scheme = EXCLUDED.payout_account_scheme,
             payout_account_id = EXCLUDED.payout_account_id,
             settles_for_recipient_handles = EXCLUDED.settles_for_recipient_handles,
             sales_units = EXCLUDED.sales_units,
             raw = EXCLUDED.raw,
             changed_at = CASE WHEN ledgers.raw IS DISTINCT FROM EXCLUDED.raw
                               THEN now() ELSE ledgers.changed_at END,
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
    .bind(ledger.raw.get())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the owner of a listed ledger in `merchants`.
pub async fn upsert_merchant(
    conn: &mut PgConnection,
    scheme: &str,
    id: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO merchants (merchant_scheme, merchant_id, first_seen_at, last_seen_at)
         VALUES ($1, $2, $3, $3)
         ON CONFLICT (merchant_scheme, merchant_id) DO UPDATE
             SET last_seen_at = GREATEST(merchants.last_seen_at, EXCLUDED.last_seen_at)",
    )
    .bind(scheme)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// A ledger for people: what it is, who owns it, who may read it, how far it is synced.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct LedgerOverviewRow {
    pub ledger_id: String,
    pub currency: Option<String>,
    pub merchant_scheme: Option<String>,
    pub merchant_id: Option<String>,
    pub sales_units: Vec<String>,
    /// Partners holding an open grant, in the order they were granted.
    pub partners: Vec<String>,
    pub entries: i64,
    /// `syncing`, `blocked` (a cursor was rejected) or `revoked` (no open grant).
    pub state: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Every ledger ever seen, for `ledgers`; with `partner`, what that partner may see (the
/// consent rule, docs/schema.md): the ledgers it holds or held a grant for, described as it
/// could see them, its own grant only, and the entries it may see.
pub async fn overview(
    pool: &sqlx::PgPool,
    partner: Option<&str>,
) -> sqlx::Result<Vec<LedgerOverviewRow>> {
    sqlx::query_as(concat!(
        "SELECT l.ledger_id, l.currency, l.owner_scheme AS merchant_scheme,
             l.owner_id AS merchant_id, l.settles_for_recipient_handles AS sales_units,
             coalesce((SELECT array_agg(g.partner ORDER BY g.granted_seen_at) FROM grants g
                 WHERE g.ledger_id = l.ledger_id AND g.revoked_seen_at IS NULL
                   AND ($1::text IS NULL OR g.partner = $1)), '{}') AS partners,
             CASE WHEN $1::text IS NULL OR EXISTS (SELECT 1 FROM grants g
                     WHERE g.ledger_id = l.ledger_id AND g.partner = $1
                       AND g.revoked_seen_at IS NULL)
                 THEN coalesce((SELECT sum(c.last_seq) FROM feed_cursors c
                     WHERE c.ledger_id = l.ledger_id), 0)::int8
                 ELSE (SELECT count(*) FROM entries e WHERE e.ledger_id = l.ledger_id AND ",
        consented!("$1", "e", "synced_at"),
        ")
             END AS entries,
             CASE
                 WHEN NOT EXISTS (SELECT 1 FROM grants g
                     WHERE g.ledger_id = l.ledger_id AND g.revoked_seen_at IS NULL
                       AND ($1::text IS NULL OR g.partner = $1)) THEN 'revoked'
                 WHEN EXISTS (SELECT 1 FROM feed_cursors c
                     WHERE c.ledger_id = l.ledger_id AND c.blocked_at IS NOT NULL) THEN 'blocked'
                 ELSE 'syncing'
             END AS state,
             l.first_seen_at, l.last_seen_at
         FROM ledgers l
         WHERE $1::text IS NULL OR ",
        consented!("$1", "l", "changed_at"),
        "
         ORDER BY l.ledger_id"
    ))
    .bind(partner)
    .fetch_all(pool)
    .await
}
