//! HTTP tests of the hostile modes of the ledger list and of the ones that replace whole
//! answers: cursors going round, hostile ledger ids, the redirect and the random data.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use super::faults::send;
use super::hostile::{header, json_of, listed_ids, mode, raw_get, sent, start, LIST};
use super::http::{Harness, SYSTEM_HEADERS};
use crate::simulator::schema_random::ENTRY_TYPES;
use crate::simulator::{Hostile, HostileConfig, SimulatorConfig};

/// A client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A path segment with every byte but `A-Za-z0-9-._~` percent-encoded.
pub(super) fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn ledger_cursor_cycle_goes_round_never_empty_and_never_the_requests_own_cursor() {
    let (h, token) = start().await;
    let real: Vec<Value> = h
        .sim
        .ledger_ids()
        .iter()
        .filter_map(|id| h.sim.ledger_json(id))
        .collect();
    for period in [2usize, 3] {
        let m = Hostile::LedgerCursorCycle {
            period: period as u32,
        };
        h.sim.set_hostile(Some(m.into()));
        let (mut path, mut cursors, mut request_cursor) = (LIST.to_string(), Vec::new(), None);
        for _ in 0..4 * period {
            let r = send(&h, &path, &token).await;
            assert_eq!(r.status(), StatusCode::OK);
            let body = json_of(r).await;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            assert!(
                !items.is_empty() && items.iter().all(|l| real.contains(l)),
                "{body}"
            );
            let cursor = body["cursor"].as_str().expect("cursor").to_string();
            assert!(!cursor.is_empty());
            assert_ne!(Some(&cursor), request_cursor.as_ref());
            path = format!("{LIST}?cursor={cursor}");
            request_cursor = Some(cursor.clone());
            cursors.push(cursor);
        }
        let distinct: BTreeSet<_> = cursors.iter().collect();
        assert_eq!(distinct.len(), period);
        for (i, c) in cursors.iter().enumerate().skip(period) {
            assert_eq!(c, &cursors[i - period]);
        }
    }
    assert_eq!(sent(&h, "ledger-cursor-cycle"), 4 * 2 + 4 * 3);
}

