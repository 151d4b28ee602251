//! `[[exporters]]`: what `run` exports once ledger dates close and reconcile cleanly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{check_url, inline_or_file, ConfigError};

/// The format of records written by `export` and the file exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated, with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// What CSV output does with a text cell that a spreadsheet would run as a formula (it
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return, and is not a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvFormulas {
    /// Put a `'` before it, so it opens as text (OWASP's advice for CSV files).
    #[default]
    Neutralise,
    /// Write it as it is, for importers that read raw values (not spreadsheets).
    Raw,
}

/// A webhook's URL. It may carry credentials (a user and password, a `?token=`), so it is
/// shown (`Display`, `Debug`, logs, `export_log.target`, errors) without userinfo, query and
/// fragment; only the request itself gets it whole, through [`WebhookUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    pub fn new(url: Url) -> Self {
        WebhookUrl(url)
    }

    /// The whole URL, credentials included: for sending the request only.
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::redact_url(&self.0))
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookUrl({self})")
    }
}

/// What an exporter produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExporterKind {
    /// One file per (ledger, date): its entries, CSV or JSON lines.
    Entries,
    /// One file per (ledger, date): entries and amounts per topic and entry type.
    Summary,
    /// One file per (ledger, date): a balanced voucher on the configured accounts.
    Journal,
    /// One file per (ledger, date): an ISO 20022 camt.053.001.02 statement of the funds feed.
    Camt053,
    /// One file per (ledger, date): its journal voucher as GBAT10, numbered once and for good.
    Gbat10,
    /// One signed POST per (ledger, date) of its summary and entries as JSON.
    Webhook,
    /// One file per payout, once every ledger date it covers closed: its transactions (gross,
    /// fees charged, net), its fees retained and other movements, and the payout; CSV or JSON
    /// lines.
    Payouts,
    /// One Vipps settlement report (SettlementReport-3.0 XML) per payout, once every ledger
    /// date it covers closed.
    SettlementXml,
    /// The same settlement report as the CSV Vipps delivered beside the XML, per payout.
    SettlementCsv,
    /// One signed POST per payout, once every ledger date it covers closed: the payout and
    /// its lines as JSON.
    PayoutWebhook,
}

impl ExporterKind {
    /// Books on accounts (journal vouchers, GBAT10): `accounts`, `booking`, `fees_invoiced`,
    /// `departments` and `projects` apply.
    pub fn books(self) -> bool {
        matches!(self, ExporterKind::Journal | ExporterKind::Gbat10)
    }

    /// Delivers per payout rather than per ledger date.
    pub fn per_payout(self) -> bool {
        matches!(
            self,
            ExporterKind::Payouts
                | ExporterKind::SettlementXml
                | ExporterKind::SettlementCsv
                | ExporterKind::PayoutWebhook
        )
    }

    /// Posts to a URL rather than writing files.
    pub fn is_webhook(self) -> bool {
        matches!(self, ExporterKind::Webhook | ExporterKind::PayoutWebhook)
    }

    /// Writes its own format (XML, GBAT10, the settlement CSV): `format` does not apply.
    pub fn has_own_format(self) -> bool {
        matches!(
            self,
            ExporterKind::Camt053
                | ExporterKind::Gbat10
                | ExporterKind::SettlementXml
                | ExporterKind::SettlementCsv
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExporterKind::Entries => "entries",
            ExporterKind::Summary => "summary",
            ExporterKind::Journal => "journal",
            ExporterKind::Camt053 => "camt053",
            ExporterKind::Gbat10 => "gbat10",
            ExporterKind::Webhook => "webhook",
            ExporterKind::Payouts => "payouts",
            ExporterKind::SettlementXml => "settlement-xml",
            ExporterKind::SettlementCsv => "settlement-csv",
            ExporterKind::PayoutWebhook => "payout-webhook",
        }
    }
}

/// Where an exporter delivers.
#[derive(Debug, Clone)]
pub enum ExporterTarget {
    /// Files named `<ledger>_<date>_<kind>.<ext>` in a directory, written atomically
    /// (README, "Exporting": how a ledger id becomes a file name).
    Directory {
        path: PathBuf,
        format: Format,
        csv_formulas: CsvFormulas,
    },
    /// A URL receiving signed POSTs.
    Webhook {
        url: WebhookUrl,
        secret: SecretString,
    },
}

