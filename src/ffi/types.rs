//! The C types and constants, and the conversions from C arguments to core values.

#![allow(non_camel_case_types)] // C names, as the header spells them

use crate::bus::Bus;
use crate::default_bus;
use crate::message::Message;
use crate::status::{Error, Status};
use crate::subscription::end::{EndNotice, EndReason};
use crate::subscription::{Callback, Consumer, Delivery, Pulled};
use crate::topic::MAX_TOPIC_BYTES;
use std::ffi::{c_char, c_void, CStr};
use std::ops::Deref;
use std::time::Duration;

/// Success.
pub const JSONBUS_OK: i32 = 0;
/// Only as a callback's return value: end this subscription (as if it called
/// `jsonbus_unsubscribe` on itself). Its queued messages are discarded and counted as dropped.
pub const JSONBUS_UNSUBSCRIBE: i32 = 1;
/// A required pointer argument was NULL.
pub const JSONBUS_ERR_NULL: i32 = -1;
/// The payload is not valid UTF-8; the message gives the byte offset. (A topic or pattern that
/// is not UTF-8 gets `JSONBUS_ERR_TOPIC`, options `JSONBUS_ERR_OPTIONS`.)
pub const JSONBUS_ERR_UTF8: i32 = -2;
/// The payload is not exactly one valid JSON value (RFC 8259), or nests deeper than
/// `max_depth`; the message says what is wrong, with line and column.
pub const JSONBUS_ERR_JSON: i32 = -3;
/// A topic or pattern is malformed; the message names the token and why.
pub const JSONBUS_ERR_TOPIC: i32 = -4;
/// The payload is over `max_message_bytes`.
pub const JSONBUS_ERR_TOO_LARGE: i32 = -5;
/// The bus is full and `publish_timeout_ms` ran out (or a callback published into its own
/// full bus, which never waits).
pub const JSONBUS_ERR_FULL: i32 = -6;
/// `jsonbus_flush` / `jsonbus_close` / `jsonbus_shutdown` did not finish in time.
pub const JSONBUS_ERR_TIMEOUT: i32 = -7;
/// The bus is closed.
pub const JSONBUS_ERR_CLOSED: i32 = -8;
/// No such subscription on this bus.
pub const JSONBUS_ERR_NOT_FOUND: i32 = -9;
/// The call would wait for the callback that is making it.
pub const JSONBUS_ERR_DEADLOCK: i32 = -10;
/// The options are invalid JSON, not an object, have an unknown key or a value out of range;
/// the message names the key and the allowed range.
pub const JSONBUS_ERR_OPTIONS: i32 = -11;
/// A bug inside the library was caught; the bus stays usable.
pub const JSONBUS_ERR_INTERNAL: i32 = -12;
/// The subscription has ended on its own (the message says why): `jsonbus_next` once its queue
/// is empty. `jsonbus_unsubscribe` releases it.
pub const JSONBUS_ERR_ENDED: i32 = -13;
/// This build or platform does not offer the call (the message says what does), such as
/// `jsonbus_pull_fd` on Windows.
pub const JSONBUS_ERR_UNSUPPORTED: i32 = -14;
/// A request matched no subscription when it was published (counted in the stats'
/// `no_responders`).
pub const JSONBUS_ERR_NO_RESPONDERS: i32 = -15;
/// `jsonbus_attach`: no bus is served under that name (within `connect_timeout_ms`).
pub const JSONBUS_ERR_NO_BUS: i32 = -16;
/// `jsonbus_serve`: another live bus already serves that name (or this bus serves one already).
pub const JSONBUS_ERR_NAME_IN_USE: i32 = -17;
/// The name's directory, or the process at the other end, is not trusted: wrong owner, mode
/// or user (the message says which).
pub const JSONBUS_ERR_PERMISSION: i32 = -18;
/// An attached handle: the serving process is gone, dropped this process, or this is a child
/// made by `fork` after the attach.
pub const JSONBUS_ERR_DISCONNECTED: i32 = -19;
/// The other process speaks another protocol version or broke the protocol.
pub const JSONBUS_ERR_PEER: i32 = -20;
/// A configured limit was reached, such as the hub's `max_peers` (the message names it).
pub const JSONBUS_ERR_LIMIT: i32 = -21;

