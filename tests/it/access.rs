//! Roles, tried as their hostile users would: a finance reader sees only what its partners
//! may see, whatever it creates in its own temporary schema, and gains no right through our
//! functions; personal data needs a role of its own; the daemon's writer cannot change the
//! schema or rewrite history, yet every command of the daemon works as that login.

use sqlx::{Connection as _, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{ExporterKind, Topic};
use vipps_ledger_sync::export::scheduled::{self, Selection};
use vipps_ledger_sync::export::Format;
use vipps_ledger_sync::reconcile;
use vipps_ledger_sync::store::feed_health;
use vipps_ledger_sync::sync::{self, SyncContext};

use crate::common::{
    directory_exporter, small, test_settings, TestApp, TestDb, TestLogin, CLIENT_ID, CLIENT_SECRET,
};

/// Two partners: `acme` holds every ledger, `dk` only the second.
async fn two_partners(db: Option<TestDb>) -> TestApp {
    let mut app = match db {
        Some(db) => TestApp::spawn_on(small(), db).await,
        None => TestApp::spawn(small()).await,
    };
    let ids = app.sim.ledger_ids();
    app.sim.add_partner("bureau-dk", "dk-secret");
    app.sim.grant("bureau-dk", &ids[1]);
    app.settings = test_settings(
        &app.base_url,
        &app.db.url,
        &[
            ("acme", CLIENT_ID, CLIENT_SECRET),
            ("dk", "bureau-dk", "dk-secret"),
        ],
    );
    app.settings.sync.include_gdpr_sensitive_data = true;
    assert!(app.sync_once().await.success());
    app
}

/// A reader login bound to `partner`, with a connection.
async fn reader(app: &TestApp, roles: &[&str], partner: &str) -> (TestLogin, PgConnection) {
    let login = TestLogin::create(roles).await;
    sqlx::query("INSERT INTO reader_partners (role_name, partner) VALUES ($1, $2)")
        .bind(&login.name)
        .bind(partner)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let conn = login.connect(&app.db.url).await;
    (login, conn)
}

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

async fn count_all(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The SQLSTATE of a failed statement.
fn sqlstate(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> String {
    match result {
        Ok(done) => panic!(
            "the statement succeeded ({} rows); it must be refused",
            done.rows_affected()
        ),
        Err(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
            .unwrap_or_else(|| panic!("not a database error: {e}")),
    }
}

/// 42501: insufficient_privilege ("permission denied", a refused row-level security check, or
/// one of the schema's own rules).
const DENIED: &str = "42501";

#[tokio::test]
async fn a_reader_sees_only_its_partners_ledgers_and_cannot_write() {
    let app = two_partners(None).await;
    let ids = app.sim.ledger_ids();
    let (_login, mut reader) = reader(&app, &["finance_reader"], "dk").await;
    let seen: Vec<String> = sqlx::query_scalar("SELECT DISTINCT ledger_id FROM entries ORDER BY 1")
        .fetch_all(&mut reader)
        .await
        .unwrap();
    assert_eq!(
        seen,
        [ids[1].clone()],
        "only the ledger dk holds a grant for"
    );
    assert_eq!(count(&mut reader, "SELECT count(*) FROM ledgers").await, 1);
    for view in ["payouts", "payout_totals", "payout_transactions"] {
        let sql = format!("SELECT count(DISTINCT ledger_id) FROM {view}");
        assert!(
            count(&mut reader, &sql).await <= 1,
            "{view} obeys the same rule"
        );
    }
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE ledger_id = $1")
        .bind(&ids[1])
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        count(&mut reader, "SELECT count(*) FROM entries").await,
        all,
        "all of its ledger's entries"
    );
    assert_eq!(
        count(&mut reader, "SELECT count(*) FROM grants").await,
        1,
        "its own grant only, not which other partners the merchant shares the ledger with"
    );
    let write = sqlx::query("UPDATE entries SET amount = 0")
        .execute(&mut reader)
        .await;
    assert_eq!(sqlstate(write), DENIED, "a reader cannot write");
    let bindings: Vec<(String, String)> = sqlx::query_as("SELECT * FROM reader_partners")
        .fetch_all(&mut reader)
        .await
        .unwrap();
    assert_eq!(bindings.len(), 1, "it reads its own binding, nobody else's");
    reader.close().await.unwrap();
}

/// Every relation the reader policies read (and the tables it queries), shadowed in the
/// reader's temporary schema by objects that claim access to everything, one of them through
/// a function that tries to make the reader superuser and a member of the writer role.
const SHADOWS: &str = "
CREATE FUNCTION pg_temp.escalate() RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
    EXECUTE format('GRANT vls_writer, finance_personal_data TO %I', session_user);
    RETURN 'escalated';
EXCEPTION WHEN OTHERS THEN RETURN 'refused';
END
$f$;
CREATE TEMP TABLE reader_partners AS
    SELECT session_user::text AS role_name, p AS partner FROM (VALUES ('acme'), ('dk')) v(p);
CREATE TEMP VIEW grants AS
    SELECT 1::bigint AS grant_id, 'dk'::text AS partner, l.ledger_id, NULL::text AS merchant_scheme,
           NULL::text AS merchant_id, now() AS granted_seen_at, now() AS last_seen_at,
           NULL::timestamptz AS revoked_seen_at, pg_temp.escalate() AS revoke_reason
    FROM public.ledgers l;
CREATE TEMP VIEW consent_windows AS
    SELECT 1::bigint AS grant_id, 'dk'::text AS partner, l.ledger_id,
           NULL::text AS merchant_scheme, NULL::text AS merchant_id, now() AS granted_seen_at,
           'infinity'::timestamptz AS visible_until, pg_temp.escalate() <> '' AS open
    FROM public.ledgers l;
CREATE TEMP TABLE ledgers (ledger_id text);
";

#[tokio::test]
async fn a_reader_cannot_widen_its_view_or_gain_rights_through_its_temporary_schema() {
    // Migrated the documented way: by a database owner that is not a superuser.
    let owner = TestLogin::create(&[]).await;
    let db = TestDb::migrated_by(&owner).await;
    let app = two_partners(Some(db)).await;
    let ids = app.sim.ledger_ids();
    let (login, mut reader) = reader(&app, &["finance_reader"], "dk").await;
    let before = count(&mut reader, "SELECT count(*) FROM entries").await;
    sqlx::raw_sql(SHADOWS).execute(&mut reader).await.unwrap();
    for table in [
        "entries",
        "public.ledgers",
        "grants",
        "feed_cursors",
        "merchants",
        "partners",
        "reconciliations",
        "payouts",
        "payout_entries",
        "payout_totals",
        "payout_transactions",
        "voucher_numbers",
        "daily_summary",
        "current_balances",
    ] {
        let ledgers: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT {col} FROM {table} ORDER BY 1",
            col = match table {
                "merchants" => "merchant_id",
                "partners" => "partner",
                _ => "ledger_id",
            }
        ))
        .fetch_all(&mut reader)
        .await
        .unwrap();
        let allowed: Vec<String> = match table {
            "partners" => vec!["dk".to_owned()],
            "merchants" => {
                sqlx::query_scalar("SELECT owner_id FROM public.ledgers WHERE ledger_id = $1")
                    .bind(&ids[1])
                    .fetch_all(&app.db.pool)
                    .await
                    .unwrap()
            }
            _ => vec![ids[1].clone()],
        };
        assert!(
            ledgers.iter().all(|l| allowed.contains(l)),
            "{table}: the shadows widened the reader's view to {ledgers:?}"
        );
    }
    assert_eq!(
        count(&mut reader, "SELECT count(*) FROM entries").await,
        before
    );
    let (superuser, member_of): (bool, Vec<String>) = sqlx::query_as(
        "SELECT r.rolsuper, coalesce(array_agg(m.rolname::text) FILTER (WHERE m.rolname IS NOT NULL), '{}')
         FROM pg_roles r
         LEFT JOIN pg_auth_members a ON a.member = r.oid
         LEFT JOIN pg_roles m ON m.oid = a.roleid
         WHERE r.rolname = $1 GROUP BY r.rolsuper",
    )
    .bind(&login.name)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(!superuser, "the reader became superuser");
    assert_eq!(member_of, ["finance_reader"], "the reader gained a role");
    reader.close().await.unwrap();
}

/// Functions of the schema that run with their owner's rights without a `search_path` that
/// searches `pg_catalog` first and `pg_temp` last (anything else lets the caller's temporary
/// objects stand in for what the function names), and views that run with their owner's
/// rights (which would bypass row-level security).
async fn unsafe_definitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
         JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prosecdef
           AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY(p.proconfig), false)
         UNION ALL
         SELECT 'view ' || c.oid::regclass::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'v'
           AND NOT coalesce('security_invoker=true' = ANY(c.reloptions), false)
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn no_function_or_view_of_the_schema_runs_with_its_owners_rights_unsafely() {
    let db = TestDb::new().await;
    assert_eq!(unsafe_definitions(&db.pool).await, Vec::<String>::new());
    let definers: i64 = count_all(
        &db.pool,
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND p.prosecdef",
    )
    .await;
    assert_eq!(definers, 0, "row-level security needs no definer's rights");
    // The check itself catches both mistakes.
    sqlx::raw_sql(
        "CREATE FUNCTION public.careless() RETURNS int LANGUAGE sql SECURITY DEFINER
             SET search_path = public AS 'SELECT 1';
         CREATE VIEW public.owner_rights AS SELECT 1 AS one;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        unsafe_definitions(&db.pool).await,
        ["function careless()", "view owner_rights"]
    );
}