/// One `[[exporters]]` table, checked.
#[derive(Debug, Clone)]
pub struct ExporterSettings {
    /// Unique; recorded in `export_log`, so renaming an exporter exports everything again.
    pub name: String,
    pub kind: ExporterKind,
    /// Only ledgers this partner holds or held a grant for.
    pub partner: Option<String>,
    /// Only these ledgers (empty: all, or the partner's).
    pub ledgers: Vec<String>,
    /// No ledger date before this one is exported (history the books already hold).
    pub from: Option<NaiveDate>,
    pub target: ExporterTarget,
    /// The journal's chart of accounts (the built-in one, overridden by `[exporters.accounts]`).
    pub accounts: Accounts,
}

/// The journal's accounts: one per feed for the balance held at Vipps MobilePay, one per
/// entry type for its counterpart, and a fallback for entry types not mapped, so an entry type
/// Vipps adds tomorrow is booked (on a suspense account) rather than dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// The `funds` feed's balance: what Vipps MobilePay owes the merchant.
    pub funds: String,
    /// The `fees` feed's balance: what the merchant owes Vipps MobilePay.
    pub fees: String,
    /// Entry types without a mapping.
    pub fallback: String,
    /// In `settlement` booking: the counterpart of the sales entries (captures, refunds,
    /// disputes), where the shop's or POS's own booking of the sale left the receivable.
    pub clearing: String,
    /// Counterpart account by entry type.
    pub by_entry_type: BTreeMap<String, String>,
    pub booking: Booking,
    pub fees_invoiced: FeesInvoiced,
    /// Department per sales unit (recipient handle, `api:123456` or `NO:92273`): sales units
    /// sharing a ledger get lines of their own (`[exporters.departments]`).
    pub departments: BTreeMap<String, String>,
    /// Project per sales unit (`[exporters.projects]`).
    pub projects: BTreeMap<String, String>,
}

/// How a journal books the sales entries (README, "Exporting": booking modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Booking {
    /// Gross sales from the captures: captures and refunds on the sales accounts.
    #[default]
    Gross,
    /// Only the settlement: the shop or POS already booked each sale against a receivable,
    /// so captures, refunds and disputes clear it (`clearing`), never the sales accounts.
    Settlement,
}

/// What a journal does with `fees-invoiced` entries (gross settlement merchants are sent
/// their fees as an invoice, which is booked on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeesInvoiced {
    /// Book them like any entry (on their counterpart, 2400 in the built-in chart).
    #[default]
    Book,
    /// Leave them out: the invoice is booked against the fees account (2471 in the built-in
    /// chart), which clears what the capture fees put there, and nothing is booked twice.
    Skip,
}

/// Entry types that `settlement` booking puts on `clearing`.
const SALES_TYPES: [&str; 4] = [
    "capture",
    "refund",
    "retained-disputed-capture",
    "returned-disputed-capture",
];

/// The built-in chart, after the Norwegian standard chart of accounts (NS 4102); the first two
/// digits of each account are its SAF-T standard account (the two-digit grouping of
/// Skatteetaten's "Norwegian SAF-T Financial data" documentation, which follows NS 4102's
/// account groups): 15 short-term receivables, 19 bank deposits and cash, 24 trade payables,
/// 30 sales revenue, 77 other operating expenses. Every key can be overridden in
/// `[exporters.accounts]`.
const DEFAULT_ACCOUNTS: &[(&str, &str)] = &[
    ("funds", "1571"),
    ("fees", "2471"),
    ("fallback", "1579"),
    ("clearing", "1500"),
    ("capture", "3000"),
    ("refund", "3000"),
    ("fees-retained", "1572"),
    ("payout-scheduled", "1940"),
    ("scheduled-for-payout", "1940"),
    ("payout-aborted", "1940"),
    ("retained-disputed-capture", "3080"),
    ("returned-disputed-capture", "3080"),
    ("correction", "1579"),
    ("top-up", "1920"),
    ("credit-note", "1579"),
    ("capture-fee", "7770"),
    ("service-fee", "7770"),
    ("fees-invoiced", "2400"),
];

impl Default for Accounts {
    fn default() -> Self {
        Accounts::with_overrides(&HashMap::new())
    }
}

impl Accounts {
    fn with_overrides(overrides: &HashMap<String, String>) -> Self {
        let mut all: BTreeMap<String, String> = DEFAULT_ACCOUNTS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for (k, v) in overrides {
            all.insert(k.clone(), v.clone());
        }
        let funds = all.remove("funds").unwrap_or_default();
        let fees = all.remove("fees").unwrap_or_default();
        let fallback = all.remove("fallback").unwrap_or_default();
        let clearing = all.remove("clearing").unwrap_or_default();
        Accounts {
            funds,
            fees,
            fallback,
            clearing,
            by_entry_type: all,
            booking: Booking::default(),
            fees_invoiced: FeesInvoiced::default(),
            departments: BTreeMap::new(),
            projects: BTreeMap::new(),
        }
    }

