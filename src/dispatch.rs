//! Dispatcher threads: each takes a scheduled subscription off the run queue, delivers a batch
//! of its messages in order, and puts it back if more are waiting. Also the thread-local record
//! of which callback a thread is running, for re-entrant calls.

use crate::bus::{Outcome, Shared};
use crate::flush::Epoch;
use crate::message::{Message, Retired};
use crate::status::UNSUBSCRIBE;
use crate::subscription::end::EndReason;
use crate::subscription::{Delivery, Subscription};
#[cfg(windows)]
use crate::sys::local::OsLocal;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most messages of one subscription delivered before the next scheduled one gets a turn.
const BATCH: usize = 256;

/// An idle subscription stays scheduled (see `run`) only while at most this many jobs wait.
const KEEP_IDLE_BELOW: usize = 8;

/// What the run queue carries.
pub enum Job {
    /// Deliver some of this subscription's queue.
    Run(Arc<Subscription>),
    /// The same, for a subscription kept scheduled although its queue has been empty since
    /// then (see `run`).
    Idle(Arc<Subscription>, Instant),
    /// Call a request's reply callback, inheriting the flush epoch of its reply (if any) and,
    /// in an attached process, the hub's token of the reply's delivery.
    Call(Option<Arc<Epoch>>, u64, Box<dyn FnOnce() + Send>),
    /// Exit the dispatcher thread (sent by close, once per thread).
    Stop,
}

/// The run queue: subscriptions waiting for a dispatcher thread, and stop requests.
///
/// A mutex and condition variable rather than a channel: crossbeam-channel's wake-up path
/// calls `std::thread::current()` on the sending thread — a host thread — which registers a
/// thread-local destructor inside jsonbus there and would crash that thread at exit once the
/// library is unloaded.
#[derive(Default)]
pub struct RunQueue {
    jobs: Mutex<VecDeque<Job>>,
    /// Jobs queued, readable without the lock (for spinning threads).
    len: AtomicUsize,
    sleepers: AtomicUsize,
    ready: Condvar,
}

