//! A sealed shared-memory mapping (Linux): a memfd that cannot grow or shrink, mapped read-write
//! and shared, with bounds-checked copies and atomics at fixed offsets for two processes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The seals a mapping needs so that the other process cannot change its size under us.
const SIZE_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// A `MAP_SHARED` read-write mapping of a whole memfd whose size is sealed, unmapped and closed
/// when dropped. Another process may map the same memfd and write to it at any time, so the
/// region is only ever touched through raw-pointer copies and atomics, never through references
/// to its bytes.
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is owned by this value and lives until Drop; it is accessed only through
// raw-pointer copies and atomics, which are fine from any thread (concurrent writers are expected).
unsafe impl Send for SharedMap {}
// SAFETY: as for Send: `&SharedMap` gives no access except raw copies and atomics.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// A new zero-filled mapping of `len` bytes: `memfd_create(name, MFD_CLOEXEC |
    /// MFD_ALLOW_SEALING)`, `ftruncate(len)`, seals `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`,
    /// then `mmap(PROT_READ | PROT_WRITE, MAP_SHARED)`. `name` is only a label seen in
    /// /proc (at most 249 bytes, no NUL); `len` must not be 0 (InvalidInput).
    pub fn create(name: &str, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared mapping cannot be empty",
            ));
        }
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared mapping too large"))?;
        let cname = std::ffi::CString::new(name).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "memfd name contains a NUL byte",
            )
        })?;
        // SAFETY: `cname` is a live NUL-terminated string; the flags are valid.
        let raw = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain system call on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain system call on our own descriptor; the argument is an int of seal bits.
        let sealed = unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                SIZE_SEALS | libc::F_SEAL_SEAL,
            )
        };
        if sealed != 0 {
            return Err(io::Error::last_os_error());
        }
        SharedMap::map(fd, len)
    }

    /// Maps a memfd received from another process. Refused with InvalidData unless fstat's
    /// size is exactly `len` and `F_GET_SEALS` includes `F_SEAL_SHRINK` and `F_SEAL_GROW` (so
    /// the other side cannot shrink it under us and make our accesses fault). The descriptor
    /// is made close-on-exec.
    pub fn from_fd(fd: OwnedFd, len: usize) -> io::Result<SharedMap> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a live, writable stat for fstat to fill.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if u64::try_from(st.st_size).ok() != Some(len as u64) {
            return Err(invalid(format!(
                "shared memory descriptor has size {}, expected {len}",
                st.st_size
            )));
        }
        // SAFETY: plain system call on a descriptor we own; no pointers.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 {
            return Err(invalid(format!(
                "shared memory descriptor cannot be sealed: {}",
                io::Error::last_os_error()
            )));
        }
        if seals & SIZE_SEALS != SIZE_SEALS {
            return Err(invalid(format!(
                "shared memory descriptor is not sealed against resizing (seals {seals:#x})"
            )));
        }
        set_cloexec(fd.as_fd())?;
        if len == 0 {
            return Err(invalid("a shared mapping cannot be empty".to_string()));
        }
        SharedMap::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedMap> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint), of a descriptor we own whose
        // size is `len` and sealed, so no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned address 0"))?;
        Ok(SharedMap { ptr, len, fd })
    }

    /// The memfd, to send to the other process (it stays owned by this mapping).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The size of the mapping in bytes (never 0).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// A pointer to `size` bytes at `offset`, which must be `align`-aligned and in bounds.
    fn at(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        assert!(
            offset % align == 0,
            "shared map offset {offset} is not {align}-aligned"
        );
        self.checked(offset, size)
    }

    /// A pointer to `size` bytes at `offset`; panics unless they are inside the mapping.
    fn checked(&self, offset: usize, size: usize) -> *mut u8 {
        match offset.checked_add(size) {
            Some(end) if end <= self.len => {}
            _ => panic!(
                "shared map access of {size} bytes at {offset} is outside its {} bytes",
                self.len
            ),
        }
        // SAFETY: offset + size <= len was checked above, so the result stays in the mapping.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// An atomic over the 8 bytes at `offset`, shared with the other process. Panics unless
    /// `offset` is 8-aligned and in bounds (a programming error: offsets come from our own
    /// layout, never from the other process).
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        let p = self.at(offset, 8, 8);
        // SAFETY: 8 in-bounds bytes, 8-aligned (the mapping is page-aligned), mapped as long as
        // `self` lives; the memory is only ever accessed atomically or by raw copies.
        unsafe { &*p.cast::<AtomicU64>() }
    }

    /// An atomic over the 4 bytes at `offset`; panics unless 4-aligned and in bounds.
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        let p = self.at(offset, 4, 4);
        // SAFETY: as in atomic_u64, with 4 bytes and 4-alignment.
        unsafe { &*p.cast::<AtomicU32>() }
    }

    /// Copies `dst.len()` bytes at `offset` out of the mapping; panics if `offset + dst.len()`
    /// is past the end. The other process may be writing concurrently: the bytes are just bytes.
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        let p = self.checked(offset, dst.len());
        // SAFETY: the source range is inside the mapping (checked) and `dst` is a distinct
        // local buffer of that length; no reference to the shared bytes is created.
        unsafe { ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), dst.len()) };
    }

    /// Copies `src` into the mapping at `offset`; panics if `offset + src.len()` is past the end.
    pub fn write(&self, offset: usize, src: &[u8]) {
        let p = self.checked(offset, src.len());
        // SAFETY: the destination range is inside the mapping (checked) and `src` is a distinct
        // buffer of that length; no reference to the shared bytes is created.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value created; no reference into it can
        // outlive `self` (atomics borrow `self`). The descriptor closes after, with `fd`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Sets FD_CLOEXEC on a descriptor.
fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain system calls on a live descriptor; no pointers.
    let ok = unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
        flags >= 0 && libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn unique(tag: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "jsonbus-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn errno(r: libc::c_int) -> Option<i32> {
        (r != 0).then(|| io::Error::last_os_error().raw_os_error().unwrap())
    }

    #[test]
    fn create_write_read() {
        let m = SharedMap::create(&unique("rw"), 4096).unwrap();
        assert_eq!(m.len(), 4096);
        let mut buf = [0xffu8; 16];
        m.read(100, &mut buf);
        assert_eq!(buf, [0u8; 16], "zero-filled");
        m.write(100, b"hello shared map");
        m.read(100, &mut buf);
        assert_eq!(&buf, b"hello shared map");
        m.write(4090, b"END!!!");
        let mut end = [0u8; 6];
        m.read(4090, &mut end);
        assert_eq!(&end, b"END!!!");
        m.read(4096, &mut []);
    }

    #[test]
    fn create_refuses_empty_and_nul() {
        assert_eq!(
            SharedMap::create("x", 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            SharedMap::create("a\0b", 4096).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn from_fd_of_dup_shares_bytes_and_atomics() {
        let a = SharedMap::create(&unique("dup"), 8192).unwrap();
        a.write(10, b"from a");
        let b = SharedMap::from_fd(a.fd().try_clone_to_owned().unwrap(), 8192).unwrap();
        assert_ne!(a.ptr, b.ptr, "two distinct mappings");
        let mut buf = [0u8; 6];
        b.read(10, &mut buf);
        assert_eq!(&buf, b"from a");
        b.write(5000, b"from b");
        a.read(5000, &mut buf);
        assert_eq!(&buf, b"from b");

        a.atomic_u64(4096)
            .store(0x0123_4567_89ab_cdef, Ordering::SeqCst);
        assert_eq!(
            b.atomic_u64(4096).load(Ordering::SeqCst),
            0x0123_4567_89ab_cdef
        );
        assert_eq!(
            b.atomic_u64(4096).fetch_add(1, Ordering::SeqCst),
            0x0123_4567_89ab_cdef
        );
        assert_eq!(
            a.atomic_u64(4096).load(Ordering::SeqCst),
            0x0123_4567_89ab_cdf0
        );
        b.atomic_u32(8188).store(77, Ordering::SeqCst);
        assert_eq!(a.atomic_u32(8188).load(Ordering::SeqCst), 77);
        let mut raw = [0u8; 4];
        a.read(8188, &mut raw);
        assert_eq!(u32::from_ne_bytes(raw), 77);
    }

    #[test]
    fn from_fd_refuses_wrong_length() {
        let a = SharedMap::create(&unique("len"), 4096).unwrap();
        for len in [0, 4095, 4097, 8192] {
            let e = SharedMap::from_fd(a.fd().try_clone_to_owned().unwrap(), len).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "len {len}: {e}");
        }
    }

    #[test]
    fn from_fd_refuses_unsealed() {
        let name = std::ffi::CString::new(unique("unsealed")).unwrap();
        // Without MFD_ALLOW_SEALING and with it but only F_SEAL_GROW: both refused.
        for (flags, seals) in [
            (libc::MFD_CLOEXEC, 0),
            (
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
                libc::F_SEAL_GROW,
            ),
        ] {
            // SAFETY: `name` is NUL-terminated; the result is checked and owned below.
            let raw = unsafe { libc::memfd_create(name.as_ptr(), flags) };
            assert!(raw >= 0);
            // SAFETY: just created, owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: plain system calls on our descriptor.
            unsafe {
                assert_eq!(libc::ftruncate(raw, 4096), 0);
                if seals != 0 {
                    assert_eq!(libc::fcntl(raw, libc::F_ADD_SEALS, seals), 0);
                }
            }
            let e = SharedMap::from_fd(fd, 4096).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains("sealed"), "{e}");
        }
    }

    #[test]
    fn from_fd_refuses_a_pipe() {
        let mut p = [0; 2];
        // SAFETY: `p` has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both were just created by pipe2 and are owned by nothing else.
        let (r, _w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        let e = SharedMap::from_fd(r, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn sealed_memfd_cannot_be_resized() {
        let m = SharedMap::create(&unique("seal"), 4096).unwrap();
        let fd = m.fd().as_raw_fd();
        // SAFETY: plain system calls on a live descriptor.
        unsafe {
            assert_eq!(errno(libc::ftruncate(fd, 8192)), Some(libc::EPERM));
            assert_eq!(errno(libc::ftruncate(fd, 1024)), Some(libc::EPERM));
            assert_eq!(errno(libc::ftruncate(fd, 0)), Some(libc::EPERM));
            // F_SEAL_SEAL: the seals themselves cannot be removed or added to.
            assert_eq!(
                errno(libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE)),
                Some(libc::EPERM)
            );
            let seals = libc::fcntl(fd, libc::F_GET_SEALS);
            assert_eq!(
                seals,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL
            );
            let fdflags = libc::fcntl(fd, libc::F_GETFD);
            assert_ne!(fdflags & libc::FD_CLOEXEC, 0);
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn read_out_of_bounds_panics() {
        let m = SharedMap::create(&unique("oob"), 4096).unwrap();
        let mut buf = [0u8; 8];
        m.read(4090, &mut buf);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn write_out_of_bounds_panics() {
        let m = SharedMap::create(&unique("oobw"), 4096).unwrap();
        m.write(usize::MAX, b"x");
    }

    #[test]
    #[should_panic(expected = "aligned")]
    fn misaligned_atomic_panics() {
        let m = SharedMap::create(&unique("align"), 4096).unwrap();
        m.atomic_u64(4);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn atomic_out_of_bounds_panics() {
        let m = SharedMap::create(&unique("aoob"), 4096).unwrap();
        m.atomic_u32(4096);
    }

    /// Whether /proc/self/maps has a mapping starting at `addr` of the memfd called `name`.
    fn mapped(addr: usize, name: &str) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let start = format!("{addr:x}-");
        let file = format!("/memfd:{name}");
        maps.lines()
            .any(|l| l.starts_with(&start) && l.contains(&file))
    }

    /// Whether descriptor `fd` is (still) the memfd called `name`.
    fn open_as(fd: i32, name: &str) -> bool {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|t| t.to_string_lossy().starts_with(&format!("/memfd:{name}")))
            .unwrap_or(false)
    }

    #[test]
    fn drop_unmaps_and_closes() {
        let name = unique("drop");
        let m = SharedMap::create(&name, 3 * 4096).unwrap();
        let addr = m.ptr.as_ptr() as usize;
        let fd = m.fd().as_raw_fd();
        assert!(mapped(addr, &name), "mapping listed while alive");
        assert!(open_as(fd, &name), "descriptor open while alive");
        drop(m);
        assert!(!mapped(addr, &name), "mapping gone after drop");
        assert!(!open_as(fd, &name), "descriptor closed after drop");
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn no_descriptor_leaks() {
        let before = open_fds();
        for _ in 0..100 {
            let a = SharedMap::create("jsonbus-test-leak", 4096).unwrap();
            let b = SharedMap::from_fd(a.fd().try_clone_to_owned().unwrap(), 4096).unwrap();
            b.atomic_u64(0).fetch_add(1, Ordering::Relaxed);
            assert!(SharedMap::from_fd(a.fd().try_clone_to_owned().unwrap(), 1).is_err());
        }
        let after = open_fds();
        assert!(
            after < before + 5,
            "{before} descriptors before, {after} after"
        );
    }
}
