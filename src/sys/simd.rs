//! SIMD byte classification for the validator: which bytes of a 64-byte block of JSON text are
//! quotes, backslashes, white space, each punctuation mark, digits, control characters or
//! non-ASCII, as one bit per byte. AVX2 when the CPU has it (detected at run time); without it
//! the validator keeps its byte-wise scanner. The portable byte loop here is the reference the
//! AVX2 version is tested against.

/// The byte classes of one 64-byte block: bit `i` of each mask stands for byte `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Classes {
    /// `"`
    pub quote: u64,
    /// `\`
    pub backslash: u64,
    /// Space, tab, line feed, carriage return.
    pub space: u64,
    /// `{`
    pub open_object: u64,
    /// `[`
    pub open_array: u64,
    /// `}`
    pub close_object: u64,
    /// `]`
    pub close_array: u64,
    /// `:`
    pub colon: u64,
    /// `,`
    pub comma: u64,
    /// `0` to `9`.
    pub digit: u64,
    /// Below 0x20 (tab, line feed and carriage return included).
    pub control: u64,
    /// 0x80 and above.
    pub high: u64,
}

/// A function that classifies one block.
pub type Classify = fn(&[u8; 64]) -> Classes;

/// The AVX2 classifier when this CPU has AVX2, else `None` (the caller keeps its byte-wise
/// path). The detection is the standard library's, cached in a static after the first call:
/// nothing is left behind on a host thread.
pub fn fast_classifier() -> Option<Classify> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(avx2::classify);
        }
    }
    None
}

/// The portable classifier: one byte at a time.
pub fn classify_portable(block: &[u8; 64]) -> Classes {
    let mut c = Classes::default();
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        let set = |mask: &mut u64, yes: bool| *mask |= if yes { bit } else { 0 };
        set(&mut c.quote, b == b'"');
        set(&mut c.backslash, b == b'\\');
        set(&mut c.space, matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        set(&mut c.open_object, b == b'{');
        set(&mut c.open_array, b == b'[');
        set(&mut c.close_object, b == b'}');
        set(&mut c.close_array, b == b']');
        set(&mut c.colon, b == b':');
        set(&mut c.comma, b == b',');
        set(&mut c.digit, b.is_ascii_digit());
        set(&mut c.control, b < 0x20);
        set(&mut c.high, b >= 0x80);
    }
    c
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Classes;
    use std::arch::x86_64::*;

    /// Classifies with AVX2; only ever handed out by `fast_classifier` after the check.
    pub fn classify(block: &[u8; 64]) -> Classes {
        // SAFETY: `fast_classifier` returns this function only when the CPU reports AVX2, the
        // one target feature `classify_avx2` is compiled for.
        unsafe { classify_avx2(block) }
    }

    #[target_feature(enable = "avx2")]
    fn classify_avx2(block: &[u8; 64]) -> Classes {
        // SAFETY: `block` is 64 readable bytes; the two unaligned 32-byte loads read bytes
        // 0..32 and 32..64 of it.
        let (lo, hi) = unsafe {
            let p = block.as_ptr() as *const __m256i;
            (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
        };
        let half = |v: __m256i| {
            let eq = |c: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8));
            let space = _mm256_or_si256(
                _mm256_or_si256(eq(b' '), eq(b'\t')),
                _mm256_or_si256(eq(b'\n'), eq(b'\r')),
            );
            // v <= 0x1f, unsigned: min(v, 0x1f) == v.
            let control = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v);
            // v - '0' <= 9, unsigned.
            let d = _mm256_sub_epi8(v, _mm256_set1_epi8(b'0' as i8));
            let digit = _mm256_cmpeq_epi8(_mm256_min_epu8(d, _mm256_set1_epi8(9)), d);
            let bits = |m: __m256i| _mm256_movemask_epi8(m) as u32 as u64;
            [
                bits(eq(b'"')),
                bits(eq(b'\\')),
                bits(space),
                bits(eq(b'{')),
                bits(eq(b'[')),
                bits(eq(b'}')),
                bits(eq(b']')),
                bits(eq(b':')),
                bits(eq(b',')),
                bits(digit),
                bits(control),
                bits(v),
            ]
        };
        let (l, h) = (half(lo), half(hi));
        let join = |k: usize| l[k] | h[k] << 32;
        Classes {
            quote: join(0),
            backslash: join(1),
            space: join(2),
            open_object: join(3),
            open_array: join(4),
            close_object: join(5),
            close_array: join(6),
            colon: join(7),
            comma: join(8),
            digit: join(9),
            control: join(10),
            high: join(11),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portable_classifier_sorts_every_byte_value() {
        for b in 0..=255u8 {
            let mut block = [b'a'; 64];
            block[17] = b;
            let c = classify_portable(&block);
            let at = |m: u64| m == 1 << 17;
            assert_eq!(at(c.quote), b == b'"', "{b:#x}");
            assert_eq!(at(c.backslash), b == b'\\', "{b:#x}");
            assert_eq!(at(c.space), b" \t\n\r".contains(&b), "{b:#x}");
            assert_eq!(at(c.open_object), b == b'{', "{b:#x}");
            assert_eq!(at(c.open_array), b == b'[', "{b:#x}");
            assert_eq!(at(c.close_object), b == b'}', "{b:#x}");
            assert_eq!(at(c.close_array), b == b']', "{b:#x}");
            assert_eq!(at(c.colon), b == b':', "{b:#x}");
            assert_eq!(at(c.comma), b == b',', "{b:#x}");
            assert_eq!(at(c.digit), b.is_ascii_digit(), "{b:#x}");
            assert_eq!(at(c.control), b < 0x20, "{b:#x}");
            assert_eq!(at(c.high), b >= 0x80, "{b:#x}");
        }
    }

    #[test]
    fn the_fast_classifier_agrees_with_the_portable_one() {
        let Some(fast) = fast_classifier() else {
            eprintln!("no AVX2 on this CPU: only the portable classifier runs here");
            return;
        };
        // Every byte value at every position, then random blocks.
        for pos in 0..64 {
            for b in 0..=255u8 {
                let mut block = [b'x'; 64];
                block[pos] = b;
                assert_eq!(fast(&block), classify_portable(&block), "{b:#x} at {pos}");
            }
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut block = [0u8; 64];
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            assert_eq!(fast(&block), classify_portable(&block));
        }
    }
}
