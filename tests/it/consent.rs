//! The consent registry: grant periods opened and closed as merchants grant and withdraw
//! access, syncing that follows consent, and several partners in one daemon.

use std::path::Path;

use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{Accounts, ExporterKind, Topic};
use vipps_ledger_sync::export::scheduled::{self, Selection};
use vipps_ledger_sync::export::{self, Format, Kind};
use vipps_ledger_sync::reconcile;
use vipps_ledger_sync::simulator::SimulatorConfig;
use vipps_ledger_sync::store::export_rows::ExportFilter;
use vipps_ledger_sync::store::{feed_health, ledgers};
use vipps_ledger_sync::sync::{self, discovery};

use crate::common::{
    directory_exporter, small, test_settings, TestApp, TestLogin, CLIENT_ID, CLIENT_SECRET,
};

/// (partner, ledger_id, revoke_reason) of every grant period, in order of opening.
async fn periods(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as("SELECT partner, ledger_id, revoke_reason FROM grants ORDER BY grant_id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

async fn stored(app: &TestApp, ledger: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM entries WHERE ledger_id = $1")
        .bind(ledger)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

fn feed_requests_for(app: &TestApp, ledger: &str) -> u64 {
    app.sim
        .stats()
        .feed_requests
        .iter()
        .filter(|((l, _), _)| l == ledger)
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn a_revoked_ledger_closes_its_period_keeps_its_data_and_is_not_polled() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[2].clone();
    let kept = stored(&app, &ledger).await;
    app.sim.revoke(CLIENT_ID, &ledger);
    app.sim.grow(1);
    app.sim.reset_stats();
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.grants_closed, 1);
    assert_eq!(
        feed_requests_for(&app, &ledger),
        0,
        "a ledger without a grant is not polled"
    );
    assert_eq!(stored(&app, &ledger).await, kept, "its entries are kept");
    let closed: Vec<_> = periods(&app)
        .await
        .into_iter()
        .filter(|p| p.2.is_some())
        .collect();
    assert_eq!(
        closed,
        [(
            "test-partner".into(),
            ledger.clone(),
            Some("absent_from_list".into())
        )]
    );
    let others: Vec<String> = app
        .sim
        .ledger_ids()
        .into_iter()
        .filter(|l| *l != ledger)
        .collect();
    crate::common::assert_exact_ledgers(&app, &others).await;
}

#[tokio::test]
async fn a_regranted_ledger_opens_a_second_period_and_continues_from_its_cursor() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(20);
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    app.sim.revoke(CLIENT_ID, &ledger);
    assert!(app.sync_once().await.success());
    app.sim.grow(1);
    assert!(app.sync_once().await.success());
    let before_regrant = stored(&app, &ledger).await;
    app.sim.grant(CLIENT_ID, &ledger);
    app.sim.reset_stats();
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.grants_opened, 1);
    let mine: Vec<_> = periods(&app)
        .await
        .into_iter()
        .filter(|p| p.1 == ledger)
        .collect();
    assert_eq!(
        mine,
        [
            (
                "test-partner".into(),
                ledger.clone(),
                Some("absent_from_list".into())
            ),
            ("test-partner".into(), ledger.clone(), None)
        ],
        "history is kept: a second period, the first untouched"
    );
    // Resumed from the stored cursor: only the day that grew was fetched.
    let new_entries = (stored(&app, &ledger).await - before_regrant) as u64;
    assert!(new_entries > 0);
    assert!(feed_requests_for(&app, &ledger) <= new_entries / 20 + 4);
    app.assert_exact().await;
}

#[tokio::test]
async fn a_listing_that_fails_on_its_second_page_revokes_nothing() {
    let app = TestApp::spawn(SimulatorConfig {
        ledger_page_size: 2,
        ..small()
    })
    .await;
    assert!(app.sync_once().await.success());
    app.sim.fail_ledger_list_page(Some(2));
    let report = app.sync_once().await;
    assert!(!report.success());
    assert_eq!(report.failed_partners.len(), 1, "{report}");
    assert_eq!(report.grants_closed, 0);
    assert!(
        periods(&app).await.iter().all(|p| p.2.is_none()),
        "every grant is still open"
    );
    // The ledgers are still synced on the grants already known.
    assert_eq!(report.units_ok, 8, "{report}");
    let failed: Option<String> = sqlx::query_scalar("SELECT last_error FROM partners")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(failed.unwrap().contains("ledgers"));
    app.sim.fail_ledger_list_page(None);
    assert!(app.sync_once().await.success());
    let failed: Option<String> = sqlx::query_scalar("SELECT last_error FROM partners")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(failed, None, "the partner recovers");
}

