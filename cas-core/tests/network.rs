//! Multi-node scenarios on 127.0.0.1: replication, survival of node loss,
//! gossip membership, lying peers, garbage on the wire, lone nodes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use cas_core::format::BlobId;
use cas_core::net::placement::score;
use cas_core::{Config, ErrorKind, Node, NodeId, PeerState};
use common::{alive, content, net_config, secure_connect, wait_for, TEST_NETWORK_KEY};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(dir: &TempDir, name: &str, bootstrap: &[&Node]) -> Node {
    Node::start(net_config(&dir.path().join(name), bootstrap)).await.unwrap()
}

/// All blob ids of a stored file: the manifest and its chunks.
async fn blob_ids(node: &Node, key: &cas_core::Key) -> Vec<BlobId> {
    let stat = node.stat(key).await.unwrap();
    stat.holders.iter().map(|(id, _)| *id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_replicate_and_a_newcomer_gets_the_file_after_three_stop() {
    let dir = TempDir::new().unwrap();
    let first = start(&dir, "n0", &[]).await;
    let mut nodes = vec![first.clone()];
    for i in 1..5 {
        nodes.push(start(&dir, &format!("n{i}"), &[&first]).await);
    }
    for n in &nodes {
        wait_for("every node to see 4 alive peers", Duration::from_secs(20), || alive(n) == 4).await;
    }
    let data = content(1, 20 * 64 * 1024 + 999);
    let report = nodes[0].put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, 3, "each blob reached 3 peers");
    assert_eq!(report.chunks, 21);

    let ids = blob_ids(&nodes[0], &report.key).await;
    assert_eq!(ids.len(), 22);
    for id in &ids {
        let copies = nodes.iter().filter(|n| n.store().has(id)).count();
        assert_eq!(copies, 4, "blob {id} should be on exactly 4 nodes");
    }
    // stat sees the same thing the stores say.
    let stat = nodes[0].stat(&report.key).await.unwrap();
    assert!(stat.holders.iter().all(|(_, h)| h.len() == 4 && h.iter().collect::<HashSet<_>>().len() == 4));

    // Stop the owner and two others; a newcomer joins through one survivor.
    for n in &nodes[..3] {
        n.shutdown().await;
    }
    let survivor = nodes[3].clone();
    let newcomer = start(&dir, "n5", &[&survivor]).await;
    let got = newcomer.get_bytes(&report.key).await.unwrap();
    assert!(got == data, "byte-identical after losing 3 of 5 nodes");
    assert!(newcomer.stats().bytes_received > data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_nodes_in_a_chain_all_meet_and_mark_a_stopped_one_dead() {
    let dir = TempDir::new().unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..8 {
        let boot: Vec<&Node> = nodes.last().into_iter().collect();
        let node = start(&dir, &format!("c{i}"), &boot).await;
        nodes.push(node);
    }
    for n in &nodes {
        wait_for("every node to list the 7 others", Duration::from_secs(20), || {
            let peers = n.peers();
            peers.len() == 7 && peers.iter().all(|p| p.state == PeerState::Alive)
        })
        .await;
        // Dialed only at advertised addresses: never our own, never an ephemeral port.
        let addrs: HashSet<_> = n.peers().iter().map(|p| p.address).collect();
        assert_eq!(addrs.len(), 7);
        assert!(!addrs.contains(&n.address().unwrap()));
        let advertised: HashSet<_> = nodes.iter().map(|m| m.address().unwrap()).collect();
        assert!(addrs.is_subset(&advertised));
    }
    let gone = nodes.remove(3);
    let gone_id = gone.id();
    gone.shutdown().await;
    drop(gone);
    for n in &nodes {
        wait_for("the stopped node to be marked dead", Duration::from_secs(20), || {
            n.peers().iter().any(|p| p.id == gone_id && p.state == PeerState::Dead)
        })
        .await;
        assert_eq!(alive(n), 6);
    }
}

/// Writes a fixed node id into a data dir before the node starts.
fn fixed_id(dir: &std::path::Path, byte: u8) -> NodeId {
    std::fs::create_dir_all(dir).unwrap();
    // A user may place their own identity key; the id follows from it.
    std::fs::write(dir.join("identity.key"), [byte; 32]).unwrap();
    cas_core::identity::Identity::from_seed(&[byte; 32]).id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_serving_corrupt_blobs_is_skipped_and_counted() {
    let dir = TempDir::new().unwrap();
    let mut cfgs = Vec::new();
    let mut ids = Vec::new();
    for (i, name) in ["owner", "liar", "good1", "good2", "getter"].iter().enumerate() {
        let path = dir.path().join(name);
        ids.push(fixed_id(&path, i as u8 + 1));
        cfgs.push(path);
    }
    let owner = Node::start(net_config(&cfgs[0], &[])).await.unwrap();
    let mut liar_cfg = net_config(&cfgs[1], &[&owner]);
    liar_cfg.faults.corrupt_served_blobs = true;
    let liar = Node::start(liar_cfg).await.unwrap();
    let good1 = Node::start(net_config(&cfgs[2], &[&owner])).await.unwrap();
    let good2 = Node::start(net_config(&cfgs[3], &[&owner])).await.unwrap();
    for n in [&owner, &liar, &good1, &good2] {
        wait_for("4-node mesh", Duration::from_secs(20), || alive(n) == 3).await;
    }
    let data = content(7, 40 * 64 * 1024);
    let report = owner.put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, 3, "every blob on all three peers");
    owner.shutdown().await;

    let mut getter_cfg = net_config(&cfgs[4], &[&good1]);
    getter_cfg.keep_fetched = false;
    getter_cfg.parallelism = 4;
    let getter = Node::start(getter_cfg).await.unwrap();
    wait_for("getter to see the three holders", Duration::from_secs(20), || {
        let peers = getter.peers();
        [ids[1], ids[2], ids[3]].iter().all(|id| peers.iter().any(|p| p.id == *id && p.state == PeerState::Alive))
    })
    .await;
    let got = getter.get_bytes(&report.key).await.unwrap();
    assert!(got == data, "the file comes back intact from the honest replicas");

    // The getter asks holders in rank order; the liar ranks first among the
    // three holders for some blobs (deterministic: fixed ids, fixed content).
    // Once it has served a bad blob it is asked last, so only the fetches
    // already in flight (at most the window of 4) meet its junk.
    let blobs = blob_ids(&good1, &report.key).await;
    let liar_first =
        blobs.iter().filter(|b| [ids[2], ids[3]].iter().all(|g| score(b, &ids[1]) > score(b, g))).count() as u64;
    assert!(liar_first > 4, "test setup: the liar should rank first for several blobs ({liar_first})");
    let failures = getter.stats().verification_failures;
    assert!((1..=4).contains(&failures), "the liar was asked {failures} times, ranking first for {liar_first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_oversized_frames_and_wrong_versions_close_only_that_connection() {
    let dir = TempDir::new().unwrap();
    let a = start(&dir, "a", &[]).await;
    let addr = a.address().unwrap();

    // 1. Garbage bytes.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]).await.unwrap();
    assert_closed(&mut s).await;

    // 2. A length prefix far over the limit.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_closed(&mut s).await;

    // 3. The secure preamble of a future protocol version.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"CASN\0\0\0\x63").await.unwrap();
    assert_closed(&mut s).await;

    // 4. A proper handshake then a garbage record.
    let (mut s, _) = secure_connect(addr, TEST_NETWORK_KEY).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]).await.unwrap();
    s.flush().await.unwrap();
    assert_closed(&mut s).await;

    // The node still serves real peers.
    let b = start(&dir, "b", &[&a]).await;
    wait_for("b and a to meet", Duration::from_secs(20), || alive(&a) == 1 && alive(&b) == 1).await;
    let report = a.put_bytes(b"still serving").await.unwrap();
    assert_eq!(report.replicas, 1);
    a.shutdown().await;
    assert_eq!(b.get_bytes(&report.key).await.unwrap(), b"still serving");
}

/// Reads until the node closes the stream; fails if it stays open.
async fn assert_closed(s: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut buf = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue, // the node's hello and goodbye
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the node should close a bad connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_stores_locally_and_min_replicas_fails_clearly() {
    let dir = TempDir::new().unwrap();
    let lone = start(&dir, "lone", &[]).await;
    let report = lone.put_bytes(&content(3, 100_000)).await.unwrap();
    assert_eq!(report.replicas, 0);
    assert_eq!(lone.get_bytes(&report.key).await.unwrap(), content(3, 100_000));
    lone.shutdown().await;

    let mut cfg = net_config(&dir.path().join("strict"), &[]);
    cfg.min_replicas = 3;
    let strict = Node::start(cfg).await.unwrap();
    let err = strict.put_bytes(b"needs three peers").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Replication);
    let msg = err.to_string();
    assert!(msg.contains("0 replica") && msg.contains("3 required"), "{msg}");

    // Without networking at all, the embedded default also works.
    let embedded = Node::start(Config::new(dir.path().join("embedded"))).await.unwrap();
    assert_eq!(embedded.put_bytes(b"x").await.unwrap().replicas, 0);
    assert!(embedded.address().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bootstrap_is_retried_until_it_comes_up() {
    let dir = TempDir::new().unwrap();
    // Reserve a port, then free it: nothing listens there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = net_config(&dir.path().join("early"), &[]);
    cfg.bootstrap = vec![format!("127.0.0.1:{port}")];
    let early = Node::start(cfg).await.expect("starts although its bootstrap is down");
    let mut late_cfg = net_config(&dir.path().join("late"), &[]);
    late_cfg.listen = Some(format!("127.0.0.1:{port}"));
    let late = Node::start(late_cfg).await.unwrap();
    wait_for("the early node to reach its bootstrap once it is up", Duration::from_secs(20), || {
        alive(&early) == 1 && alive(&late) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_restores_full_strength_after_a_holder_dies() {
    let dir = TempDir::new().unwrap();
    let mut nodes = Vec::new();
    for i in 0..6 {
        let mut cfg = net_config(&dir.path().join(format!("r{i}")), &nodes.first().into_iter().collect::<Vec<_>>());
        cfg.repair_interval = Duration::from_millis(300);
        nodes.push(Node::start(cfg).await.unwrap());
    }
    for n in &nodes {
        wait_for("6-node mesh", Duration::from_secs(20), || alive(n) == 5).await;
    }
    let data = content(11, 30 * 64 * 1024);
    let report = nodes[0].put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, 3);
    let ids = blob_ids(&nodes[0], &report.key).await;
    // Kill one holder other than the owner: the node holding the most blobs.
    let victim = (1..6).max_by_key(|&i| ids.iter().filter(|id| nodes[i].store().has(id)).count()).unwrap();
    let victim_held = ids.iter().filter(|id| nodes[victim].store().has(id)).count();
    assert!(victim_held > 0);
    let dead = nodes.remove(victim);
    let dead_id = dead.id();
    dead.shutdown().await;
    drop(dead);
    for n in &nodes {
        wait_for("the victim to be out of placement", Duration::from_secs(20), || {
            n.peers().iter().any(|p| p.id == dead_id && p.state != PeerState::Alive)
        })
        .await;
    }
    // Back to replicas + 1 = 4 copies of every blob on alive nodes, and no more than 5.
    wait_for("every blob back to 4 copies", Duration::from_secs(30), || {
        ids.iter().all(|id| nodes.iter().filter(|n| n.store().has(id)).count() >= 4)
    })
    .await;
    let repaired: u64 = nodes.iter().map(|n| n.stats().blobs_repaired).sum();
    assert!(repaired >= victim_held as u64, "repaired {repaired}, victim held {victim_held}");
    // A few more rounds do not add copies beyond the ideal holders plus the owner.
    let before: usize = ids.iter().map(|id| nodes.iter().filter(|n| n.store().has(id)).count()).sum();
    for n in &nodes {
        n.shutdown().await;
    }
    assert!(before <= ids.len() * 5, "no runaway copies: {before} for {} blobs", ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn putting_the_same_file_again_sends_no_blob_twice() {
    let dir = TempDir::new().unwrap();
    let a = start(&dir, "a", &[]).await;
    let b = start(&dir, "b", &[&a]).await;
    wait_for("a and b to meet", Duration::from_secs(20), || alive(&a) == 1 && alive(&b) == 1).await;
    let data = content(5, 10 * 64 * 1024);
    let first = a.put_bytes(&data).await.unwrap();
    let sent = a.stats().bytes_sent;
    assert!(sent > data.len() as u64, "the first put sends every blob");
    let second = a.put_bytes(&data).await.unwrap();
    assert_eq!(second.key, first.key);
    assert_eq!((second.new_blobs, second.replicas), (0, 1));
    assert_eq!(a.stats().bytes_sent, sent, "nothing re-sent to a peer that holds it");
}

/// A file on two holders, `slow` (which never answers a get in time) and
/// `quick`, after its owner stopped; with fixed ids and content, the slow
/// node ranks first for many of its blobs (how many: the last value).
async fn slow_and_quick_holders(dir: &TempDir) -> (Node, Node, cas_core::Key, Vec<u8>, u64) {
    let owner = start(dir, "owner", &[]).await;
    let slow_id = fixed_id(&dir.path().join("slow"), 21);
    let quick_id = fixed_id(&dir.path().join("quick"), 22);
    let mut slow_cfg = net_config(&dir.path().join("slow"), &[&owner]);
    // Far longer than any getter's request timeout.
    slow_cfg.faults.delay_served_blobs = Some(Duration::from_secs(3600));
    let slow = Node::start(slow_cfg).await.unwrap();
    let quick = start(dir, "quick", &[&owner]).await;
    for n in [&owner, &slow, &quick] {
        wait_for("3-node mesh", Duration::from_secs(20), || alive(n) == 2).await;
    }
    let data = content(13, 40 * 64 * 1024);
    let report = owner.put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, 2, "both peers hold every blob");
    owner.shutdown().await;
    let blobs = blob_ids(&quick, &report.key).await;
    let slow_first = blobs.iter().filter(|b| score(b, &slow_id) > score(b, &quick_id)).count() as u64;
    let window = 2 * std::thread::available_parallelism().unwrap().get() as u64;
    assert!(slow_first > 2 * window, "test setup: the slow node ranks first for {slow_first} blobs");
    (slow, quick, report.key, data, slow_first)
}

/// A getter of the file of `slow_and_quick_holders` that knows both holders.
async fn getter_of(dir: &TempDir, slow: &Node, quick: &Node, request_timeout: Duration) -> Node {
    let mut getter_cfg = net_config(&dir.path().join("getter"), &[quick]);
    getter_cfg.request_timeout = request_timeout;
    let getter = Node::start(getter_cfg).await.unwrap();
    wait_for("getter to know both holders", Duration::from_secs(20), || {
        let peers = getter.peers();
        [slow.id(), quick.id()].iter().all(|id| peers.iter().any(|p| p.id == *id))
    })
    .await;
    getter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_holder_is_replaced_by_the_next_one() {
    let dir = TempDir::new().unwrap();
    let (slow, quick, key, data, slow_first) = slow_and_quick_holders(&dir).await;
    let getter = getter_of(&dir, &slow, &quick, Duration::from_millis(500)).await;
    let got = tokio::time::timeout(Duration::from_secs(60), getter.get_bytes(&key))
        .await
        .expect("a slow holder must not stall the get")
        .unwrap();
    assert!(got == data);
    // The slow node ranks first for many blobs, so the getter did ask it
    // and move on: by a timeout or a hedge. Once it has timed out or been
    // outrun, it is asked last: it costs at most the requests in flight then
    // (plus the manifest's), not one per blob. (A margin of as many again
    // for hedges of quick requests that a loaded machine made slow.)
    let window = 2 * std::thread::available_parallelism().unwrap().get() as u64;
    let stats = getter.stats();
    let asked_around = stats.request_timeouts + stats.hedged_requests;
    assert!(
        (1..=2 * (window + 1)).contains(&asked_around),
        "{} timeouts and {} hedges for {slow_first} blobs ranked first on the slow node",
        stats.request_timeouts,
        stats.hedged_requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_does_not_wait_for_a_slow_holder_it_hedges() {
    let dir = TempDir::new().unwrap();
    let (slow, quick, key, data, _) = slow_and_quick_holders(&dir).await;
    // Without hedging, a request to the slow node would wait for this
    // timeout and show in the counters: only hedging gets past it without one.
    let request_timeout = Duration::from_secs(20);
    let getter = getter_of(&dir, &slow, &quick, request_timeout).await;
    let got =
        tokio::time::timeout(Duration::from_secs(60), getter.get_bytes(&key)).await.expect("the get ends").unwrap();
    assert!(got == data);
    let stats = getter.stats();
    assert_eq!(stats.request_timeouts, 0, "no request waited for its timeout");
    assert!(stats.hedged_requests >= 1, "the slow node was hedged around");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_peer_refuses_and_the_next_in_rank_takes_the_replica() {
    let dir = TempDir::new().unwrap();
    let owner = start(&dir, "owner", &[]).await;
    let mut full_cfg = net_config(&dir.path().join("full"), &[&owner]);
    full_cfg.capacity = Some(1000); // smaller than any chunk
    let full = Node::start(full_cfg).await.unwrap();
    let mut others = Vec::new();
    for i in 0..3 {
        others.push(start(&dir, &format!("o{i}"), &[&owner]).await);
    }
    for n in others.iter().chain([&owner, &full]) {
        wait_for("5-node mesh", Duration::from_secs(20), || alive(n) == 4).await;
    }
    let data = content(17, 24 * 64 * 1024);
    let report = owner.put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, 3, "every blob still reached 3 peers");
    let ids = blob_ids(&owner, &report.key).await;
    // The full node ranks among the first three peers for many blobs; each
    // of those went to the next peer in rank instead.
    let ranked_in = ids
        .iter()
        .filter(|id| {
            let mut peers: Vec<NodeId> = others.iter().map(|n| n.id()).chain([full.id()]).collect();
            cas_core::net::placement::rank_nodes(id, &mut peers, |n| *n);
            peers[..3].contains(&full.id())
        })
        .count();
    assert!(ranked_in > 0, "test setup: the full node ranks in the top 3 for some blob");
    assert_eq!(full.stats().blobs_stored, 0, "the full node stored nothing");
    for id in &ids {
        assert_eq!(others.iter().filter(|n| n.store().has(id)).count(), 3, "blob {id} on all three others");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_putting_to_each_other_at_once_do_not_wedge_their_connection() {
    // A load test: many large requests in flight both ways on one connection.
    // (No reader waits on its handlers, so neither side can stop reading while
    // waiting for the other to read; this did not wedge before that either.)
    let dir = TempDir::new().unwrap();
    let mut cfg_a = net_config(&dir.path().join("a"), &[]);
    cfg_a.chunk_size = 4 << 20;
    let a = Node::start(cfg_a).await.unwrap();
    let mut cfg_b = net_config(&dir.path().join("b"), &[&a]);
    cfg_b.chunk_size = 4 << 20;
    let b = Node::start(cfg_b).await.unwrap();
    wait_for("a and b to meet", Duration::from_secs(20), || alive(&a) == 1 && alive(&b) == 1).await;
    let mut puts = Vec::new();
    for i in 0..8u64 {
        for (n, node) in [&a, &b].into_iter().enumerate() {
            let node = node.clone();
            let data = content(100 + 10 * i + n as u64, 16 << 20);
            puts.push(tokio::spawn(async move { node.put_bytes(&data).await }));
        }
    }
    for put in puts {
        let report = put.await.unwrap().unwrap();
        assert_eq!(report.replicas, 1, "every blob reached the other node");
    }
    assert_eq!(a.stats().request_timeouts + b.stats().request_timeouts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_flooding_requests_it_never_reads_is_disconnected() {
    use cas_core::net::frame::{encode, Message, Request};
    let dir = TempDir::new().unwrap();
    let mut cfg = net_config(&dir.path().join("a"), &[]);
    cfg.chunk_size = 1 << 20;
    let a = Node::start(cfg).await.unwrap();
    let report = a.put_bytes(&content(19, 1 << 20)).await.unwrap();
    let chunk = *blob_ids(&a, &report.key).await.last().unwrap();

    let (mut s, _) = secure_connect(a.address().unwrap(), TEST_NETWORK_KEY).await.unwrap();
    let send = |msg: Message| {
        let body = encode(&msg);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    };
    // 200 requests for a 1 MiB blob, whose answers are never read.
    let mut flood = Vec::new();
    for id in 0..200u64 {
        flood.extend(send(Message::Request { id, body: Request::GetBlob { id: chunk } }));
    }
    let _ = s.write_all(&flood).await; // may fail once the node has closed
    let _ = s.flush().await;
    assert_closed(&mut s).await;

    // The node still serves everyone else.
    let b = start(&dir, "b", &[&a]).await;
    assert!(b.get_bytes(&report.key).await.unwrap() == content(19, 1 << 20));
}

fn entries(node: &Node) -> cas_core::net::NetEntries {
    node.debug_net_entries().expect("networked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_connection_is_closed_and_the_next_request_dials_again() {
    let dir = TempDir::new().unwrap();
    let quiet = |mut c: Config| {
        // Gossip rounds further apart than the idle timeout: the connection
        // goes quiet between them.
        c.gossip_interval = Duration::from_millis(1500);
        c.idle_timeout = Duration::from_millis(300);
        c.suspect_after = Duration::from_secs(20);
        c.dead_after = Duration::from_secs(30);
        c
    };
    let a = Node::start(quiet(net_config(&dir.path().join("a"), &[]))).await.unwrap();
    let b = Node::start(quiet(net_config(&dir.path().join("b"), &[&a]))).await.unwrap();
    wait_for("a and b to meet", Duration::from_secs(20), || alive(&a) == 1 && alive(&b) == 1).await;
    let closed_both_sides = || entries(&a).connections == 0 && entries(&b).connections == 0;
    wait_for("the quiet connection to close on both sides", Duration::from_secs(10), closed_both_sides).await;
    // Each put dials again if the connection went idle; some meet it as it
    // closes, and are retried on a new one.
    for i in 0..12u64 {
        if i % 3 == 0 {
            wait_for("the connection to go idle again", Duration::from_secs(10), closed_both_sides).await;
        }
        let data = content(300 + i, 1000 + i as usize);
        let report = a.put_bytes(&data).await.unwrap();
        assert_eq!(report.replicas, 1, "put {i} reached b");
        assert!(b.get_bytes(&report.key).await.unwrap() == data);
    }
    assert_eq!(a.stats().request_timeouts + b.stats().request_timeouts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_connections_and_finished_dials_leave_no_entries_behind() {
    let dir = TempDir::new().unwrap();
    let a = start(&dir, "a", &[]).await;
    let b = start(&dir, "b", &[&a]).await;
    let c = start(&dir, "c", &[&b]).await;
    for n in [&a, &b, &c] {
        wait_for("every node to see the two others", Duration::from_secs(20), || alive(n) == 2).await;
        wait_for("one connection per peer and no dial in progress", Duration::from_secs(10), || {
            let e = entries(n);
            e.connections == 2 && e.dialing == 0
        })
        .await;
    }
    c.shutdown().await;
    for n in [&a, &b] {
        wait_for("the stopped node's connection and failed dials to leave", Duration::from_secs(20), || {
            let e = entries(n);
            e.connections == 1 && e.dialing == 0
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_the_peers_it_knew_without_a_bootstrap_address() {
    let dir = TempDir::new().unwrap();
    let a = start(&dir, "a", &[]).await;
    let b = start(&dir, "b", &[&a]).await;
    let a_addr = a.address().unwrap().to_string();
    let saved = b.data_dir().join("peers");
    // Saved every 10 gossip rounds (100 ms each here).
    wait_for("b to save a's address", Duration::from_secs(20), || {
        std::fs::read_to_string(&saved).is_ok_and(|s| s.lines().any(|l| l == a_addr))
    })
    .await;
    b.shutdown().await;
    drop(b);
    let b = Node::start(net_config(&dir.path().join("b"), &[])).await.unwrap(); // no bootstrap
    wait_for("b to rejoin a", Duration::from_secs(20), || alive(&a) == 1 && alive(&b) == 1).await;
}
