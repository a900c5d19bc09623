# Bus: the Python handle on a jsonbus bus (jsonbus_new or jsonbus_attach ... jsonbus_free),
# with publish, subscribe, flush, request/reply, timers, stats, serve (one bus across
# processes) and a close that cannot race a free.
"""The :class:`Bus` class and :func:`attach`."""

import asyncio
import atexit
import json as _json
import os
import re
import threading
import time
import weakref
from ctypes import byref, c_size_t

from . import _callbacks as cb
from . import _constants as C
from . import _ffi
from ._errors import ClosedError, check, last_error, make_error
from ._ffi import String, lib
from ._message import (
    TIMEOUT_MAX_MS,
    json_result,
    name_bytes,
    options_bytes,
    payload_bytes,
    timeout_ms_arg,
    topic_bytes,
)
from ._subscription import PullSubscription, Subscription, _unsubscribe

__all__ = ["Bus", "attach"]

#: Every Bus not yet freed, closed at interpreter exit (while threads can still take the GIL).
_live = weakref.WeakSet()
#: Frees handed to a helper thread (a Bus collected on one of its own dispatcher threads) and
#: not yet known to be finished; joined at exit.
_pending_frees = []
#: jsonbus_publish_after takes delays up to 2**40 ms (larger ones are taken as that).
_DELAY_MAX_MS = 2 ** 40
_MAIN_IDENT = threading.main_thread().ident
#: On the main thread an attach's wait for the name is cut into slices this long, so that
#: Ctrl-C works (as in PullSubscription.next).
_ATTACH_SLICE_MS = 200


def _closed_error():
    return make_error(C.ERR_CLOSED, "the bus is closed (Bus.close() freed it)")


def _require(fn_name):
    """UnsupportedError unless the loaded library exports ``fn_name`` (an older library)."""
    if not _ffi.has(fn_name):
        raise make_error(C.ERR_UNSUPPORTED, "the loaded jsonbus library (%s, %s) has no %s"
                         % (lib.jsonbus_version().decode("ascii", "replace"),
                            _ffi.library_path, fn_name))


def _name_str(name):
    return name if isinstance(name, str) else bytes(name).decode("utf-8", "replace")


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")  # left for the library to judge, not sliced
    return dict(pairs)


def _sliced_attach_wait(options):
    """For an attach on the main thread whose ``connect_timeout_ms`` is -1 or over one slice:
    the options as a dict and that wait, to cut it into slices; else None (the call is made
    as it is: other threads, the default of 1000 ms, options the library will refuse)."""
    if threading.get_ident() != _MAIN_IDENT:
        return None
    if isinstance(options, dict):
        opts = dict(options)
    elif isinstance(options, (str, bytes)) and options:
        try:
            opts = _json.loads(options, object_pairs_hook=_unique_keys)
        except ValueError:
            return None
        if not isinstance(opts, dict):
            return None
    else:
        return None
    wait = opts.get("connect_timeout_ms")
    if type(wait) is not int or not (wait == -1 or _ATTACH_SLICE_MS < wait <= TIMEOUT_MAX_MS):
        return None
    return opts, wait


def _attach_handle(raw_name, options):
    """``jsonbus_attach``: an unowned :class:`jsonbus._ffi.Handle`, or raises. On the main
    thread a long wait for the name is made of short attempts, so that Ctrl-C interrupts it
    (a handle an interrupted attempt returned is freed by the Handle)."""
    raw_opts = options_bytes(options)
    sliced = _sliced_attach_wait(options)
    if sliced is None:
        handle = lib.jsonbus_attach(raw_name, raw_opts)
        if not handle:
            raise last_error(lib.jsonbus_last_status())
        return handle
    opts, wait = sliced
    deadline = None if wait < 0 else time.monotonic() + wait / 1000.0
    while True:
        slice_ms = _ATTACH_SLICE_MS
        if deadline is not None:
            slice_ms = max(0, min(_ATTACH_SLICE_MS, int((deadline - time.monotonic()) * 1000)))
        opts["connect_timeout_ms"] = slice_ms
        handle = lib.jsonbus_attach(raw_name, _json.dumps(opts).encode("utf-8"))
        if handle:
            return handle
        status = lib.jsonbus_last_status()
        if status != C.ERR_NO_BUS or (deadline is not None and time.monotonic() >= deadline):
            err = last_error(status)
            if status == C.ERR_NO_BUS:  # name the wait the caller asked for, not the slice's
                err.message = re.sub(r"connect_timeout_ms \(\d+ ms\)",
                                     "connect_timeout_ms (%d ms)" % wait, err.message)
            raise err


