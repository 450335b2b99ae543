//! Rendezvous placement: for blob B, nodes rank by the first 8 bytes
//! (big-endian) of SHA-256(B || node_id), highest first. Every node computes
//! the same order without coordination, and each blob gets its own order.
//!
//! Then failure domains: one party with many identities on one address
//! must not get many copies of a blob. [`diverse_order`] keeps at most one
//! node per IP address, and takes nodes of prefixes (IPv4 /24, IPv6 /48)
//! not used yet before the others, as Storj picks one node per /24 for a
//! segment. Loopback addresses count by port, so that nodes of one
//! machine (tests, demos) still make a network.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use super::admission::Prefix;
use crate::config::PlacementDiversity;
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

/// A node's failure domains: its address, and its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Domain {
    /// A loopback node: its own address and its own prefix.
    Loopback(SocketAddr),
    Address(IpAddr),
    Prefix(Prefix),
}

fn domains(addr: SocketAddr) -> (Domain, Domain) {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        let own = Domain::Loopback(SocketAddr::new(ip, addr.port()));
        return (own, own);
    }
    (Domain::Address(ip), Domain::Prefix(Prefix::of(ip, 24, 48)))
}

/// The failure domain of a node's address: its IP address (its port too,
/// on loopback).
pub(crate) fn address_domain(addr: SocketAddr) -> impl Eq + std::hash::Hash {
    domains(addr).0
}

/// The nodes to place copies of `blob` on, in the order to try them:
/// rendezvous rank, filtered by `diversity`. `taken` are addresses that
/// hold a copy already (this node's own, for a put): their domains count as
/// used. With [`PlacementDiversity::Prefix`], nodes of unused prefixes come
/// first (in rank order), then nodes of used prefixes but unused addresses;
/// a node sharing an address with one before it is left out. With
/// `Address`, only the latter rule; with `None`, rank order.
pub(crate) fn diverse_order(
    blob: &BlobId,
    mut nodes: Vec<(NodeId, SocketAddr)>,
    taken: &[SocketAddr],
    diversity: PlacementDiversity,
) -> Vec<NodeId> {
    rank_nodes(blob, &mut nodes, |(id, _)| *id);
    if diversity == PlacementDiversity::None {
        return nodes.into_iter().map(|(id, _)| id).collect();
    }
    let mut used: HashSet<Domain> = HashSet::new();
    for addr in taken {
        let (address, prefix) = domains(*addr);
        used.insert(address);
        used.insert(prefix);
    }
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for (id, addr) in nodes {
        let (address, prefix) = domains(addr);
        if diversity == PlacementDiversity::Prefix && !used.contains(&prefix) && !used.contains(&address) {
            used.insert(prefix);
            used.insert(address);
            first.push((id, address));
        } else {
            rest.push((id, address));
        }
    }
    let mut out: Vec<NodeId> = first.iter().map(|(id, _)| *id).collect();
    for (id, address) in rest {
        if used.insert(address) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_copy_per_address_and_new_prefixes_first() {
        let blob = BlobId::of(b"blob");
        // Ten identities on one address, two hosts of one /24, one elsewhere.
        let mut nodes: Vec<(NodeId, SocketAddr)> =
            (0..10u8).map(|i| (NodeId([i; 32]), at(&format!("203.0.113.7:{}", 7000 + i as u16)))).collect();
        nodes.push((NodeId([20; 32]), at("198.51.100.1:7000")));
        nodes.push((NodeId([21; 32]), at("198.51.100.2:7000")));
        nodes.push((NodeId([22; 32]), at("192.0.2.5:7000")));
        let order = diverse_order(&blob, nodes.clone(), &[], PlacementDiversity::Prefix);
        assert_eq!(order.len(), 4, "one node of the ten on 203.0.113.7: {order:?}");
        let prefixes: Vec<_> = order.iter().map(|id| nodes.iter().find(|(n, _)| n == id).unwrap().1).collect();
        assert_eq!(prefixes[3].ip().to_string().rsplit_once('.').unwrap().0, "198.51.100", "a shared /24 comes last");
        // The origin's own address and prefix count as used.
        let order = diverse_order(&blob, nodes.clone(), &[at("192.0.2.9:7000")], PlacementDiversity::Prefix);
        assert_eq!(order.len(), 4);
        assert!(!order[..2].contains(&NodeId([22; 32])), "the origin's /24 only after the new prefixes: {order:?}");
        let order = diverse_order(&blob, nodes.clone(), &[at("192.0.2.5:9")], PlacementDiversity::Address);
        assert_eq!(order.len(), 3, "the origin's address is taken");
        assert_eq!(diverse_order(&blob, nodes, &[], PlacementDiversity::None).len(), 13);
    }

    #[test]
    fn loopback_nodes_count_by_port_and_mapped_v4_as_v4() {
        let blob = BlobId::of(b"blob");
        let nodes: Vec<(NodeId, SocketAddr)> =
            (0..5u8).map(|i| (NodeId([i; 32]), at(&format!("127.0.0.1:{}", 7000 + i as u16)))).collect();
        assert_eq!(diverse_order(&blob, nodes, &[at("127.0.0.1:6999")], PlacementDiversity::Prefix).len(), 5);
        let mapped = vec![(NodeId([1; 32]), at("[::ffff:192.0.2.1]:1")), (NodeId([2; 32]), at("192.0.2.1:2"))];
        assert_eq!(diverse_order(&blob, mapped, &[], PlacementDiversity::Prefix).len(), 1);
    }

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
