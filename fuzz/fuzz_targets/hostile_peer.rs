//! Fuzz target `hostile_peer`: every input is a program for a HOSTILE attached process that
//! talks to a hub (CONTRACT.md 2C, guarantee 24) through the raw protocol - the control socket,
//! the shared memory and the two eventfds - written by hand here from `src/process/` (the
//! records and offsets are private to the library; a hostile peer encodes them itself).
//!
//! Set up once per process: `XDG_RUNTIME_DIR` is a fresh private (0700) temporary directory; a
//! hub bus (`jsonbus_new`, `queue_capacity` 64 so that a peer holding deliveries puts pressure
//! on it, `max_message_bytes` 40000 so that a valid message can travel in two fragments)
//! serves the name "hostile" with `{"peer_stall_timeout_ms":50,"peer_ring_bytes":65536}`; a
//! well-behaved handle attached to it in the same process (`jsonbus_attach`,
//! `publish_timeout_ms` 5) subscribes to `good.>`, and so does the hub bus itself: both record
//! what they get.
//!
//! The input: a hello byte, then ops (at most 64), each an opcode byte and its arguments
//! (zeros once the input runs out).
//!
//! | hello byte % 16 | the first message on the socket |
//! |---|---|
//! | 0-10 | a valid hello (magic, version 1) |
//! | 11 | a hello of another version (4 bytes from the input) |
//! | 12 | garbage: 1-64 bytes from the input; 13: 300 bytes (longer than the hub reads) |
//! | 14 | a valid hello with descriptors attached (an eventfd, /dev/null) |
//! | 15 | nothing (only ops that use the socket can send a first message) |
//!
//! | op % 14 | what the hostile peer does |
//! |---|---|
//! | 0 | writes 1-16 input bytes at an input offset of one area of the mapping: the header, the credit words, either ring's control block, either data area, anywhere |
//! | 1 | a well-formed publish in the up ring: topic and payload from lists (valid and invalid; never a `good.` topic), within its credit (waiting up to 2 ms for it) or beyond it, `parent` 0 / a held delivery's token / random, `reply` none / valid / invalid |
//! | 2 | an ack of a held delivery's token, of one acked already, or of a random token |
//! | 3 | a flush with a random token |
//! | 4 | a subscribe: pattern from a list (`>`, `good.>`, ...; valid and invalid), group none / "g" / invalid, a new id or one in use |
//! | 5 | an unsubscribe of one of its ids or of a random one |
//! | 6 | a malformed record: random body, a valid record cut short or with bytes after it, an unknown kind, invalid UTF-8 in a topic or pattern, a length word beyond the fragment limit or beyond what was written, an empty fragment with MORE, MORE on a message never finished, fragments adding up past `max_message_bytes` |
//! | 7 | sets an index to a random or nearby value: the up ring's tail or head, the down ring's head or tail |
//! | 8 | signals the to-hub and/or to-peer eventfd 1-4 times |
//! | 9 | sends 1-64 input bytes on the socket with 0-3 descriptors (an eventfd, the memfd, /dev/null) |
//! | 10 | sleeps 0-2 ms |
//! | 11 | reads the down ring as a good peer would (keeping the delivery tokens), and maybe acks them all |
//! | 12 | a valid publish on `h.big` of a 32-40 KB string, which takes two fragments, within its credit (waiting up to 2 ms for it) or beyond it |
//! | 13 | sets or clears "wants credit" |
//!
//! Before every op the well-behaved handle publishes `{"n":k}` on `good.<k % 8>` (k counting
//! up): OK, or FULL under pressure (never anything else). After the ops the hostile socket is
//! closed and the mapping unmapped; then, with hard limits: the hub's `peers` is back to 1
//! within 200 ms, with `subscriptions` 2 (the good handle's subscription - not its inbox - and the hub's
//! own); the good handle publishes 20 more (retrying FULL for up to 5 s); `jsonbus_flush(good,
//! 5000)` is OK within 5 s; both `good.>` subscriptions received exactly the accepted good
//! publishes - byte-identical, in order, each once, seq increasing - and nothing else; the
//! hub's `queued` is 0; `peers_gone` and `peers_dropped` only grow. Every 1000 inputs the
//! process's descriptors (`/proc/self/fd`) and jsonbus memfd mappings (`/proc/self/maps`) are
//! counted: they must stay within a few of the first count. `HOSTILE_TRACE=1` prints, per
//! input, why the hub dropped the peer (the refusal it sends before the hang-up) and the hub's
//! stats.
#![no_main]

