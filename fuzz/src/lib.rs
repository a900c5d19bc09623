//! Shared pieces of the jsonbus fuzz targets: reference checkers written from
//! `CONTRACT.md` (independent of the library's own `topic`, `validate` and `options`
//! modules), helpers to call the C API from Rust, and a tiny byte reader for the inputs.

use ::jsonbus::ffi::*;
use std::ffi::{c_char, CStr, CString};

// ---------------------------------------------------------------------------------------
// Status codes

/// Every code a fallible export may return (ids aside), the 2C codes included.
pub const DOCUMENTED: [i32; 23] = [
    JSONBUS_OK,
    JSONBUS_UNSUBSCRIBE,
    JSONBUS_ERR_NULL,
    JSONBUS_ERR_UTF8,
    JSONBUS_ERR_JSON,
    JSONBUS_ERR_TOPIC,
    JSONBUS_ERR_TOO_LARGE,
    JSONBUS_ERR_FULL,
    JSONBUS_ERR_TIMEOUT,
    JSONBUS_ERR_CLOSED,
    JSONBUS_ERR_NOT_FOUND,
    JSONBUS_ERR_DEADLOCK,
    JSONBUS_ERR_OPTIONS,
    JSONBUS_ERR_INTERNAL,
    JSONBUS_ERR_ENDED,
    JSONBUS_ERR_UNSUPPORTED,
    JSONBUS_ERR_NO_RESPONDERS,
    JSONBUS_ERR_NO_BUS,
    JSONBUS_ERR_NAME_IN_USE,
    JSONBUS_ERR_PERMISSION,
    JSONBUS_ERR_DISCONNECTED,
    JSONBUS_ERR_PEER,
    JSONBUS_ERR_LIMIT,
];

pub fn name(code: i32) -> String {
    text(jsonbus_status_name(code))
}

/// A NUL-terminated string the library returned, as Rust text (lossy).
pub fn text(p: *const c_char) -> String {
    assert!(!p.is_null(), "jsonbus returned a NULL string");
    // SAFETY: the library returns NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub fn last_error() -> String {
    text(jsonbus_last_error())
}

/// Checks the thread's last error and status after a fallible call returned `code`:
/// "" and OK after a success, a non-empty text and the same code after a failure.
pub fn check_last(code: i32, what: &str) {
    assert!(
        DOCUMENTED.contains(&code) && code != JSONBUS_UNSUBSCRIBE,
        "{what}: undocumented return code {code}"
    );
    assert_ne!(
        code,
        JSONBUS_ERR_INTERNAL,
        "{what}: JSONBUS_ERR_INTERNAL (a caught bug): {}",
        last_error()
    );
    let (err, status) = (last_error(), jsonbus_last_status());
    if code == JSONBUS_OK {
        assert!(
            err.is_empty(),
            "{what}: succeeded but last_error is {err:?}"
        );
        assert_eq!(
            status, JSONBUS_OK,
            "{what}: succeeded but last_status is {status}"
        );
    } else {
        assert!(
            !err.is_empty(),
            "{what}: failed with {} but last_error is empty",
            name(code)
        );
        assert_eq!(
            status,
            code,
            "{what}: returned {} but last_status is {}",
            name(code),
            name(status)
        );
    }
}

/// `bytes` up to its first NUL, as a C string (what a C caller's `char *` holds).
pub fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL before end")
}

/// The bus's stats as JSON.
pub fn stats(bus: *mut jsonbus) -> serde_json::Value {
    let p = jsonbus_stats(bus);
    assert!(
        !p.is_null(),
        "jsonbus_stats returned NULL: {}",
        last_error()
    );
    check_last(JSONBUS_OK, "jsonbus_stats");
    let s = text(p);
    jsonbus_string_free(p);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("stats are not JSON ({e}): {s}"))
}

pub fn stat(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("stats lack integer {key:?}: {v}"))
}

pub fn rejected(v: &serde_json::Value, reason: &str) -> u64 {
    v.get("rejected")
        .and_then(|r| r.get(reason))
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("stats lack rejected.{reason}: {v}"))
}

// ---------------------------------------------------------------------------------------
// Topics and patterns (CONTRACT.md, "Topics")

pub const MAX_TOPIC: usize = 256;

/// Whether `s` (the bytes before the NUL) is a valid topic (`pattern == false`) or
/// subscription pattern (`pattern == true`).
pub fn topic_ok(s: &[u8], pattern: bool) -> bool {
    if s.is_empty() || s.len() > MAX_TOPIC {
        return false;
    }
    let tokens: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
    let last = tokens.len() - 1;
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() || !t.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            return false;
        }
        if t.contains(&b'*') || t.contains(&b'>') {
            let whole = *t == b"*" || (*t == b">" && i == last);
            if !pattern || !whole {
                return false;
            }
        }
    }
    true
}

