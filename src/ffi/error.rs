//! The thread's last error and status, and the panic boundary every export runs inside.
//!
//! The last error lives in a fixed buffer in a thread-local without a destructor, so a host
//! thread that calls jsonbus registers nothing that would keep the library mapped after
//! `dlclose`. On Windows it is an `OsLocal`, whose TLS index is freed on unload.

use crate::status::{Error, Status, OK};
use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

const CAPACITY: usize = 1024;

struct Last {
    status: i32,
    /// NUL-terminated message.
    text: [u8; CAPACITY],
}

impl Default for Last {
    fn default() -> Last {
        Last {
            status: OK,
            text: [0; CAPACITY],
        }
    }
}

#[cfg(not(windows))]
thread_local! {
    static LAST: RefCell<Last> = const { RefCell::new(Last { status: OK, text: [0; CAPACITY] }) };
}

/// Windows: in an OS TLS index that is given back when the DLL is unloaded (std's
/// `thread_local!` would keep one taken for every load: see `sys::local`).
#[cfg(windows)]
static LAST: crate::sys::local::OsLocal<RefCell<Last>> = crate::sys::local::OsLocal::new();

/// Records a failure as the thread's last error.
pub fn set(e: &Error) {
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        l.status = e.status.code();
        let mut n = e.message.len().min(CAPACITY - 1);
        while !e.message.is_char_boundary(n) {
            n -= 1;
        }
        l.text[..n].copy_from_slice(&e.message.as_bytes()[..n]);
        l.text[n] = 0;
    });
}

/// Records a success: the last error becomes "" and the last status `JSONBUS_OK`.
pub fn clear() {
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        if l.status != OK || l.text[0] != 0 {
            l.status = OK;
            l.text[0] = 0;
        }
    });
}

pub fn last_status() -> i32 {
    LAST.with(|l| l.borrow().status)
}

/// The last error text; valid until this thread's next call into the library.
pub fn last_text() -> *const c_char {
    LAST.with(|l| l.borrow().text.as_ptr().cast())
}

/// What an export returns when its body panicked.
pub trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for i32 {
    fn on_panic() -> i32 {
        Status::Internal.code()
    }
}

impl OnPanic for i64 {
    fn on_panic() -> i64 {
        Status::Internal.code() as i64
    }
}

impl OnPanic for u64 {
    fn on_panic() -> u64 {
        0
    }
}

impl OnPanic for () {
    fn on_panic() {}
}

impl<T> OnPanic for *mut T {
    fn on_panic() -> *mut T {
        std::ptr::null_mut()
    }
}

impl<T> OnPanic for *const T {
    fn on_panic() -> *const T {
        std::ptr::null()
    }
}

/// Runs an export's body; a panic becomes `JSONBUS_ERR_INTERNAL` (or NULL) and the last error.
pub fn boundary<T: OnPanic>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        set(&Error::new(
            Status::Internal,
            format!("internal error (a bug in jsonbus, caught; the bus stays usable): {what}"),
        ));
        T::on_panic()
    })
}

/// Converts a result to a status code, recording the last error.
pub fn status(result: Result<(), Error>) -> i32 {
    match result {
        Ok(()) => {
            clear();
            OK
        }
        Err(e) => {
            set(&e);
            e.status.code()
        }
    }
}

/// Converts a result holding an id to the id or a negative status code.
pub fn id(result: Result<i64, Error>) -> i64 {
    match result {
        Ok(id) => {
            clear();
            id
        }
        Err(e) => {
            set(&e);
            e.status.code() as i64
        }
    }
}
