//! What `export` reads (entries and daily summaries, streamed in order so an export of years
//! of history never sits in memory; payouts, their transactions, the ledger's parties) and
//! the one thing it records: the GBAT10 voucher numbers it gives.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::BoxStream;
use sqlx::PgPool;

/// An entry as exported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportEntryRow {
    pub ledger_id: String,
    pub topic: String,
    pub seq: i64,
    pub ledger_date: Option<NaiveDate>,
    pub time: DateTime<Utc>,
    pub entry_type: String,
    pub psp_reference: String,
    pub reference: Option<String>,
    pub currency: String,
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    pub recipient_handle: Option<String>,
}

/// A `daily_summary` row as exported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportSummaryRow {
    pub ledger_id: String,
    pub topic: String,
    pub ledger_date: Option<NaiveDate>,
    pub entry_type: String,
    pub currency: String,
    pub entries: i64,
    #[sqlx(try_from = "String")]
    pub amount_sum: super::MinorSum,
}

/// What to export: ledgers (empty: all), an optional partner (only what it may see: the
/// consent rule, docs/schema.md), an optional topic, and ledger dates `from..=to`.
#[derive(Debug, Clone)]
pub struct ExportFilter {
    pub ledgers: Vec<String>,
    pub partner: Option<String>,
    pub topic: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// The WHERE clause both queries share (a macro, so the SQL stays one literal).
macro_rules! filter {
    () => {
        concat!(
            " (cardinality($1::text[]) = 0 OR ledger_id = ANY($1))
              AND ($2::text IS NULL OR ",
            consented!("$2", "entries", "synced_at"),
            ")
              AND ($3::text IS NULL OR topic = $3)
              AND ledger_date BETWEEN $4 AND $5 "
        )
    };
}

/// The columns of an [`ExportEntryRow`] (a macro, so each query stays one literal).
macro_rules! entry_columns {
    () => {
        "SELECT ledger_id, topic, seq, ledger_date, time, entry_type, psp_reference,
             reference, currency, amount, balance_before, balance_after, recipient_handle
         FROM entries WHERE"
    };
}

/// The entries matching `filter`, by ledger, topic and `seq`.
pub fn entries<'a>(
    pool: &'a PgPool,
    filter: &'a ExportFilter,
) -> BoxStream<'a, sqlx::Result<ExportEntryRow>> {
    filtered(
        pool,
        filter,
        concat!(
            entry_columns!(),
            filter!(),
            "ORDER BY ledger_id, topic, seq"
        ),
    )
}

/// Every entry of one ledger date, both topics, by topic and `seq` (of those `partner` may
/// see, if given): what a journal voucher, a camt.053 statement or a scheduled exporter's
/// delivery is made of.
pub async fn entries_on(
    pool: &PgPool,
    ledger_id: &str,
    date: NaiveDate,
    partner: Option<&str>,
) -> sqlx::Result<Vec<ExportEntryRow>> {
    sqlx::query_as(concat!(
        entry_columns!(),
        " ledger_id = $1 AND ledger_date = $2 AND ($3::text IS NULL OR ",
        consented!("$3", "entries", "synced_at"),
        ") ORDER BY topic, seq"
    ))
    .bind(ledger_id)
    .bind(date)
    .bind(partner)
    .fetch_all(pool)
    .await
}

/// The per-date summaries matching `filter`: the grouping of the `daily_summary` view, over
/// the entries the filter lets through (a partner's summary counts only what it may see).
pub fn summaries<'a>(
    pool: &'a PgPool,
    filter: &'a ExportFilter,
) -> BoxStream<'a, sqlx::Result<ExportSummaryRow>> {
    filtered(
        pool,
        filter,
        concat!(
            "SELECT ledger_id, topic, ledger_date, entry_type, currency,
                 count(*) AS entries, sum(amount)::text AS amount_sum
             FROM entries WHERE",
            filter!(),
            "GROUP BY ledger_id, topic, ledger_date, entry_type, currency
             ORDER BY ledger_id, topic, ledger_date, entry_type"
        ),
    )
}

