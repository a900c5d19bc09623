//! The exports of requests and timers: request (blocking and with a reply callback), reply,
//! publish_after and cancel.

#![allow(non_camel_case_types)] // C names, as the header spells them

use super::error::{self, boundary};
use super::types::*;
use crate::message::Message;
use crate::status::{Error, Status, OK};
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

/// The callback of `jsonbus_request_async`.
///
/// Called exactly once per request that `jsonbus_request_async` accepted (returned
/// `JSONBUS_OK`), on one of the bus's dispatcher threads: with `JSONBUS_OK` and the first reply
/// (`reply->subscription` is 0; `reply` and what it points to are valid only during the call),
/// or with `JSONBUS_ERR_TIMEOUT` or `JSONBUS_ERR_CLOSED` and `reply` NULL. It may call what a
/// subscription's callback may call, with the same rules (`jsonbus_request_async` works there,
/// `jsonbus_request` returns `JSONBUS_ERR_DEADLOCK`); what it publishes is part of the
/// reply's `jsonbus_flush`. It must not unwind out of the call. Free `user_data` here.
pub type jsonbus_reply_callback = Option<
    unsafe extern "C" fn(status: i32, reply: *const jsonbus_message, user_data: *mut c_void),
>;

/// Publishes a request on `topic` and waits for its first reply.
///
/// The request is a publish like `jsonbus_publish` (checked and copied before the call
/// returns, numbered, and delivered to every matching subscription) whose message carries a
/// fresh `reply_to` topic (`_INBOX.` and unique tokens). A reply is any message published on that
/// topic: by `jsonbus_reply` in the responder's callback, or by `jsonbus_publish` from any
/// thread later. The first reply wins; later ones are discarded and counted in the stats'
/// `late_replies`.
///
/// `timeout_ms`: negative waits without limit; 0 gives up unless the reply came during the call.
/// `reply` is required; `reply_len` may be NULL.
///
/// Returns `JSONBUS_OK` with a copy of the reply's payload in `*reply` (NUL-terminated; free it
/// with `jsonbus_string_free`) and its length in `*reply_len`; otherwise `*reply` is NULL and
/// the status is `JSONBUS_ERR_NO_RESPONDERS` at once when no subscription matched `topic` (counted
/// in `no_responders`), `JSONBUS_ERR_TIMEOUT`, `JSONBUS_ERR_CLOSED` (the bus closed before a
/// reply came), `JSONBUS_ERR_DEADLOCK` from a callback or end notice of the same bus (it
/// would hold a dispatcher thread that the responder may need: use `jsonbus_request_async`
/// there), or a publish's errors (NULL, TOPIC, TOO_LARGE, UTF8, JSON, FULL).
#[no_mangle]
pub extern "C" fn jsonbus_request(
    bus: *mut jsonbus,
    topic: *const c_char,
    json: *const c_char,
    json_len: usize,
    timeout_ms: i32,
    reply: *mut *mut c_char,
    reply_len: *mut usize,
) -> i32 {
    boundary(|| {
        if reply.is_null() {
            return error::status(Err(Error::new(Status::Null, "reply is NULL")));
        }
        // SAFETY: `reply` is non-NULL and points to a `char *` the caller owns; `reply_len`
        // is NULL or points to a `size_t`.
        unsafe {
            *reply = std::ptr::null_mut();
            if !reply_len.is_null() {
                *reply_len = 0;
            }
        }
        let answer = (|| {
            let b = open(bus)?;
            let (topic, bytes) =
                message_args(&b, topic, json, Some(json_len), "cannot make a request")?;
            let m = b.request(topic, bytes, timeout(timeout_ms))?;
            let copy = CString::new(m.json())
                .map_err(|_| Error::new(Status::Internal, "the reply holds a NUL byte"))?;
            Ok((copy, m.json().len()))
        })();
        error::status(answer.map(|(copy, len)| {
            // SAFETY: as above.
            unsafe {
                *reply = copy.into_raw();
                if !reply_len.is_null() {
                    *reply_len = len;
                }
            }
        }))
    })
}

/// Publishes a request on `topic`, like `jsonbus_request`, without waiting: `cb` gets the
/// answer.
///
/// Returns `JSONBUS_OK`, and then `cb` is called exactly once on a dispatcher thread of the
/// bus - with `JSONBUS_OK` and the first reply, with `JSONBUS_ERR_TIMEOUT` once `timeout_ms`
/// ran out (negative: no time limit), or with `JSONBUS_ERR_CLOSED` before `jsonbus_close`
/// (or `jsonbus_free`) returns. Or returns an error and never calls `cb`: NULL (`cb` too),
/// NO_RESPONDERS, CLOSED, INTERNAL (the bus's timer thread could not start), or a publish's
/// errors. Works from a callback of the same bus, even with one dispatcher thread.
///
/// `cb` may run before this call returns (a responder can answer in microseconds): set up
/// everything it reads first. One exception to "on a dispatcher thread": a time-out that fires
/// while the bus closes, after its dispatcher threads have stopped, calls `cb` (with
/// `JSONBUS_ERR_TIMEOUT`) on the thread of that `jsonbus_close` / `jsonbus_free` before it
/// returns - so do not hold a lock around `jsonbus_close` that `cb` takes. Time-outs are kept
/// by the bus's timer thread, as `jsonbus_publish_after` timers are: while a due timer's
/// message waits for room in a "block" subscription, time-outs wait too.
#[no_mangle]
pub extern "C" fn jsonbus_request_async(
    bus: *mut jsonbus,
    topic: *const c_char,
    json: *const c_char,
    json_len: usize,
    timeout_ms: i32,
    cb: jsonbus_reply_callback,
    user_data: *mut c_void,
) -> i32 {
    boundary(|| {
        error::status((|| {
            let b = open(bus)?;
            let f = cb.ok_or_else(|| Error::new(Status::Null, "cb is NULL"))?;
            let (topic, bytes) =
                message_args(&b, topic, json, Some(json_len), "cannot make a request")?;
            let data = UserData(user_data);
            let callback = Box::new(move |answer: Result<&Message, Status>| match answer {
                Ok(m) => {
                    let msg = c_message(m, 0);
                    // SAFETY: the caller's callback with its own `user_data`; `msg` and the
                    // bytes it points to outlive the call.
                    unsafe { f(OK, &msg, data.get()) }
                }
                // SAFETY: as above; `reply` is NULL when there is none.
                Err(s) => unsafe { f(s.code(), std::ptr::null(), data.get()) },
            });
            b.request_async(topic, bytes, timeout(timeout_ms), callback)
        })())
    })
}

