//! What the Report API returns, parsed leniently: unknown fields and unknown entry types are
//! accepted, and every ledger and entry keeps its raw JSON so nothing the API sends is lost.
//! The GDPR-sensitive fields are split off the raw JSON so they can only be stored on purpose.

use std::io::Write as _;
use std::sync::LazyLock;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};

use super::members::Members;
use super::validate;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The entry fields that identify a person; never kept in `raw`.
pub const PERSONAL_FIELDS: [&str; 3] = ["name", "maskedPhoneNo", "message"];

/// A `{scheme, id}` pair: an organisation number or a bank account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct SchemeId {
    pub scheme: String,
    pub id: String,
}

/// A sales unit settled by a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SalesUnit {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub recipient_handle: Option<String>,
    #[serde(default)]
    pub business_identifier: Option<SchemeId>,
}

/// One ledger from `GET /settlement/v1/ledgers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub ledger_id: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub payout_bank_account: Option<SchemeId>,
    #[serde(default)]
    pub owner: Option<SchemeId>,
    #[serde(default)]
    pub settles_for_recipient_handles: Vec<String>,
    #[serde(default)]
    pub sales_units: Vec<SalesUnit>,
    /// The object exactly as received (its JSON text).
    #[serde(skip, default = "empty_object")]
    pub raw: Box<serde_json::value::RawValue>,
}

fn empty_object() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

/// One page of the ledger list. `cursor` is `None` on the last page. Its ledgers were
/// validated when the page was read, and are kept as their JSON text (a fraction of the
/// memory of parsed ledgers) until [`LedgerPage::ledgers`] parses them one at a time. Items
/// that failed validation are not kept; `rejected` says which and why.
#[derive(Debug, Clone)]
pub struct LedgerPage {
    pub cursor: Option<String>,
    pub(crate) items: Vec<Box<serde_json::value::RawValue>>,
    /// One line per item that failed validation: its position, its id if printable, why.
    pub rejected: Vec<String>,
}

impl LedgerPage {
    /// How many valid ledgers the page holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the page holds no valid ledger.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The page's ledgers, each parsed when reached.
    pub fn ledgers(&self) -> impl Iterator<Item = Ledger> + '_ {
        // Every item parsed once already when the page was read; this cannot fail.
        self.items
            .iter()
            .filter_map(|raw| Ledger::from_raw(raw.clone()).ok())
    }
}

impl Ledger {
    /// Parses and validates a ledger from its JSON text, keeping the text as `raw`.
    pub fn from_raw(raw: Box<serde_json::value::RawValue>) -> Result<Ledger, String> {
        if raw.get().len() > validate::MAX_LEDGER_BYTES {
            return Err(format!(
                "ledger is larger than {} bytes",
                validate::MAX_LEDGER_BYTES
            ));
        }
        let mut ledger: Ledger = serde_json::from_str(raw.get())
            .map_err(|e| format!("ledger does not match the documented schema: {}", scrub(&e)))?;
        ledger.validate()?;
        ledger.raw = raw;
        Ok(ledger)
    }

    /// The boundary's rules for a ledger (`validate.rs`).
    fn validate(&self) -> Result<(), String> {
        validate::ledger_id(&self.ledger_id)?;
        if let Some(c) = &self.currency {
            validate::currency("currency", c)?;
        }
        for (field, pair) in [
            ("owner", &self.owner),
            ("payoutBankAccount", &self.payout_bank_account),
        ] {
            if let Some(p) = pair {
                validate::scheme(&format!("{field}.scheme"), &p.scheme)?;
                validate::identifier(&format!("{field}.id"), &p.id, validate::MAX_ID)?;
            }
        }
        if self.settles_for_recipient_handles.len() > validate::MAX_SALES_UNITS
            || self.sales_units.len() > validate::MAX_SALES_UNITS
        {
            return Err(format!(
                "more than {} sales units or recipient handles",
                validate::MAX_SALES_UNITS
            ));
        }
        for h in &self.settles_for_recipient_handles {
            validate::handle("settlesForRecipientHandles", h)?;
        }
        for unit in &self.sales_units {
            if let Some(name) = &unit.name {
                validate::text("salesUnits.name", name, validate::MAX_TEXT, false)?;
            }
            if let Some(h) = &unit.recipient_handle {
                validate::handle("salesUnits.recipientHandle", h)?;
            }
            if let Some(b) = &unit.business_identifier {
                validate::scheme("salesUnits.businessIdentifier.scheme", &b.scheme)?;
                validate::identifier("salesUnits.businessIdentifier.id", &b.id, validate::MAX_ID)?;
            }
        }
        Ok(())
    }
}

