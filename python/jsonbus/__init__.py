# The jsonbus package's public surface: Bus, Message, the subscription types, the errors,
# the status constants and the library-wide functions, re-exported from the private modules.
"""jsonbus: Python bindings (ctypes) for the jsonbus in-process JSON message bus.

Example::

    import jsonbus
    with jsonbus.Bus() as bus:
        sub = bus.subscribe_pull("orders.>")
        bus.publish("orders.eu", '{"id": 1}')
        msg = sub.next(timeout_ms=1000)
        print(msg.topic, msg.json, msg.seq)

Across processes (Linux): ``bus.serve("name")`` in one process, ``jsonbus.attach("name")``
in others; an attached Bus is a Bus in every way.

The shared library is loaded from the package (``jsonbus/_lib``), or from the path in the
environment variable ``JSONBUS_LIBRARY``, or, in a checkout, from ``../target/release``.
"""

from . import _ffi
from ._bus import Bus, attach
from ._constants import *  # noqa: F401,F403  (OK, UNSUBSCRIBE, ERR_*, END_*)
from ._constants import __all__ as _constant_names
from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._message import Message
from ._subscription import PullSubscription, Subscription

#: The path of the shared library that was loaded.
library_path = _ffi.library_path

__version__ = "0.1.0"


def version():
    """The loaded library's version, ``"MAJOR.MINOR.PATCH"`` (``jsonbus_version``)."""
    return _ffi.lib.jsonbus_version().decode("ascii")


def now_ns():
    """Nanoseconds on the monotonic clock that stamps :attr:`Message.published_ns`
    (``jsonbus_now_ns``)."""
    return _ffi.lib.jsonbus_now_ns()


def status_name(code):
    """The C name of a status code, e.g. ``status_name(ERR_JSON) == "JSONBUS_ERR_JSON"``."""
    return _ffi.status_name(code)


def end_reason_name(reason):
    """The C name of an end reason, e.g. ``"JSONBUS_END_SLOW"``."""
    return _ffi.end_reason_name(reason)


__all__ = (
    ["Bus", "attach", "Message", "Subscription", "PullSubscription", "version", "now_ns",
     "status_name", "end_reason_name", "library_path"]
    + list(_constant_names)
    + list(_error_names)
)
