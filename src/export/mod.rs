//! `export`: a ledger's (or a partner's) entries, their per-date summary or journal vouchers,
//! for a range of ledger dates, as CSV or JSON lines, or a camt.053 statement, to a file
//! (written atomically: a temporary name, then a rename) or to stdout. Amounts come both in
//! minor units and as decimals in the currency. The scheduled exporters of `run` are in
//! [`scheduled`]; [`xsd`] validates XML documents (camt.053 statements, Vipps settlement
//! reports) against the official schemas, in process.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use sqlx::PgPool;

use crate::config::{Accounts, CsvFormulas};
use crate::store::export_rows::{self as rows, ExportEntryRow, ExportFilter, ExportSummaryRow};

pub mod camt;
pub mod gbat10;
pub mod journal;
pub mod payouts;
pub mod scheduled;
pub mod settlement;
pub mod webhook;
mod xml;
pub mod xsd;

/// Output format (a setting of exporters, so it lives with the settings).
pub use crate::config::Format;

/// An exported entry; the column names are documented in README.md, "Exporting".
#[derive(Debug, Serialize)]
pub struct EntryRecord {
    pub ledger_id: String,
    pub topic: String,
    pub seq: i64,
    pub ledger_date: Option<String>,
    pub time: String,
    pub entry_type: String,
    pub psp_reference: String,
    pub reference: Option<String>,
    pub currency: String,
    pub amount_minor: i64,
    pub amount: String,
    pub balance_before_minor: i64,
    pub balance_before: String,
    pub balance_after_minor: i64,
    pub balance_after: String,
    pub recipient_handle: Option<String>,
}

/// An exported per-date summary line.
#[derive(Debug, Serialize)]
pub struct SummaryRecord {
    pub ledger_id: String,
    pub topic: String,
    pub ledger_date: Option<String>,
    pub entry_type: String,
    pub currency: String,
    pub entries: i64,
    /// Exact: a sum of `i64` amounts, in `i128`.
    pub amount_minor: i128,
    pub amount: String,
}

/// A line of the period-end report (`--kind period`): a feed's `opening` balance, its
/// `movement` per entry type, its `closing` balance. On `funds` the closing balance is what
/// Vipps MobilePay owed the merchant and had not paid out at the period's end.
#[derive(Debug, Serialize)]
pub struct PeriodRecord {
    pub ledger_id: String,
    pub topic: String,
    pub from: String,
    pub to: String,
    pub line: String,
    pub entry_type: Option<String>,
    pub entries: i64,
    pub currency: String,
    pub amount_minor: i128,
    pub amount: String,
}

