//! Membership by gossip: every round a node signs its record and trades
//! tables with a few random peers (push-pull); nodes heard of are probed at
//! their own listeners; bootstrap addresses are retried with back-off.
//! Records from a message are triaged under the table's lock, their
//! signatures checked off it (on the compute pool), and a message with a
//! bad signature is dropped whole: a member cannot make a node burn its CPU
//! or hold the table's lock by gossiping junk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;

use super::frame::{PeerRecord, Request, Response};
use super::{known_peers, DialError, Network, SLOW_PEER_PENALTY};
use crate::blocking::{blocking, compute};
use crate::error::Error;
use crate::identity::{NodeId, PeerState};

/// Peers each gossip round talks to.
const GOSSIP_FANOUT: usize = 3;
/// Every this many gossip rounds, the alive peers are saved for the next start.
const KNOWN_PEERS_EVERY: u64 = 10;
/// Candidates (peers heard of, not yet met) each gossip round dials.
const PROBES_PER_ROUND: usize = 3;
/// Least time between two warnings about one unreachable bootstrap address.
const BOOTSTRAP_WARN_EVERY: Duration = Duration::from_secs(60);
/// Longest wait between two attempts at an unreachable bootstrap address.
const MAX_BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(30);

impl Network {
    /// Merges a gossip message from `from`: the records worth a look are
    /// picked under the table's lock, their signatures checked off it, and
    /// the good ones applied. A message with a bad signature is dropped
    /// whole and counts a strike against its sender; at the
    /// `bad_gossip_strikes` limit its connection is closed. Returns the ids
    /// heard of for the first time (or again after being forgotten), or
    /// `Err` for a message with a bad signature.
    pub(crate) async fn merge_gossip(&self, from: NodeId, records: Vec<PeerRecord>) -> Result<Vec<NodeId>, ()> {
        let worth = self.table.triage(records);
        let (checked, verified) = compute(move || {
            // The first bad signature ends the check.
            match worth.iter().position(|r| !r.verify()) {
                Some(bad) => (bad + 1, None),
                None => (worth.len(), Some(worth)),
            }
        })
        .await;
        self.stats.gossip_signatures_checked.fetch_add(checked as u64, Ordering::Relaxed);
        let Some(verified) = verified else {
            self.stats.gossip_rejected.fetch_add(1, Ordering::Relaxed);
            let strikes = {
                let mut strikes = self.gossip_strikes.lock().unwrap_or_else(|e| e.into_inner());
                if strikes.len() >= super::MAX_TRACKED_PEERS && !strikes.contains_key(&from) {
                    strikes.clear();
                }
                let n = strikes.entry(from).or_default();
                *n += 1;
                *n
            };
            if strikes >= self.config.limits.bad_gossip_strikes {
                self.close_misbehaving(from, "gossip with bad signatures");
            }
            return Err(());
        };
        Ok(self.table.apply(verified))
    }

