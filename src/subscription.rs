//! A subscription: its pattern, its callback, and its own FIFO of messages - a serial queue that
//! at most one dispatcher thread runs at a time.

use crate::message::Message;
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a callback sees: the message and the subscription being called.
pub struct Delivery<'a> {
    pub message: &'a Message,
    pub subscription: i64,
}

/// A callback: returns `OK`, `UNSUBSCRIBE`, or a negative value to report a failure.
pub type Callback = Box<dyn FnMut(&Delivery<'_>) -> i32 + Send>;

pub struct Subscription {
    pub id: i64,
    pub pattern: Box<str>,
    /// Set once, when the subscription ends; checked before every call.
    closed: AtomicBool,
    /// The FIFO: publishers send under the bus lock, so it is in `seq` order; only the
    /// dispatcher running the subscription receives. Lock-free on both sides.
    sender: Sender<Arc<Message>>,
    receiver: Receiver<Arc<Message>>,
    /// True while the subscription is on the run queue or being run.
    scheduled: AtomicBool,
    /// Held while the callback runs; `None` once the subscription has ended. Taking this lock
    /// is how an unsubscribe waits for a running callback.
    callback: Mutex<Option<Callback>>,
}

impl Subscription {
    pub fn new(id: i64, pattern: &str, callback: Callback) -> Subscription {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Subscription {
            id,
            pattern: pattern.into(),
            closed: AtomicBool::new(false),
            sender,
            receiver,
            scheduled: AtomicBool::new(false),
            callback: Mutex::new(Some(callback)),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Marks the subscription ended and takes its queue, for the caller to count and drop.
    pub fn close(&self) -> Vec<Arc<Message>> {
        self.closed.store(true, SeqCst);
        self.take_all()
    }

    /// Takes everything queued.
    pub fn take_all(&self) -> Vec<Arc<Message>> {
        self.receiver.try_iter().collect()
    }

    /// Appends a message; returns true if the subscription must be put on the run queue.
    pub fn push(&self, message: Arc<Message>) -> bool {
        // The receiver lives in `self`, so the send cannot fail.
        let _ = self.sender.send(message);
        // Reading first keeps the flag's cache line shared while a dispatcher runs this
        // subscription. Reading "scheduled" (SeqCst) after the send means a `finish_run` that
        // clears it later will see this message when it looks again.
        !self.scheduled.load(SeqCst) && !self.scheduled.swap(true, SeqCst)
    }

    /// Whether messages are queued.
    pub fn has_queued(&self) -> bool {
        !self.receiver.is_empty()
    }

    /// Moves up to `max` queued messages to `batch` (the dispatcher running it only).
    pub fn take(&self, batch: &mut VecDeque<Arc<Message>>, max: usize) {
        batch.extend(self.receiver.try_iter().take(max));
    }

    /// Ends a run: true if more messages are queued and the subscription must run again;
    /// otherwise it is no longer scheduled (the next push schedules it).
    pub fn finish_run(&self) -> bool {
        if !self.receiver.is_empty() {
            return true;
        }
        self.scheduled.store(false, SeqCst);
        // A push between the check and the store saw `scheduled` still set and scheduled
        // nothing: look again, and take the run back if nobody else did.
        !self.receiver.is_empty() && !self.scheduled.swap(true, SeqCst)
    }

    /// Locks the callback, waiting for a running invocation to return.
    pub fn callback(&self) -> MutexGuard<'_, Option<Callback>> {
        self.callback.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the callback if it is not running.
    pub fn try_callback(&self) -> Option<MutexGuard<'_, Option<Callback>>> {
        match self.callback.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}
