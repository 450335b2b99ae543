//! `cas_config`: the settings a node starts with. Every setter checks its
//! value with the engine's own checks (`cas_core::config::check`) and
//! refuses a bad one with CAS_ERR_INVALID_ARGUMENT, naming the value;
//! checks across settings run in cas_node_start.

use std::ffi::c_char;
use std::time::Duration;

use cas_core::config::check;
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

/// Runs a setter's body on the config behind `config` (NULL is an error).
///
/// # Safety
/// `config` is NULL or a live handle from cas_config_new, not used elsewhere
/// during the call.
unsafe fn update(config: *mut cas_config, body: impl FnOnce(&mut Config) -> Result<(), FfiError>) -> cas_status {
    ffi_boundary(|| body(&mut unsafe { arg_mut(config, "config") }?.inner))
}

/// A 32-byte key argument (`len` must be 32), or None for NULL with `len` 0.
///
/// # Safety
/// As `arg_bytes`.
unsafe fn key32(key: *const u8, len: usize, what: &str) -> Result<Option<[u8; 32]>, FfiError> {
    if key.is_null() && len == 0 {
        return Ok(None);
    }
    let bytes = unsafe { arg_bytes(key, len, "key") }?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| FfiError::new(cas_status::CAS_ERR_INVALID_ARGUMENT, format!("a {what} is 32 bytes, not {len}")))?;
    Ok(Some(key))
}

/// Creates a configuration for a node stored in `data_dir` (created if
/// needed), with the defaults: no networking, 3 replicas, min replicas 0,
/// 1 MiB chunks, no capacity limit, fsync on.
///
/// `data_dir` must not be NULL or "" (CAS_ERR_INVALID_ARGUMENT); it is
/// copied. On success `*config_out` receives a new handle the caller owns
/// and frees with cas_config_free.
#[no_mangle]
pub unsafe extern "C" fn cas_config_new(data_dir: *const c_char, config_out: *mut *mut cas_config) -> cas_status {
    ffi_boundary(|| {
        let data_dir = unsafe { arg_path(data_dir, "data_dir") }?;
        let out = unsafe { Out::new(config_out, "config_out") }?;
        check::data_dir(data_dir)?;
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

/// Sets the address to listen on for peers: "HOST:PORT" with an IPv4
/// address, a bracketed IPv6 address or a host name, e.g. "127.0.0.1:0"
/// (port 0 picks a free port; cas_node_address tells which). A malformed
/// address is CAS_ERR_INVALID_ARGUMENT. NULL turns networking off (the
/// default). `address` is copied.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_listen(config: *mut cas_config, address: *const c_char) -> cas_status {
    unsafe {
        update(config, |c| {
            c.listen = optional_address(address, "listen", true)?;
            Ok(())
        })
    }
}

/// Sets the address peers should dial ("HOST:PORT"; port 0 means the
/// listen port). Needed when listening on every interface ("0.0.0.0:..."),
/// since peers cannot dial that; by default the listen address is
/// advertised. A malformed address is CAS_ERR_INVALID_ARGUMENT. NULL goes
/// back to the default. `address` is copied.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_advertise(config: *mut cas_config, address: *const c_char) -> cas_status {
    unsafe {
        update(config, |c| {
            c.advertise = optional_address(address, "advertise", true)?;
            Ok(())
        })
    }
}

/// An address argument checked as `setting`, or None for NULL.
///
/// # Safety
/// As `arg_str`.
unsafe fn optional_address(address: *const c_char, setting: &str, port_zero: bool) -> Result<Option<String>, FfiError> {
    if address.is_null() {
        return Ok(None);
    }
    let address = unsafe { arg_str(address, "address") }?;
    check::address(setting, address, port_zero)?;
    Ok(Some(address.to_owned()))
}

/// Sets the network key: the 32 bytes every node of a network holds; a
/// node holding another key cannot connect. `len` must be 32; `key` is
/// copied. NULL (with `len` 0) goes back to the default: the file
/// `network_key` in the data directory, created by the first node of a
/// network (one without bootstrap addresses); a node with bootstrap
/// addresses and no key fails to start (CAS_ERR_INVALID_ARGUMENT).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_network_key(config: *mut cas_config, key: *const u8, len: usize) -> cas_status {
    unsafe {
        update(config, |c| {
            c.network_key = key32(key, len, "network key")?;
            Ok(())
        })
    }
}

