//! HTTP tests of the hostile modes that reshape feed and dates pages: the endless empty feed,
//! the repeating dates page, the huge page (both ways), the huge cursor and the far-future
//! entry.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::faults::send;
use super::hostile::{header, json_of, mode, raw_get, sent, start};
use crate::simulator::{Hostile, HostileConfig};

const FEED: &str = "/report/v2/ledgers/100001/funds/feed";

fn items(body: &Value) -> &[Value] {
    body["items"].as_array().map_or(&[], Vec::as_slice)
}

fn cursor(body: &Value) -> String {
    body["cursor"].as_str().expect("cursor").to_string()
}

#[tokio::test]
async fn feed_empty_forever_answers_nothing_with_a_fresh_cursor_and_loses_no_position() {
    let (h, token) = start().await;
    let expected = h.sim.expected_entries("100001", "funds");
    let first = json_of(send(&h, FEED, &token).await).await;
    assert_eq!(items(&first), &expected[..7]);
    h.sim.set_hostile(Some(mode("feed-empty-forever").into()));
    let mut seen = HashSet::new();
    let mut path = format!("{FEED}?cursor={}", cursor(&first));
    seen.insert(cursor(&first));
    for _ in 0..50 {
        let r = send(&h, &path, &token).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "vipps-feed-page-size").as_deref(), Some("7"));
        let body = json_of(r).await;
        let next = cursor(&body);
        assert_eq!(
            body,
            json!({ "cursor": next, "tryLater": false, "items": [] })
        );
        assert!(seen.insert(next.clone()), "cursor {next} came twice");
        path = format!("{FEED}?cursor={next}");
    }
    // A first call gets the same treatment.
    assert!(items(&json_of(send(&h, FEED, &token).await).await).is_empty());
    assert_eq!(sent(&h, "feed-empty-forever"), 51);
    // Every one of those cursors still names where the walk stood.
    h.sim.set_hostile(None);
    let body = json_of(send(&h, &path, &token).await).await;
    assert_eq!(items(&body), &expected[7..14]);
}

