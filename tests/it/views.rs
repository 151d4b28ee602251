//! The finance views against the simulator's own data.

use std::time::Duration;

use chrono::{NaiveDate, Timelike, Utc};
use vipps_ledger_sync::config::Topic;
use vipps_ledger_sync::store::{feed_health, leases};
use vipps_ledger_sync::tables;

use crate::common::{small, TestApp, CLIENT_ID};

#[tokio::test]
async fn the_payout_view_matches_the_simulators_payouts_exactly() {
    let app = TestApp::spawn(small()).await;
    app.sim.grow(2);
    assert!(app.sync_once().await.success());
    let mut expected = Vec::new();
    for ledger in app.sim.ledger_ids() {
        let funds = app.sim.expected_entries(&ledger, "funds");
        let mut previous = 0;
        for (i, e) in funds.iter().enumerate() {
            let kind = e["entryType"].as_str().unwrap();
            if kind == "payout-scheduled" || kind == "scheduled-for-payout" {
                let seq = i as i64 + 1;
                let covered = &funds[previous as usize..i + 1];
                let first_date = covered
                    .iter()
                    .filter_map(|c| c["ledgerDate"].as_str())
                    .min()
                    .unwrap();
                expected.push((
                    ledger.clone(),
                    e["pspReference"].as_str().unwrap().to_owned(),
                    -e["amount"].as_i64().unwrap(),
                    previous + 1,
                    seq,
                    NaiveDate::parse_from_str(first_date, "%Y-%m-%d").unwrap(),
                    NaiveDate::parse_from_str(e["ledgerDate"].as_str().unwrap(), "%Y-%m-%d")
                        .unwrap(),
                ));
                previous = seq;
            }
        }
    }
    assert!(
        expected.len() >= 8,
        "the simulator pays out ({} payouts)",
        expected.len()
    );
    type Row = (String, String, i64, i64, i64, NaiveDate, NaiveDate);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT ledger_id, payout_reference, paid_out, first_seq, last_seq, first_ledger_date,
             last_ledger_date
         FROM payouts ORDER BY ledger_id, last_seq",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows, expected);
    // Every covered entry is in payout_entries once, and they sum to zero with the payout
    // when the balance started the period at zero.
    let covered: i64 = sqlx::query_scalar("SELECT count(*) FROM payout_entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let want: i64 = expected.iter().map(|e| e.4 - e.3 + 1).sum();
    assert_eq!(covered, want);
}

#[tokio::test]
async fn daily_summary_and_current_balances_add_up_to_the_entries() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let (entries, sum): (i64, i64) =
        sqlx::query_as("SELECT sum(entries)::int8, sum(amount_sum)::int8 FROM daily_summary")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let (want_entries, want_sum): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(amount)::int8 FROM entries")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((entries, sum), (want_entries, want_sum));
    for ledger in app.sim.ledger_ids() {
        for topic in ["funds", "fees"] {
            let feed = app.sim.expected_entries(&ledger, topic);
            let last = feed.last().unwrap();
            let balance: i64 = sqlx::query_scalar(
                "SELECT balance FROM current_balances WHERE ledger_id = $1 AND topic = $2",
            )
            .bind(&ledger)
            .bind(topic)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
            assert_eq!(
                balance,
                last["balanceAfter"].as_i64().unwrap(),
                "{ledger} {topic}"
            );
        }
    }
}

/// `status`'s ledgers per state, as (state, count).
fn by_state(report: &tables::StatusReport) -> Vec<(&str, i64)> {
    report
        .ledgers_by_state
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect()
}