#[tokio::test]
async fn a_feed_404_closes_the_period() {
    let app = TestApp::spawn(small()).await;
    let ctx = app.context();
    discovery::discover(&ctx, &CancellationToken::new()).await;
    let ledger = app.sim.ledger_ids()[3].clone();
    // Withdrawn between the listing and the feed pass: the feed answers 404.
    app.sim.revoke(CLIENT_ID, &ledger);
    let report = sync::sync_feeds(&ctx, &CancellationToken::new(), sync::Backoff::Ignore).await;
    assert!(
        report.success(),
        "losing access is not a sync failure: {report}"
    );
    assert_eq!(report.grants_closed, 1);
    let closed: Vec<_> = periods(&app)
        .await
        .into_iter()
        .filter(|p| p.2.is_some())
        .collect();
    assert_eq!(
        closed,
        [(
            "test-partner".into(),
            ledger.clone(),
            Some("feed_404".into())
        )]
    );
    assert_eq!(stored(&app, &ledger).await, 0);
}

#[tokio::test]
async fn two_partners_with_overlapping_ledgers_store_each_entry_once_and_hold_their_own_grants() {
    let mut app = TestApp::spawn(small()).await;
    let ids = app.sim.ledger_ids();
    app.sim.add_partner("bureau-dk", "dk-secret");
    app.sim.grant("bureau-dk", &ids[0]);
    app.sim.grant("bureau-dk", &ids[1]);
    app.settings = test_settings(
        &app.base_url,
        &app.db.url,
        &[
            ("acme", CLIENT_ID, CLIENT_SECRET),
            ("dk", "bureau-dk", "dk-secret"),
        ],
    );
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
    for (unit, n) in app.sim.stats().feed_requests {
        assert_eq!(n, 1, "{unit:?} was synced once, not once per partner");
    }
    let open: Vec<(String, i64)> = sqlx::query_as(
        "SELECT partner, count(*) FROM grants WHERE revoked_seen_at IS NULL GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(open, [("acme".into(), 4), ("dk".into(), 2)]);

    // acme loses ledger 0; dk still holds it, so it goes on with dk's token.
    app.sim.revoke(CLIENT_ID, &ids[0]);
    app.sim.grow(1);
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
    let holders: Vec<String> = sqlx::query_scalar(
        "SELECT partner FROM grants WHERE ledger_id = $1 AND revoked_seen_at IS NULL",
    )
    .bind(&ids[0])
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(holders, ["dk"]);
}

#[tokio::test]
async fn one_partner_with_a_wrong_secret_never_stops_the_other() {
    let mut app = TestApp::spawn(small()).await;
    app.sim
        .add_partner_with_all_ledgers("bureau-dk", "dk-secret");
    app.settings = test_settings(
        &app.base_url,
        &app.db.url,
        &[
            ("broken", CLIENT_ID, "wrong-secret-x"),
            ("dk", "bureau-dk", "dk-secret"),
        ],
    );
    let report = app.sync_once().await;
    assert!(!report.success(), "a failed partner fails the pass");
    assert_eq!(report.failed_partners.len(), 1);
    assert_eq!(report.failed_partners[0].0, "broken");
    assert!(report.failed_units.is_empty(), "{report}");
    app.assert_exact().await;
    let state: Vec<(String, bool)> =
        sqlx::query_as("SELECT partner, failed_at IS NOT NULL FROM partners ORDER BY 1")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(state, [("broken".into(), true), ("dk".into(), false)]);
}

#[tokio::test]
async fn a_rejected_cursor_blocks_the_feed_until_a_person_resets_it() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[1].clone();
    app.sim.invalidate_cursors(&ledger);
    app.sim.grow(1);
    let report = app.sync_once().await;
    assert_eq!(report.failed_units.len(), 2, "{report}");
    assert!(
        report
            .failed_units
            .iter()
            .all(|u| u.error.contains("blocked")),
        "{report}"
    );
    let kept = stored(&app, &ledger).await;
    // Blocked: not polled again, not restarted.
    app.sim.reset_stats();
    let report = app.sync_once().await;
    assert_eq!(report.failed_units.len(), 2);
    assert_eq!(feed_requests_for(&app, &ledger), 0);
    assert_eq!(stored(&app, &ledger).await, kept);
    for topic in Topic::ALL {
        assert!(feed_health::reset_cursor(&app.db.pool, &ledger, topic)
            .await
            .unwrap());
    }
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
}

/// Entries of `ledger` in a CSV export by `partner` (of every date).
async fn exported_entries(app: &TestApp, partner: &str, ledger: &str, kind: Kind) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let filter = ExportFilter {
        ledgers: Vec::new(),
        partner: Some(partner.to_owned()),
        topic: None,
        from: NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2100, 1, 1).unwrap(),
    };
    export::export(
        &app.db.pool,
        &filter,
        kind,
        Format::Csv,
        Default::default(),
        &Accounts::default(),
        Some(&path),
    )
    .await
    .unwrap();
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.starts_with(&format!("{ledger},")) || l.contains(&format!(",{ledger},")))
        .map(str::to_owned)
        .collect()
}

