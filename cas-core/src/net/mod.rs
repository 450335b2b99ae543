//! The network side of a node: a listener, one connection per peer, gossip
//! membership, and the requests that replicate and fetch blobs.

mod conn;
pub mod frame;
mod known_peers;
mod log_limit;
mod membership;
pub mod memory;
pub mod placement;
pub mod secure;
mod service;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use rand::seq::IndexedRandom;
use tokio_util::sync::CancellationToken;

use self::conn::{handshake, Connection, FramedStream};
use self::frame::{Request, Response, MAX_HAS_BATCH};
use self::log_limit::LogLimit;
use self::membership::{PeerTable, Timing};
use self::placement::rank_nodes;
use self::secure::Credentials;
use self::transport::{BoxStream, Transport};
use crate::blocking::blocking;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::BlobId;
use crate::identity::Identity;
use crate::identity::{NodeId, PeerInfo, PeerState};
use crate::store::{BlobStore, VerifiedBlob};

/// Peers each gossip round talks to.
const GOSSIP_FANOUT: usize = 3;
/// Nodes only heard of (not yet met) a fetch asks, after every peer.
const FETCH_CANDIDATES: usize = 8;
/// Every this many gossip rounds, the alive peers are saved for the next start.
const KNOWN_PEERS_EVERY: u64 = 10;
/// Candidates (peers heard of, not yet met) each gossip round dials.
const PROBES_PER_ROUND: usize = 3;
/// Most inbound connections served at once; more are refused at accept.
const MAX_INBOUND_CONNECTIONS: usize = 1024;
/// Most inbound connections in their handshake at once, and from one address.
const MAX_HANDSHAKING: usize = 128;
const MAX_HANDSHAKING_PER_IP: usize = 32;
/// How long a peer that let a request time out is asked last by fetches.
const SLOW_PEER_PENALTY: Duration = Duration::from_secs(30);
/// A fetch whose holder has not answered within HEDGE_FACTOR times the
/// median of recent fetches (at least HEDGE_FLOOR, at most the request
/// timeout) asks the next holder too, and takes the first good answer.
const HEDGE_FACTOR: u32 = 4;
const HEDGE_FLOOR: Duration = Duration::from_millis(50);
/// Most requests one fetch has in flight (the first and one hedge).
const MAX_ASKS: usize = 2;
/// Fetch times the hedge delay is the median of.
const FETCH_SAMPLES: usize = 32;
/// Least time between two warnings about one unreachable bootstrap address.
const BOOTSTRAP_WARN_EVERY: Duration = Duration::from_secs(60);
/// Longest wait between two attempts at an unreachable bootstrap address.
const MAX_BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(30);
/// Refused connections logged per REFUSALS_LOG_WINDOW at most; the rest are counted.
const REFUSALS_LOGGED: u32 = 20;
const REFUSALS_LOG_WINDOW: Duration = Duration::from_secs(10);

/// Traffic counters.
#[derive(Default)]
pub(crate) struct NetStats {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub requests_served: AtomicU64,
    pub verification_failures: AtomicU64,
    pub repaired: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub hedged_requests: AtomicU64,
}

/// What a node brings to the network besides its configuration.
pub(crate) struct Keys {
    pub identity: Identity,
    pub network_key: [u8; 32],
    /// This start's incarnation (see `DataDir::next_incarnation`).
    pub incarnation: u64,
}

pub(crate) struct Network {
    me: NodeId,
    /// What this node proves in each handshake.
    creds: Credentials,
    /// The address peers dial us at.
    advertised: SocketAddr,
    config: Config,
    transport: Arc<dyn Transport>,
    table: PeerTable,
    conns: Mutex<HashMap<NodeId, Arc<Connection>>>,
    /// One dial at a time per peer, so a pair never opens two connections
    /// from one side; an entry lives while someone dials or waits to.
    dialing: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>,
    store: BlobStore,
    pub(crate) stats: NetStats,
    /// Peers whose last request timed out (or was outrun by a hedge), and when.
    slow: Mutex<HashMap<NodeId, Instant>>,
    /// The last FETCH_SAMPLES times a fetched blob took to arrive.
    fetch_times: Mutex<std::collections::VecDeque<Duration>>,
    /// Bounds the warnings about refused connections, which anyone can cause.
    refusals: LogLimit,
    /// Bootstrap addresses whose last attempt failed.
    unreachable: Mutex<std::collections::HashSet<String>>,
    cancel: CancellationToken,
}