/// Runs `sql` (built around `filter!()`) with the filter's five parameters, streamed.
fn filtered<'a, R>(
    pool: &'a PgPool,
    filter: &'a ExportFilter,
    sql: &'static str,
) -> BoxStream<'a, sqlx::Result<R>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + 'a,
{
    sqlx::query_as(sql)
        .bind(&filter.ledgers)
        .bind(&filter.partner)
        .bind(&filter.topic)
        .bind(filter.from)
        .bind(filter.to)
        .fetch(pool)
}

/// The [`PayoutRow`] columns of `t` (`payout_totals` rows, computed first in a CTE `t`), with
/// the payout's entry joined as `entries` for the consent check.
macro_rules! payout_columns {
    () => {
        "SELECT t.ledger_id, t.payout_reference, t.bank_reference, t.time, t.currency,
                t.first_ledger_date, t.last_ledger_date, t.entries, t.bank_account_scheme,
                t.bank_account_id, t.paid_out::text AS paid_out, t.transactions,
                t.captured::text AS captured, t.refunded::text AS refunded,
                t.transactions_other::text AS transactions_other,
                t.transactions_gross::text AS transactions_gross,
                t.fees_charged::text AS fees_charged, t.fees_retained::text AS fees_retained,
                t.ledger_other::text AS ledger_other
         FROM t
         JOIN entries ON entries.ledger_id = t.ledger_id AND entries.topic = 'funds'
                     AND entries.seq = t.last_seq"
    };
}

/// A `payout_totals` row (migration 0015): one payout, what it settles and where it went.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PayoutRow {
    pub ledger_id: String,
    pub payout_reference: String,
    pub bank_reference: Option<String>,
    pub time: DateTime<Utc>,
    pub currency: String,
    pub first_ledger_date: Option<NaiveDate>,
    pub last_ledger_date: Option<NaiveDate>,
    pub entries: i64,
    pub bank_account_scheme: Option<String>,
    pub bank_account_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub paid_out: super::MinorSum,
    pub transactions: i64,
    #[sqlx(try_from = "String")]
    pub captured: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub refunded: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub transactions_other: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub transactions_gross: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub fees_charged: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub fees_retained: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub ledger_other: super::MinorSum,
}

/// The payouts whose last ledger date is in `filter`'s range, by ledger and payout: of the
/// filter's ledgers, and with a partner only those it may see (its payout entry recorded
/// within one of the partner's grant periods, the consent rule).
pub async fn payouts(pool: &PgPool, filter: &ExportFilter) -> sqlx::Result<Vec<PayoutRow>> {
    sqlx::query_as(concat!(
        // Totals first, then consent (see `payout`).
        "WITH t AS MATERIALIZED (
             SELECT * FROM payout_totals
             WHERE (cardinality($1::text[]) = 0 OR ledger_id = ANY($1))
               AND last_ledger_date BETWEEN $3 AND $4) ",
        payout_columns!(),
        "
         WHERE ($2::text IS NULL OR ",
        consented!("$2", "entries", "synced_at"),
        ")
         ORDER BY t.ledger_id, t.last_seq",
    ))
    .bind(&filter.ledgers)
    .bind(&filter.partner)
    .bind(filter.from)
    .bind(filter.to)
    .fetch_all(pool)
    .await
}

/// One payout of a ledger, by its reference, if the partner (if any) may see it. The
/// payout's totals are computed once, first (`MATERIALIZED`), then checked for consent: left
/// to itself, the planner may join first and compute them once per funds entry of the ledger
/// (seconds a payout on a table not yet analysed, where this takes milliseconds).
pub async fn payout(
    pool: &PgPool,
    ledger_id: &str,
    reference: &str,
    partner: Option<&str>,
) -> sqlx::Result<Option<PayoutRow>> {
    sqlx::query_as(concat!(
        "WITH t AS MATERIALIZED (
             SELECT * FROM payout_totals WHERE ledger_id = $1 AND payout_reference = $2) ",
        payout_columns!(),
        "
         WHERE ($3::text IS NULL OR ",
        consented!("$3", "entries", "synced_at"),
        ")
         ORDER BY t.last_seq
         LIMIT 1",
    ))
    .bind(ledger_id)
    .bind(reference)
    .bind(partner)
    .fetch_optional(pool)
    .await
}

