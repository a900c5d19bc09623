//! Payload validation on the publisher's thread: size, UTF-8, exactly one JSON value (RFC 8259)
//! and nesting depth, in one pass over the bytes without building anything: from `BLOCKS_FROM`
//! bytes on by SIMD blocks (`blocks`) when the CPU has AVX2, else byte by byte (`scan`). A
//! refusal is always confirmed by `scan`, and serde_json parses the payload again to say what
//! is wrong and where.

use crate::status::{Error, Status};
use crate::sys::simd;
use serde::de::IgnoredAny;

mod blocks;

/// Checks a payload: at most `max_bytes`, valid UTF-8, one JSON value with optional white space
/// around it, nested at most `max_depth` levels.
pub fn check_payload(json: &[u8], max_bytes: usize, max_depth: usize) -> Result<(), Error> {
    check_size(json, max_bytes)?;
    if json.len() >= BLOCKS_FROM {
        if let Some(classify) = simd::fast_classifier() {
            if blocks::valid(json, max_depth, classify) {
                return Ok(());
            }
        }
    }
    let refusal = match scan(json, max_depth) {
        Ok(()) => return Ok(()),
        Err(r) => r,
    };
    // `scan` checks UTF-8 inside strings, and any other non-ASCII byte is refused as syntax;
    // invalid UTF-8 anywhere is reported as such, before any JSON error.
    if let Err(e) = std::str::from_utf8(json) {
        return Err(Error::new(
            Status::Utf8,
            format!(
                "payload is not valid UTF-8: bad byte at offset {}",
                e.valid_up_to()
            ),
        ));
    }
    match refusal {
        Refusal::TooDeep(at) => {
            let (line, column) = line_column(json, at);
            Err(Error::new(
                Status::Json,
                format!("payload is not valid JSON: nesting deeper than max_depth {max_depth} at line {line} column {column}"),
            ))
        }
        Refusal::Syntax(at) => {
            let mut de = serde_json::Deserializer::from_slice(json);
            let why = match serde::Deserialize::deserialize(&mut de).and_then(|IgnoredAny| de.end())
            {
                Err(e) => e.to_string(),
                // serde_json and `scan` agree on every input the tests and fuzzers tried; should
                // they ever not, the payload is still refused, with the offset `scan` found.
                Ok(()) => {
                    let (line, column) = line_column(json, at);
                    format!("unexpected byte at line {line} column {column}")
                }
            };
            Err(Error::new(
                Status::Json,
                format!("payload is not valid JSON: {why}"),
            ))
        }
    }
}

/// The size from which the SIMD blocks validate faster than the byte-wise scanner, which costs
/// per token where `blocks` costs per 64 bytes. The driver's payload, best of 7 runs: 200 B
/// 192 ns by bytes, 190 ns by blocks (2,070 against 2,320 instructions, so bytes); 256 B 389
/// against 189 ns; 512 B 590 against 377 ns; `cargo bench --bench core -- paths` for more.
const BLOCKS_FROM: usize = 256;

/// Whether `json` is one JSON value in UTF-8 nested at most `max_depth` deep, by the byte-wise
/// scanner alone (`check_payload`'s verdict without the size limit), for benchmarks and fuzzing.
pub fn valid_by_bytes(json: &[u8], max_depth: usize) -> bool {
    scan(json, max_depth).is_ok()
}

/// The same verdict by SIMD blocks alone, at any size; `None` when the CPU has no AVX2.
pub fn valid_by_blocks(json: &[u8], max_depth: usize) -> Option<bool> {
    simd::fast_classifier().map(|classify| blocks::valid(json, max_depth, classify))
}

/// Checks only that a payload is at most `max_bytes` (before anything copies it).
pub fn check_size(json: &[u8], max_bytes: usize) -> Result<(), Error> {
    match json.len() {
        n if n > max_bytes => Err(Error::new(
            Status::TooLarge,
            format!("payload is {n} bytes; max_message_bytes is {max_bytes}"),
        )),
        _ => Ok(()),
    }
}

/// Why `scan` refused a payload, and the byte offset where it saw it.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Syntax(usize),
    TooDeep(usize),
}

