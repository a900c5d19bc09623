//! The bus: publish (validate, copy once, number, route, enqueue), subscribe, unsubscribe,
//! flush, close and stats. Safe Rust; the C layer in `ffi` is a thin wrapper over it.

use crate::dispatch::{self, Job, RunQueue};
use crate::ffi::thread::{self, Thread};
use crate::message::{Epoch, Message, Room, Spares, Tracker};
use crate::options::Options;
use crate::router::Router;
use crate::status::{Error, Status};
use crate::subscription::{Callback, Subscription};
use crate::topic::{self, Kind};
use crate::{clock, validate};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Subscription ids are unique in the process and never reused, so a stale id is NOT_FOUND.
static NEXT_SUBSCRIPTION: AtomicI64 = AtomicI64::new(1);
static NEXT_BUS: AtomicU64 = AtomicU64::new(1);

/// A message bus. Cloning gives another handle to the same bus.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

/// The state a bus's handles and dispatcher threads share.
pub struct Shared {
    pub id: u64,
    pub options: Options,
    threads: usize,
    pub tracker: Arc<Tracker>,
    core: Mutex<Core>,
    pub(crate) run_queue: RunQueue,
    workers: Mutex<Vec<Thread>>,
    /// Held by a close from start to end, so that a second close waits for the first.
    closing: Mutex<()>,
    /// Set once a close has finished: no threads, no subscriptions.
    finished: AtomicBool,
    discarding: AtomicBool,
    /// Allocations of delivered messages, for the next publishes to reuse.
    pub(crate) spares: Spares,
    counts: Counts,
}

/// What publishes, subscribes and unsubscribes change together, under one lock: so the
/// sequence number, the routing and the enqueueing of a message are one step, and every
/// subscription sees shared messages in the same order.
struct Core {
    closed: bool,
    /// The last `seq` given, which is also the number of messages accepted.
    seq: u64,
    unrouted: u64,
    epoch: Arc<Epoch>,
    router: Router<Arc<Subscription>>,
    subscriptions: HashMap<i64, Arc<Subscription>>,
}

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    dropped: AtomicU64,
    discarded_by_close: AtomicU64,
    callback_failures: AtomicU64,
    rejected: [AtomicU64; REJECT_REASONS.len()],
}

/// What became of one delivery of a message to a subscription.
pub(crate) enum Outcome {
    Delivered,
    /// Delivered; the callback returned a negative value.
    Failed,
    /// Queued for a subscription that ended.
    Dropped,
    /// Discarded by a close that ran out of time.
    Discarded,
}

/// Rejection reasons as the stats name them.
const REJECT_REASONS: [(&str, Status); 6] = [
    ("json", Status::Json),
    ("utf8", Status::Utf8),
    ("topic", Status::Topic),
    ("too_large", Status::TooLarge),
    ("full", Status::Full),
    ("closed", Status::Closed),
];

