//! Test helpers: a fresh PostgreSQL database per test, the simulator on 127.0.0.1, and the
//! application's settings pointing at both with millisecond backoffs.

pub mod binary;
pub mod exports;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{
    Accounts, ExporterKind, ExporterSettings, ExporterTarget, PartnerSettings, Settings, Topic,
};
use vipps_ledger_sync::export::Format;
use vipps_ledger_sync::report_api::models::{canonical_entry_type, parse_time};
use vipps_ledger_sync::simulator::{Simulator, SimulatorConfig};
use vipps_ledger_sync::store;
use vipps_ledger_sync::sync::{self, SyncContext, SyncReport};

/// The server used when `DATABASE_URL` is not set and no container is wanted.
const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret-5d1f0c";

/// The PostgreSQL server for this test process: `DATABASE_URL`, else the local default if it
/// answers, else a testcontainers PostgreSQL (needs Docker).
async fn server() -> &'static str {
    static SERVER: OnceCell<String> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                return url;
            }
            let local = PgConnectOptions::from_str(LOCAL_SERVER).unwrap();
            if local.connect().await.is_ok() {
                return LOCAL_SERVER.to_owned();
            }
            container_server().await
        })
        .await
}

#[cfg(feature = "containers")]
async fn container_server() -> String {
    use testcontainers::runners::AsyncRunner;
    let container = testcontainers_modules::postgres::Postgres::default()
        .start()
        .await
        .expect("no DATABASE_URL, no PostgreSQL on 127.0.0.1:5432, and testcontainers could not start one (is Docker running?)");
    let port = container.get_host_port_ipv4(5432).await.unwrap();
    // The container lives as long as the test process.
    Box::leak(Box::new(container));
    format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
}

#[cfg(not(feature = "containers"))]
async fn container_server() -> String {
    panic!(
        "no DATABASE_URL and no PostgreSQL on 127.0.0.1:5432: set DATABASE_URL, or run \
         `cargo test --locked --features containers` to start one in Docker"
    )
}

/// A database of this test's own, dropped when the value is dropped.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    name: String,
    server: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// A fresh database without the schema (for tests of what the binary does first).
    pub async fn unmigrated() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrate: bool) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let server = server().await.to_owned();
        let name = format!(
            "vls_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let options = PgConnectOptions::from_str(&server).unwrap();
        let mut conn = options
            .connect()
            .await
            .expect("connecting to the test server");
        store::recreate_database(&mut conn, &name).await.unwrap();
        let db = options.clone().database(&name);
        let url = db.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(db)
            .await
            .unwrap();
        if migrate {
            store::migrate(&pool).await.unwrap();
        }
        TestDb {
            pool,
            url,
            name,
            server,
        }
    }
}

impl TestDb {
    /// A fresh database migrated the documented way (docs/operations.md): by `owner`, a login
    /// without superuser rights that owns the database, the cluster-wide roles having been
    /// created first by the superuser.
    pub async fn migrated_by(owner: &TestLogin) -> TestDb {
        let db = Self::create(false).await;
        for role in ["vls_writer", "finance_reader", "finance_personal_data"] {
            let created = sqlx::query(&format!("CREATE ROLE {role} NOLOGIN"))
                .execute(&db.pool)
                .await;
            if let Err(e) = created {
                let code = e.as_database_error().and_then(|d| d.code());
                assert!(
                    matches!(code.as_deref(), Some("42710" | "23505")),
                    "creating {role}: {e}"
                );
            }
        }
        sqlx::query(&format!(
            "ALTER DATABASE \"{}\" OWNER TO {}",
            db.name, owner.name
        ))
        .execute(&db.pool)
        .await
        .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(owner.options(&db.url))
            .await
            .unwrap();
        store::migrate(&pool).await.unwrap();
        pool.close().await;
        db
    }
}

/// A login role of a test's own (roles are cluster-wide), dropped when the value is dropped,
/// also when the test fails.
pub struct TestLogin {
    pub name: String,
    server: String,
}

impl TestLogin {
    /// A new login, member of `roles` (none: a plain login).
    pub async fn create(roles: &[&str]) -> TestLogin {
        let server = server().await.to_owned();
        let name = format!("vls_test_login_{}_{}", std::process::id(), rand_suffix());
        let mut conn = PgConnectOptions::from_str(&server)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let member = if roles.is_empty() {
            String::new()
        } else {
            format!(" IN ROLE {}", roles.join(", "))
        };
        sqlx::query(&format!("CREATE ROLE {name} LOGIN{member}"))
            .execute(&mut conn)
            .await
            .unwrap();
        TestLogin { name, server }
    }

    /// Connection options for this login on the database of `db_url`.
    pub fn options(&self, db_url: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(db_url)
            .unwrap()
            .username(&self.name)
    }

    /// A URL for this login on the database of `db_url`.
    pub fn url(&self, db_url: &str) -> String {
        self.options(db_url).to_url_lossy().to_string()
    }

