//! The PostgreSQL boundary: the only place with SQL. Connecting, the embedded migrations, and
//! one module per group of tables; every write that must be atomic is one transaction here.

/// The consent rule as SQL, for the partner filters of the daemon's own queries: partner
/// `$partner` (a bind parameter) may see the row of `$table` that was recorded at
/// `$table.$recorded`. The same rule as the readers' row-level security (migration 0012,
/// view `consent_windows`): recorded before the end of one of the partner's grant periods on
/// the row's ledger, an open period ending at infinity.
macro_rules! consented {
    ($partner:literal, $table:literal, $recorded:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM consent_windows w WHERE w.partner = ",
            $partner,
            " AND w.ledger_id = ",
            $table,
            ".ledger_id AND (w.open OR ",
            $table,
            ".",
            $recorded,
            " < w.visible_until))"
        )
    };
}

/// The SQL that tells whether the instance that recorded `lease_key` (a column of the row
/// being tested) still has a session: a granted advisory lock on that key in this database
/// (`presence.rs`). A bigint advisory key shows in `pg_locks` as `classid` (its high half),
/// `objid` (its low half) and `objsubid` 1.
macro_rules! presence_alive {
    () => {
        "EXISTS (SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
              AND l.classid = ((lease_key >> 32) & 4294967295)::oid
              AND l.objid = (lease_key & 4294967295)::oid)"
    };
}

/// A sum of minor units, exact: PostgreSQL sums `bigint`s into a `numeric`, which is read
/// as its text, so no sum of valid amounts can overflow on the way (a sum of `i64` amounts
/// always fits an `i128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(transparent)]
pub struct MinorSum(pub i128);

impl TryFrom<String> for MinorSum {
    type Error = std::num::ParseIntError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(MinorSum)
    }
}

impl std::fmt::Display for MinorSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "bench")]
pub mod bench;
pub mod entries;
pub mod export_log;
pub mod export_rows;
pub mod feed_health;
pub mod feeds;
pub mod grants;
pub mod leases;
pub mod ledgers;
pub mod monitoring;
mod page_entries;
pub mod poll_schedule;
pub mod presence;
pub mod reconcile;

use std::str::FromStr;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseSettings;

/// The embedded migrations (`migrations/`) as landed: their checksums are what
/// `_sqlx_migrations` records. [`migrate`] applies them with one amendment ([`migrations`]).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Migration 0007 as it must run: as landed, it creates its roles unconditionally, which
/// PostgreSQL refuses to a login without CREATEROLE even when the roles exist, so the
/// documented setup (the superuser creates the roles, a plain owner migrates) failed on a
/// fresh database. Landed migrations are never edited (their checksums are recorded), so the
/// amended text runs under the landed checksum: on a database where 0007 already ran it
/// changes nothing, and on a fresh one it creates the same roles, only if missing. A test
/// checks the two texts differ in that block alone.
pub const AMENDED_0007: &str = include_str!("amended/0007_roles.sql");

/// The migrations [`migrate`] runs: [`MIGRATOR`]'s, 0007 amended ([`AMENDED_0007`]), every
/// checksum as landed.
pub fn migrations() -> Vec<sqlx::migrate::Migration> {
    MIGRATOR
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if m.version == 7 {
                m.sql = std::borrow::Cow::Borrowed(AMENDED_0007);
            }
            m
        })
        .collect()
}

/// [`migrations`] as a source for sqlx's migrator.
#[derive(Debug)]
struct Amended;

impl<'s> sqlx::migrate::MigrationSource<'s> for Amended {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<
        's,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async { Ok(migrations()) })
    }
}

/// Opens the connection pool. The error names the database without its password.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let options = connect_options(settings, "vipps-ledger-sync")?;
    let target = describe(&options);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {target}"))
}

/// A pool of its own for the status endpoint (at most 2 connections, opened on first use),
/// so `/readyz` and `/metrics` ask the database itself rather than wait behind a feed pass
/// that holds every connection of the daemon's pool.
pub fn connect_observer(
    settings: &DatabaseSettings,
    acquire_timeout: std::time::Duration,
) -> anyhow::Result<PgPool> {
    let options = connect_options(settings, "vipps-ledger-sync status")?;
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// `database.url` as connection options, under `application_name`; the error never quotes
/// the URL (it may hold a password).
fn connect_options(
    settings: &DatabaseSettings,
    application_name: &str,
) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(settings.url.expose_secret())
        .map_err(|_| anyhow::anyhow!("database.url is not a valid PostgreSQL URL"))?
        .application_name(application_name))
}

/// `user@host:port/database`, for messages: never the password.
pub fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default)")
    )
}

/// Applies every pending migration. When none is pending nothing is executed, so the daemon
/// can run as a login without DDL rights (`vls_writer`) once the owner has migrated.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    if up_to_date(pool).await.unwrap_or(false) {
        return Ok(());
    }
    let migrator = sqlx::migrate::Migrator::new(Amended).await?;
    migrator.run(pool).await.context(
        "applying database migrations (as a login without DDL rights, have the database owner run `vipps-ledger-sync migrate` first)",
    )
}

/// For the commands that apply no migration (`status`, `ledgers`, `grants`, `export`,
/// `reset-cursor`): fails with what to do unless the schema is the one this binary expects.
pub async fn require_migrated(pool: &PgPool) -> anyhow::Result<()> {
    let current = up_to_date(pool)
        .await
        .context("reading which migrations are applied (_sqlx_migrations)")?;
    anyhow::ensure!(
        current,
        "the database's schema is older than this binary: have the database owner run `vipps-ledger-sync migrate` (this command applies no migrations)"
    );
    Ok(())
}

/// Whether every embedded migration is applied, with the same checksum.
async fn up_to_date(pool: &PgPool) -> sqlx::Result<bool> {
    let applied: Vec<(i64, Vec<u8>)> =
        match sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            // 42P01: no such table: nothing was ever migrated here.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01") => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
    Ok(MIGRATOR.iter().all(|m| {
        applied
            .iter()
            .any(|(v, sum)| *v == m.version && sum.as_slice() == &*m.checksum)
    }))
}

/// The database server's clock: every timestamp that orders consent events and entries comes
/// from it, so hosts with skewed clocks cannot reorder them.
pub async fn database_now(pool: &PgPool) -> sqlx::Result<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
}

/// Drops (if it exists) and creates the database `name` on the server `conn` is connected to.
/// Used by the demo and the tests, each on a database of its own.
pub async fn recreate_database(conn: &mut sqlx::PgConnection, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {name:?} must be letters, digits and underscores"
    );
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("dropping database {name}"))?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_amended_0007_differs_from_the_landed_one_only_in_how_it_creates_roles() {
        let landed = include_str!("../../migrations/0007_roles.sql");
        let amended = super::AMENDED_0007;
        let head = |s: &'static str| &s[..s.find("DO $$").unwrap()];
        let tail = |s: &'static str| &s[s.find("\n$$;").unwrap()..];
        assert_eq!(head(landed), head(amended));
        assert_eq!(tail(landed), tail(amended));
        assert_ne!(landed, amended);
        let runs = super::migrations();
        let seven = runs.iter().find(|m| m.version == 7).unwrap();
        let as_landed = super::MIGRATOR.iter().find(|m| m.version == 7).unwrap();
        assert_eq!(seven.sql, amended);
        assert_eq!(seven.checksum, as_landed.checksum, "recorded as landed");
        assert_eq!(runs.len(), super::MIGRATOR.iter().count());
    }
}
