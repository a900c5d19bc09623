//! The validator's fast path: the text in 64-byte blocks classified by SIMD (`sys::simd`),
//! strings and escapes found by bit arithmetic on the blocks' masks, then the grammar: brackets
//! one at a time (the nesting stack), every other rule by masks (which kinds of token may follow
//! which), numbers and literals where they start. It only says yes or no: `check_payload` asks
//! the byte-wise scanner to confirm every no, and to say why.

use super::{at, escape, scalar, Nesting};
use crate::sys::simd::{Classes, Classify};

/// Odd bit positions: the parity that tells an escaping backslash from an escaped one.
const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// What the string pass hands from one block to the next.
#[derive(Default)]
struct Strings {
    /// All ones when the block ended inside a string, else 0.
    in_string: u64,
    /// 1 when the block's last byte was a backslash that escapes the next block's first byte.
    escape: u64,
    /// 1 when the block's last byte was part of a number or literal.
    scalar: u64,
}

/// One block's tokens, outside strings (bit `i`: byte `i`), and what needs a closer look.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tokens {
    open_object: u64,
    open_array: u64,
    close_object: u64,
    close_array: u64,
    colon: u64,
    comma: u64,
    /// Opening quotes.
    string: u64,
    /// First bytes of numbers and literals (and of anything else that is not a token).
    scalar: u64,
    /// Every byte of numbers and literals (and of anything else outside strings that is not
    /// white space, punctuation or a quote).
    scalar_bytes: u64,
    /// `0` to `9`, anywhere.
    digit: u64,
    /// Bytes after an escaping backslash, inside strings: each must be a valid escape.
    escaped: u64,
    /// Control characters inside strings.
    error: u64,
    /// Non-ASCII bytes (valid only inside strings, and only as UTF-8).
    high: u64,
}

impl Tokens {
    fn all(&self) -> u64 {
        self.brackets() | self.colon | self.comma | self.string | self.scalar
    }

    fn brackets(&self) -> u64 {
        self.open_object | self.open_array | self.close_object | self.close_array
    }
}

/// The bytes preceded by an escaping backslash (one that is not itself escaped), as simdjson
/// finds them: a subtraction runs along each backslash sequence and the parity of where it
/// starts tells which of its bytes escape.
#[inline(always)]
fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    if backslash == 0 {
        return std::mem::take(carry);
    }
    let potential = backslash & !*carry;
    let code = ((potential << 1 | ODD).wrapping_sub(potential)) ^ ODD;
    let escaped = code ^ (backslash | *carry);
    *carry = (code & backslash) >> 63;
    escaped
}

/// Each bit becomes the xor of itself and every bit below it: 1 from an opening quote up to,
/// not including, its closing quote.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// Finds the strings of a block, and its tokens outside them.
#[inline(always)]
fn tokens(c: &Classes, carry: &mut Strings) -> Tokens {
    let escaped = escaped(c.backslash, &mut carry.escape);
    let quote = c.quote & !escaped;
    let in_string = prefix_xor(quote) ^ carry.in_string;
    carry.in_string = ((in_string as i64) >> 63) as u64;
    let outside = !in_string;
    let punct = c.open_object | c.open_array | c.close_object | c.close_array | c.colon | c.comma;
    let scalar = !(c.space | punct | quote | in_string);
    let start = scalar & !(scalar << 1 | carry.scalar);
    carry.scalar = scalar >> 63;
    Tokens {
        open_object: c.open_object & outside,
        open_array: c.open_array & outside,
        close_object: c.close_object & outside,
        close_array: c.close_array & outside,
        colon: c.colon & outside,
        comma: c.comma & outside,
        string: quote & in_string,
        scalar: start,
        scalar_bytes: scalar,
        digit: c.digit,
        escaped: escaped & in_string,
        error: c.control & in_string,
        high: c.high,
    }
}

/// The tokens of `all` whose predecessor token is in `class`. `carry` is 1 when the last token
/// before this block is in `class`, and becomes whether the last token so far is. (Adding a bit
/// to the run of non-tokens after a token carries it to the next token.)
#[inline(always)]
fn successors(all: u64, class: u64, carry: &mut u64) -> u64 {
    let (sum, over) = (!all).overflowing_add(class << 1 | *carry);
    *carry = over as u64 | class >> 63;
    all & sum
}