/// A snapshot of a bus's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub published: u64,
    pub delivered: u64,
    pub unrouted: u64,
    pub dropped: u64,
    pub queued: u64,
    pub subscriptions: u64,
    pub callback_failures: u64,
    pub dispatcher_threads: u64,
    /// Refused publishes by reason: json, utf8, topic, too_large, full, closed.
    pub rejected: [(&'static str, u64); 6],
}

fn closed_error(what: &str) -> Error {
    Error::new(Status::Closed, format!("{what}: the bus is closed"))
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

impl Bus {
    /// Starts a bus and its dispatcher threads.
    pub fn new(options: Options) -> Result<Bus, Error> {
        let threads = options.resolved_threads();
        let tracker = Arc::new(Tracker::new(options.queue_capacity));
        let shared = Arc::new(Shared {
            id: NEXT_BUS.fetch_add(1, Relaxed),
            threads,
            core: Mutex::new(Core {
                closed: false,
                seq: 0,
                unrouted: 0,
                epoch: Epoch::first(tracker.clone()),
                router: Router::default(),
                subscriptions: HashMap::new(),
            }),
            options,
            tracker,
            run_queue: RunQueue::default(),
            workers: Mutex::new(Vec::new()),
            closing: Mutex::new(()),
            finished: AtomicBool::new(false),
            discarding: AtomicBool::new(false),
            spares: Spares::new(),
            counts: Counts::default(),
        });
        for i in 0..threads {
            let s = shared.clone();
            let started = thread::spawn(
                &format!("jsonbus-{i}"),
                Box::new(move || dispatch::worker(s)),
            );
            match started {
                Ok(handle) => shared.workers().push(handle),
                Err(e) => {
                    shared.stop_workers();
                    return Err(Error::new(
                        Status::Internal,
                        format!("could not start dispatcher thread {i} of {threads}: {e}"),
                    ));
                }
            }
        }
        Ok(Bus { shared })
    }

    /// An id unique to this bus in the process.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// Validates and copies a message, numbers it and queues it for every matching
    /// subscription. Returns its `seq`.
    pub fn publish(&self, topic: &str, json: &[u8]) -> Result<u64, Error> {
        self.shared.publish(topic, json).map_err(|e| self.refuse(e))
    }

    /// Counts a refused publish in the stats' `rejected` by its reason, and returns the error.
    pub fn refuse(&self, e: Error) -> Error {
        if let Some(i) = REJECT_REASONS.iter().position(|(_, s)| *s == e.status) {
            self.shared.counts.rejected[i].fetch_add(1, Relaxed);
        }
        e
    }

    /// Adds a subscription; its callback runs on a dispatcher thread for every message
    /// published afterwards on a topic its `pattern` matches.
    pub fn subscribe(&self, pattern: &str, callback: Callback) -> Result<i64, Error> {
        self.check_open("cannot subscribe")?;
        topic::check(pattern, Kind::Pattern)?;
        let id = NEXT_SUBSCRIPTION.fetch_add(1, Relaxed);
        let sub = Arc::new(Subscription::new(id, pattern, callback));
        let mut core = self.shared.core();
        if core.closed {
            return Err(closed_error("cannot subscribe"));
        }
        core.router.insert(pattern, id, sub.clone());
        core.subscriptions.insert(id, sub);
        Ok(id)
    }

    /// Ends a subscription. Once this returns, its callback is not running and never runs
    /// again - except when called from another callback of this bus, which does not wait for
    /// a running invocation to finish (the subscription is never started again).
    pub fn unsubscribe(&self, id: i64) -> Result<(), Error> {
        let sub = self.shared.end_subscription(id).ok_or_else(|| {
            Error::new(
                Status::NotFound,
                format!("no subscription {id} on this bus (never made here, already ended, or the bus is closed)"),
            )
        })?;
        if dispatch::in_callback_of(self.shared.id) {
            // Called from a callback of this bus: never wait (the caller's own subscription, or
            // another one whose running callback might be waiting for ours). A dispatcher that is
            // running it drops the callback when it returns.
            if dispatch::current_subscription(self.shared.id) != Some(id) {
                if let Some(mut callback) = sub.try_callback() {
                    *callback = None;
                }
            }
        } else {
            *sub.callback() = None;
        }
        Ok(())
    }

    /// Waits until every message published before the call - and everything their callbacks
    /// publish into this bus, transitively - has been delivered and its callbacks have
    /// returned. `None` waits without limit.
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let s = &self.shared;
        if dispatch::in_callback_of(s.id) {
            return Err(Error::new(
                Status::Deadlock,
                "jsonbus_flush was called from a callback of the same bus, which it would wait for",
            ));
        }
        if s.finished.load(SeqCst) {
            return Ok(());
        }
        let lost = || {
            Error::new(
                Status::Closed,
                "the bus was closed and discarded messages this flush waited for",
            )
        };
        if s.tracker.held() == 0 {
            // Nothing is held, so every earlier message is done: delivered, or discarded by a
            // close that is still running (only a close discards).
            return match s.tracker.any_lost() {
                true => Err(lost()),
                false => Ok(()),
            };
        }
        let closed_epoch = {
            let mut core = s.core();
            let next = core.epoch.open_next();
            std::mem::replace(&mut core.epoch, next)
        };
        let gen = closed_epoch.gen;
        drop(closed_epoch);
        if !s
            .tracker
            .wait_until(deadline(timeout), || s.tracker.is_done(gen))
        {
            return Err(Error::new(
                Status::Timeout,
                format!(
                    "flush timed out after {} ms; {} messages still held",
                    timeout.unwrap_or_default().as_millis(),
                    s.tracker.held()
                ),
            ));
        }
        if s.tracker.lost_by(gen) {
            return Err(lost());
        }
        Ok(())
    }

    /// Stops accepting publishes, delivers what is queued until `timeout` runs out, discards
    /// the rest, waits for running callbacks and joins the dispatcher threads. Fails with
    /// `Timeout` if it discarded anything. A second close returns `Ok`.
    pub fn close(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let s = &self.shared;
        if dispatch::in_callback_of(s.id) {
            return Err(Error::new(
                Status::Deadlock,
                "jsonbus_close was called from a callback of the same bus, which it would wait for",
            ));
        }
        let _closing = s.closing.lock().unwrap_or_else(|p| p.into_inner());
        if s.finished.load(SeqCst) {
            return Ok(());
        }
        s.core().closed = true;
        s.tracker.close();
        if !s
            .tracker
            .wait_until(deadline(timeout), || s.tracker.held() == 0)
        {
            s.discarding.store(true, SeqCst);
            let subs: Vec<Arc<Subscription>> = s.core().subscriptions.values().cloned().collect();
            for sub in subs {
                let queued = sub.take_all();
                for m in &queued {
                    if let Some(epoch) = m.epoch() {
                        s.tracker.lost(epoch.gen);
                    }
                    s.count(Outcome::Discarded);
                }
            }
        }
        s.stop_workers();
        let subs: Vec<Arc<Subscription>> = {
            let mut core = s.core();
            core.router.drain();
            core.subscriptions.drain().map(|(_, sub)| sub).collect()
        };
        for sub in subs {
            s.drop_queue(sub.close());
            *sub.callback() = None;
        }
        s.finished.store(true, SeqCst);
        match s.counts.discarded_by_close.load(SeqCst) {
            0 => Ok(()),
            n => Err(Error::new(
                Status::Timeout,
                format!("close ran out of time and discarded {n} queued deliveries (see \"dropped\" in the stats)"),
            )),
        }
    }

    /// `Closed` (with `what` in the message) once a close has started.
    pub fn check_open(&self, what: &str) -> Result<(), Error> {
        match self.is_closed() {
            true => Err(closed_error(what)),
            false => Ok(()),
        }
    }

    /// Whether a close has started.
    pub fn is_closed(&self) -> bool {
        self.shared.tracker.is_closed()
    }

    /// The bus's counters now.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let c = &s.counts;
        let (published, unrouted, subscriptions) = {
            let core = s.core();
            (core.seq, core.unrouted, core.subscriptions.len() as u64)
        };
        let mut rejected = [("", 0); 6];
        for (i, (name, _)) in REJECT_REASONS.iter().enumerate() {
            rejected[i] = (name, c.rejected[i].load(Relaxed));
        }
        Stats {
            published,
            delivered: c.delivered.load(Relaxed),
            unrouted,
            dropped: c.dropped.load(Relaxed),
            queued: s.tracker.held() as u64,
            subscriptions,
            callback_failures: c.callback_failures.load(Relaxed),
            dispatcher_threads: s.threads as u64,
            rejected,
        }
    }
}

