//! `cas_node`: start and stop a node, put and get whole files and buffers.

use std::ffi::{c_char, c_void};

use cas_core::{Cancel, Node};

use crate::boundary::{
    arg_bytes, arg_key, arg_path, arg_ref, cas_progress_fn, ffi_boundary, ffi_boundary_void, into_handle,
    progress_callback, run, Out,
};
use crate::config::cas_config;
use crate::error::FfiError;
use crate::memory::{owned_buffer, owned_c_string};
use crate::status::cas_status;

/// The node behind a handle, as a clone of its own: a call keeps using it
/// even if a progress callback frees the handle meanwhile (the node is then
/// stopped, and the call fails with CAS_ERR_CLOSED at its next step).
///
/// # Safety
/// As [`arg_ref`].
pub(crate) unsafe fn node_arg(node: *const cas_node) -> Result<Node, FfiError> {
    // SAFETY: forwarded contract.
    Ok(unsafe { arg_ref(node, "node") }?.node.clone())
}

/// A running node (opaque). Created by cas_node_start, freed by
/// cas_node_free. Every function taking a `const cas_node *` is
/// thread-safe: one node may be used from many threads at once.
pub struct cas_node {
    pub(crate) node: Node,
    /// HTTP gateways started by cas_node_serve_http: they stop with the
    /// node, or when the handle is freed.
    pub(crate) servers: std::sync::Mutex<Vec<cas_http::Server>>,
}

/// Opens the configured data directory (taking its lock) and starts a node.
///
/// `config` must not be NULL; it is only read, and may be freed right
/// after. On success `*node_out` receives a handle the caller owns and
/// frees with cas_node_free. Fails with CAS_ERR_DATA_DIR_LOCKED if another
/// node holds the directory, CAS_ERR_INVALID_ARGUMENT for a bad setting.
/// The first start installs the library's logger: warnings to stderr, more
/// with the environment variable CAS_LOG (e.g. CAS_LOG=info), or records
/// to the host's callback (see cas_set_log_callback).
#[no_mangle]
pub unsafe extern "C" fn cas_node_start(config: *const cas_config, node_out: *mut *mut cas_node) -> cas_status {
    ffi_boundary(|| {
        let config = unsafe { arg_ref(config, "config") }?;
        let out = unsafe { Out::new(node_out, "node_out") }?;
        // Logs to stderr per CAS_LOG (warnings by default); a no-op if the
        // process installed its own tracing subscriber or did so before.
        cas_core::logging::init();
        let node = run(Node::start(config.inner.clone()))??;
        out.write(into_handle(cas_node { node, servers: Default::default() }));
        Ok(())
    })
}

/// Stops the node and releases its data directory. Later calls that start
/// an operation on it (put, get, open, stat) fail with CAS_ERR_CLOSED;
/// stopping twice is harmless. The handle must still be freed with
/// cas_node_free. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_node_stop(node: *const cas_node) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        run(node.node.shutdown())?;
        Ok(())
    })
}

/// Stops the node (as cas_node_stop) and frees the handle. NULL is a
/// no-op. No other thread may be using the handle. Readers and writers
/// opened from it are handles of their own: free them too (before or
/// after the node). Called from inside a progress callback, where nothing
/// may block, it cannot wait: the node stops in the background, and its
/// data directory is released shortly after this returns; the operation
/// that called back then fails with CAS_ERR_CLOSED (or, if it was past its
/// last step, succeeds).
#[no_mangle]
pub unsafe extern "C" fn cas_node_free(node: *mut cas_node) {
    ffi_boundary_void(|| {
        if node.is_null() {
            return;
        }
        // SAFETY: per the contract, `node` came from cas_node_start.
        let handle = unsafe { Box::from_raw(node) };
        match tokio::runtime::Handle::try_current() {
            // Freed from a progress callback: we may not block here.
            Ok(rt) => drop(rt.spawn(async move { handle.node.shutdown().await })),
            Err(_) => {
                let _ = run(handle.node.shutdown());
            }
        }
    })
}

/// The node's id, as 64 hex characters.
///
/// On success `*id_out` receives a string the caller owns and frees with
/// cas_string_free. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_node_id(node: *const cas_node, id_out: *mut *mut c_char) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        let out = unsafe { Out::new(id_out, "id_out") }?;
        out.write(owned_c_string(node.node.id().to_string())?);
        Ok(())
    })
}

/// The address peers reach this node at ("127.0.0.1:40123"), to give to
/// other nodes as a bootstrap address.
///
/// On success `*address_out` receives a string the caller owns and frees
/// with cas_string_free, or NULL if the node runs without networking.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_node_address(node: *const cas_node, address_out: *mut *mut c_char) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        let out = unsafe { Out::new(address_out, "address_out") }?;
        let address = match node.node.address() {
            Some(a) => owned_c_string(a.to_string())?,
            None => std::ptr::null_mut(),
        };
        out.write(address);
        Ok(())
    })
}

