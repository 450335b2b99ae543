//! Repair brings every blob back to `replicas + 1` copies on alive nodes
//! after any failure that leaves one copy, from whichever node holds it, and
//! never piles copies onto the ideal holders.

mod common;

use std::path::Path;
use std::time::Duration;

use cas_core::format::BlobId;
use cas_core::net::placement::rank_nodes;
use cas_core::{Config, Key, Node, NodeId, PeerState};
use common::{alive, content, net_config, wait_for};
use tempfile::TempDir;

const REPLICAS: usize = 3;
const REPAIR_INTERVAL: Duration = Duration::from_millis(500);
/// Generous: detection (dead_after is 3 s in net_config) plus 3 repair
/// intervals is a few seconds; this bounds a poll on a loaded machine.
const RESTORE_LIMIT: Duration = Duration::from_secs(60);

async fn start_node(dir: &Path, bootstrap: Option<&Node>) -> Node {
    let mut cfg = net_config(dir, &bootstrap.into_iter().collect::<Vec<_>>());
    cfg.replicas = REPLICAS;
    cfg.repair_interval = REPAIR_INTERVAL;
    Node::start(cfg).await.unwrap()
}

/// `count` nodes that all see each other alive.
async fn network(dir: &TempDir, count: usize) -> Vec<Node> {
    network_with(dir, count, |_, _| {}).await
}

/// `count` nodes that all see each other alive, the config of node `i`
/// changed by `tweak(i, config)`.
async fn network_with(dir: &TempDir, count: usize, tweak: impl Fn(usize, &mut Config)) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..count {
        let mut cfg = net_config(&dir.path().join(format!("n{i}")), &nodes.first().into_iter().collect::<Vec<_>>());
        cfg.replicas = REPLICAS;
        cfg.repair_interval = REPAIR_INTERVAL;
        tweak(i, &mut cfg);
        nodes.push(Node::start(cfg).await.unwrap());
    }
    for n in &nodes {
        wait_for("a full mesh", Duration::from_secs(30), || alive(n) == count - 1).await;
    }
    nodes
}

async fn blob_ids(node: &Node, key: &Key) -> Vec<BlobId> {
    node.stat(key).await.unwrap().holders.into_iter().map(|(id, _)| id).collect()
}

fn copies(nodes: &[Node], id: &BlobId) -> usize {
    nodes.iter().filter(|n| n.store().has(id)).count()
}

/// The first `replicas + 1` of `nodes` in rendezvous order for `id`.
fn ideal(nodes: &[Node], id: &BlobId) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = nodes.iter().map(|n| n.id()).collect();
    rank_nodes(id, &mut ids, |n| *n);
    ids.truncate(REPLICAS + 1);
    ids
}

/// Stops the nodes at `victims` (indexes into `nodes`) and waits until every
/// survivor sees them gone; returns the survivors.
async fn stop(nodes: Vec<Node>, victims: &[usize]) -> Vec<Node> {
    let (mut gone, mut survivors) = (Vec::new(), Vec::new());
    for (i, n) in nodes.into_iter().enumerate() {
        if victims.contains(&i) {
            gone.push(n);
        } else {
            survivors.push(n);
        }
    }
    let gone_ids: Vec<NodeId> = gone.iter().map(|n| n.id()).collect();
    for n in gone {
        n.shutdown().await;
    }
    for n in &survivors {
        wait_for("the stopped nodes to leave placement", Duration::from_secs(30), || {
            n.peers().iter().filter(|p| gone_ids.contains(&p.id)).all(|p| p.state != PeerState::Alive)
        })
        .await;
    }
    survivors
}

/// Copies of `id` on its ideal holders among `nodes`.
fn on_ideal(nodes: &[Node], id: &BlobId) -> usize {
    ideal(nodes, id).iter().filter(|i| nodes.iter().any(|n| n.id() == **i && n.store().has(id))).count()
}

