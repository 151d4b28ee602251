//! Tests that run the simulator's HTTP server on 127.0.0.1:0 and call it with reqwest: the
//! shared harness, then tokens, the ledger list, the admin routes and shutdown.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::simulator::{Simulator, SimulatorConfig};

pub(super) const SYSTEM_HEADERS: [(&str, &str); 4] = [
    ("Vipps-System-Name", "vipps-ledger-sync"),
    ("Vipps-System-Version", "0.1.0"),
    ("Vipps-System-Plugin-Name", "vipps-ledger-sync"),
    ("Vipps-System-Plugin-Version", "0.1.0"),
];

/// A running simulator with one partner (`acme`) granted every ledger.
pub(super) struct Harness {
    pub sim: Arc<Simulator>,
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP answer: status, content type, `Vipps-Feed-Page-Size`, JSON body.
pub(super) struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub page_size: Option<String>,
    pub body: Value,
}

async fn answer(resp: reqwest::Response) -> Answer {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let page_size = header("vipps-feed-page-size");
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        page_size,
        body,
    }
}

impl Harness {
    pub(super) async fn start(config: SimulatorConfig) -> Harness {
        let sim = Simulator::new(config);
        sim.add_partner_with_all_ledgers("acme", "s3cret");
        let shutdown = CancellationToken::new();
        let addr = sim
            .clone()
            .spawn(([127, 0, 0, 1], 0).into(), shutdown.clone())
            .await
            .expect("bind 127.0.0.1:0");
        Harness {
            sim,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    pub(super) async fn token_request(&self, id: &str, secret: &str, body: &str) -> Answer {
        let mut req = self
            .http
            .post(format!("{}/miami/v1/token", self.base))
            .basic_auth(id, Some(secret))
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body.to_string());
        for (k, v) in SYSTEM_HEADERS {
            req = req.header(k, v);
        }
        answer(req.send().await.expect("token request")).await
    }

    pub(super) async fn token(&self) -> String {
        let a = self
            .token_request("acme", "s3cret", "grant_type=client_credentials")
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub(super) async fn get(&self, path_and_query: &str, token: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path_and_query}", self.base));
        for (k, v) in SYSTEM_HEADERS {
            req = req.header(k, v);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.expect("GET")).await
    }
}

#[tokio::test]
async fn the_token_endpoint_issues_bearer_tokens_and_refuses_bad_clients() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let ok = h
        .token_request("acme", "s3cret", "grant_type=client_credentials")
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert_eq!(ok.body["expires_in"], 900);
    assert!(ok.body["access_token"]
        .as_str()
        .is_some_and(|t| t.len() > 20));
    let grant = "grant_type=client_credentials";
    for (id, secret, body, status) in [
        ("acme", "wrong", grant, StatusCode::UNAUTHORIZED),
        ("nobody", "s3cret", grant, StatusCode::UNAUTHORIZED),
        ("acme", "s3cret", "", StatusCode::BAD_REQUEST),
        (
            "acme",
            "s3cret",
            "grant_type=password",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let a = h.token_request(id, secret, body).await;
        assert_eq!(a.status, status, "{id}/{secret}/{body}");
        assert_eq!(a.body["error"], "invalid_client");
    }
    let with_key = h
        .http
        .post(format!("{}/miami/v1/token", h.base))
        .basic_auth("acme", Some("s3cret"))
        .header("Ocp-Apim-Subscription-Key", "k")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("send");
    assert_eq!(with_key.status(), StatusCode::BAD_REQUEST);
    let stats = h.sim.stats();
    assert_eq!((stats.token_requests, stats.token_failures), (6, 5));
    assert_eq!(stats.subscription_key_sent, 1);
    assert_eq!(stats.missing_system_headers, 1);
}

#[tokio::test]
async fn expires_in_can_be_sent_as_a_string() {
    let h = Harness::start(SimulatorConfig {
        expires_in_as_string: true,
        ..SimulatorConfig::default()
    })
    .await;
    let a = h
        .token_request("acme", "s3cret", "grant_type=client_credentials")
        .await;
    assert_eq!(a.body["expires_in"], "900");
}

#[tokio::test]
async fn the_ledger_list_pages_by_five_and_ends_with_an_empty_cursor() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let token = h.token().await;
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/settlement/v1/ledgers".to_string();
    loop {
        let a = h.get(&path, Some(&token)).await;
        assert_eq!(a.status, StatusCode::OK);
        let page = a.body["items"].as_array().cloned().unwrap_or_default();
        sizes.push(page.len());
        items.extend(page);
        match a.body["cursor"].as_str() {
            Some("") => break,
            Some(c) => path = format!("/settlement/v1/ledgers?cursor={c}"),
            None => panic!("no cursor in {}", a.body),
        }
    }
    assert_eq!(sizes, [5, 5, 2]);
    let expected: Vec<Value> = h
        .sim
        .ledger_ids()
        .iter()
        .filter_map(|id| h.sim.ledger_json(id))
        .collect();
    assert_eq!(items, expected);

