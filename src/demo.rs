//! `demo`: the daemon against the built-in simulator on a local PostgreSQL, checked against
//! the simulator after every pass; with accounting keys granted every ledger, or (`demo
//! --merchant`) with a merchant's own keys, which read the ledgers of one MSN only.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::{
    Accounts, ExporterKind, ExporterSettings, ExporterTarget, KeyKind, MerchantKeys,
    PartnerSettings, Settings, Topic,
};
use crate::export::{scheduled, Format};
use crate::simulator::{Simulator, SimulatorConfig};
use crate::store::{self, entries};
use crate::sync::{self, SyncContext};
use crate::tables;

/// The PostgreSQL server the demo uses when neither `--database-url` nor `DATABASE_URL` is set.
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The database the demo creates afresh on that server; no other database is touched.
pub const DEMO_DATABASE: &str = "vipps_ledger_sync_demo";

const DEMO_CLIENT_ID: &str = "demo-client";
const DEMO_CLIENT_SECRET: &str = "demo-secret";
/// The merchant keys of `demo --merchant` (and `simulate --merchant-msn`).
pub const DEMO_MERCHANT_ID: &str = "demo-merchant";
pub const DEMO_MERCHANT_SECRET: &str = "demo-merchant-secret";
pub const DEMO_SUBSCRIPTION_KEYS: [&str; 2] =
    ["demo-subscription-primary", "demo-subscription-secondary"];