/// End reason: `jsonbus_unsubscribe` ended the subscription.
pub const JSONBUS_END_UNSUBSCRIBED: i32 = 1;
/// End reason: its callback returned `JSONBUS_UNSUBSCRIBE` (a callback that calls
/// `jsonbus_unsubscribe` on its own subscription gives `JSONBUS_END_UNSUBSCRIBED`).
pub const JSONBUS_END_RETURNED: i32 = 2;
/// End reason: its queue was at `queue_limit` with `on_full` "end" when a message came.
pub const JSONBUS_END_SLOW: i32 = 3;
/// End reason: its callback returned a negative value `max_failures` times in a row.
pub const JSONBUS_END_FAILED: i32 = 4;
/// End reason: the bus was closed or freed.
pub const JSONBUS_END_CLOSED: i32 = 5;
/// End reason: the process at the other end of a bus shared across processes is gone: at the
/// hub, the attached process that made the subscription exited, was dropped or broke the
/// protocol; in an attached process, the hub exited or dropped this process. Not produced by
/// a bus used in one process.
pub const JSONBUS_END_PEER_GONE: i32 = 6;

/// A bus. Opaque: create it with `jsonbus_new` (or use `jsonbus_default()`), end it with
/// `jsonbus_free`.
pub struct jsonbus {
    target: Target,
}

enum Target {
    Own(Bus),
    Default,
}

/// The handle `jsonbus_default()` returns: always the same address.
pub(crate) static DEFAULT_HANDLE: jsonbus = jsonbus {
    target: Target::Default,
};

/// A message as a callback sees it: valid only during the callback (copy what you keep). One
/// handed out by `jsonbus_next` stays valid until `jsonbus_message_release`. New fields are
/// only ever appended.
#[repr(C)]
pub struct jsonbus_message {
    /// The topic it was published on, NUL-terminated.
    pub topic: *const c_char,
    /// Length of `topic` in bytes, without the NUL.
    pub topic_len: usize,
    /// The payload, NUL-terminated: exactly the bytes that were published.
    pub json: *const c_char,
    /// Length of `json` in bytes, without the NUL.
    pub json_len: usize,
    /// Bus-wide publish order: starts at 1, strictly increasing.
    pub seq: u64,
    /// `jsonbus_now_ns()` when it was published.
    pub published_ns: u64,
    /// Id of the subscription being called (0 for the reply a `jsonbus_reply_callback` gets).
    pub subscription: i64,
    /// For a request: the topic to answer on (`_INBOX.` and unique tokens), NUL-terminated;
    /// NULL for any other message. Answer with `jsonbus_reply`, or copy it and
    /// `jsonbus_publish` on it later from any thread: like the rest of the message it is valid
    /// only during the callback.
    pub reply_to: *const c_char,
    /// Length of `reply_to` in bytes, without the NUL; 0 when there is none.
    pub reply_to_len: usize,
}

/// A subscription's callback.
///
/// It runs on one of the bus's dispatcher threads, never on the publisher's, and never
/// concurrently with itself; it sees its messages in `seq` order. Different subscriptions may
/// run at the same time on different dispatcher threads.
///
/// Return `JSONBUS_OK` to stay subscribed, `JSONBUS_UNSUBSCRIBE` to end this subscription, or
/// a negative value to report a failure (counted in the stats' `callback_failures`; it stays
/// subscribed, unless that was its `max_failures`-th in a row). Other positive values count as
/// `JSONBUS_OK`.
///
/// It may call `jsonbus_publish`, `jsonbus_subscribe`, `jsonbus_unsubscribe`, `jsonbus_stats`
/// and the quick API on any bus. On its own bus, `jsonbus_flush`, `jsonbus_close` and
/// `jsonbus_shutdown` return `JSONBUS_ERR_DEADLOCK`, `jsonbus_free` does nothing, and a publish
/// that finds the bus full fails at once with `JSONBUS_ERR_FULL`. It must not unwind (C++
/// exceptions, `longjmp`) out of the callback.
///
/// `user_data` is the pointer given to `jsonbus_subscribe`; jsonbus never reads or frees it.
/// Free it in the subscription's end notice (`jsonbus_subscribe_with`), or once
/// `jsonbus_unsubscribe` returned `JSONBUS_OK` (from outside the callback), once the callback
/// returned `JSONBUS_UNSUBSCRIBE`, or once `jsonbus_close` returned.
pub type jsonbus_callback =
    Option<unsafe extern "C" fn(msg: *const jsonbus_message, user_data: *mut c_void) -> i32>;