/// The dates of `ledger` a scheduled exporter scoped to `partner` delivers now.
async fn delivered_dates(app: &TestApp, partner: &str, ledger: &str, dir: &Path) -> Vec<String> {
    let mut exporter = directory_exporter(
        &format!("files-{partner}"),
        ExporterKind::Entries,
        dir,
        Format::Csv,
    );
    exporter.partner = Some(partner.to_owned());
    let report = scheduled::run(
        &app.db.pool,
        &app.settings,
        &exporter,
        &Selection::default(),
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let mut dates: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            n.strip_prefix(&format!("{ledger}_"))
                .map(|rest| rest[..10].to_owned())
        })
        .collect();
    dates.sort();
    dates
}

async fn seen_by(reader: &mut sqlx::PgConnection, ledger: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM entries WHERE ledger_id = $1")
        .bind(ledger)
        .fetch_one(reader)
        .await
        .unwrap()
}

#[tokio::test]
async fn consent_ends_when_it_ends_for_readers_exports_and_exporters_and_a_regrant_restores_it() {
    // Firms A and B share a ledger; the merchant moves to B and withdraws A's access.
    let mut app = TestApp::spawn(small()).await;
    let shared = app.sim.ledger_ids()[1].clone();
    app.sim.add_partner("bureau-b", "b-secret");
    app.sim.grant("bureau-b", &shared);
    app.settings = test_settings(
        &app.base_url,
        &app.db.url,
        &[
            ("a", CLIENT_ID, CLIENT_SECRET),
            ("b", "bureau-b", "b-secret"),
        ],
    );
    let verify = |app: &TestApp| {
        let ctx = app.context();
        async move {
            let report = reconcile::verify(&ctx, &CancellationToken::new())
                .await
                .unwrap();
            assert!(report.clean(), "{report}");
        }
    };
    assert!(app.sync_once().await.success());
    verify(&app).await;
    let before = stored(&app, &shared).await;
    let mut readers = Vec::new();
    for partner in ["a", "b"] {
        let login = TestLogin::create(&["finance_reader"]).await;
        sqlx::query("INSERT INTO reader_partners (role_name, partner) VALUES ($1, $2)")
            .bind(&login.name)
            .bind(partner)
            .execute(&app.db.pool)
            .await
            .unwrap();
        let conn = login.connect(&app.db.url).await;
        readers.push((login, conn));
    }
    assert_eq!(seen_by(&mut readers[0].1, &shared).await, before);

    app.sim.revoke(CLIENT_ID, &shared);
    app.sim.grow(2);
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.grants_closed, 1);
    verify(&app).await;
    let after = stored(&app, &shared).await;
    assert!(after > before, "new entries, synced through B's grant");
    app.assert_exact().await;

    // A sees what was stored while it could read the ledger; B sees everything.
    assert_eq!(
        seen_by(&mut readers[0].1, &shared).await,
        before,
        "A's reader"
    );
    assert_eq!(
        seen_by(&mut readers[1].1, &shared).await,
        after,
        "B's reader"
    );
    let a_entries = exported_entries(&app, "a", &shared, Kind::Entries).await;
    assert_eq!(a_entries.len() as i64, before, "export --partner a");
    let b_entries = exported_entries(&app, "b", &shared, Kind::Entries).await;
    assert_eq!(b_entries.len() as i64, after, "export --partner b");
    let a_summary: i64 = exported_entries(&app, "a", &shared, Kind::Summary)
        .await
        .iter()
        .map(|l| l.split(',').nth(5).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(a_summary, before, "export --partner a --kind summary");
    let overview = ledgers::overview(&app.db.pool, Some("a")).await.unwrap();
    let row = overview.iter().find(|r| r.ledger_id == shared).unwrap();
    assert_eq!((row.entries, row.state.as_str()), (before, "revoked"));

    // A's exporter delivers only dates it could see whole; B's every date.
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_dates = delivered_dates(&app, "a", &shared, a_dir.path()).await;
    let b_dates = delivered_dates(&app, "b", &shared, b_dir.path()).await;
    assert!(a_dates.len() < b_dates.len(), "{a_dates:?} vs {b_dates:?}");
    for date in &a_dates {
        let name = format!("{shared}_{date}_entries.csv");
        assert_eq!(
            std::fs::read(a_dir.path().join(&name)).unwrap(),
            std::fs::read(b_dir.path().join(&name)).unwrap(),
            "A gets whole dates, never part of one"
        );
        assert!(b_dates.contains(date));
    }

    // The merchant grants A access again: the whole history, as the API would serve it.
    app.sim.grant(CLIENT_ID, &shared);
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.grants_opened, 1);
    assert_eq!(seen_by(&mut readers[0].1, &shared).await, after);
    let a_entries = exported_entries(&app, "a", &shared, Kind::Entries).await;
    assert_eq!(a_entries.len() as i64, after);
    assert_eq!(
        delivered_dates(&app, "a", &shared, a_dir.path()).await,
        b_dates,
        "A's exporter catches up"
    );
}