use ::jsonbus::ffi::*;
use ::jsonbus::sys::ipc::{EventFd, SeqPacket};
use ::jsonbus::sys::shm::SharedMap;
use jsonbus_fuzz::*;
use libfuzzer_sys::fuzz_target;
use std::ffi::{c_void, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The protocol, as a hostile peer writes it (from src/process/{wire,layout,ring}.rs)

const MAGIC: &[u8; 8] = b"JSONBUS\0";
const VERSION: u32 = 1;
const RING: usize = 65536;
const HEADER: usize = 4096;
const MAP_LEN: usize = HEADER + 2 * RING;
const GRANTED_AT: usize = 64;
const WANTS_CREDIT_AT: usize = 128;
const UP_CONTROL: usize = 1024;
const DOWN_CONTROL: usize = 1024 + 256;
const HEAD: usize = 0;
const TAIL: usize = 64;
const READER_SLEEPING: usize = 128;
const WRITER_WAITING: usize = 192;
const UP_DATA: usize = HEADER;
const DOWN_DATA: usize = HEADER + RING;
const MORE: u32 = 1 << 31;
const MAX_FRAGMENT: usize = RING / 2 - 8;

const PUBLISH: u8 = 1;
const ACK: u8 = 2;
const FLUSH: u8 = 3;
const SUBSCRIBE: u8 = 4;
const UNSUBSCRIBE: u8 = 5;
const DELIVER: u8 = 16;

const NAME: &str = "hostile";
const MAX_MESSAGE: usize = 40000;

fn padded(n: usize) -> u64 {
    ((4 + n as u64) + 7) & !7
}

fn publish_record(parent: u64, topic: &[u8], reply: &[u8], json: &[u8]) -> Vec<u8> {
    let mut b = vec![PUBLISH];
    b.extend_from_slice(&parent.to_le_bytes());
    b.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    b.extend_from_slice(&(reply.len() as u16).to_le_bytes());
    b.extend_from_slice(&(json.len() as u32).to_le_bytes());
    b.extend_from_slice(topic);
    b.extend_from_slice(reply);
    b.extend_from_slice(json);
    b
}

fn token_record(kind: u8, token: u64) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(&token.to_le_bytes());
    b
}

fn subscribe_record(request: u64, id: i64, pattern: &[u8], group: &[u8]) -> Vec<u8> {
    let mut b = vec![SUBSCRIBE];
    b.extend_from_slice(&request.to_le_bytes());
    b.extend_from_slice(&(id as u64).to_le_bytes());
    b.extend_from_slice(&(pattern.len() as u16).to_le_bytes());
    b.extend_from_slice(&(group.len() as u16).to_le_bytes());
    b.extend_from_slice(pattern);
    b.extend_from_slice(group);
    b
}

/// Topics the hostile peer publishes on: valid and invalid, never one `good.>` matches.
const TOPICS: [&[u8]; 14] = [
    b"h",
    b"h.x",
    b"h.y.z",
    b"good",
    b"goodx.a",
    b"goo.d",
    b"_INBOX.a.b",
    b"x",
    b"a..b",
    b">",
    b"h.*",
    b"",
    b"h.\xff",
    b"g ood",
];
const PAYLOADS: [&[u8]; 12] = [
    b"1",
    b"{\"n\":1}",
    b"[[[]]]",
    b"\"x\"",
    b" null ",
    b"{",
    b"\xff",
    b"",
    b"1 2",
    b"[\"a\0\"]",
    b"\"\\ud800\"",
    b"{\"k\":\"\xc3\xa9\"}",
];
const PATTERNS: [&[u8]; 11] = [
    b">",
    b"good.>",
    b"good.*",
    b"h.>",
    b"*",
    b"*.*",
    b"_INBOX.>",
    b"a..b",
    b"",
    b"a*",
    b"\xc3",
];
const GROUPS: [&[u8]; 4] = [b"", b"g", b"a.b", b"good"];

// ---------------------------------------------------------------------------------------
// Set-up, once per process

