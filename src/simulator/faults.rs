//! Seeded fault injection: which data request gets which failure, decided reproducibly.
//!
//! This module owns the fault settings ([`FaultConfig`]), the draw, and the bookkeeping that
//! goes with it: fault counters, the host-wide `Retry-After` block and its violations, and the
//! calls in flight. A draw depends only on the seed, the request line (method, path and query)
//! and how many draws that exact request line had before, never on the order in which
//! concurrent requests arrive; a retry of the same request gets a fresh draw. How each fault
//! looks on the wire lives in `inject.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::state::State;
use super::Simulator;

/// A call arriving this much before a `Retry-After` runs out is still on time (clock slack).
const RETRY_AFTER_TOLERANCE: Duration = Duration::from_millis(50);

/// How long after a 429 is sent a call may still arrive without counting as a violation: it
/// was sent before the client could have read the 429 (several workers share one client).
/// 100 ms, because on a loaded machine (the test suite's threads on two cores) a call that
/// left the client's gate before the 429 was read can take that long to arrive; a client that
/// ignored `Retry-After` would still be caught, its calls arriving all through the pause.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(100);

/// What can go wrong, each as a probability per data request (0.0..=1.0).
///
/// Faults hit only data requests that would otherwise answer 200 (a bad token still gets
/// 401, an unknown or revoked ledger 404, a bad cursor 400); the token endpoint never gets
/// one. The kinds are tried in the order of the fields below with cumulative rates, skipping
/// kinds that do not exist on the endpoint, so each kind has its own rate as long as the
/// rates add up to at most 1. Rates outside 0..=1 are clamped; NaN counts as 0.
#[derive(Clone, Debug, Default)]
pub struct FaultConfig {
    /// Seed of the draws; the same seed and request sequence give the same faults.
    pub seed: u64,
    /// Only requests for this ledger get faults (feed and dates); None = every data request
    /// including the ledger list.
    pub only_ledger: Option<String>,
    /// 429 with `Retry-After` and an Azure-style JSON body.
    pub rate_429: f64,
    /// The `Retry-After` sent: rounded up to whole seconds, at least 1 s.
    pub retry_after: Duration,
    /// Send `Retry-After` as an HTTP-date instead of seconds.
    pub retry_after_as_date: bool,
    /// 500 `{"errorCode":10001,"errorMessage":"...","contextId":"<uuid-like>"}`.
    pub rate_500: f64,
    /// 502 with an HTML body, as a gateway would send.
    pub rate_502: f64,
    /// 200 with the usual headers whose body breaks off half way (the connection dies).
    pub rate_truncated: f64,
    /// 200 `application/json` whose complete body is the first half of the real JSON.
    pub rate_invalid_json: f64,
    /// 200 `text/html` maintenance page.
    pub rate_html: f64,
    /// 200 JSON of the right shape with one wrong type (`"tryLater": "no"`, an item's
    /// `"amount": "12.50"`, or on the ledger list `"items": "none"`).
    pub rate_wrong_types: f64,
    /// Feed only: a 200 page without `cursor`.
    pub rate_missing_cursor: f64,
    /// Feed and dates: a 200 page where one item lacks `balanceAfter`.
    pub rate_invalid_entry: f64,
    /// Feed only: a page starting 1..=5 items before the cursor position (real entries
    /// served again; the next cursor as usual).
    pub rate_overlap: f64,
    /// Feed only: `{"cursor": <the request's cursor>, "tryLater": false, "items": []}`.
    pub rate_no_progress: f64,
    /// The normal response, sent only after `stall`.
    pub rate_stall: f64,
    /// How long a stalled response waits before anything is sent.
    pub stall: Duration,
}

impl FaultConfig {
    /// The `Retry-After` in whole seconds: `retry_after` rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The data endpoints faults can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    LedgerList,
    Feed,
    Dates,
}

/// One kind of injected failure; see [`FaultConfig`] for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    TooManyRequests,
    ServerError,
    BadGateway,
    Truncated,
    InvalidJson,
    Html,
    WrongTypes,
    MissingCursor,
    InvalidEntry,
    Overlap,
    NoProgress,
    Stall,
}

