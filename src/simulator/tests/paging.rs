//! Unit tests of the simulator's paging rules (feed, dates, cursors), without HTTP.

use serde_json::Value;

use super::{s, sim, TOPICS};
use crate::simulator::pages::FeedTweak;
use crate::simulator::state::ApiError;
use crate::simulator::{Simulator, SimulatorConfig};

fn bad<T>(r: Result<T, ApiError>) -> bool {
    matches!(r, Err(ApiError::BadRequest(_)))
}

fn page(sim: &Simulator, id: &str, cursor: Option<&str>) -> (String, bool, Vec<Value>) {
    let p = sim
        .lock()
        .feed_page("p", id, "funds", cursor, false, FeedTweak::None)
        .expect("feed page");
    let items = p
        .items
        .iter()
        .map(|i| serde_json::from_str(i.get()).unwrap());
    (p.cursor, p.try_later, items.collect())
}

#[test]
fn paging_a_feed_returns_exactly_the_expected_entries_then_the_same_cursor() {
    let sim = sim();
    sim.set_feed_page_size(7);
    let expected = sim.expected_entries("100003", "funds");
    let (mut got, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let (next, try_later, items) = page(&sim, "100003", cursor.as_deref());
        assert!(items.len() <= 7 && !next.is_empty());
        got.extend(items);
        cursor = Some(next);
        if try_later {
            break;
        }
    }
    assert_eq!(got, expected);
    let end = cursor.expect("cursor");
    assert_eq!(
        page(&sim, "100003", Some(&end)),
        (end.clone(), true, vec![])
    );
    sim.grow(1);
    let (next, _, items) = page(&sim, "100003", Some(&end));
    assert_ne!(next, end);
    assert_eq!(
        s(&items[0], "entryType"),
        "fees-retained",
        "the closed date's end comes first"
    );
}

#[test]
fn overlapping_pages_start_n_items_before_the_cursor() {
    let sim = sim();
    sim.set_feed_page_size(10);
    sim.set_overlap(3);
    let expected = sim.expected_entries("100001", "funds");
    let (c1, _, first) = page(&sim, "100001", None);
    assert_eq!(first, expected[..10]);
    let (_, _, second) = page(&sim, "100001", Some(&c1));
    assert_eq!(second, expected[7..17]);
}

#[test]
fn repeated_pages_come_back_once_before_the_cursor_advances() {
    let sim = sim();
    sim.set_feed_page_size(10);
    sim.set_repeat_pages(true);
    let expected = sim.expected_entries("100001", "funds");
    let (c0, try_later, first) = page(&sim, "100001", None);
    assert!(!try_later);
    assert_eq!(first, expected[..10]);
    let (c1, _, again) = page(&sim, "100001", Some(&c0));
    assert_eq!(first, again);
    assert_ne!(c1, c0, "the second serve advances");
    let (c2, _, next) = page(&sim, "100001", Some(&c1));
    assert_eq!(
        c2, c1,
        "the first serve of a page keeps the request's cursor"
    );
    assert_eq!(next, expected[10..20]);
    let (c3, _, next_again) = page(&sim, "100001", Some(&c1));
    assert_eq!(next, next_again);
    assert_ne!(c3, c1);
}

#[test]
fn bad_and_foreign_cursors_and_topics_are_rejected() {
    let sim = sim();
    let (cursor, _, _) = page(&sim, "100001", None);
    let mut st = sim.lock();
    assert!(bad(st.feed_page(
        "p",
        "100002",
        "funds",
        Some(&cursor),
        false,
        FeedTweak::None
    )));
    assert!(bad(st.feed_page(
        "p",
        "100001",
        "fees",
        Some(&cursor),
        false,
        FeedTweak::None
    )));
    assert!(bad(st.feed_page(
        "p",
        "100001",
        "funds",
        Some("garbage"),
        false,
        FeedTweak::None
    )));
    assert!(bad(st.feed_page(
        "p",
        "100001",
        "payouts",
        None,
        false,
        FeedTweak::None
    )));
    assert!(bad(st.dates_page(
        "p",
        "100001",
        "funds",
        "2026-01-05",
        Some(&cursor),
        false
    )));
    assert!(bad(
        st.dates_page("p", "100001", "funds", "2026-1-5", None, false)
    ));
    assert!(bad(st.ledger_page("p", Some(&cursor), None)));
    let r = st.feed_page("p", "999999", "funds", None, false, FeedTweak::None);
    assert_eq!(r.err(), Some(ApiError::NotFound));
}

#[test]
fn dates_before_the_last_are_closed_and_the_last_and_later_are_open() {
    let sim = sim();
    sim.set_feed_page_size(4);
    let st = sim.lock();
    let get = |date: &str, cursor: Option<&str>| {
        st.dates_page("p", "100001", "fees", date, cursor, false)
            .expect("dates page")
    };
    let before = get("2026-01-04", None);
    assert_eq!(
        (before["tryLater"].clone(), before["hasMore"].clone()),
        (false.into(), false.into())
    );
    assert!(before.get("cursor").is_none());
    let expected: Vec<Value> = sim_entries_on(&st, "2026-01-06");
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = get("2026-01-06", cursor.as_deref());
        assert_eq!(p["tryLater"], false);
        got.extend(p["items"].as_array().cloned().unwrap_or_default());
        if p["hasMore"] == false {
            assert!(p.get("cursor").is_none());
            break;
        }
        cursor = p["cursor"].as_str().map(str::to_string);
    }
    assert_eq!(got, expected);
    let last = get("2026-01-14", None);
    assert_eq!(
        (last["tryLater"].clone(), last["hasMore"].clone()),
        (true.into(), true.into())
    );
    let after = get("2026-02-01", None);
    assert_eq!(after["tryLater"], true);
    assert_eq!(after["items"], Value::Array(vec![]));
}

