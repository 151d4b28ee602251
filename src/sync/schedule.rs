//! Adaptive polling: each feed's next poll from what it has shown (README, "Polling").
//!
//! - A feed's interval is twice the time between its entries: a moving average of what each
//!   poll that stored entries saw (the time since the last news over the entries it brought),
//!   raised to the time since the last news while none comes (so a feed that slows down is
//!   polled less at once); news four times sooner than expected replaces it (so a dormant
//!   feed in use again is polled often at once). A feed that gets an entry every five minutes
//!   is polled every ten; one that gets a few a day stays at the maximum. At a feed's first
//!   poll under the schedule the time is judged from its history: the newest stored entries'
//!   `time`s in the week before (so after a first sync, or a switch from fixed polling, busy
//!   feeds are told from quiet ones at once). Without any history the interval is the
//!   minimum after news, doubled after each poll without. Always within
//!   `sync.min_poll_interval` and `sync.max_poll_interval`: no feed waits longer than the
//!   maximum.
//! - A pass that polls every feed at once (`sync --once`, a fixed pass) spreads their next
//!   polls over each one's interval (by a hash of ledger and topic), past the first hour (or
//!   half the interval) in which such a pass may have spent the budget, so that they do not
//!   all come due in the same minute. At the maximum interval a feed then keeps its place in
//!   the cycle.
//! - A feed whose newest entry is on a ledger date not yet closed is woken once that date has
//!   ended (midnight in Oslo, plus the minimum interval): that is when the date's last
//!   entries and its payout come. A wake-up is an extra poll, taken when the budget has room
//!   after the feeds whose regular poll is due; it never makes a deadline.
//! - A feed never polled (a new grant's) is due at once.
//! - A pass polls the feeds due, most likely to have news first, at most
//!   `sync.polls_per_hour` an hour across every instance, and at most a sixtieth of it per
//!   pass, so that a minute never gets a burst.
//!
//! Everything here takes `now` from its caller: the tests drive it with a clock of their own.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};

use crate::config::SyncSettings;
use crate::store::poll_schedule::FeedState;

/// The bounds of every feed's interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub min: Duration,
    pub max: Duration,
}

impl From<&SyncSettings> for PollPolicy {
    fn from(s: &SyncSettings) -> Self {
        PollPolicy {
            min: s.min_poll_interval,
            max: s.max_poll_interval,
        }
    }
}

/// A feed's next poll, planned after a poll at `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub interval: Duration,
    /// How long the feed takes to get news, as now estimated (none while unknown).
    pub news_gap: Option<Duration>,
    /// The regular next poll.
    pub next_poll_at: DateTime<Utc>,
    /// An earlier poll when the feed's newest ledger date ends.
    pub wake_at: Option<DateTime<Utc>>,
}

/// How a poll's next one is timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// A pass of the schedule: the next poll one interval on.
    Scheduled,
    /// A pass that polled every feed at once: the next poll at this fraction (0, 1] of the
    /// interval, different for each feed ([`spread`]).
    Spread(f64),
}

/// A feed's fraction of its interval after a pass that polled every feed at once: from a
/// hash of ledger and topic (FNV-1a, stable across builds and instances), in (0, 1].
pub fn spread(ledger_id: &str, topic: &str) -> f64 {
    let hash = ledger_id
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(topic.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % 1000 + 1) as f64 / 1000.0
}

/// The time between a feed's entries as its history shows it (`state`'s recent entries):
/// since the earliest of the week's newest entries, over how many there are; for a feed
/// with none that week, at least the time since its newest entry. `None` without history.
fn history_gap(state: &FeedState, now: DateTime<Utc>) -> Option<f64> {
    let secs_since = |t: DateTime<Utc>| (now - t).num_milliseconds().max(0) as f64 / 1000.0;
    match (state.recent_entries, state.recent_since, state.newest_time) {
        (n, Some(since), _) if n > 0 => Some(secs_since(since) / n as f64),
        (_, _, Some(newest)) => Some(secs_since(newest)),
        _ => None,
    }
}

/// Weight of the newest observed gap in the moving average of the time between news.
const GAP_WEIGHT: f64 = 0.3;

