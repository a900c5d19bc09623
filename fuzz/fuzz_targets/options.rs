//! Fuzz target `options`: arbitrary bytes (cut at the first NUL, as C would) to `jsonbus_new`.
//! An empty input passes NULL.
//!
//! Oracle: a reference reading of the options table (keys, integer values, ranges) decides
//! NULL-with-JSONBUS_ERR_OPTIONS or a bus (never JSONBUS_ERR_INTERNAL, never a crash); a bus
//! must then behave as configured: `dispatcher_threads` in the stats, `max_depth` and
//! `max_message_bytes` at their exact edges, and a small `queue_capacity` with
//! `publish_timeout_ms` 0 refusing exactly the first publish beyond it with
//! JSONBUS_ERR_FULL. Every bus is closed and freed.
//!
//! A key given twice is refused (an earlier bad value must not hide behind a later good one).
#![no_main]

use ::jsonbus::ffi::*;
use jsonbus_fuzz::*;
use libfuzzer_sys::fuzz_target;
use std::ffi::c_void;
use std::ptr::null;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// Blocks while the flag at `user_data` is set.
extern "C" fn hold(_: *const jsonbus_message, user_data: *mut c_void) -> i32 {
    // SAFETY: our `AtomicBool`, alive until the bus is closed.
    let gate = unsafe { &*(user_data as *const AtomicBool) };
    while gate.load(SeqCst) {
        std::thread::yield_now();
    }
    JSONBUS_OK
}

fn publish(bus: *mut jsonbus, json: &[u8]) -> i32 {
    let rc = jsonbus_publish(bus, c"t".as_ptr(), json.as_ptr().cast(), json.len());
    check_last(rc, "publish");
    rc
}

fuzz_target!(|data: &[u8]| {
    let text = c_string(data);
    let verdict = if data.is_empty() {
        Some(DEFAULTS)
    } else {
        options_verdict(text.as_bytes())
    };
    let bus = jsonbus_new(if data.is_empty() {
        null()
    } else {
        text.as_ptr()
    });
    let Some(o) = verdict else {
        assert!(
            bus.is_null(),
            "jsonbus_new accepted {:?}, which the reference refuses",
            text
        );
        assert_eq!(
            jsonbus_last_status(),
            JSONBUS_ERR_OPTIONS,
            "{}",
            last_error()
        );
        assert!(!last_error().is_empty());
        return;
    };
    assert!(
        !bus.is_null(),
        "jsonbus_new refused {:?} ({}: {}), which the reference accepts as {o:?}",
        text,
        name(jsonbus_last_status()),
        last_error()
    );
    check_last(JSONBUS_OK, "jsonbus_new");

    let st = stats(bus);
    let threads = match o.dispatcher_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()) as u64,
        n => n as u64,
    };
    assert_eq!(stat(&st, "dispatcher_threads"), threads, "{st}");

    // max_depth, exactly at the edge (when the size limit leaves room for it).
    let d = o.max_depth as usize;
    if 2 * d + 2 <= o.max_message_bytes as usize {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
        assert_eq!(publish(bus, &nest(d)), JSONBUS_OK, "{}", last_error());
        assert_eq!(
            publish(bus, &nest(d + 1)),
            JSONBUS_ERR_JSON,
            "depth {}",
            d + 1
        );
    }
    // max_message_bytes, exactly at the edge (when it is small enough to try).
    let m = o.max_message_bytes as usize;
    if m <= 1 << 16 {
        let mut doc = vec![b' '; m];
        doc[m - 1] = b'0';
        assert_eq!(
            publish(bus, &doc),
            JSONBUS_OK,
            "{} bytes: {}",
            m,
            last_error()
        );
        doc.insert(0, b' ');
        assert_eq!(publish(bus, &doc), JSONBUS_ERR_TOO_LARGE, "{} bytes", m + 1);
    }
    // queue_capacity: with publish_timeout_ms 0 and a callback that holds its first message,
    // exactly `queue_capacity` publishes are accepted, the next is FULL.
    let c = o.queue_capacity as usize;
    if o.publish_timeout_ms == 0 && c <= 64 {
        let gate = Box::new(AtomicBool::new(true));
        let sub = jsonbus_subscribe(
            bus,
            c"t".as_ptr(),
            Some(hold),
            &*gate as *const AtomicBool as *mut c_void,
        );
        assert!(sub > 0, "{}", last_error());
        for i in 0..c {
            assert_eq!(
                publish(bus, b"1"),
                JSONBUS_OK,
                "publish {i} of capacity {c}: {}",
                last_error()
            );
        }
        assert_eq!(
            publish(bus, b"1"),
            JSONBUS_ERR_FULL,
            "publish beyond capacity {c}"
        );
        gate.store(false, SeqCst);
        assert_eq!(jsonbus_flush(bus, -1), JSONBUS_OK, "{}", last_error());
        assert_eq!(
            publish(bus, b"1"),
            JSONBUS_OK,
            "after the flush: {}",
            last_error()
        );
        assert_eq!(jsonbus_close(bus, -1), JSONBUS_OK, "{}", last_error());
        drop(gate);
    }
    assert_eq!(jsonbus_close(bus, -1), JSONBUS_OK, "{}", last_error());
    jsonbus_free(bus);
});
