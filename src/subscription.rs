//! A subscription: its pattern, its callback, and its own FIFO of messages - a serial queue that
//! at most one dispatcher thread runs at a time.

use crate::message::Message;
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
    state: Mutex<Queue>,
    /// Held while the callback runs; `None` once the subscription has ended. Taking this lock
    /// is how an unsubscribe waits for a running callback.
    callback: Mutex<Option<Callback>>,
}

/// The subscription's FIFO and whether it is on the run queue or being run.
#[derive(Default)]
pub struct Queue {
    pub messages: VecDeque<Arc<Message>>,
    pub scheduled: bool,
}

impl Subscription {
    pub fn new(id: i64, pattern: &str, callback: Callback) -> Subscription {
        Subscription {
            id,
            pattern: pattern.into(),
            closed: AtomicBool::new(false),
            state: Mutex::new(Queue::default()),
            callback: Mutex::new(Some(callback)),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Marks the subscription ended and takes its queue, for the caller to count and drop.
    pub fn close(&self) -> VecDeque<Arc<Message>> {
        self.closed.store(true, SeqCst);
        std::mem::take(&mut self.queue().messages)
    }

    pub fn queue(&self) -> MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a message; returns true if the subscription must be put on the run queue.
    pub fn push(&self, message: Arc<Message>) -> bool {
        let mut q = self.queue();
        q.messages.push_back(message);
        !std::mem::replace(&mut q.scheduled, true)
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
