//! What the database says, for people (tables) and scripts (`--json`): `status` (partners,
//! ledgers by state, lag, last errors, next runs, every feed), `ledgers`, `grants`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::config::{parse_cron, Settings};
use crate::store::{entries, grants, ledgers, monitoring};
use crate::text::printable;

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// Writes one line of a table: whatever the values hold, it stays one line (control
/// characters stored from the API are escaped, so a newline in an id cannot forge a line).
fn line(o: &mut String, args: std::fmt::Arguments<'_>) {
    o.push_str(&printable(&args.to_string()));
    o.push('\n');
}

fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// Feeds listed under "worst lag" per topic in `status`.
const WORST_FEEDS: usize = 3;

/// Latest feed errors listed in `status`.
const LAST_ERRORS: i64 = 10;

/// `status` as one document: the `--json` output, with stable keys (docs/monitoring.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    /// Each partner's keys: last listing, failure.
    pub partners: Vec<grants::PartnerRow>,
    /// Ledgers per state (every state of `store::monitoring::LEDGER_STATES`, zero included).
    pub ledgers_by_state: BTreeMap<String, i64>,
    /// Per configured topic, over the feeds of ledgers with an open grant.
    pub lag: Vec<TopicLag>,
    /// The most recent feed errors, newest first.
    pub last_errors: Vec<monitoring::FeedErrorRow>,
    /// Next firing of each schedule of `run`.
    pub next_runs: BTreeMap<String, NextRun>,
    /// Where every feed stands.
    pub feeds: Vec<entries::FeedSummaryRow>,
    /// The scheduled exporters' dates by status; held and failing ones named.
    pub exports: Vec<crate::store::export_log::StatusCount>,
    /// The adaptive polling schedule: feeds due, overdue, by interval.
    pub polling: crate::store::poll_schedule::ScheduleSummary,
    /// Under adaptive polling, why `sync.polls_per_hour` cannot poll every feed once per
    /// `sync.max_poll_interval`, if it cannot (`sync::schedule::budget_shortfall`).
    pub polling_budget_short: Option<String>,
}

/// How far behind the feeds of one topic are: seconds since each feed's newest stored entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopicLag {
    pub topic: String,
    /// Feeds with at least one stored entry.
    pub feeds: usize,
    pub worst_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    /// The feeds furthest behind, worst first.
    pub worst_feeds: Vec<FeedLag>,
}

/// One feed's lag.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FeedLag {
    pub ledger_id: String,
    pub lag_seconds: f64,
}

/// A schedule and its next firing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NextRun {
    /// The settings key.
    pub key: String,
    pub schedule: String,
    pub next: Option<DateTime<Utc>>,
}

/// Reads everything `status` shows.
pub async fn status_report(pool: &PgPool, settings: &Settings) -> anyhow::Result<StatusReport> {
    let topics = &settings.sync.topics;
    let partners = grants::partners(pool).await?;
    let feeds = entries::feed_summaries(pool).await?;
    let mut conn = pool.acquire().await?;
    let health = monitoring::feed_health(&mut conn, topics).await?;
    let mut ledgers_by_state: BTreeMap<String, i64> = monitoring::LEDGER_STATES
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    ledgers_by_state.extend(monitoring::ledger_states(&mut conn, topics).await?);
    let polling = crate::store::poll_schedule::summary(&mut conn, Utc::now()).await?;
    drop(conn);
    let last_errors = monitoring::recent_errors(pool, LAST_ERRORS).await?;
    let lag = topics
        .iter()
        .map(|t| topic_lag(t.as_str(), &health))
        .collect();
    Ok(StatusReport {
        partners,
        ledgers_by_state,
        lag,
        last_errors,
        next_runs: next_runs(settings, Utc::now()),
        feeds,
        exports: crate::store::export_log::status_counts(pool).await?,
        polling_budget_short: (settings.sync.polling == crate::config::Polling::Adaptive)
            .then(|| {
                crate::sync::schedule::budget_shortfall(
                    polling.ledgers * topics.len() as i64,
                    settings.sync.polls_per_hour,
                    settings.sync.max_poll_interval,
                )
            })
            .flatten(),
        polling,
    })
}

fn topic_lag(topic: &str, health: &[monitoring::FeedHealthRow]) -> TopicLag {
    let mut lags: Vec<FeedLag> = health
        .iter()
        .filter(|f| f.topic == topic)
        .filter_map(|f| {
            f.lag_seconds.map(|lag_seconds| FeedLag {
                ledger_id: f.ledger_id.clone(),
                lag_seconds,
            })
        })
        .collect();
    lags.sort_by(|a, b| b.lag_seconds.total_cmp(&a.lag_seconds));
    let median = match lags.len() {
        0 => None,
        n if n % 2 == 1 => Some(lags[n / 2].lag_seconds),
        n => Some((lags[n / 2 - 1].lag_seconds + lags[n / 2].lag_seconds) / 2.0),
    };
    TopicLag {
        topic: topic.to_owned(),
        feeds: lags.len(),
        worst_seconds: lags.first().map(|l| l.lag_seconds),
        median_seconds: median,
        worst_feeds: lags.into_iter().take(WORST_FEEDS).collect(),
    }
}

