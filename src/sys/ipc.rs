//! Inter-process primitives (Linux): eventfd wake-ups, epoll, pidfd, SOCK_SEQPACKET Unix
//! sockets that pass descriptors (SCM_RIGHTS) and peer credentials, flock, the per-user directory.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most descriptors `SeqPacket::send` passes with one message.
const MAX_SEND_FDS: usize = 4;
/// The kernel's limit on descriptors in one message (SCM_MAX_FD): the receive buffer has room
/// for all of them, so every descriptor received is returned (and closed by its owner).
const SCM_MAX_FD: usize = 253;
/// The most events one `Epoll::wait` returns.
const MAX_EVENTS: usize = 64;

/// Wraps a descriptor a system call just returned, or its error.
fn owned(raw: libc::c_int) -> io::Result<OwnedFd> {
    if raw < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the caller passes a descriptor a system call has just created for us, which
        // nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}

/// `Ok(())` for a zero return, the errno otherwise.
fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What is left of a timeout in milliseconds (negative: forever).
enum Wait {
    Forever,
    Until(Instant),
}

impl Wait {
    fn new(timeout_ms: i32) -> Wait {
        match u64::try_from(timeout_ms) {
            Ok(ms) => Wait::Until(Instant::now() + Duration::from_millis(ms)),
            Err(_) => Wait::Forever,
        }
    }

    /// The poll timeout for what is left, rounded up; None once it has passed.
    fn left(&self) -> Option<i32> {
        match self {
            Wait::Forever => Some(-1),
            Wait::Until(deadline) => {
                let left = deadline.checked_duration_since(Instant::now())?;
                if left.is_zero() {
                    return None;
                }
                let ms = left.as_nanos().div_ceil(1_000_000);
                Some(i32::try_from(ms).unwrap_or(i32::MAX))
            }
        }
    }
}

/// One poll() of one descriptor; Ok(true) if any event (or error/hang-up) is reported, Ok(false)
/// on timeout or EINTR.
fn poll_once(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `p` is one live pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(r > 0)
}

/// poll() until `fd` reports an event or `timeout_ms` passes (EINTR retried with what is left).
fn poll_for(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> io::Result<bool> {
    let wait = Wait::new(timeout_ms);
    let mut t = timeout_ms.max(-1);
    loop {
        if poll_once(fd, events, t)? {
            return Ok(true);
        }
        match wait.left() {
            Some(left) => t = left,
            None => return Ok(false),
        }
    }
}

/// Sets FD_CLOEXEC (and with `nonblock`, O_NONBLOCK) on a descriptor.
fn set_flags(fd: BorrowedFd<'_>, nonblock: bool) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: plain fcntl calls on a live descriptor; no pointers.
    unsafe {
        let fdflags = libc::fcntl(fd, libc::F_GETFD);
        if fdflags < 0 || libc::fcntl(fd, libc::F_SETFD, fdflags | libc::FD_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        if nonblock {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// An eventfd (`EFD_CLOEXEC | EFD_NONBLOCK`) used as a wake-up counter, closed when dropped.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with counter 0 (not readable).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain system call; no pointers.
        let fd = owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(EventFd { fd })
    }

    /// Adopts a received descriptor: InvalidData unless /proc/self/fd/N reads
    /// `anon_inode:[eventfd]`; then sets O_NONBLOCK (and FD_CLOEXEC) on it.
    pub fn from_fd(fd: OwnedFd) -> io::Result<EventFd> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        if link.as_os_str() != OsStr::new("anon_inode:[eventfd]") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("descriptor is not an eventfd ({})", link.display()),
            ));
        }
        set_flags(fd.as_fd(), true)?;
        Ok(EventFd { fd })
    }

    /// The descriptor, to poll or to send to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Adds 1 to the counter, making the descriptor readable. Never blocks; EAGAIN (counter
    /// saturated) and other errors are ignored: the descriptor is readable either way.
    pub fn signal(&self) {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64 to our eventfd.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// Reads and discards the counter without blocking; returns whether it was non-zero.
    pub fn drain(&self) -> bool {
        let mut value: u64 = 0;
        loop {
            // SAFETY: reads at most 8 bytes into a live u64 from our eventfd.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
            if r == 8 {
                return value != 0;
            }
            if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return false;
            }
        }
    }

    /// Waits up to `timeout_ms` (-1 forever, 0 not at all) for the descriptor to be readable;
    /// returns whether it is (does not drain). EINTR is retried with the remaining time.
    pub fn wait(&self, timeout_ms: i32) -> bool {
        poll_for(self.fd.as_raw_fd(), libc::POLLIN, timeout_ms).unwrap_or(false)
    }
}

/// An epoll instance (`EPOLL_CLOEXEC`), level-triggered; tokens are chosen by the caller.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// One readiness report from `Epoll::wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token the descriptor was added with.
    pub token: u64,
    /// EPOLLIN: there is something to read.
    pub readable: bool,
    /// EPOLLHUP, EPOLLRDHUP or EPOLLERR: the other end has gone (or the descriptor failed).
    pub hangup: bool,
}

