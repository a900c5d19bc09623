# Tests of request/reply: a callback responder, a pull responder replying later, no
# responders, timeouts, request_async and arequest on asyncio.
import asyncio
import threading

import pytest

import jsonbus


def test_request_reply_round_trip(bus):
    def double(msg):
        assert msg.reply_to.startswith("_INBOX.")
        bus.reply(msg, '{"twice": %d}' % (msg.data["n"] * 2))

    bus.subscribe("math.double", double)
    for n in range(5):
        assert bus.request("math.double", '{"n": %d}' % n, 5000) == '{"twice": %d}' % (2 * n)
    s = bus.stats()
    assert s["requests"] == 5 and s["requests_waiting"] == 0


def test_request_with_utf8_reply(bus):
    bus.subscribe("echo", lambda m: bus.reply(m, m.json))
    assert bus.request("echo", '"héllo ✓ 🎉"', 5000) == '"héllo ✓ 🎉"'


def test_reply_from_pull_subscriber_thread(bus):
    sub = bus.subscribe_pull("svc")

    def server():
        msg = sub.next(5000)
        bus.reply(msg, '"pulled"')

    t = threading.Thread(target=server)
    t.start()
    assert bus.request("svc", "1", 5000) == '"pulled"'
    t.join()


def test_request_errors(bus):
    with pytest.raises(jsonbus.NoRespondersError) as info:
        bus.request("nobody", "1", 1000)
    assert info.value.name == "JSONBUS_ERR_NO_RESPONDERS"
    bus.subscribe("silent", lambda m: None)
    with pytest.raises(jsonbus.TimedOutError) as info:
        bus.request("silent", "1", 50)
    assert info.value.name == "JSONBUS_ERR_TIMEOUT"
    with pytest.raises(jsonbus.NotFoundError):
        bus.reply(jsonbus.Message("t", "1"), "2")  # not a request
    with pytest.raises(jsonbus.JsonError):
        bus.request("silent", "{", 50)


def test_request_async_and_arequest(bus):
    bus.subscribe("add", lambda m: bus.reply(m, str(sum(m.data))))
    done = threading.Event()
    result = []

    def on_reply(status, reply):
        result.append((status, reply.json if reply else None))
        done.set()

    bus.request_async("add", "[1, 2]", on_reply, 5000)
    assert done.wait(5) and result == [(jsonbus.OK, "3")]

    async def main():
        a = await bus.arequest("add", "[2, 3]", 5000)
        bus.subscribe("slow", lambda m: None)
        with pytest.raises(jsonbus.TimedOutError):
            await bus.arequest("slow", "1", 50)
        return a

    assert asyncio.run(main()) == "5"
    with pytest.raises(jsonbus.NoRespondersError):
        bus.request_async("nobody", "1", on_reply, 100)


def test_request_async_from_callback(bus):
    bus.subscribe("inner", lambda m: bus.reply(m, '"inner"'))
    def outer(msg):
        def on_reply(status, reply):
            bus.reply(msg, reply.json)

        bus.request_async("inner", "1", on_reply, 5000)

    bus.subscribe("outer", outer)
    assert bus.request("outer", "1", 5000) == '"inner"'
