# Tests of the bindings' edge cases: Ctrl-C right after a C call returns (nothing held or
# leaked, no hang at exit), asyncio waits racing close/unsubscribe from other threads, time-outs
# beyond int32, subscribe_pull racing close, a Bus collected on its own dispatcher thread,
# cancelled arequest, and "" options.
import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import jsonbus
import jsonbus._bus
import jsonbus._callbacks
import jsonbus._ffi
import jsonbus._subscription


class _LibProxy:
    """Stands in for the ctypes library in a module: some functions replaced, the rest real."""

    def __init__(self, real, **overrides):
        self._real = real
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._real, name)


def _then_interrupt(fn):
    """``fn``, then KeyboardInterrupt: as a Ctrl-C handled right after the C call returns."""

    def call(*args):
        fn(*args)
        raise KeyboardInterrupt

    return call


def _patch_lib(monkeypatch, **overrides):
    real = jsonbus._ffi.lib
    proxy = _LibProxy(real, **overrides)
    for module in (jsonbus._ffi, jsonbus._bus, jsonbus._subscription):
        monkeypatch.setattr(module, "lib", proxy)
    return real


def _counting_string_free(real, counter):
    def free(s):
        counter.append(1)
        real.jsonbus_string_free(s)

    return free


# -- 1. Ctrl-C right after a C call returned -------------------------------------------------

def test_interrupt_after_next_returned_releases_the_message(monkeypatch):
    b = jsonbus.Bus()
    sub = b.subscribe_pull("t")
    b.publish("t", "1")
    real = jsonbus._ffi.lib
    _patch_lib(monkeypatch, jsonbus_next=_then_interrupt(real.jsonbus_next))
    with pytest.raises(KeyboardInterrupt):
        sub.next(1000)
    monkeypatch.undo()
    assert b.stats()["queued"] == 0  # not held
    t0 = time.monotonic()
    assert b.close(2000) is True  # nothing held that it would wait for
    assert time.monotonic() - t0 < 1


def test_interrupt_after_request_returned_frees_the_reply(monkeypatch):
    b = jsonbus.Bus()
    b.subscribe("echo", lambda m: b.reply(m, m.json))
    real = jsonbus._ffi.lib
    frees = []
    _patch_lib(monkeypatch, jsonbus_request=_then_interrupt(real.jsonbus_request),
               jsonbus_string_free=_counting_string_free(real, frees))
    with pytest.raises(KeyboardInterrupt):
        b.request("echo", '"x"', 5000)
    assert frees == [1]
    monkeypatch.undo()
    assert b.close(2000)


def test_interrupt_after_stats_returned_frees_the_string(monkeypatch, bus):
    sub = bus.subscribe_pull("s")
    real = jsonbus._ffi.lib
    frees = []
    _patch_lib(monkeypatch, jsonbus_stats=_then_interrupt(real.jsonbus_stats),
               jsonbus_subscription_stats=_then_interrupt(real.jsonbus_subscription_stats),
               jsonbus_string_free=_counting_string_free(real, frees))
    with pytest.raises(KeyboardInterrupt):
        bus.stats()
    with pytest.raises(KeyboardInterrupt):
        sub.stats()
    monkeypatch.undo()
    gc.collect()
    assert frees == [1, 1]


