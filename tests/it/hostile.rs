//! A hostile or broken API, one named simulator mode at a time, against the real binary:
//! each command ends on its own within a stated bound, exits 1 (never 0, never a panic's
//! 101) with a message naming the ledger, topic and what was wrong, stores nothing from the
//! bad response, and syncs the other ledgers of the same pass in full.

use std::process::Stdio;
use std::time::{Duration, Instant};

use vipps_ledger_sync::simulator::{Hostile, HostileConfig, Simulator, SimulatorConfig};

use crate::common::binary::{command, config_file};

use crate::common::{assert_exact_ledgers, small, TestApp, CLIENT_ID, CLIENT_SECRET};

/// What one run of the binary did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// Peak resident memory of the process (VmHWM), in bytes.
    peak_rss: u64,
}

/// Peak resident memory of a running process, from /proc.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the binary with `args` after `--config`, killing it (and failing the test) if it is
/// still running after `bound`.
async fn run(app: &TestApp, env: &[(&str, &str)], args: &[&str], bound: Duration) -> Ran {
    let cfg = config_file(app, "");
    let mut all = vec!["--config", cfg.path().to_str().unwrap()];
    all.extend_from_slice(args);
    let mut child = command(&all)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let read_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let mut peak = 0;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        peak = peak.max(peak_rss(pid).unwrap_or(0));
        if started.elapsed() > bound {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "{args:?} still running after {bound:?}: {}",
                read_err.join().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ran {
        code,
        stdout: read_out.join().unwrap(),
        stderr: read_err.join().unwrap(),
        elapsed: started.elapsed(),
        peak_rss: peak,
    }
}

/// The ledger a mode is aimed at, and the others.
fn split(app: &TestApp) -> (String, Vec<String>) {
    let mut ids = app.sim.ledger_ids();
    let bad = ids.remove(1);
    (bad, ids)
}

/// `sync --once` failed on `bad`'s feeds only: exit 1, no panic, the message names the
/// ledger, the topic and `what`; the other ledgers are exact; nothing of `bad` was stored.
async fn failed_on(app: &TestApp, ran: &Ran, bad: &str, others: &[String], what: &str) {
    assert_eq!(ran.code, Some(1), "exit code; stderr:\n{}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains(bad) && l.contains("funds"))
        .unwrap_or_else(|| panic!("no failure line for {bad} funds:\n{}", ran.stdout));
    assert!(line.contains(what), "{line}");
    assert_exact_ledgers(app, others).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE ledger_id = $1")
        .bind(bad)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "entries of the bad ledger were stored");
}

fn report(name: &str, ran: &Ran) {
    eprintln!(
        "{name}: exit {:?} after {:.2} s, peak RSS {:.1} MB",
        ran.code,
        ran.elapsed.as_secs_f64(),
        ran.peak_rss as f64 / 1e6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_claims_to_live_forever_is_used_as_if_it_lived_a_day() {
    for as_string in [false, true] {
        let app = TestApp::spawn(small()).await;
        app.sim
            .set_hostile(Some(Hostile::HugeTokenLifetime { as_string }.into()));
        let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(60)).await;
        report("huge-token-lifetime", &ran);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert!(
            ran.stderr.contains("implausible lifetime"),
            "{}",
            ran.stderr
        );
        app.assert_exact().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_fails_that_feed_and_pauses_nobody() {
    for retry_after in [
        "999999999",
        "18446744073709551615",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let app = TestApp::spawn(small()).await;
        let (bad, others) = split(&app);
        let mode = Hostile::HugeRetryAfter {
            retry_after: retry_after.to_owned(),
        };
        app.sim
            .set_hostile(Some(HostileConfig::on_ledger(mode, &bad)));
        let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(30)).await;
        report("huge-retry-after", &ran);
        failed_on(&app, &ran, &bad, &others, "limits.max_retry_after").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_list_going_round_in_a_circle_revokes_nothing_and_ends() {
    let app = TestApp::spawn(SimulatorConfig {
        ledger_page_size: 1,
        ..small()
    })
    .await;
    assert!(app.sync_once().await.success());
    app.sim
        .set_hostile(Some(Hostile::LedgerCursorCycle { period: 3 }.into()));
    let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(30)).await;
    report("ledger-cursor-cycle", &ran);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stdout.contains("circle"), "{}", ran.stdout);
    let closed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM grants WHERE revoked_seen_at IS NOT NULL")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(closed, 0, "a listing that goes round revokes nothing");
    app.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_of_fresh_cursors_with_nothing_behind_them_is_given_up_and_moves_nothing() {
    let app = TestApp::spawn(small()).await;
    let (bad, others) = split(&app);
    app.sim.set_hostile(Some(HostileConfig::on_ledger(
        Hostile::FeedEmptyForever,
        &bad,
    )));
    let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(30)).await;
    report("feed-empty-forever", &ran);
    failed_on(&app, &ran, &bad, &others, "limits.max_empty_pages").await;
    let cursors: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM feed_cursors WHERE ledger_id = $1 AND cursor IS NOT NULL",
    )
    .bind(&bad)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(cursors, 0, "no cursor of the empty pages was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_report_that_repeats_its_cursor_is_not_compared_and_verify_ends() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let (bad, _) = split(&app);
    app.sim.set_hostile(Some(HostileConfig::on_ledger(
        Hostile::DatesCursorRepeat,
        &bad,
    )));
    let ran = run(&app, &[], &["verify"], Duration::from_secs(30)).await;
    report("dates-cursor-repeat", &ran);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("circle"), "{}", ran.stderr);
    assert!(ran.peak_rss < 100_000_000, "{} bytes", ran.peak_rss);
    let compared: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reconciliations WHERE ledger_id = $1 AND status <> 'open'",
    )
    .bind(&bad)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(compared, 0, "no date of the bad ledger was compared");
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reconciliations WHERE ledger_id <> $1 AND status = 'ok'",
    )
    .bind(&bad)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(others > 0, "the other ledgers were reconciled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_page_is_refused_without_being_read_whole() {
    for chunked in [false, true] {
        let app = TestApp::spawn(small()).await;
        let (bad, others) = split(&app);
        let mode = Hostile::HugePage {
            megabytes: 64,
            chunked,
        };
        app.sim
            .set_hostile(Some(HostileConfig::on_ledger(mode, &bad)));
        let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(60)).await;
        report(
            if chunked {
                "huge-page (chunked)"
            } else {
                "huge-page"
            },
            &ran,
        );
        failed_on(&app, &ran, &bad, &others, "limits.max_body_bytes").await;
        assert!(
            ran.peak_rss < 100_000_000,
            "peak RSS {} bytes for a 64 MiB page",
            ran.peak_rss
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_cursor_is_refused_and_no_error_text_grows_with_it() {
    let app = TestApp::spawn(small()).await;
    let (bad, others) = split(&app);
    let mode = Hostile::HugeCursor { bytes: 5 << 20 };
    app.sim
        .set_hostile(Some(HostileConfig::on_ledger(mode, &bad)));
    let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(30)).await;
    report("huge-cursor", &ran);
    failed_on(&app, &ran, &bad, &others, "limits.max_cursor_bytes").await;
    let longest_error: Option<i32> =
        sqlx::query_scalar("SELECT max(octet_length(last_error)) FROM feed_cursors")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(longest_error.unwrap_or(0) <= 2048, "{longest_error:?}");
    assert!(
        ran.stderr.lines().all(|l| l.len() < 8192),
        "a log line longer than 8 KB"
    );
    assert!(ran.stdout.len() < 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_dated_2099_is_refused_and_reconciliation_never_asks_past_tomorrow() {
    let app = TestApp::spawn(small()).await;
    let (bad, others) = split(&app);
    app.sim.set_hostile(Some(HostileConfig::on_ledger(
        Hostile::FarFutureEntry,
        &bad,
    )));
    let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(30)).await;
    report("far-future-entry", &ran);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stdout.contains("outside"), "{}", ran.stdout);
    assert_exact_ledgers(&app, &others).await;
    // What was read before the page with the 2099 entry is kept; the 2099 entry is not.
    let future: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM entries WHERE ledger_date > current_date + 2 OR time > now() + interval '2 days'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(future, 0);
    app.sim.reset_stats();
    let ran = run(&app, &[], &["verify"], Duration::from_secs(30)).await;
    let asked = app.sim.stats().dates_requests;
    eprintln!("verify after the 2099 entry: {asked} daily-report requests");
    assert!(ran.code.is_some());
    let newest: Option<chrono::NaiveDate> =
        sqlx::query_scalar("SELECT max(ledger_date) FROM reconciliations")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Duration::days(1);
    assert!(newest.is_none_or(|d| d <= tomorrow), "{newest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ledger_ids_are_reported_never_stored_and_never_forge_a_log_line() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_hostile(Some(Hostile::HostileLedgerIds.into()));
    let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(30)).await;
    report("hostile-ledger-ids", &ran);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let stored: Vec<String> = sqlx::query_scalar("SELECT ledger_id FROM ledgers ORDER BY 1")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, app.sim.ledger_ids(), "only the valid ledgers");
    for id in Hostile::hostile_ledger_ids() {
        if id.contains('\n') || id.contains('\u{1b}') {
            assert!(!ran.stderr.contains(&id), "a raw {id:?} reached the log");
            assert!(!ran.stdout.contains(&id), "a raw {id:?} reached the output");
        }
    }
    assert!(ran.stdout.contains("a\\nb"), "{}", ran.stdout);
    assert!(
        !ran.stderr.contains('\u{1b}'),
        "an escape character in the log"
    );
    app.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_ledger_list_is_not_followed_and_opens_no_grant() {
    // Another host, whose list shows a ledger the real one does not.
    let elsewhere = Simulator::new(SimulatorConfig {
        ledgers: 5,
        ..small()
    });
    elsewhere.add_partner_with_all_ledgers(CLIENT_ID, CLIENT_SECRET);
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = std::sync::Arc::clone(&elsewhere)
        .spawn(([127, 0, 0, 1], 0).into(), stop.clone())
        .await
        .unwrap();
    let app = TestApp::spawn(small()).await;
    let mode = Hostile::Redirect {
        status: 302,
        location: format!("http://{addr}"),
        data: false,
    };
    app.sim.set_hostile(Some(mode.into()));
    let ran = run(&app, &[], &["sync", "--once"], Duration::from_secs(30)).await;
    report("redirect", &ran);
    stop.cancel();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stdout.contains("redirect"), "{}", ran.stdout);
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(grants, 0, "a redirected listing opened a grant");
    assert_eq!(
        elsewhere.stats().requests_total,
        0,
        "the other host was asked"
    );
}

/// `sync --once` against junk shaped like the official OpenAPI file: ends within 60 s,
/// exits 1, and stores nothing (no entry, no ledger, no grant).
async fn schema_shaped_junk_stores_nothing(app: &TestApp, env: &[(&str, &str)]) {
    let ran = run(app, env, &["sync", "--once"], Duration::from_secs(60)).await;
    report("schema-random", &ran);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    for table in ["entries", "ledgers", "grants"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}: junk was stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_shaped_random_answers_store_nothing_and_end_within_a_minute() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_hostile(Some(Hostile::SchemaRandom.into()));
    schema_shaped_junk_stores_nothing(&app, &[]).await;
}

/// The same against Stoplight Prism serving the official `report-api-openapi.yaml` with
/// `mock -d` (random schema-shaped data), where `prism` is installed (CI installs it:
/// `npm install -g @stoplight/prism-cli`); tokens come from the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prism_mocking_the_official_openapi_file_stores_nothing_and_ends_within_a_minute() {
    let Ok(prism) = which_prism() else {
        eprintln!("skipped: prism is not installed (npm install -g @stoplight/prism-cli); the simulator's schema-random mode covers the same ground");
        return;
    };
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/report-api-openapi.yaml"
    );
    assert!(std::path::Path::new(spec).is_file(), "{spec}");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut mock = std::process::Command::new(prism)
        .args([
            "mock",
            "-d",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            spec,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "prism did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = TestApp::spawn(small()).await;
    let base = format!("http://127.0.0.1:{port}");
    let token = format!("{}/miami/v1/token", app.base_url);
    let env = [
        ("VLS_API__BASE_URL", base.as_str()),
        ("VLS_API__TOKEN_URL", token.as_str()),
    ];
    schema_shaped_junk_stores_nothing(&app, &env).await;
    let _ = mock.kill();
    let _ = mock.wait();
}

fn which_prism() -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join("prism"))
        .find(|p| p.is_file())
        .ok_or(())
}