/// The kinds of the enclosing containers (1 = object), one bit per level, the first 64 in a
/// register: what a closing bracket returns to.
#[derive(Default)]
struct Nesting {
    depth: usize,
    low: u64,
    high: Vec<u64>,
}

impl Nesting {
    #[inline(always)]
    fn push(&mut self, object: bool) {
        if self.depth < 64 {
            self.low = (self.low & !(1 << self.depth)) | ((object as u64) << self.depth);
        } else {
            self.push_high(object);
        }
        self.depth += 1;
    }

    #[cold]
    fn push_high(&mut self, object: bool) {
        let (word, bit) = (self.depth / 64 - 1, self.depth % 64);
        if self.high.len() == word {
            self.high.push(0);
        }
        let w = &mut self.high[word];
        *w = (*w & !(1 << bit)) | ((object as u64) << bit);
    }

    #[inline(always)]
    fn pop(&mut self) -> bool {
        self.depth -= 1;
        if self.depth < 64 {
            self.low >> self.depth & 1 == 1
        } else {
            self.high[self.depth / 64 - 1] >> (self.depth % 64) & 1 == 1
        }
    }
}

/// The byte at `i`, or 0 past the end. A NUL byte is never valid JSON text (outside strings it
/// is no token, inside them a control character), so every rule that meets 0 refuses, and only
/// the final check (`i == b.len()`) tells the end from a NUL in the payload.
#[inline(always)]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Validates bytes as exactly one JSON value (RFC 8259) in UTF-8, nested at most `max_depth`
/// deep. It checks UTF-8 only where JSON allows non-ASCII bytes (in strings); the caller tells
/// a UTF-8 error from a syntax error when it refuses.
fn scan(b: &[u8], max_depth: usize) -> Result<(), Refusal> {
    let syntax = |at: usize| Refusal::Syntax(at.min(b.len()));
    let mut nest = Nesting::default();
    // Whether the innermost open container is an object (meaningless at depth 0).
    let mut object = false;
    let mut i = ws(b, 0);
    loop {
        // A value starts at `i`.
        let c = at(b, i);
        let end = match c {
            b'"' => string(b, i + 1),
            b'{' | b'[' => {
                if nest.depth == max_depth {
                    return Err(Refusal::TooDeep(i));
                }
                nest.push(object);
                object = c == b'{';
                i = ws(b, i + 1);
                if at(b, i) == c + 2 {
                    // `{}` or `[]`: '}' and ']' follow '{' and '[' by two in ASCII.
                    object = nest.pop();
                    Some(i + 1)
                } else {
                    if object {
                        i = key(b, i).ok_or_else(|| syntax(i))?;
                    }
                    continue;
                }
            }
            _ => scalar(b, i),
        };
        i = end.ok_or_else(|| syntax(i))?;
        // After a value: close what the input closes, then a comma or the end.
        loop {
            i = ws(b, i);
            if nest.depth == 0 {
                return if i == b.len() { Ok(()) } else { Err(syntax(i)) };
            }
            let c = at(b, i);
            if c == b',' {
                i = ws(b, i + 1);
                if object {
                    i = key(b, i).ok_or_else(|| syntax(i))?;
                }
                break;
            }
            // '}' closes an object, ']' an array: 0x7d and 0x5d, which differ in bit 0x20.
            if c != b']' | (object as u8) << 5 {
                return Err(syntax(i));
            }
            object = nest.pop();
            i += 1;
        }
    }
}