#[tokio::test]
async fn dates_cursor_repeat_says_has_more_with_the_same_cursor_and_items_forever() {
    let (h, token) = start().await;
    let path = "/report/v2/ledgers/100002/fees/dates/2026-01-07";
    let normal = json_of(send(&h, path, &token).await).await;
    assert_eq!(
        normal["hasMore"], true,
        "more than one 7-item page that date"
    );
    h.sim.set_hostile(Some(HostileConfig::on_ledger(
        mode("dates-cursor-repeat"),
        "100002",
    )));
    let first = json_of(send(&h, path, &token).await).await;
    assert_eq!(
        (&first["hasMore"], &first["tryLater"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(items(&first), items(&normal));
    let same = cursor(&first);
    let again = format!("{path}?cursor={same}");
    for _ in 0..5 {
        assert_eq!(json_of(send(&h, &again, &token).await).await, first);
    }
    // The open last date, which really says tryLater, is no exception.
    let open = "/report/v2/ledgers/100002/funds/dates/2026-01-14";
    let body = json_of(send(&h, open, &token).await).await;
    assert_eq!(
        (&body["hasMore"], &body["tryLater"]),
        (&json!(true), &json!(false))
    );
    // Other ledgers are left alone.
    let other = "/report/v2/ledgers/100001/fees/dates/2026-01-07";
    let body = json_of(send(&h, other, &token).await).await;
    h.sim.set_hostile(None);
    assert_eq!(body, json_of(send(&h, other, &token).await).await);
    assert_eq!(sent(&h, "dates-cursor-repeat"), 7);
}

#[tokio::test]
async fn a_huge_page_has_an_honest_content_length_and_streams_its_first_megabytes() {
    let (h, token) = start().await;
    h.sim.set_hostile(Some(mode("huge-page").into()));
    let started = Instant::now();
    let mut r = send(&h, FEED, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "content-length"),
        Some((300u64 << 20).to_string())
    );
    assert_eq!(header(&r, "transfer-encoding"), None);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    let mut head = Vec::new();
    while head.len() < 2 << 20 {
        match r.chunk().await.expect("body") {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => panic!("the body ended after {} bytes", head.len()),
        }
    }
    drop(r);
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with(r#"{"cursor":""#), "{}", &text[..80]);
    let note = text
        .find(r#""note":"lorem ipsum"#)
        .expect("the padding string");
    assert!(note < 4096 && text[note..].len() > 1 << 20);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(sent(&h, "huge-page"), 1);
    // The simulator is still there for the next call.
    h.sim.set_hostile(None);
    assert_eq!(send(&h, FEED, &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_chunked_huge_page_is_valid_json_of_the_exact_size_around_the_real_page() {
    let (h, token) = start().await;
    let normal = json_of(send(&h, FEED, &token).await).await;
    let end = {
        let expected = h.sim.expected_entries("100001", "funds");
        let mut path = FEED.to_string();
        for _ in 0..expected.len().div_ceil(7) {
            let body = json_of(send(&h, &path, &token).await).await;
            path = format!("{FEED}?cursor={}", cursor(&body));
        }
        path
    };
    let at_end = json_of(send(&h, &end, &token).await).await;
    assert!(items(&at_end).is_empty());
    h.sim.set_hostile(Some(
        Hostile::HugePage {
            megabytes: 8,
            chunked: true,
        }
        .into(),
    ));
    for (path, want, megabytes) in [(FEED, &normal, 8u64), (end.as_str(), &at_end, 8)] {
        let r = send(&h, path, &token).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-length"), None);
        assert_eq!(header(&r, "transfer-encoding").as_deref(), Some("chunked"));
        let bytes = r.bytes().await.expect("the whole body");
        assert_eq!(bytes.len() as u64, megabytes << 20);
        let mut body: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        let holder = match body["items"].as_array_mut().and_then(|i| i.first_mut()) {
            Some(first) => first,
            None => &mut body,
        };
        let note = holder
            .as_object_mut()
            .and_then(|m| m.remove("note"))
            .expect("a note");
        assert!(note.as_str().is_some_and(|s| s.len() > 7 << 20));
        assert_eq!(&body, want);
    }
    assert_eq!(sent(&h, "huge-page"), 2);
}

#[tokio::test]
async fn a_huge_cursor_is_exactly_as_long_as_asked_on_an_otherwise_normal_page() {
    let (h, token) = start().await;
    let expected = h.sim.expected_entries("100001", "funds");
    h.sim.set_hostile(Some(mode("huge-cursor").into()));
    let body = json_of(send(&h, FEED, &token).await).await;
    assert_eq!(cursor(&body).len(), 5 << 20);
    assert_eq!(items(&body), &expected[..7]);
    assert_eq!(body["tryLater"], false);
    let huge = cursor(&body);
    for bytes in [10_000usize, 10_001, 10_002, 10_003] {
        h.sim
            .set_hostile(Some(Hostile::HugeCursor { bytes }.into()));
        let body = json_of(send(&h, FEED, &token).await).await;
        assert_eq!(cursor(&body).len(), bytes);
        // Sent back, it still names the next position.
        let next = format!("{FEED}?cursor={}", cursor(&body));
        h.sim.set_hostile(None);
        let body = json_of(send(&h, &next, &token).await).await;
        assert_eq!(items(&body), &expected[7..14], "{bytes}");
    }
    assert_eq!(sent(&h, "huge-cursor"), 5);
    // A 5 MiB cursor sent back is more than HTTP libraries or the server take: the server
    // refuses it (or hangs up) and carries on.
    let (status, _) = raw_get(&h, &format!("{FEED}?cursor={huge}"), &token).await;
    assert!(
        status
            .as_deref()
            .is_none_or(|s| s.starts_with("HTTP/1.1 4")),
        "{status:?}"
    );
    assert_eq!(send(&h, FEED, &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn far_future_entry_ends_the_feed_and_dates_with_a_chain_consistent_entry_dated_2099() {
    let (h, token) = start().await;
    h.sim.set_hostile(Some(HostileConfig::on_ledger(
        mode("far-future-entry"),
        "100003",
    )));
    for (ledger, topic) in [("100003", "funds"), ("100003", "fees"), ("100001", "funds")] {
        let expected = h.sim.expected_entries(ledger, topic);
        let base = format!("/report/v2/ledgers/{ledger}/{topic}/feed");
        let (mut path, mut got) = (base.clone(), Vec::new());
        let last = loop {
            let body = json_of(send(&h, &path, &token).await).await;
            got.extend(items(&body).iter().cloned());
            path = format!("{base}?cursor={}", cursor(&body));
            if body["tryLater"] == true {
                break cursor(&body);
            }
        };
        assert_eq!(got[..expected.len()], expected[..], "{ledger}/{topic}");
        if ledger != "100003" {
            assert_eq!(got.len(), expected.len());
            continue;
        }
        let [far] = &got[expected.len()..] else {
            panic!("{} extra entries", got.len() - expected.len());
        };
        let before = expected.last().expect("entries")["balanceAfter"].clone();
        assert_eq!(far["ledgerDate"], "2099-12-31");
        assert!(
            far["time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2099-12-31T")),
            "{far}"
        );
        assert_eq!(far["balanceBefore"], before);
        let sum = far["balanceBefore"]
            .as_i64()
            .zip(far["amount"].as_i64())
            .map(|(b, a)| b + a);
        assert_eq!(far["balanceAfter"].as_i64(), sum);
        let kind = if topic == "funds" {
            "capture"
        } else {
            "capture-fee"
        };
        assert_eq!(far["entryType"], kind);
        // At the end: nothing more, the same cursor, tryLater.
        let body = json_of(send(&h, &path, &token).await).await;
        assert_eq!(
            body,
            json!({ "cursor": last, "tryLater": true, "items": [] })
        );
        let dates = format!("/report/v2/ledgers/{ledger}/{topic}/dates/2099-12-31");
        let body = json_of(send(&h, &dates, &token).await).await;
        assert_eq!(
            body,
            json!({ "hasMore": false, "tryLater": true, "items": [far] })
        );
    }
    let other = "/report/v2/ledgers/100001/funds/dates/2099-12-31";
    assert!(items(&json_of(send(&h, other, &token).await).await).is_empty());
    assert_eq!(sent(&h, "far-future-entry"), 4);
}
