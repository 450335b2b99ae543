//! A network only its members can use: the network key, identities proved
//! on every connection, signed gossip, encrypted bytes on the wire, and the
//! advertised address.

mod common;

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cas_core::identity::Identity;
use cas_core::net::frame::{encode, Message, PeerRecord, Request};
use cas_core::net::transport::{BoxStream, Listener, TcpTransport, Transport};
use cas_core::{ErrorKind, Node, PeerState};
use common::{alive, content, net_config, secure_connect, wait_for, TEST_NETWORK_KEY};
use futures::future::BoxFuture;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

async fn start(dir: &TempDir, name: &str, bootstrap: &[&Node]) -> Node {
    Node::start(net_config(&dir.path().join(name), bootstrap)).await.unwrap()
}

/// Nodes `a` and `b` of one network, each alive in the other's table.
async fn met_pair(dir: &TempDir) -> (Node, Node) {
    let a = start(dir, "a", &[]).await;
    let b = start(dir, "b", &[&a]).await;
    wait_for("a and b to meet", Duration::from_secs(20), || alive(&a) == 1 && alive(&b) == 1).await;
    (a, b)
}

fn state_of(node: &Node, peer: &Node) -> Option<PeerState> {
    node.peers().iter().find(|p| p.id == peer.id()).map(|p| p.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_another_network_key_cannot_join_store_or_fetch() {
    let dir = TempDir::new().unwrap();
    let a = start(&dir, "a", &[]).await;
    let report = a.put_bytes(&content(3, 200_000)).await.unwrap();

    let mut cfg = net_config(&dir.path().join("intruder"), &[&a]);
    cfg.network_key = Some([0x13; 32]);
    let err = Node::start(cfg).await.err().expect("a node whose bootstrap node refuses its key does not start");
    assert_eq!(err.kind(), ErrorKind::Network);
    assert!(err.to_string().contains("wrong or missing network key"), "{err}");

    // A client with the wrong key, speaking the protocol by hand, gets no
    // further than the first handshake message: no request is ever read.
    let refused = secure_connect(a.address().unwrap(), [0x13; 32]).await.err().expect("refused");
    assert!(refused.to_string().contains("wrong or missing network key"), "{refused}");
    let second = a.put_bytes(&content(4, 100_000)).await.unwrap();
    assert_eq!(second.replicas, 0, "nothing reached the intruder");
    assert!(a.peers().is_empty());
    assert!(a.get_bytes(&report.key).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_networked_node_needs_a_key_to_join_and_the_first_one_makes_it() {
    let dir = TempDir::new().unwrap();
    let mut cfg = net_config(&dir.path().join("first"), &[]);
    cfg.network_key = None;
    let first = Node::start(cfg).await.unwrap();
    let key_file = first.data_dir().join("network_key");
    let key = std::fs::read(&key_file).expect("the first node of a network creates its key");
    assert_eq!(key.len(), 32);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let identity = std::fs::metadata(first.data_dir().join("identity.key")).unwrap();
    assert_eq!(identity.permissions().mode() & 0o777, 0o600, "the identity key is owner-only");

    let mut cfg = net_config(&dir.path().join("keyless"), &[&first]);
    cfg.network_key = None;
    let err = Node::start(cfg).await.err().expect("a joining node without a key does not start");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("network key") && err.to_string().contains("--network-key"), "{err}");
    assert!(!dir.path().join("keyless/network_key").exists(), "a joining node does not invent a key");

    // Given a copy of the file, it joins.
    let mut cfg = net_config(&dir.path().join("joiner"), &[&first]);
    cfg.network_key = Some(key.as_slice().try_into().unwrap());
    let joiner = Node::start(cfg).await.unwrap();
    wait_for("the joiner and the first node to meet", Duration::from_secs(20), || {
        alive(&first) == 1 && alive(&joiner) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dialer_meeting_another_key_at_a_peers_address_leaves_that_peer_alone() {
    let dir = TempDir::new().unwrap();
    let (a, b) = met_pair(&dir).await;
    let b_addr = b.address().unwrap();
    b.shutdown().await;
    drop(b);
    // Another node of the network takes over b's address.
    let mut cfg = net_config(&dir.path().join("impostor"), &[]);
    cfg.listen = Some(b_addr.to_string());
    let mut impostor = None;
    for _ in 0..200 {
        match Node::start(cfg.clone()).await {
            Ok(n) => {
                impostor = Some(n);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await, // the port is being released
        }
    }
    let impostor = impostor.expect("the impostor gets b's port");
    // a keeps dialing b's address (gossip, then retries of a dead peer) and
    // meets the impostor's key there: b turns dead, and the impostor never
    // enters a's table through those dials.
    wait_for("a to mark b dead", Duration::from_secs(20), || {
        a.peers().iter().any(|p| p.address == b_addr && p.state == PeerState::Dead)
    })
    .await;
    assert!(a.peers().iter().all(|p| p.id != impostor.id()), "{:?}", a.peers());
    assert!(impostor.peers().is_empty(), "the dialer left before proving itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gossip_forged_by_a_member_cannot_make_a_node_dead() {
    let dir = TempDir::new().unwrap();
    let (a, b) = met_pair(&dir).await;

    // A member (it holds the key) sends a record for b's id with incarnation
    // and heartbeat at u64::MAX, signed by itself, and one signed by b but
    // tampered with. Before records were signed, one such record made every
    // node mark b dead for good.
    let (mut s, _) = secure_connect(a.address().unwrap(), TEST_NETWORK_KEY).await.unwrap();
    let mallory = Identity::generate();
    let mut forged = PeerRecord::sign(&mallory, b.address().unwrap(), u64::MAX, u64::MAX);
    forged.id = b.id();
    forged.public_key = Identity::generate().public_key();
    let mut claimed = forged.clone();
    claimed.incarnation = u64::MAX - 1;
    let body = encode(&Message::Request { id: 1, body: Request::Gossip { peers: vec![forged, claimed] } });
    s.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    s.flush().await.unwrap();

    // b is dead after 3 s of stale heartbeats (net_config); watch twice that long.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < until {
        assert_eq!(state_of(&a, &b), Some(PeerState::Alive), "b stays alive at a");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ROUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_is_alive_everywhere_within_three_gossip_rounds_of_rejoining() {
    let dir = TempDir::new().unwrap();
    // Gossip rounds of a second, the default.
    let start = |name: &str, boot: &[&Node]| {
        let mut cfg = net_config(&dir.path().join(name), boot);
        cfg.gossip_interval = ROUND;
        Node::start(cfg)
    };
    let a = start("a", &[]).await.unwrap();
    let b = start("b", &[&a]).await.unwrap();
    let c = start("c", &[&a]).await.unwrap();
    for n in [&a, &b, &c] {
        wait_for("the three to meet", Duration::from_secs(20), || alive(n) == 2).await;
    }
    let c_dir = c.data_dir().to_path_buf();
    let c_id = c.id();
    c.shutdown().await;
    drop(c);
    wait_for("c to be marked dead", Duration::from_secs(20), || {
        [&a, &b].iter().all(|n| n.peers().iter().any(|p| p.id == c_id && p.state == PeerState::Dead))
    })
    .await;
    let mut cfg = net_config(&c_dir, &[&a]);
    cfg.gossip_interval = ROUND;
    let c = Node::start(cfg).await.unwrap(); // on a new port, too
    assert_eq!(c.id(), c_id, "the identity key persists");
    wait_for("c alive at a and b", 3 * ROUND, || [&a, &b].iter().all(|n| state_of(n, &c) == Some(PeerState::Alive)))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_bound_to_every_interface_needs_an_address_to_advertise() {
    let dir = TempDir::new().unwrap();
    let mut cfg = net_config(&dir.path().join("a"), &[]);
    cfg.listen = Some("0.0.0.0:0".into());
    let err = Node::start(cfg.clone()).await.err().expect("nothing to advertise");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("advertise"), "{err}");

    cfg.advertise = Some("127.0.0.1:0".into());
    let err = Node::start(cfg.clone()).await.err().expect("loopback is no address for other machines");
    assert!(err.to_string().contains("loopback"), "{err}");

    cfg.advertise = Some("192.0.2.7:0".into());
    let node = Node::start(cfg).await.unwrap();
    let addr = node.address().unwrap();
    assert_eq!(addr.ip().to_string(), "192.0.2.7");
    assert_ne!(addr.port(), 0, "port 0 in advertise means the bound port");
}

/// A transport that records every byte each stream sends and receives.
#[derive(Clone, Default)]
struct Recording {
    bytes: Arc<Mutex<Vec<u8>>>,
}

struct Recorded {
    inner: BoxStream,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes.lock().unwrap().extend_from_slice(&buf.filled()[before..]);
        r
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct RecordingListener(Box<dyn Listener>, Arc<Mutex<Vec<u8>>>);

impl Listener for RecordingListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (inner, addr) = self.0.accept().await?;
            Ok((Box::new(Recorded { inner, bytes: self.1.clone() }) as BoxStream, addr))
        })
    }
}

impl Transport for Recording {
    fn listen<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let inner = TcpTransport.listen(addr).await?;
            Ok(Box::new(RecordingListener(inner, self.bytes.clone())) as Box<dyn Listener>)
        })
    }
    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let inner = TcpTransport.dial(addr).await?;
            Ok(Box::new(Recorded { inner, bytes: self.bytes.clone() }) as BoxStream)
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Puts a file holding a plaintext marker from a recorded node to a peer
/// and returns what crossed the wire, and slices of the blobs the peer stored.
async fn record_a_put(plaintext_transport: bool, marker: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let dir = TempDir::new().unwrap();
    let mut cfg = net_config(&dir.path().join("b"), &[]);
    cfg.faults.plaintext_transport = plaintext_transport;
    let b = Node::start(cfg).await.unwrap();
    let recording = Recording::default();
    let mut cfg = net_config(&dir.path().join("a"), &[&b]);
    cfg.faults.plaintext_transport = plaintext_transport;
    cfg.replicas = 1;
    let a = Node::start_with_transport(cfg, Arc::new(recording.clone())).await.unwrap();
    wait_for("a and b to meet", Duration::from_secs(20), || alive(&a) == 1 && alive(&b) == 1).await;
    let data: Vec<u8> = marker.iter().copied().cycle().take(300_000).collect();
    let report = a.put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, 1);
    let mut slices = Vec::new();
    for path in common::blob_files(b.data_dir()) {
        let blob = std::fs::read(path).unwrap();
        slices.push(blob[..32].to_vec());
        slices.push(blob[blob.len() / 2..blob.len() / 2 + 32].to_vec());
    }
    assert!(!slices.is_empty(), "b stored the replicas");
    let wire = recording.bytes.lock().unwrap().clone();
    assert!(wire.len() > 300_000, "the replicas crossed the recorded wire");
    (wire, slices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neither_the_plaintext_nor_the_stored_blobs_appear_on_the_wire() {
    let marker = b"MARKER-the-plaintext-of-a-legal-document-0123456789";
    let (wire, blobs) = record_a_put(false, marker).await;
    assert!(!contains(&wire, marker), "the plaintext is not on the wire");
    for slice in &blobs {
        assert!(!contains(&wire, slice), "no stored blob bytes on the wire");
    }
    // The check can fail: with the bench-only plaintext mode, the stored
    // blobs (ciphertext at rest) do cross the wire as they are.
    let (wire, blobs) = record_a_put(true, marker).await;
    assert!(blobs.iter().all(|slice| contains(&wire, slice)), "unencrypted transport shows the blobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_that_never_handshake_cannot_crowd_out_members() {
    let dir = TempDir::new().unwrap();
    let (a, b) = met_pair(&dir).await;
    // Anyone who can reach the port opens 300 connections and says nothing.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tokio::net::TcpStream::connect(a.address().unwrap()).await.unwrap());
    }
    // All but a few are closed at once rather than held for the 5 s
    // handshake timeout (at most 32 handshakes per address wait at a time).
    // Well within the handshake timeout: one second for all of them at once.
    let reads = silent.iter_mut().map(|s| async move {
        let mut byte = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_secs(1), s.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
    });
    let closed = futures::future::join_all(reads).await.into_iter().filter(|c| *c).count();
    assert!(closed >= 300 - 32, "only {closed} of 300 silent connections were closed at once");
    // The members' connection still carries puts both ways meanwhile.
    assert_eq!(a.put_bytes(&content(8, 200_000)).await.unwrap().replicas, 1);
    assert_eq!(b.put_bytes(&content(9, 200_000)).await.unwrap().replicas, 1);
    // And a new member joins once the silent ones reach the handshake timeout.
    let c = start(&dir, "c", &[&a]).await;
    wait_for("c to join", Duration::from_secs(30), || alive(&c) == 2 && alive(&a) == 2).await;
    drop(silent);
}
