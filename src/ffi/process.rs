//! The exports of a bus shared across processes: `jsonbus_serve` and `jsonbus_attach`.

use super::error::{self, boundary};
use super::types::*;
use crate::default_bus;
use crate::options::{AttachOptions, ServeOptions};
use crate::status::{Error, Status};
use std::ffi::c_char;

/// Options text: NULL for none; not UTF-8 is `JSONBUS_ERR_OPTIONS`.
fn options_text<'a>(options_json: *const c_char) -> Result<Option<&'a str>, Error> {
    match options_json.is_null() {
        true => Ok(None),
        false => text(options_json, "options_json")
            .map(Some)
            .map_err(|e| Error::new(Status::Options, e.message)),
    }
}

/// A bus name's text: NULL is `JSONBUS_ERR_NULL`; not UTF-8 is `JSONBUS_ERR_TOPIC`, with the
/// rule (the rest of the rule is checked by the core).
fn name_text<'a>(name: *const c_char) -> Result<&'a str, Error> {
    text(name, "name").map_err(|e| match e.status {
        Status::Null => e,
        _ => Error::new(
            Status::Topic,
            format!(
                "the bus name is not valid UTF-8 ({}); {}",
                e.message,
                crate::topic::BUS_NAME_RULE
            ),
        ),
    })
}

/// Serves `bus` under `name`, so that other processes of the same user on this machine can
/// `jsonbus_attach` to it (Linux; elsewhere `JSONBUS_ERR_UNSUPPORTED`). This process becomes
/// the hub: it alone numbers messages, so `seq` is one order for every process, and it goes on
/// serving until `jsonbus_close` or `jsonbus_free` of the bus, which first disconnects every
/// attached process. A bus serves at most one name.
///
/// `name`: 1-64 bytes of `A-Z a-z 0-9 . _ -`, not starting with `.`. It lives in the user's
/// name directory: `$XDG_RUNTIME_DIR/jsonbus` if `XDG_RUNTIME_DIR` is set, else
/// `$TMPDIR/jsonbus-<uid>` (or `/tmp/jsonbus-<uid>`), created with mode 0700; it must be owned
/// by the user, not a symbolic link, and closed to group and others. The name is the files
/// `<name>.lock` (held with `flock` while served, so only one live hub serves a name, and a
/// crashed hub's name is taken over by the next serve) and `<name>.sock` (the control socket),
/// both removed when the hub stops. The data travel through shared memory that is not in the
/// file system: a sealed memfd per attached process, which vanishes with the processes.
///
/// `options_json` (NULL or an object of integers):
/// - `max_peers` (16, 1-1024): processes attached at once; one more is refused with
///   `JSONBUS_ERR_LIMIT`;
/// - `peer_ring_bytes` (1048576, 65536-268435456, a power of two): each of an attached
///   process's two rings; a message larger than half a ring travels in fragments;
/// - `peer_stall_timeout_ms` (-1, -1-2147483647): -1: a process that takes no deliveries is a
///   slow subscriber (what is sent to it stays held and counts against `queue_capacity`);
///   n >= 0: a process whose ring stays full for n ms, or that has not finished a delivery
///   (its callback returned, or its pulled message released) within n ms, is dropped: its
///   subscriptions end (`JSONBUS_END_PEER_GONE`), it gets `JSONBUS_ERR_DISCONNECTED`, and what
///   it had published before is still delivered;
/// - `allow_group` (0, 0-1): 1 also lets processes of the hub's group attach.
///
/// What the hub decides for everyone: `max_message_bytes` and `max_depth` (the bus's own);
/// `queue_capacity` bounds what the hub holds, including deliveries to attached processes
/// until their callbacks have returned there, and the credit it gives each attached process
/// (up to 1024 messages, or `queue_capacity / (4 * max_peers)`) to publish without asking.
/// The hub's `jsonbus_stats` adds `peers` (attached now), `peers_gone` (exited or
/// disconnected, in all) and `peers_dropped` (dropped by the hub for breaking the protocol or
/// stalling). A process that exited moves from `peers` to `peers_gone` once what it left in
/// its ring has been taken and its unused credit is back in `queue_capacity` (within
/// milliseconds, 5 s at most), so a publish right after `peers` fell finds that room; its
/// subscriptions end at once. The hub's `subscriptions` counts the live subscriptions of
/// attached processes too, while deliveries to them count in their own stats' `delivered`,
/// not in the hub's.
///
/// Returns `JSONBUS_OK`, or `JSONBUS_ERR_NULL` (bus or name), `JSONBUS_ERR_TOPIC` (malformed
/// name, with the rule), `JSONBUS_ERR_OPTIONS`, `JSONBUS_ERR_NAME_IN_USE` (a live bus serves
/// the name, or this bus already serves one), `JSONBUS_ERR_PERMISSION` (the name directory is
/// not private to the user), `JSONBUS_ERR_CLOSED`, `JSONBUS_ERR_UNSUPPORTED` (not Linux, or
/// `bus` is itself an attached handle) or `JSONBUS_ERR_INTERNAL` (a system call failed; the
/// message says which).
#[no_mangle]
pub extern "C" fn jsonbus_serve(
    bus: *mut jsonbus,
    name: *const c_char,
    options_json: *const c_char,
) -> i32 {
    boundary(|| {
        error::status((|| {
            let h = handle(bus)?;
            let name = name_text(name)?;
            let options = ServeOptions::parse(options_text(options_json)?)?;
            serve(h, name, options)
        })())
    })
}