impl Stats {
    /// The statistics of a bus that was never opened (used for the idle default bus).
    pub fn empty(options: &Options) -> Stats {
        let mut rejected = [("", 0); 6];
        for (i, (name, _)) in REJECT_REASONS.iter().enumerate() {
            rejected[i] = (name, 0);
        }
        Stats {
            dispatcher_threads: options.resolved_threads() as u64,
            rejected,
            ..Stats::default()
        }
    }

    /// As a JSON object.
    pub fn to_json(&self) -> String {
        let rejected: Vec<String> = self
            .rejected
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!(
            "{{\"published\":{},\"delivered\":{},\"unrouted\":{},\"dropped\":{},\"queued\":{},\"subscriptions\":{},\"callback_failures\":{},\"dispatcher_threads\":{},\"rejected\":{{{}}}}}",
            self.published,
            self.delivered,
            self.unrouted,
            self.dropped,
            self.queued,
            self.subscriptions,
            self.callback_failures,
            self.dispatcher_threads,
            rejected.join(",")
        )
    }
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn workers(&self) -> MutexGuard<'_, Vec<Thread>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_discarding(&self) -> bool {
        self.discarding.load(Relaxed)
    }

    fn enqueue(&self, sub: &Arc<Subscription>, message: Arc<Message>) {
        if sub.push(message) {
            self.schedule(sub.clone());
        }
    }

    pub(crate) fn schedule(&self, sub: Arc<Subscription>) {
        self.run_queue.push(Job::Run(sub));
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        let c = &self.counts;
        match outcome {
            Outcome::Delivered => c.delivered.fetch_add(1, Relaxed),
            Outcome::Failed => {
                c.callback_failures.fetch_add(1, Relaxed);
                c.delivered.fetch_add(1, Relaxed)
            }
            Outcome::Dropped => c.dropped.fetch_add(1, Relaxed),
            Outcome::Discarded => {
                c.discarded_by_close.fetch_add(1, SeqCst);
                c.dropped.fetch_add(1, Relaxed)
            }
        };
    }

    /// Counts messages queued for an ended subscription as dropped, then drops them.
    fn drop_queue(&self, queue: Vec<Arc<Message>>) {
        self.counts.dropped.fetch_add(queue.len() as u64, Relaxed);
    }

    /// Removes subscription `id` from routing, marks it ended and discards its queue.
    pub(crate) fn end_subscription(&self, id: i64) -> Option<Arc<Subscription>> {
        let sub = {
            let mut core = self.core();
            let sub = core.subscriptions.remove(&id)?;
            core.router.remove(&sub.pattern, id);
            sub
        };
        self.drop_queue(sub.close());
        Some(sub)
    }

    fn stop_workers(&self) {
        let handles = std::mem::take(&mut *self.workers());
        for _ in &handles {
            self.run_queue.push(Job::Stop);
        }
        for handle in handles {
            handle.join();
        }
        // Runs scheduled after the stops found no thread; their queues were emptied.
        self.run_queue.clear();
    }

    fn publish(&self, topic: &str, json: &[u8]) -> Result<u64, Error> {
        if self.tracker.is_closed() {
            return Err(closed_error("cannot publish"));
        }
        topic::check(topic, Kind::Topic)?;
        validate::check_payload(json, self.options.max_message_bytes, self.options.max_depth)?;
        let mut message = self.spares.message(topic, json);
        let in_callback = dispatch::in_callback_of(self.id);
        let timeout_ms = if in_callback {
            0
        } else {
            self.options.publish_timeout_ms
        };
        let room = match timeout_ms {
            0 if self.tracker.try_reserve() => Room::Taken,
            0 => Room::Full,
            ms if ms < 0 => self.tracker.reserve(None),
            ms => self
                .tracker
                .reserve(deadline(Some(Duration::from_millis(ms as u64)))),
        };
        match room {
            Room::Taken => {}
            Room::Full => {
                return Err(Error::new(
                    Status::Full,
                    format!(
                        "the bus is full ({} messages held, queue_capacity {}){}",
                        self.tracker.held(),
                        self.options.queue_capacity,
                        if in_callback {
                            "; a callback publishing into its own bus never waits for room"
                        } else if timeout_ms > 0 {
                            " and publish_timeout_ms ran out"
                        } else {
                            ""
                        }
                    ),
                ))
            }
            Room::Closed => return Err(closed_error("cannot publish")),
        }
        let published_ns = clock::now_ns();
        let parent = if in_callback {
            dispatch::parent_epoch()
        } else {
            None
        };
        let mut core = self.core();
        if core.closed {
            drop(core);
            self.tracker.release();
            return Err(closed_error("cannot publish"));
        }
        core.seq += 1;
        let seq = core.seq;
        let epoch = parent.unwrap_or_else(|| core.epoch.clone());
        Message::stamp(&mut message, seq, published_ns, epoch);
        // The last match takes the message itself; earlier ones take clones.
        let core = &mut *core;
        let mut last: Option<&Arc<Subscription>> = None;
        core.router.for_each_match(topic, |sub| {
            if let Some(prev) = last.replace(sub) {
                self.enqueue(prev, message.clone());
            }
        });
        match last {
            Some(sub) => self.enqueue(sub, message),
            None => core.unrouted += 1,
        }
        Ok(seq)
    }
}
