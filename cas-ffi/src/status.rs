//! `cas_status`: the result of every call, and its fixed numbering.

use std::ffi::c_char;

use cas_core::ErrorKind;

/// The result of every cas_* call. CAS_OK (0) is success; every other value
/// is a failure whose details are in cas_last_error(). The numbers are part
/// of the ABI: they never change and retired ones are never reused.
/// 1 to 99 mirror the engine's error kinds; 100 and up are errors of the C
/// binding itself.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cas_status {
    /// Success.
    CAS_OK = 0,
    /// A key string is malformed (see the message for where). Whitespace
    /// around a key (a pasted newline) is ignored.
    CAS_ERR_INVALID_KEY = 1,
    /// No reachable node holds the key (or the key was never stored).
    CAS_ERR_NOT_FOUND = 2,
    /// Stored bytes failed verification (tampered or corrupt data, wrong key).
    CAS_ERR_INTEGRITY = 3,
    /// The input file could not be opened or read.
    CAS_ERR_INPUT = 4,
    /// The destination could not be created or written.
    CAS_ERR_DESTINATION = 5,
    /// The node's capacity limit or the disk is full.
    CAS_ERR_STORAGE_FULL = 6,
    /// Another node (in this or another process) holds the data directory.
    CAS_ERR_DATA_DIR_LOCKED = 7,
    /// A network operation failed.
    CAS_ERR_NETWORK = 8,
    /// A network operation took too long.
    CAS_ERR_TIMEOUT = 9,
    /// Fewer replicas than min_replicas were stored.
    CAS_ERR_REPLICATION = 10,
    /// A configuration value or argument is out of range.
    CAS_ERR_INVALID_ARGUMENT = 11,
    /// The node was stopped, or the handle was already finished.
    CAS_ERR_CLOSED = 12,
    /// Any other I/O error (the message says what was being done).
    CAS_ERR_IO = 13,
    /// The operation was cancelled; it left nothing behind.
    CAS_ERR_CANCELLED = 14,
    /// A pointer argument that must not be NULL was NULL.
    CAS_ERR_NULL_ARGUMENT = 100,
    /// A string argument (key, address) is not valid UTF-8.
    CAS_ERR_INVALID_UTF8 = 101,
    /// The library hit an internal bug (a Rust panic, caught at the boundary).
    CAS_ERR_PANIC = 102,
    /// A blocking cas_* function was called from a progress callback (a
    /// library thread), which would deadlock.
    CAS_ERR_IN_CALLBACK = 103,
    /// An error of a kind this version of the binding does not know.
    CAS_ERR_OTHER = 199,
}

impl cas_status {
    /// The status for an engine error kind.
    pub(crate) fn from_kind(kind: ErrorKind) -> cas_status {
        use cas_status::*;
        match kind {
            ErrorKind::InvalidKey => CAS_ERR_INVALID_KEY,
            ErrorKind::NotFound => CAS_ERR_NOT_FOUND,
            ErrorKind::Integrity => CAS_ERR_INTEGRITY,
            ErrorKind::Input => CAS_ERR_INPUT,
            ErrorKind::Destination => CAS_ERR_DESTINATION,
            ErrorKind::StorageFull => CAS_ERR_STORAGE_FULL,
            ErrorKind::DataDirLocked => CAS_ERR_DATA_DIR_LOCKED,
            ErrorKind::Network => CAS_ERR_NETWORK,
            ErrorKind::Timeout => CAS_ERR_TIMEOUT,
            ErrorKind::Replication => CAS_ERR_REPLICATION,
            ErrorKind::InvalidArgument => CAS_ERR_INVALID_ARGUMENT,
            ErrorKind::Closed => CAS_ERR_CLOSED,
            ErrorKind::Io => CAS_ERR_IO,
            ErrorKind::Cancelled => CAS_ERR_CANCELLED,
            _ => CAS_ERR_OTHER,
        }
    }

    /// Every status, for the raw-number lookup and the tests.
    pub(crate) const ALL: [cas_status; 20] = {
        use cas_status::*;
        [
            CAS_OK,
            CAS_ERR_INVALID_KEY,
            CAS_ERR_NOT_FOUND,
            CAS_ERR_INTEGRITY,
            CAS_ERR_INPUT,
            CAS_ERR_DESTINATION,
            CAS_ERR_STORAGE_FULL,
            CAS_ERR_DATA_DIR_LOCKED,
            CAS_ERR_NETWORK,
            CAS_ERR_TIMEOUT,
            CAS_ERR_REPLICATION,
            CAS_ERR_INVALID_ARGUMENT,
            CAS_ERR_CLOSED,
            CAS_ERR_IO,
            CAS_ERR_CANCELLED,
            CAS_ERR_NULL_ARGUMENT,
            CAS_ERR_INVALID_UTF8,
            CAS_ERR_PANIC,
            CAS_ERR_IN_CALLBACK,
            CAS_ERR_OTHER,
        ]
    };

    /// A short fixed description, NUL-terminated.
    fn description(self) -> &'static str {
        use cas_status::*;
        match self {
            CAS_OK => "success\0",
            CAS_ERR_INVALID_KEY => "invalid key\0",
            CAS_ERR_NOT_FOUND => "not found\0",
            CAS_ERR_INTEGRITY => "integrity failure\0",
            CAS_ERR_INPUT => "cannot read input\0",
            CAS_ERR_DESTINATION => "cannot write destination\0",
            CAS_ERR_STORAGE_FULL => "storage full\0",
            CAS_ERR_DATA_DIR_LOCKED => "data directory in use\0",
            CAS_ERR_NETWORK => "network error\0",
            CAS_ERR_TIMEOUT => "timed out\0",
            CAS_ERR_REPLICATION => "too few replicas\0",
            CAS_ERR_INVALID_ARGUMENT => "invalid argument\0",
            CAS_ERR_CLOSED => "closed\0",
            CAS_ERR_IO => "I/O error\0",
            CAS_ERR_CANCELLED => "cancelled\0",
            CAS_ERR_NULL_ARGUMENT => "NULL argument\0",
            CAS_ERR_INVALID_UTF8 => "invalid UTF-8\0",
            CAS_ERR_PANIC => "internal error (panic)\0",
            CAS_ERR_IN_CALLBACK => "called from a progress callback\0",
            CAS_ERR_OTHER => "other error\0",
        }
    }
}

/// A short, static description of `status` ("not found", ...), or
/// "unknown status" for a number that is not a cas_status.
///
/// Takes the status as a plain number so that any value is safe to pass.
/// The returned string is static: never free it. Thread-safe.
#[no_mangle]
pub extern "C" fn cas_status_str(status: u32) -> *const c_char {
    let text = cas_status::ALL.iter().find(|s| **s as u32 == status).map_or("unknown status\0", |s| s.description());
    text.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::cas_status::{self, *};

    /// The numbers are ABI: this test changes only when a status is added.
    #[test]
    fn numbers_are_fixed() {
        let numbers: Vec<u32> = cas_status::ALL.iter().map(|s| *s as u32).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 100, 101, 102, 103, 199]);
        assert_eq!(CAS_OK as u32, 0);
    }

    #[test]
    fn every_status_has_a_description() {
        for s in cas_status::ALL {
            let d = s.description();
            assert!(d.len() > 1 && d.ends_with('\0') && !d[..d.len() - 1].contains('\0'), "{s:?}");
        }
    }
}
