//! `cas_file_list`: the catalog of files a node put (`Node::files`).

use std::ffi::{c_char, CString};
use std::time::UNIX_EPOCH;

use cas_core::FileEntry;

use crate::boundary::{arg_ref, ffi_boundary, ffi_boundary_void, free_handle, into_handle, run, Out};
use crate::error::FfiError;
use crate::node::cas_node;
use crate::status::cas_status;

/// One file this node put. The strings belong to the cas_file_list it came
/// from and are valid until that list is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cas_file_entry {
    /// The file's key ("cas1..."): whoever holds it can read the file.
    pub key: *const c_char,
    /// The file's name at put time (without its directory), or "".
    pub name: *const c_char,
    /// Size in bytes.
    pub size: u64,
    /// When it was (last) put, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// The files a node put (opaque), oldest first, from cas_node_files; freed
/// by cas_file_list_free. Read-only, so thread-safe.
pub struct cas_file_list {
    files: Vec<File>,
}

struct File {
    key: CString,
    name: CString,
    size: u64,
    time_ms: u64,
}

impl File {
    fn new(entry: FileEntry) -> File {
        // A name with a NUL byte cannot be a C string: cut at the NUL.
        let name = entry.name.split('\0').next().unwrap_or_default().to_string();
        File {
            key: CString::new(entry.key.to_string()).expect("keys are base32"),
            name: CString::new(name).expect("cut at the first NUL"),
            size: entry.size,
            time_ms: entry
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// The files this node put, oldest first, with their keys (a user who lost
/// a key finds it here; the catalog is kept in the data dir, owner-only).
///
/// On success `*files_out` receives a list the caller owns and frees with
/// cas_file_list_free. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_node_files(node: *const cas_node, files_out: *mut *mut cas_file_list) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        let out = unsafe { Out::new(files_out, "files_out") }?;
        let files = run(node.node.files())??.into_iter().map(File::new).collect();
        out.write(into_handle(cas_file_list { files }));
        Ok(())
    })
}

/// The number of files in `list`, into `*len_out` (must not be NULL).
#[no_mangle]
pub unsafe extern "C" fn cas_file_list_len(list: *const cas_file_list, len_out: *mut usize) -> cas_status {
    ffi_boundary(|| {
        let list = unsafe { arg_ref(list, "list") }?;
        unsafe { Out::new(len_out, "len_out") }?.write(list.files.len());
        Ok(())
    })
}

/// File number `index` of `list` into `*entry_out` (must not be NULL). Its
/// strings belong to `list`: valid until cas_file_list_free, never freed by
/// the caller. An index out of range is CAS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn cas_file_list_get(
    list: *const cas_file_list,
    index: usize,
    entry_out: *mut cas_file_entry,
) -> cas_status {
    ffi_boundary(|| {
        let list = unsafe { arg_ref(list, "list") }?;
        let out = unsafe { Out::new(entry_out, "entry_out") }?;
        let file = list.files.get(index).ok_or_else(|| {
            FfiError::new(
                cas_status::CAS_ERR_INVALID_ARGUMENT,
                format!("file index {index} is out of range (the list has {} files)", list.files.len()),
            )
        })?;
        out.write(cas_file_entry {
            key: file.key.as_ptr(),
            name: file.name.as_ptr(),
            size: file.size,
            time_ms: file.time_ms,
        });
        Ok(())
    })
}

/// Frees a file list and every string it handed out. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cas_file_list_free(list: *mut cas_file_list) {
    ffi_boundary_void(|| unsafe { free_handle(list) })
}
