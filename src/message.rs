//! A published message, stored once and shared by every subscription it was routed to, and the
//! reuse of its allocation. The capacity it holds is in `capacity`, its flush epoch in `flush`.

use crate::flush::Epoch;
use crate::padded::Padded;
use std::sync::{Arc, Mutex, MutexGuard};

/// One accepted message. It holds one unit of the bus's capacity from its acceptance until it
/// is dropped, which happens when every subscription it was routed to has returned from its
/// callback or discarded it.
pub struct Message {
    data: Packed,
    json_len: usize,
    /// Length of the reply topic stored after the topic (0: none).
    reply_len: usize,
    pub seq: u64,
    pub published_ns: u64,
    /// `None` only in a spare (see `Spares`), which holds no capacity.
    epoch: Option<Arc<Epoch>>,
    /// A delivery from a hub in another process: told, with its token, when the message is
    /// done here (see `process`).
    origin: Option<(Arc<dyn Acker>, u64)>,
}

/// What is told that a delivery from another process is done: its callback returned, or it
/// was dropped.
pub trait Acker: Send + Sync {
    fn ack(&self, token: u64);
}

/// Bytes a message keeps inside itself; longer ones go to a second allocation.
const INLINE: usize = 224;

/// The payload, a NUL, the topic, a NUL (and for a request its reply topic and a NUL): ready
/// for C. Small messages are stored inline, so
/// that the message and its bytes are one allocation.
#[allow(clippy::large_enum_variant)] // inline on purpose: it lives inside the message's Arc
#[derive(Clone)]
pub(crate) enum Packed {
    Inline(usize, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl Packed {
    fn bytes(&self) -> &[u8] {
        match self {
            Packed::Inline(len, bytes) => &bytes[..*len],
            Packed::Heap(bytes) => bytes,
        }
    }

    /// Copies `topic`, `json` and `reply` into one buffer, reusing this one's inline bytes if
    /// they fit.
    fn fill(&mut self, topic: &str, json: &[u8], reply: &str) {
        let reply_part = match reply.len() {
            0 => 0,
            n => n + 1,
        };
        let len = json.len() + topic.len() + 2 + reply_part;
        if len > INLINE {
            let mut data = Vec::with_capacity(len);
            data.extend_from_slice(json);
            data.push(0);
            data.extend_from_slice(topic.as_bytes());
            data.push(0);
            if reply_part > 0 {
                data.extend_from_slice(reply.as_bytes());
                data.push(0);
            }
            *self = Packed::Heap(data.into_boxed_slice());
            return;
        }
        if !matches!(self, Packed::Inline(..)) {
            *self = Packed::Inline(0, [0; INLINE]);
        }
        if let Packed::Inline(n, bytes) = self {
            let t = json.len() + 1;
            bytes[..json.len()].copy_from_slice(json);
            bytes[json.len()] = 0;
            bytes[t..t + topic.len()].copy_from_slice(topic.as_bytes());
            bytes[t + topic.len()] = 0;
            if reply_part > 0 {
                let r = t + topic.len() + 1;
                bytes[r..r + reply.len()].copy_from_slice(reply.as_bytes());
                bytes[len - 1] = 0;
            }
            *n = len;
        }
    }
}

impl Message {
    /// A message holding a copy of `topic` and `json`, not yet accepted (no `seq`, no epoch,
    /// no capacity). `stamp` accepts it.
    pub(crate) fn new(topic: &str, json: &[u8], reply: &str) -> Message {
        let mut data = Packed::Inline(0, [0; INLINE]);
        data.fill(topic, json, reply);
        Message {
            data,
            json_len: json.len(),
            reply_len: reply.len(),
            seq: 0,
            published_ns: 0,
            epoch: None,
            origin: None,
        }
    }

    /// Accepts `message`: gives it its `seq`, its publication time, and its epoch, and makes
    /// it hold the unit of capacity its publisher reserved (given back when it is dropped).
    pub(crate) fn stamp(
        message: &mut Arc<Message>,
        seq: u64,
        published_ns: u64,
        epoch: Arc<Epoch>,
    ) {
        if Arc::get_mut(message).is_none() {
            // Never shared before it is stamped; copy rather than fail if it ever were.
            let copy = Message {
                data: message.data.clone(),
                json_len: message.json_len,
                reply_len: message.reply_len,
                seq: 0,
                published_ns: 0,
                epoch: None,
                origin: None,
            };
            *message = Arc::new(copy);
        }
        if let Some(m) = Arc::get_mut(message) {
            m.seq = seq;
            m.published_ns = published_ns;
            m.epoch = Some(epoch);
        }
    }

    /// Gives back the capacity the message holds, then leaves its epoch (which may finish it),
    /// and tells the hub of a delivery from another process that it is done here.
    fn retire(&mut self) {
        if let Some(epoch) = self.epoch.take() {
            epoch.tracker.release();
            drop(epoch);
        }
        if let Some((acker, token)) = self.origin.take() {
            acker.ack(token);
        }
    }

    /// Marks a message not yet shared as a delivery from another process, acknowledged with
    /// `token` once it is done here.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn set_origin(message: &mut Arc<Message>, acker: Arc<dyn Acker>, token: u64) {
        match Arc::get_mut(message) {
            Some(m) => m.origin = Some((acker, token)),
            None => acker.ack(token),
        }
    }

    /// The token of a delivery from another process (0 for a message published here).
    pub fn origin_token(&self) -> u64 {
        self.origin.as_ref().map_or(0, |(_, t)| *t)
    }

    /// The flush epoch the message belongs to (`None` only for a spare).
    pub fn epoch(&self) -> Option<&Arc<Epoch>> {
        self.epoch.as_ref()
    }

    /// Where the payload, the topic and the reply topic are, for the C view: (json, json_len,
    /// topic, topic_len, reply_to, reply_to_len), each NUL-terminated, in one look at the
    /// storage; reply_to is NULL and its length 0 when there is none.
    #[allow(clippy::type_complexity)]
    pub fn c_parts(&self) -> (*const u8, usize, *const u8, usize, *const u8, usize) {
        let bytes = self.data.bytes();
        let reply_part = self.reply_part();
        let topic_len = bytes.len() - self.json_len - 2 - reply_part;
        let reply = match reply_part {
            0 => std::ptr::null(),
            _ => bytes[bytes.len() - reply_part..].as_ptr(),
        };
        (
            bytes.as_ptr(),
            self.json_len,
            bytes[self.json_len + 1..].as_ptr(),
            topic_len,
            reply,
            self.reply_len,
        )
    }

    /// Bytes the reply topic and its NUL take at the end of the storage.
    fn reply_part(&self) -> usize {
        match self.reply_len {
            0 => 0,
            n => n + 1,
        }
    }

    /// The topic to answer on, for a request.
    pub fn reply_to(&self) -> Option<&str> {
        let bytes = self.data.bytes();
        match self.reply_part() {
            0 => None,
            n => std::str::from_utf8(&bytes[bytes.len() - n..bytes.len() - 1]).ok(),
        }
    }

    /// The payload, exactly as published.
    pub fn json(&self) -> &[u8] {
        &self.data.bytes()[..self.json_len]
    }

    /// The payload followed by a NUL.
    pub fn json_with_nul(&self) -> &[u8] {
        &self.data.bytes()[..=self.json_len]
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        let t = self.topic_with_nul();
        // Topics are checked printable ASCII; this cannot fail.
        std::str::from_utf8(&t[..t.len() - 1]).unwrap_or("")
    }

    /// The topic followed by a NUL.
    pub fn topic_with_nul(&self) -> &[u8] {
        let bytes = self.data.bytes();
        &bytes[self.json_len + 1..bytes.len() - self.reply_part()]
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.seq)
            .field("topic", &self.topic())
            .field("json", &String::from_utf8_lossy(self.json()))
            .finish()
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        self.retire();
    }
}