/// One page of a feed. The cursor is never empty; `try_later` means "caught up for now".
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub cursor: String,
    pub try_later: bool,
    pub items: Vec<Entry>,
}

/// One page of a ledger date's report.
#[derive(Debug, Clone)]
pub struct DatesPage {
    /// Present only while `has_more`.
    pub cursor: Option<String>,
    pub has_more: bool,
    /// The date is still open: the report is not complete yet.
    pub try_later: bool,
    pub items: Vec<Entry>,
    /// The size of the page's body in bytes (what holding the report in memory costs).
    pub bytes: usize,
}

/// The personal fields of an entry (Vippsnummer payments only, and only when asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalData {
    pub name: Option<String>,
    pub masked_phone_no: Option<String>,
    pub message: Option<String>,
}

/// One ledger entry, typed, with its raw JSON (personal fields removed).
#[derive(Debug, Clone)]
pub struct Entry {
    pub psp_reference: String,
    /// Normalised to UTC, truncated to microseconds (PostgreSQL's precision).
    pub time: DateTime<Utc>,
    pub ledger_date: Option<NaiveDate>,
    /// As sent; may be a type this code has never heard of.
    pub entry_type: String,
    pub reference: Option<String>,
    pub currency: String,
    /// Minor units, signed relative to the topic's account.
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    pub recipient_handle: Option<String>,
    pub personal: PersonalData,
    /// The entry's JSON text as sent, less its personal members.
    pub raw: Box<RawValue>,
}

impl Entry {
    /// Parses and validates one feed item (the boundary's rules, `validate.rs`, with today
    /// from the clock). The error names the field, never its value (which may be personal).
    pub fn from_json(raw: Value) -> Result<Entry, String> {
        Self::from_text(&raw.to_string(), Utc::now())
    }

    /// [`Entry::from_json`] from the item's JSON text, with `now` as today. The text is read
    /// once, into its members (each name with its value's text); the typed fields are read
    /// from their values' texts, and `raw` is the members less the personal ones, written
    /// back as they came. An item over [`validate::MAX_ENTRY_BYTES`] is refused unread.
    pub fn from_text(text: &str, now: DateTime<Utc>) -> Result<Entry, String> {
        Self::read(text, None, now)
    }

    /// [`Entry::from_text`] of a page's item: when it holds no personal member, `raw` is the
    /// item as sent, copied rather than written again member by member.
    pub fn from_item(item: &RawValue, now: DateTime<Utc>) -> Result<Entry, String> {
        Self::read(item.get(), Some(item), now)
    }