#[tokio::test]
async fn a_reader_reads_its_partners_row_but_personal_data_needs_its_own_role() {
    let app = two_partners(None).await;
    let with_personal = count_all(
        &app.db.pool,
        "SELECT count(*) FROM entries WHERE name IS NOT NULL",
    )
    .await;
    assert!(with_personal > 0, "the simulator's payers have names");
    let (_login, mut reader) = reader(&app, &["finance_reader"], "acme").await;
    let partners: Vec<String> = sqlx::query_scalar("SELECT partner FROM partners")
        .fetch_all(&mut reader)
        .await
        .unwrap();
    assert_eq!(
        partners,
        ["acme"],
        "its own partner's health, nobody else's"
    );
    for column in ["name", "masked_phone_no", "message", "*"] {
        let read = sqlx::query(&format!("SELECT {column} FROM entries LIMIT 1"))
            .execute(&mut reader)
            .await;
        assert_eq!(sqlstate(read), DENIED, "a reader reads no {column}");
    }
    let payer_free = count(&mut reader, "SELECT count(*) FROM payout_entries").await;
    assert!(payer_free > 0, "the views need no personal column");

    let (_login, mut personal) = reader_of_personal_data(&app).await;
    let names = count(
        &mut personal,
        "SELECT count(*) FROM entries WHERE name IS NOT NULL",
    )
    .await;
    assert_eq!(names, with_personal, "the personal-data role reads them");
    reader.close().await.unwrap();
    personal.close().await.unwrap();
}