impl Epoll {
    /// A new, empty epoll instance.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain system call; no pointers.
        let fd = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll { fd })
    }

    /// Watches `fd` for `EPOLLIN | EPOLLRDHUP` (level-triggered), reported with `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a live epoll_event; both descriptors are live.
        check(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // Kernels before 2.6.9 required a non-null event even for EPOLL_CTL_DEL.
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ev` is a live epoll_event; both descriptors are live.
        check(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                &mut ev,
            )
        })
    }

    /// Waits up to `timeout_ms` (-1 forever, 0 not at all) and fills `out` (cleared first)
    /// with at most 64 events. EINTR returns Ok with no events.
    pub fn wait(&self, out: &mut Vec<Event>, timeout_ms: i32) -> io::Result<()> {
        out.clear();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        // SAFETY: `events` has room for MAX_EVENTS entries, the count we pass.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                MAX_EVENTS as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        let hangup = (libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLERR) as u32;
        for ev in &events[..n as usize] {
            let (bits, token) = (ev.events, ev.u64);
            out.push(Event {
                token,
                readable: bits & libc::EPOLLIN as u32 != 0,
                hangup: bits & hangup != 0,
            });
        }
        Ok(())
    }
}

/// A pidfd (`pidfd_open`, Linux 5.3), readable once the process has exited; closed when dropped.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd for process `pid` (close-on-exec, as pidfd_open always makes it).
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: plain system call with integer arguments.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let raw = libc::c_int::try_from(r).map_err(|_| io::Error::other("pidfd_open result"))?;
        Ok(PidFd { fd: owned(raw)? })
    }

    /// The descriptor, to poll (readable once the process has exited).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the process has exited (poll with timeout 0).
    pub fn exited(&self) -> bool {
        poll_once(self.fd.as_raw_fd(), libc::POLLIN, 0).unwrap_or(false)
    }
}

/// The credentials of the process at the other end of a Unix socket (SO_PEERCRED), taken
/// when the connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Process id.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// This process's credentials as a peer would see them: getpid, geteuid, getegid.
pub fn my_credentials() -> Credentials {
    // SAFETY: these calls take no arguments and cannot fail.
    unsafe {
        Credentials {
            pid: libc::getpid(),
            uid: libc::geteuid(),
            gid: libc::getegid(),
        }
    }
}

/// A socket address for a filesystem path: InvalidInput if empty, containing NUL, or 108 bytes
/// or longer (sun_path with its terminating NUL).
fn unix_addr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_un is a valid value of this plain C struct.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {}: {why}", path.display()),
        )
    };
    if bytes.is_empty() {
        return Err(invalid("is empty"));
    }
    if bytes.contains(&0) {
        return Err(invalid("contains a NUL byte"));
    }
    if bytes.len() >= addr.sun_path.len() {
        return Err(invalid(&format!(
            "is {} bytes, the limit is {}",
            bytes.len(),
            addr.sun_path.len() - 1
        )));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// A new AF_UNIX SOCK_SEQPACKET socket with extra `flags` (SOCK_CLOEXEC always).
fn seqpacket_socket(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; no pointers.
    owned(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | flags,
            0,
        )
    })
}

/// A listening SOCK_SEQPACKET Unix socket bound to a path (`SOCK_CLOEXEC | SOCK_NONBLOCK`).
/// Dropping it closes the socket but leaves the socket file: the caller removes it.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Binds `path`, makes the socket file mode 0600, then listens (backlog 64). Removes
    /// nothing: fails with AddrInUse if `path` exists. InvalidInput if the path does not fit in
    /// sun_path (108 bytes with its NUL). If a step after bind fails, the new socket file is
    /// removed again.
    pub fn bind(path: &Path) -> io::Result<Listener> {
        let (addr, len) = unix_addr(path)?;
        let fd = seqpacket_socket(libc::SOCK_NONBLOCK)?;
        // SAFETY: `addr` is a live sockaddr_un and `len` its used length.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        })?;
        // The mode is set before listen, so nobody can connect while it is wider.
        let mut ready = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        if ready.is_ok() {
            // SAFETY: plain system call on our socket.
            ready = check(unsafe { libc::listen(fd.as_raw_fd(), 64) });
        }
        if let Err(e) = ready {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(Listener { fd })
    }

    /// The listening descriptor, to poll for readability (a connection is waiting).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// accept4(SOCK_CLOEXEC): the next waiting connection, or Ok(None) if there is none
    /// (EAGAIN). The accepted socket is blocking; `SeqPacket`'s calls take timeouts.
    pub fn accept(&self) -> io::Result<Option<SeqPacket>> {
        loop {
            // SAFETY: null address pointers are allowed (the peer address is not wanted).
            let r = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            match owned(r) {
                Ok(fd) => return Ok(Some(SeqPacket { fd })),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                    Some(libc::EAGAIN) => return Ok(None),
                    _ => return Err(e),
                },
            }
        }
    }
}

/// A buffer aligned for cmsghdr, with room for the ancillary data of `SCM_MAX_FD` descriptors.
#[repr(C)]
struct CmsgBuf {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; CMSG_BUF_LEN],
}

/// CMSG_SPACE for SCM_MAX_FD descriptors.
// SAFETY: CMSG_SPACE is arithmetic on its argument.
const CMSG_BUF_LEN: usize =
    unsafe { libc::CMSG_SPACE((SCM_MAX_FD * std::mem::size_of::<libc::c_int>()) as u32) } as usize;

impl CmsgBuf {
    fn new() -> CmsgBuf {
        CmsgBuf {
            _align: [],
            bytes: [0; CMSG_BUF_LEN],
        }
    }
}

/// A connected SOCK_SEQPACKET Unix socket: whole messages, each with up to 4 descriptors.
/// Blocking, but every send and receive takes a timeout. Closed when dropped.
#[derive(Debug)]
pub struct SeqPacket {
    fd: OwnedFd,
}

impl SeqPacket {
    /// Connects to the listener at `path` (blocking socket, SOCK_CLOEXEC). A missing path is
    /// NotFound and a socket file nobody listens on is ConnectionRefused, so the caller can
    /// retry; a path that does not fit in sun_path is InvalidInput.
    pub fn connect(path: &Path) -> io::Result<SeqPacket> {
        let (addr, len) = unix_addr(path)?;
        let fd = seqpacket_socket(0)?;
        loop {
            // SAFETY: `addr` is a live sockaddr_un and `len` its used length.
            let r = unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_un).cast(),
                    len,
                )
            };
            if r == 0 {
                return Ok(SeqPacket { fd });
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // A retry after EINTR may find the connection already made.
                Some(libc::EISCONN) => return Ok(SeqPacket { fd }),
                _ => return Err(e),
            }
        }
    }

    /// A connected pair (socketpair, SOCK_SEQPACKET | SOCK_CLOEXEC), for tests of the callers.
    pub fn pair() -> io::Result<(SeqPacket, SeqPacket)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        check(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })?;
        Ok((
            SeqPacket { fd: owned(fds[0])? },
            SeqPacket { fd: owned(fds[1])? },
        ))
    }

    /// The socket's descriptor, to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The credentials of the process at the other end (SO_PEERCRED), as of connect/socketpair.
    pub fn peer_credentials(&self) -> io::Result<Credentials> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are live and `len` is cred's size.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        })?;
        Ok(Credentials {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
        })
    }

    /// Sends one message `data` (not empty: a zero-length message would read as EOF) with
    /// `fds` (0 to 4) as SCM_RIGHTS, with MSG_NOSIGNAL (a closed peer is an error, EPIPE,
    /// never SIGPIPE). Waits at most `timeout_ms` for room (-1 forever, 0 not at all); TimedOut
    /// if it passes. InvalidInput for empty `data` or more than 4 descriptors.
    pub fn send(&self, data: &[u8], fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<()> {
        if data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a SEQPACKET message must not be empty (it would read as end of stream)",
            ));
        }
        if fds.len() > MAX_SEND_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} descriptors in one message, at most {MAX_SEND_FDS}",
                    fds.len()
                ),
            ));
        }
        let mut cmsg = CmsgBuf::new();
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let payload = (fds.len() * std::mem::size_of::<libc::c_int>()) as u32;
            msg.msg_control = cmsg.bytes.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is arithmetic; 4 descriptors fit well inside CMSG_BUF_LEN.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as _;
            // SAFETY: msg_control points at our aligned buffer of at least msg_controllen bytes,
            // so CMSG_FIRSTHDR is non-null and the header and CMSG_LEN(payload) bytes after it
            // are inside the buffer; descriptors are written unaligned.
            unsafe {
                let hdr = libc::CMSG_FIRSTHDR(&msg);
                (*hdr).cmsg_level = libc::SOL_SOCKET;
                (*hdr).cmsg_type = libc::SCM_RIGHTS;
                (*hdr).cmsg_len = libc::CMSG_LEN(payload) as _;
                let data = libc::CMSG_DATA(hdr).cast::<libc::c_int>();
                for (i, fd) in fds.iter().enumerate() {
                    data.add(i).write_unaligned(fd.as_raw_fd());
                }
            }
        }
        let wait = Wait::new(timeout_ms);
        loop {
            // SAFETY: `msg` points at `iov` (over `data`) and `cmsg`, all live for the call.
            let n = unsafe {
                libc::sendmsg(
                    self.fd.as_raw_fd(),
                    &msg,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return if n as usize == data.len() {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("sent {n} of {} bytes", data.len()),
                    ))
                };
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
            let Some(t) = wait.left() else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no room to send within {timeout_ms} ms"),
                ));
            };
            poll_once(self.fd.as_raw_fd(), libc::POLLOUT, t)?;
        }
    }

    /// Receives one message into `buf` (MSG_CMSG_CLOEXEC), waiting at most `timeout_ms` (-1
    /// forever, 0 not at all). Ok(None) if nothing arrived in time; Ok(Some((n, fds))) with
    /// its length and every descriptor that came with it (any number, all owned so none
    /// leaks). A message longer than `buf` or with truncated ancillary data (MSG_TRUNC,
    /// MSG_CTRUNC) is InvalidData, after its descriptors are closed. UnexpectedEof once the
    /// other end has closed (or reset) the connection, or after `shutdown`.
    pub fn recv(
        &self,
        buf: &mut [u8],
        timeout_ms: i32,
    ) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
        let wait = Wait::new(timeout_ms);
        let mut cmsg = CmsgBuf::new();
        loop {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.bytes.as_mut_ptr().cast();
            msg.msg_controllen = CMSG_BUF_LEN as _;
            // SAFETY: `msg` points at `iov` (over `buf`) and `cmsg`, live and writable.
            let n = unsafe {
                libc::recvmsg(
                    self.fd.as_raw_fd(),
                    &mut msg,
                    libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {}
                    Some(libc::ECONNRESET) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer reset the connection",
                        ))
                    }
                    _ => return Err(e),
                }
                let Some(t) = wait.left() else {
                    return Ok(None);
                };
                poll_once(self.fd.as_raw_fd(), libc::POLLIN, t)?;
                continue;
            }
            let fds = received_fds(&msg);
            if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
                drop(fds);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    if msg.msg_flags & libc::MSG_TRUNC != 0 {
                        format!("message longer than the {}-byte buffer", buf.len())
                    } else {
                        "message's ancillary data truncated".to_string()
                    },
                ));
            }
            if n == 0 {
                drop(fds);
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ));
            }
            return Ok(Some((n as usize, fds)));
        }
    }

    /// shutdown(SHUT_RDWR): a peer blocked in recv sees EOF at once, and so do we.
    pub fn shutdown(&self) {
        // SAFETY: plain system call on our socket; an error (not connected) is harmless.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// Takes ownership of every descriptor in the SCM_RIGHTS messages of a received `msg`.
fn received_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg: msg_control/msg_controllen describe the ancillary
    // data the kernel wrote, which CMSG_FIRSTHDR/CMSG_NXTHDR walk within bounds. Each
    // SCM_RIGHTS payload holds descriptors the kernel just installed for us, owned by nobody.
    unsafe {
        let mut hdr = libc::CMSG_FIRSTHDR(msg);
        while !hdr.is_null() {
            if (*hdr).cmsg_level == libc::SOL_SOCKET && (*hdr).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*hdr).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(hdr).cast::<libc::c_int>();
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            hdr = libc::CMSG_NXTHDR(msg, hdr);
        }
    }
    fds
}

/// An exclusive advisory lock (flock `LOCK_EX | LOCK_NB`) on a file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// The locked file's metadata (its inode tells whether the path still names it).
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Opens `path` (created if missing, mode 0600, O_CLOEXEC) and locks it; Ok(None) if
    /// another open file description holds the lock (even one in this process).
    pub fn try_lock(path: &Path) -> io::Result<Option<FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        loop {
            // SAFETY: plain system call on our open file.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(FileLock { file }));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

/// Why the bus-name directory cannot be used.
#[derive(Debug)]
pub enum DirError {
    /// The path exists but is not a private directory of ours; the message names the path and
    /// what is wrong (a symlink, not a directory, the owner's uid, the mode in octal).
    Permission(String),
    /// Another failure (creating or inspecting it).
    Io(io::Error),
}

impl fmt::Display for DirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirError::Permission(m) => f.write_str(m),
            DirError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DirError::Permission(_) => None,
            DirError::Io(e) => Some(e),
        }
    }
}

/// The directory for bus names: `$XDG_RUNTIME_DIR/jsonbus` if XDG_RUNTIME_DIR is set and
/// absolute, else `$TMPDIR` (if set and absolute, or /tmp) + `/jsonbus-<euid>`. Created with
/// mode 0700 if missing (its parent is not created), then checked by `check_private_dir`.
pub fn name_directory() -> Result<PathBuf, DirError> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let dir = match absolute("XDG_RUNTIME_DIR") {
        Some(runtime) => runtime.join("jsonbus"),
        None => {
            let base = absolute("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
            // SAFETY: geteuid takes no arguments and cannot fail.
            base.join(format!("jsonbus-{}", unsafe { libc::geteuid() }))
        }
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(DirError::Io(io::Error::new(
                e.kind(),
                format!("creating {}: {e}", dir.display()),
            )))
        }
    }
    check_private_dir(&dir)?;
    Ok(dir)
}

/// Checks with lstat (never following a symlink) that `path` is a directory owned by
/// geteuid() with no group or other permission bits (mode & 0o077 == 0).
pub fn check_private_dir(path: &Path) -> Result<(), DirError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        DirError::Io(io::Error::new(
            e.kind(),
            format!("inspecting {}: {e}", path.display()),
        ))
    })?;
    let bad = |what: String| Err(DirError::Permission(format!("{}: {what}", path.display())));
    if meta.file_type().is_symlink() {
        return bad("is a symlink (a private directory is required)".to_string());
    }
    if !meta.is_dir() {
        return bad("is not a directory".to_string());
    }
    // SAFETY: geteuid takes no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return bad(format!(
            "is owned by uid {}, not by this user (uid {euid})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return bad(format!(
            "has mode {mode:04o}, which gives group or other users access (0700 is required)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh path in the temporary directory (not created).
    fn temp_path(tag: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        std::env::temp_dir().join(format!(
            "jsonbus-ipc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// A fresh private (0700) directory, removed with its contents when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = temp_path(tag);
            std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn readable(fd: BorrowedFd<'_>) -> bool {
        poll_once(fd.as_raw_fd(), libc::POLLIN, 0).unwrap()
    }

    fn memfd(tag: &str) -> OwnedFd {
        let name = std::ffi::CString::new(tag).unwrap();
        // SAFETY: `name` is NUL-terminated.
        owned(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) }).unwrap()
    }

    /// How many of our descriptors are the memfd called `name`.
    fn open_as(name: &str) -> usize {
        let target = format!("/memfd:{name} ");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|t| t.to_string_lossy().starts_with(&target))
            .count()
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn eventfd_signal_drain_wait() {
        let e = EventFd::new().unwrap();
        assert!(!e.drain());
        assert!(!e.wait(0));
        let start = Instant::now();
        assert!(!e.wait(50));
        assert!(start.elapsed() >= Duration::from_millis(50));
        e.signal();
        e.signal();
        assert!(e.wait(0));
        assert!(e.wait(-1));
        assert!(e.wait(1000), "wait does not drain");
        assert!(e.drain());
        assert!(!e.drain());
        assert!(!e.wait(0));
        // SAFETY: plain fcntl on a live descriptor.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(e.fd().as_raw_fd(), libc::F_GETFL),
                libc::fcntl(e.fd().as_raw_fd(), libc::F_GETFD),
            )
        };
        assert_ne!(fl & libc::O_NONBLOCK, 0);
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn eventfd_saturated_signal_does_not_block() {
        let e = EventFd::new().unwrap();
        let max = u64::MAX - 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let r = unsafe { libc::write(e.fd().as_raw_fd(), (&max as *const u64).cast(), 8) };
        assert_eq!(r, 8);
        e.signal(); // EAGAIN, ignored
        assert!(e.drain());
    }

    #[test]
    fn eventfd_wait_wakes_from_another_thread() {
        let e = std::sync::Arc::new(EventFd::new().unwrap());
        let e2 = e.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            e2.signal();
        });
        assert!(e.wait(10_000));
        t.join().unwrap();
    }

    #[test]
    fn eventfd_from_fd() {
        let mut p = [0; 2];
        // SAFETY: `p` has room for two descriptors.
        check(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }).unwrap();
        let (r, w) = (owned(p[0]).unwrap(), owned(p[1]).unwrap());
        for fd in [r, w, memfd("not-an-eventfd")] {
            let err = EventFd::from_fd(fd).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }

        // A blocking eventfd is made non-blocking.
        // SAFETY: plain system call.
        let raw = owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }).unwrap();
        let e = EventFd::from_fd(raw).unwrap();
        // SAFETY: plain fcntl on a live descriptor.
        let fl = unsafe { libc::fcntl(e.fd().as_raw_fd(), libc::F_GETFL) };
        assert_ne!(fl & libc::O_NONBLOCK, 0);
        assert!(!e.drain(), "does not block");

        // A dup shares the counter.
        let dup = EventFd::from_fd(e.fd().try_clone_to_owned().unwrap()).unwrap();
        dup.signal();
        assert!(e.wait(0));
        assert!(e.drain());
        assert!(!dup.wait(0));
    }

    #[test]
    fn epoll_reports_eventfd_with_token() {
        let ep = Epoll::new().unwrap();
        let a = EventFd::new().unwrap();
        let b = EventFd::new().unwrap();
        ep.add(a.fd(), 7).unwrap();
        ep.add(b.fd(), u64::MAX).unwrap();
        let mut out = vec![Event {
            token: 1,
            readable: true,
            hangup: true,
        }];
        ep.wait(&mut out, 0).unwrap();
        assert!(out.is_empty(), "cleared and nothing ready");
        let start = Instant::now();
        ep.wait(&mut out, 30).unwrap();
        assert!(out.is_empty());
        assert!(start.elapsed() >= Duration::from_millis(25));

        b.signal();
        ep.wait(&mut out, 1000).unwrap();
        assert_eq!(
            out,
            vec![Event {
                token: u64::MAX,
                readable: true,
                hangup: false
            }]
        );
        // Level-triggered: still reported until drained.
        ep.wait(&mut out, 0).unwrap();
        assert_eq!(out.len(), 1);
        b.drain();
        a.signal();
        ep.wait(&mut out, 1000).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].token, 7);

        ep.remove(a.fd()).unwrap();
        ep.wait(&mut out, 0).unwrap();
        assert!(out.is_empty(), "removed");
        assert!(ep.remove(a.fd()).is_err(), "not watched any more");
        assert!(ep.add(b.fd(), 1).is_err(), "already watched");
        ep.add(a.fd(), 8).unwrap();
        ep.wait(&mut out, 0).unwrap();
        assert_eq!(out[0].token, 8, "added again");
    }

    #[test]
    fn epoll_reports_at_most_64() {
        let ep = Epoll::new().unwrap();
        let fds: Vec<EventFd> = (0..70).map(|_| EventFd::new().unwrap()).collect();
        for (i, e) in fds.iter().enumerate() {
            ep.add(e.fd(), i as u64).unwrap();
            e.signal();
        }
        let mut out = Vec::new();
        ep.wait(&mut out, 1000).unwrap();
        assert_eq!(out.len(), 64);
    }

    #[test]
    fn epoll_reports_socket_hangup() {
        let ep = Epoll::new().unwrap();
        let (a, b) = SeqPacket::pair().unwrap();
        ep.add(a.fd(), 42).unwrap();
        let mut out = Vec::new();
        ep.wait(&mut out, 0).unwrap();
        assert!(out.is_empty());
        drop(b);
        ep.wait(&mut out, 1000).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].token, 42);
        assert!(out[0].hangup, "{:?}", out[0]);
    }

    #[test]
    fn pidfd_of_forked_child_and_self() {
        let me = PidFd::open(my_credentials().pid).unwrap();
        assert!(!me.exited());
        assert!(!readable(me.fd()));

        // SAFETY: the child only calls _exit, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the forked child: leave at once without running anything else.
            unsafe { libc::_exit(0) };
        }
        let child = PidFd::open(pid).unwrap();
        assert!(
            poll_for(child.fd().as_raw_fd(), libc::POLLIN, 10_000).unwrap(),
            "child exit seen"
        );
        assert!(child.exited());
        let mut status = 0;
        // SAFETY: reaps our own child; `status` is a live int.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(child.exited(), "still exited after reaping");
        // SAFETY: plain fcntl on a live descriptor.
        let fdfl = unsafe { libc::fcntl(child.fd().as_raw_fd(), libc::F_GETFD) };
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
        assert!(PidFd::open(-5).is_err());
    }

    #[test]
    fn seqpacket_passes_descriptors() {
        let (a, b) = SeqPacket::pair().unwrap();
        let ev = EventFd::new().unwrap();
        let mem = memfd("seqpacket-memfd");
        // SAFETY: writes 5 bytes from a live buffer to our memfd.
        assert_eq!(
            unsafe { libc::write(mem.as_raw_fd(), b"hello".as_ptr().cast(), 5) },
            5
        );
        a.send(b"two fds", &[ev.fd(), mem.as_fd()], 1000).unwrap();
        let mut buf = [0u8; 64];
        let (n, fds) = b.recv(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(&buf[..n], b"two fds");
        assert_eq!(fds.len(), 2);
        for fd in &fds {
            assert_ne!(fd.as_raw_fd(), ev.fd().as_raw_fd());
            // SAFETY: plain fcntl on a live descriptor.
            let fdfl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "received with MSG_CMSG_CLOEXEC");
        }
        let mut fds = fds.into_iter();
        let got_ev = EventFd::from_fd(fds.next().unwrap()).unwrap();
        assert!(!ev.wait(0));
        got_ev.signal();
        assert!(ev.wait(0), "the original sees the signal");
        let got_mem = fds.next().unwrap();
        let mut five = [0u8; 5];
        // SAFETY: reads 5 bytes into a live buffer from a live descriptor.
        let r = unsafe { libc::pread(got_mem.as_raw_fd(), five.as_mut_ptr().cast(), 5, 0) };
        assert_eq!(r, 5);
        assert_eq!(&five, b"hello");

        assert_eq!(
            a.send(b"x", &[ev.fd(); 5], 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            a.send(b"", &[], 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        a.send(b"four", &[ev.fd(); 4], 0).unwrap();
        let (n, fds) = b.recv(&mut buf, 0).unwrap().unwrap();
        assert_eq!((n, fds.len()), (4, 4));
    }

    #[test]
    fn seqpacket_keeps_message_boundaries() {
        let (a, b) = SeqPacket::pair().unwrap();
        a.send(b"first message", &[], -1).unwrap();
        a.send(b"2nd", &[], -1).unwrap();
        b.send(&[9u8; 3000], &[], -1).unwrap();
        let mut buf = [0u8; 4096];
        let (n, fds) = b.recv(&mut buf, 0).unwrap().unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"first message"[..], 0));
        let (n, _) = b.recv(&mut buf, -1).unwrap().unwrap();
        assert_eq!(&buf[..n], b"2nd");
        assert!(b.recv(&mut buf, 0).unwrap().is_none());
        let (n, _) = a.recv(&mut buf, 0).unwrap().unwrap();
        assert_eq!(n, 3000);
        assert!(buf[..n].iter().all(|&x| x == 9));
    }

    #[test]
    fn seqpacket_recv_times_out() {
        let (_a, b) = SeqPacket::pair().unwrap();
        let mut buf = [0u8; 16];
        assert!(b.recv(&mut buf, 0).unwrap().is_none());
        let start = Instant::now();
        assert!(b.recv(&mut buf, 50).unwrap().is_none());
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn seqpacket_truncated_message_is_invalid_data_and_closes_fds() {
        let (a, b) = SeqPacket::pair().unwrap();
        let name = format!("jsonbus-trunc-{}", std::process::id());
        let mem = memfd(&name);
        assert_eq!(open_as(&name), 1);
        a.send(b"longer than four", &[mem.as_fd(), mem.as_fd()], 0)
            .unwrap();
        let mut small = [0u8; 4];
        let e = b.recv(&mut small, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert_eq!(open_as(&name), 1, "received descriptors closed");
        // The message is consumed: the next one is fine.
        a.send(b"ok", &[], 0).unwrap();
        let (n, _) = b.recv(&mut small, 0).unwrap().unwrap();
        assert_eq!(&small[..n], b"ok");
    }

    #[test]
    fn seqpacket_receives_more_than_four_fds() {
        let (a, b) = SeqPacket::pair().unwrap();
        let ev = EventFd::new().unwrap();
        // Sent by hand: `send` refuses more than 4.
        let raws = [ev.fd().as_raw_fd(); 10];
        let mut cmsg = CmsgBuf::new();
        let mut iov = libc::iovec {
            iov_base: b"ten".as_ptr() as *mut libc::c_void,
            iov_len: 3,
        };
        // SAFETY: an all-zero msghdr is valid; the control buffer is aligned and has room for
        // ten descriptors; everything pointed at lives for the sendmsg call.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.bytes.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(40) as _;
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN(40) as _;
            std::ptr::copy_nonoverlapping(raws.as_ptr().cast::<u8>(), libc::CMSG_DATA(hdr), 40);
            assert_eq!(libc::sendmsg(a.fd().as_raw_fd(), &msg, 0), 3);
        }
        let mut buf = [0u8; 8];
        let (n, fds) = b.recv(&mut buf, 0).unwrap().unwrap();
        assert_eq!((n, fds.len()), (3, 10));
    }

    #[test]
    fn seqpacket_eof_after_peer_drops() {
        let (a, b) = SeqPacket::pair().unwrap();
        a.send(b"last words", &[], 0).unwrap();
        drop(a);
        let mut buf = [0u8; 32];
        let (n, _) = b.recv(&mut buf, 0).unwrap().unwrap();
        assert_eq!(&buf[..n], b"last words", "queued data first");
        for timeout in [0, 1000, -1] {
            let e = b.recv(&mut buf, timeout).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        }
    }

    #[test]
    fn seqpacket_eof_wakes_blocked_receiver() {
        let (a, b) = SeqPacket::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            b.recv(&mut buf, -1).map(|_| ()).unwrap_err().kind()
        });
        std::thread::sleep(Duration::from_millis(20));
        a.shutdown();
        assert_eq!(t.join().unwrap(), io::ErrorKind::UnexpectedEof);
        let mut buf = [0u8; 8];
        let e = a.recv(&mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "own side too");
    }

    #[test]
    fn seqpacket_eof_when_peer_closed_with_unread_data() {
        let (a, b) = SeqPacket::pair().unwrap();
        b.send(b"never read", &[], 0).unwrap();
        drop(a);
        let mut buf = [0u8; 32];
        let e = b.recv(&mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let e = b.recv(&mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn seqpacket_send_to_closed_peer_is_an_error_without_sigpipe() {
        // SIGPIPE is ignored in Rust programs, so block it in this thread: a blocked signal
        // stays pending even when ignored, and sigpending shows whether one was raised.
        // SAFETY: sigset_t values are initialised by sigemptyset before use; the masks only
        // concern this thread and are restored at the end.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);
            let pending = || {
                let mut p: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut p);
                libc::sigismember(&p, libc::SIGPIPE) == 1
            };
            let consume = || {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            };
            consume(); // in case one was pending already

            let (a, b) = SeqPacket::pair().unwrap();
            drop(b);
            let e = a.send(b"anyone?", &[], 1000).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e}");
            let raised = pending();

            // Control: the check does see SIGPIPE. (Linux raises none for SEQPACKET sockets
            // today, MSG_NOSIGNAL or not, so the control uses a stream socket without it.)
            let mut sv = [0; 2];
            assert_eq!(
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    sv.as_mut_ptr()
                ),
                0
            );
            let (s1, s2) = (owned(sv[0]).unwrap(), owned(sv[1]).unwrap());
            drop(s2);
            let r = libc::send(s1.as_raw_fd(), b"x".as_ptr().cast(), 1, 0);
            assert_eq!(r, -1);
            let control = pending();
            consume();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            assert!(!raised, "send raised SIGPIPE");
            assert!(control, "the check can see SIGPIPE");
        }
    }

    #[test]
    fn seqpacket_send_times_out_when_full() {
        let (a, _b) = SeqPacket::pair().unwrap();
        let chunk = [0u8; 1024];
        let mut sent = 0;
        loop {
            match a.send(&chunk, &[], 0) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
                    break;
                }
            }
            assert!(sent < 1_000_000, "never full");
        }
        assert!(sent > 0);
        let start = Instant::now();
        let e = a.send(&chunk, &[], 50).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn seqpacket_send_waits_for_room() {
        let (a, b) = SeqPacket::pair().unwrap();
        let chunk = [1u8; 1024];
        while a.send(&chunk, &[], 0).is_ok() {}
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let mut buf = [0u8; 2048];
            let mut got = 0;
            while let Some((n, _)) = b.recv(&mut buf, 200).unwrap() {
                assert_eq!(n, 1024);
                got += 1;
            }
            got
        });
        a.send(&chunk, &[], 10_000).unwrap();
        assert!(t.join().unwrap() > 1);
    }

    #[test]
    fn peer_credentials_of_pair() {
        let (a, b) = SeqPacket::pair().unwrap();
        let me = my_credentials();
        assert_eq!(a.peer_credentials().unwrap(), me);
        assert_eq!(b.peer_credentials().unwrap(), me);
        assert_eq!(me.pid as u32, std::process::id());
    }

    #[test]
    fn listener_bind_connect_accept() {
        let dir = TempDir::new("listen");
        let path = dir.0.join("bus.sock");
        assert_eq!(
            SeqPacket::connect(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let l = Listener::bind(&path).unwrap();
        let mode = std::fs::symlink_metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        assert_eq!(
            Listener::bind(&path).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        assert!(l.accept().unwrap().is_none(), "nobody waiting");

        let c = SeqPacket::connect(&path).unwrap();
        assert!(poll_for(l.fd().as_raw_fd(), libc::POLLIN, 1000).unwrap());
        let s = l.accept().unwrap().expect("a connection");
        // SAFETY: plain fcntl on live descriptors.
        let (fl, fdfl, lfl) = unsafe {
            (
                libc::fcntl(s.fd().as_raw_fd(), libc::F_GETFL),
                libc::fcntl(s.fd().as_raw_fd(), libc::F_GETFD),
                libc::fcntl(l.fd().as_raw_fd(), libc::F_GETFL),
            )
        };
        assert_eq!(fl & libc::O_NONBLOCK, 0, "accepted socket is blocking");
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
        assert_ne!(lfl & libc::O_NONBLOCK, 0, "listener is non-blocking");
        assert_eq!(s.peer_credentials().unwrap(), my_credentials());
        assert_eq!(c.peer_credentials().unwrap(), my_credentials());

        c.send(b"hello", &[], 1000).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = s.recv(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(&buf[..n], b"hello");
        s.send(b"welcome", &[], 1000).unwrap();
        let (n, _) = c.recv(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(&buf[..n], b"welcome");
        drop(s);
        assert_eq!(
            c.recv(&mut buf, 1000).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );

        drop(l);
        assert!(path.exists(), "the socket file is left to the caller");
        assert_eq!(
            SeqPacket::connect(&path).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn socket_path_too_long_is_invalid_input() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(103)));
        assert_eq!(long.as_os_str().len(), 108);
        assert_eq!(
            Listener::bind(&long).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            SeqPacket::connect(&long).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            Listener::bind(Path::new("")).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        // 107 bytes fit.
        let dir = TempDir::new("long");
        let name_len = 107 - dir.0.as_os_str().len() - 1;
        let path = dir.0.join("y".repeat(name_len));
        assert_eq!(path.as_os_str().len(), 107);
        let _l = Listener::bind(&path).unwrap();
        SeqPacket::connect(&path).unwrap();
    }

    #[test]
    fn file_lock_excludes_second_open() {
        let dir = TempDir::new("lock");
        let path = dir.0.join("bus.lock");
        let first = FileLock::try_lock(&path).unwrap().expect("first lock");
        let mode = std::fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        assert!(FileLock::try_lock(&path).unwrap().is_none(), "held");
        assert!(FileLock::try_lock(&path).unwrap().is_none(), "still held");
        drop(first);
        let again = FileLock::try_lock(&path).unwrap();
        assert!(again.is_some(), "free after drop");
        assert!(FileLock::try_lock(&dir.0.join("missing/x")).is_err());
    }

    fn permission(r: Result<(), DirError>) -> String {
        match r {
            Err(DirError::Permission(m)) => m,
            other => panic!("expected Permission, got {other:?}"),
        }
    }

    #[test]
    fn check_private_dir_cases() {
        let dir = TempDir::new("private");
        check_private_dir(&dir.0).unwrap();

        let open = dir.0.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let m = permission(check_private_dir(&open));
        assert!(
            m.contains("0755") && m.contains(&*open.to_string_lossy()),
            "{m}"
        );

        let group = dir.0.join("group");
        std::fs::create_dir(&group).unwrap();
        std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o710)).unwrap();
        assert!(permission(check_private_dir(&group)).contains("0710"));

        let private = dir.0.join("private");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .unwrap();
        check_private_dir(&private).unwrap();
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert!(permission(check_private_dir(&link)).contains("symlink"));

        let file = dir.0.join("file");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(permission(check_private_dir(&file)).contains("not a directory"));

        match check_private_dir(&dir.0.join("missing")) {
            Err(DirError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("expected Io, got {other:?}"),
        }

        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // As root the owner check can be seen: give one away.
            let theirs = dir.0.join("theirs");
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&theirs)
                .unwrap();
            std::os::unix::fs::chown(&theirs, Some(12345), None).unwrap();
            assert!(permission(check_private_dir(&theirs)).contains("uid 12345"));
        }
    }

    /// The only test that changes the environment (process-global): XDG_RUNTIME_DIR.
    #[test]
    fn name_directory_uses_xdg_runtime_dir() {
        let saved = std::env::var_os("XDG_RUNTIME_DIR");
        let runtime = TempDir::new("xdg");
        std::env::set_var("XDG_RUNTIME_DIR", &runtime.0);
        let got = name_directory();
        let expected = runtime.0.join("jsonbus");
        // A second call finds it there and accepts it.
        let again = name_directory();

        // A wider mode is refused.
        std::fs::set_permissions(&expected, std::fs::Permissions::from_mode(0o750)).unwrap();
        let refused = name_directory();

        // The parent is not created.
        let gone = runtime.0.join("gone");
        std::env::set_var("XDG_RUNTIME_DIR", &gone);
        let missing_parent = name_directory();

        // A relative XDG_RUNTIME_DIR is ignored: $TMPDIR (or /tmp) + jsonbus-<euid>.
        std::env::set_var("XDG_RUNTIME_DIR", "relative/dir");
        let base = std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        // SAFETY: geteuid cannot fail.
        let fallback = base.join(format!("jsonbus-{}", unsafe { libc::geteuid() }));
        let existed = fallback.exists();
        let fallback_got = name_directory();

        match saved {
            Some(v) => std::env::set_var("XDG_RUNTIME_DIR", v),
            None => std::env::remove_var("XDG_RUNTIME_DIR"),
        }
        if !existed {
            let _ = std::fs::remove_dir(&fallback);
        }

        assert_eq!(got.unwrap(), expected);
        let meta = std::fs::symlink_metadata(&expected).unwrap();
        assert!(meta.is_dir());
        assert_eq!(again.unwrap(), expected);
        match refused {
            Err(DirError::Permission(m)) => assert!(m.contains("0750"), "{m}"),
            other => panic!("expected Permission, got {other:?}"),
        }
        match missing_parent {
            Err(DirError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(!gone.exists());
        assert_eq!(fallback_got.unwrap(), fallback);
    }

    #[test]
    fn no_descriptor_leaks() {
        let dir = TempDir::new("leaks");
        let sock = dir.0.join("s");
        let lock = dir.0.join("l");
        let before = open_fds();
        for _ in 0..100 {
            let e = EventFd::new().unwrap();
            e.signal();
            let e2 = EventFd::from_fd(e.fd().try_clone_to_owned().unwrap()).unwrap();
            assert!(e2.drain());
            let ep = Epoll::new().unwrap();
            ep.add(e.fd(), 1).unwrap();
            let p = PidFd::open(my_credentials().pid).unwrap();
            ep.add(p.fd(), 2).unwrap();

            let (a, b) = SeqPacket::pair().unwrap();
            a.send(b"fds", &[e.fd(), p.fd()], 0).unwrap();
            let mut buf = [0u8; 8];
            let (_, fds) = b.recv(&mut buf, 0).unwrap().unwrap();
            assert_eq!(fds.len(), 2);
            a.send(b"truncated", &[e.fd()], 0).unwrap();
            assert!(b.recv(&mut buf[..2], 0).is_err());
            drop(a);
            assert!(b.recv(&mut buf, 0).is_err());

            let l = Listener::bind(&sock).unwrap();
            let c = SeqPacket::connect(&sock).unwrap();
            let s = l.accept().unwrap().unwrap();
            assert!(Listener::bind(&sock).is_err());
            drop((l, c, s));
            std::fs::remove_file(&sock).unwrap();

            let f = FileLock::try_lock(&lock).unwrap().unwrap();
            assert!(FileLock::try_lock(&lock).unwrap().is_none());
            drop(f);
        }
        let after = open_fds();
        assert!(
            after < before + 5,
            "{before} descriptors before, {after} after"
        );
    }
}