/// Sets the convergence secret for this run: 32 bytes (`len` must be 32;
/// `key` is copied) used instead of the file `secret` in the data
/// directory. Nodes with the same secret produce the same key for the same
/// file. NULL (with `len` 0) goes back to the default, the file.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_secret(config: *mut cas_config, key: *const u8, len: usize) -> cas_status {
    unsafe {
        update(config, |c| {
            c.secret = key32(key, len, "secret")?;
            Ok(())
        })
    }
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

/// Adds the address ("HOST:PORT", a host name allowed, e.g.
/// "node1.example:7000"; port not 0) of a node to join through; call it
/// once per bootstrap node. A malformed address is
/// CAS_ERR_INVALID_ARGUMENT. `address` must not be NULL; it is copied.
#[no_mangle]
pub unsafe extern "C" fn cas_config_add_bootstrap(config: *mut cas_config, address: *const c_char) -> cas_status {
    unsafe {
        update(config, |c| {
            let address = arg_str(address, "address")?;
            check::address("bootstrap", address, false)?;
            c.bootstrap.push(address.to_owned());
            Ok(())
        })
    }
}

/// Sets how many copies of each blob are placed on other nodes (default 3).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_replicas(config: *mut cas_config, replicas: usize) -> cas_status {
    unsafe {
        update(config, |c| {
            c.replicas = replicas;
            Ok(())
        })
    }
}

/// Sets the fewest copies on other nodes a put accepts (default 0); it
/// must not exceed the replicas (checked by cas_node_start).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_min_replicas(config: *mut cas_config, min_replicas: usize) -> cas_status {
    unsafe {
        update(config, |c| {
            c.min_replicas = min_replicas;
            Ok(())
        })
    }
}

/// Sets the chunk size of new files: a power of two from 65536 to 16777216
/// (default 1048576); another value is CAS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_chunk_size(config: *mut cas_config, chunk_size: u32) -> cas_status {
    unsafe {
        update(config, |c| {
            check::chunk_size(chunk_size)?;
            c.chunk_size = chunk_size;
            Ok(())
        })
    }
}

/// Sets the most bytes of blobs the node stores; 0 removes the limit (the
/// default: only the disk limits it).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_capacity(config: *mut cas_config, bytes: u64) -> cas_status {
    unsafe {
        update(config, |c| {
            c.capacity = (bytes > 0).then_some(bytes);
            Ok(())
        })
    }
}

/// Turns fsync of every blob and file written on (the default) or off
/// (faster, but not durable across power loss).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_fsync(config: *mut cas_config, fsync: bool) -> cas_status {
    unsafe {
        update(config, |c| {
            c.fsync = fsync;
            Ok(())
        })
    }
}

/// Whether blobs fetched from peers by a get are kept in the local store
/// (default true).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_keep_fetched(config: *mut cas_config, keep: bool) -> cas_status {
    unsafe {
        update(config, |c| {
            c.keep_fetched = keep;
            Ok(())
        })
    }
}

/// Sets the bound on chunk bytes one put or get holds in flight (default
/// 67108864, 64 MiB). 0 is CAS_ERR_INVALID_ARGUMENT; cas_node_start also
/// refuses a bound below one chunk.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_inflight_bytes(config: *mut cas_config, bytes: usize) -> cas_status {
    unsafe {
        update(config, |c| {
            check::positive("max_inflight_bytes", bytes as u64)?;
            c.max_inflight_bytes = bytes;
            Ok(())
        })
    }
}

/// Sets how many chunks one put or get processes in parallel: 0 (the
/// default) means twice the cores (8 times for a put with fsync on); at most
/// 1024.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_parallelism(config: *mut cas_config, chunks: usize) -> cas_status {
    unsafe {
        update(config, |c| {
            check::parallelism(chunks)?;
            c.parallelism = chunks;
            Ok(())
        })
    }
}