    fn read(text: &str, sent: Option<&RawValue>, now: DateTime<Utc>) -> Result<Entry, String> {
        if text.len() > validate::MAX_ENTRY_BYTES {
            return Err(format!(
                "entry is larger than {} bytes",
                validate::MAX_ENTRY_BYTES
            ));
        }
        let members: Members = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                "entry is not a JSON object".to_owned()
            } else {
                scrub(&e)
            }
        })?;
        let psp_reference: String = members.required("pspReference")?;
        let time: String = members.required("time")?;
        let ledger_date: Option<String> = members.optional("ledgerDate")?;
        let entry_type: String = members.required("entryType")?;
        let reference: Option<String> = members.optional("reference")?;
        let currency: String = members.required("currency")?;
        let amount: i64 = members.required("amount")?;
        let balance_before: i64 = members.required("balanceBefore")?;
        let balance_after: i64 = members.required("balanceAfter")?;
        let recipient_handle: Option<String> = members.optional("recipientHandle")?;
        let personal = PersonalData {
            name: members.optional("name")?,
            masked_phone_no: members.optional("maskedPhoneNo")?,
            message: members.optional("message")?,
        };

        let time = parse_time(&time).ok_or("field `time` is not an RFC 3339 date-time")?;
        validate::time("time", time, now)?;
        let ledger_date = match ledger_date.as_deref() {
            None | Some("") => None,
            Some(d) => Some(parse_date(d).ok_or("field `ledgerDate` is not a YYYY-MM-DD date")?),
        };
        if let Some(d) = ledger_date {
            validate::date("ledgerDate", d, now)?;
        }
        validate::identifier("pspReference", &psp_reference, validate::MAX_ID)?;
        if entry_type.is_empty()
            || entry_type.len() > 64
            || !entry_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(
                "field `entryType` must be 1 to 64 lowercase letters, digits and '-'".to_owned(),
            );
        }
        validate::currency("currency", &currency)?;
        validate::minor("amount", amount)?;
        validate::minor("balanceBefore", balance_before)?;
        validate::minor("balanceAfter", balance_after)?;
        if let Some(r) = &reference {
            validate::text("reference", r, validate::MAX_TEXT, false)?;
        }
        if let Some(h) = recipient_handle.as_deref().filter(|h| !h.is_empty()) {
            validate::handle("recipientHandle", h)?;
        }
        for (field, value) in [
            ("name", &personal.name),
            ("maskedPhoneNo", &personal.masked_phone_no),
            ("message", &personal.message),
        ] {
            if let Some(v) = value {
                validate::text(field, v, validate::MAX_TEXT, true)?;
            }
        }
        Ok(Entry {
            psp_reference,
            time,
            ledger_date,
            entry_type,
            reference: reference.filter(|r| !r.is_empty()),
            currency,
            amount,
            balance_before,
            balance_after,
            recipient_handle: recipient_handle.filter(|r| !r.is_empty()),
            personal,
            raw: match sent {
                Some(sent) if !members.has_any(&PERSONAL_FIELDS) => sent.to_owned(),
                _ => members.without(&PERSONAL_FIELDS)?,
            },
        })
    }

    /// `raw` as a JSON tree, to compare with a stored entry's (member order and spacing do
    /// not count).
    pub fn raw_value(&self) -> Value {
        serde_json::from_str(self.raw.get()).expect("an entry's raw text is JSON")
    }

    /// The entry type with the payout spellings made one (`scheduled-for-payout` is the 2023
    /// name of `payout-scheduled`).
    pub fn canonical_type(&self) -> &str {
        canonical_entry_type(&self.entry_type)
    }

    /// The entry key: SHA-256 over the fields that define the entry's effect on its account
    /// (canonical type, pspReference, time in UTC microseconds, amount, balances), so that the
    /// same entry served twice, or by overlapping pages, is stored once. Scoped by (ledger,
    /// topic) in the database. Fields Vipps may add to history later are not part of it.
    pub fn key(&self) -> [u8; 32] {
        // Written straight into the hash, not first into a string (a first sync hashes
        // hundreds of thousands of entries).
        let mut hash = Sha256::new();
        let written = write!(
            hash,
            "v1\n{}\n{}\n{}\n{}\n{}\n{}",
            self.canonical_type(),
            self.psp_reference,
            self.time.timestamp_micros(),
            self.amount,
            self.balance_before,
            self.balance_after
        );
        // The hash takes every byte: writing to it cannot fail.
        debug_assert!(written.is_ok());
        hash.finalize().into()
    }
}

/// `scheduled-for-payout` and `payout-scheduled` are one entry type.
pub fn canonical_entry_type(entry_type: &str) -> &str {
    match entry_type {
        "scheduled-for-payout" => "payout-scheduled",
        other => other,
    }
}

/// Parses RFC 3339 and the `+0200` offset form the 2023 docs show, with any number of
/// fractional digits, into UTC truncated to microseconds.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let parsed = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t,
        Err(_) => parse_with(s, &OFFSET_TIME)?.to_datetime().ok()?,
    };
    Some(parsed.with_timezone(&Utc).trunc_subsecs(6))
}

/// A `YYYY-MM-DD` date, as `NaiveDate::parse_from_str(s, "%Y-%m-%d")` reads it.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    parse_with(s, &DATE)?.to_naive_date().ok()
}

