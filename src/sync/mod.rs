//! The sync logic, talking to the API and the store only through their types: discovery of
//! ledgers and grants, the feed walker for each (ledger, topic) unit, the pass that runs them
//! in a bounded pool, and the daemon that runs passes on a schedule.

pub mod daemon;
pub mod discovery;
pub mod feed;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{Settings, Topic};
use crate::report_api::{PartnerClient, ReportApiClient};
use crate::store;

/// Everything a sync needs: the database, the settings, and one API client per partner.
#[derive(Debug)]
pub struct SyncContext {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub partners: Vec<Arc<PartnerClient>>,
}

impl SyncContext {
    /// Connects to the database, applies migrations and builds the partners' clients.
    pub async fn connect(settings: Settings) -> anyhow::Result<SyncContext> {
        let pool = store::connect(&settings.database).await?;
        store::migrate(&pool).await?;
        Self::with_pool(settings, pool)
    }

    /// Builds the context on an existing pool (migrations must already be applied).
    pub fn with_pool(settings: Settings, pool: PgPool) -> anyhow::Result<SyncContext> {
        let api = ReportApiClient::new(&settings.api, &settings.retry)?;
        let partners = settings
            .partners
            .iter()
            .map(|p| Arc::new(api.partner(p)))
            .collect();
        Ok(SyncContext {
            pool,
            settings: Arc::new(settings),
            partners,
        })
    }
}

/// A (ledger, topic) unit that failed in a pass.
#[derive(Debug, Clone)]
pub struct UnitFailure {
    pub ledger_id: String,
    pub topic: Topic,
    pub error: String,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub ledgers: usize,
    pub units_ok: usize,
    pub pages: u64,
    pub inserted: u64,
    pub chain_breaks: u64,
    pub failed_partners: Vec<(String, String)>,
    pub failed_units: Vec<UnitFailure>,
    pub interrupted: bool,
    pub elapsed: Duration,
}

impl SyncReport {
    /// True when every partner and every unit succeeded and the pass ran to its end.
    pub fn success(&self) -> bool {
        self.failed_partners.is_empty() && self.failed_units.is_empty() && !self.interrupted
    }
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "synced {} ledgers ({} feeds ok, {} failed): {} new entries in {} pages, {:.2} s",
            self.ledgers,
            self.units_ok,
            self.failed_units.len(),
            self.inserted,
            self.pages,
            self.elapsed.as_secs_f64()
        )?;
        if self.chain_breaks > 0 {
            writeln!(
                f,
                "balance chain breaks found: {} (see balance_chain_breaks)",
                self.chain_breaks
            )?;
        }
        for (partner, error) in &self.failed_partners {
            writeln!(f, "partner {partner} failed: {error}")?;
        }
        for u in &self.failed_units {
            writeln!(f, "ledger {} {} failed: {}", u.ledger_id, u.topic, u.error)?;
        }
        if self.interrupted {
            writeln!(
                f,
                "stopped early on request; the next run continues from the stored cursors"
            )?;
        }
        Ok(())
    }
}

/// One pass: discover ledgers, then walk every consented (ledger, topic) feed to its current
/// end, `sync.concurrency` units at a time. One unit's failure never stops the others.
pub async fn sync_once(ctx: &Arc<SyncContext>, cancel: &CancellationToken) -> SyncReport {
    let started = Instant::now();
    let found = discovery::discover(ctx).await;
    let mut report = SyncReport {
        ledgers: found.ledgers.len(),
        failed_partners: found.failed_partners,
        ..Default::default()
    };
    let permits = Arc::new(Semaphore::new(ctx.settings.sync.concurrency));
    let mut units = JoinSet::new();
    for (ledger_id, partner) in found.ledgers {
        for &topic in &ctx.settings.sync.topics {
            let (ctx, partner, cancel, permits) = (
                Arc::clone(ctx),
                Arc::clone(&partner),
                cancel.clone(),
                Arc::clone(&permits),
            );
            let ledger_id = ledger_id.clone();
            let span = tracing::info_span!("feed", ledger = %ledger_id, topic = %topic);
            units.spawn(
                async move {
                    let _permit = permits.acquire_owned().await;
                    let result = feed::walk_feed(&ctx, &partner, &ledger_id, topic, &cancel).await;
                    (ledger_id, topic, result)
                }
                .instrument(span),
            );
        }
    }
    while let Some(joined) = units.join_next().await {
        let (ledger_id, topic, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                // A panic in a unit is a bug; report it like any failure and go on.
                tracing::error!(error = %e, "a feed task died");
                report.failed_units.push(UnitFailure {
                    ledger_id: "(unknown)".to_owned(),
                    topic: Topic::Funds,
                    error: e.to_string(),
                });
                continue;
            }
        };
        match result {
            Ok(outcome) => {
                report.pages += outcome.pages;
                report.inserted += outcome.inserted;
                report.chain_breaks += outcome.chain_breaks;
                report.interrupted |= outcome.interrupted;
                if !outcome.interrupted {
                    report.units_ok += 1;
                }
                tracing::debug!(ledger = %ledger_id, %topic, ?outcome, "feed synced");
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(ledger = %ledger_id, %topic, %error, "feed sync failed");
                report.failed_units.push(UnitFailure {
                    ledger_id,
                    topic,
                    error,
                });
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}