/// After a pass that polled every feed, next polls are spread from this long on (at most
/// half the interval): the budget's window (`sync.polls_per_hour`).
const SPREAD_AFTER: Duration = Duration::from_secs(3600);

/// News observed this much sooner than the estimate (or more) replaces it.
const WAKE_UP_RATIO: f64 = 0.25;

impl PollPolicy {
    /// Plans the next poll of a feed polled at `now` that stored `stored` entries, from its
    /// state before the poll.
    pub fn plan(&self, state: &FeedState, stored: u64, now: DateTime<Utc>, timing: Timing) -> Plan {
        let news = stored > 0;
        let since_news = state
            .last_news_at
            .map(|at| (now - at).to_std().unwrap_or_default().as_secs_f64());
        let known = state.news_gap_secs.filter(|g| g.is_finite() && *g >= 0.0);
        // The time between entries this poll observed: since the last news, over the entries
        // it brought (not the time between our own polls, which would feed on itself).
        let observed = since_news.map(|since| since / stored.max(1) as f64);
        let gap = match (news, known, observed) {
            // News much sooner than expected: the feed woke up (a dormant ledger in use
            // again), believed at once rather than averaged with its quiet months.
            (true, Some(gap), Some(seen)) if seen < gap * WAKE_UP_RATIO => Some(seen),
            // News again: one more observation.
            (true, Some(gap), Some(seen)) => Some(gap + GAP_WEIGHT * (seen - gap)),
            (true, None, Some(seen)) => Some(seen),
            // Nothing yet: it takes at least as long as it has been.
            (false, Some(gap), Some(_)) => Some(gap.max(since_news.unwrap_or_default())),
            (_, Some(gap), _) => Some(gap),
            // Its first poll under the schedule: what its history shows.
            (_, None, _) => history_gap(state, now),
        };
        let previous = state
            .poll_interval_secs
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs);
        let interval = match (gap, previous) {
            (Some(gap), _) => Duration::from_secs_f64((2.0 * gap).min(self.max.as_secs_f64()))
                .clamp(self.min, self.max),
            (None, Some(previous)) if !news => (previous * 2).clamp(self.min, self.max),
            (None, _) => self.min,
        };
        let previous_next = state.next_poll_at.filter(|_| previous == Some(self.max));
        let next_poll_at = match (timing, previous_next) {
            // Over the interval, past the hour such a pass may have spent of the budget (so
            // that what comes due meanwhile does not pile up behind it).
            (Timing::Spread(fraction), _) => {
                let head = (interval / 2).min(SPREAD_AFTER);
                now + head + (interval - head).mul_f64(fraction.clamp(0.0, 1.0))
            }
            // At the maximum, a feed keeps its place in the cycle: polled early (woken), its
            // regular poll stays; polled late (the budget was short), the next one is not
            // put off by the delay. Otherwise feeds that waited together (after a first
            // sync, after an outage) would come due together every cycle from then on.
            (Timing::Scheduled, Some(due)) if interval == self.max => {
                if due > now {
                    due
                } else if due + self.max > now + self.min {
                    due + self.max
                } else {
                    now + self.max
                }
            }
            (Timing::Scheduled, _) => now + interval,
        };
        let wake_at = state
            .newest_date
            .filter(|_| !state.newest_date_closed)
            .map(|date| date_end(date) + self.min)
            .filter(|wake| *wake > now && *wake < next_poll_at);
        Plan {
            interval,
            news_gap: gap.map(Duration::from_secs_f64),
            next_poll_at,
            wake_at,
        }
    }
}

/// The end of a ledger date: the midnight after it in Oslo (Vipps MobilePay's ledger dates
/// are Norwegian and Danish days, one time zone; Finnish ones end an hour earlier, which the
/// minimum interval after it covers).
pub fn date_end(date: NaiveDate) -> DateTime<Utc> {
    let next = date
        .succ_opt()
        .unwrap_or(date)
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    chrono_tz::Europe::Oslo
        .from_local_datetime(&next)
        .earliest()
        .map_or_else(|| next.and_utc(), |t| t.with_timezone(&Utc))
}

