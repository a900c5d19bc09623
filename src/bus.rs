//! The bus: publish (validate, copy once, number, route, enqueue), subscribe, unsubscribe,
//! pull, requests and timers, flush, close and stats, and the one end path every subscription
//! goes through. Safe Rust; the C layer in `ffi` is a thin wrapper over it.

use crate::capacity::Tracker;
use crate::dispatch::{self, Job, RunQueue};
use crate::flush::Epoch;
use crate::message::Spares;
use crate::options::{Options, SubscribeOptions};
use crate::request::Requests;
use crate::router::IdMap;
use crate::router::Router;
use crate::stats::{Stats, REJECT_REASONS};
use crate::status::{Error, Status};
use crate::subscription::end::EndReason;
use crate::subscription::{Callback, Consumer, NotNext, Pulled, Subscription, SubscriptionStats};
use crate::sys::thread::{self, Thread};
use crate::timer::{Due, Timers};
use crate::topic::{self, Kind};
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Subscription ids are unique in the process and never reused, so a stale id is NOT_FOUND.
static NEXT_SUBSCRIPTION: AtomicI64 = AtomicI64::new(1);
static NEXT_BUS: AtomicU64 = AtomicU64::new(1);

/// A message bus. Cloning gives another handle to the same bus.
#[derive(Clone)]
pub struct Bus {
    pub(crate) shared: Arc<Shared>,
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
    /// Live subscriptions and ended ones still known: a callback subscription until its end is
    /// complete (its last invocation and its end notice returned), a pull subscription until
    /// `unsubscribe` releases it or the bus is dropped. Apart from the bus lock, so that
    /// `jsonbus_next` does not contend with publishers; taken after it when both are needed.
    known: Mutex<IdMap<i64, Arc<Subscription>>>,
    /// Messages handed out by `next` and not yet released.
    outstanding: Arc<AtomicUsize>,
    /// Allocations of delivered messages, for the next publishes to reuse.
    pub(crate) spares: Arc<Spares>,
    /// Requests waiting for their first reply.
    pub(crate) requests: Requests,
    pub(crate) timers: Timers,
    counts: Counts,
    /// An attached bus: its connection to the hub (set once, before the handle is returned).
    #[cfg(target_os = "linux")]
    link: std::sync::OnceLock<Arc<crate::process::peer::Link>>,
    /// A served bus: the hub, until a close stops it.
    #[cfg(target_os = "linux")]
    hub: Mutex<Option<Arc<crate::process::hub::Hub>>>,
    /// Set (under `hub`'s lock) by a close: no serving any more.
    #[cfg(target_os = "linux")]
    serving_ended: AtomicBool,
    /// A bus that has served: its hub's figures, kept after the close for the stats.
    #[cfg(target_os = "linux")]
    served: std::sync::OnceLock<Arc<crate::process::hub::HubCounts>>,
}

/// What publishes, subscribes and unsubscribes change together, under one lock: so the
/// sequence number, the routing and the enqueueing of a message are one step, and every
/// subscription sees shared messages in the same order.
pub(crate) struct Core {
    pub(crate) closed: bool,
    /// The last `seq` given, which is also the number of messages accepted.
    pub(crate) seq: u64,
    pub(crate) unrouted: u64,
    pub(crate) epoch: Arc<Epoch>,
    /// Live subscriptions only.
    pub(crate) router: Router<Arc<Subscription>>,
    pub(crate) live: usize,
    /// Live subscriptions with a queue limit or a group. While there are none, a publish
    /// queues for every match without looking at them.
    pub(crate) special: usize,
    /// Advances as group members take turns.
    pub(crate) turn: u64,
}

impl Core {
    /// Takes `sub` out of routing and marks it ended for `reason`, unless it ended already.
    pub(crate) fn end(&mut self, sub: &Subscription, reason: EndReason) -> bool {
        if !sub.mark_ended(reason) {
            return false;
        }
        self.unroute(sub);
        true
    }

