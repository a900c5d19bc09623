//! The exports of subscriptions with options: end notices, pull subscriptions and their
//! messages and descriptor, per-subscription stats.

use super::error::{self, boundary};
use super::types::*;
use crate::options::SubscribeOptions;
use crate::status::{Error, Status};
use crate::subscription::end::reason_name;
use crate::subscription::Consumer;
use std::ffi::{c_char, c_void};

/// Parses a subscription's options argument (NULL: the defaults).
fn subscribe_options(options_json: *const c_char) -> Result<SubscribeOptions, Error> {
    if options_json.is_null() {
        return Ok(SubscribeOptions::default());
    }
    let t =
        text(options_json, "options_json").map_err(|e| Error::new(Status::Options, e.message))?;
    SubscribeOptions::parse(Some(t))
}

/// Shared by the subscribe calls: checks in the order NULL, CLOSED, OPTIONS, TOPIC.
fn subscribe(
    bus: *mut jsonbus,
    pattern: *const c_char,
    options_json: *const c_char,
    consumer: impl FnOnce() -> Result<Consumer, Error>,
) -> Result<i64, Error> {
    let bus = open(bus)?;
    if pattern.is_null() {
        return Err(Error::new(Status::Null, "pattern is NULL"));
    }
    let consumer = consumer()?;
    // A closed bus says so first, whatever else is wrong with the call (NULLs aside).
    bus.check_open("cannot subscribe")?;
    let options = subscribe_options(options_json)?;
    bus.subscribe_with(topic_text(pattern, "pattern")?, options, consumer)
}

/// Subscribes `cb` to the topics `pattern` matches, with its own options and an end notice.
///
/// `options_json` is NULL or "{}" for the defaults, or a JSON object with any of these keys,
/// each at most once (unknown keys, wrong types and values out of range are
/// `JSONBUS_ERR_OPTIONS`, naming the key and what it allows):
/// - `queue_limit` (default 0, 0-16777216): most messages waiting in this subscription's queue;
///   0 = no limit of its own (the bus's `queue_capacity` still bounds everything). A message
///   handed to the callback no longer waits.
/// - `on_full` ("block"; "block", "drop_oldest", "drop_new" or "end"): what a publish does when
///   the queue holds `queue_limit` messages. "block": waits for room exactly as for a full bus
///   (`publish_timeout_ms`; from a callback of the same bus it fails at once with
///   `JSONBUS_ERR_FULL`), and nothing is queued anywhere until every matching subscription has
///   room. "drop_oldest": the oldest waiting message is dropped for this subscription.
///   "drop_new": the new message is not queued for it. "end": the subscription ends
///   (`JSONBUS_END_SLOW`) and its queue is discarded. Drops are counted in the bus's and the
///   subscription's `dropped`, count as handled for `jsonbus_flush`, and never make a publish
///   fail or wait; what the subscription does get stays in `seq` order.
/// - `max_failures` (0, 0-2147483647): end the subscription (`JSONBUS_END_FAILED`) after this
///   many negative returns of its callback in a row; 0 = never.
/// - `group` (none; one topic token, a string): a queue group. Among the live subscriptions of
///   this bus with the same `group` that match a message, exactly one gets it: one whose queue
///   has room, the one with the fewest waiting messages, idle members taking turns.
///   Subscriptions outside the group get the message as usual.
///
/// `cb` is required; `on_end` may be NULL. Both get `user_data`. Returns the subscription id
/// (> 0) or NULL, CLOSED, OPTIONS, TOPIC. A refused subscription never calls `cb` or `on_end`:
/// `user_data` is still the caller's to free.
#[no_mangle]
pub extern "C" fn jsonbus_subscribe_with(
    bus: *mut jsonbus,
    pattern: *const c_char,
    options_json: *const c_char,
    cb: jsonbus_callback,
    on_end: jsonbus_end_callback,
    user_data: *mut c_void,
) -> i64 {
    boundary(|| {
        error::id(subscribe(bus, pattern, options_json, || {
            consumer(cb, on_end, user_data)
        }))
    })
}

/// Makes a pull subscription: no callback; the host takes its messages with `jsonbus_next` on
/// threads of its own, or waits for them in its event loop on `jsonbus_pull_fd`. Matching,
/// `seq` order, options (as for `jsonbus_subscribe_with`; with "block" a publish waits until a
/// puller takes a message) and accounting are those of any subscription.
///
/// Returns the subscription id (> 0) or NULL, CLOSED, OPTIONS, TOPIC. End it with
/// `jsonbus_unsubscribe`, which also releases one that ended on its own.
#[no_mangle]
pub extern "C" fn jsonbus_subscribe_pull(
    bus: *mut jsonbus,
    pattern: *const c_char,
    options_json: *const c_char,
) -> i64 {
    boundary(|| error::id(subscribe(bus, pattern, options_json, || Ok(Consumer::Pull))))
}

