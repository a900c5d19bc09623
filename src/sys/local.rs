//! Windows: thread-locals in OS TLS indexes that are given back when the DLL is unloaded.
//!
//! On `x86_64-pc-windows-gnu` Rust's `thread_local!` has no native TLS: each one takes an OS
//! TLS index (`TlsAlloc`) at its first use and std never frees it, also not when the DLL is
//! unloaded. A process has 1088 indexes, so every thread-local of jsonbus.dll would shorten
//! the number of load/unload cycles a process can do. An [`OsLocal`] takes its index the same
//! way, but a TLS callback of this module frees the index, and every thread's value, when the
//! library is unloaded (`DLL_PROCESS_DETACH` by `FreeLibrary`); a thread that ends while the
//! library is loaded has its value dropped then (`DLL_THREAD_DETACH`). Elsewhere jsonbus uses
//! `thread_local!` (native TLS, nothing to give back).

use std::cell::Cell;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Mutex;

const TLS_OUT_OF_INDEXES: u32 = u32::MAX;
const DLL_PROCESS_DETACH: u32 = 0;
const DLL_THREAD_DETACH: u32 = 3;

#[link(name = "kernel32")]
extern "system" {
    fn TlsAlloc() -> u32;
    fn TlsFree(index: u32) -> i32;
    fn TlsGetValue(index: u32) -> *mut c_void;
    fn TlsSetValue(index: u32, value: *mut c_void) -> i32;
}

/// What the TLS callback does with each `OsLocal` that took an index.
trait Detach: Sync {
    /// The calling thread ends: drop its value.
    fn thread_exit(&self);
    /// The library is unloaded: drop every thread's value and free the index.
    fn unload(&self);
}

/// The `OsLocal`s that hold an index, for the TLS callback.
static TAKEN: Mutex<Vec<&'static dyn Detach>> = Mutex::new(Vec::new());

/// A thread-local `T`, made by `T::default()` on each thread's first use.
pub struct OsLocal<T> {
    /// The TLS index, or `TLS_OUT_OF_INDEXES` before the first use and after unloading.
    index: AtomicU32,
    /// Every live thread's value (`Box<T>` pointers) and, under the same lock, the taking of
    /// the index.
    values: Mutex<Vec<usize>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Default + Send + 'static> OsLocal<T> {
    pub const fn new() -> OsLocal<T> {
        OsLocal {
            index: AtomicU32::new(TLS_OUT_OF_INDEXES),
            values: Mutex::new(Vec::new()),
            _t: PhantomData,
        }
    }

    fn index(&'static self) -> u32 {
        let index = self.index.load(SeqCst);
        if index != TLS_OUT_OF_INDEXES {
            return index;
        }
        let _values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.index.load(SeqCst);
        if index != TLS_OUT_OF_INDEXES {
            return index;
        }
        // SAFETY: no arguments; the index is ours until `unload` frees it.
        let index = unsafe { TlsAlloc() };
        if index == TLS_OUT_OF_INDEXES {
            // as std does when it runs out: there is no thread-local to report an error in
            eprintln!("jsonbus: out of TLS indexes, aborting");
            std::process::abort();
        }
        TAKEN.lock().unwrap_or_else(|p| p.into_inner()).push(self);
        self.index.store(index, SeqCst);
        index
    }

    /// Runs `f` with this thread's value.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let index = self.index();
        // SAFETY: `index` is a live index of ours; the value is null or a `Box<T>` of this
        // thread, set below.
        let mut value = unsafe { TlsGetValue(index) }.cast::<T>();
        if value.is_null() {
            value = Box::into_raw(Box::<T>::default());
            self.values
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(value as usize);
            // SAFETY: as above; the box lives until `thread_exit` or `unload` takes it back.
            if unsafe { TlsSetValue(index, value.cast()) } == 0 {
                eprintln!("jsonbus: TlsSetValue failed, aborting");
                std::process::abort();
            }
        }
        // SAFETY: the box is this thread's and is only freed by this thread's exit or by the
        // unloading of the library, neither of which can happen during `f`.
        f(unsafe { &*value })
    }
}

