//! Flush epochs: how `jsonbus_flush` knows that everything published before it - and what
//! callbacks published while handling it - is done.

use crate::capacity::Tracker;
use std::sync::{Arc, OnceLock};

/// A flush epoch. Every message belongs to one: the bus's current epoch when published from
/// outside, its parent's when published by a callback (so a flush also waits for what callbacks
/// publish, transitively). A flush closes the current epoch and waits until it is done: its
/// messages dropped and every earlier epoch done. An epoch holds the next one alive, so an
/// epoch is only dropped once all earlier ones are - its drop is the "done" signal.
pub struct Epoch {
    pub gen: u64,
    pub(crate) tracker: Arc<Tracker>,
    next: OnceLock<Arc<Epoch>>,
}

impl Epoch {
    pub(crate) fn first(tracker: Arc<Tracker>) -> Arc<Epoch> {
        Arc::new(Epoch {
            gen: 1,
            tracker,
            next: OnceLock::new(),
        })
    }

    /// Opens the epoch after this one (called once, under the bus lock, by a flush).
    pub(crate) fn open_next(&self) -> Arc<Epoch> {
        let next = Arc::new(Epoch {
            gen: self.gen + 1,
            tracker: self.tracker.clone(),
            next: OnceLock::new(),
        });
        // Only the flush that replaces this epoch as current calls this, so the cell is empty.
        let _ = self.next.set(next.clone());
        next
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.tracker.epoch_done(self.gen);
        // Drop the chain of finished successors iteratively, not recursively.
        let mut next = self.next.take();
        while let Some(epoch) = next {
            next = match Arc::into_inner(epoch) {
                Some(mut e) => e.next.take(),
                None => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_done_only_after_every_earlier_one() {
        let t = Arc::new(Tracker::new(10));
        let e1 = Epoch::first(t.clone());
        let e2 = e1.open_next();
        let e3 = e2.open_next();
        let hold1 = e1.clone();
        drop((e1, e2.clone()));
        drop(e3);
        assert!(!t.is_done(1));
        drop(e2);
        assert!(!t.is_done(2), "epoch 2 waits for epoch 1");
        drop(hold1);
        assert!(t.is_done(3), "dropping 1 finishes 2 and 3");
    }

    #[test]
    fn a_long_chain_of_epochs_drops_without_recursion() {
        let t = Arc::new(Tracker::new(10));
        let first = Epoch::first(t.clone());
        let mut e = first.clone();
        for _ in 0..1_000_000 {
            e = e.open_next();
        }
        drop(e);
        drop(first);
        assert!(t.is_done(1_000_001));
    }
}
