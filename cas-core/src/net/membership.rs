//! The gossip peer table. Each node advances its own heartbeat every round
//! and signs its record; records merge by (incarnation, heartbeat), so news
//! only moves forward, and only a record signed by the node it describes
//! counts. A peer whose heartbeat stops advancing turns suspect, then dead
//! (out of placement), then is forgotten; a restart (new incarnation) or a
//! direct contact brings it back.
//!
//! Two tiers, so that a flood of ids cannot crowd out real nodes:
//! - peers, reached by this node (it dialed them, or they answered its
//!   ping): placement, fetches and gossip use only these, at most
//!   [`MAX_PEERS`] not yet forgotten;
//! - candidates, heard of through gossip or met only by their dialing in:
//!   at most [`MAX_CANDIDATES`], [`MAX_NEW_CANDIDATES_PER_MESSAGE`] new ones
//!   from any one message; the gossip loop pings a few each round, and a
//!   candidate that answers becomes a peer, one that does not is dropped.
//!   Throwaway identities that dial in and leave never become peers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::seq::IteratorRandom;

use super::frame::PeerRecord;
use crate::identity::{Identity, NodeId, PeerInfo, PeerState};

/// Most peers met directly that a table holds, forgotten ones not counted.
pub(crate) const MAX_PEERS: usize = 10_000;
/// Most peers heard of only through gossip, waiting to be dialed.
pub(crate) const MAX_CANDIDATES: usize = 1_024;
/// Most new candidates taken from one gossip message.
pub(crate) const MAX_NEW_CANDIDATES_PER_MESSAGE: usize = 64;
/// Most records of one gossip message looked at (the rest are ignored).
pub(crate) const MAX_RECORDS_PER_MESSAGE: usize = MAX_PEERS + 1;

/// When silence changes a peer's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub suspect_after: Duration,
    pub dead_after: Duration,
    pub forget_after: Duration,
}

struct Entry {
    /// The address it advertises (its signed record's, once one came).
    addr: SocketAddr,
    /// The address this node dialed it at and met it, proving its id: a
    /// placement target only while this is its advertised address.
    reached: Option<SocketAddr>,
    /// Its newest signed record, once one has arrived.
    record: Option<PeerRecord>,
    /// When its heartbeat last advanced, or it was last met directly.
    changed: Instant,
}

/// What a node knows of its peers.
pub(crate) struct PeerTable {
    timing: Timing,
    identity: Identity,
    inner: Mutex<Inner>,
}

struct Inner {
    me: PeerRecord,
    peers: HashMap<NodeId, Entry>,
    candidates: HashMap<NodeId, Candidate>,
}

struct Candidate {
    addr: SocketAddr,
    /// Its newest signed record, if it came through gossip.
    record: Option<PeerRecord>,
}

