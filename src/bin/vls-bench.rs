//! The benchmark (run by hand, never in CI): the real `vipps-ledger-sync` binary syncs from the
//! real simulator process into a fresh database, and PostgreSQL's own `COPY` of the same rows
//! into a table of the same shape gives the yardstick.
//!
//! ```sh
//! cargo build --release --locked
//! target/release/vls-bench --ledgers 12 --days 120 --captures 60            # initial sync
//! target/release/vls-bench --ledgers 10000 --days 1 --captures 1 --caught-up # a caught-up pass
//! target/release/vls-bench --preload 1000000 ...                               # into a big table
//! target/release/vls-bench --exporter-due --ledgers 5000 --days 1095          # exporters' dates due
//! target/release/vls-bench --hostile huge-page --hostile-param megabytes=300    # peak RSS under attack
//! target/release/vls-bench --freshness --ledgers 10000                          # fixed vs adaptive polling
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, PgPool};
use vipps_ledger_sync::simulator::{Simulator, SimulatorConfig};
use vipps_ledger_sync::store;

#[path = "vls-bench/freshness.rs"]
mod freshness;

/// Measure an initial sync (or a caught-up pass) against the simulator.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 12)]
    ledgers: usize,
    #[arg(long, default_value_t = 120)]
    days: u32,
    /// Average captures per ledger and day (each brings 1-2 fees, refunds, payouts…).
    #[arg(long, default_value_t = 60)]
    captures: u32,
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Ledgers per page of the simulated ledger list (the real API's page size is not
    /// documented).
    #[arg(long, default_value_t = 1000)]
    ledger_page_size: usize,
    /// Synthetic entries stored before the sync, to measure inserts into a large table.
    #[arg(long, default_value_t = 0)]
    preload: i64,
    /// Measure a second pass over caught-up feeds instead of the first sync.
    #[arg(long)]
    caught_up: bool,
    /// Measure the scheduled exporters' query of dates due instead of a sync: `--ledgers`
    /// ledgers with `--days` reconciled days each (synthetic rows, no simulator), all but the
    /// last `--due-days` already exported.
    #[arg(long)]
    exporter_due: bool,
    #[arg(long, default_value_t = 1)]
    due_days: u32,
    /// Measure `sync --once` against the simulator in this hostile mode (see
    /// `vipps-ledger-sync simulate --help`): its wall time, exit code and peak memory.
    #[arg(long, value_name = "MODE")]
    hostile: Option<String>,
    /// A parameter of the hostile mode (`simulate --hostile-param`), repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    hostile_param: Vec<String>,
    /// Measure polling instead: a simulated day of `--ledgers` ledgers, some busy, most
    /// quiet, under the fixed hourly schedule and the adaptive one (requests per hour, delay
    /// from an entry's appearance to its storage).
    #[arg(long)]
    freshness: bool,
    /// `--freshness`: percent of the ledgers that are busy.
    #[arg(long, default_value_t = 3.0)]
    busy_percent: f64,
    /// `--freshness`: a busy ledger's mean minutes between new entries.
    #[arg(long, default_value_t = 5.0)]
    busy_every_minutes: f64,
    /// `--freshness`: a quiet ledger's mean new entries a day.
    #[arg(long, default_value_t = 3.0)]
    quiet_per_day: f64,
    /// `--freshness`: the schedules to measure: fixed, adaptive or both.
    #[arg(long, default_value = "both")]
    schedule: String,
    /// `--freshness`: simulated hours.
    #[arg(long, default_value_t = 24)]
    hours: u32,
    /// `--freshness`: the adaptive schedule's `sync.polls_per_hour`.
    #[arg(long, default_value_t = 4000)]
    polls_per_hour: u32,
    /// `--freshness`: the adaptive schedule's `sync.max_poll_interval`.
    #[arg(long, default_value = "12h", value_parser = humantime_serde::re::humantime::parse_duration)]
    max_poll_interval: Duration,
    /// PostgreSQL server; the benchmark (re)creates its own database `vls_bench` there.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = sibling("vipps-ledger-sync")?;
    let server = PgConnectOptions::from_str(&args.database_url).context("--database-url")?;
    if args.freshness {
        let day = freshness::Day {
            ledgers: args.ledgers,
            busy_percent: args.busy_percent,
            busy_every_minutes: args.busy_every_minutes,
            quiet_per_day: args.quiet_per_day,
            hours: args.hours,
            polls_per_hour: args.polls_per_hour,
            max_poll_interval: args.max_poll_interval,
            concurrency: args.concurrency,
            schedules: match args.schedule.as_str() {
                "fixed" => vec![vipps_ledger_sync::config::Polling::Fixed],
                "adaptive" => vec![vipps_ledger_sync::config::Polling::Adaptive],
                "both" => vec![
                    vipps_ledger_sync::config::Polling::Fixed,
                    vipps_ledger_sync::config::Polling::Adaptive,
                ],
                other => bail!("--schedule {other:?}: expected fixed, adaptive or both"),
            },
        };
        return freshness::run(&day, &server).await;
    }
    let db = server.clone().database("vls_bench");
    store::recreate_database(&mut server.connect().await?, "vls_bench").await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(db.clone())
        .await?;
    store::migrate(&pool).await?;
    if args.exporter_due {
        return exporter_due(&args, &pool).await;
    }
    if args.preload > 0 {
        let t = Instant::now();
        store::bench::preload(&pool, args.preload).await?;
        println!(
            "preloaded {} entries in {:.1} s",
            args.preload,
            t.elapsed().as_secs_f64()
        );
    }

    let port = free_port()?;
    let mut sim = Command::new(&bin)
        .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--ledgers",
            &args.ledgers.to_string(),
            "--days",
            &args.days.to_string(),
        ])
        .args(["--seed", &SEED.to_string()])
        .args(["--captures-per-day", &args.captures.to_string()])
        .args(["--page-size", &args.page_size.to_string()])
        .args(["--ledger-page-size", &args.ledger_page_size.to_string()])
        .args(
            args.hostile
                .iter()
                .flat_map(|mode| ["--hostile".to_owned(), mode.clone()]),
        )
        .args(
            args.hostile_param
                .iter()
                .flat_map(|p| ["--hostile-param".to_owned(), p.clone()]),
        )
        .stdout(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .context("starting the simulator")?;
    let result = measure(&args, &bin, (port, sim.id()), &db, &pool).await;
    let _ = sim.kill();
    let _ = sim.wait();
    result
}

