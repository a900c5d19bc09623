//! The monotonic clock behind `published_ns` and `jsonbus_now_ns`.

use once_cell::sync::Lazy;
use std::time::Instant;

static ORIGIN: Lazy<Instant> = Lazy::new(Instant::now);

/// Nanoseconds on a monotonic clock, counted from the library's first use in the process.
pub fn now_ns() -> u64 {
    ORIGIN.elapsed().as_nanos() as u64
}
