//! `cas_reader`: a streaming, seekable read of a stored file.

use std::ffi::c_char;
use std::io::SeekFrom;

use cas_core::FileReader;

use crate::boundary::ffi_boundary_void;
use crate::boundary::{arg_bytes_mut, arg_key, arg_mut, arg_ref, ffi_boundary, free_handle, into_handle, run, Out};
use crate::error::FfiError;
use crate::node::cas_node;
use crate::status::cas_status;

/// Where cas_reader_seek counts from: CAS_SEEK_SET, CAS_SEEK_CUR or
/// CAS_SEEK_END.
pub type cas_whence = u32;
/// From the start of the file.
pub const CAS_SEEK_SET: cas_whence = 0;
/// From the current position.
pub const CAS_SEEK_CUR: cas_whence = 1;
/// From the end of the file.
pub const CAS_SEEK_END: cas_whence = 2;

/// An open file being read (opaque). Created by cas_reader_open, freed by
/// cas_reader_free. It fetches only the chunks it reads, and when read in
/// order also the next few ahead, holding at most the node's window of
/// chunks (max_inflight_bytes) in memory. Not thread-safe: use it from one
/// thread at a time (any thread); open one reader per thread to read in
/// parallel.
pub struct cas_reader {
    reader: FileReader,
}

/// Opens the file of `key` for reading (fetching only its manifest now).
///
/// `key` must not be NULL. On success `*reader_out` receives a handle the
/// caller owns and frees with cas_reader_free. Fails with
/// CAS_ERR_INVALID_KEY or CAS_ERR_NOT_FOUND. Thread-safe for the node.
#[no_mangle]
pub unsafe extern "C" fn cas_reader_open(
    node: *const cas_node,
    key: *const c_char,
    reader_out: *mut *mut cas_reader,
) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        let key = unsafe { arg_key(key, "key") }?;
        let out = unsafe { Out::new(reader_out, "reader_out") }?;
        let reader = run(node.node.open(&key))??;
        out.write(into_handle(cas_reader { reader }));
        Ok(())
    })
}

/// The file's size in bytes, into `*size_out` (must not be NULL).
#[no_mangle]
pub unsafe extern "C" fn cas_reader_size(reader: *const cas_reader, size_out: *mut u64) -> cas_status {
    ffi_boundary(|| {
        let reader = unsafe { arg_ref(reader, "reader") }?;
        let out = unsafe { Out::new(size_out, "size_out") }?;
        out.write(reader.reader.size());
        Ok(())
    })
}

/// Reads up to `len` bytes at the current position into `buf` and advances
/// the position. Fewer than `len` bytes are read only at the end of the
/// file; 0 means the end.
///
/// `buf` (owned by the caller) may be NULL only if `len` is 0. On success
/// `*read_out` (must not be NULL) receives the number of bytes read; on
/// failure the contents of `buf` are unspecified.
#[no_mangle]
pub unsafe extern "C" fn cas_reader_read(
    reader: *mut cas_reader,
    buf: *mut u8,
    len: usize,
    read_out: *mut usize,
) -> cas_status {
    ffi_boundary(|| {
        let reader = unsafe { arg_mut(reader, "reader") }?;
        let buf = unsafe { arg_bytes_mut(buf, len, "buf") }?;
        let out = unsafe { Out::new(read_out, "read_out") }?;
        let filled = run(async {
            let mut filled = 0;
            while filled < buf.len() {
                match reader.reader.read(&mut buf[filled..]).await? {
                    0 => break,
                    n => filled += n,
                }
            }
            Ok::<_, cas_core::Error>(filled)
        })??;
        out.write(filled);
        Ok(())
    })
}

/// Moves the position to `offset` from `whence` (CAS_SEEK_SET, CAS_SEEK_CUR
/// or CAS_SEEK_END). Past the end is allowed (reads there return 0); before
/// the start is CAS_ERR_INVALID_ARGUMENT.
///
/// `pos_out` may be NULL; otherwise it receives the new position.
#[no_mangle]
pub unsafe extern "C" fn cas_reader_seek(
    reader: *mut cas_reader,
    offset: i64,
    whence: cas_whence,
    pos_out: *mut u64,
) -> cas_status {
    ffi_boundary(|| {
        let reader = unsafe { arg_mut(reader, "reader") }?;
        let from = match whence {
            CAS_SEEK_SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| {
                FfiError::new(cas_status::CAS_ERR_INVALID_ARGUMENT, format!("seek to negative position {offset}"))
            })?),
            CAS_SEEK_CUR => SeekFrom::Current(offset),
            CAS_SEEK_END => SeekFrom::End(offset),
            other => {
                return Err(FfiError::new(
                    cas_status::CAS_ERR_INVALID_ARGUMENT,
                    format!("whence {other} is not CAS_SEEK_SET, CAS_SEEK_CUR or CAS_SEEK_END"),
                ))
            }
        };
        let pos = reader.reader.seek(from)?;
        if !pos_out.is_null() {
            // SAFETY: non-NULL, and the caller provides a writable u64.
            unsafe { pos_out.write(pos) };
        }
        Ok(())
    })
}

/// Closes a reader. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cas_reader_free(reader: *mut cas_reader) {
    ffi_boundary_void(|| unsafe { free_handle(reader) })
}