async fn reader_of_personal_data(app: &TestApp) -> (TestLogin, PgConnection) {
    reader(app, &["finance_reader", "finance_personal_data"], "acme").await
}

#[tokio::test]
async fn the_writer_cannot_change_the_schema_or_rewrite_history() {
    let mut app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    app.sim.revoke(CLIENT_ID, &ledger);
    assert!(app.sync_once().await.success());
    app.settings.sync.include_gdpr_sensitive_data = true;
    let login = TestLogin::create(&["vls_writer"]).await;
    let mut writer = login.connect(&app.db.url).await;
    assert!(count(&mut writer, "SELECT count(*) FROM entries").await > 0);
    let abuses = [
        "DROP TABLE entries",
        "ALTER TABLE entries ADD COLUMN x int",
        "TRUNCATE entries",
        "DELETE FROM entries",
        "UPDATE entries SET amount = amount + 1",
        "UPDATE entries SET balance_after = 0, balance_before = 0",
        "UPDATE entries SET entry_key = sha256(entry_key)",
        "UPDATE entries SET time = now(), ledger_date = current_date",
        "UPDATE entries SET synced_at = now()",
        "UPDATE entries SET name = 'forged'",
        "INSERT INTO entries (ledger_id, topic, seq, entry_key, psp_reference, entry_type, time,
             currency, amount, balance_before, balance_after, raw, synced_at)
         SELECT ledger_id, topic, seq + 100000, sha256(entry_key), psp_reference, entry_type,
             time, currency, amount, balance_before, balance_after, raw, '2000-01-01'
         FROM entries LIMIT 1",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99999999, 'skip', true, '\\x00', 0)",
        "UPDATE _sqlx_migrations SET success = false",
        "DELETE FROM _sqlx_migrations",
        "DELETE FROM grants",
        "UPDATE grants SET revoked_seen_at = NULL, revoke_reason = NULL
         WHERE revoked_seen_at IS NOT NULL",
        "UPDATE grants SET revoked_seen_at = revoked_seen_at - interval '1 day'
         WHERE revoked_seen_at IS NOT NULL",
        "UPDATE grants SET granted_seen_at = granted_seen_at - interval '1 year'",
        "UPDATE grants SET partner = 'someone-else'",
        "DELETE FROM ledgers",
        "DELETE FROM balance_chain_breaks",
        "INSERT INTO reader_partners (role_name, partner) VALUES (session_user, 'acme')",
        "UPDATE entry_conflicts SET received_raw = '{}'",
    ];
    for abuse in abuses {
        let done = sqlx::query(abuse).execute(&mut writer).await;
        assert_eq!(sqlstate(done), DENIED, "{abuse}");
    }
    writer.close().await.unwrap();
    let closed = count_all(
        &app.db.pool,
        "SELECT count(*) FROM grants WHERE revoked_seen_at IS NOT NULL",
    )
    .await;
    assert_eq!(closed, 1, "the closed period is still closed");
    app.assert_exact().await;
}

