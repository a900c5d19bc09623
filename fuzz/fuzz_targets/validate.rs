//! Fuzz target `validate`: the payload validator's two paths on the same bytes.
//!
//! Input: `depth, payload...`; `max_depth` is the first byte (0-255), the rest is the payload
//! (any bytes, NULs included, any length up to -max_len).
//!
//! Oracle: `jsonbus::validate::valid_by_bytes` (the byte-wise scanner) and
//! `valid_by_blocks` (the AVX2 blocks, at every size - `check_payload` uses them from 256
//! bytes on; skipped on a CPU without AVX2) both give the reference verdict of
//! `payload_verdict`: `std::str::from_utf8` ok ∧ serde_json accepts exactly one value ∧
//! depth ≤ `max_depth`.
#![no_main]

use jsonbus::validate::{valid_by_blocks, valid_by_bytes};
use jsonbus_fuzz::payload_verdict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&depth, json)) = data.split_first() else {
        return;
    };
    let depth = depth as usize;
    let want = payload_verdict(json, usize::MAX, depth).is_ok();
    let bytes = valid_by_bytes(json, depth);
    if bytes != want {
        eprintln!("byte-wise scanner says {bytes}, reference {want}: {json:?}");
        std::process::abort();
    }
    if let Some(blocks) = valid_by_blocks(json, depth) {
        if blocks != want {
            eprintln!("SIMD blocks say {blocks}, reference {want}: {json:?}");
            std::process::abort();
        }
    }
});
