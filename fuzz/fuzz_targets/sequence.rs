//! Fuzz target `sequence`: the input is a program of C API calls on up to two buses, run
//! against a model that predicts what every subscription must receive.
//!
//! Each op is an opcode byte and argument bytes (zeros once the input runs out); at most
//! 96 ops. An op on an empty slot first creates a bus there (options from the next byte).
//!
//! | op % 10 | call |
//! |---|---|
//! | 0 | new bus in the slot (the old one is freed first) |
//! | 1, 2, 3 | publish: topic and payload from small lists, valid and invalid |
//! | 4, 5 | subscribe: pattern from a small list; callback returns UNSUBSCRIBE at its k-th message, maybe negative values |
//! | 6 | unsubscribe: a subscription of any bus (live, ended, self-ended), or an unknown id |
//! | 7 | flush with timeout -1 or 0 |
//! | 8 | close with timeout -1, 0 or 10 |
//! | 9 | free |
//!
//! The model: a subscription receives, in seq order, every accepted message on a topic its
//! pattern matches, published while it was live; after `k` messages a self-unsubscribing
//! callback is never called again; after `jsonbus_unsubscribe` returned OK or the bus closed,
//! no callback runs. After a completed flush (and after close / free) what each subscription
//! received must equal the prediction (a prefix of it when a close ran out of time), and the
//! stats must agree: `published`, `rejected`, `delivered`, `callback_failures`,
//! `subscriptions`, `queued` exactly; `unrouted` and `delivered + dropped` within the bounds
//! left by self-unsubscribing callbacks, whose exit races with publishes.
#![no_main]

use ::jsonbus::ffi::*;
use jsonbus_fuzz::*;
use libfuzzer_sys::fuzz_target;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::Mutex;

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

/// A subscription's side that its callback sees.
struct Shared {
    id: AtomicI64,
    /// Return UNSUBSCRIBE at the k-th message (0: never).
    k: usize,
    /// Return -1 for messages with an odd seq.
    fail_odd: bool,
    /// Set once unsubscribe returned OK, or the bus closed: no callback may run after.
    ended: AtomicBool,
    /// seq, topic, payload, what the callback returned
    got: Mutex<Vec<(u64, Vec<u8>, Vec<u8>, i32)>>,
}

fn die(why: &str) -> ! {
    eprintln!("sequence: {why}");
    std::process::abort()
}

extern "C" fn callback(msg: *const jsonbus_message, user_data: *mut c_void) -> i32 {
    // SAFETY: jsonbus passes a valid message and our `Shared`, which lives until the input ends.
    let (m, s) = unsafe { (&*msg, &*(user_data as *const Shared)) };
    let mut got = s.got.lock().unwrap_or_else(|p| p.into_inner());
    if s.ended.load(SeqCst) {
        die("a callback ran after jsonbus_unsubscribe / jsonbus_close had returned");
    }
    if s.k > 0 && got.len() >= s.k {
        die("a callback ran again after it returned JSONBUS_UNSUBSCRIBE");
    }
    if m.subscription != s.id.load(SeqCst) {
        die("jsonbus_message.subscription is not the subscription's id");
    }
    if got.last().is_some_and(|g| g.0 >= m.seq) {
        die("a subscription saw seq go backwards");
    }
    // SAFETY: `topic` and `json` point to `*_len` bytes.
    let (topic, json) = unsafe {
        (
            std::slice::from_raw_parts(m.topic.cast::<u8>(), m.topic_len).to_vec(),
            std::slice::from_raw_parts(m.json.cast::<u8>(), m.json_len).to_vec(),
        )
    };
    let rc = if s.k > 0 && got.len() + 1 == s.k {
        JSONBUS_UNSUBSCRIBE
    } else if s.fail_odd && m.seq % 2 == 1 {
        -1
    } else {
        JSONBUS_OK
    };
    got.push((m.seq, topic, json, rc));
    rc
}

type Msg = (u64, Vec<u8>, Vec<u8>);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Life {
    /// In the router for sure.
    Live,
    /// A self-unsubscribing callback has been routed its k messages: it ends on its own once
    /// it has seen them, at a time the model does not know.
    Dying,
    /// Ended itself (known after a flush).
    SelfEnded,
    /// Unsubscribed from here (it had received `n`), or its bus closed (`lossy`: by a close
    /// that ran out of time).
    Unsubscribed(usize),
    Closed {
        lossy: bool,
    },
}

