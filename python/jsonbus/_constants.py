# Status codes (JSONBUS_OK, JSONBUS_UNSUBSCRIBE, JSONBUS_ERR_*) and end reasons
# (JSONBUS_END_*) as Python ints, read from the loaded library by name.
"""jsonbus status codes and end reasons.

The contract fixes the names and signs, not the numbers, so each value is looked up in the
loaded library by name (``jsonbus_status_name`` / ``jsonbus_end_reason_name``); the number
after the name is the header's value, used only if this library does not know the name.
"""

from ._ffi import END_REASONS, STATUS_CODES


def _status(name, header_value):
    return STATUS_CODES.get(name, header_value)


def _end(name, header_value):
    return END_REASONS.get(name, header_value)


#: Success.
OK = _status("JSONBUS_OK", 0)
#: Return it from a callback to end its subscription.
UNSUBSCRIBE = _status("JSONBUS_UNSUBSCRIBE", 1)
ERR_NULL = _status("JSONBUS_ERR_NULL", -1)
ERR_UTF8 = _status("JSONBUS_ERR_UTF8", -2)
ERR_JSON = _status("JSONBUS_ERR_JSON", -3)
ERR_TOPIC = _status("JSONBUS_ERR_TOPIC", -4)
ERR_TOO_LARGE = _status("JSONBUS_ERR_TOO_LARGE", -5)
ERR_FULL = _status("JSONBUS_ERR_FULL", -6)
ERR_TIMEOUT = _status("JSONBUS_ERR_TIMEOUT", -7)
ERR_CLOSED = _status("JSONBUS_ERR_CLOSED", -8)
ERR_NOT_FOUND = _status("JSONBUS_ERR_NOT_FOUND", -9)
ERR_DEADLOCK = _status("JSONBUS_ERR_DEADLOCK", -10)
ERR_OPTIONS = _status("JSONBUS_ERR_OPTIONS", -11)
ERR_INTERNAL = _status("JSONBUS_ERR_INTERNAL", -12)
ERR_ENDED = _status("JSONBUS_ERR_ENDED", -13)
ERR_UNSUPPORTED = _status("JSONBUS_ERR_UNSUPPORTED", -14)
ERR_NO_RESPONDERS = _status("JSONBUS_ERR_NO_RESPONDERS", -15)
# A bus shared across processes (Bus.serve, jsonbus.attach):
ERR_NO_BUS = _status("JSONBUS_ERR_NO_BUS", -16)
ERR_NAME_IN_USE = _status("JSONBUS_ERR_NAME_IN_USE", -17)
ERR_PERMISSION = _status("JSONBUS_ERR_PERMISSION", -18)
ERR_DISCONNECTED = _status("JSONBUS_ERR_DISCONNECTED", -19)
ERR_PEER = _status("JSONBUS_ERR_PEER", -20)
ERR_LIMIT = _status("JSONBUS_ERR_LIMIT", -21)

END_UNSUBSCRIBED = _end("JSONBUS_END_UNSUBSCRIBED", 1)
END_RETURNED = _end("JSONBUS_END_RETURNED", 2)
END_SLOW = _end("JSONBUS_END_SLOW", 3)
END_FAILED = _end("JSONBUS_END_FAILED", 4)
END_CLOSED = _end("JSONBUS_END_CLOSED", 5)
#: Across processes: the process at the other end (the hub, or the attached process that
#: made the subscription) exited, was dropped or broke the protocol.
END_PEER_GONE = _end("JSONBUS_END_PEER_GONE", 6)

__all__ = [n for n in dir() if n.isupper() and n not in ("END_REASONS", "STATUS_CODES")]
