//! The network side of a node: a listener, one connection per peer, gossip
//! membership, and the requests that replicate and fetch blobs.

mod admission;
pub mod audit;
pub(crate) mod budget;
mod conn;
pub mod frame;
mod gossip;
mod known_peers;
mod log_limit;
mod membership;
pub mod memory;
pub mod placement;
pub mod secure;
mod service;
mod traffic;
mod transfer;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use self::admission::Admission;
use self::budget::{MemoryBudget, Source};
use self::conn::{handshake, Connection, FramedStream};
use self::frame::{Request, Response};
use self::gossip::Rejoin;
use self::log_limit::LogLimit;
use self::membership::{PeerTable, Timing};
use self::secure::Credentials;
pub use self::traffic::PeerTraffic;
use self::traffic::Traffic;
use self::transport::{BoxStream, Transport};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::identity::{NodeId, PeerInfo};
use crate::store::BlobStore;

/// How long a peer that let a request time out is asked last by fetches.
const SLOW_PEER_PENALTY: Duration = Duration::from_secs(30);
/// Most misbehaving peers whose strikes are remembered (then forgotten at once).
const MAX_TRACKED_PEERS: usize = 1024;

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
    /// Gossip record signatures checked, and gossip messages dropped for a bad one.
    pub gossip_signatures_checked: AtomicU64,
    pub gossip_rejected: AtomicU64,
    /// Possession audits of peers answered (or timed out), and of those the failed ones.
    pub audits: AtomicU64,
    pub audits_failed: AtomicU64,
    /// How long each blob fetched took to come from the peer that served it.
    pub fetch_latency: crate::metrics::Histogram,
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
    /// Bytes, errors and fetch times by peer (pruned with the peer table).
    traffic: Traffic,
    /// Bounds the warnings that peers and outsiders can cause.
    warnings: Warnings,
    /// Bootstrap addresses whose last attempt failed.
    unreachable: Mutex<std::collections::HashSet<String>>,
    /// Bootstrap addresses (and saved peers) whose node refused this
    /// node's network key: not tried again.
    refused: Mutex<std::collections::BTreeSet<String>>,
    /// Peers that served a blob failing verification or failed a possession audit, and when.
    liars: Mutex<HashMap<NodeId, Instant>>,
    /// Gossip messages with bad signatures, by sender.
    gossip_strikes: Mutex<HashMap<NodeId, u32>>,
    /// The seats of the listener (handshakes, inbound connections).
    admission: Admission,
    /// The memory peers can make this node hold, over all connections.
    budget: Arc<MemoryBudget>,
    cancel: CancellationToken,
}

/// The warnings of events that peers and outsiders can cause, each logged
/// at a bounded rate, the rest counted (see `LogLimit`).
struct Warnings {
    refusals: LogLimit,
    accept_failures: LogLimit,
    liars: LogLimit,
    bad_blobs_stored: LogLimit,
}

impl Warnings {
    fn new() -> Warnings {
        Warnings {
            refusals: LogLimit::of_peer_events("refused connections"),
            accept_failures: LogLimit::of_peer_events("failed accepts"),
            liars: LogLimit::of_peer_events("peers that served bad blobs"),
            bad_blobs_stored: LogLimit::of_peer_events("blobs refused for failing verification"),
        }
    }

