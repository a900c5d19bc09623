# Tests of the library-wide surface: loading, version, clock, constants, stats, options errors.
import os
import time

import pytest

import jsonbus


def test_loaded_library_and_version():
    assert os.path.isfile(jsonbus.library_path)
    assert jsonbus.version().count(".") == 2
    if os.environ.get("JSONBUS_EXPECT_INSTALLED") and not os.environ.get("JSONBUS_LIBRARY"):
        # run_tests.sh: the installed package, with the library bundled in the wheel.
        pkg = os.path.dirname(os.path.abspath(jsonbus.__file__))
        assert "site-packages" in pkg
        assert os.path.dirname(os.path.abspath(jsonbus.library_path)) == os.path.join(pkg, "_lib")


def test_now_ns_is_monotonic():
    a = jsonbus.now_ns()
    time.sleep(0.002)
    b = jsonbus.now_ns()
    assert b - a >= 1_000_000


def test_constants_match_the_library_names():
    names = {
        "OK": "JSONBUS_OK", "UNSUBSCRIBE": "JSONBUS_UNSUBSCRIBE", "ERR_JSON": "JSONBUS_ERR_JSON",
        "ERR_TOPIC": "JSONBUS_ERR_TOPIC", "ERR_CLOSED": "JSONBUS_ERR_CLOSED",
        "ERR_TIMEOUT": "JSONBUS_ERR_TIMEOUT", "ERR_NO_RESPONDERS": "JSONBUS_ERR_NO_RESPONDERS",
        "ERR_ENDED": "JSONBUS_ERR_ENDED", "ERR_DEADLOCK": "JSONBUS_ERR_DEADLOCK",
    }
    for attr, cname in names.items():
        assert jsonbus.status_name(getattr(jsonbus, attr)) == cname
    assert jsonbus.OK == 0 and jsonbus.UNSUBSCRIBE > 0 and jsonbus.ERR_JSON < 0
    assert jsonbus.end_reason_name(jsonbus.END_SLOW) == "JSONBUS_END_SLOW"
    assert jsonbus.status_name(12345) == "JSONBUS_UNKNOWN_STATUS"


def test_bad_options_raise_options_error():
    with pytest.raises(jsonbus.OptionsError) as info:
        jsonbus.Bus({"no_such_option": 1})
    err = info.value
    assert err.status == jsonbus.ERR_OPTIONS
    assert err.name == "JSONBUS_ERR_OPTIONS"
    assert "no_such_option" in err.message
    with pytest.raises(jsonbus.OptionsError) as info:
        jsonbus.Bus({"dispatcher_threads": 100000})
    assert "dispatcher_threads" in info.value.message


def test_stats_keys(bus):
    s = bus.stats()
    for key in ("published", "delivered", "unrouted", "dropped", "queued", "subscriptions",
                "callback_failures", "dispatcher_threads", "rejected"):
        assert key in s
    assert s["dispatcher_threads"] == 2
    assert set(s["rejected"]) >= {"json", "utf8", "topic", "too_large", "full", "closed"}


def test_context_manager_closes():
    with jsonbus.Bus() as b:
        b.publish("a", "1")
    assert b.closed
    assert b.close() is True  # second close: the first one's result
    assert b.flush() is True  # as the C API on a closed bus
    assert b.stats()["published"] == 1  # the final counters