#[tokio::test]
async fn status_shows_ledgers_by_state_lag_last_errors_and_next_runs() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledgers = app.sim.ledger_ids();
    let pool = &app.db.pool;

    let report = tables::status_report(pool, &app.settings).await.unwrap();
    let states = by_state(&report);
    assert_eq!(
        states,
        [
            ("blocked", 0),
            ("caught_up", 4),
            ("failing", 0),
            ("no_access", 0),
            ("syncing", 0)
        ]
    );
    assert!(report.last_errors.is_empty());

    // One ledger revoked, one feed failing, one blocked: one ledger in each state.
    app.sim.revoke(CLIENT_ID, &ledgers[0]);
    assert!(app.sync_once().await.success());
    let (second, third) = (&ledgers[1], &ledgers[2]);
    let minute = Duration::from_secs(60);
    let lease = crate::common::test_lease(pool, second, Topic::Funds).await;
    let failure = feed_health::FailureParams {
        ledger_id: second,
        topic: Topic::Funds,
        error: "HTTP 500: boom",
        base: minute,
        max: minute,
    };
    assert!(feed_health::record_failure(pool, &failure, &lease)
        .await
        .unwrap());
    leases::release_lease(pool, second, Topic::Funds, &lease)
        .await
        .unwrap();
    let lease = crate::common::test_lease(pool, third, Topic::Fees).await;
    assert!(feed_health::block(
        pool,
        third,
        Topic::Fees,
        "the API rejected cursor c-1",
        &lease
    )
    .await
    .unwrap());
    leases::release_lease(pool, third, Topic::Fees, &lease)
        .await
        .unwrap();
    let before = Utc::now();
    let report = tables::status_report(pool, &app.settings).await.unwrap();
    let states = by_state(&report);
    assert_eq!(
        states,
        [
            ("blocked", 1),
            ("caught_up", 1),
            ("failing", 1),
            ("no_access", 1),
            ("syncing", 0)
        ]
    );

    // Lag over the three ledgers still granted, worst first.
    let topics: Vec<&str> = report.lag.iter().map(|l| l.topic.as_str()).collect();
    assert_eq!(topics, ["funds", "fees"]);
    for lag in &report.lag {
        assert_eq!(lag.feeds, 3, "{lag:?}");
        let (worst, median) = (lag.worst_seconds.unwrap(), lag.median_seconds.unwrap());
        assert!(worst >= median && median > 0.0, "{lag:?}");
        assert_eq!(lag.worst_feeds.len(), 3);
        assert_eq!(lag.worst_feeds[0].lag_seconds, worst);
        assert!(lag.worst_feeds.iter().all(|f| f.ledger_id != ledgers[0]));
    }

    assert_eq!(report.last_errors.len(), 1, "{:?}", report.last_errors);
    let error = &report.last_errors[0];
    assert_eq!(
        (
            error.ledger_id.as_str(),
            error.topic.as_str(),
            error.error.as_str()
        ),
        (second.as_str(), "funds", "HTTP 500: boom")
    );
    assert_eq!(error.consecutive_failures, 1);

    // The next firing of each schedule (defaults: minute 17, 43 and 53 of every hour).
    let names: Vec<&str> = report.next_runs.keys().map(String::as_str).collect();
    assert_eq!(names, ["discovery", "sync", "verify"]);
    for (name, minute) in [("sync", 17), ("discovery", 43), ("verify", 53)] {
        let run = &report.next_runs[name];
        let next = run.next.unwrap();
        assert!(next > before - chrono::Duration::seconds(1), "{run:?}");
        assert!(next <= before + chrono::Duration::hours(1), "{run:?}");
        assert_eq!((next.minute(), next.second()), (minute, 0), "{run:?}");
    }
    assert_eq!(report.next_runs["sync"].key, "sync.schedule");

    let text = tables::render_status(&report);
    for want in [
        "test-partner",
        "ledgers by state: blocked 1, caught_up 1, failing 1, no_access 1, syncing 0",
        "furthest behind",
        "HTTP 500: boom",
        "[failing, 1x]",
        "next runs (UTC):",
        "(sync.schedule = \"0 17 * * * *\")",
        "BLOCKED: the API rejected cursor c-1",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    let json = serde_json::to_value(&report).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "exports",
            "feeds",
            "lag",
            "last_errors",
            "ledgers_by_state",
            "next_runs",
            "partners"
        ]
    );
    assert_eq!(json["ledgers_by_state"]["no_access"], 1);
    assert_eq!(json["next_runs"]["verify"]["schedule"], "0 53 * * * *");
    assert_eq!(json["last_errors"][0]["error"], "HTTP 500: boom");
}
