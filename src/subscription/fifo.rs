//! A subscription's FIFO: a deque under a mutex that publishers append to (under the bus lock,
//! so in `seq` order) and that the dispatcher running the subscription empties a batch at a
//! time, trading its empty buffer for the full one, so that neither side allocates once the
//! buffers have grown and the dispatcher takes the lock once per batch, not per message.

use crate::message::Message;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub struct Fifo {
    items: Mutex<VecDeque<Arc<Message>>>,
}

impl Fifo {
    fn items(&self) -> MutexGuard<'_, VecDeque<Arc<Message>>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, message: Arc<Message>) {
        self.items().push_back(message);
    }

    pub fn pop(&self) -> Option<Arc<Message>> {
        self.items().pop_front()
    }

    /// Moves up to `max` messages, oldest first, to the end of `batch`; returns how many. When
    /// `batch` is empty and they all fit, the buffers are swapped instead.
    pub fn take(&self, batch: &mut VecDeque<Arc<Message>>, max: usize) -> usize {
        let mut items = self.items();
        let n = items.len().min(max);
        if n == items.len() && batch.is_empty() {
            std::mem::swap(&mut *items, batch);
        } else {
            batch.extend(items.drain(..n));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u64) -> Arc<Message> {
        let mut m = Arc::new(Message::new("t", b"1", ""));
        Arc::get_mut(&mut m).unwrap().seq = seq;
        m
    }

    #[test]
    fn takes_in_order_and_trades_buffers() {
        let f = Fifo::default();
        for s in 1..=5 {
            f.push(m(s));
        }
        let mut batch = VecDeque::new();
        assert_eq!(f.take(&mut batch, 2), 2);
        assert_eq!(batch.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(f.pop().map(|m| m.seq), Some(3));
        batch.clear();
        let grown = {
            f.push(m(6));
            batch.reserve(100);
            batch.capacity()
        };
        assert_eq!(f.take(&mut batch, 256), 3);
        assert_eq!(batch.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5, 6]);
        assert!(f.items().is_empty());
        f.push(m(7));
        assert!(
            f.items().capacity() >= grown,
            "the queue got the batch's buffer"
        );
        assert_eq!(
            f.take(&mut batch, 256),
            1,
            "appends to a batch that is not empty"
        );
        assert_eq!(batch.back().map(|m| m.seq), Some(7));
    }
}
