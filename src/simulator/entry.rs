//! One ledger entry as the simulator stores it, and how it is rendered as JSON.
//!
//! This module owns the wire shape of an entry (report-api.md §6): the ordinary fields, the
//! GDPR-sensitive trio that is only added on request, the occasional unknown extra field, and
//! the two `time` spellings the real API has shown (UTC `Z` and a `+HHMM` offset).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// The two ledgers of a sales unit's money, as named in the URL path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Topic {
    /// What Vipps MobilePay owes the merchant.
    Funds,
    /// What the merchant owes Vipps MobilePay.
    Fees,
}

impl Topic {
    /// Parses the path segment; only the two documented topics are accepted.
    pub(crate) fn parse(s: &str) -> Option<Topic> {
        match s {
            "funds" => Some(Topic::Funds),
            "fees" => Some(Topic::Fees),
            _ => None,
        }
    }

    /// The path segment for this topic.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Topic::Funds => "funds",
            Topic::Fees => "fees",
        }
    }
}

/// The fields only served with `includeGDPRSensitiveData=true` (Vippsnummer captures only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gdpr {
    pub name: String,
    pub masked_phone_no: String,
    pub message: String,
}

/// One stored entry of a (ledger, topic) feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub psp_reference: String,
    /// Already rendered in the ledger's `time` spelling.
    pub time: String,
    /// The same moment as microseconds since the Unix epoch (the simulator's clock compares
    /// it; never served).
    pub moment: i64,
    pub ledger_date: NaiveDate,
    pub entry_type: String,
    /// `None` means the field is absent on the wire (some `fees-retained` entries).
    pub reference: Option<String>,
    pub currency: &'static str,
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    /// Absent on `fees-retained` and payouts.
    pub recipient_handle: Option<String>,
    /// An undocumented field on a few entries, to prove unknown fields survive.
    pub settlement_batch: Option<String>,
    pub gdpr: Option<Gdpr>,
}

impl Entry {
    /// The entry as served; the GDPR trio is added only when `include_gdpr` is set.
    pub fn to_json(&self, include_gdpr: bool) -> Value {
        serde_json::to_value(self.served(include_gdpr)).unwrap_or_default()
    }

    /// [`Entry::to_json`] as JSON text, written straight from the entry (a feed page of
    /// 1000 entries is served without building 1000 JSON trees).
    pub fn to_raw(&self, include_gdpr: bool) -> Box<RawValue> {
        serde_json::value::to_raw_value(&self.served(include_gdpr)).unwrap_or_default()
    }

    fn served(&self, include_gdpr: bool) -> Served<'_> {
        Served {
            entry: self,
            gdpr: self.gdpr.as_ref().filter(|_| include_gdpr),
        }
    }
}

/// The wire shape of an entry: the one place that says which fields are served when.
struct Served<'a> {
    entry: &'a Entry,
    gdpr: Option<&'a Gdpr>,
}

impl Serialize for Served<'_> {
    /// The members in the order of their names, as a JSON tree of them prints: a fault
    /// changes the page's tree and prints it again, and a page broken off by a fault must be
    /// the first half of the page as it would have been served.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.entry;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("amount", &e.amount)?;
        m.serialize_entry("balanceAfter", &e.balance_after)?;
        m.serialize_entry("balanceBefore", &e.balance_before)?;
        m.serialize_entry("currency", e.currency)?;
        m.serialize_entry("entryType", &e.entry_type)?;
        // `Display` of a date is YYYY-MM-DD, without parsing a format string per entry.
        m.serialize_entry("ledgerDate", &e.ledger_date.to_string())?;
        if let Some(g) = self.gdpr {
            m.serialize_entry("maskedPhoneNo", &g.masked_phone_no)?;
            m.serialize_entry("message", &g.message)?;
            m.serialize_entry("name", &g.name)?;
        }
        m.serialize_entry("pspReference", &e.psp_reference)?;
        if let Some(h) = &e.recipient_handle {
            m.serialize_entry("recipientHandle", h)?;
        }
        if let Some(r) = &e.reference {
            m.serialize_entry("reference", r)?;
        }
        if let Some(b) = &e.settlement_batch {
            m.serialize_entry("settlementBatch", b)?;
        }
        m.serialize_entry("time", &e.time)?;
        m.end()
    }
}

/// How a ledger spells `time`: the ledger's local wall-clock offset and whether it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeStyle {
    /// The merchant's offset from UTC in seconds; ledger dates run midnight to midnight here.
    pub utc_offset_secs: i32,
    /// `true`: `2026-01-05T09:19:26.528092+0100`; `false`: `2026-01-05T08:19:26.528092Z`.
    pub show_offset: bool,
}

impl TimeStyle {
    /// Renders a moment given as microseconds after local midnight starting `date`.
    /// `micros` may equal a whole day, which is the cutoff at the end of the date.
    pub fn render(&self, date: NaiveDate, micros: i64) -> String {
        let local = NaiveDateTime::new(date, NaiveTime::MIN) + TimeDelta::microseconds(micros);
        if self.show_offset {
            let sign = if self.utc_offset_secs < 0 { '-' } else { '+' };
            let abs = self.utc_offset_secs.unsigned_abs();
            format!(
                "{}{}{:02}{:02}",
                local.format("%Y-%m-%dT%H:%M:%S%.6f"),
                sign,
                abs / 3600,
                (abs % 3600) / 60
            )
        } else {
            let utc = local - TimeDelta::seconds(i64::from(self.utc_offset_secs));
            format!("{}Z", utc.format("%Y-%m-%dT%H:%M:%S%.6f"))
        }
    }

    /// Milliseconds since the Unix epoch of the same moment (for ULID-like references).
    pub fn unix_millis(&self, date: NaiveDate, micros: i64) -> i64 {
        self.unix_micros(date, micros).div_euclid(1000)
    }

    /// Microseconds since the Unix epoch of the same moment.
    pub fn unix_micros(&self, date: NaiveDate, micros: i64) -> i64 {
        let local = NaiveDateTime::new(date, NaiveTime::MIN) + TimeDelta::microseconds(micros);
        let utc = local - TimeDelta::seconds(i64::from(self.utc_offset_secs));
        utc.and_utc().timestamp_micros()
    }
}

/// Microseconds in one ledger date (midnight to midnight).
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_in_both_spellings_with_six_fraction_digits() {
        let d = NaiveDate::from_ymd_opt(2026, 1, 5).expect("valid date");
        let micros = (9 * 3600 + 19 * 60 + 26) * 1_000_000 + 528_092;
        let utc = TimeStyle {
            utc_offset_secs: 3600,
            show_offset: false,
        };
        let off = TimeStyle {
            utc_offset_secs: 7200,
            show_offset: true,
        };
        assert_eq!(utc.render(d, micros), "2026-01-05T08:19:26.528092Z");
        assert_eq!(off.render(d, micros), "2026-01-05T09:19:26.528092+0200");
        assert_eq!(utc.render(d, DAY_MICROS), "2026-01-05T23:00:00.000000Z");
        assert_eq!(off.render(d, DAY_MICROS), "2026-01-06T00:00:00.000000+0200");
    }
}
