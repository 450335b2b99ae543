//! Rogue members against the node-wide memory budget: many connections
//! leaving large answers unread, and many connections each holding a
//! large frame short of its last byte. The node holds at most its budget
//! for them however many connections they open, slows them down, then
//! disconnects them; an honest member puts and gets meanwhile.
//!
//! The attackers are built from the crate's own modules (the secure
//! handshake, the frame codec, fresh identities) and come from other
//! loopback addresses than the members (127.0.7.1, 127.0.8.1). The node
//! runs in this process and memory is its peak RSS growth, so these tests
//! have their own binary and run one at a time (a process-wide lock).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use cas_core::config::MIN_MEMORY_BUDGET;
use cas_core::format::BlobId;
use cas_core::identity::Identity;
use cas_core::net::frame::{self, encode, FrameCodec, Message, Request, MAX_FRAME_LEN};
use cas_core::net::secure::{initiate, Credentials, SecureStream};
use cas_core::testing::rogue::connect_from;
use cas_core::{Key, Node};
use common::{content, net_config, wait_for, RssPeak, TEST_NETWORK_KEY};
use futures::SinkExt;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// The budget of the node under attack: the smallest allowed.
const BUDGET: usize = MIN_MEMORY_BUDGET;
/// Its idle timeout: how long a peer over its share waits before it is cut off.
const IDLE: Duration = Duration::from_secs(4);
const MIB: u64 = 1 << 20;

/// One test at a time: RSS is the whole process's.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The largest value of the node's budget gauge, sampled until stopped.
struct GaugePeak {
    stop: CancellationToken,
    sampler: tokio::task::JoinHandle<u64>,
}

impl GaugePeak {
    fn start(node: &Node) -> GaugePeak {
        let (node, stop) = (node.clone(), CancellationToken::new());
        let sampler = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut peak = 0;
                while !stop.is_cancelled() {
                    peak = peak.max(node.stats().memory_held);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                peak
            }
        });
        GaugePeak { stop, sampler }
    }

    async fn finish(self) -> u64 {
        self.stop.cancel();
        self.sampler.await.unwrap()
    }
}

/// A member's handshake from `from`, under a fresh identity.
async fn member_connect(from: IpAddr, to: SocketAddr) -> Framed<SecureStream, FrameCodec> {
    let tcp = connect_from(from, to).await.unwrap();
    let creds = Credentials::new(TEST_NETWORK_KEY, Identity::generate(), SocketAddr::new(from, 9), false);
    let (stream, _) = initiate(Box::new(tcp), &creds, None).await.unwrap();
    Framed::new(stream, frame::codec())
}

/// The node under attack (16 MiB chunks: blobs of the largest size), a
/// file on it, and an honest member joined to it.
struct Cluster {
    _dir: TempDir,
    node: Node,
    member: Node,
    /// A file only the node holds, for the member to get.
    file: Key,
    file_data: Vec<u8>,
    /// A blob of the largest size on the node.
    big_blob: BlobId,
}

async fn cluster() -> Cluster {
    let dir = TempDir::new().unwrap();
    let mut config = net_config(&dir.path().join("node"), &[]);
    config.memory_budget = BUDGET;
    config.idle_timeout = IDLE;
    config.chunk_size = 16 << 20;
    config.replicas = 1;
    let node = Node::start(config).await.unwrap();
    let big = node.put_bytes(&content(1, 16 << 20)).await.unwrap();
    let big_blob = node.stat(&big.key).await.unwrap().holders.last().unwrap().0;
    let file_data = content(2, 4 << 20);
    let file = node.put_bytes(&file_data).await.unwrap().key;
    let mut config = net_config(&dir.path().join("member"), &[&node]);
    config.chunk_size = 1 << 20;
    config.replicas = 1;
    let member = Node::start(config).await.unwrap();
    wait_for("the node and the member to see each other", Duration::from_secs(20), || {
        common::alive(&node) == 1 && common::alive(&member) == 1
    })
    .await;
    Cluster { _dir: dir, node, member, file, file_data, big_blob }
}

/// The honest member gets the node's file (answers of the node) and puts
/// one of its own (its copy goes to the node: a request body).
async fn honest_member_is_served(c: &Cluster, seed: u64) {
    let got = c.member.get_bytes(&c.file).await.expect("the member gets a file during the attack");
    assert!(got == c.file_data, "the file comes back whole");
    let put = c.member.put_bytes(&content(seed, 4 << 20)).await.expect("the member puts a file during the attack");
    assert_eq!(put.replicas, 1, "its copies reached the node under attack");
}

/// What an attack did to the node.
struct Outcome<T> {
    /// What each attacking connection returned.
    results: Vec<T>,
    /// Connections closed over the budget, in all and when the honest
    /// member had been served.
    over_budget: u64,
    over_budget_when_served: u64,
}