#[tokio::test]
async fn hostile_ledger_ids_are_listed_and_their_feeds_and_dates_answer_at_percent_encoded_paths() {
    let (h, token) = start().await;
    h.sim.set_hostile(Some(mode("hostile-ledger-ids").into()));
    let hostile = Hostile::hostile_ledger_ids();
    assert_eq!(hostile.len(), 6);
    assert!(hostile.iter().any(|id| id.chars().count() == 300));
    assert!(hostile.iter().any(|id| id.contains('\u{1b}')));
    assert!(hostile.iter().any(|id| id.contains(' ')));
    let listed: BTreeSet<String> = listed_ids(&h, &token).await.into_iter().collect();
    let want: BTreeSet<String> = h
        .sim
        .ledger_ids()
        .into_iter()
        .chain(hostile.clone())
        .collect();
    assert_eq!(listed, want);
    for id in &hostile {
        let expected = h.sim.expected_entries(id, "funds");
        assert!(expected.len() > 14, "{id:?}");
        let segment = encode_segment(id);
        let body = if id == ".." {
            // Every URL library turns `..` and `%2E%2E` into "one level up"; send it as is.
            let path = format!("/report/v2/ledgers/{segment}/funds/feed");
            let (status, body) = raw_get(&h, &path, &token).await;
            assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
            serde_json::from_str(&body).expect("a JSON body (not chunked)")
        } else {
            let r = send(
                &h,
                &format!("/report/v2/ledgers/{segment}/funds/feed"),
                &token,
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK, "{id:?}");
            json_of(r).await
        };
        assert_eq!(
            body["items"].as_array().map(Vec::as_slice),
            Some(&expected[..7]),
            "{id:?}"
        );
        if id != ".." {
            let next = body["cursor"].as_str().expect("cursor");
            let path = format!("/report/v2/ledgers/{segment}/funds/feed?cursor={next}");
            let body = json_of(send(&h, &path, &token).await).await;
            assert_eq!(
                body["items"].as_array().map(Vec::as_slice),
                Some(&expected[7..14])
            );
            let dates = format!("/report/v2/ledgers/{segment}/fees/dates/2026-01-06");
            let r = send(&h, &dates, &token).await;
            assert_eq!(r.status(), StatusCode::OK, "{id:?}");
            assert!(json_of(r).await["items"]
                .as_array()
                .is_some_and(|i| !i.is_empty()));
        }
    }
    assert!(sent(&h, "hostile-ledger-ids") >= 4 + 16);
    h.sim.set_hostile(None);
    assert_eq!(listed_ids(&h, &token).await, h.sim.ledger_ids());
    let path = format!("/report/v2/ledgers/{}/funds/feed", encode_segment("a\nb"));
    assert_eq!(
        send(&h, &path, &token).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_redirect_points_the_ledger_list_at_another_host_and_with_data_the_feed_and_dates() {
    let (a, token) = start().await;
    let b = Harness::start(SimulatorConfig {
        ledgers: 13,
        ledger_page_size: 20,
        ..SimulatorConfig::default()
    })
    .await;
    let b_token = b.token().await;
    let plain = no_redirects();
    let get = |url: String, token: &str| {
        let mut req = plain.get(url).bearer_auth(token);
        for (k, v) in SYSTEM_HEADERS {
            req = req.header(k, v);
        }
        req.send()
    };
    a.sim.set_hostile(Some(
        Hostile::Redirect {
            status: 302,
            location: b.base.clone(),
            data: false,
        }
        .into(),
    ));
    let r = get(format!("{}{LIST}?cursor=x", a.base), &token)
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = header(&r, "location").expect("Location");
    assert_eq!(location, format!("{}{LIST}?cursor=x", b.base));
    assert_eq!(r.text().await.expect("body"), "");
    let r = get(format!("{}{LIST}", a.base), &token).await.expect("GET");
    let location = header(&r, "location").expect("Location");
    let fooled = json_of(get(location, &b_token).await.expect("GET")).await;
    let ids: Vec<&str> = fooled["items"]
        .as_array()
        .map(|i| i.iter().filter_map(|l| l["ledgerId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 13);
    assert_eq!(ids.last(), Some(&"100013"));
    let feed = "/report/v2/ledgers/100001/funds/feed";
    let r = get(format!("{}{feed}", a.base), &token).await.expect("GET");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "data requests stay put without \"data\""
    );
    for status in [301u16, 303, 307, 308] {
        a.sim.set_hostile(Some(
            Hostile::Redirect {
                status,
                location: "https://elsewhere.example/report".into(),
                data: true,
            }
            .into(),
        ));
        for path in [
            LIST,
            feed,
            "/report/v2/ledgers/100001/funds/dates/2026-01-07",
        ] {
            let r = get(format!("{}{path}", a.base), &token).await.expect("GET");
            assert_eq!(r.status().as_u16(), status, "{path}");
            let location = header(&r, "location");
            assert_eq!(
                location.as_deref(),
                Some("https://elsewhere.example/report")
            );
        }
    }
    a.sim.set_hostile(Some(HostileConfig::on_ledger(
        Hostile::Redirect {
            status: 307,
            location: b.base.clone(),
            data: true,
        },
        "100002",
    )));
    let r = get(format!("{}{LIST}", a.base), &token).await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(format!("{}{feed}", a.base), &token).await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let other = "/report/v2/ledgers/100002/fees/feed?cursor=abc";
    let r = get(format!("{}{other}", a.base), &token)
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&r, "location"), Some(format!("{}{other}", b.base)));
    assert_eq!(sent(&a, "redirect"), 2 + 12 + 1);
}

/// Whether `v` is one to five lorem-ipsum words.
fn is_lorem(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        let words: Vec<&str> = s.split(' ').collect();
        (1..=5).contains(&words.len())
            && words
                .iter()
                .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic()))
    })
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn is_money(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x.abs() <= 2_147_483_647.0)
}

