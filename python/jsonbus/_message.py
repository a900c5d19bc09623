# Message: the plain Python copy of a struct jsonbus_message, the helpers that turn Python
# topics, payloads, options and time-outs into what the C API takes, and JSON results back.
"""The :class:`Message` type and argument / result conversion helpers."""

import json as _json
import operator
from ctypes import string_at

from . import _constants as C
from ._errors import last_error, make_error
from ._ffi import lib

__all__ = ["Message"]


class Message:
    """One message, copied out of the C struct (nothing in it points into the library).

    Attributes:
        topic (str): the topic it was published on.
        json (str): the payload, exactly the JSON text that was published (validated UTF-8).
        seq (int): bus-wide publish order, from 1, strictly increasing.
        published_ns (int): :func:`jsonbus.now_ns` when it was published.
        subscription (int): id of the subscription it was delivered to (0 for a reply).
        reply_to (str or None): for a request, the topic to answer on (``_INBOX....``);
            answer with :meth:`Bus.reply` (any time, from any thread).
    """

    __slots__ = ("topic", "json", "seq", "published_ns", "subscription", "reply_to")

    def __init__(self, topic, json, seq=0, published_ns=0, subscription=0, reply_to=None):
        self.topic = topic
        self.json = json
        self.seq = seq
        self.published_ns = published_ns
        self.subscription = subscription
        self.reply_to = reply_to

    @property
    def data(self):
        """The payload parsed with :func:`json.loads`."""
        return _json.loads(self.json)

    def __repr__(self):
        extra = ", reply_to=%r" % self.reply_to if self.reply_to is not None else ""
        return "Message(topic=%r, json=%r, seq=%d, subscription=%d%s)" % (
            self.topic, self.json, self.seq, self.subscription, extra)

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None


def copy_message(ptr):
    """A :class:`Message` from a ``const jsonbus_message *`` (valid for the duration of this
    call only)."""
    m = ptr[0]
    reply_to = m.reply_to
    return Message(
        string_at(m.topic, m.topic_len).decode("utf-8", "replace"),
        string_at(m.json, m.json_len).decode("utf-8", "replace"),
        m.seq,
        m.published_ns,
        m.subscription,
        string_at(reply_to, m.reply_to_len).decode("utf-8", "replace") if reply_to else None,
    )


def topic_bytes(topic):
    """A topic or pattern as NUL-terminated UTF-8 for the C API.

    Lone surrogates are passed through (``surrogatepass``) so that the library reports them
    as it reports any malformed topic; an embedded NUL would silently cut the topic short in
    C, so it is refused here with ``JSONBUS_ERR_TOPIC``.
    """
    if isinstance(topic, str):
        data = topic.encode("utf-8", "surrogatepass")
    elif isinstance(topic, (bytes, bytearray, memoryview)):
        data = bytes(topic)
    else:
        raise TypeError("a topic must be str or bytes, not %s" % type(topic).__name__)
    if b"\0" in data:
        raise make_error(C.ERR_TOPIC, "the topic contains a NUL character")
    return data


def name_bytes(name):
    """A bus name (for :meth:`Bus.serve` / :func:`jsonbus.attach`) as NUL-terminated UTF-8.

    Checked by the library (1-64 bytes of ``A-Z a-z 0-9 . _ -``, not starting with ``.``;
    ``JSONBUS_ERR_TOPIC`` otherwise, with the rule); an embedded NUL, which C would cut the
    name at, is refused here with the same status.
    """
    if isinstance(name, str):
        data = name.encode("utf-8", "surrogatepass")
    elif isinstance(name, (bytes, bytearray, memoryview)):
        data = bytes(name)
    else:
        raise TypeError("a bus name must be str or bytes, not %s" % type(name).__name__)
    if b"\0" in data:
        raise make_error(C.ERR_TOPIC, "the bus name contains a NUL character")
    return data


def payload_bytes(payload):
    """A payload (JSON text as ``str`` or UTF-8 ``bytes``) as bytes; the length is passed
    separately, so embedded NULs reach the validator, which refuses them."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(
        "a payload must be JSON text as str or bytes, not %s (use json.dumps)"
        % type(payload).__name__
    )


def options_bytes(options):
    """Options as the C API's JSON text: ``None`` or ``""`` -> NULL (the defaults, as in the
    C++ API), a dict -> ``json.dumps``, other str/bytes -> passed as it is."""
    if options is None or (isinstance(options, (str, bytes)) and not options):
        return None
    if isinstance(options, dict):
        data = _json.dumps(options).encode("utf-8")
    elif isinstance(options, str):
        data = options.encode("utf-8", "surrogatepass")
    elif isinstance(options, bytes):
        data = options
    else:
        raise TypeError("options must be a dict, JSON text or None, not %s" % type(options).__name__)
    if b"\0" in data:
        raise make_error(C.ERR_OPTIONS, "the options contain a NUL character")
    return data


#: The largest time-out an ``int32_t`` parameter takes (about 24.8 days).
TIMEOUT_MAX_MS = 2 ** 31 - 1


def timeout_ms_arg(timeout_ms):
    """A time-out in milliseconds for an ``int32_t`` parameter: negative -> -1 (no limit),
    above :data:`TIMEOUT_MAX_MS` -> that (ctypes would wrap it silently: ``2**32`` to 0, 3e9
    to a negative value). Only ints (``operator.index``): a float raises TypeError."""
    try:
        ms = operator.index(timeout_ms)
    except TypeError:
        raise TypeError("timeout_ms must be an int (milliseconds), not %s"
                        % type(timeout_ms).__name__) from None
    return -1 if ms < 0 else min(ms, TIMEOUT_MAX_MS)


def json_result(raw):
    """The JSON object in a :class:`jsonbus._ffi.String` the library returned (stats), as a
    dict, the string freed; NULL raises this thread's last error."""
    try:
        if not raw:
            raise last_error(lib.jsonbus_last_status())
        return _json.loads(raw.text())
    finally:
        raw.free()
