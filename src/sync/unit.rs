//! One (ledger, topic) unit of a feed pass, from its lease to its release: the partners
//! holding a grant are tried in turn until one can read the feed. Everything the unit writes
//! about itself (pages and cursor, caught-up, blocked, a failure and its back-off) carries
//! the lease's fence, so an instance that stalled past its lease changes nothing. A 404
//! closes that partner's grant only when a second request after a pause confirms it.

use tokio_util::sync::CancellationToken;

use super::{discovery, feed, SyncContext};
use crate::config::Topic;
use crate::report_api::PartnerClient;
use crate::store::feed_health::{self, FailureParams};
use crate::store::leases::{self, Lease};
use crate::store::{feeds, grants};

/// What one unit did, over all the partners it tried.
#[derive(Debug, Default)]
pub(super) struct UnitResult {
    pub(super) outcome: feed::UnitOutcome,
    pub(super) grants_closed: usize,
    /// Another instance holds the unit's lease; nothing was done here.
    pub(super) held_elsewhere: bool,
}

/// Takes the unit's lease, walks it, records a failure under the lease, and gives the lease
/// back. `Err` carries the failure as reported.
pub(super) async fn run_unit(
    ctx: &SyncContext,
    ledger_id: &str,
    topic: Topic,
    holders: &[String],
    cancel: &CancellationToken,
) -> Result<UnitResult, String> {
    let lease = match leases::acquire_lease(
        &ctx.pool,
        ledger_id,
        topic,
        &ctx.instance,
        ctx.presence_key(),
        ctx.settings.sync.lease_ttl,
    )
    .await
    {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            tracing::debug!("another instance holds this unit");
            return Ok(UnitResult {
                held_elsewhere: true,
                ..UnitResult::default()
            });
        }
        Err(e) => return Err(format!("taking the unit's lease: {e}")),
    };
    let result = under_lease(ctx, ledger_id, topic, holders, &lease, cancel).await;
    if let Err(error) = &result {
        let sync = &ctx.settings.sync;
        let failure = FailureParams {
            ledger_id,
            topic,
            error,
            base: sync.failure_backoff,
            max: sync.max_failure_backoff,
        };
        match feed_health::record_failure(&ctx.pool, &failure, &lease).await {
            Ok(true) => {}
            // The lease was taken over (already logged where that was found).
            Ok(false) => {
                tracing::debug!("the failure was not recorded: the lease is no longer ours")
            }
            Err(e) => tracing::error!(error = %e, "could not record the failure"),
        }
    }
    if let Err(e) = leases::release_lease(&ctx.pool, ledger_id, topic, &lease).await {
        // It expires by itself; the next pass (here or elsewhere) takes it over then.
        tracing::warn!(error = %e, "could not release the unit's lease");
    }
    result
}