#[tokio::test]
async fn schema_random_answers_every_data_endpoint_with_junk_of_the_documented_shape() {
    let (h, token) = start().await;
    h.sim.set_hostile(Some(mode("schema-random").into()));
    let (mut bools, mut counts, mut floats) = (BTreeSet::new(), BTreeSet::new(), 0);
    let mut bodies = Vec::new();
    for i in 0..30 {
        let list = json_of(send(&h, &format!("{LIST}?cursor=c{i}"), &token).await).await;
        assert_eq!(keys(&list), ["cursor", "items"]);
        assert!(is_lorem(&list["cursor"]), "{list}");
        for l in list["items"].as_array().expect("items") {
            let fields = [
                "ledgerId",
                "owner",
                "payoutBankAccount",
                "settlesForRecipientHandles",
            ];
            assert_eq!(keys(l), fields);
            assert!(is_lorem(&l["ledgerId"]));
            for nested in ["owner", "payoutBankAccount"] {
                assert_eq!(keys(&l[nested]), ["id", "scheme"]);
                assert!(is_lorem(&l[nested]["id"]) && is_lorem(&l[nested]["scheme"]));
            }
            let handles = l["settlesForRecipientHandles"].as_array().expect("array");
            assert!(handles.len() <= 5 && handles.iter().all(is_lorem));
        }
        counts.insert(list["items"].as_array().map_or(0, Vec::len));
        // Any ledger id gets an answer, as from a mock server that knows only the schema.
        for path in [
            format!("/report/v2/ledgers/{i}/funds/feed"),
            format!(
                "/report/v2/ledgers/100001/fees/dates/2026-01-0{}",
                i % 9 + 1
            ),
        ] {
            let r = send(&h, &path, &token).await;
            assert_eq!(r.status(), StatusCode::OK);
            let page = json_of(r).await;
            assert_eq!(keys(&page), ["cursor", "hasMore", "items", "tryLater"]);
            assert!(is_lorem(&page["cursor"]));
            bools.insert((page["hasMore"].as_bool(), page["tryLater"].as_bool()));
            let items = page["items"].as_array().expect("items");
            counts.insert(items.len());
            for t in items {
                let fields = [
                    "amount",
                    "balanceAfter",
                    "balanceBefore",
                    "currency",
                    "entryType",
                    "ledgerDate",
                    "pspReference",
                    "recipientHandle",
                    "reference",
                    "time",
                ];
                assert_eq!(keys(t), fields);
                for f in [
                    "currency",
                    "ledgerDate",
                    "pspReference",
                    "recipientHandle",
                    "reference",
                    "time",
                ] {
                    assert!(is_lorem(&t[f]), "{f}: {t}");
                }
                assert!(ENTRY_TYPES.contains(&t["entryType"].as_str().unwrap_or_default()));
                for f in ["amount", "balanceAfter", "balanceBefore"] {
                    assert!(is_money(&t[f]), "{f}: {t}");
                    floats += usize::from(t[f].is_f64());
                }
            }
            bodies.push(page);
        }
    }
    assert_eq!(bools.len(), 4, "{bools:?}");
    assert_eq!(counts, (0..=5).collect(), "0 to 5 items");
    assert!(floats > 0);
    assert_eq!(sent(&h, "schema-random"), 90);
    // The same seed and requests give the same junk; another seed other junk.
    for (seed, same) in [(42, true), (7, false)] {
        let other = Harness::start(SimulatorConfig {
            seed,
            ..SimulatorConfig::default()
        })
        .await;
        other.sim.set_hostile(Some(mode("schema-random").into()));
        let t = other.token().await;
        let page = json_of(send(&other, "/report/v2/ledgers/0/funds/feed", &t).await).await;
        assert_eq!(page == bodies[0], same, "seed {seed}");
    }
}
