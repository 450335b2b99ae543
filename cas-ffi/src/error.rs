//! Errors at the boundary: a status plus a message, and the per-thread
//! "last error" that C reads with cas_last_error().

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};

use crate::status::cas_status;

/// A failed call: what to return and what to tell.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) status: cas_status,
    pub(crate) message: String,
}

impl FfiError {
    pub(crate) fn new(status: cas_status, message: impl Into<String>) -> FfiError {
        FfiError { status, message: message.into() }
    }

    /// A required pointer argument was NULL.
    pub(crate) fn null(name: &str) -> FfiError {
        FfiError::new(cas_status::CAS_ERR_NULL_ARGUMENT, format!("argument `{name}` is NULL"))
    }

    /// A panic caught at the boundary.
    pub(crate) fn panic(payload: Box<dyn Any + Send>) -> FfiError {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic payload".into());
        FfiError::new(cas_status::CAS_ERR_PANIC, format!("internal error in the CAS library (please report): {what}"))
    }

    /// Stores the message as this thread's last error and returns the status.
    pub(crate) fn record(self) -> cas_status {
        set_last_error(&self.message);
        self.status
    }
}

impl From<cas_core::Error> for FfiError {
    fn from(e: cas_core::Error) -> FfiError {
        FfiError::new(cas_status::from_kind(e.kind()), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).expect("NULs were replaced");
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// The message of the most recent failed cas_* call on the calling thread,
/// or "" if none has failed. Never NULL.
///
/// The string belongs to the library and lives in thread-local storage: it
/// stays valid until the next cas_* call on the same thread (or the thread's
/// exit); copy it to keep it (see cas_last_error_copy). Do not free it.
/// Successful calls do not clear it. Thread-safe: each thread has its own.
#[no_mangle]
pub extern "C" fn cas_last_error() -> *const c_char {
    LAST_ERROR.try_with(|last| last.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// Copies the calling thread's last error message (see cas_last_error) into
/// `buf`, snprintf-style: writes at most `size - 1` bytes plus a NUL, and
/// returns the length of the whole message (without the NUL), so a return
/// value >= `size` means the copy was truncated.
///
/// `buf` may be NULL only if `size` is 0 (to ask for the length). The
/// caller owns `buf`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_last_error_copy(buf: *mut c_char, size: usize) -> usize {
    let copy = |last: &RefCell<CString>| {
        let last = last.borrow();
        let bytes = last.as_bytes();
        if !buf.is_null() && size > 0 {
            let n = bytes.len().min(size - 1);
            // SAFETY: the caller provides `size` writable bytes at `buf`.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, n);
                *buf.add(n) = 0;
            }
        }
        bytes.len()
    };
    LAST_ERROR.try_with(copy).unwrap_or(0)
}