/// The next firing after `now` of `sync.schedule`, `sync.discovery_schedule` and
/// `sync.verify_schedule`, keyed `sync`, `discovery`, `verify`.
pub fn next_runs(settings: &Settings, now: DateTime<Utc>) -> BTreeMap<String, NextRun> {
    let sync = &settings.sync;
    [
        ("sync", "sync.schedule", &sync.schedule),
        (
            "discovery",
            "sync.discovery_schedule",
            &sync.discovery_schedule,
        ),
        ("verify", "sync.verify_schedule", &sync.verify_schedule),
    ]
    .into_iter()
    .map(|(name, key, schedule)| {
        let next = parse_cron(schedule)
            .ok()
            .and_then(|cron| cron.find_next_occurrence(&now, false).ok());
        let run = NextRun {
            key: key.to_owned(),
            schedule: schedule.clone(),
            next,
        };
        (name.to_owned(), run)
    })
    .collect()
}

/// A duration in seconds for people: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// `status`: partners, ledgers by state, lag, last errors, next runs, and every feed's
/// position.
pub async fn print_status(pool: &PgPool, settings: &Settings, json: bool) -> anyhow::Result<()> {
    let report = status_report(pool, settings).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_status(&report));
    }
    Ok(())
}

/// The `status` table for people.
pub fn render_status(r: &StatusReport) -> String {
    let mut o = String::new();
    render_partners(&mut o, &r.partners);
    o.push('\n');
    let states: Vec<String> = r
        .ledgers_by_state
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    line(
        &mut o,
        format_args!("ledgers by state: {}", states.join(", ")),
    );
    let p = &r.polling;
    line(
        &mut o,
        format_args!(
            "polling: {} feeds due ({} overdue); intervals up to 5m {}, 1h {}, 6h {}, longer {}; \
             {} polled in the last hour",
            p.due,
            p.overdue,
            p.interval_5m,
            p.interval_1h,
            p.interval_6h,
            p.interval_longer,
            p.polled_last_hour
        ),
    );
    if let Some(short) = &r.polling_budget_short {
        line(&mut o, format_args!("polling: WARNING: {short}"));
    }
    o.push('\n');
    line(
        &mut o,
        format_args!(
            "{:<6} {:>6} {:>10} {:>10}  furthest behind",
            "lag", "feeds", "worst", "median"
        ),
    );
    for l in &r.lag {
        let worst: Vec<String> = l
            .worst_feeds
            .iter()
            .map(|f| format!("{} ({})", f.ledger_id, ago(f.lag_seconds)))
            .collect();
        line(
            &mut o,
            format_args!(
                "{:<6} {:>6} {:>10} {:>10}  {}",
                l.topic,
                l.feeds,
                l.worst_seconds.map_or("-".to_owned(), ago),
                l.median_seconds.map_or("-".to_owned(), ago),
                if worst.is_empty() {
                    "-".to_owned()
                } else {
                    worst.join(", ")
                }
            ),
        );
    }
    o.push('\n');
    if r.last_errors.is_empty() {
        line(&mut o, format_args!("last errors: none"));
    } else {
        line(&mut o, format_args!("last errors (newest first):"));
        for e in &r.last_errors {
            let now = if e.consecutive_failures > 0 {
                format!("failing, {}x", e.consecutive_failures)
            } else {
                "recovered".to_owned()
            };
            line(
                &mut o,
                format_args!(
                    "  {} {:<12} {:<6} [{now}] {}",
                    when(Some(e.at)),
                    e.ledger_id,
                    e.topic,
                    e.error
                ),
            );
        }
    }
    o.push('\n');
    line(&mut o, format_args!("next runs (UTC):"));
    for (name, run) in &r.next_runs {
        line(
            &mut o,
            format_args!(
                "  {:<10} {:<20} ({} = \"{}\")",
                name,
                when(run.next),
                run.key,
                run.schedule
            ),
        );
    }
    if !r.exports.is_empty() {
        o.push('\n');
        line(&mut o, format_args!("exports (ledger dates per exporter):"));
        for e in &r.exports {
            line(
                &mut o,
                format_args!("  {:<20} {:<9} {:>7}", e.exporter, e.status, e.dates),
            );
            for example in &e.examples {
                line(&mut o, format_args!("      {example}"));
            }
        }
    }
    o.push('\n');
    render_feeds(&mut o, &r.feeds);
    o
}

