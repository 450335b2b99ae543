//! The node: a data directory, its blob store and (with networking) its
//! peers. Put and get pipelines live in `put.rs` and `get.rs`.

mod audits;
mod cancel;
mod get;
mod output;
mod put;
mod reader;
mod repair;
mod scrub;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::blocking::{blocking, compute};
pub use crate::identity::{NodeId, PeerInfo, PeerState};
pub use audits::{AUDIT_BUDGET, AUDIT_SAMPLE};
pub use cancel::Cancel;
pub use get::StatInfo;
pub use put::PutReport;
pub use reader::FileReader;
pub use repair::{RepairReport, SWEEP as REPAIR_SWEEP};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::{BlobId, Manifest};
use crate::key::Key;
use crate::metrics::{Histogram, LatencyHistogram};
use crate::net::transport::{TcpTransport, Transport};
use crate::net::{Keys, Network};
use crate::store::{BlobStore, Catalog, DataDir, FileEntry, Origin, VerifiedBlob};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Counters of a node since it started (the store figures are current).
#[derive(Debug, Clone, Default)]
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
    /// Blobs (local or from peers) that failed verification.
    pub verification_failures: u64,
    /// Peers currently alive.
    pub peers_alive: u64,
    /// Copies this node's repair rounds gave to peers that lacked them.
    pub blobs_repaired: u64,
    /// Copies repair offered to a peer that refused them for lack of space
    /// (the next node in rank is given them instead).
    pub repair_refused_full: u64,
    /// Peers repair passes over now because they refused a copy for lack
    /// of space (for 4 repair intervals after the refusal).
    pub peers_full: u64,
    /// 1 while this node cannot write (its disk is full, or its blob index
    /// failed a write): it serves what it holds; see `Node::write_problem`.
    pub cannot_write: u64,
    /// Requests to peers that timed out (the peer is then asked last by
    /// fetches for a while).
    pub request_timeouts: u64,
    /// Requests for a blob sent to a second holder because the first was
    /// slow to answer (hedged fetches; the first good answer is taken).
    pub hedged_requests: u64,
    /// Blobs the background scrub read and found good.
    pub blobs_scrubbed: u64,
    /// Bytes of those blobs.
    pub bytes_scrubbed: u64,
    /// Stored blobs the scrub found corrupt (and quarantined).
    pub scrub_corrupt: u64,
    /// Stored blobs whose file the scrub found gone (removed behind the
    /// node's back), dropped from the index.
    pub scrub_missing: u64,
    /// Of the corrupt and missing blobs, those replaced by a good copy from a peer.
    pub scrub_restored: u64,
    /// Gossip messages dropped whole for a record with a bad signature
    /// (a peer that sends them again is disconnected).
    pub gossip_rejected: u64,
    /// Connections (in their handshake, or handshaken inbound) closed to
    /// give their seat to a newcomer: the listener was full, or their
    /// source over its share (a flood).
    pub connections_evicted: u64,
    /// Possession audits this node's repair made of peers' copies (a
    /// challenge only the blob's bytes answer), answered or timed out.
    pub audits: u64,
    /// Of those, the ones failed (a wrong answer, a claimed blob said to be
    /// lacking, no answer in time): the peer stopped counting as a copy and
    /// is passed over for 10 minutes.
    pub audits_failed: u64,
    /// Bytes of the memory budget held now (`Config::memory_budget`):
    /// frames arriving, request bodies being served, answers not yet written.
    pub memory_held: u64,
    /// Connections closed after waiting for the memory budget for the idle
    /// timeout (their source over its share, or the budget full).
    pub connections_over_budget: u64,
    /// How long whole puts took (files, buffers and streams that were stored).
    pub put_latency: LatencyHistogram,
    /// How long whole gets took (to a file, into memory, or a download of
    /// a whole file through a reader's stream).
    pub get_latency: LatencyHistogram,
    /// How long one blob took to come from the peer that served it.
    pub fetch_latency: LatencyHistogram,
}

/// The latency histograms a node records into (see [`Stats`]).
#[derive(Default)]
pub(crate) struct Latencies {
    pub put: Histogram,
    pub get: Histogram,
}

/// Every `interval`, lets what failed a write recover (a disk that was
/// full has room again): the blob index is reopened and reconciled, the
/// catalog reopened, an incarnation the start could not save is saved.
/// Holds the node weakly: it ends with the node.
async fn recover_writes(node: std::sync::Weak<NodeInner>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
        let Some(node) = node.upgrade().map(|inner| Node { inner }) else { return };
        if node.write_problem().is_none() {
            continue;
        }
        let recovered = blocking(move || {
            node.inner.store.recover()?;
            if let Ok(catalog) = node.catalog() {
                catalog.recover()?;
            }
            node.inner.dir.save_incarnation()
        })
        .await;
        if let Err(e) = recovered {
            tracing::debug!("the node still cannot write: {e}");
        }
    }
}

