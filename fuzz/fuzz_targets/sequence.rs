//! Fuzz target `sequence`: the input is a program of C API calls on up to two buses, run
//! against a model that predicts what every subscription must receive.
//!
//! Each op is an opcode byte and two argument bytes `a`, `b` (zeros once the input runs out;
//! `subscribe_with` reads a third, `c`: its options); at most 96 ops. The bus slot is
//! `op / 10 % 2`; the call is `(op / 20 * 10 + op % 10) % 24`, so that opcodes 0-19 keep the
//! meaning they had before the 2A calls came (0-9 in slot 0, 10-19 in slot 1). An op on an
//! empty slot first creates a bus there (options from an argument byte).
//!
//! | call | what |
//! |---|---|
//! | 0 | new bus in the slot (the old one is freed first) |
//! | 1, 2, 3 | publish: topic and payload from small lists, valid and invalid |
//! | 4, 5 | `jsonbus_subscribe`: pattern from a small list; callback returns UNSUBSCRIBE at its k-th message, maybe -1 for odd seqs |
//! | 6 | unsubscribe: a subscription of any bus (live, ended, self-ended, pull, released), or an unknown id |
//! | 7 | flush: -1 (first draining every pull subscription and releasing every held message of the bus, as flush waits for them) or 0 |
//! | 8 | close with timeout -1, 0 or 10 (-1 with pull messages waiting or held: drain first, or 10 ms) |
//! | 9 | free (with pull messages waiting or held: `close(10)` first, as free would wait for them) |
//! | 10, 19 | `jsonbus_subscribe_with`: pattern; callback as for 4 plus `max_failures`, another positive OK value; an end notice (NULL for some that cannot end themselves); options from `c`: none / `{}` / explicit defaults, `queue_limit` 1, 2, 4 with each `on_full`, `max_failures` 1, 2, `group` "g" or "h"; 1/64 bad options |
//! | 11 | `jsonbus_subscribe_pull`: pattern, options from `b` (as for 10) |
//! | 12 | `jsonbus_next` on any subscription or id: timeout 0, 1 ms, or -1 when the model knows it returns at once; the message released at once or held for a few ops |
//! | 13 | `jsonbus_message_release` of one held message (or all; NULL when none is held) |
//! | 14 | `jsonbus_pull_fd` on any subscription or id, then `poll(2)` (timeout 0) of every descriptor of the bus |
//! | 15 | `jsonbus_subscription_stats` of any subscription or id |
//! | 16 | publish the same message 2-5 times |
//! | 17 | drain one pull subscription: `jsonbus_next(0)` until it has nothing, releasing each (maybe holding the last) |
//! | 18 | `jsonbus_end_reason_name` / `jsonbus_status_name` of known and unknown values |
//! | 20 | `jsonbus_request` (time-out 0) with a publish's topic and payload: no subscription ever replies, so TIMEOUT when it was routed, NO_RESPONDERS when nothing matched |
//! | 21 | `jsonbus_request_async` (time-out 0 or -1): as 20 for its status; its reply callback must run exactly once, with TIMEOUT or CLOSED, by the time its bus is closed |
//! | 22 | `jsonbus_publish_after` (60 s: never due during an input): an id, or a publish's errors (FULL only from the bus's capacity); pending timers are held (`queued`), counted in `timers`, and discarded into `dropped` by close |
//! | 23 | `jsonbus_cancel` of a pending timer of the bus (OK), or of one cancelled, discarded, of another bus, or unknown (NOT_FOUND) |
//!
//! The model: a subscription receives, in seq order, every accepted message on a topic its
//! pattern matches, published while it was live, as its options say. Exact where the contract
//! makes it deterministic: plain callback subscriptions and those whose `on_full` is "block"
//! (or that have no `queue_limit`) receive exactly what was routed to them; pull
//! subscriptions queue, drop and end exactly as their policy says (only the fuzz thread takes
//! their messages), so `jsonbus_next`, the descriptor's readability and their stats are
//! predicted exactly at all times; a publish that finds a pull subscription at its limit with
//! "block" fails with FULL (`publish_timeout_ms` >= 0). Where timing decides (a callback
//! subscription that drops or ends when its queue is full; which member of a group gets a
//! message), weaker invariants: what it received is a subsequence of what may have been
//! routed to it, `delivered + dropped` is within the bounds of what was routed, a
//! subscription with "end" ended SLOW exactly when the stats say (asked after every publish
//! that reached it), a group's members share each message (never two of them; when all are
//! pull subscriptions, exactly one, and never one at its limit while another has room; the
//! group's `delivered + dropped + queued` sums to the messages routed to the group), a
//! publish fails FULL only when a bus limit or a "block" subscription allows it. End notices:
//! exactly one per subscription (abort on a second call, on a callback after it began, or on
//! one running beside it), with a reason among those possible, after which the subscription
//! is forgotten; its stats, read inside the notice, reconcile with what the callback saw.
//! After a completed flush (and after close / free) what each subscription received must
//! equal the prediction (a prefix of it when a close ran out of time), and the bus stats
//! must agree: `published`, `rejected`, `delivered`, `callback_failures`, `subscriptions`,
//! `queued` (the messages still waiting in pull queues or held) exactly; `unrouted` and
//! `delivered + dropped + waiting` within the bounds left by subscriptions that end on their
//! own at times the model does not know.
#![no_main]

use ::jsonbus::ffi::*;
use jsonbus_fuzz::*;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::{BTreeSet, VecDeque};
use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut, NonNull};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};

const TOPICS: [&str; 10] = ["a", "a.b", "a.c", "b", "a.b.c", "x", "a.*", "", "a..b", ">"];
const PATTERNS: [&str; 14] = [
    ">", "a", "a.*", "a.>", "*.b", "*", "a.b.c", "*.*.>", "b", "x.>", "a.>.b", "a*", "", "a.",
];
const PAYLOADS: [&[u8]; 16] = [
    b"1",
    b"\"x\"",
    b"[1,[2]]",
    b"{\"a\":{\"b\":[]}}",
    b"[[[[1]]]]",
    b"\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
    b" null ",
    b"{\"k\":\"\xc3\xa9\"}",
    b"{",
    b"[1,]",
    b"\xff",
    b"\"\xc3\"",
    b"",
    b"1 2",
    b"[\"a\0\"]",
    b"\"\\ud800\"",
];
const GROUPS: [&str; 2] = ["g", "h"];
const BAD_OPTIONS: [&str; 4] = [
    r#"{"queue_limit":-1}"#,
    r#"{"on_full":"drop"}"#,
    r#"{"group":"a.b"}"#,
    r#"{"group":"g","group":"g"}"#,
];
const END_NAMES: [(i32, &str); 6] = [
    (JSONBUS_END_UNSUBSCRIBED, "JSONBUS_END_UNSUBSCRIBED"),
    (JSONBUS_END_RETURNED, "JSONBUS_END_RETURNED"),
    (JSONBUS_END_SLOW, "JSONBUS_END_SLOW"),
    (JSONBUS_END_FAILED, "JSONBUS_END_FAILED"),
    (JSONBUS_END_CLOSED, "JSONBUS_END_CLOSED"),
    (JSONBUS_END_PEER_GONE, "JSONBUS_END_PEER_GONE"),
];
/// A positive return other than UNSUBSCRIBE, which counts as OK.
const OK_TOO: i32 = 2;

/// `SEQUENCE_TRACE=1` prints every op and what it returned (for reading a reproducer).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SEQUENCE_TRACE").is_some())
}

macro_rules! trace {
    ($($t:tt)*) => {
        if tracing() {
            eprintln!($($t)*);
        }
    };
}

fn end_name(reason: i32) -> &'static str {
    END_NAMES
        .iter()
        .find(|r| r.0 == reason)
        .map_or("JSONBUS_END_UNKNOWN", |r| r.1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Msg = (u64, Vec<u8>, Vec<u8>);

/// How a callback's returns go, and when they end its subscription.
#[derive(Clone, Copy, Debug)]
struct Returns {
    /// Return UNSUBSCRIBE at the k-th message (0: never).
    k: usize,
    /// Return -1 for messages with an odd seq.
    fail_odd: bool,
    /// What it returns otherwise: OK, or another positive value.
    ok_rc: i32,
    /// The subscription's `max_failures`.
    max_failures: u64,
}

impl Returns {
    /// What the callback returns for its `n`-th message (1-based), of sequence `seq`.
    fn rc(&self, n: usize, seq: u64) -> i32 {
        if self.k > 0 && n == self.k {
            JSONBUS_UNSUBSCRIBE
        } else if self.fail_odd && seq % 2 == 1 {
            -1
        } else {
            self.ok_rc
        }
    }
    /// Counts a return into `run` (negative returns in a row); the end it causes, if any.
    fn step(&self, rc: i32, run: &mut u64) -> Option<i32> {
        if rc == JSONBUS_UNSUBSCRIBE {
            return Some(JSONBUS_END_RETURNED);
        }
        if rc >= 0 {
            *run = 0;
            return None;
        }
        *run += 1;
        (self.max_failures > 0 && *run >= self.max_failures).then_some(JSONBUS_END_FAILED)
    }
    fn can_end(&self) -> bool {
        self.k > 0 || (self.fail_odd && self.max_failures > 0)
    }
    /// Fewest messages after which its returns may have ended the subscription.
    fn threshold(&self) -> usize {
        let mut t = usize::MAX;
        if self.k > 0 {
            t = self.k;
        }
        if self.fail_odd && self.max_failures > 0 {
            t = t.min(self.max_failures as usize);
        }
        t
    }
}

/// What a callback saw and returned.
#[derive(Default)]
struct Seen {
    got: Vec<(u64, Vec<u8>, Vec<u8>, i32)>,
    run: u64,
    /// The end its returns caused (RETURNED or FAILED): no call may follow.
    ended_by: Option<i32>,
}

impl Seen {
    fn failures(&self) -> u64 {
        self.got.iter().filter(|g| g.3 < 0).count() as u64
    }
}

/// A subscription's counters, as its stats say.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counts {
    queued: u64,
    max_queued: u64,
    delivered: u64,
    dropped: u64,
    failures: u64,
}

