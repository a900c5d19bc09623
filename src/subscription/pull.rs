//! The puller's side of a pull subscription: threads waiting in `jsonbus_next`, and the
//! descriptor that polls readable exactly while a message waits or the subscription has ended.

use crate::sys::notify_fd::NotifyFd;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
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

    /// Wakes one waiting puller (call with the lock held, after a push).
    pub fn wake_one(&self) {
        self.ready.notify_one();
    }

    /// Wakes every waiting puller (the subscription ended).
    pub fn wake_all(&self) {
        self.ready.notify_all();
    }

    /// Waits for a wake-up until `deadline` (`None`: no limit); false once it has passed.
    pub fn wait<'a>(
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

    /// The descriptor, made on first use and raised at once if `readable`.
    pub fn fd(&self, readable: bool) -> io::Result<i32> {
        let mut state = self.lock();
        if state.fd.is_none() {
            state.fd = Some(NotifyFd::new()?);
            state.raised = false;
        }
        state.set_readable(readable);
        Ok(state.fd.as_ref().map_or(-1, NotifyFd::fd))
    }
}
