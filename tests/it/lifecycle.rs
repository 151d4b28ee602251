//! The process lifecycle through the real binary: systemd notifications (`READY=1` only once
//! the database is migrated and a token was had, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`), the
//! drain deadline on SIGTERM, progress lines during a pass, and logs that never carry secrets
//! or personal data even at trace level.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::simulator::{FaultConfig, SimulatorConfig};
use vipps_ledger_sync::sync::{self, Progress, ProgressView, SyncContext};

use crate::common::binary::{
    command, config_file_for as config, interrupt, many_pages,
    no_lease_left_and_the_next_sync_is_exact, run_draining, sigterm,
    sigterm_abandons_at_the_deadline, stall_everything, stderr_of, wait_exit, wait_for,
    wait_until_storing,
};
use crate::common::{expected_total, small, TestApp, TestDb, CLIENT_ID, CLIENT_SECRET};

/// The watchdog timeout the tests give the daemon, in microseconds: a ping is due every
/// 500 ms, and a gap of a whole second would get it killed under systemd.
const WATCHDOG_USEC: u64 = 1_000_000;

/// `run` under a `/bin/sh` that sets `WATCHDOG_PID` to its own pid and then `exec`s the
/// binary, so the pid is the daemon's (sd-notify checks it) without knowing it in advance.
fn run_under_systemd(cfg: &tempfile::NamedTempFile, socket: &std::path::Path) -> Child {
    run_under_systemd_with(cfg, socket, &[])
}

