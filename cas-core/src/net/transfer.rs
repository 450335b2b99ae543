//! Moving blobs between nodes: storing copies on peers in placement order
//! (`replicate`), fetching a blob from its holders with hedged requests
//! (`fetch`), and asking who holds what (`has_blobs`, `locate`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

use super::frame::{Request, Response, MAX_HAS_BATCH};
use super::placement::{diverse_order, rank_nodes};
use super::{Network, NotStored, SLOW_PEER_PENALTY};
use crate::blocking::blocking;
use crate::format::BlobId;
use crate::identity::{NodeId, PeerState};
use crate::store::{Origin, VerifiedBlob};

/// Nodes only heard of (not yet met) a fetch asks, after every peer.
const FETCH_CANDIDATES: usize = 8;
/// A fetch whose holder has not answered within HEDGE_FACTOR times the
/// median of recent fetches (at least HEDGE_FLOOR, at most the request
/// timeout) asks the next holder too, and takes the first good answer.
const HEDGE_FACTOR: u32 = 4;
const HEDGE_FLOOR: Duration = Duration::from_millis(50);
/// Most requests one fetch has in flight (the first and one hedge).
const MAX_ASKS: usize = 2;
/// Fetch times the hedge delay is the median of.
const FETCH_SAMPLES: usize = 32;

impl Network {
    /// Asks `peer`, which served a blob failing verification or failed a
    /// possession audit (`what` it did), last for the `liar_penalty`;
    /// repair passes over it meanwhile. The map holds at most
    /// MAX_TRACKED_PEERS, and the warning is rate-limited: a party with many
    /// identities can make many of them lie.
    pub(crate) fn note_liar(&self, peer: NodeId, what: &str) {
        let penalty = self.config.limits.liar_penalty;
        {
            let mut liars = self.liars.lock().unwrap_or_else(|e| e.into_inner());
            if liars.len() >= super::MAX_TRACKED_PEERS && !liars.contains_key(&peer) {
                liars.retain(|_, at| at.elapsed() < penalty);
            }
            if liars.len() < super::MAX_TRACKED_PEERS || liars.contains_key(&peer) {
                liars.insert(peer, Instant::now());
            }
        }
        self.warnings
            .liars
            .warn(|| tracing::warn!(%peer, "peer {what} (asked last, and passed over by repair, for {penalty:?})"));
    }

    /// The peers that served a bad blob or failed an audit within the last `liar_penalty`.
    pub(crate) fn recent_liars(&self) -> HashSet<NodeId> {
        let penalty = self.config.limits.liar_penalty;
        let liars = self.liars.lock().unwrap_or_else(|e| e.into_inner());
        liars.iter().filter(|(_, at)| at.elapsed() < penalty).map(|(p, _)| *p).collect()
    }

