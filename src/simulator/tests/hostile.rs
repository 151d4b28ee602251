//! HTTP tests of the hostile modes as a whole: names and settings (admin route, flags,
//! scope, counters), the token and the 429; plus helpers for `hostile_list.rs` and
//! `hostile_data.rs`.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::faults::send;
use super::http::{Harness, SYSTEM_HEADERS};
use crate::simulator::{Hostile, HostileConfig, SimulatorConfig, RETRY_AFTER_YEAR_9999};

pub(super) const LIST: &str = "/settlement/v1/ledgers";

/// A simulator with 7-item pages and a token.
pub(super) async fn start() -> (Harness, String) {
    let h = Harness::start(SimulatorConfig::default()).await;
    h.sim.set_feed_page_size(7);
    let token = h.token().await;
    (h, token)
}

pub(super) fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(super) async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// The hostile answers sent in `mode`, by the simulator's counter.
pub(super) fn sent(h: &Harness, mode: &str) -> u64 {
    h.sim.stats().hostile_sent.get(mode).copied().unwrap_or(0)
}

/// `mode` by name with its defaults.
pub(super) fn mode(name: &str) -> Hostile {
    name.parse().expect("a known mode")
}

async fn admin(h: &Harness, body: &str) -> (StatusCode, Value) {
    let r = h
        .http
        .post(format!("{}/_sim/hostile", h.base))
        .body(body.to_string())
        .send()
        .await
        .expect("POST /_sim/hostile");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every ledger of the list, walking its pages (at most 20).
pub(super) async fn listed_ids(h: &Harness, token: &str) -> Vec<String> {
    let (mut ids, mut path) = (Vec::new(), LIST.to_string());
    for _ in 0..20 {
        let body = json_of(send(h, &path, token).await).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        ids.extend(
            items
                .iter()
                .filter_map(|l| l["ledgerId"].as_str().map(str::to_string)),
        );
        match body["cursor"].as_str() {
            Some("") | None => return ids,
            Some(c) => path = format!("{LIST}?cursor={c}"),
        }
    }
    panic!("the ledger list did not end");
}

/// The status line and body of a GET written straight onto the socket, so the path reaches
/// the server unchanged (no URL library normalises `%2E%2E` or limits its length); errors
/// writing or reading are the server refusing to read on, and leave what came so far.
pub(super) async fn raw_get(h: &Harness, path: &str, token: &str) -> (Option<String>, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = h.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let _ = socket.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let read = socket.read_to_end(&mut answer);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().map(str::to_string), body.to_string())
}

#[test]
fn every_mode_has_a_stable_name_that_parses_back_with_its_defaults() {
    let all = Hostile::all();
    assert_eq!(all.len(), Hostile::NAMES.len());
    for (m, name) in all.iter().zip(Hostile::NAMES) {
        assert_eq!((m.name(), m.to_string()), (name, name.to_string()));
        assert_eq!(name.parse::<Hostile>().as_ref(), Ok(m));
        let config = HostileConfig::from_json(&json!({ "mode": name })).expect(name);
        assert_eq!(config, HostileConfig::from(m.clone()));
        assert_eq!(HostileConfig::from_json(&config.to_json()), Ok(config));
    }
    let names: BTreeSet<_> = Hostile::NAMES.iter().collect();
    assert_eq!(names.len(), 11);
    let err = "huge".parse::<Hostile>().expect_err("unknown");
    assert!(
        err.contains("huge-page") && err.contains("schema-random"),
        "{err}"
    );
    assert_eq!(
        mode("huge-page"),
        Hostile::HugePage {
            megabytes: 300,
            chunked: false
        }
    );
    assert_eq!(mode("huge-cursor"), Hostile::HugeCursor { bytes: 5 << 20 });
}

