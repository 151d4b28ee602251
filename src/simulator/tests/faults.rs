//! Tests of fault injection as a whole: reproducible decisions, scope, `Retry-After`
//! violations, calls in flight, expired tokens and the admin routes; plus shared helpers for
//! `faults_wire.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::http::{Harness, SYSTEM_HEADERS};
use crate::simulator::faults::Endpoint;
use crate::simulator::{FaultConfig, SimulatorConfig};

/// A configuration where the named kind hits every request in scope.
pub(super) fn always(kind: &str) -> FaultConfig {
    let mut c = FaultConfig {
        seed: 1,
        retry_after: Duration::from_secs(1),
        stall: Duration::from_millis(200),
        ..FaultConfig::default()
    };
    let rate = match kind {
        "429" => &mut c.rate_429,
        "500" => &mut c.rate_500,
        "502" => &mut c.rate_502,
        "truncated" => &mut c.rate_truncated,
        "invalid_json" => &mut c.rate_invalid_json,
        "html" => &mut c.rate_html,
        "wrong_types" => &mut c.rate_wrong_types,
        "missing_cursor" => &mut c.rate_missing_cursor,
        "invalid_entry" => &mut c.rate_invalid_entry,
        "overlap" => &mut c.rate_overlap,
        "no_progress" => &mut c.rate_no_progress,
        "stall" => &mut c.rate_stall,
        other => panic!("unknown fault kind {other}"),
    };
    *rate = 1.0;
    c
}

/// A GET with the system headers and a bearer token, answered raw.
pub(super) async fn send(h: &Harness, path: &str, token: &str) -> reqwest::Response {
    let mut req = h.http.get(format!("{}{path}", h.base)).bearer_auth(token);
    for (k, v) in SYSTEM_HEADERS {
        req = req.header(k, v);
    }
    req.send().await.expect("GET")
}

/// Status, content type and body text (or `<broken: ...>`) of an answer.
pub(super) async fn outcome(resp: reqwest::Response) -> String {
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = resp.status();
    let body = match resp.text().await {
        Ok(t) => t,
        Err(e) => format!("<broken: {e}>"),
    };
    format!("{status} {ct} {body}")
}

fn faults_injected(h: &Harness) -> BTreeMap<String, u64> {
    h.sim.stats().faults_injected
}

/// Every kind but the stall at a small rate, so most requests are served normally.
fn mixed(seed: u64) -> FaultConfig {
    let r = 0.06;
    FaultConfig {
        seed,
        retry_after: Duration::from_secs(1),
        rate_429: r,
        rate_500: r,
        rate_502: r,
        rate_truncated: r,
        rate_invalid_json: r,
        rate_html: r,
        rate_wrong_types: r,
        rate_missing_cursor: r,
        rate_invalid_entry: r,
        rate_overlap: r,
        rate_no_progress: r,
        ..FaultConfig::default()
    }
}

/// Distinct request lines over all three data endpoints.
fn request_lines() -> Vec<String> {
    let mut lines = vec!["/settlement/v1/ledgers".to_string()];
    for l in 100001..=100012 {
        for topic in ["funds", "fees"] {
            lines.push(format!("/report/v2/ledgers/{l}/{topic}/feed"));
            lines.push(format!("/report/v2/ledgers/{l}/{topic}/dates/2026-01-07"));
        }
    }
    lines
}

/// The answers to `request_lines()` sent in order, each `repeat` times, under `mixed(seed)`.
async fn sequential_run(seed: u64, repeat: usize) -> (Vec<String>, BTreeMap<String, u64>) {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    h.sim.set_faults(Some(mixed(seed)));
    let mut seen = Vec::new();
    for line in request_lines() {
        for _ in 0..repeat {
            seen.push(outcome(send(&h, &line, &token).await).await);
        }
    }
    (seen, faults_injected(&h))
}

#[tokio::test]
async fn the_same_seed_and_requests_give_the_same_faults_and_another_seed_does_not() {
    let (a, fa) = sequential_run(9, 2).await;
    let (b, fb) = sequential_run(9, 2).await;
    assert_eq!(a, b);
    assert_eq!(fa, fb);
    assert!(fa.values().sum::<u64>() > 5, "{fa:?}");
    let (c, _) = sequential_run(10, 2).await;
    assert_ne!(a, c);
}