    /// Takes a subscription just marked ended out of routing.
    pub(crate) fn unroute(&mut self, sub: &Subscription) {
        self.router.remove(&sub.pattern, sub.id);
        self.live -= 1;
        if !sub.options.is_plain() {
            self.special -= 1;
        }
    }
}

/// Written by dispatchers once per delivery: alone on its cache lines (as `padded::Padded`),
/// so that those writes do not take from the publishing core the lines of the fields it reads
/// on every publish.
#[derive(Default)]
#[repr(align(128))]
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

pub(crate) fn closed_error(what: &str) -> Error {
    Error::new(Status::Closed, format!("{what}: the bus is closed"))
}

pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

impl Bus {
    /// Starts a bus and its dispatcher threads.
    pub fn new(options: Options) -> Result<Bus, Error> {
        let threads = options.resolved_threads();
        let tracker = Arc::new(Tracker::new(options.queue_capacity));
        let id = NEXT_BUS.fetch_add(1, Relaxed);
        let shared = Arc::new(Shared {
            id,
            threads,
            core: Mutex::new(Core {
                closed: false,
                seq: 0,
                unrouted: 0,
                epoch: Epoch::first(tracker.clone()),
                router: Router::default(),
                live: 0,
                special: 0,
                turn: 0,
            }),
            options,
            tracker,
            run_queue: RunQueue::default(),
            workers: Mutex::new(Vec::new()),
            closing: Mutex::new(()),
            finished: AtomicBool::new(false),
            discarding: AtomicBool::new(false),
            known: Mutex::new(IdMap::default()),
            outstanding: Arc::default(),
            spares: Arc::new(Spares::new()),
            requests: Requests::new(id),
            timers: Timers::default(),
            counts: Counts::default(),
            #[cfg(target_os = "linux")]
            link: std::sync::OnceLock::new(),
            #[cfg(target_os = "linux")]
            hub: Mutex::new(None),
            #[cfg(target_os = "linux")]
            serving_ended: AtomicBool::new(false),
            #[cfg(target_os = "linux")]
            served: std::sync::OnceLock::new(),
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

    /// Serves this bus under `name`, so that other processes of the user can attach to it,
    /// until it is closed.
    #[cfg(target_os = "linux")]
    pub fn serve(&self, name: &str, options: crate::options::ServeOptions) -> Result<(), Error> {
        let s = &self.shared;
        if let Some(link) = s.link() {
            return Err(Error::new(
                Status::Unsupported,
                format!("this handle is attached to \"{}\", which its hub serves; only the hub's own bus can be served", link.name),
            ));
        }
        let mut hub = s.hub();
        if s.serving_ended.load(SeqCst) || self.is_closed() {
            return Err(closed_error("cannot serve"));
        }
        if let Some(h) = hub.as_ref() {
            return Err(Error::new(
                Status::NameInUse,
                format!(
                    "this bus already serves \"{}\"; a bus serves one name",
                    h.name.name
                ),
            ));
        }
        let serving = crate::process::hub::Hub::serve(self, name, options)?;
        let _ = s.served.set(serving.counts.clone());
        *hub = Some(serving);
        Ok(())
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
        self.subscribe_with(
            pattern,
            SubscribeOptions::default(),
            Consumer::Callback(callback, None),
        )
    }

    /// Adds a subscription with its own options, taken by a callback (with an optional end
    /// notice) or by pulling threads.
    pub fn subscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        consumer: Consumer,
    ) -> Result<i64, Error> {
        self.check_open("cannot subscribe")?;
        topic::check(pattern, Kind::Pattern)?;
        let id = NEXT_SUBSCRIPTION.fetch_add(1, Relaxed);
        let sub = Arc::new(Subscription::new(id, pattern, options, consumer));
        let mut core = self.shared.core();
        if core.closed {
            return Err(closed_error("cannot subscribe"));
        }
        core.router.insert(pattern, id, sub.clone());
        core.live += 1;
        if !sub.options.is_plain() {
            core.special += 1;
        }
        // Under the bus lock, so that a close that finds the bus open sees it.
        self.shared.known().insert(id, sub.clone());
        drop(core);
        #[cfg(target_os = "linux")]
        if let Some(link) = self.shared.link() {
            let group = sub.options.group.as_deref().unwrap_or("");
            if let Err(e) = link.subscribe(id, pattern, group) {
                // Not made: gone without a trace (no end notice); should the hub have
                // registered it after all (a time-out), it is told to forget it.
                link.unsubscribe(id);
                if let Some(mut callback) = sub.callback() {
                    *callback = None;
                }
                self.shared.core().end(&sub, EndReason::Unsubscribed);
                self.shared.known().remove(&id);
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Ends a subscription (or releases a pull subscription that ended on its own; a callback
    /// subscription that has ended is not found, as in Part 1). Once this returns, its
    /// callback is not running and never runs again and its end notice has run - except when
    /// called from a callback of this bus, which does not wait: the subscription is never
    /// started again, and a dispatcher runs its end notice once a running invocation returns.
    pub fn unsubscribe(&self, id: i64) -> Result<(), Error> {
        let s = &self.shared;
        let not_found = || {
            Error::new(
                Status::NotFound,
                format!("no subscription {id} on this bus (never made here, already ended, or the bus is closed)"),
            )
        };
        if s.finished.load(SeqCst) {
            return Err(not_found());
        }
        let outside = !dispatch::in_callback_of(s.id);
        let (sub, ended_now) = {
            let mut core = s.core();
            let sub = s.known().get(&id).cloned().ok_or_else(not_found)?;
            if let (Some(reason), false) = (sub.ended(), sub.is_pull()) {
                // Part 1: a callback subscription that has ended is not found. A dispatcher
                // completes its end; from outside, wait for that (guarantee 13).
                drop(core);
                if outside {
                    sub.wait_end_complete();
                }
                return Err(Error::new(
                    Status::NotFound,
                    format!(
                        "subscription {id} has already ended ({})",
                        reason.name().to_string_lossy()
                    ),
                ));
            }
            if outside && !sub.is_ended() {
                // Its end notice runs here, on the caller's thread, not on a dispatcher.
                sub.set_outside_end();
            }
            let ended_now = core.end(&sub, EndReason::Unsubscribed);
            if sub.is_pull() {
                s.known().remove(&id);
            }
            (sub, ended_now)
        };
        if ended_now {
            s.after_end(&sub);
        }
        if outside {
            s.complete_end(&sub, true);
        }
        Ok(())
    }

    /// The next message of pull subscription `id`, waiting up to `timeout` (`None`: no limit)
    /// for one. It counts as held until the caller drops it.
    pub fn next(&self, id: i64, timeout: Option<Duration>) -> Result<Pulled, Error> {
        let s = &self.shared;
        let sub = s.pull_subscription(id)?;
        match sub.next(deadline(timeout)) {
            Ok(m) => {
                if sub.blocks_publishers() {
                    s.tracker.room_made();
                }
                sub.count_delivered(0);
                s.count(Outcome::Delivered);
                Ok(Pulled::new(m, s.spares.clone(), s.outstanding.clone()))
            }
            Err(NotNext::Timeout) => Err(Error::new(
                Status::Timeout,
                format!(
                    "no message for pull subscription {id} within {} ms",
                    timeout.unwrap_or_default().as_millis()
                ),
            )),
            Err(NotNext::Ended(reason)) => Err(Error::new(
                Status::Ended,
                format!(
                    "pull subscription {id} has ended ({}: {}) and its queue is empty{}",
                    reason.name().to_string_lossy(),
                    reason.describe(),
                    match reason {
                        // closed: the bus releases it; unsubscribed: that call does
                        EndReason::Closed | EndReason::Unsubscribed => "",
                        _ => "; jsonbus_unsubscribe releases it",
                    }
                ),
            )),
        }
    }

    /// The descriptor that polls readable while pull subscription `id` has a message waiting
    /// or has ended. It stays open until the subscription is released or the bus dropped.
    pub fn pull_fd(&self, id: i64) -> Result<i32, Error> {
        let sub = self.shared.pull_subscription(id)?;
        sub.pull_fd().map_err(|e| {
            let status = match e.kind() {
                std::io::ErrorKind::Unsupported => Status::Unsupported,
                _ => Status::Internal,
            };
            Error::new(
                status,
                format!("no descriptor for pull subscription {id}: {e}"),
            )
        })
    }

    /// The counters of subscription `id` (live, or ended and still known).
    pub fn subscription_stats(&self, id: i64) -> Result<SubscriptionStats, Error> {
        let sub = self.shared.known().get(&id).cloned();
        sub.map(|s| s.stats()).ok_or_else(|| {
            Error::new(
                Status::NotFound,
                format!(
                    "no subscription {id} on this bus (never made here, or ended and released)"
                ),
            )
        })
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
        #[cfg(target_os = "linux")]
        if let Some(link) = s.link() {
            return link.flush(timeout);
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
        let gen = s.close_epoch();
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
        self.close_as(timeout, false)
    }

    /// The close of `jsonbus_free`, which no other call may race with - so no thread can be
    /// pulling: pull subscriptions end at once (their queues discarded, counted as dropped)
    /// and messages already handed out are not waited for (they stay valid until released).
    /// Everything else is as `close(None)`.
    pub fn close_for_free(&self) {
        // Without a time limit nothing is discarded, so it cannot fail.
        let _ = self.close_as(None, true);
    }

    fn close_as(&self, timeout: Option<Duration>, freeing: bool) -> Result<(), Error> {
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
        #[cfg(target_os = "linux")]
        {
            if let Some(link) = s.link() {
                if link.forked() {
                    return Err(Error::new(
                        Status::Disconnected,
                        "this attached handle belongs to the parent of this process (made by fork): the child can neither use nor close it",
                    ));
                }
            }
        }
        // A hub stops serving: at once when freeing; otherwise once what it delivered to
        // attached processes is done there, or the time is up (below).
        #[cfg(target_os = "linux")]
        let hub = {
            let mut hub = s.hub();
            s.serving_ended.store(true, SeqCst);
            let hub = hub.take();
            match freeing {
                true => {
                    if let Some(h) = hub {
                        h.stop();
                    }
                    None
                }
                false => hub,
            }
        };
        let pulls: Vec<(Arc<Subscription>, bool)> = {
            let mut core = s.core();
            core.closed = true;
            let pulls: Vec<Arc<Subscription>> = match freeing {
                true => s
                    .known()
                    .values()
                    .filter(|p| p.is_pull())
                    .cloned()
                    .collect(),
                false => Vec::new(),
            };
            pulls
                .into_iter()
                .map(|sub| {
                    let ended_now = core.end(&sub, EndReason::Closed);
                    (sub, ended_now)
                })
                .collect()
        };
        s.tracker.close();
        // Pending timers are discarded (counted as dropped), waiting requests answered CLOSED:
        // nothing can publish any more, so no reply could come.
        for due in s.timers.close() {
            if let Due::Publish(message) = due {
                drop(message);
                s.tracker.release();
                s.count(Outcome::Dropped);
            }
        }
        for waiter in s.requests.close() {
            s.answer(waiter, Err(Status::Closed));
        }
        for (sub, ended_now) in pulls {
            if ended_now {
                s.after_end(&sub);
            }
        }
        // Freeing: what is held beyond the messages handed out to pullers.
        // A hub's credit to attached processes is held, but by no message.
        #[cfg(target_os = "linux")]
        let credit = || s.served.get().map_or(0, |c| c.credit.load(SeqCst));
        #[cfg(not(target_os = "linux"))]
        let credit = || 0;
        let waited_for = || match freeing {
            true => s.tracker.held().saturating_sub(s.outstanding.load(SeqCst)),
            false => s.tracker.held().saturating_sub(credit()),
        };
        let in_time = s
            .tracker
            .wait_until(deadline(timeout), || waited_for() == 0);
        // Every attached process is disconnected now; what was not done there is discarded.
        #[cfg(target_os = "linux")]
        if let Some(h) = hub {
            h.stop();
        }
        if !in_time {
            s.discarding.store(true, SeqCst);
            let subs: Vec<Arc<Subscription>> = s.known().values().cloned().collect();
            for sub in subs {
                let queued = sub.take_all();
                sub.count_dropped(queued.len() as u64);
                for m in &queued {
                    if let Some(epoch) = m.epoch() {
                        s.tracker.lost(epoch.gen);
                    }
                    s.count(Outcome::Discarded);
                }
            }
        }
        s.stop_workers();
        let subs: Vec<(Arc<Subscription>, bool)> = {
            let mut core = s.core();
            let subs: Vec<Arc<Subscription>> = s.known().values().cloned().collect();
            subs.into_iter()
                .map(|sub| {
                    let ended_now = core.end(&sub, EndReason::Closed);
                    (sub, ended_now)
                })
                .collect()
        };
        for (sub, ended_now) in subs {
            if ended_now {
                s.after_end(&sub);
            }
            s.complete_end(&sub, true);
        }
        // Ends scheduled for dispatchers that are gone were completed just above.
        s.run_unrun_calls();
        #[cfg(target_os = "linux")]
        if let Some(link) = s.link() {
            link.shutdown();
        }
        s.finished.store(true, SeqCst);
        // The pulled messages still out, not the capacity held: a publisher that took its unit
        // just before the close and gives it back on finding the bus closed holds one too, for
        // a moment, and is no message this close failed to deliver.
        let unreleased = s.outstanding.load(SeqCst);
        match s.counts.discarded_by_close.load(SeqCst) {
            0 if unreleased == 0 => Ok(()),
            0 => Err(Error::new(
                Status::Timeout,
                format!("close ran out of time with {unreleased} pulled messages not yet released (each stays valid until jsonbus_message_release)"),
            )),
            n => Err(Error::new(
                Status::Timeout,
                format!("close ran out of time and discarded {n} queued deliveries (see \"dropped\" in the stats)"),
            )),
        }
    }

    /// `Disconnected` for an attached handle used in a child made by `fork` after the attach:
    /// none of its calls may run there (its threads are the parent's).
    pub fn check_process(&self) -> Result<(), Error> {
        #[cfg(target_os = "linux")]
        if let Some(link) = self.shared.link() {
            if link.forked() {
                return link.check();
            }
        }
        Ok(())
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
            (core.seq, core.unrouted, core.live as u64)
        };
        let mut rejected = [("", 0); 6];
        for (i, (name, _)) in REJECT_REASONS.iter().enumerate() {
            rejected[i] = (name, c.rejected[i].load(Relaxed));
        }
        let (requests, requests_waiting, no_responders, late_replies) = s.requests.counts();
        #[allow(unused_mut)]
        let (mut published, mut queued, mut subscriptions, mut peers) =
            (published, s.tracker.held() as u64, subscriptions, None);
        #[cfg(target_os = "linux")]
        {
            if let Some(link) = s.link() {
                published = link.published.load(Relaxed);
            }
            if let Some(c) = s.served.get() {
                // Credit granted to attached processes holds capacity but no message. It is
                // read on both sides of the held capacity until it stood still, so that a
                // top-up between the two reads (capacity taken, then credit counted) cannot
                // make `queued` fall below the messages held.
                let mut credit = c.credit.load(SeqCst);
                for _ in 0..16 {
                    let held = s.tracker.held();
                    let again = c.credit.load(SeqCst);
                    queued = held as u64;
                    if again == credit {
                        break;
                    }
                    credit = again;
                }
                queued = queued.saturating_sub(credit as u64);
                subscriptions = subscriptions.saturating_sub(c.inboxes.load(SeqCst));
                peers = Some([
                    c.peers.load(SeqCst),
                    c.gone.load(SeqCst),
                    c.dropped.load(SeqCst),
                ]);
            }
        }
        Stats {
            peers,
            published,
            delivered: c.delivered.load(Relaxed),
            timers: s.timers.pending_publishes() as u64,
            requests,
            requests_waiting,
            no_responders,
            late_replies,
            unrouted,
            dropped: c.dropped.load(Relaxed),
            queued,
            subscriptions,
            callback_failures: c.callback_failures.load(Relaxed),
            dispatcher_threads: s.threads as u64,
            rejected,
        }
    }
}

impl Shared {
    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the current flush epoch and opens the next; returns the closed one's number, done
    /// once its messages and every earlier epoch's are.
    pub(crate) fn close_epoch(&self) -> u64 {
        let closed = {
            let mut core = self.core();
            let next = core.epoch.open_next();
            std::mem::replace(&mut core.epoch, next)
        };
        closed.gen
    }

    /// The current flush epoch.
    #[cfg(target_os = "linux")]
    pub(crate) fn current_epoch(&self) -> Arc<Epoch> {
        self.core().epoch.clone()
    }

    /// Subscription `id` if the bus still knows it.
    #[cfg(target_os = "linux")]
    pub(crate) fn known_subscription(&self, id: i64) -> Option<Arc<Subscription>> {
        self.known().get(&id).cloned()
    }

    /// Subscriptions that have not ended.
    #[cfg(target_os = "linux")]
    pub(crate) fn live_subscriptions(&self) -> Vec<Arc<Subscription>> {
        let known = self.known();
        known.values().filter(|s| !s.is_ended()).cloned().collect()
    }

    /// Counts a delivery that will never run (its process went, or the bus is closing).
    #[cfg(target_os = "linux")]
    pub(crate) fn count_dropped_delivery(&self) {
        self.count(Outcome::Dropped);
    }

    /// Counts a delivery a close discarded (to an attached process that had not finished it
    /// when the time was up): the close reports TIMEOUT, and a flush waiting for it CLOSED.
    #[cfg(target_os = "linux")]
    pub(crate) fn count_discarded_delivery(&self, epoch: Option<&Arc<Epoch>>) {
        if let Some(e) = epoch {
            self.tracker.lost(e.gen);
        }
        self.count(Outcome::Discarded);
    }

    /// Ends `sub` for `reason`, leaving what it has queued: a pull subscription hands it out
    /// before it answers ENDED (a callback subscription's queue is waited for first).
    #[cfg(target_os = "linux")]
    pub(crate) fn end_keeping_queue(&self, sub: &Arc<Subscription>, reason: EndReason) {
        if !self.core().end(sub, reason) {
            return;
        }
        self.tracker.room_made();
        if sub.is_pull() {
            sub.wake_for_end();
        } else {
            self.after_end(sub);
        }
    }

    /// The attached bus's link to its hub.
    #[cfg(target_os = "linux")]
    pub(crate) fn link(&self) -> Option<&Arc<crate::process::peer::Link>> {
        self.link.get()
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn set_link(&self, link: Arc<crate::process::peer::Link>) {
        let _ = self.link.set(link);
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn hub(&self) -> MutexGuard<'_, Option<Arc<crate::process::hub::Hub>>> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self) -> MutexGuard<'_, IdMap<i64, Arc<Subscription>>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn workers(&self) -> MutexGuard<'_, Vec<Thread>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_discarding(&self) -> bool {
        self.discarding.load(Relaxed)
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

    /// Counts `n` messages routed to `sub` that it will never get.
    pub(crate) fn dropped(&self, sub: &Subscription, n: u64) {
        self.counts.dropped.fetch_add(n, Relaxed);
        sub.count_dropped(n);
    }

    /// A pull subscription of this bus, live or ended and not yet released.
    fn pull_subscription(&self, id: i64) -> Result<Arc<Subscription>, Error> {
        match self.known().get(&id) {
            Some(sub) if sub.is_pull() => Ok(sub.clone()),
            Some(_) => Err(Error::new(
                Status::NotFound,
                format!("subscription {id} is a callback subscription, not a pull subscription"),
            )),
            None => Err(Error::new(
                Status::NotFound,
                format!("no pull subscription {id} on this bus (never made here, or released by jsonbus_unsubscribe)"),
            )),
        }
    }

    /// Ends `sub` for `reason` unless it has ended already: out of routing, its queue
    /// discarded, and the end completed as `complete_end` says. Returns whether this ended it.
    pub(crate) fn end(&self, sub: &Arc<Subscription>, reason: EndReason) -> bool {
        let ended_now = self.core().end(sub, reason);
        if ended_now {
            self.after_end(sub);
        }
        ended_now
    }

    /// What follows `Core::end`, once the bus lock is let go: the queue is discarded (counted as
    /// dropped), publishers waiting for its room look again, pullers wake, and a callback
    /// subscription goes on the run queue so that a dispatcher completes its end.
    pub(crate) fn after_end(&self, sub: &Arc<Subscription>) {
        #[cfg(target_os = "linux")]
        if let Some(link) = self.link() {
            link.unsubscribe(sub.id);
        }
        let queued = sub.take_all();
        self.dropped(sub, queued.len() as u64);
        drop(queued);
        self.tracker.room_made();
        if sub.wake_for_end() && !self.finished.load(SeqCst) {
            self.schedule(sub.clone());
        }
    }

    /// Completes the end of an ended subscription: waits for a running invocation of its
    /// callback, lets the callback go, discards what is still queued, and runs the end notice (on this thread, marked as
    /// inside a callback of this bus) unless another thread has, then forgets a callback
    /// subscription - with `wait`, returning only once that has happened. Without `wait` (a
    /// dispatcher), it leaves the notice to an unsubscribe from outside that is waiting for it.
    pub(crate) fn complete_end(&self, sub: &Subscription, wait: bool) {
        if let Some(mut callback) = sub.callback() {
            *callback = None;
        }
        // The ender discards the queue once it lets go of the bus lock; whoever completes the
        // end first does it too, so that the notice never sees messages still queued.
        let queued = sub.take_all();
        self.dropped(sub, queued.len() as u64);
        drop(queued);
        if !wait && sub.outside_end() {
            return; // the unsubscribing thread runs the notice
        }
        sub.run_notice(
            wait,
            |notice| dispatch::as_callback(self.id, sub.id, notice),
            || {
                if !sub.is_pull() {
                    self.known().remove(&sub.id);
                }
            },
        );
    }

    fn stop_workers(&self) {
        let handles = std::mem::take(&mut *self.workers());
        for _ in &handles {
            self.run_queue.push(Job::Stop);
        }
        for handle in handles {
            handle.join();
        }
        self.timers.close();
        self.timers.join();
        // Runs scheduled after the stops found no thread; their queues were emptied.
        self.run_unrun_calls();
    }

    /// Empties the run queue once no dispatcher is left, calling here (marked as inside a
    /// callback of this bus) any reply callback that a reply scheduled too late for them.
    fn run_unrun_calls(&self) {
        for f in self.run_queue.clear() {
            let mut f = Some(f);
            dispatch::as_callback(self.id, 0, &mut || {
                if let Some(f) = f.take() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                }
            });
        }
    }
}