/// Answers the request `request` (the message a responder's callback got) with `json_len`
/// bytes of JSON: `jsonbus_publish` on its `reply_to`, with the same checks and errors.
/// `JSONBUS_ERR_NOT_FOUND` when the message has no `reply_to` (it was not sent as a request).
/// Call it during the callback, or copy `reply_to` and publish on it later. From a callback of
/// the same bus it never waits for room (a publish from a callback never does): on a full bus
/// it fails at once with `JSONBUS_ERR_FULL`, and the requester gets no reply (it times out).
/// `reply_to` is read as a NUL-terminated topic; `reply_to_len` is not trusted.
#[no_mangle]
pub extern "C" fn jsonbus_reply(
    bus: *mut jsonbus,
    request: *const jsonbus_message,
    json: *const c_char,
    json_len: usize,
) -> i32 {
    boundary(|| {
        error::status((|| {
            let b = open(bus)?;
            // SAFETY: a non-NULL `request` points to a `jsonbus_message` (the header says so).
            let request = unsafe { request.as_ref() }
                .ok_or_else(|| Error::new(Status::Null, "request is NULL"))?;
            if request.reply_to.is_null() {
                return b.reply(None, b"").map(|_| ());
            }
            let (topic, bytes) =
                message_args(&b, request.reply_to, json, Some(json_len), "cannot reply")?;
            b.reply(Some(topic), bytes).map(|_| ())
        })())
    })
}

/// Longest delay `jsonbus_publish_after` keeps as given (2^40 ms, about 35 years).
const MAX_DELAY_MS: i64 = 1 << 40;

/// Publishes `json_len` bytes of JSON on `topic` `delay_ms` milliseconds from now (0 or
/// negative: at once; more than 2^40 is taken as 2^40).
///
/// Checked and copied before it returns, as `jsonbus_publish` (same errors; the buffer may be
/// reused at once), and held against `queue_capacity` from then on (a full bus blocks, waits
/// or fails as for a publish). When it is due the bus's timer thread publishes it: it takes
/// its `seq` then, never before its time, within a few milliseconds of it on an idle machine.
/// Timers of one bus with the same due time fire in the order they were set. A due message
/// that a "block" subscription has no room for waits as a publish would, holding up later
/// timers; if `publish_timeout_ms` runs out it is dropped and counted in `dropped`.
/// `jsonbus_flush` does not wait for timers not yet due. Close discards pending timers and
/// counts them in `dropped`. The stats' `timers` counts those pending.
///
/// Returns the timer's id (> 0, unique in the process, for `jsonbus_cancel`), or a negative
/// status: NULL, TOPIC, TOO_LARGE, UTF8, JSON, FULL, CLOSED, INTERNAL (the timer thread could
/// not start).
#[no_mangle]
pub extern "C" fn jsonbus_publish_after(
    bus: *mut jsonbus,
    topic: *const c_char,
    json: *const c_char,
    json_len: usize,
    delay_ms: i64,
) -> i64 {
    boundary(|| {
        let set = (|| {
            let b = open(bus)?;
            let (topic, bytes) =
                message_args(&b, topic, json, Some(json_len), "cannot set a timer")?;
            let delay = Duration::from_millis(delay_ms.clamp(0, MAX_DELAY_MS) as u64);
            b.publish_after(topic, bytes, delay)
        })();
        error::id(set)
    })
}

/// Stops a pending `jsonbus_publish_after` timer: its message is never published and its
/// capacity is given back. Returns `JSONBUS_OK`, or `JSONBUS_ERR_NOT_FOUND` when it already
/// fired (its publish has begun), was cancelled, was discarded by a close, or never existed on
/// this bus. Exactly one of firing and cancelling happens, whatever the timing.
#[no_mangle]
pub extern "C" fn jsonbus_cancel(bus: *mut jsonbus, timer: i64) -> i32 {
    boundary(|| {
        error::status(match current(bus) {
            Ok(Some(b)) => b.cancel(timer),
            Ok(None) => Err(Error::new(
                Status::NotFound,
                format!("no pending timer {timer} on the default bus"),
            )),
            Err(e) => Err(e),
        })
    })
}