#[tokio::test]
async fn concurrent_arrival_order_does_not_change_which_request_gets_which_fault() {
    let (sequential, _) = sequential_run(11, 1).await;
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    h.sim.set_faults(Some(mixed(11)));
    let tasks: Vec<_> = request_lines()
        .into_iter()
        .rev()
        .map(|line| {
            let (http, url, token) = (h.http.clone(), format!("{}{line}", h.base), token.clone());
            tokio::spawn(async move {
                let mut req = http.get(url).bearer_auth(token);
                for (k, v) in SYSTEM_HEADERS {
                    req = req.header(k, v);
                }
                outcome(req.send().await.expect("GET")).await
            })
        })
        .collect();
    let mut concurrent = Vec::new();
    for t in tasks {
        concurrent.push(t.await.expect("task"));
    }
    concurrent.reverse();
    assert_eq!(concurrent, sequential);
}

#[test]
fn a_retry_of_the_same_request_gets_a_fresh_draw_whatever_else_happens_between() {
    let sim = super::sim();
    let config = FaultConfig {
        seed: 5,
        rate_500: 0.5,
        ..FaultConfig::default()
    };
    let (a, b) = ("GET /a", "GET /b");
    let draws = |order: &[&'static str]| {
        sim.set_faults(Some(config.clone()));
        let mut per_line: BTreeMap<&'static str, Vec<bool>> = BTreeMap::new();
        for line in order {
            let f = sim.lock().draw_fault(Endpoint::Feed, Some("100001"), line);
            per_line.entry(*line).or_default().push(f.is_some());
        }
        per_line
    };
    let blocks: Vec<&'static str> = [[a; 8], [b; 8]].concat();
    let interleaved: Vec<&'static str> = (0..16).map(|i| if i % 3 == 0 { b } else { a }).collect();
    let one = draws(&blocks);
    // Rebalance: the interleaving above has 6 b's and 10 a's; compare the common prefix.
    let two = draws(&interleaved);
    for line in [a, b] {
        let (x, y) = (&one[line], &two[line]);
        let common = x.len().min(y.len());
        assert_eq!(x[..common], y[..common], "{line}");
    }
    let a_draws = &two[a];
    assert!(
        a_draws.contains(&true) && a_draws.contains(&false),
        "{a_draws:?}"
    );
}

#[tokio::test]
async fn only_ledger_limits_faults_to_that_ledgers_feed_and_dates() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    h.sim.set_faults(Some(FaultConfig {
        only_ledger: Some("100002".into()),
        ..always("500")
    }));
    for (path, status) in [
        ("/settlement/v1/ledgers", StatusCode::OK),
        ("/report/v2/ledgers/100001/funds/feed", StatusCode::OK),
        (
            "/report/v2/ledgers/100001/fees/dates/2026-01-06",
            StatusCode::OK,
        ),
        (
            "/report/v2/ledgers/100002/funds/feed",
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            "/report/v2/ledgers/100002/fees/dates/2026-01-06",
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ] {
        assert_eq!(send(&h, path, &token).await.status(), status, "{path}");
    }
    assert_eq!(
        faults_injected(&h),
        BTreeMap::from([("500".to_string(), 2)])
    );
}

