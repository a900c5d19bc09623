# Subscription (callback) and PullSubscription (jsonbus_next, iteration, the pull descriptor
# and asyncio) objects that Bus.subscribe / Bus.subscribe_pull return.
"""Subscription handles."""

import asyncio
import os
import threading
import time
from ctypes import byref

from . import _constants as C
from ._errors import ClosedError, EndedError, NotFoundError, last_error, make_error
from ._ffi import MessagePtr, lib
from ._message import copy_message, json_result, timeout_ms_arg

__all__ = ["Subscription", "PullSubscription"]

_MAIN_IDENT = threading.main_thread().ident
#: On the main thread a wait in next() is cut into slices this long, so that Ctrl-C works.
_SLICE_MS = 200


def _stats(bus, sub_id):
    return json_result(bus._call(lib.jsonbus_subscription_stats, sub_id))


def _unsubscribe(bus, sub_id):
    """jsonbus_unsubscribe: True when it ended/released the subscription now, False when it
    was already gone (ended on its own, or the bus is closed)."""
    try:
        rc = bus._call(lib.jsonbus_unsubscribe, sub_id)
    except ClosedError:
        return False
    if rc == C.OK:
        return True
    if rc == C.ERR_NOT_FOUND:
        return False
    raise last_error(rc)


class Subscription:
    """A callback subscription, from :meth:`Bus.subscribe`.

    Dropping this object does **not** end the subscription (the callback keeps being called
    until :meth:`unsubscribe`, the callback returning :data:`jsonbus.UNSUBSCRIBE`, or the bus
    closing); use it as a context manager to unsubscribe on exit.

    Attributes:
        id (int): the subscription id (> 0, never reused in the process).
        pattern (str): the pattern it was made with.
        bus (Bus): the bus it belongs to.
    """

    def __init__(self, bus, sub_id, pattern, state):
        self.bus = bus
        self.id = sub_id
        self.pattern = pattern
        self._state = state

    def unsubscribe(self):
        """End the subscription (``jsonbus_unsubscribe``).

        Returns True if this call ended it, False if it had already ended (its callback
        returned UNSUBSCRIBE, max_failures, slow, or the bus is closed). Called from outside
        the bus's callbacks, when it returns the callback is not running and never runs again
        and the end notice has run. From a callback of the same bus it does not wait for
        another subscription's running invocation (the library's rule).
        """
        return _unsubscribe(self.bus, self.id)

    def stats(self):
        """This subscription's counters (``jsonbus_subscription_stats``) as a dict: ``id``,
        ``pattern``, ``kind``, ``group``, ``queued``, ``max_queued``, ``delivered``,
        ``dropped``, ``callback_failures``, ``ended``, ``queue_limit``, ``on_full``,
        ``max_failures``. Raises :class:`jsonbus.NotFoundError` once the library has
        forgotten it (after it ended)."""
        return _stats(self.bus, self.id)

    @property
    def errors(self):
        """How many times the callback raised (each reported as a failure to the library)."""
        return self._state.errors

    @property
    def last_exception(self):
        """The last exception the callback raised, or None."""
        return self._state.last_exception

    @property
    def ended(self):
        """True once the end notice has run."""
        return self._state.ended.is_set()

    @property
    def end_reason(self):
        """The ``jsonbus.END_*`` reason once ended, else None."""
        return self._state.end_reason

    def wait_ended(self, timeout=None):
        """Wait (up to ``timeout`` seconds) until the end notice has run; returns whether it
        has. Useful after the callback returned UNSUBSCRIBE, whose end notice runs on a
        dispatcher thread that ``flush`` does not wait for."""
        return self._state.ended.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unsubscribe()

    def __repr__(self):
        return "<jsonbus.Subscription id=%d pattern=%r%s>" % (
            self.id, self.pattern, " ended" if self.ended else "")


