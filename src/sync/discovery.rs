//! Ledger discovery: each partner's complete ledger list, upserted into `ledgers` and
//! `grants` in one transaction per partner. A partner whose keys or listing fail is reported
//! and skipped; the others go on.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use tracing::Instrument as _;

use super::SyncContext;
use crate::report_api::{Ledger, PartnerClient};
use crate::store::ledgers::{self, GrantChange};

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Each readable ledger with the partner whose token syncs it (the first configured
    /// partner that lists it, so a ledger shared with two partners is synced once).
    pub ledgers: BTreeMap<String, Arc<PartnerClient>>,
    /// Partners whose listing failed, with the reason.
    pub failed_partners: Vec<(String, String)>,
}

/// Lists every partner's ledgers and records them.
pub async fn discover(ctx: &SyncContext) -> Discovery {
    let mut found = Discovery::default();
    for partner in &ctx.partners {
        let span = tracing::info_span!("discovery", partner = partner.name());
        match discover_partner(ctx, partner).instrument(span).await {
            Ok(listed) => {
                for ledger in listed {
                    found
                        .ledgers
                        .entry(ledger.ledger_id)
                        .or_insert_with(|| Arc::clone(partner));
                }
            }
            Err(e) => {
                tracing::error!(
                    partner = partner.name(),
                    error = format!("{e:#}"),
                    "ledger discovery failed for this partner"
                );
                found
                    .failed_partners
                    .push((partner.name().to_owned(), format!("{e:#}")));
            }
        }
    }
    found
}

async fn discover_partner(
    ctx: &SyncContext,
    partner: &PartnerClient,
) -> anyhow::Result<Vec<Ledger>> {
    let listed = partner
        .list_ledgers()
        .await
        .context("listing ledgers (GET /settlement/v1/ledgers)")?;
    let now = Utc::now();
    let mut tx = ctx.pool.begin().await?;
    for ledger in &listed {
        ledgers::upsert_ledger(&mut tx, ledger, now)
            .await
            .with_context(|| format!("storing ledger {}", ledger.ledger_id))?;
        let change = ledgers::record_grant_seen(&mut tx, partner.name(), ledger, now)
            .await
            .with_context(|| format!("storing the grant of ledger {}", ledger.ledger_id))?;
        if change == GrantChange::Opened {
            let owner = ledger.owner.as_ref();
            tracing::info!(
                partner = partner.name(),
                ledger = %ledger.ledger_id,
                merchant_scheme = owner.map(|o| o.scheme.as_str()),
                merchant_id = owner.map(|o| o.id.as_str()),
                "grant opened: the partner may read this ledger"
            );
        }
    }
    tx.commit().await?;
    tracing::info!(ledgers = listed.len(), "ledger list read");
    Ok(listed)
}
