//! Progress of a feed pass, per partner: ledgers done of ledgers queued, entries stored and
//! their rate. The pass feeds the counters ([`Progress::ledger_queued`],
//! [`Progress::entries_stored`], ...); a view shows them while the pass runs: progress bars on
//! a terminal (`sync --once`), otherwise one `feed pass progress` info line per interval.
//!
//! A ledger counts for the partner whose token is tried first when it is queued. Totals grow
//! as the list of open grants is read, 500 ledgers at a time (one
//! read for most installations), so they are exact from the start of most passes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Topic;

/// How often the daemon logs a pass's progress when no bars are shown, in seconds: often
/// enough to see a long first sync move, rarely enough not to fill the journal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(30);

/// How often the bars are redrawn from the counters.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressView {
    /// One `feed pass progress` info line every `every` while a pass runs.
    Log { every: Duration },
    /// One bar per partner on stderr; log lines are printed above them.
    Bars,
}

impl Default for ProgressView {
    /// A log line every [`LOG_INTERVAL`]: right for the daemon and anything not a terminal.
    fn default() -> Self {
        ProgressView::Log {
            every: LOG_INTERVAL,
        }
    }
}

/// One partner's share of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerProgress {
    pub ledgers_done: u64,
    pub ledgers_total: u64,
    pub entries: u64,
}

/// The counters of the pass in hand (or the last one).
#[derive(Debug, Default)]
struct PassState {
    started: Option<Instant>,
    partners: BTreeMap<String, PartnerProgress>,
    /// Queued ledgers not done yet: their partner and how many of their units are left.
    pending: HashMap<String, (String, usize)>,
    in_flight: BTreeSet<(String, Topic)>,
}

/// The progress sink of feed passes (one pass at a time, as the daemon runs them).
pub struct Progress {
    view: ProgressView,
    state: Mutex<PassState>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

/// The bars of a pass, one per partner, as drawn so far.
type Shown = Arc<Mutex<BTreeMap<String, ProgressBar>>>;

/// Stops the view of a pass when dropped (at the end of the pass, or when it is abandoned).
pub struct PassGuard {
    ticker: tokio::task::JoinHandle<()>,
    bars: Option<(Arc<Progress>, MultiProgress, Shown)>,
}

impl Drop for PassGuard {
    fn drop(&mut self) {
        self.ticker.abort();
        if let Some((progress, multi, shown)) = self.bars.take() {
            // The final counts, left on the screen: a finished bar is not cleared or redrawn
            // when the aborted ticker's copies are dropped later, after the summary.
            let mut shown = shown.lock().unwrap_or_else(|e| e.into_inner());
            progress.draw(&multi, &mut shown);
            for bar in shown.values() {
                bar.finish();
            }
            crate::telemetry::set_progress_bars(None);
        }
    }
}

impl Progress {
    /// A sink shown as `view`.
    pub fn new(view: ProgressView) -> Progress {
        Progress {
            view,
            state: Mutex::new(PassState::default()),
        }
    }

    /// Resets the counters and starts showing them until the guard is dropped.
    pub fn start_pass(self: &Arc<Self>) -> PassGuard {
        *self.lock() = PassState {
            started: Some(Instant::now()),
            ..PassState::default()
        };
        let me = Arc::clone(self);
        match self.view {
            ProgressView::Log { every } => {
                let ticker = tokio::spawn(async move {
                    let mut interval = tokio::time::interval(every);
                    interval.tick().await; // the first tick is immediate
                    loop {
                        interval.tick().await;
                        me.log_line();
                    }
                });
                PassGuard { ticker, bars: None }
            }
            ProgressView::Bars => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                crate::telemetry::set_progress_bars(Some(multi.clone()));
                let shown = Shown::default();
                let (bars, drawn) = (multi.clone(), Arc::clone(&shown));
                let ticker = tokio::spawn(async move {
                    loop {
                        me.draw(&bars, &mut drawn.lock().unwrap_or_else(|e| e.into_inner()));
                        tokio::time::sleep(BAR_REFRESH).await;
                    }
                });
                PassGuard {
                    ticker,
                    bars: Some((Arc::clone(self), multi, shown)),
                }
            }
        }
    }

    /// `ledger_id` is queued with `units` of its topics, read first with `partner`'s token.
    pub fn ledger_queued(&self, partner: &str, ledger_id: &str, units: usize) {
        if units == 0 {
            return;
        }
        let mut state = self.lock();
        state
            .partners
            .entry(partner.to_owned())
            .or_default()
            .ledgers_total += 1;
        state
            .pending
            .insert(ledger_id.to_owned(), (partner.to_owned(), units));
    }