def attach(name, options=None):
    """Attach to the bus that another process of this user serves under ``name``
    (``jsonbus_attach``; Linux) and return it as a :class:`Bus`. Same as
    :meth:`Bus.attach`."""
    return Bus.attach(name, options)


class Bus:
    """A jsonbus bus: ``Bus(options=None)`` is ``jsonbus_new(json.dumps(options))``.

    ``options`` is a dict (or JSON text) with any of ``dispatcher_threads``,
    ``queue_capacity``, ``publish_timeout_ms``, ``max_message_bytes``, ``max_depth``,
    ``dispatcher_spin_us``; bad ones raise :class:`jsonbus.OptionsError`. None, ``{}`` and
    ``""`` mean the defaults (``""`` as in the C++ API).

    One bus can be shared by several processes of the user (Linux): :meth:`serve` offers
    this bus under a name, and :func:`jsonbus.attach` (or :meth:`Bus.attach`) in another
    process returns a Bus on it, which works in every way as this class says.

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
        self._setup(ptr)

    @classmethod
    def attach(cls, name, options=None):
        """Attach to the bus that another process of this user serves under ``name`` (see
        :meth:`serve`) and return a Bus on it (``jsonbus_attach``; Linux). It is a Bus in
        every way: publish, subscribe (callbacks, pull, groups shared with every process),
        flush, requests and replies, timers, stats, close, the context manager. Its callbacks
        run on its own dispatcher threads; ``seq`` is the hub's one order for all processes.

        ``options``: ``dispatcher_threads``, ``queue_capacity``, ``publish_timeout_ms`` and
        ``dispatcher_spin_us`` for this process's side, and ``connect_timeout_ms`` (1000; 0
        fails at once, -1 waits without limit for the name to be served; on the main thread
        the wait is cut into 200 ms slices, so that Ctrl-C works). ``max_message_bytes`` and
        ``max_depth`` are the hub's, and refused here.

        When the hub goes away (exits, closes its bus, or drops this process), publish,
        subscribe, request and flush raise :class:`jsonbus.DisconnectedError`; waiting
        requests end with it; each subscription gets its end notice with
        :data:`jsonbus.END_PEER_GONE` once what it had received has been delivered (a pull
        subscription hands out its queue, then ends); :meth:`close` still works. In a child
        made by ``fork`` the parent's attached Bus raises DisconnectedError, ``close``
        included, and is never freed there (attach again in the child).

        Raises :class:`jsonbus.TopicError` (malformed name, with the rule),
        :class:`jsonbus.OptionsError`, :class:`jsonbus.NoBusError` (nobody serves the name
        within ``connect_timeout_ms``), :class:`jsonbus.PermissionDeniedError` (the name
        directory is not private, or the hub is another user's),
        :class:`jsonbus.LimitError` (the hub's ``max_peers``), :class:`jsonbus.PeerError`
        (another protocol version), :class:`jsonbus.DisconnectedError` (the hub went away
        during the hand-shake) or :class:`jsonbus.UnsupportedError` (not Linux).
        """
        raw = name_bytes(name)
        _require("jsonbus_attach")
        handle = _attach_handle(raw, options)
        bus = cls.__new__(cls)
        bus._ptr = None
        bus._setup(handle.take(), name=_name_str(name), attached=True)
        return bus

    def _setup(self, ptr, name=None, attached=False):
        """Take ownership of the handle ``ptr`` (from jsonbus_new or jsonbus_attach)."""
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
        self._name = name
        self._attached = attached
        self._pid = os.getpid()  # an attached handle must not be freed in a forked child
        _live.add(self)

    def _forked_away(self):
        """True in a child made by fork after the attach: the handle is the parent's, and
        the library answers every call with DISCONNECTED; it must not be freed here."""
        return self._attached and os.getpid() != self._pid

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

    @property
    def name(self):
        """The name this bus serves (:meth:`serve`) or is attached to (:meth:`attach`), or
        None."""
        return self._name

    @property
    def attached(self):
        """True for a Bus made by :meth:`attach` (a handle on another process's bus)."""
        return self._attached

    # -- across processes ----------------------------------------------------------------

    def serve(self, name, options=None):
        """Serve this bus under ``name``, so that other processes of the same user on this
        machine can :func:`jsonbus.attach` to it (``jsonbus_serve``; Linux). This process
        becomes the hub: it alone numbers messages, so ``seq`` is one order for every
        process. It serves until :meth:`close` (or the bus being freed), which first
        disconnects every attached process. A bus serves at most one name.

        ``name``: 1-64 bytes of ``A-Z a-z 0-9 . _ -``, not starting with ``.``. It lives in
        the user's name directory, ``$XDG_RUNTIME_DIR/jsonbus`` if ``XDG_RUNTIME_DIR`` is set
        (read at each call), else ``$TMPDIR/jsonbus-<uid>`` (or ``/tmp/jsonbus-<uid>``),
        created with mode 0700; it must belong to the user and be closed to group and others.

        ``options`` (dict or JSON text): ``max_peers`` (16, 1-1024: one more attach raises
        :class:`jsonbus.LimitError`), ``peer_ring_bytes`` (1048576, a power of two from 65536
        to 268435456), ``peer_stall_timeout_ms`` (-1: a process that takes no deliveries is
        a slow subscriber; n >= 0: it is dropped after n ms with its ring full), and
        ``allow_group`` (0; 1 also lets processes of the hub's group attach). The hub's own
        ``max_message_bytes``, ``max_depth`` and ``queue_capacity`` hold for everyone. Once
        serving, :meth:`stats` adds ``peers``, ``peers_gone`` and ``peers_dropped``.

        Raises :class:`jsonbus.TopicError` (malformed name, with the rule),
        :class:`jsonbus.OptionsError`, :class:`jsonbus.NameInUseError` (a live bus serves
        the name, or this bus already serves one), :class:`jsonbus.PermissionDeniedError`
        (the name directory is not private to the user), :class:`jsonbus.ClosedError`,
        :class:`jsonbus.UnsupportedError` (not Linux, or this Bus is itself attached) or
        :class:`jsonbus.InternalError` (a system call failed; the message says which).
        """
        raw = name_bytes(name)
        opts = options_bytes(options)
        _require("jsonbus_serve")
        check(self._call(lib.jsonbus_serve, raw, opts))
        self._name = _name_str(name)

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
        :meth:`close`, the counters as they were just before the bus was freed.

        A bus that serves (:meth:`serve`) adds ``peers`` (processes attached now),
        ``peers_gone`` (attached processes that closed, exited or were disconnected, in all)
        and ``peers_dropped`` (dropped by the hub for breaking the protocol or stalling);
        deliveries to attached processes count in their own ``delivered``, not the hub's
        (the library reports these keys only while the bus serves, so the final stats of a
        closed hub lack them). An attached Bus's stats are this process's: ``published``
        counts what was published through it, ``delivered`` the callbacks run here."""
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
        :class:`jsonbus.TimedOutError`, :class:`jsonbus.ClosedError`, a publish's errors,
        :class:`jsonbus.DisconnectedError` (an attached Bus whose hub went away, also while
        waiting), or :class:`jsonbus.DeadlockError` from a callback of this bus (use
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
        Works from a callback of this bus.

        On an attached Bus the hub routes the request after this returns, so the callback may
        also get ``jsonbus.ERR_NO_RESPONDERS`` (nothing matched at the hub) or
        ``jsonbus.ERR_DISCONNECTED`` (the hub went away) and None."""
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
            elif status == C.ERR_DISCONNECTED:
                fut.set_exception(make_error(status, "the hub went away before a reply came"))
            elif status == C.ERR_NO_RESPONDERS:  # (an attached Bus reports it this way)
                fut.set_exception(make_error(status, "no subscription matched %r, so the request "
                                             "has no responder" % (topic,)))
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

        A hub (:meth:`serve`) lets its attached processes finish what it delivered to them
        within ``timeout_ms``, as its own queue, then disconnects every one and stops serving
        its name. An attached Bus closes also once its hub is gone; in a child made by ``fork``
        after the attach it raises :class:`jsonbus.DisconnectedError` and frees nothing.
        """
        timeout_ms = timeout_ms_arg(timeout_ms)
        if self._forked_away() and self._ptr is not None:
            raise make_error(C.ERR_DISCONNECTED, "this Bus was attached by the parent of this "
                             "forked process: attach again in the child (it is not freed here)")
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
        if self._forked_away():
            return  # the parent's attached handle: the library says never to free it in a child
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
        where = ""
        if self._name is not None:
            where = " %s %r" % ("attached to" if self._attached else "serving", self._name)
        return "<jsonbus.Bus %s%s>" % ("closed" if self._ptr is None else "0x%x" % self._addr, where)


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