    pub(super) async fn gossip_loop(self: Arc<Self>) {
        let (mut rounds, mut saved, mut evicted) = (0u64, Vec::new(), 0u64);
        let mut tick = tokio::time::interval(self.config.gossip_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.cancel.cancelled() => break,
            }
            self.table.tick();
            rounds += 1;
            if rounds % KNOWN_PEERS_EVERY == 0 {
                // Logged with a count, not per event: anyone can cause them.
                let now_evicted = self.connections_evicted();
                if now_evicted > evicted {
                    tracing::warn!(
                        "closed {} connections to make room for newcomers (listener full, or one source over its share)",
                        now_evicted - evicted
                    );
                    evicted = now_evicted;
                }
                let alive = self.table.peers_in(&[PeerState::Alive]).into_iter().map(|(_, a)| a).collect();
                if let Some(list) = known_peers::changed(&mut saved, alive) {
                    let dir = self.config.data_dir.clone();
                    // Off the gossip loop: a slow disk must not delay heartbeats.
                    tokio::spawn(blocking(move || known_peers::save(&dir, &list)));
                }
            }
            self.slow.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, at| at.elapsed() < SLOW_PEER_PENALTY);
            self.forget_old_liars();
            self.forget_old_traffic();
            self.warnings.report_skipped();
            self.log_budget_waits();
            let targets = gossip_partners(self.table.peers_in(&[PeerState::Alive, PeerState::Suspect]));
            for peer in targets {
                let net = self.clone();
                tokio::spawn(async move {
                    match net.request(peer, || Request::Gossip { peers: net.table.gossip_records() }).await {
                        Ok(Response::Gossip { peers }) => {
                            let _ = net.merge_gossip(peer, peers).await;
                        }
                        Ok(other) => tracing::debug!(%peer, "unexpected gossip answer {other:?}"),
                        Err(e) => tracing::debug!(%peer, "gossip failed: {e}"),
                    }
                });
            }
            // Candidates heard of through gossip become peers by answering;
            // a dead peer is tried again now and then (a healed partition).
            for peer in self.table.to_probe(PROBES_PER_ROUND) {
                self.probe(peer);
            }
        }
    }

    /// Tries a candidate or dead peer in the background, at its own
    /// listener: one this node reaches there, proving its id, is a live
    /// peer; a candidate it does not reach is dropped. Answering over a
    /// connection it opened itself is not enough: any member can open
    /// connections under throwaway identities, not listen under them.
    fn probe(self: &Arc<Self>, peer: NodeId) {
        let net = self.clone();
        tokio::spawn(async move {
            let reached = match net.table.addr_of(&peer) {
                Some(addr) => net.dial(addr, Some(peer)).await.is_ok(),
                None => false,
            };
            if reached {
                net.table.touch(&peer);
            } else {
                net.table.drop_candidate(&peer);
            }
        });
    }

    /// One attempt to join through a bootstrap address (or a saved peer's):
    /// dial it and pull its peer table. `Ok(true)` if joined, `Ok(false)` if
    /// already known.
    pub(super) async fn join_through(
        self: &Arc<Self>,
        addr: &str,
        kind: Rejoin,
    ) -> std::result::Result<bool, DialError> {
        let sock = tokio::net::lookup_host(addr)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::Network(format!("bootstrap address {addr} does not resolve")))?;
        if sock == self.advertised || self.table.knows_addr(sock) {
            return Ok(false);
        }
        let conn = self.dial(sock, None).await?;
        tracing::info!(%addr, peer = %conn.peer, "joined through {}", kind.what());
        let pull = conn.request(Request::Gossip { peers: self.table.gossip_records() }, self.config.request_timeout);
        if let Ok(Response::Gossip { peers }) = pull.await {
            // Meet at once the nodes the bootstrap node knows.
            for peer in self.merge_gossip(conn.peer, peers).await.unwrap_or_default() {
                self.probe(peer);
            }
        }
        Ok(true)
    }

    /// Keeps trying a bootstrap address (or a peer saved from the last
    /// run), with back-off, until its node is known; checks again later in
    /// case it is forgotten. While a bootstrap address cannot be reached it
    /// is listed by [`Network::unreachable_bootstrap`]. A warning says so,
    /// at most once a minute, only while this node has no live peer (from a
    /// handshake timeout after the loop starts, the time a start gives
    /// every address): a node in a network does not need its bootstrap node. A
    /// node that refuses this node's network key is not tried again (one
    /// error line says so): retrying cannot change its answer.
    pub(super) async fn bootstrap_loop(self: Arc<Self>, addr: String, kind: Rejoin, first_failed: bool) {
        let base = self.config.gossip_interval;
        let mut backoff = base;
        let mut wait = if first_failed { base } else { base * 5 };
        let mut warned: Option<Instant> = None;
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => break,
            }
            wait = match self.join_through(&addr, kind).await {
                Ok(_) => {
                    if self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr) {
                        tracing::info!(%addr, "{} reached", kind.what());
                    }
                    (backoff, warned) = (base, None);
                    base * 5
                }
                Err(e) if e.key_refused => {
                    self.note_key_refusal(kind, &addr, &e.reason());
                    break;
                }
                Err(e) => {
                    if kind == Rejoin::Bootstrap {
                        self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.clone());
                    }
                    // Alone past the time a start gives every address to
                    // answer: the other addresses did not help either.
                    let alone = self.table.peers_in(&[PeerState::Alive]).is_empty()
                        && started.elapsed() >= self.config.limits.handshake_timeout;
                    if alone && warned.is_none_or(|at| at.elapsed() >= BOOTSTRAP_WARN_EVERY) {
                        tracing::warn!(%addr, "cannot reach {} and no peer is alive, still trying: {}", kind.what(), e.error);
                        warned = Some(Instant::now());
                    } else {
                        tracing::debug!(%addr, "cannot reach {}: {}", kind.what(), e.error);
                    }
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BOOTSTRAP_BACKOFF);
                    w
                }
            };
        }
    }

    /// Bootstrap addresses whose last attempt failed.
    pub(crate) fn unreachable_bootstrap(&self) -> Vec<String> {
        let mut out: Vec<String> = self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        out.sort();
        out
    }
}

