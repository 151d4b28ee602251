//! The command line: parse, load settings, initialise logging, dispatch, and map the outcome
//! to an exit code (0 success, 1 the work failed, 2 bad usage or configuration).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Topic};
use crate::simulator::{Simulator, SimulatorConfig};
use crate::sync::{self, SyncContext};
use crate::{demo, store, telemetry, views};

/// Mirror the Vipps MobilePay Report API ledgers shared with you into PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "vipps-ledger-sync", version, about)]
pub struct Cli {
    /// TOML file layered over the built-in defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: sync on `sync.schedule` until SIGTERM or SIGINT.
    Run,
    /// Discover ledgers and walk every consented feed to its current end, then exit.
    Sync {
        /// Required: one pass, then exit (0 only if every ledger succeeded).
        #[arg(long)]
        once: bool,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print each partner's health and where every feed stands.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print every ledger ever seen: merchant, state, partners that may read it.
    Ledgers {
        #[arg(long)]
        json: bool,
    },
    /// Print the open grants per partner and merchant (or every period, or one ledger's history).
    Grants {
        /// The whole grant history of this ledger.
        #[arg(long, value_name = "LEDGER_ID")]
        ledger: Option<String>,
        /// Closed periods too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Compare every closed ledger date with the API's daily report and check the balance
    /// chains; exit 0 only if nothing differs.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Write entries (or the per-date summary) of ledger dates FROM..=TO as CSV or JSON lines.
    Export {
        /// Only these ledgers (repeat the flag); default: every ledger (or the partner's).
        #[arg(long = "ledger", value_name = "LEDGER_ID")]
        ledgers: Vec<String>,
        /// Only ledgers this partner holds or held a grant for.
        #[arg(long)]
        partner: Option<String>,
        #[arg(long)]
        topic: Option<Topic>,
        /// First ledger date (YYYY-MM-DD).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last ledger date, included.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Per (ledger, topic, date, entry type) counts and sums instead of entries.
        #[arg(long)]
        summary: bool,
        #[arg(long, value_enum, default_value = "csv")]
        format: crate::export::Format,
        /// Write here (atomically) instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Unblock a feed whose cursor the API rejected, and read it again from the start (only
    /// missing entries are stored).
    ResetCursor {
        ledger: String,
        /// Only this topic (default: every topic of the ledger).
        #[arg(long)]
        topic: Option<Topic>,
    },
    /// The whole thing against the built-in simulator: no keys needed.
    Demo {
        /// PostgreSQL server to use; the demo (re)creates its own database
        /// `vipps_ledger_sync_demo` there and touches nothing else.
        #[arg(long, env = "DATABASE_URL", default_value = demo::DEFAULT_SERVER)]
        database_url: String,
    },
    /// Serve the simulated Report API alone.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: SocketAddr,
        /// Seed of the generated data (same seed, same data).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 12)]
        ledgers: usize,
        #[arg(long, default_value_t = 10)]
        days: u32,
        /// Average captures per ledger and day.
        #[arg(long, default_value_t = 20)]
        captures_per_day: u32,
        /// Entries per feed page (the API's maximum is 1000).
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
        /// Ledgers per page of the ledger list.
        #[arg(long, default_value_t = 5)]
        ledger_page_size: usize,
        /// Accounting keys the simulator accepts (granted every ledger).
        #[arg(long, default_value = "demo-client")]
        client_id: String,
        #[arg(long, default_value = "demo-secret")]
        client_secret: String,
    },
}

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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run => {
            let Some((ctx, cancel)) = start_sync(settings).await? else {
                return Ok(ExitCode::from(2));
            };
            sync::daemon::run(ctx, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { once: false } => {
            eprintln!("`sync` needs --once (one pass, then exit); the daemon is `run`");
            Ok(ExitCode::from(2))
        }
        Command::Sync { once: true } => {
            let Some((ctx, cancel)) = start_sync(settings).await? else {
                return Ok(ExitCode::from(2));
            };
            let report = sync::sync_once(&ctx, &cancel).await;
            print!("{report}");
            Ok(if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Verify { json } => {
            let Some((ctx, cancel)) = start_sync(settings).await? else {
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
            summary,
            format,
            output,
        } => {
            if from > to {
                eprintln!("--from {from} is after --to {to}");
                return Ok(ExitCode::from(2));
            }
            let pool = open_store(&settings).await?;
            let filter = store::export::ExportFilter {
                ledgers,
                partner,
                topic: topic.map(|t| t.as_str().to_owned()),
                from,
                to,
            };
            let n =
                crate::export::export(&pool, &filter, summary, format, output.as_deref()).await?;
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
            views::print_status(&open_store(&settings).await?, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledgers { json } => {
            views::print_ledgers(&open_store(&settings).await?, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Grants { ledger, all, json } => {
            let pool = open_store(&settings).await?;
            views::print_grants(&pool, ledger.as_deref(), all, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ResetCursor { ledger, topic } => {
            let pool = open_store(&settings).await?;
            let topics = topic.map_or(Topic::ALL.to_vec(), |t| vec![t]);
            let mut found = false;
            for topic in topics {
                if store::feeds::reset_cursor(&pool, &ledger, topic).await? {
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
        Command::Demo { database_url } => {
            let ok = demo::run(&database_url).await?;
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
            client_id,
            client_secret,
        } => {
            let sim = Simulator::new(SimulatorConfig {
                seed,
                ledgers,
                days,
                captures_per_day,
                feed_page_size: page_size,
                ledger_page_size,
                ..SimulatorConfig::default()
            });
            sim.add_partner_with_all_ledgers(&client_id, &client_secret);
            let cancel = CancellationToken::new();
            let addr = Arc::clone(&sim)
                .spawn(listen, cancel.clone())
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!("simulated Report API on http://{addr} (keys {client_id} / {client_secret}); Ctrl-C stops it");
            stop_on_signal(cancel).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// For `run` and `sync`: checks a partner is configured (printing why not, and `None`),
/// connects, migrates, and arranges for SIGTERM/SIGINT to cancel the work between pages.
async fn start_sync(
    settings: Settings,
) -> anyhow::Result<Option<(Arc<SyncContext>, CancellationToken)>> {
    if let Err(e) = settings.require_partners() {
        eprintln!("{e}");
        return Ok(None);
    }
    let ctx = Arc::new(SyncContext::connect(settings).await?);
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    Ok(Some((ctx, cancel)))
}

/// Connects to the database and applies migrations, for the read-only commands.
async fn open_store(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    let pool = store::connect(&settings.database).await?;
    store::migrate(&pool).await?;
    Ok(pool)
}

/// Cancels `cancel` on SIGTERM or SIGINT (Ctrl-C).
pub async fn stop_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stop requested; finishing the page in hand");
    cancel.cancel();
}
