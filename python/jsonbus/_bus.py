# Bus: the Python handle on a jsonbus bus (jsonbus_new ... jsonbus_free), with publish,
# subscribe, flush, request/reply, timers, stats and a close that cannot race a free.
"""The :class:`Bus` class."""

import asyncio
import atexit
import threading
import weakref
from ctypes import byref, c_size_t

from . import _callbacks as cb
from . import _constants as C
from ._errors import ClosedError, check, last_error, make_error
from ._ffi import String, lib
from ._message import json_result, options_bytes, payload_bytes, timeout_ms_arg, topic_bytes
from ._subscription import PullSubscription, Subscription, _unsubscribe

__all__ = ["Bus"]

#: Every Bus not yet freed, closed at interpreter exit (while threads can still take the GIL).
_live = weakref.WeakSet()
#: Frees handed to a helper thread (a Bus collected on one of its own dispatcher threads) and
#: not yet known to be finished; joined at exit.
_pending_frees = []
#: jsonbus_publish_after takes delays up to 2**40 ms (larger ones are taken as that).
_DELAY_MAX_MS = 2 ** 40


def _closed_error():
    return make_error(C.ERR_CLOSED, "the bus is closed (Bus.close() freed it)")


class Bus:
    """A jsonbus bus: ``Bus(options=None)`` is ``jsonbus_new(json.dumps(options))``.

    ``options`` is a dict (or JSON text) with any of ``dispatcher_threads``,
    ``queue_capacity``, ``publish_timeout_ms``, ``max_message_bytes``, ``max_depth``,
    ``dispatcher_spin_us``; bad ones raise :class:`jsonbus.OptionsError`. None, ``{}`` and
    ``""`` mean the defaults (``""`` as in the C++ API).

    Time-outs (``timeout_ms`` everywhere) are ints in milliseconds: negative waits without
    limit, 0 does not wait, and values above ``2**31 - 1`` (the C ``int32_t``) are taken as
    that; a float raises TypeError.

    Every method may be called from any thread. Blocking calls (flush, close, request,
    :meth:`PullSubscription.next`) release the GIL while they wait, so callbacks keep running.

    Use it as a context manager, or call :meth:`close`. If a Bus is garbage-collected while
    open, it is freed as ``jsonbus_free`` does: every queued callback delivery is still made,
    pull subscriptions end at once (their waiting messages dropped), and every subscription
    gets its end notice (``END_CLOSED``). A callback that references the bus keeps it alive
    until its subscription ends. If the last reference goes away on one of the bus's own
    dispatcher threads, the free is handed to a helper thread (it would wait for that very
    callback). Buses still open at interpreter exit are closed by an ``atexit`` handler.
    """

    def __init__(self, options=None):
        self._ptr = None
        raw = options_bytes(options)
        ptr = lib.jsonbus_new(raw)
        if not ptr:
            raise last_error(lib.jsonbus_last_status())
        self._ptr = ptr
        self._addr = ptr  # kept after the free, to recognise this bus's callbacks
        # Re-entrant: a finalizer (PullSubscription.__del__ -> unsubscribe) may run inside a
        # region that holds it, on the same thread.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._freeing = False
        self._closing = False  # set (under _lock) by close(): no new subscriptions
        self._close_lock = threading.Lock()
        self._close_result = None
        self._final_stats = None
        self._pulls = weakref.WeakValueDictionary()  # id -> PullSubscription (also released ones)
        _live.add(self)

    # -- guarding the handle against a concurrent free -------------------------------------

    def _call(self, fn, *args):
        """``fn(handle, *args)`` with the handle counted as in use meanwhile (jsonbus_free must
        not race with other calls: close() waits for these); ClosedError once freed.

        The count is taken and given back in one try/finally, so that an exception landing
        anywhere (Ctrl-C after the C call returns) cannot leave it taken and close() waiting."""
        counted = False
        try:
            with self._lock:
                ptr = self._ptr
                if ptr is None:
                    raise _closed_error()
                self._inflight += 1
                counted = True
            return fn(ptr, *args)
        finally:
            if counted:
                with self._lock:
                    self._inflight -= 1
                    if self._freeing and self._inflight == 0:
                        self._idle.notify_all()

    @property
    def closed(self):
        """True once :meth:`close` has freed the bus."""
        return self._ptr is None

    # -- publishing ----------------------------------------------------------------------

    def publish(self, topic, json):
        """Publish one JSON value (``str`` or UTF-8 ``bytes``) on ``topic``.

        Validated and copied before it returns. Raises :class:`jsonbus.TopicError`,
        :class:`jsonbus.JsonError`, :class:`jsonbus.Utf8Error`,
        :class:`jsonbus.TooLargeError`, :class:`jsonbus.FullError` or
        :class:`jsonbus.ClosedError` (all :class:`jsonbus.Error`).
        """
        t = topic_bytes(topic)
        p = payload_bytes(json)
        rc = self._call(lib.jsonbus_publish, t, p, len(p))
        if rc:
            raise last_error(rc)

    def publish_after(self, topic, json, delay_ms):
        """Publish ``json`` on ``topic`` ``delay_ms`` milliseconds from now (validated and
        copied at once). Returns the timer id for :meth:`cancel`."""
        t = topic_bytes(topic)
        p = payload_bytes(json)
        delay = max(0, min(int(delay_ms), _DELAY_MAX_MS))  # (c_int64 would wrap)
        return check(self._call(lib.jsonbus_publish_after, t, p, len(p), delay))

    def cancel(self, timer_id):
        """Stop a pending :meth:`publish_after` timer. True if it was stopped, False if it
        had already fired, been cancelled or discarded."""
        try:
            rc = self._call(lib.jsonbus_cancel, int(timer_id))
        except ClosedError:
            return False
        if rc == C.ERR_NOT_FOUND:
            return False
        check(rc)
        return True

    # -- subscribing ---------------------------------------------------------------------

    def subscribe(self, pattern, callback, options=None, on_end=None):
        """Call ``callback(message)`` for every message on a topic that ``pattern`` matches
        (``jsonbus_subscribe_with``). Returns a :class:`Subscription`.

        The callback runs on one of the bus's dispatcher threads, never concurrently with
        itself, in ``seq`` order. It returns None (stay subscribed), :data:`jsonbus.UNSUBSCRIBE`
        (end this subscription) or a negative int (report a failure). An exception it raises
        is caught, counted as a failure by the library (``callback_failures``), stored in
        :attr:`Subscription.last_exception` and reported to ``sys.unraisablehook``.

        ``options``: dict with ``queue_limit``, ``on_full`` ("block", "drop_oldest",
        "drop_new", "end"), ``max_failures``, ``group``. ``on_end(subscription_id, reason)``
        is called once when the subscription ends, whatever ends it. The callback and
        ``on_end`` are referenced until then and released at the end notice. Raises
        :class:`jsonbus.ClosedError` once :meth:`close` has begun.
        """
        if not callable(callback):
            raise TypeError("callback must be callable")
        if on_end is not None and not callable(on_end):
            raise TypeError("on_end must be callable or None")
        pat = topic_bytes(pattern)
        opts = options_bytes(options)
        self._check_not_closing()
        state = cb.CallbackState(callback, on_end, self._addr, pattern)
        # Registered before the call: a message may be delivered before it returns.
        key = cb.register(state)
        try:
            sid = self._call(lib.jsonbus_subscribe_with, pat, opts, cb.on_message_c, cb.on_end_c, key)
        except ClosedError:
            cb.unregister(key)
            raise
        if sid < 0:  # refused: the library never calls it
            err = last_error(sid)
            cb.unregister(key)
            state.callback = state.on_end = None
            raise err
        state.sub_id = sid
        return Subscription(self, sid, pattern, state)

    def subscribe_pull(self, pattern, options=None):
        """A pull subscription (``jsonbus_subscribe_pull``): returns a
        :class:`PullSubscription` to take messages from with ``next()``, iteration or
        asyncio. ``options`` as for :meth:`subscribe` (``queue_limit``, ``on_full``,
        ``group``). Raises :class:`jsonbus.ClosedError` once :meth:`close` has begun."""
        pat = topic_bytes(pattern)
        opts = options_bytes(options)
        self._check_not_closing()
        sid = check(self._call(lib.jsonbus_subscribe_pull, pat, opts))
        sub = PullSubscription(self, sid, pattern)
        with self._lock:
            closing = self._closing
            if not closing:
                self._pulls[sid] = sub
        if closing:
            # close() began during the call and did not see this one: a close without a limit
            # would wait for its messages. Release it here (a no-op once the bus is freed).
            sub._end("closed")
            _unsubscribe(self, sid)
            raise _closed_error()
        return sub

    def _check_not_closing(self):
        with self._lock:
            if self._closing:
                raise _closed_error()

    # -- waiting -------------------------------------------------------------------------

    def flush(self, timeout_ms=-1):
        """Wait until everything published before this call (and what callbacks publish in
        turn) has been handled (``jsonbus_flush``). Returns True, or False if ``timeout_ms``
        ran out. Messages of pull subscriptions count as handled once taken, so with an
        undrained pull subscription a flush without a limit waits for its consumer.
        Raises :class:`jsonbus.DeadlockError` from a callback of this bus."""
        timeout_ms = timeout_ms_arg(timeout_ms)
        try:
            rc = self._call(lib.jsonbus_flush, timeout_ms)
        except ClosedError:
            return True  # like the C API on a closed bus
        if rc == C.ERR_TIMEOUT:
            return False
        check(rc)
        return True

    def stats(self):
        """The bus's counters (``jsonbus_stats``) as a dict: ``published``, ``delivered``,
        ``unrouted``, ``dropped``, ``queued``, ``subscriptions``, ``callback_failures``,
        ``dispatcher_threads``, ``timers``, ``requests``, ``requests_waiting``,
        ``no_responders``, ``late_replies``, ``rejected`` (a dict by reason). After
        :meth:`close`, the counters as they were just before the bus was freed."""
        try:
            return json_result(self._call(lib.jsonbus_stats))
        except ClosedError:
            if self._final_stats is not None:
                return dict(self._final_stats)
            raise

    # -- requests ------------------------------------------------------------------------

    def request(self, topic, json, timeout_ms=-1):
        """Publish a request on ``topic`` and wait for the first reply; returns the reply's
        JSON text (``jsonbus_request``; the C copy is freed with ``jsonbus_string_free``).

        Raises :class:`jsonbus.NoRespondersError` at once if no subscription matched,
        :class:`jsonbus.TimedOutError`, :class:`jsonbus.ClosedError`, a publish's errors, or
        :class:`jsonbus.DeadlockError` from a callback of this bus (use
        :meth:`request_async` / :meth:`arequest` there)."""
        t = topic_bytes(topic)
        p = payload_bytes(json)
        timeout_ms = timeout_ms_arg(timeout_ms)
        out = String()  # made before the call, freed in the finally whatever lands when
        out_len = c_size_t()
        try:
            rc = self._call(lib.jsonbus_request, t, p, len(p), timeout_ms, byref(out), byref(out_len))
            if rc != C.OK:
                raise last_error(rc)
            return out.text(out_len.value)
        finally:
            out.free()

    def request_async(self, topic, json, callback, timeout_ms=-1):
        """Publish a request without waiting (``jsonbus_request_async``):
        ``callback(status, reply)`` is called exactly once on a dispatcher thread, with
        ``jsonbus.OK`` and the reply :class:`Message`, or with ``jsonbus.ERR_TIMEOUT`` /
        ``jsonbus.ERR_CLOSED`` and None. It may run before this returns. Raises (and never
        calls ``callback``) if the request is refused, e.g. :class:`jsonbus.NoRespondersError`.
        Works from a callback of this bus."""
        self._request_async(topic, json, callback, timeout_ms)

    def _request_async(self, topic, json, callback, timeout_ms):
        """:meth:`request_async`; returns the registry key of ``callback``."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        t = topic_bytes(topic)
        p = payload_bytes(json)
        timeout_ms = timeout_ms_arg(timeout_ms)
        key = cb.register(cb.ReplyState(callback, self._addr))
        try:
            rc = self._call(lib.jsonbus_request_async, t, p, len(p), timeout_ms, cb.on_reply_c, key)
        except ClosedError:
            cb.unregister(key)
            raise
        if rc != C.OK:  # refused: the library never calls it
            err = last_error(rc)
            cb.unregister(key)
            raise err
        return key

    async def arequest(self, topic, json, timeout_ms=-1):
        """Await the reply to a request on ``topic`` (asyncio; built on
        :meth:`request_async`). Returns the reply's JSON text; raises as :meth:`request`.

        If the awaiting task is cancelled, what Python holds for the request is dropped at
        once; the request itself cannot be withdrawn from the library and stays outstanding
        (counted in ``requests_waiting``) until its reply, its time-out or the close, when its
        callback finds nothing to call and returns."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def settle(status, reply):
            if fut.done():
                return
            if status == C.OK:
                fut.set_result(reply.json)
            elif status == C.ERR_TIMEOUT:
                fut.set_exception(make_error(status, "no reply within %d ms" % timeout_ms))
            elif status == C.ERR_CLOSED:
                fut.set_exception(make_error(status, "the bus closed before a reply came"))
            else:
                fut.set_exception(make_error(status, ""))

        def done(status, reply):
            try:
                loop.call_soon_threadsafe(settle, status, reply)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        key = self._request_async(topic, json, done, timeout_ms)
        try:
            return await fut
        finally:
            cb.unregister(key)  # a no-op once the reply came; on cancellation, frees `done`

    def reply(self, message, json):
        """Answer a request ``message`` (one with ``reply_to``) with ``json``.

        This publishes on ``message.reply_to``, which the header documents as equivalent to
        ``jsonbus_reply`` (same checks and errors), so it works any time, from any thread,
        also after the callback returned and for pulled messages. Raises
        :class:`jsonbus.NotFoundError` if the message was not sent as a request."""
        reply_to = getattr(message, "reply_to", None)
        if reply_to is None:
            raise make_error(C.ERR_NOT_FOUND, "the message has no reply_to: it was not sent as a request")
        self.publish(reply_to, json)

    # -- closing -------------------------------------------------------------------------

    def close(self, timeout_ms=-1):
        """Close the bus (``jsonbus_close``) and free it (``jsonbus_free``).

        Publishing stops at once; what is queued for callbacks is still delivered, for up to
        ``timeout_ms`` (negative: no limit), then discarded; then every subscription ends
        (``END_CLOSED``; end notices run on this thread). With no time limit, pull
        subscriptions are ended first and their unread messages dropped, as ``jsonbus_free``
        does (otherwise the close would wait for someone to pull them); with a limit, pull
        consumers may keep taking messages until it runs out. Waiters in ``next``/``anext``
        and iterations end. Calls still running on other threads are waited for (they return
        at once on a closed bus) before the handle is freed; later calls raise
        :class:`jsonbus.ClosedError` (``flush`` returns True, ``stats`` the final counters).

        Returns True if everything was delivered, False if something was discarded. A second
        close returns the first one's result. Once it has begun, :meth:`subscribe` and
        :meth:`subscribe_pull` raise :class:`jsonbus.ClosedError`. Raises
        :class:`jsonbus.DeadlockError` (and does nothing) from a callback or end notice of this
        bus.
        """
        timeout_ms = timeout_ms_arg(timeout_ms)
        if cb.in_callback_of(self._addr) and self._ptr is not None:
            raise make_error(C.ERR_DEADLOCK, "close() from a callback of this bus would wait for that callback")
        with self._close_lock:
            ptr = self._ptr
            if ptr is None:
                return bool(self._close_result)
            with self._lock:
                # From here no subscription is added behind the snapshot's back (a
                # subscribe_pull already inside the C call releases its own: see there).
                self._closing = True
                pulls = list(self._pulls.values())
            if timeout_ms < 0:
                for sub in pulls:
                    sub.unsubscribe(_reason="closed")
            rc = lib.jsonbus_close(ptr, timeout_ms)
            if rc not in (C.OK, C.ERR_TIMEOUT):
                with self._lock:
                    self._closing = False
                raise last_error(rc)
            for sub in pulls:
                sub._end("closed")  # before jsonbus_free closes their descriptors
            try:
                self._final_stats = json_result(lib.jsonbus_stats(ptr))
            except Exception:
                pass
            with self._lock:
                self._freeing = True
                self._ptr = None
                while self._inflight:
                    self._idle.wait(0.1)  # (re-checks: a notify lost to Ctrl-C cannot hang it)
            lib.jsonbus_free(ptr)
            self._close_result = rc == C.OK
            _live.discard(self)
            return self._close_result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        ptr = getattr(self, "_ptr", None)
        if ptr is None:
            return
        self._ptr = None
        if not cb.in_callback_of(self._addr):
            lib.jsonbus_free(ptr)
            # It does nothing (DEADLOCK) on a dispatcher thread of this bus: a finalizer can
            # run there before _callbacks marks the thread (cyclic GC inside ctypes).
            if lib.jsonbus_last_status() != C.ERR_DEADLOCK:
                return
        # jsonbus_free cannot wait for the callback running on this thread: a helper does it.
        for t in list(_pending_frees):
            if not t.is_alive():
                try:
                    _pending_frees.remove(t)
                except ValueError:  # pruned by another thread meanwhile
                    pass
        try:
            t = threading.Thread(target=lib.jsonbus_free, args=(ptr,), name="jsonbus-free", daemon=False)
            t.start()
            _pending_frees.append(t)
        except RuntimeError:  # interpreter shutting down: leave it
            pass

    def __repr__(self):
        return "<jsonbus.Bus %s>" % ("closed" if self._ptr is None else "0x%x" % self._addr)


@atexit.register
def _close_all():
    # A close without a time limit, which waits for what is queued for callbacks and for
    # pulled messages not yet released. It cannot hang on the latter: Python never holds a
    # pulled message beyond the next() call that copies and releases it (also when Ctrl-C
    # lands there), close() first releases every pull subscription, and none can be added
    # once it began.
    for bus in list(_live):
        try:
            bus.close()
        except Exception:
            pass
    for t in list(_pending_frees):
        t.join()
