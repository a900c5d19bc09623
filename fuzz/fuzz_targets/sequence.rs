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
//! Opcodes 250-255 (which no committed input used; they meant calls 0-5 before) are the 2C
//! calls, with two argument bytes:
//!
//! | opcode | what |
//! |---|---|
//! | 250, 251 | `jsonbus_serve` of slot 0 / 1: its own name ("seq-a" / "seq-b"), the other slot's, NULL, malformed ("", ".x", 65 bytes, "a/b", not UTF-8, ...), NULL bus; options valid (`max_peers` 1, 2, 16), NULL or bad. Every reason that applies is allowed: NULL, TOPIC (with the rule in the message), OPTIONS, UNSUPPORTED (an attached handle), CLOSED, NAME_IN_USE (this bus serves already, or another live bus serves the name) |
//! | 252-255 | `jsonbus_attach`: slot 1 is freed and becomes a handle attached to slot 0's bus (served first under "seq-a" if it serves nothing; NO_BUS if it is closed), `publish_timeout_ms` 0 or 20; or NULL / malformed / unserved names (NULL, TOPIC, NO_BUS with `connect_timeout_ms` 0), bad options (OPTIONS); or, while attached, one more handle: LIMIT with `max_peers` 1, else freed at once |
//!
//! Attached: slots 0 and 1 are two views of ONE logical bus. Publishes through either reach
//! the subscriptions of both, in the hub's one `seq` order. After a publish through the
//! attached handle the model waits until the hub's `published` says it was numbered (so seq
//! and routing stay exact); after every message routed to a pull subscription (or a callback
//! one that ends when slow) in the attached handle, until its stats say it arrived (its
//! policy acts as deliveries arrive, so its queue, `jsonbus_next`, descriptor and stats stay
//! exact). Statuses are exact where the contract is (DISCONNECTED from publish, subscribe and
//! flush of the attached handle once its hub closed; PEER_GONE ends), FULL allowed for a
//! publish through the attached handle while it may lack the hub's credit (small hub, or
//! `publish_timeout_ms` 0), and a hub's own publishes count its credit for the attached
//! process as held. A flush(-1) of either drains both handles' pull subscriptions, flushes
//! both and checks both: every subscription received exactly its prediction (a prefix where
//! deliveries were on their way when a handle went away); stats per handle: the hub's
//! `published` counts every message, its `delivered` its own callbacks only (not what it
//! forwarded), its `subscriptions` its forwarders (not the inbox it keeps for the peer), its
//! `peers` 1 and `peers_dropped` 0; the attached handle's `published`, `delivered`,
//! `queued` (a unit per delivery waiting or handed out there), `subscriptions`, `rejected`,
//! `timers` are its own. Not made (the model cannot follow them): in the attached handle,
//! pull subscriptions that share a group or "block" at a limit, callback group members that
//! end when slow; publishes through it that the hub would park behind this thread's own
//! pull subscription. Group sums are not checked for groups with members in both handles.
//! Closing or freeing the hub waits until the attached handle answers DISCONNECTED and every
//! one of its subscriptions ended (PEER_GONE); closing the attached handle, until the hub
//! counts no peer. Findings 8-10 of fuzz/README.md are fixed and checked.
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
/// Names slots 0 and 1 serve; one nobody serves; malformed ones (the rule: 1-64 bytes of
/// `A-Za-z0-9._-`, not starting with '.').
const NAMES: [&str; 2] = ["seq-a", "seq-b"];
const UNSERVED: &str = "seq-none";
const BAD_NAMES: [&[u8]; 7] = [
    b"",
    b".x",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    b"a/b",
    b"a\xffb",
    b"a b",
    b"..",
];
const BAD_SERVE_OPTIONS: [&[u8]; 8] = [
    br#"{"max_peers":0}"#,
    br#"{"peer_ring_bytes":65537}"#,
    br#"{"peer_ring_bytes":32768}"#,
    br#"{"peer_stall_timeout_ms":-2}"#,
    br#"{"allow_group":2}"#,
    br#"{"max_peers":1,"max_peers":1}"#,
    br#"{"queue_capacity":1}"#,
    b"{\"max_peers\":\xff}",
];
const BAD_ATTACH_OPTIONS: [&[u8]; 4] = [
    br#"{"max_depth":3}"#,
    br#"{"connect_timeout_ms":-2}"#,
    br#"{"max_peers":1}"#,
    br#"{"queue_capacity":0}"#,
];

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
    /// Made through an attached handle: it may also end PEER_GONE.
    remote: bool,
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
        name != "JSONBUS_END_UNKNOWN" && (reason != JSONBUS_END_PEER_GONE || s.remote),
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
    /// What it received may be only the start of what was routed to it: deliveries on their
    /// way from the hub were lost when the hub or this handle went away.
    lossy: bool,
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
    /// Made through the attached handle in slot 1: the hub forwards its deliveries.
    remote: bool,
    /// The hub has surely let go of its forwarding subscription (it is only told of an end
    /// made in the attached process later, in the ring).
    hub_gone: bool,
    /// Unsubscribed by the fuzz thread: the hub has read of its end once a later flush is done.
    told_hub: bool,
}