impl FaultKind {
    /// Every kind, in the fixed order of the cumulative walk.
    pub(crate) const ALL: [FaultKind; 12] = [
        FaultKind::TooManyRequests,
        FaultKind::ServerError,
        FaultKind::BadGateway,
        FaultKind::Truncated,
        FaultKind::InvalidJson,
        FaultKind::Html,
        FaultKind::WrongTypes,
        FaultKind::MissingCursor,
        FaultKind::InvalidEntry,
        FaultKind::Overlap,
        FaultKind::NoProgress,
        FaultKind::Stall,
    ];

    /// The name used in `SimStats::faults_injected`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::TooManyRequests => "429",
            FaultKind::ServerError => "500",
            FaultKind::BadGateway => "502",
            FaultKind::Truncated => "truncated",
            FaultKind::InvalidJson => "invalid_json",
            FaultKind::Html => "html",
            FaultKind::WrongTypes => "wrong_types",
            FaultKind::MissingCursor => "missing_cursor",
            FaultKind::InvalidEntry => "invalid_entry",
            FaultKind::Overlap => "overlap",
            FaultKind::NoProgress => "no_progress",
            FaultKind::Stall => "stall",
        }
    }

    fn rate(self, c: &FaultConfig) -> f64 {
        let r = match self {
            FaultKind::TooManyRequests => c.rate_429,
            FaultKind::ServerError => c.rate_500,
            FaultKind::BadGateway => c.rate_502,
            FaultKind::Truncated => c.rate_truncated,
            FaultKind::InvalidJson => c.rate_invalid_json,
            FaultKind::Html => c.rate_html,
            FaultKind::WrongTypes => c.rate_wrong_types,
            FaultKind::MissingCursor => c.rate_missing_cursor,
            FaultKind::InvalidEntry => c.rate_invalid_entry,
            FaultKind::Overlap => c.rate_overlap,
            FaultKind::NoProgress => c.rate_no_progress,
            FaultKind::Stall => c.rate_stall,
        };
        if r.is_nan() {
            0.0
        } else {
            r.clamp(0.0, 1.0)
        }
    }

    fn applies_to(self, endpoint: Endpoint) -> bool {
        match self {
            FaultKind::MissingCursor | FaultKind::Overlap | FaultKind::NoProgress => {
                endpoint == Endpoint::Feed
            }
            FaultKind::InvalidEntry => endpoint != Endpoint::LedgerList,
            _ => true,
        }
    }
}

/// A drawn fault, with a second random word for its details (which item, how far back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub kind: FaultKind,
    pub detail: u64,
}

