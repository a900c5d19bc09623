//! Timers: one min-heap per bus of what is due when - a message of `publish_after`, or the
//! time-out of a `request_async` - served by one thread that sleeps until the earliest is due.
//! Setting, cancelling and firing cost O(log n); an idle bus's timer thread sleeps without a
//! deadline; the thread starts on first use and stops with the bus.

use crate::bus::{closed_error, Bus, Outcome, Shared};
use crate::message::Message;
use crate::publish::Wait;
use crate::router::IdMap;
use crate::status::{Error, Status};
use crate::sys::thread::{self, Thread};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Timer ids are unique in the process and never reused, so a stale id is NOT_FOUND. Those of
/// `publish_after` count up from 1; the time-outs of requests, which no caller may cancel,
/// count down from -1.
static NEXT_TIMER: AtomicI64 = AtomicI64::new(1);
static NEXT_EXPIRY: AtomicI64 = AtomicI64::new(-1);

/// A fresh `publish_after` timer id (> 0).
pub(crate) fn next_id() -> i64 {
    NEXT_TIMER.fetch_add(1, Relaxed)
}

/// A fresh id for a request's time-out (< 0).
pub(crate) fn next_expiry_id() -> i64 {
    NEXT_EXPIRY.fetch_sub(1, Relaxed)
}

/// What a timer does when it is due.
pub(crate) enum Due {
    /// Publish this message, prepared at the call: validated, copied, its capacity taken.
    Publish(Arc<Message>),
    /// Time out request number `n` of the bus's requests.
    Expire(u64),
}

/// A bus's pending timers.
#[derive(Default)]
pub(crate) struct Timers {
    state: Mutex<State>,
    cv: Condvar,
    thread: Mutex<Option<Thread>>,
}

#[derive(Default)]
struct State {
    /// (due time, id): equal due times fire in the order they were set, as ids only grow.
    heap: BinaryHeap<Reverse<(Instant, i64)>>,
    /// The timers still pending. A cancelled timer leaves its heap entry behind (skipped when
    /// it comes up, or swept once such entries are the majority).
    pending: IdMap<i64, Due>,
    publishes: usize,
    closed: bool,
}

/// How long before a timer is due the timer thread stops sleeping and spins (yielding the CPU
/// to any other runnable thread as it does).
const SPIN_BEFORE: Duration = Duration::from_micros(200);

/// Stale heap entries tolerated before a sweep (and at least as many as live ones).
const SWEEP_ABOVE: usize = 1024;

