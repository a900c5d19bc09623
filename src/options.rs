//! Bus options (`jsonbus_new`) and subscription options (`jsonbus_subscribe_with`,
//! `jsonbus_subscribe_pull`): parsed from JSON objects, with key-and-range errors.

use crate::status::{Error, Status};
use crate::topic::{self, Kind};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// How a bus is configured. `Options::default()` is what `NULL` or `"{}"` gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Threads that run callbacks; 0 = one per CPU.
    pub dispatcher_threads: usize,
    /// Messages held at most (accepted and not yet delivered to every subscription).
    pub queue_capacity: usize,
    /// When full: -1 blocks until room, 0 fails at once, n > 0 waits up to n ms.
    pub publish_timeout_ms: i32,
    /// Largest payload accepted, in bytes.
    pub max_message_bytes: usize,
    /// Deepest nesting of arrays and objects accepted.
    pub max_depth: usize,
    /// How long an idle dispatcher spins, checking for work, before it sleeps (us).
    pub dispatcher_spin_us: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            dispatcher_threads: 1,
            queue_capacity: 65536,
            publish_timeout_ms: -1,
            max_message_bytes: 16 * 1024 * 1024,
            max_depth: 128,
            dispatcher_spin_us: 100,
        }
    }
}

/// One option: its key, its allowed range, and where it goes.
struct Key {
    name: &'static str,
    min: i64,
    max: i64,
    set: fn(&mut Options, i64),
}

const KEYS: [Key; 6] = [
    Key {
        name: "dispatcher_threads",
        min: 0,
        max: 256,
        set: |o, v| o.dispatcher_threads = v as usize,
    },
    Key {
        name: "queue_capacity",
        min: 1,
        max: 16_777_216,
        set: |o, v| o.queue_capacity = v as usize,
    },
    Key {
        name: "publish_timeout_ms",
        min: -1,
        max: i32::MAX as i64,
        set: |o, v| o.publish_timeout_ms = v as i32,
    },
    Key {
        name: "max_message_bytes",
        min: 1,
        max: 1_073_741_824,
        set: |o, v| o.max_message_bytes = v as usize,
    },
    Key {
        name: "max_depth",
        min: 1,
        max: 65535,
        set: |o, v| o.max_depth = v as usize,
    },
    Key {
        name: "dispatcher_spin_us",
        min: 0,
        max: 1_000_000,
        set: |o, v| o.dispatcher_spin_us = v as u32,
    },
];

impl Options {
    /// Parses an options object. `None` and `"{}"` give the defaults.
    ///
    /// A value must be an integer literal (`-?[0-9]+`, so `-0` is 0); `1.0` and `1e3` are
    /// refused like any other non-integer. A key given twice is refused.
    pub fn parse(text: Option<&str>) -> Result<Options, Error> {
        let mut options = Options::default();
        for (name, raw) in members(text)? {
            let key = KEYS
                .iter()
                .find(|k| k.name == name)
                .ok_or_else(|| unknown(&name, KEYS.iter().map(|k| k.name)))?;
            (key.set)(&mut options, integer(&name, raw.get(), key.min, key.max)?);
        }
        Ok(options)
    }

    /// The number of dispatcher threads to start (resolves 0 to the CPU count).
    pub fn resolved_threads(&self) -> usize {
        match self.dispatcher_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// What a publish does when a subscription already holds its `queue_limit` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room, as for a full bus (the default).
    Block,
    /// Drop the subscription's oldest queued message.
    DropOldest,
    /// Do not queue the new message for it.
    DropNew,
    /// End the subscription (`EndReason::Slow`).
    End,
}

impl OnFull {
    const ALL: [(OnFull, &'static str); 4] = [
        (OnFull::Block, "block"),
        (OnFull::DropOldest, "drop_oldest"),
        (OnFull::DropNew, "drop_new"),
        (OnFull::End, "end"),
    ];

    pub fn name(self) -> &'static str {
        OnFull::ALL
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("", |(_, n)| n)
    }
}

/// How one subscription is configured: the object given to `jsonbus_subscribe_with` and
/// `jsonbus_subscribe_pull`. `SubscribeOptions::default()` is what `NULL` or `"{}"` gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Most messages queued for the subscription; 0 = no limit of its own.
    pub queue_limit: usize,
    pub on_full: OnFull,
    /// End the subscription after this many negative returns in a row; 0 = never.
    pub max_failures: u32,
    /// Queue group: one topic token.
    pub group: Option<Box<str>>,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions {
            queue_limit: 0,
            on_full: OnFull::Block,
            max_failures: 0,
            group: None,
        }
    }
}

