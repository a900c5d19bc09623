//! A bus shared across processes, with hub and attached handle in one test process (the
//! multi-process tests are C programs under ctest: tests/c/test_process.c).
#![cfg(target_os = "linux")]

use jsonbus::options::{AttachOptions, ServeOptions};
use jsonbus::process::peer;
use jsonbus::{Bus, Consumer, Options, Status, SubscribeOptions};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn private_dir() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("jsonbus-rs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    });
}

type Seen = Arc<Mutex<Vec<(u64, String)>>>;

fn collect(bus: &Bus, pattern: &str) -> (i64, Seen) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let id = bus
        .subscribe(
            pattern,
            Box::new(move |d| {
                g.lock().unwrap().push((
                    d.message.seq,
                    String::from_utf8_lossy(d.message.json()).into(),
                ));
                0
            }),
        )
        .unwrap();
    (id, got)
}

#[test]
fn publish_both_ways_one_order_and_flush() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rs-one", ServeOptions::default()).unwrap();
    let a = peer::attach("rs-one", AttachOptions::parse(None).unwrap()).unwrap();
    let (_, at_hub) = collect(&hub, "t.>");
    let (_, at_peer) = collect(&a, "t.>");
    for i in 0..1000 {
        a.publish("t.a", format!("{i}").as_bytes()).unwrap();
        hub.publish("t.h", format!("{i}").as_bytes()).unwrap();
    }
    a.flush(Some(Duration::from_secs(10))).unwrap();
    hub.flush(Some(Duration::from_secs(10))).unwrap();
    let h = at_hub.lock().unwrap().clone();
    let p = at_peer.lock().unwrap().clone();
    assert_eq!(h.len(), 2000);
    assert_eq!(
        h, p,
        "the same messages in the same order in both processes' subscriptions"
    );
    assert!(h.windows(2).all(|w| w[0].0 < w[1].0));
    let stats = hub.stats();
    assert_eq!(stats.peers, Some([1, 0, 0]));
    assert_eq!(
        stats.subscriptions, 2,
        "the hub's own and the peer's (not its inbox)"
    );
    assert_eq!(stats.queued, 0);
    assert_eq!(a.stats().published, 1000);
    a.close(None).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(hub.stats().peers, Some([0, 1, 0]));
    hub.close(None).unwrap();
}

#[test]
fn flush_waits_for_a_callback_that_republishes_in_the_other_process() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rs-chain", ServeOptions::default()).unwrap();
    let a = peer::attach("rs-chain", AttachOptions::parse(None).unwrap()).unwrap();
    let a2 = a.clone();
    a.subscribe(
        "in",
        Box::new(move |d| {
            std::thread::sleep(Duration::from_micros(200));
            a2.publish("out", d.message.json()).unwrap();
            0
        }),
    )
    .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let d2 = done.clone();
    hub.subscribe(
        "out",
        Box::new(move |_| {
            std::thread::sleep(Duration::from_micros(100));
            d2.fetch_add(1, SeqCst);
            0
        }),
    )
    .unwrap();
    for i in 0..300 {
        hub.publish("in", format!("{i}").as_bytes()).unwrap();
    }
    hub.flush(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(
        done.load(SeqCst),
        300,
        "the hub's flush waited for the chain through the peer"
    );
    for i in 0..300 {
        hub.publish("in", format!("{i}").as_bytes()).unwrap();
    }
    a.flush(Some(Duration::from_secs(10))).unwrap();
    hub.flush(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(done.load(SeqCst), 600);
    drop(a);
    hub.close(None).unwrap();
}

#[test]
fn requests_across_and_no_responders() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rs-req", ServeOptions::default()).unwrap();
    let a = peer::attach("rs-req", AttachOptions::parse(None).unwrap()).unwrap();
    let h2 = hub.clone();
    hub.subscribe(
        "echo",
        Box::new(move |d| {
            let _ = h2.reply(d.message.reply_to(), d.message.json());
            0
        }),
    )
    .unwrap();
    for i in 0..50 {
        let text = format!("{i}");
        let r = a
            .request("echo", text.as_bytes(), Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(r.json(), text.as_bytes());
    }
    let e = a
        .request("nobody", b"1", Some(Duration::from_secs(5)))
        .unwrap_err();
    assert_eq!(e.status, Status::NoResponders, "{}", e.message);
    // As on a bus of one's own: NO_RESPONDERS from the call, and the callback never runs.
    let called = Arc::new(AtomicU64::new(0));
    let c = called.clone();
    let e = a
        .request_async(
            "nobody",
            b"1",
            Some(Duration::from_secs(5)),
            Box::new(move |_| {
                c.fetch_add(1, SeqCst);
            }),
        )
        .unwrap_err();
    assert_eq!(e.status, Status::NoResponders, "{}", e.message);
    let (tx, rx) = std::sync::mpsc::channel();
    a.request_async(
        "echo",
        b"[5]",
        Some(Duration::from_secs(5)),
        Box::new(move |r| {
            let _ = tx.send(r.map(|m| m.json().to_vec()));
        }),
    )
    .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap(),
        b"[5]"
    );
    assert_eq!(called.load(SeqCst), 0);
    a.close(None).unwrap();
    hub.close(None).unwrap();
}

