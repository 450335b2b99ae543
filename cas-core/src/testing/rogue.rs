//! A rogue member running many identities in one process, for the Sybil
//! tests (`cas-core/tests/rogue_members.rs`, and `examples/rogue.rs` in
//! network namespaces). It holds the network key, so it passes every
//! handshake; each identity listens on its own port of one address and
//! answers as a node does, except that it claims to hold every blob,
//! acknowledges every copy and drops it, and answers every get, and every
//! possession audit, with junk.
//! It counts what it is asked.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::format::BlobId;
use crate::identity::{Identity, NodeId};
use crate::net::frame::{self, decode, encode, FrameCodec, Message, PeerRecord, Request, Response};
use crate::net::secure::{self, Credentials, SecureStream};

/// A framed, handshaken connection.
pub type Conn = Framed<SecureStream, FrameCodec>;

/// How often the rogue signs its identities' records anew (a higher
/// heartbeat each time): gossip answers within it repeat the same records,
/// which a node drops unchecked as not newer.
const RESIGN_EVERY: Duration = Duration::from_millis(500);

/// A TCP connection to `to` from the local address `from`.
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = if from.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// What the rogue was asked, over all its identities.
#[derive(Default)]
pub struct Counts {
    pub pings: AtomicUsize,
    pub gossips: AtomicUsize,
    pub has_blobs: AtomicUsize,
    pub stores: AtomicUsize,
    pub gets: AtomicUsize,
    pub audits: AtomicUsize,
    /// For each blob sent to it, the identities it was sent to.
    stored: Mutex<HashMap<BlobId, HashSet<NodeId>>>,
}

impl Counts {
    /// The identities each blob was sent to.
    pub fn stored(&self) -> HashMap<BlobId, HashSet<NodeId>> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The identities' signed records, as gossip answers carry them: all of
/// them, so that every identity stays alive in the nodes' tables whichever
/// one a node happens to gossip with.
pub struct Records {
    identities: Vec<(Identity, SocketAddr)>,
    heartbeat: AtomicU64,
    signed: Mutex<Option<(Instant, Vec<PeerRecord>)>>,
}

impl Records {
    pub fn new(identities: Vec<(Identity, SocketAddr)>) -> Records {
        Records { identities, heartbeat: AtomicU64::new(0), signed: Mutex::new(None) }
    }