#[tokio::test]
async fn refusals_come_before_faults_and_the_token_endpoint_never_gets_one() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    h.sim.set_faults(Some(always("500")));
    h.sim.revoke("acme", "100003");
    for (path, tok, status) in [
        (
            "/report/v2/ledgers/100001/funds/feed",
            "nope",
            StatusCode::UNAUTHORIZED,
        ),
        ("/settlement/v1/ledgers", "nope", StatusCode::UNAUTHORIZED),
        (
            "/report/v2/ledgers/100003/funds/feed",
            &token,
            StatusCode::NOT_FOUND,
        ),
        (
            "/report/v2/ledgers/100001/funds/feed?cursor=x",
            &token,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/report/v2/ledgers/100001/funds/dates/2026-13-01",
            &token,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(send(&h, path, tok).await.status(), status, "{path}");
    }
    h.token().await;
    assert!(faults_injected(&h).is_empty());
    let a = send(&h, "/report/v2/ledgers/100001/funds/feed", &token).await;
    assert_eq!(a.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_call_before_retry_after_has_run_out_is_a_violation_and_one_after_is_not() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    h.sim.set_faults(Some(FaultConfig {
        only_ledger: Some("100001".into()),
        ..always("429")
    }));
    let limited = send(&h, "/report/v2/ledgers/100001/funds/feed", &token).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(h.sim.stats().retry_after_violations, 0);
    // Too early (after the grace for calls already on their way): a data call on another
    // ledger (no fault of its own) and a token call.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let other = send(&h, "/report/v2/ledgers/100002/funds/feed", &token).await;
    assert_eq!(other.status(), StatusCode::OK);
    h.token().await;
    assert_eq!(h.sim.stats().retry_after_violations, 2);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = send(&h, "/report/v2/ledgers/100002/funds/feed", &token).await;
    assert_eq!(later.status(), StatusCode::OK);
    let stats = h.sim.stats();
    assert_eq!(stats.retry_after_violations, 2);
    assert_eq!(stats.requests_total, 5);
    assert_eq!(stats.to_json()["retry_after_violations"], 2);
}

#[tokio::test]
async fn expired_tokens_get_401_and_a_fresh_token_works() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let old = h.token().await;
    let path = "/settlement/v1/ledgers";
    assert_eq!(send(&h, path, &old).await.status(), StatusCode::OK);
    h.sim.expire_tokens();
    assert_eq!(
        send(&h, path, &old).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = h.token().await;
    assert_eq!(send(&h, path, &fresh).await.status(), StatusCode::OK);
    let stats = h.sim.stats();
    assert_eq!((stats.unauthorized, stats.token_requests), (1, 2));
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_stalled_calls_until_they_answer() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    h.sim.set_faults(Some(always("stall")));
    let started = Instant::now();
    let tasks: Vec<_> = (1..=6)
        .map(|i| {
            let url = format!("{}/report/v2/ledgers/10000{i}/funds/feed", h.base);
            let req = h.http.get(url).bearer_auth(&token);
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = h.sim.stats();
    assert_eq!(stats.max_in_flight, 6);
    assert_eq!(stats.faults_injected.get("stall"), Some(&6));
    assert_eq!(stats.to_json()["max_in_flight"], 6);
    h.sim.reset_stats();
    assert_eq!(
        h.sim.stats().max_in_flight,
        6,
        "reset keeps the calls in flight"
    );
    for t in tasks {
        assert_eq!(t.await.expect("task").ok(), Some(StatusCode::OK));
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(h.sim.stats().max_in_flight, 6);
    h.sim.reset_stats();
    assert_eq!(h.sim.stats().max_in_flight, 0);
}

async fn admin_post(h: &Harness, path: &str, body: &str) -> (StatusCode, Value) {
    let resp = h
        .http
        .post(format!("{}{path}", h.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_routes_set_and_clear_faults_and_expire_tokens() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    let feed = "/report/v2/ledgers/100001/funds/feed";
    let (status, body) = admin_post(&h, "/_sim/faults", r#"{"seed": 3, "rate_502": 1}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["faults"]["rate_502"], 1.0);
    assert_eq!(body["faults"]["stall_ms"], 0);
    assert_eq!(
        send(&h, feed, &token).await.status(),
        StatusCode::BAD_GATEWAY
    );
    let (status, body) = admin_post(&h, "/_sim/faults", "null").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "faults": null })));
    assert_eq!(send(&h, feed, &token).await.status(), StatusCode::OK);
    let (status, body) = admin_post(&h, "/_sim/faults", r#"{"rate_5OO": 1}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("rate_5OO"));
    let (status, _) = admin_post(&h, "/_sim/expire-tokens", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        send(&h, feed, &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let stats: Value = h
        .http
        .get(format!("{}/_sim/stats", h.base))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["faults_injected"], json!({ "502": 1 }));
    assert_eq!(stats["total_faults"], 1);
    assert_eq!(stats["requests_total"], 4);
}