/// Runs the demo, with accounting keys or (`merchant`) a merchant's own keys; true when
/// every check passed.
pub async fn run(server_url: &str, merchant: bool) -> anyhow::Result<bool> {
    let server = PgConnectOptions::from_str(server_url)
        .map_err(|_| anyhow::anyhow!("--database-url / DATABASE_URL is not a PostgreSQL URL"))?;
    let demo_db = server.clone().database(DEMO_DATABASE);
    recreate_database(&server).await?;

    let shutdown = CancellationToken::new();
    let sim = Simulator::new(SimulatorConfig::demo());
    sim.add_partner_with_all_ledgers(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
    // The merchant's sales unit: the first MSN that settles into a ledger.
    let (msn, merchant_ledgers) = sim
        .merchant_serial_numbers()
        .into_iter()
        .find(|(_, ledgers)| !ledgers.is_empty())
        .context("the simulated data has no sales unit with an MSN")?;
    sim.add_merchant(
        DEMO_MERCHANT_ID,
        DEMO_MERCHANT_SECRET,
        &msn,
        &DEMO_SUBSCRIPTION_KEYS,
    );
    let readable = if merchant {
        merchant_ledgers
    } else {
        sim.ledger_ids()
    };
    let addr = Arc::clone(&sim)
        .spawn(([127, 0, 0, 1], 0).into(), shutdown.clone())
        .await
        .context("starting the simulator")?;
    println!("simulated Report API listening on http://{addr}");
    println!("database: {}", store::describe(&demo_db));

    let env = HashMap::from([
        ("VLS_API__BASE_URL".to_owned(), format!("http://{addr}")),
        (
            "VLS_DATABASE__URL".to_owned(),
            demo_db.to_url_lossy().to_string(),
        ),
    ]);
    // The user's file is not read: the demo needs nothing but these two addresses.
    let mut settings = Settings::load_with_env(None, env)?;
    settings.partners = vec![if merchant {
        println!(
            "merchant keys of sales unit {msn}: its {} ledger(s) of {} ({})",
            readable.len(),
            sim.ledger_ids().len(),
            readable.join(", ")
        );
        PartnerSettings {
            name: "demo-merchant".to_owned(),
            client_id: DEMO_MERCHANT_ID.to_owned(),
            client_secret: SecretString::from(DEMO_MERCHANT_SECRET),
            keys: KeyKind::Merchant(MerchantKeys {
                msn: msn.clone(),
                subscription_key: SecretString::from(DEMO_SUBSCRIPTION_KEYS[0]),
                secondary_subscription_key: Some(SecretString::from(DEMO_SUBSCRIPTION_KEYS[1])),
            }),
        }
    } else {
        PartnerSettings::accounting("demo-partner", DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    }];
    // Scheduled exporters, per ledger date and per payout, writing into a fresh directory
    // under the system's temp dir.
    let exports = std::env::temp_dir().join("vipps-ledger-sync-demo-exports");
    let _ = std::fs::remove_dir_all(&exports);
    settings.exporters = [
        (ExporterKind::Journal, Format::Csv),
        (ExporterKind::Camt053, Format::Csv),
        (ExporterKind::Payouts, Format::Csv),
        (ExporterKind::SettlementXml, Format::Csv),
    ]
    .into_iter()
    .map(|(kind, format)| ExporterSettings {
        name: kind.as_str().to_owned(),
        kind,
        partner: None,
        ledgers: Vec::new(),
        from: None,
        target: ExporterTarget::Directory {
            path: exports.join(kind.as_str()),
            format,
            csv_formulas: Default::default(),
        },
        accounts: Accounts::default(),
    })
    .collect();
    let ctx =
        Arc::new(SyncContext::connect(settings, Arc::new(crate::metrics::Metrics::new())).await?);
    let cancel = CancellationToken::new();

    println!("\n== first sync: the whole history");
    let first = sync::sync_once(&ctx, &cancel).await;
    print!("{first}");
    let mut ok = first.success() & report_comparison(&ctx.pool, &sim, &readable).await?;

    println!("\n== a day later: the feeds grew by one ledger date");
    sim.grow(1);
    let second = sync::sync_once(&ctx, &cancel).await;
    print!("{second}");
    ok &= second.success() & report_comparison(&ctx.pool, &sim, &readable).await?;

    println!("\n== once more with nothing new: one request per feed, nothing stored");
    let third = sync::sync_once(&ctx, &cancel).await;
    print!("{third}");
    ok &= third.success() && third.inserted == 0;
    ok &= report_comparison(&ctx.pool, &sim, &readable).await?;

    println!("\n== reconciliation: every closed ledger date against the API's daily report");
    let verified = crate::reconcile::verify(&ctx, &cancel).await?;
    print!("{verified}");
    ok &= verified.clean();

    println!(
        "\n== exporters: each closed, reconciled ledger date once (journal vouchers, camt.053), \
         each payout whose dates all reconciled once (payout lines, settlement reports)"
    );
    let closed = crate::store::reconcile::reconciled_dates(&ctx.pool).await?;
    let payouts = crate::store::reconcile::reconciled_payouts(&ctx.pool).await?;
    for report in scheduled::run_all(&ctx.pool, &ctx.settings, &ctx.metrics, &cancel).await {
        let dir = exports.join(&report.exporter);
        let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        let per_payout = ctx
            .settings
            .exporters
            .iter()
            .any(|e| e.name == report.exporter && e.kind.per_payout());
        let (due, unit) = if per_payout {
            (payouts, "payouts")
        } else {
            (closed, "ledger dates")
        };
        println!(
            "{}: {} {unit} exported, {files} files in {}",
            report.exporter,
            report.exported,
            dir.display()
        );
        let exact = report.error.is_none() && report.exported as i64 == due && files as i64 == due;
        if !exact {
            println!("check FAILED: {due} {unit} due, {report:?}");
        }
        ok &= exact;
    }
    let again = scheduled::run_all(&ctx.pool, &ctx.settings, &ctx.metrics, &cancel).await;
    let repeated: usize = again.iter().map(|r| r.exported).sum();
    println!("check: a second pass exports nothing again ({repeated} dates or payouts)");
    ok &= repeated == 0;

    println!("\n== payout documents: payouts, the Vipps settlement report, GBAT10 vouchers");
    ok &= payout_documents(&ctx, &exports).await?;

    let stats = sim.stats();
    let headers_ok = stats.missing_system_headers == 0
        && stats.subscription_key_sent == 0
        && stats.merchant_headers_missing == 0;
    println!(
        "check: every call sent the headers its keys require ({} with merchant keys, {} token requests)",
        stats.merchant_requests,
        stats.token_requests + stats.merchant_token_requests
    );
    if !headers_ok {
        println!("check FAILED: {stats:?}");
    }
    ok &= headers_ok;

    println!();
    tables::print_status(&ctx.pool, &ctx.settings, false).await?;
    println!(
        "\nExplore it: psql 'postgres://{}' -c 'SELECT entry_type, count(*), sum(amount) FROM entries GROUP BY 1'",
        store::describe(&demo_db)
    );
    shutdown.cancel();
    println!("{}", if ok { "demo OK" } else { "demo FAILED" });
    Ok(ok)
}

/// Writes one of each payout document over the whole history into `exports` and checks them:
/// as many payout records as payouts, a settlement report valid against its schema (checked
/// as it is written), and as many GBAT10 vouchers as reconciled dates.
async fn payout_documents(ctx: &SyncContext, exports: &std::path::Path) -> anyhow::Result<bool> {
    use crate::export::{export, Kind};
    let filter = crate::store::export_rows::ExportFilter {
        ledgers: Vec::new(),
        partner: None,
        topic: None,
        from: chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default(),
        to: chrono::NaiveDate::from_ymd_opt(2100, 1, 1).unwrap_or_default(),
    };
    let mut ok = true;
    let mut written = Vec::new();
    for (kind, name) in [
        (Kind::Payouts, "payouts.csv"),
        (Kind::SettlementXml, "settlement-report.xml"),
        (Kind::SettlementCsv, "settlement-report.csv"),
        (Kind::Gbat10, "vouchers.gbat10.txt"),
    ] {
        let path = exports.join(name);
        let n = export(
            &ctx.pool,
            &filter,
            kind,
            Format::Csv,
            Default::default(),
            &Accounts::default(),
            Some(&path),
        )
        .await?;
        println!(
            "{n:>6} {} in {}",
            match kind {
                Kind::Payouts => "payout records",
                Kind::SettlementXml | Kind::SettlementCsv => "payouts settled in the report",
                _ => "voucher lines",
            },
            path.display()
        );
        written.push((kind, n, path));
    }
    let payouts = crate::store::export_rows::payouts(&ctx.pool, &filter)
        .await?
        .len() as u64;
    let closed = crate::store::reconcile::reconciled_dates(&ctx.pool).await?;
    let vouchers = std::fs::read_to_string(&written[3].2)?
        .lines()
        .map(|l| l.split(';').nth(1).unwrap_or_default().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as i64;
    let exact = written[..3].iter().all(|w| w.1 == payouts) && vouchers == closed;
    println!("check: {payouts} payouts in the records and the report, {vouchers} vouchers for {closed} reconciled dates");
    if !exact {
        println!("check FAILED: payout documents");
    }
    ok &= exact;
    Ok(ok)
}

async fn recreate_database(server: &PgConnectOptions) -> anyhow::Result<()> {
    let mut conn = server
        .connect()
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", store::describe(server)))?;
    store::recreate_database(&mut conn, DEMO_DATABASE).await
}

/// Compares the database with the simulator's feeds (nothing stored of a ledger the keys may
/// not read), prints the verdict, returns it.
async fn report_comparison(
    pool: &PgPool,
    sim: &Simulator,
    readable: &[String],
) -> anyhow::Result<bool> {
    let mut feeds = 0;
    let mut total = 0;
    let mut problems = Vec::new();
    for ledger in sim.ledger_ids() {
        for topic in Topic::ALL {
            let expected = if readable.contains(&ledger) {
                sim.expected_entries(&ledger, topic.as_str())
            } else {
                Vec::new()
            };
            let stored = entries::feed_entries(pool, &ledger, topic).await?;
            feeds += usize::from(readable.contains(&ledger));
            total += stored.len();
            if stored.len() != expected.len() {
                problems.push(format!(
                    "{ledger} {topic}: {} stored, {} in the API",
                    stored.len(),
                    expected.len()
                ));
                continue;
            }
            if let Some(i) = (0..stored.len()).find(|&i| stored[i].raw != expected[i]) {
                problems.push(format!("{ledger} {topic}: entry {} differs", i + 1));
            }
        }
    }
    if problems.is_empty() {
        println!("check: the database holds exactly the API's {total} entries in {feeds} feeds");
    } else {
        for p in &problems {
            println!("check FAILED: {p}");
        }
    }
    Ok(problems.is_empty())
}