/// What the `good.>` subscriptions received.
#[derive(Default)]
struct Received {
    got: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

struct Setup {
    hub: *mut jsonbus,
    good: *mut jsonbus,
    at_good: &'static Mutex<Received>,
    at_hub: &'static Mutex<Received>,
    socket: PathBuf,
    run: Mutex<Run>,
}
// SAFETY: the handles are only used under `run`'s lock (one input at a time) and by jsonbus.
unsafe impl Sync for Setup {}
// SAFETY: as above.
unsafe impl Send for Setup {}

#[derive(Default)]
struct Run {
    k: u64,
    inputs: u64,
    gone: u64,
    dropped: u64,
    /// Descriptors and jsonbus memfd mappings at the first count.
    first_fds: Option<(usize, usize)>,
}

extern "C" fn record(msg: *const jsonbus_message, user_data: *mut c_void) -> i32 {
    // SAFETY: our `Mutex<Received>`, leaked for the process's life.
    let r = unsafe { &*(user_data as *const Mutex<Received>) };
    // SAFETY: valid during the call.
    let (seq, topic, json, _) = unsafe { read_message(msg) };
    let mut r = r.lock().unwrap();
    assert!(
        r.got.last().is_none_or(|g| g.0 < seq),
        "a good.> subscription saw seq {seq} after {}",
        r.got.last().unwrap().0
    );
    r.got.push((seq, topic, json));
    JSONBUS_OK
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = private_runtime_dir("hostile");
        let opts =
            CString::new(r#"{"queue_capacity":64,"max_message_bytes":40000,"publish_timeout_ms":5}"#)
                .unwrap();
        let hub = jsonbus_new(opts.as_ptr());
        assert!(!hub.is_null(), "jsonbus_new: {}", last_error());
        let name = CString::new(NAME).unwrap();
        let serve = CString::new(r#"{"peer_stall_timeout_ms":50,"peer_ring_bytes":65536}"#).unwrap();
        let rc = jsonbus_serve(hub, name.as_ptr(), serve.as_ptr());
        assert_eq!(rc, JSONBUS_OK, "jsonbus_serve: {}", last_error());
        let attach = CString::new(r#"{"publish_timeout_ms":5,"connect_timeout_ms":2000}"#).unwrap();
        let good = jsonbus_attach(name.as_ptr(), attach.as_ptr());
        assert!(!good.is_null(), "jsonbus_attach: {}", last_error());
        let at_good: &'static Mutex<Received> = Box::leak(Box::default());
        let at_hub: &'static Mutex<Received> = Box::leak(Box::default());
        let pattern = CString::new("good.>").unwrap();
        for (bus, r) in [(good, at_good), (hub, at_hub)] {
            let id = jsonbus_subscribe(
                bus,
                pattern.as_ptr(),
                Some(record),
                r as *const Mutex<Received> as *mut c_void,
            );
            assert!(id > 0, "subscribe good.>: {}", last_error());
        }
        let st = stats(hub);
        assert_eq!(stat(&st, "peers"), 1, "{st}");
        Setup {
            hub,
            good,
            at_good,
            at_hub,
            socket: PathBuf::from(dir).join("jsonbus").join(format!("{NAME}.sock")),
            run: Mutex::new(Run::default()),
        }
    })
}

// ---------------------------------------------------------------------------------------
// The hostile peer

struct Hostile {
    sock: SeqPacket,
    /// The mapping and the eventfds, once a welcome gave them.
    map: Option<SharedMap>,
    to_hub: Option<EventFd>,
    to_peer: Option<EventFd>,
    /// This side's own indices: what it wrote into the up ring, read from the down ring.
    up_tail: u64,
    down_head: u64,
    /// In the middle of a message of several fragments in the down ring.
    down_partial: bool,
    used: u64,
    /// Delivery tokens read and not acked; tokens acked.
    tokens: Vec<u64>,
    acked: Vec<u64>,
    ids: Vec<i64>,
    requests: u64,
}

impl Hostile {
    fn signal_hub(&self) {
        if let Some(e) = &self.to_hub {
            e.signal();
        }
    }

    /// Bytes free in the up ring as this side sees it (the head is the hub's).
    fn up_free(&self, map: &SharedMap) -> u64 {
        let head = map.atomic_u64(UP_CONTROL + HEAD).load(Acquire);
        match self.up_tail.checked_sub(head) {
            Some(used) if used <= RING as u64 => RING as u64 - used,
            _ => 0,
        }
    }

    /// Copies `bytes` into the up ring at ring position `pos`, wrapping.
    fn put(map: &SharedMap, data: usize, pos: u64, bytes: &[u8]) {
        let at = (pos as usize) & (RING - 1);
        let first = bytes.len().min(RING - at);
        map.write(data + at, &bytes[..first]);
        if first < bytes.len() {
            map.write(data, &bytes[first..]);
        }
    }

    fn publish_tail(&self, map: &SharedMap) {
        map.atomic_u64(UP_CONTROL + TAIL).store(self.up_tail, Release);
        if map.atomic_u32(UP_CONTROL + READER_SLEEPING).load(SeqCst) != 0 {
            self.signal_hub();
        }
    }

    /// Writes one fragment: the length word `word`, then `body`, once there is room for
    /// `padded(body.len())` (waiting up to 10 ms). Whether it was written.
    fn fragment(&mut self, word: u32, body: &[u8]) -> bool {
        let Some(map) = &self.map else { return false };
        let start = Instant::now();
        while self.up_free(map) < padded(body.len()) {
            if start.elapsed() > Duration::from_millis(10) {
                return false;
            }
            self.signal_hub();
            std::thread::sleep(Duration::from_micros(200));
        }
        Hostile::put(map, UP_DATA, self.up_tail, &word.to_le_bytes());
        Hostile::put(map, UP_DATA, self.up_tail + 4, body);
        self.up_tail += padded(body.len());
        self.publish_tail(map);
        true
    }

    /// A record framed as the protocol wants it: in fragments when it is long.
    fn record(&mut self, body: &[u8]) -> bool {
        if body.len() <= MAX_FRAGMENT {
            return self.fragment(body.len() as u32, body);
        }
        let mut done = 0;
        while done < body.len() {
            let n = (body.len() - done).min(MAX_FRAGMENT);
            let more = if done + n < body.len() { MORE } else { 0 };
            if !self.fragment(n as u32 | more, &body[done..done + n]) {
                return false;
            }
            done += n;
        }
        true
    }

    fn granted(&self) -> u64 {
        self.map
            .as_ref()
            .map_or(0, |m| m.atomic_u64(GRANTED_AT).load(Acquire))
    }

    /// Whether it has credit for one more publish, waiting up to 2 ms for the hub to grant it.
    fn wait_credit(&self) -> bool {
        let start = Instant::now();
        while self.used >= self.granted() {
            if start.elapsed() > Duration::from_millis(2) {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }

    /// Reads what the hub wrote into the down ring, as a good peer would; keeps the tokens.
    fn read_down(&mut self) {
        let Some(map) = &self.map else { return };
        for _ in 0..512 {
            let tail = map.atomic_u64(DOWN_CONTROL + TAIL).load(Acquire);
            let Some(avail) = tail.checked_sub(self.down_head) else {
                break;
            };
            if avail == 0 || avail > RING as u64 {
                break;
            }
            let mut word = [0u8; 4];
            read_ring(map, DOWN_DATA, self.down_head, &mut word);
            let word = u32::from_le_bytes(word);
            let (len, more) = ((word & !MORE) as usize, word & MORE != 0);
            if len > MAX_FRAGMENT || padded(len) > avail || (len == 0 && more) {
                break;
            }
            let mut head = [0u8; 9];
            let n = len.min(9);
            read_ring(map, DOWN_DATA, self.down_head + 4, &mut head[..n]);
            if !self.down_partial && n == 9 && head[0] == DELIVER {
                self.tokens
                    .push(u64::from_le_bytes(head[1..9].try_into().unwrap()));
            }
            self.down_partial = more;
            self.down_head += padded(len);
            map.atomic_u64(DOWN_CONTROL + HEAD)
                .store(self.down_head, Release);
        }
        if map.atomic_u32(DOWN_CONTROL + WRITER_WAITING).load(SeqCst) != 0 {
            self.signal_hub();
        }
    }
}

fn read_ring(map: &SharedMap, data: usize, pos: u64, out: &mut [u8]) {
    let at = (pos as usize) & (RING - 1);
    let first = out.len().min(RING - at);
    map.read(data + at, &mut out[..first]);
    if first < out.len() {
        let rest = out.len() - first;
        map.read(data, &mut out[first..first + rest]);
    }
}

/// The welcome, as far as this side reads it: status, ring bytes, max_message_bytes,
/// max_depth.
fn read_welcome(b: &[u8]) -> Option<(i32, u64, u64, u32)> {
    if b.len() < 8 + 4 + 4 + 8 + 8 + 4 + 8 + 2 || &b[..8] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    assert_eq!(u32_at(8), VERSION, "welcome version");
    Some((u32_at(12) as i32, u64_at(16), u64_at(24), u32_at(32)))
}

fn dev_null() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

/// Runs the hello and the ops of one input; whether the hub welcomed the peer (None: not
/// known, when no hello came first and the socket ops may have sent one).
fn hostile(s: &Setup, input: &mut Bytes<'_>, run: &mut Run) -> Option<bool> {
    let sock = match SeqPacket::connect(&s.socket) {
        Ok(sock) => sock,
        Err(e) => panic!("cannot connect to the hub: {e}"),
    };
    let mut h = Hostile {
        sock,
        map: None,
        to_hub: None,
        to_peer: None,
        up_tail: 0,
        down_head: 0,
        down_partial: false,
        used: 0,
        tokens: Vec::new(),
        acked: Vec::new(),
        ids: Vec::new(),
        requests: 0,
    };
    let hello = input.u8();
    let mut hello_msg = MAGIC.to_vec();
    hello_msg.extend_from_slice(&VERSION.to_le_bytes());
    let mine = EventFd::new().unwrap();
    let valid = match hello % 16 {
        0..=10 => {
            let _ = h.sock.send(&hello_msg, &[], 100);
            true
        }
        11 => {
            let mut v = u32::from_le_bytes([input.u8(), input.u8(), input.u8(), input.u8()]);
            if v == VERSION {
                v = 2;
            }
            let mut m = MAGIC.to_vec();
            m.extend_from_slice(&v.to_le_bytes());
            let _ = h.sock.send(&m, &[], 100);
            false
        }
        12 | 13 => {
            let n = if hello % 16 == 12 {
                1 + input.u8() as usize % 64
            } else {
                300
            };
            let mut m: Vec<u8> = (0..n).map(|_| input.u8()).collect();
            if m.len() == 12 && m[..8] == *MAGIC {
                m[0] = b'X';
            }
            let _ = h.sock.send(&m, &[], 100);
            false
        }
        14 => {
            let null = dev_null();
            let _ = h.sock.send(&hello_msg, &[mine.fd(), null.as_fd()], 100);
            true
        }
        _ => {
            // Nothing: wait for no welcome.
            false
        }
    };
    if hello % 16 != 15 {
        let mut buf = vec![0u8; 4096];
        match h.sock.recv(&mut buf, 2000) {
            Ok(Some((n, fds))) => {
                let w = read_welcome(&buf[..n])
                    .unwrap_or_else(|| panic!("the hub's answer is no welcome: {:?}", &buf[..n]));
                if valid {
                    assert_eq!(w.0, 0, "a valid hello was refused with {}", name(w.0));
                    assert_eq!(
                        (w.1, w.2, w.3, fds.len()),
                        (RING as u64, MAX_MESSAGE as u64, 128, 3),
                        "welcome"
                    );
                    let mut fds = fds.into_iter();
                    let memfd = fds.next().unwrap();
                    let map = SharedMap::from_fd(memfd, MAP_LEN)
                        .unwrap_or_else(|e| panic!("the hub's memfd does not map: {e}"));
                    let mut magic = [0u8; 8];
                    map.read(0, &mut magic);
                    assert_eq!(&magic, MAGIC, "the shared memory's header");
                    h.to_hub = Some(EventFd::from_fd(fds.next().unwrap()).expect("to-hub eventfd"));
                    h.to_peer =
                        Some(EventFd::from_fd(fds.next().unwrap()).expect("to-peer eventfd"));
                    h.map = Some(map);
                } else {
                    assert_eq!(
                        (w.0, fds.len()),
                        (JSONBUS_ERR_PEER, 0),
                        "a bad hello (byte {hello}) was answered with {}",
                        name(w.0)
                    );
                }
            }
            Ok(None) => panic!("the hub did not answer a hello within 2 s"),
            Err(e) => {
                // The hub may just close the connection on a hello longer than it reads.
                assert!(!valid, "the hub closed the connection on a valid hello: {e}");
            }
        }
    }
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        good_publish(s, run);
        let op = input.u8();
        let (a, b) = (input.u8(), input.u8());
        match op % 14 {
            0 => poke(&h, input, a, b),
            1 => {
                let topic = TOPICS[a as usize % TOPICS.len()];
                let json = PAYLOADS[b as usize % PAYLOADS.len()];
                let c = input.u8();
                let parent = match c >> 4 & 3 {
                    0 | 1 => 0,
                    2 => h.tokens.last().copied().unwrap_or(1),
                    _ => u64::from(input.u16()),
                };
                let reply: &[u8] = match c >> 6 {
                    0 | 1 => b"",
                    2 => b"_INBOX.h.1",
                    _ => b"a..b",
                };
                if c & 1 == 0 && !h.wait_credit() {
                    continue;
                }
                if h.record(&publish_record(parent, topic, reply, json)) {
                    h.used += 1;
                }
            }
            2 => {
                let token = match a % 4 {
                    0 | 1 if !h.tokens.is_empty() => {
                        let t = h.tokens.remove(b as usize % h.tokens.len());
                        h.acked.push(t);
                        t
                    }
                    2 if !h.acked.is_empty() => h.acked[b as usize % h.acked.len()],
                    _ => u64::from(b) | u64::from(a) << 8,
                };
                h.record(&token_record(ACK, token));
            }
            3 => {
                h.record(&token_record(FLUSH, u64::from(a) << 8 | u64::from(b)));
            }
            4 => {
                let pattern = PATTERNS[a as usize % PATTERNS.len()];
                let group = GROUPS[(a >> 4) as usize % GROUPS.len()];
                let id = match h.ids.is_empty() || b & 0x80 == 0 {
                    true => 1 + (b & 0x7f) as i64 + h.ids.len() as i64 * 128,
                    false => h.ids[b as usize % h.ids.len()],
                };
                h.requests += 1;
                if h.record(&subscribe_record(h.requests, id, pattern, group)) {
                    h.ids.push(id);
                }
            }
            5 => {
                let id = match h.ids.is_empty() || a & 1 != 0 {
                    true => i64::from(b) - 3,
                    false => h.ids.remove(b as usize % h.ids.len()),
                };
                let mut body = vec![UNSUBSCRIBE];
                body.extend_from_slice(&(id as u64).to_le_bytes());
                h.record(&body);
            }
            6 => malformed(&mut h, input, a, b),
            7 => {
                let Some(map) = &h.map else { continue };
                let (at, mine_now) = match a % 4 {
                    0 => (UP_CONTROL + TAIL, h.up_tail),
                    1 => (UP_CONTROL + HEAD, h.up_tail),
                    2 => (DOWN_CONTROL + HEAD, h.down_head),
                    _ => (DOWN_CONTROL + TAIL, h.down_head),
                };
                let v = match b % 4 {
                    0 => mine_now.wrapping_add(u64::from(input.u8() % 64)),
                    1 => mine_now.wrapping_sub(u64::from(input.u8() % 64)),
                    2 => u64::from(input.u16()) << (input.u8() % 48),
                    _ => u64::MAX - u64::from(input.u8()),
                };
                map.atomic_u64(at).store(v, Release);
                if a % 4 == 0 {
                    h.signal_hub();
                }
            }
            8 => {
                for _ in 0..1 + b % 4 {
                    if a & 1 == 0 {
                        h.signal_hub();
                    }
                    if a & 2 != 0 {
                        if let Some(e) = &h.to_peer {
                            e.signal();
                        }
                    }
                }
            }
            9 => {
                let n = 1 + a as usize % 64;
                let bytes: Vec<u8> = (0..n).map(|_| input.u8()).collect();
                let null = dev_null();
                let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
                if b & 1 != 0 {
                    fds.push(mine.fd());
                }
                if b & 2 != 0 {
                    if let Some(m) = &h.map {
                        fds.push(m.fd());
                    }
                }
                if b & 4 != 0 {
                    fds.push(null.as_fd());
                }
                let _ = h.sock.send(&bytes, &fds, 10);
            }
            10 => std::thread::sleep(Duration::from_micros(u64::from(b) * 8)),
            11 => {
                h.read_down();
                if a & 1 != 0 {
                    for t in std::mem::take(&mut h.tokens) {
                        if h.record(&token_record(ACK, t)) {
                            h.acked.push(t);
                        }
                    }
                }
            }
            12 => {
                let n = 32768 + (usize::from(a) << 8 | usize::from(b)) % (MAX_MESSAGE - 32768 - 2);
                let mut json = vec![b'a'; n];
                json[0] = b'"';
                json[n - 1] = b'"';
                if a & 1 == 0 && !h.wait_credit() {
                    continue;
                }
                if h.record(&publish_record(0, b"h.big", b"", &json)) {
                    h.used += 1;
                }
            }
            _ => {
                if let Some(m) = &h.map {
                    m.atomic_u32(WANTS_CREDIT_AT).store(u32::from(a & 1), SeqCst);
                    if a & 2 != 0 {
                        h.signal_hub();
                    }
                }
            }
        }
    }
    if std::env::var_os("HOSTILE_TRACE").is_some() {
        // Why the hub dropped it, if it did (a refusal on the socket before the hang-up).
        let mut buf = vec![0u8; 4096];
        std::thread::sleep(Duration::from_millis(2));
        while let Ok(Some((n, _))) = h.sock.recv(&mut buf, 0) {
            if n >= 46 && buf[..8] == *MAGIC {
                let len = u16::from_le_bytes([buf[44], buf[45]]) as usize;
                eprintln!("dropped: {}", String::from_utf8_lossy(&buf[46..(46 + len).min(n)]));
            }
        }
    }
    // Close the socket, unmap, close the eventfds.
    let welcomed = match hello % 16 {
        15 => None,
        _ => Some(h.map.is_some()),
    };
    drop(h);
    welcomed
}

/// Writes input bytes somewhere in the mapping.
fn poke(h: &Hostile, input: &mut Bytes<'_>, a: u8, b: u8) {
    let Some(map) = &h.map else { return };
    let n = 1 + (b % 16) as usize;
    let bytes: Vec<u8> = (0..n).map(|_| input.u8()).collect();
    let off = input.u16() as usize;
    let (base, len) = match a % 8 {
        0 => (0, HEADER),
        1 => (GRANTED_AT, 64),
        2 => (UP_CONTROL, 256),
        3 => (DOWN_CONTROL, 256),
        4 => (UP_DATA, RING),
        5 => (DOWN_DATA, RING),
        6 => (WANTS_CREDIT_AT, 64),
        _ => (0, MAP_LEN),
    };
    let at = (base + off % len).min(MAP_LEN - n);
    map.write(at, &bytes);
    if a & 0x80 != 0 {
        h.signal_hub();
    }
}

/// A record the protocol forbids, or framing that breaks the ring.
fn malformed(h: &mut Hostile, input: &mut Bytes<'_>, a: u8, b: u8) {
    let Some(map) = &h.map else { return };
    let valid = publish_record(0, b"h.m", b"", b"[1]");
    match a % 12 {
        0 => {
            let n = 1 + b as usize % 48;
            let body: Vec<u8> = (0..n).map(|_| input.u8()).collect();
            h.record(&body);
        }
        1 => {
            let cut = 1 + b as usize % (valid.len() - 1);
            h.record(&valid[..valid.len() - cut]);
        }
        2 => {
            let mut body = valid.clone();
            body.extend((0..1 + b % 8).map(|_| input.u8()));
            h.record(&body);
        }
        3 => {
            let mut body = token_record(ACK, 1);
            body[0] = [0, 6, 15, 16, 17, 255][b as usize % 6];
            h.record(&body);
        }
        4 => {
            // Invalid UTF-8 in a topic or a pattern, with the lengths right.
            let body = match b & 1 {
                0 => publish_record(0, b"h.\xc3(", b"", b"1"),
                _ => subscribe_record(99, 77, b"h.\xff", b""),
            };
            h.record(&body);
        }
        5 => {
            // A length word beyond the fragment limit, or beyond what is written.
            let word: u32 = match b % 4 {
                0 => MAX_FRAGMENT as u32 + 1 + u32::from(input.u8()),
                1 => 0x7fff_ffff,
                2 => u32::MAX,
                _ => 200,
            };
            Hostile::put(map, UP_DATA, h.up_tail, &word.to_le_bytes());
            h.up_tail += 16;
            h.publish_tail(map);
        }
        6 => {
            h.fragment(MORE, &[]);
        }
        7 => {
            // MORE on a message that is never finished (or finished by an ack record).
            h.fragment(valid.len() as u32 | MORE, &valid);
            if b & 1 != 0 {
                h.record(&token_record(ACK, 1));
            }
        }
        8 => {
            // Fragments adding up to more than max_message_bytes + 1024.
            let chunk = vec![b'a'; MAX_FRAGMENT];
            for _ in 0..2 {
                if !h.fragment(MAX_FRAGMENT as u32 | MORE, &chunk) {
                    return;
                }
            }
        }
        9 => {
            // A publish with lengths that do not add up.
            let mut body = valid.clone();
            let at = 9 + 2 * (b as usize % 3);
            body[at] = body[at].wrapping_add(1 + input.u8() % 8);
            h.record(&body);
        }
        10 => {
            // A publish that its own process should have refused: bad topic, reply or JSON.
            let topic = [b"a..b" as &[u8], b">", b"h", b"x"][b as usize % 4];
            let json = [b"{" as &[u8], b"[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]", b"\xff", b"1"][(b >> 2) as usize % 4];
            let reply = [b"" as &[u8], b"a.*", b"", b"_INBOX.>"][(b >> 4) as usize % 4];
            h.record(&publish_record(0, topic, reply, json));
        }
        _ => {
            // A record written but the tail moved past it by a misaligned amount.
            Hostile::put(map, UP_DATA, h.up_tail, &(valid.len() as u32).to_le_bytes());
            Hostile::put(map, UP_DATA, h.up_tail + 4, &valid);
            h.up_tail += padded(valid.len()) + 1 + u64::from(b % 7);
            h.publish_tail(map);
        }
    }
}

/// The good handle publishes the next `{"n":k}`.
fn good_publish(s: &Setup, run: &mut Run) -> i32 {
    run.k += 1;
    let k = run.k;
    let topic = CString::new(format!("good.{}", k % 8)).unwrap();
    let json = format!("{{\"n\":{k}}}");
    let rc = jsonbus_publish(s.good, topic.as_ptr(), json.as_ptr().cast(), json.len());
    check_last(rc, "good publish");
    assert!(
        rc == JSONBUS_OK || rc == JSONBUS_ERR_FULL,
        "the good handle's publish returned {} ({})",
        name(rc),
        last_error()
    );
    if rc == JSONBUS_OK {
        EXPECTED
            .lock()
            .unwrap()
            .push((topic.into_bytes(), json.into_bytes()));
    }
    rc
}

static EXPECTED: Mutex<Vec<(Vec<u8>, Vec<u8>)>> = Mutex::new(Vec::new());

fn count_fds() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:jsonbus"))
        .count();
    (fds, maps)
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let mut run = s.run.lock().unwrap_or_else(|p| p.into_inner());
    let mut input = Bytes(data);
    // The counts before this input (a peer of the last one may have been counted late).
    let st = stats(s.hub);
    let (gone, dropped) = (stat(&st, "peers_gone"), stat(&st, "peers_dropped"));
    assert!(
        gone >= run.gone && dropped >= run.dropped,
        "peers_gone / peers_dropped went down: {st}"
    );
    (run.gone, run.dropped) = (gone, dropped);
    let welcomed = hostile(s, &mut input, &mut run);

    // The hostile peer is gone: within 200 ms the hub has let it go (and counted it once in
    // peers_gone or peers_dropped if it had been welcomed).
    let start = Instant::now();
    let (lo, hi) = match welcomed {
        Some(w) => (w as u64, w as u64),
        None => (0, 1),
    };
    let (lo, hi) = (run.gone + run.dropped + lo, run.gone + run.dropped + hi);
    let st = loop {
        let st = stats(s.hub);
        let (gone, dropped) = (stat(&st, "peers_gone"), stat(&st, "peers_dropped"));
        assert!(
            gone >= run.gone && dropped >= run.dropped && gone + dropped <= hi,
            "peers_gone / peers_dropped went down, or count the hostile peer twice (welcomed: {welcomed:?}, before {:?}): {st}",
            (run.gone, run.dropped)
        );
        if stat(&st, "peers") == 1 && stat(&st, "subscriptions") == 2 && gone + dropped >= lo {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "200 ms after the hostile peer (welcomed: {welcomed:?}) closed its socket the hub still says {st}"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let (gone, dropped) = (stat(&st, "peers_gone"), stat(&st, "peers_dropped"));
    (run.gone, run.dropped) = (gone, dropped);

    // The good handle goes on: 20 more publishes, then a flush within 5 s.
    let until = Instant::now() + Duration::from_secs(5);
    for _ in 0..20 {
        while good_publish(s, &mut run) != JSONBUS_OK {
            assert!(
                Instant::now() < until,
                "the good handle could not publish for 5 s after the hostile peer left: {}",
                last_error()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let start = Instant::now();
    let rc = jsonbus_flush(s.good, 5000);
    check_last(rc, "good flush");
    assert_eq!(
        rc,
        JSONBUS_OK,
        "jsonbus_flush(good, 5000) after {:?}: {}; hub {}",
        start.elapsed(),
        last_error(),
        stats(s.hub)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    let want = std::mem::take(&mut *EXPECTED.lock().unwrap());
    for (who, r) in [("good handle", s.at_good), ("hub", s.at_hub)] {
        let got = std::mem::take(&mut r.lock().unwrap().got);
        let got: Vec<(Vec<u8>, Vec<u8>)> = got.into_iter().map(|g| (g.1, g.2)).collect();
        if got != want {
            let show = |v: &[(Vec<u8>, Vec<u8>)]| {
                v.iter()
                    .map(|m| format!("{} {}", String::from_utf8_lossy(&m.0), String::from_utf8_lossy(&m.1)))
                    .collect::<Vec<_>>()
            };
            panic!(
                "the {who}'s good.> subscription received {:?}; the good handle published {:?}",
                show(&got),
                show(&want)
            );
        }
    }
    let st = stats(s.hub);
    if std::env::var_os("HOSTILE_TRACE").is_some() {
        eprintln!("welcomed {welcomed:?}: hub {st}");
    }
    assert_eq!(stat(&st, "queued"), 0, "hub after the flush: {st}");
    let gst = stats(s.good);
    if std::env::var_os("HOSTILE_TRACE").is_some() {
        eprintln!("good handle {gst}");
    }
    assert_eq!(stat(&gst, "queued"), 0, "good handle after the flush: {gst}");
    assert_eq!(stat(&gst, "published"), run.k - rejected(&gst, "full"), "good handle: {gst}");

    run.inputs += 1;
    if run.inputs % 1000 == 0 {
        let mut now = count_fds();
        match run.first_fds {
            None => run.first_fds = Some(now),
            Some(first) => {
                // A hostile peer the hub has let go is still read for a moment (at least 50 ms,
                // at most 5 s: what it left in its ring): its descriptors and mapping go then.
                let within = |n: (usize, usize)| n.0 <= first.0 + 8 && n.1 <= first.1 + 2;
                let until = std::time::Instant::now() + std::time::Duration::from_secs(6);
                while !within(now) && std::time::Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    now = count_fds();
                }
                assert!(
                    within(now),
                    "descriptors / jsonbus mappings grew from {first:?} to {now:?} over {} inputs",
                    run.inputs
                );
            }
        }
    }
});