impl Inner {
    fn add_candidate(&mut self, id: NodeId, candidate: Candidate) {
        if self.candidates.len() >= MAX_CANDIDATES && !self.candidates.contains_key(&id) {
            // Make room at random: a flood cannot keep a real node out,
            // since honest peers gossip it again every round.
            let victim = *self.candidates.keys().choose(&mut rand::rng()).expect("full");
            self.candidates.remove(&victim);
        }
        self.candidates.insert(id, candidate);
    }
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

fn newer(a: &PeerRecord, than: Option<&PeerRecord>) -> bool {
    than.is_none_or(|b| (a.incarnation, a.heartbeat) > (b.incarnation, b.heartbeat))
}

impl PeerTable {
    pub(crate) fn new(identity: Identity, addr: SocketAddr, incarnation: u64, timing: Timing) -> PeerTable {
        let me = PeerRecord::sign(&identity, addr, incarnation, 0);
        PeerTable {
            timing,
            identity,
            inner: Mutex::new(Inner { me, peers: HashMap::new(), candidates: HashMap::new() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self, e: &Entry, now: Instant) -> Option<PeerState> {
        state_after(&self.timing, now.saturating_duration_since(e.changed))
    }

    /// Advances this node's heartbeat (once per gossip round) and signs it.
    pub(crate) fn tick(&self) {
        let mut inner = self.lock();
        let me = &inner.me;
        inner.me = PeerRecord::sign(&self.identity, me.addr, me.incarnation, me.heartbeat + 1);
    }

    /// This node's record and every alive peer's newest record: what gossip carries.
    pub(crate) fn gossip_records(&self) -> Vec<PeerRecord> {
        let now = Instant::now();
        let inner = self.lock();
        let mut out = vec![inner.me.clone()];
        out.extend(
            inner
                .peers
                .values()
                .filter(|e| self.state(e, now) == Some(PeerState::Alive))
                .filter_map(|e| e.record.clone()),
        );
        out
    }

    /// The records of a gossip message worth a signature check: not this
    /// node's, the first of each id, newer than what the table holds, and at
    /// most [`MAX_NEW_CANDIDATES_PER_MESSAGE`] of nodes not known yet. Cheap,
    /// so it runs under the lock; the signatures are checked off it. No
    /// record is judged by this node's clock: a node whose clock is hours
    /// off (or was, when it started: its incarnation stays ahead) is alive
    /// while its heartbeat advances, as any other.
    pub(crate) fn triage(&self, records: Vec<PeerRecord>) -> Vec<PeerRecord> {
        let inner = self.lock();
        let me = inner.me.id;
        let mut seen = std::collections::HashSet::new();
        let (mut out, mut new_candidates) = (Vec::new(), 0);
        for r in records.into_iter().take(MAX_RECORDS_PER_MESSAGE) {
            if r.id == me || !seen.insert(r.id) {
                continue;
            }
            let worth = if let Some(e) = inner.peers.get(&r.id) {
                newer(&r, e.record.as_ref())
            } else if let Some(c) = inner.candidates.get(&r.id) {
                newer(&r, c.record.as_ref())
            } else if new_candidates < MAX_NEW_CANDIDATES_PER_MESSAGE {
                new_candidates += 1;
                true
            } else {
                false
            };
            if worth {
                out.push(r);
            }
        }
        out
    }

    /// Applies records picked by [`PeerTable::triage`] whose signatures were
    /// checked. Returns the ids heard of for the first time (as candidates)
    /// or again after being forgotten.
    pub(crate) fn apply(&self, verified: Vec<PeerRecord>) -> Vec<NodeId> {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut learned = Vec::new();
        for r in verified {
            if let Some(e) = inner.peers.get(&r.id) {
                // The table may have moved on while the signatures were checked.
                if !newer(&r, e.record.as_ref()) {
                    continue;
                }
                let forgotten = self.state(e, now).is_none();
                let e = inner.peers.get_mut(&r.id).expect("present");
                if forgotten {
                    learned.push(r.id);
                }
                e.addr = r.addr;
                e.record = Some(r);
                e.changed = now;
            } else if let Some(c) = inner.candidates.get(&r.id) {
                if newer(&r, c.record.as_ref()) {
                    inner.candidates.insert(r.id, Candidate { addr: r.addr, record: Some(r) });
                }
            } else {
                learned.push(r.id);
                inner.add_candidate(r.id, Candidate { addr: r.addr, record: Some(r) });
            }
        }
        learned
    }

    /// Triage, check and apply in one (tests): a bad signature drops the message.
    #[cfg(test)]
    fn merge(&self, records: Vec<PeerRecord>) -> Vec<NodeId> {
        let worth = self.triage(records);
        if !worth.iter().all(PeerRecord::verify) {
            return Vec::new();
        }
        self.apply(worth)
    }

    /// Records a node met through a handshake (which proved its key), at the
    /// address it gave. A known peer is alive now. A new node becomes a peer
    /// if this node dialed it (`outbound`), else a candidate until it
    /// answers a ping.
    pub(crate) fn observe(&self, id: NodeId, addr: SocketAddr, outbound: bool) {
        let now = Instant::now();
        let mut inner = self.lock();
        if id == inner.me.id {
            return;
        }
        if let Some(e) = inner.peers.get_mut(&id) {
            // Dialing in proves the key, not an address: only a dial moves it
            // (a signed record moves the advertised one).
            if outbound {
                e.addr = addr;
                e.reached = Some(addr);
            }
            e.changed = now;
            return;
        }
        let record = inner.candidates.remove(&id).and_then(|c| c.record);
        if outbound {
            self.add_peer(&mut inner, id, addr, record, now);
        } else {
            inner.add_candidate(id, Candidate { addr, record });
        }
    }

    /// Adds a peer. When the table is full, forgotten then dead peers make
    /// room; if all are alive or suspect, the newcomer is not added.
    fn add_peer(&self, inner: &mut Inner, id: NodeId, addr: SocketAddr, record: Option<PeerRecord>, now: Instant) {
        if inner.peers.len() >= MAX_PEERS {
            inner.peers.retain(|_, e| self.state(e, now).is_some());
        }
        if inner.peers.len() >= MAX_PEERS {
            inner.peers.retain(|_, e| self.state(e, now) != Some(PeerState::Dead));
        }
        if inner.peers.len() >= MAX_PEERS {
            tracing::debug!(peer = %id, "peer table full of live peers; not adding {id}");
            return;
        }
        inner.peers.insert(id, Entry { addr, reached: Some(addr), record, changed: now });
    }

    /// A node that just answered this node's request: alive now, and a
    /// peer if it was a candidate.
    pub(crate) fn touch(&self, id: &NodeId) {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(e) = inner.peers.get_mut(id) {
            e.changed = now;
        } else if let Some(c) = inner.candidates.remove(id) {
            self.add_peer(&mut inner, *id, c.addr, c.record, now);
        }
    }

    /// Marks a peer (not a candidate) alive now: it just sent a request.
    pub(crate) fn refresh(&self, id: &NodeId) {
        if let Some(e) = self.lock().peers.get_mut(id) {
            e.changed = Instant::now();
        }
    }

    /// Up to `n` candidates to dial, one dead peer to try again, and one
    /// live peer not yet reached at the address it now advertises, at random.
    pub(crate) fn to_probe(&self, n: usize) -> Vec<NodeId> {
        let now = Instant::now();
        let inner = self.lock();
        let mut rng = rand::rng();
        let mut out: Vec<NodeId> = inner.candidates.keys().copied().sample(&mut rng, n);
        let dead = inner.peers.iter().filter(|(_, e)| self.state(e, now) == Some(PeerState::Dead));
        out.extend(dead.map(|(id, _)| *id).choose(&mut rng));
        let moved = inner
            .peers
            .iter()
            .filter(|(_, e)| e.reached != Some(e.addr) && self.state(e, now).is_some_and(|s| s != PeerState::Dead));
        out.extend(moved.map(|(id, _)| *id).choose(&mut rng));
        out
    }

    /// Alive peers that this node reached at the address they advertise,
    /// with that address: the only nodes copies are placed on.
    pub(crate) fn placement_targets(&self) -> Vec<(NodeId, SocketAddr)> {
        let now = Instant::now();
        self.lock()
            .peers
            .iter()
            .filter(|(_, e)| e.reached == Some(e.addr) && self.state(e, now) == Some(PeerState::Alive))
            .map(|(id, e)| (*id, e.addr))
            .collect()
    }

    /// Every candidate (peers heard of through gossip, not yet met).
    pub(crate) fn candidate_ids(&self) -> Vec<NodeId> {
        self.lock().candidates.keys().copied().collect()
    }

    /// Drops a candidate that could not be reached.
    pub(crate) fn drop_candidate(&self, id: &NodeId) {
        self.lock().candidates.remove(id);
    }

    /// Peers in `states`, with their addresses (candidates never).
    pub(crate) fn peers_in(&self, states: &[PeerState]) -> Vec<(NodeId, SocketAddr)> {
        let now = Instant::now();
        self.lock()
            .peers
            .iter()
            .filter(|(_, e)| self.state(e, now).is_some_and(|s| states.contains(&s)))
            .map(|(id, e)| (*id, e.addr))
            .collect()
    }

    /// The advertised address of a peer not yet forgotten, or of a candidate.
    pub(crate) fn addr_of(&self, id: &NodeId) -> Option<SocketAddr> {
        let now = Instant::now();
        let inner = self.lock();
        match inner.peers.get(id) {
            Some(e) => self.state(e, now).map(|_| e.addr),
            None => inner.candidates.get(id).map(|c| c.addr),
        }
    }

    /// Whether some known (not forgotten) peer advertises `addr`.
    pub(crate) fn knows_addr(&self, addr: SocketAddr) -> bool {
        let now = Instant::now();
        self.lock().peers.values().any(|e| e.addr == addr && self.state(e, now).is_some())
    }

    /// The table as the public API shows it (forgotten peers and candidates left out).
    pub(crate) fn info(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let inner = self.lock();
        let mut out: Vec<PeerInfo> = inner
            .peers
            .iter()
            .filter_map(|(id, e)| {
                let last_seen = now.saturating_duration_since(e.changed);
                let state = self.state(e, now)?;
                Some(PeerInfo { id: *id, address: e.addr, state, last_seen })
            })
            .collect();
        out.sort_by_key(|p| p.address);
        out
    }

    /// How many candidates wait to be dialed.
    #[cfg(test)]
    fn candidates(&self) -> usize {
        self.candidate_ids().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> u64 {
        crate::net::now_ms()
    }

    fn ident(n: u8) -> Identity {
        Identity::from_seed(&[n; 32])
    }

    fn addr(n: u8) -> SocketAddr {
        ([127, 0, 0, 1], 1000 + n as u16).into()
    }

    fn rec(n: u8, inc: u64, hb: u64) -> PeerRecord {
        PeerRecord::sign(&ident(n), addr(n), inc, hb)
    }

    fn table(timing: Timing) -> PeerTable {
        PeerTable::new(ident(0), addr(0), 1, timing)
    }

    const SLOW: Timing = Timing {
        suspect_after: Duration::from_secs(60),
        dead_after: Duration::from_secs(120),
        forget_after: Duration::from_secs(180),
    };

    #[test]
    fn gossip_makes_candidates_and_a_direct_contact_makes_a_peer() {
        let t = table(SLOW);
        assert_eq!(t.merge(vec![rec(0, 9, 9), rec(1, 1, 5)]), vec![ident(1).id()], "self ignored");
        assert!(t.info().is_empty() && t.peers_in(&[PeerState::Alive]).is_empty(), "heard of is not met");
        assert_eq!(t.addr_of(&ident(1).id()), Some(addr(1)), "a candidate can be dialed");
        t.observe(ident(1).id(), addr(1), true);
        assert_eq!(t.info().len(), 1);
        assert_eq!(t.candidates(), 0);
        assert!(t.merge(vec![rec(1, 1, 3)]).is_empty());
        t.merge(vec![rec(1, 1, 7)]);
        let gossip = t.gossip_records();
        assert_eq!((gossip.len(), gossip[1].heartbeat), (2, 7));
        // A restart outranks any heartbeat of the old incarnation.
        t.merge(vec![rec(1, 2, 0)]);
        assert_eq!(t.gossip_records()[1].incarnation, 2);
        assert!(t.gossip_records().iter().all(PeerRecord::verify));
    }

    #[test]
    fn records_not_signed_by_their_node_do_not_count_and_clocks_do_not_matter() {
        let t = table(SLOW);
        t.observe(ident(1).id(), addr(1), true);
        t.merge(vec![rec(1, 5, 5)]);
        // Someone else's signature over node 1's id, with a huge heartbeat.
        let mut forged = PeerRecord::sign(&ident(9), addr(9), u64::MAX, u64::MAX);
        forged.id = ident(1).id();
        let mut tampered = rec(1, 5, 6);
        tampered.heartbeat = u64::MAX;
        t.merge(vec![forged]);
        t.merge(vec![tampered]);
        let r = &t.gossip_records()[1];
        assert_eq!((r.incarnation, r.heartbeat), (5, 5), "none of them replaced the genuine record");
        assert!(t.merge(vec![rec(1, 6, 0)]).is_empty());
        assert_eq!(t.gossip_records()[1].incarnation, 6, "the node's own restart still counts");
        // A node whose clock runs two hours ahead: its incarnation is from
        // this node's future, and its heartbeats still count.
        let ahead = now_ms() + 2 * 3_600_000;
        t.merge(vec![rec(1, ahead, 0)]);
        t.merge(vec![rec(1, ahead, 1)]);
        assert_eq!((t.gossip_records()[1].incarnation, t.gossip_records()[1].heartbeat), (ahead, 1));
    }

    #[test]
    fn a_flood_of_ids_is_bounded_and_cannot_lock_out_a_newcomer() {
        let t = table(SLOW);
        let flood: Vec<PeerRecord> = (0..2000u32)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&(i + 1000).to_le_bytes());
                PeerRecord::sign(&Identity::from_seed(&seed), addr(3), 1, 1)
            })
            .collect();
        assert_eq!(t.merge(flood.clone()).len(), MAX_NEW_CANDIDATES_PER_MESSAGE, "quota per message");
        for chunk in flood.chunks(MAX_NEW_CANDIDATES_PER_MESSAGE) {
            t.merge(chunk.to_vec());
        }
        assert_eq!(t.candidates(), MAX_CANDIDATES, "candidates are bounded");
        assert!(t.info().is_empty(), "and none of them is a peer");
        // A real node gossiped by an honest peer still gets in as a candidate...
        assert_eq!(t.merge(vec![rec(7, 1, 1)]), vec![ident(7).id()]);
        // ...and a node met directly becomes a peer whatever the flood.
        t.observe(ident(8).id(), addr(8), true);
        assert_eq!(t.info().len(), 1);
    }

    #[test]
    fn a_full_table_makes_room_for_a_direct_contact_from_forgotten_and_dead_peers() {
        let dead =
            Timing { suspect_after: Duration::ZERO, dead_after: Duration::ZERO, forget_after: Duration::from_secs(60) };
        let t = table(dead);
        for i in 0..MAX_PEERS as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&(i + 1).to_le_bytes());
            t.observe(NodeId(id), addr(2), true);
        }
        assert_eq!(t.info().len(), MAX_PEERS);
        t.observe(ident(5).id(), addr(5), true);
        assert_eq!(t.info().len(), 1, "dead peers made room for the newcomer (itself dead at once here)");
        let alive = table(SLOW);
        for i in 0..MAX_PEERS as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&(i + 1).to_le_bytes());
            alive.observe(NodeId(id), addr(2), true);
        }
        alive.observe(ident(5).id(), addr(5), true);
        assert_eq!(alive.info().len(), MAX_PEERS, "live peers are not evicted");
    }

    #[test]
    fn silence_turns_a_peer_dead_then_forgotten_and_its_news_revives_it() {
        let zero = Timing { suspect_after: Duration::ZERO, dead_after: Duration::ZERO, forget_after: Duration::ZERO };
        let t = table(zero);
        t.observe(ident(1).id(), addr(1), true);
        t.merge(vec![rec(1, 1, 5)]);
        assert!(t.info().is_empty(), "forgotten at once with zero thresholds");
        assert!(t.merge(vec![rec(1, 1, 5)]).is_empty(), "same heartbeat: nothing new");
        assert_eq!(t.merge(vec![rec(1, 1, 6)]), vec![ident(1).id()], "a newer heartbeat revives it");
        let dead =
            Timing { suspect_after: Duration::ZERO, dead_after: Duration::ZERO, forget_after: Duration::from_secs(60) };
        let t = table(dead);
        t.observe(ident(1).id(), addr(1), true);
        assert_eq!(t.info()[0].state, PeerState::Dead);
        assert!(t.peers_in(&[PeerState::Alive]).is_empty());
        assert_eq!(t.gossip_records().len(), 1, "dead peers are not gossiped");
        assert_eq!(t.to_probe(3), vec![ident(1).id()], "a dead peer is tried again");
        t.touch(&ident(1).id());
    }

    #[test]
    fn a_node_that_only_dialed_in_is_a_candidate_until_it_answers() {
        let t = table(SLOW);
        t.observe(ident(1).id(), addr(1), false);
        assert!(t.info().is_empty(), "dialing in proves the key, not that the node is reachable");
        assert_eq!(t.to_probe(3), vec![ident(1).id()]);
        t.touch(&ident(1).id());
        assert_eq!(t.info().len(), 1, "answering a ping makes it a peer");
        t.observe(ident(1).id(), addr(2), false);
        assert_eq!(t.info()[0].address, addr(1), "dialing in from elsewhere does not move a peer");
        assert_eq!(t.placement_targets(), vec![(ident(1).id(), addr(1))]);
        // Its signed record moves it; it is a placement target again once reached there.
        t.merge(vec![PeerRecord::sign(&ident(1), addr(3), 1, 9)]);
        assert_eq!(t.info()[0].address, addr(3));
        assert!(t.placement_targets().is_empty(), "not reached at its new address yet");
        assert_eq!(t.to_probe(3), vec![ident(1).id()], "so it is dialed there");
        t.observe(ident(1).id(), addr(3), true);
        assert_eq!(t.placement_targets(), vec![(ident(1).id(), addr(3))]);
    }
}
