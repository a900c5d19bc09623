//! Fuzz target `publish`: hostile topics and payloads through the C API.
//!
//! Input: `flags, max_depth, max_message_bytes (u16 LE), records...`; records are separated
//! by 0xF5, and a record is `topic 0xF6 payload` (no 0xF6: the whole record is the payload,
//! on topic "a.b"). Bytes 0xF5/0xF6 never occur in UTF-8, so they only cut away inputs that
//! other invalid bytes test as well. Topics are passed as C strings (cut at a NUL, as C
//! would); payloads with their explicit length (NULs included), or - flag bit 0 - through
//! `push_json` on the default bus (cut at the first NUL, topic "default").
//!
//! Oracle: each return code is the one the contract prescribes (from an independent topic
//! checker, `std::str::from_utf8`, serde_json, a depth count and the size limit), the last
//! error is "" exactly on success, and a `>` subscriber receives exactly the accepted
//! payloads, byte-identical, in order, with seq 1, 2, 3, ... counting every accepted one - but
//! those on a topic whose first token is `_INBOX`, which no leading wildcard matches (Part 2B;
//! they are counted unrouted); the stats agree.
#![no_main]

use ::jsonbus::ffi::*;
use jsonbus_fuzz::*;
use libfuzzer_sys::fuzz_target;
use std::ffi::{c_void, CStr, CString};
use std::ptr::null;
use std::sync::Mutex;

/// What the subscriber saw: topic, payload, seq, subscription.
type Got = (Vec<u8>, Vec<u8>, u64, i64);

extern "C" fn record(msg: *const jsonbus_message, user_data: *mut c_void) -> i32 {
    // SAFETY: jsonbus passes a valid message, and our `Mutex<Vec<Got>>`, alive until the bus
    // is closed.
    let (m, seen) = unsafe { (&*msg, &*(user_data as *const Mutex<Vec<Got>>)) };
    // SAFETY: `json` and `topic` point to `*_len` bytes and a NUL, per the contract.
    let json = unsafe { std::slice::from_raw_parts(m.json.cast::<u8>(), m.json_len + 1) };
    let topic = unsafe { CStr::from_ptr(m.topic) }.to_bytes();
    if json[m.json_len] != 0 || topic.len() != m.topic_len {
        eprintln!("message is not NUL-terminated where its lengths say");
        std::process::abort();
    }
    seen.lock().unwrap().push((
        topic.to_vec(),
        json[..m.json_len].to_vec(),
        m.seq,
        m.subscription,
    ));
    JSONBUS_OK
}

