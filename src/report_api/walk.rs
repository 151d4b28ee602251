//! What every cursor walk (the ledger list, a feed, a ledger date's report) needs to end on
//! its own whatever the API answers: the cursors seen so far, so a cycle of any length is
//! caught, not only a cursor repeated at once. Hashes are kept (8 bytes a page), never the
//! cursors, so a walk of `limits.max_pages_per_feed` pages costs well under a megabyte.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// The cursors a walk has been given, by the page that gave them.
#[derive(Debug, Default)]
pub struct Cursors {
    hasher: RandomState,
    seen: HashMap<u64, u64>,
    pages: u64,
}

impl Cursors {
    /// Records the cursor page `n` of the walk returned (pages counted from 1 by the calls);
    /// `Some(earlier)` if an earlier page returned the same one: the walk has come round.
    pub fn repeat(&mut self, cursor: &str) -> Option<u64> {
        self.pages += 1;
        let key = self.hasher.hash_one(cursor);
        match self.seen.get(&key) {
            Some(&first) => Some(first),
            None => {
                self.seen.insert(key, self.pages);
                None
            }
        }
    }

    /// Forgets every cursor (after a deliberate wait at the same position).
    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_of_any_length_is_caught_at_its_first_repeat() {
        let mut c = Cursors::default();
        assert_eq!(c.repeat("a"), None);
        assert_eq!(c.repeat("b"), None);
        assert_eq!(c.repeat("c"), None);
        assert_eq!(c.repeat("a"), Some(1));
        let mut d = Cursors::default();
        assert_eq!(d.repeat("x"), None);
        assert_eq!(d.repeat("x"), Some(1));
    }
}