fn counts(v: &Value) -> Counts {
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("subscription stats: {k:?} is not an integer: {v}"))
    };
    Counts {
        queued: n("queued"),
        max_queued: n("max_queued"),
        delivered: n("delivered"),
        dropped: n("dropped"),
        failures: n("callback_failures"),
    }
}

/// What the end notice was called with, and the subscription's stats read inside it.
#[derive(Clone, Copy, Debug)]
struct Notice {
    reason: i32,
    counts: Counts,
}

/// A callback subscription's side that its callback and end notice see.
struct Shared {
    id: AtomicI64,
    bus: AtomicPtr<jsonbus>,
    returns: Returns,
    /// Set once unsubscribe returned OK, or the bus closed: no callback may run after.
    ended: AtomicBool,
    in_callback: AtomicBool,
    notice_began: AtomicBool,
    seen: Mutex<Seen>,
    notice: Mutex<Option<Notice>>,
}

extern "C" fn callback(msg: *const jsonbus_message, user_data: *mut c_void) -> i32 {
    // SAFETY: jsonbus passes our `Shared`, which lives until the input ends. (A panic here
    // aborts: libfuzzer-sys's panic hook runs before jsonbus could catch it.)
    let s = unsafe { &*(user_data as *const Shared) };
    assert!(
        !s.notice_began.load(SeqCst),
        "a callback ran after its end notice had begun"
    );
    assert!(
        !s.in_callback.swap(true, SeqCst),
        "a callback ran concurrently with itself"
    );
    let mut seen = lock(&s.seen);
    assert!(
        !s.ended.load(SeqCst),
        "a callback ran after jsonbus_unsubscribe / jsonbus_close had returned"
    );
    assert!(
        seen.ended_by.is_none(),
        "a callback ran again after its return ended its subscription ({})",
        end_name(seen.ended_by.unwrap_or(0))
    );
    // SAFETY: a valid message during the call.
    let (seq, topic, json, sub) = unsafe { read_message(msg) };
    assert_eq!(
        sub,
        s.id.load(SeqCst),
        "jsonbus_message.subscription is not the subscription's id"
    );
    assert!(
        seen.got.last().is_none_or(|g| g.0 < seq),
        "a subscription saw seq go backwards"
    );
    let r = s.returns;
    let rc = r.rc(seen.got.len() + 1, seq);
    let mut run = seen.run;
    seen.ended_by = r.step(rc, &mut run);
    seen.run = run;
    seen.got.push((seq, topic, json, rc));
    drop(seen);
    s.in_callback.store(false, SeqCst);
    rc
}

extern "C" fn on_end(subscription: i64, reason: i32, user_data: *mut c_void) {
    // SAFETY: as in `callback`.
    let s = unsafe { &*(user_data as *const Shared) };
    assert!(
        !s.notice_began.swap(true, SeqCst),
        "an end notice was called a second time (reason {})",
        end_name(reason)
    );
    assert!(
        !s.in_callback.load(SeqCst),
        "an end notice ran while the callback was running"
    );
    assert_eq!(subscription, s.id.load(SeqCst), "end notice: wrong id");
    let name = end_name(reason);
    assert!(
        name != "JSONBUS_END_UNKNOWN" && reason != JSONBUS_END_PEER_GONE,
        "end notice with reason {reason} ({name})"
    );
    assert_eq!(text(jsonbus_end_reason_name(reason)), name);
    // The header: jsonbus_subscription_stats works inside the end notice.
    let v = sub_stats(s.bus.load(SeqCst), subscription).unwrap_or_else(|c| {
        panic!(
            "jsonbus_subscription_stats inside the end notice: {}",
            name_of(c)
        )
    });
    assert_eq!(
        stat_ended(&v).as_deref(),
        Some(name),
        "stats inside the end notice: {v}"
    );
    assert_eq!(v["kind"], "callback", "{v}");
    let c = counts(&v);
    // The queue of an ended subscription is discarded. Finding (see fuzz/README.md): for
    // on_full "end" the publisher discards it only after it let go of the bus lock, and a
    // dispatcher may run the end notice before that, so the notice can still see `queued` > 0
    // (those are dropped right after). Every other end discards the queue before the notice.
    assert!(
        c.queued == 0 || reason == JSONBUS_END_SLOW,
        "the queue of an ended subscription is discarded: {v}"
    );
    *lock(&s.notice) = Some(Notice { reason, counts: c });
}

