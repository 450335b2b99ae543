//! The edge between C and Rust: every export runs inside [`ffi_boundary`],
//! which catches panics and turns errors into a status plus a last-error
//! message; the `arg_*` helpers turn NULL or malformed arguments into typed
//! errors instead of crashes; [`run`] blocks on the shared runtime.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use cas_core::{Cancel, Key, Progress};

use crate::error::FfiError;
use crate::status::cas_status;

/// Runs the body of an export: its error, or a panic, becomes the status
/// returned to C and this thread's last error message.
pub(crate) fn ffi_boundary(body: impl FnOnce() -> Result<(), FfiError>) -> cas_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => cas_status::CAS_OK,
        Ok(Err(e)) => e.record(),
        Err(payload) => FfiError::panic(payload).record(),
    }
}

/// [`ffi_boundary`] for the exports that return nothing (the `_free`s): a
/// panic is recorded as the last error and otherwise swallowed.
pub(crate) fn ffi_boundary_void(body: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        FfiError::panic(payload).record();
    }
}

/// Blocks the calling (C) thread on `future`, run by the shared runtime.
/// Refuses to run on a runtime thread, i.e. inside a progress callback,
/// where blocking would panic or deadlock.
pub(crate) fn run<F: Future>(future: F) -> Result<F::Output, FfiError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(FfiError::new(
            cas_status::CAS_ERR_IN_CALLBACK,
            "blocking cas_* functions cannot be called from a progress callback or another library thread",
        ));
    }
    Ok(cas_core::blocking::block_on(future)?)
}

/// A shared reference to a handle, or a NULL-argument error.
///
/// # Safety
/// `p` is NULL or points to a live `T` that outlives `'a`.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, FfiError> {
    // SAFETY: see the function's contract.
    unsafe { p.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// An exclusive reference to a handle, or a NULL-argument error.
///
/// # Safety
/// `p` is NULL or points to a live `T` not used elsewhere during `'a`.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, FfiError> {
    // SAFETY: see the function's contract.
    unsafe { p.as_mut() }.ok_or_else(|| FfiError::null(name))
}

/// The bytes of a NUL-terminated C string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives `'a`.
unsafe fn arg_cstr<'a>(p: *const c_char, name: &str) -> Result<&'a CStr, FfiError> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    Ok(unsafe { CStr::from_ptr(p) })
}

/// A UTF-8 C string argument.
///
/// # Safety
/// As [`arg_cstr`].
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    // SAFETY: forwarded contract.
    unsafe { arg_cstr(p, name) }?.to_str().map_err(|e| {
        FfiError::new(cas_status::CAS_ERR_INVALID_UTF8, format!("argument `{name}` is not valid UTF-8: {e}"))
    })
}

/// A path argument: any bytes but NUL, as on Unix.
///
/// # Safety
/// As [`arg_cstr`].
pub(crate) unsafe fn arg_path<'a>(p: *const c_char, name: &str) -> Result<&'a Path, FfiError> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { arg_cstr(p, name) }?.to_bytes();
    Ok(Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

/// A key string argument, parsed.
///
/// # Safety
/// As [`arg_cstr`].
pub(crate) unsafe fn arg_key(p: *const c_char, name: &str) -> Result<Key, FfiError> {
    // SAFETY: forwarded contract.
    let text = unsafe { arg_str(p, name) }?;
    Ok(Key::parse_input(text).map_err(cas_core::Error::from)?)
}

/// A byte buffer argument; `p` may be NULL only when `len` is 0.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], FfiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-NULL with `len` readable bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A writable byte buffer argument; `p` may be NULL only when `len` is 0.
///
/// # Safety
/// `p` is NULL or points to `len` writable bytes not used elsewhere during `'a`.
pub(crate) unsafe fn arg_bytes_mut<'a>(p: *mut u8, len: usize, name: &str) -> Result<&'a mut [u8], FfiError> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-NULL with `len` writable bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// An out-parameter, checked for NULL before any work is done and written
/// only once the call has succeeded.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// # Safety
    /// `p` is NULL or valid for a write of `T` until [`Out::write`].
    pub(crate) unsafe fn new(p: *mut T, name: &str) -> Result<Out<T>, FfiError> {
        NonNull::new(p).map(Out).ok_or_else(|| FfiError::null(name))
    }

    pub(crate) fn write(self, value: T) {
        // SAFETY: checked non-NULL, and valid for writes per `new`'s contract.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Moves a handle to the heap and hands it to C.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back and drops a handle made by [`into_handle`]; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or came from `into_handle::<T>` and was not freed before.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: per the contract, we own this box.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Progress callback: `done` of `total` bytes (total is 0 when unknown;
/// the last call of a put gives the size stored as both), and the `user`
/// pointer given with it. Return 0 to go on; any other value stops the
/// operation, which then fails with CAS_ERR_CANCELLED (see the call's own
/// documentation for what a stopped operation leaves behind).
///
/// Callbacks of the whole-file calls (put_file, put_buffer, get_file) run
/// on the thread that made the call, inside it; those of a cas_writer run
/// on library threads. Either way never concurrently for one operation and
/// never after that operation has returned (or its writer has been freed).
/// They must return quickly, must not unwind (C++ exceptions, longjmp), and
/// must not call blocking cas_* functions (those return CAS_ERR_IN_CALLBACK
/// there); cas_node_free and cas_writer_free are allowed. `user` is passed
/// through untouched; the caller keeps it valid and thread-safe.
pub type cas_progress_fn = Option<unsafe extern "C" fn(done: u64, total: u64, user: *mut c_void) -> c_int>;

/// The caller's `user` pointer, which C promises may be used from our threads.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: documented on `cas_progress_fn`: the caller makes `user` usable
// from library threads.
unsafe impl Send for UserData {}
// SAFETY: as above; calls for one operation are never concurrent.
unsafe impl Sync for UserData {}

/// The engine's progress callback for a C callback and its user pointer: a
/// non-zero return cancels `cancel`, the operation's cancellation handle.
pub(crate) fn progress_callback(callback: cas_progress_fn, user: *mut c_void, cancel: &Cancel) -> Option<Progress> {
    let callback = callback?;
    let user = UserData(user);
    let cancel = cancel.clone();
    Some(Arc::new(move |done, total| {
        let user = user;
        // SAFETY: the caller gave a valid function pointer and user pointer.
        if unsafe { callback(done, total, user.0) } != 0 {
            cancel.cancel();
        }
    }))
}
