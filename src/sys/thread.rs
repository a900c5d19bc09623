//! Dispatcher threads started with `pthread_create` (Windows: `CreateThread`) rather than
//! `std::thread::spawn`.
//!
//! `std::thread::spawn` runs std's spawn hooks, which register a thread-local destructor on the
//! *calling* thread — the host's thread that called `jsonbus_new`. glibc keeps a library mapped
//! while any thread holds a destructor from it, so `dlclose` could never unmap jsonbus. A thread
//! started here registers nothing on its creator; it is joined by `Thread::join`.
//!
//! On Windows they are started with `CreateThread` for a like reason: `std::thread` takes std
//! thread-locals on the creating thread (spawn hooks) and on the new one (its `Thread`
//! handle), and on `x86_64-pc-windows-gnu` each of those is an OS TLS index that std never
//! gives back, four for every load of the DLL (see `sys::local`).

use std::io;

/// A started thread, to be joined.
pub struct Thread {
    #[cfg(unix)]
    id: libc::pthread_t,
    /// The thread's HANDLE.
    #[cfg(windows)]
    handle: usize,
    #[cfg(not(any(unix, windows)))]
    handle: std::thread::JoinHandle<()>,
}

type Body = Box<dyn FnOnce() + Send + 'static>;

/// Starts a thread named `name` that runs `body`; a panic in `body` ends the thread only.
#[cfg(unix)]
pub fn spawn(name: &str, body: Body) -> io::Result<Thread> {
    let arg = Box::into_raw(Box::new(body));
    let mut id: libc::pthread_t = 0;
    // SAFETY: `start` takes ownership of `arg`, a valid `Box<Body>`; default attributes.
    let rc = unsafe { libc::pthread_create(&mut id, std::ptr::null(), start, arg.cast()) };
    if rc != 0 {
        // SAFETY: the thread was not created, so `arg` is still ours.
        drop(unsafe { Box::from_raw(arg) });
        return Err(io::Error::from_raw_os_error(rc));
    }
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::ffi::CString::new(&name.as_bytes()[..name.len().min(15)]) {
        // SAFETY: `id` is a live thread; Linux names are at most 15 bytes plus the NUL.
        unsafe { libc::pthread_setname_np(id, name.as_ptr()) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
    Ok(Thread { id })
}

#[cfg(unix)]
extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `spawn` passed a `Box<Body>` it gave up.
    let body = unsafe { Box::from_raw(arg.cast::<Body>()) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    std::ptr::null_mut()
}

#[cfg(windows)]
mod win {
    use std::ffi::{c_char, c_void};

    pub type StartRoutine = unsafe extern "system" fn(*mut c_void) -> u32;
    pub type SetThreadDescription = unsafe extern "system" fn(*mut c_void, *const u16) -> i32;

    #[link(name = "kernel32")]
    extern "system" {
        pub fn CreateThread(
            attributes: *mut c_void,
            stack_size: usize,
            start: StartRoutine,
            arg: *mut c_void,
            flags: u32,
            id: *mut u32,
        ) -> *mut c_void;
        pub fn WaitForSingleObject(handle: *mut c_void, ms: u32) -> u32;
        pub fn CloseHandle(handle: *mut c_void) -> i32;
        pub fn GetModuleHandleA(name: *const c_char) -> *mut c_void;
        pub fn GetProcAddress(module: *mut c_void, name: *const c_char) -> *mut c_void;
    }
}

#[cfg(windows)]
const STACK_SIZE_PARAM_IS_A_RESERVATION: u32 = 0x0001_0000;
#[cfg(windows)]
const INFINITE: u32 = u32::MAX;

/// Starts a thread named `name` (Windows 10 1607 and later show it) that runs `body`; a panic
/// in `body` ends the thread only. The stack is std's default, 2 MiB reserved.
#[cfg(windows)]
pub fn spawn(name: &str, body: Body) -> io::Result<Thread> {
    let arg = Box::into_raw(Box::new(body));
    // SAFETY: `start` takes ownership of `arg`, a valid `Box<Body>`; default security, no id.
    let handle = unsafe {
        win::CreateThread(
            std::ptr::null_mut(),
            2 << 20,
            start,
            arg.cast(),
            STACK_SIZE_PARAM_IS_A_RESERVATION,
            std::ptr::null_mut(),
        )
    };
    if handle.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: the thread was not created, so `arg` is still ours.
        drop(unsafe { Box::from_raw(arg) });
        return Err(e);
    }
    // SAFETY: a NUL-terminated name; kernel32 stays loaded for the process's life.
    let set_name = unsafe {
        win::GetProcAddress(
            win::GetModuleHandleA(c"kernel32.dll".as_ptr()),
            c"SetThreadDescription".as_ptr(),
        )
    };
    if !set_name.is_null() {
        let wide: Vec<u16> = name.encode_utf16().chain(Some(0)).collect();
        // SAFETY: kernel32's SetThreadDescription has this signature; `handle` is a live
        // thread and `wide` a NUL-terminated UTF-16 string that outlives the call.
        unsafe {
            let set_name: win::SetThreadDescription = std::mem::transmute(set_name);
            set_name(handle, wide.as_ptr());
        }
    }
    Ok(Thread {
        handle: handle as usize,
    })
}

#[cfg(windows)]
unsafe extern "system" fn start(arg: *mut std::ffi::c_void) -> u32 {
    // SAFETY: `spawn` passed a `Box<Body>` it gave up.
    let body = unsafe { Box::from_raw(arg.cast::<Body>()) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    0
}

/// Starts a thread (where there is neither pthread nor Windows, with std).
#[cfg(not(any(unix, windows)))]
pub fn spawn(name: &str, body: Body) -> io::Result<Thread> {
    let handle = std::thread::Builder::new().name(name.into()).spawn(body)?;
    Ok(Thread { handle })
}

/// Asks the kernel to wake this thread from timed sleeps as close to their deadline as it can
/// (Linux `PR_SET_TIMERSLACK` of 1 ns; the default lets a sleep run 50 us long). For the timer
/// thread, whose sleeps are the timers' deadlines. Elsewhere it does nothing.
pub fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_TIMERSLACK takes one integer argument and only changes this
    // thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

impl Thread {
    /// Waits for the thread to finish.
    pub fn join(self) {
        #[cfg(unix)]
        // SAFETY: `id` is a thread this module started and nobody else joins or detaches.
        unsafe {
            libc::pthread_join(self.id, std::ptr::null_mut());
        }
        #[cfg(windows)]
        // SAFETY: `handle` is a thread this module started, waited for and closed once, here.
        unsafe {
            let handle = self.handle as *mut std::ffi::c_void;
            win::WaitForSingleObject(handle, INFINITE);
            win::CloseHandle(handle);
        }
        #[cfg(not(any(unix, windows)))]
        let _ = self.handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    #[test]
    fn runs_the_body_and_join_waits_for_it() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let t = spawn(
            "jsonbus-test",
            Box::new(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                d.fetch_add(1, SeqCst);
            }),
        )
        .unwrap();
        t.join();
        assert_eq!(done.load(SeqCst), 1);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn precise_sleeps_sets_this_threads_timer_slack_only() {
        let slack = || {
            // SAFETY: PR_GET_TIMERSLACK takes no argument and returns this thread's slack.
            unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) }
        };
        let before = slack();
        // Read on the started thread, asserted here: a panic there would end that thread only.
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        let s = seen.clone();
        let t = spawn(
            "jsonbus-slack",
            Box::new(move || {
                precise_sleeps();
                s.store(slack() as usize, SeqCst);
            }),
        )
        .unwrap();
        t.join();
        assert_eq!(seen.load(SeqCst), 1, "the started thread's slack");
        assert_eq!(slack(), before, "the calling thread keeps its own");
    }

    #[test]
    fn a_panic_ends_the_thread_only() {
        let t = spawn("jsonbus-panic", Box::new(|| panic!("in a started thread"))).unwrap();
        t.join();
    }
}
