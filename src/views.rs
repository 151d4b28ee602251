//! What the database says, for people (tables) and scripts (`--json`): `status`, `ledgers`,
//! `grants`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store::{entries, grants, ledgers};

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// `status`: every partner's health and every feed's position.
pub async fn print_status(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let partners = grants::partners(pool).await?;
    let feeds = entries::feed_summaries(pool).await?;
    if json {
        let doc = serde_json::json!({ "partners": partners, "feeds": feeds });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<20} {:>7}  state",
        "partner", "last listing", "ledgers"
    );
    for p in &partners {
        let state = match (&p.failed_at, &p.last_error) {
            (Some(at), Some(error)) => format!("FAILED since {}: {error}", when(Some(*at))),
            _ => "ok".to_owned(),
        };
        let listed = p.last_listed.map_or("-".to_owned(), |n| n.to_string());
        println!(
            "{:<24} {:<20} {:>7}  {state}",
            p.partner,
            when(p.last_listing_at),
            listed
        );
    }
    println!();
    println!(
        "{:<12} {:<6} {:>8} {:>16} {:>16} {:<8} {:<20}  state",
        "ledger", "topic", "entries", "sum (minor)", "balance (minor)", "currency", "caught up"
    );
    for r in &feeds {
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
        println!(
            "{:<12} {:<6} {:>8} {:>16} {:>16} {:<8} {:<20}  {state}",
            r.ledger_id,
            r.topic,
            r.entries,
            r.amount_sum,
            r.balance.map_or("-".to_owned(), |b| b.to_string()),
            or_dash(r.currency.as_deref()),
            when(r.caught_up_at),
        );
    }
    Ok(())
}

/// `ledgers`: every ledger ever seen, its merchant, who may read it, and its state.
pub async fn print_ledgers(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let rows = ledgers::overview(pool).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<12} {:<8} {:<30} {:<8} {:>8}  partners",
        "ledger", "currency", "merchant", "state", "entries"
    );
    for r in &rows {
        let merchant = format!(
            "{} {}",
            or_dash(r.merchant_scheme.as_deref()),
            or_dash(r.merchant_id.as_deref())
        );
        println!(
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
        );
    }
    Ok(())
}

/// `grants`: the open grants per partner and merchant; with `all`, closed periods too; with
/// a ledger, the whole history of that ledger.
pub async fn print_grants(
    pool: &PgPool,
    ledger_id: Option<&str>,
    all: bool,
    json: bool,
) -> anyhow::Result<()> {
    let rows = grants::list(pool, ledger_id, !all && ledger_id.is_none()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if let Some(ledger) = ledger_id {
        println!("history of ledger {ledger}: {} grant period(s)", rows.len());
    }
    println!(
        "{:<20} {:<30} {:<12} {:<20} {:<20} {:<20}  reason",
        "partner", "merchant", "ledger", "granted (seen)", "last seen", "revoked (seen)"
    );
    for g in &rows {
        let merchant = format!(
            "{} {}",
            or_dash(g.merchant_scheme.as_deref()),
            or_dash(g.merchant_id.as_deref())
        );
        println!(
            "{:<20} {:<30} {:<12} {:<20} {:<20} {:<20}  {}",
            g.partner,
            merchant,
            g.ledger_id,
            when(Some(g.granted_seen_at)),
            when(Some(g.last_seen_at)),
            when(g.revoked_seen_at),
            or_dash(g.revoke_reason.as_deref())
        );
    }
    Ok(())
}
