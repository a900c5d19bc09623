# The exception hierarchy: jsonbus.Error and one subclass per JSONBUS_ERR_* status, built
# from the status code and jsonbus_last_error() right after the failing C call.
"""Exceptions raised by jsonbus."""

from . import _ffi

__all__ = [
    "Error",
    "NullError",
    "Utf8Error",
    "JsonError",
    "TopicError",
    "TooLargeError",
    "FullError",
    "TimedOutError",
    "ClosedError",
    "NotFoundError",
    "DeadlockError",
    "OptionsError",
    "InternalError",
    "EndedError",
    "UnsupportedError",
    "NoRespondersError",
    "NoBusError",
    "NameInUseError",
    "PermissionDeniedError",
    "DisconnectedError",
    "PeerError",
    "LimitError",
]


class Error(Exception):
    """A jsonbus call failed.

    Attributes:
        status: the negative ``JSONBUS_ERR_*`` code (an int, e.g. ``jsonbus.ERR_JSON``).
        name: its C name from ``jsonbus_status_name``, e.g. ``"JSONBUS_ERR_JSON"``.
        message: ``jsonbus_last_error()`` read right after the failing call on the same thread
            (for invalid JSON: what and where; for a bad topic: the token and why), or a
            message made by the Python layer for failures it detects itself.

    Catch ``jsonbus.Error`` for any failure, or a subclass (``jsonbus.JsonError``,
    ``jsonbus.TopicError``, ``jsonbus.ClosedError``...) for one status.
    """

    def __init__(self, status, message=""):
        self.status = int(status)
        self.name = _ffi.status_name(self.status)
        self.message = message
        super().__init__(self.status, message)

    def __str__(self):
        return "%s: %s" % (self.name, self.message) if self.message else self.name

    def __repr__(self):
        return "%s(%d, %r)" % (type(self).__name__, self.status, self.message)


Error.__module__ = "jsonbus"


def _cls(name, cname, doc):
    return type(name, (Error,), {"__doc__": doc, "__module__": "jsonbus", "c_name": cname})


NullError = _cls("NullError", "JSONBUS_ERR_NULL", "A required pointer was NULL (a bug in the bindings).")
Utf8Error = _cls("Utf8Error", "JSONBUS_ERR_UTF8", "The payload is not valid UTF-8; the message gives the byte offset.")
JsonError = _cls("JsonError", "JSONBUS_ERR_JSON", "The payload is not exactly one JSON value, or nests too deep; the message says where.")
TopicError = _cls("TopicError", "JSONBUS_ERR_TOPIC", "A topic or pattern is malformed; the message names the token.")
TooLargeError = _cls("TooLargeError", "JSONBUS_ERR_TOO_LARGE", "The payload is over max_message_bytes.")
FullError = _cls("FullError", "JSONBUS_ERR_FULL", "The bus is full and publish_timeout_ms ran out.")
TimedOutError = _cls("TimedOutError", "JSONBUS_ERR_TIMEOUT", "A request (or another wait that reports it as an error) ran out of time.")
ClosedError = _cls("ClosedError", "JSONBUS_ERR_CLOSED", "The bus is closed.")
NotFoundError = _cls("NotFoundError", "JSONBUS_ERR_NOT_FOUND", "No such subscription (or timer, or reply_to).")
DeadlockError = _cls("DeadlockError", "JSONBUS_ERR_DEADLOCK", "The call would wait for the callback that is making it.")
OptionsError = _cls("OptionsError", "JSONBUS_ERR_OPTIONS", "Invalid options; the message names the key and the allowed range.")
InternalError = _cls("InternalError", "JSONBUS_ERR_INTERNAL", "A bug inside the library was caught; the bus stays usable.")
EndedError = _cls("EndedError", "JSONBUS_ERR_ENDED", "The pull subscription has ended and its queue is empty; the message says why.")
UnsupportedError = _cls("UnsupportedError", "JSONBUS_ERR_UNSUPPORTED", "Not offered on this platform or build (e.g. pull descriptors on Windows).")
NoRespondersError = _cls("NoRespondersError", "JSONBUS_ERR_NO_RESPONDERS", "A request matched no subscription.")
# A bus shared across processes (Bus.serve, jsonbus.attach).
NoBusError = _cls("NoBusError", "JSONBUS_ERR_NO_BUS", "attach: no bus is served under that name (within connect_timeout_ms).")
NameInUseError = _cls("NameInUseError", "JSONBUS_ERR_NAME_IN_USE", "serve: another live bus serves that name, or this bus already serves one.")
PermissionDeniedError = _cls(
    "PermissionDeniedError", "JSONBUS_ERR_PERMISSION",
    "The name directory, or the process at the other end, is not trusted: wrong owner, mode or "
    "user (the message says which).\n\nNamed so as not to shadow the builtin PermissionError, "
    "and deliberately not a subclass of it (that is an OSError, with an errno): catch "
    "jsonbus.PermissionDeniedError or jsonbus.Error.")
DisconnectedError = _cls(
    "DisconnectedError", "JSONBUS_ERR_DISCONNECTED",
    "An attached bus lost its hub: the serving process is gone, closed its bus or dropped this "
    "process, or this is a child made by fork after the attach. close() still works.")
PeerError = _cls("PeerError", "JSONBUS_ERR_PEER", "The other process speaks another protocol version or broke the protocol.")
LimitError = _cls("LimitError", "JSONBUS_ERR_LIMIT", "A configured limit was reached, such as the hub's max_peers (the message names it).")

_BY_NAME = {
    cls.c_name: cls
    for cls in (
        NullError, Utf8Error, JsonError, TopicError, TooLargeError, FullError, TimedOutError,
        ClosedError, NotFoundError, DeadlockError, OptionsError, InternalError, EndedError,
        UnsupportedError, NoRespondersError, NoBusError, NameInUseError, PermissionDeniedError,
        DisconnectedError, PeerError, LimitError,
    )
}


def make_error(status, message):
    """An exception of the right class for ``status`` (looked up by the C name, since the
    numeric values are the library's choice)."""
    return _BY_NAME.get(_ffi.status_name(status), Error)(status, message)


def last_error(status):
    """The exception for a C call that just failed with ``status`` on this thread.

    Must be called right after the call: ``jsonbus_last_error()`` is thread-local and is
    overwritten by this thread's next call into the library. If the last status does not match
    (some other call slipped in, e.g. from a finalizer) the message is left empty rather than
    wrong.
    """
    message = _ffi.lib.jsonbus_last_error()
    last = _ffi.lib.jsonbus_last_status()
    text = message.decode("utf-8", "replace") if (message and last == status) else ""
    return make_error(status, text)


def check(status):
    """Raise the matching exception when ``status`` is negative; return it otherwise."""
    if status < 0:
        raise last_error(status)
    return status
