//! The gauges read from the database when `/metrics` is scraped, and the scrape itself.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::monitoring::{self, MonitoringSnapshot};
use crate::sync::SyncContext;

/// An `f64` gauge.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Longest a scrape's database queries may run, in milliseconds; past it the gauges read
/// from the database are left out and `vls_database_up` is 0.
pub const SCRAPE_STATEMENT_TIMEOUT_MS: u64 = 2_000;

/// The gauges of one scrape, in a registry of their own (rebuilt every scrape, so a feed or
/// partner that went away leaves no stale series).
pub(super) fn gauges(
    snapshot: Option<&MonitoringSnapshot>,
    partners_up: &[(String, bool)],
) -> Registry {
    let mut r = Registry::default();
    let up = Gauge::<i64>::default();
    up.set(1);
    r.register("vls_up", "1 while the process runs", up);
    let build = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    build
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
    r.register(
        "vls_build_info",
        "Always 1; the version in its label",
        build,
    );
    let db_up = Gauge::<i64>::default();
    db_up.set(i64::from(snapshot.is_some()));
    r.register(
        "vls_database_up",
        "1 if the database answered this scrape's queries in time",
        db_up,
    );
    let partner_up = Family::<Vec<(&'static str, String)>, Gauge>::default();
    for (partner, up) in partners_up {
        partner_up
            .get_or_create(&vec![("partner", partner.clone())])
            .set(i64::from(*up));
    }
    r.register(
        "vls_partner_up",
        "1 if the partner's keys work: its last listing and its last token request succeeded",
        partner_up,
    );
    let Some(s) = snapshot else { return r };

    let lag = Family::<Vec<(&'static str, String)>, FloatGauge>::default();
    let last_success = Family::<Vec<(&'static str, String)>, FloatGauge>::default();
    let failures = Family::<Vec<(&'static str, String)>, Gauge>::default();
    for f in &s.feeds {
        let labels = vec![("ledger", f.ledger_id.clone()), ("topic", f.topic.clone())];
        if let Some(secs) = f.lag_seconds {
            lag.get_or_create(&labels).set(secs);
        }
        if let Some(at) = f.last_success_at {
            last_success
                .get_or_create(&labels)
                .set(at.timestamp_micros() as f64 / 1e6);
        }
        failures
            .get_or_create(&labels)
            .set(i64::from(f.consecutive_failures));
    }
    r.register(
        "vls_feed_lag_seconds",
        "Seconds since the time of the newest stored entry, per feed with an open grant",
        lag,
    );
    r.register(
        "vls_feed_last_success_timestamp_seconds",
        "Unix time of the feed's last committed page",
        last_success,
    );
    r.register(
        "vls_feed_consecutive_failures",
        "Failed attempts at the feed since its last success",
        failures,
    );

    let p = &s.polling;
    for (name, help, value) in [
        (
            "vls_feeds_due",
            "Feeds of open grants due for a poll now (adaptive polling)",
            p.due,
        ),
        (
            "vls_feeds_overdue",
            "Feeds due for longer than their own interval",
            p.overdue,
        ),
        (
            "vls_feed_polls_last_hour",
            "Feeds polled in the last hour, by every instance (bounded by sync.polls_per_hour)",
            p.polled_last_hour,
        ),
    ] {
        let g = Gauge::<i64>::default();
        g.set(value);
        r.register(name, help, g);
    }
    let intervals = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    for (le, n) in [
        ("5m", p.interval_5m),
        ("1h", p.interval_1h),
        ("6h", p.interval_6h),
        ("longer", p.interval_longer),
    ] {
        intervals.get_or_create(&vec![("up_to", le)]).set(n);
    }
    r.register(
        "vls_feed_poll_interval",
        "Feeds by their current poll interval: up to 5 minutes, an hour, 6 hours, or longer",
        intervals,
    );

    let ledgers = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    for state in monitoring::LEDGER_STATES {
        let n = s
            .ledger_states
            .iter()
            .find(|(st, _)| st == state)
            .map_or(0, |(_, n)| *n);
        ledgers.get_or_create(&vec![("state", *state)]).set(n);
    }
    r.register("vls_ledgers", "Ledgers ever seen, by state", ledgers);
    r
}

/// `/metrics`: the counters of `ctx` and the gauges read from the database (through `db`) now.
pub async fn scrape(ctx: &SyncContext, db: &sqlx::PgPool) -> String {
    let snapshot = match monitoring::snapshot(
        db,
        &ctx.settings.sync.topics,
        SCRAPE_STATEMENT_TIMEOUT_MS,
    )
    .await
    {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "metrics: the database did not answer; its gauges are left out"
            );
            None
        }
    };
    let failed = snapshot
        .as_ref()
        .map_or(&[][..], |s| &s.partners_failed[..]);
    let up = partners_up(ctx, failed);
    ctx.metrics.encode(&gauges(snapshot.as_ref(), &up))
}

/// Each configured partner: up unless the database records its last listing as failed or
/// its token cache's last request failed with no valid token left.
fn partners_up(ctx: &SyncContext, failed_in_db: &[String]) -> Vec<(String, bool)> {
    ctx.partners
        .iter()
        .map(|p| {
            let failed = failed_in_db.iter().any(|f| f == p.name())
                || matches!(
                    p.tokens().health(),
                    crate::report_api::TokenHealth::Failed(_)
                );
            (p.name().to_owned(), !failed)
        })
        .collect()
}