/// A subscription's end notice, for `jsonbus_subscribe_with`.
///
/// Called exactly once per subscription, whatever ends it, with its id, the reason
/// (`JSONBUS_END_*`) and the subscription's `user_data`. It runs after the last invocation of the
/// callback has returned, never concurrently with it, and no callback of the subscription runs
/// once it has begun: free `user_data` here.
///
/// Which thread calls it: the thread of a `jsonbus_unsubscribe`, `jsonbus_close` or
/// `jsonbus_free` that ended the subscription from outside the bus's callbacks (it has returned
/// before they return), otherwise a dispatcher thread: after the callback returned
/// `JSONBUS_UNSUBSCRIBE` or its `max_failures`-th failure, after another callback of the bus
/// unsubscribed it (once a running invocation returns), or after a publish ended it as slow;
/// `jsonbus_flush` does not wait for those.
/// It may call what a callback may call, with the same rules (on its own bus `jsonbus_flush` and
/// `jsonbus_close` return `JSONBUS_ERR_DEADLOCK`, a publish never waits for room). It must not
/// unwind out of the call.
pub type jsonbus_end_callback =
    Option<unsafe extern "C" fn(subscription: i64, reason: i32, user_data: *mut c_void)>;

/// The host's `user_data`, moved to the threads that call back with it.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);

// SAFETY: the C caller gave us `user_data` to be passed to its callbacks on jsonbus's threads
// (the header says so); jsonbus never reads it.
unsafe impl Send for UserData {}

impl UserData {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut c_void {
        self.0
    }
}

/// The C view of a message, pointing into `m`, which must outlive it.
pub(crate) fn c_message(m: &Message, subscription: i64) -> jsonbus_message {
    let (json, json_len, topic, topic_len, reply_to, reply_to_len) = m.c_parts();
    jsonbus_message {
        topic: topic.cast(),
        topic_len,
        json: json.cast(),
        json_len,
        seq: m.seq,
        published_ns: m.published_ns,
        subscription,
        reply_to: reply_to.cast(),
        reply_to_len,
    }
}

/// The topic and payload arguments of a publish, checked in the order NULL, CLOSED (with
/// `what` in its message), TOPIC, TOO_LARGE (`len` None: the payload is NUL-terminated).
/// Refusals other than NULL are counted in the stats' `rejected`.
pub(crate) fn message_args<'a>(
    bus: &Bus,
    topic: *const c_char,
    json: *const c_char,
    len: Option<usize>,
    what: &str,
) -> Result<(&'a str, &'a [u8]), Error> {
    if topic.is_null() {
        return Err(Error::new(Status::Null, "topic is NULL"));
    }
    if json.is_null() {
        return Err(Error::new(Status::Null, "json is NULL"));
    }
    // A closed bus says so first, whatever else is wrong with the call (NULLs aside).
    bus.check_open(what).map_err(|e| bus.refuse(e))?;
    let topic = topic_text(topic, "topic").map_err(|e| bus.refuse(e))?;
    Ok((topic, payload_arg(bus, json, len)?))
}

/// The payload argument of a publish on a topic known to be good (the quick API's), checked
/// as `message_args` does.
pub(crate) fn payload_args<'a>(
    bus: &Bus,
    json: *const c_char,
    len: Option<usize>,
    what: &str,
) -> Result<&'a [u8], Error> {
    if json.is_null() {
        return Err(Error::new(Status::Null, "json is NULL"));
    }
    bus.check_open(what).map_err(|e| bus.refuse(e))?;
    payload_arg(bus, json, len)
}

