//! A descriptor that `poll`/`epoll`/`select` see as readable while it is raised: an eventfd on
//! Linux, a non-blocking pipe on other POSIX systems. Pull subscriptions hand it to event loops.

use std::io;

/// A readiness descriptor, closed when dropped. `raise` and `lower` are not synchronised with
/// each other: the owner calls them under its own lock and tracks whether it is raised.
pub struct NotifyFd {
    read: i32,
    #[cfg(all(unix, not(target_os = "linux")))]
    write: i32,
}

impl NotifyFd {
    /// A new descriptor, not readable.
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<NotifyFd> {
        // SAFETY: plain system call; no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NotifyFd { read: fd })
    }

    #[cfg(all(unix, not(target_os = "linux")))]
    pub fn new() -> io::Result<NotifyFd> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: `fd` was just opened by pipe.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            }
        }
        Ok(NotifyFd {
            read: fds[0],
            write: fds[1],
        })
    }

    #[cfg(not(unix))]
    pub fn new() -> io::Result<NotifyFd> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            if cfg!(windows) {
                "a pollable descriptor is not supported on Windows (there is no fd for poll); \
                 wait in jsonbus_next with a timeout instead"
            } else {
                "a pollable descriptor is not supported on this platform; wait in \
                 jsonbus_next with a timeout instead"
            },
        ))
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> i32 {
        self.read
    }

    /// Makes the descriptor readable (call only while it is not raised).
    pub fn raise(&self) {
        #[cfg(target_os = "linux")]
        {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd; it cannot block (the counter
            // is 0 or 1, far from overflow) and a failure leaves the state unchanged.
            unsafe { libc::write(self.read, (&one as *const u64).cast(), 8) };
        }
        #[cfg(all(unix, not(target_os = "linux")))]
        // SAFETY: writes one byte from a live buffer to our pipe.
        unsafe {
            libc::write(self.write, b"x".as_ptr().cast(), 1);
        }
    }

    /// Makes the descriptor not readable (call only while it is raised).
    pub fn lower(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from our non-blocking descriptor.
        unsafe { libc::read(self.read, buf.as_mut_ptr().cast(), 8) };
    }
}

impl Drop for NotifyFd {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: the descriptors are ours and closed once, here.
        unsafe {
            libc::close(self.read);
            #[cfg(not(target_os = "linux"))]
            libc::close(self.write);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn readable(fd: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }

    #[test]
    fn readable_exactly_while_raised_and_closed_when_dropped() {
        let n = NotifyFd::new().unwrap();
        assert!(n.fd() >= 0);
        assert!(!readable(n.fd()));
        n.raise();
        assert!(readable(n.fd()));
        assert!(readable(n.fd()), "polling does not consume it");
        n.lower();
        assert!(!readable(n.fd()));
        n.raise();
        assert!(readable(n.fd()));
        // One test, not two: no other test of this crate opens descriptors, so the number
        // cannot be reused in between.
        let fd = n.fd();
        drop(n);
        // SAFETY: F_GETFD on a closed descriptor only fails with EBADF.
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_GETFD) },
            -1,
            "dropping closes it"
        );
    }
}