    h.sim.add_partner("small", "pw");
    h.sim.grant("small", "100004");
    h.sim.grant("small", "100002");
    let a = h
        .token_request("small", "pw", "grant_type=client_credentials")
        .await;
    let small = a.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let a = h.get("/settlement/v1/ledgers", Some(&small)).await;
    let ids: Vec<&str> = a.body["items"]
        .as_array()
        .map(|v| v.iter().filter_map(|l| l["ledgerId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["100002", "100004"]);
    assert_eq!(a.body["cursor"], "");

    let handle =
        h.sim.ledger_json("100005").expect("ledger")["settlesForRecipientHandles"][1].clone();
    let handle = handle.as_str().expect("second handle of ledger 100005");
    let a = h
        .get(
            &format!("/settlement/v1/ledgers?settlesForRecipientHandles={handle}"),
            Some(&token),
        )
        .await;
    assert_eq!(a.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(a.body["items"][0]["ledgerId"], "100005");

    h.sim.fail_ledger_list_page(Some(1));
    let a = h.get("/settlement/v1/ledgers", Some(&token)).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.body["errorCode"], 10001);
}

#[tokio::test]
async fn admin_routes_grow_grant_revoke_and_report() {
    let h = Harness::start(SimulatorConfig::default()).await;
    h.sim.add_partner("beta", "pw");
    let post = |path: &str| h.http.post(format!("{}{path}", h.base)).send();
    let r = post("/_sim/grant?client_id=beta&ledger_id=100007")
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::OK);
    let r = post("/_sim/grant?client_id=beta&ledger_id=424242")
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let partners = h.get("/_sim/partners", None).await.body;
    assert_eq!(partners["partners"][1]["clientId"], "beta");
    assert_eq!(
        partners["partners"][1]["ledgers"],
        serde_json::json!(["100007"])
    );
    let r = post("/_sim/revoke?client_id=beta&ledger_id=100007")
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::OK);
    let before = h.sim.expected_entries("100007", "funds").len();
    let r = post("/_sim/grow?days=2").await.expect("grow");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(h.sim.expected_entries("100007", "funds").len() > before);
    let bare = h
        .http
        .get(format!("{}/settlement/v1/ledgers", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let stats = h.get("/_sim/stats", None).await.body;
    assert_eq!(stats["ledger_list_requests"], 1);
    assert_eq!(stats["missing_system_headers"], 1);
    assert_eq!(stats["unauthorized"], 1);
    let gone = h.get("/report/v1/ledgertransactions", None).await;
    assert_eq!(gone.status, StatusCode::GONE);
}

#[tokio::test]
async fn the_server_stops_when_shutdown_is_cancelled() {
    let h = Harness::start(SimulatorConfig::default()).await;
    assert_eq!(h.get("/_sim/stats", None).await.status, StatusCode::OK);
    h.shutdown.cancel();
    let mut stopped = false;
    for _ in 0..50 {
        let fresh = reqwest::Client::new();
        if fresh
            .get(format!("{}/_sim/stats", h.base))
            .send()
            .await
            .is_err()
        {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "server still answering after shutdown");
}
