//! A hostile mode's scope, and how a mode is read from JSON and from the command line.
//!
//! This module owns [`HostileConfig`]: which requests a mode hits (`only_ledger`), the body of
//! `POST /_sim/hostile` (`{"mode": <name>, "only_ledger": <id>, <parameters>}`) with a clear
//! message for every mistake, and the `simulate --hostile` flags built on the same reader.

use serde_json::{Map, Value};

use super::faults::Endpoint;
use super::hostile::{Hostile, MAX_CYCLE_PERIOD, MAX_HUGE_CURSOR_BYTES, MAX_HUGE_PAGE_MEGABYTES};

/// A hostile mode and its scope, as set by `Simulator::set_hostile`.
///
/// The mode hits authenticated requests (a bad token still gets 401) of the endpoints it
/// concerns. With `only_ledger`, only that ledger's feed and dates requests are hit, and the
/// ledger list and token endpoint, which belong to no ledger, stay normal (as with
/// `FaultConfig::only_ledger`). While a mode hits a request, no fault is drawn for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostileConfig {
    /// The misbehaviour, with its parameters.
    pub mode: Hostile,
    /// Only this ledger misbehaves; `None`: every request the mode concerns.
    pub only_ledger: Option<String>,
}

impl From<Hostile> for HostileConfig {
    fn from(mode: Hostile) -> HostileConfig {
        HostileConfig {
            mode,
            only_ledger: None,
        }
    }
}

impl HostileConfig {
    /// `mode` for `ledger_id`'s feed and dates only.
    pub fn on_ledger(mode: Hostile, ledger_id: &str) -> HostileConfig {
        HostileConfig {
            mode,
            only_ledger: Some(ledger_id.to_string()),
        }
    }

    /// Whether a request to `endpoint` (for `ledger_id`; `None` for the ledger list) is hit.
    pub(crate) fn hits(&self, endpoint: Endpoint, ledger_id: Option<&str>) -> bool {
        let in_scope = match &self.only_ledger {
            None => true,
            Some(only) => ledger_id == Some(only.as_str()),
        };
        in_scope && self.mode.hits(endpoint)
    }

    /// Whether the token endpoint is hit.
    pub(crate) fn hits_token(&self) -> bool {
        self.only_ledger.is_none() && matches!(self.mode, Hostile::HugeTokenLifetime { .. })
    }

    /// `{"mode": <name>, "only_ledger": <id or null>, <parameters>}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("mode".into(), self.mode.name().into());
        map.insert("only_ledger".into(), self.only_ledger.clone().into());
        map.extend(self.mode.params_json());
        Value::Object(map)
    }

    /// Reads `{"mode": <name>, "only_ledger": <id>, <parameters>}`: parameters the mode does
    /// not have, wrong types and values out of range are refused with a message saying so,
    /// and so is an `only_ledger` that would leave the mode nothing to hit.
    pub fn from_json(body: &Value) -> Result<HostileConfig, String> {
        let map = body
            .as_object()
            .ok_or("the hostile mode must be a JSON object (or null to clear it)")?;
        let mut p = Params(map.clone());
        let name = p.string("mode")?.ok_or_else(|| {
            format!(
                "\"mode\" is required, one of: {}",
                Hostile::NAMES.join(", ")
            )
        })?;
        let only_ledger = p.string("only_ledger")?;
        let mode = match name.parse::<Hostile>()? {
            Hostile::HugeTokenLifetime { as_string } => Hostile::HugeTokenLifetime {
                as_string: p.bool("as_string")?.unwrap_or(as_string),
            },
            Hostile::HugeRetryAfter { retry_after } => {
                let value = p.string_or_number("retry_after")?.unwrap_or(retry_after);
                if axum::http::HeaderValue::from_str(&value).is_err() || value.is_empty() {
                    return Err(format!("retry_after {value:?} is not a header value"));
                }
                Hostile::HugeRetryAfter { retry_after: value }
            }
            Hostile::LedgerCursorCycle { period } => Hostile::LedgerCursorCycle {
                period: p
                    .number("period", 2, u64::from(MAX_CYCLE_PERIOD))?
                    .map_or(period, |n| u32::try_from(n).unwrap_or(MAX_CYCLE_PERIOD)),
            },
            Hostile::HugePage { megabytes, chunked } => Hostile::HugePage {
                megabytes: p
                    .number("megabytes", 1, MAX_HUGE_PAGE_MEGABYTES)?
                    .unwrap_or(megabytes),
                chunked: p.bool("chunked")?.unwrap_or(chunked),
            },
            Hostile::HugeCursor { bytes } => Hostile::HugeCursor {
                bytes: p
                    .number("bytes", 1, MAX_HUGE_CURSOR_BYTES as u64)?
                    .map_or(bytes, |n| usize::try_from(n).unwrap_or(bytes)),
            },
            Hostile::Redirect {
                status,
                location,
                data,
            } => {
                let status = p.number("status", 301, 308)?.map_or(status, |n| n as u16);
                if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                    return Err(format!("status {status}: one of 301, 302, 303, 307, 308"));
                }
                let location = p.string("location")?.unwrap_or(location);
                match url::Url::parse(&location) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    _ => return Err(format!("location {location:?} is not an absolute URL")),
                }
                Hostile::Redirect {
                    status,
                    location,
                    data: p.bool("data")?.unwrap_or(data),
                }
            }
            plain => plain,
        };
        if let Some(extra) = p.0.keys().next() {
            return Err(format!("{name} has no parameter {extra:?}"));
        }
        let config = HostileConfig { mode, only_ledger };
        if config.only_ledger.is_some()
            && ![Endpoint::Feed, Endpoint::Dates]
                .iter()
                .any(|e| config.mode.hits(*e))
        {
            return Err(format!(
                "only_ledger scopes feed and dates requests, which {name} leaves alone{}",
                if name == "redirect" {
                    " unless \"data\": true"
                } else {
                    ""
                }
            ));
        }
        Ok(config)
    }

    /// The configuration of `simulate --hostile MODE [--hostile-ledger ID]
    /// [--hostile-param KEY=VALUE]...`: each VALUE is read as JSON if it is a number or a
    /// boolean, and as a string otherwise; then as [`HostileConfig::from_json`].
    pub fn from_args(
        mode: &str,
        only_ledger: Option<&str>,
        params: &[String],
    ) -> Result<HostileConfig, String> {
        let mut map = Map::new();
        map.insert("mode".into(), mode.into());
        if let Some(id) = only_ledger {
            map.insert("only_ledger".into(), id.into());
        }
        for param in params {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| format!("--hostile-param {param:?}: expected KEY=VALUE"))?;
            let value = match serde_json::from_str::<Value>(value) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                _ => Value::from(value),
            };
            if key == "mode" || key == "only_ledger" || map.insert(key.into(), value).is_some() {
                return Err(format!("--hostile-param {key:?} given twice or reserved"));
            }
        }
        HostileConfig::from_json(&Value::Object(map))
    }
}

/// The members of a hostile-mode body not read yet; each reader removes what it reads.
struct Params(Map<String, Value>);

impl Params {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key} must be a string, not {other}")),
        }
    }

    fn string_or_number(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => {
                self.0.insert(key.into(), other);
                self.string(key)
            }
            None => Ok(None),
        }
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(format!("{key} must be true or false, not {other}")),
        }
    }

    /// A whole number from `min` to `max`.
    fn number(&mut self, key: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!(
                    "{key} must be a whole number from {min} to {max}, not {v}"
                )),
            },
        }
    }
}
