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
            "partners",
            "polling",
            "polling_budget_short"
        ]
    );
    // Fixed polling (the default) has no budget to fall short of.
    assert_eq!(json["polling_budget_short"], serde_json::Value::Null);
    assert_eq!(json["ledgers_by_state"]["no_access"], 1);
    assert_eq!(json["next_runs"]["verify"]["schedule"], "0 53 * * * *");
    assert_eq!(json["last_errors"][0]["error"], "HTTP 500: boom");
}

/// What the simulator's own data says each payout settles: per (ledger, payout, pspReference)
/// the captured, refunded and other amounts and the fees charged; per payout what it paid
/// out and the fees retained.
type Transactions = std::collections::BTreeMap<(String, String, String), [i64; 4]>;
type Totals = std::collections::BTreeMap<(String, String), [i64; 3]>;

fn settled_by_payouts(app: &TestApp) -> (Transactions, Totals) {
    let (mut transactions, mut totals) = (Transactions::new(), Totals::new());
    for ledger in app.sim.ledger_ids() {
        let funds = app.sim.expected_entries(&ledger, "funds");
        let fees = app.sim.expected_entries(&ledger, "fees");
        let fee_of = |psp: &str| -> i64 {
            fees.iter()
                .filter(|f| f["pspReference"] == psp)
                .filter(|f| matches!(f["entryType"].as_str(), Some("capture-fee" | "service-fee")))
                .map(|f| f["amount"].as_i64().unwrap())
                .sum()
        };
        let mut covered = Vec::new();
        for e in &funds {
            let kind = e["entryType"].as_str().unwrap();
            if kind != "payout-scheduled" && kind != "scheduled-for-payout" {
                covered.push(e);
                continue;
            }
            let payout = e["pspReference"].as_str().unwrap().to_owned();
            let mut retained = 0;
            for c in covered.drain(..) {
                let amount = c["amount"].as_i64().unwrap();
                let psp = c["pspReference"].as_str().unwrap().to_owned();
                match c["entryType"].as_str().unwrap() {
                    "fees-retained" => retained += amount,
                    "payout-aborted" => unreachable!("the simulator aborts no payout"),
                    kind => {
                        let key = (ledger.clone(), payout.clone(), psp.clone());
                        let slot = transactions.entry(key).or_insert([0; 4]);
                        let at = match kind {
                            "capture" => 0,
                            "refund" => 1,
                            _ => 2,
                        };
                        slot[at] += amount;
                        // A transaction's fees belong to the payout that settles its capture.
                        if kind == "capture" {
                            slot[3] = fee_of(&psp);
                        }
                    }
                }
            }
            let paid_out = -e["amount"].as_i64().unwrap();
            totals.insert((ledger.clone(), payout), [paid_out, retained, 0]);
        }
    }
    (transactions, totals)
}

