# Tests of one bus shared across processes (Bus.serve, jsonbus.attach; Linux): serve and attach
# in one process, a child process attached through the installed package, the error classes,
# a peer after its hub closed (DisconnectedError, END_PEER_GONE), a stalled and a killed peer,
# the hub's stats keys, fork, asyncio, and Ctrl-C during an attach's wait.
#
# Every test gets a private name directory: XDG_RUNTIME_DIR is set to a fresh 0700 directory
# (short, as a Unix socket's path is limited to 108 bytes) before the first serve or attach;
# the library reads it at each call.
import _thread
import asyncio
import gc
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import weakref

import pytest

import jsonbus
import jsonbus._bus
import jsonbus._ffi

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="serve/attach are built on Linux only")


@pytest.fixture
def runtime_dir(monkeypatch):
    """A fresh private XDG_RUNTIME_DIR; the library makes its ``jsonbus`` directory in it."""
    d = tempfile.mkdtemp(prefix="jb-")  # mode 0700
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    monkeypatch.setenv("XDG_RUNTIME_DIR", d)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def closing():
    """``closing(bus)`` returns ``bus`` and closes it after the test (the last one first: peers
    before their hub), whatever the test did."""
    buses = []

    def track(bus):
        buses.append(bus)
        return bus

    yield track
    for bus in reversed(buses):
        try:
            bus.close(timeout_ms=5000)
        except jsonbus.Error:
            pass


def _name_files(runtime_dir):
    d = os.path.join(runtime_dir, "jsonbus")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.01)


def _peer_counts(hub):
    s = hub.stats()
    return s["peers"], s["peers_gone"], s["peers_dropped"]


