//! Requests: the bus's reply topics (its inbox), the requests waiting for their first reply - a
//! caller blocked in `request`, or the callback of `request_async` - and the one place that
//! decides how each ends (reply, time-out or close), exactly once.

use crate::bus::{closed_error, deadline, Bus, Outcome, Shared};
use crate::dispatch::{self, Job};
use crate::message::Message;
use crate::publish::Wait;
use crate::router::IdMap;
use crate::status::{Error, Status};
use crate::timer::{self, Due};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The first token of every reply topic. Wildcards never match it (see `router`).
pub const INBOX: &str = "_INBOX.";

/// How a request ended: its first reply, or why it has none.
pub type Answer = Result<Arc<Message>, Status>;

/// The callback of `request_async`: called once, on a dispatcher thread, with the reply or with
/// `Timeout` or `Closed`.
pub type ReplyCallback = Box<dyn FnOnce(Result<&Message, Status>) + Send>;

/// Who waits for a request's reply.
pub(crate) enum Waiter {
    /// A thread blocked in `request`.
    Caller(Arc<Slot>),
    /// A `request_async` callback, and the timer of its time-out (0: none).
    Callback(ReplyCallback, i64),
}

/// Where a blocked caller's answer lands.
#[derive(Default)]
pub(crate) struct Slot {
    answer: Mutex<Option<Answer>>,
    ready: AtomicBool,
    cv: Condvar,
}

impl Slot {
    pub(crate) fn fill(&self, answer: Answer) {
        *self.lock() = Some(answer);
        self.ready.store(true, SeqCst);
        self.cv.notify_all();
    }

