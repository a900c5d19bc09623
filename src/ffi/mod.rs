//! The C API: the only place with `extern "C"` and `unsafe`. It converts and checks arguments,
//! catches panics, records the thread's last error, and calls the safe core.

// The exports take raw pointers from C, where Rust's `unsafe` marker means nothing; their
// pointer contracts are in the header, and each dereference has its SAFETY line.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod api;
mod error;
mod process;
mod requests;
mod subscriptions;
mod types;

pub use api::*;
pub use process::*;
pub use requests::*;
pub use subscriptions::*;
pub use types::*;