/// How many entries the maps of the network side hold (for tests: closed
/// connections and finished dials must leave none behind).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetEntries {
    pub connections: usize,
    pub dialing: usize,
    pub slow: usize,
}

/// A place in the `dialing` map, removed when its last user leaves.
struct DialSlot<'a> {
    net: &'a Network,
    peer: NodeId,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> DialSlot<'a> {
    fn enter(net: &'a Network, peer: NodeId) -> DialSlot<'a> {
        let lock = net.dialing.lock().unwrap_or_else(|e| e.into_inner()).entry(peer).or_default().clone();
        DialSlot { net, peer, lock }
    }
}

impl Drop for DialSlot<'_> {
    fn drop(&mut self) {
        let mut dialing = self.net.dialing.lock().unwrap_or_else(|e| e.into_inner());
        // Clones are taken under this lock: two means the map's and ours.
        if Arc::strong_count(&self.lock) == 2 && dialing.get(&self.peer).is_some_and(|l| Arc::ptr_eq(l, &self.lock)) {
            dialing.remove(&self.peer);
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Network {
    /// Binds the listen address and starts the accept, gossip and bootstrap tasks.
    pub(crate) async fn start(
        config: &Config,
        listen: &str,
        keys: Keys,
        store: BlobStore,
        transport: Arc<dyn Transport>,
        cancel: CancellationToken,
    ) -> Result<Arc<Network>> {
        let mut listener = transport.listen(listen).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                Error::Network(format!("cannot listen on {listen}: {e} (another process has that port)"))
            }
            std::io::ErrorKind::AddrNotAvailable => {
                Error::Network(format!("cannot listen on {listen}: {e} (that address is not one of this machine's)"))
            }
            _ => Error::InvalidArgument(format!(
                "cannot listen on {listen:?}: {e} (expected HOST:PORT, e.g. 127.0.0.1:7000 or 0.0.0.0:7000)"
            )),
        })?;
        let bound = listener.local_addr().map_err(|e| Error::io("reading the listen address", e))?;
        let advertised = advertised_address(config.advertise.as_deref(), bound).await?;
        let me = keys.identity.id();
        let timing = Timing {
            suspect_after: config.suspect_after,
            dead_after: config.dead_after,
            forget_after: config.forget_after,
        };
        let table = PeerTable::new(keys.identity.clone(), advertised, keys.incarnation, timing);
        let creds = Credentials::new(keys.network_key, keys.identity, advertised, config.faults.plaintext_transport);
        let net = Arc::new(Network {
            me,
            creds,
            advertised,
            config: config.clone(),
            transport,
            table,
            conns: Mutex::default(),
            dialing: Default::default(),
            store,
            stats: NetStats::default(),
            slow: Mutex::default(),
            fetch_times: Mutex::default(),
            refusals: LogLimit::new(REFUSALS_LOGGED, REFUSALS_LOG_WINDOW),
            unreachable: Mutex::default(),
            cancel,
        });
        let n = net.clone();
        let inbound = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_CONNECTIONS));
        let handshakes = Handshakes::default();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = n.cancel.cancelled() => break,
                };
                match accepted {
                    Ok((stream, remote)) => {
                        let Ok(permit) = inbound.clone().try_acquire_owned() else {
                            n.log_refusal(remote, &format!("{MAX_INBOUND_CONNECTIONS} already open"));
                            continue;
                        };
                        let Some(slot) = handshakes.enter(remote.ip()) else {
                            n.log_refusal(remote, "too many handshakes in progress (from this address, or in all)");
                            continue;
                        };
                        let n = n.clone();
                        tokio::spawn(async move {
                            if let Some(conn) = n.accept(stream, remote, slot).await {
                                conn.closed().await;
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        tokio::spawn(net.clone().gossip_loop());
        // A first, bounded attempt at every bootstrap address before start
        // returns, so a new node can get files at once; then retries in the background.
        let first = futures::future::join_all(config.bootstrap.iter().map(|addr| {
            let net = net.clone();
            async move {
                match tokio::time::timeout(conn::HANDSHAKE_TIMEOUT, net.join_through(addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) if e.key_refused => Err(Some(e.error)),
                    _ => {
                        tracing::info!(%addr, "bootstrap node not reachable yet; will keep trying");
                        net.unreachable.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.clone());
                        Err(None)
                    }
                }
            }
        }))
        .await;
        // Every bootstrap node refused our key: this node is not of that
        // network, and retrying will not change it.
        if !first.is_empty() && first.iter().all(|r| matches!(r, Err(Some(_)))) {
            net.cancel.cancel();
            let Some(Err(Some(e))) = first.into_iter().next() else { unreachable!("checked above") };
            return Err(e);
        }
        for (addr, attempt) in config.bootstrap.iter().zip(first) {
            tokio::spawn(net.clone().bootstrap_loop(addr.clone(), attempt.is_err()));
        }
        // The peers this node knew when it last ran: a restart rejoins
        // without being given a bootstrap address again.
        for addr in known_peers::load(&config.data_dir) {
            if !config.bootstrap.contains(&addr) && addr != advertised.to_string() {
                tokio::spawn(net.clone().bootstrap_loop(addr, true));
            }
        }
        tracing::info!(node = %me, %advertised, "listening");
        Ok(net)
    }

    pub(crate) fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    pub(crate) fn peers(&self) -> Vec<PeerInfo> {
        self.table.info()
    }

    pub(crate) fn entries(&self) -> NetEntries {
        NetEntries {
            connections: self.conns.lock().unwrap_or_else(|e| e.into_inner()).len(),
            dialing: self.dialing.lock().unwrap_or_else(|e| e.into_inner()).len(),
            slow: self.slow.lock().unwrap_or_else(|e| e.into_inner()).len(),
        }
    }

    /// Logs a refused connection, at a bounded rate.
    fn log_refusal(&self, remote: SocketAddr, reason: &str) {
        if let Some(skipped) = self.refusals.admit() {
            if skipped > 0 {
                tracing::warn!("{skipped} more refused connections not logged");
            }
            tracing::warn!(%remote, "refused a connection: {reason}");
        }
    }

    /// Handshakes an incoming stream (holding its handshake slot meanwhile);
    /// the connection, if it is kept.
    async fn accept(
        self: Arc<Self>,
        stream: BoxStream,
        remote: SocketAddr,
        slot: HandshakeSlot,
    ) -> Option<Arc<Connection>> {
        let result = handshake(stream, &self.creds, false, None).await;
        drop(slot);
        match result {
            Ok((framed, peer)) => Some(self.register(framed, peer.id, peer.listen, false).1),
            Err(reason) => {
                self.log_refusal(remote, &reason.to_string());
                None
            }
        }
    }

    /// Adds a handshaken connection, keeping one per peer: of two, the one
    /// dialed by the lower node id wins on both sides. Returns the connection
    /// kept for the peer, and the one just made (closed if it lost).
    fn register(
        self: &Arc<Self>,
        framed: FramedStream,
        peer: NodeId,
        listen: SocketAddr,
        outbound: bool,
    ) -> (Arc<Connection>, Arc<Connection>) {
        self.table.observe(peer, listen, outbound);
        let service: Arc<dyn conn::Handler> = Arc::new(service::Service(self.clone()));
        let limits = conn::Limits { idle_timeout: self.config.idle_timeout };
        let new = Connection::spawn(framed, peer, listen, outbound, service, &self.cancel, limits);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let keep_new = match conns.get(&peer) {
            Some(old) if !old.is_closed() && old.outbound != outbound => {
                let preferred_outbound = self.me < peer;
                outbound == preferred_outbound
            }
            _ => true,
        };
        if keep_new {
            if let Some(old) = conns.insert(peer, new.clone()) {
                old.close();
            }
            self.forget_when_closed(new.clone());
            (new.clone(), new)
        } else {
            new.close();
            (conns[&peer].clone(), new)
        }
    }

    /// Removes a connection from `conns` once it closes (unless replaced).
    fn forget_when_closed(self: &Arc<Self>, conn: Arc<Connection>) {
        let net = Arc::downgrade(self);
        tokio::spawn(async move {
            conn.closed().await;
            if let Some(net) = net.upgrade() {
                let mut conns = net.conns.lock().unwrap_or_else(|e| e.into_inner());
                if conns.get(&conn.peer).is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                    conns.remove(&conn.peer);
                }
            }
        });
    }

    /// Dials an address, handshakes and registers the connection. With
    /// `expected`, a node proving another id there is dropped unregistered.
    async fn dial(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> std::result::Result<Arc<Connection>, DialError> {
        if addr == self.advertised {
            return Err(Error::Network(format!("{addr} is this node's own address")).into());
        }
        let stream = tokio::time::timeout(self.config.request_timeout, self.transport.dial(addr))
            .await
            .map_err(|_| Error::Timeout(format!("connecting to {addr}")))?
            .map_err(|e| Error::Network(format!("cannot connect to {addr}: {e}")))?;
        let (framed, peer) = handshake(stream, &self.creds, true, expected).await.map_err(|e| match e {
            secure::HandshakeError::NetworkKey(_) => {
                DialError { error: Error::Network(format!("{addr}: {e}{KEY_REFUSAL_HINT}")), key_refused: true }
            }
            e => Error::Network(format!("handshake with {addr} failed: {e}")).into(),
        })?;
        Ok(self.register(framed, peer.id, peer.listen, true).0)
    }

    /// The live connection to `peer`, dialing its advertised address if needed.
    async fn connection(self: &Arc<Self>, peer: NodeId) -> Result<Arc<Connection>> {
        let live = |net: &Network| {
            net.conns.lock().unwrap_or_else(|e| e.into_inner()).get(&peer).filter(|c| !c.is_closed()).cloned()
        };
        if let Some(c) = live(self) {
            return Ok(c);
        }
        let slot = DialSlot::enter(self, peer);
        let _guard = slot.lock.lock().await;
        if let Some(c) = live(self) {
            return Ok(c);
        }
        let addr = self.table.addr_of(&peer).ok_or_else(|| Error::Network(format!("unknown peer {peer}")))?;
        Ok(self.dial(addr, Some(peer)).await?)
    }

    /// One request to a peer; retried once on a fresh connection if the old one had closed.
    pub(crate) async fn request(self: &Arc<Self>, peer: NodeId, body: impl Fn() -> Request) -> Result<Response> {
        let timeout = self.config.request_timeout;
        let conn = self.connection(peer).await?;
        let result = match conn.request(body(), timeout).await {
            Err(Error::Network(_)) if conn.is_closed() => self.connection(peer).await?.request(body(), timeout).await,
            other => other,
        };
        if result.is_ok() {
            // An answer is news that the peer lives, whatever gossip says.
            self.table.refresh(&peer);
        }
        if let Err(Error::Timeout(_)) = &result {
            self.stats.request_timeouts.fetch_add(1, Ordering::Relaxed);
            self.slow.lock().unwrap_or_else(|e| e.into_inner()).insert(peer, Instant::now());
        }
        result
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

    async fn gossip_loop(self: Arc<Self>) {
        let (mut rounds, mut saved) = (0u64, Vec::new());
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
                let alive = self.table.peers_in(&[PeerState::Alive]).into_iter().map(|(_, a)| a).collect();
                if let Some(list) = known_peers::changed(&mut saved, alive) {
                    let dir = self.config.data_dir.clone();
                    // Off the gossip loop: a slow disk must not delay heartbeats.
                    tokio::spawn(blocking(move || known_peers::save(&dir, &list)));
                }
            }
            self.slow.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, at| at.elapsed() < SLOW_PEER_PENALTY);
            let skipped = self.refusals.take_skipped();
            if skipped > 0 {
                tracing::warn!("{skipped} more refused connections not logged");
            }
            let candidates = self.table.peers_in(&[PeerState::Alive, PeerState::Suspect]);
            let targets: Vec<NodeId> = candidates.sample(&mut rand::rng(), GOSSIP_FANOUT).map(|(id, _)| *id).collect();
            for peer in targets {
                let net = self.clone();
                tokio::spawn(async move {
                    match net.request(peer, || Request::Gossip { peers: net.table.gossip_records() }).await {
                        Ok(Response::Gossip { peers }) => {
                            net.table.merge(peers, now_ms());
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

    /// Pings a candidate or dead peer in the background: one that answers
    /// is a live peer, a candidate that does not is dropped.
    fn probe(self: &Arc<Self>, peer: NodeId) {
        let net = self.clone();
        tokio::spawn(async move {
            match net.request(peer, || Request::Ping).await {
                Ok(Response::Pong) => net.table.touch(&peer),
                _ => net.table.drop_candidate(&peer),
            }
        });
    }

    /// One attempt to join through a bootstrap address: dial it and pull its
    /// peer table. `Ok(true)` if joined, `Ok(false)` if already known.
    async fn join_through(self: &Arc<Self>, addr: &str) -> std::result::Result<bool, DialError> {
        let sock = tokio::net::lookup_host(addr)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::Network(format!("bootstrap address {addr} does not resolve")))?;
        if sock == self.advertised || self.table.knows_addr(sock) {
            return Ok(false);
        }
        let conn = self.dial(sock, None).await?;
        tracing::info!(%addr, peer = %conn.peer, "joined through bootstrap node");
        let pull = conn.request(Request::Gossip { peers: self.table.gossip_records() }, self.config.request_timeout);
        if let Ok(Response::Gossip { peers }) = pull.await {
            // Meet at once the nodes the bootstrap node knows.
            for peer in self.table.merge(peers, now_ms()) {
                self.probe(peer);
            }
        }
        Ok(true)
    }

    /// Keeps trying a bootstrap address, with back-off, until its node is
    /// known; checks again later in case it is forgotten.
    /// Keeps trying a bootstrap address, with back-off, until its node is
    /// known; checks again later in case it is forgotten. While it cannot be
    /// reached it is listed by [`Network::unreachable_bootstrap`] and a
    /// warning says so, at once and then at most once a minute.
    async fn bootstrap_loop(self: Arc<Self>, addr: String, first_failed: bool) {
        let base = self.config.gossip_interval;
        let mut backoff = base;
        let mut wait = if first_failed { base } else { base * 5 };
        let mut warned: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => break,
            }
            wait = match self.join_through(&addr).await {
                Ok(_) => {
                    if self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr) {
                        tracing::warn!(%addr, "bootstrap node reached");
                    }
                    (backoff, warned) = (base, None);
                    base * 5
                }
                Err(e) => {
                    self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.clone());
                    if warned.is_none_or(|at| at.elapsed() >= BOOTSTRAP_WARN_EVERY) {
                        tracing::warn!(%addr, "cannot reach bootstrap node, still trying: {}", e.error);
                        warned = Some(Instant::now());
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

    /// This node's id.
    pub(crate) fn me(&self) -> NodeId {
        self.me
    }

    /// The peers alive now.
    pub(crate) fn alive_peers(&self) -> Vec<NodeId> {
        self.table.peers_in(&[PeerState::Alive]).into_iter().map(|(id, _)| id).collect()
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
                Ok(())
            }
            Ok(Response::Refused { reason, full }) => Err(NotStored { full, reason: format!("refused: {reason}") }),
            Ok(other) => Err(NotStored::failed(format!("unexpected answer to store: {other:?}"))),
            Err(e) => Err(NotStored::failed(e.to_string())),
        }
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
        let mut candidates = self.ranked(&id, &[PeerState::Alive]).into_iter();
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
        // A peer that just let a request time out is asked last (stable: rank order otherwise).
        candidates.sort_by_key(|p| self.recently_slow(p));
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
                    self.record_fetch_time(started.elapsed());
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
                        return Some(blob);
                    }
                    Err(e) => {
                        self.stats.verification_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, "peer served a bad blob: {e}");
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
        let mut times = self.fetch_times.lock().unwrap_or_else(|e| e.into_inner());
        if times.len() == FETCH_SAMPLES {
            times.pop_front();
        }
        times.push_back(took);
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

/// Inbound connections still in their handshake, at most
/// [`MAX_HANDSHAKING`] in all and [`MAX_HANDSHAKING_PER_IP`] from one
/// address: connections that never complete a handshake (anyone can open
/// them) cannot take the room of members' connections.
#[derive(Clone, Default)]
struct Handshakes(Arc<Mutex<HashMap<std::net::IpAddr, usize>>>);

/// A handshake in progress; its room is given back on drop.
struct HandshakeSlot {
    handshakes: Handshakes,
    ip: std::net::IpAddr,
}

impl Handshakes {
    fn enter(&self, ip: std::net::IpAddr) -> Option<HandshakeSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().sum();
        let here = map.entry(ip).or_default();
        if total >= MAX_HANDSHAKING || *here >= MAX_HANDSHAKING_PER_IP {
            if *here == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *here += 1;
        Some(HandshakeSlot { handshakes: self.clone(), ip })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut map = self.handshakes.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Ends the message of a dial refused for the network key.
const KEY_REFUSAL_HINT: &str = " (every node of a network needs the same network key: copy the network_key \
     file of the network's first node and start this node with it)";

/// A failed dial or join; `key_refused` when the other node refused this
/// node's network key (retrying cannot help).
struct DialError {
    error: Error,
    key_refused: bool,
}

impl From<Error> for DialError {
    fn from(error: Error) -> DialError {
        DialError { error, key_refused: false }
    }
}

impl From<DialError> for Error {
    fn from(e: DialError) -> Error {
        e.error
    }
}

/// The address peers are told to dial: `advertise` if given (its port 0
/// meaning the bound port), else the bound address, which must then be a
/// specific one. Never loopback for a node bound beyond loopback.
async fn advertised_address(advertise: Option<&str>, bound: SocketAddr) -> Result<SocketAddr> {
    let Some(given) = advertise else {
        if bound.ip().is_unspecified() {
            return Err(Error::InvalidArgument(format!(
                "listening on {bound} (every interface), peers need an address to dial: set advertise \
                 (cas serve --advertise HOST:PORT) to this machine's address as the peers see it"
            )));
        }
        return Ok(bound);
    };
    let mut addr = tokio::net::lookup_host(given).await.ok().and_then(|mut a| a.next()).ok_or_else(|| {
        Error::InvalidArgument(format!("advertise address {given:?} is not HOST:PORT or does not resolve"))
    })?;
    if addr.port() == 0 {
        addr.set_port(bound.port());
    }
    if addr.ip().is_unspecified() {
        return Err(Error::InvalidArgument(format!("advertise address {given} is not one peers can dial")));
    }
    if addr.ip().is_loopback() && !bound.ip().is_loopback() {
        return Err(Error::InvalidArgument(format!(
            "advertise address {given} is loopback but the node listens on {bound}: peers on other machines could not reach it"
        )));
    }
    Ok(addr)
}

/// Why a peer did not take a blob ([`Network::store_on`]).
#[derive(Debug)]
pub(crate) struct NotStored {
    /// It refused for lack of space.
    pub full: bool,
    pub reason: String,
}

impl NotStored {
    fn failed(reason: String) -> NotStored {
        NotStored { full: false, reason }
    }
}

impl std::fmt::Display for NotStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}
