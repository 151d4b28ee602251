//! Merchant keys in the simulator: the standard token endpoint `POST /accesstoken/get` as the
//! Access Token API spec describes it (`shared/specs/access-token-openapi.yaml`), and the
//! rules for calls made with a merchant's token.
//!
//! This module owns what differs from accounting keys: a merchant logs in with the headers
//! `client_id`, `client_secret` and `Ocp-Apim-Subscription-Key` (plus `Merchant-Serial-Number`
//! and the `Vipps-System-*` headers) and an empty body, and gets an `AuthorizationTokenResponse`
//! whose fields are all strings; its token lists only the ledgers of its own MSN (those with
//! a sales unit `api:<MSN>`); every call it makes must carry one of its subscription keys
//! (refused with 401 otherwise, as API Management does) and should carry its MSN. Calls
//! lacking either header, or naming another MSN, are counted (`SimStats::merchant_headers_missing`). A subscription
//! key can be regenerated ([`super::Simulator::regenerate_subscription_key`]), after which it
//! is refused like a wrong one: the behaviour named `primary-key-regenerated` in `simulate`.

use std::sync::Arc;

use axum::extract::State as AxState;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::faults::InFlight;
use super::http::header;
use super::state::{ApiError, State};
use super::Simulator;

/// The subscription key header (API Management's).
pub(crate) const SUBSCRIPTION_KEY: &str = "ocp-apim-subscription-key";
/// The sales unit's serial number header.
pub(crate) const MSN: &str = "merchant-serial-number";

/// What makes a set of keys a merchant's.
#[derive(Clone, Debug)]
pub(crate) struct MerchantAccess {
    /// The sales unit's Merchant Serial Number.
    pub msn: String,
    /// The subscription keys API Management accepts now (primary and secondary).
    pub subscription_keys: Vec<String>,
}

/// Why `/accesstoken/get` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MerchantTokenError {
    /// 401 from API Management: no `Ocp-Apim-Subscription-Key`.
    MissingSubscriptionKey,
    /// 401 from API Management: a key that is not one of the merchant's (wrong or regenerated).
    InvalidSubscriptionKey,
    /// 400: `client_id` or `client_secret` missing.
    MissingCredentials,
    /// 401: unknown client, wrong secret, or accounting keys.
    BadCredentials,
}

/// API Management's answer to a missing or wrong subscription key.
fn subscription_refused(missing: bool) -> Response {
    let message = if missing {
        "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."
    } else {
        "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
    };
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "statusCode": 401, "message": message })),
    )
        .into_response()
}

/// Why [`State::authorize`] refused a data call; answered by [`Refused::response`].
#[derive(Clone, Debug)]
pub(crate) enum Refused {
    /// A bad or missing bearer token.
    Api(ApiError),
    /// A merchant's call without (`missing`) or with a wrong subscription key.
    SubscriptionKey { missing: bool },
}

impl Refused {
    pub(crate) fn response(self) -> Response {
        match self {
            Refused::Api(e) => super::http::api_error(e),
            Refused::SubscriptionKey { missing } => subscription_refused(missing),
        }
    }
}

impl State {
    /// Checks a merchant's token request and issues a token.
    pub(crate) fn issue_merchant_token(
        &mut self,
        headers: &HeaderMap,
    ) -> Result<super::state::IssuedToken, MerchantTokenError> {
        let key = header(headers, SUBSCRIPTION_KEY);
        let (Some(id), Some(secret)) = (
            header(headers, "client_id"),
            header(headers, "client_secret"),
        ) else {
            return Err(key.map_or(MerchantTokenError::MissingSubscriptionKey, |_| {
                MerchantTokenError::MissingCredentials
            }));
        };
        let Some(key) = key else {
            return Err(MerchantTokenError::MissingSubscriptionKey);
        };
        let merchant = match self.partners.get(id) {
            Some(p) if p.secret == secret => p.merchant.as_ref(),
            _ => None,
        };
        let Some(merchant) = merchant else {
            return Err(MerchantTokenError::BadCredentials);
        };
        if !merchant.subscription_keys.iter().any(|k| k == key) {
            return Err(MerchantTokenError::InvalidSubscriptionKey);
        }
        Ok(self.new_token(id.to_owned()))
    }

