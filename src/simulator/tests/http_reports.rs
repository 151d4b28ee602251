//! HTTP tests of the report endpoints (feed and dates): paging, 404s, 401s, GDPR fields.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::http::Harness;
use crate::simulator::SimulatorConfig;

#[tokio::test]
async fn paging_a_feed_over_http_returns_exactly_the_expected_entries() {
    let h = Harness::start(SimulatorConfig::default()).await;
    h.sim.set_feed_page_size(7);
    let token = h.token().await;
    let expected = h.sim.expected_entries("100005", "fees");
    let mut got = Vec::new();
    let mut path = "/report/v2/ledgers/100005/fees/feed".to_string();
    let mut calls = 0;
    let cursor = loop {
        let a = h.get(&path, Some(&token)).await;
        calls += 1;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.page_size.as_deref(), Some("7"));
        let items = a.body["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 7);
        got.extend(items);
        let cursor = a.body["cursor"].as_str().unwrap_or_default().to_string();
        assert!(!cursor.is_empty());
        path = format!("/report/v2/ledgers/100005/fees/feed?cursor={cursor}");
        if a.body["tryLater"] == true {
            break cursor;
        }
    };
    assert_eq!(got, expected);
    let end = h.get(&path, Some(&token)).await;
    assert_eq!(end.body["cursor"], cursor);
    assert_eq!(end.body["tryLater"], true);
    assert_eq!(end.body["items"], Value::Array(vec![]));
    let stats = h.sim.stats();
    let key = ("100005".to_string(), "fees".to_string());
    assert_eq!(stats.feed_requests.get(&key), Some(&(calls + 1)));
    assert_eq!(stats.total_feed_requests(), calls + 1);
    assert_eq!(stats.missing_system_headers, 0);
}

#[tokio::test]
async fn a_revoked_or_unknown_ledger_answers_404_no_such_ledger_id() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    h.sim.revoke("acme", "100002");
    for path in [
        "/report/v2/ledgers/100002/funds/feed",
        "/report/v2/ledgers/100002/fees/dates/2026-01-06",
        "/report/v2/ledgers/999999/funds/feed",
    ] {
        let a = h.get(path, Some(&token)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(a.content_type, "application/problem+json");
        assert_eq!(a.body["detail"], "No such ledgerId");
        assert_eq!(a.body["status"], 404);
    }
    let list = h.get("/settlement/v1/ledgers?cursor=", Some(&token)).await;
    assert!(list.body["items"]
        .as_array()
        .is_some_and(|v| v.iter().all(|l| l["ledgerId"] != "100002")));
    assert_eq!(h.sim.stats().not_found, 3);
}

#[tokio::test]
async fn expired_missing_or_malformed_tokens_get_401() {
    let h = Harness::start(SimulatorConfig::default()).await;
    h.sim.set_token_ttl(Duration::ZERO);
    let expired = h.token().await;
    let path = "/report/v2/ledgers/100001/funds/feed";
    for token in [Some(expired.as_str()), None, Some("made-up")] {
        let a = h.get(path, token).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body["code"], "Unauthorized");
        assert_eq!(a.body["message"], "Please check your API keys");
    }
    h.sim.set_token_ttl(Duration::from_secs(900));
    let fresh = h.token().await;
    assert_eq!(h.get(path, Some(&fresh)).await.status, StatusCode::OK);
    assert_eq!(h.sim.stats().unauthorized, 3);
}

fn has_gdpr(items: &Value) -> (usize, usize) {
    let items = items.as_array().cloned().unwrap_or_default();
    let with = items
        .iter()
        .filter(|e| e.get("name").is_some() && e.get("maskedPhoneNo").is_some())
        .count();
    let captures = items.iter().filter(|e| e["entryType"] == "capture").count();
    (with, captures)
}

#[tokio::test]
async fn gdpr_fields_appear_only_on_request_and_only_for_vippsnummer_captures() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    let vm = "/report/v2/ledgers/100003/funds/feed";
    let plain = h.get(vm, Some(&token)).await;
    assert_eq!(has_gdpr(&plain.body["items"]).0, 0);
    let asked = h
        .get(&format!("{vm}?includeGDPRSensitiveData=true"), Some(&token))
        .await;
    let (with, captures) = has_gdpr(&asked.body["items"]);
    assert!(captures > 0 && with == captures);
    let masked = asked.body["items"][0]["maskedPhoneNo"]
        .as_str()
        .unwrap_or("");
    assert!(masked.starts_with("xxxx ") && masked.len() == 9);
    let api = "/report/v2/ledgers/100001/funds/feed?includeGDPRSensitiveData=true";
    assert_eq!(has_gdpr(&h.get(api, Some(&token)).await.body["items"]).0, 0);
    let dates = "/report/v2/ledgers/100003/funds/dates/2026-01-07?includeGDPRSensitiveData=true";
    let (with, captures) = has_gdpr(&h.get(dates, Some(&token)).await.body["items"]);
    assert!(captures > 0 && with == captures);
}

#[tokio::test]
async fn the_dates_endpoint_reports_open_and_closed_dates_and_pages_with_has_more() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    let base = "/report/v2/ledgers/100004/funds/dates";
    let closed = h.get(&format!("{base}/2026-01-08"), Some(&token)).await;
    assert_eq!(closed.body["tryLater"], false);
    assert_eq!(closed.body["hasMore"], false);
    assert!(closed.body.get("cursor").is_none());
    let items = closed.body["items"].as_array().cloned().unwrap_or_default();
    let payout = items.last().expect("entries");
    assert_eq!(payout["entryType"], "scheduled-for-payout");
    let open = h.get(&format!("{base}/2026-01-14"), Some(&token)).await;
    assert_eq!(open.body["tryLater"], true);
    assert!(open.body["items"].as_array().is_some_and(|v| !v.is_empty()));
    let future = h.get(&format!("{base}/2026-03-01"), Some(&token)).await;
    assert_eq!(
        (&future.body["tryLater"], &future.body["hasMore"]),
        (&true.into(), &false.into())
    );

    h.sim.set_feed_page_size(5);
    let mut got = Vec::new();
    let mut path = format!("{base}/2026-01-08");
    loop {
        let a = h.get(&path, Some(&token)).await;
        got.extend(a.body["items"].as_array().cloned().unwrap_or_default());
        if a.body["hasMore"] == false {
            break;
        }
        let cursor = a.body["cursor"].as_str().expect("cursor with hasMore");
        path = format!("{base}/2026-01-08?cursor={cursor}");
    }
    assert_eq!(got, items);

    for bad in [
        format!("{base}/2026-1-8"),
        format!("{base}/yesterday"),
        "/report/v2/ledgers/100004/payouts/feed".to_string(),
        "/report/v2/ledgers/100004/funds/feed?cursor=bm90LWEtY3Vyc29y".to_string(),
    ] {
        let a = h.get(&bad, Some(&token)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.content_type, "application/problem+json");
    }
}
