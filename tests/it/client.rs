//! The Report API client against the simulator: tokens, paging, the dates endpoint, errors.

use chrono::NaiveDate;
use vipps_ledger_sync::config::Topic;
use vipps_ledger_sync::report_api::{ApiError, Entry};
use vipps_ledger_sync::simulator::SimulatorConfig;

use crate::common::{small, TestApp, CLIENT_ID};

#[tokio::test]
async fn concurrent_callers_share_one_token_fetch() {
    let app = TestApp::spawn(small()).await;
    let ctx = app.context();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let ctx = ctx.clone();
        calls.spawn(async move { ctx.partners[0].list_ledgers().await });
    }
    while let Some(listed) = calls.join_next().await {
        assert_eq!(listed.unwrap().unwrap().len(), 4);
    }
    assert_eq!(app.sim.stats().token_requests, 1);
    assert_eq!(ctx.partners[0].tokens().fetches(), 1);
}

#[tokio::test]
async fn the_ledger_list_is_read_through_all_its_pages() {
    let app = TestApp::spawn(SimulatorConfig {
        ledgers: 12,
        days: 1,
        ..small()
    })
    .await;
    let ctx = app.context();
    let listed = ctx.partners[0].list_ledgers().await.unwrap();
    let mut ids: Vec<String> = listed.iter().map(|l| l.ledger_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, app.sim.ledger_ids());
    assert!(
        app.sim.stats().ledger_list_requests >= 3,
        "12 ledgers come in pages of 5"
    );
    assert!(listed
        .iter()
        .all(|l| l.currency.is_some() && l.owner.is_some()));
}

#[tokio::test]
async fn the_dates_endpoint_pages_a_closed_date_and_says_when_a_date_is_open() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(5);
    let ctx = app.context();
    let partner = &ctx.partners[0];
    let ledger = &app.sim.ledger_ids()[0];
    let first = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = partner
            .dates(ledger, Topic::Funds, first, cursor.as_deref())
            .await
            .unwrap();
        assert!(!page.try_later, "a past date is closed");
        got.extend(page.items.iter().map(Entry::raw_value));
        match page.cursor {
            Some(c) if page.has_more => cursor = Some(c),
            _ => break,
        }
    }
    let want: Vec<_> = app
        .sim
        .expected_entries(ledger, "funds")
        .into_iter()
        .filter(|e| e["ledgerDate"] == "2026-01-05")
        .collect();
    assert!(want.len() > 5, "more than one page");
    assert_eq!(got, want);
    let last = first + chrono::Days::new(3);
    let open = partner
        .dates(ledger, Topic::Funds, last, None)
        .await
        .unwrap();
    assert!(open.try_later, "the newest date is still open");
}

#[tokio::test]
async fn a_ledger_that_is_not_shared_answers_not_found() {
    let app = TestApp::spawn(small()).await;
    let ledger = app.sim.ledger_ids()[1].clone();
    app.sim.revoke(CLIENT_ID, &ledger);
    let ctx = app.context();
    let err = ctx.partners[0]
        .feed(&ledger, Topic::Fees, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::NotFound { body } if body.contains("No such ledgerId")),
        "{err}"
    );
    assert_eq!(app.sim.stats().not_found, 1, "a 404 is not retried");
}

#[tokio::test]
async fn a_token_whose_lifetime_is_a_string_is_accepted() {
    let app = TestApp::spawn(SimulatorConfig {
        expires_in_as_string: true,
        ..small()
    })
    .await;
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
}
