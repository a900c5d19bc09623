//! Payload validation on the publisher's thread: size, UTF-8, exactly one JSON value (RFC 8259)
//! and nesting depth - without building a tree.

use crate::status::{Error, Status};
use serde::de::IgnoredAny;

/// Checks a payload: at most `max_bytes`, valid UTF-8, one JSON value with optional white space
/// around it, nested at most `max_depth` levels.
pub fn check_payload(json: &[u8], max_bytes: usize, max_depth: usize) -> Result<(), Error> {
    if json.len() > max_bytes {
        return Err(Error::new(
            Status::TooLarge,
            format!(
                "payload is {} bytes; max_message_bytes is {max_bytes}",
                json.len()
            ),
        ));
    }
    if let Err(e) = std::str::from_utf8(json) {
        return Err(Error::new(
            Status::Utf8,
            format!(
                "payload is not valid UTF-8: bad byte at offset {}",
                e.valid_up_to()
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed = serde::Deserialize::deserialize(&mut de).and_then(|IgnoredAny| de.end());
    if let Err(e) = parsed {
        return Err(Error::new(
            Status::Json,
            format!("payload is not valid JSON: {e}"),
        ));
    }
    // Valid JSON needs two bytes per level of nesting, so short payloads cannot be too deep.
    if json.len() / 2 > max_depth {
        if let Some(at) = too_deep_at(json, max_depth) {
            let (line, column) = line_column(json, at);
            return Err(Error::new(
                Status::Json,
                format!("payload is not valid JSON: nesting deeper than max_depth {max_depth} at line {line} column {column}"),
            ));
        }
    }
    Ok(())
}

/// In valid JSON: the offset of the first bracket that opens level `max_depth + 1`, if any.
fn too_deep_at(json: &[u8], max_depth: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // Skip the string; it is valid, so every backslash escapes the next byte.
                i += 1;
                while json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(i);
                }
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// 1-based line and column of byte `at`, as serde_json counts them.
fn line_column(json: &[u8], at: usize) -> (usize, usize) {
    let before = &json[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> Result<(), Status> {
        check_payload(json.as_bytes(), 1 << 20, 128).map_err(|e| e.status)
    }

    #[test]
    fn accepts_every_kind_of_value() {
        for ok in [
            "0",
            "-1.5e+3",
            "\"\"",
            "\"\\u00e9\\n\"",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            " {\"a\": [1, {\"b\": null}]} \n",
            "\"caf\u{e9}\"",
        ] {
            assert_eq!(status(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_rfc_8259_rejects() {
        for bad in [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "+1",
            "NaN",
            "Infinity",
            "'a'",
            "\"a",
            "\"\\x\"",
            "\"a\tb\"",
            "1 2",
            "{} x",
            "[1] ]",
            "{a:1}",
            "nul",
            "\u{0}",
        ] {
            assert_eq!(status(bad), Err(Status::Json), "{bad:?}");
        }
    }

    #[test]
    fn messages_say_where() {
        let e = check_payload(b"{\n  \"a\": tru }", 100, 8).unwrap_err();
        assert!(e.message.contains("line 2 column"), "{}", e.message);
        let e = check_payload(b"[1, 2, \xff]", 100, 8).unwrap_err();
        assert_eq!(e.status, Status::Utf8);
        assert!(e.message.contains("offset 7"), "{}", e.message);
        let e = check_payload(b"[1]", 2, 8).unwrap_err();
        assert_eq!(e.status, Status::TooLarge);
        assert!(e.message.contains("3 bytes") && e.message.contains('2'));
    }

    #[test]
    fn depth_is_counted_exactly() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for max in [1, 2, 5, 128, 300] {
            assert!(check_payload(nest(max).as_bytes(), usize::MAX, max).is_ok());
            let e = check_payload(nest(max + 1).as_bytes(), usize::MAX, max).unwrap_err();
            assert_eq!(e.status, Status::Json);
            assert!(e.message.contains("deeper than max_depth"), "{}", e.message);
        }
        // Brackets inside strings do not count; escaped quotes do not end strings.
        let s = format!("[\"{}\\\"[[[\"]", "[".repeat(500));
        assert!(check_payload(s.as_bytes(), usize::MAX, 1).is_ok());
        // Objects count as well as arrays.
        let obj = format!("{}1{}", "{\"a\":".repeat(3), "}".repeat(3));
        assert!(check_payload(obj.as_bytes(), usize::MAX, 3).is_ok());
        assert_eq!(
            check_payload(obj.as_bytes(), usize::MAX, 2)
                .unwrap_err()
                .status,
            Status::Json
        );
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(status(&deep), Err(Status::Json));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = check_payload(deep.as_bytes(), usize::MAX, 128).unwrap_err();
        assert!(e.message.contains("line 1 column 129"), "{}", e.message);
    }
}
