//! The core's Part 2B guarantees (18-21), driven through the safe Rust API: requests and their
//! replies, reply topics, async requests on a dispatcher, and timers.

use jsonbus::{Bus, Callback, Consumer, Options, Status, SubscribeOptions, OK};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn bus(options: &str) -> Bus {
    Bus::new(Options::parse(Some(options)).unwrap()).unwrap()
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// A responder that answers every request with its payload, `times` times.
fn echo(bus: &Bus, pattern: &str, times: usize, options: &str) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let (b, c) = (bus.clone(), calls.clone());
    let cb: Callback = Box::new(move |d| {
        c.fetch_add(1, SeqCst);
        for _ in 0..times {
            b.reply(d.message.reply_to(), d.message.json()).unwrap();
        }
        OK
    });
    let opts = SubscribeOptions::parse(Some(options)).unwrap();
    bus.subscribe_with(pattern, opts, Consumer::Callback(cb, None))
        .unwrap();
    calls
}

#[test]
fn a_request_gets_its_first_reply_and_later_ones_are_counted() {
    let b = bus("{}");
    echo(&b, "svc", 3, "{}");
    let reply = b.request("svc", b"[1,2]", ms(5000)).unwrap();
    assert_eq!(reply.json(), b"[1,2]");
    assert!(reply.topic().starts_with("_INBOX."));
    assert_eq!(reply.reply_to(), None);
    drop(reply);
    b.flush(ms(5000)).unwrap();
    let s = b.stats();
    assert_eq!((s.requests, s.late_replies, s.requests_waiting), (1, 2, 0));
    // the request, and its three replies (one delivered to the request, two late)
    assert_eq!((s.published, s.delivered, s.unrouted), (4, 2, 2));
    b.close(None).unwrap();
}

#[test]
fn no_responders_timeout_and_deadlock() {
    let b = bus("{}");
    let e = b.request("none", b"1", None).unwrap_err();
    assert_eq!(e.status, Status::NoResponders);
    let silent: Callback = Box::new(|_| OK);
    b.subscribe("quiet", silent).unwrap();
    let t = Instant::now();
    assert_eq!(
        b.request("quiet", b"1", ms(30)).unwrap_err().status,
        Status::Timeout
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    // a blocking request from a callback of the same bus
    let (tx, rx) = mpsc::channel();
    let inner = b.clone();
    let cb: Callback = Box::new(move |_| {
        tx.send(inner.request("quiet", b"1", ms(10)).map(|_| ()))
            .unwrap();
        OK
    });
    b.subscribe("go", cb).unwrap();
    b.publish("go", b"1").unwrap();
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got.unwrap_err().status, Status::Deadlock);
    assert_eq!(b.stats().no_responders, 1);
    b.close(None).unwrap();
}

#[test]
fn async_requests_from_a_callback_with_one_dispatcher_and_close_answers_the_rest() {
    let b = bus(r#"{"dispatcher_threads":1}"#);
    echo(&b, "svc", 1, "{}");
    let answers: Arc<Mutex<Vec<Result<String, Status>>>> = Arc::default();
    let (inner, a) = (b.clone(), answers.clone());
    let cb: Callback = Box::new(move |_| {
        let a = a.clone();
        let on_reply = Box::new(move |r: Result<&jsonbus::Message, Status>| {
            let r = r.map(|m| String::from_utf8_lossy(m.json()).into_owned());
            a.lock().unwrap().push(r);
        });
        inner
            .request_async("svc", b"\"x\"", ms(5000), on_reply)
            .unwrap();
        OK
    });
    b.subscribe("go", cb).unwrap();
    b.publish("go", b"1").unwrap();
    b.flush(ms(5000)).unwrap();
    assert_eq!(*answers.lock().unwrap(), vec![Ok("\"x\"".to_string())]);
    // pending requests (no responder answers "quiet") end CLOSED, once each, before close returns
    let silent: Callback = Box::new(|_| OK);
    b.subscribe("quiet", silent).unwrap();
    for timeout in [None, ms(60_000)] {
        let a = answers.clone();
        let on_reply = Box::new(move |r: Result<&jsonbus::Message, Status>| {
            a.lock().unwrap().push(r.map(|_| String::new()));
        });
        b.request_async("quiet", b"1", timeout, on_reply).unwrap();
    }
    b.close(None).unwrap();
    let got = answers.lock().unwrap().clone();
    assert_eq!(got[1..], [Err(Status::Closed), Err(Status::Closed)]);
}

#[test]
fn eight_requesters_against_a_group_each_get_their_own_replies() {
    let b = bus(r#"{"dispatcher_threads":2}"#);
    let calls: Vec<_> = (0..3)
        .map(|_| echo(&b, "svc", 1, r#"{"group":"g"}"#))
        .collect();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let b = b.clone();
            thread::spawn(move || {
                for i in 0..200 {
                    let body = format!("[{t},{i}]");
                    let r = b.request("svc", body.as_bytes(), ms(10_000)).unwrap();
                    assert_eq!(r.json(), body.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: usize = calls.iter().map(|c| c.load(SeqCst)).sum();
    assert_eq!(total, 1600);
    b.close(None).unwrap();
}

/// A timer's payload and when its callback ran.
type Fired = (Vec<u8>, Instant);

#[test]
fn timers_fire_after_their_delay_in_order_and_cancel_or_close_takes_them() {
    let b = bus(r#"{"queue_capacity":3,"publish_timeout_ms":0}"#);
    let seen: Arc<Mutex<Vec<Fired>>> = Arc::default();
    let s = seen.clone();
    let cb: Callback = Box::new(move |d| {
        s.lock()
            .unwrap()
            .push((d.message.json().to_vec(), Instant::now()));
        OK
    });
    b.subscribe("t", cb).unwrap();
    let start = Instant::now();
    b.publish_after("t", b"2", Duration::from_millis(20))
        .unwrap();
    b.publish_after("t", b"1", Duration::from_millis(10))
        .unwrap();
    let far = b.publish_after("t", b"9", Duration::from_secs(60)).unwrap();
    assert_eq!(b.stats().timers, 3);
    assert_eq!(b.publish("t", b"0").unwrap_err().status, Status::Full);
    b.cancel(far).unwrap();
    assert_eq!(b.cancel(far).unwrap_err().status, Status::NotFound);
    while seen.lock().unwrap().len() < 2 && start.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(1));
    }
    let got = seen.lock().unwrap().clone();
    assert_eq!(got[0].0, b"1");
    assert_eq!(got[1].0, b"2");
    assert!(got[0].1 >= start + Duration::from_millis(10));
    assert!(got[1].1 >= start + Duration::from_millis(20));
    b.publish_after("t", b"3", Duration::from_secs(60)).unwrap();
    let dropped = b.stats().dropped;
    b.close(None).unwrap();
    assert_eq!(b.stats().dropped, dropped + 1);
    assert_eq!(b.stats().queued, 0);
}