/// The GBAT10 voucher number of (ledger, date): the one it was given before, or the next
/// one (`voucher_numbers`, migration 0016): never two vouchers with one number, never a
/// voucher with two, never a number skipped. New numbers are taken one at a time, under a
/// transaction-level advisory lock, as the highest so far plus one.
pub async fn voucher_number(pool: &PgPool, ledger_id: &str, date: NaiveDate) -> sqlx::Result<i64> {
    const GIVEN: &str =
        "SELECT number FROM voucher_numbers WHERE ledger_id = $1 AND ledger_date = $2";
    let given: Option<i64> = sqlx::query_scalar(GIVEN)
        .bind(ledger_id)
        .bind(date)
        .fetch_optional(pool)
        .await?;
    if let Some(number) = given {
        return Ok(number);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vls-voucher-numbers'))")
        .execute(&mut *tx)
        .await?;
    // Another export may have numbered it while this one waited for the lock.
    let given: Option<i64> = sqlx::query_scalar(GIVEN)
        .bind(ledger_id)
        .bind(date)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(number) = given {
        return Ok(number);
    }
    let number = sqlx::query_scalar(
        "INSERT INTO voucher_numbers (ledger_id, ledger_date, number)
         SELECT $1, $2, coalesce(max(number), 0) + 1 FROM voucher_numbers
         RETURNING number",
    )
    .bind(ledger_id)
    .bind(date)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(number)
}

/// One row of a period-end report: a feed's opening balance, its movement per entry type,
/// its closing balance (`line` says which; `entry_type` only on movements).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PeriodRow {
    pub ledger_id: String,
    pub topic: String,
    pub currency: String,
    pub line: String,
    pub entry_type: Option<String>,
    pub entries: i64,
    #[sqlx(try_from = "String")]
    pub amount: super::MinorSum,
}

/// The period-end report of `filter`'s ledgers for the ledger dates `from..=to`: per feed
/// with entries in the period, the balance before its first entry (`opening`), the sum per
/// entry type (`movement`), and the balance after its last (`closing`); opening plus the
/// movements is the closing balance. With a partner, only entries it may see.
pub async fn period(pool: &PgPool, filter: &ExportFilter) -> sqlx::Result<Vec<PeriodRow>> {
    sqlx::query_as(concat!(
        "WITH inside AS (
             SELECT * FROM entries
             WHERE (cardinality($1::text[]) = 0 OR ledger_id = ANY($1))
               AND ($2::text IS NULL OR ",
        consented!("$2", "entries", "synced_at"),
        ")
               AND ($3::text IS NULL OR topic = $3)
               AND ledger_date BETWEEN $4 AND $5),
         feeds AS (
             SELECT ledger_id, topic, min(currency) AS currency, min(seq) AS first_seq,
                    max(seq) AS last_seq
             FROM inside GROUP BY ledger_id, topic)
         SELECT f.ledger_id, f.topic, f.currency, 'opening' AS line, NULL AS entry_type,
                0::bigint AS entries, e.balance_before::text AS amount, 0 AS o
         FROM feeds f JOIN entries e
           ON e.ledger_id = f.ledger_id AND e.topic = f.topic AND e.seq = f.first_seq
         UNION ALL
         SELECT i.ledger_id, i.topic, min(i.currency), 'movement', i.entry_type, count(*),
                sum(i.amount)::text, 1
         FROM inside i GROUP BY i.ledger_id, i.topic, i.entry_type
         UNION ALL
         SELECT f.ledger_id, f.topic, f.currency, 'closing', NULL, 0, e.balance_after::text, 2
         FROM feeds f JOIN entries e
           ON e.ledger_id = f.ledger_id AND e.topic = f.topic AND e.seq = f.last_seq
         ORDER BY 1, 2, 8, 5"
    ))
    .bind(&filter.ledgers)
    .bind(&filter.partner)
    .bind(&filter.topic)
    .bind(filter.from)
    .bind(filter.to)
    .fetch_all(pool)
    .await
}

/// A `payout_transactions` row: one transaction a payout settles.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PayoutTransactionRow {
    pub payout_reference: String,
    pub psp_reference: String,
    pub reference: Option<String>,
    pub recipient_handle: Option<String>,
    pub first_time: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub captured: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub refunded: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub other: super::MinorSum,
    #[sqlx(try_from = "String")]
    pub fees: super::MinorSum,
}