/// 23503: foreign_key_violation.
const NO_FEED: &str = "23503";

/// An entry belongs to a feed (`feed_cursors`), whoever writes it: an entry of no feed is
/// refused (with the statement's other rows), a feed that holds entries can be neither
/// deleted nor renamed, and a feed an open transaction is writing entries to stays until that
/// transaction ends. The owner is tried too: the rule is the schema's, not a privilege's.
#[tokio::test]
async fn an_entry_belongs_to_a_feed_and_a_feed_with_entries_stays() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    let login = TestLogin::create(&["vls_writer"]).await;
    let mut writer = login.connect(&app.db.url).await;
    let mut owner = PgConnection::connect(&app.db.url).await.unwrap();
    // A copy of the feed's first entry under a new key and seq, into `feed`.
    let copy_into = |feed: &str| {
        format!(
            "SELECT {feed}, seq + 100000, sha256(entry_key || convert_to(concat({feed}), 'UTF8')),
                 psp_reference, entry_type, time, currency, amount, balance_before,
                 balance_after, raw
             FROM entries WHERE ledger_id = '{ledger}' AND topic = 'funds' AND seq = 1"
        )
    };
    let insert = "INSERT INTO entries (ledger_id, topic, seq, entry_key, psp_reference,
        entry_type, time, currency, amount, balance_before, balance_after, raw) ";
    let before = count_all(&app.db.pool, "SELECT count(*) FROM entries").await;
    for conn in [&mut writer, &mut owner] {
        let orphan = format!("{insert}{}", copy_into("'no-such-ledger', 'funds'"));
        assert_eq!(
            sqlstate(sqlx::query(&orphan).execute(&mut *conn).await),
            NO_FEED
        );
        // One good row and one of no feed: neither is stored.
        let mixed = format!(
            "{insert}{} UNION ALL {}",
            copy_into("ledger_id, topic"),
            copy_into("ledger_id, 'fees-typo'")
        );
        assert_eq!(
            sqlstate(sqlx::query(&mixed).execute(&mut *conn).await),
            NO_FEED
        );
        let other_ledger = format!("{insert}{}", copy_into("'{ledger}-x', 'fees'"));
        assert_eq!(
            sqlstate(sqlx::query(&other_ledger).execute(&mut *conn).await),
            NO_FEED
        );
    }
    let after = count_all(&app.db.pool, "SELECT count(*) FROM entries").await;
    assert_eq!(after, before, "no refused row was stored");
    // Rows of two feeds that both exist are stored.
    let two_feeds = format!(
        "{insert}{} UNION ALL {}",
        copy_into("ledger_id, topic"),
        copy_into("ledger_id, 'fees'")
    );
    let done = sqlx::query(&two_feeds).execute(&mut writer).await.unwrap();
    assert_eq!(done.rows_affected(), 2);

    // A feed with entries is neither deleted nor moved to another ledger (by its owner: the
    // writer may delete no feed at all).
    sqlx::query("INSERT INTO ledgers (ledger_id, raw) VALUES ($1 || '-x', '{}')")
        .bind(&ledger)
        .execute(&mut owner)
        .await
        .unwrap();
    let delete =
        format!("DELETE FROM feed_cursors WHERE ledger_id = '{ledger}' AND topic = 'funds'");
    assert_eq!(
        sqlstate(sqlx::query(&delete).execute(&mut owner).await),
        NO_FEED
    );
    let rename = format!(
        "UPDATE feed_cursors SET ledger_id = ledger_id || '-x'
         WHERE ledger_id = '{ledger}' AND topic = 'funds'"
    );
    for conn in [&mut writer, &mut owner] {
        assert_eq!(
            sqlstate(sqlx::query(&rename).execute(&mut *conn).await),
            NO_FEED
        );
    }
    // A feed without entries may go, and others may be written meanwhile.
    let empty = format!("'{ledger}-x', 'fees'");
    sqlx::query(&format!(
        "INSERT INTO feed_cursors (ledger_id, topic) VALUES ({empty})"
    ))
    .execute(&mut owner)
    .await
    .unwrap();
    sqlx::query(&format!(
        "DELETE FROM feed_cursors WHERE (ledger_id, topic) = ({empty})"
    ))
    .execute(&mut owner)
    .await
    .unwrap();

    // The first entry of a feed, not yet committed: its feed cannot be deleted meanwhile.
    sqlx::query(&format!(
        "INSERT INTO feed_cursors (ledger_id, topic) VALUES ({empty})"
    ))
    .execute(&mut owner)
    .await
    .unwrap();
    let mut tx = writer.begin().await.unwrap();
    sqlx::query(&format!("{insert}{}", copy_into(&empty)))
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SET lock_timeout = '200ms'")
        .execute(&mut owner)
        .await
        .unwrap();
    let delete_new = format!("DELETE FROM feed_cursors WHERE (ledger_id, topic) = ({empty})");
    let waited = sqlx::query(&delete_new).execute(&mut owner).await;
    assert_eq!(
        sqlstate(waited),
        "55P03",
        "the delete waits for the writer's transaction"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        sqlstate(sqlx::query(&delete_new).execute(&mut owner).await),
        NO_FEED
    );
    writer.close().await.unwrap();
    owner.close().await.unwrap();
}