/// A progress callback: `(bytes done, bytes total)`; total is 0 when unknown.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The network key: given, else `<data_dir>/network_key` (created by the
/// first node of a network, the one without bootstrap addresses).
fn network_key(config: &Config, dir: &DataDir) -> Result<[u8; 32]> {
    if let Some(key) = config.network_key {
        return Ok(key);
    }
    dir.network_key(config.bootstrap.is_empty())?.ok_or_else(|| no_network_key(&config.data_dir))
}

/// The refusal of a node that joins a network without its key.
fn no_network_key(data_dir: &Path) -> Error {
    Error::InvalidArgument(format!(
        "no network key: a node joining a network needs the network's key. Copy the file `network_key` from \
         the data directory of the network's first node and pass it (cas serve --network-key FILE, \
         Node(network_key=...)), or place it at {}",
        data_dir.join(crate::store::NETWORK_KEY_FILE).display()
    ))
}

/// The network settings judged against the data directory (a joining node
/// needs a network key) and the listen address (one bound to every
/// interface needs an address to advertise): checked before the data
/// directory is created or written, so that a refused start leaves it as it was.
async fn check_network_settings(config: &Config, listen: &str) -> Result<()> {
    let key_file = config.data_dir.join(crate::store::NETWORK_KEY_FILE);
    if config.network_key.is_none() && !config.bootstrap.is_empty() && !key_file.exists() {
        return Err(no_network_key(&config.data_dir));
    }
    crate::net::check_advertise(listen, config.advertise.as_deref()).await
}