/// Spare message allocations. The dispatcher that drops the last reference to a small message
/// retires it (its capacity and epoch let go, exactly as a drop would) and leaves the
/// allocation here; the next publish refills it instead of calling `malloc`. With glibc,
/// memory allocated on the publishing thread and freed on a dispatcher thread makes both
/// threads take the same arena lock, message after message - measured as futex system calls
/// on both sides of the hand-off. Bounded: beyond `SPARES` the allocation is freed.
///
/// Two stacks, so that the two sides of the hand-off do not share a lock per message:
/// publishers take from `ready`, dispatchers give back to `returned` (a batch at a time, see
/// `Retired`), and a publisher that finds `ready` empty trades it for `returned` whole.
pub struct Spares {
    /// Each stack's lock on lines of its own: side by side, the dispatcher's lock of
    /// `returned` took the line of `ready` from the publisher once a batch.
    ready: Padded<Mutex<Vec<Arc<Message>>>>,
    returned: Padded<Mutex<Vec<Arc<Message>>>>,
}

/// Spares kept at most per bus (each about 300 bytes).
const SPARES: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Spares {
    pub fn new() -> Spares {
        Spares {
            ready: Padded(Mutex::new(Vec::with_capacity(SPARES))),
            returned: Padded(Mutex::new(Vec::with_capacity(SPARES))),
        }
    }

    /// A message holding a copy of `topic`, `json` and the reply topic `reply` ("" for none),
    /// in a spare allocation if there is one.
    pub fn message(&self, topic: &str, json: &[u8], reply: &str) -> Arc<Message> {
        let spare = {
            let mut ready = lock(&self.ready);
            if ready.is_empty() {
                std::mem::swap(&mut *ready, &mut *lock(&self.returned));
            }
            ready.pop()
        };
        if let Some(mut spare) = spare {
            if let Some(m) = Arc::get_mut(&mut spare) {
                m.data.fill(topic, json, reply);
                m.json_len = json.len();
                m.reply_len = reply.len();
                return spare;
            }
        }
        Arc::new(Message::new(topic, json, reply))
    }

    /// Drops a reference to `message`; if it was the last one, keeps the allocation.
    pub fn recycle(&self, message: Arc<Message>) {
        if let Some(spare) = Retired::last_reference(message, None) {
            let mut returned = lock(&self.returned);
            if returned.len() < SPARES {
                returned.push(spare);
            }
        }
    }

    /// Takes the spares a dispatcher gathered (what does not fit is freed).
    fn give_back(&self, spares: &mut Vec<Arc<Message>>) {
        {
            let mut returned = lock(&self.returned);
            let room = SPARES.saturating_sub(returned.len()).min(spares.len());
            returned.extend(spares.drain(..room));
        }
        spares.clear();
    }
}

