//! An instance's presence, as the database sees it: a connection of its own holding a
//! session-level advisory lock on the instance's key for as long as the process lives. The
//! key is recorded on every lease the instance takes (`feed_cursors.lease_key`), so another
//! instance can tell a dead holder (no session holds the key: its lease is free at once) from
//! a live one that is merely slow (it keeps its lease until `sync.lease_ttl`).
//!
//! When the process dies the kernel closes its connection and PostgreSQL releases the lock at
//! once. When the host dies or the network parts, PostgreSQL notices through TCP keepalives,
//! which this connection sets to [`KEEPALIVE_IDLE_SECS`] + [`KEEPALIVE_INTERVAL_SECS`] ×
//! [`KEEPALIVE_COUNT`] (about 25 s; the lease TTL bounds it in any case). If the connection is
//! lost while the process lives, it is made again and the lock taken again; in between, other
//! instances may take its units over, and the fences refuse this one's late writes.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// Seconds of silence before the server probes the connection.
pub const KEEPALIVE_IDLE_SECS: u32 = 10;
/// Seconds between probes.
pub const KEEPALIVE_INTERVAL_SECS: u32 = 5;
/// Probes unanswered before the server drops the session (and with it the lock).
pub const KEEPALIVE_COUNT: u32 = 3;
/// How often the presence connection is checked, and retried after a loss.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// This instance's key and the task keeping its lock.
#[derive(Debug)]
pub struct Presence {
    key: i64,
    stop: CancellationToken,
}

impl Presence {
    /// Takes the lock on a new random key over a connection of its own (made like the
    /// pool's), and keeps it for as long as the returned value lives.
    pub async fn register(pool: &PgPool) -> sqlx::Result<Presence> {
        let options = (*pool.connect_options()).clone();
        let key: i64 = rand::random();
        let conn = lock(options.clone(), key).await?;
        let stop = CancellationToken::new();
        tokio::spawn(keep(options, key, conn, stop.clone()));
        Ok(Presence { key, stop })
    }

    /// The key recorded on this instance's leases.
    pub fn key(&self) -> i64 {
        self.key
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A new connection holding the lock on `key`. Boxed, so the task keeping it can be
/// spawned (sqlx's executor lifetimes defeat the compiler's `Send` proof otherwise).
fn lock(
    options: PgConnectOptions,
    key: i64,
) -> futures_util::future::BoxFuture<'static, sqlx::Result<PgConnection>> {
    Box::pin(async move {
        let mut conn = options
            .application_name("vipps-ledger-sync presence")
            .connect()
            .await?;
        for (setting, value) in [
            ("tcp_keepalives_idle", KEEPALIVE_IDLE_SECS),
            ("tcp_keepalives_interval", KEEPALIVE_INTERVAL_SECS),
            ("tcp_keepalives_count", KEEPALIVE_COUNT),
        ] {
            sqlx::query("SELECT set_config($1, $2, false)")
                .bind(setting)
                .bind(value.to_string())
                .execute(&mut conn)
                .await?;
        }
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut conn)
            .await?;
        Ok(conn)
    })
}

/// Holds the connection (and so the lock), checking it every [`CHECK_EVERY`]; makes it
/// again when it is lost; closes it when `stop` fires.
async fn keep(options: PgConnectOptions, key: i64, conn: PgConnection, stop: CancellationToken) {
    let mut conn = Some(conn);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let alive = match conn.as_mut() {
            Some(c) => c.ping().await.is_ok(),
            None => false,
        };
        if alive {
            continue;
        }
        conn = match lock(options.clone(), key).await {
            Ok(c) => {
                tracing::warn!("the presence connection was lost and is back; units other instances took over meanwhile are theirs");
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the presence connection is lost; other instances may take this one's units over");
                None
            }
        };
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}
