//! Ledger discovery and the consent registry: each page of a partner's ledger list is recorded
//! as it arrives (`ledgers` and `merchants` upserted, a grant period opened for each newly seen
//! (partner, ledger), `last_seen_at` moved for the others); once the list is complete, the
//! periods of ledgers missing from it are closed. A listing that fails part way closes
//! nothing, so a partial list never revokes anything. Every change of a grant is logged at
//! info.

use anyhow::Context as _;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::SyncContext;
use crate::report_api::{ApiError, LedgerPage, PartnerClient};
use crate::store::grants::{self, GrantChange, GrantRow};
use crate::store::ledgers;

/// What a discovery round found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Ledgers listed, summed over partners.
    pub listed: usize,
    pub opened: usize,
    pub closed: usize,
    /// Partners whose listing failed, with the reason.
    pub failed_partners: Vec<(String, String)>,
}

/// Lists every partner's ledgers and records them; one partner's failure never stops the
/// others. A stop request ends it between pages (a listing cut short revokes nothing).
pub async fn discover(ctx: &SyncContext, cancel: &CancellationToken) -> Discovery {
    let mut found = Discovery::default();
    for partner in &ctx.partners {
        if cancel.is_cancelled() {
            break;
        }
        let span = tracing::info_span!("discovery", partner = partner.name());
        match discover_partner(ctx, partner, cancel)
            .instrument(span)
            .await
        {
            Ok((listed, opened, closed)) => {
                ctx.health.set_ok(partner.name());
                found.listed += listed;
                found.opened += opened;
                found.closed += closed;
            }
            Err(_) if cancel.is_cancelled() => {
                tracing::info!(
                    partner = partner.name(),
                    "discovery stopped on request; this partner's grants are left as they were"
                );
                break;
            }
            Err(e) => {
                let error = crate::text::error_text(&format!("{e:#}"));
                tracing::error!(partner = partner.name(), %error, "ledger discovery failed; this partner's grants are left as they were");
                ctx.health.set_failed(partner.name(), &error);
                let refused = ApiError::refuses_keys_in(&e);
                if let Err(db) =
                    grants::partner_failed(&ctx.pool, partner.name(), &error, refused, Utc::now())
                        .await
                {
                    tracing::error!(error = %db, "could not record the partner's failure");
                }
                found
                    .failed_partners
                    .push((partner.name().to_owned(), error));
            }
        }
    }
    found
}

