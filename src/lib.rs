//! jsonbus: a JSON message bus for C and C++ programs - ordered, bounded, validated,
//! unloadable; in one process, or shared by several (`process`, Linux). The safe core is in the modules below; `ffi` is the C API.

pub mod bus;
pub mod capacity;
pub mod clock;
pub mod default_bus;
pub mod dispatch;
pub mod fanout;
pub mod ffi;
pub mod flush;
pub mod message;
pub mod options;
mod padded;
#[cfg(target_os = "linux")]
pub mod process;
mod publish;
pub mod request;
pub mod router;
pub mod stats;
pub mod status;
pub mod subscription;
pub mod sys;
pub mod timer;
pub mod topic;
pub mod validate;

pub use bus::Bus;
pub use message::Message;
pub use options::{OnFull, Options, SubscribeOptions};
pub use stats::Stats;
pub use status::{Error, Status, OK, UNSUBSCRIBE};
pub use subscription::end::EndReason;
pub use subscription::{Callback, Consumer, Delivery, SubscriptionStats};