/// `LocalKey<Cell<T>>`'s shorthands.
impl<T: Copy + Default + Send + 'static> OsLocal<Cell<T>> {
    pub fn get(&'static self) -> T {
        self.with(Cell::get)
    }

    pub fn set(&'static self, value: T) {
        self.with(|c| c.set(value))
    }

    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }
}

impl<T: Default + Send + 'static> Default for OsLocal<T> {
    fn default() -> OsLocal<T> {
        OsLocal::new()
    }
}

impl<T: Send + 'static> Detach for OsLocal<T> {
    fn thread_exit(&self) {
        let index = self.index.load(SeqCst);
        if index == TLS_OUT_OF_INDEXES {
            return;
        }
        // SAFETY: a live index of ours, read on the thread whose value it is.
        let value = unsafe { TlsGetValue(index) }.cast::<T>();
        if value.is_null() {
            return;
        }
        // SAFETY: as above; the value is forgotten by the thread before it is dropped.
        unsafe { TlsSetValue(index, std::ptr::null_mut()) };
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&v| v != value as usize);
        // SAFETY: `value` came from `Box::into_raw` in `with` and no list holds it any more.
        drop(unsafe { Box::from_raw(value) });
    }

    fn unload(&self) {
        let index = self.index.swap(TLS_OUT_OF_INDEXES, SeqCst);
        if index == TLS_OUT_OF_INDEXES {
            return;
        }
        let values = std::mem::take(&mut *self.values.lock().unwrap_or_else(|p| p.into_inner()));
        for value in values {
            // SAFETY: each came from `Box::into_raw` in `with`, once; the library is being
            // unloaded, so no thread uses its value any more (`T: Send`: dropped here).
            drop(unsafe { Box::from_raw(value as *mut T) });
        }
        // SAFETY: the index is ours and nothing reads it any more. TlsFree zeroes the index's
        // value in every thread (so a later TlsAlloc that returns it again starts from null);
        // this thread's is cleared first all the same.
        unsafe {
            TlsSetValue(index, std::ptr::null_mut());
            TlsFree(index);
        }
    }
}

/// Called by the loader for this module (a TLS callback, like std's own in `.CRT$XLB`).
unsafe extern "system" fn on_tls_event(_module: *mut c_void, reason: u32, reserved: *mut c_void) {
    let taken: Vec<&'static dyn Detach> = match TAKEN.lock() {
        Ok(t) => t.clone(),
        Err(p) => p.into_inner().clone(),
    };
    match reason {
        DLL_THREAD_DETACH => taken.iter().for_each(|l| l.thread_exit()),
        // `reserved` is null for FreeLibrary, non-null when the process exits (its other
        // threads are gone then and nothing needs giving back)
        DLL_PROCESS_DETACH if reserved.is_null() => {
            taken.iter().for_each(|l| l.unload());
            TAKEN.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        _ => {}
    }
}

#[used]
#[link_section = ".CRT$XLD"]
static ON_TLS_EVENT: unsafe extern "system" fn(*mut c_void, u32, *mut c_void) = on_tls_event;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Default)]
    struct Counted(Cell<u32>);
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, SeqCst);
        }
    }

    static LOCAL: OsLocal<Counted> = OsLocal::new();

    #[test]
    fn one_value_per_thread_dropped_at_thread_exit_and_at_unload() {
        LOCAL.with(|c| c.0.set(7));
        assert_eq!(LOCAL.with(|c| c.0.get()), 7);
        std::thread::spawn(|| {
            assert_eq!(LOCAL.with(|c| c.0.get()), 0, "another thread has its own");
            LOCAL.with(|c| c.0.set(1));
        })
        .join()
        .unwrap();
        assert_eq!(DROPS.load(SeqCst), 1, "dropped when its thread ended");
        assert_eq!(LOCAL.with(|c| c.0.get()), 7);
        LOCAL.unload();
        assert_eq!(DROPS.load(SeqCst), 2, "unloading drops the others");
        assert_eq!(LOCAL.with(|c| c.0.get()), 0, "a new index after unloading");
    }
}