class PullSubscription:
    """A pull subscription, from :meth:`Bus.subscribe_pull`: take messages with
    :meth:`next`, by iterating, or with ``await``/``async for`` on asyncio.

    Every message is copied out and released (``jsonbus_message_release``) before it is
    returned, so nothing handed out is ever held by Python (a Ctrl-C that lands just as one is
    taken loses that message, it does not keep it held).

    **Iteration** (``for msg in sub`` and ``async for msg in sub``) waits for each next
    message without a time limit and ends when the subscription has ended and its queue is
    empty (a ``queue_limit``/``on_full: "end"`` slow end, :meth:`unsubscribe` from another
    thread, or the bus closing). Use :meth:`next` / :meth:`anext` with a timeout to stop
    waiting earlier.

    Unlike a callback :class:`Subscription`, a pull subscription that is garbage-collected is
    unsubscribed (nobody could take its messages any more, and they would hold the bus's
    capacity). Note that :meth:`Bus.flush` waits for a pull subscription's messages until they
    are taken.

    Attributes:
        id (int): the subscription id.
        pattern (str): the pattern it was made with.
        bus (Bus): the bus it belongs to.
    """

    def __init__(self, bus, sub_id, pattern):
        self.bus = bus
        self.id = sub_id
        self.pattern = pattern
        # _lock guards _closing, _fd and _readers. _closing (False, "unsubscribed" or
        # "closed") is set before the library may close the descriptor: from then on no event
        # loop registers it and fileno() raises.
        self._lock = threading.Lock()
        self._closing = False
        self._fd = None
        self._readers = {}  # asyncio loop -> its _Reader

    # -- taking messages --------------------------------------------------------------

    def _next_once(self, timeout_ms):
        out = MessagePtr()
        msg = None
        try:
            rc = self.bus._call(lib.jsonbus_next, self.id, timeout_ms, byref(out))
        finally:
            # Whatever lands after the C call returned (Ctrl-C), a message it handed out is
            # copied and released: a held one would make close() wait for it.
            if out:
                try:
                    msg = copy_message(out)
                finally:
                    lib.jsonbus_message_release(out)
        if msg is not None:
            return msg
        if rc == C.ERR_TIMEOUT:
            return None
        err = last_error(rc)
        if isinstance(err, NotFoundError) and self._closing:
            err = self._closing_error()
        raise err

    def _closing_error(self):
        if self._closing == "closed":
            return make_error(C.ERR_CLOSED, "the bus was closed (Bus.close() ended the subscription)")
        return make_error(C.ERR_ENDED, "the subscription was unsubscribed")

    def next(self, timeout_ms=-1):
        """The next message (``jsonbus_next``), waiting up to ``timeout_ms`` (negative: no
        limit; 0: just look); None if none came in time.

        Raises :class:`jsonbus.EndedError` once the subscription has ended and its queue is
        empty (the message says why), :class:`jsonbus.ClosedError` after ``Bus.close()``.
        """
        timeout_ms = timeout_ms_arg(timeout_ms)
        if self._closing:
            raise self._closing_error()
        if threading.get_ident() != _MAIN_IDENT or 0 <= timeout_ms <= _SLICE_MS:
            return self._next_once(timeout_ms)
        # Main thread: wait in slices so that signal handlers (KeyboardInterrupt) run.
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0
        while True:
            slice_ms = _SLICE_MS
            if deadline is not None:
                slice_ms = max(0, min(_SLICE_MS, int((deadline - time.monotonic()) * 1000)))
            msg = self._next_once(slice_ms)
            if msg is not None or (deadline is not None and time.monotonic() >= deadline):
                return msg

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self.next(-1)
        except (EndedError, ClosedError):
            raise StopIteration from None

    # -- event loops -----------------------------------------------------------------

    def fileno(self):
        """The pull descriptor (``jsonbus_pull_fd``; POSIX): it polls readable while a
        message waits or the subscription has ended (level-triggered). Owned by the library:
        never read, write or close it; it is closed by :meth:`unsubscribe` or
        ``Bus.close()``, and from their start this raises :class:`jsonbus.EndedError` /
        :class:`jsonbus.ClosedError` (stop watching it before you call them). Raises
        :class:`jsonbus.UnsupportedError` on Windows."""
        with self._lock:
            return self._library_fd()

    def _library_fd(self):
        # Under _lock: while _closing is unset the library keeps the descriptor open.
        if self._closing:
            raise self._closing_error()
        if self._fd is None:
            rc = self.bus._call(lib.jsonbus_pull_fd, self.id)
            if rc < 0:
                raise last_error(rc)
            self._fd = rc
        return self._fd

    @property
    def fd(self):
        """Same as :meth:`fileno`."""
        return self.fileno()

    def _wait_readable(self, loop):
        """A future of ``loop`` completed once the descriptor is readable (or the subscription
        is being released). Loops watch a duplicate of the library's descriptor, which only
        their own thread closes, after removing it: the library may close its own at any time
        (unsubscribe, close) without a loop ever holding a closed or reused number."""
        with self._lock:
            reader = self._readers.get(loop)
            if reader is None:
                fd = os.dup(self._library_fd())  # raises Ended/Closed once _closing is set
                reader = _Reader(loop, fd)
                try:
                    loop.add_reader(fd, self._on_readable, reader)
                except BaseException:
                    os.close(fd)
                    raise
                self._readers[loop] = reader
            return reader.fut

    def _on_readable(self, reader):
        # On the loop's thread. One wake-up per registration: the reader is removed at once (the
        # descriptor is level-triggered, so leaving it would call us again until a waiter ran).
        with self._lock:
            if self._readers.get(reader.loop) is reader:
                del self._readers[reader.loop]
        reader.drop()

    async def anext(self, timeout_ms=-1):
        """Await the next message: like :meth:`next`, without blocking the event loop.

        Takes a message with ``next(timeout_ms=0)`` and, while there is none, waits for the
        pull descriptor with ``loop.add_reader``. The descriptor is level-triggered and
        readable exactly while a message waits or the subscription has ended, so a message
        that arrives at any moment is seen and an empty queue never spins. Several tasks (or
        loops) may wait on one subscription; each message goes to one of them.
        Returns None on timeout; raises :class:`jsonbus.EndedError` /
        :class:`jsonbus.ClosedError` as :meth:`next` does.
        """
        timeout_ms = timeout_ms_arg(timeout_ms)
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ms < 0 else loop.time() + timeout_ms / 1000.0
        while True:
            msg = self.next(0)
            if msg is not None:
                return msg
            remaining = None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
            # asyncio.wait does not cancel the shared future when this task is cancelled
            # or times out, so other waiters keep it.
            await asyncio.wait((self._wait_readable(loop),), timeout=remaining)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.anext(-1)
        except (EndedError, ClosedError):
            raise StopAsyncIteration from None

    # -- ending ----------------------------------------------------------------------

    def _end(self, reason):
        """Mark the subscription as ending (``reason``: "unsubscribed" or "closed") before
        the library may close its descriptor: no loop registers it any more, and every loop
        that watches it drops its reader (on its own thread) and wakes its waiters, which then
        see the end. Returns False if it was already marked."""
        with self._lock:
            if self._closing:
                return False
            self._closing = reason
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            reader.drop_soon()
        return True

    def unsubscribe(self, _reason="unsubscribed"):
        """End and release the subscription (``jsonbus_unsubscribe``): its waiting messages
        are dropped, its descriptor closed, waiters in :meth:`next`/:meth:`anext` end.
        Returns True if this call released it, False if it was already released (or the bus
        closed)."""
        if not self._end(_reason):
            return False
        return _unsubscribe(self.bus, self.id)

    def stats(self):
        """This subscription's counters as a dict (see :meth:`Subscription.stats`); works
        until it is released."""
        return _stats(self.bus, self.id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unsubscribe()

    def __del__(self):
        try:
            if not self._closing and self.bus._ptr is not None:
                self.unsubscribe()
        except Exception:
            pass

    def __repr__(self):
        return "<jsonbus.PullSubscription id=%d pattern=%r%s>" % (
            self.id, self.pattern, " released" if self._closing else "")


class _Reader:
    """One loop's registration of a duplicate of the pull descriptor: the future its waiters
    share, and the duplicate, closed by :meth:`drop` right after it is removed from the loop."""

    __slots__ = ("loop", "fd", "fut")

    def __init__(self, loop, fd):
        self.loop = loop
        self.fd = fd
        self.fut = loop.create_future()

    def drop(self):
        """On the loop's thread (or once it is closed): remove the reader, close the
        duplicate, wake the waiters. Idempotent."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                self.loop.remove_reader(fd)  # (a closed loop has no readers left)
            finally:
                os.close(fd)
        if not self.fut.done() and not self.loop.is_closed():
            self.fut.set_result(None)

    def drop_soon(self):
        """:meth:`drop` from any thread: at once on the loop's own thread or once the loop is
        closed, else on the loop's thread through ``call_soon_threadsafe`` (never waiting for
        it: until it runs, the loop watches a descriptor that is still open)."""
        loop = self.loop
        try:
            on_loop_thread = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop_thread = False
        if not on_loop_thread and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.drop)
                return
            except RuntimeError:  # closed meanwhile
                pass
        self.drop()