impl Sub {
    fn possibly_live(&self) -> bool {
        match &self.kind {
            Kind::Cb(c) => matches!(c.life, Life::Live | Life::Dying),
            Kind::Pull(p) => p.ended.is_none() && !p.released,
        }
    }
    /// Whether the hub may still route to it: a subscription of the attached handle has a
    /// forwarder there until the hub reads of its end (or lets the process go).
    fn at_hub_possibly(&self) -> bool {
        match self.remote {
            true => !self.hub_gone,
            false => self.possibly_live(),
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
                _ if c.lossy => want.starts_with(&got),
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
        let remote = self.remote;
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
        // In the attached handle a delivery the hub routed before it read of the end may still
        // be on its way when the end notice runs: it is counted (dropped) by the bus when it
        // comes, not in the stats the notice saw.
        let lo = match n.reason {
            _ if c.lossy || remote => 0,
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
    /// The name it serves (a hub), and its `max_peers`.
    serving: Option<&'static str>,
    max_peers: usize,
    /// An attached handle (only ever in slot 1, attached to slot 0's bus).
    attached: bool,
    /// A hub: deliveries its attached handle's subscriptions were routed, which it counts in
    /// `delivered` when it forwards them (for sure, at most); a let-go of the attached process
    /// may count them again in `dropped`.
    forwards: (u64, u64),
    /// A hub: groups that had a member in the attached process (their sums are not checked).
    groups_remote: [bool; 2],
    /// An attached handle: lost deliveries on their way (its hub went away, or it closed), so
    /// its counts' lower bounds no longer hold.
    lossy: bool,
    /// A hub: an attached process was let go, discarding forwards not yet made.
    forwards_lost: bool,
}

/// What the reply callback of one async request saw.
#[derive(Default)]
struct AsyncRec {
    calls: AtomicI64,
    status: AtomicI64,
    /// Sent through an attached handle: the hub's answer that nothing matched comes later
    /// (NO_RESPONDERS), and a hub that goes away answers DISCONNECTED.
    remote: bool,
}

extern "C" fn on_reply(status: i32, reply: *const jsonbus_message, user_data: *mut c_void) {
    // SAFETY: our `AsyncRec`, kept until its bus is closed and checked.
    let r = unsafe { &*(user_data as *const AsyncRec) };
    assert!(
        status == JSONBUS_ERR_TIMEOUT
            || status == JSONBUS_ERR_CLOSED
            || (r.remote && status == JSONBUS_ERR_DISCONNECTED),
        "a reply callback got {} though nobody replies",
        name(status)
    );
    assert!(
        reply.is_null(),
        "a reply callback got a reply with {}",
        name(status)
    );
    trace!("  reply callback: {}", name(status));
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
    /// A hub would park it, taken from its attached process, until the fuzz thread makes room
    /// in one of its own pull subscriptions ("block" at its limit).
    parks: bool,
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
    /// Slot 1 is attached to slot 0's bus.
    link: Option<Link>,
}

/// Slot 1's handle is attached to the bus in slot 0, which serves `name`.
struct Link {
    hub: u64,
    peer: u64,
    /// The hub was closed or freed: the attached handle is disconnected.
    gone: bool,
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
            serving: None,
            max_peers: 0,
            attached: false,
            forwards: (0, 0),
            groups_remote: [false; 2],
            lossy: false,
            forwards_lost: false,
        });
    }

    /// The bus in `slot`, created first if there is none.
    fn bus(&mut self, slot: usize, b: u8) -> &mut Bus {
        if self.slots[slot].is_none() {
            self.new_bus(slot, b);
        }
        self.slots[slot].as_mut().unwrap()
    }

    /// Slot 1 is attached to slot 0's bus, and that hub is still there.
    fn link_live(&self) -> bool {
        self.link.as_ref().is_some_and(|l| !l.gone)
    }

    /// Whether the handles `a` and `b` are views of one logical bus now.
    fn same_bus(&self, a: u64, b: u64) -> bool {
        a == b
            || self
                .link
                .as_ref()
                .is_some_and(|l| !l.gone && ((a, b) == (l.hub, l.peer) || (b, a) == (l.hub, l.peer)))
    }

    /// The slot of the handle `serial`.
    fn slot_of(&self, serial: u64) -> Option<usize> {
        (0..2).find(|&i| self.slots[i].as_ref().is_some_and(|b| b.serial == serial))
    }

    fn ptr_of(&self, serial: u64) -> *mut jsonbus {
        self.slot_of(serial)
            .map_or(null_mut(), |i| self.slots[i].as_ref().unwrap().ptr)
    }

