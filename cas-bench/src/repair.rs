//! What a repair round costs on a large store: three nodes in this process
//! (loopback TCP, the secure transport), each holding the same BLOBS small
//! blobs, 2 replicas, so every node is an ideal holder of every blob and no
//! round has anything to copy. The first round after a start checks every
//! blob it has not confirmed (all of them, here); a round with no change
//! checks only its sweep. Timed in this process; the ratio is what counts.

use std::path::Path;
use std::time::{Duration, Instant};

use cas_core::store::VerifiedBlob;
use cas_core::{Config, Node, PeerState, RepairReport};

/// Blobs per store (`CAS_BENCH_REPAIR_BLOBS` overrides).
const BLOBS: usize = 100_000;
const NODES: usize = 3;

/// One measured round.
pub struct Round {
    pub what: &'static str,
    pub seconds: f64,
    pub report: RepairReport,
}

/// What was measured.
pub struct Measured {
    /// Blobs per store.
    pub blobs: usize,
    pub rounds: Vec<Round>,
    /// Opening a store of that size: (what, seconds).
    pub opens: Vec<(&'static str, f64)>,
}

pub fn measure(work: &Path) -> Measured {
    let blobs = std::env::var("CAS_BENCH_REPAIR_BLOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(BLOBS);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run(work, blobs))
}

async fn run(work: &Path, blobs: usize) -> Measured {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..NODES {
        let mut c = Config::new(work.join(format!("repair-{i}")));
        c.listen = Some("127.0.0.1:0".into());
        c.network_key = Some([7; 32]);
        c.fsync = false;
        c.replicas = NODES - 1;
        c.gossip_interval = Duration::from_millis(100);
        // No background round: the bench runs each round itself.
        c.repair_interval = Duration::from_secs(24 * 3600);
        c.scrub_rate = 0;
        c.bootstrap = nodes.first().map(|n| n.address().expect("listening").to_string()).into_iter().collect();
        nodes.push(Node::start(c).await.expect("start a repair bench node"));
    }
    eprintln!("repair: writing {blobs} blobs into each of {NODES} stores...");
    let stores: Vec<_> = nodes.iter().map(|n| n.store().clone()).collect();
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            for store in &stores {
                scope.spawn(move || {
                    for i in 0..blobs as u64 {
                        let mut bytes = i.to_le_bytes().to_vec();
                        bytes.resize(256, 0xab);
                        store.put(&VerifiedBlob::new(bytes)).expect("store a bench blob");
                    }
                });
            }
        })
    })
    .await
    .expect("fill the stores");
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().any(|n| n.peers().iter().filter(|p| p.state == PeerState::Alive).count() < NODES - 1) {
        assert!(Instant::now() < deadline, "the repair bench nodes did not all see each other");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut rounds = Vec::new();
    for what in ["first round after a start (every blob new)", "a round with no change", "another round with no change"]
    {
        eprintln!("repair: {what}...");
        let started = Instant::now();
        let report = nodes[0].repair_round().await.expect("repair round");
        rounds.push(Round { what, seconds: started.elapsed().as_secs_f64(), report });
    }
    let dir = nodes[0].data_dir().to_path_buf();
    for n in nodes {
        n.shutdown().await;
    }

    // Opening the store: after an orderly close (the index's totals), then
    // after a crash (the index reconciled with every blob file).
    let mut opens = Vec::new();
    for what in ["after an orderly close", "after a crash (reconciled with blobs/)"] {
        eprintln!("repair: store open {what}...");
        let started = Instant::now();
        let store = cas_core::store::BlobStore::open(&dir, false, None).expect("open the store");
        opens.push((what, started.elapsed().as_secs_f64()));
        assert_eq!(store.blob_count(), blobs as u64);
        store.close_as_if_crashed();
    }
    Measured { blobs, rounds, opens }
}
