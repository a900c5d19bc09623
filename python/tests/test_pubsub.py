# Tests of publish / callback subscriptions: counts and order, payload types and UTF-8,
# errors with status names and messages, 4 publisher threads, exceptions in callbacks,
# UNSUBSCRIBE, end notices releasing the Python callable, and closing rules.
import gc
import threading
import weakref

import pytest

import jsonbus


def test_counts_and_order(bus):
    got = []
    sub = bus.subscribe("orders.*", got.append)
    other = []
    bus.subscribe("orders.>", other.append)
    for i in range(100):
        bus.publish("orders.eu", '{"id": %d}' % i)
    bus.publish("orders.eu.x", "{}")  # only orders.> matches
    bus.publish("other", "{}")  # nobody
    assert bus.flush(5000)
    assert [m.data["id"] for m in got] == list(range(100))
    assert [m.seq for m in got] == list(range(1, 101))
    assert all(m.topic == "orders.eu" and m.subscription == sub.id for m in got)
    assert all(m.reply_to is None for m in got)
    assert len(other) == 101
    assert got[0].published_ns <= got[-1].published_ns <= jsonbus.now_ns()
    s = bus.stats()
    assert s["published"] == 102 and s["delivered"] == 201 and s["unrouted"] == 1
    st = sub.stats()
    assert st["delivered"] == 100 and st["kind"] == "callback" and st["pattern"] == "orders.*"


def test_str_bytes_and_utf8_payloads(bus):
    got = []
    bus.subscribe("t", got.append)
    text = '{"name": "Zoë ✓ 日本語 🎉", "n": 1}'
    bus.publish("t", text)
    bus.publish("t", text.encode("utf-8"))
    bus.publish("t", bytearray(b"[1, 2]"))
    bus.publish("t", memoryview(b'"x"'))
    assert bus.flush(5000)
    assert [m.json for m in got] == [text, text, "[1, 2]", '"x"']
    assert got[0].data["name"] == "Zoë ✓ 日本語 🎉"
    with pytest.raises(TypeError):
        bus.publish("t", {"not": "text"})


def test_errors_carry_status_name_and_message(bus):
    with pytest.raises(jsonbus.TopicError) as info:
        bus.publish("orders..eu", "{}")
    e = info.value
    assert isinstance(e, jsonbus.Error)
    assert e.status == jsonbus.ERR_TOPIC and e.name == "JSONBUS_ERR_TOPIC"
    assert "token" in e.message and "JSONBUS_ERR_TOPIC" in str(e)

    with pytest.raises(jsonbus.TopicError):
        bus.publish("orders.*", "{}")  # wildcards only in patterns
    with pytest.raises(jsonbus.TopicError) as info:
        bus.publish("a\0b", "{}")
    assert "NUL" in info.value.message

    with pytest.raises(jsonbus.JsonError) as info:
        bus.publish("a", '{"id": 1,}')
    e = info.value
    assert e.status == jsonbus.ERR_JSON and e.name == "JSONBUS_ERR_JSON"
    assert "line 1" in e.message and "column" in e.message

    with pytest.raises(jsonbus.Utf8Error) as info:
        bus.publish("a", b'"\xff"')
    assert info.value.name == "JSONBUS_ERR_UTF8" and "offset" in info.value.message

    with pytest.raises(jsonbus.TopicError):
        bus.subscribe("a.>.b", print)
    with pytest.raises(jsonbus.OptionsError):
        bus.subscribe("a", print, {"on_full": "sometimes"})
    assert bus.stats()["rejected"]["json"] == 1


def test_closed_bus_raises_closed_error():
    b = jsonbus.Bus()
    b.close()
    for call in (lambda: b.publish("a", "1"), lambda: b.subscribe("a", print),
                 lambda: b.subscribe_pull("a"), lambda: b.request("a", "1", 10)):
        with pytest.raises(jsonbus.ClosedError) as info:
            call()
        assert info.value.name == "JSONBUS_ERR_CLOSED" and info.value.message


def test_closed_by_c_close_reports_library_message():
    b = jsonbus.Bus()
    jsonbus._ffi.lib.jsonbus_close(b._ptr, -1)  # closed, not yet freed
    with pytest.raises(jsonbus.ClosedError) as info:
        b.publish("a", "1")
    assert info.value.message  # jsonbus_last_error()'s text
    b.close()