/// `simulator`: the simulator's port and process id.
async fn measure(
    args: &Args,
    bin: &Path,
    (port, simulator): (u16, u32),
    db: &PgConnectOptions,
    pool: &PgPool,
) -> anyhow::Result<()> {
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base).await?;
    let config = tempfile_path("vls-bench.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"postgres://{}\"\nmax_connections = {}\n[api]\nbase_url = \"{base}\"\nmax_requests_per_second = 0\nmax_in_flight = {}\n[sync]\nconcurrency = {}\n[[partners]]\nname = \"bench\"\nclient_id = \"demo-client\"\nclient_secret = \"demo-secret\"\n",
            store::describe(db),
            args.concurrency + 2,
            args.concurrency * 2,
            args.concurrency,
        ),
    )?;
    if let Some(mode) = &args.hostile {
        let Run {
            secs,
            peak_kb,
            code,
            ..
        } = run_measured(bin, &config)?;
        println!(
            "hostile mode {mode} {:?}: sync --once exit {code} after {secs:.2} s, peak RSS of the daemon {:.1} MB",
            args.hostile_param,
            peak_kb as f64 / 1024.0
        );
        return Ok(());
    }
    let sync = || {
        let run = run_measured(bin, &config)?;
        if run.code != 0 {
            bail!("sync --once failed (exit {})", run.code);
        }
        Ok(run)
    };
    // Both the sync and the COPY start after a checkpoint (what migrating wrote is flushed).
    sqlx::query("CHECKPOINT").execute(pool).await?;
    let cpu_before = machine_cpu_seconds();
    let simulator_before = process_cpu_seconds(simulator);
    let first = sync()?;
    let sync_cpu = cpu_before
        .zip(machine_cpu_seconds())
        .map(|(before, after)| after - before);
    let simulator_cpu = simulator_before
        .zip(process_cpu_seconds(simulator))
        .map(|(before, after)| after - before);
    let daemon_cpu = first.cpu;
    let (mut secs, mut peak_kb) = (first.secs, first.peak_kb);
    let stats_before = sim_stats(&base).await?;
    let entries = store::entries::count(pool).await? - args.preload;
    let mut requests = stats_before["requests_total"].as_u64().unwrap_or(0);
    println!(
        "ledgers {}, feeds {}, page size {}, ledger list page size {}, concurrency {}",
        args.ledgers,
        args.ledgers * 2,
        args.page_size,
        args.ledger_page_size,
        args.concurrency
    );
    if args.caught_up {
        println!(
            "first pass: {entries} entries in {secs:.2} s, peak RSS {} MB",
            peak_kb / 1024
        );
        let again = sync()?;
        (secs, peak_kb) = (again.secs, again.peak_kb);
        let stats = sim_stats(&base).await?;
        requests = stats["requests_total"].as_u64().unwrap_or(0) - requests;
        let feeds = args.ledgers as u64 * 2;
        let listing = (args.ledgers as u64).div_ceil(args.ledger_page_size as u64);
        println!(
            "caught-up pass: {secs:.2} s, {requests} requests (one per feed: {feeds}, listing pages: {listing}, token: 1), peak RSS {:.1} MB",
            peak_kb as f64 / 1024.0
        );
        return Ok(());
    }
    if args.hostile.is_none() {
        check_exact(args, pool).await?;
    }
    let rate = entries as f64 / secs;
    let copy = store::bench::copy_rate(pool, machine_cpu_seconds).await?;
    let copy_rate = copy.rows as f64 / copy.took.as_secs_f64();
    println!("initial sync: {entries} entries in {secs:.2} s = {rate:.0} entries/s");
    println!(
        "requests: {requests}; peak RSS of the daemon: {:.1} MB",
        peak_kb as f64 / 1024.0
    );
    println!(
        "COPY of the same {} rows into a table of the same shape: {:.2} s = {copy_rate:.0} rows/s",
        copy.rows,
        copy.took.as_secs_f64()
    );
    println!("ratio sync / COPY: {:.2}", rate / copy_rate);
    if let (Some(sync_cpu), Some(simulator_cpu), Some(copy_cpu)) =
        (sync_cpu, simulator_cpu, copy.cpu)
    {
        println!(
            "CPU seconds, whole machine: sync {sync_cpu:.2} (the daemon {daemon_cpu:.2}, the simulator {simulator_cpu:.2}, PostgreSQL and the rest {:.2}), COPY {copy_cpu:.2}",
            sync_cpu - daemon_cpu - simulator_cpu
        );
    }
    if args.preload > 0 {
        println!("(into a table already holding {} entries)", args.preload);
    }
    Ok(())
}

