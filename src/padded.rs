//! `Padded`: a value alone on its cache lines, for the fields one side of a hand-off writes
//! often and the other side's hot path must not have taken from it.

/// A value alone on its cache line (128 bytes: adjacent-line prefetch pairs lines), so that
/// writes to it do not take its neighbours' lines from other cores, and writes to its
/// neighbours do not take its line.
#[repr(align(128))]
#[derive(Default)]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, size_of};

    #[test]
    fn two_padded_values_never_share_a_line() {
        assert_eq!(align_of::<Padded<u8>>(), 128);
        assert_eq!(size_of::<Padded<u64>>(), 128);
        let pair = [Padded(1u64), Padded(2u64)];
        let (a, b) = (
            &*pair[0] as *const u64 as usize,
            &*pair[1] as *const u64 as usize,
        );
        assert_eq!(b - a, 128);
        assert_eq!(a % 128, 0);
        assert_eq!(*pair[1], 2);
    }
}
