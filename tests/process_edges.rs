//! Edges of a bus shared across processes found by review (hub and attached handles in one
//! test process; a hand-made raw peer where the protocol itself is the point). Each failed
//! before its fix; its comment says what was wrong then.
#![cfg(target_os = "linux")]
use jsonbus::options::{AttachOptions, ServeOptions};
use jsonbus::process::{name, peer};
use jsonbus::sys::ipc::{EventFd, SeqPacket};
use jsonbus::sys::shm::SharedMap;
use jsonbus::{Bus, Consumer, Options, Status, SubscribeOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn private_dir() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("jsonbus-edges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    });
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn opts(json: &str) -> Options {
    // Options has a parse; fall back to default if the API differs.
    Options::parse(Some(json)).unwrap()
}

/// A hand-made attached process: hello, the three descriptors, the mapping.
struct RawPeer {
    _socket: SeqPacket,
    map: SharedMap,
    to_hub: EventFd,
    ring: usize,
    tail: u64,
}

const UP_HEAD: usize = 1024;
const UP_TAIL: usize = 1024 + 64;

impl RawPeer {
    fn attach(bus_name: &str, ring: usize) -> RawPeer {
        let (sock, _) = name::paths(bus_name).unwrap();
        let s = SeqPacket::connect(&sock).unwrap();
        let mut hello = b"JSONBUS\0".to_vec();
        hello.extend_from_slice(&1u32.to_le_bytes());
        s.send(&hello, &[], 1000).unwrap();
        let mut buf = vec![0u8; 4096];
        let (_n, fds) = s.recv(&mut buf, 2000).unwrap().unwrap();
        assert_eq!(fds.len(), 3, "welcome with descriptors");
        let mut fds = fds.into_iter();
        let memfd = fds.next().unwrap();
        let to_hub = EventFd::from_fd(fds.next().unwrap()).unwrap();
        let map = SharedMap::from_fd(memfd, 4096 + 2 * ring).unwrap();
        RawPeer {
            _socket: s,
            map,
            to_hub,
            ring,
            tail: 0,
        }
    }

    /// Writes one record (a single fragment), waiting for room.
    fn record(&mut self, body: &[u8]) {
        assert!(
            self.try_record(body, Duration::from_secs(10)),
            "no room for 10 s"
        );
    }

    /// Writes one record if room comes within `wait`; whether it did.
    fn try_record(&mut self, body: &[u8], wait: Duration) -> bool {
        let padded = ((4 + body.len() as u64) + 7) & !7;
        let until = Instant::now() + wait;
        loop {
            let head = self.map.atomic_u64(UP_HEAD).load(SeqCst);
            if self.ring as u64 - (self.tail - head) >= padded {
                break;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
        let mut rec = (body.len() as u32).to_le_bytes().to_vec();
        rec.extend_from_slice(body);
        for (i, b) in rec.iter().enumerate() {
            let at = ((self.tail as usize) + i) & (self.ring - 1);
            self.map.write(4096 + at, &[*b]);
        }
        self.tail += padded;
        self.map.atomic_u64(UP_TAIL).store(self.tail, SeqCst);
        true
    }
}

/// (1) A peer that sends Flush records and never reads its down ring: the hub stops reading
/// its ring once the answers waiting for room pass a bound, instead of growing without one.
#[test]
fn hub_memory_stays_bounded_for_answers_nobody_reads() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve(
        "rv-grow",
        ServeOptions::parse(Some(r#"{"peer_ring_bytes":65536}"#)).unwrap(),
    )
    .unwrap();
    let mut p = RawPeer::attach("rv-grow", 65536);
    let mut body = vec![3u8];
    body.extend_from_slice(&0u64.to_le_bytes());
    let before = rss_kb();
    let (mut written, mut token) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        token += 1;
        body[1..9].copy_from_slice(&token.to_le_bytes());
        if !p.try_record(&body, Duration::from_millis(20)) {
            break; // the hub stopped reading: back-pressure
        }
        written += 1;
        if written % 4096 == 0 {
            p.to_hub.signal();
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let grown = rss_kb().saturating_sub(before);
    eprintln!(
        "{written} flush records written in {:?}; the hub grew by {grown} kB",
        start.elapsed()
    );
    assert!(
        written < 200_000,
        "the hub kept reading {written} flush records whose answers nobody reads"
    );
    assert!(
        grown < 20_000,
        "the hub grew by {grown} kB for answers nobody reads"
    );
    drop(p);
    hub.close(Some(Duration::from_secs(5))).ok();
}

/// (2) A peer let go while one of its publishes is parked (a "block" subscription at the hub
/// is at its limit) leaves the hub's `credit` count one too high for good: from then on a
/// peer's flush is answered while one message is still held.
#[test]
fn a_parked_publish_keeps_the_credit_count_right_and_flush_waits() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rv-park", ServeOptions::default()).unwrap();
    // S: block, limit 1, its callback held until `open`.
    let (open_tx, open_rx) = std::sync::mpsc::channel::<()>();
    let open_rx = Mutex::new(open_rx);
    let s_opts = SubscribeOptions::parse(Some(r#"{"queue_limit":1,"on_full":"block"}"#)).unwrap();
    hub.subscribe_with(
        "s",
        s_opts,
        Consumer::Callback(
            Box::new(move |_| {
                let _ = open_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20));
                0
            }),
            None,
        ),
    )
    .unwrap();
    let a = peer::attach("rv-park", AttachOptions::parse(None).unwrap()).unwrap();
    for i in 0..3 {
        a.publish("s", format!("{i}").as_bytes()).unwrap(); // 1: running, 2: queued, 3: parked
    }
    std::thread::sleep(Duration::from_millis(200));
    a.close(None).unwrap(); // the hub keeps the parked record for DRAIN_TIMEOUT (5 s), then lets A go
    std::thread::sleep(Duration::from_millis(5600));
    eprintln!("peers after A is let go: {:?}", hub.stats().peers);
    for _ in 0..3 {
        let _ = open_tx.send(());
    }
    hub.flush(Some(Duration::from_secs(5))).unwrap();
    eprintln!("hub stats queued with nothing held: {}", hub.stats().queued);

    // T: a slow subscription; B publishes one message to it and flushes.
    let (t_tx, t_rx) = std::sync::mpsc::channel::<()>();
    let t_rx = Mutex::new(t_rx);
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    hub.subscribe(
        "t",
        Box::new(move |_| {
            let _ = t_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
            d.store(true, SeqCst);
            0
        }),
    )
    .unwrap();
    let b = peer::attach("rv-park", AttachOptions::parse(None).unwrap()).unwrap();
    b.publish("t", b"1").unwrap();
    let t0 = Instant::now();
    let r = b.flush(Some(Duration::from_secs(2)));
    let callback_done = done.load(SeqCst);
    eprintln!(
        "B's flush returned {:?} after {:?}; T's callback done: {callback_done}; hub queued {}",
        r.as_ref().map_err(|e| e.status),
        t0.elapsed(),
        hub.stats().queued
    );
    let _ = t_tx.send(());
    assert!(
        r.is_err() || callback_done,
        "flush returned OK although the message it waited for is still in T's callback"
    );
    b.close(None).ok();
    hub.close(Some(Duration::from_secs(5))).ok();
}

/// (2)/(3) request_async from a callback of an attached handle whose "block" subscription is at
/// its limit: the callback waits for Down::Routed (no timeout), which sits in the ring behind a
/// delivery the link thread cannot queue until that callback returns.
#[test]
fn request_async_from_a_callback_behind_a_block_subscription_returns() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rv-req", ServeOptions::default()).unwrap();
    let h2 = hub.clone();
    hub.subscribe(
        "svc",
        Box::new(move |d| {
            let _ = h2.reply(d.message.reply_to(), b"\"ok\"");
            0
        }),
    )
    .unwrap();
    let a = peer::attach("rv-req", AttachOptions::parse(None).unwrap()).unwrap();
    let a2 = a.clone();
    let started = Arc::new(AtomicU64::new(0));
    let returned = Arc::new(AtomicU64::new(0));
    let (s2, r2) = (started.clone(), returned.clone());
    let o = SubscribeOptions::parse(Some(r#"{"queue_limit":1,"on_full":"block"}"#)).unwrap();
    a.subscribe_with(
        "work",
        o,
        Consumer::Callback(
            Box::new(move |_| {
                s2.fetch_add(1, SeqCst);
                let res =
                    a2.request_async("svc", b"1", Some(Duration::from_secs(1)), Box::new(|_| {}));
                r2.fetch_add(1, SeqCst);
                let _ = res;
                0
            }),
            None,
        ),
    )
    .unwrap();
    for i in 0..3 {
        hub.publish("work", format!("{i}").as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    let (s, r) = (started.load(SeqCst), returned.load(SeqCst));
    eprintln!("after 3 s: callbacks started {s}, request_async calls returned {r}");
    let stuck = r < 3;
    hub.close(Some(Duration::from_secs(2))).ok(); // breaks the deadlock (the peer is let go)
    a.close(Some(Duration::from_secs(2))).ok();
    assert!(
        !stuck,
        "request_async from a callback never returned: the peer is deadlocked"
    );
}

/// (4)/(6) publish_timeout_ms and flush's timeout are not honoured once the ring to the hub is
/// full (Link::write's second loop waits with no limit).
#[test]
fn publish_timeout_holds_when_the_ring_is_full() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve(
        "rv-full",
        ServeOptions::parse(Some(r#"{"peer_ring_bytes":65536}"#)).unwrap(),
    )
    .unwrap();
    // A pull subscription nobody pulls, "block" at 1: the hub parks the second publish.
    let pull = hub
        .subscribe_with(
            "p",
            SubscribeOptions::parse(Some(r#"{"queue_limit":1,"on_full":"block"}"#)).unwrap(),
            Consumer::Pull,
        )
        .unwrap();
    let a = peer::attach(
        "rv-full",
        AttachOptions::parse(Some(r#"{"publish_timeout_ms":200}"#)).unwrap(),
    )
    .unwrap();
    let big = format!("\"{}\"", "x".repeat(20_000));
    let finished = Arc::new(AtomicU64::new(0));
    let f = finished.clone();
    let a2 = a.clone();
    let t = std::thread::spawn(move || {
        let mut results = Vec::new();
        for _ in 0..8 {
            let t0 = Instant::now();
            let r = a2.publish("p", big.as_bytes()).map_err(|e| e.status);
            results.push((r, t0.elapsed()));
            f.fetch_add(1, SeqCst);
        }
        results
    });
    std::thread::sleep(Duration::from_secs(3));
    let n = finished.load(SeqCst);
    eprintln!("after 3 s, {n} of 8 publishes (publish_timeout_ms 200) have returned");
    // Unblock: pull everything.
    let mut pulled = Vec::new();
    for _ in 0..20 {
        match hub.next(pull, Some(Duration::from_millis(300))) {
            Ok(m) => pulled.push(m),
            Err(_) => break,
        }
        pulled.clear();
    }
    let results = t.join().unwrap();
    eprintln!("{results:?}");
    a.close(Some(Duration::from_secs(2))).ok();
    hub.close(Some(Duration::from_secs(2))).ok();
    assert!(
        n == 8,
        "a publish with publish_timeout_ms 200 was still waiting after 3 s"
    );
}

/// (6) A hub with a small queue_capacity: idle attached processes' credit takes all of it and
/// the hub's own publish fails FULL with nothing held.
#[test]
fn idle_peers_credit_does_not_starve_the_hub() {
    private_dir();
    let hub = Bus::new(opts(r#"{"queue_capacity":2,"publish_timeout_ms":300}"#)).unwrap();
    hub.serve("rv-credit", ServeOptions::default()).unwrap();
    let a = peer::attach("rv-credit", AttachOptions::parse(None).unwrap()).unwrap();
    let b = peer::attach("rv-credit", AttachOptions::parse(None).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let r = hub.publish("x", b"1");
    eprintln!(
        "hub publish with 2 idle peers: {:?}; stats queued {}",
        r.as_ref().map_err(|e| e.status),
        hub.stats().queued
    );
    a.close(None).ok();
    b.close(None).ok();
    hub.close(None).ok();
    assert!(
        r.is_ok() || r.unwrap_err().status != Status::Full,
        "the hub's publish failed FULL with nothing held"
    );
}

/// (1) A peer that reads its deliveries but never acknowledges them takes the hub's whole
/// queue_capacity, and peer_stall_timeout_ms never drops it.
#[test]
fn a_peer_that_never_finishes_a_delivery_is_dropped_after_the_stall_timeout() {
    private_dir();
    let hub = Bus::new(opts(r#"{"queue_capacity":1000,"publish_timeout_ms":200}"#)).unwrap();
    hub.serve(
        "rv-noack",
        ServeOptions::parse(Some(
            r#"{"peer_ring_bytes":65536,"peer_stall_timeout_ms":100}"#,
        ))
        .unwrap(),
    )
    .unwrap();
    let mut p = RawPeer::attach("rv-noack", 65536);
    let mut sub = vec![4u8];
    sub.extend_from_slice(&1u64.to_le_bytes()); // request
    sub.extend_from_slice(&1u64.to_le_bytes()); // id
    sub.extend_from_slice(&1u16.to_le_bytes());
    sub.extend_from_slice(&0u16.to_le_bytes());
    sub.extend_from_slice(b"x");
    p.record(&sub);
    p.to_hub.signal();
    std::thread::sleep(Duration::from_millis(100));
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    // "Reads" the down ring: moves its index to the writer's, acknowledging nothing.
    let map = p.map.fd().try_clone_to_owned().unwrap();
    let reader = std::thread::spawn(move || {
        let m = SharedMap::from_fd(map, 4096 + 2 * 65536).unwrap();
        while !st.load(SeqCst) {
            let tail = m.atomic_u64(1280 + 64).load(SeqCst);
            m.atomic_u64(1280).store(tail, SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let mut ok = 0;
    let mut first_err = None;
    for i in 0..2000 {
        match hub.publish("x", format!("{i}").as_bytes()) {
            Ok(_) => ok += 1,
            Err(e) => {
                first_err = Some(e.status);
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let stats = hub.stats();
    eprintln!("hub publishes accepted: {ok}, then {first_err:?}; peers [attached, gone, dropped] {:?}; queued {}", stats.peers, stats.queued);
    stop.store(true, SeqCst);
    reader.join().unwrap();
    let dropped = stats.peers.map_or(0, |p| p[2]);
    drop(p);
    hub.close(Some(Duration::from_secs(2))).ok();
    assert!(
        first_err.is_none() || dropped == 1,
        "the hub is full of unacknowledged deliveries and the peer was not dropped"
    );
}

/// (2)/(6) The link thread waiting for local capacity does not look at the hub's let-go (nor
/// at its death): after the hub closed, publishes on the attached handle return OK and are lost.
#[test]
fn publishes_after_the_hub_closed_are_disconnected_while_the_link_waits_for_local_capacity() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rv-gone", ServeOptions::default()).unwrap();
    let a = peer::attach(
        "rv-gone",
        AttachOptions::parse(Some(r#"{"queue_capacity":2}"#)).unwrap(),
    )
    .unwrap();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let gate_rx = Mutex::new(gate_rx);
    a.subscribe(
        "x",
        Box::new(move |_| {
            let _ = gate_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            0
        }),
    )
    .unwrap();
    for i in 0..5 {
        hub.publish("x", format!("{i}").as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    hub.close(Some(Duration::from_millis(200))).ok();
    std::thread::sleep(Duration::from_millis(300));
    let mut results = Vec::new();
    for _ in 0..3 {
        results.push(a.publish("y", b"1").map_err(|e| e.status));
    }
    let f = a
        .flush(Some(Duration::from_millis(300)))
        .map_err(|e| e.status);
    eprintln!("after the hub closed: publishes {results:?}, flush {f:?}");
    for _ in 0..10 {
        let _ = gate_tx.send(());
    }
    a.close(Some(Duration::from_secs(2))).ok();
    assert!(
        results.iter().all(|r| *r == Err(Status::Disconnected)),
        "publishes after the hub closed returned {results:?}"
    );
}

/// (2) What a request_async reply callback publishes on an attached handle is not tied to the
/// reply's flush epoch at the hub (PARENT_TOKEN is 0 in Job::Call), so flush does not wait for it.
#[test]
fn flush_waits_for_what_a_reply_callback_publishes_on_an_attached_handle() {
    private_dir();
    for attached in [false, true] {
        let hub = Bus::new(Options::default()).unwrap();
        let nm = format!("rv-reply-{attached}");
        hub.serve(&nm, ServeOptions::default()).unwrap();
        let h2 = hub.clone();
        hub.subscribe(
            "svc",
            Box::new(move |d| {
                let _ = h2.reply(d.message.reply_to(), b"1");
                0
            }),
        )
        .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let d2 = done.clone();
        hub.subscribe(
            "out",
            Box::new(move |_| {
                std::thread::sleep(Duration::from_millis(500));
                d2.store(true, SeqCst);
                0
            }),
        )
        .unwrap();
        let a = if attached {
            peer::attach(&nm, AttachOptions::parse(None).unwrap()).unwrap()
        } else {
            hub.clone()
        };
        let a2 = a.clone();
        a.request_async(
            "svc",
            b"1",
            Some(Duration::from_secs(5)),
            Box::new(move |r| {
                if r.is_ok() {
                    let _ = a2.publish("out", b"1");
                }
            }),
        )
        .unwrap();
        let r = a.flush(Some(Duration::from_secs(5)));
        let seen = done.load(SeqCst);
        eprintln!("attached {attached}: flush {:?}; the reply callback's publish delivered before flush returned: {seen}", r.map_err(|e| e.status));
        if attached {
            a.close(None).ok();
        }
        std::thread::sleep(Duration::from_millis(600));
        hub.close(None).ok();
        if attached {
            assert!(seen, "flush on the attached handle returned before the reply callback's publish was delivered");
        }
    }
}

/// (2)/(3) subscribe from a callback of an attached handle while its link waits for a "block"
/// subscription: TIMEOUT after 10 s, yet the hub registered it; as a group member the phantom
/// then takes its share of the group's messages, which the peer drops silently.
#[test]
fn a_timed_out_subscribe_leaves_no_phantom_group_member_at_the_hub() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rv-phantom", ServeOptions::default()).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g2 = got.clone();
    hub.subscribe_with(
        "g",
        SubscribeOptions::parse(Some(r#"{"group":"w"}"#)).unwrap(),
        Consumer::Callback(
            Box::new(move |_| {
                g2.fetch_add(1, SeqCst);
                0
            }),
            None,
        ),
    )
    .unwrap();
    let a = peer::attach("rv-phantom", AttachOptions::parse(None).unwrap()).unwrap();
    let a2 = a.clone();
    let peer_got = Arc::new(AtomicU64::new(0));
    let pg = peer_got.clone();
    let result = Arc::new(Mutex::new(None));
    let r2 = result.clone();
    let once = Arc::new(AtomicBool::new(false));
    let o = SubscribeOptions::parse(Some(r#"{"queue_limit":1,"on_full":"block"}"#)).unwrap();
    a.subscribe_with(
        "work",
        o,
        Consumer::Callback(
            Box::new(move |_| {
                if !once.swap(true, SeqCst) {
                    let pg = pg.clone();
                    let r = a2.subscribe_with(
                        "g",
                        SubscribeOptions::parse(Some(r#"{"group":"w"}"#)).unwrap(),
                        Consumer::Callback(
                            Box::new(move |_| {
                                pg.fetch_add(1, SeqCst);
                                0
                            }),
                            None,
                        ),
                    );
                    *r2.lock().unwrap() = Some(r.map_err(|e| e.status));
                }
                0
            }),
            None,
        ),
    )
    .unwrap();
    for i in 0..3 {
        hub.publish("work", format!("{i}").as_bytes()).unwrap();
    }
    let t0 = Instant::now();
    while result.lock().unwrap().is_none() && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = hub.stats().subscriptions;
    for i in 0..100 {
        hub.publish("g", format!("{i}").as_bytes()).unwrap();
    }
    hub.flush(Some(Duration::from_secs(5))).unwrap();
    eprintln!("subscribe from the callback: {:?} after {:?}; hub subscriptions {before}; group messages: hub member {}, peer {}, of 100 (hub dropped {})",
        result.lock().unwrap(), t0.elapsed(), got.load(SeqCst), peer_got.load(SeqCst), hub.stats().dropped);
    let total = got.load(SeqCst) + peer_got.load(SeqCst);
    a.close(None).ok();
    hub.close(None).ok();
    assert_eq!(total, 100, "group messages lost");
}

/// (6) jsonbus_close(hub, 5000) drops what its peers have not yet taken at once (they are
/// disconnected first) and still returns OK.
#[test]
fn a_hub_closing_with_time_left_lets_peers_finish_its_deliveries() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rv-close", ServeOptions::default()).unwrap();
    let a = peer::attach("rv-close", AttachOptions::parse(None).unwrap()).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    a.subscribe(
        "x",
        Box::new(move |_| {
            std::thread::sleep(Duration::from_millis(50));
            g.fetch_add(1, SeqCst);
            0
        }),
    )
    .unwrap();
    for i in 0..20 {
        hub.publish("x", format!("{i}").as_bytes()).unwrap();
    }
    let t0 = Instant::now();
    let r = hub
        .close(Some(Duration::from_secs(5)))
        .map_err(|e| e.status);
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    eprintln!(
        "hub close(5 s) -> {r:?} after {took:?}; the peer's callback ran {} of 20; hub dropped {}",
        got.load(SeqCst),
        hub.stats().dropped
    );
    a.close(None).ok();
    assert!(r.is_err() || got.load(SeqCst) == 20);
}

/// (2)/(6) When the hub goes, lost() ends a callback subscription as soon as its FIFO is empty,
/// but the dispatcher has already taken up to a batch out of it: those are dropped, not run.
#[test]
fn deliveries_already_received_still_run_when_the_hub_goes() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rv-lost", ServeOptions::default()).unwrap();
    let a = peer::attach("rv-lost", AttachOptions::parse(None).unwrap()).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let id = a
        .subscribe(
            "x",
            Box::new(move |_| {
                std::thread::sleep(Duration::from_millis(20));
                g.fetch_add(1, SeqCst);
                0
            }),
        )
        .unwrap();
    for i in 0..20 {
        hub.publish("x", format!("{i}").as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100)); // all 20 are in the peer's subscription now
    let before = a.subscription_stats(id).unwrap();
    hub.close(Some(Duration::from_secs(5))).ok();
    std::thread::sleep(Duration::from_millis(1500));
    let after = a.subscription_stats(id);
    eprintln!(
        "before the hub went: {before:?}\nafter: ran {} of 20; {after:?}",
        got.load(SeqCst)
    );
    a.close(None).ok();
    assert_eq!(
        got.load(SeqCst),
        20,
        "deliveries already received were dropped"
    );
}

/// When the hub went, lost() waited for each live subscription to be idle before it ended it
/// PEER_GONE; one whose callback was running then and returned JSONBUS_UNSUBSCRIBE stays
/// scheduled for good (its dispatcher completes its end), so the wait never finished and every
/// subscription after it never ended (found by the `sequence` fuzz target).
#[test]
fn a_subscription_that_unsubscribes_itself_as_the_hub_goes_does_not_hold_up_the_others() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rv-self-end", ServeOptions::default()).unwrap();
    let a = peer::attach(
        "rv-self-end",
        AttachOptions::parse(Some(r#"{"dispatcher_threads":1}"#)).unwrap(),
    )
    .unwrap();
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let running = Arc::new(AtomicBool::new(false));
    let (g, r) = (gate.clone(), running.clone());
    let quitter = a
        .subscribe(
            "x",
            Box::new(move |_| {
                r.store(true, SeqCst);
                let (open, cv) = &*g;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
                jsonbus::UNSUBSCRIBE
            }),
        )
        .unwrap();
    // Enough others that some come after the quitter in the link's walk, whatever its order.
    let others: Vec<i64> = (0..16)
        .map(|_| a.subscribe("y", Box::new(|_| 0)).unwrap())
        .collect();
    hub.publish("x", b"1").unwrap();
    let t0 = Instant::now();
    while !running.load(SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the callback never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Without waiting for the delivery in the callback, which waits for the gate.
    hub.close(Some(Duration::ZERO)).ok();
    // The link sees the hub go while the quitter's callback still runs.
    std::thread::sleep(Duration::from_millis(200));
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let ended = |id: i64| match a.subscription_stats(id) {
        Ok(s) => s.ended.is_some(),
        Err(e) => e.status == Status::NotFound,
    };
    let t0 = Instant::now();
    while !ended(quitter) || !others.iter().all(|&id| ended(id)) {
        let left = others.iter().filter(|&&id| !ended(id)).count();
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{left} of 16 subscriptions have not ended 3 s after their hub went"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    a.close(None).ok();
}

/// A process that went away held units of the hub's capacity as credit until its ring had been
/// read and a 50 ms grace had passed, but the hub's `peers` stopped counting it at once: right
/// after `peers` said 0, a hub with a small `queue_capacity` answered FULL (found by the
/// `sequence` fuzz target, queue_capacity 1). Now an exited process counts in `peers` until
/// its unused credit is back, and only one the hub dropped (which may still be finishing a
/// publish) gets the grace.
#[test]
fn when_peers_says_a_process_is_gone_its_credit_is_back() {
    private_dir();
    let hub = Bus::new(opts(r#"{"queue_capacity":1,"publish_timeout_ms":0}"#)).unwrap();
    hub.serve("rv-credit-back", ServeOptions::default())
        .unwrap();
    let peers = |b: &Bus| b.stats().peers.unwrap()[0];
    for round in 0..20 {
        let a = peer::attach(
            "rv-credit-back",
            AttachOptions::parse(Some(r#"{"connect_timeout_ms":2000}"#)).unwrap(),
        )
        .unwrap();
        // Publishing makes the hub give this process credit.
        for _ in 0..3 {
            a.publish("x", b"1").unwrap();
            a.flush(Some(Duration::from_secs(5))).unwrap();
        }
        a.close(None).unwrap();
        drop(a);
        let t0 = Instant::now();
        while peers(&hub) != 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "the hub still counts the process"
            );
            std::hint::spin_loop();
        }
        let r = hub.publish("y", b"2");
        assert!(
            r.is_ok(),
            "round {round}: publish right after peers said 0: {:?}",
            r.map_err(|e| e.message)
        );
        hub.flush(Some(Duration::from_secs(5))).unwrap();
    }
}
