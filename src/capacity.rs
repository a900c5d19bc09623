//! Capacity: how many messages a bus holds against `queue_capacity`, and the one place where
//! publishers, flushes and closes wait (for room, for an epoch to finish, for the bus to close).

use crate::padded::Padded;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// The outcome of waiting for capacity.
#[derive(Debug, PartialEq, Eq)]
pub enum Room {
    Taken,
    Full,
    Closed,
}

/// What the bus's waiters wait on: capacity held by messages, flush epochs done, and closing.
/// One mutex and condition variable serve every waiter; the hot path touches only atomics
/// unless someone is waiting, and then only the first release after a waiter went to sleep
/// wakes it: a full bus must not turn every delivery into a system call.
///
/// Capacity is two counters that only grow, each written by one side of the hand-off: `taken`
/// by publishers, `given_back` by whoever drops a message (a dispatcher, mostly). Held is their
/// difference. A publisher reads `given_back` only when the last value it saw leaves no room
/// (`seen_given_back`, on the publishers' side), so while the bus is far from full the
/// dispatcher's counter is not pulled over to the publishing core for every message, and the
/// publisher's not to the dispatcher's. A stale value only ever under-states the room, so a
/// publish is refused only after a fresh look: capacity stays exact.
pub struct Tracker {
    capacity: usize,
    /// Units taken by publishers (and by a hub's credit to attached processes).
    taken: Padded<AtomicUsize>,
    /// The last `given_back` a publisher read (publishers' side).
    seen_given_back: AtomicUsize,
    /// Units given back.
    given_back: Padded<AtomicUsize>,
    done_gen: AtomicU64,
    /// Lowest epoch with a message that a close discarded (`u64::MAX`: none).
    lost_gen: AtomicU64,
    closed: AtomicBool,
    waiters: AtomicUsize,
    /// Set by the release that wakes the waiters; cleared by each waiter before it looks again.
    wake_pending: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Tracker {
    pub fn new(capacity: usize) -> Tracker {
        Tracker {
            capacity,
            taken: Padded(AtomicUsize::new(0)),
            seen_given_back: AtomicUsize::new(0),
            given_back: Padded(AtomicUsize::new(0)),
            done_gen: AtomicU64::new(0),
            lost_gen: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            wake_pending: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Messages held now: `taken` read between two equal reads of `given_back`, so the
    /// difference is what was held at that instant (never above `capacity`). Read once each,
    /// releases and publishes between the reads could make it exceed the capacity (seen in the
    /// soak under ThreadSanitizer: 112 held of 64); should the counters never stand still long
    /// enough, the last difference is capped at the capacity.
    pub fn held(&self) -> usize {
        let mut given_back = self.given_back.load(SeqCst);
        let mut held = 0;
        for _ in 0..64 {
            // `given_back` first: read the other way round, a release between the two reads
            // could make it exceed `taken`.
            held = self.taken.load(SeqCst).wrapping_sub(given_back);
            let again = self.given_back.load(SeqCst);
            if again == given_back {
                return held;
            }
            given_back = again;
        }
        held.min(self.capacity)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Takes one unit of capacity if there is one.
    pub fn try_reserve(&self) -> bool {
        let mut taken = self.taken.load(SeqCst);
        let mut seen = self.seen_given_back.load(Relaxed);
        loop {
            if taken.wrapping_sub(seen) >= self.capacity {
                // No room by the last value seen: look at the real one.
                let now = self.given_back.load(SeqCst);
                if now == seen {
                    return false;
                }
                seen = now;
                self.seen_given_back.store(now, Relaxed);
                continue;
            }
            match self
                .taken
                .compare_exchange_weak(taken, taken.wrapping_add(1), SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => taken = now,
            }
        }
    }

    /// Takes one unit of capacity, waiting until `deadline` (`None`: no limit) for room.
    pub fn reserve(&self, deadline: Option<Instant>) -> Room {
        if self.try_reserve() {
            return Room::Taken;
        }
        let mut got = false;
        let finished = self.wait_until(deadline, || {
            got = got || self.try_reserve();
            got || self.is_closed()
        });
        match (got, finished) {
            (true, _) => Room::Taken,
            (false, true) => Room::Closed,
            (false, false) => Room::Full,
        }
    }

    /// Gives back one unit of capacity.
    pub fn release(&self) {
        self.given_back.fetch_add(1, SeqCst);
        self.room_made();
    }

    /// Wakes the waiters after room was made (capacity, or a subscription's queue): only the
    /// first such call after a waiter went to sleep takes the lock.
    pub fn room_made(&self) {
        if self.waiters.load(SeqCst) > 0 && !self.wake_pending.swap(true, SeqCst) {
            self.notify();
        }
    }

    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        self.wake();
    }

    pub fn epoch_done(&self, gen: u64) {
        // A compare-and-swap loop, not `fetch_max`: ThreadSanitizer does not see atomic
        // max/min, and would miss that a flush synchronises with the callbacks it waited for.
        let _ = self
            .done_gen
            .fetch_update(SeqCst, SeqCst, |done| (gen > done).then_some(gen));
        self.wake();
    }

    pub fn is_done(&self, gen: u64) -> bool {
        self.done_gen.load(SeqCst) >= gen
    }

    /// Records that a close discarded a message of epoch `gen`.
    pub fn lost(&self, gen: u64) {
        // Not `fetch_min`, for ThreadSanitizer (see `epoch_done`).
        let _ = self
            .lost_gen
            .fetch_update(SeqCst, SeqCst, |lost| (gen < lost).then_some(gen));
    }

    /// Whether a close discarded any message.
    pub fn any_lost(&self) -> bool {
        self.lost_gen.load(SeqCst) != u64::MAX
    }

    /// Whether a close discarded a message of epoch `gen` or earlier.
    pub fn lost_by(&self, gen: u64) -> bool {
        self.lost_gen.load(SeqCst) <= gen
    }

    /// Waits until `ready()` or `deadline`; returns whether `ready()` held.
    pub fn wait_until(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.waiters.fetch_add(1, SeqCst);
        let result = loop {
            // Cleared before looking: a release after this point wakes us again.
            self.wake_pending.store(false, SeqCst);
            if ready() {
                break true;
            }
            match deadline {
                None => guard = self.cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    guard = self
                        .cv
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        };
        self.waiters.fetch_sub(1, SeqCst);
        result
    }

    fn wake(&self) {
        if self.waiters.load(SeqCst) > 0 {
            self.notify();
        }
    }

    fn notify(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn capacity_is_exact() {
        let t = Tracker::new(2);
        assert!(t.try_reserve() && t.try_reserve());
        assert!(!t.try_reserve());
        assert_eq!(
            t.reserve(Some(Instant::now() + Duration::from_millis(5))),
            Room::Full
        );
        t.release();
        assert_eq!(t.reserve(None), Room::Taken);
        assert_eq!(t.held(), 2);
        t.close();
        assert_eq!(t.reserve(None), Room::Closed);
    }

    /// Two threads take and give back units as fast as they can, keeping the tracker full;
    /// `held()` read meanwhile never says more than the capacity.
    #[test]
    fn held_never_exceeds_the_capacity_while_units_churn() {
        use std::sync::atomic::AtomicBool;
        let t = Tracker::new(4);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(Relaxed) {
                        if t.try_reserve() {
                            t.release();
                        }
                    }
                });
            }
            let start = Instant::now();
            let mut max = 0;
            while start.elapsed() < Duration::from_millis(300) {
                max = max.max(t.held());
            }
            stop.store(true, Relaxed);
            assert!(max <= 4, "held() said {max} of a capacity of 4");
        });
    }
}