fn name_of(code: i32) -> String {
    name(code)
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct SOpts {
    limit: usize,
    on_full: OnFull,
    max_failures: u64,
    group: Option<usize>,
}

const PLAIN: SOpts = SOpts {
    limit: 0,
    on_full: OnFull::Block,
    max_failures: 0,
    group: None,
};

impl SOpts {
    /// Options from a byte: the text to pass (None: NULL), or a bad text.
    fn from_byte(c: u8) -> (Result<Option<String>, &'static str>, SOpts) {
        if c & 0x3f == 0x3f {
            return (Err(BAD_OPTIONS[(c >> 6) as usize]), PLAIN);
        }
        let explicit = c >> 4 & 3 == 3;
        let o = SOpts {
            limit: [0, 1, 2, 4][(c & 3) as usize],
            on_full: ON_FULL[(c >> 2 & 3) as usize].0,
            max_failures: [0, 1, 2, 0][(c >> 4 & 3) as usize],
            group: [None, Some(0), Some(1), None][(c >> 6) as usize],
        };
        let mut keys = Vec::new();
        if o.limit > 0 || explicit {
            keys.push(format!("\"queue_limit\":{}", o.limit));
        }
        if o.on_full != OnFull::Block || o.limit > 0 || explicit {
            keys.push(format!("\"on_full\":\"{}\"", o.on_full.name()));
        }
        if o.max_failures > 0 || explicit {
            keys.push(format!("\"max_failures\":{}", o.max_failures));
        }
        if let Some(g) = o.group {
            keys.push(format!("\"group\":\"{}\"", GROUPS[g]));
        }
        let text = match (keys.is_empty(), c >> 6) {
            (false, _) => Some(format!("{{{}}}", keys.join(","))),
            (true, 0) => None,
            (true, _) => Some(" { } ".to_string()),
        };
        (Ok(text), o)
    }
    fn has_room(&self, queued: usize) -> bool {
        self.limit == 0 || queued < self.limit
    }
    /// A callback subscription whose received messages the model predicts exactly.
    fn exact(&self) -> bool {
        self.group.is_none() && (self.limit == 0 || self.on_full == OnFull::Block)
    }
    fn may_end_slow(&self) -> bool {
        self.limit > 0 && self.on_full == OnFull::End
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Life {
    /// In the router for sure.
    Live,
    /// Its callback's returns may have ended it, at a time the model does not know.
    Dying,
    /// Ended on its own, for this reason (known after a flush, or asked after a publish).
    SelfEnded(i32),
    /// Unsubscribed from here (it had received `n`), or its bus closed (`lossy`: by a close
    /// that ran out of time).
    Unsubscribed(usize),
    Closed {
        lossy: bool,
    },
}

struct Cb {
    shared: Box<Shared>,
    /// Has an end notice.
    on_end: bool,
    /// Its notice's reason was checked.
    notice_checked: bool,
    life: Life,
    /// Messages routed to it for sure (exact subscriptions: up to the one its returns end it at).
    want: Vec<Msg>,
    /// Every message that may have been routed to it.
    cand: Vec<Msg>,
    /// Negative returns in a row, over `want`.
    run: u64,
}

struct Pl {
    /// Exactly what waits in its queue.
    queue: VecDeque<Msg>,
    /// Seqs handed out by jsonbus_next.
    taken: Vec<u64>,
    dropped: u64,
    max_queued: u64,
    ended: Option<i32>,
    /// Unsubscribed, or its bus freed: unknown from now on.
    released: bool,
    fd: Option<i32>,
}

enum Kind {
    Cb(Cb),
    Pull(Pl),
}

struct Sub {
    id: i64,
    /// Bus it belongs to (a serial number, unique per input).
    bus: u64,
    pattern: &'static str,
    opts: SOpts,
    /// Deliveries routed to it: for sure, at most.
    routed: (u64, u64),
    kind: Kind,
}

impl Sub {
    fn possibly_live(&self) -> bool {
        match &self.kind {
            Kind::Cb(c) => matches!(c.life, Life::Live | Life::Dying),
            Kind::Pull(p) => p.ended.is_none() && !p.released,
        }
    }
    fn surely_live(&self) -> bool {
        match &self.kind {
            Kind::Cb(c) => c.life == Life::Live,
            Kind::Pull(p) => p.ended.is_none() && !p.released,
        }
    }
    fn cb(&self) -> Option<&Cb> {
        match &self.kind {
            Kind::Cb(c) => Some(c),
            Kind::Pull(_) => None,
        }
    }
    fn desc(&self) -> String {
        let what = match &self.kind {
            Kind::Cb(c) => format!(
                "callback {:?} {:?} on_end {}",
                c.life, c.shared.returns, c.on_end
            ),
            Kind::Pull(p) => format!(
                "pull queue {:?} ended {:?}",
                p.queue.iter().map(|m| m.0).collect::<Vec<_>>(),
                p.ended
            ),
        };
        format!(
            "subscription {} to {:?} ({:?}, {what}, routed {:?})",
            self.id, self.pattern, self.opts, self.routed
        )
    }
    /// What a callback subscription received, checked against what may have been routed.
    fn check(&self, why: &str) {
        let Kind::Cb(c) = &self.kind else { return };
        let got: Vec<Msg> = lock(&c.shared.seen)
            .got
            .iter()
            .map(|(s, t, j, _)| (*s, t.clone(), j.clone()))
            .collect();
        let ok = if self.opts.exact() {
            let want = match c.life {
                Life::Unsubscribed(n) => &c.want[..n],
                _ => &c.want[..],
            };
            match c.life {
                Life::Closed { lossy: true } => want.starts_with(&got),
                _ => got == want,
            }
        } else {
            let mut it = c.cand.iter();
            got.iter().all(|g| it.any(|m| m == g))
        };
        if !ok {
            panic!(
                "{why}: {} received seqs {:?}; the model says {} {:?}",
                self.desc(),
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                if self.opts.exact() {
                    "exactly"
                } else {
                    "a subsequence of"
                },
                if self.opts.exact() { &c.want } else { &c.cand }
                    .iter()
                    .map(|g| g.0)
                    .collect::<Vec<_>>()
            );
        }
    }
    /// The stats' echo of its pattern, kind and options.
    fn check_echo(&self, v: &Value) {
        let kind = if self.cb().is_some() {
            "callback"
        } else {
            "pull"
        };
        assert_eq!(v["pattern"], self.pattern, "{v}");
        assert_eq!(v["kind"], kind, "{v}");
        match self.opts.group {
            Some(g) => assert_eq!(v["group"], GROUPS[g], "{v}"),
            None => assert!(v["group"].is_null(), "{v}"),
        }
        assert_eq!(
            v["queue_limit"].as_u64(),
            Some(self.opts.limit as u64),
            "{v}"
        );
        assert_eq!(v["on_full"], self.opts.on_full.name(), "{v}");
        assert_eq!(
            v["max_failures"].as_u64(),
            Some(self.opts.max_failures),
            "{v}"
        );
    }
    /// The reasons its end notice may give when `external` ends it now.
    fn allowed(&self, external: i32) -> Vec<i32> {
        let Kind::Cb(c) = &self.kind else {
            return vec![external];
        };
        match c.life {
            Life::Live => vec![external],
            Life::Dying => {
                let mut v = vec![external];
                v.extend(lock(&c.shared.seen).ended_by);
                v
            }
            Life::SelfEnded(r) => vec![r],
            Life::Unsubscribed(_) | Life::Closed { .. } => vec![],
        }
    }
    /// Once no callback can run: the end notice ran once, with one of `allowed`, and the
    /// stats read inside it reconcile with what the callback saw and what was routed.
    fn check_notice(&mut self, allowed: &[i32], why: &str) {
        let routed = self.routed;
        let limit = self.opts.limit as u64;
        let desc = self.desc();
        let Kind::Cb(c) = &mut self.kind else { return };
        let notice = *lock(&c.shared.notice);
        if !c.on_end {
            assert!(notice.is_none());
            return;
        }
        if c.notice_checked {
            return;
        }
        let n = notice.unwrap_or_else(|| panic!("{why}: the end notice of {desc} has not run"));
        assert!(
            allowed.contains(&n.reason),
            "{why}: end notice of {desc} says {}; the model allows {:?}",
            end_name(n.reason),
            allowed.iter().map(|&r| end_name(r)).collect::<Vec<_>>()
        );
        let seen = lock(&c.shared.seen);
        let k = n.counts;
        assert_eq!(k.delivered, seen.got.len() as u64, "{why}: {desc}: {k:?}");
        assert_eq!(k.failures, seen.failures(), "{why}: {desc}: {k:?}");
        // SLOW: the notice may run while the publisher discards the queue (see `on_end`), so
        // up to `queue_limit` messages may be neither queued nor dropped yet in its stats.
        let r = k.delivered + k.dropped + k.queued;
        let lo = match n.reason {
            JSONBUS_END_SLOW => routed.0.saturating_sub(limit),
            _ => routed.0,
        };
        assert!(
            lo <= r && r <= routed.1,
            "{why}: {desc}: delivered + dropped + queued = {r} in its end notice: {k:?}"
        );
        assert!(limit == 0 || k.max_queued <= limit, "{why}: {desc}: {k:?}");
        drop(seen);
        c.notice_checked = true;
    }
}

/// A message handed out by jsonbus_next and not released yet.
struct Held {
    ptr: *mut jsonbus_message,
    msg: Msg,
    sub: i64,
    bus: u64,
    ttl: u8,
}

impl Held {
    fn release(self) {
        // SAFETY: handed out by jsonbus_next and not released: valid, even after its bus was
        // closed or freed.
        let (seq, topic, json, sub) = unsafe { read_message(self.ptr) };
        assert_eq!(
            ((seq, topic, json), sub),
            (self.msg, self.sub),
            "a held message changed before its release"
        );
        jsonbus_message_release(self.ptr);
    }
}

struct Bus {
    ptr: *mut jsonbus,
    serial: u64,
    opts: Opts,
    closed: bool,
    seq: u64,
    rejected: [u64; 6],
    unrouted: (u64, u64),
    routings: (u64, u64),
    /// Messages routed to each group (one member each): for sure, at most.
    groups: [(u64, u64); 2],
    /// Pending `publish_after` timers (each holds a unit of capacity).
    timers: Vec<i64>,
    /// Timers discarded by close (counted in `dropped`).
    timer_drops: u64,
    /// `jsonbus_request_async` calls that returned OK: each reply callback runs once.
    asyncs: Vec<Box<AsyncRec>>,
}

/// What the reply callback of one async request saw.
#[derive(Default)]
struct AsyncRec {
    calls: AtomicI64,
    status: AtomicI64,
}

extern "C" fn on_reply(status: i32, reply: *const jsonbus_message, user_data: *mut c_void) {
    // SAFETY: our `AsyncRec`, kept until its bus is closed and checked.
    let r = unsafe { &*(user_data as *const AsyncRec) };
    assert!(
        status == JSONBUS_ERR_TIMEOUT || status == JSONBUS_ERR_CLOSED,
        "a reply callback got {} though nobody replies",
        name(status)
    );
    assert!(
        reply.is_null(),
        "a reply callback got a reply with {}",
        name(status)
    );
    r.status.store(status as i64, SeqCst);
    assert_eq!(
        r.calls.fetch_add(1, SeqCst),
        0,
        "a reply callback ran twice"
    );
}

/// What a publish-like call is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Send {
    Publish,
    Request,
    /// `jsonbus_request_async` with this time-out.
    Async(i32),
    After,
}

const REASONS: [(&str, i32); 6] = [
    ("json", JSONBUS_ERR_JSON),
    ("utf8", JSONBUS_ERR_UTF8),
    ("topic", JSONBUS_ERR_TOPIC),
    ("too_large", JSONBUS_ERR_TOO_LARGE),
    ("full", JSONBUS_ERR_FULL),
    ("closed", JSONBUS_ERR_CLOSED),
];

#[derive(Clone, Copy, PartialEq)]
enum How {
    Plain,
    With,
    Pull,
}

/// What a publish may run into.
#[derive(Default, Debug)]
struct Risk {
    /// It fails with FULL for sure (publish_timeout_ms >= 0).
    must_full: bool,
    may_full: bool,
    /// It would wait for the fuzz thread's own jsonbus_next or release: for ever with -1.
    hang: bool,
}

/// What jsonbus_next must do.
#[derive(Debug, PartialEq)]
enum Next {
    Message,
    Ended(i32),
    Timeout,
    NotFound,
}

struct World {
    slots: [Option<Bus>; 2],
    subs: Vec<Sub>,
    held: Vec<Held>,
    next_serial: u64,
}

impl World {
    fn new_bus(&mut self, slot: usize, b: u8) {
        self.free(slot);
        let o = Opts {
            dispatcher_threads: 1 + (b % 3) as i64,
            queue_capacity: [1, 2, 3, 65536][(b >> 2 & 3) as usize],
            publish_timeout_ms: [-1, -1, 0, 1][(b >> 4 & 3) as usize],
            max_message_bytes: [64, 8, 1 << 20, 64][(b >> 6) as usize],
            max_depth: [3, 1, 128, 2][((b >> 1 ^ b >> 5) & 3) as usize],
            dispatcher_spin_us: [0, 0, 0, 20][(b & 3) as usize],
        };
        let text = CString::new(o.to_json()).unwrap();
        let ptr = jsonbus_new(text.as_ptr());
        assert!(!ptr.is_null(), "jsonbus_new({text:?}): {}", last_error());
        self.next_serial += 1;
        self.slots[slot] = Some(Bus {
            ptr,
            serial: self.next_serial,
            opts: o,
            closed: false,
            seq: 0,
            rejected: [0; 6],
            unrouted: (0, 0),
            routings: (0, 0),
            groups: [(0, 0); 2],
            timers: Vec::new(),
            timer_drops: 0,
            asyncs: Vec::new(),
        });
    }

    /// The bus in `slot`, created first if there is none.
    fn bus(&mut self, slot: usize, b: u8) -> &mut Bus {
        if self.slots[slot].is_none() {
            self.new_bus(slot, b);
        }
        self.slots[slot].as_mut().unwrap()
    }

    /// A subscription of any bus, or (which % 8 == 7, or none yet) an id nobody has.
    fn pick(&self, which: u8) -> (i64, Option<usize>) {
        let n = self.subs.len();
        if which as usize % 8 == 7 || n == 0 {
            ([0, -1, i64::MAX, i64::MIN][which as usize / 8 % 4], None)
        } else {
            let i = n - 1 - (which as usize / 8) % n;
            (self.subs[i].id, Some(i))
        }
    }

    /// Distinct messages of bus `serial` that wait in a pull queue or are held: they stay
    /// held (queue_capacity, flush, close) until the fuzz thread takes and releases them.
    fn pull_held(&self, serial: u64) -> usize {
        let mut seqs = BTreeSet::new();
        for s in self.subs.iter().filter(|s| s.bus == serial) {
            if let Kind::Pull(p) = &s.kind {
                seqs.extend(p.queue.iter().map(|m| m.0));
            }
        }
        seqs.extend(
            self.held
                .iter()
                .filter(|h| h.bus == serial)
                .map(|h| h.msg.0),
        );
        seqs.len()
    }

    /// What bus `serial` holds against its capacity: pull messages and pending timers.
    fn held(&self, serial: u64) -> usize {
        let timers = self
            .slots
            .iter()
            .flatten()
            .find(|b| b.serial == serial)
            .map_or(0, |b| b.timers.len());
        self.pull_held(serial) + timers
    }

    /// Releases held messages whose time has come.
    fn tick(&mut self) {
        let mut i = 0;
        while i < self.held.len() {
            self.held[i].ttl = self.held[i].ttl.saturating_sub(1);
            if self.held[i].ttl == 0 {
                self.held.remove(i).release();
            } else {
                i += 1;
            }
        }
    }

    fn release(&mut self, a: u8) {
        if self.held.is_empty() {
            jsonbus_message_release(null_mut());
            return;
        }
        if a & 0x80 != 0 {
            for h in std::mem::take(&mut self.held) {
                h.release();
            }
        } else {
            let i = a as usize % self.held.len();
            self.held.remove(i).release();
        }
    }

    fn release_bus(&mut self, serial: u64) {
        let (mine, rest) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.bus == serial);
        self.held = rest;
        for h in mine {
            h.release();
        }
    }

    /// Every descriptor handed out for the bus polls readable exactly while its pull
    /// subscription has a message waiting or has ended.
    fn check_fds(&self, serial: u64) {
        for s in self.subs.iter().filter(|s| s.bus == serial) {
            let Kind::Pull(p) = &s.kind else { continue };
            let Some(fd) = p.fd.filter(|_| !p.released) else {
                continue;
            };
            let want = !p.queue.is_empty() || p.ended.is_some();
            assert_eq!(
                readable(fd),
                want,
                "descriptor {fd} of {}: readable must be {want}",
                s.desc()
            );
        }
    }

    fn risk(&self, slot: usize, topic: &str) -> Risk {
        let bus = self.slots[slot].as_ref().unwrap();
        let cap = bus.opts.queue_capacity as usize;
        let held = self.held(bus.serial);
        let mut r = Risk {
            must_full: held >= cap,
            may_full: cap < 65536 || held >= cap,
            hang: held >= cap,
        };
        let targets: Vec<&Sub> = self
            .subs
            .iter()
            .filter(|s| {
                s.bus == bus.serial
                    && s.possibly_live()
                    && matches(s.pattern.as_bytes(), topic.as_bytes())
            })
            .collect();
        for s in targets.iter().filter(|s| s.opts.group.is_none()) {
            if s.opts.on_full != OnFull::Block || s.opts.limit == 0 {
                continue;
            }
            r.may_full = true;
            if let Kind::Pull(p) = &s.kind {
                if !s.opts.has_room(p.queue.len()) {
                    r.must_full = true;
                    r.hang = true;
                }
            }
        }
        for g in 0..GROUPS.len() {
            let members: Vec<&&Sub> = targets.iter().filter(|s| s.opts.group == Some(g)).collect();
            // Surely room: a pull member with room, or a callback member without a limit that
            // is surely still a member (a dying one may have left the group).
            let room = members.iter().any(|m| match &m.kind {
                Kind::Pull(p) => m.opts.has_room(p.queue.len()),
                Kind::Cb(_) => m.opts.limit == 0 && m.surely_live(),
            });
            let blockers: Vec<&&&Sub> = members
                .iter()
                .filter(|m| m.opts.on_full == OnFull::Block)
                .collect();
            if members.is_empty() || room || blockers.is_empty() {
                continue;
            }
            r.may_full = true;
            if blockers.iter().any(|m| m.cb().is_none()) {
                r.hang = true;
            }
            if members.iter().all(|m| m.cb().is_none()) && blockers.len() == members.len() {
                r.must_full = true;
            }
        }
        r
    }

    fn publish(&mut self, slot: usize, t: u8, p: u8) {
        self.publish_as(slot, t, p, Send::Publish)
    }

    /// Publishes, or sends what else takes a publish's topic and payload (`how`).
    fn publish_as(&mut self, slot: usize, t: u8, p: u8, how: Send) {
        self.bus(slot, t ^ p);
        let bus = self.slots[slot].as_ref().unwrap();
        let topic = TOPICS[t as usize % TOPICS.len()];
        let payload: Box<[u8]> = PAYLOADS[p as usize % PAYLOADS.len()].into();
        let mut allowed = payload_verdict(
            &payload,
            bus.opts.max_message_bytes as usize,
            bus.opts.max_depth as usize,
        );
        if !topic_ok(topic.as_bytes(), false) {
            let mut why = allowed.err().unwrap_or_default();
            why.push(JSONBUS_ERR_TOPIC);
            allowed = Err(why);
        }
        let mut risk = match allowed.is_ok() && !bus.closed {
            true => self.risk(slot, topic),
            false => Risk::default(),
        };
        if how == Send::After {
            // A timer only takes capacity now; subscriptions' limits matter when it fires.
            let held = self.held(bus.serial);
            let cap = bus.opts.queue_capacity as usize;
            risk = Risk {
                must_full: risk.must_full && held >= cap,
                may_full: held >= cap,
                hang: held >= cap,
            };
        }
        // Whether a subscription matches for sure, or may (a dying one may have ended).
        let matching = |surely: bool| {
            self.subs.iter().any(|s| {
                s.bus == bus.serial
                    && matches(s.pattern.as_bytes(), topic.as_bytes())
                    && match surely {
                        true => s.surely_live(),
                        false => s.possibly_live(),
                    }
            })
        };
        let (surely, maybe) = (matching(true), matching(false));
        let timeout = bus.opts.publish_timeout_ms;
        if risk.hang && timeout < 0 {
            // It would wait for ever for this thread's own jsonbus_next / release.
            trace!("  publish {topic:?} skipped: it would wait for ever ({risk:?})");
            return;
        }
        let ctopic = CString::new(topic).unwrap();
        let (ptr, json, len) = (bus.ptr, payload.as_ptr().cast(), payload.len());
        let mut rec: Option<Box<AsyncRec>> = None;
        let mut timer = 0;
        let rc = match how {
            Send::Publish => jsonbus_publish(ptr, ctopic.as_ptr(), json, len),
            Send::Request => {
                let mut reply: *mut std::ffi::c_char = 1 as *mut _;
                let mut reply_len = 7usize;
                let rc = jsonbus_request(
                    ptr,
                    ctopic.as_ptr(),
                    json,
                    len,
                    0,
                    &mut reply,
                    &mut reply_len,
                );
                assert!(
                    reply.is_null() && reply_len == 0,
                    "a failed request set *reply"
                );
                rc
            }
            Send::Async(timeout) => {
                let r = Box::new(AsyncRec::default());
                let ud = &*r as *const AsyncRec as *mut c_void;
                rec = Some(r);
                jsonbus_request_async(ptr, ctopic.as_ptr(), json, len, timeout, Some(on_reply), ud)
            }
            Send::After => {
                let id = jsonbus_publish_after(ptr, ctopic.as_ptr(), json, len, 60_000);
                timer = id;
                match id > 0 {
                    true => JSONBUS_OK,
                    false => i32::try_from(id).unwrap_or(i32::MIN),
                }
            }
        };
        check_last(rc, "publish");
        trace!(
            "  publish {topic:?} {:?}: {} ({risk:?})",
            String::from_utf8_lossy(&payload),
            name(rc)
        );
        // What an accepted request returns: nobody replies.
        let accepted = match how {
            Send::Publish | Send::After => vec![JSONBUS_OK],
            Send::Request if surely => vec![JSONBUS_ERR_TIMEOUT],
            Send::Request if maybe => vec![JSONBUS_ERR_TIMEOUT, JSONBUS_ERR_NO_RESPONDERS],
            Send::Async(_) if surely => vec![JSONBUS_OK],
            Send::Async(_) if maybe => vec![JSONBUS_OK, JSONBUS_ERR_NO_RESPONDERS],
            Send::Request | Send::Async(_) => vec![JSONBUS_ERR_NO_RESPONDERS],
        };
        let mut ok_codes = match &allowed {
            Ok(()) => accepted.clone(),
            Err(why) => why.clone(),
        };
        if bus.closed {
            // Guarantee 8: a closed bus answers CLOSED, whatever the arguments.
            ok_codes = vec![JSONBUS_ERR_CLOSED];
        } else if allowed.is_ok() && risk.must_full {
            ok_codes = vec![JSONBUS_ERR_FULL];
        } else if allowed.is_ok() && risk.may_full && timeout >= 0 {
            // Guarantee 12: only a bus limit or a "block" subscription makes a publish fail.
            ok_codes.push(JSONBUS_ERR_FULL);
        }
        assert!(
            ok_codes.contains(&rc),
            "{how:?} {:?} on {topic:?} (closed {}, {:?}, {risk:?}) returned {} ({}); expected one of {:?}",
            String::from_utf8_lossy(&payload),
            bus.closed,
            bus.opts,
            name(rc),
            last_error(),
            ok_codes.iter().map(|&c| name(c)).collect::<Vec<_>>()
        );
        let bus = self.slots[slot].as_mut().unwrap();
        if let Some(i) = REASONS.iter().position(|r| r.1 == rc) {
            bus.rejected[i] += 1;
        }
        if !accepted.contains(&rc) {
            return;
        }
        match how {
            Send::After => {
                bus.timers.push(timer);
                return;
            }
            Send::Async(_) if rc == JSONBUS_OK => bus.asyncs.extend(rec),
            _ => {}
        }
        bus.seq += 1;
        let msg: Msg = (bus.seq, topic.as_bytes().to_vec(), payload.to_vec());
        self.route(slot, topic, msg);
    }

    /// Where an accepted message went.
    fn route(&mut self, slot: usize, topic: &str, msg: Msg) {
        let (serial, ptr) = {
            let b = self.slots[slot].as_ref().unwrap();
            (b.serial, b.ptr)
        };
        let (mut sure, mut maybe) = (0u64, 0u64);
        let mut ask_slow = Vec::new();
        let mut group_sure = [false; 2];
        let mut group_any = [false; 2];
        let hits: Vec<usize> = (0..self.subs.len())
            .filter(|&i| {
                let s = &self.subs[i];
                s.bus == serial
                    && s.possibly_live()
                    && matches(s.pattern.as_bytes(), topic.as_bytes())
            })
            .collect();
        for &i in &hits {
            let s = &mut self.subs[i];
            if let Some(g) = s.opts.group {
                group_any[g] = true;
                group_sure[g] |= s.surely_live();
                continue;
            }
            let opts = s.opts;
            match &mut s.kind {
                Kind::Cb(c) => {
                    c.cand.push(msg.clone());
                    if c.life == Life::Dying {
                        maybe += 1;
                        s.routed.1 += 1;
                    } else {
                        sure += 1;
                        s.routed.0 += 1;
                        s.routed.1 += 1;
                        let r = c.shared.returns;
                        if opts.exact() {
                            c.want.push(msg.clone());
                            let rc = r.rc(c.want.len(), msg.0);
                            if r.step(rc, &mut c.run).is_some() {
                                c.life = Life::Dying;
                            }
                        } else if r.can_end() && c.cand.len() >= r.threshold() {
                            c.life = Life::Dying;
                        }
                    }
                    if opts.may_end_slow() {
                        ask_slow.push(i);
                    }
                }
                Kind::Pull(p) => {
                    sure += 1;
                    s.routed.0 += 1;
                    s.routed.1 += 1;
                    offer(p, &opts, msg.clone(), s.id);
                }
            }
        }
        for g in 0..GROUPS.len() {
            if !group_any[g] {
                continue;
            }
            match group_sure[g] {
                true => sure += 1,
                false => maybe += 1,
            }
            let bus = self.slots[slot].as_mut().unwrap();
            bus.groups[g].0 += group_sure[g] as u64;
            bus.groups[g].1 += 1;
            let members: Vec<usize> = hits
                .iter()
                .copied()
                .filter(|&i| self.subs[i].opts.group == Some(g))
                .collect();
            self.route_group(ptr, g, &members, &msg, &mut ask_slow);
        }
        let bus = self.slots[slot].as_mut().unwrap();
        bus.routings.0 += sure;
        bus.routings.1 += sure + maybe;
        bus.unrouted.0 += (sure + maybe == 0) as u64;
        bus.unrouted.1 += (sure == 0) as u64;
        for i in ask_slow {
            self.ask_slow(ptr, i);
        }
        self.check_fds(serial);
    }

    /// One member of group `g` got `msg`: which, as far as the pull members tell (their stats
    /// say exactly; a callback member's queue depends on timing).
    fn route_group(
        &mut self,
        ptr: *mut jsonbus,
        g: usize,
        members: &[usize],
        msg: &Msg,
        ask_slow: &mut Vec<usize>,
    ) {
        let mut given: Option<(usize, Value)> = None;
        for &i in members {
            let s = &self.subs[i];
            let Kind::Pull(p) = &s.kind else { continue };
            let v = sub_stats(ptr, s.id)
                .unwrap_or_else(|c| panic!("stats of live {}: {}", s.desc(), name(c)));
            let c = counts(&v);
            assert_eq!(c.delivered, p.taken.len() as u64, "{}: {v}", s.desc());
            let before = p.queue.len() as u64 + p.dropped;
            match (c.queued + c.dropped).checked_sub(before) {
                Some(0) => {}
                Some(1) => {
                    if let Some((j, _)) = &given {
                        panic!(
                            "group {:?}: message {} given to both {} and {}",
                            GROUPS[g],
                            msg.0,
                            self.subs[*j].desc(),
                            s.desc()
                        );
                    }
                    trace!(
                        "  group {:?}: message {} went to pull member {}",
                        GROUPS[g],
                        msg.0,
                        s.id
                    );
                    given = Some((i, v));
                }
                _ => panic!("group member {} after message {}: {v}", s.desc(), msg.0),
            }
        }
        let all_pull = members.iter().all(|&i| self.subs[i].cb().is_none());
        let Some((i, v)) = given else {
            assert!(
                !all_pull,
                "group {:?}: message {} given to none of its pull members {:?}",
                GROUPS[g],
                msg.0,
                members
                    .iter()
                    .map(|&i| self.subs[i].desc())
                    .collect::<Vec<_>>()
            );
            let cbs: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| self.subs[i].cb().is_some())
                .collect();
            for &i in &cbs {
                let s = &mut self.subs[i];
                let only = cbs.len() == 1 && s.surely_live();
                s.routed.0 += only as u64;
                s.routed.1 += 1;
                let opts = s.opts;
                let Kind::Cb(c) = &mut s.kind else { continue };
                c.cand.push(msg.clone());
                let r = c.shared.returns;
                if c.life == Life::Live && r.can_end() && c.cand.len() >= r.threshold() {
                    c.life = Life::Dying;
                }
                if opts.may_end_slow() {
                    ask_slow.push(i);
                }
            }
            return;
        };
        // Guarantee 15: a member at its limit is passed over while another has room.
        let s = &self.subs[i];
        let Kind::Pull(p) = &s.kind else {
            unreachable!()
        };
        if !s.opts.has_room(p.queue.len()) {
            for &j in members.iter().filter(|&&j| j != i) {
                let o = &self.subs[j];
                let room = match &o.kind {
                    Kind::Pull(q) => o.opts.has_room(q.queue.len()),
                    Kind::Cb(_) => o.opts.limit == 0 && o.surely_live(),
                };
                assert!(
                    !room,
                    "group {:?}: message {} given to {}, at its queue_limit, while {} had room",
                    GROUPS[g],
                    msg.0,
                    s.desc(),
                    o.desc()
                );
            }
        }
        let s = &mut self.subs[i];
        s.routed.0 += 1;
        s.routed.1 += 1;
        let opts = s.opts;
        let id = s.id;
        let Kind::Pull(p) = &mut s.kind else {
            unreachable!()
        };
        offer(p, &opts, msg.clone(), id);
        self.check_pull_stats(i, &v);
    }

    /// After a publish that reached a callback subscription with "end": did it end SLOW?
    /// (Only a publish ends it so, so asking after each one pins the moment down.)
    fn ask_slow(&mut self, ptr: *mut jsonbus, i: usize) {
        let s = &self.subs[i];
        let Kind::Cb(c) = &s.kind else { return };
        if !s.possibly_live() {
            return;
        }
        let reason = match sub_stats(ptr, s.id) {
            Ok(v) => {
                s.check_echo(&v);
                stat_ended(&v).map(|n| END_NAMES.iter().find(|r| r.1 == n).unwrap().0)
            }
            Err(JSONBUS_ERR_NOT_FOUND) => {
                // Forgotten: its end is complete, its end notice has returned.
                let n = *lock(&c.shared.notice);
                match n {
                    Some(n) => Some(n.reason),
                    None => {
                        assert!(
                            !c.on_end && !c.shared.returns.can_end(),
                            "{} is forgotten but its end notice has not run",
                            s.desc()
                        );
                        Some(JSONBUS_END_SLOW)
                    }
                }
            }
            Err(code) => panic!("stats of {}: {}", s.desc(), name(code)),
        };
        match reason {
            None => {}
            Some(JSONBUS_END_SLOW) => {
                trace!("  {} ended SLOW", s.id);
                let s = &mut self.subs[i];
                if let Kind::Cb(c) = &mut s.kind {
                    c.life = Life::SelfEnded(JSONBUS_END_SLOW);
                }
            }
            Some(r) => assert!(
                c.life == Life::Dying && lock(&c.shared.seen).ended_by.is_some_and(|e| e == r),
                "{} has ended {} on its own",
                s.desc(),
                end_name(r)
            ),
        }
    }

    fn subscribe(&mut self, slot: usize, how: How, p: u8, b: u8, c: u8) {
        let bus = self.bus(slot, p);
        let (ptr, serial, closed) = (bus.ptr, bus.serial, bus.closed);
        let pattern = PATTERNS[p as usize % PATTERNS.len()];
        let (text, opts) = match how {
            How::Plain => (Ok(None), PLAIN),
            How::With => SOpts::from_byte(c),
            How::Pull => SOpts::from_byte(b),
        };
        let returns = Returns {
            k: [0, 0, 1, 2, 3, 5][b as usize % 6],
            fail_odd: b & 0x80 != 0,
            ok_rc: if how == How::With && b & 0x40 != 0 {
                OK_TOO
            } else {
                JSONBUS_OK
            },
            max_failures: opts.max_failures,
        };
        // An end notice, except (bit 0x20) for some that cannot end on their own.
        let with_notice = how == How::With && (b & 0x20 == 0 || returns.can_end());
        let shared = Box::new(Shared {
            id: AtomicI64::new(0),
            bus: AtomicPtr::new(ptr),
            returns,
            ended: AtomicBool::new(false),
            in_callback: AtomicBool::new(false),
            notice_began: AtomicBool::new(false),
            seen: Mutex::new(Seen::default()),
            notice: Mutex::new(None),
        });
        let ud = &*shared as *const Shared as *mut c_void;
        let cp = CString::new(pattern).unwrap();
        let ctext = match &text {
            Ok(Some(t)) => Some(CString::new(t.as_str()).unwrap()),
            Ok(None) => None,
            Err(bad) => Some(CString::new(*bad).unwrap()),
        };
        let cto = ctext.as_ref().map_or(null(), |t| t.as_ptr());
        let id = match how {
            How::Plain => jsonbus_subscribe(ptr, cp.as_ptr(), Some(callback), ud),
            How::With => jsonbus_subscribe_with(
                ptr,
                cp.as_ptr(),
                cto,
                Some(callback),
                if with_notice { Some(on_end) } else { None },
                ud,
            ),
            How::Pull => jsonbus_subscribe_pull(ptr, cp.as_ptr(), cto),
        };
        check_last(if id > 0 { 0 } else { id as i32 }, "subscribe");
        trace!("  subscribe {pattern:?} {text:?} {:?}: {id}", returns);
        let valid = topic_ok(pattern.as_bytes(), true);
        let codes: Vec<i64> = if closed {
            // Guarantee 8: a closed bus answers CLOSED, whatever else is wrong.
            vec![JSONBUS_ERR_CLOSED as i64]
        } else if text.is_err() && !valid {
            // The contract does not order these two.
            vec![JSONBUS_ERR_OPTIONS as i64, JSONBUS_ERR_TOPIC as i64]
        } else if text.is_err() {
            vec![JSONBUS_ERR_OPTIONS as i64]
        } else if !valid {
            vec![JSONBUS_ERR_TOPIC as i64]
        } else {
            vec![]
        };
        if !codes.is_empty() {
            assert!(
                codes.contains(&id),
                "subscribe {pattern:?} options {text:?} (closed {closed}) returned {id} ({})",
                last_error()
            );
            return;
        }
        assert!(
            id > 0,
            "subscribe {pattern:?} {text:?}: {id} {}",
            last_error()
        );
        assert!(self.subs.iter().all(|s| s.id != id), "id {id} given twice");
        shared.id.store(id, SeqCst);
        let kind = match how {
            How::Pull => Kind::Pull(Pl {
                queue: VecDeque::new(),
                taken: Vec::new(),
                dropped: 0,
                max_queued: 0,
                ended: None,
                released: false,
                fd: None,
            }),
            _ => Kind::Cb(Cb {
                shared,
                on_end: with_notice,
                notice_checked: false,
                life: Life::Live,
                want: Vec::new(),
                cand: Vec::new(),
                run: 0,
            }),
        };
        let sub = Sub {
            id,
            bus: serial,
            pattern,
            opts,
            routed: (0, 0),
            kind,
        };
        // Its options as the stats tell them back; nothing counted yet.
        let v = sub_stats(ptr, id)
            .unwrap_or_else(|c| panic!("stats of new {}: {}", sub.desc(), name(c)));
        sub.check_echo(&v);
        assert_eq!(counts(&v), Counts::default(), "{v}");
        assert!(stat_ended(&v).is_none(), "{v}");
        self.subs.push(sub);
    }

    fn unsubscribe(&mut self, slot: usize, which: u8) {
        let bus = self.bus(slot, which);
        let (ptr, serial, closed) = (bus.ptr, bus.serial, bus.closed);
        let (id, index) = self.pick(which);
        let rc = jsonbus_unsubscribe(ptr, id);
        check_last(rc, "unsubscribe");
        trace!("  unsubscribe {id}: {}", name(rc));
        let Some(i) = index.filter(|&i| self.subs[i].bus == serial) else {
            assert_eq!(
                rc, JSONBUS_ERR_NOT_FOUND,
                "unsubscribe {id}, not on this bus"
            );
            return;
        };
        let s = &mut self.subs[i];
        let desc = s.desc();
        if let Kind::Pull(p) = &mut s.kind {
            if p.released || closed {
                assert_eq!(rc, JSONBUS_ERR_NOT_FOUND, "unsubscribe of {desc}");
                return;
            }
            // Live or ended on its own: released either way (guarantee 14).
            assert_eq!(rc, JSONBUS_OK, "unsubscribe of {desc}: {}", last_error());
            p.released = true;
            p.fd = None;
            p.dropped += p.queue.len() as u64;
            p.queue.clear();
            p.ended.get_or_insert(JSONBUS_END_UNSUBSCRIBED);
            return;
        }
        let Kind::Cb(c) = &mut s.kind else {
            unreachable!()
        };
        let (received, ended_by) = {
            let seen = lock(&c.shared.seen);
            (seen.got.len(), seen.ended_by)
        };
        match (c.life, rc) {
            (Life::Live | Life::Dying | Life::SelfEnded(_), JSONBUS_OK) => {}
            (Life::Dying, JSONBUS_ERR_NOT_FOUND) => {
                // Forgotten: it ended itself and its end completed.
                let r = ended_by
                    .unwrap_or_else(|| panic!("NOT_FOUND, but {desc} had not ended itself"));
                c.life = Life::SelfEnded(r);
                s.check_notice(&[r], "forgotten after ending itself");
                return;
            }
            (Life::SelfEnded(r), JSONBUS_ERR_NOT_FOUND) => {
                s.check_notice(&[r], "forgotten after ending itself");
                return;
            }
            (Life::Unsubscribed(_) | Life::Closed { .. }, JSONBUS_ERR_NOT_FOUND) => return,
            (life, rc) => panic!(
                "unsubscribe {id} ({life:?}, {desc}) returned {} ({})",
                name(rc),
                last_error()
            ),
        }
        let allowed = s.allowed(JSONBUS_END_UNSUBSCRIBED);
        let Kind::Cb(c) = &mut s.kind else {
            unreachable!()
        };
        c.shared.ended.store(true, SeqCst);
        // Final now: what it received must be the start of what was routed to it.
        if s.opts.exact() {
            assert!(received <= c.want.len(), "{desc}: received {received}");
        }
        c.life = Life::Unsubscribed(received);
        s.check("after unsubscribe");
        s.check_notice(&allowed, "after unsubscribe");
    }

    /// What jsonbus_next on subscription `index` of the bus in `slot` must do now.
    fn next_verdict(&self, slot: usize, index: Option<usize>) -> Next {
        let serial = self.slots[slot].as_ref().unwrap().serial;
        let Some(s) = index.map(|i| &self.subs[i]).filter(|s| s.bus == serial) else {
            return Next::NotFound;
        };
        match &s.kind {
            Kind::Pull(p) if !p.released => match (p.queue.is_empty(), p.ended) {
                (false, _) => Next::Message,
                (true, Some(r)) => Next::Ended(r),
                (true, None) => Next::Timeout,
            },
            _ => Next::NotFound,
        }
    }

    /// One jsonbus_next, checked; the message is released at once (`hold` 0) or held.
    fn next_one(
        &mut self,
        slot: usize,
        id: i64,
        index: Option<usize>,
        timeout: i32,
        hold: u8,
    ) -> bool {
        let (ptr, serial) = {
            let b = self.slots[slot].as_ref().unwrap();
            (b.ptr, b.serial)
        };
        let verdict = self.next_verdict(slot, index);
        let mut m: *mut jsonbus_message = NonNull::dangling().as_ptr();
        let rc = jsonbus_next(ptr, id, timeout, &mut m);
        check_last(rc, "jsonbus_next");
        trace!("  next({id}, {timeout}): {} (model {verdict:?})", name(rc));
        let want = match verdict {
            Next::Message => JSONBUS_OK,
            Next::Ended(_) => JSONBUS_ERR_ENDED,
            Next::Timeout => JSONBUS_ERR_TIMEOUT,
            Next::NotFound => JSONBUS_ERR_NOT_FOUND,
        };
        assert_eq!(
            rc,
            want,
            "jsonbus_next({id}, {timeout}) returned {} ({}); the model says {verdict:?}{}",
            name(rc),
            last_error(),
            index.map_or(String::new(), |i| format!(" for {}", self.subs[i].desc()))
        );
        if rc != JSONBUS_OK {
            assert!(m.is_null(), "*msg is not NULL after jsonbus_next failed");
            if let Next::Ended(r) = verdict {
                let e = last_error();
                assert!(
                    e.contains(end_name(r)),
                    "ENDED, but the message does not say {}: {e}",
                    end_name(r)
                );
            }
            self.check_fds(serial);
            return false;
        }
        assert!(!m.is_null());
        // SAFETY: jsonbus_next handed it out.
        let (seq, topic, json, sub) = unsafe { read_message(m) };
        let i = index.unwrap();
        let Kind::Pull(p) = &mut self.subs[i].kind else {
            unreachable!()
        };
        let front = p.queue.pop_front().unwrap();
        assert_eq!(
            (seq, &topic, &json),
            (front.0, &front.1, &front.2),
            "jsonbus_next handed out another message than the model's next"
        );
        assert_eq!(sub, id, "jsonbus_message.subscription of a pulled message");
        p.taken.push(seq);
        let h = Held {
            ptr: m,
            msg: front,
            sub: id,
            bus: serial,
            ttl: hold * 2,
        };
        match hold {
            0 => h.release(),
            _ => self.held.push(h),
        }
        self.check_fds(serial);
        true
    }

    fn next(&mut self, slot: usize, a: u8, b: u8) {
        self.bus(slot, a);
        let (id, index) = self.pick(a);
        let verdict = self.next_verdict(slot, index);
        let timeout = match b & 3 {
            2 => 1,
            3 if verdict != Next::Timeout => -1,
            _ => 0,
        };
        self.next_one(slot, id, index, timeout, b >> 2 & 3);
    }

    /// Takes every waiting message of one pull subscription.
    fn drain(&mut self, slot: usize, a: u8, b: u8) {
        self.bus(slot, a);
        let (id, index) = self.pick(a);
        loop {
            let last = self.next_verdict(slot, index) == Next::Message
                && index.is_some_and(|i| match &self.subs[i].kind {
                    Kind::Pull(p) => p.queue.len() == 1,
                    _ => false,
                });
            let hold = if last && b & 1 != 0 { 3 } else { 0 };
            if !self.next_one(slot, id, index, 0, hold) {
                break;
            }
        }
    }

    /// Takes every waiting pull message of the bus and releases every held one.
    fn quiesce(&mut self, slot: usize) {
        let serial = self.slots[slot].as_ref().unwrap().serial;
        for i in 0..self.subs.len() {
            if self.subs[i].bus != serial {
                continue;
            }
            let id = self.subs[i].id;
            while self.next_verdict(slot, Some(i)) == Next::Message {
                self.next_one(slot, id, Some(i), 0, 0);
            }
        }
        self.release_bus(serial);
        assert_eq!(self.pull_held(serial), 0);
    }

    fn pull_fd(&mut self, slot: usize, a: u8) {
        let bus = self.bus(slot, a);
        let (ptr, serial) = (bus.ptr, bus.serial);
        let (id, index) = self.pick(a);
        let rc = jsonbus_pull_fd(ptr, id);
        check_last(rc.min(0), "jsonbus_pull_fd");
        let target = index.filter(|&i| {
            self.subs[i].bus == serial && matches!(&self.subs[i].kind, Kind::Pull(p) if !p.released)
        });
        match target {
            Some(i) => {
                assert!(
                    rc >= 0,
                    "jsonbus_pull_fd of {}: {} {}",
                    self.subs[i].desc(),
                    name(rc),
                    last_error()
                );
                let Kind::Pull(p) = &mut self.subs[i].kind else {
                    unreachable!()
                };
                if let Some(fd) = p.fd {
                    assert_eq!(fd, rc, "jsonbus_pull_fd gave another descriptor");
                }
                p.fd = Some(rc);
            }
            None => assert_eq!(
                rc,
                JSONBUS_ERR_NOT_FOUND,
                "jsonbus_pull_fd({id}): {}",
                last_error()
            ),
        }
        self.check_fds(serial);
    }

    fn check_pull_stats(&self, i: usize, v: &Value) {
        let s = &self.subs[i];
        let Kind::Pull(p) = &s.kind else {
            unreachable!()
        };
        s.check_echo(v);
        let want = Counts {
            queued: p.queue.len() as u64,
            max_queued: p.max_queued,
            delivered: p.taken.len() as u64,
            dropped: p.dropped,
            failures: 0,
        };
        assert_eq!(counts(v), want, "stats of {}: {v}", s.desc());
        assert_eq!(
            stat_ended(v).as_deref(),
            p.ended.map(end_name),
            "stats of {}: {v}",
            s.desc()
        );
    }

    /// Checks what `jsonbus_subscription_stats` said about subscription `i`; `quiet`: nothing
    /// is in flight on its bus (after a flush or close).
    fn check_stats(&mut self, i: usize, r: Result<Value, i32>, quiet: bool) -> Option<Counts> {
        let s = &self.subs[i];
        let desc = s.desc();
        let c = match &s.kind {
            Kind::Pull(p) if p.released => {
                assert_eq!(r.err(), Some(JSONBUS_ERR_NOT_FOUND), "stats of {desc}");
                return None;
            }
            Kind::Pull(_) => {
                let v = r.unwrap_or_else(|c| panic!("stats of {desc}: {}", name(c)));
                self.check_pull_stats(i, &v);
                return Some(counts(&v));
            }
            Kind::Cb(c) => c,
        };
        let life = c.life;
        let ended_by = lock(&c.shared.seen).ended_by;
        let v = match (life, r) {
            (Life::Unsubscribed(_) | Life::Closed { .. }, r) => {
                assert_eq!(r.err(), Some(JSONBUS_ERR_NOT_FOUND), "stats of {desc}");
                return None;
            }
            (Life::Live, Ok(v)) => {
                assert!(stat_ended(&v).is_none(), "stats of {desc}: {v}");
                v
            }
            (Life::Dying | Life::SelfEnded(_), Ok(v)) => {
                if let Some(n) = stat_ended(&v) {
                    let mut allowed = s.allowed(0);
                    allowed.retain(|&r| r != 0);
                    assert!(
                        allowed.iter().any(|&r| end_name(r) == n),
                        "stats of {desc}: ended {n}: {v}"
                    );
                } else {
                    assert!(life == Life::Dying, "stats of {desc}: {v}");
                }
                v
            }
            (Life::Dying | Life::SelfEnded(_), Err(JSONBUS_ERR_NOT_FOUND)) => {
                // Forgotten once its end notice returned.
                let r = match life {
                    Life::SelfEnded(r) => r,
                    _ => ended_by
                        .unwrap_or_else(|| panic!("{desc} is forgotten but has not ended itself")),
                };
                self.subs[i].check_notice(&[r], "forgotten");
                return None;
            }
            (life, r) => panic!("stats of {desc} ({life:?}): {:?}", r.map_err(name)),
        };
        let Kind::Cb(c) = &self.subs[i].kind else {
            unreachable!()
        };
        let s = &self.subs[i];
        s.check_echo(&v);
        let k = counts(&v);
        let seen = lock(&c.shared.seen);
        let n = seen.got.len() as u64;
        let limit = s.opts.limit as u64;
        assert!(limit == 0 || k.max_queued <= limit, "stats of {desc}: {v}");
        if quiet {
            assert_eq!(k.delivered, n, "stats of {desc}: {v}");
            assert_eq!(k.failures, seen.failures(), "stats of {desc}: {v}");
            assert_eq!(k.queued, 0, "stats of {desc}: {v}");
            let r = k.delivered + k.dropped;
            assert!(
                s.routed.0 <= r && r <= s.routed.1,
                "stats of {desc}: delivered + dropped = {r}: {v}"
            );
        } else {
            // Read before what the callback saw: counted after it returned.
            assert!(k.delivered <= n, "stats of {desc}: {v}");
            assert!(
                k.delivered + k.dropped + k.queued <= s.routed.1,
                "stats of {desc}: {v}"
            );
        }
        Some(k)
    }

    fn stats_op(&mut self, slot: usize, a: u8) {
        let bus = self.bus(slot, a);
        let (ptr, serial) = (bus.ptr, bus.serial);
        let (id, index) = self.pick(a);
        let r = sub_stats(ptr, id);
        match index.filter(|&i| self.subs[i].bus == serial) {
            Some(i) => {
                self.check_stats(i, r, false);
            }
            None => assert_eq!(r.err(), Some(JSONBUS_ERR_NOT_FOUND), "stats of {id}"),
        }
    }

    fn flush(&mut self, slot: usize, t: u8) {
        let bus = self.bus(slot, t);
        let closed = bus.closed;
        let serial = bus.serial;
        let timeout = if t & 1 == 0 { -1 } else { 0 };
        if timeout < 0 && !closed {
            // flush waits for pulled messages too: take and release them first.
            self.quiesce(slot);
        }
        let pending = !closed && self.pull_held(serial) > 0;
        let ptr = self.slots[slot].as_ref().unwrap().ptr;
        let rc = jsonbus_flush(ptr, timeout);
        check_last(rc, "flush");
        trace!("  flush({timeout}): {}", name(rc));
        if timeout < 0 || closed {
            assert_eq!(rc, JSONBUS_OK, "flush({timeout}): {}", last_error());
        } else if pending {
            // Messages wait in pull queues or are held: they cannot be done.
            assert_eq!(rc, JSONBUS_ERR_TIMEOUT, "flush(0) with pull messages held");
        } else {
            assert!(
                rc == JSONBUS_OK || rc == JSONBUS_ERR_TIMEOUT,
                "flush(0): {}",
                name(rc)
            );
        }
        if rc == JSONBUS_OK {
            self.settled(slot, "after flush");
        }
    }

    /// Nothing is in flight on the bus in `slot`: check every subscription and the stats.
    fn settled(&mut self, slot: usize, why: &str) {
        let (ptr, serial) = {
            let b = self.slots[slot].as_ref().unwrap();
            (b.ptr, b.serial)
        };
        let mut live = 0;
        let (mut delivered, mut failures, mut waiting) = (0, 0, 0);
        let mine: Vec<usize> = (0..self.subs.len())
            .filter(|&i| self.subs[i].bus == serial)
            .collect();
        // Each group's members' delivered + dropped + queued: at least, at most.
        let mut group_counts: [Option<(u64, u64)>; 2] = [Some((0, 0)); 2];
        let mut group_seqs: [BTreeSet<u64>; 2] = Default::default();
        for &i in &mine {
            let s = &mut self.subs[i];
            let exact = s.opts.exact();
            if let Kind::Cb(c) = &mut s.kind {
                if c.life == Life::Dying {
                    // Its callback is done: whether its returns ended it is known now.
                    match lock(&c.shared.seen).ended_by {
                        Some(r) => c.life = Life::SelfEnded(r),
                        None => {
                            assert!(!exact, "{why}: {} has not ended itself", s.id);
                            c.life = Life::Live;
                        }
                    }
                    if c.life == Life::Live && s.opts.group.is_none() {
                        // Live all along: it was routed everything that may have been.
                        s.routed.0 = s.routed.1;
                    }
                }
            }
            let s = &self.subs[i];
            live += s.surely_live() as u64;
            s.check(why);
            let r = sub_stats(ptr, s.id);
            let k = self.check_stats(i, r, true);
            let s = &self.subs[i];
            let mine_counts = match &s.kind {
                Kind::Cb(c) => {
                    let seen = lock(&c.shared.seen);
                    delivered += seen.got.len() as u64;
                    failures += seen.failures();
                    if let Some(g) = s.opts.group {
                        for m in &seen.got {
                            assert!(
                                group_seqs[g].insert(m.0),
                                "{why}: group {:?}: two members got message {}",
                                GROUPS[g],
                                m.0
                            );
                        }
                    }
                    // From its stats now, or (forgotten) from those read in its end notice,
                    // which for SLOW may miss up to `queue_limit` being discarded.
                    k.map(|k| {
                        let r = k.delivered + k.dropped + k.queued;
                        (r, r)
                    })
                    .or_else(|| {
                        lock(&c.shared.notice).map(|n| {
                            let k = n.counts;
                            let r = k.delivered + k.dropped + k.queued;
                            match n.reason {
                                JSONBUS_END_SLOW => (r, r + s.opts.limit as u64),
                                _ => (r, r),
                            }
                        })
                    })
                }
                Kind::Pull(p) => {
                    delivered += p.taken.len() as u64;
                    waiting += p.queue.len() as u64;
                    if let Some(g) = s.opts.group {
                        for &q in p.taken.iter().chain(p.queue.iter().map(|m| &m.0)) {
                            assert!(
                                group_seqs[g].insert(q),
                                "{why}: group {:?}: two members got message {q}",
                                GROUPS[g]
                            );
                        }
                    }
                    let r = p.taken.len() as u64 + p.dropped + p.queue.len() as u64;
                    Some((r, r))
                }
            };
            if let Some(g) = s.opts.group {
                group_counts[g] = group_counts[g]
                    .zip(mine_counts)
                    .map(|(a, b)| (a.0 + b.0, a.1 + b.1));
            }
        }
        let held = self.held(serial) as u64;
        let bus = self.slots[slot].as_ref().unwrap();
        let st = stats(ptr);
        let ctx = format!(
            "{why}: {st}; model {:?}",
            (bus.seq, bus.unrouted, bus.routings, bus.groups, held)
        );
        assert_eq!(stat(&st, "published"), bus.seq, "{ctx}");
        assert_eq!(stat(&st, "delivered"), delivered, "{ctx}");
        assert_eq!(stat(&st, "callback_failures"), failures, "{ctx}");
        assert_eq!(stat(&st, "queued"), held, "{ctx}");
        assert_eq!(stat(&st, "timers"), bus.timers.len() as u64, "{ctx}");
        assert_eq!(stat(&st, "subscriptions"), live, "{ctx}");
        let u = stat(&st, "unrouted");
        assert!(
            bus.unrouted.0 <= u && u <= bus.unrouted.1,
            "unrouted: {ctx}"
        );
        let r = delivered + stat(&st, "dropped") - bus.timer_drops + waiting;
        assert!(
            bus.routings.0 <= r && r <= bus.routings.1,
            "delivered + dropped + waiting = {r}: {ctx}"
        );
        for (i, (reason, _)) in REASONS.iter().enumerate() {
            assert_eq!(
                rejected(&st, reason),
                bus.rejected[i],
                "rejected.{reason}: {ctx}"
            );
        }
        for g in 0..GROUPS.len() {
            if let Some(n) = group_counts[g] {
                let (lo, hi) = bus.groups[g];
                assert!(
                    lo <= n.1 && n.0 <= hi,
                    "group {:?}: its members' delivered + dropped + queued = {n:?}: {ctx}",
                    GROUPS[g]
                );
            }
        }
    }

    fn close(&mut self, slot: usize, t: u8) {
        let bus = self.bus(slot, t);
        let serial = bus.serial;
        let was_closed = bus.closed;
        let mut timeout = [-1, -1, 0, 10][t as usize % 4];
        if !was_closed && timeout < 0 && self.pull_held(serial) > 0 {
            // close(-1) would wait for ever for this thread to take and release them.
            match t & 0x10 {
                0 => timeout = 10,
                _ => self.quiesce(slot),
            }
        }
        let pending = !was_closed && self.pull_held(serial) > 0;
        let ptr = self.slots[slot].as_ref().unwrap().ptr;
        let rc = jsonbus_close(ptr, timeout);
        check_last(rc, "close");
        trace!("  close({timeout}): {}", name(rc));
        if timeout < 0 || was_closed {
            assert_eq!(
                rc,
                JSONBUS_OK,
                "close({timeout}), closed before {was_closed}: {}",
                last_error()
            );
        } else if pending {
            assert_eq!(
                rc, JSONBUS_ERR_TIMEOUT,
                "close({timeout}) with pull messages held"
            );
        } else {
            assert!(
                rc == JSONBUS_OK || rc == JSONBUS_ERR_TIMEOUT,
                "close({timeout}): {}",
                name(rc)
            );
        }
        let bus = self.slots[slot].as_mut().unwrap();
        bus.closed = true;
        World::timers_and_requests_done(bus, "after close");
        for s in self.subs.iter_mut().filter(|s| s.bus == serial) {
            let allowed = s.allowed(JSONBUS_END_CLOSED);
            match &mut s.kind {
                Kind::Cb(c) => {
                    c.shared.ended.store(true, SeqCst);
                    if matches!(c.life, Life::Live | Life::Dying) {
                        c.life = Life::Closed {
                            lossy: rc == JSONBUS_ERR_TIMEOUT,
                        };
                    }
                }
                Kind::Pull(p) if !p.released => {
                    p.ended.get_or_insert(JSONBUS_END_CLOSED);
                    p.dropped += p.queue.len() as u64;
                    p.queue.clear();
                }
                Kind::Pull(_) => {}
            }
            // Guarantee 13: every end notice has run before close returns.
            s.check_notice(&allowed, "after close");
        }
        self.settled(slot, "after close");
        assert_eq!(jsonbus_flush(ptr, -1), JSONBUS_OK);
        assert_eq!(jsonbus_unsubscribe(ptr, 1), JSONBUS_ERR_NOT_FOUND);
        self.check_fds(serial);
    }

    fn free(&mut self, slot: usize) {
        let Some(bus) = self.slots[slot].as_ref() else {
            return;
        };
        let serial = bus.serial;
        if !bus.closed && self.pull_held(serial) > 0 {
            // free closes without a time limit, which would wait for them for ever.
            self.close(slot, 3);
        }
        let mut bus = self.slots[slot].take().unwrap();
        jsonbus_free(bus.ptr);
        World::timers_and_requests_done(&mut bus, "after free");
        for s in self.subs.iter_mut().filter(|s| s.bus == serial) {
            let allowed = s.allowed(JSONBUS_END_CLOSED);
            match &mut s.kind {
                Kind::Cb(c) => {
                    c.shared.ended.store(true, SeqCst);
                    if matches!(c.life, Life::Live | Life::Dying) {
                        c.life = Life::Closed { lossy: false };
                    }
                }
                Kind::Pull(p) => {
                    assert!(p.queue.is_empty() || p.released, "{}", s.id);
                    p.released = true;
                    p.fd = None;
                }
            }
            s.check_notice(&allowed, "after free");
            s.check("after free");
        }
    }

    /// `jsonbus_cancel` of a timer: pending on this bus, or not.
    fn cancel(&mut self, slot: usize, a: u8) {
        let bus = self.bus(slot, a);
        let pending = !bus.timers.is_empty() && a % 4 != 3;
        let id = match pending {
            true => bus.timers[a as usize % bus.timers.len()],
            false => [0, -1, i64::MAX, 1][(a / 4 % 4) as usize],
        };
        let rc = jsonbus_cancel(bus.ptr, id);
        check_last(rc, "cancel");
        trace!("  cancel({id}): {}", name(rc));
        match pending {
            true => {
                assert_eq!(
                    rc,
                    JSONBUS_OK,
                    "cancel of pending timer {id}: {}",
                    last_error()
                );
                bus.timers.retain(|t| *t != id);
            }
            false => {
                // id 1 may be a pending timer of this bus (the first timer of the process)
                if id == 1 && rc == JSONBUS_OK {
                    bus.timers.retain(|t| *t != 1);
                } else {
                    assert_eq!(rc, JSONBUS_ERR_NOT_FOUND, "cancel({id})");
                }
            }
        }
    }

    /// Close or free: pending timers were discarded and every async request answered once.
    fn timers_and_requests_done(bus: &mut Bus, why: &str) {
        bus.timer_drops += bus.timers.len() as u64;
        bus.timers.clear();
        for r in &bus.asyncs {
            assert_eq!(
                r.calls.load(SeqCst),
                1,
                "{why}: a reply callback did not run once"
            );
        }
    }

    fn names(&self, a: u8, b: u8) {
        let r: i32 = match a % 4 {
            0 => (b % 8) as i32,
            1 => -(b as i32),
            2 => 999,
            _ => [i32::MIN, i32::MAX, 0x10001, 256][(b % 4) as usize],
        };
        assert_eq!(
            text(jsonbus_end_reason_name(r)),
            end_name(r),
            "jsonbus_end_reason_name({r})"
        );
        assert_eq!(name(JSONBUS_ERR_ENDED), "JSONBUS_ERR_ENDED");
        assert_eq!(name(JSONBUS_ERR_UNSUPPORTED), "JSONBUS_ERR_UNSUPPORTED");
        let codes: BTreeSet<i32> = END_NAMES.iter().map(|r| r.0).collect();
        assert!(
            codes.len() == 6 && codes.iter().all(|&c| c > 0),
            "JSONBUS_END_* are > 0 and distinct"
        );
    }
}

