//! Fuzz target `patterns`: subscription patterns and topics against a reference grammar and
//! a reference matcher.
//!
//! Input: records separated by 0xF5; a record is an op byte and its text (a C string: cut at
//! a NUL). op % 4: 0 or 1 subscribe to the pattern, 2 publish `0` on the topic, 3 unsubscribe
//! the subscription numbered by the next byte (live, ended or never made).
//!
//! Oracle: `jsonbus_subscribe` returns an id > 0 exactly when the reference grammar accepts
//! the pattern (else JSONBUS_ERR_TOPIC); a publish is accepted exactly when the topic is
//! valid; after a flush every subscription has received exactly the messages whose topics
//! the reference matcher says its pattern matches (a leading wildcard never matches a first
//! token `_INBOX`, Part 2B), published while it was live, in order;
//! `unrouted`, `delivered`, `subscriptions` in the stats agree.
#![no_main]

use ::jsonbus::ffi::*;
use jsonbus_fuzz::*;
use libfuzzer_sys::fuzz_target;
use std::ffi::c_void;
use std::sync::Mutex;

/// seqs and topics a subscription received
type Seen = Mutex<Vec<(u64, Vec<u8>)>>;

extern "C" fn record(msg: *const jsonbus_message, user_data: *mut c_void) -> i32 {
    // SAFETY: jsonbus passes a valid message and our `Seen`, alive until the bus is closed.
    let (m, seen) = unsafe { (&*msg, &*(user_data as *const Seen)) };
    // SAFETY: `topic` points to `topic_len` bytes and a NUL.
    let topic = unsafe { std::slice::from_raw_parts(m.topic.cast::<u8>(), m.topic_len) };
    seen.lock().unwrap().push((m.seq, topic.to_vec()));
    JSONBUS_OK
}

struct Sub {
    id: i64,
    pattern: Vec<u8>,
    live: bool,
    seen: Box<Seen>,
    want: Vec<(u64, Vec<u8>)>,
}

fuzz_target!(|data: &[u8]| {
    let bus = jsonbus_new(c"{\"dispatcher_spin_us\":0}".as_ptr());
    assert!(!bus.is_null());
    let mut input = Bytes(data);
    let mut subs: Vec<Sub> = Vec::new();
    let (mut seq, mut unrouted) = (0u64, 0u64);
    while !input.is_empty() {
        let rec = input.until(0xF5);
        let (op, arg) = rec.split_first().map_or((0, &[][..]), |(o, a)| (*o, a));
        match op % 4 {
            0 | 1 => {
                let pattern = c_string(arg);
                let seen: Box<Seen> = Box::default();
                let id = jsonbus_subscribe(
                    bus,
                    pattern.as_ptr(),
                    Some(record),
                    &*seen as *const Seen as *mut c_void,
                );
                let valid = topic_ok(pattern.as_bytes(), true);
                if valid {
                    assert!(
                        id > 0,
                        "subscribe {pattern:?} refused: {id} {}",
                        last_error()
                    );
                    assert!(subs.iter().all(|s| s.id != id), "id {id} given twice");
                    check_last(JSONBUS_OK, "subscribe");
                    subs.push(Sub {
                        id,
                        pattern: pattern.as_bytes().to_vec(),
                        live: true,
                        seen,
                        want: Vec::new(),
                    });
                } else {
                    assert_eq!(
                        id, JSONBUS_ERR_TOPIC as i64,
                        "subscribe {pattern:?} (invalid) returned {id}"
                    );
                    check_last(id as i32, "subscribe");
                }
            }
            2 => {
                let topic = c_string(arg);
                let rc = jsonbus_publish(bus, topic.as_ptr(), c"0".as_ptr(), 1);
                check_last(rc, "publish");
                if topic_ok(topic.as_bytes(), false) {
                    assert_eq!(rc, JSONBUS_OK, "publish on {topic:?}: {}", last_error());
                    seq += 1;
                    let mut any = false;
                    for s in subs.iter_mut().filter(|s| s.live) {
                        if matches(&s.pattern, topic.as_bytes()) {
                            s.want.push((seq, topic.as_bytes().to_vec()));
                            any = true;
                        }
                    }
                    unrouted += !any as u64;
                } else {
                    assert_eq!(rc, JSONBUS_ERR_TOPIC, "publish on invalid {topic:?}");
                }
            }
            _ => {
                // Flush first, so that nothing is queued for it and `dropped` stays 0.
                assert_eq!(jsonbus_flush(bus, -1), JSONBUS_OK);
                let k = arg.first().copied().unwrap_or(0) as usize;
                let (id, live) = match subs.get(k) {
                    Some(s) => (s.id, s.live),
                    None => ([0, -1, i64::MIN, i64::MAX][k % 4], false),
                };
                let rc = jsonbus_unsubscribe(bus, id);
                check_last(rc, "unsubscribe");
                if live {
                    assert_eq!(rc, JSONBUS_OK, "unsubscribe {id}: {}", last_error());
                    subs[k].live = false;
                } else {
                    assert_eq!(
                        rc, JSONBUS_ERR_NOT_FOUND,
                        "unsubscribe {id} (ended/unknown)"
                    );
                }
            }
        }
    }
    assert_eq!(jsonbus_flush(bus, -1), JSONBUS_OK);
    let mut delivered = 0;
    for s in &subs {
        let got = s.seen.lock().unwrap();
        assert_eq!(
            *got,
            s.want,
            "subscription {} to {:?}",
            s.id,
            String::from_utf8_lossy(&s.pattern)
        );
        delivered += got.len() as u64;
    }
    let st = stats(bus);
    assert_eq!(stat(&st, "published"), seq, "{st}");
    assert_eq!(stat(&st, "unrouted"), unrouted, "{st}");
    assert_eq!(stat(&st, "delivered"), delivered, "{st}");
    assert_eq!(stat(&st, "dropped"), 0, "{st}");
    assert_eq!(
        stat(&st, "subscriptions"),
        subs.iter().filter(|s| s.live).count() as u64,
        "{st}"
    );
    jsonbus_free(bus);
    drop(subs);
});