/// `json` (not NULL) as bytes: `len` of them, or up to its NUL.
fn payload_arg<'a>(bus: &Bus, json: *const c_char, len: Option<usize>) -> Result<&'a [u8], Error> {
    let max = bus.options().max_message_bytes;
    Ok(match len {
        Some(len) if len > max => {
            return Err(bus.refuse(Error::new(
                Status::TooLarge,
                format!("payload is {len} bytes; max_message_bytes is {max}"),
            )))
        }
        // SAFETY: the caller passes `len` readable bytes at `json`; `len` is at most
        // `max_message_bytes` (1 GiB), so the slice is in range.
        Some(len) => unsafe { std::slice::from_raw_parts(json.cast::<u8>(), len) },
        // SAFETY: the caller passes a NUL-terminated string that stays valid during the call.
        None => unsafe { CStr::from_ptr(json) }.to_bytes(),
    })
}

/// Wraps a C callback and its optional end notice; a NULL callback is `JSONBUS_ERR_NULL`.
pub(crate) fn consumer(
    cb: jsonbus_callback,
    on_end: jsonbus_end_callback,
    user_data: *mut c_void,
) -> Result<Consumer, Error> {
    let f = cb.ok_or_else(|| Error::new(Status::Null, "callback is NULL"))?;
    let data = UserData(user_data);
    let callback: Callback = Box::new(move |d: &Delivery<'_>| {
        let msg = c_message(d.message, d.subscription);
        // SAFETY: `f` is the caller's callback with its own `user_data`; `msg` and the bytes it
        // points to outlive the call.
        unsafe { f(&msg, data.get()) }
    });
    let notice = on_end.map(|end| -> EndNotice {
        Box::new(move |id: i64, reason: EndReason| {
            // SAFETY: `end` is the caller's end notice with its own `user_data`, called once.
            unsafe { end(id, reason.code(), data.get()) }
        })
    });
    Ok(Consumer::Callback(callback, notice))
}

/// A message handed out by `jsonbus_next`: the C view first, so that the pointer handed out is
/// also this struct's, and the reference that keeps the message held until it is released.
#[repr(C)]
pub(crate) struct CPulled {
    msg: jsonbus_message,
    keep: Pulled,
}

/// Hands a pulled message to C (freed by `take_pulled`).
pub(crate) fn give_pulled(m: Pulled, subscription: i64) -> *mut jsonbus_message {
    let msg = c_message(&m, subscription);
    Box::into_raw(Box::new(CPulled { msg, keep: m })).cast()
}

/// Takes back a message from `give_pulled` and drops it.
///
/// # Safety
/// `msg` came from `give_pulled` and is not used again.
pub(crate) unsafe fn take_pulled(msg: *mut jsonbus_message) {
    // SAFETY: per this function's contract; `CPulled` starts with the `jsonbus_message`.
    drop(unsafe { Box::from_raw(msg.cast::<CPulled>()) });
}

/// A bus to call: borrowed from an owned handle, or the default bus.
pub(crate) enum BusRef<'a> {
    Borrowed(&'a Bus),
    Shared(Bus),
}

impl Deref for BusRef<'_> {
    type Target = Bus;
    fn deref(&self) -> &Bus {
        match self {
            BusRef::Borrowed(b) => b,
            BusRef::Shared(b) => b,
        }
    }
}

/// What a handle stands for.
pub(crate) enum Handle<'a> {
    Own(&'a Bus),
    Default,
}

/// Checks a handle; NULL is `JSONBUS_ERR_NULL`.
pub(crate) fn handle<'a>(bus: *const jsonbus) -> Result<Handle<'a>, Error> {
    // SAFETY: a non-NULL handle came from `jsonbus_new` (not yet freed) or `jsonbus_default`;
    // the header makes using a freed handle undefined, like `free`.
    let h = unsafe { bus.as_ref() }.ok_or_else(|| Error::new(Status::Null, "bus is NULL"))?;
    Ok(match &h.target {
        Target::Own(b) => {
            b.check_process()?;
            Handle::Own(b)
        }
        Target::Default => Handle::Default,
    })
}

