# The ctypes layer: finds and loads the jsonbus shared library, declares every C function's
# signature, the jsonbus_message struct and the String type for strings the library returns,
# and reads the status / end-reason constants.
"""Low-level ctypes bindings to the jsonbus C API (``include/jsonbus.h``).

Nothing here is public API: the rest of the package goes through :data:`lib`, whose
functions have ``argtypes``/``restype`` set so that ctypes checks arguments and releases the
GIL around every call (``ctypes.CDLL``), including the blocking ones (flush, close, next,
request).
"""

import ctypes
import ctypes.util
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint64,
    c_void_p,
    string_at,
)

__all__ = ["lib", "library_path", "Message_c", "MessagePtr", "String", "Handle", "CALLBACK",
           "END_CALLBACK", "REPLY_CALLBACK", "has"]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))

if sys.platform == "win32":
    LIBRARY_NAME = "jsonbus.dll"
elif sys.platform == "darwin":
    LIBRARY_NAME = "libjsonbus.dylib"
else:
    LIBRARY_NAME = "libjsonbus.so"


def _candidates():
    """Where to look for the shared library, in order of preference."""
    override = os.environ.get("JSONBUS_LIBRARY")
    if override:
        # An explicit choice wins and is the only candidate: a typo must not silently fall
        # back to another copy of the library.
        if os.path.isdir(override):
            override = os.path.join(override, LIBRARY_NAME)
        return [override], True
    return [
        # Bundled in the installed wheel (copied there by setup.py at build time).
        os.path.join(_PKG_DIR, "_lib", LIBRARY_NAME),
        # Run from the checkout: python/jsonbus/ -> ../../target/release/.
        os.path.join(_PKG_DIR, os.pardir, os.pardir, "target", "release", LIBRARY_NAME),
    ], False


def _load():
    paths, explicit = _candidates()
    tried = []
    for path in paths:
        path = os.path.normpath(path)
        if not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:  # wrong architecture, missing dependency...
            tried.append("%s (%s)" % (path, exc))
    if not explicit:
        found = ctypes.util.find_library("jsonbus")
        if found:
            try:
                return ctypes.CDLL(found), found
            except OSError as exc:
                tried.append("%s (%s)" % (found, exc))
        tried.append("the system's library path (ctypes.util.find_library)")
    raise ImportError(
        "jsonbus: cannot load the jsonbus shared library; tried: "
        + "; ".join(tried)
        + ". Set JSONBUS_LIBRARY to its path, or build it with `cargo build --release`."
    )


lib, library_path = _load()


class Message_c(Structure):
    """``struct jsonbus_message`` (new fields are only ever appended, so this prefix is safe)."""

    _fields_ = [
        ("topic", c_void_p),
        ("topic_len", c_size_t),
        ("json", c_void_p),
        ("json_len", c_size_t),
        ("seq", c_uint64),
        ("published_ns", c_uint64),
        ("subscription", c_int64),
        ("reply_to", c_void_p),
        ("reply_to_len", c_size_t),
    ]


MessagePtr = POINTER(Message_c)


class String(c_void_p):
    """A string the library returned for us to free with ``jsonbus_string_free`` (stats, a
    request's reply). :meth:`free` frees it once; so does the object going away, which covers an
    exception (Ctrl-C) that lands between the C call's return and the code that frees it. (As a
    subclass of ``c_void_p`` it comes back from ctypes as itself, not as a plain int.)"""

    def text(self, length=-1):
        """The string (``length`` bytes, or up to its NUL) decoded as UTF-8."""
        return string_at(self, length).decode("utf-8", "replace")

    def free(self):
        """``jsonbus_string_free`` it, unless already freed (or NULL)."""
        if self.value:
            lib.jsonbus_string_free(self)
            self.value = None

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown
            pass


class Handle(c_void_p):
    """A bus handle the library returned (``jsonbus_attach``) that nobody owns yet: it is
    freed with ``jsonbus_free`` when this object goes away, unless :meth:`take` handed it
    over. That covers an exception (Ctrl-C) landing between the C call's return and the code
    that adopts the handle, which would otherwise leak it (with its threads, and a peer slot
    at the hub)."""

    def take(self):
        """The handle's address, now owned by the caller (this object forgets it)."""
        value, self.value = self.value, None
        return value

    def __del__(self):
        try:
            if self.value:
                value, self.value = self.value, None
                lib.jsonbus_free(value)
        except Exception:  # interpreter shutdown
            pass