/// Skips white space.
#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    // Compact JSON has none: one comparison decides most calls.
    while at(b, i) <= b' ' && matches!(at(b, i), b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// An object key and its colon, starting at `i`; returns where the value starts.
#[inline(always)]
fn key(b: &[u8], i: usize) -> Option<usize> {
    if at(b, i) != b'"' {
        return None;
    }
    let i = ws(b, string(b, i + 1)?);
    (at(b, i) == b':').then(|| ws(b, i + 1))
}

/// The rest of a string whose opening quote was just before `i`; returns the offset after the
/// closing quote. Quotes, escapes, control characters and non-ASCII bytes (which must form
/// UTF-8) need a look; eight bytes are checked at a time for them.
#[inline(always)]
fn string(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        // Eight bytes at a time while eight remain.
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().ok()?);
            match special(w) {
                0 => i += 8,
                // The lowest flagged byte is always a true one.
                mask => {
                    i += mask.trailing_zeros() as usize / 8;
                    break;
                }
            }
        }
        match at(b, i) {
            b'"' => return Some(i + 1),
            b'\\' => i += 1 + escape(b, i + 1)?,
            c if c < 0x20 => return None,
            c if c < 0x80 => i += 1,
            c => {
                let len = match c {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf4 => 4,
                    _ => return None,
                };
                std::str::from_utf8(b.get(i..i + len)?).ok()?;
                i += len;
            }
        }
    }
}

/// The high bit of each byte of `w` that may be '"', '\\', below 0x20 or above 0x7F; of those,
/// the lowest set bit always marks a real one.
#[inline(always)]
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let quote = has_zero(w ^ (ONES * b'"' as u64));
    let slash = has_zero(w ^ (ONES * b'\\' as u64));
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (quote | slash | control | w) & (ONES * 0x80)
}

/// The escape whose letter (after the backslash) is at `i`: how many bytes it takes from there
/// (`\u` and four hex digits: 5), or `None` if JSON has no such escape.
#[inline(always)]
fn escape(b: &[u8], i: usize) -> Option<usize> {
    match at(b, i) {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(1),
        b'u' if b.get(i + 1..i + 5)?.iter().all(u8::is_ascii_hexdigit) => Some(5),
        _ => None,
    }
}

/// A number or literal starting at `i`; returns the offset after it.
#[inline(always)]
fn scalar(b: &[u8], i: usize) -> Option<usize> {
    match at(b, i) {
        b't' => word(b, i, *b"true"),
        b'f' => word(b, i + 1, *b"alse"),
        b'n' => word(b, i, *b"null"),
        _ => number(b, i),
    }
}

/// Digits from `i` on; returns where they end.
#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while at(b, i).is_ascii_digit() {
        i += 1;
    }
    i
}

/// A number starting at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[inline(always)]
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    i += (at(b, i) == b'-') as usize;
    i = match at(b, i) {
        b'0' => i + 1,
        b'1'..=b'9' => digits(b, i + 1),
        _ => return None,
    };
    if at(b, i) == b'.' {
        if !at(b, i + 1).is_ascii_digit() {
            return None;
        }
        i = digits(b, i + 2);
    }
    if at(b, i) | 0x20 == b'e' {
        i += 1;
        i += matches!(at(b, i), b'+' | b'-') as usize;
        if !at(b, i).is_ascii_digit() {
            return None;
        }
        i = digits(b, i + 1);
    }
    Some(i)
}

/// The four bytes of `word` at `i` (a literal's; for `false`, those after its first byte),
/// compared at once; returns the offset after them.
#[inline(always)]
fn word(b: &[u8], i: usize, word: [u8; 4]) -> Option<usize> {
    let have: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
    (u32::from_le_bytes(have) == u32::from_le_bytes(word)).then_some(i + 4)
}