/// Whether a valid `pattern` matches a valid `topic`.
pub fn matches(pattern: &[u8], topic: &[u8]) -> bool {
    fn go(p: &[&[u8]], t: &[&[u8]]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(&b">"), Some(_)) if p.len() == 1 => true,
            (Some(&pt), Some(&tt)) if pt == b"*" || pt == tt => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
    let t: Vec<&[u8]> = topic.split(|&b| b == b'.').collect();
    // Part 2B: reply topics (first token `_INBOX`) are matched only by patterns that name
    // that token; a leading wildcard never matches it.
    if t[0] == b"_INBOX" && (p[0] == b"*" || p[0] == b">") {
        return false;
    }
    go(&p, &t)
}

// ---------------------------------------------------------------------------------------
// Payloads (CONTRACT.md, "JSON" and guarantee 1)

/// What the contract says a publish of `json` must do: `Ok` or the set of codes any one
/// of which is a correct refusal (when several reasons apply and the contract does not
/// order them).
pub fn payload_verdict(json: &[u8], max_bytes: usize, max_depth: usize) -> Result<(), Vec<i32>> {
    let mut why = Vec::new();
    if json.len() > max_bytes {
        why.push(JSONBUS_ERR_TOO_LARGE);
    }
    if std::str::from_utf8(json).is_err() {
        // "Invalid UTF-8 anywhere in the payload is JSONBUS_ERR_UTF8, checked before the JSON."
        why.push(JSONBUS_ERR_UTF8);
    } else if !serde_accepts(json) || depth(json) > max_depth {
        why.push(JSONBUS_ERR_JSON);
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why)
    }
}

/// serde_json's verdict on "exactly one JSON value with optional white space around it"
/// (its ignore path has no recursion limit).
pub fn serde_accepts(b: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(b);
    serde::Deserialize::deserialize(&mut de)
        .and_then(|serde::de::IgnoredAny| de.end())
        .is_ok()
}

/// The deepest nesting of arrays and objects in a valid JSON text (`[[1]]` is 2).
pub fn depth(b: &[u8]) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

// ---------------------------------------------------------------------------------------
// Options (CONTRACT.md, "Options"; plus `dispatcher_spin_us`, which the header documents)

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Opts {
    pub dispatcher_threads: i64,
    pub queue_capacity: i64,
    pub publish_timeout_ms: i64,
    pub max_message_bytes: i64,
    pub max_depth: i64,
    pub dispatcher_spin_us: i64,
}

pub const DEFAULTS: Opts = Opts {
    dispatcher_threads: 1,
    queue_capacity: 65536,
    publish_timeout_ms: -1,
    max_message_bytes: 16_777_216,
    max_depth: 128,
    dispatcher_spin_us: 100,
};

/// (key, min, max)
pub const KEYS: [(&str, i64, i64); 6] = [
    ("dispatcher_threads", 0, 256),
    ("queue_capacity", 1, 16_777_216),
    ("publish_timeout_ms", -1, i32::MAX as i64),
    ("max_message_bytes", 1, 1_073_741_824),
    ("max_depth", 1, 65535),
    ("dispatcher_spin_us", 0, 1_000_000),
];

/// One member's value as the reference sees it.
#[derive(Debug)]
pub enum Member {
    Int(i128),
    /// A JSON string, decoded.
    Str(String),
    Other,
}

/// Every member of a JSON object in document order (duplicates included), or None when
/// the text is not exactly one JSON object.
pub fn object_members(text: &str) -> Option<Vec<(String, Member)>> {
    use serde::de::{Deserializer as _, MapAccess, Visitor};
    // A value is an integer when serde_json's own integer reader takes its text whole: `-0`
    // is the integer 0; `0.0`, `1e3` and `1.0` are not integers.
    struct Val(Member);
    impl<'de> serde::Deserialize<'de> for Val {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Val, D::Error> {
            let raw = <Box<serde_json::value::RawValue>>::deserialize(d)?;
            let text = raw.get();
            Ok(Val(match serde_json::from_str::<i128>(text) {
                Ok(n) => Member::Int(n),
                Err(_) => serde_json::from_str::<String>(text).map_or(Member::Other, Member::Str),
            }))
        }
    }
    struct Obj(Vec<(String, Member)>);
    struct OV;
    impl<'de> Visitor<'de> for OV {
        type Value = Obj;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Obj, A::Error> {
            let mut v = Vec::new();
            while let Some((k, Val(m))) = a.next_entry::<String, Val>()? {
                v.push((k, m));
            }
            Ok(Obj(v))
        }
    }
    // serde_json's own recursion limit (128) guards the reference; a document deeper than
    // that is refused by it, which the target treats as "no verdict".
    let mut de = serde_json::Deserializer::from_str(text);
    let obj = de.deserialize_map(OV).ok()?;
    de.end().ok()?;
    Some(obj.0)
}

