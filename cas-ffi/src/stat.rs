//! `cas_stat`: what the network knows about one stored file.

use std::ffi::{c_char, CString};

use cas_core::StatInfo;

use crate::boundary::{arg_key, arg_ref, ffi_boundary, ffi_boundary_void, free_handle, into_handle, run, Out};
use crate::error::FfiError;
use crate::node::cas_node;
use crate::status::cas_status;

/// The summary of a cas_stat.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cas_file_info {
    /// The file's size in bytes.
    pub size: u64,
    /// Its chunk size in bytes.
    pub chunk_size: u32,
    /// Its number of chunks.
    pub chunks: u64,
    /// Distinct blobs of the file: the manifest and its distinct chunks.
    pub blobs: usize,
    /// The fewest alive nodes (this one included) known to hold any one
    /// blob: the file's current replication.
    pub min_holders: usize,
}

/// One blob of a file and the nodes that hold it. The strings are owned by
/// the cas_stat they came from and valid until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cas_blob_holders {
    /// The blob's id, 64 hex characters.
    pub blob_id: *const c_char,
    /// How many alive nodes are known to hold it.
    pub holder_count: usize,
    /// `holder_count` node ids (64 hex characters each).
    pub holders: *const *const c_char,
}

/// The result of cas_node_stat (opaque); freed by cas_stat_free. Read-only,
/// so thread-safe.
pub struct cas_stat {
    info: cas_file_info,
    blobs: Vec<Blob>,
}

struct Blob {
    id: CString,
    /// Keeps the strings `holder_ptrs` points into alive.
    _holders: Vec<CString>,
    holder_ptrs: Vec<*const c_char>,
}

impl cas_stat {
    fn new(stat: StatInfo) -> cas_stat {
        let blobs: Vec<Blob> = stat
            .holders
            .into_iter()
            .map(|(id, nodes)| {
                let holders: Vec<CString> = nodes.iter().map(|n| hex_c_string(n.to_string())).collect();
                let holder_ptrs = holders.iter().map(|h| h.as_ptr()).collect();
                Blob { id: hex_c_string(id.to_string()), _holders: holders, holder_ptrs }
            })
            .collect();
        let min_holders = blobs.iter().map(|b| b.holder_ptrs.len()).min().unwrap_or(0);
        let info = cas_file_info {
            size: stat.size,
            chunk_size: stat.chunk_size,
            chunks: stat.chunks,
            blobs: blobs.len(),
            min_holders,
        };
        cas_stat { info, blobs }
    }
}

/// Hex strings never contain NUL.
fn hex_c_string(hex: String) -> CString {
    CString::new(hex).expect("hex has no NUL")
}

/// Looks up the file of `key`: its size and chunks, and which nodes hold
/// each of its blobs.
///
/// `key` must not be NULL. On success `*stat_out` receives a handle the
/// caller owns and frees with cas_stat_free. Thread-safe; blocks.
#[no_mangle]
pub unsafe extern "C" fn cas_node_stat(
    node: *const cas_node,
    key: *const c_char,
    stat_out: *mut *mut cas_stat,
) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        let key = unsafe { arg_key(key, "key") }?;
        let out = unsafe { Out::new(stat_out, "stat_out") }?;
        let stat = run(node.node.stat(&key))??;
        out.write(into_handle(cas_stat::new(stat)));
        Ok(())
    })
}

/// The summary of `stat` into `*info_out` (must not be NULL).
#[no_mangle]
pub unsafe extern "C" fn cas_stat_file_info(stat: *const cas_stat, info_out: *mut cas_file_info) -> cas_status {
    ffi_boundary(|| {
        let stat = unsafe { arg_ref(stat, "stat") }?;
        unsafe { Out::new(info_out, "info_out") }?.write(stat.info);
        Ok(())
    })
}

/// Blob number `index` (0 is the manifest; below cas_file_info.blobs) and
/// its holders, into `*blob_out` (must not be NULL). The strings in it
/// belong to `stat`: valid until cas_stat_free, never freed by the caller.
/// An index out of range is CAS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn cas_stat_blob(
    stat: *const cas_stat,
    index: usize,
    blob_out: *mut cas_blob_holders,
) -> cas_status {
    ffi_boundary(|| {
        let stat = unsafe { arg_ref(stat, "stat") }?;
        let out = unsafe { Out::new(blob_out, "blob_out") }?;
        let blob = stat.blobs.get(index).ok_or_else(|| {
            FfiError::new(
                cas_status::CAS_ERR_INVALID_ARGUMENT,
                format!("blob index {index} is out of range (the file has {} blobs)", stat.blobs.len()),
            )
        })?;
        out.write(cas_blob_holders {
            blob_id: blob.id.as_ptr(),
            holder_count: blob.holder_ptrs.len(),
            holders: blob.holder_ptrs.as_ptr(),
        });
        Ok(())
    })
}

/// Frees a stat and every string it handed out. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cas_stat_free(stat: *mut cas_stat) {
    ffi_boundary_void(|| unsafe { free_handle(stat) })
}