/// Digits after the decimal point for a currency (ISO 4217); 2 unless known otherwise.
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "ISK" | "JPY" | "KRW" | "CLP" | "VND" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// Minor units as a decimal string in the currency: 49900 NOK is "499.00", -5 is "-0.05".
pub fn decimal(minor: impl Into<i128>, currency: &str) -> String {
    let minor: i128 = minor.into();
    let digits = minor_digits(currency);
    if digits == 0 {
        return minor.to_string();
    }
    let scale = 10u128.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

impl From<ExportEntryRow> for EntryRecord {
    fn from(r: ExportEntryRow) -> Self {
        EntryRecord {
            amount: decimal(r.amount, &r.currency),
            balance_before: decimal(r.balance_before, &r.currency),
            balance_after: decimal(r.balance_after, &r.currency),
            ledger_date: r.ledger_date.map(|d| d.format("%Y-%m-%d").to_string()),
            time: r.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ledger_id: r.ledger_id,
            topic: r.topic,
            seq: r.seq,
            entry_type: r.entry_type,
            psp_reference: r.psp_reference,
            reference: r.reference,
            amount_minor: r.amount,
            balance_before_minor: r.balance_before,
            balance_after_minor: r.balance_after,
            recipient_handle: r.recipient_handle,
            currency: r.currency,
        }
    }
}

impl From<ExportSummaryRow> for SummaryRecord {
    fn from(r: ExportSummaryRow) -> Self {
        SummaryRecord {
            amount: decimal(r.amount_sum.0, &r.currency),
            ledger_date: r.ledger_date.map(|d| d.format("%Y-%m-%d").to_string()),
            ledger_id: r.ledger_id,
            topic: r.topic,
            entry_type: r.entry_type,
            entries: r.entries,
            amount_minor: r.amount_sum.0,
            currency: r.currency,
        }
    }
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Every entry.
    Entries,
    /// Counts and sums per (ledger, topic, date, entry type).
    Summary,
    /// One balanced voucher per ledger date on the journal's accounts.
    Journal,
    /// A camt.053.001.02 statement of one ledger's funds on one date (--ledger once,
    /// --from = --to).
    Camt053,
    /// One record per payout whose last ledger date is in the range: paid out, bank
    /// account, and what it settles (captures, refunds, fees charged and retained).
    Payouts,
    /// The Vipps settlement report (SettlementReport-3.0 XML) of the payouts whose last
    /// ledger date is in the range: one document, a settlement per payout.
    SettlementXml,
    /// The same report as the CSV Vipps delivered beside the XML.
    SettlementCsv,
    /// The journal's vouchers as GBAT10 (Tripletex, Visma eAccounting, PowerOffice Go,
    /// 24SevenOffice), numbered once and for good.
    Gbat10,
    /// The period-end report: per ledger and feed, the opening balance, the movement per
    /// entry type and the closing balance (on funds: owed and not yet paid out).
    Period,
}

/// Writes the export to `output` (atomically) or to stdout; returns the number of records
/// (entries, summary rows, journal lines or statement entries).
pub async fn export(
    pool: &PgPool,
    filter: &ExportFilter,
    kind: Kind,
    format: Format,
    csv_formulas: CsvFormulas,
    accounts: &Accounts,
    output: Option<&Path>,
) -> anyhow::Result<u64> {
    if kind == Kind::Camt053 {
        let ([ledger], true) = (filter.ledgers.as_slice(), filter.from == filter.to) else {
            anyhow::bail!(
                "--kind camt053 writes one statement: give --ledger once and the same --from and --to \
                 (a scheduled camt053 exporter writes one file per ledger date)"
            );
        };
        let rows = rows::entries_on(pool, ledger, filter.from, filter.partner.as_deref()).await?;
        let xml = scheduled::statement(pool, ledger, filter.from, &rows).await?;
        let n = rows.iter().filter(|r| r.topic == "funds").count() as u64;
        write_output(output, |out| Ok(out.write_all(&xml)?))?;
        return Ok(n);
    }
    if matches!(kind, Kind::SettlementXml | Kind::SettlementCsv) {
        let csv = (kind == Kind::SettlementCsv).then_some(csv_formulas);
        let (xml, n) = settlement_report(pool, filter, csv).await?;
        write_output(output, |out| Ok(out.write_all(&xml)?))?;
        return Ok(n);
    }
    let n = match output {
        None => {
            write_all(
                pool,
                filter,
                kind,
                (format, csv_formulas),
                accounts,
                std::io::stdout().lock(),
            )
            .await?
        }
        Some(path) => {
            let mut tmp = temporary_beside(path)?;
            let file = std::io::BufWriter::new(tmp.as_file_mut());
            let n = write_all(pool, filter, kind, (format, csv_formulas), accounts, file).await?;
            persist(tmp, path)?;
            n
        }
    };
    Ok(n)
}

/// The settlement report of the payouts in `filter` (XML, or `csv`), and how many payouts it
/// holds.
async fn settlement_report(
    pool: &PgPool,
    filter: &ExportFilter,
    csv: Option<CsvFormulas>,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let payouts = rows::payouts(pool, filter).await?;
    settlement_document(pool, payouts, csv).await
}

/// The settlement report (XML, or CSV with `csv` saying what becomes of formula-like cells)
/// of `payouts` (by ledger), and how many settlements it holds. A payout the report cannot
/// hold is a [`settlement::SettlementError`] in the error's chain.
pub(crate) async fn settlement_document(
    pool: &PgPool,
    payouts: Vec<rows::PayoutRow>,
    csv: Option<CsvFormulas>,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let mut by_ledger: Vec<(String, Vec<rows::PayoutRow>)> = Vec::new();
    for p in payouts {
        match by_ledger.last_mut() {
            Some((ledger, list)) if *ledger == p.ledger_id => list.push(p),
            _ => by_ledger.push((p.ledger_id.clone(), vec![p])),
        }
    }
    let mut loaded = Vec::new();
    for (ledger, list) in &by_ledger {
        let references: Vec<String> = list.iter().map(|p| p.payout_reference.clone()).collect();
        let party = rows::ledger_party(pool, ledger)
            .await?
            .with_context(|| format!("ledger {ledger} is not in the database"))?;
        let transactions = rows::payout_transactions(pool, ledger, &references).await?;
        loaded.push((ledger, list, party, transactions));
    }
    let ledgers: Vec<settlement::LedgerPayouts<'_>> = loaded
        .iter()
        .map(
            |(ledger, list, party, transactions)| settlement::LedgerPayouts {
                ledger_id: ledger,
                party,
                payouts: list,
                transactions,
            },
        )
        .collect();
    let n = ledgers.iter().map(|l| l.payouts.len() as u64).sum();
    let document = match csv {
        Some(formulas) => settlement::write_csv(&ledgers, formulas)?,
        None => settlement::write(&ledgers)?,
    };
    Ok((document, n))
}

/// A temporary file in the directory of `path`, to be renamed onto it.
fn temporary_beside(path: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> anyhow::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("renaming the export to {}", path.display()))?;
    Ok(())
}