    /// The balance account of a feed.
    pub fn balance(&self, topic: &str) -> &str {
        if topic == "fees" {
            &self.fees
        } else {
            &self.funds
        }
    }

    /// The counterpart account of an entry type: `clearing` for sales entries in
    /// `settlement` booking, else its own account, or the fallback.
    pub fn counterpart(&self, entry_type: &str) -> &str {
        if self.booking == Booking::Settlement && SALES_TYPES.contains(&entry_type) {
            return &self.clearing;
        }
        self.by_entry_type
            .get(entry_type)
            .map_or(&self.fallback, String::as_str)
    }

    /// The department and project of a sales unit's lines (empty: none configured).
    pub fn dimensions(&self, recipient_handle: Option<&str>) -> (&str, &str) {
        fn of<'a>(map: &'a BTreeMap<String, String>, handle: Option<&str>) -> &'a str {
            handle.and_then(|h| map.get(h)).map_or("", String::as_str)
        }
        (
            of(&self.departments, recipient_handle),
            of(&self.projects, recipient_handle),
        )
    }

    /// Entries of this type are left out of the journal (`fees_invoiced = "skip"`).
    pub fn skips(&self, entry_type: &str) -> bool {
        self.fees_invoiced == FeesInvoiced::Skip && entry_type == "fees-invoiced"
    }
}

/// `[[exporters]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExporter {
    #[serde(default)]
    name: String,
    /// Parsed in [`resolve`], so that a mistake lists the kinds there are.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    partner: Option<String>,
    #[serde(default)]
    ledgers: Vec<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    csv_formulas: Option<CsvFormulas>,
    #[serde(default)]
    directory: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    secret: Option<SecretString>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    accounts: Option<HashMap<String, String>>,
    #[serde(default)]
    departments: Option<BTreeMap<String, String>>,
    #[serde(default)]
    projects: Option<BTreeMap<String, String>>,
    #[serde(default)]
    booking: Option<Booking>,
    #[serde(default)]
    fees_invoiced: Option<FeesInvoiced>,
}

/// `kind`, or an error naming the key and listing the kinds there are.
fn parse_kind(at: &str, text: &str) -> Result<ExporterKind, ConfigError> {
    use clap::ValueEnum as _;
    ExporterKind::from_str(text.trim(), false).map_err(|_| {
        let kinds: Vec<&str> = ExporterKind::value_variants()
            .iter()
            .map(|k| k.as_str())
            .collect();
        let what = if text.trim().is_empty() {
            "is missing".to_owned()
        } else {
            format!("{text:?} is not a kind of exporter")
        };
        ConfigError::key(
            &format!("{at}.kind"),
            format!("{what}: use one of {}", kinds.join(", ")),
        )
    })
}

