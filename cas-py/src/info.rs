//! Plain value classes returned by `Node.stat`, `Node.peers` and `Node.stats`.

use cas_core::{PeerInfo, StatInfo};
use pyo3::prelude::*;

/// What `Node.stat(key)` reports about a stored file.
#[pyclass(frozen, get_all, module = "cas")]
pub struct Stat {
    /// The key asked about.
    pub key: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Chunk size of the file in bytes.
    pub chunk_size: u32,
    /// Number of chunks.
    pub chunks: u64,
    /// Hex id of the manifest blob.
    pub manifest_id: String,
    /// Each blob of the file (manifest first, then the distinct chunks) with
    /// the hex ids of the alive nodes known to hold it.
    pub holders: Vec<(String, Vec<String>)>,
}

impl Stat {
    pub fn new(key: String, info: StatInfo) -> Stat {
        Stat {
            key,
            size: info.size,
            chunk_size: info.chunk_size,
            chunks: info.chunks,
            manifest_id: info.manifest_id.to_string(),
            holders: info
                .holders
                .into_iter()
                .map(|(blob, nodes)| (blob.to_string(), nodes.iter().map(|n| n.to_string()).collect()))
                .collect(),
        }
    }
}

#[pymethods]
impl Stat {
    /// Every node holding at least one blob of the file, sorted.
    #[getter]
    fn nodes(&self) -> Vec<String> {
        let mut all: Vec<String> = self.holders.iter().flat_map(|(_, nodes)| nodes.iter().cloned()).collect();
        all.sort();
        all.dedup();
        all
    }

    fn __repr__(&self) -> String {
        format!(
            "Stat(size={}, chunks={}, chunk_size={}, nodes={})",
            self.size,
            self.chunks,
            self.chunk_size,
            self.nodes().len()
        )
    }
}

/// A file this node put (see `Node.files()`).
#[pyclass(frozen, get_all, module = "cas")]
pub struct FileEntry {
    /// The file's key.
    pub key: String,
    /// The file's name at put time, the `name` given to `put_bytes`, or "".
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was (last) put, in seconds since the epoch (as `time.time()`).
    pub time: f64,
}

impl From<cas_core::FileEntry> for FileEntry {
    fn from(f: cas_core::FileEntry) -> FileEntry {
        let time = f.time.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        FileEntry { key: f.key.to_string(), name: f.name, size: f.size, time }
    }
}

#[pymethods]
impl FileEntry {
    fn __repr__(&self) -> String {
        format!("FileEntry(name={:?}, size={}, key={:.16}…)", self.name, self.size, self.key)
    }
}

/// One entry of a node's peer table.
#[pyclass(frozen, get_all, module = "cas")]
pub struct Peer {
    /// The peer's node id (hex).
    pub id: String,
    /// Its advertised listen address, `"host:port"`.
    pub address: String,
    /// `"alive"`, `"suspect"` or `"dead"`.
    pub state: String,
    /// Seconds since its heartbeat last advanced.
    pub last_seen: f64,
}

impl From<PeerInfo> for Peer {
    fn from(p: PeerInfo) -> Peer {
        Peer {
            id: p.id.to_string(),
            address: p.address.to_string(),
            state: p.state.as_str().to_string(),
            last_seen: p.last_seen.as_secs_f64(),
        }
    }
}

#[pymethods]
impl Peer {
    fn __repr__(&self) -> String {
        format!("Peer(id={:.12}…, address={:?}, state={:?})", self.id, self.address, self.state)
    }
}

/// Counters of a node since it started (the store figures are current).
#[pyclass(frozen, get_all, module = "cas")]
pub struct Stats {
    /// Payload bytes sent to peers.
    pub bytes_sent: u64,
    /// Payload bytes received from peers.
    pub bytes_received: u64,
    /// Blobs in the local store.
    pub blobs_stored: u64,
    /// Bytes in the local store.
    pub bytes_stored: u64,
    /// Requests from peers answered.
    pub requests_served: u64,
    /// Blobs that failed verification.
    pub verification_failures: u64,
    /// Peers currently alive.
    pub peers_alive: u64,
    /// Copies this node's repair rounds gave to peers that lacked them.
    pub blobs_repaired: u64,
    /// Requests to peers that timed out.
    pub request_timeouts: u64,
    /// Blob requests sent to a second holder because the first was slow.
    pub hedged_requests: u64,
    /// Copies repair offered to a peer that refused them for lack of space.
    pub repair_refused_full: u64,
    /// Peers repair passes over now for lack of space.
    pub peers_full: u64,
    /// 1 while the node cannot write (disk full, index write failed).
    pub cannot_write: u64,
    /// Blobs the background scrub read and found good.
    pub blobs_scrubbed: u64,
    /// Bytes of those blobs.
    pub bytes_scrubbed: u64,
    /// Stored blobs the scrub found corrupt (and quarantined).
    pub scrub_corrupt: u64,
    /// Stored blobs whose file the scrub found gone (dropped from the index).
    pub scrub_missing: u64,
    /// Of the corrupt and missing blobs, those replaced by a good copy from a peer.
    pub scrub_restored: u64,
    /// Gossip messages dropped for a record with a bad signature.
    pub gossip_rejected: u64,
    /// Connections closed to give their seat to a newcomer (a flood).
    pub connections_evicted: u64,
    /// Possession audits repair made of peers' copies.
    pub audits: u64,
    /// Of those, the failed ones (the peer is passed over for a while).
    pub audits_failed: u64,
    /// Bytes of the memory budget held now.
    pub memory_held: u64,
    /// Connections closed after waiting for the memory budget for the idle timeout.
    pub connections_over_budget: u64,
}

impl From<cas_core::Stats> for Stats {
    fn from(s: cas_core::Stats) -> Stats {
        Stats {
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            blobs_stored: s.blobs_stored,
            bytes_stored: s.bytes_stored,
            requests_served: s.requests_served,
            verification_failures: s.verification_failures,
            peers_alive: s.peers_alive,
            blobs_repaired: s.blobs_repaired,
            request_timeouts: s.request_timeouts,
            hedged_requests: s.hedged_requests,
            repair_refused_full: s.repair_refused_full,
            peers_full: s.peers_full,
            cannot_write: s.cannot_write,
            blobs_scrubbed: s.blobs_scrubbed,
            bytes_scrubbed: s.bytes_scrubbed,
            scrub_corrupt: s.scrub_corrupt,
            scrub_missing: s.scrub_missing,
            scrub_restored: s.scrub_restored,
            gossip_rejected: s.gossip_rejected,
            connections_evicted: s.connections_evicted,
            audits: s.audits,
            audits_failed: s.audits_failed,
            memory_held: s.memory_held,
            connections_over_budget: s.connections_over_budget,
        }
    }
}

#[pymethods]
impl Stats {
    fn __repr__(&self) -> String {
        format!(
            "Stats(blobs_stored={}, bytes_stored={}, peers_alive={}, bytes_sent={}, bytes_received={})",
            self.blobs_stored, self.bytes_stored, self.peers_alive, self.bytes_sent, self.bytes_received
        )
    }
}