/// The bus behind a handle, opening the default bus if it is not open.
pub(crate) fn open<'a>(bus: *const jsonbus) -> Result<BusRef<'a>, Error> {
    Ok(match handle(bus)? {
        Handle::Own(b) => BusRef::Borrowed(b),
        Handle::Default => BusRef::Shared(default_bus::open()?),
    })
}

/// The bus behind a handle if it is open (the default bus may not be).
pub(crate) fn current<'a>(bus: *const jsonbus) -> Result<Option<BusRef<'a>>, Error> {
    Ok(match handle(bus)? {
        Handle::Own(b) => Some(BusRef::Borrowed(b)),
        Handle::Default => default_bus::current().map(BusRef::Shared),
    })
}

pub(crate) fn new_handle(bus: Bus) -> *mut jsonbus {
    Box::into_raw(Box::new(jsonbus {
        target: Target::Own(bus),
    }))
}

/// Takes back a handle made by `new_handle`.
///
/// # Safety
/// `bus` came from `new_handle` and is not used again.
pub(crate) unsafe fn free_handle(bus: *mut jsonbus) {
    // SAFETY: per this function's contract.
    drop(unsafe { Box::from_raw(bus) });
}

/// A NUL-terminated string argument as UTF-8; invalid UTF-8 is `JSONBUS_ERR_UTF8`.
pub(crate) fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::new(Status::Null, format!("{what} is NULL")));
    }
    // SAFETY: the header requires a NUL-terminated string that stays valid during the call.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    utf8(bytes, what, Status::Utf8)
}

/// A topic or pattern argument: read no further than its length limit allows. Anything not
/// in the grammar, invalid UTF-8 included, is `JSONBUS_ERR_TOPIC`.
pub(crate) fn topic_text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::new(Status::Null, format!("{what} is NULL")));
    }
    // SAFETY: the header requires a NUL-terminated string; strnlen reads at most up to it.
    let len = unsafe { libc::strnlen(p, MAX_TOPIC_BYTES + 1) };
    if len > MAX_TOPIC_BYTES {
        return Err(Error::new(
            Status::Topic,
            format!("{what} is longer than {MAX_TOPIC_BYTES} bytes"),
        ));
    }
    // SAFETY: strnlen found `len` readable bytes before the NUL.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    utf8(bytes, what, Status::Topic)
}

fn utf8<'a>(bytes: &'a [u8], what: &str, status: Status) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            status,
            format!(
                "{what} is not valid UTF-8: bad byte at offset {}",
                e.valid_up_to()
            ),
        )
    })
}

/// A timeout argument: negative waits without limit.
pub(crate) fn timeout(ms: i32) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// A JSON text for C (freed by `jsonbus_string_free`), or NULL with the last error set.
pub(crate) fn json_string(result: Result<String, Error>) -> *mut c_char {
    match result {
        Ok(s) => {
            crate::ffi::error::clear();
            // JSON text holds no NUL byte.
            std::ffi::CString::new(s).map_or(std::ptr::null_mut(), std::ffi::CString::into_raw)
        }
        Err(e) => {
            crate::ffi::error::set(&e);
            std::ptr::null_mut()
        }
    }
}

/// Runs `f` on the bus behind a handle if it is open; a default bus that is not open has no
/// subscription `id` (`JSONBUS_ERR_NOT_FOUND`), and opening it would not give it one.
pub(crate) fn with_subscription_bus<T>(
    bus: *const jsonbus,
    id: i64,
    f: impl FnOnce(&Bus) -> Result<T, Error>,
) -> Result<T, Error> {
    match current(bus)? {
        Some(b) => f(&b),
        None => Err(Error::new(
            Status::NotFound,
            format!("no subscription {id} on the default bus"),
        )),
    }
}
