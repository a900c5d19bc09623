//! The core's Part 2A guarantees (12-17), driven through the safe Rust API: queue limits and
//! their policies, end notices, pull subscriptions, groups and per-subscription stats.

use jsonbus::{
    Bus, Callback, Consumer, EndReason, Options, Status, SubscribeOptions, SubscriptionStats, OK,
    UNSUBSCRIBE,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn bus(options: &str) -> Bus {
    Bus::new(Options::parse(Some(options)).unwrap()).unwrap()
}

fn sub_options(text: &str) -> SubscribeOptions {
    SubscribeOptions::parse(Some(text)).unwrap()
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// A callback that records each seq it gets, sleeping `pause` first while `slow` is set.
fn recorder(seen: Arc<Mutex<Vec<u64>>>, slow: Arc<AtomicBool>, pause: Duration) -> Callback {
    Box::new(move |d| {
        if slow.load(SeqCst) {
            thread::sleep(pause);
        }
        seen.lock().unwrap().push(d.message.seq);
        OK
    })
}

/// The end notices a subscription got, as (id, reason).
type Ends = Arc<Mutex<Vec<(i64, EndReason)>>>;

fn notice(ends: &Ends) -> Option<jsonbus::subscription::end::EndNotice> {
    let ends = ends.clone();
    Some(Box::new(move |id, reason| {
        ends.lock().unwrap().push((id, reason))
    }))
}

/// Polls `ready` for up to 5 s.
fn wait_until(mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ready() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

fn increasing(v: &[u64]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

/// Publishes `n` messages from each of 4 threads on "t".
fn publish_from_4(bus: &Bus, n: usize) {
    let threads: Vec<_> = (0..4)
        .map(|p| {
            let bus = bus.clone();
            thread::spawn(move || {
                for i in 0..n {
                    bus.publish("t", format!("[{p},{i}]").as_bytes()).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn drop_policies_keep_seq_order_and_every_drop_is_counted() {
    for policy in ["drop_oldest", "drop_new"] {
        let bus = bus(r#"{"dispatcher_threads":2}"#);
        let (slow_seen, all_seen) = (Arc::default(), Arc::default());
        let slow = Arc::new(AtomicBool::new(true));
        let pause = Duration::from_micros(200);
        let limited = bus
            .subscribe_with(
                "t",
                sub_options(&format!(r#"{{"queue_limit":8,"on_full":"{policy}"}}"#)),
                Consumer::Callback(recorder(Arc::clone(&slow_seen), slow.clone(), pause), None),
            )
            .unwrap();
        let never = Arc::new(AtomicBool::new(false));
        bus.subscribe("t", recorder(Arc::clone(&all_seen), never, pause))
            .unwrap();
        publish_from_4(&bus, 500);
        slow.store(false, SeqCst);
        bus.flush(None).unwrap();
        let got: Vec<u64> = slow_seen.lock().unwrap().clone();
        let all: Vec<u64> = all_seen.lock().unwrap().clone();
        assert_eq!(
            all.len(),
            2000,
            "{policy}: the unlimited one gets everything"
        );
        assert!(increasing(&got) && increasing(&all), "{policy}: seq order");
        let st = bus.subscription_stats(limited).unwrap();
        assert!(
            st.dropped > 0,
            "{policy}: a slow subscriber at its limit drops"
        );
        assert_eq!(st.delivered as usize, got.len());
        assert_eq!(st.delivered + st.dropped, 2000, "{policy}: drops reconcile");
        assert!(st.max_queued <= 8, "{policy}: queue_limit holds: {st:?}");
        assert_eq!(
            bus.stats().dropped,
            st.dropped,
            "{policy}: the bus counts them too"
        );
        assert_eq!(bus.stats().rejected.iter().map(|r| r.1).sum::<u64>(), 0);
        if policy == "drop_new" {
            // what it got is the oldest of each run: its first 8+ messages arrived in order
            assert_eq!(got[0], 1);
        }
    }
}

#[test]
fn end_policy_ends_the_slow_subscriber_alone() {
    let bus = bus(r#"{"dispatcher_threads":2}"#);
    let ends = Ends::default();
    let slow = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let id = bus
        .subscribe_with(
            "t",
            sub_options(r#"{"queue_limit":4,"on_full":"end"}"#),
            Consumer::Callback(
                recorder(seen.clone(), slow, Duration::from_millis(5)),
                notice(&ends),
            ),
        )
        .unwrap();
    let all = Arc::new(Mutex::new(Vec::new()));
    bus.subscribe("t", recorder(all.clone(), Arc::default(), Duration::ZERO))
        .unwrap();
    let start = Instant::now();
    publish_from_4(&bus, 250);
    bus.flush(None).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "publishers never waited for it"
    );
    assert_eq!(all.lock().unwrap().len(), 1000);
    // A dispatcher runs the notice once the slow callback returns; flush does not wait for it.
    let notified = wait_until(|| !ends.lock().unwrap().is_empty());
    assert!(notified, "no end notice within 5 s");
    assert_eq!(*ends.lock().unwrap(), [(id, EndReason::Slow)]);
    assert!(
        wait_until(|| bus.subscription_stats(id).is_err()),
        "forgotten once its end completed"
    );
    assert_eq!(bus.stats().subscriptions, 1);
    let got = seen.lock().unwrap().len() as u64;
    let s = bus.stats();
    // it ended when a message found its queue at the limit: those 4 and that one are dropped
    assert_eq!(
        s.dropped, 5,
        "its discarded queue and the message that ended it"
    );
    assert_eq!(s.delivered, 1000 + got);
    assert_eq!(bus.unsubscribe(id).unwrap_err().status, Status::NotFound);
}

#[test]
fn block_holds_publishers_and_nothing_is_queued_anywhere_meanwhile() {
    let bus = bus(r#"{"publish_timeout_ms":0,"dispatcher_threads":2}"#);
    let gate = Arc::new(Mutex::new(()));
    let hold = gate.lock().unwrap();
    let (blocked_seen, other_seen) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let (g, s) = (gate.clone(), blocked_seen.clone());
    let id = bus
        .subscribe_with(
            "t",
            sub_options(r#"{"queue_limit":2}"#),
            Consumer::Callback(
                Box::new(move |d| {
                    drop(g.lock().unwrap());
                    s.lock().unwrap().push(d.message.seq);
                    OK
                }),
                None,
            ),
        )
        .unwrap();
    bus.subscribe(
        "t",
        recorder(other_seen.clone(), Arc::default(), Duration::ZERO),
    )
    .unwrap();
    // one message in the callback (held at the gate), two queued: the limit
    for _ in 0..3 {
        bus.publish("t", b"1").unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    let e = bus.publish("t", b"1").unwrap_err();
    assert_eq!(e.status, Status::Full);
    assert!(
        e.message.contains(&format!("subscription {id}")),
        "{}",
        e.message
    );
    assert_eq!(bus.stats().published, 3, "a refused message takes no seq");
    // with a timeout the publish waits until the callback takes one
    let waiting = {
        let bus = Bus::clone(&bus);
        thread::spawn(move || {
            let b2 = bus;
            let start = Instant::now();
            // publish_timeout_ms is 0 on this bus: retry until room, as a host would
            loop {
                match b2.publish("t", b"2") {
                    Ok(seq) => return (seq, start.elapsed()),
                    Err(e) => assert_eq!(e.status, Status::Full),
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        other_seen.lock().unwrap().len(),
        3,
        "the other saw nothing the blocked one missed"
    );
    drop(hold);
    let (seq, waited) = waiting.join().unwrap();
    assert_eq!(seq, 4);
    assert!(waited >= Duration::from_millis(40));
    bus.flush(None).unwrap();
    assert_eq!(*blocked_seen.lock().unwrap(), *other_seen.lock().unwrap());
    assert_eq!(bus.stats().dropped, 0);
}

#[test]
fn block_waits_within_publish_timeout_ms() {
    let bus = bus(r#"{"publish_timeout_ms":-1}"#);
    let id = bus
        .subscribe_with("t", sub_options(r#"{"queue_limit":3}"#), Consumer::Pull)
        .unwrap();
    for _ in 0..3 {
        bus.publish("t", b"1").unwrap();
    }
    let publisher = {
        let bus = bus.clone();
        thread::spawn(move || {
            let start = Instant::now();
            bus.publish("t", b"2").unwrap();
            start.elapsed()
        })
    };
    thread::sleep(Duration::from_millis(50));
    assert_eq!(bus.stats().published, 3, "still waiting");
    drop(bus.next(id, ms(0)).unwrap());
    assert!(publisher.join().unwrap() >= Duration::from_millis(45));
    assert_eq!(bus.stats().published, 4);
}

#[test]
fn max_failures_ends_after_that_many_in_a_row() {
    let bus = bus("{}");
    let ends = Ends::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // fails except at the 3rd call: F F ok F F F -> ends at the 6th call
    let id = bus
        .subscribe_with(
            "t",
            sub_options(r#"{"max_failures":3}"#),
            Consumer::Callback(
                Box::new(move |_| match c.fetch_add(1, SeqCst) + 1 {
                    3 => OK,
                    _ => -1,
                }),
                notice(&ends),
            ),
        )
        .unwrap();
    for _ in 0..10 {
        bus.publish("t", b"1").unwrap();
    }
    bus.flush(None).unwrap();
    assert_eq!(calls.load(SeqCst), 6);
    // A dispatcher runs the notice; flush does not wait for it.
    assert!(wait_until(|| !ends.lock().unwrap().is_empty()));
    assert_eq!(*ends.lock().unwrap(), [(id, EndReason::Failed)]);
    let s = bus.stats();
    // the 4 after the 6th were queued for it (dropped) or published once it had ended
    assert_eq!(
        (s.callback_failures, s.delivered, s.dropped + s.unrouted),
        (5, 6, 4)
    );
}

#[test]
fn the_end_notice_runs_once_after_the_last_invocation_whatever_ends_it() {
    for round in 0..200 {
        let bus = bus(r#"{"dispatcher_threads":2}"#);
        let ends = Ends::default();
        let in_end = Arc::new(AtomicBool::new(false));
        let flag = in_end.clone();
        let id = bus
            .subscribe_with(
                "t",
                sub_options(r#"{"max_failures":5}"#),
                Consumer::Callback(
                    Box::new(move |d| {
                        assert!(
                            !flag.load(SeqCst),
                            "a callback ran after its end notice began"
                        );
                        match d.message.seq % 7 {
                            0 => UNSUBSCRIBE,
                            _ => -1,
                        }
                    }),
                    {
                        let (ends, in_end) = (ends.clone(), in_end.clone());
                        Some(Box::new(move |id, reason| {
                            in_end.store(true, SeqCst);
                            thread::sleep(Duration::from_micros(50));
                            ends.lock().unwrap().push((id, reason));
                        }))
                    },
                ),
            )
            .unwrap();
        let publisher = {
            let bus = bus.clone();
            thread::spawn(move || {
                for _ in 0..20 {
                    let _ = bus.publish("t", b"1");
                }
            })
        };
        thread::sleep(Duration::from_micros(round % 40 * 10));
        match round % 3 {
            0 => {
                let _ = bus.unsubscribe(id);
                assert_eq!(
                    ends.lock().unwrap().len(),
                    1,
                    "ran before unsubscribe returned"
                );
            }
            1 => {
                let _ = bus.close(None);
                assert_eq!(ends.lock().unwrap().len(), 1, "ran before close returned");
            }
            _ => {}
        }
        publisher.join().unwrap();
        bus.close(None).unwrap();
        let ends = ends.lock().unwrap();
        assert_eq!(ends.len(), 1, "round {round}: {ends:?}");
        assert_eq!(ends[0].0, id);
        assert!([
            EndReason::Unsubscribed,
            EndReason::Closed,
            EndReason::Failed,
            EndReason::Returned
        ]
        .contains(&ends[0].1));
    }
}

#[test]
fn unsubscribe_from_another_callback_runs_the_notice_once_that_invocation_returns() {
    let bus = bus(r#"{"dispatcher_threads":2}"#);
    let ends = Ends::default();
    let running = Arc::new(AtomicBool::new(false));
    let returned = Arc::new(AtomicBool::new(false));
    let (r1, r2) = (running.clone(), returned.clone());
    let victim = bus
        .subscribe_with(
            "victim",
            SubscribeOptions::default(),
            Consumer::Callback(
                Box::new(move |_| {
                    r1.store(true, SeqCst);
                    thread::sleep(Duration::from_millis(100));
                    r2.store(true, SeqCst);
                    OK
                }),
                {
                    let (ends, returned) = (ends.clone(), returned.clone());
                    Some(Box::new(move |id, reason| {
                        assert!(
                            returned.load(SeqCst),
                            "notice before the invocation returned"
                        );
                        ends.lock().unwrap().push((id, reason));
                    }))
                },
            ),
        )
        .unwrap();
    let (b, run) = (bus.clone(), running.clone());
    bus.subscribe(
        "killer",
        Box::new(move |_| {
            while !run.load(SeqCst) {
                thread::yield_now();
            }
            b.unsubscribe(victim).unwrap();
            OK
        }),
    )
    .unwrap();
    bus.publish("victim", b"1").unwrap();
    bus.publish("killer", b"1").unwrap();
    bus.flush(None).unwrap();
    assert!(wait_until(|| !ends.lock().unwrap().is_empty()));
    assert_eq!(*ends.lock().unwrap(), [(victim, EndReason::Unsubscribed)]);
    bus.close(None).unwrap();
    assert_eq!(ends.lock().unwrap().len(), 1);
}

#[test]
fn a_pull_subscription_drained_by_4_threads_gives_each_message_once() {
    let bus = bus("{}");
    let id = bus
        .subscribe_with("t", SubscribeOptions::default(), Consumer::Pull)
        .unwrap();
    const N: usize = 20_000;
    let got = Arc::new(Mutex::new(Vec::new()));
    let pullers: Vec<_> = (0..4)
        .map(|_| {
            let (bus, got) = (bus.clone(), got.clone());
            thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    match bus.next(id, None) {
                        Ok(m) => mine.push(m.seq),
                        Err(e) => {
                            assert_eq!(e.status, Status::Ended, "{}", e.message);
                            break;
                        }
                    }
                }
                assert!(increasing(&mine), "each puller sees seq order");
                got.lock().unwrap().extend(mine);
            })
        })
        .collect();
    publish_from_4(&bus, N / 4);
    bus.flush(None).unwrap();
    bus.close(None).unwrap();
    pullers.into_iter().for_each(|t| t.join().unwrap());
    let got = got.lock().unwrap();
    assert_eq!(got.len(), N);
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), N);
    assert_eq!(bus.stats().delivered, N as u64);
}

#[test]
fn pulled_messages_are_held_until_dropped() {
    let bus = bus(r#"{"queue_capacity":2,"publish_timeout_ms":0}"#);
    let id = bus
        .subscribe_with("t", SubscribeOptions::default(), Consumer::Pull)
        .unwrap();
    assert_eq!(bus.next(id, ms(0)).unwrap_err().status, Status::Timeout);
    bus.publish("t", b"1").unwrap();
    bus.publish("t", b"2").unwrap();
    let first = bus.next(id, ms(0)).unwrap();
    assert_eq!((first.seq, first.json()), (1, &b"1"[..]));
    assert_eq!(bus.publish("t", b"3").unwrap_err().status, Status::Full);
    assert_eq!(bus.flush(ms(20)).unwrap_err().status, Status::Timeout);
    drop(bus.next(id, ms(0)).unwrap());
    assert_eq!(
        bus.flush(ms(20)).unwrap_err().status,
        Status::Timeout,
        "the first is still held"
    );
    drop(first);
    bus.flush(ms(1000)).unwrap();
    bus.unsubscribe(id).unwrap();
    assert_eq!(bus.next(id, ms(0)).unwrap_err().status, Status::NotFound);
}

#[test]
fn a_pull_subscription_that_ended_on_its_own_says_so_until_released() {
    let bus = bus("{}");
    let id = bus
        .subscribe_with(
            "t",
            sub_options(r#"{"queue_limit":1,"on_full":"end"}"#),
            Consumer::Pull,
        )
        .unwrap();
    bus.publish("t", b"1").unwrap();
    bus.publish("t", b"2").unwrap();
    let e = bus.next(id, ms(0)).unwrap_err();
    assert_eq!(e.status, Status::Ended);
    assert!(e.message.contains("JSONBUS_END_SLOW"), "{}", e.message);
    let st: SubscriptionStats = bus.subscription_stats(id).unwrap();
    assert_eq!(
        (st.ended, st.dropped, st.pull),
        (Some(EndReason::Slow), 2, true)
    );
    assert!(st.to_json().contains("\"ended\":\"JSONBUS_END_SLOW\""));
    assert_eq!(bus.stats().subscriptions, 0);
    bus.unsubscribe(id).unwrap();
    assert_eq!(bus.next(id, ms(0)).unwrap_err().status, Status::NotFound);
    assert_eq!(bus.unsubscribe(id).unwrap_err().status, Status::NotFound);
}

#[test]
fn a_group_gives_each_message_to_exactly_one_member_and_shares_the_work() {
    let bus = bus(r#"{"dispatcher_threads":2}"#);
    let seen: Vec<Arc<Mutex<Vec<u64>>>> = (0..4).map(|_| Arc::default()).collect();
    for s in &seen {
        bus.subscribe_with(
            "jobs.*",
            sub_options(r#"{"group":"workers"}"#),
            Consumer::Callback(recorder(s.clone(), Arc::default(), Duration::ZERO), None),
        )
        .unwrap();
    }
    let pulled = bus
        .subscribe_with(
            "jobs.>",
            sub_options(r#"{"group":"workers"}"#),
            Consumer::Pull,
        )
        .unwrap();
    let outsider = Arc::new(Mutex::new(Vec::new()));
    bus.subscribe(
        "jobs.*",
        recorder(outsider.clone(), Arc::default(), Duration::ZERO),
    )
    .unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (bus, barrier) = (bus.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..1000 {
                    bus.publish("jobs.a", b"{}").unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let mut all: Vec<u64> = Vec::new();
    while let Ok(m) = bus.next(pulled, ms(0)) {
        all.push(m.seq);
    }
    bus.flush(None).unwrap();
    for s in &seen {
        let s = s.lock().unwrap();
        assert!(s.len() > 100, "every member gets work: {}", s.len());
        assert!(increasing(&s));
        all.extend(s.iter());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=4000).collect::<Vec<u64>>(),
        "each message to exactly one member"
    );
    assert_eq!(
        outsider.lock().unwrap().len(),
        4000,
        "outside the group: everything"
    );
}

#[test]
fn a_full_group_member_is_passed_over() {
    let bus = bus("{}");
    let full = bus
        .subscribe_with(
            "t",
            sub_options(r#"{"group":"g","queue_limit":1}"#),
            Consumer::Pull,
        )
        .unwrap();
    let free = bus
        .subscribe_with("t", sub_options(r#"{"group":"g"}"#), Consumer::Pull)
        .unwrap();
    for _ in 0..10 {
        bus.publish("t", b"1").unwrap();
    }
    let (a, b) = (
        bus.subscription_stats(full).unwrap(),
        bus.subscription_stats(free).unwrap(),
    );
    assert_eq!((a.queued, b.queued, a.dropped + b.dropped), (1, 9, 0));
}

#[test]
fn the_close_of_free_waits_for_callbacks_but_not_for_pullers() {
    let bus = bus("{}");
    let pull = bus
        .subscribe_with("t", SubscribeOptions::default(), Consumer::Pull)
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let slow = Arc::new(AtomicBool::new(true));
    bus.subscribe("t", recorder(seen.clone(), slow, Duration::from_millis(10)))
        .unwrap();
    for _ in 0..3 {
        bus.publish("t", b"[1]").unwrap();
    }
    let held = bus.next(pull, ms(0)).unwrap();
    let start = Instant::now();
    bus.close_for_free();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "every callback delivery was made"
    );
    let s = bus.stats();
    assert_eq!(s.dropped, 2, "the two messages nobody took");
    assert_eq!(s.queued, 1, "the handed-out one is still held");
    assert_eq!((held.seq, held.json()), (1, &b"[1]"[..]), "and still valid");
    drop(held);
    assert_eq!(bus.stats().queued, 0);
    let e = bus.next(pull, ms(0)).unwrap_err();
    assert_eq!(e.status, Status::Ended);
}
