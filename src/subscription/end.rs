//! How a subscription ends: the reasons, and the end notice that runs exactly once, after the
//! last invocation of its callback.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex};

/// Why a subscription ended. The codes are what C sees (`JSONBUS_END_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `jsonbus_unsubscribe`.
    Unsubscribed = 1,
    /// Its callback returned `JSONBUS_UNSUBSCRIBE`.
    Returned = 2,
    /// Its queue was at `queue_limit` with `on_full` "end".
    Slow = 3,
    /// `max_failures` negative returns in a row.
    Failed = 4,
    /// The bus was closed or freed.
    Closed = 5,
    /// The process that made it exited or lost its connection (not produced in-process yet).
    PeerGone = 6,
}

impl EndReason {
    pub const ALL: [EndReason; 6] = [
        EndReason::Unsubscribed,
        EndReason::Returned,
        EndReason::Slow,
        EndReason::Failed,
        EndReason::Closed,
        EndReason::PeerGone,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<EndReason> {
        EndReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The `JSONBUS_END_*` name.
    pub fn name(self) -> &'static CStr {
        match self {
            EndReason::Unsubscribed => c"JSONBUS_END_UNSUBSCRIBED",
            EndReason::Returned => c"JSONBUS_END_RETURNED",
            EndReason::Slow => c"JSONBUS_END_SLOW",
            EndReason::Failed => c"JSONBUS_END_FAILED",
            EndReason::Closed => c"JSONBUS_END_CLOSED",
            EndReason::PeerGone => c"JSONBUS_END_PEER_GONE",
        }
    }

    /// What happened, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::Unsubscribed => "it was unsubscribed",
            EndReason::Returned => "its callback returned JSONBUS_UNSUBSCRIBE",
            EndReason::Slow => "its queue reached queue_limit with on_full \"end\"",
            EndReason::Failed => "its callback failed max_failures times in a row",
            EndReason::Closed => "the bus was closed",
            EndReason::PeerGone => "the process that made it is gone",
        }
    }
}

/// The name of any end reason code; "JSONBUS_END_UNKNOWN" for a code that is not one.
pub fn reason_name(code: i32) -> &'static CStr {
    EndReason::from_code(code).map_or(c"JSONBUS_END_UNKNOWN", EndReason::name)
}

/// A host's end notice: called with the subscription id and the reason.
pub type EndNotice = Box<dyn FnOnce(i64, EndReason) + Send>;

/// The end notice of one subscription, run exactly once by whichever thread completes the
/// end first; the others can wait until it has returned.
pub struct Notice {
    state: Mutex<State>,
    done: Condvar,
}

enum State {
    Pending(Option<EndNotice>),
    Running,
    Done,
}

impl Notice {
    pub fn new(notice: Option<EndNotice>) -> Notice {
        Notice {
            state: Mutex::new(State::Pending(notice)),
            done: Condvar::new(),
        }
    }

    /// Waits until a `run` has finished, without running anything itself.
    pub fn wait_done(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !matches!(*state, State::Done) {
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs the notice unless another thread has taken it, then `then`; with `wait`, returns
    /// only once both have run, wherever. `scope` wraps the call (it marks the thread as inside
    /// a callback). Returns whether this call ran them.
    pub fn run(
        &self,
        id: i64,
        reason: EndReason,
        wait: bool,
        scope: impl FnOnce(&mut dyn FnMut()),
        then: impl FnOnce(),
    ) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let notice = match &mut *state {
            State::Pending(n) => n.take(),
            State::Running => {
                while wait && matches!(*state, State::Running) {
                    state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                return false;
            }
            State::Done => return false,
        };
        *state = State::Running;
        drop(state);
        if let Some(f) = notice {
            let mut f = Some(f);
            scope(&mut || {
                if let Some(f) = f.take() {
                    // A panic in a notice ends the notice only (C cannot unwind into us).
                    let _ = catch_unwind(AssertUnwindSafe(|| f(id, reason)));
                }
            });
        }
        then();
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::Done;
        self.done.notify_all();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    #[test]
    fn reasons_are_distinct_positive_and_named() {
        for r in EndReason::ALL {
            assert!(r.code() > 0);
            assert_eq!(EndReason::from_code(r.code()), Some(r));
            assert_eq!(reason_name(r.code()), r.name());
            assert!(r.name().to_str().unwrap().starts_with("JSONBUS_END_"));
        }
        assert_eq!(reason_name(0), c"JSONBUS_END_UNKNOWN");
        assert_eq!(reason_name(-3), c"JSONBUS_END_UNKNOWN");
    }

    #[test]
    fn a_notice_runs_once_and_waiters_see_it_done() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let notice = Arc::new(Notice::new(Some(Box::new(move |id, reason| {
            assert_eq!((id, reason), (7, EndReason::Slow));
            std::thread::sleep(std::time::Duration::from_millis(20));
            r.fetch_add(1, SeqCst);
        }))));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (n, runs) = (notice.clone(), runs.clone());
                std::thread::spawn(move || {
                    n.run(7, EndReason::Slow, true, |f| f(), || {});
                    assert_eq!(runs.load(SeqCst), 1, "returned before the notice was done");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(runs.load(SeqCst), 1);
        assert!(!notice.run(7, EndReason::Slow, true, |f| f(), || {}));
    }
}
