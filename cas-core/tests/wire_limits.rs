//! A peer that completed the handshake and then misbehaves on the wire can
//! neither make a node hold memory at will nor keep a connection forever:
//! frames it declares and does not send, answers it does not read, large
//! requests sent faster than they are served, a frame it trickles.
//!
//! The node runs in this process and memory is its peak RSS growth, so these
//! tests have their own binary and run one at a time (a process-wide lock).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cas_core::format::{BlobId, MAX_BLOB_LEN};
use cas_core::net::frame::{self, decode, encode, FrameCodec, Message, Request, MAX_FRAME_LEN};
use cas_core::net::secure::SecureStream;
use cas_core::Node;
use common::{content, net_config, proc_status_kib, secure_connect, wait_for, RssPeak, TEST_NETWORK_KEY};
use futures::{SinkExt, StreamExt};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Framed;

/// The idle timeout of the nodes under attack.
const IDLE: Duration = Duration::from_secs(1);
/// How much the node's peak RSS may grow during an attack.
const RSS_LIMIT_MIB: u64 = 100;
/// How much the memory the process has mapped for data, touched or not, may
/// grow (allocator arenas of new threads are part of it).
const MAPPED_LIMIT_MIB: u64 = 512;

/// Connects to a node and completes the handshake as a peer would (a
/// member: it holds the network key). The one place these tests know how
/// the handshake is done.
async fn attacker_connect(addr: SocketAddr) -> Framed<SecureStream, FrameCodec> {
    // Each attacking connection is a different peer: a fresh identity.
    let (stream, _) = secure_connect(addr, TEST_NETWORK_KEY).await.expect("handshake");
    Framed::new(stream, frame::codec())
}

/// One test at a time: RSS is the whole process's.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn start(dir: &TempDir, chunk_size: u32) -> Node {
    let mut config = net_config(&dir.path().join("node"), &[]);
    config.idle_timeout = IDLE;
    config.chunk_size = chunk_size;
    Node::start(config).await.unwrap()
}

/// The largest growth of VmData, the memory mapped for data whether touched
/// or not (a reservation that RSS does not show), sampled until `finish`.
struct MappedPeak {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
    base_kib: u64,
}

impl MappedPeak {
    fn start() -> MappedPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let base_kib = proc_status_kib("VmData:");
        let sampler = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(proc_status_kib("VmData:"));
                    std::thread::sleep(Duration::from_millis(5));
                }
                peak
            }
        });
        MappedPeak { stop, sampler, base_kib }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap().saturating_sub(self.base_kib) / 1024
    }
}

/// Reads (a goodbye, say) until the node closes the connection; fails if it
/// stays open for `limit`.
async fn assert_closed_within(conn: &mut Framed<SecureStream, FrameCodec>, limit: Duration) {
    let closed = tokio::time::timeout(limit, async { while let Some(Ok(_)) = conn.next().await {} }).await;
    assert!(closed.is_ok(), "the node kept the connection open for {limit:?}");
}

fn connections(node: &Node) -> usize {
    node.debug_net_entries().expect("networked").connections
}

#[test]
fn declared_frames_never_sent_pin_no_memory_and_are_closed_when_idle() {
    let _serial = serial();
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let node = start(&dir, 1 << 20).await;
        let rss = RssPeak::start();
        let mapped = MappedPeak::start();
        let mut conns = Vec::new();
        let mut last_declared = Instant::now();
        for _ in 0..200 {
            let mut conn = attacker_connect(node.address().unwrap()).await;
            // The header of the largest frame allowed, and none of its body.
            conn.get_mut().write_all(&frame::header(MAX_FRAME_LEN).unwrap()).await.unwrap();
            conn.get_mut().flush().await.unwrap();
            last_declared = Instant::now();
            conns.push(conn);
        }
        for conn in &mut conns {
            assert_closed_within(conn, Duration::from_secs(20)).await;
        }
        let open_for = last_declared.elapsed();
        let (growth, mapped) = (rss.growth_mib(), mapped.finish());
        println!(
            "200 declared frames of {MAX_FRAME_LEN} bytes: peak RSS grew {growth} MiB, mapped memory {mapped} MiB; \
             closed after {open_for:?}"
        );
        assert!(open_for >= IDLE / 2, "closed after {open_for:?}: a frame of the largest size is allowed");
        assert!(growth < RSS_LIMIT_MIB, "peak RSS grew {growth} MiB, limit {RSS_LIMIT_MIB} MiB");
        assert!(mapped < MAPPED_LIMIT_MIB, "mapped memory grew {mapped} MiB, limit {MAPPED_LIMIT_MIB} MiB");
        wait_for("closed connections to leave the node's map", Duration::from_secs(10), || connections(&node) == 0)
            .await;
    });
}

