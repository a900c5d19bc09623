//! The C API, called through its exported functions exactly as C calls them.

use ::jsonbus::ffi::*;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

fn s(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: the library returns NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn last() -> String {
    s(jsonbus_last_error())
}

fn publish(bus: *mut jsonbus, topic: &CStr, json: &[u8]) -> i32 {
    jsonbus_publish(bus, topic.as_ptr(), json.as_ptr().cast(), json.len())
}

fn stats(bus: *mut jsonbus) -> serde_json::Value {
    let p = jsonbus_stats(bus);
    let v = serde_json::from_str(&s(p)).unwrap();
    jsonbus_string_free(p);
    v
}

/// topic, json, seq, subscription, topic_len, json_len
type Copy = (String, String, u64, i64, usize, usize);

/// Copies of what a callback saw.
#[derive(Default)]
struct Seen {
    messages: Mutex<Vec<Copy>>,
}

extern "C" fn record(msg: *const jsonbus_message, user_data: *mut c_void) -> i32 {
    // SAFETY: jsonbus passes a valid message and our `Seen`.
    let (m, seen) = unsafe { (&*msg, &*(user_data as *const Seen)) };
    seen.messages.lock().unwrap().push((
        s(m.topic),
        s(m.json),
        m.seq,
        m.subscription,
        m.topic_len,
        m.json_len,
    ));
    JSONBUS_OK
}

extern "C" fn noop(_: *const jsonbus_message, _: *mut c_void) -> i32 {
    JSONBUS_OK
}

#[test]
fn names_version_and_add() {
    assert_eq!(s(jsonbus_version()), env!("CARGO_PKG_VERSION"));
    let codes = [
        (JSONBUS_OK, "JSONBUS_OK"),
        (JSONBUS_UNSUBSCRIBE, "JSONBUS_UNSUBSCRIBE"),
        (JSONBUS_ERR_NULL, "JSONBUS_ERR_NULL"),
        (JSONBUS_ERR_UTF8, "JSONBUS_ERR_UTF8"),
        (JSONBUS_ERR_JSON, "JSONBUS_ERR_JSON"),
        (JSONBUS_ERR_TOPIC, "JSONBUS_ERR_TOPIC"),
        (JSONBUS_ERR_TOO_LARGE, "JSONBUS_ERR_TOO_LARGE"),
        (JSONBUS_ERR_FULL, "JSONBUS_ERR_FULL"),
        (JSONBUS_ERR_TIMEOUT, "JSONBUS_ERR_TIMEOUT"),
        (JSONBUS_ERR_CLOSED, "JSONBUS_ERR_CLOSED"),
        (JSONBUS_ERR_NOT_FOUND, "JSONBUS_ERR_NOT_FOUND"),
        (JSONBUS_ERR_DEADLOCK, "JSONBUS_ERR_DEADLOCK"),
        (JSONBUS_ERR_OPTIONS, "JSONBUS_ERR_OPTIONS"),
        (JSONBUS_ERR_INTERNAL, "JSONBUS_ERR_INTERNAL"),
        (JSONBUS_ERR_ENDED, "JSONBUS_ERR_ENDED"),
        (JSONBUS_ERR_UNSUPPORTED, "JSONBUS_ERR_UNSUPPORTED"),
        (JSONBUS_ERR_NO_RESPONDERS, "JSONBUS_ERR_NO_RESPONDERS"),
        (JSONBUS_ERR_NO_BUS, "JSONBUS_ERR_NO_BUS"),
        (JSONBUS_ERR_NAME_IN_USE, "JSONBUS_ERR_NAME_IN_USE"),
        (JSONBUS_ERR_PERMISSION, "JSONBUS_ERR_PERMISSION"),
        (JSONBUS_ERR_DISCONNECTED, "JSONBUS_ERR_DISCONNECTED"),
        (JSONBUS_ERR_PEER, "JSONBUS_ERR_PEER"),
        (JSONBUS_ERR_LIMIT, "JSONBUS_ERR_LIMIT"),
    ];
    for (code, name) in codes {
        assert_eq!(s(jsonbus_status_name(code)), name);
    }
    for status in ::jsonbus::Status::ALL {
        assert!(codes
            .iter()
            .any(|(c, n)| *c == status.code() && status.name().to_str() == Ok(*n)));
    }
    assert_eq!(s(jsonbus_status_name(-9999)), "JSONBUS_UNKNOWN_STATUS");
    let reasons = [
        (JSONBUS_END_UNSUBSCRIBED, "JSONBUS_END_UNSUBSCRIBED"),
        (JSONBUS_END_RETURNED, "JSONBUS_END_RETURNED"),
        (JSONBUS_END_SLOW, "JSONBUS_END_SLOW"),
        (JSONBUS_END_FAILED, "JSONBUS_END_FAILED"),
        (JSONBUS_END_CLOSED, "JSONBUS_END_CLOSED"),
        (JSONBUS_END_PEER_GONE, "JSONBUS_END_PEER_GONE"),
    ];
    for (code, name) in reasons {
        assert!(code > 0);
        assert_eq!(s(jsonbus_end_reason_name(code)), name);
    }
    for r in ::jsonbus::EndReason::ALL {
        assert!(reasons.iter().any(|(c, _)| *c == r.code()));
    }
    assert_eq!(s(jsonbus_end_reason_name(0)), "JSONBUS_END_UNKNOWN");
    assert_eq!(add(2, 3), 5);
    assert_eq!(add(i32::MAX, 1), i32::MIN);
    assert_eq!(add(i32::MIN, -1), i32::MAX);
    let t = jsonbus_now_ns();
    assert!(jsonbus_now_ns() >= t);
}

#[test]
fn every_null_argument_is_refused_with_a_message() {
    let bus = jsonbus_new(null());
    assert!(!bus.is_null());
    let checks: Vec<(i64, &str)> = vec![
        (
            jsonbus_publish(null_mut(), c"a".as_ptr(), c"1".as_ptr(), 1) as i64,
            "bus is NULL",
        ),
        (
            jsonbus_publish(bus, null(), c"1".as_ptr(), 1) as i64,
            "topic is NULL",
        ),
        (
            jsonbus_publish(bus, c"a".as_ptr(), null(), 1) as i64,
            "json is NULL",
        ),
        (
            jsonbus_subscribe(null_mut(), c"a".as_ptr(), Some(noop), null_mut()),
            "bus is NULL",
        ),
        (
            jsonbus_subscribe(bus, null(), Some(noop), null_mut()),
            "pattern is NULL",
        ),
        (
            jsonbus_subscribe(bus, c"a".as_ptr(), None, null_mut()),
            "callback is NULL",
        ),
        (jsonbus_unsubscribe(null_mut(), 1) as i64, "bus is NULL"),
        (jsonbus_flush(null_mut(), 0) as i64, "bus is NULL"),
        (jsonbus_close(null_mut(), 0) as i64, "bus is NULL"),
        (push_json(null()) as i64, "json is NULL"),
        (register_callback(None, null_mut()), "callback is NULL"),
    ];
    for (rc, _) in &checks {
        assert_eq!(*rc, JSONBUS_ERR_NULL as i64);
    }
    // The message of the last one is kept; each call replaced the previous one.
    assert_eq!(last(), "callback is NULL");
    assert_eq!(jsonbus_last_status(), JSONBUS_ERR_NULL);
    assert!(jsonbus_stats(null_mut()).is_null());
    assert_eq!(last(), "bus is NULL");
    jsonbus_free(null_mut());
    jsonbus_string_free(null_mut());
    assert_eq!(jsonbus_last_status(), JSONBUS_OK, "free(NULL) succeeds");
    jsonbus_free(bus);
}

#[test]
fn bad_payloads_topics_and_options_get_their_codes_and_messages() {
    let bus = jsonbus_new(cr#"{"max_message_bytes":64,"max_depth":4}"#.as_ptr());
    assert!(!bus.is_null(), "{}", last());
    let cases: &[(&CStr, &[u8], i32, &str)] = &[
        (c"a", b"[1, \xff]", JSONBUS_ERR_UTF8, "offset 4"),
        (c"a", b"{\"a\":", JSONBUS_ERR_JSON, "line 1 column 5"),
        (c"a", b"[1,]", JSONBUS_ERR_JSON, "line 1 column 4"),
        (c"a", b"1 2", JSONBUS_ERR_JSON, "trailing characters"),
        (c"a", b"", JSONBUS_ERR_JSON, "EOF"),
        (c"a", b"\"a\x01\"", JSONBUS_ERR_JSON, "control character"),
        (
            c"a",
            b"[[[[[1]]]]]",
            JSONBUS_ERR_JSON,
            "deeper than max_depth 4",
        ),
        (c"a", &[b' '; 65], JSONBUS_ERR_TOO_LARGE, "65 bytes"),
        (c"", b"1", JSONBUS_ERR_TOPIC, "empty"),
        (c"a..b", b"1", JSONBUS_ERR_TOPIC, "token 2 is empty"),
        (c"a.*", b"1", JSONBUS_ERR_TOPIC, "wildcard"),
        (
            c"a\xffb",
            b"1",
            JSONBUS_ERR_TOPIC,
            "topic is not valid UTF-8",
        ),
    ];
    for (topic, json, code, why) in cases {
        assert_eq!(publish(bus, topic, json), *code, "{topic:?} {json:?}");
        assert!(last().contains(why), "{topic:?}: {} lacks {why:?}", last());
        assert_eq!(jsonbus_last_status(), *code);
    }
    let long = std::ffi::CString::new("x".repeat(100_000)).unwrap();
    assert_eq!(publish(bus, &long, b"1"), JSONBUS_ERR_TOPIC);
    assert!(last().contains("longer than 256"), "{}", last());
    assert_eq!(
        publish(bus, c"a", b"[[[[1]]]]"),
        JSONBUS_OK,
        "max_depth itself is accepted"
    );
    assert_eq!(last(), "", "success clears the last error");
    assert_eq!(jsonbus_last_status(), JSONBUS_OK);
    // A huge length is refused before anything is read.
    assert_eq!(
        jsonbus_publish(bus, c"a".as_ptr(), c"1".as_ptr(), usize::MAX),
        JSONBUS_ERR_TOO_LARGE
    );
    for (pattern, why) in [(c"a*", "mixes"), (c"a.>.b", "last token"), (c" ", "0x20")] {
        assert_eq!(
            jsonbus_subscribe(bus, pattern.as_ptr(), Some(noop), null_mut()),
            JSONBUS_ERR_TOPIC as i64
        );
        assert!(last().contains(why), "{}", last());
    }
    let st = stats(bus);
    assert_eq!(st["rejected"]["json"], 6);
    assert_eq!(st["rejected"]["utf8"], 1);
    assert_eq!(st["rejected"]["topic"], 5);
    assert_eq!(st["rejected"]["too_large"], 2);
    assert_eq!(st["published"], 1);
    jsonbus_free(bus);

    for (options, why) in [
        (c"{\"dispatcher_threads\":257}", "dispatcher_threads"),
        (c"{\"queue_capacity\":0}", "from 1 to 16777216"),
        (c"{\"nope\":1}", "unknown option \"nope\""),
        (c"{\"max_depth\":\"4\"}", "max_depth"),
        (c"[]", "must be a JSON object"),
        (c"{", "not valid JSON"),
    ] {
        assert!(jsonbus_new(options.as_ptr()).is_null());
        assert_eq!(jsonbus_last_status(), JSONBUS_ERR_OPTIONS);
        assert!(last().contains(why), "{}", last());
    }
    for bad in [c"{\"a\xff\":1}", c""] {
        assert!(jsonbus_new(bad.as_ptr()).is_null());
        assert_eq!(jsonbus_last_status(), JSONBUS_ERR_OPTIONS);
    }
}

#[test]
fn callbacks_get_the_message_as_published() {
    let bus = jsonbus_new(c"{\"dispatcher_threads\":2}".as_ptr());
    let seen = Box::new(Seen::default());
    let ud = &*seen as *const Seen as *mut c_void;
    let id = jsonbus_subscribe(bus, c"orders.*".as_ptr(), Some(record), ud);
    assert!(id > 0);
    let other = jsonbus_subscribe(bus, c">".as_ptr(), Some(noop), null_mut());
    assert!(other > id);
    assert_eq!(publish(bus, c"orders.new", b" {\"id\": 1} "), JSONBUS_OK);
    assert_eq!(publish(bus, c"orders.new.x", b"2"), JSONBUS_OK);
    assert_eq!(publish(bus, c"orders.old", b"\"\xc3\xa9\""), JSONBUS_OK);
    assert_eq!(jsonbus_flush(bus, -1), JSONBUS_OK);
    let got = seen.messages.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            ("orders.new".into(), " {\"id\": 1} ".into(), 1, id, 10, 11),
            ("orders.old".into(), "\"\u{e9}\"".into(), 3, id, 10, 4),
        ]
    );
    assert_eq!(jsonbus_unsubscribe(bus, id), JSONBUS_OK);
    assert_eq!(jsonbus_unsubscribe(bus, id), JSONBUS_ERR_NOT_FOUND);
    assert!(last().contains(&id.to_string()));
    let st = stats(bus);
    assert_eq!(
        (
            st["published"].as_u64(),
            st["delivered"].as_u64(),
            st["subscriptions"].as_u64()
        ),
        (Some(3), Some(5), Some(1))
    );
    for key in [
        "published",
        "delivered",
        "unrouted",
        "dropped",
        "queued",
        "subscriptions",
        "callback_failures",
        "dispatcher_threads",
    ] {
        assert!(st[key].is_u64(), "{key}");
    }
    assert_eq!(st["dispatcher_threads"], 2);
    assert_eq!(jsonbus_close(bus, 1000), JSONBUS_OK);
    assert_eq!(publish(bus, c"orders.new", b"1"), JSONBUS_ERR_CLOSED);
    assert_eq!(
        jsonbus_subscribe(bus, c">".as_ptr(), Some(noop), null_mut()),
        JSONBUS_ERR_CLOSED as i64
    );
    assert_eq!(jsonbus_unsubscribe(bus, other), JSONBUS_ERR_NOT_FOUND);
    assert_eq!(jsonbus_flush(bus, 0), JSONBUS_OK);
    assert_eq!(jsonbus_close(bus, 0), JSONBUS_OK);
    assert_eq!(stats(bus)["published"], 3, "stats work after close");
    jsonbus_free(bus);
    drop(seen);
}