/// Sets the largest file cas_node_get_buffer returns in memory (default
/// 1073741824, 1 GiB); a larger one fails with CAS_ERR_INVALID_ARGUMENT
/// before anything is fetched, whatever size its manifest claims.
/// cas_node_get_file and cas_reader_read stream files of any size (the
/// reader into the caller's buffer). 0 is CAS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_get_bytes(config: *mut cas_config, bytes: u64) -> cas_status {
    unsafe {
        update(config, |c| {
            check::positive("max_get_bytes", bytes)?;
            c.max_get_bytes = bytes;
            Ok(())
        })
    }
}

/// Sets the most bytes peers can make the node hold over all its
/// connections together (default 268435456, 256 MiB): large frames while
/// they arrive, request bodies while they are served, answers loaded and
/// not yet written. A peer over its share is slowed down, then
/// disconnected after the idle timeout. Below 67125312 (just over 64 MiB,
/// room for four frames of the largest size) is CAS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_memory_budget(config: *mut cas_config, bytes: u64) -> cas_status {
    unsafe {
        update(config, |c| {
            check::memory_budget(bytes)?;
            c.memory_budget = bytes as usize;
            Ok(())
        })
    }
}

/// Sets a duration setting in milliseconds, checked as the engine does.
///
/// # Safety
/// As [`update`].
unsafe fn set_duration(
    config: *mut cas_config,
    setting: &str,
    ms: u64,
    field: impl FnOnce(&mut Config) -> &mut Duration,
) -> cas_status {
    unsafe {
        update(config, |c| {
            let value = Duration::from_millis(ms);
            check::duration(setting, value)?;
            *field(c) = value;
            Ok(())
        })
    }
}

/// Durations are in milliseconds, from 1 to 31536000000 (a year); 0, or
/// more than a year, is CAS_ERR_INVALID_ARGUMENT. Sets how often the node gossips its
/// peer table (default 1000).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_gossip_interval_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "gossip_interval", ms, |c| &mut c.gossip_interval) }
}

/// Sets how long one request to a peer may take, in milliseconds (default
/// 10000).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_request_timeout_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "request_timeout", ms, |c| &mut c.request_timeout) }
}

/// Sets after how long a connection on which nothing arrives is closed, in
/// milliseconds (default 60000; keep it above the request timeout).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_idle_timeout_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "idle_timeout", ms, |c| &mut c.idle_timeout) }
}

/// Sets after how long without news a peer is suspect, in milliseconds
/// (default 5000). cas_node_start checks suspect <= dead <= forget.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_suspect_after_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "suspect_after", ms, |c| &mut c.suspect_after) }
}

/// Sets after how long without news a peer is dead (out of placement), in
/// milliseconds (default 10000).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_dead_after_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "dead_after", ms, |c| &mut c.dead_after) }
}

/// Sets after how long without news a peer is forgotten, in milliseconds
/// (default 120000).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_forget_after_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "forget_after", ms, |c| &mut c.forget_after) }
}

/// Sets how often the node checks that the blobs it holds have enough
/// copies and repairs them, in milliseconds (default 30000).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_repair_interval_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "repair_interval", ms, |c| &mut c.repair_interval) }
}

/// Sets how copies of a blob spread over the nodes' addresses: "prefix"
/// (the default: at most one copy per IP address, and distinct /24 (IPv4)
/// or /48 (IPv6) prefixes first), "address" (at most one copy per IP
/// address) or "none" (rendezvous rank alone). Loopback addresses count by
/// port. Another value is CAS_ERR_INVALID_ARGUMENT. `diversity` is read
/// during the call only.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_placement_diversity(
    config: *mut cas_config,
    diversity: *const c_char,
) -> cas_status {
    unsafe {
        update(config, |c| {
            c.placement_diversity = arg_str(diversity, "diversity")?.parse()?;
            Ok(())
        })
    }
}

/// Sets how many bytes per second of stored blobs the background scrub
/// re-reads and verifies (default 1048576, 1 MiB/s), from one repair
/// interval after start; a corrupt blob is quarantined and fetched again
/// from a peer. 0 turns scrubbing off.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_scrub_rate(config: *mut cas_config, bytes_per_second: u64) -> cas_status {
    unsafe {
        update(config, |c| {
            c.scrub_rate = bytes_per_second;
            Ok(())
        })
    }
}

