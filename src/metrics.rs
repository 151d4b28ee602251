//! The Prometheus counters, bumped where things happen (pages committed, API calls, tokens,
//! conflicts, reconciliation, exports), and the heartbeat of work making progress. The gauges
//! read from the database at scrape time are the status endpoint's (`status_endpoint`). Every
//! metric is documented in docs/monitoring.md.
//!
//! The counters live in a [`Metrics`] value made once by whoever starts the work (the command
//! line for the process, each test for itself) and passed down: nothing reaches for a global,
//! so the counters bumped by one test's sync are that test's alone and can be asserted exactly
//! while other tests run in the same process.

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::config::Topic;

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `{topic}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: &'static str,
}

/// `{endpoint, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: String,
}

/// `{endpoint}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

/// `{partner}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartnerLabels {
    partner: String,
}

/// `{exporter, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExportLabels {
    exporter: String,
    status: &'static str,
}

/// The Report API endpoints, as the `endpoint` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Ledgers,
    Feed,
    Dates,
}

impl Endpoint {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Ledgers => "ledgers",
            Endpoint::Feed => "feed",
            Endpoint::Dates => "dates",
        }
    }
}

/// The counters of one process (or of one test), with their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    entries_ingested: Family<TopicLabels, Counter>,
    pages: Family<TopicLabels, Counter>,
    api_requests: Family<RequestLabels, Counter>,
    api_retries: Family<EndpointLabels, Counter>,
    rate_limited: Counter,
    token_refreshes: Family<PartnerLabels, Counter>,
    token_failures: Family<PartnerLabels, Counter>,
    entry_conflicts: Counter,
    reconciliation_mismatches: Counter,
    exports: Family<ExportLabels, Counter>,
    /// When work last made progress (see [`Metrics::progressed`]), in milliseconds after
    /// `epoch`.
    last_progress_ms: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh counters, all zero, registered under their documented names.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            entries_ingested: Family::default(),
            pages: Family::default(),
            api_requests: Family::default(),
            api_retries: Family::default(),
            rate_limited: Counter::default(),
            token_refreshes: Family::default(),
            token_failures: Family::default(),
            entry_conflicts: Counter::default(),
            reconciliation_mismatches: Counter::default(),
            exports: Family::default(),
            last_progress_ms: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        };
        let mut r = Registry::default();
        // Counter names get their `_total` suffix from the encoder.
        r.register(
            "vls_entries_ingested",
            "Entries stored (feed pages and entries reconciliation inserted)",
            m.entries_ingested.clone(),
        );
        r.register("vls_pages", "Feed pages committed", m.pages.clone());
        r.register(
            "vls_api_requests",
            "HTTP requests to the Report API by endpoint and status (error: no response)",
            m.api_requests.clone(),
        );
        r.register(
            "vls_api_retries",
            "Requests to the Report API retried after a retryable failure",
            m.api_retries.clone(),
        );
        r.register(
            "vls_api_rate_limited",
            "HTTP 429 answers from the Report API",
            m.rate_limited.clone(),
        );
        r.register(
            "vls_token_refreshes",
            "Access tokens fetched",
            m.token_refreshes.clone(),
        );
        r.register(
            "vls_token_failures",
            "Token requests that failed after every attempt",
            m.token_failures.clone(),
        );
        r.register(
            "vls_entry_conflicts",
            "Entries re-delivered with a stored entry's key but different content",
            m.entry_conflicts.clone(),
        );
        r.register(
            "vls_reconciliation_mismatches",
            "Ledger dates found differing from the API's daily report",
            m.reconciliation_mismatches.clone(),
        );
        r.register(
            "vls_exports",
            "Ledger dates delivered by each scheduled exporter, by outcome",
            m.exports.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Work made progress: a page or a date stored, a unit, listing or delivery finished.
    /// A request answered is not progress (a loop of requests that stores nothing is what the
    /// watchdog must not be fooled by); the daemon's watchdog pings stop when nothing has
    /// progressed for a while (`sync::lifecycle`).
    pub fn progressed(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since work last made progress (or since these metrics were made).
    pub fn since_progress(&self) -> std::time::Duration {
        let last = self
            .last_progress_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        self.epoch
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(last))
    }

    /// A feed page of `topic` was committed, storing `inserted` new entries and recording
    /// `conflicts` conflicting re-deliveries.
    pub fn page_committed(&self, topic: Topic, inserted: u64, conflicts: u64) {
        self.progressed();
        let labels = TopicLabels {
            topic: topic.as_str(),
        };
        self.pages.get_or_create(&labels).inc();
        self.entries_ingested
            .get_or_create(&labels)
            .inc_by(inserted);
        self.entry_conflicts.inc_by(conflicts);
    }

    /// Entries of `topic` stored outside the feed walk (reconciliation).
    pub fn entries_ingested(&self, topic: Topic, inserted: u64) {
        self.progressed();
        let labels = TopicLabels {
            topic: topic.as_str(),
        };
        self.entries_ingested
            .get_or_create(&labels)
            .inc_by(inserted);
    }

    /// One HTTP request to `endpoint` answered with `status` (`None`: no response arrived).
    /// A 429 is also counted in `vls_api_rate_limited_total`.
    pub fn api_request(&self, endpoint: Endpoint, status: Option<u16>) {
        if status == Some(429) {
            self.rate_limited.inc();
        }
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.api_requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                status,
            })
            .inc();
    }

    /// A request to `endpoint` is being tried again.
    pub fn api_retry(&self, endpoint: Endpoint) {
        self.api_retries
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .inc();
    }

    /// `partner` got a new access token.
    pub fn token_refreshed(&self, partner: &str) {
        self.token_refreshes
            .get_or_create(&PartnerLabels {
                partner: partner.to_owned(),
            })
            .inc();
    }

    /// `partner`'s token request failed after every attempt.
    pub fn token_failed(&self, partner: &str) {
        self.token_failures
            .get_or_create(&PartnerLabels {
                partner: partner.to_owned(),
            })
            .inc();
    }

    /// Reconciliation found a ledger date differing from the API's daily report.
    pub fn reconciliation_mismatch(&self) {
        self.reconciliation_mismatches.inc();
    }

    /// An export run of `exporter` finished, well or not.
    pub fn export_done(&self, exporter: &str, ok: bool) {
        self.progressed();
        self.exports
            .get_or_create(&ExportLabels {
                exporter: exporter.to_owned(),
                status: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// The counters, then `gauges` (read at scrape time by the status endpoint), in the
    /// OpenMetrics text format, `# EOF` included.
    pub fn encode(&self, gauges: &Registry) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        encode_registry(&mut out, gauges).expect("writing to a String cannot fail");
        encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_every_counter_family_with_its_type() {
        let m = Metrics::new();
        m.page_committed(Topic::Funds, 7, 1);
        m.api_request(Endpoint::Feed, Some(200));
        m.api_request(Endpoint::Token, None);
        m.export_done("csv-daily", false);
        let text = m.encode(&Registry::default());
        assert!(
            text.contains("vls_entries_ingested_total{topic=\"funds\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("vls_pages_total{topic=\"funds\"} 1"),
            "{text}"
        );
        assert!(text.contains("vls_entry_conflicts_total 1"), "{text}");
        assert!(
            text.contains("vls_api_requests_total{endpoint=\"feed\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vls_api_requests_total{endpoint=\"token\",status=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vls_exports_total{exporter=\"csv-daily\",status=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains("vls_api_rate_limited_total 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Two registries encoded one after the other: one EOF, at the end.
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn separate_metrics_do_not_share_counters() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.api_request(Endpoint::Feed, Some(429));
        let none = Registry::default();
        assert!(a.encode(&none).contains("vls_api_rate_limited_total 1"));
        assert!(b.encode(&none).contains("vls_api_rate_limited_total 0"));
    }
}
