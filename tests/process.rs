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
