//! What this node exchanged with each peer: bytes each way, errors, and
//! the blobs it fetched from the peer with the time they took. One small
//! entry per peer, kept while the peer is in the peer table.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::identity::NodeId;

/// Counters of one peer since this node started (or first met it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerTraffic {
    /// Payload bytes sent to the peer (blobs it was given or served).
    pub sent_bytes: u64,
    /// Payload bytes received from it (blobs fetched or given to us).
    pub received_bytes: u64,
    /// Requests to the peer that failed (timed out, connection lost, an
    /// error answer) and blobs from it that failed verification.
    pub errors: u64,
    /// Blobs fetched from the peer.
    pub fetches: u64,
    /// The time those fetches took, in all.
    pub fetch_time: Duration,
}

/// The traffic of every peer, by id.
#[derive(Default)]
pub(crate) struct Traffic {
    peers: Mutex<HashMap<NodeId, PeerTraffic>>,
}

impl Traffic {
    /// Updates the entry of `peer`. A new entry is not made beyond `max`
    /// entries (the table's own bound; `retain` prunes the forgotten).
    pub(crate) fn record(&self, peer: NodeId, max: usize, update: impl FnOnce(&mut PeerTraffic)) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = peers.get_mut(&peer) {
            update(entry);
        } else if peers.len() < max {
            update(peers.entry(peer).or_default());
        }
    }

    /// Keeps the entries of the peers `keep` says the table still knows.
    pub(crate) fn retain(&self, keep: impl Fn(&NodeId) -> bool) {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).retain(|id, _| keep(id));
    }

    pub(crate) fn snapshot(&self) -> HashMap<NodeId, PeerTraffic> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_bounded_and_pruned() {
        let traffic = Traffic::default();
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        traffic.record(a, 1, |t| t.sent_bytes += 5);
        traffic.record(b, 1, |t| t.sent_bytes += 7);
        traffic.record(a, 1, |t| t.errors += 1);
        let seen = traffic.snapshot();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[&a], PeerTraffic { sent_bytes: 5, errors: 1, ..PeerTraffic::default() });
        traffic.retain(|id| *id != a);
        assert!(traffic.snapshot().is_empty());
    }
}