const SUBSCRIBE_KEYS: [&str; 4] = ["queue_limit", "on_full", "max_failures", "group"];

impl SubscribeOptions {
    /// Parses a subscription's options object; `None` and `"{}"` give the defaults. Errors as
    /// for `Options::parse`, with the allowed values of the string options.
    pub fn parse(text: Option<&str>) -> Result<SubscribeOptions, Error> {
        let mut o = SubscribeOptions::default();
        for (name, raw) in members(text)? {
            let raw = raw.get();
            match name.as_str() {
                "queue_limit" => o.queue_limit = integer(&name, raw, 0, 16_777_216)? as usize,
                "max_failures" => o.max_failures = integer(&name, raw, 0, i32::MAX as i64)? as u32,
                "on_full" => {
                    let names: Vec<String> = OnFull::ALL
                        .iter()
                        .map(|(_, n)| format!("\"{n}\""))
                        .collect();
                    let allowed = format!("one of {}", names.join(", "));
                    let value = string(&name, raw, &allowed)?;
                    o.on_full = OnFull::ALL
                        .iter()
                        .find(|(_, n)| *n == value)
                        .map(|(p, _)| *p)
                        .ok_or_else(|| {
                            bad(format!(
                                "option \"on_full\" is {}; it must be {allowed}",
                                quoted(&value)
                            ))
                        })?;
                }
                "group" => {
                    let allowed = "one topic token (printable ASCII without '.', '*' or '>', at most 256 bytes)";
                    let value = string(&name, raw, allowed)?;
                    if topic::check(&value, Kind::Topic).is_err() || value.contains('.') {
                        return Err(bad(format!(
                            "option \"group\" is {}; it must be {allowed}",
                            quoted(&value)
                        )));
                    }
                    o.group = Some(value.into());
                }
                _ => return Err(unknown(&name, SUBSCRIBE_KEYS.into_iter())),
            }
        }
        Ok(o)
    }

    /// Whether publishing must look at this subscription's queue or group before queueing.
    pub fn is_plain(&self) -> bool {
        self.queue_limit == 0 && self.group.is_none()
    }
}

/// How a bus is served to other processes (`jsonbus_serve`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Processes attached at once, at most.
    pub max_peers: usize,
    /// Bytes of each of a peer's two rings (a power of two).
    pub peer_ring_bytes: usize,
    /// -1: a peer that takes no deliveries is a slow subscriber; n >= 0: dropped after n ms.
    pub peer_stall_timeout_ms: i64,
    /// Whether processes of the same group (not only the same user) may attach.
    pub allow_group: bool,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            max_peers: 16,
            peer_ring_bytes: 1 << 20,
            peer_stall_timeout_ms: -1,
            allow_group: false,
        }
    }
}

const SERVE_KEYS: [&str; 4] = [
    "max_peers",
    "peer_ring_bytes",
    "peer_stall_timeout_ms",
    "allow_group",
];

impl ServeOptions {
    /// Parses `jsonbus_serve`'s options; `None` and `"{}"` give the defaults.
    pub fn parse(text: Option<&str>) -> Result<ServeOptions, Error> {
        let mut o = ServeOptions::default();
        for (name, raw) in members(text)? {
            let raw = raw.get();
            match name.as_str() {
                "max_peers" => o.max_peers = integer(&name, raw, 1, 1024)? as usize,
                "peer_ring_bytes" => {
                    let n = integer(&name, raw, 65536, 268_435_456)? as usize;
                    if !n.is_power_of_two() {
                        return Err(bad(format!(
                            "option \"peer_ring_bytes\" is {n}; it must be a power of two from 65536 to 268435456"
                        )));
                    }
                    o.peer_ring_bytes = n;
                }
                "peer_stall_timeout_ms" => {
                    o.peer_stall_timeout_ms = integer(&name, raw, -1, i32::MAX as i64)?
                }
                "allow_group" => o.allow_group = integer(&name, raw, 0, 1)? == 1,
                _ => return Err(unknown(&name, SERVE_KEYS.into_iter())),
            }
        }
        Ok(o)
    }
}

