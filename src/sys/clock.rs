//! The machine's monotonic clock, the same in every process: `CLOCK_MONOTONIC` on POSIX, the
//! performance counter on Windows.

/// Nanoseconds on the machine's monotonic clock.
#[cfg(unix)]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux and
    // the BSDs (a failure leaves it zero).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(windows)]
pub fn monotonic_ns() -> u64 {
    extern "system" {
        fn QueryPerformanceCounter(count: *mut i64) -> i32;
        fn QueryPerformanceFrequency(frequency: *mut i64) -> i32;
    }
    let (mut count, mut frequency) = (0i64, 0i64);
    // SAFETY: both write one i64 each to valid locations; they cannot fail on XP and later.
    unsafe {
        QueryPerformanceCounter(&mut count);
        QueryPerformanceFrequency(&mut frequency);
    }
    match frequency {
        f if f > 0 => (count as u128 * 1_000_000_000 / f as u128) as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_moves_forward_with_the_std_clock() {
        let (a, t) = (monotonic_ns(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (b, e) = (monotonic_ns(), t.elapsed());
        assert!(b > a);
        let d = (b - a) as i128 - e.as_nanos() as i128;
        assert!(d.abs() < 5_000_000, "{d} ns apart from Instant");
    }
}
