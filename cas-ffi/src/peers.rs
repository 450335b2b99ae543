//! `cas_peer_list`: a snapshot of a node's peer table.

use std::ffi::{c_char, CString};

use cas_core::{PeerInfo, PeerState};

use crate::boundary::{arg_ref, ffi_boundary, ffi_boundary_void, free_handle, into_handle, Out};
use crate::error::FfiError;
use crate::node::cas_node;
use crate::status::cas_status;

/// How a peer looks from this node. The numbers are fixed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cas_peer_state {
    /// Heartbeats advance: the peer is used for placement.
    CAS_PEER_ALIVE = 0,
    /// Heartbeats stopped recently: not chosen for new replicas, still asked on get.
    CAS_PEER_SUSPECT = 1,
    /// Silent for long: out of placement, forgotten later.
    CAS_PEER_DEAD = 2,
}

/// One peer. The strings belong to the cas_peer_list it came from and are
/// valid until that list is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cas_peer {
    /// The peer's node id, 64 hex characters.
    pub id: *const c_char,
    /// Its advertised listen address ("host:port").
    pub address: *const c_char,
    /// Alive, suspect or dead.
    pub state: cas_peer_state,
    /// Milliseconds since its heartbeat last advanced.
    pub last_seen_ms: u64,
}

/// A snapshot of the peer table (opaque), from cas_node_peers; freed by
/// cas_peer_list_free. Read-only, so thread-safe.
pub struct cas_peer_list {
    peers: Vec<Peer>,
}

struct Peer {
    id: CString,
    address: CString,
    state: cas_peer_state,
    last_seen_ms: u64,
}

impl Peer {
    fn new(info: &PeerInfo) -> Peer {
        let state = match info.state {
            PeerState::Alive => cas_peer_state::CAS_PEER_ALIVE,
            PeerState::Suspect => cas_peer_state::CAS_PEER_SUSPECT,
            PeerState::Dead => cas_peer_state::CAS_PEER_DEAD,
        };
        Peer {
            id: CString::new(info.id.to_string()).expect("hex has no NUL"),
            address: CString::new(info.address.to_string()).expect("socket addresses have no NUL"),
            state,
            last_seen_ms: u64::try_from(info.last_seen.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The peers this node knows, with their state (empty without networking).
///
/// On success `*peers_out` receives a list the caller owns and frees with
/// cas_peer_list_free. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn cas_node_peers(node: *const cas_node, peers_out: *mut *mut cas_peer_list) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { arg_ref(node, "node") }?;
        let out = unsafe { Out::new(peers_out, "peers_out") }?;
        let peers = node.node.peers().iter().map(Peer::new).collect();
        out.write(into_handle(cas_peer_list { peers }));
        Ok(())
    })
}

/// The number of peers in `list`, into `*len_out` (must not be NULL).
#[no_mangle]
pub unsafe extern "C" fn cas_peer_list_len(list: *const cas_peer_list, len_out: *mut usize) -> cas_status {
    ffi_boundary(|| {
        let list = unsafe { arg_ref(list, "list") }?;
        unsafe { Out::new(len_out, "len_out") }?.write(list.peers.len());
        Ok(())
    })
}

/// Peer number `index` of `list` into `*peer_out` (must not be NULL). Its
/// strings belong to `list`: valid until cas_peer_list_free, never freed by
/// the caller. An index out of range is CAS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn cas_peer_list_get(
    list: *const cas_peer_list,
    index: usize,
    peer_out: *mut cas_peer,
) -> cas_status {
    ffi_boundary(|| {
        let list = unsafe { arg_ref(list, "list") }?;
        let out = unsafe { Out::new(peer_out, "peer_out") }?;
        let peer = list.peers.get(index).ok_or_else(|| {
            FfiError::new(
                cas_status::CAS_ERR_INVALID_ARGUMENT,
                format!("peer index {index} is out of range (the list has {} peers)", list.peers.len()),
            )
        })?;
        out.write(cas_peer {
            id: peer.id.as_ptr(),
            address: peer.address.as_ptr(),
            state: peer.state,
            last_seen_ms: peer.last_seen_ms,
        });
        Ok(())
    })
}

/// Frees a peer list and every string it handed out. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cas_peer_list_free(list: *mut cas_peer_list) {
    ffi_boundary_void(|| unsafe { free_handle(list) })
}
