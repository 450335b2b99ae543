//! The library's log records, routed to the host: cas_set_log_callback.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use cas_core::logging::{self, Level, LogSink};

use crate::boundary::ffi_boundary;
use crate::error::FfiError;
use crate::status::cas_status;

/// The level of a log record, most severe first. The numbers are fixed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cas_log_level {
    /// Something failed that the library could not handle.
    CAS_LOG_ERROR = 1,
    /// Something is wrong but the library goes on (an unreachable peer, a
    /// refused connection). The default level on stderr.
    CAS_LOG_WARN = 2,
    /// The life of a node: started, listening, joined, stopped.
    CAS_LOG_INFO = 3,
    /// Details for debugging.
    CAS_LOG_DEBUG = 4,
    /// Every step.
    CAS_LOG_TRACE = 5,
}

impl cas_log_level {
    fn from_level(level: Level) -> cas_log_level {
        match level {
            Level::ERROR => cas_log_level::CAS_LOG_ERROR,
            Level::WARN => cas_log_level::CAS_LOG_WARN,
            Level::INFO => cas_log_level::CAS_LOG_INFO,
            Level::DEBUG => cas_log_level::CAS_LOG_DEBUG,
            Level::TRACE => cas_log_level::CAS_LOG_TRACE,
        }
    }

    fn to_level(number: u32) -> Option<Level> {
        Some(match number {
            1 => Level::ERROR,
            2 => Level::WARN,
            3 => Level::INFO,
            4 => Level::DEBUG,
            5 => Level::TRACE,
            _ => return None,
        })
    }
}

/// A log callback: the record's level, its target (the library module it
/// comes from, e.g. "cas_core::net") and its message (with the record's
/// fields as name=value), both NUL-terminated and valid only during the
/// call, and the `user` pointer given to cas_set_log_callback.
///
/// It may be called from any library thread, and from several at once: it
/// must be thread-safe, return quickly, not unwind (C++ exceptions,
/// longjmp), and call no cas_* function (cas_set_log_callback would
/// deadlock).
pub type cas_log_fn = Option<
    unsafe extern "C" fn(level: cas_log_level, target: *const c_char, message: *const c_char, user: *mut c_void),
>;

/// The caller's `user` pointer, which C promises may be used from any thread.
#[derive(Clone, Copy)]
struct LogUser(*mut c_void);
// SAFETY: documented on `cas_set_log_callback`: `user` is usable from any
// library thread, at once.
unsafe impl Send for LogUser {}
// SAFETY: as above.
unsafe impl Sync for LogUser {}

/// Text for C: NULs (never expected in log text) become "\0".
fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).expect("NULs were replaced")
}

/// Sends the library's log records, up to `level` (a cas_log_level: the
/// most verbose taken, e.g. CAS_LOG_INFO takes errors, warnings and info),
/// to `callback` with `user`, instead of stderr. The environment variable
/// CAS_LOG does not filter records sent to a callback.
///
/// A NULL `callback` goes back to stderr (warnings and above, or as CAS_LOG
/// says, e.g. CAS_LOG=info; colour codes only when stderr is a terminal).
/// When this returns, the previous callback is not running on any thread
/// and will not be called again, so its `user` data may be freed. A `level`
/// that is not a cas_log_level is CAS_ERR_INVALID_ARGUMENT.
///
/// Thread-safe; may be called at any time, before or after nodes start, but
/// not from inside a log callback. `user` is passed through untouched; the
/// caller keeps it valid, and usable from any thread, until the callback
/// is replaced.
#[no_mangle]
pub unsafe extern "C" fn cas_set_log_callback(level: u32, callback: cas_log_fn, user: *mut c_void) -> cas_status {
    ffi_boundary(|| {
        let Some(callback) = callback else {
            logging::set_sink(None)?;
            return Ok(());
        };
        let level = cas_log_level::to_level(level).ok_or_else(|| {
            FfiError::new(
                cas_status::CAS_ERR_INVALID_ARGUMENT,
                format!("log level {level} is not a cas_log_level (1 CAS_LOG_ERROR to 5 CAS_LOG_TRACE)"),
            )
        })?;
        let user = LogUser(user);
        let sink: LogSink = Arc::new(move |level, target, message| {
            let user = user;
            let (target, message) = (c_text(target), c_text(message));
            // SAFETY: the caller gave a valid function pointer and user
            // pointer; the strings live until the call returns.
            unsafe { callback(cas_log_level::from_level(level), target.as_ptr(), message.as_ptr(), user.0) }
        });
        logging::set_sink(Some((level, sink)))?;
        Ok(())
    })
}
