//! The status endpoint's connection slots: at most `http.max_connections` connections are open
//! at once. A connection is *busy* while it has a request in hand (from its headers until its
//! response is ready) and *idle* otherwise: connected but silent, half-way through its headers,
//! or kept alive between requests. When every slot is taken, a new connection takes the slot of
//! the oldest idle one, which is told to close; only when every slot is busy is the new one
//! refused. So connections that never send a request cannot lock out a probe that does: it
//! needs a slot only for the few milliseconds its own headers take.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// The slots of one endpoint.
pub(super) struct Slots {
    max: usize,
    /// The open connections by age (the order they were admitted in).
    open: Mutex<BTreeMap<u64, Arc<SlotState>>>,
    next: std::sync::atomic::AtomicU64,
}

/// What the endpoint knows of one connection.
#[derive(Default)]
pub(super) struct SlotState {
    busy: AtomicBool,
    evicted: CancellationToken,
}

/// One connection's slot, freed when dropped.
pub(super) struct Slot {
    id: u64,
    state: Arc<SlotState>,
    slots: Arc<Slots>,
}

/// Marks a connection busy while alive.
pub(super) struct Busy(Arc<SlotState>);

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            open: Mutex::new(BTreeMap::new()),
            next: 0.into(),
        })
    }

    fn open(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<SlotState>>> {
        // The map stays consistent whatever panicked while holding it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection, evicting the oldest idle connection if every slot is
    /// taken; `None` when every slot is busy.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open();
        if open.len() >= self.max {
            let oldest_idle = open.iter().find(|(_, s)| !s.is_busy()).map(|(id, _)| *id)?;
            if let Some(evicted) = open.remove(&oldest_idle) {
                evicted.evicted.cancel();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SlotState::default());
        open.insert(id, Arc::clone(&state));
        Some(Slot {
            id,
            state,
            slots: Arc::clone(self),
        })
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open().len()
    }
}

impl SlotState {
    pub(super) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Marks the connection busy until the returned guard is dropped.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.store(true, Ordering::Release);
        Busy(Arc::clone(self))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

impl Slot {
    pub(super) fn state(&self) -> Arc<SlotState> {
        Arc::clone(&self.state)
    }

    pub(super) fn is_busy(&self) -> bool {
        self.state.is_busy()
    }

    /// Completes when a newer connection took this one's slot: close it now.
    pub(super) async fn evicted(&self) {
        self.state.evicted.cancelled().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_of_slots_hands_the_oldest_idle_ones_slot_to_a_newcomer() {
        let slots = Slots::new(3);
        let held: Vec<Slot> = (0..3).map(|_| slots.admit().unwrap()).collect();
        let _busy = held[0].state().busy();
        let newcomer = slots.admit().expect("an idle slot was there to take");
        assert_eq!(slots.len(), 3);
        assert!(!held[0].state.evicted.is_cancelled(), "busy: kept");
        assert!(held[1].state.evicted.is_cancelled(), "the oldest idle one");
        assert!(!held[2].state.evicted.is_cancelled());
        assert!(!newcomer.state.evicted.is_cancelled());
        // The evicted connection's slot is already gone; dropping it frees nothing twice.
        drop(held);
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn a_newcomer_is_refused_only_while_every_slot_has_a_request_in_hand() {
        let slots = Slots::new(2);
        let held: Vec<Slot> = (0..2).map(|_| slots.admit().unwrap()).collect();
        let busy: Vec<Busy> = held.iter().map(|s| s.state().busy()).collect();
        assert!(slots.admit().is_none());
        assert!(held.iter().all(|s| !s.state.evicted.is_cancelled()));
        drop(busy);
        let newcomer = slots.admit();
        assert!(newcomer.is_some(), "idle again: evictable");
        assert!(held[0].state.evicted.is_cancelled());
        assert_eq!(slots.len(), 2);
    }

    #[test]
    fn a_closed_connection_frees_its_slot() {
        let slots = Slots::new(1);
        let first = slots.admit().unwrap();
        let _busy = first.state().busy();
        assert!(slots.admit().is_none());
        drop(first);
        assert!(slots.admit().is_some());
    }
}
