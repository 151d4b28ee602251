//! HTTP tests of what each injected fault looks like on the wire, one test per kind.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use super::faults::{always, send};
use super::http::Harness;
use crate::simulator::{FaultConfig, SimulatorConfig};

const FEED: &str = "/report/v2/ledgers/100001/funds/feed";
const DATES: &str = "/report/v2/ledgers/100001/funds/dates/2026-01-07";
const LIST: &str = "/settlement/v1/ledgers";

/// A simulator with 7-item pages and a token.
async fn start() -> (Harness, String) {
    let h = Harness::start(SimulatorConfig::default()).await;
    h.sim.set_feed_page_size(7);
    let token = h.token().await;
    (h, token)
}

/// The answer's body text with faults off.
async fn normal_text(h: &Harness, path: &str, token: &str) -> String {
    let resp = send(h, path, token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("body")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn injected(h: &Harness, kind: &str) -> u64 {
    h.sim
        .stats()
        .faults_injected
        .get(kind)
        .copied()
        .unwrap_or(0)
}

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

#[tokio::test]
async fn a_429_sends_retry_after_in_seconds_or_as_an_http_date_with_an_azure_body() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(FaultConfig {
        retry_after: Duration::from_millis(1500),
        ..always("429")
    }));
    let r = send(&h, FEED, &token).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "2");
    assert_eq!(header(&r, "content-type"), "application/json");
    let body = json(r).await;
    assert_eq!(body["statusCode"], 429);
    assert_eq!(
        body["message"],
        "Rate limit is exceeded. Try again in 2 seconds."
    );
    h.sim.set_faults(Some(FaultConfig {
        retry_after_as_date: true,
        ..always("429")
    }));
    let before = Utc::now();
    let r = send(&h, LIST, &token).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let date = header(&r, "retry-after");
    assert!(date.ends_with(" GMT"), "{date}");
    let at = DateTime::parse_from_rfc2822(&date).expect("HTTP-date");
    let wait = at.with_timezone(&Utc) - before;
    assert!(wait >= chrono::TimeDelta::seconds(1), "{wait}");
    assert!(wait <= chrono::TimeDelta::seconds(3), "{wait}");
    assert_eq!(injected(&h, "429"), 2);
}

#[tokio::test]
async fn a_500_has_the_documented_error_body_with_a_uuid_like_context_id() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("500")));
    let r = send(&h, DATES, &token).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(header(&r, "content-type"), "application/json");
    let body = json(r).await;
    assert_eq!(body["errorCode"], 10001);
    assert!(body["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
    let id = body["contextId"].as_str().unwrap_or_default();
    let dashes: Vec<usize> = id.match_indices('-').map(|(i, _)| i).collect();
    assert_eq!((id.len(), dashes), (36, vec![8, 13, 18, 23]), "{id}");
    assert!(
        id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{id}"
    );
}

#[tokio::test]
async fn a_502_is_an_html_gateway_page() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("502")));
    let r = send(&h, LIST, &token).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(header(&r, "content-type").starts_with("text/html"));
    let text = r.text().await.expect("body");
    assert!(
        text.starts_with("<html>") && text.contains("502 Bad Gateway"),
        "{text}"
    );
}

#[tokio::test]
async fn a_truncated_body_has_the_full_headers_and_breaks_off_half_way() {
    let (h, token) = start().await;
    let normal = normal_text(&h, FEED, &token).await;
    h.sim.set_faults(Some(always("truncated")));
    let mut r = send(&h, FEED, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(header(&r, "content-length"), normal.len().to_string());
    assert_eq!(header(&r, "vipps-feed-page-size"), "7");
    let mut got = Vec::new();
    let error = loop {
        match r.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly after {} bytes", got.len()),
            Err(e) => break e,
        }
    };
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    assert_eq!(got, normal.as_bytes()[..normal.len() / 2]);
    assert_eq!(injected(&h, "truncated"), 1);
}

#[tokio::test]
async fn invalid_json_is_the_first_half_of_the_real_json_in_a_complete_response() {
    let (h, token) = start().await;
    let normal = normal_text(&h, FEED, &token).await;
    h.sim.set_faults(Some(always("invalid_json")));
    let r = send(&h, FEED, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(header(&r, "vipps-feed-page-size"), "7");
    let bytes = r.bytes().await.expect("a complete body");
    assert_eq!(bytes, normal.as_bytes()[..normal.len() / 2]);
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
}

#[tokio::test]
async fn the_html_fault_is_a_200_maintenance_page() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("html")));
    let r = send(&h, FEED, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    let text = r.text().await.expect("body");
    assert!(
        text.starts_with("<html>") && text.ends_with("</html>"),
        "{text}"
    );
    assert!(text.contains("maintenance"));
}

/// Which wrong type a feed or dates page carries: "tryLater" or "amount" (exactly one).
fn wrong_type(body: &Value) -> &'static str {
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let strings: Vec<&Value> = items.iter().filter(|i| i["amount"].is_string()).collect();
    match (body["tryLater"].as_str(), strings.as_slice()) {
        (Some("no"), []) => "tryLater",
        (Some(_), _) => panic!("tryLater is a string other than \"no\": {body}"),
        (None, [one]) => {
            let text = one["amount"].as_str().unwrap_or_default();
            let (units, cents) = text.trim_start_matches('-').split_once('.').expect("12.50");
            assert!(units.parse::<u64>().is_ok() && cents.len() == 2, "{text}");
            assert!(body["tryLater"].is_boolean());
            "amount"
        }
        _ => panic!("no wrong type in {body}"),
    }
}

