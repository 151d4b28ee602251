//! The PostgreSQL boundary: the only place with SQL. Connecting, the embedded migrations, and
//! one module per group of tables; every write that must be atomic is one transaction here.

pub mod bench;
pub mod entries;
pub mod export;
pub mod exports;
pub mod feed_health;
pub mod feeds;
pub mod grants;
pub mod leases;
pub mod ledgers;
pub mod monitoring;
pub mod reconcile;

use std::str::FromStr;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseSettings;

/// The embedded migrations (`migrations/`), applied by `run`, `sync` and `migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
    if up_to_date(pool).await {
        return Ok(());
    }
    MIGRATOR.run(pool).await.context(
        "applying database migrations (as a login without DDL rights, have the database owner run `vipps-ledger-sync migrate` first)",
    )
}

/// Whether every embedded migration is applied, with the same checksum.
async fn up_to_date(pool: &PgPool) -> bool {
    let applied: Vec<(i64, Vec<u8>)> =
        match sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            Err(_) => return false,
        };
    MIGRATOR.iter().all(|m| {
        applied
            .iter()
            .any(|(v, sum)| *v == m.version && sum.as_slice() == &*m.checksum)
    })
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