fn render_partners(o: &mut String, partners: &[grants::PartnerRow]) {
    line(
        o,
        format_args!(
            "{:<24} {:<20} {:>7}  keys",
            "partner", "last listing", "ledgers"
        ),
    );
    for p in partners {
        let state = match (&p.failed_at, &p.last_error) {
            (Some(at), Some(error)) if p.keys_refused => {
                format!("REFUSED since {}: {error}", when(Some(*at)))
            }
            (Some(at), Some(error)) => {
                format!("ok; listing failing since {}: {error}", when(Some(*at)))
            }
            _ => "ok".to_owned(),
        };
        let listed = p.last_listed.map_or("-".to_owned(), |n| n.to_string());
        line(
            o,
            format_args!(
                "{:<24} {:<20} {:>7}  {state}",
                p.partner,
                when(p.last_listing_at),
                listed
            ),
        );
    }
}

fn render_feeds(o: &mut String, feeds: &[entries::FeedSummaryRow]) {
    line(
        o,
        format_args!(
            "{:<12} {:<6} {:>8} {:>16} {:>16} {:<8} {:<20}  state",
            "ledger", "topic", "entries", "sum (minor)", "balance (minor)", "currency", "caught up"
        ),
    );
    for r in feeds {
        let state = if let Some(reason) = &r.blocked_reason {
            format!("BLOCKED: {reason}")
        } else if r.consecutive_failures > 0 {
            format!(
                "FAILING ({}x, next try {}): {}",
                r.consecutive_failures,
                when(r.next_attempt_at),
                or_dash(r.last_error.as_deref())
            )
        } else {
            "ok".to_owned()
        };
        let state = if r.conflicts > 0 {
            format!("{state}; {} conflict(s) in entry_conflicts", r.conflicts)
        } else {
            state
        };
        line(
            o,
            format_args!(
                "{:<12} {:<6} {:>8} {:>16} {:>16} {:<8} {:<20}  {state}",
                r.ledger_id,
                r.topic,
                r.entries,
                r.amount_sum,
                r.balance.map_or("-".to_owned(), |b| b.to_string()),
                or_dash(r.currency.as_deref()),
                when(r.caught_up_at),
            ),
        );
    }
}

/// `ledgers`: every ledger ever seen (or what `partner` may see), its merchant, who may read
/// it, and its state.
pub async fn print_ledgers(pool: &PgPool, partner: Option<&str>, json: bool) -> anyhow::Result<()> {
    let rows = ledgers::overview(pool, partner).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{}",
        printable(&format!(
            "{:<12} {:<8} {:<30} {:<8} {:>8}  partners",
            "ledger", "currency", "merchant", "state", "entries"
        ))
    );
    for r in &rows {
        let merchant = format!(
            "{} {}",
            or_dash(r.merchant_scheme.as_deref()),
            or_dash(r.merchant_id.as_deref())
        );
        println!(
            "{}",
            printable(&format!(
                "{:<12} {:<8} {:<30} {:<8} {:>8}  {}",
                r.ledger_id,
                or_dash(r.currency.as_deref()),
                merchant,
                r.state,
                r.entries,
                if r.partners.is_empty() {
                    "-".to_owned()
                } else {
                    r.partners.join(", ")
                }
            ))
        );
    }
    Ok(())
}

/// `grants`: the open grants per partner and merchant; with `all`, closed periods too; with
/// a ledger, the whole history of that ledger.
pub async fn print_grants(
    pool: &PgPool,
    ledger_id: Option<&str>,
    partner: Option<&str>,
    all: bool,
    json: bool,
) -> anyhow::Result<()> {
    let rows = grants::list(pool, ledger_id, !all && ledger_id.is_none(), partner).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if let Some(ledger) = ledger_id {
        println!(
            "{}",
            printable(&format!(
                "history of ledger {ledger}: {} grant period(s)",
                rows.len()
            ))
        );
    }
    println!(
        "{}",
        printable(&format!(
            "{:<20} {:<30} {:<12} {:<20} {:<20} {:<20}  reason",
            "partner", "merchant", "ledger", "granted (seen)", "last seen", "revoked (seen)"
        ))
    );
    for g in &rows {
        let merchant = format!(
            "{} {}",
            or_dash(g.merchant_scheme.as_deref()),
            or_dash(g.merchant_id.as_deref())
        );
        println!(
            "{}",
            printable(&format!(
                "{:<20} {:<30} {:<12} {:<20} {:<20} {:<20}  {}",
                g.partner,
                merchant,
                g.ledger_id,
                when(Some(g.granted_seen_at)),
                when(Some(g.last_seen_at)),
                when(g.revoked_seen_at),
                or_dash(g.revoke_reason.as_deref())
            ))
        );
    }
    Ok(())
}
