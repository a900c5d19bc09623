//! Operating-system primitives the safe core uses: thread start-up and a pollable readiness
//! descriptor. Like `ffi`, a place where `unsafe` may live; each block has its SAFETY line and
//! each primitive its own tests.

pub mod notify_fd;
pub mod thread;