/// Hands out the next message of a pull subscription, in `seq` order: `JSONBUS_OK` and `*msg`
/// set. Waits up to `timeout_ms` for one (negative: no limit; 0: just look), then
/// `JSONBUS_ERR_TIMEOUT`. Once the subscription has ended (unsubscribed, slow, closed bus...)
/// and its queue is empty: `JSONBUS_ERR_ENDED`, the reason in `jsonbus_last_error()`.
/// An id that is not a live or ended pull subscription of this bus: `JSONBUS_ERR_NOT_FOUND`.
/// `*msg` is NULL after any failure.
///
/// The message stays valid, and counts as held (`queue_capacity`, `jsonbus_flush`,
/// `jsonbus_close`), until `jsonbus_message_release(*msg)`; release every one, also after the
/// bus is closed. Several threads may call this on one subscription: each message goes to one
/// of them. It counts in the stats' `delivered`.
#[no_mangle]
pub extern "C" fn jsonbus_next(
    bus: *mut jsonbus,
    subscription: i64,
    timeout_ms: i32,
    msg: *mut *mut jsonbus_message,
) -> i32 {
    boundary(|| {
        if msg.is_null() {
            return error::status(Err(Error::new(Status::Null, "msg is NULL")));
        }
        // SAFETY: `msg` is a non-NULL pointer the caller gave us to write the result to.
        unsafe { msg.write(std::ptr::null_mut()) };
        let next = with_subscription_bus(bus, subscription, |b| {
            b.next(subscription, timeout(timeout_ms))
        });
        match next {
            Ok(m) => {
                // SAFETY: as above.
                unsafe { msg.write(give_pulled(m, subscription)) };
                error::status(Ok(()))
            }
            Err(e) => error::status(Err(e)),
        }
    })
}

/// Releases a message handed out by `jsonbus_next`: once per message, like `free`, from any
/// thread, also after its bus was closed or freed. NULL does nothing. Passing anything else (a
/// callback's message, a released one) is undefined behaviour.
#[no_mangle]
pub extern "C" fn jsonbus_message_release(msg: *mut jsonbus_message) {
    boundary(|| {
        if !msg.is_null() {
            // SAFETY: the caller passes a message from `jsonbus_next`, once.
            unsafe { take_pulled(msg) };
        }
    })
}

/// A descriptor (POSIX) that polls readable while a message waits in the pull subscription or
/// it has ended, for `poll`/`epoll`/`select`/libuv/GLib loops: wait on it, then call
/// `jsonbus_next` with timeout 0 until it returns `JSONBUS_ERR_TIMEOUT`. Level-triggered: it
/// stays readable while anything is there to take. The host never reads, writes or closes it;
/// it stays open until the subscription is released by `jsonbus_unsubscribe` or the bus
/// freed, and the same descriptor is returned each time.
///
/// Returns the descriptor (>= 0), `JSONBUS_ERR_NOT_FOUND` (not a pull subscription of this
/// bus), `JSONBUS_ERR_UNSUPPORTED` on Windows, or `JSONBUS_ERR_INTERNAL` if the system refused
/// a descriptor (the message says why).
///
/// Windows has no descriptor that `poll` would see: there it is `JSONBUS_ERR_UNSUPPORTED` for
/// every pull subscription, with a last error that says so (an unknown id is still
/// `JSONBUS_ERR_NOT_FOUND`). The subscription itself works: wait in `jsonbus_next` with a
/// timeout instead, the same on every platform.
#[no_mangle]
pub extern "C" fn jsonbus_pull_fd(bus: *mut jsonbus, subscription: i64) -> i32 {
    boundary(|| {
        let fd = with_subscription_bus(bus, subscription, |b| b.pull_fd(subscription));
        match fd {
            Ok(fd) => {
                error::clear();
                fd
            }
            Err(e) => error::status(Err(e)),
        }
    })
}

/// One subscription's counters as a JSON object (free it with `jsonbus_string_free`), or NULL
/// with the last error set (`JSONBUS_ERR_NOT_FOUND` for an unknown or forgotten id). Keys:
/// `id`; `pattern`; `kind` ("callback" or "pull"); `group` (a string or null); `queued`
/// (waiting now); `max_queued` (the most that ever waited); `delivered` (callback invocations
/// or messages handed out); `dropped` (routed to it but never delivered: by its policy, when it
/// ended, or by a close that ran out of time); `callback_failures`; `ended` (null, or the
/// reason's name, such as "JSONBUS_END_SLOW"); and its options `queue_limit`, `on_full`,
/// `max_failures`. Works inside the end notice, and for a pull subscription until it is
/// released.
#[no_mangle]
pub extern "C" fn jsonbus_subscription_stats(bus: *mut jsonbus, subscription: i64) -> *mut c_char {
    boundary(|| {
        let stats =
            with_subscription_bus(bus, subscription, |b| b.subscription_stats(subscription));
        json_string(stats.map(|s| s.to_json()))
    })
}

/// The name of an end reason, such as "JSONBUS_END_SLOW"; "JSONBUS_END_UNKNOWN" for a value
/// that is not one. Never NULL; the string is static.
#[no_mangle]
pub extern "C" fn jsonbus_end_reason_name(reason: i32) -> *const c_char {
    boundary(|| reason_name(reason).as_ptr())
}