/// Times the query a scheduled exporter's pass starts with, over a long synthetic history:
/// for an exporter that is caught up (only the last `--due-days` due) and for one just added
/// (the whole history due).
async fn exporter_due(args: &Args, pool: &PgPool) -> anyhow::Result<()> {
    let last = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let started = Instant::now();
    store::bench::preload_reconciled(
        pool,
        args.ledgers as i64,
        args.days as i32,
        args.due_days as i32,
        last,
    )
    .await?;
    println!(
        "{} ledgers x {} days: {} reconciliations, {} dates exported, preloaded in {:.1} s",
        args.ledgers,
        args.days,
        args.ledgers as u64 * u64::from(args.days) * 2,
        args.ledgers as u64 * u64::from(args.days.saturating_sub(args.due_days)),
        started.elapsed().as_secs_f64()
    );
    let topics = ["funds".to_owned(), "fees".to_owned()];
    for (what, exporter) in [
        ("caught-up exporter", store::bench::BENCH_EXPORTER),
        ("new exporter", "bench-new"),
    ] {
        let scope = store::export_log::Scope {
            exporter,
            ledgers: &[],
            partner: None,
            from: None,
            to: None,
            topics: &topics,
            include_exported: false,
        };
        let mut best = (f64::MAX, f64::MAX);
        let mut due = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let (mut first_page, mut after) = (None, store::export_log::DueAfter::start());
            due = 0;
            // Page by page, as an exporter's pass reads them.
            loop {
                let page =
                    store::export_log::due(pool, &scope, &after, store::export_log::DUE_PAGE)
                        .await?;
                first_page.get_or_insert(t.elapsed().as_secs_f64());
                due += page.len();
                match page.last() {
                    Some(last) if page.len() as i64 == store::export_log::DUE_PAGE => {
                        after = store::export_log::DueAfter::of(last)
                    }
                    _ => break,
                }
            }
            let all = t.elapsed().as_secs_f64();
            best = (best.0.min(first_page.unwrap_or(all)), best.1.min(all));
        }
        println!(
            "{what}: {due} dates due; first page of {} in {:.2} s, all in {:.2} s (best of 3)",
            store::export_log::DUE_PAGE,
            best.0,
            best.1
        );
    }
    Ok(())
}

