//! The gossip peer table. Each node advances its own heartbeat every round;
//! records merge by (incarnation, heartbeat), so news only moves forward. A
//! peer whose heartbeat stops advancing turns suspect, then dead (out of
//! placement), then is forgotten, its record kept as a tombstone so that
//! stale gossip cannot bring it back; a restart (new incarnation) can.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::frame::PeerRecord;
use crate::identity::{NodeId, PeerInfo, PeerState};

/// Most peers a table holds (tombstones included): gossip from a faulty or
/// hostile peer cannot grow it without bound.
pub(crate) const MAX_PEERS: usize = 10_000;

/// When silence changes a peer's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub suspect_after: Duration,
    pub dead_after: Duration,
    pub forget_after: Duration,
}

struct Entry {
    record: PeerRecord,
    /// When its heartbeat last advanced (or we first heard of it).
    changed: Instant,
}

/// What a node knows of its peers.
pub(crate) struct PeerTable {
    timing: Timing,
    inner: Mutex<Inner>,
}

struct Inner {
    me: PeerRecord,
    peers: HashMap<NodeId, Entry>,
}

/// A peer's state after `elapsed` without news; `None` once forgotten.
fn state_after(timing: &Timing, elapsed: Duration) -> Option<PeerState> {
    if elapsed < timing.suspect_after {
        Some(PeerState::Alive)
    } else if elapsed < timing.dead_after {
        Some(PeerState::Suspect)
    } else if elapsed < timing.forget_after {
        Some(PeerState::Dead)
    } else {
        None
    }
}

