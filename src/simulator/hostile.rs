//! Hostile modes: named, deterministic misbehaviour of the whole API, one mode at a time.
//!
//! This module owns the modes ([`Hostile`]): their names, parameters and defaults, and which
//! endpoints each one hits. Unlike the seeded faults of `faults.rs`, which hit a share of
//! requests at random, a mode hits every request in its scope, the same way each time, so a
//! test can show that one kind of broken or hostile answer costs the client at most one
//! failed unit. A mode's scope, and how it is read from the `POST /_sim/hostile` body and the
//! `simulate --hostile` flags, live in `hostile_config.rs`; how each mode looks on the wire in
//! `hostile_wire.rs` (responses), `hostile_pages.rs` (pages built from the real data) and
//! `schema_random.rs` (random data shaped like the OpenAPI file).

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use super::faults::Endpoint;

/// `huge-retry-after`'s default `Retry-After`: about 31.7 years, in seconds.
pub const DEFAULT_RETRY_AFTER: &str = "999999999";
/// An HTTP-date in the year 9999, for `huge-retry-after`'s `retry_after`.
pub const RETRY_AFTER_YEAR_9999: &str = "Fri, 31 Dec 9999 23:59:59 GMT";
/// `huge-page`'s default body size, in MiB.
pub const DEFAULT_HUGE_PAGE_MEGABYTES: u64 = 300;
/// The largest `huge-page` body, in MiB (it is streamed; this only bounds a typo).
pub const MAX_HUGE_PAGE_MEGABYTES: u64 = 65_536;
/// `huge-cursor`'s default cursor length, in bytes (5 MiB).
pub const DEFAULT_HUGE_CURSOR_BYTES: usize = 5 << 20;
/// The longest `huge-cursor` cursor, in bytes: it is built in memory for each page.
pub const MAX_HUGE_CURSOR_BYTES: usize = 64 << 20;
/// `redirect`'s default `Location`: a loopback port where nothing listens (the discard port).
pub const DEFAULT_REDIRECT_LOCATION: &str = "http://127.0.0.1:9";
/// The longest cycle of `ledger-cursor-cycle`.
pub const MAX_CYCLE_PERIOD: u32 = 1000;

/// One hostile behaviour, with its parameters. Every request a mode hits gets it; see
/// [`HostileConfig`](super::HostileConfig) for the scope and the README ("The simulator") for each on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// The token endpoint answers 200 with `expires_in` 18446744073709551615 (`u64::MAX`),
    /// a JSON number or, with `as_string`, a string. The token itself lives as usual.
    HugeTokenLifetime { as_string: bool },
    /// Data requests answer 429 with this `Retry-After`, sent verbatim (seconds, a huge
    /// number or an HTTP-date such as [`RETRY_AFTER_YEAR_9999`]).
    HugeRetryAfter { retry_after: String },
    /// The ledger list's cursors go round a circle of `period` (at least 2) cursors, never
    /// empty and never the request's own; each page carries some of the caller's ledgers.
    LedgerCursorCycle { period: u32 },
    /// Feed pages are `{"cursor": <new each time>, "tryLater": false, "items": []}`.
    FeedEmptyForever,
    /// Dates pages say `hasMore: true`, `tryLater: false`, with the request's cursor (or, on
    /// the first call, the first page's) and the same real items every time.
    DatesCursorRepeat,
    /// Feed pages are `megabytes` MiB of valid JSON: the real page whose first item (or the
    /// page, if it has none) carries a huge unknown `note` string; streamed, with an honest
    /// `Content-Length`, or chunked without one.
    HugePage { megabytes: u64, chunked: bool },
    /// Feed pages are real, but their next `cursor` is `bytes` bytes long.
    HugeCursor { bytes: usize },
    /// The feed and dates carry one more entry after the real ones, dated 2099-12-31,
    /// continuing the balance chain.
    FarFutureEntry,
    /// The ledger list also shows ledgers with hostile ids (`..`, a newline, a path, 300
    /// characters, an escape character, spaces: [`Hostile::hostile_ledger_ids`]), whose feeds
    /// and dates answer with a real ledger's entries.
    HostileLedgerIds,
    /// The ledger list (and, with `data`, feed and dates) answers `status` (301, 302, 303,
    /// 307 or 308) with `Location`: `location` itself, or, when it has no path, `location`
    /// followed by the request's path and query.
    Redirect {
        status: u16,
        location: String,
        data: bool,
    },
    /// Every data endpoint answers 200 with random data shaped like the OpenAPI file, as a
    /// mock server generating from the schema would: lorem-ipsum strings, money as huge
    /// floats, random booleans and entry types, 0 to 5 items; for any ledger id (without
    /// `only_ledger`), and the same answer for the same seed and request line.
    SchemaRandom,
}