impl Timers {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure the timer thread runs, starting it with `start` the first time; false once
    /// the timers are closed (then no thread starts, so none outlives the bus).
    pub(crate) fn ensure_thread(
        &self,
        start: impl FnOnce() -> std::io::Result<Thread>,
    ) -> std::io::Result<bool> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if self.state().closed {
            return Ok(false);
        }
        if thread.is_none() {
            *thread = Some(start()?);
        }
        Ok(true)
    }

    /// Sets timer `id` to do `due` at `at`; gives `due` back once the bus is closing.
    pub(crate) fn set(&self, id: i64, at: Instant, due: Due) -> Result<(), Due> {
        let mut s = self.state();
        if s.closed {
            return Err(due);
        }
        let earliest = s
            .heap
            .peek()
            .map_or(true, |Reverse((first, _))| at < *first);
        if matches!(due, Due::Publish(_)) {
            s.publishes += 1;
        }
        s.heap.push(Reverse((at, id)));
        s.pending.insert(id, due);
        drop(s);
        if earliest {
            self.cv.notify_one();
        }
        Ok(())
    }

    /// Stops timer `id` if it is still pending; whichever of this and its firing comes first
    /// takes it.
    pub(crate) fn cancel(&self, id: i64) -> Option<Due> {
        let mut s = self.state();
        let due = s.pending.remove(&id)?;
        if matches!(due, Due::Publish(_)) {
            s.publishes -= 1;
        }
        let stale = s.heap.len() - s.pending.len();
        if stale > SWEEP_ABOVE && stale > s.pending.len() {
            let State { heap, pending, .. } = &mut *s;
            heap.retain(|Reverse((_, id))| pending.contains_key(id));
        }
        Some(due)
    }

    /// Timers pending now, request time-outs included.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.state().pending.len()
    }

    /// `publish_after` timers pending now.
    pub(crate) fn pending_publishes(&self) -> usize {
        self.state().publishes
    }

    /// Refuses new timers and takes every pending one; the timer thread stops.
    pub(crate) fn close(&self) -> Vec<Due> {
        let mut s = self.state();
        s.closed = true;
        s.heap.clear();
        s.publishes = 0;
        let all = s.pending.drain().map(|(_, d)| d).collect();
        drop(s);
        self.cv.notify_all();
        all
    }

    /// Joins the timer thread (after `close`).
    pub(crate) fn join(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            t.join();
        }
    }

    /// The timer thread's life: sleeps until the earliest timer is due and gives each due one
    /// to `fire`, in due order, until `close`.
    pub(crate) fn serve(&self, mut fire: impl FnMut(Due)) {
        let mut s = self.state();
        let mut last_fired: Option<Instant> = None;
        loop {
            if s.closed {
                return;
            }
            let Some(&Reverse((at, id))) = s.heap.peek() else {
                s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let now = Instant::now();
            // Sleep until a little before a sparse timer is due, then spin to it (below): a
            // sleeping thread wakes up late by tens of microseconds, and by a millisecond and
            // more now and then on a busy or virtual machine. While timers come faster the
            // thread is awake anyway, and spinning would take the CPU from the dispatchers.
            let sparse = last_fired.map_or(true, |t| now.duration_since(t) > SPIN_BEFORE);
            let lead = if sparse { SPIN_BEFORE } else { Duration::ZERO };
            if at > now + lead {
                s = self
                    .cv
                    .wait_timeout(s, at - now - lead)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            if at > now {
                drop(s);
                while Instant::now() < at {
                    std::thread::yield_now();
                }
                s = self.state();
                continue; // set or cancel may have changed what is first
            }
            s.heap.pop();
            let Some(due) = s.pending.remove(&id) else {
                continue; // cancelled
            };
            if matches!(due, Due::Publish(_)) {
                s.publishes -= 1;
            }
            drop(s);
            fire(due);
            last_fired = Some(Instant::now());
            s = self.state();
        }
    }
}

impl Bus {
    /// Validates and copies a message now (taking its unit of capacity, as a publish does) and
    /// publishes it `delay` later, when it takes its `seq`. Returns the timer's id (> 0).
    pub fn publish_after(&self, topic: &str, json: &[u8], delay: Duration) -> Result<i64, Error> {
        let at = Instant::now() + delay;
        let s = &self.shared;
        self.start_timers()?;
        let wait = Wait::here(s);
        let message = s
            .prepare(topic, json, "", &wait)
            .map_err(|e| self.refuse(e))?;
        let id = next_id();
        if s.timers.set(id, at, Due::Publish(message)).is_err() {
            s.tracker.release();
            return Err(self.refuse(closed_error("cannot set a timer")));
        }
        Ok(id)
    }

    /// Stops a pending `publish_after` timer; its message is never published.
    pub fn cancel(&self, id: i64) -> Result<(), Error> {
        let found = match id > 0 {
            true => self.shared.timers.cancel(id),
            false => None,
        };
        match found {
            Some(_) => {
                self.shared.tracker.release();
                Ok(())
            }
            None => Err(Error::new(
                Status::NotFound,
                format!("no pending timer {id} on this bus (it fired, was cancelled, was discarded by close, or never existed)"),
            )),
        }
    }

    /// Starts the bus's timer thread if it is not running yet.
    pub(crate) fn start_timers(&self) -> Result<(), Error> {
        let s = self.shared.clone();
        let started = self.shared.timers.ensure_thread(move || {
            thread::spawn(
                "jsonbus-timer",
                Box::new(move || s.timers.serve(|due| s.fire(due))),
            )
        });
        match started {
            Ok(true) => Ok(()),
            Ok(false) => Err(closed_error("cannot set a timer")),
            Err(e) => Err(Error::new(
                Status::Internal,
                format!("could not start the timer thread: {e}"),
            )),
        }
    }
}

impl Shared {
    /// Does what a due timer says, on the timer thread: publishes its message (waiting for a
    /// "block" subscription's room as any publisher; a message that cannot be published - the
    /// bus closing, or publish_timeout_ms running out - is counted as dropped), or times out a
    /// request.
    fn fire(&self, due: Due) {
        match due {
            Due::Publish(message) => {
                let topic = message.topic().to_owned();
                if self.accept(&topic, message, &Wait::here(self)).is_err() {
                    self.count(Outcome::Dropped);
                }
            }
            Due::Expire(n) => {
                if let Some(waiter) = self.requests.take(n) {
                    self.answer(waiter, Err(Status::Timeout));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_until_closed(t: Arc<Timers>) -> std::thread::JoinHandle<Vec<(u64, Instant)>> {
        std::thread::spawn(move || {
            let mut fired = Vec::new();
            t.serve(|d| {
                if let Due::Expire(n) = d {
                    fired.push((n, Instant::now()));
                }
            });
            fired
        })
    }

    #[test]
    fn timers_fire_in_due_order_never_early_and_equal_times_in_setting_order() {
        let t = Arc::new(Timers::default());
        let server = serve_until_closed(t.clone());
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        for (n, ms) in [(1, 30), (2, 10), (3, 20), (4, 10), (5, 10)] {
            assert!(t.set(next_id(), at(ms), Due::Expire(n)).is_ok());
        }
        std::thread::sleep(Duration::from_millis(80));
        let left = t.close();
        let fired = server.join().unwrap();
        assert!(left.is_empty());
        let order: Vec<u64> = fired.iter().map(|f| f.0).collect();
        assert_eq!(order, [2, 4, 5, 3, 1]);
        for (n, when) in fired {
            let ms = [0, 30, 10, 20, 10, 10][n as usize];
            assert!(when >= at(ms), "timer {n} fired early");
        }
    }

    #[test]
    fn cancel_takes_a_timer_once_and_close_hands_back_the_rest() {
        let t = Timers::default();
        let later = Instant::now() + Duration::from_secs(60);
        let ids: Vec<i64> = (0..5000).map(|_| next_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            let m = Arc::new(Message::new("t", b"1", ""));
            let due = if i % 2 == 0 {
                Due::Publish(m)
            } else {
                Due::Expire(i as u64)
            };
            assert!(t.set(*id, later, due).is_ok());
        }
        assert_eq!(t.pending_publishes(), 2500);
        for id in &ids[..3000] {
            assert!(t.cancel(*id).is_some());
            assert!(t.cancel(*id).is_none(), "a timer is cancelled once");
        }
        assert!(t.state().heap.len() < 5000, "stale entries were swept");
        assert_eq!(t.pending_publishes(), 1000);
        assert_eq!(t.close().len(), 2000);
        let m = Arc::new(Message::new("t", b"1", ""));
        assert!(t.set(next_id(), later, Due::Publish(m)).is_err());
        t.join();
    }
}