fn sim_entries_on(st: &crate::simulator::state::State, date: &str) -> Vec<Value> {
    st.ledgers["100001"]
        .visible(crate::simulator::entry::Topic::Fees)
        .iter()
        .map(|e| e.to_json(false))
        .filter(|e| e["ledgerDate"] == date)
        .collect()
}

#[test]
fn the_demo_data_set_has_several_thousand_entries() {
    let sim = Simulator::new(SimulatorConfig::demo());
    let total: usize = sim
        .ledger_ids()
        .iter()
        .flat_map(|id| TOPICS.map(|t| sim.expected_entries(id, t).len()))
        .sum();
    assert_eq!(sim.ledger_ids().len(), 12);
    assert!((3_000..20_000).contains(&total), "{total} entries");
}

#[test]
fn a_ledger_without_dates_serves_an_empty_page_with_a_cursor_until_it_grows() {
    let sim = super::sim_with(SimulatorConfig {
        days: 0,
        ..SimulatorConfig::default()
    });
    let (cursor, try_later, items) = page(&sim, "100001", None);
    assert!(!cursor.is_empty() && try_later && items.is_empty());
    let open = sim
        .lock()
        .dates_page("p", "100001", "funds", "2026-01-05", None, false)
        .expect("dates page");
    assert_eq!(open["tryLater"], true);
    sim.grow(1);
    let (next, _, items) = page(&sim, "100001", Some(&cursor));
    assert_ne!(next, cursor);
    assert_eq!(items, sim.expected_entries("100001", "funds"));
    assert!(!items.is_empty());
}

#[test]
fn invalidated_cursors_are_refused_but_a_fresh_start_works() {
    let sim = sim();
    sim.set_feed_page_size(10);
    let (old, _, _) = page(&sim, "100002", None);
    let (other, _, _) = page(&sim, "100001", None);
    let dates_cursor = sim
        .lock()
        .dates_page("p", "100002", "funds", "2026-01-06", None, false)
        .map(|v| v["cursor"].as_str().unwrap_or_default().to_string())
        .expect("dates page");
    sim.invalidate_cursors("100002");
    assert!(bad(sim.lock().feed_page(
        "p",
        "100002",
        "funds",
        Some(&old),
        false,
        FeedTweak::None
    )));
    assert!(bad(sim.lock().dates_page(
        "p",
        "100002",
        "funds",
        "2026-01-06",
        Some(&dates_cursor),
        false
    )));
    let (fresh, _, items) = page(&sim, "100002", None);
    assert_eq!(items, sim.expected_entries("100002", "funds")[..10]);
    assert_ne!(fresh, old);
    assert!(sim
        .lock()
        .feed_page("p", "100002", "funds", Some(&fresh), false, FeedTweak::None)
        .is_ok());
    assert!(sim
        .lock()
        .feed_page("p", "100001", "funds", Some(&other), false, FeedTweak::None)
        .is_ok());
}

#[test]
fn an_injected_ledger_list_failure_hits_only_the_chosen_page() {
    let sim = sim();
    sim.fail_ledger_list_page(Some(2));
    let first = sim.lock().ledger_page("p", None, None).expect("page 1");
    let cursor = first["cursor"].as_str().unwrap_or_default().to_string();
    let second = sim.lock().ledger_page("p", Some(&cursor), None);
    assert_eq!(second.err(), Some(ApiError::ServerError));
    sim.fail_ledger_list_page(None);
    assert!(sim.lock().ledger_page("p", Some(&cursor), None).is_ok());
    sim.fail_ledger_list_page(Some(1));
    let first = sim.lock().ledger_page("p", None, None);
    assert_eq!(first.err(), Some(ApiError::ServerError));
}

#[test]
fn a_page_served_as_text_is_the_text_of_its_json_tree() {
    let sim = sim();
    sim.set_feed_page_size(1000);
    let (mut batches, mut payers) = (0, 0);
    for id in sim.ledger_ids() {
        for gdpr in [false, true] {
            let page = sim
                .lock()
                .feed_page("p", &id, "funds", None, gdpr, FeedTweak::None)
                .expect("feed page");
            for item in &page.items {
                batches += usize::from(item.get().contains("settlementBatch"));
                payers += usize::from(item.get().contains("maskedPhoneNo"));
            }
            // Faults change the tree and print it: byte for byte what would have been served.
            let text = page.to_text();
            assert_eq!(page.into_json().to_string().as_bytes(), text);
        }
    }
    assert!(
        batches > 0 && payers > 0,
        "the unknown field and the payers were served"
    );
}