impl Hostile {
    /// Every mode's name, in the order of the variants.
    pub const NAMES: [&'static str; 11] = [
        "huge-token-lifetime",
        "huge-retry-after",
        "ledger-cursor-cycle",
        "feed-empty-forever",
        "dates-cursor-repeat",
        "huge-page",
        "huge-cursor",
        "far-future-entry",
        "hostile-ledger-ids",
        "redirect",
        "schema-random",
    ];

    /// The mode's stable kebab-case name.
    pub fn name(&self) -> &'static str {
        let i = match self {
            Hostile::HugeTokenLifetime { .. } => 0,
            Hostile::HugeRetryAfter { .. } => 1,
            Hostile::LedgerCursorCycle { .. } => 2,
            Hostile::FeedEmptyForever => 3,
            Hostile::DatesCursorRepeat => 4,
            Hostile::HugePage { .. } => 5,
            Hostile::HugeCursor { .. } => 6,
            Hostile::FarFutureEntry => 7,
            Hostile::HostileLedgerIds => 8,
            Hostile::Redirect { .. } => 9,
            Hostile::SchemaRandom => 10,
        };
        Hostile::NAMES[i]
    }

    /// Every mode with its default parameters.
    pub fn all() -> Vec<Hostile> {
        Hostile::NAMES
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    /// The extra ledger ids of `hostile-ledger-ids`, in the order they are made.
    pub fn hostile_ledger_ids() -> Vec<String> {
        vec![
            "..".to_string(),
            "a\nb".to_string(),
            "../../etc/passwd".to_string(),
            "1".repeat(300),
            "\u{1b}[31m100099".to_string(),
            "100 098".to_string(),
        ]
    }

    /// Whether the mode changes answers of `endpoint` (the token endpoint is not one).
    pub(crate) fn hits(&self, endpoint: Endpoint) -> bool {
        match self {
            Hostile::HugeTokenLifetime { .. } => false,
            Hostile::HugeRetryAfter { .. } | Hostile::SchemaRandom => true,
            Hostile::LedgerCursorCycle { .. } | Hostile::HostileLedgerIds => {
                endpoint == Endpoint::LedgerList
            }
            Hostile::FeedEmptyForever | Hostile::HugePage { .. } | Hostile::HugeCursor { .. } => {
                endpoint == Endpoint::Feed
            }
            Hostile::DatesCursorRepeat => endpoint == Endpoint::Dates,
            Hostile::FarFutureEntry => endpoint != Endpoint::LedgerList,
            Hostile::Redirect { data, .. } => *data || endpoint == Endpoint::LedgerList,
        }
    }

    /// The parameters as JSON object members (for the admin route's answer).
    pub(crate) fn params_json(&self) -> Map<String, Value> {
        let v = match self {
            Hostile::HugeTokenLifetime { as_string } => json!({ "as_string": as_string }),
            Hostile::HugeRetryAfter { retry_after } => json!({ "retry_after": retry_after }),
            Hostile::LedgerCursorCycle { period } => json!({ "period": period }),
            Hostile::HugePage { megabytes, chunked } => {
                json!({ "megabytes": megabytes, "chunked": chunked })
            }
            Hostile::HugeCursor { bytes } => json!({ "bytes": bytes }),
            Hostile::Redirect {
                status,
                location,
                data,
            } => json!({ "status": status, "location": location, "data": data }),
            _ => json!({}),
        };
        match v {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

impl fmt::Display for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Hostile {
    type Err = String;

    /// The mode of that name with its default parameters.
    fn from_str(s: &str) -> Result<Hostile, String> {
        Ok(match s {
            "huge-token-lifetime" => Hostile::HugeTokenLifetime { as_string: false },
            "huge-retry-after" => Hostile::HugeRetryAfter {
                retry_after: DEFAULT_RETRY_AFTER.to_string(),
            },
            "ledger-cursor-cycle" => Hostile::LedgerCursorCycle { period: 2 },
            "feed-empty-forever" => Hostile::FeedEmptyForever,
            "dates-cursor-repeat" => Hostile::DatesCursorRepeat,
            "huge-page" => Hostile::HugePage {
                megabytes: DEFAULT_HUGE_PAGE_MEGABYTES,
                chunked: false,
            },
            "huge-cursor" => Hostile::HugeCursor {
                bytes: DEFAULT_HUGE_CURSOR_BYTES,
            },
            "far-future-entry" => Hostile::FarFutureEntry,
            "hostile-ledger-ids" => Hostile::HostileLedgerIds,
            "redirect" => Hostile::Redirect {
                status: 302,
                location: DEFAULT_REDIRECT_LOCATION.to_string(),
                data: false,
            },
            "schema-random" => Hostile::SchemaRandom,
            other => {
                let names = Hostile::NAMES.join(", ");
                return Err(format!("unknown hostile mode {other:?}; one of: {names}"));
            }
        })
    }
}
