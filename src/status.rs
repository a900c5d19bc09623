//! Status codes and the error type shared by the core and the C layer.

use std::ffi::CStr;
use std::fmt;

/// Why a call failed. The C layer maps each kind to a negative `JSONBUS_ERR_*` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Null,
    Utf8,
    Json,
    Topic,
    TooLarge,
    Full,
    Timeout,
    Closed,
    NotFound,
    Deadlock,
    Options,
    Internal,
    Ended,
    Unsupported,
    NoResponders,
    NoBus,
    NameInUse,
    Permission,
    Disconnected,
    Peer,
    Limit,
}

/// Success.
pub const OK: i32 = 0;
/// A callback's return value that ends its own subscription.
pub const UNSUBSCRIBE: i32 = 1;

impl Status {
    /// Every kind, in code order.
    pub const ALL: [Status; 21] = [
        Status::Null,
        Status::Utf8,
        Status::Json,
        Status::Topic,
        Status::TooLarge,
        Status::Full,
        Status::Timeout,
        Status::Closed,
        Status::NotFound,
        Status::Deadlock,
        Status::Options,
        Status::Internal,
        Status::Ended,
        Status::Unsupported,
        Status::NoResponders,
        Status::NoBus,
        Status::NameInUse,
        Status::Permission,
        Status::Disconnected,
        Status::Peer,
        Status::Limit,
    ];

    /// The negative code C sees.
    pub const fn code(self) -> i32 {
        match self {
            Status::Null => -1,
            Status::Utf8 => -2,
            Status::Json => -3,
            Status::Topic => -4,
            Status::TooLarge => -5,
            Status::Full => -6,
            Status::Timeout => -7,
            Status::Closed => -8,
            Status::NotFound => -9,
            Status::Deadlock => -10,
            Status::Options => -11,
            Status::Internal => -12,
            Status::Ended => -13,
            Status::Unsupported => -14,
            Status::NoResponders => -15,
            Status::NoBus => -16,
            Status::NameInUse => -17,
            Status::Permission => -18,
            Status::Disconnected => -19,
            Status::Peer => -20,
            Status::Limit => -21,
        }
    }

    /// The kind whose code is `code`, if any.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| s.code() == code)
    }

    /// The `JSONBUS_ERR_*` name of this kind.
    pub const fn name(self) -> &'static CStr {
        match self {
            Status::Null => c"JSONBUS_ERR_NULL",
            Status::Utf8 => c"JSONBUS_ERR_UTF8",
            Status::Json => c"JSONBUS_ERR_JSON",
            Status::Topic => c"JSONBUS_ERR_TOPIC",
            Status::TooLarge => c"JSONBUS_ERR_TOO_LARGE",
            Status::Full => c"JSONBUS_ERR_FULL",
            Status::Timeout => c"JSONBUS_ERR_TIMEOUT",
            Status::Closed => c"JSONBUS_ERR_CLOSED",
            Status::NotFound => c"JSONBUS_ERR_NOT_FOUND",
            Status::Deadlock => c"JSONBUS_ERR_DEADLOCK",
            Status::Options => c"JSONBUS_ERR_OPTIONS",
            Status::Internal => c"JSONBUS_ERR_INTERNAL",
            Status::Ended => c"JSONBUS_ERR_ENDED",
            Status::Unsupported => c"JSONBUS_ERR_UNSUPPORTED",
            Status::NoResponders => c"JSONBUS_ERR_NO_RESPONDERS",
            Status::NoBus => c"JSONBUS_ERR_NO_BUS",
            Status::NameInUse => c"JSONBUS_ERR_NAME_IN_USE",
            Status::Permission => c"JSONBUS_ERR_PERMISSION",
            Status::Disconnected => c"JSONBUS_ERR_DISCONNECTED",
            Status::Peer => c"JSONBUS_ERR_PEER",
            Status::Limit => c"JSONBUS_ERR_LIMIT",
        }
    }
}

/// The name of any status code, including `JSONBUS_OK` and `JSONBUS_UNSUBSCRIBE`.
pub fn code_name(code: i32) -> &'static CStr {
    match code {
        OK => c"JSONBUS_OK",
        UNSUBSCRIBE => c"JSONBUS_UNSUBSCRIBE",
        _ => Status::ALL
            .iter()
            .find(|s| s.code() == code)
            .map_or(c"JSONBUS_UNKNOWN_STATUS", |s| s.name()),
    }
}

/// A failed call: its kind and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.status.name().to_string_lossy(),
            self.message
        )
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_negative_and_named() {
        let mut seen = std::collections::HashSet::new();
        for s in Status::ALL {
            assert!(s.code() < 0);
            assert!(seen.insert(s.code()));
            assert_eq!(code_name(s.code()), s.name());
        }
        assert_eq!(code_name(OK), c"JSONBUS_OK");
        assert_eq!(code_name(UNSUBSCRIBE), c"JSONBUS_UNSUBSCRIBE");
        assert_eq!(code_name(12345), c"JSONBUS_UNKNOWN_STATUS");
    }
}
