//! Topic and pattern grammar (NATS-style subjects): checking, with messages that name the token.

use crate::status::{Error, Status};

/// Longest topic or pattern, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// The topic of the quick API (`push_json`, `register_callback`).
pub const DEFAULT_TOPIC: &str = "default";

/// The rule for the names buses are served under (`jsonbus_serve`, `jsonbus_attach`).
pub const BUS_NAME_RULE: &str =
    "a name is 1-64 bytes of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'";

/// What a string is used as: a topic to publish on, or a subscription pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Topic,
    Pattern,
}

/// Checks `text` against the grammar: at most 256 bytes; tokens separated by `.`, none empty;
/// each token printable ASCII other than `.`; `*` (one token) and a last `>` (one or more
/// tokens) only in patterns, and only as whole tokens.
pub fn check(text: &str, kind: Kind) -> Result<(), Error> {
    // The quick API's topic, on every `push_json`: one compare.
    if text == DEFAULT_TOPIC || plain(text) {
        return Ok(());
    }
    let what = match kind {
        Kind::Topic => "topic",
        Kind::Pattern => "pattern",
    };
    let fail = |why: String| {
        Err(Error::new(
            Status::Topic,
            format!("{what} \"{}\": {why}", shown(text)),
        ))
    };
    if text.is_empty() {
        return fail("is empty".into());
    }
    if text.len() > MAX_TOPIC_BYTES {
        return fail(format!(
            "is {} bytes long; the limit is {MAX_TOPIC_BYTES}",
            text.len()
        ));
    }
    let count = text.split('.').count();
    for (i, token) in text.split('.').enumerate() {
        let n = i + 1;
        if token.is_empty() {
            return fail(format!(
                "token {n} is empty (a topic may not start or end with '.', nor hold \"..\")"
            ));
        }
        if let Some(b) = token.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
            return fail(format!(
                "token {n} holds byte 0x{b:02X}; tokens are printable ASCII without spaces"
            ));
        }
        let wild = token.contains('*') || token.contains('>');
        if !wild {
            continue;
        }
        if token != "*" && token != ">" {
            return fail(format!("token {n} (\"{token}\") mixes a wildcard with other characters; '*' and '>' must stand alone"));
        }
        if kind == Kind::Topic {
            return fail(format!(
                "token {n} is the wildcard '{token}', which only subscription patterns may use"
            ));
        }
        if token == ">" && n != count {
            return fail(format!(
                "token {n} is '>', which may only be the last token"
            ));
        }
    }
    Ok(())
}

/// The publish path's one pass: a valid topic without wildcards.
fn plain(text: &str) -> bool {
    if text.is_empty() || text.len() > MAX_TOPIC_BYTES {
        return false;
    }
    let mut after_dot = true;
    for &c in text.as_bytes() {
        if c == b'.' {
            if after_dot {
                return false;
            }
            after_dot = true;
        } else if !(0x21..=0x7e).contains(&c) || c == b'*' || c == b'>' {
            return false;
        } else {
            after_dot = false;
        }
    }
    !after_dot
}

/// `text` cut short for an error message.
fn shown(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// Whether `pattern` (already checked) matches `topic` (already checked). The router does the
/// same walk over a trie; this is the reference it is tested against.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_topics_and_patterns() {
        for t in ["a", "a.b.c", "orders.eu.new", "!~#$%&'()+,-/:;<=?@[]^_`{|}"] {
            check(t, Kind::Topic).unwrap();
            check(t, Kind::Pattern).unwrap();
        }
        check(&"x".repeat(256), Kind::Topic).unwrap();
        for p in ["*", ">", "a.*", "a.>", "*.*.>", "*.b.*"] {
            check(p, Kind::Pattern).unwrap();
        }
    }

    #[test]
    fn bad_ones_say_which_token_and_why() {
        let cases = [
            ("", Kind::Topic, "empty"),
            ("a..b", Kind::Topic, "token 2 is empty"),
            (".a", Kind::Topic, "token 1 is empty"),
            ("a.", Kind::Pattern, "token 2 is empty"),
            ("a b", Kind::Topic, "0x20"),
            ("caf\u{e9}", Kind::Topic, "0xC3"),
            ("a*b", Kind::Pattern, "mixes"),
            ("a.>x", Kind::Pattern, "mixes"),
            ("a.*", Kind::Topic, "only subscription patterns"),
            (">", Kind::Topic, "only subscription patterns"),
            ("a.>.b", Kind::Pattern, "last token"),
        ];
        for (text, kind, why) in cases {
            let e = check(text, kind).unwrap_err();
            assert_eq!(e.status, Status::Topic);
            assert!(e.message.contains(why), "{text:?}: {}", e.message);
        }
        let long = "x".repeat(257);
        assert!(check(&long, Kind::Topic)
            .unwrap_err()
            .message
            .contains("257 bytes"));
    }

    #[test]
    fn matching() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "a"));
        assert!(matches("*.b.>", "x.b.y.z"));
        assert!(!matches("*.b.>", "x.c.y"));
    }
}