    /// A connection as this login to the database of `db_url`.
    pub async fn connect(&self, db_url: &str) -> sqlx::PgConnection {
        self.options(db_url).connect().await.unwrap()
    }
}

impl Drop for TestLogin {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnectOptions::from_str(&server).unwrap().connect().await {
                    // Its sessions first (a failed test may have left one open).
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await;
                    for _ in 0..50 {
                        let dropped = sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
                            .execute(&mut conn)
                            .await;
                        if dropped.is_ok() {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            });
        })
        .join();
    }
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime; use a thread with its own to clean up.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnectOptions::from_str(&server).unwrap().connect().await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The simulator, a database, and settings pointing at both.
pub struct TestApp {
    pub sim: Arc<Simulator>,
    pub base_url: String,
    pub db: TestDb,
    pub settings: Settings,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A small data set: a few ledgers, a few days, quick to sync.
pub fn small() -> SimulatorConfig {
    SimulatorConfig {
        ledgers: 4,
        days: 4,
        captures_per_day: 8,
        ..SimulatorConfig::default()
    }
}

impl TestApp {
    /// Starts the simulator with `config` and one partner granted every ledger.
    pub async fn spawn(config: SimulatorConfig) -> TestApp {
        Self::spawn_on(config, TestDb::new().await).await
    }

    /// [`TestApp::spawn`] on a database of the caller's (already migrated).
    pub async fn spawn_on(config: SimulatorConfig, db: TestDb) -> TestApp {
        let sim = Simulator::new(config);
        sim.add_partner_with_all_ledgers(CLIENT_ID, CLIENT_SECRET);
        let shutdown = CancellationToken::new();
        let addr = Arc::clone(&sim)
            .spawn(([127, 0, 0, 1], 0).into(), shutdown.clone())
            .await
            .unwrap();
        let base_url = format!("http://{addr}");
        let settings = test_settings(
            &base_url,
            &db.url,
            &[("test-partner", CLIENT_ID, CLIENT_SECRET)],
        );
        TestApp {
            sim,
            base_url,
            db,
            settings,
            shutdown,
        }
    }

    /// The sync context for the current settings.
    pub fn context(&self) -> Arc<SyncContext> {
        Arc::new(
            SyncContext::with_pool(
                self.settings.clone(),
                self.db.pool.clone(),
                Default::default(),
            )
            .unwrap(),
        )
    }

    /// One `sync --once` pass, in-process.
    pub async fn sync_once(&self) -> SyncReport {
        sync::sync_once(&self.context(), &CancellationToken::new()).await
    }

    /// Asserts that the database holds exactly the simulator's entries, every field.
    pub async fn assert_exact(&self) {
        assert_exact(&self.db.pool, &self.sim, &self.sim.ledger_ids()).await;
    }
}

/// Settings for tests: the given API and database, millisecond backoffs, the given partners.
pub fn test_settings(base_url: &str, db_url: &str, partners: &[(&str, &str, &str)]) -> Settings {
    let env = HashMap::from([
        ("VLS_API__BASE_URL".to_owned(), base_url.to_owned()),
        ("VLS_DATABASE__URL".to_owned(), db_url.to_owned()),
        ("VLS_RETRY__BASE_BACKOFF".to_owned(), "1ms".to_owned()),
        ("VLS_RETRY__MAX_BACKOFF".to_owned(), "20ms".to_owned()),
        ("VLS_API__REQUEST_TIMEOUT".to_owned(), "10s".to_owned()),
        // The simulator needs no protection; tests that test the limit set it.
        (
            "VLS_API__MAX_REQUESTS_PER_SECOND".to_owned(),
            "0".to_owned(),
        ),
    ]);
    let mut settings = Settings::load_with_env(None, env).unwrap();
    settings.partners = partners
        .iter()
        .map(|(name, id, secret)| PartnerSettings::accounting(name, id, secret))
        .collect();
    settings
}

/// Compares every stored entry of `ledgers` with the simulator's feeds, field by field, and
/// checks `seq` runs 1..=n in feed order.
pub async fn assert_exact(pool: &PgPool, sim: &Simulator, ledgers: &[String]) {
    let total = assert_exact_some(pool, sim, ledgers).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        stored as usize, total,
        "entries of other ledgers are stored"
    );
}