/// How a process attaches to a bus another process serves (`jsonbus_attach`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachOptions {
    /// The options of the local half (`max_message_bytes` and `max_depth` come from the hub).
    pub local: Options,
    /// How long to wait for the name to be served: 0 fails at once, -1 waits without limit.
    pub connect_timeout_ms: i32,
}

/// The bus options an attached process sets for itself.
const ATTACH_LOCAL_KEYS: [&str; 4] = [
    "dispatcher_threads",
    "queue_capacity",
    "publish_timeout_ms",
    "dispatcher_spin_us",
];

impl AttachOptions {
    /// Parses `jsonbus_attach`'s options; `None` and `"{}"` give the defaults.
    pub fn parse(text: Option<&str>) -> Result<AttachOptions, Error> {
        let mut local = Options::default();
        let mut connect_timeout_ms = 1000;
        for (name, raw) in members(text)? {
            let raw = raw.get();
            if name == "connect_timeout_ms" {
                connect_timeout_ms = integer(&name, raw, -1, i32::MAX as i64)? as i32;
                continue;
            }
            if name == "max_message_bytes" || name == "max_depth" {
                return Err(bad(format!(
                    "option \"{name}\" is the serving process's: an attached process takes it from the hub"
                )));
            }
            let key = KEYS
                .iter()
                .find(|k| k.name == name && ATTACH_LOCAL_KEYS.contains(&k.name))
                .ok_or_else(|| {
                    unknown(
                        &name,
                        ATTACH_LOCAL_KEYS.into_iter().chain(["connect_timeout_ms"]),
                    )
                })?;
            (key.set)(&mut local, integer(&name, raw, key.min, key.max)?);
        }
        Ok(AttachOptions {
            local,
            connect_timeout_ms,
        })
    }
}

/// A string value for a message: escaped, and cut after 64 characters so that what follows it
/// (the allowed values) always fits in the last error.
fn quoted(value: &str) -> String {
    let mut shown: String = value.chars().take(64).collect();
    if shown.len() < value.len() {
        shown.push_str("...");
    }
    format!("\"{}\"", shown.escape_debug())
}

fn bad(message: String) -> Error {
    Error::new(Status::Options, message)
}

fn unknown<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Error {
    let known: Vec<&str> = known.collect();
    bad(format!(
        "unknown option \"{name}\"; known options: {}",
        known.join(", ")
    ))
}

/// The members of an options object in document order, each value as written; `None` is no
/// members. A key given twice is refused first, whatever its values.
fn members(text: Option<&str>) -> Result<Vec<(String, Box<RawValue>)>, Error> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    // Members first: each value is kept as written, so that a number JSON allows but f64 cannot
    // hold (1e400) is refused by its key's own check, which names the key.
    let Members(members) =
        serde_json::from_str(text).map_err(|_| match serde_json::from_str::<Value>(text) {
            Err(e) => bad(format!("options are not valid JSON: {e}")),
            Ok(v) if !v.is_object() => bad(format!(
                "options must be a JSON object, not {}",
                kind_of(&v)
            )),
            Ok(_) => bad("options are not a valid JSON object".into()),
        })?;
    for (i, (name, _)) in members.iter().enumerate() {
        if members[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(bad(format!("option \"{name}\" is given more than once")));
        }
    }
    Ok(members)
}

/// An integer option's value, written as an integer literal and within `min..=max`.
fn integer(name: &str, raw: &str, min: i64, max: i64) -> Result<i64, Error> {
    let range = format!("an integer from {min} to {max}");
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        let kind = serde_json::from_str::<Value>(raw).map_or(raw.to_string(), |v| kind_of(&v));
        return Err(bad(format!(
            "option \"{name}\" must be {range}, not {kind}"
        )));
    }
    match raw.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "option \"{name}\" is {raw}, out of range: it must be {range}"
        ))),
    }
}