    /// Logs how many events of each kind were not logged in windows that
    /// have ended (each gossip round), so that a burst's count is logged
    /// even when no later event comes to carry it.
    fn report_skipped(&self) {
        for limit in [&self.refusals, &self.accept_failures, &self.liars, &self.bad_blobs_stored] {
            limit.report_skipped();
        }
        conn::CLOSING_WARNINGS.report_skipped();
    }
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
            traffic: Traffic::default(),
            warnings: Warnings::new(),
            unreachable: Mutex::default(),
            refused: Mutex::default(),
            liars: Mutex::default(),
            gossip_strikes: Mutex::default(),
            admission: Admission::new(&config.limits),
            budget: Arc::new(MemoryBudget::new(config.memory_budget)),
            cancel,
        });
        let n = net.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = n.cancel.cancelled() => break,
                };
                match accepted {
                    Ok((stream, remote)) => {
                        // Never refused here: a full room gives up the
                        // oldest seat of the heaviest source (admission.rs).
                        let seat = n.admission.handshake(remote.ip());
                        tokio::spawn(n.clone().accept(stream, remote, seat));
                    }
                    Err(e) => {
                        // Out of file descriptors, say: a flood can cause it.
                        n.warnings.accept_failures.warn(|| tracing::warn!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        tokio::spawn(net.clone().gossip_loop());
        // A first, bounded attempt at every bootstrap address before start
        // returns, so a new node can get files at once; then retries in the
        // background, of the addresses that did not answer only.
        let first = futures::future::join_all(config.bootstrap.iter().map(|addr| {
            let net = net.clone();
            async move {
                match tokio::time::timeout(
                    net.config.limits.handshake_timeout,
                    net.join_through(addr, Rejoin::Bootstrap),
                )
                .await
                {
                    Ok(Ok(_)) => FirstAttempt::Joined,
                    Ok(Err(e)) if e.key_refused => FirstAttempt::KeyRefused(e.reason()),
                    _ => {
                        tracing::info!(%addr, "bootstrap node not reachable yet; will keep trying");
                        net.unreachable.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.clone());
                        FirstAttempt::Unreachable
                    }
                }
            }
        }))
        .await;
        // Every bootstrap node that answered refused our key: this node is
        // not of that network, whatever the silent addresses would say.
        if !first.iter().any(|a| matches!(a, FirstAttempt::Joined)) {
            if let Some(error) = refusal_of_all(&config.bootstrap, &first) {
                net.cancel.cancel();
                return Err(error);
            }
        }
        for (addr, attempt) in config.bootstrap.iter().zip(first) {
            match attempt {
                FirstAttempt::KeyRefused(e) => net.note_key_refusal(Rejoin::Bootstrap, addr, &e),
                FirstAttempt::Joined => {
                    tokio::spawn(net.clone().bootstrap_loop(addr.clone(), Rejoin::Bootstrap, false));
                }
                FirstAttempt::Unreachable => {
                    tokio::spawn(net.clone().bootstrap_loop(addr.clone(), Rejoin::Bootstrap, true));
                }
            }
        }
        // The peers this node knew when it last ran: a restart rejoins
        // without being given a bootstrap address again.
        for addr in known_peers::load(&config.data_dir) {
            if !config.bootstrap.contains(&addr) && addr != advertised.to_string() {
                tokio::spawn(net.clone().bootstrap_loop(addr, Rejoin::SavedPeer, true));
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

    /// Connections closed to give their seat to a newcomer (admission.rs).
    pub(crate) fn connections_evicted(&self) -> u64 {
        self.admission.given_up()
    }

    /// Bytes of the memory budget held now.
    pub(crate) fn memory_held(&self) -> u64 {
        self.budget.held()
    }

    /// Connections closed for waiting too long for the memory budget.
    pub(crate) fn connections_over_budget(&self) -> u64 {
        self.budget.connections_closed()
    }

    /// Logs the waits for the memory budget not logged in an ended window.
    pub(crate) fn log_budget_waits(&self) {
        self.budget.log_skipped();
    }

    /// Logs a refused connection, at a bounded rate.
    fn log_refusal(&self, remote: SocketAddr, reason: &str) {
        self.warnings.refusals.warn(|| tracing::warn!(%remote, "refused a connection: {reason}"));
    }

    /// Handshakes an incoming stream, holding its handshake seat meanwhile,
    /// then serves it while it lives, holding an inbound seat. A seat given
    /// up to a newcomer ends the handshake or closes the connection.
    async fn accept(self: Arc<Self>, stream: BoxStream, remote: SocketAddr, seat: admission::Ticket) {
        let result = tokio::select! {
            r = handshake(stream, &self.creds, false, None, &self.config.limits) => r,
            _ = seat.evicted() => return,
        };
        drop(seat);
        let (framed, peer) = match result {
            Ok(done) => done,
            Err(reason) => {
                self.log_refusal(remote, &reason.to_string());
                return;
            }
        };
        let seat = self.admission.inbound(remote.ip());
        let (_, conn) = self.register(framed, peer.id, peer.listen, remote.ip(), false);
        tokio::select! {
            _ = conn.closed() => {}
            _ = seat.evicted() => conn.close(),
        }
    }

    /// Closes the connection of a peer that broke the rules (logged at a bounded rate).
    pub(crate) fn close_misbehaving(&self, peer: NodeId, reason: &str) {
        let conn = self.conns.lock().unwrap_or_else(|e| e.into_inner()).get(&peer).cloned();
        if let Some(conn) = conn {
            conn::warn_closing(Some(conn.peer_listen), reason);
            conn.close();
        }
    }

    /// Adds a handshaken connection, keeping one per peer: of two, the one
    /// dialed by the lower node id wins on both sides. Returns the connection
    /// kept for the peer, and the one just made (closed if it lost).
    /// `source` is the address the connection comes from (for its share of
    /// the memory budget).
    fn register(
        self: &Arc<Self>,
        framed: FramedStream,
        peer: NodeId,
        listen: SocketAddr,
        source: std::net::IpAddr,
        outbound: bool,
    ) -> (Arc<Connection>, Arc<Connection>) {
        self.table.observe(peer, listen, outbound);
        let service: Arc<dyn conn::Handler> = Arc::new(service::Service(self.clone()));
        let limits = conn::Limits {
            idle_timeout: self.config.idle_timeout,
            budget: self.budget.clone(),
            source: Source::of(source),
        };
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
        let (framed, peer) =
            handshake(stream, &self.creds, true, expected, &self.config.limits).await.map_err(|e| match e {
                secure::HandshakeError::NetworkKey(_) => {
                    DialError { error: Error::Network(format!("{addr}: {e}{KEY_REFUSAL_HINT}")), key_refused: true }
                }
                e => Error::Network(format!("handshake with {addr} failed: {e}")).into(),
            })?;
        // Reached at `addr`, proving its id: that is where it listens.
        Ok(self.register(framed, peer.id, addr, addr.ip(), true).0)
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
        if result.is_err() || matches!(result, Ok(Response::Error { .. })) {
            self.note_traffic(peer, |t| t.errors += 1);
        }
        result
    }

    /// Notes an address whose node refused this node's network key, with
    /// one line: it is not tried again.
    fn note_key_refusal(&self, kind: Rejoin, addr: &str, why: &str) {
        self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).remove(addr);
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.to_string());
        tracing::error!(%addr, "{} refused this node's network key, not trying it again: {why}", kind.what());
    }

    /// The addresses whose node refused this node's network key.
    pub(crate) fn refused_bootstrap(&self) -> Vec<String> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Updates what this node exchanged with `peer` (see [`PeerTraffic`]).
    pub(crate) fn note_traffic(&self, peer: NodeId, update: impl FnOnce(&mut PeerTraffic)) {
        self.traffic.record(peer, MAX_TRACKED_PEERS, update);
    }

    /// What this node exchanged with each peer still in its table.
    pub(crate) fn traffic(&self) -> HashMap<NodeId, PeerTraffic> {
        self.traffic.snapshot()
    }

    /// Drops the traffic of peers the table forgot.
    pub(crate) fn forget_old_traffic(&self) {
        self.traffic.retain(|id| self.table.addr_of(id).is_some());
    }

    /// This node's id.
    pub(crate) fn me(&self) -> NodeId {
        self.me
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

/// How the first attempt at a bootstrap address went.
enum FirstAttempt {
    Joined,
    /// Its node refused this node's network key (why): final for that address.
    KeyRefused(String),
    /// No answer (yet): retried in the background.
    Unreachable,
}

/// The error a start fails with when no bootstrap node was joined and at
/// least one refused the network key (the others did not answer); `None`
/// when none refused, and retrying the silent ones may still help.
fn refusal_of_all(addrs: &[String], attempts: &[FirstAttempt]) -> Option<Error> {
    let mut refusal = None;
    let mut silent = Vec::new();
    for (addr, attempt) in addrs.iter().zip(attempts) {
        match attempt {
            FirstAttempt::KeyRefused(why) if refusal.is_none() => refusal = Some(why.clone()),
            FirstAttempt::Unreachable => silent.push(addr.as_str()),
            _ => {}
        }
    }
    let refusal = refusal?;
    Some(Error::Network(if silent.is_empty() {
        refusal
    } else {
        format!("{refusal}; not reached either: {}", silent.join(", "))
    }))
}

impl DialError {
    /// Why, without the error kind's prefix.
    fn reason(self) -> String {
        match self.error {
            Error::Network(why) => why,
            e => e.to_string(),
        }
    }
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

/// Refuses, before anything is bound or written, an advertise setting that
/// [`advertised_address`] would refuse once `listen` is bound. A listen
/// address that does not resolve is left to the bind to explain.
pub(crate) async fn check_advertise(listen: &str, advertise: Option<&str>) -> Result<()> {
    match tokio::net::lookup_host(listen).await.ok().and_then(|mut a| a.next()) {
        Some(bound) => advertised_address(advertise, bound).await.map(|_| ()),
        None => Ok(()),
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