impl PeerTable {
    pub(crate) fn new(me: PeerRecord, timing: Timing) -> PeerTable {
        PeerTable { timing, inner: Mutex::new(Inner { me, peers: HashMap::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Advances this node's heartbeat (once per gossip round).
    pub(crate) fn tick(&self) {
        self.lock().me.heartbeat += 1;
    }

    /// This node's record and every peer currently alive: what gossip carries.
    pub(crate) fn gossip_records(&self) -> Vec<PeerRecord> {
        let now = Instant::now();
        let inner = self.lock();
        let mut out = vec![inner.me.clone()];
        out.extend(
            inner
                .peers
                .values()
                .filter(|e| state_after(&self.timing, now - e.changed) == Some(PeerState::Alive))
                .map(|e| e.record.clone()),
        );
        out
    }

    /// Merges gossip. Returns the ids heard of for the first time (or again after being forgotten).
    pub(crate) fn merge(&self, records: Vec<PeerRecord>) -> Vec<NodeId> {
        let now = Instant::now();
        let mut inner = self.lock();
        let me = inner.me.id;
        let mut learned = Vec::new();
        for r in records {
            if r.id == me {
                continue;
            }
            let full = inner.peers.len() >= MAX_PEERS;
            match inner.peers.get_mut(&r.id) {
                Some(e) => {
                    if (r.incarnation, r.heartbeat) > (e.record.incarnation, e.record.heartbeat) {
                        if state_after(&self.timing, now - e.changed).is_none() {
                            learned.push(r.id);
                        }
                        e.record = r;
                        e.changed = now;
                    }
                }
                None if full => tracing::debug!(peer = %r.id, "peer table full; not adding a gossiped peer"),
                None => {
                    learned.push(r.id);
                    inner.peers.insert(r.id, Entry { record: r, changed: now });
                }
            }
        }
        learned
    }

    /// Records a peer met directly (a handshake): alive now, at its advertised address.
    pub(crate) fn observe(&self, id: NodeId, addr: SocketAddr) {
        let now = Instant::now();
        let mut inner = self.lock();
        if id == inner.me.id || (inner.peers.len() >= MAX_PEERS && !inner.peers.contains_key(&id)) {
            return;
        }
        let e = inner
            .peers
            .entry(id)
            .or_insert_with(|| Entry { record: PeerRecord { id, addr, incarnation: 0, heartbeat: 0 }, changed: now });
        e.record.addr = addr;
        e.changed = now;
    }

    /// Peers in `states`, with their addresses.
    pub(crate) fn peers_in(&self, states: &[PeerState]) -> Vec<(NodeId, SocketAddr)> {
        let now = Instant::now();
        self.lock()
            .peers
            .values()
            .filter(|e| state_after(&self.timing, now - e.changed).is_some_and(|s| states.contains(&s)))
            .map(|e| (e.record.id, e.record.addr))
            .collect()
    }

    /// The advertised address of a peer not yet forgotten.
    pub(crate) fn addr_of(&self, id: &NodeId) -> Option<SocketAddr> {
        let now = Instant::now();
        let inner = self.lock();
        let e = inner.peers.get(id)?;
        state_after(&self.timing, now - e.changed).map(|_| e.record.addr)
    }

    /// Whether some known (not forgotten) peer advertises `addr`.
    pub(crate) fn knows_addr(&self, addr: SocketAddr) -> bool {
        let now = Instant::now();
        self.lock()
            .peers
            .values()
            .any(|e| e.record.addr == addr && state_after(&self.timing, now - e.changed).is_some())
    }

    /// The table as the public API shows it (forgotten peers left out).
    pub(crate) fn info(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let inner = self.lock();
        let mut out: Vec<PeerInfo> = inner
            .peers
            .values()
            .filter_map(|e| {
                let last_seen = now - e.changed;
                let state = state_after(&self.timing, last_seen)?;
                Some(PeerInfo { id: e.record.id, address: e.record.addr, state, last_seen })
            })
            .collect();
        out.sort_by_key(|p| p.address);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8, inc: u64, hb: u64) -> PeerRecord {
        PeerRecord {
            id: NodeId([n; 32]),
            addr: ([127, 0, 0, 1], 1000 + n as u16).into(),
            incarnation: inc,
            heartbeat: hb,
        }
    }

    fn table(timing: Timing) -> PeerTable {
        PeerTable::new(rec(0, 1, 0), timing)
    }

    const SLOW: Timing = Timing {
        suspect_after: Duration::from_secs(60),
        dead_after: Duration::from_secs(120),
        forget_after: Duration::from_secs(180),
    };

    #[test]
    fn merge_keeps_newest_and_ignores_self() {
        let t = table(SLOW);
        assert_eq!(t.merge(vec![rec(0, 9, 9), rec(1, 1, 5)]), vec![NodeId([1; 32])]);
        assert!(t.merge(vec![rec(1, 1, 3)]).is_empty());
        t.merge(vec![rec(1, 1, 7)]);
        let gossip = t.gossip_records();
        assert_eq!(gossip.len(), 2);
        assert_eq!(gossip[1].heartbeat, 7);
        // A restart outranks any heartbeat of the old incarnation.
        t.merge(vec![rec(1, 2, 0)]);
        assert_eq!(t.gossip_records()[1].incarnation, 2);
    }

    #[test]
    fn gossip_cannot_grow_the_table_past_its_bound() {
        let t = table(SLOW);
        let flood: Vec<PeerRecord> = (0..MAX_PEERS as u32 + 50)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&(i + 1).to_le_bytes());
                PeerRecord { id: NodeId(id), addr: ([127, 0, 0, 1], 2000).into(), incarnation: 1, heartbeat: 1 }
            })
            .collect();
        assert_eq!(t.merge(flood).len(), MAX_PEERS);
        assert_eq!(t.info().len(), MAX_PEERS);
        t.observe(NodeId([0xee; 32]), ([127, 0, 0, 1], 9).into());
        assert_eq!(t.info().len(), MAX_PEERS, "a direct contact does not break the bound either");
    }

    #[test]
    fn silence_turns_a_peer_dead_then_forgotten_and_stale_news_does_not_revive_it() {
        let zero = Timing { suspect_after: Duration::ZERO, dead_after: Duration::ZERO, forget_after: Duration::ZERO };
        let t = table(zero);
        t.merge(vec![rec(1, 1, 5)]);
        assert!(t.info().is_empty(), "forgotten at once with zero thresholds");
        assert!(t.merge(vec![rec(1, 1, 5)]).is_empty(), "same heartbeat: tombstone holds");
        assert_eq!(t.merge(vec![rec(1, 1, 6)]), vec![NodeId([1; 32])], "a newer heartbeat revives it");
        let dead =
            Timing { suspect_after: Duration::ZERO, dead_after: Duration::ZERO, forget_after: Duration::from_secs(60) };
        let t = table(dead);
        t.merge(vec![rec(1, 1, 5)]);
        assert_eq!(t.info()[0].state, PeerState::Dead);
        assert!(t.peers_in(&[PeerState::Alive]).is_empty());
        assert_eq!(t.gossip_records().len(), 1, "dead peers are not gossiped");
    }
}