/// What the grammar hands from one block to the next: for each kind of token, whether the last
/// token so far was one (`start`: none yet), and the nesting.
struct Grammar {
    start: u64,
    open_object: u64,
    open_array: u64,
    colon: u64,
    comma_in_object: u64,
    comma_in_array: u64,
    key: u64,
    value: u64,
    nest: Nesting,
    /// Whether the innermost open container is an object (meaningless at depth 0).
    object: bool,
    /// Whether the top-level value is complete (nothing but white space may follow).
    complete: bool,
}

impl Grammar {
    /// Checks one block's tokens against the grammar: brackets one at a time (the nesting
    /// stack), everything else by masks - each kind of token may only be followed by certain
    /// others.
    #[inline(always)]
    fn check(&mut self, t: &Tokens, max_depth: usize) -> bool {
        let all = t.all();
        if self.complete {
            return all == 0;
        }
        // Brackets, in order: depth, matching, and where the innermost container is an object.
        let in_object_before = self.object;
        let mut toggles = 0;
        let mut done_below = 0; // once the top-level value closes: the bits up to its end
        let mut brackets = t.brackets();
        while brackets != 0 {
            let bit = brackets & brackets.wrapping_neg();
            brackets &= brackets - 1;
            let was = self.object;
            if bit & (t.open_object | t.open_array) != 0 {
                if self.nest.depth == max_depth {
                    return false;
                }
                self.nest.push(self.object);
                self.object = bit & t.open_object != 0;
            } else {
                // '}' closes an object, ']' an array.
                if self.nest.depth == 0 || (bit & t.close_object != 0) != self.object {
                    return false;
                }
                self.object = self.nest.pop();
                if self.nest.depth == 0 {
                    done_below = (bit << 1).wrapping_sub(1);
                    break;
                }
            }
            if self.object != was {
                toggles |= bit;
            }
        }
        let in_object = prefix_xor(toggles) ^ (0u64.wrapping_sub(in_object_before as u64));
        let value_start = t.string | t.scalar | t.open_object | t.open_array;
        let first = successors(all, 0, &mut self.start);
        if first & (t.string | t.scalar) != 0 {
            // A string, number or literal at the top: the whole value.
            done_below = (first << 1).wrapping_sub(1);
        }
        let after_open_object = successors(all, t.open_object, &mut self.open_object);
        let after_open_array = successors(all, t.open_array, &mut self.open_array);
        let after_colon = successors(all, t.colon, &mut self.colon);
        let comma_in_object = t.comma & in_object;
        let after_comma_in_object = successors(all, comma_in_object, &mut self.comma_in_object);
        let after_comma_in_array = successors(all, t.comma & !in_object, &mut self.comma_in_array);
        let key = t.string & (after_open_object | after_comma_in_object);
        let after_key = successors(all, key, &mut self.key);
        let value_end = (t.string & !key) | t.scalar | t.close_object | t.close_array;
        let after_value = successors(all, value_end, &mut self.value);
        let wrong = (first & !value_start)
            | (after_open_object & !(t.string | t.close_object))
            | (after_open_array & !(value_start | t.close_array))
            | (after_colon & !value_start)
            | (after_comma_in_object & !t.string)
            | (after_comma_in_array & !value_start)
            | (after_key & !t.colon)
            | (after_value & !(t.comma | t.close_object | t.close_array));
        if done_below != 0 {
            self.complete = true;
            return wrong & done_below == 0 && all & !done_below == 0;
        }
        wrong == 0
    }
}

/// Each byte flagged in `escaped` (offsets from `base`) is an escape JSON knows; `\u` is
/// followed by four hex digits.
fn escapes_are_valid(text: &[u8], base: usize, mut escaped: u64) -> bool {
    while escaped != 0 {
        let i = base + escaped.trailing_zeros() as usize;
        escaped &= escaped - 1;
        if escape(text, i).is_none() {
            return false;
        }
    }
    true
}