/// Compares the entries of `ledgers` field by field; returns how many there are.
async fn assert_exact_some(pool: &PgPool, sim: &Simulator, ledgers: &[String]) -> usize {
    let mut total = 0;
    for ledger in ledgers {
        for topic in Topic::ALL {
            let expected = sim.expected_entries(ledger, topic.as_str());
            let rows = sqlx::query(
                "SELECT seq, psp_reference, entry_type, time, ledger_date::text AS ledger_date,
                     reference, currency, amount, balance_before, balance_after,
                     recipient_handle, raw
                 FROM entries WHERE ledger_id = $1 AND topic = $2 ORDER BY seq",
            )
            .bind(ledger)
            .bind(topic.as_str())
            .fetch_all(pool)
            .await
            .unwrap();
            assert_eq!(
                rows.len(),
                expected.len(),
                "{ledger} {topic}: stored {} entries, the API holds {}",
                rows.len(),
                expected.len()
            );
            for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
                let at = format!("{ledger} {topic} entry {}", i + 1);
                assert_eq!(row.get::<i64, _>("seq"), i as i64 + 1, "{at}: seq");
                assert_eq!(row.get::<serde_json::Value, _>("raw"), *want, "{at}: raw");
                let s = |f: &str| want.get(f).and_then(|v| v.as_str()).map(str::to_owned);
                let n = |f: &str| want[f].as_i64().unwrap();
                assert_eq!(
                    Some(row.get::<String, _>("psp_reference")),
                    s("pspReference"),
                    "{at}"
                );
                assert_eq!(
                    Some(row.get::<String, _>("entry_type")),
                    s("entryType"),
                    "{at}"
                );
                assert_eq!(
                    row.get::<chrono::DateTime<chrono::Utc>, _>("time"),
                    parse_time(&s("time").unwrap()).unwrap(),
                    "{at}: time"
                );
                assert_eq!(
                    row.get::<Option<String>, _>("ledger_date"),
                    s("ledgerDate"),
                    "{at}"
                );
                assert_eq!(
                    row.get::<Option<String>, _>("reference"),
                    s("reference").filter(|r| !r.is_empty()),
                    "{at}: reference"
                );
                assert_eq!(
                    Some(row.get::<String, _>("currency")),
                    s("currency"),
                    "{at}"
                );
                assert_eq!(row.get::<i64, _>("amount"), n("amount"), "{at}: amount");
                assert_eq!(
                    row.get::<i64, _>("balance_before"),
                    n("balanceBefore"),
                    "{at}"
                );
                assert_eq!(
                    row.get::<i64, _>("balance_after"),
                    n("balanceAfter"),
                    "{at}"
                );
                assert_eq!(
                    row.get::<Option<String>, _>("recipient_handle"),
                    s("recipientHandle"),
                    "{at}: recipient_handle"
                );
            }
            total += rows.len();
        }
    }
    total
}

/// The distinct entry types the simulator serves, canonical spelling.
pub fn entry_types(sim: &Simulator) -> std::collections::BTreeSet<String> {
    let mut types = std::collections::BTreeSet::new();
    for ledger in sim.ledger_ids() {
        for topic in Topic::ALL {
            for e in sim.expected_entries(&ledger, topic.as_str()) {
                types.insert(canonical_entry_type(e["entryType"].as_str().unwrap()).to_owned());
            }
        }
    }
    types
}

/// [`assert_exact`] for some of the app's ledgers.
pub async fn assert_exact_ledgers(app: &TestApp, ledgers: &[String]) {
    let mut total = 0i64;
    for ledger in ledgers {
        for topic in Topic::ALL {
            total += app.sim.expected_entries(ledger, topic.as_str()).len() as i64;
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE ledger_id = ANY($1)")
        .bind(ledgers)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, total);
    assert_exact_some(&app.db.pool, &app.sim, ledgers).await;
}

/// A connection on which changes go behind the daemon's back, as corruption or a person's
/// hand would: the schema's own rules (an entry never changes once stored, a closed grant
/// period never changes: triggers of migration 0012) are off on it
/// (`session_replication_role = replica`, which only a superuser may set). Detached from the
/// pool, so no other query ever runs with the rules off.
pub async fn behind_the_back(pool: &PgPool) -> sqlx::PgConnection {
    let mut conn = pool.acquire().await.unwrap().detach();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// A lease on one unit for a test that writes the unit's state as the daemon would (every
/// such write is fenced); the unit must be free.
pub async fn test_lease(
    pool: &PgPool,
    ledger: &str,
    topic: Topic,
) -> vipps_ledger_sync::store::leases::Lease {
    vipps_ledger_sync::store::leases::acquire_lease(
        pool,
        ledger,
        topic,
        "test",
        None,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap()
    .expect("the unit is free")
}

/// A scheduled exporter writing files of `kind` into `dir`.
pub fn directory_exporter(
    name: &str,
    kind: ExporterKind,
    dir: &std::path::Path,
    format: Format,
) -> ExporterSettings {
    ExporterSettings {
        name: name.to_owned(),
        kind,
        partner: None,
        ledgers: Vec::new(),
        from: None,
        target: ExporterTarget::Directory {
            path: dir.to_owned(),
            format,
            csv_formulas: Default::default(),
        },
        accounts: Accounts::default(),
    }
}

/// Heavy variants of some tests run with `VLS_HEAVY=1` (by hand, not in CI).
pub fn heavy() -> bool {
    std::env::var("VLS_HEAVY").is_ok_and(|v| v == "1")
}

/// How many entries the simulator holds, over every ledger and topic.
pub fn expected_total(sim: &Simulator) -> usize {
    sim.ledger_ids()
        .iter()
        .flat_map(|l| ["funds", "fees"].map(|t| sim.expected_entries(l, t).len()))
        .sum()
}
