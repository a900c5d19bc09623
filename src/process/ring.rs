//! A byte ring in memory shared with another process: one writer, one reader, records of up to
//! half the ring, and messages of any length in fragments. The other process may write
//! anything anywhere in the mapping, so both sides keep their own index privately, check every
//! index and length they read against it, and copy a record out before anything looks at it.

use crate::sys::shm::SharedMap;
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::Arc;

/// Where a ring lives in the mapping: its control block (four cache lines: the reader's
/// index, the writer's index, and the two sides' wake-up flags) and its data.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub control: usize,
    pub data: usize,
    /// Bytes of data: a power of two.
    pub bytes: usize,
}

/// Bytes a control block takes.
pub const CONTROL_BYTES: usize = 256;
const HEAD: usize = 0;
const TAIL: usize = 64;
const READER_SLEEPING: usize = 128;
const WRITER_WAITING: usize = 192;

/// Set in a record's length word when more fragments of the same message follow.
const MORE: u32 = 1 << 31;

/// The other process broke the ring: what it wrote cannot be what this side's writer or
/// reader did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

fn padded(len: usize) -> u64 {
    ((4 + len as u64) + 7) & !7
}

/// The largest fragment a ring of `bytes` carries.
fn max_fragment(bytes: usize) -> usize {
    bytes / 2 - 8
}

/// Writes records into a ring. Not shared between threads: its owner locks it.
pub struct Writer {
    map: Arc<SharedMap>,
    place: Place,
    tail: u64,
    /// The reader's index as last read (it only grows).
    head: u64,
}

impl Writer {
    pub fn new(map: Arc<SharedMap>, place: Place) -> Writer {
        Writer {
            map,
            place,
            tail: 0,
            head: 0,
        }
    }

    /// Bytes free now, after reading the reader's index again.
    fn refresh(&mut self) -> Result<u64, Violation> {
        let head = self.map.atomic_u64(self.place.control + HEAD).load(Acquire);
        if head < self.head || head > self.tail {
            return Err(Violation(format!(
                "the reader's index {head} is outside {}..={} (the writer's)",
                self.head, self.tail
            )));
        }
        self.head = head;
        Ok(self.place.bytes as u64 - (self.tail - head))
    }

    fn free(&self) -> u64 {
        self.place.bytes as u64 - (self.tail - self.head)
    }

    /// Copies `bytes` into the data area at ring position `pos`, wrapping at its end.
    fn put(&self, pos: u64, bytes: &[u8]) {
        let size = self.place.bytes;
        let at = (pos as usize) & (size - 1);
        let first = bytes.len().min(size - at);
        self.map.write(self.place.data + at, &bytes[..first]);
        if first < bytes.len() {
            self.map.write(self.place.data, &bytes[first..]);
        }
    }

    /// Writes what fits of `body[*done..]`, fragment by fragment, and publishes it; `*done`
    /// advances. True once the whole body is written. A body that fits in one fragment is
    /// written whole or not at all.
    pub fn write(&mut self, body: &[u8], done: &mut usize) -> Result<bool, Violation> {
        debug_assert!(!body.is_empty(), "records are never empty");
        let max = max_fragment(self.place.bytes);
        let start = self.tail;
        while *done < body.len() {
            let left = body.len() - *done;
            let mut free = self.free();
            if free < padded(left.min(max)) {
                free = self.refresh()?;
            }
            let n = if left <= max && free >= padded(left) {
                left
            } else if body.len() > max && free >= 64 {
                // A message of several fragments goes on in whatever room there is.
                left.min(max).min(free as usize - 8) & !7
            } else {
                0
            };
            if n == 0 {
                break;
            }
            let more = if *done + n < body.len() { MORE } else { 0 };
            self.put(self.tail, &(n as u32 | more).to_le_bytes());
            self.put(self.tail + 4, &body[*done..*done + n]);
            self.tail += padded(n);
            *done += n;
        }
        if self.tail != start {
            self.map
                .atomic_u64(self.place.control + TAIL)
                .store(self.tail, Release);
        }
        Ok(*done == body.len())
    }

    /// Whether the reader said it is going to sleep (then the writer wakes it).
    pub fn reader_sleeping(&self) -> bool {
        self.map
            .atomic_u32(self.place.control + READER_SLEEPING)
            .load(SeqCst)
            != 0
    }

    /// Says that this writer waits for room (the reader then wakes it as it frees some).
    pub fn set_waiting(&self, waiting: bool) {
        self.map
            .atomic_u32(self.place.control + WRITER_WAITING)
            .store(waiting as u32, SeqCst);
    }

    /// The reader's index as last read: progress made by the other side.
    pub fn progress(&self) -> u64 {
        self.head
    }
}

/// Reads records from a ring and puts messages together from their fragments.
pub struct Reader {
    map: Arc<SharedMap>,
    place: Place,
    head: u64,
    /// Fragments of a message still coming.
    partial: Vec<u8>,
    /// The longest message accepted.
    max_message: usize,
}

impl Reader {
    pub fn new(map: Arc<SharedMap>, place: Place, max_message: usize) -> Reader {
        Reader {
            map,
            place,
            head: 0,
            partial: Vec::new(),
            max_message,
        }
    }

    fn get(&self, pos: u64, out: &mut [u8]) {
        let size = self.place.bytes;
        let at = (pos as usize) & (size - 1);
        let first = out.len().min(size - at);
        self.map.read(self.place.data + at, &mut out[..first]);
        if first < out.len() {
            let rest = out.len() - first;
            self.map
                .read(self.place.data, &mut out[first..first + rest]);
        }
    }

    /// Whether the writer has published anything not yet read.
    pub fn has_data(&self) -> bool {
        self.map.atomic_u64(self.place.control + TAIL).load(Acquire) != self.head
    }

