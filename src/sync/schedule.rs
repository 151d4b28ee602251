//! Adaptive polling: each feed's next poll from what it has shown (README, "Polling").
//!
//! - A feed's interval is twice the time between its entries: a moving average of what each
//!   poll that stored entries saw (the time since the last news over the entries it brought),
//!   raised to the time since the last news while none comes (so a feed that slows down is
//!   polled less at once). A feed that gets an entry every five minutes is polled every ten;
//!   one that gets a few a day stays at the maximum. Until
//!   two polls have stored entries the time is unknown, and the interval is the minimum after
//!   news, doubled after each poll without. Always within `sync.min_poll_interval` and
//!   `sync.max_poll_interval`: no feed waits longer than the maximum.
//! - A feed whose newest entry is on a ledger date not yet closed is polled once that date has
//!   ended (midnight in Oslo, plus the minimum interval), whatever its interval: that is when
//!   the date's last entries and its payout come.
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
    pub next_poll_at: DateTime<Utc>,
}

/// Weight of the newest observed gap in the moving average of the time between news.
const GAP_WEIGHT: f64 = 0.3;

impl PollPolicy {
    /// Plans the next poll of a feed polled at `now` that stored `stored` entries, from its
    /// state before the poll.
    pub fn plan(&self, state: &FeedState, stored: u64, now: DateTime<Utc>) -> Plan {
        let news = stored > 0;
        let since_news = state
            .last_news_at
            .map(|at| (now - at).to_std().unwrap_or_default().as_secs_f64());
        let known = state.news_gap_secs.filter(|g| g.is_finite() && *g >= 0.0);
        // The time between entries this poll observed: since the last news, over the entries
        // it brought (not the time between our own polls, which would feed on itself).
        let observed = since_news.map(|since| since / stored.max(1) as f64);
        let gap = match (news, known, observed) {
            // News again: one more observation.
            (true, Some(gap), Some(seen)) => Some(gap + GAP_WEIGHT * (seen - gap)),
            (true, None, Some(seen)) => Some(seen),
            // Nothing yet: it takes at least as long as it has been.
            (false, Some(gap), Some(_)) => Some(gap.max(since_news.unwrap_or_default())),
            (_, gap, _) => gap,
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
        let mut next_poll_at = now + interval;
        if let Some(date) = state.newest_date.filter(|_| !state.newest_date_closed) {
            let wake = date_end(date) + self.min;
            if wake > now && wake < next_poll_at {
                next_poll_at = wake;
            }
        }
        Plan {
            interval,
            news_gap: gap.map(Duration::from_secs_f64),
            next_poll_at,
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let plan = policy().plan(&state, 0, now);
            intervals.push(plan.interval.as_secs());
            state.poll_interval_secs = Some(plan.interval.as_secs() as i32);
        }
        assert_eq!(
            intervals,
            [120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600, 21600]
        );
        let news = policy().plan(&state, 1, now);
        assert_eq!(news.interval, Duration::from_secs(120));
        assert_eq!(news.next_poll_at, at("2026-03-10T08:02:00Z"));
    }

    #[test]
    fn the_interval_is_twice_the_time_a_feed_takes_to_get_news() {
        // News every five minutes: polled every ten.
        let mut state = FeedState::default();
        let mut now = at("2026-03-10T08:00:00Z");
        for _ in 0..20 {
            let plan = policy().plan(&state, 1, now);
            state.poll_interval_secs = Some(plan.interval.as_secs() as i32);
            state.news_gap_secs = plan.news_gap.map(|g| g.as_secs_f64());
            state.last_news_at = Some(now);
            now += chrono::Duration::minutes(5);
        }
        assert_eq!(state.poll_interval_secs, Some(600));
        // Then quiet for two hours: polled every four, not every ten minutes.
        let later = policy().plan(&state, 0, now + chrono::Duration::hours(2));
        assert_eq!(later.interval.as_secs(), 4 * 3600 + 600);
        // A few a day (every eight hours): the maximum.
        let quiet = FeedState {
            news_gap_secs: Some(8.0 * 3600.0),
            last_news_at: Some(now - chrono::Duration::hours(8)),
            ..FeedState::default()
        };
        assert_eq!(policy().plan(&quiet, 1, now).interval, policy().max);
    }

    #[test]
    fn a_feed_whose_newest_date_is_open_is_polled_once_that_date_ends() {
        let state = FeedState {
            poll_interval_secs: Some(21600),
            newest_date: Some("2026-03-10".parse().unwrap()),
            newest_date_closed: false,
            ..FeedState::default()
        };
        // Quiet all afternoon: next poll just after midnight in Oslo (23:00 UTC in March),
        // not six hours on.
        let plan = policy().plan(&state, 0, at("2026-03-10T20:00:00Z"));
        assert_eq!(plan.interval, Duration::from_secs(21600));
        assert_eq!(plan.next_poll_at, at("2026-03-10T23:02:00Z"));
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
        let plan = policy().plan(&closed, 0, at("2026-03-10T20:00:00Z"));
        assert_eq!(plan.next_poll_at, at("2026-03-11T02:00:00Z"));
        // Past the wake-up (polled after midnight): the ordinary interval again.
        let plan = policy().plan(&state, 0, at("2026-03-10T23:02:00Z"));
        assert_eq!(plan.next_poll_at, at("2026-03-11T05:02:00Z"));
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
