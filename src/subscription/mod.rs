//! A subscription: its pattern and options, its own FIFO of messages with its `queue_limit`
//! policy, its consumer (a callback that dispatcher threads run, at most one at a time, or
//! threads that pull), its counters, and its end.

pub mod end;
mod fifo;
mod pull;

use crate::message::Message;
use crate::options::{OnFull, SubscribeOptions};
use crate::padded::Padded;
use end::{EndNotice, EndReason, Notice};
use fifo::Fifo;
use pull::Pull;
pub use pull::Pulled;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// What a callback sees: the message and the subscription being called.
pub struct Delivery<'a> {
    pub message: &'a Arc<Message>,
    pub subscription: i64,
}

/// A callback: returns `OK`, `UNSUBSCRIBE`, or a negative value to report a failure.
pub type Callback = Box<dyn FnMut(&Delivery<'_>) -> i32 + Send>;

/// Who takes a new subscription's messages.
pub enum Consumer {
    /// A callback, run by the dispatcher threads, and its end notice.
    Callback(Callback, Option<EndNotice>),
    /// Threads calling `jsonbus_next`.
    Pull,
    /// Another process: each message is handed on as it is routed, under the bus lock, and
    /// never queued here (a hub's subscription on behalf of an attached process).
    Forward(Arc<dyn Forward>),
}

/// Where a forwarding subscription hands its messages.
pub trait Forward: Send + Sync {
    /// Takes a routed message (called under the bus lock, in `seq` order; must not block).
    fn forward(&self, message: &Arc<Message>);
    /// Messages handed on and not yet done at the other end: its load, for group picks.
    fn outstanding(&self) -> usize;
}

enum Taker {
    /// Held while the callback runs; `None` once the subscription has ended. Taking this lock
    /// is how an unsubscribe waits for a running callback.
    Callback(Padded<Mutex<Option<Callback>>>),
    Pull(Pull),
    Forward(Arc<dyn Forward>),
}

/// Why `next` handed out nothing.
pub enum NotNext {
    Timeout,
    Ended(EndReason),
}

/// What became of a message offered to a subscription at its limit (see `offer`).
pub enum Offered {
    /// Queued; true if the subscription must be put on the run queue.
    Queued(bool),
    /// Queued after its oldest message was dropped to make room.
    Replaced(bool, Option<Arc<Message>>),
    /// Not queued (`on_full` "drop_new").
    Refused,
    /// Not queued: the subscription must end as slow (`on_full` "end").
    End,
}

/// A subscription's delivery counters, which the dispatcher running it writes at every
/// delivery (and `next` for a pull subscription).
#[derive(Default)]
struct Delivered {
    delivered: AtomicU64,
    failures: AtomicU64,
    /// Negative returns in a row (dispatcher running it only).
    failures_in_row: AtomicU32,
}

pub struct Subscription {
    pub id: i64,
    pub pattern: Box<str>,
    pub options: SubscribeOptions,
    taker: Taker,
    /// The FIFO: publishers push under the bus lock, so it is in `seq` order. Pull
    /// subscriptions push and pop under the pull lock.
    fifo: Fifo,
    /// Messages in the FIFO (counted before a push and after a pop, so never below the
    /// truth; exact under the pull lock).
    queued: AtomicUsize,
    /// Highest `queued` seen; written by publishers only, under the bus lock.
    max_queued: AtomicUsize,
    dropped: AtomicU64,
    /// Written by the dispatcher at every delivery: on lines of their own.
    counts: Padded<Delivered>,
    /// True while the subscription is on the run queue or being run. An ended subscription's
    /// last run keeps it set for good.
    scheduled: AtomicBool,
    /// When a publish last picked it among its group's members (a count of picks).
    last_picked: AtomicU64,
    /// Set by an unsubscribe from outside the bus's callbacks, which runs the end notice on
    /// its own thread: a dispatcher then leaves it alone.
    outside_end: AtomicBool,
    /// 0 while live; the `EndReason` code once ended (set once: the first ending wins).
    ended: AtomicI32,
    notice: Notice,
}

impl Subscription {
    pub fn new(
        id: i64,
        pattern: &str,
        options: SubscribeOptions,
        consumer: Consumer,
    ) -> Subscription {
        let (taker, notice) = match consumer {
            Consumer::Callback(cb, notice) => {
                (Taker::Callback(Padded(Mutex::new(Some(cb)))), notice)
            }
            Consumer::Pull => (Taker::Pull(Pull::default()), None),
            Consumer::Forward(f) => (Taker::Forward(f), None),
        };
        Subscription {
            id,
            pattern: pattern.into(),
            options,
            taker,
            fifo: Fifo::default(),
            queued: AtomicUsize::new(0),
            max_queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            counts: Padded::default(),
            scheduled: AtomicBool::new(false),
            last_picked: AtomicU64::new(0),
            outside_end: AtomicBool::new(false),
            ended: AtomicI32::new(0),
            notice: Notice::new(notice),
        }
    }

    pub fn is_pull(&self) -> bool {
        matches!(self.taker, Taker::Pull(_))
    }

    /// Why it ended, once it has.
    pub fn ended(&self) -> Option<EndReason> {
        EndReason::from_code(self.ended.load(SeqCst))
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(SeqCst) != 0
    }

    /// Marks it ended for `reason`; false if it had ended already (the first reason stays).
    /// The bus calls this under its lock, after taking it out of routing.
    pub fn mark_ended(&self, reason: EndReason) -> bool {
        self.ended
            .compare_exchange(0, reason.code(), SeqCst, SeqCst)
            .is_ok()
    }

    /// Says that a thread outside the bus's callbacks will complete the end (call before the
    /// end becomes visible, i.e. before `mark_ended`).
    pub fn set_outside_end(&self) {
        self.outside_end.store(true, SeqCst);
    }

    /// Whether a thread outside the bus's callbacks completes the end.
    pub fn outside_end(&self) -> bool {
        self.outside_end.load(SeqCst)
    }

    pub fn queued(&self) -> usize {
        match &self.taker {
            Taker::Forward(f) => f.outstanding(),
            _ => self.queued.load(SeqCst),
        }
    }

    /// Whether a publish may queue one more message for it without applying its policy.
    pub fn has_room(&self) -> bool {
        self.options.queue_limit == 0 || self.queued() < self.options.queue_limit
    }

    /// Whether a publish must wait before queueing for it (its "block" limit is reached).
    pub fn blocks_now(&self) -> bool {
        self.options.on_full == OnFull::Block && !self.has_room()
    }

    /// When it was last picked among its group's members (0: never).
    pub fn last_picked(&self) -> u64 {
        self.last_picked.load(Relaxed)
    }

    /// Records a pick (bus lock held).
    pub fn picked_at(&self, turn: u64) {
        self.last_picked.store(turn, Relaxed);
    }

    /// Whether publishers may be waiting for room in its queue ("block" with a limit).
    pub fn blocks_publishers(&self) -> bool {
        self.options.queue_limit > 0 && self.options.on_full == OnFull::Block
    }

    /// Appends a message (bus lock held); returns true if the subscription must be put on the
    /// run queue.
    pub fn push(&self, message: Arc<Message>) -> bool {
        let count_in = || {
            let q = self.queued.fetch_add(1, SeqCst) + 1;
            if q > self.max_queued.load(Relaxed) {
                self.max_queued.store(q, Relaxed);
            }
        };
        match &self.taker {
            Taker::Pull(pull) => {
                let mut state = pull.lock();
                count_in();
                self.fifo.push(message);
                state.set_readable(true);
                pull.wake_one(&state);
                false
            }
            Taker::Forward(f) => {
                f.forward(&message);
                self.counts.delivered.fetch_add(1, Relaxed);
                false
            }
            Taker::Callback(_) => {
                count_in();
                self.fifo.push(message);
                // Reading first keeps the flag's cache line shared while a dispatcher runs
                // this subscription. Reading "scheduled" (SeqCst) after counting the message
                // means a `finish_run` that clears it later will see it when it looks again.
                !self.scheduled.load(SeqCst) && !self.scheduled.swap(true, SeqCst)
            }
        }
    }

    /// Queues `message` as its policy says when it is at its `queue_limit` (bus lock held; a
    /// "block" subscription was checked for room before).
    pub fn offer(&self, message: Arc<Message>) -> Offered {
        if self.has_room() {
            return Offered::Queued(self.push(message));
        }
        match self.options.on_full {
            OnFull::Block => Offered::Queued(self.push(message)),
            OnFull::DropOldest => {
                let oldest = self.pop();
                Offered::Replaced(self.push(message), oldest)
            }
            OnFull::DropNew => Offered::Refused,
            OnFull::End => Offered::End,
        }
    }

    /// Takes the oldest queued message.
    pub fn pop(&self) -> Option<Arc<Message>> {
        let take = || {
            let m = self.fifo.pop()?;
            self.queued.fetch_sub(1, SeqCst);
            Some(m)
        };
        match &self.taker {
            Taker::Callback(_) | Taker::Forward(_) => take(),
            Taker::Pull(pull) => {
                let mut state = pull.lock();
                let m = take();
                state.set_readable(self.queued() > 0 || self.is_ended());
                m
            }
        }
    }

    /// The most messages `take` hands out at once when asked for `max`: one for a subscription
    /// with a queue limit, so that what leaves its queue is what the callback gets next (the
    /// limit counts waiting messages exactly).
    pub fn batch_limit(&self, max: usize) -> usize {
        match self.options.queue_limit {
            0 => max,
            _ => 1,
        }
    }

    /// Moves the oldest queued messages to `batch` (the dispatcher running it only), at most
    /// `batch_limit(max)`. Returns how many.
    pub fn take(&self, batch: &mut VecDeque<Arc<Message>>, max: usize) -> usize {
        let n = self.fifo.take(batch, self.batch_limit(max));
        if n > 0 {
            self.queued.fetch_sub(n, SeqCst);
        }
        n
    }

    /// Takes everything queued.
    pub fn take_all(&self) -> Vec<Arc<Message>> {
        std::iter::from_fn(|| self.pop()).collect()
    }

    /// Whether messages are queued (or about to be: a push counts them first).
    pub fn has_queued(&self) -> bool {
        self.queued() > 0
    }

    /// Wakes whoever must see that it ended: pullers and the descriptor, or (returns true) the
    /// caller must put it on the run queue so that a dispatcher completes its end.
    pub fn wake_for_end(&self) -> bool {
        match &self.taker {
            Taker::Pull(pull) => {
                pull.lock().set_readable(true);
                pull.wake_all();
                false
            }
            Taker::Callback(_) | Taker::Forward(_) => {
                !self.scheduled.load(SeqCst) && !self.scheduled.swap(true, SeqCst)
            }
        }
    }

    /// Whether it is on the run queue or being run (a dispatcher may hold messages it took).
    pub fn is_scheduled(&self) -> bool {
        self.scheduled.load(SeqCst)
    }

    /// Ends a dispatcher's run: true if it must run again (more messages, or its end to
    /// complete); otherwise it is no longer scheduled (the next push schedules it).
    pub fn finish_run(&self) -> bool {
        let due = || self.has_queued() || self.is_ended();
        if due() {
            return true;
        }
        self.scheduled.store(false, SeqCst);
        // A push or end between the check and the store saw `scheduled` still set and
        // scheduled nothing: look again, and take the run back if nobody else did.
        due() && !self.scheduled.swap(true, SeqCst)
    }

    /// Locks the callback, waiting for a running invocation to return (`None` for a pull
    /// subscription).
    pub fn callback(&self) -> Option<MutexGuard<'_, Option<Callback>>> {
        match &self.taker {
            Taker::Callback(cb) => Some(cb.lock().unwrap_or_else(|p| p.into_inner())),
            Taker::Pull(_) | Taker::Forward(_) => None,
        }
    }

    /// Counts a delivery (a callback's return, or a message handed out by `next`).
    pub fn count_delivered(&self, rc: i32) -> bool {
        self.counts.delivered.fetch_add(1, Relaxed);
        if rc >= 0 {
            self.counts.failures_in_row.store(0, Relaxed);
            return false;
        }
        self.counts.failures.fetch_add(1, Relaxed);
        let row = self.counts.failures_in_row.fetch_add(1, Relaxed) + 1;
        // true: `max_failures` reached, the subscription must end
        self.options.max_failures > 0 && row >= self.options.max_failures
    }

    pub fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }

    /// The next queued message, waiting until `deadline` (`None`: no limit) for one. Only for
    /// pull subscriptions.
    pub fn next(&self, deadline: Option<Instant>) -> Result<Arc<Message>, NotNext> {
        let Taker::Pull(pull) = &self.taker else {
            return Err(NotNext::Timeout);
        };
        let mut state = pull.lock();
        loop {
            if let Some(m) = self.fifo.pop() {
                self.queued.fetch_sub(1, SeqCst);
                state.set_readable(self.queued() > 0 || self.is_ended());
                return Ok(m);
            }
            if let Some(reason) = self.ended() {
                return Err(NotNext::Ended(reason));
            }
            let (s, in_time) = pull.wait(state, deadline);
            state = s;
            if !in_time {
                return Err(NotNext::Timeout);
            }
        }
    }

    /// The pull subscription's descriptor (made on first use).
    pub fn pull_fd(&self) -> io::Result<i32> {
        match &self.taker {
            Taker::Pull(pull) => pull.fd(|| self.has_queued() || self.is_ended()),
            _ => Err(io::Error::other("not a pull subscription")),
        }
    }

    /// Runs the end notice, then `then`, unless another thread has (with `wait`: returns once
    /// they have run). Call only once the last invocation of the callback has returned and
    /// none can start.
    pub fn run_notice(
        &self,
        wait: bool,
        scope: impl FnOnce(&mut dyn FnMut()),
        then: impl FnOnce(),
    ) {
        let reason = self.ended().unwrap_or(EndReason::Closed);
        self.notice.run(self.id, reason, wait, scope, then);
    }

    /// Waits until another thread has completed the end (notice run, subscription forgotten).
    pub fn wait_end_complete(&self) {
        self.notice.wait_done();
    }

    /// Its counters now.
    pub fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            id: self.id,
            pattern: self.pattern.to_string(),
            pull: self.is_pull(),
            group: self.options.group.as_deref().map(str::to_string),
            queued: self.queued() as u64,
            max_queued: self.max_queued.load(Relaxed) as u64,
            delivered: self.counts.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            callback_failures: self.counts.failures.load(Relaxed),
            ended: self.ended(),
            queue_limit: self.options.queue_limit as u64,
            on_full: self.options.on_full,
            max_failures: self.options.max_failures as u64,
        }
    }
}