# int32_t (*jsonbus_callback)(const jsonbus_message *msg, void *user_data)
CALLBACK = CFUNCTYPE(c_int32, MessagePtr, c_void_p)
# void (*jsonbus_end_callback)(int64_t subscription, int32_t reason, void *user_data)
END_CALLBACK = CFUNCTYPE(None, c_int64, c_int32, c_void_p)
# void (*jsonbus_reply_callback)(int32_t status, const jsonbus_message *reply, void *user_data)
REPLY_CALLBACK = CFUNCTYPE(None, c_int32, MessagePtr, c_void_p)

_bus = c_void_p
_str = c_char_p  # NUL-terminated UTF-8 in; bytes objects are passed without a copy

_SIGNATURES = {
    "jsonbus_version": (c_char_p, []),
    "jsonbus_status_name": (c_char_p, [c_int32]),
    "jsonbus_end_reason_name": (c_char_p, [c_int32]),
    "jsonbus_last_error": (c_char_p, []),
    "jsonbus_last_status": (c_int32, []),
    "jsonbus_now_ns": (c_uint64, []),
    "jsonbus_new": (_bus, [_str]),
    "jsonbus_close": (c_int32, [_bus, c_int32]),
    "jsonbus_free": (None, [_bus]),
    "jsonbus_subscribe_with": (c_int64, [_bus, _str, _str, CALLBACK, END_CALLBACK, c_void_p]),
    "jsonbus_subscribe_pull": (c_int64, [_bus, _str, _str]),
    "jsonbus_unsubscribe": (c_int32, [_bus, c_int64]),
    "jsonbus_publish": (c_int32, [_bus, _str, c_char_p, c_size_t]),
    "jsonbus_flush": (c_int32, [_bus, c_int32]),
    # Returned strings that must be freed come back as String (a c_void_p that frees itself),
    # not c_char_p, which would copy them and lose the pointer.
    "jsonbus_stats": (String, [_bus]),
    "jsonbus_subscription_stats": (String, [_bus, c_int64]),
    "jsonbus_string_free": (None, [c_void_p]),
    "jsonbus_request": (
        c_int32,
        [_bus, _str, c_char_p, c_size_t, c_int32, POINTER(c_void_p), POINTER(c_size_t)],
    ),
    "jsonbus_request_async": (
        c_int32,
        [_bus, _str, c_char_p, c_size_t, c_int32, REPLY_CALLBACK, c_void_p],
    ),
    "jsonbus_publish_after": (c_int64, [_bus, _str, c_char_p, c_size_t, c_int64]),
    "jsonbus_cancel": (c_int32, [_bus, c_int64]),
    "jsonbus_next": (c_int32, [_bus, c_int64, c_int32, POINTER(MessagePtr)]),
    "jsonbus_message_release": (None, [MessagePtr]),
    "jsonbus_pull_fd": (c_int32, [_bus, c_int64]),
    # One bus across processes (Linux; elsewhere they answer JSONBUS_ERR_UNSUPPORTED).
    "jsonbus_serve": (c_int32, [_bus, _str, _str]),
    "jsonbus_attach": (Handle, [_str, _str]),
}

#: Functions a library older than the bindings may lack: the package still loads, and the
#: methods that need them raise UnsupportedError (see :func:`has`).
_OPTIONAL = {"jsonbus_serve", "jsonbus_attach"}

for _name, (_restype, _argtypes) in _SIGNATURES.items():
    try:
        _fn = getattr(lib, _name)
    except AttributeError:
        if _name in _OPTIONAL:
            continue
        raise
    _fn.restype = _restype
    _fn.argtypes = _argtypes


def has(name):
    """Whether the loaded library exports the C function ``name``."""
    return hasattr(lib, name)


def status_name(code):
    """The C name of a status code, e.g. ``"JSONBUS_ERR_JSON"`` (``jsonbus_status_name``)."""
    return lib.jsonbus_status_name(int(code)).decode("ascii", "replace")


def end_reason_name(reason):
    """The C name of an end reason, e.g. ``"JSONBUS_END_SLOW"`` (``jsonbus_end_reason_name``)."""
    return lib.jsonbus_end_reason_name(int(reason)).decode("ascii", "replace")


def _scan(name_of, codes, unknown):
    """Map each name the library knows to its code, by asking it (values are the library's
    choice; only names and signs are fixed by the contract)."""
    table = {}
    for code in codes:
        name = name_of(code)
        if name != unknown:
            table.setdefault(name, code)
    return table


STATUS_CODES = _scan(status_name, range(-128, 16), "JSONBUS_UNKNOWN_STATUS")
END_REASONS = _scan(end_reason_name, range(0, 64), "JSONBUS_END_UNKNOWN")
