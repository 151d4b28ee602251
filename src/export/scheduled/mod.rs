//! Scheduled exporters (`[[exporters]]`): after each reconciliation pass of `run` (and on
//! `export --exporter NAME`), every closed, cleanly reconciled ledger date that an exporter has
//! not delivered yet is delivered once; for the per-payout kinds (`payouts`, `settlement-xml`,
//! `settlement-csv`, `payout-webhook`), every payout whose ledger dates have all closed
//! cleanly (`store::export_log::due_payouts`), by the same protocol, one document each.
//!
//! Exactly once, across crashes and instances:
//! - one instance at a time runs an exporter (a PostgreSQL advisory lock held for the pass);
//! - a file is first written in full under a hidden temporary name (`.<name>.partial`, fsynced),
//!   then the export log records `writing` with its final path and checksum, then the file is
//!   renamed into place, then the log says `exported`. A run that finds `writing` left behind
//!   finishes that delivery: it renames the temporary file if it is still there, and otherwise
//!   knows the rename happened (the file may already have been imported and moved away) and
//!   never writes the date again. Without a `writing` record nothing was delivered, and the
//!   date is produced afresh;
//! - a webhook carries an `Idempotency-Key` that is the same on every retry and after a
//!   restart: a delivery cut off between the receiver's 2xx and the log's `exported` is sent
//!   again with the same key, for the receiver to drop; a later delivery of a delivered date
//!   (`--force`) carries a new key that names the one it revises.
//!
//! Dates are delivered in order per ledger, and one ledger's trouble stays its own: a failed
//! delivery is recorded `failed` with the error and a pause (`store::export_log::failed`),
//! the ledger's later dates wait for it, and the other ledgers go on. A scheduled pass leaves
//! a ledger alone until its pause is over; `export --exporter` tries at once. A date whose
//! reconciliation found a mismatch is held back (`held`, with the reason) until it reconciles;
//! a date that cannot be written in the exporter's format (`produce::Unrepresentable`) is held
//! with the reason and never written.

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::webhook;
use crate::config::{ExporterSettings, ExporterTarget, Settings};
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::store::export_log::{self as log, DueAfter, DueDate, Key, Scope, DUE_PAGE};

mod deliver;
mod produce;
use deliver::{check_directory, deliver_file, deliver_webhook};
pub use deliver::{file_name, payout_file_name};
pub use produce::{statement, summarize, DeliveryKey, Unrepresentable};

/// What to export beyond the due dates (for `export --exporter`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub ledgers: Vec<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Deliver dates already exported again.
    pub force: bool,
    /// Try ledgers whose delivery failed recently at once, without waiting for their pause
    /// (`export --exporter`: a person asked for it now).
    pub now: bool,
}

/// What one exporter's pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ExporterReport {
    pub exporter: String,
    pub exported: usize,
    pub held: Vec<String>,
    /// `<ledger> <date>: <error>` of each delivery that failed in this pass (its ledger's
    /// later dates wait).
    pub failed: Vec<String>,
    /// Another instance was running this exporter; nothing was done.
    pub busy: bool,
    pub error: Option<String>,
}