/// Whether each number or literal that starts in the block at `base` is one, and ends where its
/// bytes end. One that ends in the block and is all digits (an integer with no leading zero)
/// needs no more than its masks.
fn scalars_are_valid(text: &[u8], base: usize, block: &[u8; 64], t: &Tokens) -> bool {
    let mut starts = t.scalar;
    while starts != 0 {
        let bit = starts & starts.wrapping_neg();
        starts &= starts - 1;
        let k = bit.trailing_zeros() as usize;
        // Its bytes: adding its first bit carries through them.
        let run = (t.scalar_bytes.wrapping_add(bit) ^ t.scalar_bytes) & t.scalar_bytes;
        if run >> 63 == 0 && run & !t.digit == 0 && (run == bit || block[k & 63] != b'0') {
            continue;
        }
        if !matches!(scalar(text, base + k), Some(e) if e == text.len() || delimits(at(text, e))) {
            return false;
        }
    }
    true
}

/// Whether `text` is one JSON value nested at most `max_depth` deep, in UTF-8 (RFC 8259): the
/// same verdict as the byte-wise `scan`, from block masks.
pub(super) fn valid(text: &[u8], max_depth: usize, classify: Classify) -> bool {
    let mut strings = Strings::default();
    let mut grammar = Grammar {
        start: 1,
        open_object: 0,
        open_array: 0,
        colon: 0,
        comma_in_object: 0,
        comma_in_array: 0,
        key: 0,
        value: 0,
        nest: Nesting::default(),
        object: false,
        complete: false,
    };
    let mut high = 0;
    let mut padded = [b' '; 64];
    for (n, chunk) in text.chunks(64).enumerate() {
        let base = n * 64;
        let block: &[u8; 64] = match chunk.try_into() {
            Ok(full) => full,
            Err(_) => {
                // The last, partial block, padded with spaces (white space, never a token).
                padded[..chunk.len()].copy_from_slice(chunk);
                &padded
            }
        };
        let t = tokens(&classify(block), &mut strings);
        high |= t.high;
        if t.error != 0
            || !grammar.check(&t, max_depth)
            || (t.escaped != 0 && !escapes_are_valid(text, base, t.escaped))
            || !scalars_are_valid(text, base, block, &t)
        {
            return false;
        }
    }
    grammar.complete && strings.in_string == 0 && (high == 0 || std::str::from_utf8(text).is_ok())
}