    /// A unit's walk begins.
    pub fn unit_started(&self, ledger_id: &str, topic: Topic) {
        self.lock().in_flight.insert((ledger_id.to_owned(), topic));
    }

    /// A page of `ledger_id` was committed with `inserted` new entries.
    pub fn entries_stored(&self, ledger_id: &str, inserted: u64) {
        let mut state = self.lock();
        let Some((partner, _)) = state.pending.get(ledger_id) else {
            return;
        };
        let partner = partner.clone();
        state.partners.entry(partner).or_default().entries += inserted;
    }

    /// A unit's walk ended (whatever its outcome).
    pub fn unit_finished(&self, ledger_id: &str, topic: Topic) {
        let mut state = self.lock();
        state.in_flight.remove(&(ledger_id.to_owned(), topic));
        let Some((partner, left)) = state.pending.get_mut(ledger_id) else {
            return;
        };
        *left -= 1;
        if *left == 0 {
            let partner = partner.clone();
            state.pending.remove(ledger_id);
            state.partners.entry(partner).or_default().ledgers_done += 1;
        }
    }

    /// The units being walked now, as `ledger topic`.
    pub fn in_flight(&self) -> Vec<String> {
        self.lock()
            .in_flight
            .iter()
            .map(|(ledger, topic)| format!("{ledger} {topic}"))
            .collect()
    }

    /// The counters per partner.
    pub fn per_partner(&self) -> BTreeMap<String, PartnerProgress> {
        self.lock().partners.clone()
    }

    /// The counters over all partners.
    pub fn total(&self) -> PartnerProgress {
        self.lock()
            .partners
            .values()
            .fold(PartnerProgress::default(), |sum, p| PartnerProgress {
                ledgers_done: sum.ledgers_done + p.ledgers_done,
                ledgers_total: sum.ledgers_total + p.ledgers_total,
                entries: sum.entries + p.entries,
            })
    }

    /// Entries per second since the pass started.
    fn rate(&self, entries: u64) -> f64 {
        let elapsed = self
            .lock()
            .started
            .map_or(0.0, |s| s.elapsed().as_secs_f64());
        if elapsed > 0.0 {
            entries as f64 / elapsed
        } else {
            0.0
        }
    }

    fn log_line(&self) {
        let total = self.total();
        let rate = (self.rate(total.entries) * 10.0).round() / 10.0;
        tracing::info!(
            ledgers_done = total.ledgers_done,
            ledgers_total = total.ledgers_total,
            entries = total.entries,
            rate,
            "feed pass progress"
        );
    }

    fn draw(&self, multi: &MultiProgress, shown: &mut BTreeMap<String, ProgressBar>) {
        let style =
            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} ledgers, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        for (partner, p) in self.per_partner() {
            let bar = shown.entry(partner.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
                bar.set_prefix(partner);
                bar
            });
            bar.set_length(p.ledgers_total);
            bar.set_position(p.ledgers_done);
            bar.set_message(format!(
                "{} entries, {:.0}/s",
                p.entries,
                self.rate(p.entries)
            ));
        }
    }

    fn lock(&self) -> MutexGuard<'_, PassState> {
        // Counters only: a panic while holding the lock cannot leave them unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_units_to_their_ledgers_and_partners() {
        let p = Progress::new(ProgressView::Log {
            every: LOG_INTERVAL,
        });
        p.ledger_queued("a", "1", 2);
        p.ledger_queued("a", "2", 1);
        p.ledger_queued("b", "3", 2);
        p.ledger_queued("b", "4", 0); // everything backing off: not counted
        p.unit_started("1", Topic::Funds);
        p.unit_started("3", Topic::Fees);
        p.entries_stored("1", 10);
        p.entries_stored("3", 5);
        p.entries_stored("9", 100); // not queued in this pass: ignored
        assert_eq!(p.in_flight(), vec!["1 funds", "3 fees"]);
        p.unit_finished("1", Topic::Funds);
        assert_eq!(p.total().ledgers_done, 0, "ledger 1 has a unit left");
        p.unit_started("1", Topic::Fees);
        p.unit_finished("1", Topic::Fees);
        let per = p.per_partner();
        assert_eq!(
            per["a"],
            PartnerProgress {
                ledgers_done: 1,
                ledgers_total: 2,
                entries: 10
            }
        );
        assert_eq!(
            per["b"],
            PartnerProgress {
                ledgers_done: 0,
                ledgers_total: 1,
                entries: 5
            }
        );
        assert_eq!(p.in_flight(), vec!["3 fees"]);
        assert_eq!(p.total().ledgers_total, 3);
    }
}
