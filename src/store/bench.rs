//! SQL for the benchmark (`vls-bench`) only: synthetic history to measure inserts against a
//! large table, and PostgreSQL's own `COPY` rate for the same rows, the yardstick.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use sqlx::PgPool;

/// The ledger id the synthetic rows are stored under.
pub const PRELOAD_LEDGER: &str = "bench-preload";

/// Rows inserted per statement while preloading.
const PRELOAD_CHUNK: i64 = 500_000;

/// Adds `rows` synthetic entries (realistic size and keys) under [`PRELOAD_LEDGER`].
pub async fn preload(pool: &PgPool, rows: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO ledgers (ledger_id, raw) VALUES ($1, '{}') ON CONFLICT DO NOTHING")
        .bind(PRELOAD_LEDGER)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO feed_cursors (ledger_id, topic) VALUES ($1, 'funds') ON CONFLICT DO NOTHING",
    )
    .bind(PRELOAD_LEDGER)
    .execute(pool)
    .await?;
    let mut from = 1;
    while from <= rows {
        let to = (from + PRELOAD_CHUNK - 1).min(rows);
        sqlx::query(
            "INSERT INTO entries (ledger_id, topic, seq, entry_key, psp_reference, entry_type,
                 time, ledger_date, reference, currency, amount, balance_before, balance_after,
                 recipient_handle, raw)
             SELECT $1, 'funds', g, sha256(('bench' || g)::bytea), (3000000000 + g)::text,
                 'capture', timestamptz '2020-01-01' + g * interval '1 second',
                 date '2020-01-01' + (g / 20000)::int, 'order-' || g, 'NOK', 10000,
                 g * 10000, (g + 1) * 10000, 'api:123456',
                 jsonb_build_object('pspReference', (3000000000 + g)::text,
                     'time', to_char(timestamptz '2020-01-01' + g * interval '1 second',
                         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                     'ledgerDate', (date '2020-01-01' + (g / 20000)::int)::text,
                     'entryType', 'capture', 'reference', 'order-' || g, 'currency', 'NOK',
                     'amount', 10000, 'balanceBefore', g * 10000, 'balanceAfter', (g + 1) * 10000,
                     'recipientHandle', 'api:123456')
             FROM generate_series($2::int8, $3::int8) g",
        )
        .bind(PRELOAD_LEDGER)
        .bind(from)
        .bind(to)
        .execute(pool)
        .await?;
        from = to + 1;
    }
    sqlx::query("ANALYZE entries").execute(pool).await?;
    Ok(())
}

/// One `COPY` of the synced entries: rows, wall time, and what `cpu` read before and after.
pub struct CopyRun {
    pub rows: u64,
    pub took: Duration,
    pub cpu: Option<f64>,
}

/// Copies every synced (not preloaded) entry into a fresh table of the same shape (same
/// columns, constraints and indexes) with `COPY … FROM STDIN`, after a `CHECKPOINT` (so that
/// neither the sync's dirty pages nor its WAL are the `COPY`'s to write); times the `COPY`
/// and reads `cpu` (seconds of some clock) around it.
pub async fn copy_rate(pool: &PgPool, cpu: fn() -> Option<f64>) -> sqlx::Result<CopyRun> {
    let mut conn = pool.acquire().await?;
    sqlx::query("DROP TABLE IF EXISTS bench_copy")
        .execute(&mut *conn)
        .await?;
    sqlx::query("CREATE TABLE bench_copy (LIKE entries INCLUDING ALL)")
        .execute(&mut *conn)
        .await?;
    let data: Vec<u8> = conn
        .copy_out_raw(&format!(
            "COPY (SELECT * FROM entries WHERE ledger_id <> '{PRELOAD_LEDGER}' ORDER BY ledger_id, topic, seq) TO STDOUT"
        ))
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    sqlx::query("CHECKPOINT").execute(&mut *conn).await?;
    let cpu_before = cpu();
    let started = Instant::now();
    let mut copy = conn.copy_in_raw("COPY bench_copy FROM STDIN").await?;
    copy.send(data).await?;
    let rows = copy.finish().await?;
    let took = started.elapsed();
    let cpu = cpu_before.zip(cpu()).map(|(before, after)| after - before);
    sqlx::query("DROP TABLE bench_copy")
        .execute(&mut *conn)
        .await?;
    Ok(CopyRun { rows, took, cpu })
}

/// Per synced (ledger, topic): entries stored, distinct `seq` numbers, the highest `seq`.
pub async fn feed_counts(pool: &PgPool) -> sqlx::Result<Vec<(String, String, i64, i64, i64)>> {
    sqlx::query_as(
        "SELECT ledger_id, topic, count(*), count(DISTINCT seq), max(seq) FROM entries
         WHERE ledger_id <> $1 GROUP BY ledger_id, topic ORDER BY ledger_id, topic",
    )
    .bind(PRELOAD_LEDGER)
    .fetch_all(pool)
    .await
}

/// The exporter the synthetic export log belongs to.
pub const BENCH_EXPORTER: &str = "bench-books";

/// Ledgers per statement while preloading reconciled dates.
const RECONCILED_CHUNK: i64 = 250;

/// Synthetic history for the scheduled exporters' query of dates due: ledgers `bench-1` …
/// `bench-<ledgers>`, both feeds reconciled `ok` for the `days` days up to `last`, and every
/// date but the last `due` of them already exported by [`BENCH_EXPORTER`].
pub async fn preload_reconciled(
    pool: &PgPool,
    ledgers: i64,
    days: i32,
    due: i32,
    last: chrono::NaiveDate,
) -> sqlx::Result<()> {
    let mut from = 1;
    while from <= ledgers {
        let to = (from + RECONCILED_CHUNK - 1).min(ledgers);
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO ledgers (ledger_id, raw)
             SELECT 'bench-' || g, '{}' FROM generate_series($1::int8, $2::int8) g",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO feed_cursors (ledger_id, topic, caught_up_at)
             SELECT 'bench-' || g, t, now()
             FROM generate_series($1::int8, $2::int8) g, unnest('{funds,fees}'::text[]) t",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO reconciliations (ledger_id, topic, ledger_date, status, checked_at)
             SELECT 'bench-' || g, t, $3::date - d, 'ok', now() - interval '1 hour'
             FROM generate_series($1::int8, $2::int8) g, unnest('{funds,fees}'::text[]) t,
                  generate_series(0, $4 - 1) d",
        )
        .bind(from)
        .bind(to)
        .bind(last)
        .bind(days)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO export_log (exporter, ledger_id, ledger_date, kind, status, exported_at)
             SELECT $5, 'bench-' || g, $3::date - d, 'journal', 'exported', now()
             FROM generate_series($1::int8, $2::int8) g, generate_series($4, $6 - 1) d",
        )
        .bind(from)
        .bind(to)
        .bind(last)
        .bind(due)
        .bind(BENCH_EXPORTER)
        .bind(days)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        from = to + 1;
    }
    sqlx::query("VACUUM ANALYZE reconciliations")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE export_log")
        .execute(pool)
        .await?;
    Ok(())
}
