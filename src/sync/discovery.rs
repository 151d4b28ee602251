//! Ledger discovery and the consent registry: each partner's complete ledger list is
//! recorded in one transaction: `ledgers` and `merchants` upserted, a grant period opened for
//! each newly seen (partner, ledger), `last_seen_at` moved for the others, and the periods of
//! ledgers missing from the list closed. A listing that fails part way changes nothing, so a
//! partial list never revokes anything. Every change of a grant is logged at info.

use anyhow::Context as _;
use chrono::Utc;
use tracing::Instrument as _;

use super::SyncContext;
use crate::report_api::PartnerClient;
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
/// others.
pub async fn discover(ctx: &SyncContext) -> Discovery {
    let mut found = Discovery::default();
    for partner in &ctx.partners {
        let span = tracing::info_span!("discovery", partner = partner.name());
        match discover_partner(ctx, partner).instrument(span).await {
            Ok((listed, opened, closed)) => {
                ctx.health.set_ok(partner.name());
                found.listed += listed;
                found.opened += opened;
                found.closed += closed;
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(partner = partner.name(), %error, "ledger discovery failed; this partner's grants are left as they were");
                ctx.health.set_failed(partner.name(), &error);
                if let Err(db) =
                    grants::partner_failed(&ctx.pool, partner.name(), &error, Utc::now()).await
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

/// Returns (ledgers listed, grants opened, grants closed).
async fn discover_partner(
    ctx: &SyncContext,
    partner: &PartnerClient,
) -> anyhow::Result<(usize, usize, usize)> {
    let listed = partner
        .list_ledgers()
        .await
        .context("listing ledgers (GET /settlement/v1/ledgers)")?;
    let now = Utc::now();
    let mut tx = ctx.pool.begin().await?;
    let mut opened = Vec::new();
    for ledger in &listed {
        ledgers::upsert_ledger(&mut tx, ledger, now)
            .await
            .with_context(|| format!("storing ledger {}", ledger.ledger_id))?;
        if let Some(owner) = &ledger.owner {
            ledgers::upsert_merchant(&mut tx, &owner.scheme, &owner.id, now).await?;
        }
        let change = grants::record_seen(&mut tx, partner.name(), ledger, now)
            .await
            .with_context(|| format!("storing the grant of ledger {}", ledger.ledger_id))?;
        if change == GrantChange::Opened {
            opened.push(ledger);
        }
    }
    let ids: Vec<String> = listed.iter().map(|l| l.ledger_id.clone()).collect();
    let closed = grants::close_absent(&mut tx, partner.name(), &ids, now).await?;
    grants::partner_listed(&mut tx, partner.name(), listed.len(), now).await?;
    tx.commit().await?;
    // Logged after the commit, so the audit trail never shows a change that did not happen.
    for ledger in opened.iter() {
        let owner = ledger.owner.as_ref();
        tracing::info!(
            partner = partner.name(),
            ledger = %ledger.ledger_id,
            merchant_scheme = owner.map(|o| o.scheme.as_str()),
            merchant_id = owner.map(|o| o.id.as_str()),
            "grant opened: the partner may read this ledger"
        );
    }
    for grant in &closed {
        log_closed(grant);
    }
    tracing::info!(ledgers = listed.len(), "ledger list read");
    Ok((listed.len(), opened.len(), closed.len()))
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
