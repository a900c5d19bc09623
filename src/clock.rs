//! The clock behind `published_ns` and `jsonbus_now_ns`: the machine's monotonic clock, so that
//! times compare across processes.

/// Nanoseconds on the machine's monotonic clock (`CLOCK_MONOTONIC`, the performance counter
/// on Windows).
pub fn now_ns() -> u64 {
    crate::sys::clock::monotonic_ns()
}