/// Stores the file at `path` and returns its key (a "cas1..." string).
///
/// `path` must not be NULL. `progress` may be NULL; if given it is called
/// with `user` as bytes are stored (see cas_progress_fn). On success
/// `*key_out` receives a string the caller owns and frees with
/// cas_string_free. Fails with CAS_ERR_INPUT if the file cannot be read.
/// Thread-safe; blocks until the file is stored.
///
/// A progress callback that returns non-zero stops the put: it returns
/// CAS_ERR_CANCELLED once no library thread works on it any more, with no
/// key and no temporary file left. Chunks it stored before stay in the
/// store as whole blobs, unreferenced (content addressing: a later put of
/// the same bytes reuses them).
#[no_mangle]
pub unsafe extern "C" fn cas_node_put_file(
    node: *const cas_node,
    path: *const c_char,
    progress: cas_progress_fn,
    user: *mut c_void,
    key_out: *mut *mut c_char,
) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { node_arg(node) }?;
        let path = unsafe { arg_path(path, "path") }?;
        let out = unsafe { Out::new(key_out, "key_out") }?;
        let cancel = Cancel::new();
        let progress = progress_callback(progress, user, &cancel);
        let report = run(node.put_file_cancellable(path, progress, &cancel))??;
        out.write(owned_c_string(report.key.to_string())?);
        Ok(())
    })
}

/// Stores `len` bytes at `data` and returns their key.
///
/// `data` may be NULL only if `len` is 0; it is only read during the call.
/// `progress` may be NULL (see cas_progress_fn); it can stop the put as
/// in cas_node_put_file. On success `*key_out` receives a string the
/// caller owns and frees with cas_string_free. Thread-safe; blocks until
/// the bytes are stored.
#[no_mangle]
pub unsafe extern "C" fn cas_node_put_buffer(
    node: *const cas_node,
    data: *const u8,
    len: usize,
    progress: cas_progress_fn,
    user: *mut c_void,
    key_out: *mut *mut c_char,
) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { node_arg(node) }?;
        let mut data = unsafe { arg_bytes(data, len, "data") }?;
        let out = unsafe { Out::new(key_out, "key_out") }?;
        let cancel = Cancel::new();
        let progress = progress_callback(progress, user, &cancel);
        let report = run(node.put_reader_cancellable(&mut data, len as u64, progress, &cancel))??;
        out.write(owned_c_string(report.key.to_string())?);
        Ok(())
    })
}

/// Gets the file of `key` and writes it to `dest`, replacing any file
/// there. The bytes go to a temporary file renamed at the end, so a failed
/// get leaves nothing at `dest`.
///
/// `key` and `dest` must not be NULL. `progress` may be NULL (see
/// cas_progress_fn). Fails with CAS_ERR_INVALID_KEY for a malformed key,
/// CAS_ERR_NOT_FOUND if no reachable node has it, CAS_ERR_DESTINATION if
/// `dest` cannot be written. Thread-safe; blocks until done.
///
/// A progress callback that returns non-zero stops the get before its
/// file is renamed into place: it returns CAS_ERR_CANCELLED and leaves
/// nothing at `dest` (a file already there stays as it was).
#[no_mangle]
pub unsafe extern "C" fn cas_node_get_file(
    node: *const cas_node,
    key: *const c_char,
    dest: *const c_char,
    progress: cas_progress_fn,
    user: *mut c_void,
) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { node_arg(node) }?;
        let key = unsafe { arg_key(key, "key") }?;
        let dest = unsafe { arg_path(dest, "dest") }?;
        let cancel = Cancel::new();
        let progress = progress_callback(progress, user, &cancel);
        run(node.get_file_cancellable(&key, dest, progress, &cancel))??;
        Ok(())
    })
}

/// Gets the whole file of `key` into memory (use a cas_reader for large
/// files: one over max_get_bytes, 1 GiB by default, fails with
/// CAS_ERR_INVALID_ARGUMENT before anything is fetched, whatever size its
/// manifest claims).
///
/// `key`, `data_out` and `len_out` must not be NULL. On success `*data_out`
/// receives a buffer of `*len_out` bytes the caller owns and frees with
/// cas_buffer_free(data, len) (for an empty file: a non-NULL pointer and
/// length 0, still to be freed). Thread-safe; blocks until done.
#[no_mangle]
pub unsafe extern "C" fn cas_node_get_buffer(
    node: *const cas_node,
    key: *const c_char,
    data_out: *mut *mut u8,
    len_out: *mut usize,
) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        let key = unsafe { arg_key(key, "key") }?;
        let data_out = unsafe { Out::new(data_out, "data_out") }?;
        let len_out = unsafe { Out::new(len_out, "len_out") }?;
        let bytes = run(node.node.get_bytes(&key))??;
        let (data, len) = owned_buffer(bytes);
        data_out.write(data);
        len_out.write(len);
        Ok(())
    })
}
