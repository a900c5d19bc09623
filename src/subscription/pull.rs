//! The puller's side of a pull subscription: threads waiting in `jsonbus_next`, the
//! descriptor that polls readable exactly while a message waits or the subscription has ended,
//! and the messages handed out.

use crate::message::{Message, Spares};
use crate::sys::notify_fd::NotifyFd;
use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// The lock that every push to and pop from a pull subscription's queue takes, so that the
/// descriptor's state follows the queue exactly.
#[derive(Default)]
pub struct Pull {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
pub struct State {
    /// Made on the first `jsonbus_pull_fd`; no system call per message before that.
    fd: Option<NotifyFd>,
    raised: bool,
    /// Threads waiting in `wait`: a push wakes one only if there is one (a wake-up is a
    /// system call even when nobody waits).
    waiting: usize,
}

impl State {
    /// Raises or lowers the descriptor to say whether anything is there to take.
    pub fn set_readable(&mut self, readable: bool) {
        if let Some(fd) = &self.fd {
            if readable != self.raised {
                match readable {
                    true => fd.raise(),
                    false => fd.lower(),
                }
                self.raised = readable;
            }
        }
    }
}

impl Pull {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes one waiting puller, if any (call with the lock held, after a push).
    pub fn wake_one(&self, state: &State) {
        if state.waiting > 0 {
            self.ready.notify_one();
        }
    }

    /// Wakes every waiting puller (the subscription ended).
    pub fn wake_all(&self) {
        self.ready.notify_all();
    }

    /// Waits for a wake-up until `deadline` (`None`: no limit); false once it has passed.
    pub fn wait<'a>(
        &self,
        mut guard: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State>, bool) {
        guard.waiting += 1;
        let (mut guard, in_time) = self.wait_once(guard, deadline);
        guard.waiting -= 1;
        (guard, in_time)
    }

    fn wait_once<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State>, bool) {
        match deadline {
            None => (
                self.ready.wait(guard).unwrap_or_else(|p| p.into_inner()),
                true,
            ),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (guard, false);
                }
                let (g, _) = self
                    .ready
                    .wait_timeout(guard, d - now)
                    .unwrap_or_else(|p| p.into_inner());
                (g, true)
            }
        }
    }

    /// The descriptor, made on first use and raised at once if `readable()` (asked under the
    /// lock, so that no push or pop slips in between).
    pub fn fd(&self, readable: impl FnOnce() -> bool) -> io::Result<i32> {
        let mut state = self.lock();
        if state.fd.is_none() {
            state.fd = Some(NotifyFd::new()?);
            state.raised = false;
        }
        state.set_readable(readable());
        Ok(state.fd.as_ref().map_or(-1, NotifyFd::fd))
    }
}

/// A message handed out by `next`: held (capacity, flush) until dropped, and then its
/// allocation goes back to the bus's spares, as a delivered one does - freeing it on the
/// puller's thread would make the publisher's and the puller's `malloc` share an arena lock.
pub struct Pulled {
    message: Option<Arc<Message>>,
    spares: Arc<Spares>,
    /// The bus's count of messages handed out and not yet released.
    outstanding: Arc<AtomicUsize>,
}

impl Pulled {
    pub(crate) fn new(
        message: Arc<Message>,
        spares: Arc<Spares>,
        outstanding: Arc<AtomicUsize>,
    ) -> Pulled {
        outstanding.fetch_add(1, SeqCst);
        Pulled {
            message: Some(message),
            spares,
            outstanding,
        }
    }
}

impl Deref for Pulled {
    type Target = Message;
    fn deref(&self) -> &Message {
        // Set from `new` until `drop`.
        self.message.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl std::fmt::Debug for Pulled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.message.fmt(f)
    }
}

impl Drop for Pulled {
    fn drop(&mut self) {
        // Counted out before the capacity it holds is given back (which wakes a closing
        // `jsonbus_free` that waits for what is held beyond the outstanding messages).
        self.outstanding.fetch_sub(1, SeqCst);
        if let Some(m) = self.message.take() {
            self.spares.recycle(m);
        }
    }
}