// The limits: what outsiders and peers can take of a node (cas_core::Limits;
// SECURITY.md says what each defends against). Every count is at least 1
// (0 is CAS_ERR_INVALID_ARGUMENT); cas_node_start checks that, in each
// room, the share of an address does not exceed that of a prefix (an IPv4
// /24 or IPv6 /64), nor that of a prefix the room, and that the first
// handshake message is not given longer than the whole handshake.

/// Sets a count limit, checked as the engine does.
///
/// # Safety
/// As [`update`].
unsafe fn set_limit(
    config: *mut cas_config,
    setting: &str,
    value: usize,
    field: impl FnOnce(&mut cas_core::Limits) -> &mut usize,
) -> cas_status {
    unsafe {
        update(config, |c| {
            check::positive(setting, value as u64)?;
            *field(&mut c.limits) = value;
            Ok(())
        })
    }
}

/// Sets how many connections may be in their handshake at once (default
/// 256). A full room gives up its oldest seat of the heaviest source to a
/// newcomer, never refusing it. Like every count limit below, 0 is
/// CAS_ERR_INVALID_ARGUMENT; cas_node_start checks that the share of an
/// address does not exceed that of a prefix (an IPv4 /24 or IPv6 /64), nor
/// that of a prefix the room.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_handshaking(config: *mut cas_config, connections: usize) -> cas_status {
    unsafe { set_limit(config, "max_handshaking", connections, |l| &mut l.max_handshaking) }
}

/// Sets how many connections in their handshake one IP address may hold
/// (default 16).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_handshaking_per_address(
    config: *mut cas_config,
    connections: usize,
) -> cas_status {
    unsafe { set_limit(config, "max_handshaking_per_address", connections, |l| &mut l.max_handshaking_per_address) }
}

/// Sets how many connections in their handshake one prefix may hold
/// (default 64).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_handshaking_per_prefix(
    config: *mut cas_config,
    connections: usize,
) -> cas_status {
    unsafe { set_limit(config, "max_handshaking_per_prefix", connections, |l| &mut l.max_handshaking_per_prefix) }
}

/// Sets how long an accepted connection may take to send its first
/// handshake message, in milliseconds (default 1000): an idle socket holds
/// a handshake seat no longer. cas_node_start checks it does not exceed the
/// handshake timeout.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_first_message_timeout_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "first_message_timeout", ms, |c| &mut c.limits.first_message_timeout) }
}

/// Sets how long a whole handshake may take, either way, in milliseconds
/// (default 5000).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_handshake_timeout_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "handshake_timeout", ms, |c| &mut c.limits.handshake_timeout) }
}

/// Sets how many handshaken inbound connections the node keeps at once
/// (default 1024); a full room gives up its oldest seat of the heaviest
/// source to a newcomer.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_inbound(config: *mut cas_config, connections: usize) -> cas_status {
    unsafe { set_limit(config, "max_inbound", connections, |l| &mut l.max_inbound) }
}

/// Sets how many handshaken inbound connections one IP address may hold
/// (default 256), whatever identities it uses.
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_inbound_per_address(
    config: *mut cas_config,
    connections: usize,
) -> cas_status {
    unsafe { set_limit(config, "max_inbound_per_address", connections, |l| &mut l.max_inbound_per_address) }
}

/// Sets how many handshaken inbound connections one prefix may hold
/// (default 512).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_max_inbound_per_prefix(
    config: *mut cas_config,
    connections: usize,
) -> cas_status {
    unsafe { set_limit(config, "max_inbound_per_prefix", connections, |l| &mut l.max_inbound_per_prefix) }
}

/// Sets how many gossip messages with a bad signature a peer may send
/// before its connection is closed (default 2).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_bad_gossip_strikes(config: *mut cas_config, strikes: u32) -> cas_status {
    unsafe {
        update(config, |c| {
            check::positive("bad_gossip_strikes", strikes.into())?;
            c.limits.bad_gossip_strikes = strikes;
            Ok(())
        })
    }
}

/// Sets how long a peer that served a blob failing verification is asked
/// last by gets, in milliseconds (default 600000, 10 minutes).
#[no_mangle]
pub unsafe extern "C" fn cas_config_set_liar_penalty_ms(config: *mut cas_config, ms: u64) -> cas_status {
    unsafe { set_duration(config, "liar_penalty", ms, |c| &mut c.limits.liar_penalty) }
}