    /// The next whole message, copied into `out` (replacing what was there); false if none is
    /// complete yet.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Result<bool, Violation> {
        let max = max_fragment(self.place.bytes);
        loop {
            let tail = self.map.atomic_u64(self.place.control + TAIL).load(Acquire);
            if tail < self.head || tail - self.head > self.place.bytes as u64 {
                return Err(Violation(format!(
                    "the writer's index {tail} is outside {}..={} (the reader's, plus the ring)",
                    self.head,
                    self.head + self.place.bytes as u64
                )));
            }
            if tail == self.head {
                return Ok(false);
            }
            let mut word = [0u8; 4];
            self.get(self.head, &mut word);
            let word = u32::from_le_bytes(word);
            let (len, more) = ((word & !MORE) as usize, word & MORE != 0);
            if len == 0 && more || len > max || padded(len) > tail - self.head {
                return Err(Violation(format!(
                    "a record of {len} bytes (more: {more}) at {} does not fit the {} bytes written",
                    self.head,
                    tail - self.head
                )));
            }
            if self.partial.len() + len > self.max_message {
                return Err(Violation(format!(
                    "a message of more than {} bytes",
                    self.max_message
                )));
            }
            let at = self.partial.len();
            self.partial.resize(at + len, 0);
            let mut part = std::mem::take(&mut self.partial);
            self.get(self.head + 4, &mut part[at..]);
            self.partial = part;
            self.head += padded(len);
            self.map
                .atomic_u64(self.place.control + HEAD)
                .store(self.head, Release);
            if !more {
                out.clear();
                std::mem::swap(out, &mut self.partial);
                return Ok(true);
            }
        }
    }

    /// Says whether this reader is going to sleep (the writer then wakes it).
    pub fn set_sleeping(&self, sleeping: bool) {
        self.map
            .atomic_u32(self.place.control + READER_SLEEPING)
            .store(sleeping as u32, SeqCst);
    }

    /// Whether the writer said it waits for room.
    pub fn writer_waiting(&self) -> bool {
        self.map
            .atomic_u32(self.place.control + WRITER_WAITING)
            .load(SeqCst)
            != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(bytes: usize) -> (Writer, Reader, Arc<SharedMap>, Place) {
        let map = Arc::new(SharedMap::create("jsonbus-ring-test", CONTROL_BYTES + bytes).unwrap());
        let place = Place {
            control: 0,
            data: CONTROL_BYTES,
            bytes,
        };
        (
            Writer::new(map.clone(), place),
            Reader::new(map.clone(), place, 1 << 24),
            map,
            place,
        )
    }

    #[test]
    fn messages_come_out_whole_in_order_across_the_wrap() {
        let (mut w, mut r, _, _) = ring(65536);
        let mut out = Vec::new();
        for round in 0..2000u32 {
            let body: Vec<u8> = (0..(round % 700 + 1)).map(|i| (i ^ round) as u8).collect();
            let mut done = 0;
            assert!(w.write(&body, &mut done).unwrap());
            assert!(r.next(&mut out).unwrap());
            assert_eq!(out, body);
            assert!(!r.next(&mut out).unwrap());
        }
    }

    #[test]
    fn a_full_ring_takes_nothing_until_read_and_a_big_message_goes_in_fragments() {
        let (mut w, mut r, _, _) = ring(65536);
        let body = vec![7u8; 1000];
        let mut n = 0;
        loop {
            let mut done = 0;
            if !w.write(&body, &mut done).unwrap() {
                assert_eq!(done, 0, "a small body is all or nothing");
                break;
            }
            n += 1;
        }
        assert_eq!(n, 65536 / 1008);
        let mut out = Vec::new();
        for _ in 0..n {
            assert!(r.next(&mut out).unwrap());
        }
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut done = 0;
        let mut got = None;
        while got.is_none() {
            w.write(&big, &mut done).unwrap();
            if r.next(&mut out).unwrap() {
                got = Some(out.clone());
            }
        }
        assert_eq!(done, big.len());
        assert_eq!(got.unwrap(), big);
    }

    #[test]
    fn garbage_indices_and_lengths_are_violations_never_panics() {
        let (mut w, mut r, map, place) = ring(65536);
        let mut out = Vec::new();
        map.atomic_u64(place.control + TAIL).store(1 << 40, SeqCst);
        assert!(r.next(&mut out).is_err());
        map.atomic_u64(place.control + TAIL).store(16, SeqCst);
        map.write(place.data, &(60000u32).to_le_bytes());
        assert!(
            r.next(&mut out).is_err(),
            "a length beyond what was written"
        );
        map.write(place.data, &(MORE).to_le_bytes());
        assert!(
            r.next(&mut out).is_err(),
            "an empty fragment with more to come"
        );
        map.atomic_u64(place.control + HEAD).store(1 << 40, SeqCst);
        let mut done = 0;
        assert!(
            w.write(&[1; 70000], &mut done).is_err(),
            "a reader index past the writer's, read once the ring seems full"
        );
        let mut small = Reader::new(map.clone(), place, 100);
        map.atomic_u64(place.control + TAIL).store(8 + 200, SeqCst);
        map.write(place.data, &(200u32).to_le_bytes());
        assert!(small.next(&mut out).is_err(), "longer than max_message");
    }

    #[test]
    fn random_bytes_in_the_ring_never_panic() {
        let (_, _, map, place) = ring(65536);
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut out = Vec::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut r = Reader::new(map.clone(), place, 1 << 20);
            map.write(place.data + (x as usize % 65000), &x.to_le_bytes());
            map.atomic_u64(place.control + TAIL)
                .store(x % 70000, SeqCst);
            for _ in 0..4 {
                if r.next(&mut out).is_err() {
                    break;
                }
            }
        }
    }
}