#[cfg(target_os = "linux")]
fn serve(h: Handle<'_>, name: &str, options: ServeOptions) -> Result<(), Error> {
    match h {
        Handle::Own(b) => b.serve(name, options),
        Handle::Default => default_bus::open()?.serve(name, options),
    }
}

#[cfg(not(target_os = "linux"))]
fn serve(_: Handle<'_>, _: &str, _: ServeOptions) -> Result<(), Error> {
    let _ = default_bus::current;
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
fn unsupported() -> Error {
    Error::new(
        Status::Unsupported,
        "buses shared across processes (jsonbus_serve, jsonbus_attach) are built for Linux only so far",
    )
}

/// Attaches to the bus that another process of this user serves under `name` (see
/// `jsonbus_serve`) and returns a handle on which every call works as on a bus of one's own:
/// publish, subscribe (`jsonbus_subscribe_ex`, `jsonbus_subscribe_pull` and groups included),
/// unsubscribe, flush, requests, replies, timers, stats, close and free. Free it with
/// `jsonbus_free` (Linux; elsewhere NULL with `JSONBUS_ERR_UNSUPPORTED`).
///
/// The handle has its own dispatcher threads, which run this process's callbacks, and one
/// link thread (`jsonbus-link`) that moves deliveries from shared memory into the local
/// queues. How calls behave through it:
/// - publish validates here, then hands the message to the hub, which numbers it (`seq` is
///   the hub's, `published_ns` the hub's clock when it took it) and checks it again. It returns
///   once the message is in this process's ring, within the credit the hub gave (when the hub
///   is full, publish waits, fails or times out as `publish_timeout_ms` says, and a callback's
///   publish fails at once with `JSONBUS_ERR_FULL`). A message accepted so is delivered even if
///   this process dies right after;
/// - subscribe returns once the subscription is registered at the hub; `queue_limit` and
///   `on_full` apply to the queue here: at a "block" limit, or with this process's
///   `queue_capacity` reached, deliveries wait in order in the link - those of its other
///   subscriptions too - and stay held at the hub; a `group` is shared with members in every
///   process (the hub picks a member in another process by its unfinished deliveries, not by
///   its `queue_limit`);
/// - a delivery that the hub routed to a subscription before it learned of its end here, and
///   that comes after the end notice ran, is counted in this handle's `dropped` only;
/// - flush waits until everything published through this handle before it is delivered to
///   every subscription in every process and their callbacks have returned, and what those
///   callbacks published, transitively;
/// - a delivery counts as held at the hub (against its `queue_capacity`) until its callback
///   has returned here or it was dropped here;
/// - the stats are this process's: `published` counts messages published through this
///   handle, `delivered` callbacks run here.
///
/// When the hub goes away (it exits, is killed, closes its bus, or drops this process),
/// publish, subscribe, request and flush answer `JSONBUS_ERR_DISCONNECTED` (with the reason in
/// `jsonbus_last_error()`), waiting requests end with it, and every subscription ends with
/// `JSONBUS_END_PEER_GONE` once what it had received has been delivered (a pull subscription
/// hands out its queue, then answers `JSONBUS_ERR_ENDED`); close and free still work. A child
/// made by `fork` gets `JSONBUS_ERR_DISCONNECTED` from every call on an attached handle of its
/// parent, `jsonbus_close` included, and must not free it (attach again in the child).
/// Once closed or freed, the handle leaves no thread, descriptor or mapping behind.
///
/// `options_json` (NULL or an object): `dispatcher_threads`, `queue_capacity`,
/// `publish_timeout_ms` and `dispatcher_spin_us` as for `jsonbus_new`, for this process's
/// side (`queue_capacity` bounds what this process holds: deliveries waiting for its
/// callbacks, timers, publishes being handed over), and `connect_timeout_ms` (1000,
/// -1-2147483647): how long to wait for the name to be served (0: fail at once, -1: wait
/// without limit). `max_message_bytes` and `max_depth` are the hub's and are refused here.
///
/// Returns NULL on failure with `jsonbus_last_status()`: `JSONBUS_ERR_NULL`,
/// `JSONBUS_ERR_TOPIC` (malformed name), `JSONBUS_ERR_OPTIONS`, `JSONBUS_ERR_NO_BUS` (nobody
/// serves the name within `connect_timeout_ms`), `JSONBUS_ERR_PERMISSION` (the name directory
/// is not private, or the hub is another user's), `JSONBUS_ERR_LIMIT` (the hub's `max_peers`),
/// `JSONBUS_ERR_PEER` (another protocol version, or not a jsonbus hub),
/// `JSONBUS_ERR_DISCONNECTED` (the hub went away during the hand-shake),
/// `JSONBUS_ERR_UNSUPPORTED` or `JSONBUS_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn jsonbus_attach(name: *const c_char, options_json: *const c_char) -> *mut jsonbus {
    boundary(|| {
        let attached = (|| {
            let name = name_text(name)?;
            let options = AttachOptions::parse(options_text(options_json)?)?;
            attach(name, options)
        })();
        match attached {
            Ok(bus) => {
                error::clear();
                new_handle(bus)
            }
            Err(e) => {
                error::set(&e);
                std::ptr::null_mut()
            }
        }
    })
}

#[cfg(target_os = "linux")]
fn attach(name: &str, options: AttachOptions) -> Result<crate::bus::Bus, Error> {
    crate::process::peer::attach(name, options)
}

#[cfg(not(target_os = "linux"))]
fn attach(_: &str, _: AttachOptions) -> Result<crate::bus::Bus, Error> {
    Err(unsupported())
}
