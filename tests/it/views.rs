//! The finance views against the simulator's own data.

use chrono::NaiveDate;

use crate::common::{small, TestApp};

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
