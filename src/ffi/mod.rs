//! The C API: the only place with `extern "C"` and `unsafe`. It converts and checks arguments,
//! catches panics, records the thread's last error, and calls the safe core.

mod api;
mod error;
mod types;

pub use api::*;
pub use types::*;