/// Writes bytes produced by `f` to stdout or atomically to `output`.
fn write_output(
    output: Option<&Path>,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match output {
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            f(&mut lock)?;
            lock.flush()?;
        }
        Some(path) => {
            let mut tmp = temporary_beside(path)?;
            f(tmp.as_file_mut())?;
            persist(tmp, path)?;
        }
    }
    Ok(())
}

async fn write_all<W: Write>(
    pool: &PgPool,
    filter: &ExportFilter,
    kind: Kind,
    (format, csv_formulas): (Format, CsvFormulas),
    accounts: &Accounts,
    out: W,
) -> anyhow::Result<u64> {
    if kind == Kind::Gbat10 {
        return write_gbat10(pool, filter, accounts, out).await;
    }
    let mut sink = Sink::new(format, csv_formulas, out);
    let mut n = 0;
    match kind {
        Kind::Summary => {
            let mut stream = rows::summaries(pool, filter);
            while let Some(row) = stream.try_next().await? {
                sink.write(&SummaryRecord::from(row))?;
                n += 1;
            }
        }
        Kind::Entries => {
            let mut stream = rows::entries(pool, filter);
            while let Some(row) = stream.try_next().await? {
                sink.write(&EntryRecord::from(row))?;
                n += 1;
            }
        }
        Kind::Journal => {
            for (ledger, date) in rows::dates_with_entries(pool, filter).await? {
                let rows = rows::entries_on(pool, &ledger, date, filter.partner.as_deref()).await?;
                for line in journal::voucher(&ledger, date, &rows, accounts)? {
                    sink.write(&line)?;
                    n += 1;
                }
            }
        }
        Kind::Period => {
            for r in rows::period(pool, filter).await? {
                sink.write(&PeriodRecord {
                    amount: decimal(r.amount.0, &r.currency),
                    amount_minor: r.amount.0,
                    ledger_id: r.ledger_id,
                    topic: r.topic,
                    from: filter.from.to_string(),
                    to: filter.to.to_string(),
                    line: r.line,
                    entry_type: r.entry_type,
                    entries: r.entries,
                    currency: r.currency,
                })?;
                n += 1;
            }
        }
        Kind::Payouts => {
            for row in rows::payouts(pool, filter).await? {
                sink.write(&payouts::PayoutRecord::from(row))?;
                n += 1;
            }
        }
        Kind::Camt053 | Kind::SettlementXml | Kind::SettlementCsv | Kind::Gbat10 => {
            unreachable!("handled before the sink")
        }
    }
    sink.finish()?;
    Ok(n)
}