/// A message offered to a pull subscription, as its policy says (exact: only the fuzz thread
/// takes from it).
fn offer(p: &mut Pl, opts: &SOpts, msg: Msg, id: i64) {
    if opts.has_room(p.queue.len()) {
        p.queue.push_back(msg);
    } else {
        match opts.on_full {
            OnFull::Block => panic!(
                "a publish was accepted while pull subscription {id} held its queue_limit {} with on_full \"block\"",
                opts.limit
            ),
            OnFull::DropOldest => {
                p.queue.pop_front();
                p.dropped += 1;
                p.queue.push_back(msg);
            }
            OnFull::DropNew => p.dropped += 1,
            OnFull::End => {
                p.dropped += p.queue.len() as u64 + 1;
                p.queue.clear();
                p.ended = Some(JSONBUS_END_SLOW);
            }
        }
    }
    p.max_queued = p.max_queued.max(p.queue.len() as u64);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mut w = World {
        slots: [None, None],
        subs: Vec::new(),
        held: Vec::new(),
        next_serial: 0,
    };
    for _ in 0..96 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let slot = (op / 10 % 2) as usize;
        let call = (op / 20 * 10 + op % 10) % 24;
        let (a, b) = (input.u8(), input.u8());
        trace!("op {op}: call {call} slot {slot} ({a}, {b})");
        w.tick();
        let room = w.subs.len() < 24;
        match call {
            0 => w.new_bus(slot, a),
            1..=3 => w.publish(slot, a, b),
            4 | 5 if room => w.subscribe(slot, How::Plain, a, b, 0),
            6 => w.unsubscribe(slot, a),
            7 => w.flush(slot, a),
            8 => w.close(slot, a),
            9 => w.free(slot),
            10 | 19 => {
                let c = input.u8();
                match room {
                    true => w.subscribe(slot, How::With, a, b, c),
                    false => w.publish(slot, a, b),
                }
            }
            11 if room => w.subscribe(slot, How::Pull, a, b, 0),
            12 => w.next(slot, a, b),
            13 => w.release(a),
            14 => w.pull_fd(slot, a),
            15 => w.stats_op(slot, a),
            16 => {
                for _ in 0..2 + (a >> 5) % 4 {
                    w.publish(slot, a, b);
                }
            }
            17 => w.drain(slot, a, b),
            18 => w.names(a, b),
            20 => w.publish_as(slot, a, b, Send::Request),
            21 => w.publish_as(slot, a, b, Send::Async([0, -1][(a >> 7) as usize])),
            22 => w.publish_as(slot, a, b, Send::After),
            23 => w.cancel(slot, a),
            _ => w.publish(slot, a, b),
        }
    }
    for slot in 0..2 {
        if w.slots[slot].is_some() {
            w.close(slot, 0);
            w.free(slot);
        }
    }
    // Messages held past their bus's close and free stay valid until released.
    for h in std::mem::take(&mut w.held) {
        h.release();
    }
    for s in &mut w.subs {
        s.check_notice(&[], "at the end");
    }
});