/// How many feeds a pass may poll: what is left of the hour's budget, and at most a
/// sixtieth of it (rounded up), so that passes every minute spread the budget evenly.
/// `None`: no limit (`polls_per_hour = 0`).
pub fn pass_limit(polls_per_hour: u32, polled_last_hour: i64) -> Option<i64> {
    if polls_per_hour == 0 {
        return None;
    }
    let per_hour = i64::from(polls_per_hour);
    let left = (per_hour - polled_last_hour).max(0);
    Some(left.min((per_hour + 59) / 60))
}

/// Polls an hour that `feeds` need for each to be polled once per `max` (the maximum
/// interval), rounded up.
pub fn polls_needed_per_hour(feeds: i64, max: Duration) -> i64 {
    let max_secs = i64::try_from(max.as_secs()).unwrap_or(i64::MAX).max(1);
    feeds.saturating_mul(3600).saturating_add(max_secs - 1) / max_secs
}

/// Why `sync.polls_per_hour` cannot keep every one of `feeds` within `max`, if it cannot:
/// the maximum interval then no longer holds for the feeds polled last.
pub fn budget_shortfall(feeds: i64, polls_per_hour: u32, max: Duration) -> Option<String> {
    let needed = polls_needed_per_hour(feeds, max);
    (polls_per_hour > 0 && needed > i64::from(polls_per_hour)).then(|| {
        format!(
            "sync.polls_per_hour ({polls_per_hour}) is below the {needed} polls an hour that {feeds} feeds need to be polled once per sync.max_poll_interval ({}): the quietest feeds will wait longer than that; raise the budget or the maximum",
            humantime_serde::re::humantime::format_duration(max)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_too_small_for_every_feed_within_the_maximum_is_named() {
        let twelve_hours = Duration::from_secs(12 * 3600);
        // 20,000 feeds at 12 h need 1,667 polls an hour (rounded up).
        assert_eq!(polls_needed_per_hour(20_000, twelve_hours), 1_667);
        assert_eq!(budget_shortfall(20_000, 1_667, twelve_hours), None);
        let short = budget_shortfall(20_000, 1_666, twelve_hours).unwrap();
        assert!(
            short.contains("(1666)") && short.contains("1667 polls") && short.contains("12h"),
            "{short}"
        );
        // No budget (0) means no limit; no feeds need nothing.
        assert_eq!(budget_shortfall(20_000, 0, twelve_hours), None);
        assert_eq!(budget_shortfall(0, 1, twelve_hours), None);
    }

    fn policy() -> PollPolicy {
        PollPolicy {
            min: Duration::from_secs(120),
            max: Duration::from_secs(6 * 3600),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_quiet_feed_backs_off_to_the_maximum_while_the_time_between_its_news_is_unknown() {
        let now = at("2026-03-10T08:00:00Z");
        let mut state = FeedState::default();
        let mut intervals = Vec::new();
        for _ in 0..12 {
            let plan = policy().plan(&state, 0, now, Timing::Scheduled);
            intervals.push(plan.interval.as_secs());
            state.poll_interval_secs = Some(plan.interval.as_secs() as i32);
        }
        assert_eq!(
            intervals,
            [120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600, 21600]
        );
        let news = policy().plan(&state, 1, now, Timing::Scheduled);
        assert_eq!(news.interval, Duration::from_secs(120));
        assert_eq!(news.next_poll_at, at("2026-03-10T08:02:00Z"));
    }

    #[test]
    fn the_interval_is_twice_the_time_a_feed_takes_to_get_news() {
        // News every five minutes: polled every ten.
        let mut state = FeedState::default();
        let mut now = at("2026-03-10T08:00:00Z");
        for _ in 0..20 {
            let plan = policy().plan(&state, 1, now, Timing::Scheduled);
            state.poll_interval_secs = Some(plan.interval.as_secs() as i32);
            state.news_gap_secs = plan.news_gap.map(|g| g.as_secs_f64());
            state.last_news_at = Some(now);
            now += chrono::Duration::minutes(5);
        }
        assert_eq!(state.poll_interval_secs, Some(600));
        // Then quiet for two hours: polled every four, not every ten minutes.
        let later = policy().plan(
            &state,
            0,
            now + chrono::Duration::hours(2),
            Timing::Scheduled,
        );
        assert_eq!(later.interval.as_secs(), 4 * 3600 + 600);
        // A few a day (every eight hours): the maximum.
        let quiet = FeedState {
            news_gap_secs: Some(8.0 * 3600.0),
            last_news_at: Some(now - chrono::Duration::hours(8)),
            ..FeedState::default()
        };
        assert_eq!(
            policy().plan(&quiet, 1, now, Timing::Scheduled).interval,
            policy().max
        );
        // Dormant for months, then 60 entries in the last six hours: one every six minutes
        // at once, not averaged with the months.
        let dormant = FeedState {
            news_gap_secs: Some(90.0 * 86400.0),
            last_news_at: Some(now - chrono::Duration::hours(6)),
            ..FeedState::default()
        };
        let woke = policy().plan(&dormant, 60, now, Timing::Scheduled);
        assert_eq!(woke.news_gap, Some(Duration::from_secs(360)));
        assert_eq!(woke.interval, Duration::from_secs(720));
    }

    #[test]
    fn a_feed_whose_newest_date_is_open_is_woken_once_that_date_ends() {
        let state = FeedState {
            poll_interval_secs: Some(21600),
            newest_date: Some("2026-03-10".parse().unwrap()),
            newest_date_closed: false,
            ..FeedState::default()
        };
        // Quiet all afternoon: woken just after midnight in Oslo (23:00 UTC in March), not
        // six hours on; its regular poll stays six hours on.
        let plan = policy().plan(&state, 0, at("2026-03-10T20:00:00Z"), Timing::Scheduled);
        assert_eq!(plan.interval, Duration::from_secs(21600));
        assert_eq!(plan.wake_at, Some(at("2026-03-10T23:02:00Z")));
        assert_eq!(plan.next_poll_at, at("2026-03-11T02:00:00Z"));
        // Summer time: midnight in Oslo is 22:00 UTC.
        assert_eq!(
            date_end("2026-07-01".parse().unwrap()),
            at("2026-07-01T22:00:00Z")
        );
        // Closed: the ordinary interval.
        let closed = FeedState {
            newest_date_closed: true,
            ..state.clone()
        };
        let plan = policy().plan(&closed, 0, at("2026-03-10T20:00:00Z"), Timing::Scheduled);
        assert_eq!(plan.wake_at, None);
        assert_eq!(plan.next_poll_at, at("2026-03-11T02:00:00Z"));
        // Past the wake-up (polled after midnight): the ordinary interval again.
        let plan = policy().plan(&state, 0, at("2026-03-10T23:02:00Z"), Timing::Scheduled);
        assert_eq!(plan.wake_at, None);
        assert_eq!(plan.next_poll_at, at("2026-03-11T05:02:00Z"));
    }

    #[test]
    fn at_the_maximum_a_feed_keeps_its_place_in_the_cycle() {
        let due = at("2026-03-10T08:00:00Z");
        let quiet = FeedState {
            poll_interval_secs: Some(21600),
            news_gap_secs: Some(8.0 * 3600.0),
            next_poll_at: Some(due),
            ..FeedState::default()
        };
        // Polled two hours late (the budget was short): the next one six hours after the
        // last was due, not after this poll.
        let late = policy().plan(&quiet, 0, at("2026-03-10T10:00:00Z"), Timing::Scheduled);
        assert_eq!(late.next_poll_at, at("2026-03-10T14:00:00Z"));
        // Polled early (woken at a date's end): its regular poll stays.
        let early = policy().plan(&quiet, 0, at("2026-03-10T05:00:00Z"), Timing::Scheduled);
        assert_eq!(early.next_poll_at, due);
        // Polled more than a whole interval late: one interval on from now.
        let very_late = policy().plan(&quiet, 0, at("2026-03-10T15:00:00Z"), Timing::Scheduled);
        assert_eq!(very_late.next_poll_at, at("2026-03-10T21:00:00Z"));
        // Below the maximum, one interval on from the poll.
        let busy = FeedState {
            poll_interval_secs: Some(600),
            news_gap_secs: Some(300.0),
            next_poll_at: Some(due),
            ..FeedState::default()
        };
        let plan = policy().plan(&busy, 1, at("2026-03-10T08:30:00Z"), Timing::Scheduled);
        assert_eq!(plan.next_poll_at, at("2026-03-10T08:40:00Z"));
    }

    #[test]
    fn at_its_first_poll_a_feeds_pace_is_judged_from_its_history() {
        let now = at("2026-03-10T08:00:00Z");
        let first = |recent_entries, since_minutes: i64, newest_minutes: i64| {
            let state = FeedState {
                recent_entries,
                recent_since: (recent_entries > 0)
                    .then(|| now - chrono::Duration::minutes(since_minutes)),
                newest_time: Some(now - chrono::Duration::minutes(newest_minutes)),
                ..FeedState::default()
            };
            policy().plan(&state, 0, now, Timing::Scheduled)
        };
        // 100 entries in the last 500 minutes: one every five, polled every ten.
        let busy = first(100, 500, 1);
        assert_eq!(busy.news_gap, Some(Duration::from_secs(300)));
        assert_eq!(busy.interval, Duration::from_secs(600));
        // Six in two days: one every eight hours, the maximum.
        assert_eq!(first(6, 48 * 60, 60).interval, policy().max);
        // None this week, the newest three weeks old: the maximum.
        assert_eq!(first(0, 0, 21 * 24 * 60).interval, policy().max);
        // A known pace is not judged again from history.
        let known = FeedState {
            news_gap_secs: Some(3600.0),
            recent_entries: 100,
            recent_since: Some(now - chrono::Duration::minutes(500)),
            ..FeedState::default()
        };
        let plan = policy().plan(&known, 0, now, Timing::Scheduled);
        assert_eq!(plan.interval, Duration::from_secs(7200));
    }

    #[test]
    fn a_pass_that_polled_every_feed_spreads_their_next_polls_over_the_interval() {
        let now = at("2026-03-10T08:00:00Z");
        let quiet = FeedState {
            news_gap_secs: Some(8.0 * 3600.0),
            ..FeedState::default()
        };
        // Past the hour the pass may have spent of the budget: a quarter of the other five.
        let plan = policy().plan(&quiet, 0, now, Timing::Spread(0.25));
        assert_eq!(plan.interval, policy().max);
        assert_eq!(plan.next_poll_at, at("2026-03-10T10:15:00Z"));
        // A short interval: over its second half.
        let busy = FeedState {
            news_gap_secs: Some(300.0),
            ..FeedState::default()
        };
        let plan = policy().plan(&busy, 0, now, Timing::Spread(0.5));
        assert_eq!(plan.next_poll_at, at("2026-03-10T08:07:30Z"));
        // Each feed its own fraction, the same every time, spread over (0, 1].
        let fractions: Vec<f64> = (100_001..101_001)
            .map(|ledger| spread(&ledger.to_string(), "funds"))
            .collect();
        assert_eq!(spread("100001", "funds"), fractions[0]);
        assert_ne!(spread("100001", "funds"), spread("100001", "fees"));
        assert!(fractions.iter().all(|f| *f > 0.0 && *f <= 1.0));
        for tenth in 0..10 {
            let (lo, hi) = (f64::from(tenth) / 10.0, f64::from(tenth + 1) / 10.0);
            let n = fractions.iter().filter(|f| **f > lo && **f <= hi).count();
            assert!((60..=140).contains(&n), "{n} of 1000 in ({lo}, {hi}]");
        }
    }

    #[test]
    fn a_pass_takes_at_most_a_sixtieth_of_the_hours_budget_and_never_more_than_is_left() {
        assert_eq!(pass_limit(0, 10), None);
        assert_eq!(pass_limit(4000, 0), Some(67));
        assert_eq!(pass_limit(4000, 3950), Some(50));
        assert_eq!(pass_limit(4000, 4100), Some(0));
        assert_eq!(pass_limit(30, 0), Some(1));
    }
}
