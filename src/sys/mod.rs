//! Operating-system primitives the safe core uses: thread start-up, the monotonic clock, a
//! pollable readiness descriptor and (Windows) thread-locals that are given back on unload. Like `ffi`, a place
//! where `unsafe` may live; each block has its SAFETY line and each primitive its own tests.
//! SIMD byte classification for the validator (`simd`, AVX2 detected at run time).
//! On Linux also sealed shared memory (`shm`) and eventfd/epoll/pidfd/socket/flock IPC (`ipc`).

pub mod clock;
#[cfg(target_os = "linux")]
pub mod ipc;
#[cfg(windows)]
pub mod local;
pub mod notify_fd;
#[cfg(target_os = "linux")]
pub mod shm;
pub mod simd;
pub mod thread;
