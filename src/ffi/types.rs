//! The C types and constants, and the conversions from C arguments to core values.

#![allow(non_camel_case_types)] // C names, as the header spells them

use crate::bus::Bus;
use crate::default_bus;
use crate::status::{Error, Status};
use crate::subscription::{Callback, Delivery};
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
/// Text is not valid UTF-8 (payload, topic, pattern or options); the message gives the byte offset.
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

/// A message as a callback sees it. Valid only during the callback: copy what you keep.
/// New fields are only ever appended.
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
    /// Id of the subscription being called.
    pub subscription: i64,
}

/// A subscription's callback.
///
/// It runs on one of the bus's dispatcher threads, never on the publisher's, and never
/// concurrently with itself; it sees its messages in `seq` order. Different subscriptions may
/// run at the same time on different dispatcher threads.
///
/// Return `JSONBUS_OK` to stay subscribed, `JSONBUS_UNSUBSCRIBE` to end this subscription, or
/// a negative value to report a failure (counted in the stats' `callback_failures`; it stays
/// subscribed). Other positive values count as `JSONBUS_OK`.
///
/// It may call `jsonbus_publish`, `jsonbus_subscribe`, `jsonbus_unsubscribe`, `jsonbus_stats`
/// and the quick API on any bus. On its own bus, `jsonbus_flush`, `jsonbus_close` and
/// `jsonbus_shutdown` return `JSONBUS_ERR_DEADLOCK`, `jsonbus_free` does nothing, and a publish
/// that finds the bus full fails at once with `JSONBUS_ERR_FULL`. It must not unwind (C++
/// exceptions, `longjmp`) out of the callback.
///
/// `user_data` is the pointer given to `jsonbus_subscribe`; jsonbus never reads or frees it.
/// Free it once `jsonbus_unsubscribe` returned `JSONBUS_OK` (from outside the callback), once
/// the callback returned `JSONBUS_UNSUBSCRIBE`, or once `jsonbus_close` returned.
pub type jsonbus_callback =
    Option<unsafe extern "C" fn(msg: *const jsonbus_message, user_data: *mut c_void) -> i32>;

/// A C callback and its user data, as a core callback.
struct CCallback {
    f: unsafe extern "C" fn(*const jsonbus_message, *mut c_void) -> i32,
    user_data: *mut c_void,
}

// SAFETY: the C caller gave us `f` and `user_data` to be used from dispatcher threads (the
// header says so); jsonbus never calls the callback concurrently with itself.
unsafe impl Send for CCallback {}

impl CCallback {
    fn call(&self, d: &Delivery<'_>) -> i32 {
        let m = d.message;
        let msg = jsonbus_message {
            topic: m.topic_with_nul().as_ptr().cast(),
            topic_len: m.topic_with_nul().len() - 1,
            json: m.json_with_nul().as_ptr().cast(),
            json_len: m.json().len(),
            seq: m.seq,
            published_ns: m.published_ns,
            subscription: d.subscription,
        };
        // SAFETY: `f` is the caller's callback with its own `user_data`; `msg` and the bytes it
        // points to outlive the call.
        unsafe { (self.f)(&msg, self.user_data) }
    }
}

/// Wraps a C callback; NULL is `JSONBUS_ERR_NULL`.
pub(crate) fn callback(cb: jsonbus_callback, user_data: *mut c_void) -> Result<Callback, Error> {
    let f = cb.ok_or_else(|| Error::new(Status::Null, "callback is NULL"))?;
    let c = CCallback { f, user_data };
    Ok(Box::new(move |d: &Delivery<'_>| c.call(d)))
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
        Target::Own(b) => Handle::Own(b),
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
