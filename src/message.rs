//! A published message, stored once and shared by every subscription it was routed to, and the
//! bookkeeping its lifetime drives: the capacity it holds and the flush epoch it belongs to.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

/// One accepted message. It holds one unit of the bus's capacity from its acceptance until it
/// is dropped, which happens when every subscription it was routed to has returned from its
/// callback or discarded it.
pub struct Message {
    data: Packed,
    json_len: usize,
    pub seq: u64,
    pub published_ns: u64,
    pub(crate) epoch: Arc<Epoch>,
}

/// Bytes a message keeps inside itself; longer ones go to a second allocation.
const INLINE: usize = 224;

/// The payload, a NUL, the topic, a NUL: ready for C. Small messages are stored inline, so
/// that the message and its bytes are one allocation.
#[allow(clippy::large_enum_variant)] // inline on purpose: it lives inside the message's Arc
pub(crate) enum Packed {
    Inline(usize, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl Packed {
    fn bytes(&self) -> &[u8] {
        match self {
            Packed::Inline(len, bytes) => &bytes[..*len],
            Packed::Heap(bytes) => bytes,
        }
    }
}

impl Message {
    /// Copies `topic` and `json` into one buffer.
    pub(crate) fn pack(topic: &str, json: &[u8]) -> Packed {
        let len = json.len() + topic.len() + 2;
        if len <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..json.len()].copy_from_slice(json);
            bytes[json.len() + 1..len - 1].copy_from_slice(topic.as_bytes());
            return Packed::Inline(len, bytes);
        }
        let mut data = Vec::with_capacity(len);
        data.extend_from_slice(json);
        data.push(0);
        data.extend_from_slice(topic.as_bytes());
        data.push(0);
        Packed::Heap(data.into_boxed_slice())
    }

    pub(crate) fn new(
        data: Packed,
        json_len: usize,
        seq: u64,
        published_ns: u64,
        epoch: Arc<Epoch>,
    ) -> Message {
        Message {
            data,
            json_len,
            seq,
            published_ns,
            epoch,
        }
    }

    /// The payload, exactly as published.
    pub fn json(&self) -> &[u8] {
        &self.data.bytes()[..self.json_len]
    }

    /// The payload followed by a NUL.
    pub fn json_with_nul(&self) -> &[u8] {
        &self.data.bytes()[..=self.json_len]
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        let t = self.topic_with_nul();
        // Topics are checked printable ASCII; this cannot fail.
        std::str::from_utf8(&t[..t.len() - 1]).unwrap_or("")
    }

    /// The topic followed by a NUL.
    pub fn topic_with_nul(&self) -> &[u8] {
        &self.data.bytes()[self.json_len + 1..]
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        self.epoch.tracker.release();
    }
}

/// A flush epoch. Every message belongs to one: the bus's current epoch when published from
/// outside, its parent's when published by a callback (so a flush also waits for what callbacks
/// publish, transitively). A flush closes the current epoch and waits until it is done: its
/// messages dropped and every earlier epoch done. An epoch holds the next one alive, so an
/// epoch is only dropped once all earlier ones are - its drop is the "done" signal.
pub struct Epoch {
    pub gen: u64,
    tracker: Arc<Tracker>,
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
pub struct Tracker {
    capacity: usize,
    held: AtomicUsize,
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
            held: AtomicUsize::new(0),
            done_gen: AtomicU64::new(0),
            lost_gen: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            wake_pending: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Messages held now.
    pub fn held(&self) -> usize {
        self.held.load(SeqCst)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Takes one unit of capacity if there is one.
    pub fn try_reserve(&self) -> bool {
        let mut held = self.held.load(SeqCst);
        while held < self.capacity {
            match self
                .held
                .compare_exchange_weak(held, held + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
        false
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
        self.held.fetch_sub(1, SeqCst);
        if self.waiters.load(SeqCst) > 0 && !self.wake_pending.swap(true, SeqCst) {
            self.notify();
        }
    }

    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        self.wake();
    }

    pub fn epoch_done(&self, gen: u64) {
        self.done_gen.fetch_max(gen, SeqCst);
        self.wake();
    }

    pub fn is_done(&self, gen: u64) -> bool {
        self.done_gen.load(SeqCst) >= gen
    }

    /// Records that a close discarded a message of epoch `gen`.
    pub fn lost(&self, gen: u64) {
        self.lost_gen.fetch_min(gen, SeqCst);
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

    #[test]
    fn a_message_holds_capacity_until_dropped() {
        let t = Arc::new(Tracker::new(2));
        let e = Epoch::first(t.clone());
        assert!(t.try_reserve());
        let m = Message::new(Message::pack("a.b", b"[1]"), 3, 1, 0, e.clone());
        assert_eq!(m.json(), b"[1]");
        assert_eq!(m.json_with_nul(), b"[1]\0");
        assert_eq!(m.topic(), "a.b");
        assert_eq!(m.topic_with_nul(), b"a.b\0");
        assert!(t.try_reserve());
        let big = vec![b' '; 1000];
        let heap = Message::new(Message::pack("t", &big), 1000, 2, 0, e);
        assert_eq!((heap.json(), heap.topic()), (&big[..], "t"));
        assert!(!t.try_reserve());
        drop(m);
        drop(heap);
        assert_eq!(t.held(), 0);
    }

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