/// What an address given to [`Network::bootstrap_loop`] is, for its log lines.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejoin {
    /// Given as a bootstrap address.
    Bootstrap,
    /// A peer saved from the last run (`known_peers`): not a bootstrap
    /// address, and not listed as one.
    SavedPeer,
}

impl Rejoin {
    pub(super) fn what(self) -> &'static str {
        match self {
            Rejoin::Bootstrap => "bootstrap node",
            Rejoin::SavedPeer => "peer saved from the last run",
        }
    }
}

/// This round's gossip partners: [`GOSSIP_FANOUT`] addresses drawn at
/// random from those of the alive and suspect peers, then one peer of each.
/// Drawn by address, not by identity: one party running many identities on
/// one address (which relay nobody's record) is one draw, not most of them,
/// so honest nodes keep hearing from each other every few rounds.
fn gossip_partners(peers: Vec<(NodeId, std::net::SocketAddr)>) -> Vec<NodeId> {
    let mut by_domain: std::collections::HashMap<_, Vec<NodeId>> = std::collections::HashMap::new();
    for (id, addr) in peers {
        by_domain.entry(super::placement::address_domain(addr)).or_default().push(id);
    }
    let mut rng = rand::rng();
    let domains: Vec<&Vec<NodeId>> = by_domain.values().collect();
    domains.sample(&mut rng, GOSSIP_FANOUT).filter_map(|ids| ids.choose(&mut rng).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: u8, n: u16) -> NodeId {
        let mut id = [0u8; 32];
        id[0] = kind;
        id[1..3].copy_from_slice(&n.to_be_bytes());
        NodeId(id)
    }

    #[test]
    fn gossip_partners_are_drawn_by_address_not_by_identity() {
        const SYBIL: u8 = 1;
        let sybils = (0..300u16).map(|i| (id(SYBIL, i), ([203, 0, 113, 7], 7000 + i).into()));
        let honest = (1..=3u8).map(|h| (id(2, h.into()), ([198, 51, 100, h], 7000).into()));
        let peers: Vec<(NodeId, std::net::SocketAddr)> = sybils.chain(honest).collect();
        let mut honest_partners = 0;
        for _ in 0..100 {
            let partners = gossip_partners(peers.clone());
            assert_eq!(partners.len(), GOSSIP_FANOUT);
            let sybil_partners = partners.iter().filter(|p| p.0[0] == SYBIL).count();
            assert!(sybil_partners <= 1, "one identity of the sybil address at most: {sybil_partners}");
            honest_partners += GOSSIP_FANOUT - sybil_partners;
        }
        // 3 of 4 addresses are honest: 225 of 300 draws on average.
        assert!(honest_partners >= 200, "honest nodes are most partners: {honest_partners} of 300");
    }
}