impl Default for Spares {
    fn default() -> Spares {
        Spares::new()
    }
}

/// A dispatcher thread's retirements, batched. A message retires as soon as its last
/// reference is let go (its capacity given back, an attached process's delivery
/// acknowledged), but the references to its flush epoch and its allocation are kept here and
/// let go together (`finish`): the epoch's reference count and the spares' lock are touched by
/// publishers too, and touching them once per message pulls their cache lines between the
/// cores message after message. An epoch kept here is always that of the message about to be
/// delivered (`before`), so a flush never waits for a callback it does not wait for anyway.
#[derive(Default)]
pub struct Retired {
    epochs: Vec<Arc<Epoch>>,
    spares: Vec<Arc<Message>>,
}

impl Retired {
    /// Drops a reference to a delivered message; if it was the last one, retires it here.
    pub fn recycle(&mut self, message: Arc<Message>) {
        if let Some(spare) = Retired::last_reference(message, Some(&mut self.epochs)) {
            self.spares.push(spare);
        }
    }

    /// Call before delivering a message of `epoch`: lets go of the epochs kept if they are
    /// another one.
    pub fn before(&mut self, epoch: &Arc<Epoch>) {
        if self
            .epochs
            .last()
            .is_some_and(|kept| !Arc::ptr_eq(kept, epoch))
        {
            self.epochs.clear();
        }
    }