/// `s` read by `items`. chrono's `parse_from_str` reads its format string again on every
/// call: a few percent of the daemon's time in a first sync (a date and often a time per entry).
fn parse_with(s: &str, items: &[Item<'static>]) -> Option<Parsed> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, items.iter()).ok()?;
    Some(parsed)
}

/// The format strings, read once.
static DATE: LazyLock<Vec<Item<'static>>> =
    LazyLock::new(|| StrftimeItems::new("%Y-%m-%d").collect());
static OFFSET_TIME: LazyLock<Vec<Item<'static>>> =
    LazyLock::new(|| StrftimeItems::new("%Y-%m-%dT%H:%M:%S%.f%z").collect());

/// A serde error without the offending value (which could be personal data).
fn scrub(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return format!("missing field `{field}`");
    }
    super::members::without_value(&msg)
        .unwrap_or_else(|| "entry does not match the documented schema".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "pspReference": "32212390715", "time": "2024-04-05T07:19:26.528092Z",
            "ledgerDate": "2024-04-05", "entryType": "capture", "reference": "10113143347",
            "currency": "DKK", "amount": 20000, "recipientHandle": "DK:90601",
            "balanceAfter": 110000, "balanceBefore": 90000,
            "name": "Kari", "maskedPhoneNo": "xxxx 1234", "message": "takk", "newField": 1
        })
    }

    #[test]
    fn an_entry_keeps_unknown_fields_and_drops_personal_ones_from_raw() {
        let e = Entry::from_json(sample()).unwrap();
        assert_eq!(e.amount, 20000);
        let raw = e.raw_value();
        assert_eq!(raw["newField"], 1);
        assert!(
            PERSONAL_FIELDS.iter().all(|f| raw.get(f).is_none()),
            "{raw}"
        );
        assert_eq!(e.personal.name.as_deref(), Some("Kari"));
    }

    #[test]
    fn dates_and_offset_times_read_as_chrono_reads_their_format_strings() {
        for s in [
            "2024-04-05",
            "2024-4-5",
            "2024-04-05 ",
            " 2024-04-05",
            "2024-02-30",
            "24-04-05",
            "2024-04-05T00:00:00Z",
            "",
            "+2024-04-05",
            "2024/04/05",
        ] {
            assert_eq!(
                parse_date(s),
                NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                "{s:?}"
            );
        }
        for s in [
            "2022-10-01T16:33:00.824993+0200",
            "2022-10-01T16:33:00+0200",
            "2022-10-01T16:33:00.8+02:00",
            "2022-10-01T16:33:00.824993",
            "2022-10-01 16:33:00+0200",
            "2022-10-01T25:33:00+0200",
            "",
        ] {
            let chrono = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
                .ok()
                .map(|t| t.with_timezone(&Utc).trunc_subsecs(6));
            assert_eq!(parse_time(s), chrono, "{s:?}");
        }
    }

    #[test]
    fn a_page_item_is_kept_as_sent_unless_personal_members_are_taken_out() {
        let now = Utc::now();
        let with_payer = serde_json::value::to_raw_value(&sample()).unwrap();
        let raw = Entry::from_item(&with_payer, now).unwrap().raw_value();
        assert!(
            PERSONAL_FIELDS.iter().all(|f| raw.get(f).is_none()),
            "{raw}"
        );
        assert_eq!(raw["newField"], 1);
        let mut no_payer = sample();
        for f in PERSONAL_FIELDS {
            no_payer.as_object_mut().unwrap().remove(f);
        }
        let text = format!(" {} ", no_payer.to_string().replace(',', ", "));
        let item: &RawValue = serde_json::from_str(&text).unwrap();
        assert_eq!(Entry::from_item(item, now).unwrap().raw.get(), item.get());
    }

    #[test]
    fn offset_times_and_long_fractions_normalise_to_utc_micros() {
        let a = parse_time("2022-10-01T16:33:00.824993+0200").unwrap();
        let b = parse_time("2022-10-01T14:33:00.8249939Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.timestamp_subsec_micros(), 824993);
    }

    #[test]
    fn an_entry_key_is_the_hash_it_has_always_been() {
        // Stored keys never change: SHA-256 of "v1\ncapture\n32212390715\n1712301566528092\n
        // 20000\n90000\n110000", as computed before this test was written.
        let key = Entry::from_json(sample()).unwrap().key();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "937bc0d080ffde298e3dde2757dbde359ea0dc064d3973479aa589fee6008940"
        );
    }

    #[test]
    fn both_payout_spellings_give_the_same_key() {
        let mut a = sample();
        a["entryType"] = json!("scheduled-for-payout");
        let mut b = sample();
        b["entryType"] = json!("payout-scheduled");
        b["reference"] = json!("other text");
        let (a, b) = (Entry::from_json(a).unwrap(), Entry::from_json(b).unwrap());
        assert_eq!(a.key(), b.key());
        let mut c = sample();
        c["amount"] = json!(20001);
        assert_ne!(Entry::from_json(c).unwrap().key(), a.key());
    }

    #[test]
    fn a_bad_entry_is_rejected_naming_the_field_but_not_the_value() {
        let mut v = sample();
        v["amount"] = json!("Kari Nordmann");
        let err = Entry::from_json(v).unwrap_err();
        assert!(err.contains("expected i64"), "{err}");
        assert!(!err.contains("Kari"), "{err}");
        let mut v = sample();
        v.as_object_mut().unwrap().remove("balanceAfter");
        assert_eq!(
            Entry::from_json(v).unwrap_err(),
            "missing field `balanceAfter`"
        );
    }
}