/// Runs `attack` on `connections` connections from `from` (each under a
/// fresh identity) against a node with the smallest budget, has the honest
/// member put and get meanwhile, and waits for the node to disconnect
/// every attacking connection. Checks what holds for any attack: the
/// budget gauge and RSS stay within the budget, the member was served
/// while the attack went on, and the budget is free afterwards.
async fn run_attack<T, A>(
    from: IpAddr,
    connections: usize,
    seed: u64,
    attack: impl Fn(Attacker, BlobId) -> A,
) -> Outcome<T>
where
    A: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let c = cluster().await;
    let addr = c.node.address().unwrap();
    let rss = RssPeak::start();
    let gauge = GaugePeak::start(&c.node);
    let mut attackers = Vec::new();
    for _ in 0..connections {
        let conn = member_connect(from, addr).await;
        attackers.push(tokio::spawn(attack(conn, c.big_blob)));
    }
    wait_for("the attack to take memory", Duration::from_secs(20), || {
        c.node.stats().memory_held >= MAX_FRAME_LEN as u64 / 2
    })
    .await;
    honest_member_is_served(&c, seed).await;
    let over_budget_when_served = c.node.stats().connections_over_budget;
    let mut results = Vec::new();
    for attacker in attackers {
        let result = tokio::time::timeout(Duration::from_secs(60), attacker)
            .await
            .expect("the node disconnects every attacking connection");
        results.push(result.unwrap());
    }
    let (gauge_peak, rss_growth_mib) = (gauge.finish().await, rss.growth_mib());
    let budget_mib = BUDGET as u64 / MIB;
    println!(
        "budget {budget_mib} MiB: the budget gauge peaked at {:.1} MiB, peak RSS grew {rss_growth_mib} MiB",
        gauge_peak as f64 / MIB as f64
    );
    assert!(gauge_peak <= BUDGET as u64, "the gauge ({gauge_peak}) stays within the budget ({BUDGET})");
    assert!(over_budget_when_served < connections as u64, "the member was served during the attack");
    assert!(rss_growth_mib < budget_mib + 64, "peak RSS grew {rss_growth_mib} MiB, budget {budget_mib} MiB");
    wait_for("the budget to be free again", Duration::from_secs(10), || c.node.stats().memory_held == 0).await;
    let over_budget = c.node.stats().connections_over_budget;
    Outcome { results, over_budget, over_budget_when_served }
}

type Attacker = Framed<SecureStream, FrameCodec>;

/// Asks for the largest blob `REQUESTS` times and never reads: only sends
/// a ping now and then, so that the connection never looks idle.
async fn unread_requests(mut conn: Attacker, blob: BlobId) {
    const REQUESTS: u64 = 4;
    for id in 0..REQUESTS {
        conn.feed(encode(&Message::Request { id, body: Request::GetBlob { id: blob } })).await.unwrap();
    }
    conn.flush().await.unwrap();
    for id in REQUESTS.. {
        tokio::time::sleep(IDLE / 4).await;
        if conn.send(encode(&Message::Request { id, body: Request::Ping })).await.is_err() {
            return;
        }
    }
}

#[test]
fn unread_answers_on_many_connections_stay_within_the_budget() {
    const CONNECTIONS: usize = 48;
    let _serial = serial();
    cas_core::logging::init();
    runtime().block_on(async {
        let out = run_attack([127, 0, 7, 1].into(), CONNECTIONS, 3, unread_requests).await;
        println!(
            "{CONNECTIONS} connections x 4 unread requests for a {MAX_FRAME_LEN}-byte blob: {} connections closed \
             over the budget ({} when the member had been served)",
            out.over_budget, out.over_budget_when_served
        );
        assert_eq!(out.over_budget, CONNECTIONS as u64, "every attacking connection waited, then was cut off");
    });
}

/// Sends the header of a frame of the largest size, and all of its body
/// but the last byte. Returns whether it could send all that before the
/// node hung up.
async fn all_but_the_last_byte(mut conn: Attacker, _: BlobId) -> bool {
    const PIECE: usize = 1 << 20;
    let piece = vec![0u8; PIECE];
    let io = conn.get_mut();
    if io.write_all(&frame::header(MAX_FRAME_LEN).unwrap()).await.is_err() {
        return false;
    }
    let mut left = MAX_FRAME_LEN - 1;
    while left > 0 {
        let n = left.min(PIECE);
        if io.write_all(&piece[..n]).await.is_err() || io.flush().await.is_err() {
            return false;
        }
        left -= n;
    }
    // Then wait for the node to hang up.
    let mut rest = Vec::new();
    let _ = io.read_to_end(&mut rest).await;
    true
}

#[test]
fn frames_short_of_their_last_byte_on_many_connections_stay_within_the_budget() {
    const CONNECTIONS: usize = 32;
    let _serial = serial();
    cas_core::logging::init();
    runtime().block_on(async {
        let out = run_attack([127, 0, 8, 1].into(), CONNECTIONS, 4, all_but_the_last_byte).await;
        let sent_whole = out.results.iter().filter(|whole| **whole).count();
        println!(
            "{CONNECTIONS} frames of {MAX_FRAME_LEN} bytes short of their last byte: {sent_whole} connections could \
             send theirs (the node did not read the others: they were slowed down); {} connections closed over \
             the budget ({} when the member had been served)",
            out.over_budget, out.over_budget_when_served
        );
        assert!(sent_whole <= CONNECTIONS / 4, "most connections were slowed down ({sent_whole} were not)");
        assert!(
            out.over_budget + sent_whole as u64 >= CONNECTIONS as u64,
            "every connection whose frame was not read was cut off over the budget"
        );
    });
}