    /// Lets go of every epoch kept and gives the allocations back to `spares`.
    pub fn finish(&mut self, spares: &Spares) {
        self.epochs.clear();
        if !self.spares.is_empty() {
            spares.give_back(&mut self.spares);
        }
    }

    /// If `message` is the last reference and small, retires it and returns the allocation;
    /// its epoch goes to `epochs` when given, else is let go at once. Otherwise drops it.
    fn last_reference(
        mut message: Arc<Message>,
        epochs: Option<&mut Vec<Arc<Epoch>>>,
    ) -> Option<Arc<Message>> {
        // A plain load first: most references dropped in a fan-out are not the last, and
        // `get_mut` costs a compare-and-swap.
        if Arc::strong_count(&message) != 1 {
            return None;
        }
        let m = Arc::get_mut(&mut message)?;
        if !matches!(m.data, Packed::Inline(..)) {
            return None;
        }
        match (epochs, m.epoch.take()) {
            (Some(epochs), Some(epoch)) => {
                epoch.tracker.release();
                epochs.push(epoch);
            }
            (_, epoch) => m.epoch = epoch,
        }
        m.retire();
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::Tracker;

    #[test]
    fn a_message_holds_capacity_until_dropped() {
        let t = Arc::new(Tracker::new(2));
        let e = Epoch::first(t.clone());
        assert!(t.try_reserve());
        let mut m = Arc::new(Message::new("a.b", b"[1]", ""));
        Message::stamp(&mut m, 1, 0, e.clone());
        assert_eq!(m.json(), b"[1]");
        assert_eq!(m.json_with_nul(), b"[1]\0");
        assert_eq!(m.topic(), "a.b");
        assert_eq!(m.topic_with_nul(), b"a.b\0");
        assert!(t.try_reserve());
        let big = vec![b' '; 1000];
        let mut heap = Arc::new(Message::new("t", &big, "_INBOX.x.1"));
        Message::stamp(&mut heap, 2, 0, e);
        assert_eq!((heap.json(), heap.topic()), (&big[..], "t"));
        assert_eq!((m.reply_to(), heap.reply_to()), (None, Some("_INBOX.x.1")));
        let (json, json_len, topic, topic_len, reply, reply_len) = heap.c_parts();
        assert_eq!((json_len, topic_len, reply_len), (1000, 1, 10));
        assert_eq!(topic as usize, json as usize + 1001);
        assert_eq!(reply as usize, topic as usize + 2);
        assert_eq!(heap.topic_with_nul(), b"t\0");
        assert!(m.c_parts().4.is_null());
        assert!(!t.try_reserve());
        drop(m);
        drop(heap);
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn a_spare_is_reused_only_when_its_last_reference_is_recycled() {
        let t = Arc::new(Tracker::new(10));
        let e = Epoch::first(t.clone());
        let spares = Spares::new();
        assert!(t.try_reserve());
        let mut m = spares.message("a", b"[1,2,3]", "_INBOX.a.1");
        Message::stamp(&mut m, 1, 0, e.clone());
        let first = Arc::as_ptr(&m);
        let shared = m.clone();
        spares.recycle(m);
        assert_eq!(t.held(), 1, "a shared message is not retired");
        spares.recycle(shared);
        assert_eq!(t.held(), 0, "the last reference retires it");
        assert_eq!(Arc::strong_count(&e), 1, "and lets go of its epoch");
        let again = spares.message("bb", b"7", "");
        assert_eq!(Arc::as_ptr(&again), first, "the allocation is reused");
        assert_eq!((again.json_with_nul(), again.topic()), (&b"7\0"[..], "bb"));
        assert_eq!(again.reply_to(), None, "a refill forgets the reply topic");
        assert!(again.epoch().is_none());
        drop(again);
        assert_eq!(t.held(), 0, "a spare holds no capacity");
        let big = vec![b' '; 1000];
        let mut heap = spares.message("t", &big, "");
        assert!(t.try_reserve());
        Message::stamp(&mut heap, 2, 0, e);
        spares.recycle(heap);
        assert_eq!(t.held(), 0);
        assert!(
            lock(&spares.returned).is_empty(),
            "a large message's allocation is freed"
        );
    }
}
