//! The command line: parse, load settings, initialise logging, dispatch, and map the outcome
//! to an exit code (0 success, 1 the work failed, 2 bad usage or configuration).

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, Settings, Topic};
use crate::simulator::{HostileConfig, Simulator, SimulatorConfig};
use crate::sync::lifecycle::{Drained, Watchdog};
use crate::sync::{self, Progress, ProgressView, SyncContext};
use crate::{demo, store, tables, telemetry};

mod args;
pub use args::{Cli, Command};

/// Runs the command line; the process exits with the returned code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // The demo prints its own story; its logs would drown it unless asked for with RUST_LOG.
    let level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    telemetry::init(settings.log.format, level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(code) => code,
        // `export … | head`: the reader has what it wanted; stop quietly, as Unix tools do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run => {
            let Some((ctx, cancel)) = start_sync(settings, ProgressView::default()).await? else {
                return Ok(ExitCode::from(2));
            };
            // The status endpoint (`http.listen`) stops when `cancel` fires.
            let status_endpoint = crate::status_endpoint::start(&ctx, &cancel).await?;
            let result = crate::daemon::run(ctx, cancel.clone()).await;
            cancel.cancel();
            if let Some((_, task)) = status_endpoint {
                let _ = task.await;
            }
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { once: false } => {
            eprintln!("`sync` needs --once (one pass, then exit); the daemon is `run`");
            Ok(ExitCode::from(2))
        }
        Command::Sync { once: true } => {
            // Bars for a person watching a terminal; log lines for everything else (a log
            // file or journal gets no control characters, JSON collectors no bars).
            let view = if std::io::stderr().is_terminal() && settings.log.format == LogFormat::Text
            {
                ProgressView::Bars
            } else {
                ProgressView::default()
            };
            let Some((ctx, cancel)) = start_sync(settings, view).await? else {
                return Ok(ExitCode::from(2));
            };
            let work = sync::sync_once(&ctx, &cancel);
            let mut watchdog = Watchdog::off();
            match sync::lifecycle::drain(&ctx, "sync", work, &cancel, &mut watchdog).await {
                Drained::Done(report) => {
                    print!("{report}");
                    // Stopped on request with nothing failed: the stop was asked for, and
                    // the next run continues from the stored cursors.
                    let stopped_cleanly = report.interrupted
                        && report.failed_units.is_empty()
                        && report.failed_partners.is_empty();
                    Ok(if report.success() || stopped_cleanly {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                Drained::Panicked(why) => {
                    eprintln!("error: the pass panicked (a bug; please report it): {why}");
                    Ok(ExitCode::FAILURE)
                }
                Drained::Abandoned(units) => {
                    println!(
                        "stopped on request; the work still running after sync.drain_deadline was abandoned ({} feeds, nothing of them half-written); the next run continues from the stored cursors",
                        units.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Verify { json } => {
            let Some((ctx, cancel)) = start_sync(settings, ProgressView::default()).await? else {
                return Ok(ExitCode::from(2));
            };
            let report = crate::reconcile::verify(&ctx, &cancel).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Export {
            ledgers,
            partner,
            topic,
            from,
            to,
            kind,
            summary,
            format,
            csv_formulas,
            output,
            accounts,
            exporter,
            force,
        } => {
            if let (Some(from), Some(to)) = (from, to) {
                if from > to {
                    eprintln!("--from {from} is after --to {to}");
                    return Ok(ExitCode::from(2));
                }
            }
            if let Some(name) = exporter {
                return run_exporter(settings, &name, ledgers, from, to, force).await;
            }
            let (Some(from), Some(to)) = (from, to) else {
                eprintln!("export needs --from and --to (or --exporter NAME)");
                return Ok(ExitCode::from(2));
            };
            let kind = if summary {
                crate::export::Kind::Summary
            } else {
                kind
            };
            if topic.is_some()
                && matches!(
                    kind,
                    crate::export::Kind::Journal | crate::export::Kind::Camt053
                )
            {
                eprintln!("--topic applies to entries and summaries: a voucher books both feeds, a statement is of the funds");
                return Ok(ExitCode::from(2));
            }
            let chart = match journal_accounts(&settings, accounts.as_deref()) {
                Ok(chart) => chart,
                Err(msg) => {
                    eprintln!("{msg}");
                    return Ok(ExitCode::from(2));
                }
            };
            let pool = open_store(&settings).await?;
            let filter = store::export_rows::ExportFilter {
                ledgers,
                partner,
                topic: topic.map(|t| t.as_str().to_owned()),
                from,
                to,
            };
            let n = crate::export::export(
                &pool,
                &filter,
                kind,
                format,
                csv_formulas,
                &chart,
                output.as_deref(),
            )
            .await?;
            if let Some(path) = &output {
                eprintln!("{n} records written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let pool = store::connect(&settings.database).await?;
            store::migrate(&pool).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            tables::print_status(&open_store(&settings).await?, &settings, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledgers { partner, json } => {
            tables::print_ledgers(&open_store(&settings).await?, partner.as_deref(), json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Grants {
            ledger,
            partner,
            all,
            json,
        } => {
            let pool = open_store(&settings).await?;
            tables::print_grants(&pool, ledger.as_deref(), partner.as_deref(), all, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ResetCursor { ledger, topic } => {
            let pool = open_store(&settings).await?;
            let topics = topic.map_or(Topic::ALL.to_vec(), |t| vec![t]);
            let mut found = false;
            for topic in topics {
                if store::feed_health::reset_cursor(&pool, &ledger, topic).await? {
                    tracing::info!(%ledger, %topic, "cursor reset by request: the feed is read again from the start");
                    println!("{ledger} {topic}: unblocked; the next sync reads it from the start");
                    found = true;
                }
            }
            if !found {
                eprintln!("ledger {ledger}: no feed of it was ever synced");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            database_url,
            merchant,
        } => {
            let ok = demo::run(&database_url, merchant).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Simulate {
            listen,
            seed,
            ledgers,
            days,
            captures_per_day,
            page_size,
            ledger_page_size,
            formula_references,
            client_id,
            client_secret,
            merchant_msn,
            primary_key_regenerated,
            hostile,
            hostile_ledger,
            hostile_param,
        } => {
            let hostile = match hostile
                .map(|mode| {
                    HostileConfig::from_args(&mode, hostile_ledger.as_deref(), &hostile_param)
                })
                .transpose()
            {
                Ok(h) => h,
                Err(msg) => {
                    eprintln!("--hostile: {msg}");
                    return Ok(ExitCode::from(2));
                }
            };
            let sim = Simulator::new(SimulatorConfig {
                seed,
                ledgers,
                days,
                captures_per_day,
                feed_page_size: page_size,
                ledger_page_size,
                formula_references,
                ..SimulatorConfig::default()
            });
            sim.add_partner_with_all_ledgers(&client_id, &client_secret);
            if let Some(msn) = &merchant_msn {
                sim.add_merchant(
                    demo::DEMO_MERCHANT_ID,
                    demo::DEMO_MERCHANT_SECRET,
                    msn,
                    &demo::DEMO_SUBSCRIPTION_KEYS,
                );
                if primary_key_regenerated {
                    sim.regenerate_subscription_key(
                        demo::DEMO_MERCHANT_ID,
                        demo::DEMO_SUBSCRIPTION_KEYS[0],
                    );
                }
                let ledgers = sim
                    .merchant_serial_numbers()
                    .into_iter()
                    .find(|(m, _)| m == msn)
                    .map(|(_, l)| l)
                    .unwrap_or_default();
                println!(
                    "merchant keys {} / {} for MSN {msn} (subscription keys {}{}), ledgers: {}",
                    demo::DEMO_MERCHANT_ID,
                    demo::DEMO_MERCHANT_SECRET,
                    demo::DEMO_SUBSCRIPTION_KEYS.join(" / "),
                    if primary_key_regenerated {
                        "; the primary is refused"
                    } else {
                        ""
                    },
                    if ledgers.is_empty() {
                        "none".to_owned()
                    } else {
                        ledgers.join(", ")
                    }
                );
            }
            if let Some(h) = &hostile {
                println!("hostile mode: {}", h.to_json());
            }
            sim.set_hostile(hostile);
            let cancel = CancellationToken::new();
            let addr = Arc::clone(&sim)
                .spawn(listen, cancel.clone())
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!("simulated Report API on http://{addr} (keys {client_id} / {client_secret}); Ctrl-C stops it");
            tokio::spawn(stop_on_signal(cancel.clone(), None));
            cancel.cancelled().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `export --exporter NAME`: one pass of a configured exporter, now.
async fn run_exporter(
    settings: Settings,
    name: &str,
    ledgers: Vec<String>,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let Some(exporter) = settings.exporters.iter().find(|e| e.name == name) else {
        let known: Vec<&str> = settings.exporters.iter().map(|e| e.name.as_str()).collect();
        eprintln!(
            "--exporter {name}: no [[exporters]] entry has that name (configured: {known:?})"
        );
        return Ok(ExitCode::from(2));
    };
    let pool = open_store(&settings).await?;
    let selection = crate::export::scheduled::Selection {
        ledgers,
        from,
        to,
        force,
        now: true,
    };
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone(), None));
    let report = crate::export::scheduled::run(
        &pool,
        &settings,
        exporter,
        &selection,
        &crate::metrics::Metrics::new(),
        &cancel,
    )
    .await;
    println!(
        "{}: {} exported, {} held back, {} failed{}",
        report.exporter,
        report.exported,
        report.held.len(),
        report.failed.len(),
        if report.busy {
            " (another instance is running it)"
        } else {
            ""
        }
    );
    for held in &report.held {
        println!("  held: {held} (the reason: `status`, or export_log.last_error)");
    }
    for failed in &report.failed {
        eprintln!("  failed: {failed} (this ledger's later dates wait; the others went on)");
    }
    if let Some(error) = &report.error {
        eprintln!("error: {error}");
        return Ok(ExitCode::FAILURE);
    }
    if !report.failed.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The accounts `export --kind journal|gbat10` books on: those of the exporter that books on
/// accounts (journal or GBAT10), or the built-in chart.
fn journal_accounts(
    settings: &Settings,
    name: Option<&str>,
) -> Result<crate::config::Accounts, String> {
    let journals: Vec<_> = settings
        .exporters
        .iter()
        .filter(|e| e.kind.books())
        .collect();
    match name {
        Some(name) => journals
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.accounts.clone())
            .ok_or_else(|| format!("--accounts {name}: no journal or gbat10 exporter has that name")),
        None if journals.len() == 1 => Ok(journals[0].accounts.clone()),
        None if journals.is_empty() => Ok(crate::config::Accounts::default()),
        None => Err("several journal or gbat10 exporters are configured: choose whose accounts to book on with --accounts NAME".to_owned()),
    }
}

/// For `run` and `sync`: checks a partner is configured (printing why not, and `None`),
/// connects, migrates, and arranges for SIGTERM/SIGINT to cancel the work between pages;
/// feed passes show their progress as `view`.
async fn start_sync(
    settings: Settings,
    view: ProgressView,
) -> anyhow::Result<Option<(Arc<SyncContext>, CancellationToken)>> {
    if let Err(e) = settings.require_partners() {
        eprintln!("{e}");
        return Ok(None);
    }
    // The process's counters, shared by the work and the status endpoint's /metrics.
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let ctx = SyncContext::connect(settings, metrics).await?;
    let ctx = Arc::new(ctx.with_progress(Progress::new(view)));
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone(), Some(Arc::clone(&ctx))));
    Ok(Some((ctx, cancel)))
}

/// Connects to the database for the commands that apply no migrations (they run as any
/// login); fails, saying what to do, if the schema is behind this binary.
async fn open_store(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    let pool = store::connect(&settings.database).await?;
    store::require_migrated(&pool).await?;
    Ok(pool)
}

/// Cancels `cancel` on SIGTERM or SIGINT (Ctrl-C): the work stops between pages. A second
/// signal stops the process at once (exit 130), as people expect of a second Ctrl-C: every
/// page is committed whole with its cursor, so an open one just rolls back, as after a crash.
/// With `ctx`, this instance's leases are handed back first, so the next run need not wait
/// `sync.lease_ttl` for them.
pub async fn stop_on_signal(cancel: CancellationToken, ctx: Option<Arc<SyncContext>>) {
    let mut signals = Signals::new();
    signals.next().await;
    tracing::info!(
        "stop requested; finishing the page in hand (a second Ctrl-C or SIGTERM stops at once)"
    );
    cancel.cancel();
    signals.next().await;
    tracing::warn!("second stop signal: stopping now; open transactions roll back");
    if let Some(ctx) = ctx {
        sync::lifecycle::hand_back_leases(&ctx).await;
    }
    std::process::exit(130);
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM, one after the other.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}
