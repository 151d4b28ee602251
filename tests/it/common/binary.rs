//! Running the real binary from tests: a clean environment, a config file pointing at the
//! test's simulator and database, signals, waiting for output and exit, and the shared steps
//! of the stop tests.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vipps_ledger_sync::simulator::{FaultConfig, SimulatorConfig};

use super::{TestApp, CLIENT_ID, CLIENT_SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_vipps-ledger-sync");

/// A config file pointing the binary at the test's simulator and database, with the test
/// partner; `extra` goes into `[sync]` and may open tables of its own.
pub fn config_file(app: &TestApp, extra: &str) -> tempfile::NamedTempFile {
    config_file_for(app, &app.db.url, (CLIENT_ID, CLIENT_SECRET), extra)
}

/// [`config_file`] with another database URL and another partner's (client id, secret).
pub fn config_file_for(
    app: &TestApp,
    db: &str,
    client: (&str, &str),
    extra: &str,
) -> tempfile::NamedTempFile {
    let (id, secret) = client;
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    write!(
        f,
        r#"
[database]
url = "{db}"
[api]
base_url = "{api}"
request_timeout = "10s"
max_requests_per_second = 0
[sync]
# The default lease_ttl (2 minutes): a killed instance's units are free at once anyway, its
# presence in the database gone with its connection; only a stalled one's last that long.
# Reconciliation has tests of its own; here it would only slow the daemons down.
verify_schedule = "0 0 0 1 1 *"
{extra}
[retry]
base_backoff = "1ms"
max_backoff = "20ms"
[[partners]]
name = "test-partner"
client_id = "{id}"
client_secret = "{secret}"
"#,
        api = app.base_url,
    )
    .unwrap();
    f
}

/// Sends SIGTERM to a child.
pub fn sigterm(child: &std::process::Child) {
    // SAFETY: kill(2) on a pid we spawned; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// 6 ledgers in pages of 10 entries: a first sync of a few hundred pages, long enough to stop
/// in the middle of.
pub async fn many_pages() -> TestApp {
    let app = TestApp::spawn(SimulatorConfig {
        ledgers: 6,
        days: 12,
        captures_per_day: 30,
        ..SimulatorConfig::default()
    })
    .await;
    app.sim.set_feed_page_size(10);
    app
}

/// After a stop that abandoned work: no lease is left behind, and a `sync --once` with
/// `config_args` (and leases far longer than a test) completes the data exactly, at once.
pub async fn no_lease_left_and_the_next_sync_is_exact(app: &TestApp, config_args: &[&str]) {
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM feed_cursors WHERE lease_holder IS NOT NULL")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(held, 0, "leases left behind");
    app.sim.set_faults(None);
    let out = command(&[config_args, &["sync", "--once"]].concat())
        .env("VLS_SYNC__LEASE_TTL", "10m")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.assert_exact().await;
}

/// From now on every request to the simulator (but the token endpoint's) hangs for a minute,
/// far longer than any drain deadline a test sets.
pub fn stall_everything(app: &TestApp) {
    app.sim.set_faults(Some(FaultConfig {
        rate_stall: 1.0,
        stall: Duration::from_secs(60),
        ..FaultConfig::default()
    }));
}

/// `run` with `config`, a 2 s drain deadline and requests allowed to hang (so a stall is cut
/// by the deadline, not the request timeout), stderr piped; `env` adds settings.
pub fn run_draining(config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = command(&["--config", config.to_str().unwrap(), "run"]);
    cmd.env("VLS_SYNC__DRAIN_DEADLINE", "2s")
        .env("VLS_API__REQUEST_TIMEOUT", "120s")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// Polls `done` every 20 ms until it holds; fails naming `what` after 30 s.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child's standard error, once it has exited (empty if it was not piped).
pub fn stderr_of(child: &mut std::process::Child) -> String {
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.as_mut() {
        let _ = std::io::Read::read_to_string(pipe, &mut stderr);
    }
    stderr
}

/// Sends SIGTERM to `child` (started with `sync.drain_deadline = 2s`, its `work` stalled) and
/// checks that it exits 0 right after the deadline, logging that it abandoned `work`.
/// Returns how long SIGTERM to exit took, and the child's stderr.
pub async fn sigterm_abandons_at_the_deadline(
    child: &mut std::process::Child,
    work: &str,
) -> (Duration, String) {
    sigterm(child);
    let signalled = Instant::now();
    let status = wait_exit(child, Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let stderr = stderr_of(child);
    assert!(
        status.is_some_and(|s| s.success()),
        "{work}: {status:?} after {took:?}: {stderr}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(3500),
        "{work}: SIGTERM to exit took {took:?} with a 2 s drain deadline"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("drain deadline passed") && l.contains(work)),
        "{work}: {stderr}"
    );
    (took, stderr)
}

/// SIGINT, as Ctrl-C in a terminal sends it.
pub fn interrupt(child: &std::process::Child) {
    // SAFETY: kill(2) on a pid we spawned; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// Waits up to `limit` for the child to exit.
pub async fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Waits (at most 30 s) until `pool` holds an entry: the binary's first pass is storing.
pub async fn wait_until_storing(pool: &sqlx::PgPool, what: &str) {
    let started = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
            .fetch_one(pool)
            .await
            .unwrap_or(0);
        if n > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} stored nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The binary with a clean environment (no DATABASE_URL or VLS_* from the caller).
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("VLS_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}
