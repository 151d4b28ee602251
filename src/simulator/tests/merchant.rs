//! `POST /accesstoken/get` as the Access Token API spec describes it, and what a merchant's
//! token may read and must send.

use reqwest::StatusCode;
use serde_json::Value;

use super::http::{Harness, SYSTEM_HEADERS};
use crate::simulator::SimulatorConfig;

/// A merchant token request with these headers (None leaves one out).
async fn merchant_token(
    h: &Harness,
    id: Option<&str>,
    secret: Option<&str>,
    key: Option<&str>,
    msn: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = h.http.post(format!("{}/accesstoken/get", h.base));
    for (name, value) in [
        ("client_id", id),
        ("client_secret", secret),
        ("Ocp-Apim-Subscription-Key", key),
        ("Merchant-Serial-Number", msn),
    ] {
        if let Some(v) = value {
            req = req.header(name, v);
        }
    }
    for (k, v) in SYSTEM_HEADERS {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("token request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn merchant_tokens_follow_the_spec_and_reach_only_the_msns_ledgers_with_the_key() {
    let h = Harness::start(SimulatorConfig::default()).await;
    let (msn, ledgers) = h
        .sim
        .merchant_serial_numbers()
        .into_iter()
        .find(|(_, l)| !l.is_empty())
        .expect("an MSN");
    h.sim.add_merchant("shop", "shh", &msn, &["k1", "k2"]);

    // Errors: no subscription key, a wrong one, a wrong secret, accounting keys, no client_id.
    let m = Some(msn.as_str());
    let (s, body) = merchant_token(&h, Some("shop"), Some("shh"), None, m).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("missing subscription key"));
    let (s, body) = merchant_token(&h, Some("shop"), Some("shh"), Some("nope"), m).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("invalid subscription key"));
    let (s, _) = merchant_token(&h, Some("shop"), Some("wrong"), Some("k1"), m).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = merchant_token(&h, Some("acme"), Some("s3cret"), Some("k1"), m).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "accounting keys are not merchant keys"
    );
    let (s, _) = merchant_token(&h, None, Some("shh"), Some("k1"), m).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Merchant keys are unknown to the MIAMI endpoint.
    let a = h
        .token_request("shop", "shh", "grant_type=client_credentials")
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Success: every field of AuthorizationTokenResponse, each a string.
    let (s, body) = merchant_token(&h, Some("shop"), Some("shh"), Some("k2"), m).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for field in [
        "token_type",
        "expires_in",
        "ext_expires_in",
        "expires_on",
        "not_before",
        "resource",
        "access_token",
    ] {
        assert!(body[field].is_string(), "{field}: {body}");
    }
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap().to_owned();

    // The listing holds exactly the MSN's ledgers, with the key and MSN sent.
    let list = |key: Option<&'static str>, msn: Option<String>| {
        let mut req = h
            .http
            .get(format!("{}/settlement/v1/ledgers", h.base))
            .bearer_auth(&token);
        for (k, v) in SYSTEM_HEADERS {
            req = req.header(k, v);
        }
        if let Some(k) = key {
            req = req.header("Ocp-Apim-Subscription-Key", k);
        }
        if let Some(m) = msn {
            req = req.header("Merchant-Serial-Number", m);
        }
        req.send()
    };
    let resp = list(Some("k1"), Some(msn.clone())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let listed: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ledgerId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ledgers);
    // Another ledger's feed is "No such ledgerId" to this token.
    let other = h
        .sim
        .ledger_ids()
        .into_iter()
        .find(|l| !ledgers.contains(l))
        .unwrap();
    let stats_before = h.sim.stats();
    assert_eq!(
        stats_before.merchant_headers_missing, 1,
        "the token call without the key"
    );
    let a = {
        let mut req = h
            .http
            .get(format!("{}/report/v2/ledgers/{other}/funds/feed", h.base))
            .bearer_auth(&token)
            .header("Ocp-Apim-Subscription-Key", "k1")
            .header("Merchant-Serial-Number", &msn);
        for (k, v) in SYSTEM_HEADERS {
            req = req.header(k, v);
        }
        req.send().await.unwrap()
    };
    assert_eq!(a.status(), StatusCode::NOT_FOUND);

    // Without the key: refused and counted; without the MSN: served but counted; a
    // regenerated key: refused.
    let resp = list(None, Some(msn.clone())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = list(Some("k1"), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    h.sim.regenerate_subscription_key("shop", "k1");
    let resp = list(Some("k1"), Some(msn.clone())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let stats = h.sim.stats();
    assert_eq!(stats.merchant_headers_missing, 3);
    assert_eq!(stats.merchant_token_requests, 6);
    assert_eq!(stats.subscription_key_refused, 4, "{stats:?}");
    assert_eq!(
        stats.subscription_key_sent, 0,
        "the merchant's keys are expected"
    );
}
