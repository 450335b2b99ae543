//! Strings and buffers the library hands to C, and their free functions.

use std::ffi::{c_char, CString};

use crate::boundary::ffi_boundary_void;
use crate::error::FfiError;
use crate::status::cas_status;

/// A Rust string as a C string owned by the caller (freed by cas_string_free).
pub(crate) fn owned_c_string(s: String) -> Result<*mut c_char, FfiError> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| FfiError::new(cas_status::CAS_ERR_PANIC, "internal error: a returned string contains NUL"))
}

/// Frees a string returned by the library (keys, ids, addresses).
/// NULL is a no-op. Passing anything else, or freeing twice, is undefined
/// behaviour. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_string_free(s: *mut c_char) {
    ffi_boundary_void(|| {
        if !s.is_null() {
            // SAFETY: per the contract, `s` came from CString::into_raw.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// A byte vector as a buffer owned by the caller (freed by cas_buffer_free).
pub(crate) fn owned_buffer(bytes: Vec<u8>) -> (*mut u8, usize) {
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Frees a buffer returned by the library, given the length returned with
/// it. NULL is a no-op. Passing any other pointer or length, or freeing
/// twice, is undefined behaviour. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_buffer_free(data: *mut u8, len: usize) {
    ffi_boundary_void(|| {
        if !data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(data, len);
            // SAFETY: per the contract, this is the boxed slice of `owned_buffer`.
            drop(unsafe { Box::from_raw(slice) });
        }
    })
}
