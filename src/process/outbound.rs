//! What the hub writes to one attached process: deliveries (from whichever thread publishes,
//! under the bus lock, in seq order), the hub's answers, and the records that wait for room in
//! the peer's ring; and the deliveries written and not yet acknowledged.

use super::ring::{Violation, Writer};
use super::wire::Down;
use crate::message::Message;
use crate::subscription::Forward;
use crate::sys::ipc::EventFd;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// What the hub writes to one peer: shared by the hub thread and the threads whose publishes
/// are routed to the peer's subscriptions (they write the deliveries, under the bus lock).
pub struct Outbound {
    state: Mutex<OutState>,
    pub(super) to_peer: EventFd,
    /// Deliveries not yet acknowledged (`OutState::unacked`'s length, readable without the lock).
    pub(super) unacked: AtomicUsize,
}

pub(super) struct OutState {
    pub(super) writer: Writer,
    /// Records waiting for room in the ring, in order; the first may be partly written.
    pub(super) waiting: VecDeque<(Vec<u8>, usize)>,
    /// Deliveries written and not yet acknowledged, oldest first, with when they were sent.
    pub(super) unacked: BTreeMap<u64, (Arc<Message>, Instant)>,
    pub(super) next_token: u64,
    pub(super) gone: bool,
    /// Set by a dispatcher that found the peer's ring broken.
    pub(super) broken: Option<String>,
    pub(super) scratch: Vec<u8>,
}

/// A hub's subscription on behalf of a peer's subscription `id`: what it routes is written
/// straight into the peer's ring, under the bus lock, in `seq` order.
pub(super) struct PeerSubscription {
    pub(super) out: Arc<Outbound>,
    pub(super) id: i64,
}

impl Forward for PeerSubscription {
    fn forward(&self, message: &Arc<Message>) {
        self.out.forward(self.id, message);
    }

    fn outstanding(&self) -> usize {
        self.out.unacked.load(SeqCst)
    }
}

impl Outbound {
    pub(super) fn new(writer: Writer, to_peer: EventFd) -> Outbound {
        Outbound {
            state: Mutex::new(OutState {
                writer,
                waiting: VecDeque::new(),
                unacked: BTreeMap::new(),
                next_token: 0,
                gone: false,
                broken: None,
                scratch: Vec::new(),
            }),
            to_peer,
            unacked: AtomicUsize::new(0),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a delivery for the peer's subscription `id` to the peer (from a dispatcher).
    fn forward(&self, id: i64, message: &Arc<Message>) {
        let mut s = self.state();
        if s.gone {
            return;
        }
        s.next_token += 1;
        let token = s.next_token;
        let mut body = std::mem::take(&mut s.scratch);
        Down::Deliver {
            token,
            id,
            seq: message.seq,
            published_ns: message.published_ns,
            topic: message.topic(),
            reply: message.reply_to().unwrap_or(""),
            json: message.json(),
        }
        .encode(&mut body);
        s.unacked.insert(token, (message.clone(), Instant::now()));
        self.unacked.fetch_add(1, SeqCst);
        self.send(&mut s, body);
    }

    /// Writes a record at once if nothing waits before it and it fits, else queues it.
    pub(super) fn send(&self, s: &mut OutState, body: Vec<u8>) {
        let mut done = 0;
        if s.waiting.is_empty() {
            match s.writer.write(&body, &mut done) {
                Ok(true) => {
                    s.scratch = body;
                    if s.writer.reader_sleeping() {
                        self.to_peer.signal();
                    }
                    return;
                }
                Ok(false) => {
                    s.writer.set_waiting(true);
                    if done > 0 && s.writer.reader_sleeping() {
                        self.to_peer.signal();
                    }
                }
                Err(Violation(v)) => s.broken = Some(v),
            }
        }
        s.waiting.push_back((body, done));
    }

    /// Writes what waits as far as there is room; whether anything was written.
    pub(super) fn drain(&self) -> Result<bool, String> {
        let mut s = self.state();
        if let Some(v) = s.broken.take() {
            return Err(v);
        }
        let mut wrote = false;
        while let Some((body, mut done)) = s.waiting.pop_front() {
            let before = done;
            let complete = s.writer.write(&body, &mut done).map_err(|v| v.0)?;
            wrote |= done > before;
            if !complete {
                s.waiting.push_front((body, done));
                break;
            }
        }
        s.writer.set_waiting(!s.waiting.is_empty());
        if wrote && s.writer.reader_sleeping() {
            self.to_peer.signal();
        }
        Ok(wrote)
    }
}
