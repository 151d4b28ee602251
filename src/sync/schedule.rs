//! Adaptive polling: each feed's next poll from what it has shown (README, "Polling").
//!
//! - A poll that stored entries sets the feed's interval to `sync.min_poll_interval`; each
//!   poll that found nothing doubles it, up to `sync.max_poll_interval`. A busy feed is
//!   polled every few minutes, a quiet one less and less often, none less often than the
//!   maximum.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub interval: Duration,
    pub next_poll_at: DateTime<Utc>,
}

impl PollPolicy {
    /// Plans the next poll of a feed polled at `now` that stored entries (`news`) or not,
    /// from its state before the poll.
    pub fn plan(&self, state: &FeedState, news: bool, now: DateTime<Utc>) -> Plan {
        let previous = state
            .poll_interval_secs
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs);
        let interval = match previous {
            Some(previous) if !news => (previous * 2).clamp(self.min, self.max),
            _ => self.min,
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
    fn a_busy_feed_comes_back_after_the_minimum_and_a_quiet_one_backs_off_to_the_maximum() {
        let now = at("2026-03-10T08:00:00Z");
        let mut state = FeedState::default();
        let mut intervals = Vec::new();
        for _ in 0..12 {
            let plan = policy().plan(&state, false, now);
            intervals.push(plan.interval.as_secs());
            state.poll_interval_secs = Some(plan.interval.as_secs() as i32);
        }
        assert_eq!(
            intervals,
            [120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600, 21600]
        );
        let busy = policy().plan(&state, true, now);
        assert_eq!(busy.interval, Duration::from_secs(120));
        assert_eq!(busy.next_poll_at, at("2026-03-10T08:02:00Z"));
    }

    #[test]
    fn a_feed_whose_newest_date_is_open_is_polled_once_that_date_ends() {
        let state = FeedState {
            poll_interval_secs: Some(21600),
            newest_date: Some("2026-03-10".parse().unwrap()),
            newest_date_closed: false,
        };
        // Quiet all afternoon: next poll just after midnight in Oslo (23:00 UTC in March),
        // not six hours on.
        let plan = policy().plan(&state, false, at("2026-03-10T20:00:00Z"));
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
        let plan = policy().plan(&closed, false, at("2026-03-10T20:00:00Z"));
        assert_eq!(plan.next_poll_at, at("2026-03-11T02:00:00Z"));
        // Past the wake-up (polled after midnight): the ordinary interval again.
        let plan = policy().plan(&state, false, at("2026-03-10T23:02:00Z"));
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