    /// Forgets the liars whose penalty is over.
    pub(crate) fn forget_old_liars(&self) {
        let penalty = self.config.limits.liar_penalty;
        self.liars.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, at| at.elapsed() < penalty);
    }

    /// Whether `peer` served a blob that failed verification, or failed an
    /// audit, within the last `liar_penalty`.
    pub(crate) fn recently_lied(&self, peer: &NodeId) -> bool {
        let liars = self.liars.lock().unwrap_or_else(|e| e.into_inner());
        liars.get(peer).is_some_and(|at| at.elapsed() < self.config.limits.liar_penalty)
    }

    /// Whether `peer` let a request time out within the last SLOW_PEER_PENALTY.
    fn recently_slow(&self, peer: &NodeId) -> bool {
        let mut slow = self.slow.lock().unwrap_or_else(|e| e.into_inner());
        match slow.get(peer) {
            Some(at) if at.elapsed() < SLOW_PEER_PENALTY => true,
            Some(_) => {
                slow.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Which of `ids` (at most MAX_HAS_BATCH) `peer` holds; None if it did not say.
    pub(crate) async fn has_blobs(self: &Arc<Self>, peer: NodeId, ids: Vec<BlobId>) -> Option<Vec<bool>> {
        match self.request(peer, || Request::HasBlobs { ids: ids.clone() }).await {
            Ok(Response::Has { present }) if present.len() == ids.len() => Some(present),
            _ => None,
        }
    }

    /// Gives `peer` a copy of a blob; Err says why it did not take it.
    pub(crate) async fn store_on(
        self: &Arc<Self>,
        peer: NodeId,
        id: BlobId,
        data: Bytes,
    ) -> std::result::Result<(), NotStored> {
        let len = data.len() as u64;
        match self.request(peer, || Request::StoreBlob { id, data: data.clone() }).await {
            Ok(Response::Stored) => {
                self.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
                self.note_traffic(peer, |t| t.sent_bytes += len);
                Ok(())
            }
            Ok(Response::Refused { reason, full }) => Err(NotStored { full, reason: format!("refused: {reason}") }),
            Ok(other) => Err(NotStored::failed(format!("unexpected answer to store: {other:?}"))),
            Err(e) => Err(NotStored::failed(e.to_string())),
        }
    }

    /// Alive peers reached at their own listeners, in the order copies of
    /// `id` go to them: rendezvous rank
    /// over failure domains (`placement::diverse_order`), the domains of
    /// `taken` (addresses that hold a copy already) counting as used.
    pub(crate) fn placement_order(&self, id: &BlobId, taken: &[std::net::SocketAddr]) -> Vec<NodeId> {
        diverse_order(id, self.placement_targets(), taken, self.placement_diversity())
    }

    /// Alive peers this node reached at the address they advertise, with
    /// that address: the nodes copies may go to.
    pub(crate) fn placement_targets(&self) -> Vec<(NodeId, std::net::SocketAddr)> {
        self.table.placement_targets()
    }

    /// How copies spread over failure domains (`Config::placement_diversity`).
    pub(crate) fn placement_diversity(&self) -> crate::config::PlacementDiversity {
        self.config.placement_diversity
    }

    /// Alive peers ranked for `id`, best first.
    pub(crate) fn ranked(&self, id: &BlobId, states: &[PeerState]) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self.table.peers_in(states).into_iter().map(|(p, _)| p).collect();
        rank_nodes(id, &mut peers, |p| *p);
        peers
    }

    /// Stores a blob on up to `wanted` alive peers, in rank order, replacing
    /// any that refuse or fail by the next. Returns the copies in place.
    /// With `probe`, a peer is first asked whether it holds the blob already
    /// (worth a round trip when the blob was not new here either).
    pub(crate) async fn replicate(self: &Arc<Self>, id: BlobId, data: Bytes, wanted: usize, probe: bool) -> usize {
        let mut candidates = self.placement_order(&id, &[self.advertised]).into_iter();
        let mut inflight = FuturesUnordered::new();
        let attempt = |peer: NodeId| {
            let (net, data) = (self.clone(), data.clone());
            async move {
                if probe && net.has_blobs(peer, vec![id]).await == Some(vec![true]) {
                    return true;
                }
                match net.store_on(peer, id, data).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(%peer, blob = %id, "replica not stored: {e}");
                        false
                    }
                }
            }
        };
        for peer in candidates.by_ref().take(wanted) {
            inflight.push(attempt(peer));
        }
        let mut stored = 0;
        while let Some(ok) = inflight.next().await {
            if ok {
                stored += 1;
            } else if let Some(peer) = candidates.next() {
                inflight.push(attempt(peer));
            }
        }
        stored
    }

    /// Fetches a blob from peers: ranked alive peers first, then every other
    /// known peer, those that recently timed out last. Bytes that fail
    /// verification are counted and skipped. A holder slow to answer is
    /// hedged: after [`Network::hedge_delay`] the next candidate is asked
    /// too, the first good answer is taken and the other request dropped;
    /// the peer it outran is then asked last for a while, like one that
    /// timed out.
    pub(crate) async fn fetch(self: &Arc<Self>, id: BlobId) -> Option<VerifiedBlob> {
        let mut candidates = self.ranked(&id, &[PeerState::Alive]);
        candidates.extend(self.ranked(&id, &[PeerState::Suspect, PeerState::Dead]));
        // A peer that served a bad blob lately is asked last, after one
        // that just let a request time out (stable: rank order otherwise).
        candidates.sort_by_key(|p| (self.recently_lied(p), self.recently_slow(p)));
        // Then the best-ranked few of the nodes only heard of (a node that
        // just joined has met only its bootstrap node).
        let mut heard_of = self.table.candidate_ids();
        rank_nodes(&id, &mut heard_of, |p| *p);
        candidates.extend(heard_of.into_iter().take(FETCH_CANDIDATES));
        let mut candidates = candidates.into_iter();
        let ask = |peer: NodeId| {
            let net = self.clone();
            async move {
                let started = Instant::now();
                let blob = net.ask_for(peer, id).await;
                (peer, started, blob)
            }
        };
        let delay = self.hedge_delay();
        let mut asks = FuturesUnordered::new();
        let mut hedge_at = tokio::time::Instant::now();
        let mut exhausted = false;
        // The peers asked and not answered yet, and when.
        let mut out: Vec<(NodeId, Instant)> = Vec::new();
        loop {
            if asks.is_empty() {
                // The first request, or every one so far failed: the next at once.
                let next = candidates.next()?;
                out.push((next, Instant::now()));
                asks.push(ask(next));
                hedge_at = tokio::time::Instant::now() + delay;
            }
            tokio::select! {
                Some((peer, started, blob)) = asks.next() => {
                    out.retain(|(p, _)| *p != peer);
                    let Some(blob) = blob else { continue };
                    let took = started.elapsed();
                    self.record_fetch_time(took);
                    self.note_traffic(peer, |t| {
                        t.fetches += 1;
                        t.fetch_time += took;
                    });
                    // Returning drops the requests still out; the peers
                    // asked before the winner were outrun by it.
                    let mut slow = self.slow.lock().unwrap_or_else(|e| e.into_inner());
                    for (outrun, _) in out.iter().filter(|(_, at)| *at < started) {
                        slow.insert(*outrun, Instant::now());
                    }
                    return Some(blob);
                }
                _ = tokio::time::sleep_until(hedge_at), if asks.len() < MAX_ASKS && !exhausted => {
                    match candidates.next() {
                        Some(next) => {
                            self.stats.hedged_requests.fetch_add(1, Ordering::Relaxed);
                            out.push((next, Instant::now()));
                            asks.push(ask(next));
                            hedge_at = tokio::time::Instant::now() + delay;
                        }
                        None => exhausted = true,
                    }
                }
            }
        }
    }

    /// One request for a blob to one peer: the verified blob, or None.
    async fn ask_for(self: &Arc<Self>, peer: NodeId, id: BlobId) -> Option<VerifiedBlob> {
        match self.request(peer, || Request::GetBlob { id }).await {
            Ok(Response::Blob { data }) => {
                let len = data.len() as u64;
                match blocking(move || VerifiedBlob::check(id, data.into())).await {
                    Ok(blob) => {
                        self.stats.bytes_received.fetch_add(len, Ordering::Relaxed);
                        self.note_traffic(peer, |t| t.received_bytes += len);
                        return Some(blob);
                    }
                    Err(e) => {
                        self.stats.verification_failures.fetch_add(1, Ordering::Relaxed);
                        self.note_traffic(peer, |t| t.errors += 1);
                        self.note_liar(peer, &format!("served a bad blob: {e}"));
                    }
                }
            }
            Ok(Response::NotFound) => {}
            Ok(other) => tracing::debug!(%peer, blob = %id, "unexpected answer to get: {other:?}"),
            Err(e) => tracing::debug!(%peer, blob = %id, "get failed: {e}"),
        }
        None
    }

    /// How long a fetch waits for a holder before asking the next too.
    fn hedge_delay(&self) -> Duration {
        let times = self.fetch_times.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<Duration> = times.iter().copied().collect();
        drop(times);
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(HEDGE_FLOOR);
        (median * HEDGE_FACTOR).max(HEDGE_FLOOR).min(self.config.request_timeout)
    }

    fn record_fetch_time(&self, took: Duration) {
        self.stats.fetch_latency.observe(took);
        let mut times = self.fetch_times.lock().unwrap_or_else(|e| e.into_inner());
        if times.len() == FETCH_SAMPLES {
            times.pop_front();
        }
        times.push_back(took);
    }

    /// Replaces this node's lost copy of blob `id` (quarantined, or its
    /// file gone) with a verified one fetched from a peer, kept with
    /// `origin` (how the lost copy came). Whether it did.
    pub(crate) async fn restore(self: &Arc<Self>, id: BlobId, origin: Origin) -> bool {
        let Some(blob) = self.fetch(id).await else {
            tracing::warn!(blob = %id, "no peer has a good copy of a lost blob yet; repair may bring one");
            return false;
        };
        let store = self.store.clone();
        match blocking(move || store.put_from(&blob, origin)).await {
            Ok(_) => {
                tracing::info!(blob = %id, "replaced a lost blob with a good copy from a peer");
                true
            }
            Err(e) => {
                tracing::warn!(blob = %id, "cannot store the good copy of a lost blob: {e}");
                false
            }
        }
    }

    /// Which alive peers hold each blob.
    pub(crate) async fn locate(self: &Arc<Self>, ids: &[BlobId]) -> HashMap<BlobId, Vec<NodeId>> {
        let peers = self.table.peers_in(&[PeerState::Alive]);
        let mut asks = FuturesUnordered::new();
        for (peer, _) in peers {
            for batch in ids.chunks(MAX_HAS_BATCH) {
                let (net, batch) = (self.clone(), batch.to_vec());
                asks.push(async move {
                    let answer = net.request(peer, || Request::HasBlobs { ids: batch.clone() }).await;
                    (peer, batch, answer)
                });
            }
        }
        let mut out: HashMap<BlobId, Vec<NodeId>> = HashMap::new();
        while let Some((peer, batch, answer)) = asks.next().await {
            if let Ok(Response::Has { present }) = answer {
                for (id, has) in batch.iter().zip(present) {
                    if has {
                        out.entry(*id).or_default().push(peer);
                    }
                }
            }
        }
        out
    }
}