/// Runs every configured exporter once; each one's failure is logged and reported, never
/// fatal to the others.
pub async fn run_all(
    pool: &PgPool,
    settings: &Settings,
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> Vec<ExporterReport> {
    let mut reports = Vec::new();
    for exporter in &settings.exporters {
        if cancel.is_cancelled() {
            break;
        }
        let report = run(
            pool,
            settings,
            exporter,
            &Selection::default(),
            metrics,
            cancel,
        )
        .await;
        if let Some(error) = &report.error {
            tracing::error!(exporter = %exporter.name, error, "exporter failed");
        } else if !report.failed.is_empty() {
            tracing::warn!(
                exporter = %exporter.name,
                exported = report.exported,
                held = report.held.len(),
                failed = report.failed.len(),
                "exporter finished; some ledgers' deliveries failed and wait for their retry"
            );
        } else if report.exported > 0 || !report.held.is_empty() {
            tracing::info!(
                exporter = %exporter.name,
                exported = report.exported,
                held = report.held.len(),
                "exporter finished"
            );
        }
        reports.push(report);
    }
    reports
}

/// One pass of one exporter.
pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    exporter: &ExporterSettings,
    selection: &Selection,
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> ExporterReport {
    let mut report = ExporterReport {
        exporter: exporter.name.clone(),
        ..ExporterReport::default()
    };
    let mut conn = match pool.acquire().await {
        // The lock is the session's: closing the connection when the pass ends (or is dropped
        // at the drain deadline) releases it, whatever happened, rather than handing a locked
        // session back to the pool.
        Ok(mut conn) => {
            conn.close_on_drop();
            conn
        }
        Err(e) => {
            report.error = Some(format!("connecting to the database: {e}"));
            return report;
        }
    };
    match log::try_lock(&mut conn, &exporter.name).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(exporter = %exporter.name, "another instance is running this exporter");
            report.busy = true;
            return report;
        }
        Err(e) => {
            report.error = Some(format!("locking exporter {}: {e}", exporter.name));
            return report;
        }
    }
    let outcome = pass(
        pool,
        settings,
        exporter,
        selection,
        metrics,
        cancel,
        &mut report,
    )
    .await;
    if let Err(e) = outcome {
        report.error = Some(format!("{e:#}"));
    }
    let _ = log::unlock(&mut conn, &exporter.name).await;
    report
}

async fn pass(
    pool: &PgPool,
    settings: &Settings,
    exporter: &ExporterSettings,
    selection: &Selection,
    metrics: &Metrics,
    cancel: &CancellationToken,
    report: &mut ExporterReport,
) -> anyhow::Result<()> {
    let topics: Vec<String> = settings
        .sync
        .topics
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    let ledgers = if selection.ledgers.is_empty() {
        exporter.ledgers.clone()
    } else if exporter.ledgers.is_empty() {
        selection.ledgers.clone()
    } else {
        // Both narrow: only ledgers in both lists.
        selection
            .ledgers
            .iter()
            .filter(|l| exporter.ledgers.contains(l))
            .cloned()
            .collect()
    };
    let from = match (exporter.from, selection.from) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let scope = Scope {
        exporter: &exporter.name,
        ledgers: &ledgers,
        partner: exporter.partner.as_deref(),
        from,
        to: selection.to,
        topics: &topics,
        include_exported: selection.force,
    };
    let via = match &exporter.target {
        ExporterTarget::Directory { path, format, .. } => {
            check_directory(&exporter.name, path)?;
            Via::Directory {
                path,
                format: *format,
            }
        }
        ExporterTarget::Webhook { url, secret } => Via::Webhook {
            http: webhook::client(settings.api.request_timeout, settings.api.connect_timeout)
                .context("building the webhook client")?,
            url,
            secret,
            retry: RetryPolicy::from(&settings.retry),
            max_retry_after: settings.limits.max_retry_after,
        },
    };
    let target = Target {
        pool,
        exporter,
        via,
        force: selection.force,
        metrics,
    };
    // Ledgers whose dates wait: a recent failure's pause (unless asked to try now), and any
    // ledger whose delivery fails in this pass.
    let mut waiting: std::collections::HashSet<String> = if selection.now {
        Default::default()
    } else {
        log::waiting_ledgers(pool, &exporter.name)
            .await
            .context("reading which ledgers wait after a failure")?
            .into_iter()
            .collect()
    };
    let mut after = DueAfter::start();
    loop {
        let page = if exporter.kind.per_payout() {
            log::due_payouts(pool, &scope, &after, DUE_PAGE)
                .await
                .context("finding the payouts to export")?
        } else {
            log::due(pool, &scope, &after, DUE_PAGE)
                .await
                .context("finding the dates to export")?
        };
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = DueAfter::of(last);
        let more = page.len() as i64 == DUE_PAGE;
        for date in &page {
            if cancel.is_cancelled() {
                return Ok(());
            }
            // A payout waits for the dates it covers to close; a ledger, for its pause.
            if date.waiting || waiting.contains(&date.ledger_id) {
                continue;
            }
            if !target.export(date, report).await? {
                waiting.insert(date.ledger_id.clone());
            }
        }
        if !more {
            return Ok(());
        }
    }
}

