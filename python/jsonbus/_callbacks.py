# The three C trampolines (message callback, end notice, request reply) shared by every
# subscription, the registry that keeps each subscription's Python callable alive until its
# end notice, and the per-thread "inside a callback of bus X" marks used to refuse deadlocks.
"""Callback plumbing between the C library's dispatcher threads and Python.

One module-level ``CFUNCTYPE`` object per callback type is handed to every
``jsonbus_subscribe_with`` / ``jsonbus_request_async``; ``user_data`` is an integer key into
:data:`_states`. So the C function pointers live as long as the module, and what a
subscription owns (its Python callable, its ``on_end``) is held by the registry exactly until
the subscription's end notice, then dropped: nothing the library can still call is ever
collected, and nothing is kept after the library is done with it.

ctypes acquires the GIL around each trampoline; the library calls them on its dispatcher
threads (and end notices also on the thread of an unsubscribe/close/free), while the thread
that waits in flush/close/unsubscribe has released the GIL inside the ctypes call.
"""

import itertools
import sys
import threading
import traceback

from . import _constants as C
from ._ffi import CALLBACK, END_CALLBACK, REPLY_CALLBACK
from ._message import copy_message

#: key (the C user_data) -> state, for every subscription / async request not yet ended.
_states = {}
_keys = itertools.count(1)
#: thread ident -> list of bus addresses whose callback (or end notice) runs on that thread.
_context = {}
_get_ident = threading.get_ident

#: What a callback returns to report a failure to the library (any negative value does).
CALLBACK_FAILED = -1


def register(state):
    """Put ``state`` in the registry; returns the key to pass as ``user_data``."""
    key = next(_keys)
    _states[key] = state
    return key


def unregister(key):
    """Drop a registration: one whose C call failed (the library will never call it), or one
    nobody waits for any more (a cancelled ``arequest``: the library's call finds nothing)."""
    return _states.pop(key, None)


def in_callback_of(bus_addr):
    """True when this thread is inside a callback, end notice or reply callback of the bus
    at ``bus_addr``, where waiting for that bus's callbacks would deadlock."""
    stack = _context.get(_get_ident())
    return bool(stack) and bus_addr in stack


def _enter(bus_addr):
    ident = _get_ident()
    stack = _context.get(ident)
    if stack is None:
        stack = _context[ident] = []
    stack.append(bus_addr)
    return ident, stack


def _leave(ident, stack):
    stack.pop()
    if not stack:
        _context.pop(ident, None)


class _UnraisableArgs:
    """Duck-typed ``sys.UnraisableHookArgs`` for a user-installed ``sys.unraisablehook``
    (the built-in type cannot be constructed from Python)."""

    __slots__ = ("exc_type", "exc_value", "exc_traceback", "err_msg", "object")

    def __init__(self, exc, err_msg, obj):
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = err_msg
        self.object = obj


def report_unraisable(exc, err_msg, obj):
    """Report an exception that cannot propagate (it happened in a callback called by C):
    to ``sys.unraisablehook`` if one is installed (pytest installs one), else to stderr in
    the default hook's format."""
    try:
        hook = sys.unraisablehook
        if hook is not sys.__unraisablehook__:
            hook(_UnraisableArgs(exc, err_msg, obj))
            return
        stream = sys.stderr
        if stream is None:
            return
        stream.write("%s: %r\n" % (err_msg, obj))
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
        stream.flush()
    except BaseException:  # never let reporting raise into C
        pass


class CallbackState:
    """What a callback subscription needs while it lives; the :class:`Subscription` object
    reads its counters. ``callback`` and ``on_end`` are set to None by the end notice."""

    __slots__ = ("callback", "on_end", "bus_addr", "pattern", "sub_id", "errors",
                 "last_exception", "end_reason", "ended")

    def __init__(self, callback, on_end, bus_addr, pattern):
        self.callback = callback
        self.on_end = on_end
        self.bus_addr = bus_addr
        self.pattern = pattern
        self.sub_id = 0
        self.errors = 0
        self.last_exception = None
        self.end_reason = None
        self.ended = threading.Event()


def _status_of(result):
    """A callback's Python return value as the C status: None/True/False/0/other -> OK,
    UNSUBSCRIBE -> UNSUBSCRIBE, a negative int -> that failure."""
    if result is None or result.__class__ is bool or not isinstance(result, int):
        return C.OK
    if result == C.UNSUBSCRIBE:
        return C.UNSUBSCRIBE
    if result < 0:
        return max(int(result), -(2 ** 31))
    return C.OK


def _on_message(msg_ptr, key):
    state = _states.get(key)
    callback = state.callback if state is not None else None
    if callback is None:  # cannot happen: the library never calls after the end notice
        return C.OK
    ident, stack = _enter(state.bus_addr)
    try:
        try:
            return _status_of(callback(copy_message(msg_ptr)))
        except BaseException as exc:  # must not propagate into C
            # A callback never runs concurrently with itself: no lock needed for the counters.
            state.errors += 1
            state.last_exception = exc
            report_unraisable(
                exc,
                "Exception ignored in jsonbus callback of subscription %d (pattern %r)"
                % (state.sub_id, state.pattern),
                callback,
            )
            return CALLBACK_FAILED
    finally:
        _leave(ident, stack)


def _on_end(sub_id, reason, key):
    state = _states.pop(key, None)
    if state is None:
        return
    ident, stack = _enter(state.bus_addr)
    try:
        on_end = state.on_end
        # Drop the references now: the library never calls this subscription again.
        state.callback = None
        state.on_end = None
        state.end_reason = reason
        if on_end is not None:
            try:
                on_end(sub_id, reason)
            except BaseException as exc:
                report_unraisable(
                    exc, "Exception ignored in jsonbus end notice of subscription %d" % sub_id,
                    on_end)
    finally:
        state.ended.set()
        _leave(ident, stack)


class ReplyState:
    """A pending ``jsonbus_request_async``: its Python callback, until called once."""

    __slots__ = ("callback", "bus_addr")

    def __init__(self, callback, bus_addr):
        self.callback = callback
        self.bus_addr = bus_addr


def _on_reply(status, reply_ptr, key):
    state = _states.pop(key, None)
    if state is None:
        return
    ident, stack = _enter(state.bus_addr)
    try:
        callback = state.callback
        state.callback = None
        try:
            reply = copy_message(reply_ptr) if (status == C.OK and reply_ptr) else None
            callback(status, reply)
        except BaseException as exc:
            report_unraisable(exc, "Exception ignored in jsonbus request callback", callback)
    finally:
        _leave(ident, stack)


# The C function pointers: alive as long as this module.
on_message_c = CALLBACK(_on_message)
on_end_c = END_CALLBACK(_on_end)
on_reply_c = REPLY_CALLBACK(_on_reply)
