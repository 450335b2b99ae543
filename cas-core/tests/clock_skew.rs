//! Liveness does not depend on clocks agreeing (issue 30): of 16 nodes, one
//! runs 2 h ahead and one 2 h behind (an offset on their wall clock, the
//! only clock the membership reads: the incarnation at start), and every
//! node sees every other alive all along. Once the clock of the one ahead
//! is fixed, its restart takes the incarnation one past its last, not a
//! time, and it is alive to all again at once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cas_core::{Config, Node, NodeId, PeerState};
use common::{net_config, wait_for};
use tempfile::TempDir;

const NODES: usize = 16;
const TWO_HOURS_MS: i64 = 2 * 3_600_000;

fn config(dir: &Path, seed: &[&Node], clock_offset_ms: i64) -> Config {
    let mut c = net_config(dir, seed);
    // The defaults' ratio (suspect after 5 gossip rounds of 1 s), quicker.
    c.suspect_after = Duration::from_secs(3);
    c.dead_after = Duration::from_secs(6);
    c.faults.clock_offset_ms = clock_offset_ms;
    c
}

/// The incarnation the node saved at its start.
fn incarnation(dir: &Path) -> u64 {
    u64::from_be_bytes(std::fs::read(dir.join("incarnation")).unwrap().try_into().unwrap())
}

/// The nodes among `ids` that `node` does not see alive.
fn not_alive(node: &Node, ids: &[NodeId]) -> Vec<(NodeId, Option<PeerState>)> {
    let peers = node.peers();
    ids.iter()
        .filter(|id| **id != node.id())
        .map(|id| (*id, peers.iter().find(|p| p.id == *id).map(|p| p.state)))
        .filter(|(_, state)| *state != Some(PeerState::Alive))
        .collect()
}

/// Looks every 100 ms for `period`: every node sees every other alive at every look.
async fn alive_throughout(nodes: &[Node], period: Duration) -> usize {
    let ids: Vec<NodeId> = nodes.iter().map(Node::id).collect();
    let deadline = Instant::now() + period;
    let mut looks = 0;
    while Instant::now() < deadline {
        for (i, node) in nodes.iter().enumerate() {
            let missing = not_alive(node, &ids);
            assert!(missing.is_empty(), "look {looks}: node {i} does not see these alive: {missing:?}");
        }
        looks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    looks
}

async fn all_meet(nodes: &[Node], limit: Duration) {
    let ids: Vec<NodeId> = nodes.iter().map(Node::id).collect();
    wait_for("every node to see every other alive", limit, || nodes.iter().all(|n| not_alive(n, &ids).is_empty()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_nodes_one_two_hours_ahead_one_behind_all_stay_alive() {
    let dirs: Vec<TempDir> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let offset = |i: usize| match i {
        1 => TWO_HOURS_MS,
        2 => -TWO_HOURS_MS,
        _ => 0,
    };
    let seed = Node::start(config(dirs[0].path(), &[], 0)).await.unwrap();
    let mut nodes = vec![seed.clone()];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        nodes.push(Node::start(config(dir.path(), &[&seed], offset(i))).await.unwrap());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(incarnation(dirs[1].path()) > now + 7_000_000, "node 1 started 2 h ahead");
    assert!(incarnation(dirs[2].path()) < now - 7_000_000, "node 2 started 2 h behind");

    all_meet(&nodes, Duration::from_secs(30)).await;
    let looks = alive_throughout(&nodes, Duration::from_secs(8)).await;
    assert!(looks > 10, "{looks} looks");

    // Node 1's clock is fixed: it restarts on the same data dir. Its
    // incarnation is one past the last (peers must take it as newer), not
    // the clock's time and not further ahead.
    let ahead = incarnation(dirs[1].path());
    nodes[1].shutdown().await;
    nodes[1] = Node::start(config(dirs[1].path(), &[&seed], 0)).await.unwrap();
    assert_eq!(incarnation(dirs[1].path()), ahead + 1);
    all_meet(&nodes, Duration::from_secs(15)).await;
    alive_throughout(&nodes, Duration::from_secs(5)).await;
    for node in &nodes {
        node.shutdown().await;
    }
}
