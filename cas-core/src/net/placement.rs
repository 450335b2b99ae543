//! Rendezvous placement: for blob B, nodes rank by the first 8 bytes
//! (big-endian) of SHA-256(B || node_id), highest first. Every node computes
//! the same order without coordination, and each blob gets its own order.

use sha2::{Digest, Sha256};

use crate::format::BlobId;
use crate::identity::NodeId;

/// The rendezvous score of `node` for `blob`.
pub fn score(blob: &BlobId, node: &NodeId) -> u64 {
    let mut h = Sha256::new();
    h.update(blob.0);
    h.update(node.0);
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Sorts `nodes` by rank for `blob`, best first (ties broken by id).
pub fn rank_nodes<T>(blob: &BlobId, nodes: &mut [T], id_of: impl Fn(&T) -> NodeId) {
    nodes.sort_by_cached_key(|n| {
        let id = id_of(n);
        (std::cmp::Reverse(score(blob, &id)), id)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_deterministic_and_spreads_load() {
        let nodes: Vec<NodeId> = (0..10u8).map(|i| NodeId([i; 32])).collect();
        let mut firsts = std::collections::HashMap::new();
        for b in 0..1000u32 {
            let blob = BlobId::of(&b.to_le_bytes());
            let mut a = nodes.clone();
            let mut r = nodes.clone();
            r.reverse();
            rank_nodes(&blob, &mut a, |n| *n);
            rank_nodes(&blob, &mut r, |n| *n);
            assert_eq!(a, r, "order does not depend on input order");
            *firsts.entry(a[0]).or_insert(0) += 1;
        }
        // 1000 blobs over 10 nodes: each node first for roughly 100 of them.
        assert_eq!(firsts.len(), 10);
        assert!(firsts.values().all(|&n| (50..=150).contains(&n)), "{firsts:?}");
    }
}