/// A string option's value; anything else is refused, naming what is `allowed`.
fn string(name: &str, raw: &str, allowed: &str) -> Result<String, Error> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) => Ok(s),
        Ok(v) => Err(bad(format!(
            "option \"{name}\" must be {allowed}, not {}",
            kind_of(&v)
        ))),
        Err(_) => Err(bad(format!("option \"{name}\" must be {allowed}"))),
    }
}

/// The members of a JSON object in document order, repeats included, each value as written.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct Collect;
        impl<'de> Visitor<'de> for Collect {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Collect)
    }
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_and_attach_options() {
        let s = ServeOptions::parse(Some(
            r#"{"max_peers":2,"peer_ring_bytes":65536,"peer_stall_timeout_ms":0,"allow_group":1}"#,
        ))
        .unwrap();
        assert_eq!(
            (
                s.max_peers,
                s.peer_ring_bytes,
                s.peer_stall_timeout_ms,
                s.allow_group
            ),
            (2, 65536, 0, true)
        );
        assert_eq!(ServeOptions::parse(None).unwrap(), ServeOptions::default());
        let e = ServeOptions::parse(Some(r#"{"peer_ring_bytes":100000}"#)).unwrap_err();
        assert!(
            e.message.contains("out of range") || e.message.contains("power of two"),
            "{}",
            e.message
        );
        let e = ServeOptions::parse(Some(r#"{"peer_ring_bytes":98304}"#)).unwrap_err();
        assert!(e.message.contains("power of two"), "{}", e.message);
        assert!(ServeOptions::parse(Some(r#"{"max_peers":0}"#)).is_err());
        assert!(ServeOptions::parse(Some(r#"{"queue_capacity":5}"#))
            .unwrap_err()
            .message
            .contains("known options: max_peers"));
        let a = AttachOptions::parse(Some(r#"{"dispatcher_threads":2,"connect_timeout_ms":-1}"#))
            .unwrap();
        assert_eq!((a.local.dispatcher_threads, a.connect_timeout_ms), (2, -1));
        assert_eq!(AttachOptions::parse(None).unwrap().connect_timeout_ms, 1000);
        let e = AttachOptions::parse(Some(r#"{"max_depth":3}"#)).unwrap_err();
        assert!(e.message.contains("serving process"), "{}", e.message);
        assert!(AttachOptions::parse(Some(r#"{"connect_timeout_ms":-2}"#)).is_err());
    }

    fn err(text: &str) -> String {
        let e = Options::parse(Some(text)).unwrap_err();
        assert_eq!(e.status, Status::Options, "{text}");
        e.message
    }

    #[test]
    fn defaults() {
        assert_eq!(Options::parse(None).unwrap(), Options::default());
        assert_eq!(Options::parse(Some("{}")).unwrap(), Options::default());
        assert_eq!(Options::parse(Some(" { } ")).unwrap(), Options::default());
        assert!(err("").contains("not valid JSON"));
        assert!(Options::default().resolved_threads() >= 1);
    }

    #[test]
    fn every_key_is_set_and_range_checked() {
        let o = Options::parse(Some(
            r#"{"dispatcher_threads":0,"queue_capacity":1,"publish_timeout_ms":-1,
                "max_message_bytes":1073741824,"max_depth":65535,"dispatcher_spin_us":0}"#,
        ))
        .unwrap();
        assert_eq!(o.dispatcher_threads, 0);
        assert_eq!(o.queue_capacity, 1);
        assert_eq!(o.max_message_bytes, 1 << 30);
        assert_eq!(o.max_depth, 65535);
        assert_eq!(o.dispatcher_spin_us, 0);
        assert!(o.resolved_threads() >= 1);
        for k in KEYS {
            let low = err(&format!("{{\"{}\":{}}}", k.name, k.min - 1));
            assert!(
                low.contains(k.name) && low.contains(&k.max.to_string()),
                "{low}"
            );
            let high = err(&format!("{{\"{}\":{}}}", k.name, k.max + 1));
            assert!(high.contains("out of range"), "{high}");
            let wrong = err(&format!("{{\"{}\":\"4\"}}", k.name));
            assert!(wrong.contains("a string"), "{wrong}");
        }
    }

    #[test]
    fn bad_documents() {
        assert!(err(r#"{"queue_capacty":5}"#).contains("unknown option \"queue_capacty\""));
        assert!(err("[1]").contains("must be a JSON object"));
        assert!(err("{").contains("not valid JSON"));
        assert!(err(r#"{"max_depth":2.5}"#).contains("2.5"));
        assert!(err(r#"{"max_depth":1e3}"#).contains("integer"));
        assert!(err(r#"{"max_depth":1.0}"#).contains("not the number 1.0"));
        for zero in ["0.0", "-0.0", "0e0", "-0E+0"] {
            let text = format!(r#"{{"dispatcher_threads":{zero}}}"#);
            assert!(err(&text).contains("must be an integer"), "{text}");
        }
        assert!(err(r#"{"max_depth":99999999999999999999}"#)
            .contains("is 99999999999999999999, out of range"));
        assert!(err(r#"{"max_depth":0,"max_depth":5}"#)
            .contains("\"max_depth\" is given more than once"));
        assert!(
            err(r#"{"max_depth":"x","queue_capacity":2,"max_depth":5}"#).contains("more than once")
        );
        let zero = Options::parse(Some(r#"{ "dispatcher_threads" : -0 , "max_depth":-0}"#));
        assert!(zero
            .unwrap_err()
            .message
            .contains("\"max_depth\" is -0, out of range"));
        let spaced = Options::parse(Some("{ \"dispatcher_threads\" :\n -0 \t}")).unwrap();
        assert_eq!(spaced.dispatcher_threads, 0);
    }

    fn sub_err(text: &str) -> String {
        let e = SubscribeOptions::parse(Some(text)).unwrap_err();
        assert_eq!(e.status, Status::Options, "{text}");
        e.message
    }

    #[test]
    fn subscription_options() {
        assert_eq!(
            SubscribeOptions::parse(None).unwrap(),
            SubscribeOptions::default()
        );
        let o = SubscribeOptions::parse(Some(
            r#"{"queue_limit":16777216,"on_full":"drop_oldest","max_failures":2147483647,"group":"workers"}"#,
        ))
        .unwrap();
        assert_eq!(o.queue_limit, 16_777_216);
        assert_eq!(o.on_full, OnFull::DropOldest);
        assert_eq!(o.max_failures, i32::MAX as u32);
        assert_eq!(o.group.as_deref(), Some("workers"));
        assert!(!o.is_plain());
        for (p, n) in OnFull::ALL {
            let o = SubscribeOptions::parse(Some(&format!(r#"{{"on_full":"{n}"}}"#))).unwrap();
            assert_eq!((o.on_full, p.name()), (p, n));
        }
        let m = sub_err(r#"{"on_full":"drop"}"#);
        assert!(
            m.contains("\"drop\"") && m.contains("\"drop_oldest\", \"drop_new\", \"end\""),
            "{m}"
        );
        assert!(sub_err(r#"{"on_full":1}"#).contains("not the number 1"));
        assert!(sub_err(r#"{"queue_limit":-1}"#).contains("from 0 to 16777216"));
        assert!(sub_err(r#"{"queue_limit":"5"}"#).contains("not a string"));
        assert!(sub_err(r#"{"max_failures":2147483648}"#).contains("out of range"));
        for g in ["a.b", "", "*", ">", "a b", "é"] {
            let m = sub_err(&format!(r#"{{"group":"{g}"}}"#));
            assert!(m.contains("one topic token"), "{g}: {m}");
        }
        assert!(sub_err(r#"{"group":null}"#).contains("not null"));
        assert!(sub_err(r#"{"limit":1}"#)
            .contains("known options: queue_limit, on_full, max_failures, group"));
        assert!(sub_err(r#"{"group":"a","group":"b"}"#).contains("more than once"));
        let nul = sub_err(r#"{"on_full":"x\u0000y"}"#);
        assert!(
            nul.contains(r#""x\0y""#) && nul.contains("\"end\""),
            "{nul}"
        );
        let long = sub_err(&format!(r#"{{"group":"{}"}}"#, "g".repeat(2000)));
        assert!(
            long.len() < 300 && long.contains("one topic token"),
            "{long}"
        );
        let huge = sub_err(r#"{"queue_limit":1e400}"#);
        assert!(
            huge.contains("\"queue_limit\"") && huge.contains("from 0 to"),
            "{huge}"
        );
        assert!(sub_err("[]").contains("must be a JSON object"));
    }
}