/// Where one exporter's pass delivers, and how.
struct Target<'a> {
    pool: &'a PgPool,
    exporter: &'a ExporterSettings,
    via: Via<'a>,
    force: bool,
    metrics: &'a Metrics,
}

/// The exporter's target, with what delivering there takes (built once per pass).
enum Via<'a> {
    Directory {
        path: &'a std::path::Path,
        format: super::Format,
    },
    Webhook {
        http: reqwest::Client,
        url: &'a crate::config::WebhookUrl,
        secret: &'a secrecy::SecretString,
        retry: RetryPolicy,
        max_retry_after: std::time::Duration,
    },
}

impl Target<'_> {
    /// Holds `date` back or delivers it. False if its delivery failed (recorded, with its
    /// pause): the ledger's later dates must wait. An error only if the database fails.
    async fn export(&self, date: &DueDate, report: &mut ExporterReport) -> anyhow::Result<bool> {
        let (pool, exporter) = (self.pool, self.exporter);
        let key = Key {
            exporter: &exporter.name,
            ledger_id: &date.ledger_id,
            ledger_date: date.ledger_date,
            payout: date.payout.as_deref().unwrap_or_default(),
            kind: exporter.kind.as_str(),
            partner: exporter.partner.as_deref(),
        };
        if date.held {
            let reason = format!("reconciliation: {}", date.reconciliation);
            log::hold(pool, &key, &reason).await?;
            tracing::warn!(
                exporter = %exporter.name,
                ledger = %date.ledger_id,
                date = %date.ledger_date,
                payout = date.payout.as_deref(),
                reconciliation = %date.reconciliation,
                "held back: the reconciliation of its ledger date found differences"
            );
            report.held.push(date.label());
            return Ok(true);
        }
        let delivered = match &self.via {
            Via::Directory { path, format } => {
                deliver_file(pool, exporter, date, &key, path, *format, self.force).await
            }
            Via::Webhook {
                http,
                url,
                secret,
                retry,
                max_retry_after,
            } => {
                deliver_webhook(
                    pool,
                    exporter,
                    date,
                    &key,
                    http,
                    url,
                    secret,
                    retry,
                    *max_retry_after,
                    self.force,
                )
                .await
            }
        };
        let error = match delivered {
            Ok(()) => {
                self.metrics.export_done(&exporter.name, true);
                report.exported += 1;
                return Ok(true);
            }
            Err(e) => e,
        };
        if let Some(why) = error.downcast_ref::<Unrepresentable>() {
            // Never written: held with the reason, like a mismatch; the ledger goes on.
            let reason = why.to_string();
            log::hold(pool, &key, &reason).await?;
            tracing::warn!(exporter = %exporter.name, ledger = %date.ledger_id,
                date = %date.ledger_date, payout = date.payout.as_deref(), reason,
                "held back: it cannot be written");
            report.held.push(date.label());
            return Ok(true);
        }
        self.metrics.export_done(&exporter.name, false);
        let error = crate::text::error_text(&format!("{error:#}"));
        log::failed(pool, &key, &error).await?;
        tracing::error!(exporter = %exporter.name, ledger = %date.ledger_id,
            date = %date.ledger_date, payout = date.payout.as_deref(), error,
            "delivery failed; this ledger's later dates wait for its retry, the others go on");
        report.failed.push(format!("{}: {error}", date.label()));
        Ok(false)
    }
}