#[tokio::test]
async fn every_command_of_the_daemon_works_as_a_writer_login() {
    let mut app = TestApp::spawn(small()).await;
    let login = TestLogin::create(&["vls_writer"]).await;
    let url = login.url(&app.db.url);
    app.settings = test_settings(&app.base_url, &url, &[("acme", CLIENT_ID, CLIENT_SECRET)]);
    app.settings.sync.include_gdpr_sensitive_data = true;
    app.settings.sync.personal_data_retention_days = 0;
    let connect = |settings| async move {
        std::sync::Arc::new(
            SyncContext::connect(settings, Default::default())
                .await
                .unwrap(),
        )
    };
    // Sync, with personal data.
    let ctx = connect(app.settings.clone()).await;
    let report = sync::sync_once(&ctx, &CancellationToken::new()).await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
    // Consent: a withdrawn grant closes its period; granted again, a second opens.
    let ledger = app.sim.ledger_ids()[1].clone();
    app.sim.revoke(CLIENT_ID, &ledger);
    let report = sync::sync_once(&ctx, &CancellationToken::new()).await;
    assert_eq!(report.grants_closed, 1, "{report}");
    app.sim.grant(CLIENT_ID, &ledger);
    let report = sync::sync_once(&ctx, &CancellationToken::new()).await;
    assert_eq!(report.grants_opened, 1, "{report}");
    // Reconciliation against the daily reports.
    let verified = reconcile::verify(&ctx, &CancellationToken::new())
        .await
        .unwrap();
    assert!(verified.clean(), "{verified}");
    // A scheduled exporter.
    let dir = tempfile::tempdir().unwrap();
    let exporter = directory_exporter("journal", ExporterKind::Journal, dir.path(), Format::Csv);
    let done = scheduled::run(
        &ctx.pool,
        &ctx.settings,
        &exporter,
        &Selection::default(),
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert!(done.error.is_none(), "{:?}", done.error);
    assert!(done.exported > 0);
    // `reset-cursor`.
    assert!(feed_health::reset_cursor(&ctx.pool, &ledger, Topic::Funds)
        .await
        .unwrap());
    // The personal-data purge: every entry is older than a day.
    ctx.pool.close().await;
    app.settings.sync.personal_data_retention_days = 1;
    let ctx = connect(app.settings.clone()).await;
    let report = sync::sync_once(&ctx, &CancellationToken::new()).await;
    assert!(report.success(), "{report}");
    ctx.pool.close().await;
    assert_eq!(
        count_all(
            &app.db.pool,
            "SELECT count(*) FROM entries WHERE name IS NOT NULL OR message IS NOT NULL"
        )
        .await,
        0,
        "purged by the writer"
    );
    app.assert_exact().await;
}