pub(super) fn resolve(
    raw: Vec<RawExporter>,
    credentials: Option<&Path>,
) -> Result<Vec<ExporterSettings>, ConfigError> {
    let mut out: Vec<ExporterSettings> = Vec::with_capacity(raw.len());
    for (i, e) in raw.into_iter().enumerate() {
        let at = format!("exporters[{i}]");
        let name = e.name.trim().to_owned();
        if name.is_empty() {
            return Err(ConfigError::key(&format!("{at}.name"), "is missing"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::key(
                &format!("{at}.name"),
                format!("{name:?}: use letters, digits, '-' and '_' only"),
            ));
        }
        let at = format!("{at} ({name})");
        let kind = parse_kind(&at, &e.kind)?;
        if out.iter().any(|x| x.name == name) {
            return Err(ConfigError::key(&format!("{at}.name"), "is used twice"));
        }
        if e.partner.is_some() && !e.ledgers.is_empty() {
            return Err(ConfigError::key(
                &format!("{at}.ledgers"),
                "set either partner or ledgers, not both",
            ));
        }
        let from = match e.from.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                ConfigError::key(
                    &format!("{at}.from"),
                    format!("{text:?} is not a date (YYYY-MM-DD)"),
                )
            })?),
        };
        if e.accounts.is_some() && !kind.books() {
            return Err(ConfigError::key(
                &format!("{at}.accounts"),
                "only a journal or gbat10 exporter has accounts",
            ));
        }
        if (e.booking.is_some() || e.fees_invoiced.is_some()) && !kind.books() {
            let key = if e.booking.is_some() {
                "booking"
            } else {
                "fees_invoiced"
            };
            return Err(ConfigError::key(
                &format!("{at}.{key}"),
                "only a journal or gbat10 exporter books on accounts",
            ));
        }
        if (e.departments.is_some() || e.projects.is_some()) && !kind.books() {
            let key = if e.departments.is_some() {
                "departments"
            } else {
                "projects"
            };
            return Err(ConfigError::key(
                &format!("{at}.{key}"),
                "only a journal or gbat10 exporter has departments and projects",
            ));
        }
        // GBAT10 takes departments of at most 4 digits and projects of at most 6.
        for (key, map, digits) in [
            ("departments", &e.departments, 4),
            ("projects", &e.projects, 6),
        ] {
            for (handle, value) in map.iter().flatten() {
                if value.is_empty()
                    || value.len() > digits
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(ConfigError::key(
                        &format!("{at}.{key}.{handle}"),
                        format!("{value:?} is not a number of 1 to {digits} digits"),
                    ));
                }
            }
        }
        let mut accounts = Accounts::with_overrides(&e.accounts.unwrap_or_default());
        accounts.booking = e.booking.unwrap_or_default();
        accounts.fees_invoiced = e.fees_invoiced.unwrap_or_default();
        accounts.departments = e.departments.unwrap_or_default();
        accounts.projects = e.projects.unwrap_or_default();
        for (key, account) in [
            ("funds", &accounts.funds),
            ("fees", &accounts.fees),
            ("fallback", &accounts.fallback),
            ("clearing", &accounts.clearing),
        ]
        .into_iter()
        .chain(accounts.by_entry_type.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if account.trim().is_empty() {
                return Err(ConfigError::key(
                    &format!("{at}.accounts.{key}"),
                    "is empty: name an account",
                ));
            }
        }
        let target = if kind.is_webhook() {
            if e.directory.is_some() || e.format.is_some() || e.csv_formulas.is_some() {
                return Err(ConfigError::key(
                    &format!("{at}.directory"),
                    "a webhook exporter posts JSON to `url`; it has no directory, format or csv_formulas",
                ));
            }
            let Some(url) = e.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
                return Err(ConfigError::key(&format!("{at}.url"), "is missing"));
            };
            let url = Url::parse(url).map_err(|err| {
                ConfigError::key(&format!("{at}.url"), format!("is not a URL: {err}"))
            })?;
            check_url(&format!("{at}.url"), &url)?;
            let secret = inline_or_file(
                &at,
                "secret",
                e.secret,
                e.secret_file,
                credentials,
                "is missing (or set secret_file): it signs every request",
            )?;
            if secret.expose_secret().len() < 16 {
                return Err(ConfigError::key(
                    &format!("{at}.secret"),
                    "is shorter than 16 characters",
                ));
            }
            ExporterTarget::Webhook {
                url: WebhookUrl::new(url),
                secret,
            }
        } else {
            if e.url.is_some() || e.secret.is_some() || e.secret_file.is_some() {
                return Err(ConfigError::key(
                    &format!("{at}.url"),
                    "only a webhook exporter has url and secret",
                ));
            }
            let Some(path) = e.directory else {
                return Err(ConfigError::key(&format!("{at}.directory"), "is missing"));
            };
            if kind.has_own_format() && e.format.is_some() {
                return Err(ConfigError::key(
                    &format!("{at}.format"),
                    "camt053 and settlement-xml are always XML, gbat10 always GBAT10, \
                     settlement-csv always the settlement report's CSV",
                ));
            }
            let format = e.format.unwrap_or(Format::Csv);
            let writes_csv = match kind {
                ExporterKind::SettlementCsv => true,
                kind => format == Format::Csv && !kind.has_own_format(),
            };
            if e.csv_formulas.is_some() && !writes_csv {
                return Err(ConfigError::key(
                    &format!("{at}.csv_formulas"),
                    "applies to CSV output only",
                ));
            }
            ExporterTarget::Directory {
                path,
                format,
                csv_formulas: e.csv_formulas.unwrap_or_default(),
            }
        };
        out.push(ExporterSettings {
            name,
            kind,
            partner: e.partner,
            ledgers: e.ledgers,
            from,
            target,
            accounts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Accounts;

    #[test]
    fn unknown_entry_types_land_on_the_fallback_account() {
        let accounts = Accounts::default();
        assert_eq!(accounts.counterpart("capture"), "3000");
        assert_eq!(accounts.counterpart("brand-new-type"), "1579");
        assert_eq!(accounts.balance("fees"), "2471");
        assert_eq!(accounts.balance("funds"), "1571");
    }
}
