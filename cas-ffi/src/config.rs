//! `cas_config`: the settings a node starts with.

use std::ffi::c_char;

use cas_core::Config;

use crate::boundary::{
    arg_bytes, arg_bytes_mut, arg_mut, arg_path, arg_str, ffi_boundary, ffi_boundary_void, free_handle, into_handle,
    Out,
};
use crate::error::FfiError;
use crate::status::cas_status;

/// Node settings (opaque). Created by cas_config_new, freed by
/// cas_config_free. Not thread-safe: one thread at a time may change it;
/// cas_node_start only reads it, and the config may be freed or reused
/// right after.
pub struct cas_config {
    pub(crate) inner: Config,
}

/// Creates a configuration for a node stored in `data_dir` (created if
/// needed), with the defaults: no networking, 3 replicas, min replicas 0,
/// 1 MiB chunks, no capacity limit, fsync on.
///
/// `data_dir` must not be NULL; it is copied. On success `*config_out`
/// receives a new handle the caller owns and frees with cas_config_free.
#[no_mangle]
pub unsafe extern "C" fn cas_config_new(data_dir: *const c_char, config_out: *mut *mut cas_config) -> cas_status {
    ffi_boundary(|| {
        let data_dir = unsafe { arg_path(data_dir, "data_dir") }?;
        let out = unsafe { Out::new(config_out, "config_out") }?;
        out.write(into_handle(cas_config { inner: Config::new(data_dir) }));
        Ok(())
    })
}

/// Frees a configuration. NULL is a no-op. Nodes started from it are not
/// affected.
#[no_mangle]
pub unsafe extern "C" fn cas_config_free(config: *mut cas_config) {
    ffi_boundary_void(|| unsafe { free_handle(config) })
}

/// Sets the address to listen on for peers, e.g. "127.0.0.1:0" (port 0
/// picks a free port; cas_node_address tells which). NULL turns networking
/// off (the default). `address` is copied.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_listen(config: *mut cas_config, address: *const c_char) -> cas_status {
    ffi_boundary(|| {
        let config = unsafe { arg_mut(config, "config") }?;
        let listen = if address.is_null() { None } else { Some(unsafe { arg_str(address, "address") }?.to_owned()) };
        config.inner.listen = listen;
        Ok(())
    })
}

/// Sets the address peers should dial ("host:port"; port 0 means the
/// listen port). Needed when listening on every interface ("0.0.0.0:..."),
/// since peers cannot dial that; by default the listen address is
/// advertised. NULL goes back to the default. `address` is copied.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_advertise(config: *mut cas_config, address: *const c_char) -> cas_status {
    ffi_boundary(|| {
        let config = unsafe { arg_mut(config, "config") }?;
        let advertise = if address.is_null() { None } else { Some(unsafe { arg_str(address, "address") }?.to_owned()) };
        config.inner.advertise = advertise;
        Ok(())
    })
}

/// Sets the network key: the 32 bytes every node of a network holds; a
/// node holding another key cannot connect. `len` must be 32; `key` is
/// copied. NULL (with `len` 0) goes back to the default: the file
/// `network_key` in the data directory, created by the first node of a
/// network (one without bootstrap addresses); a node with bootstrap
/// addresses and no key fails to start (CAS_ERR_INVALID_ARGUMENT).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_network_key(config: *mut cas_config, key: *const u8, len: usize) -> cas_status {
    ffi_boundary(|| {
        let config = unsafe { arg_mut(config, "config") }?;
        if key.is_null() && len == 0 {
            config.inner.network_key = None;
            return Ok(());
        }
        let bytes = unsafe { arg_bytes(key, len, "key") }?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            FfiError::new(cas_status::CAS_ERR_INVALID_ARGUMENT, format!("a network key is 32 bytes, not {len}"))
        })?;
        config.inner.network_key = Some(key);
        Ok(())
    })
}

/// Writes a new random network key into `out` (32 bytes). Give it to every
/// node of the new network (cas_config_set_network_key); keep it secret.
#[no_mangle]
pub unsafe extern "C" fn cas_generate_network_key(out: *mut u8) -> cas_status {
    ffi_boundary(|| {
        let out = unsafe { arg_bytes_mut(out, 32, "out") }?;
        out.copy_from_slice(&cas_core::generate_network_key());
        Ok(())
    })
}

/// Adds the address ("host:port") of a node to join through; call it once
/// per bootstrap node. `address` must not be NULL; it is copied.
#[no_mangle]
pub unsafe extern "C" fn cas_config_add_bootstrap(config: *mut cas_config, address: *const c_char) -> cas_status {
    ffi_boundary(|| {
        let config = unsafe { arg_mut(config, "config") }?;
        let address = unsafe { arg_str(address, "address") }?;
        config.inner.bootstrap.push(address.to_owned());
        Ok(())
    })
}

/// Sets how many copies of each blob are placed on other nodes (default 3).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_replicas(config: *mut cas_config, replicas: usize) -> cas_status {
    ffi_boundary(|| {
        unsafe { arg_mut(config, "config") }?.inner.replicas = replicas;
        Ok(())
    })
}

/// Sets the fewest copies on other nodes a put accepts (default 0); it
/// must not exceed the replicas (checked by cas_node_start).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_min_replicas(config: *mut cas_config, min_replicas: usize) -> cas_status {
    ffi_boundary(|| {
        unsafe { arg_mut(config, "config") }?.inner.min_replicas = min_replicas;
        Ok(())
    })
}

/// Sets the chunk size of new files: a power of two from 65536 to 16777216
/// (checked by cas_node_start).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_chunk_size(config: *mut cas_config, chunk_size: u32) -> cas_status {
    ffi_boundary(|| {
        unsafe { arg_mut(config, "config") }?.inner.chunk_size = chunk_size;
        Ok(())
    })
}

/// Sets the most bytes of blobs the node stores; 0 removes the limit (the
/// default: only the disk limits it).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_capacity(config: *mut cas_config, bytes: u64) -> cas_status {
    ffi_boundary(|| {
        unsafe { arg_mut(config, "config") }?.inner.capacity = (bytes > 0).then_some(bytes);
        Ok(())
    })
}

/// Turns fsync of every blob and file written on (the default) or off
/// (faster, but not durable across power loss).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_fsync(config: *mut cas_config, fsync: bool) -> cas_status {
    ffi_boundary(|| {
        unsafe { arg_mut(config, "config") }?.inner.fsync = fsync;
        Ok(())
    })
}