    /// The hub's credit window for its attached process (units of its capacity it holds).
    fn window(&self) -> usize {
        match self.link_live() {
            true => {
                let hub = self.slots[0].as_ref().unwrap();
                (hub.opts.queue_capacity as usize / (4 * hub.max_peers)).clamp(1, 1024)
            }
            false => 0,
        }
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

    /// What bus `serial` holds against its capacity: pull messages and pending timers. A hub
    /// also holds what its attached process's pull subscriptions have not released (each
    /// message once); an attached handle holds a unit per delivery waiting or handed out here.
    fn held(&self, serial: u64) -> usize {
        let timers = self
            .slots
            .iter()
            .flatten()
            .find(|b| b.serial == serial)
            .map_or(0, |b| b.timers.len());
        let hub = self.link.as_ref().filter(|l| !l.gone).map(|l| (l.hub, l.peer));
        let attached = self.slot_of(serial).is_some_and(|i| self.slots[i].as_ref().unwrap().attached);
        let pulls = match hub {
            Some((h, p)) if h == serial => {
                let mut seqs = BTreeSet::new();
                for s in self.subs.iter().filter(|s| s.bus == h || s.bus == p) {
                    if let Kind::Pull(q) = &s.kind {
                        seqs.extend(q.queue.iter().map(|m| m.0));
                    }
                }
                seqs.extend(
                    self.held
                        .iter()
                        .filter(|x| x.bus == h || x.bus == p)
                        .map(|x| x.msg.0),
                );
                seqs.len()
            }
            _ if attached => {
                let queued: usize = self
                    .subs
                    .iter()
                    .filter(|s| s.bus == serial)
                    .map(|s| match &s.kind {
                        Kind::Pull(q) => q.queue.len(),
                        Kind::Cb(_) => 0,
                    })
                    .sum();
                queued + self.held.iter().filter(|x| x.bus == serial).count()
            }
            _ => self.pull_held(serial),
        };
        pulls + timers
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
        // A hub holds units of its capacity as credit for its attached process (by no
        // message): a full bus for sure only by what the model counts, possibly with them.
        let credit = match self.link_live() && slot == 0 {
            true => self.window(),
            false => 0,
        };
        let mut r = Risk {
            must_full: held >= cap,
            may_full: cap < 65536 || held + credit >= cap,
            hang: held + credit >= cap,
            parks: false,
        };
        let targets: Vec<&Sub> = self
            .subs
            .iter()
            .filter(|s| {
                self.same_bus(s.bus, bus.serial)
                    && s.at_hub_possibly()
                    && matches(s.pattern.as_bytes(), topic.as_bytes())
            })
            .collect();
        // A subscription in the attached process has no limit at the hub (its forwarder):
        // its own limit holds up that process's link, never a publish.
        for s in targets.iter().filter(|s| s.opts.group.is_none() && !s.remote) {
            if s.opts.on_full != OnFull::Block || s.opts.limit == 0 {
                continue;
            }
            r.may_full = true;
            if let Kind::Pull(p) = &s.kind {
                if !s.opts.has_room(p.queue.len()) {
                    r.must_full = true;
                    r.hang = true;
                    r.parks = true;
                }
            }
        }
        for g in 0..GROUPS.len() {
            let members: Vec<&&Sub> = targets.iter().filter(|s| s.opts.group == Some(g)).collect();
            // Surely room: a pull member with room, or a callback member without a limit that
            // is surely still a member (a dying one may have left the group), or a member in
            // the attached process (no limit at the hub).
            let room = members.iter().any(|m| match &m.kind {
                _ if m.remote => m.surely_live(),
                Kind::Pull(p) => m.opts.has_room(p.queue.len()),
                Kind::Cb(_) => m.opts.limit == 0 && m.surely_live(),
            });
            let blockers: Vec<&&&Sub> = members
                .iter()
                .filter(|m| m.opts.on_full == OnFull::Block && !m.remote)
                .collect();
            if members.is_empty() || room || blockers.is_empty() {
                continue;
            }
            r.may_full = true;
            if blockers.iter().any(|m| m.cb().is_none()) {
                r.hang = true;
                r.parks = true;
            }
            if members.iter().all(|m| m.cb().is_none() && !m.remote) && blockers.len() == members.len() {
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
        // Through an attached handle (its timers stay here until they fire), to the hub.
        let attached = bus.attached;
        let to_hub = attached && how != Send::After;
        let linked = attached && self.link_live();
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
            true if attached => Risk::default(),
            true => self.risk(slot, topic),
            false => Risk::default(),
        };
        if to_hub && linked && allowed.is_ok() && !bus.closed {
            // It takes a unit of the hub's credit: FULL when none came within its
            // publish_timeout_ms (0: at once) - the hub's capacity is small, or it is full.
            let hub = self.slots[0].as_ref().unwrap();
            let cap = hub.opts.queue_capacity as usize;
            risk.may_full = bus.opts.publish_timeout_ms == 0
                || cap < 65536
                || self.held(hub.serial) + self.window() >= cap;
            let at_hub = self.risk(0, topic);
            if at_hub.parks {
                // The hub would hold it (and everything behind it in the ring) until this
                // thread takes from its own pull subscription: the model does not follow.
                trace!("  publish {topic:?} through the attached handle skipped: the hub would park it");
                return;
            }
        }
        if how == Send::After {
            // A timer only takes capacity now; subscriptions' limits matter when it fires.
            let held = self.held(bus.serial);
            let cap = bus.opts.queue_capacity as usize;
            // A hub's credit for its attached process takes capacity too.
            let credit = match slot == 0 && self.link_live() {
                true => self.window(),
                false => 0,
            };
            risk = Risk {
                must_full: risk.must_full && held >= cap,
                may_full: held + credit >= cap,
                hang: held + credit >= cap,
                parks: false,
            };
        }
        // Whether a subscription matches for sure, or may (a dying one may have ended).
        let matching = |surely: bool| {
            self.subs.iter().any(|s| {
                self.same_bus(s.bus, bus.serial)
                    && matches(s.pattern.as_bytes(), topic.as_bytes())
                    && match surely {
                        true => s.surely_live(),
                        false => s.at_hub_possibly(),
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
                let r = Box::new(AsyncRec {
                    remote: attached,
                    ..AsyncRec::default()
                });
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
        // What an accepted request returns: nobody replies. Through an attached handle the
        // hub's answer that nothing matched comes later (see fuzz/README.md, findings).
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
        } else if attached && !linked && allowed.is_ok() {
            // Guarantee 23: the hub went away (a timer, which could never publish, too).
            ok_codes = vec![JSONBUS_ERR_DISCONNECTED];
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
        if attached {
            // The hub numbers it when it reads it: wait for that, so that seq and routing are
            // what the model says (nothing else publishes meanwhile).
            let seq = self.slots[0].as_ref().unwrap().seq + 1;
            self.await_hub_published(seq, topic);
            self.slots[0].as_mut().unwrap().seq = seq;
            let msg: Msg = (seq, topic.as_bytes().to_vec(), payload.to_vec());
            self.route(0, topic, msg);
            return;
        }
        let msg: Msg = (bus.seq, topic.as_bytes().to_vec(), payload.to_vec());
        self.route(slot, topic, msg);
    }

    /// Waits until the hub has taken the attached handle's publish number `seq`.
    fn await_hub_published(&self, seq: u64, topic: &str) {
        let hub = self.slots[0].as_ref().unwrap().ptr;
        let start = std::time::Instant::now();
        loop {
            let st = stats(hub);
            let n = stat(&st, "published");
            assert!(
                n <= seq,
                "the hub numbered {n} messages; the model knows of {seq}: {st}"
            );
            if n == seq {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "the hub did not take the attached handle's publish on {topic:?} within 2 s: {st}"
            );
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// Where an accepted message went. `slot` is the bus that numbered it (the hub, for a
    /// message of a linked pair); subscriptions of both handles of a linked pair are routed.
    fn route(&mut self, slot: usize, topic: &str, msg: Msg) {
        let (serial, ptr) = {
            let b = self.slots[slot].as_ref().unwrap();
            (b.serial, b.ptr)
        };
        let peer = self.link.as_ref().filter(|l| !l.gone && l.hub == serial).map(|l| l.peer);
        // Routings at the hub (its forwarders included), at the attached handle, forwards.
        let (mut sure, mut maybe) = (0u64, 0u64);
        let (mut peer_sure, mut peer_maybe) = (0u64, 0u64);
        let (mut fwd_sure, mut fwd_maybe) = (0u64, 0u64);
        let mut ask_slow = Vec::new();
        let mut arrivals = Vec::new();
        let mut group_sure = [false; 2];
        let mut group_any = [false; 2];
        let hits: Vec<usize> = (0..self.subs.len())
            .filter(|&i| {
                let s = &self.subs[i];
                self.same_bus(s.bus, serial)
                    && s.at_hub_possibly()
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
            let remote = s.remote;
            if !s.possibly_live() {
                // Ended in the attached process, and the hub may not know yet: it forwards,
                // the attached process drops it (counted there as dropped).
                maybe += 1;
                fwd_maybe += 1;
                peer_maybe += 1;
                continue;
            }
            let opts = s.opts;
            let surely = match &mut s.kind {
                Kind::Cb(c) => {
                    c.cand.push(msg.clone());
                    let surely = c.life != Life::Dying;
                    if !surely {
                        s.routed.1 += 1;
                    } else {
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
                        if remote && surely {
                            arrivals.push(i);
                        }
                    }
                    surely
                }
                Kind::Pull(p) => {
                    s.routed.0 += 1;
                    s.routed.1 += 1;
                    offer(p, &opts, msg.clone(), s.id);
                    if remote {
                        arrivals.push(i);
                    }
                    true
                }
            };
            match (surely, remote) {
                (true, false) => sure += 1,
                (false, false) => maybe += 1,
                (true, true) => {
                    (sure, peer_sure, fwd_sure) = (sure + 1, peer_sure + 1, fwd_sure + 1);
                }
                (false, true) => {
                    (maybe, peer_maybe, fwd_maybe) = (maybe + 1, peer_maybe + 1, fwd_maybe + 1);
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
            let remote_members = members.iter().filter(|&&i| self.subs[i].remote).count() as u64;
            if remote_members > 0 {
                // The hub may forward it to one of them (counted in its `delivered`).
                let bus = self.slots[slot].as_mut().unwrap();
                bus.groups_remote[g] = true;
                fwd_maybe += 1;
                peer_maybe += 1;
            }
            self.route_group(ptr, g, &members, &msg, &mut ask_slow);
        }
        let bus = self.slots[slot].as_mut().unwrap();
        bus.routings.0 += sure;
        bus.routings.1 += sure + maybe;
        bus.unrouted.0 += (sure + maybe == 0) as u64;
        bus.unrouted.1 += (sure == 0) as u64;
        bus.forwards.0 += fwd_sure;
        bus.forwards.1 += fwd_sure + fwd_maybe;
        if let Some(p) = peer.and_then(|p| self.slot_of(p)) {
            let pb = self.slots[p].as_mut().unwrap();
            pb.routings.0 += peer_sure;
            pb.routings.1 += peer_sure + peer_maybe;
        }
        // What the model predicts exactly in the attached process must have arrived there
        // before the next op looks (its policies act as deliveries arrive).
        for i in arrivals {
            self.await_arrival(i);
        }
        for i in ask_slow {
            self.ask_slow(i);
        }
        self.check_fds(serial);
        if let Some(p) = peer {
            self.check_fds(p);
        }
    }

    /// Waits until a delivery routed to subscription `i` of the attached handle has arrived:
    /// a pull subscription's stats are what the model says; one that ends when slow has
    /// counted every message routed to it, or has ended.
    fn await_arrival(&self, i: usize) {
        let s = &self.subs[i];
        let ptr = self.ptr_of(s.bus);
        let start = std::time::Instant::now();
        loop {
            let r = sub_stats(ptr, s.id);
            let done = match (&s.kind, &r) {
                (Kind::Pull(p), Ok(v)) => {
                    let want = Counts {
                        queued: p.queue.len() as u64,
                        max_queued: p.max_queued,
                        delivered: p.taken.len() as u64,
                        dropped: p.dropped,
                        failures: 0,
                    };
                    counts(v) == want && stat_ended(v).as_deref() == p.ended.map(end_name)
                }
                (Kind::Cb(_), Ok(v)) => {
                    let k = counts(v);
                    stat_ended(v).is_some() || k.delivered + k.dropped + k.queued >= s.routed.0
                }
                (Kind::Cb(_), Err(JSONBUS_ERR_NOT_FOUND)) => true,
                (_, Err(c)) => panic!("stats of {} in the attached handle: {}", s.desc(), name(*c)),
            };
            if done {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "a delivery to {} in the attached handle did not arrive within 2 s: {:?}",
                s.desc(),
                r
            );
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
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
                // A member in the attached process has no limit at the hub.
                let room = match &o.kind {
                    _ if o.remote => o.surely_live(),
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
    fn ask_slow(&mut self, i: usize) {
        let s = &self.subs[i];
        let ptr = self.ptr_of(s.bus);
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
        // Through the attached handle: the hub forwards its deliveries.
        let remote = self.slots[slot].as_ref().unwrap().attached;
        let valid_now = !closed && text.is_ok() && topic_ok(pattern.as_bytes(), true);
        if remote && valid_now && self.link_live() {
            // What the model cannot follow across processes is not made (see fuzz/README.md):
            // a pull subscription that would hold up the attached process's link ("block"
            // at its limit) or that shares a group (which member the hub picks, seen only
            // later there), and a callback group member that ends when slow (its end is
            // seen only later).
            let skip = match how {
                How::Pull => opts.group.is_some() || (opts.limit > 0 && opts.on_full == OnFull::Block),
                _ => opts.group.is_some() && opts.may_end_slow(),
            };
            if skip {
                trace!("  subscribe {pattern:?} {text:?} through the attached handle: not made");
                return;
            }
        }
        let shared = Box::new(Shared {
            id: AtomicI64::new(0),
            bus: AtomicPtr::new(ptr),
            returns,
            remote,
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
            vec![JSONBUS_ERR_CLOSED as i64]
        } else if remote && valid_now && !self.link_live() {
            // The hub went away (guarantee 23).
            vec![JSONBUS_ERR_DISCONNECTED as i64]
        } else if closed {
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
                lossy: false,
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
            remote,
            hub_gone: false,
            told_hub: false,
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
            // Ended by this call: it told the hub (in the ring) before it returned.
            let told = p.ended.is_none();
            p.released = true;
            p.fd = None;
            p.dropped += p.queue.len() as u64;
            p.queue.clear();
            p.ended.get_or_insert(JSONBUS_END_UNSUBSCRIBED);
            s.told_hub |= told;
            return;
        }
        // An unsubscribe returns once the end is complete, after the hub was told of it.
        s.told_hub = true;
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
                (c.lossy || s.routed.0 <= r) && r <= s.routed.1,
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
        let serial = bus.serial;
        if self.link_live() && self.link.as_ref().is_some_and(|l| l.hub == serial || l.peer == serial) {
            return self.flush_linked(slot, t);
        }
        let bus = self.slots[slot].as_ref().unwrap();
        if bus.attached && !bus.closed {
            // Its hub went away (guarantee 23).
            let rc = jsonbus_flush(bus.ptr, if t & 1 == 0 { -1 } else { 0 });
            check_last(rc, "flush");
            assert_eq!(rc, JSONBUS_ERR_DISCONNECTED, "flush of an attached handle whose hub is gone: {}", last_error());
            return;
        }
        let closed = bus.closed;
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
        // A hub's `delivered` counts its own callbacks only: what it forwards to its attached
        // process counts there.
        let d = stat(&st, "delivered");
        assert_eq!(
            d, delivered,
            "delivered: the model says {delivered} here (forwards {:?} not counted): {ctx}",
            bus.forwards
        );
        assert_eq!(stat(&st, "callback_failures"), failures, "{ctx}");
        assert_eq!(stat(&st, "queued"), held, "{ctx}");
        assert_eq!(stat(&st, "timers"), bus.timers.len() as u64, "{ctx}");
        // A hub's subscriptions include its attached process's: a forwarder for each, until
        // the hub reads of its end (not the one it keeps for the replies to its requests).
        let (mut lo, mut hi) = (live, live);
        if let Some(l) = self.link.as_ref().filter(|l| !l.gone && l.hub == serial) {
            for s in self.subs.iter().filter(|s| s.bus == l.peer) {
                lo += s.surely_live() as u64;
                hi += s.at_hub_possibly() as u64;
            }
        }
        let n = stat(&st, "subscriptions");
        assert!(lo <= n && n <= hi, "subscriptions: the model says {lo}..={hi}: {ctx}");
        if bus.serving.is_some() || bus.forwards != (0, 0) || self.link.as_ref().is_some_and(|l| l.hub == serial) {
            let peers = self.link.as_ref().is_some_and(|l| !l.gone && l.hub == serial) as u64;
            assert!(
                st.get("peers").is_none() && bus.closed
                    || (stat(&st, "peers"), stat(&st, "peers_dropped")) == (peers, 0),
                "peers: the model says {peers}, none dropped: {ctx}"
            );
        }
        let u = stat(&st, "unrouted");
        assert!(
            bus.unrouted.0 <= u && u <= bus.unrouted.1,
            "unrouted: {ctx}"
        );
        // Deliveries on their way to an attached process are neither delivered nor dropped
        // there when its subscription ends or the hub goes; a hub may count a forwarded
        // delivery again as dropped when it lets that process go.
        let r = d + stat(&st, "dropped") - bus.timer_drops + waiting;
        // Routings to forwarders count at the attached process, not here.
        let lo = match bus.attached {
            true => 0,
            false => bus.routings.0.saturating_sub(bus.forwards.1),
        };
        assert!(
            lo <= r && r <= bus.routings.1 + bus.forwards.1,
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
            if bus.attached || bus.groups_remote[g] {
                // Members in two processes: not summed (see fuzz/README.md).
                continue;
            }
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
        // A hub's close lets its attached handle finish what it delivered there first: pull
        // messages waiting or held in that handle count as the hub's own.
        let peer = self
            .link
            .as_ref()
            .filter(|l| !l.gone && l.hub == serial)
            .map(|l| l.peer);
        let held = |w: &World| w.pull_held(serial) + peer.map_or(0, |p| w.pull_held(p));
        if !was_closed && timeout < 0 && held(self) > 0 {
            // close(-1) would wait for ever for this thread to take and release them.
            match t & 0x10 {
                0 => timeout = 10,
                _ => {
                    self.quiesce(slot);
                    if peer.is_some() {
                        self.quiesce(1);
                    }
                }
            }
        }
        let pending = !was_closed && held(self) > 0;
        let ptr = self.slots[slot].as_ref().unwrap().ptr;
        let rc = jsonbus_close(ptr, timeout);
        check_last(rc, "close");
        trace!("  close({timeout}): {}", name(rc));
        if !was_closed {
            // A closed bus serves no name; a hub lets its attached handle go first.
            let bus = self.slots[slot].as_mut().unwrap();
            bus.serving = None;
            let attached = bus.attached;
            match (slot, attached) {
                (0, _) => self.hub_closed(),
                (_, true) => self.peer_closed(),
                _ => {}
            }
        }
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
                            lossy: rc == JSONBUS_ERR_TIMEOUT || c.lossy,
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
        trace!("  free");
        if !bus.closed && slot == 0 {
            // The hub lets its attached handle go first; the handle is in slot 1 still.
            let attached = self.link.as_ref().is_some_and(|l| l.hub == serial);
            self.slots[0] = Some(bus);
            if attached {
                self.hub_closed();
            }
            bus = self.slots[0].take().unwrap();
        } else if bus.attached {
            self.slots[slot] = Some(bus);
            self.peer_closed();
            bus = self.slots[slot].take().unwrap();
        }
        World::timers_and_requests_done(&mut bus, "after free");
        for s in self.subs.iter_mut().filter(|s| s.bus == serial) {
            let allowed = s.allowed(JSONBUS_END_CLOSED);
            match &mut s.kind {
                Kind::Cb(c) => {
                    c.shared.ended.store(true, SeqCst);
                    if matches!(c.life, Life::Live | Life::Dying) {
                        c.life = Life::Closed { lossy: c.lossy };
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

    // -----------------------------------------------------------------------------------
    // 2C: serve and attach

    /// `jsonbus_serve` of the bus in `slot`: a valid name (its own, or the other slot's), a
    /// NULL or malformed one, NULL bus; options valid (`max_peers` 1, 2 or 16), NULL, or bad.
    fn serve(&mut self, slot: usize, a: u8, b: u8) {
        self.bus(slot, a);
        let bus = self.slots[slot].as_ref().unwrap();
        let (ptr, serial, closed, attached) = (bus.ptr, bus.serial, bus.closed, bus.attached);
        let (name, bad_name): (Option<Vec<u8>>, bool) = match a % 16 {
            0..=9 => (Some(NAMES[slot].as_bytes().to_vec()), false),
            10 => (Some(NAMES[1 - slot].as_bytes().to_vec()), false),
            11 => (None, false),
            _ => (Some(BAD_NAMES[(a >> 4) as usize % BAD_NAMES.len()].to_vec()), true),
        };
        let null_bus = a % 16 == 11 && b & 0x80 != 0;
        let max_peers = [1, 2, 16, 16][(b & 3) as usize];
        let (text, bad_options): (Option<Vec<u8>>, bool) = match (b >> 2) % 8 {
            0..=4 => (
                Some(
                    format!(
                        "{{\"max_peers\":{max_peers},\"peer_ring_bytes\":65536,\"peer_stall_timeout_ms\":{},\"allow_group\":{}}}",
                        [-1, 10000][(b >> 5 & 1) as usize],
                        b >> 6 & 1
                    )
                    .into_bytes(),
                ),
                false,
            ),
            5 => (None, false),
            _ => (Some(BAD_SERVE_OPTIONS[(b >> 5) as usize % BAD_SERVE_OPTIONS.len()].to_vec()), true),
        };
        let max_peers = if text.is_none() { 16 } else { max_peers };
        let in_use = !bad_name
            && name.as_ref().is_some_and(|n| {
                self.slots
                    .iter()
                    .flatten()
                    .any(|o| o.serving.is_some_and(|s| s.as_bytes() == n.as_slice()))
            });
        let mut why = Vec::new();
        if null_bus || name.is_none() {
            why.push(JSONBUS_ERR_NULL);
        }
        if bad_name {
            why.push(JSONBUS_ERR_TOPIC);
        }
        if bad_options {
            why.push(JSONBUS_ERR_OPTIONS);
        }
        if !null_bus {
            if attached {
                why.push(JSONBUS_ERR_UNSUPPORTED);
            }
            if closed {
                why.push(JSONBUS_ERR_CLOSED);
            }
            if in_use || bus.serving.is_some() {
                why.push(JSONBUS_ERR_NAME_IN_USE);
            }
        }
        let cname = name.as_ref().map(|n| CString::new(n.clone()).unwrap());
        let ctext = text.as_ref().map(|t| CString::new(t.clone()).unwrap());
        let rc = jsonbus_serve(
            if null_bus { null_mut() } else { ptr },
            cname.as_ref().map_or(null(), |c| c.as_ptr()),
            ctext.as_ref().map_or(null(), |c| c.as_ptr()),
        );
        check_last(rc, "jsonbus_serve");
        trace!(
            "  serve {:?} {:?} (bus {serial}{}): {}",
            name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()),
            text.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
            if null_bus { " NULL" } else { "" },
            name_of(rc)
        );
        match why.is_empty() {
            true => assert_eq!(rc, JSONBUS_OK, "jsonbus_serve: {}", last_error()),
            false => {
                assert!(
                    why.contains(&rc),
                    "jsonbus_serve returned {} ({}); expected one of {:?}",
                    name_of(rc),
                    last_error(),
                    why.iter().map(|&c| name_of(c)).collect::<Vec<_>>()
                );
                // "with the rule in the message", also for a name that is not UTF-8
                if rc == JSONBUS_ERR_TOPIC {
                    assert!(last_error().contains("1-64 bytes"), "{}", last_error());
                }
                return;
            }
        }
        let bus = self.slots[slot].as_mut().unwrap();
        bus.serving = Some(if a % 16 == 10 { NAMES[1 - slot] } else { NAMES[slot] });
        bus.max_peers = max_peers;
        let st = stats(ptr);
        assert_eq!((stat(&st, "peers"), stat(&st, "peers_dropped")), (0, 0), "{st}");
    }

    /// `jsonbus_attach`: slot 1 becomes a handle attached to slot 0's bus (served first under
    /// "seq-a" if it serves no name); or a NULL, malformed or unserved name, bad options; or,
    /// while attached, one more handle (LIMIT with `max_peers` 1, else freed at once).
    fn attach(&mut self, a: u8, b: u8) {
        let timeout = [0, 20][(b & 1) as usize];
        let threads = 1 + (b >> 1 & 1);
        let mut valid = format!(
            "{{\"publish_timeout_ms\":{timeout},\"connect_timeout_ms\":0,\"dispatcher_threads\":{threads}"
        );
        if b & 4 != 0 {
            valid.push_str(",\"queue_capacity\":65536,\"dispatcher_spin_us\":0");
        }
        valid.push('}');
        let bad_options = b >> 5 == 7;
        let text = match bad_options {
            true => BAD_ATTACH_OPTIONS[(b >> 3 & 3) as usize].to_vec(),
            false => valid.into_bytes(),
        };
        let variant = a % 16;
        let probe = |name: Option<&[u8]>, want: &[i32]| {
            let cname = name.map(|n| CString::new(n.to_vec()).unwrap());
            let ctext = CString::new(text.clone()).unwrap();
            let h = jsonbus_attach(cname.as_ref().map_or(null(), |c| c.as_ptr()), ctext.as_ptr());
            let code = jsonbus_last_status();
            trace!(
                "  attach {:?} {:?}: {}",
                name.map(String::from_utf8_lossy),
                String::from_utf8_lossy(&text),
                if h.is_null() { name_of(code) } else { "a handle".into() }
            );
            if !h.is_null() {
                jsonbus_free(h);
                panic!("jsonbus_attach({:?}) gave a handle; expected {:?}", name.map(String::from_utf8_lossy), want.iter().map(|&c| name_of(c)).collect::<Vec<_>>());
            }
            check_last(code, "jsonbus_attach");
            assert!(
                want.contains(&code),
                "jsonbus_attach({:?}) failed with {} ({}); expected one of {:?}",
                name.map(String::from_utf8_lossy),
                name_of(code),
                last_error(),
                want.iter().map(|&c| name_of(c)).collect::<Vec<_>>()
            );
            if code == JSONBUS_ERR_TOPIC {
                assert!(last_error().contains("1-64 bytes"), "{}", last_error());
            }
        };
        let with_options = |code: i32| match bad_options {
            true => vec![code, JSONBUS_ERR_OPTIONS],
            false => vec![code],
        };
        match variant {
            10 => return probe(None, &with_options(JSONBUS_ERR_NULL)),
            11..=14 => {
                let n = BAD_NAMES[(variant as usize - 11 + (b as usize >> 3)) % BAD_NAMES.len()];
                return probe(Some(n), &with_options(JSONBUS_ERR_TOPIC));
            }
            15 => return probe(Some(UNSERVED.as_bytes()), &with_options(JSONBUS_ERR_NO_BUS)),
            _ => {}
        }
        if bad_options {
            let name = self.slots[0].as_ref().and_then(|b| b.serving).unwrap_or(NAMES[0]);
            return probe(Some(name.as_bytes()), &[JSONBUS_ERR_OPTIONS]);
        }
        if variant == 9 && self.link_live() {
            // One more attached handle, freed at once (or refused by max_peers 1).
            let hub = self.slots[0].as_ref().unwrap();
            let (name, max_peers) = (hub.serving.unwrap(), hub.max_peers);
            if max_peers == 1 {
                // Finding 8 (fixed): the refusal came as DISCONNECTED.
                return probe(Some(name.as_bytes()), &[JSONBUS_ERR_LIMIT]);
            }
            let cname = CString::new(name).unwrap();
            let ctext = CString::new(text).unwrap();
            let h = jsonbus_attach(cname.as_ptr(), ctext.as_ptr());
            assert!(!h.is_null(), "a second jsonbus_attach({name:?}): {}", last_error());
            check_last(JSONBUS_OK, "jsonbus_attach");
            self.await_peers(2);
            jsonbus_free(h);
            self.await_peers(1);
            trace!("  attach {name:?} once more, freed");
            return;
        }
        // Slot 1 is replaced: free what it held first (with max_peers 1 an attached handle
        // there would be refused the place).
        self.free(1);
        self.bus(0, b);
        let hub = self.slots[0].as_ref().unwrap();
        if hub.closed {
            // A closed bus serves nothing.
            return probe(Some(NAMES[0].as_bytes()), &[JSONBUS_ERR_NO_BUS]);
        }
        if hub.serving.is_none() {
            self.serve(0, 0, b & 0x63);
            assert!(self.slots[0].as_ref().unwrap().serving.is_some());
        }
        let hub = self.slots[0].as_ref().unwrap();
        let (name, hub_serial, hub_ptr, hub_opts) = (hub.serving.unwrap(), hub.serial, hub.ptr, hub.opts.clone());
        let cname = CString::new(name).unwrap();
        let ctext = CString::new(text.clone()).unwrap();
        let ptr = jsonbus_attach(cname.as_ptr(), ctext.as_ptr());
        trace!("  attach {name:?} {:?}: {ptr:?}", String::from_utf8_lossy(&text));
        assert!(!ptr.is_null(), "jsonbus_attach({name:?}): {}", last_error());
        check_last(JSONBUS_OK, "jsonbus_attach");
        let st = stats(hub_ptr);
        assert_eq!(stat(&st, "peers"), 1, "the hub once jsonbus_attach returned: {st}");
        self.next_serial += 1;
        let serial = self.next_serial;
        self.slots[1] = Some(Bus {
            ptr,
            serial,
            opts: Opts {
                dispatcher_threads: threads as i64,
                queue_capacity: 65536,
                publish_timeout_ms: timeout,
                // The hub's.
                max_message_bytes: hub_opts.max_message_bytes,
                max_depth: hub_opts.max_depth,
                dispatcher_spin_us: if b & 4 != 0 { 0 } else { 100 },
            },
            closed: false,
            seq: 0,
            rejected: [0; 6],
            unrouted: (0, 0),
            routings: (0, 0),
            groups: [(0, 0); 2],
            timers: Vec::new(),
            timer_drops: 0,
            asyncs: Vec::new(),
            serving: None,
            max_peers: 0,
            attached: true,
            forwards: (0, 0),
            groups_remote: [false; 2],
            lossy: false,
            forwards_lost: false,
        });
        self.link = Some(Link {
            hub: hub_serial,
            peer: serial,
            gone: false,
        });
    }

    /// Waits until the hub in slot 0 counts `n` attached processes (it notices one that went
    /// away within 100 ms, guarantee 23; allowed here: 2 s).
    fn await_peers(&self, n: u64) {
        let hub = self.slots[0].as_ref().unwrap().ptr;
        let start = std::time::Instant::now();
        loop {
            let st = stats(hub);
            assert_eq!(stat(&st, "peers_dropped"), 0, "the hub dropped a well-behaved attached handle: {st}");
            if stat(&st, "peers") == n {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "the hub does not count {n} attached processes within 2 s: {st}"
            );
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    /// The attached handle in slot 1 was closed or freed: the hub lets it go.
    fn peer_closed(&mut self) {
        let Some(link) = self.link.take() else { return };
        for s in self.subs.iter_mut().filter(|s| s.bus == link.peer) {
            s.hub_gone = true;
            if let Kind::Cb(c) = &mut s.kind {
                c.lossy = true;
            }
        }
        if link.gone {
            return;
        }
        if let Some(hub) = self.slots[0].as_mut() {
            hub.forwards_lost = true;
        }
        self.await_peers(0);
    }

    /// The hub in slot 0 was closed or freed: the attached handle notices (its flush answers
    /// DISCONNECTED), and each of its subscriptions ends PEER_GONE once what it received was
    /// delivered (a pull subscription keeps its queue).
    fn hub_closed(&mut self) {
        let Some(link) = self.link.as_mut() else { return };
        if link.gone {
            return;
        }
        link.gone = true;
        let peer = link.peer;
        let slot = self.slot_of(peer).unwrap();
        let ptr = self.slots[slot].as_ref().unwrap().ptr;
        self.slots[slot].as_mut().unwrap().lossy = true;
        let start = std::time::Instant::now();
        loop {
            let rc = jsonbus_flush(ptr, 0);
            check_last(rc, "flush of the attached handle after its hub closed");
            if rc == JSONBUS_ERR_DISCONNECTED {
                break;
            }
            assert!(
                rc == JSONBUS_ERR_TIMEOUT || rc == JSONBUS_OK,
                "flush(0) of an attached handle whose hub is closing: {}",
                name(rc)
            );
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "the attached handle still does not answer DISCONNECTED 2 s after its hub closed"
            );
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        for i in 0..self.subs.len() {
            let s = &self.subs[i];
            if s.bus != peer {
                continue;
            }
            let live = s.possibly_live();
            let desc = s.desc();
            self.subs[i].hub_gone = true;
            if !live {
                if let Kind::Cb(c) = &mut self.subs[i].kind {
                    c.lossy = true;
                }
                continue;
            }
            let start = std::time::Instant::now();
            let reason = loop {
                match sub_stats(ptr, self.subs[i].id) {
                    Ok(v) => {
                        if let Some(n) = stat_ended(&v) {
                            break END_NAMES.iter().find(|r| r.1 == n).unwrap().0;
                        }
                    }
                    Err(JSONBUS_ERR_NOT_FOUND) => {
                        // Forgotten: its end notice ran.
                        let Kind::Cb(c) = &self.subs[i].kind else {
                            panic!("{desc} is unknown after its hub closed")
                        };
                        let n = *lock(&c.shared.notice);
                        break n.map_or(JSONBUS_END_PEER_GONE, |n| n.reason);
                    }
                    Err(c) => panic!("stats of {desc}: {}", name(c)),
                }
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(2),
                    "{desc} has not ended 2 s after its hub closed: {:?} bus {}",
                    sub_stats(ptr, self.subs[i].id),
                    stats(ptr)
                );
                std::thread::sleep(std::time::Duration::from_micros(200));
            };
            let s = &mut self.subs[i];
            let mut allowed = s.allowed(JSONBUS_END_PEER_GONE);
            if s.opts.may_end_slow() {
                allowed.push(JSONBUS_END_SLOW);
            }
            assert!(
                allowed.contains(&reason),
                "{desc} ended {} after its hub closed; the model allows {:?}",
                end_name(reason),
                allowed.iter().map(|&r| end_name(r)).collect::<Vec<_>>()
            );
            trace!("  {} ended {}", s.id, end_name(reason));
            match &mut s.kind {
                Kind::Cb(c) => {
                    c.life = Life::SelfEnded(reason);
                    c.lossy = true;
                }
                Kind::Pull(p) => {
                    p.ended = Some(reason);
                }
            }
        }
        self.check_fds(peer);
    }

    /// A flush of either handle of a linked pair. With -1: both handles' pull subscriptions
    /// are drained and held messages released first, then the attached handle and the hub are
    /// flushed (so everything published before is done everywhere), and both are checked.
    fn flush_linked(&mut self, slot: usize, t: u8) {
        let timeout = if t & 1 == 0 { -1 } else { 0 };
        if timeout == 0 {
            let ptr = self.slots[slot].as_ref().unwrap().ptr;
            let hub = self.link.as_ref().unwrap().hub;
            let pending = self.held(hub) > self.slots[0].as_ref().unwrap().timers.len();
            let rc = jsonbus_flush(ptr, 0);
            check_last(rc, "flush");
            trace!("  flush(0) of a linked handle: {}", name(rc));
            match pending {
                true => assert_eq!(rc, JSONBUS_ERR_TIMEOUT, "flush(0) with pull messages held"),
                false => assert!(rc == JSONBUS_OK || rc == JSONBUS_ERR_TIMEOUT, "flush(0): {}", name(rc)),
            }
            return;
        }
        self.quiesce(1);
        self.quiesce(0);
        for s in [1, 0] {
            let ptr = self.slots[s].as_ref().unwrap().ptr;
            let rc = jsonbus_flush(ptr, -1);
            check_last(rc, "flush");
            trace!("  flush(-1) of slot {s} (linked): {}", name(rc));
            assert_eq!(rc, JSONBUS_OK, "flush(-1) of slot {s}: {}", last_error());
        }
        let peer = self.link.as_ref().unwrap().peer;
        for s in self.subs.iter_mut().filter(|s| s.bus == peer) {
            s.hub_gone |= s.told_hub;
        }
        self.settled(1, "after flush (attached handle)");
        self.settled(0, "after flush (hub)");
        // A group's message goes to one member, whichever process it is in.
        let hub = self.link.as_ref().unwrap().hub;
        for g in 0..GROUPS.len() {
            let mut seqs = BTreeSet::new();
            for s in self.subs.iter().filter(|s| (s.bus == hub || s.bus == peer) && s.opts.group == Some(g)) {
                let got: Vec<u64> = match &s.kind {
                    Kind::Cb(c) => lock(&c.shared.seen).got.iter().map(|m| m.0).collect(),
                    Kind::Pull(p) => p.taken.iter().copied().chain(p.queue.iter().map(|m| m.0)).collect(),
                };
                for q in got {
                    assert!(seqs.insert(q), "group {:?}: two members got message {q}", GROUPS[g]);
                }
            }
        }
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
    private_runtime_dir("sequence");
    let mut input = Bytes(data);
    let mut w = World {
        slots: [None, None],
        subs: Vec::new(),
        held: Vec::new(),
        next_serial: 0,
        link: None,
    };
    for _ in 0..96 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        if op >= 250 {
            // The 2C calls (opcodes that mapped to calls 0-5 before).
            let (a, b) = (input.u8(), input.u8());
            trace!("op {op}: 2C call {} ({a}, {b})", op - 250);
            w.tick();
            match op {
                250 | 251 => w.serve((op - 250) as usize, a, b),
                _ => w.attach(a, b),
            }
            continue;
        }
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