#[test]
fn a_closing_hub_disconnects_its_peers_and_ends_their_subscriptions() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rs-gone", ServeOptions::default()).unwrap();
    let a = peer::attach("rs-gone", AttachOptions::parse(None).unwrap()).unwrap();
    let ended = Arc::new(Mutex::new(None));
    let e2 = ended.clone();
    let notice: jsonbus::subscription::end::EndNotice = Box::new(move |_, reason| {
        *e2.lock().unwrap() = Some(reason);
    });
    a.subscribe_with(
        "x",
        SubscribeOptions::default(),
        Consumer::Callback(Box::new(|_| 0), Some(notice)),
    )
    .unwrap();
    hub.close(None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let e = a.publish("x", b"1").unwrap_err();
    assert_eq!(e.status, Status::Disconnected, "{}", e.message);
    assert_eq!(*ended.lock().unwrap(), Some(jsonbus::EndReason::PeerGone));
    a.close(None).unwrap();
    let e = peer::attach(
        "rs-gone",
        AttachOptions::parse(Some(r#"{"connect_timeout_ms":0}"#)).unwrap(),
    )
    .err()
    .unwrap();
    assert_eq!(e.status, Status::NoBus);
}

#[test]
fn what_a_peer_published_before_it_went_is_delivered() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rs-rest", ServeOptions::default()).unwrap();
    let (_, got) = collect(&hub, "last.>");
    for round in 0..5 {
        let a = peer::attach("rs-rest", AttachOptions::parse(None).unwrap()).unwrap();
        for i in 0..5000 {
            a.publish("last.words", format!("{i}").as_bytes()).unwrap();
        }
        a.close(None).unwrap(); // no flush: the hub still has records to read
        let want = 5000 * (round + 1);
        for _ in 0..200 {
            if got.lock().unwrap().len() >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        hub.flush(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(got.lock().unwrap().len(), want, "round {round}");
    }
    assert_eq!(hub.stats().queued, 0);
    hub.close(None).unwrap();
}

#[test]
fn a_peer_that_exits_while_the_hub_is_held_up_still_has_every_publish_delivered() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve("rs-held", ServeOptions::default()).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let options = SubscribeOptions::parse(Some(r#"{"queue_limit":4,"on_full":"block"}"#)).unwrap();
    hub.subscribe_with(
        "slow",
        options,
        Consumer::Callback(
            Box::new(move |_| {
                std::thread::sleep(Duration::from_micros(200));
                g.fetch_add(1, SeqCst);
                0
            }),
            None,
        ),
    )
    .unwrap();
    let a = peer::attach("rs-held", AttachOptions::parse(None).unwrap()).unwrap();
    for i in 0..3000 {
        a.publish("slow", format!("{i}").as_bytes()).unwrap();
    }
    a.close(None).unwrap(); // the hub is still reading what it left
    for _ in 0..1000 {
        if got.load(SeqCst) == 3000 && hub.stats().peers == Some([0, 1, 0]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(got.load(SeqCst), 3000);
    assert_eq!(hub.stats().peers, Some([0, 1, 0]));
    hub.flush(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(hub.stats().queued, 0);
    hub.close(None).unwrap();
}

#[test]
fn a_peer_the_hub_drops_for_a_stall_learns_it_even_while_its_link_waits_for_a_block_subscription() {
    private_dir();
    let hub = Bus::new(Options::default()).unwrap();
    hub.serve(
        "rs-stall",
        ServeOptions::parse(Some(
            r#"{"peer_stall_timeout_ms":100,"peer_ring_bytes":65536}"#,
        ))
        .unwrap(),
    )
    .unwrap();
    let a = peer::attach("rs-stall", AttachOptions::parse(None).unwrap()).unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Mutex::new(held);
    let options = SubscribeOptions::parse(Some(r#"{"queue_limit":1,"on_full":"block"}"#)).unwrap();
    a.subscribe_with(
        "s",
        options,
        Consumer::Callback(
            Box::new(move |_| {
                let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(10));
                0
            }),
            None,
        ),
    )
    .unwrap();
    let big = format!("\"{}\"", "x".repeat(1000));
    for _ in 0..100 {
        hub.publish("s", big.as_bytes()).unwrap();
    }
    let mut dropped = false;
    for _ in 0..300 {
        if hub.stats().peers.is_some_and(|p| p[2] == 1) {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        dropped,
        "the hub dropped the stalled peer: {:?}",
        hub.stats().peers
    );
    let mut refused = None;
    for _ in 0..100 {
        match a.publish("after", b"1") {
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("publishes are refused once the hub let the peer go");
    assert_eq!(e.status, Status::Disconnected, "{}", e.message);
    assert!(e.message.contains("peer_stall_timeout_ms"), "{}", e.message);
    let e = a.flush(Some(Duration::from_secs(1))).unwrap_err();
    assert_eq!(e.status, Status::Disconnected);
    drop(release);
    a.close(Some(Duration::from_secs(5))).ok();
    hub.flush(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(hub.stats().queued, 0);
    hub.close(None).unwrap();
}