    /// The answer, once filled: polled for up to `spin` (a reply from a spinning dispatcher
    /// takes microseconds, waking a sleeping thread tens), then waited for until `until`
    /// (`None`: no limit). `None` if the time ran out first.
    pub(crate) fn wait(&self, spin: Duration, until: Option<Instant>) -> Option<Answer> {
        let start = Instant::now();
        let mut looks = 0u32;
        while !self.ready.load(SeqCst) && start.elapsed() < spin {
            looks += 1;
            if looks % 64 == 0 {
                // Other runnable threads (the responder's dispatcher) may need this core.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let mut answer = self.lock();
        loop {
            if let Some(a) = answer.take() {
                return Some(a);
            }
            answer = match until {
                None => self.cv.wait(answer).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let left = t.checked_duration_since(Instant::now())?;
                    self.cv
                        .wait_timeout(answer, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Answer>> {
        self.answer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a message on an `_INBOX` topic is to this bus.
pub(crate) enum Claim {
    /// The first reply to a waiting request, taken out of the table.
    Ours(Waiter),
    /// A reply topic of this bus whose request has its answer already (or timed out).
    Late,
    /// Another bus's reply topic, or a topic that only looks like one.
    NotOurs,
}

/// The requests of one bus waiting for their first reply.
pub(crate) struct Requests {
    /// "_INBOX.<process and bus>." - every reply topic of this bus starts with it.
    prefix: String,
    table: Mutex<Table>,
    made: AtomicU64,
    no_responders: AtomicU64,
    late_replies: AtomicU64,
}

#[derive(Default)]
struct Table {
    next: u64,
    waiting: IdMap<u64, Waiter>,
    closed: bool,
}

impl Requests {
    pub(crate) fn new(bus_id: u64) -> Requests {
        Requests {
            prefix: format!("{INBOX}{:x}-{bus_id:x}.", std::process::id()),
            table: Mutex::default(),
            made: AtomicU64::new(0),
            no_responders: AtomicU64::new(0),
            late_replies: AtomicU64::new(0),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request; returns its number and its fresh reply topic. `Closed` once the bus
    /// closes (so that no request is left waiting after `close` answered them all).
    pub(crate) fn open(&self, waiter: Waiter) -> Result<(u64, String), Error> {
        let n = {
            let mut t = self.table();
            if t.closed {
                return Err(Error::new(
                    Status::Closed,
                    "cannot make a request: the bus is closed",
                ));
            }
            t.next += 1;
            let n = t.next;
            t.waiting.insert(n, waiter);
            n
        };
        Ok((n, format!("{}{n}", self.prefix)))
    }

    /// Takes request `n` out of the table, if it still waits: whoever does ends it.
    pub(crate) fn take(&self, n: u64) -> Option<Waiter> {
        self.table().waiting.remove(&n)
    }

    /// Runs `f` while request `n` still waits, holding the table's lock (so that nobody takes
    /// it meanwhile); does nothing once it has been taken.
    pub(crate) fn while_waiting(&self, n: u64, f: impl FnOnce()) {
        let t = self.table();
        if t.waiting.contains_key(&n) {
            f();
        }
    }

    /// Sorts out a message published on `topic` (which starts with `_INBOX.`).
    pub(crate) fn claim(&self, topic: &str) -> Claim {
        let Some(n) = topic.strip_prefix(self.prefix.as_str()) else {
            return Claim::NotOurs;
        };
        let Ok(n) = n.parse::<u64>() else {
            return Claim::NotOurs;
        };
        match self.take(n) {
            Some(w) => Claim::Ours(w),
            None => {
                self.late_replies.fetch_add(1, Relaxed);
                Claim::Late
            }
        }
    }

    /// Counts a request published: `routed` false when it matched no subscription.
    pub(crate) fn count_sent(&self, routed: bool) {
        self.made.fetch_add(1, Relaxed);
        if !routed {
            self.no_responders.fetch_add(1, Relaxed);
        }
    }

    /// The start of every reply topic of this bus.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn take_waiting(&self) -> Vec<Waiter> {
        self.table().waiting.drain().map(|(_, w)| w).collect()
    }

    /// Refuses new requests and takes every waiting one, for the close to end.
    pub(crate) fn close(&self) -> Vec<Waiter> {
        let mut t = self.table();
        t.closed = true;
        t.waiting.drain().map(|(_, w)| w).collect()
    }

    /// (made, waiting now, no_responders, late_replies).
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        let waiting = self.table().waiting.len() as u64;
        (
            self.made.load(Relaxed),
            waiting,
            self.no_responders.load(Relaxed),
            self.late_replies.load(Relaxed),
        )
    }
}

impl Bus {
    /// Publishes a request on `topic` and waits for its first reply, until `timeout` (`None`: no
    /// limit) or the bus closes. Returns the reply, which counts as held until dropped.
    pub fn request(
        &self,
        topic: &str,
        json: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Arc<Message>, Error> {
        let s = &self.shared;
        if dispatch::in_callback_of(s.id) {
            return Err(Error::new(
                Status::Deadlock,
                "jsonbus_request was called from a callback of the same bus, whose dispatcher the responder may need; use jsonbus_request_async there",
            ));
        }
        let until = deadline(timeout);
        let slot = Arc::new(Slot::default());
        let n = self.send_request(topic, json, Waiter::Caller(slot.clone()))?;
        let spin = Duration::from_micros(s.options.dispatcher_spin_us as u64);
        let answer = match slot.wait(spin, until) {
            Some(answer) => answer,
            None => match s.requests.take(n) {
                Some(_) => {
                    return Err(Error::new(
                        Status::Timeout,
                        format!(
                            "no reply to the request on \"{topic}\" within {} ms",
                            timeout.unwrap_or_default().as_millis()
                        ),
                    ))
                }
                // Taken by a reply or a close at this very moment: its answer is on the way.
                None => slot
                    .wait(Duration::ZERO, None)
                    .unwrap_or(Err(Status::Closed)),
            },
        };
        answer.map_err(|status| match status {
            Status::NoResponders => Error::new(
                Status::NoResponders,
                format!("no subscription matches \"{topic}\", so the request has no responder"),
            ),
            Status::Disconnected => Error::new(
                Status::Disconnected,
                "the hub went away before the request had a reply",
            ),
            _ => closed_error("the request has no reply"),
        })
    }

    /// Publishes a request on `topic`; `callback` is then called exactly once on a dispatcher
    /// thread, with the first reply, or with `Timeout` after `timeout` (`None`: no limit), or
    /// with `Closed` before `close` returns. On error it is never called.
    pub fn request_async(
        &self,
        topic: &str,
        json: &[u8],
        timeout: Option<Duration>,
        callback: ReplyCallback,
    ) -> Result<(), Error> {
        let s = &self.shared;
        let expiry = match timeout {
            Some(t) => {
                self.start_timers()?;
                Some((timer::next_expiry_id(), Instant::now() + t))
            }
            None => None,
        };
        let timer = expiry.map_or(0, |(id, _)| id);
        let n = self.send_request(topic, json, Waiter::Callback(callback, timer))?;
        if let Some((id, at)) = expiry {
            // Only while it still waits, under the table's lock: a reply that comes later
            // cancels the timer, and one that came already leaves no timer behind. (Set only
            // now, so that a short time-out cannot end a request before it was published.)
            // Refused only once the bus is closing, which answers the request itself.
            s.requests.while_waiting(n, || {
                let _ = s.timers.set(id, at, Due::Expire(n));
            });
        }
        Ok(())
    }

    /// Publishes `json` as the reply to a request whose reply topic is `reply_to`.
    pub fn reply(&self, reply_to: Option<&str>, json: &[u8]) -> Result<u64, Error> {
        let topic = reply_to.ok_or_else(|| {
            Error::new(
                Status::NotFound,
                "the message has no reply_to: it was not sent as a request",
            )
        })?;
        self.publish(topic, json)
    }

    /// Registers the request, then publishes it with its reply topic; takes it back (its waiter
    /// never told) if the publish fails or matched nothing. Returns the request's number.
    fn send_request(&self, topic: &str, json: &[u8], waiter: Waiter) -> Result<u64, Error> {
        let s = &self.shared;
        if s.tracker.is_closed() {
            return Err(self.refuse(closed_error("cannot make a request")));
        }
        let (n, reply) = s.requests.open(waiter)?;
        let wait = Wait::here(s);
        let sent = s
            .prepare(topic, json, &reply, &wait)
            .and_then(|m| s.accept(topic, m, &wait));
        if let Ok(p) = &sent {
            s.requests.count_sent(p.routed);
        }
        let failed = match sent {
            Ok(p) if p.routed => return Ok(n),
            Ok(_) => Error::new(
                Status::NoResponders,
                format!("no subscription matches \"{topic}\", so the request has no responder"),
            ),
            Err(e) => self.refuse(e),
        };
        match s.requests.take(n) {
            Some(_) => Err(failed),
            // A close took it first and answers it: the request was made.
            None => Ok(n),
        }
    }
}

impl Shared {
    /// Ends a request with `answer`: wakes its caller, or schedules its callback on a
    /// dispatcher (cancelling its time-out).
    pub(crate) fn answer(&self, waiter: Waiter, answer: Answer) {
        if answer.is_ok() {
            self.count(Outcome::Delivered);
        }
        match waiter {
            Waiter::Caller(slot) => slot.fill(answer),
            Waiter::Callback(callback, timer) => {
                if timer != 0 {
                    self.timers.cancel(timer);
                }
                let epoch = answer.as_ref().ok().and_then(|m| m.epoch().cloned());
                let token = answer.as_ref().map_or(0, |m| m.origin_token());
                let call = move || callback(answer.as_deref().map_err(|s| *s));
                self.run_queue.push(Job::Call(epoch, token, Box::new(call)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> (Arc<Slot>, Waiter) {
        let slot = Arc::new(Slot::default());
        (slot.clone(), Waiter::Caller(slot))
    }

    #[test]
    fn the_first_reply_claims_a_request_and_later_ones_are_late() {
        let r = Requests::new(7);
        let (_, w) = caller();
        let (n, topic) = r.open(w).unwrap();
        assert!(topic.starts_with(INBOX) && topic.ends_with(&format!(".{n}")));
        let (_, w2) = caller();
        let (n2, topic2) = r.open(w2).unwrap();
        assert_ne!(
            (n, &topic),
            (n2, &topic2),
            "every request has its own topic"
        );
        assert!(matches!(r.claim(&topic), Claim::Ours(Waiter::Caller(_))));
        assert!(matches!(r.claim(&topic), Claim::Late));
        assert!(matches!(r.claim("_INBOX.other.1"), Claim::NotOurs));
        assert!(matches!(r.claim(&format!("{topic}x")), Claim::NotOurs));
        r.count_sent(true);
        r.count_sent(false);
        assert_eq!(r.counts(), (2, 1, 1, 1));
        let other = Requests::new(8);
        assert!(matches!(other.claim(&topic2), Claim::NotOurs));
    }

    #[test]
    fn close_takes_every_waiting_request_and_refuses_new_ones() {
        let r = Requests::new(1);
        for _ in 0..3 {
            r.open(caller().1).unwrap();
        }
        assert_eq!(r.close().len(), 3);
        assert_eq!(r.open(caller().1).unwrap_err().status, Status::Closed);
        assert_eq!(r.counts().1, 0);
    }

    #[test]
    fn a_slot_gives_its_answer_once_filled_or_none_when_time_runs_out() {
        let slot = Arc::new(Slot::default());
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert!(slot.wait(Duration::from_micros(50), soon).is_none());
        let s = slot.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            s.fill(Err(Status::Closed));
        });
        assert!(matches!(
            slot.wait(Duration::ZERO, None),
            Some(Err(Status::Closed))
        ));
        t.join().unwrap();
    }

    #[test]
    fn an_answered_async_request_leaves_no_time_out_behind() {
        use crate::options::Options;
        let bus = Bus::new(Options::default()).unwrap();
        let b = bus.clone();
        let echo: crate::subscription::Callback = Box::new(move |d| {
            b.reply(d.message.reply_to(), d.message.json()).unwrap();
            crate::status::OK
        });
        bus.subscribe("svc", echo).unwrap();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..200 {
            let a = answered.clone();
            let cb: ReplyCallback = Box::new(move |r| {
                assert!(r.is_ok());
                a.fetch_add(1, SeqCst);
            });
            let hour = Some(Duration::from_secs(3600));
            bus.request_async("svc", b"1", hour, cb).unwrap();
        }
        bus.flush(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(answered.load(SeqCst), 200);
        // Every reply cancelled its request's time-out (or came before it and left none set).
        assert_eq!(bus.shared.timers.pending(), 0);
        bus.close(None).unwrap();
    }
}