/// The transactions of a ledger's payouts `payout_references`, by payout and time.
pub async fn payout_transactions(
    pool: &PgPool,
    ledger_id: &str,
    payout_references: &[String],
) -> sqlx::Result<Vec<PayoutTransactionRow>> {
    sqlx::query_as(
        "SELECT payout_reference, psp_reference, reference, recipient_handle, first_time,
                captured::text AS captured, refunded::text AS refunded, other::text AS other,
                fees::text AS fees
         FROM payout_transactions
         WHERE ledger_id = $1 AND payout_reference = ANY($2)
         ORDER BY payout_reference, first_time, psp_reference",
    )
    .bind(ledger_id)
    .bind(payout_references)
    .fetch_all(pool)
    .await
}

/// What a ledger says of the merchant and its sales units (`sales_units` as the API sent
/// them: name, recipient handle, business identifier).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerParty {
    pub owner_scheme: Option<String>,
    pub owner_id: Option<String>,
    pub sales_units: serde_json::Value,
}

pub async fn ledger_party(pool: &PgPool, ledger_id: &str) -> sqlx::Result<Option<LedgerParty>> {
    sqlx::query_as("SELECT owner_scheme, owner_id, sales_units FROM ledgers WHERE ledger_id = $1")
        .bind(ledger_id)
        .fetch_optional(pool)
        .await
}

/// The (ledger, date) pairs in a range that reconciled cleanly on every topic (closed, and
/// equal to the API's daily report), for documents whose content must never change once
/// written (`export --kind gbat10`: a voucher keeps its number for good).
pub async fn reconciled_dates(
    pool: &PgPool,
    filter: &ExportFilter,
) -> sqlx::Result<Vec<(String, NaiveDate)>> {
    sqlx::query_as(
        "SELECT ledger_id, ledger_date FROM reconciliation_status
         WHERE reconciled
           AND (cardinality($1::text[]) = 0 OR ledger_id = ANY($1))
           AND ledger_date BETWEEN $2 AND $3
         ORDER BY 1, 2",
    )
    .bind(&filter.ledgers)
    .bind(filter.from)
    .bind(filter.to)
    .fetch_all(pool)
    .await
}

/// The (ledger, date) pairs with entries in a range, for `export --kind journal|camt053`.
pub async fn dates_with_entries(
    pool: &PgPool,
    filter: &ExportFilter,
) -> sqlx::Result<Vec<(String, NaiveDate)>> {
    sqlx::query_as(concat!(
        "SELECT DISTINCT ledger_id, ledger_date FROM entries
         WHERE (cardinality($1::text[]) = 0 OR ledger_id = ANY($1))
           AND ($2::text IS NULL OR ",
        consented!("$2", "entries", "synced_at"),
        ")
           AND ledger_date BETWEEN $3 AND $4
         ORDER BY 1, 2",
    ))
    .bind(&filter.ledgers)
    .bind(&filter.partner)
    .bind(filter.from)
    .bind(filter.to)
    .fetch_all(pool)
    .await
}

/// A ledger's currency and owner, for statements.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerInfo {
    pub currency: Option<String>,
    pub owner_scheme: Option<String>,
    pub owner_id: Option<String>,
}

pub async fn ledger_info(pool: &PgPool, ledger_id: &str) -> sqlx::Result<Option<LedgerInfo>> {
    sqlx::query_as("SELECT currency, owner_scheme, owner_id FROM ledgers WHERE ledger_id = $1")
        .bind(ledger_id)
        .fetch_optional(pool)
        .await
}

/// The `funds` balance at the start of a date with no funds entries: after the newest entry
/// of an earlier date (0 before the first entry).
pub async fn funds_balance_before(
    pool: &PgPool,
    ledger_id: &str,
    date: NaiveDate,
) -> sqlx::Result<i64> {
    let balance: Option<i64> = sqlx::query_scalar(
        "SELECT balance_after FROM entries
         WHERE ledger_id = $1 AND topic = 'funds' AND ledger_date < $2
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(ledger_id)
    .bind(date)
    .fetch_optional(pool)
    .await?;
    Ok(balance.unwrap_or(0))
}