async fn wait_restored(nodes: &[Node], ids: &[BlobId]) {
    wait_for("every blob back to replicas + 1 copies on its ideal holders", RESTORE_LIMIT, || {
        ids.iter().all(|id| on_ideal(nodes, id) == REPLICAS + 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_replica_holders_lost_at_once_the_owner_restores_them() {
    let dir = TempDir::new().unwrap();
    let nodes = network(&dir, 12).await;
    let owner_id = nodes[3].id();
    // A one-chunk file (2 blobs) whose holders, once gone, leave the owner
    // outside the ideal set of at least one blob: only the owner can repair
    // it. (Chosen among a few files: the ranking depends on the content.)
    let mut chosen = None;
    for seed in 0..16 {
        let report = nodes[3].put_bytes(&content(seed, 50_000)).await.unwrap();
        assert_eq!(report.replicas, REPLICAS);
        let ids = blob_ids(&nodes[3], &report.key).await;
        let holders: Vec<usize> =
            (0..nodes.len()).filter(|&i| i != 3 && ids.iter().any(|id| nodes[i].store().has(id))).collect();
        let survivors: Vec<Node> =
            nodes.iter().enumerate().filter(|(i, _)| !holders.contains(i)).map(|(_, n)| n.clone()).collect();
        if ids.iter().any(|id| !ideal(&survivors, id).contains(&owner_id)) {
            chosen = Some((report.key, ids, holders));
            break;
        }
    }
    let (key, ids, holders) = chosen.expect("a file whose survivors rank the owner low");
    for id in &ids {
        let left = (0..nodes.len()).filter(|i| !holders.contains(i) && nodes[*i].store().has(id)).count();
        assert_eq!(left, 1, "only the owner's copy will be left");
    }
    let nodes = stop(nodes, &holders).await;
    wait_restored(&nodes, &ids).await;
    // The owner keeps its own copy beside the 4 ideal ones: 5 at most.
    for id in &ids {
        assert!(copies(&nodes, id) <= REPLICAS + 2, "no runaway copies of {id}");
    }
    let reader = nodes.iter().find(|n| n.id() != owner_id).unwrap();
    assert_eq!(reader.get_bytes(&key).await.unwrap().len(), 50_000);
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_and_two_holders_lost_the_rest_restore_every_blob() {
    let dir = TempDir::new().unwrap();
    let nodes = network(&dir, 8).await;
    let data = content(7, 10 * 64 * 1024);
    let report = nodes[2].put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, REPLICAS);
    let ids = blob_ids(&nodes[2], &report.key).await;
    // The two other nodes holding the most blobs: every blob keeps at least
    // one of its 3 replicas.
    let mut others: Vec<usize> = (0..nodes.len()).filter(|&i| i != 2).collect();
    others.sort_by_key(|&i| std::cmp::Reverse(ids.iter().filter(|id| nodes[i].store().has(id)).count()));
    let nodes = stop(nodes, &[2, others[0], others[1]]).await;
    assert!(ids.iter().all(|id| copies(&nodes, id) >= 1));
    wait_restored(&nodes, &ids).await;
    for id in &ids {
        assert!(copies(&nodes, id) <= REPLICAS + 2, "no runaway copies of {id}");
    }
    assert_eq!(nodes[4].get_bytes(&report.key).await.unwrap(), data);
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_back_after_its_blobs_were_re_replicated_adds_no_copies() {
    let dir = TempDir::new().unwrap();
    let nodes = network(&dir, 7).await;
    let data = content(9, 10 * 64 * 1024);
    let report = nodes[1].put_bytes(&data).await.unwrap();
    let ids = blob_ids(&nodes[1], &report.key).await;
    // A put gives 3 replicas; when the owner is not among a blob's 4 ideal
    // holders, repair gives the 4th its copy. Waited for here: a victim
    // stopped before it got that copy would lack it when it comes back, and
    // rightly be given it then.
    wait_restored(&nodes, &ids).await;
    // The holder (not the owner, not the bootstrap node) with the most blobs.
    let victim = (2..nodes.len()).max_by_key(|&i| ids.iter().filter(|id| nodes[i].store().has(id)).count()).unwrap();
    let victim_dir = dir.path().join(format!("n{victim}"));
    let victim_id = nodes[victim].id();
    let mut nodes = stop(nodes, &[victim]).await;
    wait_restored(&nodes, &ids).await;
    let holders = |nodes: &[Node]| -> Vec<Vec<NodeId>> {
        ids.iter().map(|id| nodes.iter().filter(|n| n.store().has(id)).map(|n| n.id()).collect()).collect()
    };
    let restored = holders(&nodes);

    // Back with the same data dir (same identity, same blobs).
    let back = start_node(&victim_dir, Some(&nodes[0])).await;
    assert_eq!(back.id(), victim_id);
    nodes.push(back);
    for n in &nodes {
        wait_for("the node to be back", Duration::from_secs(30), || {
            n.id() == victim_id || n.peers().iter().any(|p| p.id == victim_id && p.state == PeerState::Alive)
        })
        .await;
    }
    // Its ideal holders already have every blob: once the returning node
    // sees everyone, a round on every node makes no copies.
    let everyone = nodes.len() - 1;
    wait_for("the returning node to see every node", Duration::from_secs(30), || {
        alive(nodes.last().unwrap()) == everyone
    })
    .await;
    for n in &nodes {
        let round = n.repair_round().await.unwrap();
        assert_eq!(round.copied, 0, "{} copied after the node came back: {round:?}", n.id());
    }
    for ((id, now), before) in ids.iter().zip(holders(&nodes)).zip(restored) {
        let new: Vec<_> = now.iter().filter(|n| !before.contains(n) && **n != victim_id).collect();
        assert!(new.is_empty(), "blob {id} was copied to {new:?} after the node came back");
        assert_eq!(on_ideal(&nodes, id), REPLICAS + 1);
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrub_finds_a_blob_damaged_on_disk_and_fetches_a_good_copy() {
    let dir = TempDir::new().unwrap();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut cfg = net_config(&dir.path().join(format!("s{i}")), &nodes.first().into_iter().collect::<Vec<_>>());
        cfg.repair_interval = REPAIR_INTERVAL;
        cfg.scrub_rate = 64 << 20;
        nodes.push(Node::start(cfg).await.unwrap());
    }
    for n in &nodes {
        wait_for("a full mesh", Duration::from_secs(30), || alive(n) == 2).await;
    }
    let data = content(21, 4 * 64 * 1024);
    let report = nodes[0].put_bytes(&data).await.unwrap();
    let ids = blob_ids(&nodes[0], &report.key).await;
    let damaged = ids[1];
    let path = common::blob_path(nodes[1].data_dir(), &damaged);
    assert!(path.exists(), "every node holds every blob (3 nodes, 3 replicas)");
    common::flip_byte(&path, 100);

    // A pass reads every blob; the damaged one may come first or last in it.
    wait_for("the scrub to restore the damaged blob and read the others", RESTORE_LIMIT, || {
        let stats = nodes[1].stats();
        stats.scrub_restored == 1 && stats.blobs_scrubbed >= ids.len() as u64 - 1
    })
    .await;
    assert_eq!(nodes[1].stats().scrub_corrupt, 1);
    let entry = nodes[1].store().entry(&damaged).unwrap().expect("the restored blob is indexed");
    assert_eq!(entry.origin, cas_core::store::Origin::Replica, "it keeps the origin of the copy it replaces");
    assert!(entry.verified.is_some());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(BlobId::of(&bytes), damaged, "the blob file is whole again");
    assert!(nodes[1].data_dir().join("quarantine").join(damaged.to_hex()).exists(), "the bad copy is kept aside");

    // A lone node has no peer to ask: the bad blob is quarantined and counted.
    let mut cfg = Config::new(dir.path().join("lone"));
    cfg.fsync = false;
    cfg.repair_interval = REPAIR_INTERVAL;
    cfg.scrub_rate = 64 << 20;
    let lone = Node::start(cfg).await.unwrap();
    let key = lone.put_bytes(&data).await.unwrap().key;
    let manifest = blob_ids(&lone, &key).await[0];
    common::flip_byte(&common::blob_path(lone.data_dir(), &manifest), 7);
    wait_for("the lone node's scrub to find the damage", RESTORE_LIMIT, || lone.stats().scrub_corrupt == 1).await;
    assert_eq!(lone.stats().scrub_restored, 0);
    assert!(!common::blob_path(lone.data_dir(), &manifest).exists());
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_checks_what_changed_not_the_whole_store() {
    const SWEEP: u64 = cas_core::node::REPAIR_SWEEP as u64;
    let dir = TempDir::new().unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..5 {
        let mut cfg = net_config(&dir.path().join(format!("c{i}")), &nodes.first().into_iter().collect::<Vec<_>>());
        cfg.replicas = 2;
        // No background round in this test: it runs each round itself.
        cfg.repair_interval = Duration::from_secs(3600);
        nodes.push(Node::start(cfg).await.unwrap());
    }
    for n in &nodes {
        wait_for("a full mesh", Duration::from_secs(30), || alive(n) == 4).await;
    }
    // 300 one-chunk files: 600 blobs on node 0, more than one sweep.
    for seed in 0..300 {
        nodes[0].put_bytes(&content(1000 + seed, 100)).await.unwrap();
    }
    let stored = nodes[0].stats().blobs_stored;
    assert_eq!(stored, 600);

    // The first round checks every new blob (and sweeps, like every round).
    let first = nodes[0].repair_round().await.unwrap();
    assert_eq!((first.checked, first.unconfirmed), (stored + SWEEP, 0), "{first:?}");
    // No change: only the sweep, and no copy.
    for _ in 0..2 {
        let quiet = nodes[0].repair_round().await.unwrap();
        assert_eq!((quiet.checked, quiet.copied, quiet.unconfirmed), (SWEEP, 0, 0), "{quiet:?}");
    }

    // A node stops: the blobs it was an ideal holder of, and the sweep.
    let victim = nodes[3].id();
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = nodes[0].store().page(after, 1000).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        ids.extend(page.into_iter().map(|(id, _)| id));
    }
    let everyone: Vec<NodeId> = nodes.iter().map(|n| n.id()).collect();
    let affected = ids
        .iter()
        .filter(|id| {
            let mut ranked = everyone.clone();
            rank_nodes(id, &mut ranked, |n| *n);
            ranked[..3].contains(&victim)
        })
        .count() as u64;
    assert!(affected > 0 && affected < stored);
    let stopped = nodes.remove(3);
    stopped.shutdown().await;
    wait_for("node 0 to see the stopped node gone", Duration::from_secs(30), || {
        nodes[0].peers().iter().any(|p| p.id == victim && p.state != PeerState::Alive)
    })
    .await;
    let change = nodes[0].repair_round().await.unwrap();
    assert!(change.checked >= affected && change.checked <= affected + SWEEP, "{affected} affected: {change:?}");
    assert!(change.copied > 0, "{change:?}");
    let quiet = nodes[0].repair_round().await.unwrap();
    assert_eq!((quiet.checked, quiet.copied), (SWEEP, 0), "{quiet:?}");
    for n in nodes {
        n.shutdown().await;
    }
}

/// Whether every node of `nodes` holds a whole file for each of `ids`, and
/// its index lists exactly its files.
fn all_whole_and_indexed(nodes: &[Node], ids: &[BlobId]) -> bool {
    nodes.iter().all(|n| {
        let store = n.store();
        ids.iter().all(|id| std::fs::read(common::blob_path(n.data_dir(), id)).is_ok_and(|b| BlobId::of(&b) == *id))
            && common::indexed(store) == common::on_disk(store)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blob_files_removed_or_cut_short_under_running_nodes_are_given_again() {
    let dir = TempDir::new().unwrap();
    // Scrub off: what the peers are told is enough.
    let nodes = network_with(&dir, 4, |_, cfg| cfg.scrub_rate = 0).await;
    // 4 nodes, 3 replicas: every node is an ideal holder of every blob.
    let report = nodes[0].put_bytes(&content(31, 5 * 64 * 1024)).await.unwrap();
    let ids = blob_ids(&nodes[0], &report.key).await;
    wait_for("every node to hold every blob", RESTORE_LIMIT, || all_whole_and_indexed(&nodes, &ids)).await;

    std::fs::remove_file(common::blob_path(nodes[1].data_dir(), &ids[0])).unwrap();
    let cut = common::blob_path(nodes[1].data_dir(), &ids[1]);
    std::fs::OpenOptions::new().write(true).open(&cut).unwrap().set_len(1000).unwrap();
    std::fs::remove_file(common::blob_path(nodes[2].data_dir(), &ids[2])).unwrap();
    std::fs::remove_file(common::blob_path(nodes[3].data_dir(), &ids[0])).unwrap();

    wait_for("the removed and cut blobs to be given again", RESTORE_LIMIT, || all_whole_and_indexed(&nodes, &ids))
        .await;
    for n in &nodes {
        assert_eq!(n.stats().blobs_stored, ids.len() as u64, "counted once each");
    }
    assert!(nodes[1].data_dir().join("quarantine").join(ids[1].to_hex()).exists(), "the cut file is set aside");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrub_finds_a_blob_file_gone_and_drops_it_from_the_index() {
    let dir = TempDir::new().unwrap();
    let mut cfg = Config::new(dir.path().join("lone"));
    cfg.fsync = false;
    cfg.repair_interval = REPAIR_INTERVAL;
    cfg.scrub_rate = 64 << 20;
    let lone = Node::start(cfg).await.unwrap();
    let key = lone.put_bytes(&content(32, 3 * 64 * 1024)).await.unwrap().key;
    let ids = blob_ids(&lone, &key).await;
    let before = lone.stats();
    std::fs::remove_file(common::blob_path(lone.data_dir(), &ids[1])).unwrap();
    wait_for("the scrub to find the file gone", RESTORE_LIMIT, || lone.stats().scrub_missing == 1).await;
    assert_eq!(lone.store().entry(&ids[1]).unwrap(), None, "dropped from the index");
    let after = lone.stats();
    assert_eq!(after.blobs_stored, before.blobs_stored - 1);
    assert!(after.bytes_stored < before.bytes_stored);
    assert_eq!((after.scrub_corrupt, after.scrub_restored), (0, 0), "no peer to restore it from");
    lone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_passes_over_a_full_node_for_the_next_in_rank() {
    let dir = TempDir::new().unwrap();
    // Node 5 is full: it refuses every copy.
    let nodes = network_with(&dir, 6, |i, cfg| cfg.capacity = (i == 5).then_some(1)).await;
    let full_id = nodes[5].id();
    let mut ids = Vec::new();
    for seed in 0..30 {
        let report = nodes[0].put_bytes(&content(500 + seed, 1000)).await.unwrap();
        assert_eq!(report.replicas, REPLICAS, "the put passes over the full node");
        ids.extend(blob_ids(&nodes[0], &report.key).await);
    }
    // Node 1 goes: of the blobs it held, those that rank the full node among
    // the first 4 survivors can only be restored on the node after it.
    let held: Vec<BlobId> = ids.iter().copied().filter(|id| nodes[1].store().has(id)).collect();
    let survivors: Vec<Node> = nodes.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, n)| n.clone()).collect();
    let ranked_full = held.iter().filter(|id| ideal(&survivors, id).contains(&full_id)).count();
    assert!(ranked_full > 0, "some blob of node 1 ranks the full node among its 4 first survivors");
    let nodes = stop(nodes, &[1]).await;
    let (with_room, full) = nodes.split_at(4);
    wait_for("every blob on the 4 survivors with room", RESTORE_LIMIT, || {
        ids.iter().all(|id| with_room.iter().all(|n| n.store().has(id)))
    })
    .await;
    assert_eq!(full[0].stats().blobs_stored, 0, "the full node took nothing");
    let refused: u64 = with_room.iter().map(|n| n.stats().repair_refused_full).sum();
    assert!(refused >= 1, "refusals are counted");
    assert!(with_room.iter().any(|n| n.stats().peers_full == 1), "and the full node remembered");
    // Settled: rounds copy nothing more and leave nothing unconfirmed.
    for n in with_room {
        for _ in 0..2 {
            let round = n.repair_round().await.unwrap();
            assert_eq!((round.copied, round.unconfirmed), (0, 0), "{round:?}");
        }
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_whose_copy_went_bad_fails_its_audit_and_fetches_a_good_copy() {
    let dir = TempDir::new().unwrap();
    let nodes = network_with(&dir, 2, |_, cfg| {
        cfg.replicas = 1;
        // No background round: the test runs the one it needs.
        cfg.repair_interval = Duration::from_secs(3600);
    })
    .await;
    let report = nodes[0].put_bytes(&content(77, 1000)).await.unwrap();
    assert_eq!(report.replicas, 1);
    let ids = blob_ids(&nodes[0], &report.key).await;
    // Same length, other bytes: a has-blobs answer still claims it.
    let bad = ids[0];
    common::flip_byte(&common::blob_path(nodes[1].data_dir(), &bad), 10);
    assert!(nodes[1].store().has(&bad));

    let round = nodes[0].repair_round().await.unwrap();
    assert_eq!(round.audits_failed, 1, "{round:?}");
    assert_eq!(nodes[0].stats().audits_failed, 1);
    // The holder quarantined its copy and fetched a good one.
    wait_for("the holder to fetch a good copy again", RESTORE_LIMIT, || {
        nodes[1].store().get(&bad).is_ok_and(|b| b.is_some())
    })
    .await;
    assert!(nodes[1].stats().verification_failures >= 1);
    for n in nodes {
        n.shutdown().await;
    }
}