/// [`run_under_systemd`] with more settings from the environment.
fn run_under_systemd_with(
    cfg: &tempfile::NamedTempFile,
    socket: &std::path::Path,
    env: &[(&str, &str)],
) -> Child {
    let mut daemon = command(&["--config", cfg.path().to_str().unwrap(), "run"]);
    daemon.envs(env.iter().copied());
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@""#)
        .arg(daemon.get_program())
        .args(daemon.get_args());
    for (key, value) in daemon.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

async fn schema_exists(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass('public.feed_cursors') IS NOT NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Receives notifications until one has a line starting with `until` (or `limit` passes).
async fn receive_until(
    socket: &UnixDatagram,
    messages: &mut Vec<(Instant, String)>,
    until: &str,
    limit: Duration,
) -> bool {
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(received) = tokio::time::timeout(left, socket.recv(&mut buf)).await else {
            return false;
        };
        let text = String::from_utf8_lossy(&buf[..received.unwrap()]).into_owned();
        let found = !until.is_empty() && text.lines().any(|l| l.starts_with(until));
        messages.push((Instant::now(), text));
        if found {
            return true;
        }
    }
}

/// When each notification carrying `line` arrived.
fn arrivals(messages: &[(Instant, String)], line: &str) -> Vec<Instant> {
    messages
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == line))
        .map(|(at, _)| *at)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_ready_after_migrating_and_a_token_then_watchdog_pings_and_stopping() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(10);
    // One ledger's pages are slow, so the first pass lasts a few seconds: the watchdog must
    // be pinged all through it.
    app.sim.set_faults(Some(FaultConfig {
        only_ledger: Some(app.sim.ledger_ids()[0].clone()),
        rate_stall: 1.0,
        stall: Duration::from_millis(600),
        ..FaultConfig::default()
    }));
    let db = TestDb::unmigrated().await;
    assert!(!schema_exists(&db.pool).await);
    let cfg = config(&app, &db.url, (CLIENT_ID, CLIENT_SECRET), "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let started = Instant::now();
    let mut child = run_under_systemd(&cfg, &path);

    let mut messages = Vec::new();
    let ready = receive_until(&socket, &mut messages, "READY=1", Duration::from_secs(30)).await;
    if !ready {
        let _ = child.kill();
        panic!("no READY=1: {messages:?}\n{}", stderr_of(&mut child));
    }
    let ready_after = started.elapsed();
    // READY only once the schema is there and the partner was asked for a token.
    assert!(schema_exists(&db.pool).await, "READY=1 before migrating");
    assert!(
        app.sim.stats().token_requests >= 1,
        "READY=1 before a token"
    );
    let idle = receive_until(
        &socket,
        &mut messages,
        "STATUS=idle",
        Duration::from_secs(30),
    )
    .await;
    assert!(idle, "the first pass never ended: {messages:?}");
    // Idle for a while: the pings go on.
    let pass_ended = messages.len();
    receive_until(&socket, &mut messages, "", Duration::from_millis(1600)).await;

    let statuses: Vec<&str> = messages
        .iter()
        .flat_map(|(_, m)| m.lines())
        .filter_map(|l| l.strip_prefix("STATUS="))
        .collect();
    assert!(statuses.contains(&"syncing"), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("idle; next sync at ")),
        "{statuses:?}"
    );
    let syncing = arrivals(&messages, "STATUS=syncing")[0];
    let pass_end = messages[pass_ended - 1].0;
    let pings = arrivals(&messages, "WATCHDOG=1");
    let during_pass = pings
        .iter()
        .filter(|at| **at > syncing && **at < pass_end)
        .count();
    let while_idle = pings.iter().filter(|at| **at > pass_end).count();
    let timeout = Duration::from_micros(WATCHDOG_USEC);
    let longest_gap = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    eprintln!(
        "READY {ready_after:?} after start; pass {:?}; {during_pass} pings during the pass, {while_idle} idle; longest gap {longest_gap:?}",
        pass_end - syncing
    );
    assert!(during_pass >= 2, "pings during the pass: {during_pass}");
    assert!(while_idle >= 2, "pings while idle: {while_idle}");
    assert!(
        longest_gap < timeout,
        "a gap of {longest_gap:?} between pings"
    );
    assert!(
        !messages.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "{messages:?}"
    );

    sigterm(&child);
    let stopping =
        receive_until(&socket, &mut messages, "STOPPING=1", Duration::from_secs(5)).await;
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    let stderr = stderr_of(&mut child);
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    crate::common::assert_exact(&db.pool, &app.sim, &app.sim.ledger_ids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_any_working_partner_exits_one_without_reporting_ready() {
    let app = TestApp::spawn(small()).await;
    let secret = "SENTINEL-wrong-secret-91c2";
    let cfg = config(&app, &app.db.url, (CLIENT_ID, secret), "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut child = run_under_systemd(&cfg, &path);
    let status = wait_exit(&mut child, Duration::from_secs(20)).await;
    let stderr = stderr_of(&mut child);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(stderr.contains("test-partner"), "{stderr}");
    assert!(stderr.contains("access token"), "{stderr}");
    assert!(!stderr.contains(secret), "{stderr}");
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = socket.try_recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(!text.contains("READY=1"), "{text}");
    }
    let failed: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM partners WHERE partner = 'test-partner'")
            .fetch_optional(&app.db.pool)
            .await
            .unwrap()
            .flatten();
    assert!(
        failed.is_some_and(|e| e.contains("token")),
        "the failure is recorded in partners"
    );
}

/// Every feed holds exactly seq 1..=last_seq of its cursor, and no entries without a cursor.
async fn assert_consistent(pool: &sqlx::PgPool) {
    let bad: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT c.ledger_id, c.topic, c.last_seq,
                count(e.seq), count(DISTINCT e.seq), coalesce(max(e.seq), 0)
         FROM feed_cursors c
         LEFT JOIN entries e ON e.ledger_id = c.ledger_id AND e.topic = c.topic
         GROUP BY c.ledger_id, c.topic, c.last_seq
         HAVING count(e.seq) <> c.last_seq OR count(DISTINCT e.seq) <> c.last_seq
             OR coalesce(max(e.seq), 0) <> c.last_seq OR coalesce(min(e.seq), 1) <> 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(bad.is_empty(), "feeds not exactly 1..=last_seq: {bad:?}");
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM entries e WHERE NOT EXISTS
             (SELECT 1 FROM feed_cursors c WHERE c.ledger_id = e.ledger_id AND c.topic = e.topic)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "entries without a cursor");
}