impl RunQueue {
    pub fn push(&self, job: Job) {
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.push_back(job);
            self.len.fetch_add(1, SeqCst);
        }
        // A sleeper counted itself under the lock before waiting, so it is woken.
        if self.sleepers.load(SeqCst) > 0 {
            self.ready.notify_one();
        }
    }

    /// Jobs waiting now.
    pub fn len(&self) -> usize {
        self.len.load(SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len.load(SeqCst) == 0
    }

    /// Drops every queued job (once no thread is left to run them), and returns the reply
    /// callbacks among them, which must still be called.
    pub fn clear(&self) -> Vec<Box<dyn FnOnce() + Send>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        self.len.store(0, SeqCst);
        jobs.drain(..)
            .filter_map(|job| match job {
                Job::Call(_, _, f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// The next job, waiting for one.
    fn pop(&self) -> Job {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(job) = jobs.pop_front() {
                self.len.fetch_sub(1, SeqCst);
                return job;
            }
            self.sleepers.fetch_add(1, SeqCst);
            jobs = self.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
            self.sleepers.fetch_sub(1, SeqCst);
        }
    }
}

#[cfg(not(windows))]
thread_local! {
    /// The bus id and the subscription whose callback or end notice this thread runs (0
    /// between callbacks); on a dispatcher thread the bus id is its own all the time. Zero
    /// elsewhere. A `Cell` of plain integers: host threads that touch it get no thread-local
    /// destructor, so the library can be unloaded.
    static CURRENT: Cell<(u64, i64)> = const { Cell::new((0, 0)) };
    /// On a dispatcher thread: its bus id. Zero elsewhere (a plain integer, as above).
    static DISPATCHER: Cell<u64> = const { Cell::new(0) };
    /// The bus ids of the callbacks around the one in `CURRENT`, innermost first (an end
    /// notice of bus B run by `jsonbus_unsubscribe` from a callback of bus A is inside both).
    static ENCLOSING: Cell<Enclosing> = const { Cell::new([0; NESTING]) };
    /// On a dispatcher thread: the flush epoch of the message being delivered, inherited by what
    /// its callback publishes. Only dispatcher threads ever touch it (it has a destructor).
    static PARENT: RefCell<Option<Arc<Epoch>>> = const { RefCell::new(None) };
    /// On a dispatcher thread of an attached bus: the hub's token of the delivery being
    /// handled, which what its callback publishes names as its parent (0: none).
    static PARENT_TOKEN: Cell<u64> = const { Cell::new(0) };
}

// Windows: the same three in OS TLS indexes that are given back when the DLL is unloaded
// (std's `thread_local!` would keep three taken for every load: see `sys::local`).
#[cfg(windows)]
static CURRENT: OsLocal<Cell<(u64, i64)>> = OsLocal::new();
#[cfg(windows)]
static DISPATCHER: OsLocal<Cell<u64>> = OsLocal::new();
#[cfg(windows)]
static PARENT: OsLocal<RefCell<Option<Arc<Epoch>>>> = OsLocal::new();
#[cfg(windows)]
static ENCLOSING: OsLocal<Cell<Enclosing>> = OsLocal::new();
#[cfg(windows)]
static PARENT_TOKEN: OsLocal<Cell<u64>> = OsLocal::new();

/// How many enclosing callbacks a thread remembers: nesting deeper than this (end notices of
/// four buses run one inside the other) forgets the outermost, whose bus would then not see
/// that a flush or close from inside would wait for itself.
const NESTING: usize = 3;
type Enclosing = [u64; NESTING];

/// Whether this thread is a dispatcher of bus `bus_id`, or runs one of its end notices (so
/// it is inside a callback of that bus whenever it runs host code).
pub fn in_callback_of(bus_id: u64) -> bool {
    bus_id != 0
        && (CURRENT.get().0 == bus_id
            || DISPATCHER.get() == bus_id
            || ENCLOSING.get().contains(&bus_id))
}

/// The epoch of the message whose callback is running on this dispatcher thread of bus
/// `bus_id`.
pub fn parent_epoch(bus_id: u64) -> Option<Arc<Epoch>> {
    if DISPATCHER.get() != bus_id || CURRENT.get().0 != bus_id {
        return None;
    }
    PARENT.with(|p| p.borrow().clone())
}

/// The hub's token of the delivery whose callback is running on this dispatcher thread of
/// bus `bus_id` (0: none, or not an attached bus).
pub fn parent_token(bus_id: u64) -> u64 {
    if DISPATCHER.get() != bus_id || CURRENT.get().0 != bus_id {
        return 0;
    }
    PARENT_TOKEN.get()
}

/// Runs `f` (an end notice) marked as inside a callback of subscription `sub` of bus `bus`,
/// on whatever thread this is.
pub fn as_callback(bus: u64, sub: i64, f: &mut dyn FnMut()) {
    let outer = CURRENT.replace((bus, sub));
    let enclosing = ENCLOSING.get();
    if outer.0 != 0 {
        let mut inner = enclosing;
        inner.rotate_right(1);
        inner[0] = outer.0;
        ENCLOSING.set(inner);
    }
    f();
    ENCLOSING.set(enclosing);
    CURRENT.set(outer);
}

/// A dispatcher thread's life.
pub fn worker(shared: Arc<Shared>) {
    let jobs = &shared.run_queue;
    CURRENT.set((shared.id, 0));
    DISPATCHER.set(shared.id);
    let mut poll = Poller::new(Duration::from_micros(
        shared.options.dispatcher_spin_us as u64,
    ));
    let mut batch = VecDeque::new();
    let mut retired = Retired::default();
    // Whether the thread just spent its spin polling a subscription's queue.
    let mut spun = false;
    loop {
        if !spun && jobs.is_empty() {
            poll.wait(|| !jobs.is_empty());
        }
        spun = match jobs.pop() {
            Job::Run(sub) => run(&shared, &sub, None, &mut batch, &mut retired, &mut poll),
            Job::Idle(sub, since) => run(
                &shared,
                &sub,
                Some(since),
                &mut batch,
                &mut retired,
                &mut poll,
            ),
            Job::Call(epoch, token, f) => {
                PARENT.with(|p| *p.borrow_mut() = epoch);
                PARENT_TOKEN.set(token);
                let _ = catch_unwind(AssertUnwindSafe(f));
                PARENT_TOKEN.set(0);
                PARENT.with(|p| p.borrow_mut().take());
                false
            }
            Job::Stop => break,
        };
    }
    PARENT.with(|p| p.borrow_mut().take());
    CURRENT.set((0, 0));
    DISPATCHER.set(0);
}

/// How an idle dispatcher waits for work: it polls for up to `spin` before it sleeps (waking a
/// sleeping thread costs tens of microseconds, polling a few hundred nanoseconds).
///
/// Each look reads cache lines that publishers write. Looking between every two messages pulls
/// those lines over once per message and costs the publisher a cache miss each time, so the
/// time between looks adapts: it doubles (up to `MAX_GAP`) when the first look after a pause
/// already finds work - messages arrive faster than the dispatcher looks, and it should let
/// several gather - and halves with each look that finds nothing, so a dispatcher waiting for
/// sparse messages looks almost continuously and picks each up within a microsecond or so.
struct Poller {
    spin: Duration,
    gap: Duration,
}

/// The longest pause between two looks.
const MAX_GAP: Duration = Duration::from_micros(2);

impl Poller {
    fn new(spin: Duration) -> Poller {
        Poller {
            spin,
            gap: Duration::ZERO,
        }
    }

    /// Between two batches of a subscription whose dispatcher keeps up with its publishers:
    /// pauses for the gap, so that the next batch is several messages, not the one that came
    /// in during the last callback, and widens the gap (up to `MAX_GAP`) for the next time. A
    /// look that then finds nothing narrows it again (`wait`). With no spin time it does not
    /// pause: such a dispatcher never polls.
    fn gather(&mut self) {
        if self.spin.is_zero() {
            return;
        }
        let paused = Instant::now();
        while paused.elapsed() < self.gap {
            std::hint::spin_loop();
        }
        self.gap = (self.gap * 2).clamp(Duration::from_nanos(250), MAX_GAP);
    }

    /// Polls `ready` for up to the spin time; returns whether it became true.
    fn wait(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        if self.spin.is_zero() {
            return false;
        }
        let start = Instant::now();
        let mut first = true;
        loop {
            let paused = Instant::now();
            std::hint::spin_loop();
            while paused.elapsed() < self.gap {
                std::hint::spin_loop();
            }
            if ready() {
                if first {
                    self.gap = (self.gap * 2).clamp(Duration::from_nanos(250), MAX_GAP);
                }
                return true;
            }
            first = false;
            self.gap /= 2;
            if paused.duration_since(start) >= self.spin {
                return false;
            }
        }
    }
}

/// Runs `sub`: delivers its queued messages in batches for as long as it has some and no other
/// job waits. When its queue runs dry and nothing else waits, it keeps the subscription for up
/// to the spin time, polling its queue: a publisher then only appends, with no hand-off to wake a
/// thread for. When other jobs wait, it takes turns with them and goes to the back of the run
/// queue still scheduled - also while its queue is empty, until it has been empty for the spin
/// time (`idle_since`) - so that the publishers of busy subscriptions only append, instead of
/// scheduling them again after every turn. Once the subscription has ended, the run completes
/// its end (end notice included) and keeps it scheduled for good. Returns whether a spin ran
/// out (the thread has spun enough to sleep).
fn run(
    shared: &Shared,
    sub: &Arc<Subscription>,
    mut idle_since: Option<Instant>,
    batch: &mut VecDeque<Arc<Message>>,
    retired: &mut Retired,
    poll: &mut Poller,
) -> bool {
    let jobs = &shared.run_queue;
    let mut spun = false;
    loop {
        if sub.is_ended() {
            shared.complete_end(sub, false);
            return false;
        }
        let delivered = deliver(shared, sub, batch, retired);
        if delivered > 0 {
            idle_since = None;
            if jobs.is_empty() {
                // More came in while the callbacks ran: let a batch gather. Not when the queue
                // is empty (sparse messages, a request and its reply: the next one is picked up
                // at once), nor for a subscription taken one message at a time.
                if gathers(sub, delivered) {
                    poll.gather();
                }
                continue;
            }
            jobs.push(Job::Run(sub.clone()));
            return false;
        }
        if !jobs.is_empty() {
            let since = idle_since.unwrap_or_else(Instant::now);
            // Kept only while few others wait: among many subscriptions (a broadcast) each one
            // would go round the queue again and again between two of its messages, and its
            // publisher would have to schedule it anyway once the spin time ran out.
            if jobs.len() <= KEEP_IDLE_BELOW && since.elapsed() < poll.spin {
                jobs.push(Job::Idle(sub.clone(), since));
                return false;
            }
            break;
        }
        if !poll.wait(|| sub.has_queued() || !jobs.is_empty() || sub.is_ended()) {
            spun = true;
            break;
        }
    }
    if sub.finish_run() {
        shared.schedule(sub.clone());
    }
    spun
}

/// Whether a dispatcher that just delivered `delivered` messages of `sub` should let more gather
/// before it looks again (see `run`).
fn gathers(sub: &Subscription, delivered: usize) -> bool {
    delivered < sub.batch_limit(BATCH) && sub.has_queued()
}

/// Takes up to `BATCH` queued messages and calls the callback for each, in order; once the
/// subscription has ended, the rest of the batch is dropped. Returns how many it took.
fn deliver(
    shared: &Shared,
    sub: &Arc<Subscription>,
    batch: &mut VecDeque<Arc<Message>>,
    retired: &mut Retired,
) -> usize {
    let taken = sub.take(batch, BATCH);
    if taken == 0 {
        return 0;
    }
    let taken = deliver_batch(shared, sub, batch, retired, taken);
    retired.finish(&shared.spares);
    taken
}

fn deliver_batch(
    shared: &Shared,
    sub: &Arc<Subscription>,
    batch: &mut VecDeque<Arc<Message>>,
    retired: &mut Retired,
    taken: usize,
) -> usize {
    if sub.blocks_publishers() {
        shared.tracker.room_made();
    }
    {
        let Some(mut callback) = sub.callback() else {
            return taken;
        };
        while let Some(message) = batch.pop_front() {
            let Some(epoch) = message.epoch() else {
                continue; // a spare is never queued
            };
            // Counted before the message is dropped: a flush that sees it done sees it counted.
            if shared.is_discarding() {
                shared.tracker.lost(epoch.gen);
                shared.count(Outcome::Discarded);
                sub.count_dropped(1);
                continue;
            }
            let f = match callback.as_mut() {
                Some(f) if !sub.is_ended() => f,
                _ => {
                    shared.count(Outcome::Dropped);
                    sub.count_dropped(1);
                    continue;
                }
            };
            retired.before(epoch);
            PARENT.with(|p| {
                let mut p = p.borrow_mut();
                if !p.as_ref().is_some_and(|e| Arc::ptr_eq(e, epoch)) {
                    *p = Some(epoch.clone());
                }
            });
            CURRENT.set((shared.id, sub.id));
            PARENT_TOKEN.set(message.origin_token());
            let delivery = Delivery {
                message: &message,
                subscription: sub.id,
            };
            let rc = catch_unwind(AssertUnwindSafe(|| f(&delivery))).unwrap_or(-1);
            CURRENT.set((shared.id, 0));
            PARENT_TOKEN.set(0);
            shared.count(if rc < 0 {
                Outcome::Failed
            } else {
                Outcome::Delivered
            });
            let failed_out = sub.count_delivered(rc);
            if rc == UNSUBSCRIBE {
                shared.end(sub, EndReason::Returned);
            } else if failed_out {
                shared.end(sub, EndReason::Failed);
            }
            retired.recycle(message);
        }
    }
    PARENT.with(|p| p.borrow_mut().take());
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_queue_that_filled_during_the_callbacks_gathers() {
        use crate::options::SubscribeOptions;
        use crate::subscription::Consumer;
        let plain = Subscription::new(1, ">", SubscribeOptions::default(), Consumer::Pull);
        assert!(
            !gathers(&plain, 1),
            "empty queue: the next message is picked up at once"
        );
        plain.push(Arc::new(Message::new("t", b"1", "")));
        assert!(gathers(&plain, 1));
        assert!(!gathers(&plain, BATCH), "a full batch: no pause");
        let limited = SubscribeOptions::parse(Some(r#"{"queue_limit":4}"#)).unwrap();
        let limited = Subscription::new(2, ">", limited, Consumer::Pull);
        limited.push(Arc::new(Message::new("t", b"1", "")));
        assert!(
            !gathers(&limited, 1),
            "taken one at a time: a pause per message would hold its publishers up"
        );
    }

    #[test]
    fn gathering_pauses_for_the_gap_and_widens_it_up_to_its_limit() {
        let mut p = Poller::new(Duration::from_micros(100));
        p.gather();
        assert_eq!(p.gap, Duration::from_nanos(250));
        let start = Instant::now();
        p.gather();
        assert!(start.elapsed() >= Duration::from_nanos(250));
        assert_eq!(p.gap, Duration::from_nanos(500));
        for _ in 0..10 {
            p.gather();
        }
        assert_eq!(p.gap, MAX_GAP);
        assert!(!p.wait(|| false), "nothing came");
        assert!(p.gap < MAX_GAP, "looks that find nothing narrow the gap");
        let mut never = Poller::new(Duration::ZERO);
        never.gather();
        assert_eq!(never.gap, Duration::ZERO, "no spin time: no pause");
    }

    #[test]
    fn an_end_notice_inside_another_bus_callback_is_inside_both() {
        assert!(!in_callback_of(7) && !in_callback_of(0));
        as_callback(7, 1, &mut || {
            as_callback(8, 2, &mut || {
                assert!(in_callback_of(7) && in_callback_of(8));
                as_callback(9, 3, &mut || {
                    as_callback(10, 4, &mut || {
                        assert!(
                            in_callback_of(7),
                            "three enclosing callbacks are remembered"
                        );
                        assert!(in_callback_of(8) && in_callback_of(9) && in_callback_of(10));
                    });
                });
                assert_eq!(CURRENT.get(), (8, 2));
            });
            assert!(in_callback_of(7) && !in_callback_of(8));
        });
        assert!(!in_callback_of(7) && !in_callback_of(8) && !in_callback_of(0));
    }
}