def test_four_publisher_threads_exact_count():
    n_threads, per_thread = 4, 5000
    with jsonbus.Bus({"dispatcher_threads": 2, "queue_capacity": 1024}) as b:
        got = []
        sub = b.subscribe("load.*", lambda m: got.append((m.topic, m.data["i"], m.seq)))
        start = threading.Barrier(n_threads)

        def publisher(k):
            start.wait()
            for i in range(per_thread):
                b.publish("load.t%d" % k, '{"i": %d}' % i)

        threads = [threading.Thread(target=publisher, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert b.flush(30000)
        assert len(got) == n_threads * per_thread
        seqs = [s for _, _, s in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # seq order
        for k in range(n_threads):  # each publisher's own order is kept
            assert [i for t, i, _ in got if t == "load.t%d" % k] == list(range(per_thread))
        assert sub.stats()["delivered"] == n_threads * per_thread


def test_exception_in_callback_is_a_counted_failure(bus, monkeypatch):
    reported = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    seen = []

    def flaky(msg):
        seen.append(msg.seq)
        if msg.data % 2:
            raise ValueError("odd %d" % msg.data)

    sub = bus.subscribe("n", flaky)
    for i in range(10):
        bus.publish("n", str(i))
    assert bus.flush(5000)
    assert len(seen) == 10  # it stayed subscribed
    assert bus.stats()["callback_failures"] == 5
    assert sub.stats()["callback_failures"] == 5
    assert sub.errors == 5
    assert isinstance(sub.last_exception, ValueError) and str(sub.last_exception) == "odd 9"
    assert len(reported) == 5 and reported[0].exc_type is ValueError
    assert "subscription %d" % sub.id in reported[0].err_msg
    bus.publish("n", "2")  # the bus is fine
    assert bus.flush(5000) and len(seen) == 11


def test_negative_return_and_max_failures(bus):
    sub = bus.subscribe("f", lambda m: -5, {"max_failures": 3})
    for i in range(5):
        bus.publish("f", str(i))
    assert bus.flush(5000)
    assert sub.wait_ended(5)
    assert sub.end_reason == jsonbus.END_FAILED
    assert bus.stats()["callback_failures"] == 3


def test_unsubscribe_return_value_ends_subscription(bus):
    got = []

    def three(msg):
        got.append(msg)
        return jsonbus.UNSUBSCRIBE if len(got) == 3 else None

    ends = []
    sub = bus.subscribe("u", three, on_end=lambda sid, reason: ends.append((sid, reason)))
    for i in range(10):
        bus.publish("u", str(i))
    assert bus.flush(5000)
    assert sub.wait_ended(5)
    assert len(got) == 3
    assert ends == [(sub.id, jsonbus.END_RETURNED)]
    assert sub.end_reason == jsonbus.END_RETURNED
    assert sub.unsubscribe() is False  # already ended
    assert bus.stats()["subscriptions"] == 0


def test_returning_true_does_not_unsubscribe(bus):
    got = []
    sub = bus.subscribe("b", lambda m: got.append(m) or True)
    bus.publish("b", "1")
    bus.publish("b", "2")
    assert bus.flush(5000)
    assert len(got) == 2 and not sub.ended


def _weak_callable():
    got = []

    class Handler:
        def __call__(self, msg):
            got.append(msg)

    h = Handler()
    return h, weakref.ref(h), got


def test_end_notice_drops_callable_after_unsubscribe(bus):
    h, ref, got = _weak_callable()
    sub = bus.subscribe("w", h)
    del h
    bus.publish("w", "1")
    assert bus.flush(5000) and len(got) == 1
    gc.collect()
    assert ref() is not None  # alive while subscribed, although only the bus holds it
    assert sub.unsubscribe() is True
    assert sub.ended and sub.end_reason == jsonbus.END_UNSUBSCRIBED
    gc.collect()
    assert ref() is None
    assert sub.unsubscribe() is False


def test_end_notice_drops_callable_after_close():
    h, ref, _ = _weak_callable()
    ends = []
    b = jsonbus.Bus()
    sub = b.subscribe("w", h, on_end=lambda sid, r: ends.append(r))
    del h
    b.close()
    assert ends == [jsonbus.END_CLOSED] and sub.end_reason == jsonbus.END_CLOSED
    gc.collect()
    assert ref() is None


def test_end_notice_drops_callable_after_returned_unsubscribe(bus):
    class Once:
        def __call__(self, msg):
            return jsonbus.UNSUBSCRIBE

    h = Once()
    ref = weakref.ref(h)
    sub = bus.subscribe("w", h)
    del h
    bus.publish("w", "1")
    assert sub.wait_ended(5)
    gc.collect()
    assert ref() is None


def test_subscription_context_manager(bus):
    got = []
    with bus.subscribe("c", got.append) as sub:
        bus.publish("c", "1")
        assert bus.flush(5000)
    assert sub.ended
    bus.publish("c", "2")
    assert bus.flush(5000) and len(got) == 1


def test_garbage_collected_bus_ends_its_subscriptions():
    ends = []
    got = []
    b = jsonbus.Bus()
    b.subscribe("g", got.append, on_end=lambda sid, r: ends.append(r))
    for i in range(50):
        b.publish("g", str(i))
    del b
    gc.collect()
    # jsonbus_free: every queued callback delivery is made, then the end notice.
    assert len(got) == 50 and ends == [jsonbus.END_CLOSED]


def test_close_from_callback_is_refused_without_deadlock(bus):
    errors = []

    def closer(msg):
        try:
            bus.close()
        except jsonbus.Error as e:
            errors.append(e)
        try:
            bus.flush()
        except jsonbus.Error as e:
            errors.append(e)
        try:
            bus.request("nobody.listens", "1", 100)
        except jsonbus.Error as e:
            errors.append(e)

    bus.subscribe("x", closer)
    bus.subscribe("nobody.listens", print)
    bus.publish("x", "1")
    assert bus.flush(5000)
    assert [type(e) for e in errors] == [jsonbus.DeadlockError] * 3
    assert not bus.closed
    bus.publish("x", "1")  # still usable


def test_bus_collected_on_its_own_dispatcher_thread():
    box = {}
    go = threading.Event()
    freed = threading.Event()
    threads = []

    def drop(msg):
        go.wait(5)
        box.clear()  # the last reference to the bus goes away on a dispatcher thread

    b = jsonbus.Bus()
    b.subscribe("d", drop, on_end=lambda sid, r: (threads.append(threading.current_thread().name), freed.set()))
    box["bus"] = b
    b.publish("d", "1")
    del b
    go.set()
    assert freed.wait(5)  # freed by the helper thread, no deadlock
    assert threads == ["jsonbus-free"]


def test_publish_and_subscribe_from_callback(bus):
    got = []

    def relay(msg):
        if msg.data < 3:
            bus.publish("r", str(msg.data + 1))

    bus.subscribe("r", relay)
    bus.subscribe("r", got.append)
    bus.publish("r", "0")
    assert bus.flush(5000)  # waits for what callbacks publish, transitively
    assert [m.data for m in got] == [0, 1, 2, 3]


def test_close_races_with_publishers():
    b = jsonbus.Bus()
    stop = threading.Event()
    outcomes = []

    def publisher():
        n = 0
        while not stop.is_set():
            try:
                b.publish("race", "1")
                n += 1
            except jsonbus.ClosedError:
                outcomes.append(n)
                return

    threads = [threading.Thread(target=publisher) for _ in range(3)]
    for t in threads:
        t.start()
    b.close()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(outcomes) == 3


def test_timers(bus):
    got = []
    bus.subscribe("timer.*", got.append)
    t1 = bus.publish_after("timer.a", '"later"', 50)
    t2 = bus.publish_after("timer.b", '"never"', 60000)
    assert t1 > 0 and t2 > 0 and t1 != t2
    assert bus.stats()["timers"] == 2
    assert bus.cancel(t2) is True
    assert bus.cancel(t2) is False
    deadline = jsonbus.now_ns() + 5_000_000_000
    while not got and jsonbus.now_ns() < deadline:
        bus.flush(50)
    assert [m.topic for m in got] == ["timer.a"]
    assert bus.cancel(t1) is False  # already fired
    with pytest.raises(jsonbus.JsonError):
        bus.publish_after("timer.a", "nope", 10)