struct Sub {
    shared: Box<Shared>,
    /// Bus it belongs to (a serial number, unique per input).
    bus: u64,
    pattern: &'static str,
    life: Life,
    /// Messages routed to it for sure.
    want: Vec<Msg>,
}

impl Sub {
    fn id(&self) -> i64 {
        self.shared.id.load(SeqCst)
    }
    fn got(&self) -> Vec<Msg> {
        let g = self.shared.got.lock().unwrap();
        g.iter()
            .map(|(s, t, j, _)| (*s, t.clone(), j.clone()))
            .collect()
    }
    /// What it must have received once nothing is in flight.
    fn expected(&self) -> &[Msg] {
        let all = match self.shared.k {
            0 => &self.want[..],
            k => &self.want[..k.min(self.want.len())],
        };
        match self.life {
            Life::Unsubscribed(n) => &self.want[..n],
            _ => all,
        }
    }
    fn check(&self, why: &str) {
        let got = self.got();
        let want = self.expected();
        let ok = match self.life {
            Life::Closed { lossy: true } => want.starts_with(&got),
            _ => got == want,
        };
        if !ok {
            panic!(
                "{why}: subscription {} to {:?} (k {}, {:?}) received seqs {:?}, the model says {:?}",
                self.id(),
                self.pattern,
                self.shared.k,
                self.life,
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                want.iter().map(|g| g.0).collect::<Vec<_>>()
            );
        }
    }
    fn possibly_live(&self) -> bool {
        matches!(self.life, Life::Live | Life::Dying)
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
}

const REASONS: [(&str, i32); 6] = [
    ("json", JSONBUS_ERR_JSON),
    ("utf8", JSONBUS_ERR_UTF8),
    ("topic", JSONBUS_ERR_TOPIC),
    ("too_large", JSONBUS_ERR_TOO_LARGE),
    ("full", JSONBUS_ERR_FULL),
    ("closed", JSONBUS_ERR_CLOSED),
];

struct World {
    slots: [Option<Bus>; 2],
    subs: Vec<Sub>,
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
        });
    }

    /// The bus in `slot`, created first if there is none (and the subscriptions, borrowed
    /// apart from it).
    fn bus(&mut self, slot: usize, b: u8) -> (&mut Bus, &mut Vec<Sub>) {
        if self.slots[slot].is_none() {
            self.new_bus(slot, b);
        }
        (self.slots[slot].as_mut().unwrap(), &mut self.subs)
    }

    fn publish(&mut self, slot: usize, t: u8, p: u8) {
        let (bus, subs) = self.bus(slot, t ^ p);
        let topic = TOPICS[t as usize % TOPICS.len()];
        let payload: Box<[u8]> = PAYLOADS[p as usize % PAYLOADS.len()].into();
        let ctopic = CString::new(topic).unwrap();
        let rc = jsonbus_publish(
            bus.ptr,
            ctopic.as_ptr(),
            payload.as_ptr().cast(),
            payload.len(),
        );
        check_last(rc, "publish");
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
        let mut ok_codes = match &allowed {
            Ok(()) => vec![JSONBUS_OK],
            Err(why) => why.clone(),
        };
        if bus.closed {
            // Guarantee 8: a closed bus answers CLOSED, whatever the arguments.
            ok_codes = vec![JSONBUS_ERR_CLOSED];
        } else if allowed.is_ok() && bus.opts.publish_timeout_ms >= 0 {
            ok_codes.push(JSONBUS_ERR_FULL);
        }
        assert!(
            ok_codes.contains(&rc),
            "publish {:?} on {topic:?} (closed {}, {:?}) returned {} ({}); expected one of {:?}",
            String::from_utf8_lossy(&payload),
            bus.closed,
            bus.opts,
            name(rc),
            last_error(),
            ok_codes.iter().map(|&c| name(c)).collect::<Vec<_>>()
        );
        if let Some(i) = REASONS.iter().position(|r| r.1 == rc) {
            bus.rejected[i] += 1;
        }
        if rc != JSONBUS_OK {
            return;
        }
        bus.seq += 1;
        let msg: Msg = (bus.seq, topic.as_bytes().to_vec(), payload.to_vec());
        let (mut sure, mut maybe) = (0, 0);
        for s in subs.iter_mut().filter(|s| s.bus == bus.serial) {
            if !s.possibly_live() || !matches(s.pattern.as_bytes(), topic.as_bytes()) {
                continue;
            }
            if s.life == Life::Dying {
                maybe += 1;
                continue;
            }
            s.want.push(msg.clone());
            sure += 1;
            if s.shared.k > 0 && s.want.len() >= s.shared.k {
                s.life = Life::Dying;
            }
        }
        bus.routings.0 += sure;
        bus.routings.1 += sure + maybe;
        bus.unrouted.0 += (sure + maybe == 0) as u64;
        bus.unrouted.1 += (sure == 0) as u64;
    }

    fn subscribe(&mut self, slot: usize, p: u8, behaviour: u8) {
        let (bus, subs) = self.bus(slot, p);
        let pattern = PATTERNS[p as usize % PATTERNS.len()];
        let k = [0, 0, 1, 2, 3, 5][behaviour as usize % 6];
        let shared = Box::new(Shared {
            id: AtomicI64::new(0),
            k,
            fail_odd: behaviour & 0x80 != 0,
            ended: AtomicBool::new(false),
            got: Mutex::new(Vec::new()),
        });
        let cp = CString::new(pattern).unwrap();
        let id = jsonbus_subscribe(
            bus.ptr,
            cp.as_ptr(),
            Some(callback),
            &*shared as *const Shared as *mut c_void,
        );
        check_last(if id > 0 { 0 } else { id as i32 }, "subscribe");
        let valid = topic_ok(pattern.as_bytes(), true);
        if valid && !bus.closed {
            assert!(id > 0, "subscribe {pattern:?}: {id} {}", last_error());
            assert!(subs.iter().all(|s| s.id() != id), "id {id} given twice");
            shared.id.store(id, SeqCst);
            let serial = bus.serial;
            subs.push(Sub {
                shared,
                bus: serial,
                pattern,
                life: Life::Live,
                want: Vec::new(),
            });
        } else {
            // Guarantee 8: a closed bus answers CLOSED, whatever the pattern.
            let codes = match bus.closed {
                true => vec![JSONBUS_ERR_CLOSED as i64],
                false => vec![JSONBUS_ERR_TOPIC as i64],
            };
            assert!(
                codes.contains(&id),
                "subscribe {pattern:?} (closed {}) returned {id}",
                bus.closed
            );
        }
    }

    fn unsubscribe(&mut self, slot: usize, which: u8) {
        let serial = self.bus(slot, which).0.serial;
        let ptr = self.slots[slot].as_ref().unwrap().ptr;
        let n = self.subs.len();
        let (id, index) = if which as usize % 8 == 7 || n == 0 {
            ([0, -1, i64::MAX, i64::MIN][which as usize / 8 % 4], None)
        } else {
            let i = n - 1 - (which as usize / 8) % n;
            (self.subs[i].id(), Some(i))
        };
        let rc = jsonbus_unsubscribe(ptr, id);
        check_last(rc, "unsubscribe");
        let Some(i) = index.filter(|&i| self.subs[i].bus == serial) else {
            assert_eq!(
                rc, JSONBUS_ERR_NOT_FOUND,
                "unsubscribe {id}, not on this bus"
            );
            return;
        };
        let s = &mut self.subs[i];
        let received = s.shared.got.lock().unwrap().len();
        match (s.life, rc) {
            (Life::Live, JSONBUS_OK) => {}
            (Life::Dying, JSONBUS_OK) => assert!(received <= s.shared.k),
            (Life::Dying, JSONBUS_ERR_NOT_FOUND) => {
                assert_eq!(
                    received, s.shared.k,
                    "NOT_FOUND, but it had not ended itself"
                );
                s.life = Life::SelfEnded;
                return;
            }
            (
                Life::SelfEnded | Life::Unsubscribed(_) | Life::Closed { .. },
                JSONBUS_ERR_NOT_FOUND,
            ) => return,
            (life, rc) => panic!(
                "unsubscribe {id} ({life:?}) returned {} ({})",
                name(rc),
                last_error()
            ),
        }
        s.shared.ended.store(true, SeqCst);
        // Final now: what it received must be the start of what was routed to it.
        assert!(received <= s.want.len());
        s.life = Life::Unsubscribed(received);
        s.check("after unsubscribe");
    }

    fn flush(&mut self, slot: usize, t: u8) {
        let (bus, _) = self.bus(slot, t);
        let timeout = if t & 1 == 0 { -1 } else { 0 };
        let rc = jsonbus_flush(bus.ptr, timeout);
        check_last(rc, "flush");
        if timeout < 0 || bus.closed {
            assert_eq!(rc, JSONBUS_OK, "flush({timeout}): {}", last_error());
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
        let bus = self.slots[slot].as_ref().unwrap();
        let mut live = 0;
        let (mut delivered, mut failures) = (0, 0);
        for s in self.subs.iter_mut().filter(|s| s.bus == bus.serial) {
            if s.life == Life::Dying {
                s.life = Life::SelfEnded;
            }
            live += (s.life == Life::Live) as u64;
            s.check(why);
            let got = s.shared.got.lock().unwrap();
            delivered += got.len() as u64;
            failures += got.iter().filter(|g| g.3 < 0).count() as u64;
        }
        let st = stats(bus.ptr);
        let ctx = format!(
            "{why}: {st}; model {:?}",
            (bus.seq, bus.unrouted, bus.routings)
        );
        assert_eq!(stat(&st, "published"), bus.seq, "{ctx}");
        assert_eq!(stat(&st, "delivered"), delivered, "{ctx}");
        assert_eq!(stat(&st, "callback_failures"), failures, "{ctx}");
        assert_eq!(stat(&st, "queued"), 0, "{ctx}");
        assert_eq!(stat(&st, "subscriptions"), live, "{ctx}");
        let u = stat(&st, "unrouted");
        assert!(
            bus.unrouted.0 <= u && u <= bus.unrouted.1,
            "unrouted: {ctx}"
        );
        let r = delivered + stat(&st, "dropped");
        assert!(
            bus.routings.0 <= r && r <= bus.routings.1,
            "delivered + dropped = {r}: {ctx}"
        );
        for (i, (reason, _)) in REASONS.iter().enumerate() {
            assert_eq!(
                rejected(&st, reason),
                bus.rejected[i],
                "rejected.{reason}: {ctx}"
            );
        }
    }

    fn close(&mut self, slot: usize, t: u8) {
        let (bus, _) = self.bus(slot, t);
        let timeout = [-1, -1, 0, 10][t as usize % 4];
        let was_closed = bus.closed;
        let rc = jsonbus_close(bus.ptr, timeout);
        check_last(rc, "close");
        bus.closed = true;
        let serial = bus.serial;
        if timeout < 0 || was_closed {
            assert_eq!(
                rc,
                JSONBUS_OK,
                "close({timeout}), closed before {was_closed}: {}",
                last_error()
            );
        } else {
            assert!(
                rc == JSONBUS_OK || rc == JSONBUS_ERR_TIMEOUT,
                "close({timeout}): {}",
                name(rc)
            );
        }
        for s in self.subs.iter_mut().filter(|s| s.bus == serial) {
            s.shared.ended.store(true, SeqCst);
            if s.possibly_live() {
                s.life = Life::Closed {
                    lossy: rc == JSONBUS_ERR_TIMEOUT,
                };
            }
        }
        self.settled(slot, "after close");
        let bus = self.slots[slot].as_ref().unwrap();
        assert_eq!(jsonbus_flush(bus.ptr, -1), JSONBUS_OK);
        assert_eq!(jsonbus_unsubscribe(bus.ptr, 1), JSONBUS_ERR_NOT_FOUND);
    }

    fn free(&mut self, slot: usize) {
        let Some(bus) = self.slots[slot].take() else {
            return;
        };
        jsonbus_free(bus.ptr);
        for s in self.subs.iter_mut().filter(|s| s.bus == bus.serial) {
            s.shared.ended.store(true, SeqCst);
            if s.possibly_live() {
                s.life = Life::Closed { lossy: false };
            }
            s.check("after free");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mut w = World {
        slots: [None, None],
        subs: Vec::new(),
        next_serial: 0,
    };
    for _ in 0..96 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let slot = (op / 10 % 2) as usize;
        let (a, b) = (input.u8(), input.u8());
        match op % 10 {
            0 => w.new_bus(slot, a),
            1..=3 => w.publish(slot, a, b),
            4 | 5 if w.subs.len() < 24 => w.subscribe(slot, a, b),
            4 | 5 => w.publish(slot, a, b),
            6 => w.unsubscribe(slot, a),
            7 => w.flush(slot, a),
            8 => w.close(slot, a),
            _ => w.free(slot),
        }
    }
    for slot in 0..2 {
        if w.slots[slot].is_some() {
            w.close(slot, 0);
            w.free(slot);
        }
    }
});
