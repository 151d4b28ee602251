//! The real binary: `sync --once`, SIGKILL at random instants, SIGTERM on `run`, config errors.

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use vipps_ledger_sync::simulator::{FaultConfig, SimulatorConfig};

use crate::common::binary::{
    command, config_file, config_file_for, many_pages, sigterm, wait_exit, wait_until_storing,
};
use crate::common::{small, TestApp, CLIENT_ID, CLIENT_SECRET};

/// A small data set synced by the binary, and the config file it used.
async fn synced_by_the_binary() -> (TestApp, tempfile::NamedTempFile) {
    let app = TestApp::spawn(small()).await;
    let cfg = config_file(&app, "");
    let out = command(&["--config", cfg.path().to_str().unwrap(), "sync", "--once"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (app, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_prints_a_summary_and_exits_zero() {
    let app = TestApp::spawn(small()).await;
    let cfg = config_file(&app, "");
    let out = command(&["--config", cfg.path().to_str().unwrap(), "sync", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("synced 4 ledgers"), "{stdout}");
    assert!(stdout.contains("new entries"), "{stdout}");
    app.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_at_random_instants_and_run_again_ends_exact() {
    let heavy = crate::common::heavy();
    let app = TestApp::spawn(SimulatorConfig {
        ledgers: if heavy { 16 } else { 8 },
        days: if heavy { 40 } else { 15 },
        captures_per_day: 30,
        ..SimulatorConfig::default()
    })
    .await;
    app.sim.set_feed_page_size(10);
    let cfg = config_file(&app, "");
    let args = ["--config", cfg.path().to_str().unwrap(), "sync", "--once"];
    let mut rng = rand::thread_rng();
    let mut killed = 0;
    let kills = if crate::common::heavy() { 60 } else { 5 };
    while killed < kills {
        let mut child = command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(30..300))).await;
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        if finished {
            break;
        }
    }
    assert!(killed >= 3, "the sync was killed mid-way ({killed} times)");
    eprintln!("SIGKILLed {killed} times mid-sync, each run started again at once");
    // At once, with leases of two minutes: the killed run's presence went with its process.
    let out = command(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_on_sigterm_between_pages_and_exits_zero() {
    let app = many_pages().await;
    let cfg = config_file(&app, "");
    let mut child = command(&["--config", cfg.path().to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the start-up pass is storing entries, then ask it to stop.
    wait_until_storing(&app.db.pool, "run").await;
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10))
        .await
        .expect("run did not stop on SIGTERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    // Nothing half-written: every cursor row agrees with the entries it follows.
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM feed_cursors c WHERE c.last_seq <>
             (SELECT count(*) FROM entries e WHERE e.ledger_id = c.ledger_id AND e.topic = c.topic)",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(bad, 0);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let total = crate::common::expected_total(&app.sim);
    assert!(
        (stored as usize) < total,
        "stopped before the end ({stored} of {total})"
    );
}

#[test]
fn configuration_errors_name_their_key_and_exit_two() {
    let partner = format!(
        "[[partners]]\nname = \"p\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n"
    );
    let cases = [
        (
            format!("[sync]\nschedul = \"0 17 * * * *\"\n{partner}"),
            "schedul",
        ),
        (
            format!("[sync]\nschedule = \"often\"\n{partner}"),
            "sync.schedule",
        ),
        (
            format!("[api]\nbase_url = \"http://api.example.com\"\n{partner}"),
            "api.base_url",
        ),
        (
            "[[partners]]\nname = \"other\"\nclient_secret = \"x\"\n".to_owned(),
            "client_id",
        ),
    ];
    for (text, key) in cases {
        let mut cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        cfg.write_all(text.as_bytes()).unwrap();
        let out = command(&["--config", cfg.path().to_str().unwrap(), "sync", "--once"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert!(!stderr.contains(CLIENT_SECRET), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_without_once_or_without_partners_is_refused_clearly() {
    let out = command(&["sync"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"));
    let out = command(&["sync", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("partners"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_changes_are_logged_and_the_registry_is_printed_for_people_and_scripts() {
    let app = TestApp::spawn(small()).await;
    let cfg = config_file(&app, "");
    let config = cfg.path().to_str().unwrap();
    let out = command(&["--config", config, "sync", "--once"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let ledger = app.sim.ledger_ids()[0].clone();
    let owner = app.sim.ledger_json(&ledger).unwrap()["owner"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let opened = log
        .lines()
        .find(|l| l.contains("grant opened") && l.contains(&ledger))
        .unwrap_or_else(|| panic!("no audit line for {ledger}:\n{log}"));
    assert!(
        opened.contains("test-partner") && opened.contains(&owner),
        "{opened}"
    );
    assert!(!log.contains(CLIENT_SECRET), "no secret in the logs");

    app.sim.revoke(CLIENT_ID, &ledger);
    let out = command(&["--config", config, "sync", "--once"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.lines().any(|l| l.contains("grant closed")
            && l.contains(&ledger)
            && l.contains("absent_from_list")),
        "{log}"
    );

    let out = command(&["--config", config, "grants"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("test-partner"))
            .count(),
        3,
        "{table}"
    );
    assert!(
        !table.contains(&format!(" {ledger} ")),
        "only open grants: {table}"
    );

    let out = command(&["--config", config, "grants", "--ledger", &ledger, "--json"])
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["revoke_reason"], "absent_from_list");
    assert_eq!(history[0]["merchant_id"], owner.as_str());

    let out = command(&["--config", config, "ledgers", "--json"])
        .output()
        .unwrap();
    let ledgers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = ledgers
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["revoked", "syncing", "syncing", "syncing"]);
    let out = command(&["--config", config, "ledgers"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked"));
    let out = command(&["--config", config, "status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("test-partner"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_work_and_a_stalled_one_cannot_overwrite_newer_progress() {
    let app = TestApp::spawn(SimulatorConfig {
        ledgers: 8,
        days: 15,
        captures_per_day: 30,
        ..SimulatorConfig::default()
    })
    .await;
    app.sim.set_feed_page_size(20);
    // Every response takes 100 ms, so a stopped instance is almost surely waiting on the API
    // with pages to commit, not inside a transaction.
    app.sim.set_faults(Some(FaultConfig {
        rate_stall: 1.0,
        stall: Duration::from_millis(100),
        ..FaultConfig::default()
    }));
    let total = crate::common::expected_total(&app.sim) as i64;
    // Both instances run a pass every second; leases last one second, so the stalled one's
    // (it is alive: its presence holds) are taken over soon.
    let cfg = config_file(
        &app,
        "schedule = \"* * * * * *\"\nconcurrency = 4\nlease_ttl = \"1s\"",
    );
    let spawn = |name: &str| {
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("vls-{name}-{}.log", std::process::id())),
        )
        .unwrap();
        command(&["--config", cfg.path().to_str().unwrap(), "run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let stored = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM entries")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    let mut a = spawn("a");
    let mut b = spawn("b");
    let started = Instant::now();
    while stored().await < total / 5 {
        assert!(started.elapsed() < Duration::from_secs(30), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A stalls past its leases; B takes at least one of A's units over; A wakes up with
    // pages in hand for it.
    unsafe { libc::kill(a.id() as i32, libc::SIGSTOP) };
    let held_by_a: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT ledger_id, topic, fence FROM feed_cursors WHERE lease_holder LIKE $1",
    )
    .bind(format!("%:{}:%", a.id()))
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(!held_by_a.is_empty(), "A held units when it stopped");
    let stopped = Instant::now();
    loop {
        let mut taken = false;
        for (ledger, topic, fence) in &held_by_a {
            let now: i64 = sqlx::query_scalar(
                "SELECT fence FROM feed_cursors WHERE ledger_id = $1 AND topic = $2",
            )
            .bind(ledger)
            .bind(topic)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
            taken |= now > *fence;
        }
        if taken {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "B never took over A's units"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unsafe { libc::kill(a.id() as i32, libc::SIGCONT) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.kill().unwrap(); // SIGKILL: A must pick up B's units once their leases expire.
    b.wait().unwrap();
    while stored().await < total {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "A did not finish B's work"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&a);
    assert!(a.wait().unwrap().success());
    app.assert_exact().await;
    let takeovers: i64 = sqlx::query_scalar("SELECT count(*) FROM feed_cursors WHERE fence > 1")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(takeovers > 0, "units changed hands");
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("vls-a-{}.log", std::process::id())),
    )
    .unwrap();
    let refused = log.matches("lease lost").count();
    eprintln!("late commits refused after the stall: {refused}");
    assert!(
        refused > 0,
        "the stalled instance's late commits were refused:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_prints_a_summary_per_feed_for_people_and_scripts() {
    let (app, cfg) = synced_by_the_binary().await;
    let config = cfg.path().to_str().unwrap();
    let out = command(&["--config", config, "verify"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("reconciled: no differences"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("1000")).count(),
        8,
        "{table}"
    );
    sqlx::query("UPDATE entries SET amount = amount + 1 WHERE seq = 3")
        .execute(&mut crate::common::behind_the_back(&app.db.pool).await)
        .await
        .unwrap();
    sqlx::query("DELETE FROM reconciliations")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let out = command(&["--config", config, "verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "differences exit 1");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let differing: u64 = report["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["differing"].as_u64().unwrap())
        .sum();
    assert!(differing >= 8, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_the_stored_entries_and_summaries_as_csv_and_json_lines() {
    let (app, cfg) = synced_by_the_binary().await;
    let config = cfg.path().to_str().unwrap();
    let ledger = app.sim.ledger_ids()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("entries.csv");
    let out = command(&[
        "--config",
        config,
        "export",
        "--ledger",
        &ledger,
        "--from",
        "2026-01-05",
        "--to",
        "2026-01-06",
        "--output",
        file.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let stored: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT seq, amount, currency FROM entries WHERE ledger_id = $1
             AND ledger_date BETWEEN '2026-01-05' AND '2026-01-06' ORDER BY topic, seq",
    )
    .bind(&ledger)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(records.len(), stored.len());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    for (r, (seq, amount, currency)) in records.iter().zip(&stored) {
        assert_eq!(r[col("seq")].parse::<i64>().unwrap(), *seq);
        assert_eq!(r[col("amount_minor")].parse::<i64>().unwrap(), *amount);
        assert_eq!(
            &r[col("amount")],
            vipps_ledger_sync::export::decimal(*amount, currency)
        );
    }

    let out = command(&[
        "--config",
        config,
        "export",
        "--summary",
        "--format",
        "jsonl",
        "--from",
        "2026-01-05",
        "--to",
        "2026-01-31",
    ])
    .output()
    .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total: i64 = lines
        .iter()
        .map(|l| l["amount_minor"].as_i64().unwrap())
        .sum();
    let count: i64 = lines.iter().map(|l| l["entries"].as_i64().unwrap()).sum();
    let (want_count, want_total): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(amount)::int8 FROM entries")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((count, total), (want_count, want_total));
}

#[test]
fn help_and_configuration_errors_never_show_a_secret() {
    let sentinel = "Zq9SENTINELx7";
    let url = format!("postgres://vls:{sentinel}@127.0.0.1:5432/postgres");
    for args in [&["demo", "--help"][..], &["--help"], &["export", "--help"]] {
        let out = command(args).env("DATABASE_URL", &url).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(!text.contains(sentinel), "{args:?}: {text}");
    }
    let mut cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    write!(
        cfg,
        "[[partners]]\nname = \"p\"\nclient_id = \"i\"\nclient_secret = \"{sentinel}\n"
    )
    .unwrap();
    let out = command(&["--config", cfg.path().to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 4, column"), "{stderr}");
    assert!(!stderr.contains(sentinel), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_that_only_read_apply_no_migration() {
    let db = crate::common::TestDb::unmigrated().await;
    let app = TestApp::spawn(small()).await;
    let config = config_file_for(&app, &db.url, (CLIENT_ID, CLIENT_SECRET), "");
    let config = config.path().to_str().unwrap();
    for args in [
        &["status"][..],
        &["ledgers"],
        &["grants"],
        &["export", "--from", "2026-01-01", "--to", "2026-01-31"],
        &["reset-cursor", "100001"],
    ] {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        let out = command(&all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("vipps-ledger-sync migrate"),
            "{args:?}: {stderr}"
        );
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "nothing was migrated");
}