/// The draw for the `occurrence`-th (0-based) time of a request line: a value in [0, 1) and
/// a detail word, both from SHA-256 so they are stable across platforms and Rust versions.
pub(crate) fn draw(seed: u64, request_line: &str, occurrence: u64) -> (f64, u64) {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(request_line.as_bytes())
        .chain_update([0u8])
        .chain_update(occurrence.to_le_bytes())
        .finalize();
    let word = |skip: usize| {
        digest
            .iter()
            .skip(skip)
            .take(8)
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    // 53 random bits give every f64 in [0, 1) with that spacing.
    let value = (word(0) >> 11) as f64 / (1u64 << 53) as f64;
    (value, word(8))
}

/// The kind a draw `value` selects on `endpoint`, walking the kinds cumulatively.
pub(crate) fn pick(config: &FaultConfig, endpoint: Endpoint, value: f64) -> Option<FaultKind> {
    let mut upper = 0.0;
    for kind in FaultKind::ALL {
        if kind.applies_to(endpoint) {
            upper += kind.rate(config);
            if value < upper {
                return Some(kind);
            }
        }
    }
    None
}

impl State {
    /// Draws the fault for an authenticated data request, if faults are on and the request
    /// is in scope (`ledger_id` is `None` for the ledger list). Every call in scope counts as
    /// one occurrence of `request_line`, whether or not a fault comes out.
    pub(crate) fn draw_fault(
        &mut self,
        endpoint: Endpoint,
        ledger_id: Option<&str>,
        request_line: &str,
    ) -> Option<Fault> {
        let config = self.faults.as_ref()?;
        if config
            .only_ledger
            .as_deref()
            .is_some_and(|only| ledger_id != Some(only))
        {
            return None;
        }
        let seen = self
            .fault_draws
            .entry(request_line.to_string())
            .or_default();
        let occurrence = *seen;
        *seen += 1;
        let (value, detail) = draw(config.seed, request_line, occurrence);
        pick(config, endpoint, value).map(|kind| Fault { kind, detail })
    }

    /// Counts a fault that was actually sent.
    pub(crate) fn count_fault(&mut self, kind: FaultKind) {
        *self
            .stats
            .faults_injected
            .entry(kind.name().to_string())
            .or_default() += 1;
    }

    /// Records a 429 telling clients to wait `secs`: the host-wide block lasts until the
    /// later of its current end and now + `secs`.
    pub(crate) fn block_for(&mut self, secs: u64) {
        let now = Instant::now();
        let until = now.checked_add(Duration::from_secs(secs)).unwrap_or(now);
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
        self.blocked_since = Some(now);
    }

    /// A token or data call arrived: counts it, its concurrency, and a too-early arrival.
    fn arrive(&mut self) {
        self.stats.requests_total += 1;
        self.in_flight += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.in_flight);
        // A call that arrives just after a 429 was sent was on its way before the client could
        // have read it; only calls after that grace, and before the block ends, are violations.
        let now = Instant::now();
        let early = self
            .blocked_until
            .is_some_and(|until| now + RETRY_AFTER_TOLERANCE < until)
            && self
                .blocked_since
                .is_some_and(|since| now > since + IN_FLIGHT_GRACE);
        if early {
            self.stats.retry_after_violations += 1;
        }
    }
}

/// One token or data call in flight, from arrival until its response is produced (or the
/// client goes away); dropping it counts the call out.
pub(crate) struct InFlight(Arc<Simulator>);

impl InFlight {
    /// Counts an arriving call in (see `State::arrive`).
    pub(crate) fn arrive(sim: &Arc<Simulator>) -> InFlight {
        sim.lock().arrive();
        InFlight(Arc::clone(sim))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_in_range_and_differ_per_occurrence() {
        let a = draw(7, "GET /x?cursor=abc", 0);
        assert_eq!(a, draw(7, "GET /x?cursor=abc", 0));
        assert_ne!(a, draw(7, "GET /x?cursor=abc", 1));
        assert_ne!(a, draw(8, "GET /x?cursor=abc", 0));
        assert_ne!(a, draw(7, "GET /x?cursor=abd", 0));
        for i in 0..1000 {
            let (v, _) = draw(1, "GET /y", i);
            assert!((0.0..1.0).contains(&v));
        }
    }

    #[test]
    fn the_walk_is_cumulative_and_skips_kinds_an_endpoint_lacks() {
        let c = FaultConfig {
            rate_429: 0.25,
            rate_missing_cursor: 0.25,
            rate_stall: 0.25,
            rate_html: f64::NAN,
            rate_500: -1.0,
            ..FaultConfig::default()
        };
        let feed = |v| pick(&c, Endpoint::Feed, v);
        assert_eq!(feed(0.1), Some(FaultKind::TooManyRequests));
        assert_eq!(feed(0.3), Some(FaultKind::MissingCursor));
        assert_eq!(feed(0.6), Some(FaultKind::Stall));
        assert_eq!(feed(0.8), None);
        let dates = |v| pick(&c, Endpoint::Dates, v);
        assert_eq!(dates(0.3), Some(FaultKind::Stall));
        assert_eq!(dates(0.6), None);
        let all = FaultConfig {
            rate_500: 7.0,
            ..FaultConfig::default()
        };
        assert_eq!(
            pick(&all, Endpoint::LedgerList, 0.999),
            Some(FaultKind::ServerError)
        );
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds_of_at_least_one() {
        let secs = |ms| {
            FaultConfig {
                retry_after: Duration::from_millis(ms),
                ..FaultConfig::default()
            }
            .retry_after_secs()
        };
        assert_eq!((secs(0), secs(1), secs(1000), secs(1001)), (1, 1, 1, 2));
    }
}