/// Every voucher of the range's closed and cleanly reconciled dates as GBAT10 lines (a
/// number is for good, so the voucher must be too: an open date still changes); returns how
/// many lines.
async fn write_gbat10<W: Write>(
    pool: &PgPool,
    filter: &ExportFilter,
    accounts: &Accounts,
    mut out: W,
) -> anyhow::Result<u64> {
    let mut n = 0;
    for (ledger, date) in rows::reconciled_dates(pool, filter).await? {
        let entries = rows::entries_on(pool, &ledger, date, filter.partner.as_deref()).await?;
        let lines = journal::voucher(&ledger, date, &entries, accounts)?;
        if lines.is_empty() {
            continue;
        }
        let number = rows::voucher_number(pool, &ledger, date).await?;
        out.write_all(gbat10::voucher(number, date, &ledger, &lines)?.as_bytes())?;
        n += lines.len() as u64;
    }
    out.flush()?;
    Ok(n)
}

/// CSV (with a header line) or JSON lines.
pub(crate) enum Sink<W: Write> {
    /// Boxed: the CSV writer carries its own buffer and is far larger than a plain `W`.
    Csv(Box<CsvSink<W>>),
    Jsonl(W),
}

/// CSV output whose text cells may be neutralised ([`CsvFormulas`]).
pub(crate) struct CsvSink<W: Write> {
    out: csv::Writer<W>,
    formulas: CsvFormulas,
    /// The header line has been written (with the first record).
    headed: bool,
    /// One record serialised by serde's CSV writer, read back as cells (reused).
    scratch: Vec<u8>,
}

impl<W: Write> Sink<W> {
    pub(crate) fn new(format: Format, formulas: CsvFormulas, out: W) -> Self {
        match format {
            Format::Csv => Sink::Csv(Box::new(CsvSink {
                // Raw: serde's CSV writer as it is, header line included; neutralised: the
                // header line comes from the first record's cells (`CsvSink::write`).
                out: csv::WriterBuilder::new()
                    .has_headers(formulas == CsvFormulas::Raw)
                    .from_writer(out),
                formulas,
                headed: false,
                scratch: Vec::new(),
            })),
            Format::Jsonl => Sink::Jsonl(out),
        }
    }

    pub(crate) fn write<T: Serialize>(&mut self, record: &T) -> anyhow::Result<()> {
        match self {
            Sink::Csv(w) => w.write(record)?,
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, record)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Csv(mut w) => w.out.flush()?,
            Sink::Jsonl(mut w) => w.flush()?,
        }
        Ok(())
    }
}

impl<W: Write> CsvSink<W> {
    fn write<T: Serialize>(&mut self, record: &T) -> anyhow::Result<()> {
        if self.formulas == CsvFormulas::Raw {
            self.out.serialize(record)?;
            return Ok(());
        }
        // serde's CSV writer turns the record into cells (and names the columns); the cells
        // are read back and each text cell neutralised before it is written.
        self.scratch.clear();
        let mut one = csv::WriterBuilder::new()
            .has_headers(!self.headed)
            .from_writer(&mut self.scratch);
        one.serialize(record)?;
        one.flush()?;
        drop(one);
        let mut lines = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(self.scratch.as_slice());
        for line in lines.records() {
            let line = line?;
            self.out
                .write_record(line.iter().map(|cell| neutralise(cell).into_owned()))?;
        }
        self.headed = true;
        Ok(())
    }
}

/// A cell a spreadsheet would run as a formula (it begins with `=`, `+`, `-`, `@`, a tab or
/// a carriage return) gets a leading `'`, so it opens as text; numbers (`-12.50`) stay as
/// they are. OWASP, "CSV Injection".
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_number(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `-12`, `+3.50`: an optional sign, digits, and optionally a point and digits.
fn is_number(cell: &str) -> bool {
    let digits = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && fraction.is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn minor_units_become_decimals_in_the_currency() {
        assert_eq!(decimal(49900, "NOK"), "499.00");
        assert_eq!(decimal(-5, "DKK"), "-0.05");
        assert_eq!(decimal(-123456, "EUR"), "-1234.56");
        assert_eq!(decimal(0, "NOK"), "0.00");
        assert_eq!(decimal(1500, "JPY"), "1500");
        assert_eq!(decimal(i64::MIN, "NOK"), "-92233720368547758.08");
        let beyond_i64 = i128::from(i64::MAX) * 3;
        assert_eq!(decimal(beyond_i64, "NOK"), "276701161105643274.21");
        assert_eq!(decimal(-beyond_i64, "JPY"), "-27670116110564327421");
    }
}