    /// The records, signed with a rising heartbeat at most every `RESIGN_EVERY`.
    pub fn current(&self) -> Vec<PeerRecord> {
        let mut signed = self.signed.lock().unwrap_or_else(|e| e.into_inner());
        match &*signed {
            Some((at, records)) if at.elapsed() < RESIGN_EVERY => records.clone(),
            _ => {
                let heartbeat = self.heartbeat.fetch_add(1, Ordering::Relaxed) + 1;
                let records: Vec<PeerRecord> =
                    self.identities.iter().map(|(id, addr)| PeerRecord::sign(id, *addr, 1, heartbeat)).collect();
                *signed = Some((Instant::now(), records.clone()));
                records
            }
        }
    }
}

/// Answers every request on `conn` as the rogue identity `me`, until the
/// connection closes.
pub async fn serve_as_rogue(mut conn: Conn, me: NodeId, records: Arc<Records>, counts: Arc<Counts>) {
    while let Some(Ok(f)) = conn.next().await {
        let Ok(Message::Request { id, body }) = decode(&f) else { continue };
        let answer = match body {
            Request::Ping => {
                counts.pings.fetch_add(1, Ordering::Relaxed);
                Response::Pong
            }
            Request::Gossip { .. } => {
                counts.gossips.fetch_add(1, Ordering::Relaxed);
                Response::Gossip { peers: records.current() }
            }
            Request::HasBlobs { ids } => {
                counts.has_blobs.fetch_add(1, Ordering::Relaxed);
                Response::Has { present: vec![true; ids.len()] }
            }
            Request::StoreBlob { id: blob, .. } => {
                counts.stores.fetch_add(1, Ordering::Relaxed);
                counts.stored.lock().unwrap_or_else(|e| e.into_inner()).entry(blob).or_default().insert(me);
                Response::Stored
            }
            Request::GetBlob { .. } => {
                counts.gets.fetch_add(1, Ordering::Relaxed);
                Response::Blob { data: vec![0x55; 1000].into() }
            }
            Request::Audit { .. } => {
                counts.audits.fetch_add(1, Ordering::Relaxed);
                Response::Audited { digest: [0x55; 32] }
            }
        };
        if conn.send(encode(&Message::Response { id, body: answer })).await.is_err() {
            return;
        }
    }
}

/// The rogue: `n` identities, each with a listener of its own on one IP
/// address. Dropping it stops every listener and connection.
pub struct Rogue {
    network_key: [u8; 32],
    identities: Vec<(Identity, SocketAddr)>,
    records: Arc<Records>,
    counts: Arc<Counts>,
    stop: CancellationToken,
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Rogue {
    /// Starts `n` identities listening on `ip`: at ports `first_port`,
    /// `first_port + 1`, ... or, with `first_port` 0, at ports the system
    /// picks.
    pub async fn start(network_key: [u8; 32], ip: IpAddr, n: usize, first_port: u16) -> io::Result<Rogue> {
        let mut listeners = Vec::with_capacity(n);
        for i in 0..n {
            let port = if first_port == 0 {
                0
            } else {
                u16::try_from(usize::from(first_port) + i)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ports past 65535"))?
            };
            let listener = TcpListener::bind(SocketAddr::new(ip, port)).await?;
            let addr = listener.local_addr()?;
            listeners.push((Identity::generate(), addr, listener));
        }
        let identities: Vec<(Identity, SocketAddr)> =
            listeners.iter().map(|(identity, addr, _)| (identity.clone(), *addr)).collect();
        let rogue = Rogue {
            network_key,
            records: Arc::new(Records::new(identities.clone())),
            identities,
            counts: Arc::default(),
            stop: CancellationToken::new(),
        };
        for (identity, addr, listener) in listeners {
            let creds = Arc::new(Credentials::new(network_key, identity.clone(), addr, false));
            let (me, records, counts, stop) =
                (identity.id(), rogue.records.clone(), rogue.counts.clone(), rogue.stop.clone());
            tokio::spawn(async move {
                loop {
                    let tcp = tokio::select! {
                        a = listener.accept() => match a {
                            Ok((tcp, _)) => tcp,
                            // Out of file descriptors, say: try again later.
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                        _ = stop.cancelled() => return,
                    };
                    let (creds, records, counts, stop) = (creds.clone(), records.clone(), counts.clone(), stop.clone());
                    tokio::spawn(async move {
                        let Ok((stream, _)) = secure::respond(Box::new(tcp), &creds).await else { return };
                        tokio::select! {
                            _ = serve_as_rogue(Framed::new(stream, frame::codec()), me, records, counts) => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                }
            });
        }
        Ok(rogue)
    }

    /// Each identity, with the address it listens at.
    pub fn identities(&self) -> &[(Identity, SocketAddr)] {
        &self.identities
    }

    /// What it was asked.
    pub fn counts(&self) -> &Arc<Counts> {
        &self.counts
    }

    /// Identity `i` introduces itself to the node at `node`: dials it from
    /// its own address, claiming its listener as its address, and serves
    /// that connection too (in the background, until the node closes it or
    /// the rogue stops). The node then reaches it at its listener, and it
    /// becomes a peer.
    pub async fn introduce(&self, i: usize, node: SocketAddr) -> Result<(), String> {
        let conn = self.dial(i, node).await?;
        let (me, records, counts, stop) =
            (self.identities[i].0.id(), self.records.clone(), self.counts.clone(), self.stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = serve_as_rogue(conn, me, records, counts) => {}
                _ = stop.cancelled() => {}
            }
        });
        Ok(())
    }

    /// A handshaken connection of identity `i` to `node`, from its address.
    pub async fn dial(&self, i: usize, node: SocketAddr) -> Result<Conn, String> {
        let (identity, listen) = &self.identities[i];
        let tcp = connect_from(listen.ip(), node).await.map_err(|e| format!("connecting to {node}: {e}"))?;
        let creds = Credentials::new(self.network_key, identity.clone(), *listen, false);
        let (stream, _) = secure::initiate(Box::new(tcp), &creds, None).await.map_err(|e| e.to_string())?;
        Ok(Framed::new(stream, frame::codec()))
    }
}