#[tokio::test]
async fn wrong_types_change_try_later_or_an_amount_or_the_ledger_lists_items() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("wrong_types")));
    let mut kinds = Vec::new();
    for l in 100001..=100012 {
        for path in [
            format!("/report/v2/ledgers/{l}/fees/feed"),
            format!("/report/v2/ledgers/{l}/funds/dates/2026-01-06"),
        ] {
            let r = send(&h, &path, &token).await;
            assert_eq!(r.status(), StatusCode::OK);
            kinds.push(wrong_type(&json(r).await));
        }
    }
    assert!(
        kinds.contains(&"tryLater") && kinds.contains(&"amount"),
        "{kinds:?}"
    );
    let list = json(send(&h, LIST, &token).await).await;
    assert_eq!(list["items"], "none");
    assert!(list["cursor"].is_string());
    assert_eq!(injected(&h, "wrong_types"), 25);
}

#[tokio::test]
async fn missing_cursor_drops_the_feed_cursor_and_leaves_other_endpoints_alone() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("missing_cursor")));
    let body = json(send(&h, FEED, &token).await).await;
    assert!(body.get("cursor").is_none(), "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(7));
    assert_eq!(body["tryLater"], false);
    let list = json(send(&h, LIST, &token).await).await;
    assert!(list["cursor"].is_string());
    assert_eq!(injected(&h, "missing_cursor"), 1);
}

#[tokio::test]
async fn invalid_entry_drops_balance_after_from_one_item_of_a_non_empty_page() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("invalid_entry")));
    for path in [FEED, DATES] {
        let body = json(send(&h, path, &token).await).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let lacking = items.iter().filter(|i| i.get("balanceAfter").is_none());
        assert_eq!((items.len(), lacking.count()), (7, 1), "{path}");
    }
    let empty = "/report/v2/ledgers/100001/funds/dates/2025-01-01";
    let body = json(send(&h, empty, &token).await).await;
    assert_eq!(body["items"], Value::Array(vec![]));
    assert_eq!(injected(&h, "invalid_entry"), 2);
}

#[tokio::test]
async fn overlapping_pages_serve_real_entries_again_and_the_walk_still_reaches_the_end() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("overlap")));
    let expected = h.sim.expected_entries("100004", "fees");
    let base = "/report/v2/ledgers/100004/fees/feed";
    let (mut path, mut next, mut calls) = (base.to_string(), 0usize, 0u64);
    let last_cursor = loop {
        let body = json(send(&h, &path, &token).await).await;
        calls += 1;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let start = expected.iter().position(|e| Some(e) == items.first());
        let start = start.expect("the page starts with a real entry");
        let back = next - start;
        assert!(
            (next == 0 && back == 0) || (1..=5).contains(&back),
            "{back}"
        );
        assert_eq!(items[..], expected[start..start + items.len()]);
        next = start + items.len();
        let cursor = body["cursor"].as_str().expect("cursor").to_string();
        path = format!("{base}?cursor={cursor}");
        if body["tryLater"] == true {
            break cursor;
        }
    };
    assert_eq!(next, expected.len());
    // At the end an overlap repeats the last entries, with the same cursor.
    let body = json(send(&h, &path, &token).await).await;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    assert!((1..=5).contains(&items.len()));
    assert_eq!(items[..], expected[expected.len() - items.len()..]);
    assert_eq!(
        (&body["cursor"], &body["tryLater"]),
        (&Value::from(last_cursor), &Value::from(true))
    );
    // The first page (no cursor) cannot overlap and is not counted.
    assert_eq!(injected(&h, "overlap"), calls);
}

#[tokio::test]
async fn no_progress_returns_the_requests_cursor_and_nothing_and_loses_no_data() {
    let (h, token) = start().await;
    h.sim.set_faults(Some(always("no_progress")));
    let expected = h.sim.expected_entries("100001", "funds");
    let first = json(send(&h, FEED, &token).await).await;
    assert_eq!(
        first["items"].as_array().map(Vec::as_slice),
        Some(&expected[..7])
    );
    let cursor = first["cursor"].as_str().expect("cursor").to_string();
    let path = format!("{FEED}?cursor={cursor}");
    for _ in 0..2 {
        let body = json(send(&h, &path, &token).await).await;
        let want = serde_json::json!({ "cursor": cursor, "tryLater": false, "items": [] });
        assert_eq!(body, want);
    }
    assert_eq!(injected(&h, "no_progress"), 2);
    h.sim.set_faults(None);
    let body = json(send(&h, &path, &token).await).await;
    assert_eq!(
        body["items"].as_array().map(Vec::as_slice),
        Some(&expected[7..14])
    );
}

#[tokio::test]
async fn a_stalled_response_is_the_normal_answer_sent_late() {
    let (h, token) = start().await;
    let normal = normal_text(&h, DATES, &token).await;
    h.sim.set_faults(Some(always("stall")));
    let started = Instant::now();
    let text = normal_text(&h, DATES, &token).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(text, normal);
    assert_eq!(injected(&h, "stall"), 1);
}