/// The seed of the simulator's data, so that [`check_exact`] can make the same data.
const SEED: u64 = 42;

/// Fails unless the database holds exactly the simulator's entries, feed by feed: as many as
/// the feed has (counted by a simulator of the same settings in this process: the data is a
/// function of them), numbered 1 to n without a gap or a repeat. With each entry's key unique
/// in its feed, nothing was lost and nothing stored twice.
async fn check_exact(args: &Args, pool: &PgPool) -> anyhow::Result<()> {
    let sim = Simulator::new(SimulatorConfig {
        seed: SEED,
        ledgers: args.ledgers,
        days: args.days,
        captures_per_day: args.captures,
        ..SimulatorConfig::default()
    });
    let stored: std::collections::BTreeMap<(String, String), (i64, i64, i64)> =
        store::bench::feed_counts(pool)
            .await?
            .into_iter()
            .map(|(ledger, topic, n, distinct, max)| ((ledger, topic), (n, distinct, max)))
            .collect();
    let mut feeds = 0;
    let mut wrong = Vec::new();
    for ledger in sim.ledger_ids() {
        for topic in ["funds", "fees"] {
            let want = sim.expected_entries(&ledger, topic).len() as i64;
            let got = stored
                .get(&(ledger.clone(), topic.to_owned()))
                .copied()
                .unwrap_or_default();
            if got != (want, want, want) {
                wrong.push(format!(
                    "{ledger} {topic}: {} stored ({} distinct seq, highest {}), the API has {want}",
                    got.0, got.1, got.2
                ));
            }
            feeds += 1;
        }
    }
    if !wrong.is_empty() || stored.len() > feeds {
        bail!(
            "the database does not hold exactly the API's entries: {}",
            wrong.join("; ")
        );
    }
    println!("exact: each of the {feeds} feeds holds the API's entries once, seq 1 to n");
    Ok(())
}

/// A `sync --once` as measured by [`run_measured`].
struct Run {
    /// Wall time.
    secs: f64,
    /// Peak resident memory, KiB.
    peak_kb: i64,
    /// CPU time (user and system), seconds.
    cpu: f64,
    code: i32,
}

/// Runs `sync --once` and measures it.
fn run_measured(bin: &Path, config: &Path) -> anyhow::Result<Run> {
    let started = Instant::now();
    let child: Child = Command::new(bin)
        .args([
            "--config",
            config.to_str().unwrap_or_default(),
            "sync",
            "--once",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let mut status = 0;
    // SAFETY: rusage is plain data filled in by the kernel; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    if pid <= 0 || !libc::WIFEXITED(status) {
        bail!("sync --once did not exit normally (wait status {status})");
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Run {
        secs,
        peak_kb: usage.ru_maxrss,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        code: libc::WEXITSTATUS(status),
    })
}

/// CPU seconds (user and system) a running process has used, from Linux's `/proc`.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime and stime fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// CPU seconds the whole machine has been busy since boot (every process: the daemon, the
/// simulator, PostgreSQL), from Linux's `/proc/stat`; `None` elsewhere. On a machine that
/// does nothing else, the difference around a phase is that phase's whole cost.
fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| busy as f64 / per_second as f64)
}

async fn sim_stats(base: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(format!("{base}/_sim/stats"))
        .await?
        .json()
        .await?)
}

async fn wait_for(base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while reqwest::get(format!("{base}/_sim/stats")).await.is_err() {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the simulator did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", std::process::id()))
}

/// The main binary, next to this one.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --locked)",
            path.display()
        );
    }
    Ok(path)
}
