//! The exported functions, one per C entry point. Each runs inside the panic boundary, turns
//! its arguments into core values, calls the core and records the thread's last error.

use super::error::{self, boundary};
use super::types::*;
use crate::bus::Bus;
use crate::options::Options;
use crate::status::{code_name, Error, Status};
use crate::topic::DEFAULT_TOPIC;
use crate::{clock, default_bus, dispatch};
use std::ffi::{c_char, c_void, CString};

/// The library's version, "MAJOR.MINOR.PATCH" (the same as the `JSONBUS_VERSION_*` macros).
#[no_mangle]
pub extern "C" fn jsonbus_version() -> *const c_char {
    boundary(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}

/// The name of a status code, such as "JSONBUS_ERR_JSON"; "JSONBUS_UNKNOWN_STATUS" for a code
/// that is not one. Never NULL; the string is static.
#[no_mangle]
pub extern "C" fn jsonbus_status_name(code: i32) -> *const c_char {
    boundary(|| code_name(code).as_ptr())
}

/// What went wrong in this thread's last failing call, for people: for invalid JSON what and
/// where (line and column), for invalid UTF-8 the byte offset, for a bad topic the token and
/// why, for bad options the key and the allowed range. "" when the last call succeeded.
/// Valid until this thread's next call into the library. Never NULL.
#[no_mangle]
pub extern "C" fn jsonbus_last_error() -> *const c_char {
    boundary(error::last_text)
}

/// The status of this thread's last call that can fail: `JSONBUS_OK` if it succeeded, else its
/// `JSONBUS_ERR_*` code.
#[no_mangle]
pub extern "C" fn jsonbus_last_status() -> i32 {
    boundary(error::last_status)
}

/// Nanoseconds on the machine's monotonic clock (`CLOCK_MONOTONIC` on POSIX, the performance
/// counter on Windows), the clock that stamps `jsonbus_message.published_ns`: times from
/// different processes on one machine compare (on a shared bus the hub stamps every message).
#[no_mangle]
pub extern "C" fn jsonbus_now_ns() -> u64 {
    boundary(clock::now_ns)
}

/// Creates a bus and starts its dispatcher threads.
///
/// `options_json` is NULL or "{}" for the defaults, or a JSON object with any of these
/// keys, each at most once, each an integer written as one (`-?[0-9]+`: `-0` is 0, while
/// `1.0` and `1e3` are refused):
/// - `dispatcher_threads` (default 1, 0-256): threads that run callbacks; 0 = one per CPU.
/// - `queue_capacity` (65536, 1-16777216): messages accepted and not yet delivered to every
///   subscription they were routed to; publish blocks, waits or fails beyond it.
/// - `publish_timeout_ms` (-1, -1-2147483647): when full, -1 blocks until there is room, 0
///   fails at once with `JSONBUS_ERR_FULL`, n > 0 waits up to n ms.
/// - `max_message_bytes` (16777216, 1-1073741824): largest payload accepted.
/// - `max_depth` (128, 1-65535): deepest nesting of arrays and objects accepted.
/// - `dispatcher_spin_us` (100, 0-1000000): how long an idle dispatcher thread keeps polling
///   for work before it sleeps. Polling picks a message up in about a microsecond; waking a
///   sleeping thread takes tens. While messages arrive faster than it looks, a dispatcher
///   looks less often (every 2 us at most), so that publishers keep their cache lines. The
///   price is CPU: at more than one message per spin period a dispatcher never sleeps. 0
///   sleeps at once.
///
/// Returns NULL on failure (`JSONBUS_ERR_OPTIONS`, also for text that is not valid UTF-8, or
/// `JSONBUS_ERR_INTERNAL` if a thread could not start), with the reason in
/// `jsonbus_last_error()`. Free the bus with `jsonbus_free`.
#[no_mangle]
pub extern "C" fn jsonbus_new(options_json: *const c_char) -> *mut jsonbus {
    boundary(|| {
        let created = (|| {
            let text = if options_json.is_null() {
                None
            } else {
                let t = text(options_json, "options_json")
                    .map_err(|e| Error::new(Status::Options, e.message))?;
                Some(t)
            };
            Bus::new(Options::parse(text)?)
        })();
        match created {
            Ok(bus) => {
                error::clear();
                new_handle(bus)
            }
            Err(e) => {
                error::set(&e);
                std::ptr::null_mut()
            }
        }
    })
}

/// Closes a bus: stops accepting publishes at once, keeps delivering what is queued for up to
/// `timeout_ms` (negative: no limit; 0: not at all), then discards the rest (counted in the
/// stats' `dropped`); a callback already running is always waited for, and so are messages
/// handed out by `jsonbus_next` until released (they stay valid after the close). Then every
/// subscription ends (`JSONBUS_END_CLOSED`; end notices run on this thread). Returns
/// `JSONBUS_ERR_TIMEOUT` if it discarded anything or pulled messages were still not
/// released, else `JSONBUS_OK`. Pull subscriptions then answer `jsonbus_next` with
/// `JSONBUS_ERR_ENDED`, and their descriptors stay open until `jsonbus_free`. With pull
/// subscriptions, a close without a time limit waits until their queued messages have been
/// taken and released: give it a time limit, or call `jsonbus_free`, if nothing will pull them.
///
/// Afterwards no callback runs and the bus has no threads; publish and subscribe return
/// `JSONBUS_ERR_CLOSED`, unsubscribe `JSONBUS_ERR_NOT_FOUND`, flush and a second close
/// `JSONBUS_OK`, and `jsonbus_stats` still works. Every `user_data` may be freed.
/// From a callback of the same bus: `JSONBUS_ERR_DEADLOCK`.
/// `jsonbus_close(jsonbus_default(), t)` is `jsonbus_shutdown(t)`.
#[no_mangle]
pub extern "C" fn jsonbus_close(bus: *mut jsonbus, timeout_ms: i32) -> i32 {
    boundary(|| {
        error::status(handle(bus).and_then(|h| match h {
            Handle::Own(b) => b.close(timeout(timeout_ms)),
            Handle::Default => default_bus::shutdown(timeout(timeout_ms)),
        }))
    })
}

/// Closes the bus if it is open and frees it. NULL does nothing. The close is
/// `jsonbus_close(bus, -1)` - every queued callback delivery is made - except for pull
/// subscriptions, which nobody can be pulling from now: they end at once, their waiting
/// messages discarded (counted as dropped), and messages already handed out by `jsonbus_next`
/// are not waited for: they stay valid until `jsonbus_message_release`, also after the free.
/// Like `free`, it must not race with other calls on the same bus, and the handle must not be
/// used afterwards. From a callback of the same bus it does nothing and sets the last status to
/// `JSONBUS_ERR_DEADLOCK`. `jsonbus_free(jsonbus_default())` is `jsonbus_shutdown(-1)`.
#[no_mangle]
pub extern "C" fn jsonbus_free(bus: *mut jsonbus) {
    boundary(|| {
        let result = match handle(bus) {
            Err(_) => Ok(()),
            Ok(Handle::Default) => default_bus::shutdown(None),
            Ok(Handle::Own(b)) if dispatch::in_callback_of(b.id()) => Err(Error::new(
                Status::Deadlock,
                "jsonbus_free was called from a callback of the same bus; the bus was not freed",
            )),
            Ok(Handle::Own(b)) => {
                b.close_for_free();
                // SAFETY: `bus` came from `jsonbus_new` (it is not the default handle) and the
                // caller does not use it again.
                unsafe { free_handle(bus) };
                Ok(())
            }
        };
        error::status(result);
    })
}

/// Subscribes `cb` to the topics `pattern` matches, with `user_data` passed to every call:
/// `jsonbus_subscribe_with(bus, pattern, NULL, cb, NULL, user_data)`.
/// Patterns are topics whose tokens may also be `*` (exactly one token) or, as the last token,
/// `>` (one or more tokens): `orders.*.new`, `orders.>`, `>`. A wildcard never matches a first
/// token `_INBOX`: replies to requests (`_INBOX....`) reach only patterns that name `_INBOX`.
///
/// Returns the subscription id (> 0; unique in the process and never reused) or a negative
/// `JSONBUS_ERR_*`: NULL, TOPIC, CLOSED. The callback gets every matching message
/// published after this returns; see `jsonbus_callback` for the rules it runs under.
#[no_mangle]
pub extern "C" fn jsonbus_subscribe(
    bus: *mut jsonbus,
    pattern: *const c_char,
    cb: jsonbus_callback,
    user_data: *mut c_void,
) -> i64 {
    super::subscriptions::jsonbus_subscribe_with(
        bus,
        pattern,
        std::ptr::null(),
        cb,
        None,
        user_data,
    )
}

/// Ends a subscription; messages still queued for it are discarded (counted as `dropped`).
/// When it returns `JSONBUS_OK`, the callback is not running and never runs again and its end
/// notice has run, so its `user_data` may be freed - except when called from a callback (or an
/// end notice) of the same bus for another subscription: it then does not wait, an invocation
/// already running may still be finishing (it is never started again), and the end notice runs
/// on a dispatcher thread once it has returned.
///
/// A pull subscription that ended on its own (`JSONBUS_END_SLOW`) is released: `JSONBUS_OK`.
/// A callback subscription that has already ended (its callback returned `JSONBUS_UNSUBSCRIBE`,
/// `max_failures`, slow) is `JSONBUS_ERR_NOT_FOUND`, as is an unknown id or any id on a closed
/// bus; its end notice runs, or ran, on a dispatcher thread.
#[no_mangle]
pub extern "C" fn jsonbus_unsubscribe(bus: *mut jsonbus, subscription: i64) -> i32 {
    boundary(|| {
        error::status(current(bus).and_then(|b| match b {
            Some(b) => b.unsubscribe(subscription),
            None => Err(Error::new(
                Status::NotFound,
                format!("no subscription {subscription} on the default bus"),
            )),
        }))
    })
}

/// Publishes `json_len` bytes of JSON on `topic` (no `*` or `>` tokens).
///
/// Before it returns it checks the topic, the size, UTF-8 and that the payload is exactly one
/// JSON value nested at most `max_depth` deep, then copies it: the buffer may be reused at
/// once. An accepted message takes the next `seq` and is delivered to every subscription that
/// matches it. When the bus is full it blocks, waits or fails as `publish_timeout_ms` says
/// (from a callback into its own bus: fails at once).
///
/// Returns `JSONBUS_OK` or NULL, TOPIC, TOO_LARGE, UTF8, JSON, FULL, CLOSED (each but NULL
/// counted in the stats' `rejected`). On a closed bus it is CLOSED whatever the arguments, once
/// no pointer is NULL.
#[no_mangle]
pub extern "C" fn jsonbus_publish(
    bus: *mut jsonbus,
    topic: *const c_char,
    json: *const c_char,
    json_len: usize,
) -> i32 {
    boundary(|| error::status(publish(bus, topic, json, Some(json_len))))
}

/// Shared by `jsonbus_publish` and `push_json` (`len` None: NUL-terminated).
fn publish(
    bus: *const jsonbus,
    topic: *const c_char,
    json: *const c_char,
    len: Option<usize>,
) -> Result<(), Error> {
    let bus = open(bus)?;
    let (topic, bytes) = message_args(&bus, topic, json, len, "cannot publish")?;
    bus.publish(topic, bytes).map(|_| ())
}

/// Waits until every message whose publish returned before this call - and everything their
/// callbacks publish into this bus, transitively - has been delivered to all its subscriptions
/// and their callbacks have returned (Go's `WaitGroup.Wait`). Messages other threads publish
/// meanwhile do not hold it up. Messages dropped by a subscription's policy count as handled;
/// messages handed out by `jsonbus_next` are waited for until released. End notices are not
/// messages: one that a dispatcher thread runs may still be running when this returns
/// (`jsonbus_unsubscribe`, `jsonbus_close` and `jsonbus_free` do wait for them).
/// `timeout_ms`: negative waits without limit, 0 does not wait.
///
/// Returns `JSONBUS_OK`, `JSONBUS_ERR_TIMEOUT`, `JSONBUS_ERR_CLOSED` (the bus was closed
/// meanwhile and a message it waited for was discarded), or `JSONBUS_ERR_DEADLOCK` from a
/// callback of the same bus. On a closed bus: `JSONBUS_OK`.
#[no_mangle]
pub extern "C" fn jsonbus_flush(bus: *mut jsonbus, timeout_ms: i32) -> i32 {
    boundary(|| {
        error::status(current(bus).and_then(|b| b.map_or(Ok(()), |b| b.flush(timeout(timeout_ms)))))
    })
}

/// The bus's counters as a JSON object (free it with `jsonbus_string_free`), or NULL with the
/// last error set. Keys, all integers unless said:
/// - `published`: messages accepted (also the `seq` of the last one);
/// - `delivered`: callback invocations, and messages handed out by `jsonbus_next`;
/// - `unrouted`: accepted messages that matched no subscription;
/// - `dropped`: deliveries discarded - by a close that ran out of time, queued for a
///   subscription when it ended, or dropped by a subscription's `on_full` policy (`delivered`
///   and `dropped` count message x subscription);
/// - `queued`: messages held now (counted against `queue_capacity`);
/// - `subscriptions`: live subscriptions (not those that ended);
/// - `callback_failures`: callbacks that returned a negative value;
/// - `dispatcher_threads`: dispatcher threads the bus runs (0 in the options resolved to the
///   CPU count);
/// - `timers`: `jsonbus_publish_after` timers pending;
/// - `requests`: requests published (`jsonbus_request`, `jsonbus_request_async`), those that
///   found no responder included;
/// - `requests_waiting`: requests waiting for their first reply now;
/// - `no_responders`: requests that matched no subscription;
/// - `late_replies`: replies that came after their request's first reply, time-out or close
///   (discarded; a reply delivered to its request counts in `delivered`);
/// - `rejected`: an object counting refused publishes by reason: `json`, `utf8`, `topic`,
///   `too_large`, `full`, `closed` (requests and timers included).
#[no_mangle]
pub extern "C" fn jsonbus_stats(bus: *mut jsonbus) -> *mut c_char {
    boundary(|| {
        let stats = match handle(bus) {
            Ok(Handle::Own(b)) => Ok(b.stats()),
            Ok(Handle::Default) => default_bus::stats(),
            Err(e) => Err(e),
        };
        json_string(stats.map(|s| s.to_json()))
    })
}

/// Frees a string returned by `jsonbus_stats` or `jsonbus_subscription_stats`. NULL does
/// nothing.
#[no_mangle]
pub extern "C" fn jsonbus_string_free(s: *mut c_char) {
    boundary(|| {
        if !s.is_null() {
            // SAFETY: `s` came from `CString::into_raw` in `json_string` and is freed once.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// The process-wide default bus that the quick API uses: always the same pointer, valid for
/// as long as the library is loaded. It opens (with the default options, or those in the
/// environment variable `JSONBUS_DEFAULT_OPTIONS`) on the first call that needs it.
#[no_mangle]
pub extern "C" fn jsonbus_default() -> *mut jsonbus {
    boundary(|| std::ptr::addr_of!(DEFAULT_HANDLE).cast_mut())
}

/// Closes the default bus as `jsonbus_close` does; the next call through `jsonbus_default()`
/// or the quick API opens a fresh one. A call racing with the shutdown completes on the old
/// bus, fails with `JSONBUS_ERR_CLOSED`, or lands on the new one. Once every bus is closed or
/// freed and this has returned, the library can be unloaded (`dlclose`; Windows:
/// `FreeLibrary`, where Rust's std keeps one TLS index of the process's 1088 taken for each
/// load, so a process can load and unload jsonbus.dll about 1,080 times). From a callback of
/// the default bus: `JSONBUS_ERR_DEADLOCK`.
#[no_mangle]
pub extern "C" fn jsonbus_shutdown(timeout_ms: i32) -> i32 {
    boundary(|| error::status(default_bus::shutdown(timeout(timeout_ms))))
}

/// Quick API: `a + b`, wrapping on overflow (never undefined behaviour).
#[no_mangle]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    boundary(|| a.wrapping_add(b))
}

/// Quick API: `jsonbus_subscribe(jsonbus_default(), ">", cb, user_data)` - every message on
/// the default bus.
#[no_mangle]
pub extern "C" fn register_callback(cb: jsonbus_callback, user_data: *mut c_void) -> i64 {
    jsonbus_subscribe(jsonbus_default(), c">".as_ptr(), cb, user_data)
}

/// Quick API: `jsonbus_publish(jsonbus_default(), "default", json, strlen(json))`.
#[no_mangle]
pub extern "C" fn push_json(json: *const c_char) -> i32 {
    boundary(|| error::status(publish_default(json)))
}

/// `push_json`'s publish: the topic is a constant known good, so only the payload is checked
/// here (in `jsonbus_publish`'s order: NULL, CLOSED, TOO_LARGE).
fn publish_default(json: *const c_char) -> Result<(), Error> {
    let bus = open(&DEFAULT_HANDLE)?;
    let bytes = payload_args(&bus, json, None, "cannot publish")?;
    bus.publish(DEFAULT_TOPIC, bytes).map(|_| ())
}