/// Starts `command` (`run` or `sync --once`) with a 2 s drain deadline, makes every request
/// hang once it is storing entries, sends SIGTERM, and checks it exits 0 right after the
/// deadline with every feed consistent; then a `sync --once` completes the data exactly.
/// `work` is what its log names as abandoned. Returns how long SIGTERM to exit took.
async fn sigterm_with_stalled_pages(subcommand: &[&str], work: &str) -> Duration {
    let app = many_pages().await;
    let cfg = config(&app, &app.db.url, (CLIENT_ID, CLIENT_SECRET), "");
    let config_args = ["--config", cfg.path().to_str().unwrap()];
    // Leases far longer than the test: the next run can only start at once because the
    // abandoned units' leases were handed back.
    let mut child = command(&[&config_args[..], subcommand].concat())
        .env("VLS_SYNC__DRAIN_DEADLINE", "2s")
        .env("VLS_SYNC__LEASE_TTL", "10m")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_storing(&app.db.pool, &format!("{subcommand:?}")).await;
    // From now on every request hangs far longer than the drain deadline: the units are
    // stuck inside a page when the stop comes.
    stall_everything(&app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, stderr) = sigterm_abandons_at_the_deadline(&mut child, work).await;
    assert!(
        stderr.contains("in_flight="),
        "the abandoned units are named: {stderr}"
    );

    assert_consistent(&app.db.pool).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(
        (stored as usize) < expected_total(&app.sim),
        "stopped mid-sync"
    );

    no_lease_left_and_the_next_sync_is_exact(&app, &config_args).await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_abandons_stalled_work_at_the_drain_deadline_exits_zero_and_leaves_feeds_consistent() {
    let took = sigterm_with_stalled_pages(&["run"], "feed pass").await;
    eprintln!("run: SIGTERM -> exit 0 in {took:?} (drain_deadline 2 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_abandons_stalled_work_at_the_drain_deadline_exits_zero_and_leaves_feeds_consistent(
) {
    let took = sigterm_with_stalled_pages(&["sync", "--once"], "sync").await;
    eprintln!("sync --once: SIGTERM -> exit 0 in {took:?} (drain_deadline 2 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_stalled_on_the_ledger_list_is_abandoned_at_the_drain_deadline() {
    let app = TestApp::spawn(small()).await;
    // Every data request (the ledger list included) hangs far longer than the deadline; the
    // token endpoint answers, so the daemon gets ready and starts discovering.
    stall_everything(&app);
    let cfg = config(&app, &app.db.url, (CLIENT_ID, CLIENT_SECRET), "");
    let mut child = run_draining(cfg.path(), &[]);
    wait_for("no discovery started", || {
        app.sim.stats().ledger_list_requests > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (took, _) = sigterm_abandons_at_the_deadline(&mut child, "discovery").await;
    // Nothing was listed, so nothing was opened or closed.
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(grants, 0);
    eprintln!("run in discovery: SIGTERM -> exit 0 in {took:?} (drain_deadline 2 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_stalled_on_the_daily_reports_is_abandoned_at_the_drain_deadline() {
    let app = TestApp::spawn(small()).await;
    let cfg = config(&app, &app.db.url, (CLIENT_ID, CLIENT_SECRET), "");
    // Reconciliation every second; the start-up feed pass syncs everything first.
    let mut child = run_draining(cfg.path(), &[("VLS_SYNC__VERIFY_SCHEDULE", "* * * * * *")]);
    wait_for("no reconciliation started", || {
        assert!(child.try_wait().unwrap().is_none(), "run exited early");
        app.sim.stats().dates_requests > 0
    })
    .await;
    // From now on the daily reports (and everything else) hang far longer than the deadline.
    stall_everything(&app);
    let stalled = app.sim.stats().dates_requests;
    wait_for("no stalled reconciliation", || {
        app.sim.stats().dates_requests > stalled
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (took, _) = sigterm_abandons_at_the_deadline(&mut child, "reconciliation").await;
    assert_consistent(&app.db.pool).await;
    eprintln!("run in reconciliation: SIGTERM -> exit 0 in {took:?} (drain_deadline 2 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once_hands_back_the_leases_and_loses_nothing() {
    let app = many_pages().await;
    let cfg = config(&app, &app.db.url, (CLIENT_ID, CLIENT_SECRET), "");
    let config_args = ["--config", cfg.path().to_str().unwrap()];
    // A drain deadline far longer than the test: only the second signal can end it early.
    let mut child = command(&[&config_args[..], &["sync", "--once"]].concat())
        .env("VLS_SYNC__DRAIN_DEADLINE", "60s")
        .env("VLS_SYNC__LEASE_TTL", "10m")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_storing(&app.db.pool, "sync --once").await;
    stall_everything(&app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    interrupt(&child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first Ctrl-C waits for the page in hand"
    );
    let signalled = Instant::now();
    interrupt(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let stderr = stderr_of(&mut child);
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(3),
        "second Ctrl-C to exit: {took:?}"
    );
    assert!(stderr.contains("second stop signal"), "{stderr}");
    eprintln!("second Ctrl-C -> exit 130 in {took:?}");

    assert_consistent(&app.db.pool).await;
    no_lease_left_and_the_next_sync_is_exact(&app, &config_args).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_one_partner_refused_a_token_starts_and_records_that_partner_failing() {
    let app = TestApp::spawn(small()).await;
    let wrong = "SENTINEL-wrong-secret-3b7d";
    app.sim
        .add_partner_with_all_ledgers("other-client", "other-secret");
    let mut cfg = config(&app, &app.db.url, (CLIENT_ID, CLIENT_SECRET), "");
    write!(
        cfg.as_file_mut(),
        "[[partners]]\nname = \"broken-partner\"\nclient_id = \"other-client\"\nclient_secret = \"{wrong}\"\n"
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut child = run_under_systemd(&cfg, &path);
    let mut buf = vec![0u8; 4096];
    let mut ready = false;
    // Ready, then the first pass runs to its end with the working partner.
    let idle = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = socket.recv(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]);
            ready |= text.lines().any(|l| l == "READY=1");
            if text.lines().any(|l| l.starts_with("STATUS=idle")) {
                break;
            }
        }
    })
    .await;
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM partners WHERE partner = 'broken-partner'")
            .fetch_optional(&app.db.pool)
            .await
            .unwrap()
            .flatten();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    let stderr = stderr_of(&mut child);
    assert!(
        ready && idle.is_ok(),
        "READY=1 with one working partner: {stderr}"
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    assert!(
        recorded.is_some_and(|e| e.contains("token")),
        "the failure is recorded before READY"
    );
    let logged = stderr
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("broken-partner"));
    assert!(logged.is_some(), "the failing partner is named: {stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
    app.assert_exact().await;
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

// The default current-thread runtime: every task of the pass runs on this thread, under the
// subscriber set here.
#[tokio::test]
async fn a_long_pass_logs_its_progress_periodically_and_the_counts_add_up() {
    let app = TestApp::spawn(SimulatorConfig {
        ledgers: 5,
        days: 8,
        captures_per_day: 20,
        ..SimulatorConfig::default()
    })
    .await;
    app.sim.set_feed_page_size(10);
    // Slow pages, so the pass spans several progress intervals.
    app.sim.set_faults(Some(FaultConfig {
        seed: 7,
        rate_stall: 0.5,
        stall: Duration::from_millis(20),
        ..FaultConfig::default()
    }));
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let ctx = SyncContext::with_pool(
        app.settings.clone(),
        app.db.pool.clone(),
        Default::default(),
    )
    .unwrap()
    .with_progress(Progress::new(ProgressView::Log {
        every: Duration::from_millis(100),
    }));
    let ctx = Arc::new(ctx);
    let report = sync::sync_once(&ctx, &CancellationToken::new()).await;
    assert!(report.success(), "{report}");

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "feed pass progress")
        .collect();
    assert!(lines.len() >= 2, "progress lines: {}\n{text}", lines.len());
    let total = expected_total(&app.sim) as u64;
    let mut last_entries = 0;
    let mut last_done = 0;
    for line in &lines {
        let f = &line["fields"];
        assert_eq!(line["level"], "INFO");
        let (done, of, entries) = (
            f["ledgers_done"].as_u64().unwrap(),
            f["ledgers_total"].as_u64().unwrap(),
            f["entries"].as_u64().unwrap(),
        );
        assert!(f["rate"].as_f64().is_some(), "{line}");
        assert_eq!(of, 5, "every ledger is counted from the start: {line}");
        assert!(done <= of && entries <= total, "{line}");
        assert!(done >= last_done && entries >= last_entries, "{line}");
        (last_done, last_entries) = (done, entries);
    }
    let mid_pass = lines.iter().any(|l| {
        let entries = l["fields"]["entries"].as_u64().unwrap();
        entries > 0 && entries < total
    });
    assert!(mid_pass, "no line seen mid-pass: {lines:?}");
    // At the end the counters are the report's.
    let end = ctx.progress.total();
    assert_eq!(end.ledgers_done, report.ledgers as u64);
    assert_eq!(end.ledgers_total, report.ledgers as u64);
    assert_eq!(end.entries, report.inserted);
    assert_eq!(report.inserted, total);
    let per_partner = ctx.progress.per_partner();
    assert_eq!(per_partner.len(), 1);
    assert_eq!(per_partner["test-partner"], end);
    assert!(ctx.progress.in_flight().is_empty());
    app.assert_exact().await;
}

/// The sentinels a leak test looks for.
struct Sentinels {
    secret: &'static str,
    db_password: &'static str,
}

const SENTINELS: Sentinels = Sentinels {
    secret: "SENTINEL-client-secret-7f3a2b91",
    db_password: "SENTINELdbpw4e8c",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_in_text_and_json_carry_no_secret_token_or_personal_data() {
    let app = TestApp::spawn(SimulatorConfig {
        ledgers: 12,
        ..small()
    })
    .await;
    app.sim.set_feed_page_size(25);
    let client = "sentinel-client";
    app.sim
        .add_partner_with_all_ledgers(client, SENTINELS.secret);
    let personal = app.sim.personal_values();
    assert!(personal.len() >= 30, "the VM ledgers serve personal data");

    let mut tokens = Vec::new();
    let mut outputs = Vec::new();
    for format in ["text", "json"] {
        let db = TestDb::unmigrated().await;
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_password(Some(SENTINELS.db_password)).unwrap();
        let extra = "include_gdpr_sensitive_data = true\npersonal_data_retention_days = 0";
        let cfg = config(&app, url.as_str(), (client, SENTINELS.secret), extra);
        let out = command(&["--config", cfg.path().to_str().unwrap(), "sync", "--once"])
            .env("RUST_LOG", "trace")
            .env("VLS_LOG__FORMAT", format)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{format}: {stdout}\n{stderr}");
        // The run really used the sentinels: it synced everything with that secret over a
        // connection with that password, and stored the personal fields.
        crate::common::assert_exact(&db.pool, &app.sim, &app.sim.ledger_ids()).await;
        let stored_personal: i64 =
            sqlx::query_scalar("SELECT count(*) FROM entries WHERE name IS NOT NULL")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert!(stored_personal > 0, "{format}: personal data stored");
        // Levels below info really were on: our own debug line is there.
        assert!(
            stderr.contains("fetched a new access token") && stderr.contains("DEBUG"),
            "{format}: {stderr}"
        );
        if format == "json" {
            assert!(stderr
                .lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
        }
        eprintln!("{format}: {} lines of log", stderr.lines().count());
        tokens = app.sim.issued_tokens();
        outputs.push((format, stdout + &stderr));
    }
    assert!(!tokens.is_empty());
    let mut needles: Vec<&str> = vec![SENTINELS.secret, SENTINELS.db_password];
    needles.extend(tokens.iter().map(String::as_str));
    needles.extend(personal.iter().map(String::as_str));
    for (format, output) in &outputs {
        for needle in &needles {
            assert!(
                !output.contains(needle),
                "{format} output carries {needle:?}:\n{}",
                output
                    .lines()
                    .filter(|l| l.contains(needle))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_no_longer_pinged_while_work_makes_no_progress() {
    let app = TestApp::spawn(small()).await;
    let cfg = config(
        &app,
        &app.db.url,
        (CLIENT_ID, CLIENT_SECRET),
        "schedule = \"* * * * * *\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    // A stall limit of about 3 s: one attempt of at most 1 s, a Retry-After of at most 1 s,
    // one more request timeout.
    let env = [
        ("VLS_API__REQUEST_TIMEOUT", "1s"),
        ("VLS_RETRY__MAX_ATTEMPTS", "1"),
        ("VLS_LIMITS__MAX_RETRY_AFTER", "1s"),
        ("RUST_LOG", "info"),
    ];
    let mut child = run_under_systemd_with(&cfg, &path, &env);
    let mut messages = Vec::new();
    assert!(
        receive_until(
            &socket,
            &mut messages,
            "STATUS=idle",
            Duration::from_secs(30)
        )
        .await,
        "the first pass never ended: {messages:?}"
    );
    // A lock nobody gives back: the next pass waits on it forever, making no progress.
    let mut locker = app.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE feed_cursors IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let locked = Instant::now();
    receive_until(&socket, &mut messages, "", Duration::from_secs(7)).await;
    let pings: Vec<Instant> = arrivals(&messages, "WATCHDOG=1")
        .into_iter()
        .filter(|at| *at > locked)
        .collect();
    let last = pings.last().copied().unwrap_or(locked);
    eprintln!(
        "{} pings after the lock, the last {:?} after it",
        pings.len(),
        last - locked
    );
    assert!(
        last - locked < Duration::from_secs(5),
        "pinged {:?} after the work stopped making progress",
        last - locked
    );
    // The lock goes: the work goes on, and so do the pings.
    locker.rollback().await.unwrap();
    let released = Instant::now();
    receive_until(&socket, &mut messages, "", Duration::from_secs(3)).await;
    assert!(
        arrivals(&messages, "WATCHDOG=1")
            .iter()
            .any(|at| *at > released),
        "no pings after the work made progress again"
    );
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    let stderr = stderr_of(&mut child);
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    assert!(stderr.contains("no progress"), "{stderr}");
}