static DEFAULT_CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_default(_: *const jsonbus_message, _: *mut c_void) -> i32 {
    DEFAULT_CALLS.fetch_add(1, SeqCst);
    JSONBUS_OK
}

extern "C" fn self_waits(_: *const jsonbus_message, out: *mut c_void) -> i32 {
    let out = out as *const Mutex<Vec<i32>>;
    let d = jsonbus_default();
    let results = vec![
        jsonbus_flush(d, -1),
        jsonbus_close(d, -1),
        jsonbus_shutdown(-1),
        {
            jsonbus_free(d);
            jsonbus_last_status()
        },
    ];
    // SAFETY: `out` is the test's Mutex, alive until after the flush below.
    unsafe { &*out }.lock().unwrap().extend(results);
    JSONBUS_UNSUBSCRIBE
}

#[test]
fn the_default_bus_and_the_quick_api() {
    // The only test in this binary that uses the default bus.
    let d = jsonbus_default();
    assert_eq!(d, jsonbus_default());
    assert_eq!(jsonbus_shutdown(-1), JSONBUS_OK);
    // Calls that need no bus do not open one.
    assert_eq!(jsonbus_flush(d, 0), JSONBUS_OK);
    assert_eq!(stats(d)["published"], 0);
    assert!(register_callback(Some(count_default), null_mut()) > 0);
    for _ in 0..100 {
        assert_eq!(push_json(c"{\"k\":1}".as_ptr()), JSONBUS_OK);
    }
    assert_eq!(push_json(c"{".as_ptr()), JSONBUS_ERR_JSON);
    assert_eq!(jsonbus_flush(d, -1), JSONBUS_OK);
    assert_eq!(DEFAULT_CALLS.load(SeqCst), 100);
    let results = Mutex::new(Vec::<i32>::new());
    assert!(
        jsonbus_subscribe(
            d,
            c"self".as_ptr(),
            Some(self_waits),
            &results as *const _ as *mut c_void
        ) > 0
    );
    assert_eq!(publish(d, c"self", b"1"), JSONBUS_OK);
    assert_eq!(jsonbus_flush(d, -1), JSONBUS_OK);
    assert_eq!(*results.lock().unwrap(), vec![JSONBUS_ERR_DEADLOCK; 4]);
    assert_eq!(stats(d)["published"], 101);
    assert_eq!(
        DEFAULT_CALLS.load(SeqCst),
        101,
        "\">\" matched \"self\" too"
    );
    // jsonbus_close on the default handle is a shutdown; the next use opens a fresh bus.
    assert_eq!(jsonbus_close(d, -1), JSONBUS_OK);
    assert_eq!(stats(d)["published"], 0);
    assert_eq!(push_json(c"1".as_ptr()), JSONBUS_OK);
    assert_eq!(jsonbus_flush(d, -1), JSONBUS_OK);
    assert_eq!(
        DEFAULT_CALLS.load(SeqCst),
        101,
        "callbacks of the old bus are gone"
    );
    assert_eq!(stats(d)["unrouted"], 1);
    jsonbus_free(d);
    assert_eq!(jsonbus_last_status(), JSONBUS_OK);
    assert_eq!(stats(d)["published"], 0);
}

#[test]
fn functions_that_cannot_fail_leave_the_last_error_alone() {
    assert_eq!(jsonbus_unsubscribe(null_mut(), 1), JSONBUS_ERR_NULL);
    let _ = (
        add(1, 2),
        jsonbus_version(),
        jsonbus_status_name(0),
        jsonbus_now_ns(),
        jsonbus_default(),
    );
    jsonbus_string_free(null_mut());
    assert_eq!(jsonbus_last_status(), JSONBUS_ERR_NULL);
    assert_eq!(last(), "bus is NULL");
}