/// Bytes that end a number or literal: white space, punctuation, a quote.
#[inline(always)]
fn delimits(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'}' | b'[' | b']' | b':' | b',' | b'"'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::simd::{classify_portable, fast_classifier};

    /// The escaped bytes by walking the bytes one at a time.
    fn escaped_by_hand(bytes: &[bool]) -> Vec<bool> {
        let mut escape = false;
        bytes
            .iter()
            .map(|&backslash| {
                let this = escape;
                escape = backslash && !escape;
                this
            })
            .collect()
    }

    #[test]
    fn escapes_are_found_across_blocks_like_a_byte_walk() {
        let mut r = Rng(0x2545_F491_4F6C_DD1D);
        for round in 0..20_000 {
            // Dense backslashes, and long runs of them, across three blocks.
            let density = [2u64, 3, 8][round % 3];
            let bits: Vec<bool> = (0..192).map(|_| r.below(density) != 0).collect();
            let want = escaped_by_hand(&bits);
            let mut carry = 0;
            for block in 0..3 {
                let mask = (0..64).fold(0u64, |m, k| m | (bits[block * 64 + k] as u64) << k);
                let got = escaped(mask, &mut carry);
                for k in 0..64 {
                    assert_eq!(got >> k & 1 == 1, want[block * 64 + k], "round {round}");
                }
            }
        }
    }

    #[test]
    fn prefix_xor_marks_the_inside_of_quotes() {
        assert_eq!(prefix_xor(0b1001), 0b0111);
        assert_eq!(prefix_xor(1), u64::MAX);
        assert_eq!(prefix_xor(1 << 63 | 1), u64::MAX >> 1);
    }

    #[test]
    fn tokens_are_found_outside_strings_only() {
        let text = br#"{"a b":[1, true,"x\"y"],"c":-2e3}"#;
        let mut block = [b' '; 64];
        block[..text.len()].copy_from_slice(text);
        let t = tokens(&classify_portable(&block), &mut Strings::default());
        let bits = |m: u64| -> Vec<u32> { (0..64).filter(|k| m >> k & 1 == 1).collect() };
        assert_eq!(bits(t.open_object), [0]);
        assert_eq!(bits(t.string), [1, 16, 24]);
        assert_eq!(bits(t.colon), [6, 27]);
        assert_eq!(bits(t.open_array), [7]);
        assert_eq!(bits(t.scalar), [8, 11, 28]);
        assert_eq!(bits(t.comma), [9, 15, 23]);
        assert_eq!(bits(t.close_array), [22]);
        assert_eq!(bits(t.close_object), [32]);
        assert_eq!(bits(t.escaped), [19]);
        assert_eq!(t.error, 0);
    }

    #[test]
    fn successors_follow_each_token_to_the_next_across_blocks() {
        // Tokens at 3, 10, 63 of one block and 5 of the next; the class holds 3 and 63.
        let mut carry = 0;
        let all = 1 << 3 | 1 << 10 | 1 << 63;
        assert_eq!(successors(all, 1 << 3 | 1 << 63, &mut carry), 1 << 10);
        assert_eq!(carry, 1, "the last token is in the class");
        assert_eq!(successors(0, 0, &mut carry), 0);
        assert_eq!(carry, 1, "an empty block hands the carry on");
        assert_eq!(successors(1 << 5 | 1 << 6, 0, &mut carry), 1 << 5);
        assert_eq!(carry, 0);
        // Adjacent tokens.
        assert_eq!(successors(0b111, 0b011, &mut carry), 0b110);
        assert_eq!(carry, 0);
    }

    /// Both classifiers give the byte-wise scanner's verdict; returns it.
    fn agree(doc: &[u8], depth: usize) -> bool {
        let want = super::super::scan(doc, depth).is_ok() && std::str::from_utf8(doc).is_ok();
        let portable = valid(doc, depth, classify_portable);
        assert_eq!(portable, want, "{:?}", String::from_utf8_lossy(doc));
        if let Some(fast) = fast_classifier() {
            assert_eq!(valid(doc, depth, fast), want, "{doc:?}");
        }
        want
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// A random valid JSON value, at most `depth` deep, with random white space.
        fn value(&mut self, out: &mut Vec<u8>, depth: usize) {
            let ws = |r: &mut Rng, out: &mut Vec<u8>| {
                if r.below(4) == 0 {
                    out.extend_from_slice(
                        [&b" "[..], b"\n", b"\t  ", b"\r\n"][r.below(4) as usize],
                    );
                }
            };
            ws(self, out);
            match self.below(if depth == 0 { 5 } else { 7 }) {
                0 => {
                    out.extend_from_slice([&b"true"[..], b"false", b"null"][self.below(3) as usize])
                }
                1 | 2 => {
                    const NUMBERS: [&str; 8] = [
                        "0",
                        "-0",
                        "7919",
                        "-15.8e3",
                        "1.5E+10",
                        "123456789012",
                        "0.001",
                        "2e-5",
                    ];
                    out.extend_from_slice(NUMBERS[self.below(8) as usize].as_bytes());
                }
                3 | 4 => self.string(out),
                5 => {
                    out.push(b'[');
                    for i in 0..self.below(5) {
                        if i > 0 {
                            out.push(b',');
                        }
                        self.value(out, depth - 1);
                    }
                    ws(self, out);
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    for i in 0..self.below(5) {
                        if i > 0 {
                            out.push(b',');
                        }
                        ws(self, out);
                        self.string(out);
                        ws(self, out);
                        out.push(b':');
                        self.value(out, depth - 1);
                    }
                    ws(self, out);
                    out.push(b'}');
                }
            }
            ws(self, out);
        }

        fn string(&mut self, out: &mut Vec<u8>) {
            const PARTS: [&str; 10] = [
                "a",
                "xyzxyzxyzxyzxyzxyzxyzxyz",
                "\\\"",
                "\\\\",
                "\\u00e9",
                "\\n",
                "\u{e9}",
                "\u{20ac}\u{1F600}",
                "[{:,}]",
                " ",
            ];
            out.push(b'"');
            for _ in 0..self.below(6) {
                out.extend_from_slice(PARTS[self.below(10) as usize].as_bytes());
            }
            out.push(b'"');
        }
    }

    #[test]
    fn agrees_on_random_valid_documents_and_their_one_byte_changes() {
        let mut r = Rng(0x2545_F491_4F6C_DD1D);
        let (mut valid_changed, mut sizes) = (0, 0);
        for _ in 0..20_000 {
            let mut doc = Vec::new();
            // Mostly an array of values, so that documents span several blocks.
            let depth = 1 + r.below(6) as usize;
            match r.below(4) {
                0 => r.value(&mut doc, depth),
                _ => {
                    doc.push(b'[');
                    for i in 0..1 + r.below(24) {
                        if i > 0 {
                            doc.push(b',');
                        }
                        r.value(&mut doc, depth);
                    }
                    doc.push(b']');
                }
            }
            assert!(agree(&doc, 128), "{:?}", String::from_utf8_lossy(&doc));
            sizes += doc.len();
            for _ in 0..4 {
                let mut changed = doc.clone();
                let at = r.below(doc.len() as u64) as usize;
                const BYTES: [u8; 16] = [
                    b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b' ', b'1', b'-', b'e', b'x',
                    0, 0x1f, 0xc3,
                ];
                let b = BYTES[r.below(16) as usize];
                match r.below(3) {
                    0 => changed[at] = b,
                    1 => changed.insert(at, b),
                    _ => {
                        changed.remove(at);
                    }
                }
                valid_changed += agree(&changed, 128) as usize;
                agree(&changed, 2);
            }
        }
        assert!(
            sizes > 20_000 * 100,
            "documents of every size: {sizes} bytes in all"
        );
        assert!(
            valid_changed > 1_000,
            "some changes keep a document valid: {valid_changed}"
        );
    }

    #[test]
    fn agrees_with_the_byte_wise_scanner_on_random_documents() {
        // Pieces rich in JSON's edge cases; documents from 1 to about 300 bytes, so that
        // strings, escapes and numbers straddle block boundaries.
        const PIECES: [&str; 44] = [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\\",
            "\\\\",
            "\\u",
            "\\u00e9",
            "\\x",
            "0",
            "1",
            "-",
            "+",
            ".",
            "e",
            "E",
            "9",
            "true",
            "false",
            "null",
            "tru",
            " ",
            "\n",
            "\t",
            "\u{1}",
            "\"a\"",
            "\"k\":",
            "a",
            "1.5",
            "-0",
            "01",
            "1e",
            "\u{e9}",
            "/",
            "\\/",
            "\\n",
            "\r",
            "\"\\\"\"",
            "\"abcdefghijklmnopqrstuvwxyz0123456789\"",
            "\u{0}",
            "\u{7f}",
        ];
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..300_000 {
            let n = 1 + r.below([12, 40, 120][round % 3]);
            let doc: String = (0..n)
                .map(|_| PIECES[r.below(PIECES.len() as u64) as usize])
                .collect();
            agree(doc.as_bytes(), usize::MAX);
        }
    }

    #[test]
    fn agrees_on_valid_documents_and_each_one_byte_change_of_them() {
        let base = [
            &br#"{"t":"00000000000000000000","d":[{"id":7919,"ok":true,"v":"abc\"d\\e\u00e9f"},"#[..],
            br#"{"id":-15.8e3,"ok":false,"v":null}],"p":"caf"#,
            "\u{e9}".as_bytes(),
            br#" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","q":[[[]],{}]}"#,
        ]
        .concat();
        let base = &base[..];
        assert!(
            super::super::scan(base, 128).is_ok(),
            "the base document is valid"
        );
        agree(base, 128);
        agree(base, 3);
        agree(base, 2);
        for pos in 0..base.len() {
            for b in [
                b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b' ', b'1', b'x', 0, 0x1f, 0xc3,
                0xff,
            ] {
                let mut doc = base.to_vec();
                doc[pos] = b;
                agree(&doc, 128);
                doc.remove(pos);
                agree(&doc, 128);
            }
            agree(&base[..pos], 128);
        }
    }

    #[test]
    fn deep_and_wide_documents() {
        for n in [63, 64, 65, 127, 128, 129, 300] {
            let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
            for max in [n - 1, n, n + 1] {
                agree(deep.as_bytes(), max);
            }
            let objects = format!("{}1{}", "{\"k\":".repeat(n), "}".repeat(n));
            agree(objects.as_bytes(), n);
            agree(objects.as_bytes(), n - 1);
        }
        let long = format!("[\"{}\",{}]", "x".repeat(5000), "1,".repeat(3000) + "2");
        agree(long.as_bytes(), 8);
    }
}