#[tokio::test]
async fn payout_totals_and_transactions_settle_exactly_what_each_payout_paid_out() {
    let app = TestApp::spawn(small()).await;
    app.sim.grow(2);
    assert!(app.sync_once().await.success());
    let (transactions, totals) = settled_by_payouts(&app);
    assert!(
        totals.len() >= 8 && transactions.len() > 100,
        "{}",
        totals.len()
    );

    type TxRow = (String, String, String, i64, i64, i64, i64, i64, i64);
    let rows: Vec<TxRow> = sqlx::query_as(
        "SELECT ledger_id, payout_reference, psp_reference, captured::bigint, refunded::bigint,
                other::bigint, fees::bigint, gross::bigint, net::bigint
         FROM payout_transactions ORDER BY 1, 2, 3",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let got: Transactions = rows
        .iter()
        .map(|r| {
            assert_eq!(r.7, r.3 + r.4 + r.5, "gross of {r:?}");
            assert_eq!(r.8, r.7 + r.6, "net of {r:?}");
            (
                (r.0.clone(), r.1.clone(), r.2.clone()),
                [r.3, r.4, r.5, r.6],
            )
        })
        .collect();
    assert_eq!(got, transactions);

    type TotalRow = (String, String, i64, i64, i64, i64, i64, i64);
    let rows: Vec<TotalRow> = sqlx::query_as(
        "SELECT ledger_id, payout_reference, paid_out::bigint, transactions_gross::bigint,
                fees_retained::bigint, ledger_other::bigint, fees_charged::bigint, transactions
         FROM payout_totals ORDER BY 1, 2",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    for r in &rows {
        // The entries a payout covers, the payout excluded, sum to what it paid out.
        assert_eq!(r.2, r.3 + r.4 + r.5, "{r:?}");
        let of_payout = |p: &(String, String, String)| p.0 == r.0 && p.1 == r.1;
        let fees: i64 = transactions
            .iter()
            .filter(|(k, _)| of_payout(k))
            .map(|(_, v)| v[3])
            .sum();
        let count = transactions.keys().filter(|k| of_payout(k)).count() as i64;
        assert_eq!((r.6, r.7), (fees, count), "{r:?}");
    }
    let got: Totals = rows
        .iter()
        .map(|r| ((r.0.clone(), r.1.clone()), [r.2, r.4, r.5]))
        .collect();
    assert_eq!(got, totals);

    // `export --kind payouts`: one record per payout, the same amounts.
    let filter = vipps_ledger_sync::store::export_rows::ExportFilter {
        ledgers: Vec::new(),
        partner: None,
        topic: None,
        from: "2026-01-01".parse().unwrap(),
        to: "2026-12-31".parse().unwrap(),
    };
    let out = tempfile::NamedTempFile::new().unwrap();
    let n = vipps_ledger_sync::export::export(
        &app.db.pool,
        &filter,
        vipps_ledger_sync::export::Kind::Payouts,
        vipps_ledger_sync::export::Format::Jsonl,
        Default::default(),
        &Default::default(),
        Some(out.path()),
    )
    .await
    .unwrap();
    assert_eq!(n as usize, totals.len());
    for line in std::fs::read_to_string(out.path()).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["ledger_id"].as_str().unwrap().to_owned(),
            v["payout_reference"].as_str().unwrap().to_owned(),
        );
        assert_eq!(v["paid_out_minor"].as_i64().unwrap(), totals[&key][0]);
        assert!(v["bank_account"].as_str().unwrap().contains(' '), "{v}");
    }
}

#[tokio::test]
async fn the_period_report_carries_each_feed_from_its_opening_to_its_closing_balance() {
    let app = TestApp::spawn(small()).await;
    app.sim.grow(2);
    assert!(app.sync_once().await.success());
    let (from, to) = (
        NaiveDate::from_ymd_opt(2026, 1, 6).unwrap(),
        NaiveDate::from_ymd_opt(2026, 1, 8).unwrap(),
    );
    let filter = vipps_ledger_sync::store::export_rows::ExportFilter {
        ledgers: Vec::new(),
        partner: None,
        topic: None,
        from,
        to,
    };
    let rows = vipps_ledger_sync::store::export_rows::period(&app.db.pool, &filter)
        .await
        .unwrap();
    let mut feeds = 0;
    for ledger in app.sim.ledger_ids() {
        for topic in ["funds", "fees"] {
            let entries = app.sim.expected_entries(&ledger, topic);
            let inside: Vec<_> = entries
                .iter()
                .filter(|e| {
                    let d: NaiveDate = e["ledgerDate"].as_str().unwrap().parse().unwrap();
                    d >= from && d <= to
                })
                .collect();
            let mine: Vec<_> = rows
                .iter()
                .filter(|r| r.ledger_id == ledger && r.topic == topic)
                .collect();
            if inside.is_empty() {
                assert!(mine.is_empty());
                continue;
            }
            feeds += 1;
            let of = |line: &str| -> i128 {
                mine.iter()
                    .filter(|r| r.line == line)
                    .map(|r| r.amount.0)
                    .sum()
            };
            let opening = inside[0]["balanceBefore"].as_i64().unwrap();
            let closing = inside.last().unwrap()["balanceAfter"].as_i64().unwrap();
            let moved: i64 = inside.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
            assert_eq!(of("opening"), i128::from(opening), "{ledger} {topic}");
            assert_eq!(of("closing"), i128::from(closing), "{ledger} {topic}");
            assert_eq!(of("movement"), i128::from(moved), "{ledger} {topic}");
            assert_eq!(of("opening") + of("movement"), of("closing"));
            let counted: i64 = mine.iter().map(|r| r.entries).sum();
            assert_eq!(counted as usize, inside.len());
        }
    }
    assert_eq!(feeds, 2 * app.sim.ledger_ids().len());
}
