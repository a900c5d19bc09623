# Tests of pull subscriptions: next() with and without timeouts, iteration and its end
# rules, the descriptor, and asyncio consumers (async for, anext timeouts, close).
import asyncio
import select
import threading
import time

import pytest

import jsonbus


def test_next_and_timeout(bus):
    sub = bus.subscribe_pull("p.>")
    assert sub.next(timeout_ms=0) is None
    t0 = time.monotonic()
    assert sub.next(timeout_ms=100) is None
    assert 0.08 <= time.monotonic() - t0 < 2
    bus.publish("p.a", '{"k": "v"}')
    bus.publish("p.b", "2")
    m = sub.next(timeout_ms=1000)
    assert (m.topic, m.json, m.seq, m.subscription) == ("p.a", '{"k": "v"}', 1, sub.id)
    assert sub.next(1000).json == "2"
    assert sub.next(0) is None
    st = sub.stats()
    assert st["kind"] == "pull" and st["delivered"] == 2 and st["queued"] == 0
    assert bus.stats()["queued"] == 0  # released at once
    assert bus.flush(1000)


def test_iteration_ends_when_unsubscribed_from_another_thread(bus):
    sub = bus.subscribe_pull("it")
    for i in range(5):
        bus.publish("it", str(i))
    got = []

    def consume():
        for msg in sub:
            got.append(msg.data)

    t = threading.Thread(target=consume)
    t.start()
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sub.unsubscribe() is True
    t.join(5)
    assert not t.is_alive() and got == [0, 1, 2, 3, 4]
    with pytest.raises(jsonbus.EndedError):
        sub.next(0)
    assert sub.unsubscribe() is False


def test_iteration_ends_when_bus_closes():
    b = jsonbus.Bus()
    sub = b.subscribe_pull("it")
    got = []
    t = threading.Thread(target=lambda: got.extend(m.data for m in sub))
    t.start()
    b.publish("it", "1")
    time.sleep(0.1)
    assert b.close() is True
    t.join(5)
    assert not t.is_alive() and got == [1]
    with pytest.raises(jsonbus.ClosedError):
        sub.next(0)


def test_iteration_ends_when_slow_subscription_ends(bus):
    sub = bus.subscribe_pull("slow", {"queue_limit": 2, "on_full": "end"})
    for i in range(3):
        bus.publish("slow", str(i))
    assert [m.data for m in sub] == []  # ended with its queue discarded
    assert sub.stats()["ended"] == "JSONBUS_END_SLOW"
    with pytest.raises(jsonbus.EndedError) as info:
        sub.next(0)
    assert "JSONBUS_END_SLOW" in info.value.message


def test_close_without_limit_does_not_wait_for_unread_pull_messages():
    b = jsonbus.Bus()
    sub = b.subscribe_pull("unread")
    for i in range(10):
        b.publish("unread", str(i))
    t0 = time.monotonic()
    b.close()
    assert time.monotonic() - t0 < 2
    assert b.stats()["dropped"] == 10
    assert sub.unsubscribe() is False


def test_close_with_limit_reports_discarded():
    b = jsonbus.Bus()
    sub = b.subscribe_pull("unread")  # kept: a collected one would be unsubscribed
    b.publish("unread", "1")
    assert b.close(timeout_ms=50) is False  # discarded something
    assert sub.stats  # (still referenced here)


def test_dropped_pull_subscription_is_released(bus):
    import gc
    sub = bus.subscribe_pull("gone")
    sid = sub.id
    del sub
    gc.collect()
    bus.publish("gone", "1")
    assert bus.stats()["subscriptions"] == 0
    with pytest.raises(jsonbus.NotFoundError):
        jsonbus.PullSubscription(bus, sid, "gone").stats()


def test_descriptor_is_level_triggered(bus):
    sub = bus.subscribe_pull("fd")
    fd = sub.fileno()
    assert fd == sub.fd >= 0

    def readable():
        return bool(select.select([fd], [], [], 0)[0])

    assert not readable()
    bus.publish("fd", "1")
    bus.publish("fd", "2")
    assert readable() and readable()  # polling does not consume
    sub.next(0)
    assert readable()
    sub.next(0)
    assert not readable()


def test_asyncio_async_for_with_publisher_thread(bus):
    sub = bus.subscribe_pull("aio.*")
    n = 200

    def publisher():
        for i in range(n):
            bus.publish("aio.x", str(i))
            if i % 50 == 0:
                time.sleep(0.01)

    async def main():
        threading.Thread(target=publisher).start()
        got = []
        async for msg in sub:
            got.append(msg.data)
            if len(got) == n:
                break
        return got

    assert asyncio.run(asyncio.wait_for(main(), 10)) == list(range(n))


def test_asyncio_call_soon_publisher_and_timeout(bus):
    sub = bus.subscribe_pull("aio")

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await sub.anext(timeout_ms=100) is None
        assert 0.08 <= loop.time() - t0 < 2
        loop.call_later(0.05, bus.publish, "aio", '"soon"')
        msg = await sub.anext(timeout_ms=5000)
        assert msg.json == '"soon"'
        # nothing left: a wait that times out looks at the queue once or twice, no busy loop
        calls = []
        real = sub._next_once
        sub._next_once = lambda t: calls.append(t) or real(t)
        assert await sub.anext(timeout_ms=200) is None
        del sub._next_once
        return calls

    calls = asyncio.run(main())
    assert 1 <= len(calls) <= 2 and set(calls) == {0}


def test_sliced_wait_on_main_thread_times_out(bus):
    sub = bus.subscribe_pull("slice")
    t0 = time.monotonic()
    assert sub.next(timeout_ms=450) is None
    assert 0.4 <= time.monotonic() - t0 < 2
    threading.Timer(0.3, bus.publish, ("slice", "5")).start()
    assert sub.next().data == 5  # no limit, still wakes up for the message


def test_asyncio_several_waiters_share_messages(bus):
    sub = bus.subscribe_pull("many")

    async def main():
        loop = asyncio.get_running_loop()
        waiters = [asyncio.ensure_future(sub.anext(5000)) for _ in range(3)]
        await asyncio.sleep(0.05)
        for i in range(3):
            loop.call_soon(bus.publish, "many", str(i))
        got = await asyncio.gather(*waiters)
        return sorted(m.data for m in got)

    assert asyncio.run(main()) == [0, 1, 2]


def test_asyncio_iteration_ends_on_close():
    b = jsonbus.Bus()
    sub = b.subscribe_pull("end")

    async def main():
        got = []

        async def consume():
            async for msg in sub:
                got.append(msg.data)

        task = asyncio.ensure_future(consume())
        b.publish("end", "1")
        await asyncio.sleep(0.1)
        b.close()  # from the loop's thread, while the consumer waits
        await asyncio.wait_for(task, 5)
        return got

    assert asyncio.run(main()) == [1]


def test_asyncio_cancelled_waiter(bus):
    sub = bus.subscribe_pull("cancel")

    async def main():
        task = asyncio.ensure_future(sub.anext())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        bus.publish("cancel", "7")
        return await sub.anext(5000)

    assert asyncio.run(main()).data == 7