/// The reference verdict on an options text: the options, or None (JSONBUS_ERR_OPTIONS).
/// A key given twice is refused.
pub fn options_verdict(text: &[u8]) -> Option<Opts> {
    let text = std::str::from_utf8(text).ok()?;
    let members = object_members(text)?;
    let mut o = DEFAULTS;
    let mut seen: Vec<&str> = Vec::new();
    for (k, m) in &members {
        let (name, min, max) = *KEYS.iter().find(|(n, _, _)| n == k)?;
        // A key given twice is refused.
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        let good = match m {
            Member::Int(n) if (min as i128..=max as i128).contains(n) => {
                let n = *n as i64;
                match name {
                    "dispatcher_threads" => o.dispatcher_threads = n,
                    "queue_capacity" => o.queue_capacity = n,
                    "publish_timeout_ms" => o.publish_timeout_ms = n,
                    "max_message_bytes" => o.max_message_bytes = n,
                    "max_depth" => o.max_depth = n,
                    _ => o.dispatcher_spin_us = n,
                }
                true
            }
            _ => false,
        };
        if !good {
            return None;
        }
    }
    Some(o)
}

impl Opts {
    pub fn to_json(&self) -> String {
        format!(
            "{{\"dispatcher_threads\":{},\"queue_capacity\":{},\"publish_timeout_ms\":{},\"max_message_bytes\":{},\"max_depth\":{},\"dispatcher_spin_us\":{}}}",
            self.dispatcher_threads,
            self.queue_capacity,
            self.publish_timeout_ms,
            self.max_message_bytes,
            self.max_depth,
            self.dispatcher_spin_us
        )
    }
}

// ---------------------------------------------------------------------------------------
// Subscription options (CONTRACT.md 2A, the subscription options table)

/// `on_full`, as the contract names the policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFull {
    Block,
    DropOldest,
    DropNew,
    End,
}

pub const ON_FULL: [(OnFull, &str); 4] = [
    (OnFull::Block, "block"),
    (OnFull::DropOldest, "drop_oldest"),
    (OnFull::DropNew, "drop_new"),
    (OnFull::End, "end"),
];

impl OnFull {
    pub fn name(self) -> &'static str {
        ON_FULL.iter().find(|p| p.0 == self).map_or("", |p| p.1)
    }
}

/// A subscription's options as the contract reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubOpts {
    pub queue_limit: u64,
    pub on_full: OnFull,
    pub max_failures: u64,
    pub group: Option<String>,
}

pub const SUB_DEFAULTS: SubOpts = SubOpts {
    queue_limit: 0,
    on_full: OnFull::Block,
    max_failures: 0,
    group: None,
};

pub const SUB_KEYS: [&str; 4] = ["queue_limit", "on_full", "max_failures", "group"];

/// Whether `g` is "one topic token": what the Topics section allows between two dots of a
/// topic one may publish on - 1 to 256 bytes (a topic's limit), printable ASCII 0x21-0x7E other
/// than '.', and no '*' or '>' (in a topic to publish on, a token may be neither a wildcard
/// nor mix one with other characters).
pub fn group_token_ok(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= MAX_TOPIC
        && g.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'.' && b != b'*' && b != b'>')
}

/// The reference verdict on a subscription options text: the options, or None
/// (JSONBUS_ERR_OPTIONS). Errors "as for bus options": exactly one JSON object, integers
/// written as integers, each key at most once, unknown keys refused; invalid UTF-8 refused.
pub fn sub_options_verdict(text: &[u8]) -> Option<SubOpts> {
    let text = std::str::from_utf8(text).ok()?;
    let members = object_members(text)?;
    let mut o = SUB_DEFAULTS;
    let mut seen: Vec<&str> = Vec::new();
    for (k, m) in &members {
        let key = *SUB_KEYS.iter().find(|n| *n == k)?;
        if seen.contains(&key) {
            return None;
        }
        seen.push(key);
        match (key, m) {
            ("queue_limit", Member::Int(n)) if (0..=16_777_216).contains(n) => {
                o.queue_limit = *n as u64
            }
            ("max_failures", Member::Int(n)) if (0..=i32::MAX as i128).contains(n) => {
                o.max_failures = *n as u64
            }
            ("on_full", Member::Str(s)) => o.on_full = ON_FULL.iter().find(|p| p.1 == s)?.0,
            ("group", Member::Str(s)) if group_token_ok(s) => o.group = Some(s.clone()),
            _ => return None,
        }
    }
    Some(o)
}

// ---------------------------------------------------------------------------------------
// Pull subscriptions and per-subscription stats