/// The unit's work once its lease is held: a blocked feed is reported, not polled.
async fn under_lease(
    ctx: &SyncContext,
    ledger_id: &str,
    topic: Topic,
    holders: &[String],
    lease: &Lease,
    cancel: &CancellationToken,
) -> Result<UnitResult, String> {
    match feeds::load_cursor(&ctx.pool, ledger_id, topic).await {
        Ok(Some(row)) if row.blocked_reason.is_some() => {
            return Err(format!(
                "blocked: {} (run `vipps-ledger-sync reset-cursor {ledger_id} --topic {topic}` to read it again from the start)",
                row.blocked_reason.unwrap_or_default()
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(format!("loading the stored cursor: {e}")),
    }
    walk_with_partners(ctx, ledger_id, topic, holders, lease, cancel).await
}

/// The partners holding a grant, tried in turn under the unit's lease.
async fn walk_with_partners(
    ctx: &SyncContext,
    ledger_id: &str,
    topic: Topic,
    holders: &[String],
    lease: &Lease,
    cancel: &CancellationToken,
) -> Result<UnitResult, String> {
    // Before any request of this unit: a grant seen (again) after this is newer than any 404
    // the unit observes, and no 404 of the unit may close it.
    let started = crate::store::database_now(&ctx.pool)
        .await
        .map_err(|e| format!("reading the database's clock: {e}"))?;
    let mut result = UnitResult::default();
    let mut errors = Vec::new();
    let mut not_shared = 0;
    for partner in ctx.health.order(&ctx.partners, holders) {
        let mut confirmed = false;
        let walked = loop {
            match feed::walk_feed(ctx, &partner, ledger_id, topic, lease, cancel).await {
                Err(feed::WalkError::NotShared(body)) if !confirmed => {
                    if still_not_shared(ctx, &partner, ledger_id, topic).await {
                        break Err(feed::WalkError::NotShared(body));
                    }
                    // One 404 and then an answer: a glitch of the gateway, not consent
                    // ending. The walk goes on.
                    tracing::warn!(partner = partner.name(), "a 404 was not confirmed by a second request after a pause; the grant stays open");
                    confirmed = true;
                }
                other => break other,
            }
        };
        match walked {
            Ok(outcome) => {
                result.outcome = outcome;
                return Ok(result);
            }
            Err(feed::WalkError::NotShared(body)) => {
                match grants::close(
                    &ctx.pool,
                    partner.name(),
                    ledger_id,
                    grants::RevokeReason::Feed404,
                    started,
                )
                .await
                {
                    Ok(Some(grant)) => {
                        discovery::log_closed(&grant);
                        result.grants_closed += 1;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("closing the grant of {}: {e}", partner.name())),
                }
                not_shared += 1;
                errors.push(format!("{}: 404 {body}", partner.name()));
            }
            Err(feed::WalkError::PartnerKeys(error)) => {
                ctx.health.set_failed(partner.name(), &error);
                errors.push(format!("{}: {error}", partner.name()));
            }
            Err(feed::WalkError::CursorRejected { cursor, error }) => {
                let reason = format!("the API rejected cursor {cursor}: {error}");
                match feed_health::block(&ctx.pool, ledger_id, topic, &reason, lease).await {
                    Ok(true) => {}
                    Ok(false) => return Err(lease_lost("blocking the feed")),
                    Err(e) => return Err(format!("{reason}; blocking the feed failed: {e}")),
                }
                tracing::error!(%reason, "feed blocked: its cursor was rejected; it is not restarted without a person deciding");
                return Err(format!("blocked: {reason}"));
            }
            Err(feed::WalkError::LeaseLost(why)) => {
                tracing::warn!(%why, "lease lost: a late write was refused");
                return Err(format!("lease lost: {why}"));
            }
            Err(feed::WalkError::Failed(e)) => return Err(format!("{e:#}")),
        }
    }
    if not_shared > 0 && errors.len() == not_shared {
        // Every partner lost access: consent ended, which is not a failure of the sync.
        return Ok(result);
    }
    if errors.is_empty() {
        return Err("no configured partner holds a grant for this ledger".to_owned());
    }
    Err(errors.join("; "))
}

/// Asks again, after a pause, whether the feed still answers 404 to `partner` (at the stored
/// cursor): a single 404 from a gateway is not consent ending.
async fn still_not_shared(
    ctx: &SyncContext,
    partner: &PartnerClient,
    ledger_id: &str,
    topic: Topic,
) -> bool {
    tokio::time::sleep(confirm_pause(&ctx.settings)).await;
    let cursor = feeds::load_cursor(&ctx.pool, ledger_id, topic)
        .await
        .ok()
        .flatten()
        .and_then(|row| row.cursor);
    matches!(
        partner.feed(ledger_id, topic, cursor.as_deref()).await,
        Err(crate::report_api::ApiError::NotFound { .. })
    )
}

/// The pause before a 404 is asked about again: four times `retry.base_backoff` (2 s by
/// default), long enough for a gateway's passing glitch.
fn confirm_pause(settings: &crate::config::Settings) -> std::time::Duration {
    settings.retry.base_backoff.saturating_mul(4)
}

/// The error of a unit whose lease was taken over when it wrote `what`, logged once.
pub(super) fn lease_lost(what: &str) -> String {
    let why = format!("{what} was refused: another instance holds the unit now");
    tracing::warn!(%why, "lease lost: a late write was refused");
    format!("lease lost: {why}")
}