def _child_env():
    """The environment of a child process: this one's (XDG_RUNTIME_DIR, JSONBUS_LIBRARY...),
    with the directory the jsonbus package was imported from on PYTHONPATH."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(jsonbus.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    return env


# -- 1. serve and attach in one process ------------------------------------------------------

def test_serve_and_attach_in_one_process(runtime_dir, closing):
    hub = closing(jsonbus.Bus({"dispatcher_threads": 2}))
    assert hub.serve("t1") is None
    assert hub.name == "t1" and not hub.attached and "serving 't1'" in repr(hub)
    assert _name_files(runtime_dir) == ["t1.lock", "t1.sock"]
    a = closing(jsonbus.attach("t1"))
    b = closing(jsonbus.Bus.attach("t1", {"dispatcher_threads": 2}))
    assert isinstance(a, jsonbus.Bus) and a.attached and a.name == "t1"
    assert "attached to 't1'" in repr(a)

    # Publish both ways, one seq order: every subscription sees the same messages in the same
    # order, whichever process published them.
    subs = [bus.subscribe_pull("x.>") for bus in (hub, a, b)]
    publishers = [hub, a, b, a, hub, b, hub, a]
    for i, bus in enumerate(publishers):
        bus.publish("x.%d" % i, json.dumps({"i": i}))
    seen = [[(m.seq, m.topic, m.json) for m in (s.next(timeout_ms=5000) for _ in publishers)]
            for s in subs]
    assert seen[0] == seen[1] == seen[2]
    seqs = [seq for seq, _, _ in seen[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Each publisher's own messages in its own order.
    for bus in (hub, a, b):
        mine = [i for i, p in enumerate(publishers) if p is bus]
        assert [json.loads(j)["i"] for _, _, j in seen[0] if json.loads(j)["i"] in mine] == mine
    for s in subs:
        assert s.next(timeout_ms=0) is None
        s.unsubscribe()

    # flush through an attached handle waits for the hub's callbacks, and the hub's flush for
    # the attached processes' callbacks.
    at_hub, at_peer = [], []

    def slow_hub(msg):
        time.sleep(0.005)
        at_hub.append(msg.data)

    def slow_peer(msg):
        time.sleep(0.005)
        at_peer.append(msg.data)

    hub.subscribe("to.hub", slow_hub)
    a.subscribe("to.peer", slow_peer)
    for i in range(20):
        a.publish("to.hub", str(i))
    assert a.flush(timeout_ms=10000) is True
    assert at_hub == list(range(20))
    for i in range(20):
        hub.publish("to.peer", str(i))
    assert hub.flush(timeout_ms=10000) is True
    assert at_peer == list(range(20))

    # Request/reply across, both ways, and requests between two attached processes.
    hub.subscribe("svc.hub", lambda m: hub.reply(m, json.dumps({"hub": m.data})))
    a.subscribe("svc.a", lambda m: a.reply(m, json.dumps({"a": m.data})))
    assert json.loads(b.request("svc.hub", "1", timeout_ms=5000)) == {"hub": 1}
    assert json.loads(hub.request("svc.a", "2", timeout_ms=5000)) == {"a": 2}
    assert json.loads(b.request("svc.a", "3", timeout_ms=5000)) == {"a": 3}
    with pytest.raises(jsonbus.NoRespondersError):
        a.request("svc.nobody", "1", timeout_ms=1000)
    replies = []
    done = threading.Event()
    b.request_async("svc.hub", "4", lambda st, r: (replies.append((st, r.json)), done.set()),
                    timeout_ms=5000)
    assert done.wait(5) and replies == [(jsonbus.OK, '{"hub": 4}')]

    async def unanswered():
        return await a.arequest("svc.nobody", "1", timeout_ms=5000)

    # (The library answers an attached bus's request_async without responders through the
    # callback; arequest raises NoRespondersError either way.)
    with pytest.raises(jsonbus.NoRespondersError) as info:
        asyncio.run(unanswered())
    assert "svc.nobody" in info.value.message

    # Timers on an attached bus.
    with hub.subscribe_pull("timer.>") as timed:
        a.publish_after("timer.fired", '"late"', 20)
        cancelled = a.publish_after("timer.cancelled", '"never"', 60000)
        assert a.cancel(cancelled) is True and a.cancel(cancelled) is False
        msg = timed.next(timeout_ms=5000)
        assert (msg.topic, msg.data) == ("timer.fired", "late")
        assert timed.next(timeout_ms=100) is None

    # Stats: the hub counts the peers; an attached bus counts what went through it.
    peers, gone, dropped = _peer_counts(hub)
    assert (peers, gone, dropped) == (2, 0, 0)
    sa = a.stats()
    assert sa["published"] >= 20 + 3 and sa["delivered"] >= 20
    assert "peers" not in sa

    # The context manager closes an attached bus; the hub sees it go.
    with jsonbus.attach("t1") as c:
        c.publish("x.c", "1")
        assert _peer_counts(hub)[0] == 3
    assert c.closed
    with pytest.raises(jsonbus.ClosedError):
        c.publish("x.c", "1")
    assert _wait_until(lambda: _peer_counts(hub) == (2, 1, 0))

    assert a.close(timeout_ms=5000) is True and b.close(timeout_ms=5000) is True
    assert _wait_until(lambda: _peer_counts(hub) == (0, 3, 0))
    assert hub.close(timeout_ms=5000) is True
    assert _name_files(runtime_dir) == []  # both files go when the hub stops


def test_asyncio_on_an_attached_bus(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("aio")
    peer = closing(jsonbus.attach("aio"))
    hub.subscribe("svc", lambda m: hub.reply(m, m.json))

    async def main():
        sub = peer.subscribe_pull("news")
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, hub.publish, "news", '"hello"')
        msg = await sub.anext(timeout_ms=5000)
        reply = await peer.arequest("svc", '{"q": 1}', timeout_ms=5000)
        sub.unsubscribe()
        return msg.data, reply

    assert asyncio.run(main()) == ("hello", '{"q": 1}')


# -- 2. a child process ----------------------------------------------------------------------

_CHILD = textwrap.dedent('''
    import json, os, sys
    import jsonbus
    name = sys.argv[1]
    with jsonbus.attach(name, {"connect_timeout_ms": 10000}) as bus:
        assert bus.attached and bus.name == name
        with bus.subscribe_pull("to.child") as sub:
            bus.publish("child.ready", json.dumps({"pid": os.getpid()}))
            msg = sub.next(timeout_ms=10000)
            assert msg is not None, "nothing came from the hub"
            reply = bus.request("hub.echo", msg.json, timeout_ms=10000)
            bus.publish("child.done", json.dumps({"seq": msg.seq, "reply": reply}))
            assert bus.flush(timeout_ms=10000)
            published = bus.stats()["published"]
    print("child ok", published)
''')


def test_attach_from_a_child_process(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("kid")
    hub.subscribe("hub.echo", lambda m: hub.reply(m, json.dumps({"echo": m.data})))
    got = hub.subscribe_pull("child.>")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, "kid"], env=_child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = got.next(timeout_ms=30000)
        assert ready is not None and ready.topic == "child.ready", proc.stderr
        assert ready.data["pid"] == proc.pid != os.getpid()
        assert _peer_counts(hub)[0] == 1
        hub.publish("to.child", '{"n": 42}')
        done = got.next(timeout_ms=30000)
        assert done is not None and done.topic == "child.done"
        assert json.loads(done.data["reply"]) == {"echo": {"n": 42}}
        assert ready.seq < done.data["seq"] < done.seq  # one order for both processes
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.split() == ["child", "ok", "3"]  # ready, the request, done
    assert _wait_until(lambda: _peer_counts(hub) == (0, 1, 0))


_SLEEPER = textwrap.dedent('''
    import sys, time
    import jsonbus
    bus = jsonbus.attach(sys.argv[1], {"connect_timeout_ms": 10000})
    bus.subscribe("to.sleeper", lambda m: None)
    pull = bus.subscribe_pull("to.sleeper")  # (kept: a collected PullSubscription unsubscribes)
    print("ready", flush=True)
    time.sleep(60)
''')


def test_the_hub_notices_a_killed_child(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("kill")
    proc = subprocess.Popen([sys.executable, "-c", _SLEEPER, "kill"], env=_child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        assert _peer_counts(hub)[0] == 1
        assert hub.stats()["subscriptions"] >= 2
        for i in range(10):
            hub.publish("to.sleeper", str(i))  # (held for the child's subscriptions)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    # The contract says within 100 ms; allow a loaded machine more.
    assert _wait_until(lambda: _peer_counts(hub) == (0, 1, 0))
    assert _wait_until(lambda: hub.stats()["subscriptions"] == 0)
    assert hub.flush(timeout_ms=5000) is True  # nothing held for the dead process
    assert hub.stats()["queued"] == 0


# -- 3. errors -------------------------------------------------------------------------------

def test_error_classes_and_constants():
    pairs = {
        "NoBusError": "ERR_NO_BUS", "NameInUseError": "ERR_NAME_IN_USE",
        "PermissionDeniedError": "ERR_PERMISSION", "DisconnectedError": "ERR_DISCONNECTED",
        "PeerError": "ERR_PEER", "LimitError": "ERR_LIMIT",
    }
    for cls_name, const in pairs.items():
        cls = getattr(jsonbus, cls_name)
        code = getattr(jsonbus, const)
        assert code < 0 and jsonbus.status_name(code) == "JSONBUS_" + const
        assert issubclass(cls, jsonbus.Error) and cls.c_name == "JSONBUS_" + const
        assert cls_name in jsonbus.__all__ and const in jsonbus.__all__
    assert (jsonbus.ERR_NO_BUS, jsonbus.ERR_NAME_IN_USE, jsonbus.ERR_PERMISSION,
            jsonbus.ERR_DISCONNECTED, jsonbus.ERR_PEER, jsonbus.ERR_LIMIT) == (-16, -17, -18, -19, -20, -21)
    assert jsonbus.END_PEER_GONE == 6
    assert jsonbus.end_reason_name(jsonbus.END_PEER_GONE) == "JSONBUS_END_PEER_GONE"
    # Not the builtin (an OSError with an errno), and not shadowing it.
    assert not issubclass(jsonbus.PermissionDeniedError, PermissionError)
    assert "PermissionError" not in jsonbus.__all__
    assert "attach" in jsonbus.__all__


def test_attach_with_nobody_serving_raises_no_bus_error(runtime_dir):
    t0 = time.monotonic()
    with pytest.raises(jsonbus.NoBusError) as info:
        jsonbus.attach("nobody", {"connect_timeout_ms": 0})
    assert time.monotonic() - t0 < 0.5
    err = info.value
    assert err.status == jsonbus.ERR_NO_BUS and err.name == "JSONBUS_ERR_NO_BUS"
    assert '"nobody"' in err.message
    # A wait longer than one slice (on the main thread): the message names the wait asked for.
    t0 = time.monotonic()
    with pytest.raises(jsonbus.NoBusError) as info:
        jsonbus.attach("nobody", '{"connect_timeout_ms": 450}')
    assert 0.4 <= time.monotonic() - t0 < 3
    assert "(450 ms)" in info.value.message


def test_attach_waits_for_a_hub_served_later(runtime_dir, closing):
    hubs = []

    def serve_later():
        time.sleep(0.4)
        hub = jsonbus.Bus()
        hub.serve("later")
        hubs.append(hub)

    t = threading.Thread(target=serve_later)
    t.start()
    try:
        peer = closing(jsonbus.attach("later", {"connect_timeout_ms": -1}))
    finally:
        t.join()
        for hub in hubs:
            closing(hub)
    with hubs[0].subscribe_pull("hi") as sub:
        peer.publish("hi", "1")
        assert sub.next(timeout_ms=5000).json == "1"


def test_ctrl_c_interrupts_an_attach_waiting_without_limit(runtime_dir):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread (signals)")
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            jsonbus.attach("never", {"connect_timeout_ms": -1})
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 3  # 0.3 s, then at most one 200 ms slice (more when loaded)


def test_ctrl_c_right_after_attach_returned_frees_the_handle(runtime_dir, closing, monkeypatch):
    hub = closing(jsonbus.Bus())
    hub.serve("intr")
    real = jsonbus._ffi.lib

    class Proxy:
        def __getattr__(self, name):
            return getattr(real, name)

        def jsonbus_attach(self, *args):
            real.jsonbus_attach(*args)  # the handle it returned is dropped here, unowned
            raise KeyboardInterrupt

    monkeypatch.setattr(jsonbus._bus, "lib", Proxy())
    with pytest.raises(KeyboardInterrupt):
        jsonbus.attach("intr")
    monkeypatch.undo()
    gc.collect()
    # Freed (not leaked with its threads and a peer slot): the hub sees it go.
    assert _wait_until(lambda: _peer_counts(hub) == (0, 1, 0))


def test_a_second_serve_raises_name_in_use_error(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("taken")
    other = closing(jsonbus.Bus())
    with pytest.raises(jsonbus.NameInUseError) as info:
        other.serve("taken")
    assert info.value.status == jsonbus.ERR_NAME_IN_USE and '"taken"' in info.value.message
    assert other.name is None
    with pytest.raises(jsonbus.NameInUseError):
        hub.serve("another")  # a bus serves one name
    with pytest.raises(jsonbus.NameInUseError):
        hub.serve("taken")
    assert hub.name == "taken"
    # Once the hub stops, the name is free again.
    hub.close()
    other.serve("taken")
    assert other.name == "taken"


def test_malformed_names_raise_topic_error(runtime_dir, closing):
    bus = closing(jsonbus.Bus())
    for bad in (".x", "", "a/b", "a b", "x" * 65, "caf\u00e9", "a\0b", b".x"):
        with pytest.raises(jsonbus.TopicError):
            bus.serve(bad)
        with pytest.raises(jsonbus.TopicError):
            jsonbus.attach(bad, {"connect_timeout_ms": 0})
    with pytest.raises(jsonbus.TopicError) as info:
        bus.serve(".x")
    assert "'.'" in info.value.message  # the rule
    with pytest.raises(TypeError):
        bus.serve(7)
    with pytest.raises(TypeError):
        jsonbus.attach(None)
    assert bus.name is None
    bus.serve(b"x" * 64)  # the longest name, as bytes
    assert bus.name == "x" * 64


def test_bad_options_raise_options_error(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    for opts, key in (({"max_peers": 0}, "max_peers"), ({"peer_ring_bytes": 100000}, "peer_ring_bytes"),
                      ({"no_such": 1}, "no_such"), ('{"allow_group": 2}', "allow_group")):
        with pytest.raises(jsonbus.OptionsError) as info:
            hub.serve("opts", opts)
        assert key in info.value.message
    hub.serve("opts", {"max_peers": 4, "peer_ring_bytes": 65536})
    # The hub's options are refused in attach options.
    with pytest.raises(jsonbus.OptionsError) as info:
        jsonbus.attach("opts", {"max_depth": 3})
    assert "max_depth" in info.value.message
    with pytest.raises(jsonbus.OptionsError) as info:
        jsonbus.attach("opts", {"max_message_bytes": 1000})
    assert "max_message_bytes" in info.value.message
    for opts in ({"connect_timeout_ms": -2}, {"connect_timeout_ms": 1.5}, '{"connect_timeout_ms": "x"}',
                 "[1]", "{"):
        with pytest.raises(jsonbus.OptionsError):
            jsonbus.attach("opts", opts)
    assert _peer_counts(hub)[0] == 0


def test_max_peers_raises_limit_error(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("lim", {"max_peers": 1})
    first = closing(jsonbus.attach("lim"))
    with pytest.raises(jsonbus.LimitError) as info:
        jsonbus.attach("lim")
    assert info.value.status == jsonbus.ERR_LIMIT and "max_peers" in info.value.message
    first.close()
    assert _wait_until(lambda: _peer_counts(hub)[0] == 0)
    second = closing(jsonbus.attach("lim"))  # the slot is free again
    with hub.subscribe_pull("x") as sub:
        second.publish("x", "2")
        assert sub.next(timeout_ms=5000).json == "2"


def test_a_name_directory_open_to_others_raises_permission_denied(runtime_dir, closing):
    d = os.path.join(runtime_dir, "jsonbus")
    os.mkdir(d)
    os.chmod(d, 0o755)
    bus = closing(jsonbus.Bus())
    with pytest.raises(jsonbus.PermissionDeniedError) as info:
        bus.serve("perm")
    err = info.value
    assert err.status == jsonbus.ERR_PERMISSION and err.name == "JSONBUS_ERR_PERMISSION"
    assert isinstance(err, jsonbus.Error) and not isinstance(err, OSError)
    assert err.message
    with pytest.raises(jsonbus.PermissionDeniedError):
        jsonbus.attach("perm", {"connect_timeout_ms": 0})
    assert os.listdir(d) == []
    # Closed to others again, it works.
    os.chmod(d, 0o700)
    bus.serve("perm")
    closing(jsonbus.attach("perm")).publish("x", "1")


def test_serve_on_an_attached_or_closed_bus(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("h")
    peer = closing(jsonbus.attach("h"))
    with pytest.raises(jsonbus.UnsupportedError):
        peer.serve("h2")
    closed = jsonbus.Bus()
    closed.close()
    with pytest.raises(jsonbus.ClosedError):
        closed.serve("h3")


# -- 4. the hub goes away --------------------------------------------------------------------

def test_a_peer_after_the_hub_closed(runtime_dir, closing):
    hub = jsonbus.Bus()
    hub.serve("gone")
    peer = closing(jsonbus.attach("gone"))
    ends = []
    cb_sub = peer.subscribe("to.peer", lambda m: None, on_end=lambda sid, reason: ends.append((sid, reason)))
    pull = peer.subscribe_pull("to.peer")
    hub.subscribe("svc.silent", lambda m: None)  # a responder that never answers
    statuses = []
    answered = threading.Event()
    peer.request_async("svc.silent", "1", lambda st, r: (statuses.append((st, r)), answered.set()),
                       timeout_ms=60000)
    for i in range(3):
        hub.publish("to.peer", str(i))
    # The peer's pull subscription holds three deliveries nobody takes: a hub's close waits for
    # what it delivered to attached processes as for its own queue, then discards it (False).
    assert hub.close(timeout_ms=200) is False
    # (Not at once: the peer, seeing its hub gone, briefly re-creates and removes the lock file.)
    assert _wait_until(lambda: _name_files(runtime_dir) == [])

    # The subscriptions end with END_PEER_GONE once what they had received is delivered.
    assert cb_sub.wait_ended(5)
    assert cb_sub.end_reason == jsonbus.END_PEER_GONE
    assert ends == [(cb_sub.id, jsonbus.END_PEER_GONE)]
    assert [m.json for m in pull] == ["0", "1", "2"]  # the queue, then the iteration ends
    with pytest.raises(jsonbus.EndedError) as info:
        pull.next(timeout_ms=0)
    assert "PEER_GONE" in info.value.message
    # The waiting request ends with DISCONNECTED.
    assert answered.wait(5) and statuses == [(jsonbus.ERR_DISCONNECTED, None)]

    # Calls that need the hub raise DisconnectedError.
    with pytest.raises(jsonbus.DisconnectedError) as info:
        peer.publish("x", "1")
    err = info.value
    assert err.status == jsonbus.ERR_DISCONNECTED and err.name == "JSONBUS_ERR_DISCONNECTED"
    assert '"gone"' in err.message
    with pytest.raises(jsonbus.DisconnectedError):
        peer.flush(timeout_ms=1000)
    with pytest.raises(jsonbus.DisconnectedError):
        peer.request("svc.silent", "1", timeout_ms=1000)
    with pytest.raises(jsonbus.DisconnectedError):
        peer.subscribe("x", lambda m: None)
    with pytest.raises(jsonbus.DisconnectedError):
        peer.subscribe_pull("x")

    async def arequest():
        return await peer.arequest("svc.silent", "1", timeout_ms=1000)

    with pytest.raises(jsonbus.DisconnectedError):
        asyncio.run(arequest())
    # What does not need the hub still works, and so does close.
    assert peer.stats()["delivered"] >= 3
    assert pull.unsubscribe() is True
    assert peer.close(timeout_ms=5000) is True
    assert peer.closed
    with pytest.raises(jsonbus.ClosedError):
        peer.publish("x", "1")


def test_a_stalled_peer_is_dropped(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("stall", {"peer_stall_timeout_ms": 100, "peer_ring_bytes": 65536})
    peer = closing(jsonbus.attach("stall"))
    gate = threading.Event()
    # Its link is held up by a full "block" queue whose callback waits: the ring fills.
    sub = peer.subscribe("slow", lambda m: gate.wait(10) and None,
                         {"queue_limit": 1, "on_full": "block"})
    payload = json.dumps("x" * 1000)
    try:
        for _ in range(100):  # 100 kB: more than the 64 kB ring
            hub.publish("slow", payload)
        assert _wait_until(lambda: _peer_counts(hub) == (0, 0, 1))
    finally:
        gate.set()
    assert sub.wait_ended(5) and sub.end_reason == jsonbus.END_PEER_GONE
    with pytest.raises(jsonbus.DisconnectedError) as info:
        peer.publish("x", "1")
    assert "peer_stall_timeout_ms" in info.value.message
    assert hub.stats()["queued"] == 0


def test_hub_stats_keys(runtime_dir, closing):
    plain = closing(jsonbus.Bus())
    assert not {"peers", "peers_gone", "peers_dropped"} & set(plain.stats())  # only once serving
    hub = closing(jsonbus.Bus())
    hub.serve("stats")
    s = hub.stats()
    for key in ("peers", "peers_gone", "peers_dropped"):
        assert type(s[key]) is int
    assert _peer_counts(hub) == (0, 0, 0)
    p1 = jsonbus.attach("stats")
    p2 = closing(jsonbus.attach("stats"))
    assert _peer_counts(hub) == (2, 0, 0)
    p2.subscribe("a", lambda m: None)
    assert hub.stats()["subscriptions"] == 1  # an attached process's subscription, at the hub
    hub.publish("a", "1")
    p1.publish("b", "2")
    assert hub.flush(timeout_ms=5000) and p1.flush(timeout_ms=5000)
    s = hub.stats()
    assert s["published"] == 2  # every message of the logical bus passes through the hub
    assert s["delivered"] == 0  # deliveries to attached processes count there
    assert p2.stats()["delivered"] == 1 and p1.stats()["published"] == 1
    p1.close()
    assert _wait_until(lambda: _peer_counts(hub) == (1, 1, 0))
    hub.close()
    # The library reports the peer keys only while the bus serves: the final stats of a closed
    # hub may lack them (see the README); where present they count the close's disconnects.
    final = hub.stats()
    assert final["published"] == 2
    if "peers_gone" in final:
        assert (final["peers"], final["peers_gone"]) == (0, 2)


# -- 5. fork ---------------------------------------------------------------------------------

def test_a_forked_child_gets_disconnected_and_frees_nothing(runtime_dir, closing):
    hub = closing(jsonbus.Bus())
    hub.serve("fork")
    box = [jsonbus.attach("fork")]  # (not in `closing`: the child drops the last reference)
    peer = box[0]
    got = hub.subscribe_pull("f")
    try:
        del peer
        status = _fork(_in_forked_child, box)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        peer = box[0]
        # The parent's handle is untouched: the child did not free (or say goodbye on) it.
        peer.publish("f", '"parent"')
        assert got.next(timeout_ms=5000).data == "parent"
        assert got.next(timeout_ms=100) is None  # nothing from the child
        assert _peer_counts(hub) == (1, 0, 0)
    finally:
        box[0].close(timeout_ms=5000)


def _in_forked_child(box):
    """Runs in the child: 0 if the parent's attached Bus raised DisconnectedError (publish and
    close) and was collected without being freed; another code says which step failed."""
    peer = box.pop()
    try:
        peer.publish("f", '"child"')
        return 2
    except jsonbus.DisconnectedError:
        pass
    try:
        peer.close()
        return 3
    except jsonbus.DisconnectedError:
        pass
    if peer.closed:
        return 4
    ref = weakref.ref(peer)
    del peer
    gc.collect()  # runs Bus.__del__, which must leave the parent's handle alone
    return 0 if ref() is None else 5


def _fork(fn, *args):
    """fn(*args) in a forked child, which exits with its result at once (os._exit); returns
    the child's wait status (killed after 20 s: a hang fails the test)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn(*args)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")