/// `jsonbus_subscription_stats` as JSON, or the failure status (last error checked).
pub fn sub_stats(bus: *mut jsonbus, id: i64) -> Result<serde_json::Value, i32> {
    let p = jsonbus_subscription_stats(bus, id);
    if p.is_null() {
        let code = jsonbus_last_status();
        assert_ne!(
            code, JSONBUS_OK,
            "jsonbus_subscription_stats returned NULL with status OK"
        );
        check_last(code, "jsonbus_subscription_stats");
        return Err(code);
    }
    check_last(JSONBUS_OK, "jsonbus_subscription_stats");
    let s = text(p);
    jsonbus_string_free(p);
    let v: serde_json::Value = serde_json::from_str(&s)
        .unwrap_or_else(|e| panic!("subscription stats are not JSON ({e}): {s}"));
    const KEYS: [&str; 13] = [
        "id",
        "pattern",
        "kind",
        "group",
        "queued",
        "max_queued",
        "delivered",
        "dropped",
        "callback_failures",
        "ended",
        "queue_limit",
        "on_full",
        "max_failures",
    ];
    for k in KEYS {
        assert!(v.get(k).is_some(), "subscription stats lack {k:?}: {v}");
    }
    assert_eq!(
        v["id"].as_i64(),
        Some(id),
        "subscription stats of {id}: {v}"
    );
    Ok(v)
}

/// The `ended` field of subscription stats: None (null) or the reason's name.
pub fn stat_ended(v: &serde_json::Value) -> Option<String> {
    match &v["ended"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => panic!("subscription stats: \"ended\" is {other}: {v}"),
    }
}

/// A message as jsonbus hands it out: seq, topic, payload, subscription. Checks that both
/// strings are NUL-terminated at their lengths and that `published_ns` is not in the future.
///
/// # Safety
/// `m` points to a valid `jsonbus_message`.
pub unsafe fn read_message(m: *const jsonbus_message) -> (u64, Vec<u8>, Vec<u8>, i64) {
    // SAFETY: per this function's contract.
    let m = unsafe { &*m };
    // SAFETY: jsonbus promises `*_len` bytes and a NUL after them.
    let (topic, json, nuls) = unsafe {
        (
            std::slice::from_raw_parts(m.topic.cast::<u8>(), m.topic_len).to_vec(),
            std::slice::from_raw_parts(m.json.cast::<u8>(), m.json_len).to_vec(),
            (*m.topic.add(m.topic_len), *m.json.add(m.json_len)),
        )
    };
    assert_eq!(
        nuls,
        (0, 0),
        "a message's topic or json is not NUL-terminated at its length"
    );
    assert!(
        m.published_ns <= jsonbus_now_ns(),
        "published_ns is in the future"
    );
    (m.seq, topic, json, m.subscription)
}

/// Whether `fd` polls readable now (poll(2) with timeout 0).
pub fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    assert!(
        n >= 0,
        "poll({fd}) failed: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(
        p.revents & libc::POLLNVAL,
        0,
        "poll({fd}): not an open descriptor"
    );
    n == 1 && p.revents & libc::POLLIN != 0
}

// ---------------------------------------------------------------------------------------
// Input reading

/// Reads bytes off the front of the fuzz input; zeros once it runs out.
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The bytes up to the next `sep` (not included) or the end; the separator is consumed.
    pub fn until(&mut self, sep: u8) -> &'a [u8] {
        match self.0.iter().position(|&b| b == sep) {
            Some(i) => {
                let (a, b) = self.0.split_at(i);
                self.0 = &b[1..];
                a
            }
            None => std::mem::take(&mut self.0),
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2C: a private directory for bus names

extern "C" fn remove_runtime_dir() {
    if let Some(d) = RUNTIME_DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

static RUNTIME_DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Points `XDG_RUNTIME_DIR` at a fresh private (0700) directory, once per process, so that the
/// bus names of the targets meet nobody else's (and the user's real directory is never
/// touched): `/tmp/jsonbus-fuzz-<uid>/<tag>-<pid>`. It is removed at exit; libFuzzer often
/// ends a process without running `atexit` handlers (a crash, a time-out, `_Exit`), so each
/// new process also removes the directories of processes that are gone. Returns it.
pub fn private_runtime_dir(tag: &str) -> &'static str {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    RUNTIME_DIR.get_or_init(|| {
        // SAFETY: geteuid takes no arguments and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let parent = std::path::PathBuf::from(format!("/tmp/jsonbus-fuzz-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&parent);
        let meta = std::fs::symlink_metadata(&parent).expect("the fuzz name directory");
        assert!(
            meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0,
            "{} is not a private directory of this user",
            parent.display()
        );
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = parent.join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("the fuzz name directory");
        let dir = dir.to_string_lossy().into_owned();
        // Before any jsonbus call reads it: the first thing an input does.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::atexit(remove_runtime_dir) };
        dir
    })
}
