//! The simulator's request counters, as handed to tests and `GET /_sim/stats`.
//!
//! This module owns the snapshot type only; the counters are bumped by the HTTP layer and the
//! fault bookkeeping while they hold the simulator's lock.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Request counters, as a snapshot.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    /// Calls to `POST /miami/v1/token` (accounting keys).
    pub token_requests: u64,
    /// Token calls refused (bad credentials, bad request, subscription key).
    pub token_failures: u64,
    /// Calls to `GET /settlement/v1/ledgers`.
    pub ledger_list_requests: u64,
    /// Feed calls per (ledger id, topic) as written in the path, whatever the outcome.
    pub feed_requests: BTreeMap<(String, String), u64>,
    /// Calls to the dates endpoint.
    pub dates_requests: u64,
    /// 401 answers on data endpoints.
    pub unauthorized: u64,
    /// 404 answers on data endpoints.
    pub not_found: u64,
    /// Token or data calls without all four `Vipps-System-*` headers.
    pub missing_system_headers: u64,
    /// Calls that carried `Ocp-Apim-Subscription-Key` without a merchant's token: to
    /// `/miami/v1/token`, or with accounting keys' token (an accounting partner never should).
    pub subscription_key_sent: u64,
    /// Calls to `POST /accesstoken/get` (merchant keys).
    pub merchant_token_requests: u64,
    /// Data calls made with a merchant's token.
    pub merchant_requests: u64,
    /// Merchant token or data calls without `Ocp-Apim-Subscription-Key` or
    /// `Merchant-Serial-Number` (merchant keys always send both).
    pub merchant_headers_missing: u64,
    /// Merchant token or data calls refused for a missing, wrong or regenerated
    /// subscription key.
    pub subscription_key_refused: u64,
    /// Injected faults by kind (`"429"`, `"500"`, `"502"`, `"truncated"`, `"invalid_json"`,
    /// `"html"`, `"wrong_types"`, `"missing_cursor"`, `"invalid_entry"`, `"overlap"`,
    /// `"no_progress"`, `"stall"`); kinds never injected are absent.
    pub faults_injected: BTreeMap<String, u64>,
    /// Hostile answers sent, by mode name (`"huge-page"`, ...; see `Hostile::NAMES`): every
    /// answer a mode changed (for `far-future-entry`, those carrying the extra entry; for
    /// `hostile-ledger-ids`, the ledger lists and the hostile ids' own feeds and dates);
    /// modes never in effect are absent.
    pub hostile_sent: BTreeMap<String, u64>,
    /// Token or data calls that arrived while an earlier 429's `Retry-After` still ran
    /// (more than 50 ms before it ended).
    pub retry_after_violations: u64,
    /// The most token and data calls handled at the same time (arrival to response).
    pub max_in_flight: u64,
    /// All token and data calls, whatever the outcome (admin routes not included).
    pub requests_total: u64,
}

impl SimStats {
    /// All feed calls, over every ledger and topic.
    pub fn total_feed_requests(&self) -> u64 {
        self.feed_requests.values().sum()
    }

    /// All injected faults, over every kind.
    pub fn total_faults(&self) -> u64 {
        self.faults_injected.values().sum()
    }

    /// The counters as JSON (feed calls keyed `"<ledgerId>/<topic>"`), for `GET /_sim/stats`.
    pub fn to_json(&self) -> Value {
        let feeds: serde_json::Map<String, Value> = self
            .feed_requests
            .iter()
            .map(|((l, t), n)| (format!("{l}/{t}"), (*n).into()))
            .collect();
        json!({
            "token_requests": self.token_requests,
            "token_failures": self.token_failures,
            "ledger_list_requests": self.ledger_list_requests,
            "feed_requests": feeds,
            "total_feed_requests": self.total_feed_requests(),
            "dates_requests": self.dates_requests,
            "unauthorized": self.unauthorized,
            "not_found": self.not_found,
            "missing_system_headers": self.missing_system_headers,
            "subscription_key_sent": self.subscription_key_sent,
            "merchant_token_requests": self.merchant_token_requests,
            "merchant_requests": self.merchant_requests,
            "merchant_headers_missing": self.merchant_headers_missing,
            "subscription_key_refused": self.subscription_key_refused,
            "faults_injected": self.faults_injected,
            "total_faults": self.total_faults(),
            "hostile_sent": self.hostile_sent,
            "retry_after_violations": self.retry_after_violations,
            "max_in_flight": self.max_in_flight,
            "requests_total": self.requests_total,
        })
    }
}