#[tokio::test]
async fn the_admin_route_sets_answers_and_clears_the_mode_and_refuses_mistakes() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let body =
        r#"{"mode": "huge-page", "only_ledger": "100002", "megabytes": 20, "chunked": true}"#;
    let (status, answer) = admin(&h, body).await;
    assert_eq!(status, StatusCode::OK);
    let want =
        json!({ "mode": "huge-page", "only_ledger": "100002", "megabytes": 20, "chunked": true });
    assert_eq!(answer["hostile"], want);
    assert_eq!(answer["modes"], json!(Hostile::NAMES));
    let set = HostileConfig::on_ledger(
        Hostile::HugePage {
            megabytes: 20,
            chunked: true,
        },
        "100002",
    );
    assert_eq!(h.sim.hostile(), Some(set.clone()));
    assert_eq!(h.get("/_sim/hostile", None).await.body["hostile"], want);
    for (bad, says) in [
        (r#"{"mode": "huge"}"#, "one of: huge-token-lifetime"),
        (r#"{"megabytes": 3}"#, "\"mode\" is required"),
        (
            r#"{"mode": "huge-page", "period": 3}"#,
            "no parameter \"period\"",
        ),
        (r#"{"mode": "huge-page", "megabytes": "3"}"#, "whole number"),
        (r#"{"mode": "huge-page", "megabytes": 0}"#, "from 1 to"),
        (
            r#"{"mode": "ledger-cursor-cycle", "period": 1}"#,
            "from 2 to",
        ),
        (
            r#"{"mode": "redirect", "status": 304}"#,
            "301, 302, 303, 307, 308",
        ),
        (
            r#"{"mode": "redirect", "location": "/relative"}"#,
            "absolute URL",
        ),
        (
            r#"{"mode": "huge-retry-after", "retry_after": "a\nb"}"#,
            "header value",
        ),
        (
            r#"{"mode": "hostile-ledger-ids", "only_ledger": "100001"}"#,
            "only_ledger",
        ),
        (
            r#"{"mode": "redirect", "only_ledger": "100001"}"#,
            "\"data\": true",
        ),
        (r#"["huge-page"]"#, "JSON object"),
        ("{", "bad hostile mode"),
    ] {
        let (status, answer) = admin(&h, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let msg = answer["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{bad}: {msg}");
        assert_eq!(h.sim.hostile(), Some(set.clone()), "{bad} changed the mode");
    }
    let (status, answer) = admin(&h, "null").await;
    assert_eq!((status, &answer["hostile"]), (StatusCode::OK, &Value::Null));
    assert_eq!(h.sim.hostile(), None);
    admin(&h, r#"{"mode": "schema-random"}"#).await;
    let (_, answer) = admin(&h, "").await;
    assert_eq!(answer["hostile"], Value::Null);
    let stats = h.get("/_sim/stats", None).await.body;
    assert_eq!(stats["hostile_sent"], json!({}));
}

#[test]
fn simulate_flags_build_the_same_configuration_as_the_admin_body() {
    let params = ["status=308", "location=http://127.0.0.1:8401", "data=true"].map(String::from);
    let config = HostileConfig::from_args("redirect", Some("100003"), &params).expect("valid");
    let want = HostileConfig::on_ledger(
        Hostile::Redirect {
            status: 308,
            location: "http://127.0.0.1:8401".into(),
            data: true,
        },
        "100003",
    );
    assert_eq!(config, want);
    let date = [format!("retry_after={RETRY_AFTER_YEAR_9999}")];
    let config = HostileConfig::from_args("huge-retry-after", None, &date).expect("valid");
    assert_eq!(
        config.mode,
        Hostile::HugeRetryAfter {
            retry_after: RETRY_AFTER_YEAR_9999.into()
        }
    );
    let numeric = ["retry_after=18446744073709551615".to_string()];
    let config = HostileConfig::from_args("huge-retry-after", None, &numeric).expect("valid");
    assert_eq!(config.to_json()["retry_after"], "18446744073709551615");
    for bad in [
        &["megabytes"][..],
        &["megabytes=x"],
        &["megabytes=2", "megabytes=3"],
    ] {
        let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        assert!(
            HostileConfig::from_args("huge-page", None, &bad).is_err(),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn huge_token_lifetime_sends_u64_max_as_a_number_or_a_string_and_the_token_still_works() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let raw = |h: &Harness| {
        let mut req = h
            .http
            .post(format!("{}/miami/v1/token", h.base))
            .basic_auth("acme", Some("s3cret"))
            .form(&[("grant_type", "client_credentials")]);
        for (k, v) in SYSTEM_HEADERS {
            req = req.header(k, v);
        }
        req.send()
    };
    for (as_string, want) in [
        (false, r#""expires_in":18446744073709551615"#),
        (true, r#""expires_in":"18446744073709551615""#),
    ] {
        h.sim
            .set_hostile(Some(Hostile::HugeTokenLifetime { as_string }.into()));
        let r = raw(&h).await.expect("token");
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.expect("body");
        assert!(text.contains(want), "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        let token = body["access_token"].as_str().expect("access_token");
        assert_eq!(send(&h, LIST, token).await.status(), StatusCode::OK);
    }
    assert_eq!(sent(&h, "huge-token-lifetime"), 2);
    h.sim.set_hostile(None);
    let body: Value = raw(&h).await.expect("token").json().await.expect("JSON");
    assert_eq!(body["expires_in"], 900);
}

#[tokio::test]
async fn huge_retry_after_answers_429_with_the_value_verbatim_on_every_data_endpoint() {
    let (h, token) = start().await;
    let paths = [
        LIST,
        "/report/v2/ledgers/100001/funds/feed",
        "/report/v2/ledgers/100001/fees/dates/2026-01-07",
    ];
    for value in ["999999999", "18446744073709551615", RETRY_AFTER_YEAR_9999] {
        let m = Hostile::HugeRetryAfter {
            retry_after: value.into(),
        };
        h.sim.set_hostile(Some(m.into()));
        for path in paths {
            let r = send(&h, path, &token).await;
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
            assert_eq!(header(&r, "retry-after").as_deref(), Some(value));
            let body = json_of(r).await;
            assert_eq!(body["statusCode"], 429);
            assert!(body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Rate limit")));
        }
    }
    assert_eq!(sent(&h, "huge-retry-after"), 9);
    // Nobody is expected to wait that long: calling again at once is no violation.
    assert_eq!(h.sim.stats().retry_after_violations, 0);
    assert_eq!(h.sim.stats().total_faults(), 0);
    // Without a valid token it is still 401.
    let r = send(&h, LIST, "nonsense").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn only_ledger_confines_a_mode_to_that_ledgers_feed_and_dates_and_the_rest_stays_whole() {
    let (h, token) = start().await;
    h.sim.set_hostile(Some(HostileConfig::on_ledger(
        mode("huge-retry-after"),
        "100002",
    )));
    for path in [
        "/report/v2/ledgers/100002/funds/feed",
        "/report/v2/ledgers/100002/fees/dates/2026-01-06",
    ] {
        assert_eq!(
            send(&h, path, &token).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let ids = listed_ids(&h, &token).await;
    assert_eq!(ids, h.sim.ledger_ids());
    for id in ids.iter().filter(|id| *id != "100002") {
        for topic in ["funds", "fees"] {
            let base = format!("/report/v2/ledgers/{id}/{topic}/feed");
            let (mut path, mut got) = (base.clone(), Vec::new());
            loop {
                let r = send(&h, &path, &token).await;
                assert_eq!(r.status(), StatusCode::OK, "{path}");
                let body = json_of(r).await;
                got.extend(body["items"].as_array().cloned().unwrap_or_default());
                path = format!("{base}?cursor={}", body["cursor"].as_str().expect("cursor"));
                if body["tryLater"] == true {
                    break;
                }
            }
            assert_eq!(got, h.sim.expected_entries(id, topic), "{id}/{topic}");
        }
    }
    assert_eq!(sent(&h, "huge-retry-after"), 2);
    h.sim.set_hostile(None);
    let r = send(&h, "/report/v2/ledgers/100002/funds/feed", &token).await;
    assert_eq!(r.status(), StatusCode::OK);
}