#[test]
fn a_peer_that_never_reads_its_blobs_is_cut_off_in_bounded_memory() {
    let _serial = serial();
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let node = start(&dir, 16 << 20).await;
        let report = node.put_bytes(&content(3, 16 << 20)).await.unwrap();
        let stat = node.stat(&report.key).await.unwrap();
        let (chunk, _) = *stat.holders.last().unwrap();
        assert_ne!(chunk, stat.manifest_id);

        let rss = RssPeak::start();
        let mut conn = attacker_connect(node.address().unwrap()).await;
        for id in 0..64 {
            conn.feed(encode(&Message::Request { id, body: Request::GetBlob { id: chunk } })).await.unwrap();
        }
        conn.flush().await.unwrap();
        // The answers are not read until the node has dropped the connection.
        wait_for("the node to register the connection", Duration::from_secs(10), || connections(&node) == 1).await;
        wait_for("the node to drop the connection", Duration::from_secs(20), || connections(&node) == 0).await;
        let growth = rss.growth_mib();
        let mut drained = Vec::new();
        let eof = tokio::time::timeout(Duration::from_secs(10), conn.get_mut().read_to_end(&mut drained)).await;
        println!("64 unread requests for a 16 MiB blob: peak RSS grew {growth} MiB; {} bytes were sent", drained.len());
        assert!(eof.is_ok(), "the socket is closed once the node dropped the connection");
        assert!(drained.len() > 16 << 20, "the node served the blob until the peer's unread answers filled its budget");
        assert!(growth < RSS_LIMIT_MIB, "peak RSS grew {growth} MiB, limit {RSS_LIMIT_MIB} MiB");
    });
}

#[test]
fn a_peer_sending_many_large_blobs_at_once_is_served_in_bounded_memory() {
    const STORES: usize = 16;
    let _serial = serial();
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let mut config = net_config(&dir.path().join("node"), &[]);
        config.idle_timeout = IDLE;
        // A slow disk: blobs arrive faster than they are stored.
        config.faults.delay_stored_blobs = Some(Duration::from_millis(300));
        let node = Node::start(config).await.unwrap();
        let mut conn = attacker_connect(node.address().unwrap()).await;
        // The largest blob, under an id it does not hash to: each is read
        // whole and verified before it is refused.
        let store = Request::StoreBlob { id: BlobId([9; 32]), data: vec![1u8; MAX_BLOB_LEN].into() };
        let body = encode(&Message::Request { id: 1, body: store });
        let mut frame = frame::header(body.len()).unwrap().to_vec();
        frame.extend_from_slice(&body);
        drop(body);

        let rss = RssPeak::start();
        // Answers are small: the node never waits for them to be read.
        for _ in 0..STORES {
            conn.get_mut().write_all(&frame).await.unwrap();
            conn.get_mut().flush().await.unwrap();
        }
        let mut answered = 0;
        while answered < STORES {
            match conn.next().await {
                Some(Ok(f)) => answered += matches!(decode(&f), Ok(Message::Response { .. })) as usize,
                other => panic!("the node closed the connection: {other:?}"),
            }
        }
        let growth = rss.growth_mib();
        println!("{STORES} requests to store a {MAX_BLOB_LEN}-byte blob: peak RSS grew {growth} MiB");
        // Two frames at most are being served (one stored, one waiting), but
        // each is held three times on its way in (gathered, joined, decoded),
        // with allocator slack: about 110 MiB. Unbounded, all 16 were read
        // at once: 336 MiB.
        const LIMIT_MIB: u64 = 192;
        assert!(growth < LIMIT_MIB, "peak RSS grew {growth} MiB, limit {LIMIT_MIB} MiB");
    });
}

#[test]
fn a_peer_trickling_a_frame_is_cut_off_after_the_idle_timeout() {
    let _serial = serial();
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let node = start(&dir, 1 << 20).await;
        let mut conn = attacker_connect(node.address().unwrap()).await;
        conn.get_mut().write_all(&frame::header(1000).unwrap()).await.unwrap();
        conn.get_mut().flush().await.unwrap();
        let started = Instant::now();
        let mut sent = 0;
        // One byte of the frame every 100 ms, while the node listens: each
        // byte arrives well within the idle timeout, the frame never does.
        let cut_off = loop {
            let pause = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(pause);
            let closed = loop {
                tokio::select! {
                    // The node's own requests (gossip) and its goodbye are ignored.
                    frame = conn.next() => if !matches!(frame, Some(Ok(_))) { break true },
                    _ = &mut pause => break false,
                }
            };
            if closed {
                break true;
            }
            if sent == 100 || conn.get_mut().write_all(&[0]).await.is_err() || conn.get_mut().flush().await.is_err() {
                break false;
            }
            sent += 1;
        };
        let open_for = started.elapsed();
        println!("a trickle of {sent} bytes was cut off after {open_for:?}");
        assert!(cut_off, "the node still reads a frame trickled for {open_for:?}");
        assert!(open_for >= IDLE / 2, "cut off after {open_for:?}, before the idle timeout");
        assert!(sent < 50, "{sent} bytes trickled before the cut");
    });
}