fn reason(code: i32) -> Option<&'static str> {
    Some(match code {
        JSONBUS_ERR_JSON => "json",
        JSONBUS_ERR_UTF8 => "utf8",
        JSONBUS_ERR_TOPIC => "topic",
        JSONBUS_ERR_TOO_LARGE => "too_large",
        JSONBUS_ERR_FULL => "full",
        JSONBUS_ERR_CLOSED => "closed",
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let flags = input.u8();
    let max_depth = 1 + input.u8() as usize % 16;
    let max_bytes = 1 + input.u16() as usize % 1024;
    let quick = flags & 1 != 0;
    let options = format!(
        "{{\"max_depth\":{max_depth},\"max_message_bytes\":{max_bytes},\"dispatcher_threads\":{},\"dispatcher_spin_us\":0}}",
        1 + (flags >> 3 & 1)
    );

    let seen: Box<Mutex<Vec<Got>>> = Box::default();
    let user = &*seen as *const Mutex<Vec<Got>> as *mut c_void;
    let (bus, sub) = if quick {
        assert_eq!(jsonbus_shutdown(-1), JSONBUS_OK);
        std::env::set_var("JSONBUS_DEFAULT_OPTIONS", &options);
        let sub = register_callback(Some(record), user);
        (jsonbus_default(), sub)
    } else {
        let o = CString::new(options).unwrap();
        let bus = jsonbus_new(o.as_ptr());
        assert!(!bus.is_null(), "jsonbus_new: {}", last_error());
        check_last(JSONBUS_OK, "jsonbus_new");
        let sub = jsonbus_subscribe(bus, c">".as_ptr(), Some(record), user);
        (bus, sub)
    };
    assert!(sub > 0, "subscribe: {sub} {}", last_error());
    check_last(JSONBUS_OK, "subscribe");

    // Accepted messages `>` takes, with their seq (every accepted message takes one).
    let mut accepted: Vec<(Vec<u8>, Vec<u8>, u64)> = Vec::new();
    let mut inbox = 0u64;
    let mut refused: std::collections::HashMap<&str, u64> = Default::default();
    let mut first = true;
    while !input.is_empty() {
        let rec = input.until(0xF5);
        let (topic, payload) = match rec.iter().position(|&b| b == 0xF6) {
            Some(i) => (&rec[..i], &rec[i + 1..]),
            None => (&b"a.b"[..], rec),
        };
        let null_topic = first && flags & 2 != 0 && !quick;
        let null_json = first && flags & 4 != 0;
        first = false;

        let (code, topic, payload, allowed) = if quick {
            let p = c_string(payload);
            let code = if null_json {
                push_json(null())
            } else {
                push_json(p.as_ptr())
            };
            let payload = p.as_bytes().to_vec();
            let allowed = if null_json {
                Err(vec![JSONBUS_ERR_NULL])
            } else {
                payload_verdict(&payload, max_bytes, max_depth)
            };
            (code, b"default".to_vec(), payload, allowed)
        } else {
            let t = c_string(topic);
            // An exact-size heap copy, so that AddressSanitizer sees any read past `len`.
            let p: Box<[u8]> = payload.into();
            let code = jsonbus_publish(
                bus,
                if null_topic { null() } else { t.as_ptr() },
                if null_json { null() } else { p.as_ptr().cast() },
                p.len(),
            );
            let mut allowed = payload_verdict(&p, max_bytes, max_depth);
            if !topic_ok(t.as_bytes(), false) {
                let mut why = allowed.err().unwrap_or_default();
                why.push(JSONBUS_ERR_TOPIC);
                allowed = Err(why);
            }
            if null_topic {
                allowed = Err(vec![JSONBUS_ERR_NULL]);
            } else if null_json {
                // Which of a NULL payload and a bad topic is reported first is not specified.
                let mut why = vec![JSONBUS_ERR_NULL];
                if !topic_ok(t.as_bytes(), false) {
                    why.push(JSONBUS_ERR_TOPIC);
                }
                allowed = Err(why);
            }
            (code, t.as_bytes().to_vec(), p.to_vec(), allowed)
        };
        check_last(code, "publish");
        match &allowed {
            Ok(()) => assert_eq!(
                code,
                JSONBUS_OK,
                "publish of {:?} on {:?} (max {max_bytes} bytes, depth {max_depth}) refused with {}: {}",
                String::from_utf8_lossy(&payload),
                String::from_utf8_lossy(&topic),
                name(code),
                last_error()
            ),
            Err(why) => assert!(
                why.contains(&code),
                "publish of {:?} on {:?} (max {max_bytes} bytes, depth {max_depth}) returned {} ({}), expected one of {:?}",
                String::from_utf8_lossy(&payload),
                String::from_utf8_lossy(&topic),
                name(code),
                last_error(),
                why.iter().map(|&c| name(c)).collect::<Vec<_>>()
            ),
        }
        if code == JSONBUS_OK {
            // Part 2B: a leading wildcard never matches a first token `_INBOX`, so `>` does
            // not take such a message (it is counted unrouted).
            let seq = accepted.len() as u64 + inbox + 1;
            if topic.split(|&b| b == b'.').next() == Some(&b"_INBOX"[..]) {
                inbox += 1;
            } else {
                accepted.push((topic, payload, seq));
            }
        } else if let Some(r) = reason(code) {
            *refused.entry(r).or_default() += 1;
        }
    }

    let rc = jsonbus_flush(bus, -1);
    check_last(rc, "flush");
    assert_eq!(rc, JSONBUS_OK, "flush: {}", last_error());
    {
        let got = seen.lock().unwrap();
        assert_eq!(got.len(), accepted.len(), "delivered vs accepted");
        for (i, ((t, p, seq, s), (at, ap, aseq))) in got.iter().zip(&accepted).enumerate() {
            assert_eq!(seq, aseq, "seq of delivery {i}");
            assert_eq!(*s, sub, "subscription id of delivery {i}");
            assert_eq!(t, at, "topic of delivery {i}");
            assert_eq!(p, ap, "payload of delivery {i} is not byte-identical");
        }
    }
    let st = stats(bus);
    let n = accepted.len() as u64;
    assert_eq!(stat(&st, "published"), n + inbox, "{st}");
    assert_eq!(stat(&st, "delivered"), n, "{st}");
    assert_eq!(stat(&st, "unrouted"), inbox, "{st}");
    assert_eq!(stat(&st, "dropped"), 0, "{st}");
    assert_eq!(stat(&st, "queued"), 0, "{st}");
    assert_eq!(stat(&st, "subscriptions"), 1, "{st}");
    for r in ["json", "utf8", "topic", "too_large", "full", "closed"] {
        assert_eq!(
            rejected(&st, r),
            refused.get(r).copied().unwrap_or(0),
            "rejected.{r}: {st}"
        );
    }

    if quick {
        assert_eq!(jsonbus_shutdown(-1), JSONBUS_OK, "{}", last_error());
    } else {
        assert_eq!(jsonbus_close(bus, -1), JSONBUS_OK, "{}", last_error());
        assert_eq!(
            jsonbus_publish(bus, c"a".as_ptr(), c"1".as_ptr(), 1),
            JSONBUS_ERR_CLOSED
        );
        jsonbus_free(bus);
    }
    // Every callback has returned and none will run again: `seen` may go.
    drop(seen);
});