def test_interrupt_in_next_does_not_hang_the_exit_close(tmp_path):
    # The consumer script: Ctrl-C lands just as next() took a message; atexit closes the bus
    # (without a time limit), which waits for held messages.
    script = tmp_path / "consumer.py"
    script.write_text(textwrap.dedent("""
        import jsonbus, jsonbus._ffi, jsonbus._subscription
        real = jsonbus._ffi.lib
        class Proxy:
            def __getattr__(self, name):
                return getattr(real, name)
            def jsonbus_next(self, *args):
                real.jsonbus_next(*args)
                raise KeyboardInterrupt
        bus = jsonbus.Bus()
        sub = bus.subscribe_pull("jobs")
        bus.publish("jobs", "1")
        jsonbus._subscription.lib = Proxy()
        for msg in sub:
            pass
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=10)
    # (a hang raises subprocess.TimeoutExpired above)
    assert "KeyboardInterrupt" in proc.stderr and proc.returncode != 0


# -- 2. asyncio waits racing close / unsubscribe ---------------------------------------------

def test_anext_racing_close_from_another_thread_ends_cleanly(monkeypatch):
    b = jsonbus.Bus()
    sub = b.subscribe_pull("x")
    sub.fileno()  # the library's descriptor, as a first wait would have fetched it
    real_wait = jsonbus.PullSubscription._wait_readable
    kept = []

    def close_first(self, loop):
        # The window between next(0) and the registration: another thread closes the bus,
        # then something else gets the freed descriptor number.
        t = threading.Thread(target=b.close)
        t.start()
        t.join(5)
        kept.extend(os.pipe())
        return real_wait(self, loop)

    monkeypatch.setattr(jsonbus.PullSubscription, "_wait_readable", close_first)

    async def main():
        return [m async for m in sub]

    try:
        assert asyncio.run(asyncio.wait_for(main(), 3)) == []
    finally:
        for fd in kept:
            os.close(fd)
    with pytest.raises(jsonbus.ClosedError):
        sub.fileno()


def test_fileno_raises_once_released(bus):
    sub = bus.subscribe_pull("f")
    assert sub.fileno() >= 0
    sub.unsubscribe()
    with pytest.raises(jsonbus.EndedError):
        sub.fileno()


def test_unsubscribe_while_the_loop_thread_is_busy(bus):
    # A loop on another thread waits on the descriptor, then is busy when the main thread
    # unsubscribes: unsubscribe does not wait for it, and the loop never watches a closed fd.
    sub = bus.subscribe_pull("busy")
    loop = asyncio.new_event_loop()
    waiting = threading.Event()
    result = []

    async def consume():
        waiting.set()
        try:
            await sub.anext()
        except jsonbus.EndedError:
            result.append("ended")

    t = threading.Thread(target=lambda: loop.run_until_complete(consume()))
    t.start()
    try:
        assert waiting.wait(5)
        time.sleep(0.05)
        loop.call_soon_threadsafe(time.sleep, 1.0)  # the loop's thread is busy for a second
        time.sleep(0.05)
        t0 = time.monotonic()
        assert sub.unsubscribe() is True
        assert time.monotonic() - t0 < 0.5
        for key in list(loop._selector.get_map().values()):
            os.fstat(key.fd)  # every descriptor the loop watches is still open
        t.join(5)
        assert not t.is_alive() and result == ["ended"]
        assert len(loop._selector.get_map()) == 1  # only the loop's own self-pipe
    finally:
        t.join(5)
        loop.close()


# -- 3. time-outs beyond int32 ---------------------------------------------------------------

def test_timeouts_beyond_int32_are_clamped_not_wrapped(bus):
    got = []
    t = threading.Thread(target=lambda: got.append(bus.subscribe_pull("big").next(2 ** 32)))
    sub2 = bus.subscribe_pull("neg")
    t2 = threading.Thread(target=lambda: got.append(sub2.next(-2 ** 40)))
    t.start()
    t2.start()
    time.sleep(0.3)
    assert got == []  # 2**32 used to become 0, -2**40 too: both returned None at once
    bus.publish("big", "1")
    bus.publish("neg", "2")
    t.join(5)
    t2.join(5)
    assert sorted(m.data for m in got) == [1, 2]


def test_request_timeout_beyond_int32_waits(bus):
    bus.subscribe("silent", lambda m: None)
    errors = []

    def ask():
        try:
            bus.request("silent", "1", timeout_ms=2 ** 32)
        except jsonbus.Error as e:
            errors.append(e)

    t = threading.Thread(target=ask)
    t.start()
    time.sleep(0.3)
    assert errors == []  # not a TimedOutError at once
    bus.close(1000)
    t.join(5)
    assert [type(e) for e in errors] == [jsonbus.ClosedError]


def test_timeouts_must_be_ints(bus):
    sub = bus.subscribe_pull("f")
    for call in (lambda: bus.flush(3e9), lambda: sub.next(0.5),
                 lambda: bus.request("f", "1", 1.5), lambda: bus.close(100.0),
                 lambda: bus.request_async("f", "1", print, "10")):
        with pytest.raises(TypeError):
            call()
    assert bus.flush(2 ** 40) is True and bus.flush(-2 ** 40) is True


# -- 4. subscribe_pull racing close ----------------------------------------------------------

def test_subscribe_pull_racing_close_does_not_hang_it(monkeypatch):
    b = jsonbus.Bus()
    real = jsonbus._ffi.lib
    in_call = threading.Event()
    proceed = threading.Event()

    def slow_subscribe_pull(*args):
        sid = real.jsonbus_subscribe_pull(*args)
        in_call.set()
        proceed.wait(5)
        return sid

    monkeypatch.setattr(jsonbus._bus, "lib", _LibProxy(real, jsonbus_subscribe_pull=slow_subscribe_pull))
    outcome = []

    def subscriber():
        try:
            outcome.append(b.subscribe_pull("late"))
        except jsonbus.Error as e:
            outcome.append(e)

    ts = threading.Thread(target=subscriber)
    ts.start()
    assert in_call.wait(5)
    b.publish("late", "1")  # queued for the subscription close() does not know about
    tc = threading.Thread(target=b.close)
    tc.start()
    time.sleep(0.2)
    proceed.set()
    ts.join(5)
    tc.join(3)
    hung = tc.is_alive()
    if hung:  # let the close finish: release the escaped subscription by hand
        real.jsonbus_unsubscribe(b._ptr, outcome[0].id)
        tc.join(5)
    assert not hung
    assert [type(o) for o in outcome] == [jsonbus.ClosedError]
    with pytest.raises(jsonbus.ClosedError):
        b.subscribe("x", print)


def test_subscribe_during_close_raises_closed(monkeypatch):
    b = jsonbus.Bus()
    sub = b.subscribe_pull("held")
    b.publish("held", "1")
    errors = []

    def subscribe_now(*args):  # runs inside close(), after it began
        for call in (lambda: b.subscribe("y", print), lambda: b.subscribe_pull("y")):
            try:
                call()
            except jsonbus.ClosedError as e:
                errors.append(e)
        return real.jsonbus_close(*args)

    real = jsonbus._ffi.lib
    monkeypatch.setattr(jsonbus._bus, "lib", _LibProxy(real, jsonbus_close=subscribe_now))
    b.close()
    assert len(errors) == 2 and sub.stats  # (sub kept alive)


# -- 5. a Bus collected on its own dispatcher thread -----------------------------------------

def test_bus_collected_on_its_dispatcher_thread_before_the_mark(monkeypatch):
    # As when cyclic GC runs the finalizer inside ctypes, before the callback trampoline
    # marks the thread: in_callback_of() says no, jsonbus_free returns DEADLOCK.
    monkeypatch.setattr(jsonbus._callbacks, "in_callback_of", lambda addr: False)
    for _ in range(2):
        b = jsonbus.Bus()
        holder = [b]
        go = threading.Event()
        ended = threading.Event()
        # The callback drops the last reference to the bus, on the bus's dispatcher thread.
        b.subscribe("x", lambda m: (go.wait(5), holder.clear()),
                    on_end=lambda sid, reason: ended.set())
        b.publish("x", "1")
        del b
        go.set()
        assert ended.wait(5)  # the bus was freed (by the helper thread)
    pending = list(jsonbus._bus._pending_frees)
    assert len(pending) <= 1  # finished helpers are pruned
    for t in pending:
        t.join(5)


# -- 6. cancelled arequest, "" options -------------------------------------------------------

def test_cancelled_arequest_drops_its_registration(bus):
    bus.subscribe("silent", lambda m: None)
    before = len(jsonbus._callbacks._states)

    async def main():
        task = asyncio.ensure_future(bus.arequest("silent", "1"))  # no time limit
        await asyncio.sleep(0.05)
        assert len(jsonbus._callbacks._states) == before + 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(jsonbus._callbacks._states) == before
    assert bus.stats()["requests_waiting"] == 1  # still outstanding in the library
    assert bus.close(100) is True  # its callback finds nothing and returns


def test_empty_options_mean_defaults():
    with jsonbus.Bus("") as b:
        assert b.stats()["dispatcher_threads"] == 1
        sub = b.subscribe_pull("e", "")
        s = b.subscribe("e", print, b"")
        assert sub.stats()["queue_limit"] == 0 and s.stats()["on_full"] == "block"
    with jsonbus.Bus({}) as b:
        assert b.stats()["dispatcher_threads"] == 1