/// A running node. Cheap to clone: clones share the node, and every method
/// may be called from many tasks or threads at once.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    config: Config,
    dir: DataDir,
    store: BlobStore,
    id: NodeId,
    closed: AtomicBool,
    net: Option<Arc<Network>>,
    scrub: Arc<scrub::ScrubStats>,
    latency: Latencies,
    repair: Option<Arc<repair::Repair>>,
    /// Closed (taken) at shutdown, with the data dir's lock: the next node
    /// on the directory opens it.
    catalog: std::sync::Mutex<Option<Arc<Catalog>>>,
    /// Stops every background task when the node is shut down or dropped.
    cancel: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Node {
    /// Opens the data directory (taking its lock) and starts the node; with
    /// `config.listen` set, it also listens on TCP and joins its bootstrap nodes.
    pub async fn start(config: Config) -> Result<Node> {
        Node::start_with_transport(config, Arc::new(TcpTransport)).await
    }

    /// Like [`Node::start`], over another transport.
    pub async fn start_with_transport(config: Config, transport: Arc<dyn Transport>) -> Result<Node> {
        config.validate()?;
        if let Some(listen) = &config.listen {
            check_network_settings(&config, listen).await?;
        }
        let cfg = config.clone();
        let (dir, store, catalog) = blocking(move || {
            let dir = DataDir::open(&cfg.data_dir, cfg.secret)?;
            let store = BlobStore::open(dir.path(), cfg.fsync, cfg.capacity)?;
            let catalog = Catalog::open(dir.path())?;
            Ok::<_, Error>((dir, store, catalog))
        })
        .await?;
        let id = dir.identity.id();
        let cancel = CancellationToken::new();
        let mut repair = None;
        let net = match &config.listen {
            Some(listen) => {
                let keys = Keys {
                    identity: dir.identity.clone(),
                    network_key: network_key(&config, &dir)?,
                    incarnation: dir
                        .next_incarnation(crate::net::now_ms().saturating_add_signed(config.faults.clock_offset_ms))?,
                };
                let net = Network::start(&config, listen, keys, store.clone(), transport, cancel.child_token()).await?;
                let r =
                    Arc::new(repair::Repair::new(net.clone(), store.clone(), config.replicas, config.repair_interval));
                tokio::spawn(r.clone().run(config.repair_interval, config.dead_after, cancel.child_token()));
                repair = Some(r);
                Some(net)
            }
            None => None,
        };
        let scrub_stats = Arc::new(scrub::ScrubStats::default());
        let scrub = scrub::Scrub {
            store: store.clone(),
            net: net.clone(),
            rate: config.scrub_rate,
            stats: scrub_stats.clone(),
        };
        tokio::spawn(scrub.run(config.repair_interval, cancel.child_token()));
        tracing::info!(node = %id, data_dir = %config.data_dir.display(), "node started");
        let inner = NodeInner {
            config,
            dir,
            store,
            id,
            closed: AtomicBool::new(false),
            net,
            scrub: scrub_stats,
            latency: Latencies::default(),
            repair,
            catalog: std::sync::Mutex::new(Some(Arc::new(catalog))),
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
        };
        let inner = Arc::new(inner);
        tokio::spawn(recover_writes(Arc::downgrade(&inner), inner.config.repair_interval, inner.cancel.child_token()));
        Ok(Node { inner })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// The address peers reach this node at; `None` without networking.
    pub fn address(&self) -> Option<SocketAddr> {
        self.inner.net.as_ref().map(|n| n.advertised())
    }

    /// The bootstrap addresses given that the node's last attempt did not
    /// reach; it keeps trying. Information once the node has live peers (a
    /// node in a network no longer needs its bootstrap node), a fault while
    /// it has none.
    pub fn unreachable_bootstrap(&self) -> Vec<String> {
        self.inner.net.as_ref().map_or_else(Vec::new, |n| n.unreachable_bootstrap())
    }

    /// The bootstrap addresses (and peers saved from the last run) whose
    /// node refused this node's network key: this node is not of their
    /// network, and does not try them again. A node with no live peer and
    /// such an address cannot join anything (`cas serve` then stops).
    pub fn refused_bootstrap(&self) -> Vec<String> {
        self.inner.net.as_ref().map_or_else(Vec::new, |n| n.refused_bootstrap())
    }

    /// The peer table: every peer known and not yet forgotten, with its state.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.inner.net.as_ref().map_or_else(Vec::new, |n| n.peers())
    }

    /// What this node exchanged with each peer it still knows: bytes each
    /// way, errors, blobs fetched and the time they took. Empty without
    /// networking.
    pub fn peer_traffic(&self) -> std::collections::HashMap<NodeId, crate::net::PeerTraffic> {
        self.inner.net.as_ref().map_or_else(Default::default, |n| n.traffic())
    }

    /// Gossip record signatures this node has checked (for tests: a
    /// message with a bad one must cost one check, not one per record).
    #[doc(hidden)]
    pub fn debug_gossip_signatures_checked(&self) -> u64 {
        self.inner.net.as_ref().map_or(0, |n| n.stats.gossip_signatures_checked.load(Ordering::Relaxed))
    }

    /// How many entries the network side's maps hold (connections, dials,
    /// slow peers): for tests; `None` without networking.
    #[doc(hidden)]
    pub fn debug_net_entries(&self) -> Option<crate::net::NetEntries> {
        self.inner.net.as_ref().map(|n| n.entries())
    }

    /// The files this node put, oldest first: key, name, size, time (see
    /// [`FileEntry`]). A user who lost a key finds it here.
    pub async fn files(&self) -> Result<Vec<FileEntry>> {
        let catalog = self.catalog()?;
        blocking(move || catalog.list()).await
    }

    /// Why this node cannot write now (its disk is full, its blob index
    /// failed a write), if it cannot; it still serves what it holds, and
    /// recovers by itself once the disk takes writes again.
    pub fn write_problem(&self) -> Option<String> {
        let catalog = || self.catalog().ok().and_then(|c| c.write_problem());
        self.inner.store.write_problem().or_else(catalog).or_else(|| self.inner.dir.incarnation_problem())
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        let store = &self.inner.store;
        let mut stats = Stats {
            blobs_stored: store.blob_count(),
            bytes_stored: store.used_bytes(),
            verification_failures: store.quarantined(),
            blobs_scrubbed: self.inner.scrub.blobs.load(Ordering::Relaxed),
            bytes_scrubbed: self.inner.scrub.bytes.load(Ordering::Relaxed),
            scrub_corrupt: self.inner.scrub.corrupt.load(Ordering::Relaxed),
            scrub_missing: self.inner.scrub.missing.load(Ordering::Relaxed),
            scrub_restored: self.inner.scrub.restored.load(Ordering::Relaxed),
            cannot_write: self.write_problem().is_some() as u64,
            put_latency: self.inner.latency.put.snapshot(),
            get_latency: self.inner.latency.get.snapshot(),
            ..Stats::default()
        };
        if let Some(net) = &self.inner.net {
            let c = &net.stats;
            stats.bytes_sent = c.bytes_sent.load(Ordering::Relaxed);
            stats.bytes_received = c.bytes_received.load(Ordering::Relaxed);
            stats.requests_served = c.requests_served.load(Ordering::Relaxed);
            stats.verification_failures += c.verification_failures.load(Ordering::Relaxed);
            stats.blobs_repaired = c.repaired.load(Ordering::Relaxed);
            stats.request_timeouts = c.request_timeouts.load(Ordering::Relaxed);
            stats.hedged_requests = c.hedged_requests.load(Ordering::Relaxed);
            stats.gossip_rejected = c.gossip_rejected.load(Ordering::Relaxed);
            stats.audits = c.audits.load(Ordering::Relaxed);
            stats.audits_failed = c.audits_failed.load(Ordering::Relaxed);
            stats.connections_evicted = net.connections_evicted();
            stats.memory_held = net.memory_held();
            stats.connections_over_budget = net.connections_over_budget();
            stats.fetch_latency = c.fetch_latency.snapshot();
            stats.peers_alive = net.peers().iter().filter(|p| p.state == PeerState::Alive).count() as u64;
        }
        if let Some(repair) = &self.inner.repair {
            stats.repair_refused_full = repair.refused_full.load(Ordering::Relaxed);
            stats.peers_full = repair.full_nodes().len() as u64;
        }
        stats
    }

    /// Runs one repair round now (besides the background ones, every
    /// `repair_interval`) and says what it did. A node without networking
    /// has nothing to repair.
    pub async fn repair_round(&self) -> Result<RepairReport> {
        self.check_open()?;
        match &self.inner.repair {
            Some(repair) => Ok(repair.round(&self.inner.cancel).await),
            None => Ok(RepairReport::default()),
        }
    }

    /// The local blob store.
    pub fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    /// Stops the node and releases its data directory. Later calls fail
    /// with [`Error::Closed`]; calling it twice is harmless.
    pub async fn shutdown(&self) {
        if !self.inner.closed.swap(true, Ordering::SeqCst) {
            self.inner.cancel.cancel();
            self.inner.catalog.lock().unwrap_or_else(|e| e.into_inner()).take();
            // Waits for blob writes in flight; later ones fail with Closed.
            let store = self.inner.store.clone();
            blocking(move || store.close()).await;
            self.inner.dir.release();
            tracing::info!(node = %self.inner.id, "node stopped");
        }
    }

    /// Whether [`Node::shutdown`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Completes once [`Node::shutdown`] is called: for services that live
    /// as long as the node, such as the HTTP gateway.
    pub async fn closed(&self) {
        self.inner.cancel.cancelled().await
    }

    fn catalog(&self) -> Result<Arc<Catalog>> {
        self.inner.catalog.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::Closed)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Gets a verified blob (from the local store first, then from peers,
    /// kept locally if so configured), then runs `then` on it in the same
    /// blocking task as the read (local) or the keeping (fetched): one thread
    /// hop per blob, not two, on the path of every chunk of a get. A corrupt
    /// local copy was quarantined by the store and is replaced by a good
    /// replica when one exists.
    pub(crate) async fn fetch_then<T: Send + 'static>(
        &self,
        id: BlobId,
        then: impl FnOnce(VerifiedBlob) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.check_open()?;
        let store = self.inner.store.clone();
        // A local miss hands `then` back for the fetched blob.
        let (then, local_error) = match blocking(move || match store.get(&id) {
            Ok(Some(blob)) => Ok(then(blob)),
            Ok(None) => Err((then, Error::NotFound { what: format!("blob {id}") })),
            Err(e) => Err((then, e)),
        })
        .await
        {
            Ok(result) => return result,
            Err(missed) => missed,
        };
        let Some(net) = &self.inner.net else { return Err(local_error) };
        let Some(blob) = net.fetch(id).await else { return Err(local_error) };
        let keep = self.inner.config.keep_fetched.then(|| self.inner.store.clone());
        blocking(move || {
            if let Some(store) = keep {
                if let Err(e) = store.put_from(&blob, Origin::Fetched) {
                    tracing::debug!(blob = %id, "not keeping a fetched blob: {e}");
                }
            }
            then(blob)
        })
        .await
    }

    pub(crate) fn network(&self) -> Option<&Arc<Network>> {
        self.inner.net.as_ref()
    }

    /// Fetches and opens the manifest of `key`.
    pub(crate) async fn load_manifest(&self, key: &Key) -> Result<Manifest> {
        self.check_open()?;
        let km = key.manifest_key;
        self.fetch_then(key.manifest_id, move |blob| Ok(Manifest::open(blob.bytes(), &km)?)).await.map_err(
            |e| match e {
                // All of the key a typo could have sent to the wrong blob.
                Error::NotFound { .. } => Error::NotFound { what: format!("key {}", key.id_part()) },
                e => e,
            },
        )
    }
}