/// A snapshot of one subscription's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionStats {
    pub id: i64,
    pub pattern: String,
    pub pull: bool,
    pub group: Option<String>,
    /// Messages waiting in its queue now (not those handed to a callback or a puller).
    pub queued: u64,
    pub max_queued: u64,
    /// Callback invocations, or messages handed out by `jsonbus_next`.
    pub delivered: u64,
    /// Messages routed to it that it never got: dropped by its policy, or discarded when it
    /// ended or a close ran out of time.
    pub dropped: u64,
    pub callback_failures: u64,
    pub ended: Option<EndReason>,
    pub queue_limit: u64,
    pub on_full: OnFull,
    pub max_failures: u64,
}

impl SubscriptionStats {
    /// As a JSON object.
    pub fn to_json(&self) -> String {
        let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "null".into());
        format!(
            "{{\"id\":{},\"pattern\":{},\"kind\":\"{}\",\"group\":{},\"queued\":{},\"max_queued\":{},\"delivered\":{},\"dropped\":{},\"callback_failures\":{},\"ended\":{},\"queue_limit\":{},\"on_full\":\"{}\",\"max_failures\":{}}}",
            self.id,
            text(&self.pattern),
            if self.pull { "pull" } else { "callback" },
            self.group.as_deref().map_or("null".into(), text),
            self.queued,
            self.max_queued,
            self.delivered,
            self.dropped,
            self.callback_failures,
            self.ended
                .map_or("null".into(), |r| format!("\"{}\"", r.name().to_string_lossy())),
            self.queue_limit,
            self.on_full.name(),
            self.max_failures,
        )
    }
}