/// Returns (ledgers listed, grants opened, grants closed). Each page of the list is recorded
/// as it arrives (seeing a ledger is a fact even if a later page fails), so memory does not
/// grow with the number of ledgers. Once the list is known to be complete (every page read,
/// no cursor seen twice, every item valid), the periods it did not touch (`last_seen_at`
/// older than the listing) are closed. A listing that is cut short, loops, breaks
/// `limits.max_pages_per_listing`, or holds an invalid item revokes nothing and fails,
/// naming what was wrong.
async fn discover_partner(
    ctx: &SyncContext,
    partner: &PartnerClient,
    cancel: &CancellationToken,
) -> anyhow::Result<(usize, usize, usize)> {
    // The database's clock, like every timestamp the consent rule compares (`synced_at`).
    let now = crate::store::database_now(&ctx.pool)
        .await
        .context("reading the database's clock")?;
    let limits = &ctx.settings.limits;
    let mut listed = 0;
    let mut opened = 0;
    let mut rejected: Vec<String> = Vec::new();
    let mut cursors = crate::report_api::walk::Cursors::default();
    let mut cursor: Option<String> = None;
    for number in 1.. {
        if cancel.is_cancelled() {
            anyhow::bail!(
                "stopped on request after {} page(s); nothing was revoked",
                number - 1
            );
        }
        if number > limits.max_pages_per_listing {
            anyhow::bail!(
                "the ledger list did not end within limits.max_pages_per_listing ({} pages); nothing was revoked",
                limits.max_pages_per_listing
            );
        }
        let page = partner
            .ledger_page(cursor.as_deref())
            .await
            .with_context(|| {
                format!("listing ledgers (GET /settlement/v1/ledgers), page {number}")
            })?;
        opened += record_page(ctx, partner, &page, now).await?;
        listed += page.len();
        for why in &page.rejected {
            tracing::warn!(page = number, item = %why, "a listed ledger failed validation; it is not stored");
        }
        rejected.extend(page.rejected.iter().map(|r| format!("page {number}, {r}")));
        if rejected.len() > limits.max_invalid_ledgers {
            anyhow::bail!(
                "the ledger list holds more than limits.max_invalid_ledgers ({}) invalid items; given up, nothing was revoked. First: {}",
                limits.max_invalid_ledgers,
                rejected[0]
            );
        }
        match page.cursor {
            Some(next) => {
                if let Some(seen) = cursors.repeat(&next) {
                    anyhow::bail!(
                        "the ledger list's cursors go round in a circle (page {number} returned the cursor of page {seen}); nothing was revoked"
                    );
                }
                cursor = Some(next);
            }
            None => break,
        }
    }
    if !rejected.is_empty() {
        anyhow::bail!(
            "the ledger list held {} invalid item(s), reported and not stored, so it counts as incomplete and nothing was revoked: {}",
            rejected.len(),
            rejected.join("; ")
        );
    }
    let mut tx = ctx.pool.begin().await?;
    grants::lock_partner(&mut tx, partner.name()).await?;
    let closed = grants::close_absent(&mut tx, partner.name(), now).await?;
    grants::partner_listed(&mut tx, partner.name(), listed, now).await?;
    tx.commit().await?;
    for grant in &closed {
        log_closed(grant);
    }
    tracing::info!(ledgers = listed, "ledger list read");
    Ok((listed, opened, closed.len()))
}

/// Records one page of the ledger list in one transaction; returns the grants opened.
async fn record_page(
    ctx: &SyncContext,
    partner: &PartnerClient,
    page: &LedgerPage,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut tx = ctx.pool.begin().await?;
    // Two instances discovering the same partner at once take turns.
    grants::lock_partner(&mut tx, partner.name()).await?;
    let mut opened = Vec::new();
    for ledger in page.ledgers() {
        ledgers::upsert_ledger(&mut tx, &ledger, now)
            .await
            .with_context(|| format!("storing ledger {}", ledger.ledger_id))?;
        if let Some(owner) = &ledger.owner {
            ledgers::upsert_merchant(&mut tx, &owner.scheme, &owner.id, now).await?;
        }
        let change = grants::record_seen(&mut tx, partner.name(), &ledger, now)
            .await
            .with_context(|| format!("storing the grant of ledger {}", ledger.ledger_id))?;
        if change == GrantChange::Opened {
            opened.push((ledger.ledger_id, ledger.owner));
        }
    }
    tx.commit().await?;
    ctx.metrics.progressed();
    // Logged after the commit, so the audit trail never shows a change that did not happen.
    for (ledger_id, owner) in &opened {
        let owner = owner.as_ref();
        tracing::info!(
            partner = partner.name(),
            ledger = %ledger_id,
            merchant_scheme = owner.map(|o| o.scheme.as_str()),
            merchant_id = owner.map(|o| o.id.as_str()),
            "grant opened: the partner may read this ledger"
        );
    }
    Ok(opened.len())
}

/// The audit line for a closed grant period.
pub(crate) fn log_closed(grant: &GrantRow) {
    tracing::info!(
        partner = %grant.partner,
        ledger = %grant.ledger_id,
        merchant_scheme = grant.merchant_scheme.as_deref(),
        merchant_id = grant.merchant_id.as_deref(),
        reason = grant.revoke_reason.as_deref(),
        granted_seen_at = %grant.granted_seen_at,
        "grant closed: the partner may no longer read this ledger"
    );
}