/// 1-based line and column of byte `at`, as serde_json counts them.
fn line_column(json: &[u8], at: usize) -> (usize, usize) {
    let before = &json[..at.min(json.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = before.len()
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

    /// serde_json's verdict, with its unlimited-depth ignore path.
    fn serde_accepts(b: &[u8]) -> bool {
        let mut de = serde_json::Deserializer::from_slice(b);
        serde::Deserialize::deserialize(&mut de)
            .and_then(|IgnoredAny| de.end())
            .is_ok()
    }

    #[test]
    fn agrees_with_serde_json_on_a_million_random_documents() {
        // Small documents from an alphabet rich in JSON's edge cases, by a fixed xorshift.
        const PIECES: [&str; 40] = [
            "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\u00e9", "\\x", "0", "1", "-", "+",
            ".", "e", "E", "9", "true", "false", "null", "tru", " ", "\n", "\t", "\u{1}", "\"a\"",
            "\"k\":", "a", "1.5", "-0", "01", "1e", "\u{e9}", "/", "\\/", "\\n", "\r", "\"\\\"\"",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut accepted = 0;
        for _ in 0..1_000_000 {
            let n = 1 + next() % 12;
            let doc: String = (0..n)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            let ours = scan(doc.as_bytes(), usize::MAX).is_ok();
            assert_eq!(ours, serde_accepts(doc.as_bytes()), "{doc:?}");
            accepted += ours as u32;
        }
        assert!(
            accepted > 10_000,
            "the generator makes valid documents too ({accepted})"
        );
    }

    #[test]
    fn long_strings_and_every_control_byte() {
        for len in 0..40 {
            for c in 0u8..0x80 {
                let mut doc = vec![b'"'];
                doc.extend(std::iter::repeat_n(b'x', len));
                doc.push(c);
                doc.extend(std::iter::repeat_n(b'y', 40 - len));
                doc.push(b'"');
                let ours = scan(&doc, 8).is_ok();
                assert_eq!(
                    ours,
                    serde_accepts(&doc),
                    "{:?}",
                    String::from_utf8_lossy(&doc)
                );
            }
        }
    }

    #[test]
    fn nesting_beyond_64_levels_keeps_track_of_objects_and_arrays() {
        let mut doc = String::new();
        for i in 0..300 {
            doc.push_str(if i % 3 == 0 { "{\"k\":" } else { "[" });
        }
        doc.push('1');
        for i in (0..300).rev() {
            doc.push_str(if i % 3 == 0 { "}" } else { "]" });
        }
        assert_eq!(scan(doc.as_bytes(), 300), Ok(()));
        assert!(matches!(
            scan(doc.as_bytes(), 299),
            Err(Refusal::TooDeep(_))
        ));
        let swapped = doc.replacen("]}", "}]", 1);
        assert!(matches!(
            scan(swapped.as_bytes(), 300),
            Err(Refusal::Syntax(_))
        ));
    }

    #[test]
    fn utf8_inside_strings_is_checked_and_refusals_say_utf8_first() {
        for ok in [
            "\"caf\u{e9}\"",
            "[\"\u{20ac}\u{1F600}\"]",
            "{\"\u{e9}\":\"\u{10FFFF}\"}",
        ] {
            assert_eq!(scan(ok.as_bytes(), 8), Ok(()), "{ok}");
        }
        for bad in [
            &b"\"\xff\""[..],
            b"\"\xc3\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"\xc0\xaf\"",
            b"\"abcdefgh\xe2\x82\"",
            b"[1, \xc3\xa9]",
        ] {
            assert!(scan(bad, 8).is_err(), "{bad:?}");
            let e = check_payload(bad, 100, 8).unwrap_err();
            let want = if std::str::from_utf8(bad).is_ok() {
                Status::Json
            } else {
                Status::Utf8
            };
            assert_eq!(e.status, want, "{bad:?}");
        }
        // Invalid UTF-8 after a JSON error is still a UTF-8 error.
        assert_eq!(
            check_payload(b"[1,,\xff]", 100, 8).unwrap_err().status,
            Status::Utf8
        );
    }

    #[test]
    fn agrees_with_from_utf8_and_serde_json_on_random_bytes() {
        const PIECES: [&[u8]; 16] = [
            b"\"",
            b"[",
            b"]",
            b"{",
            b"}",
            b":",
            b",",
            b"1",
            b"\xc3\xa9",
            b"\xc3",
            b"\xa9",
            b"\xff",
            b"\xe2\x82\xac",
            b"\xed\xa0\x80",
            b"abcdefgh",
            b"\\",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300_000 {
            let n = 1 + next() % 10;
            let doc: Vec<u8> = (0..n)
                .flat_map(|_| {
                    PIECES[(next() % PIECES.len() as u64) as usize]
                        .iter()
                        .copied()
                })
                .collect();
            let want = std::str::from_utf8(&doc).is_ok() && serde_accepts(&doc);
            assert_eq!(
                check_payload(&doc, 1 << 20, usize::MAX).is_ok(),
                want,
                "{doc:?}"
            );
        }
    }
}