    /// The client id behind a bearer token, with the checks of its kind: a merchant's call
    /// must carry one of its subscription keys (401 otherwise), and calls lacking a header
    /// their kind requires are counted (a subscription key on accounting keys' calls, the
    /// key or the MSN missing on a merchant's).
    pub(crate) fn authorize(&mut self, headers: &HeaderMap) -> Result<String, Refused> {
        let key = header(headers, SUBSCRIPTION_KEY);
        let client = match self.authenticate(header(headers, "authorization")) {
            Ok(client) => client,
            Err(e) => {
                if key.is_some() {
                    self.stats.subscription_key_sent += 1;
                }
                let _ = self.record::<()>(Err(e.clone()));
                return Err(Refused::Api(e));
            }
        };
        let merchant = self.partners.get(&client).and_then(|p| p.merchant.as_ref());
        let Some(merchant) = merchant else {
            if key.is_some() {
                self.stats.subscription_key_sent += 1;
            }
            return Ok(client);
        };
        self.stats.merchant_requests += 1;
        if key.is_none() || header(headers, MSN) != Some(merchant.msn.as_str()) {
            self.stats.merchant_headers_missing += 1;
        }
        match key {
            Some(k) if merchant.subscription_keys.iter().any(|m| m == k) => Ok(client),
            other => {
                self.stats.subscription_key_refused += 1;
                let _ = self.record::<()>(Err(ApiError::Unauthorized));
                Err(Refused::SubscriptionKey {
                    missing: other.is_none(),
                })
            }
        }
    }

    /// The ids of the ledgers a merchant's MSN settles for.
    pub(crate) fn ledgers_of_msn(&self, msn: &str) -> Vec<String> {
        let handle = format!("api:{msn}");
        self.ledgers
            .values()
            .filter(|b| b.profile.settles_for(&handle))
            .map(|b| b.profile.ledger_id.clone())
            .collect()
    }
}

/// `POST /accesstoken/get`.
pub(crate) async fn token(AxState(sim): AxState<Arc<Simulator>>, headers: HeaderMap) -> Response {
    let _flight = InFlight::arrive(&sim);
    let mut st = sim.lock();
    st.stats.merchant_token_requests += 1;
    super::http::note_system_headers(&mut st, &headers);
    let own_msn = header(&headers, "client_id")
        .and_then(|id| st.partners.get(id))
        .and_then(|p| p.merchant.as_ref())
        .map(|m| m.msn.clone());
    if !headers.contains_key(SUBSCRIPTION_KEY)
        || own_msn.is_some_and(|msn| header(&headers, MSN) != Some(msn.as_str()))
    {
        st.stats.merchant_headers_missing += 1;
    }
    let issued = match st.issue_merchant_token(&headers) {
        Ok(issued) => issued,
        Err(e) => {
            st.stats.token_failures += 1;
            return match e {
                MerchantTokenError::MissingSubscriptionKey => {
                    st.stats.subscription_key_refused += 1;
                    subscription_refused(true)
                }
                MerchantTokenError::InvalidSubscriptionKey => {
                    st.stats.subscription_key_refused += 1;
                    subscription_refused(false)
                }
                MerchantTokenError::MissingCredentials => (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": "invalid_request", "error_description": "client_id and client_secret headers are required" })),
                )
                    .into_response(),
                MerchantTokenError::BadCredentials => (
                    StatusCode::UNAUTHORIZED,
                    [(WWW_AUTHENTICATE, "Bearer")],
                    Json(json!({ "error": "invalid_client" })),
                )
                    .into_response(),
            };
        }
    };
    drop(st);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ttl = issued.expires_in_secs;
    // Every field a string, as the spec's AuthorizationTokenResponse types them.
    let body = json!({
        "token_type": "Bearer",
        "expires_in": ttl.to_string(),
        "ext_expires_in": ttl.to_string(),
        "expires_on": now.saturating_add(ttl).to_string(),
        "not_before": now.to_string(),
        "resource": "00000002-0000-0000-c000-000000000000",
        "access_token": issued.access_token,
    });
    (
        [(CACHE_CONTROL, "no-store")],
        [(CONTENT_TYPE, "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}
