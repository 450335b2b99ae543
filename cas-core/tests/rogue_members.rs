//! Outsiders and rogue members against a live node: floods of idle
//! connections and of throwaway identities cannot lock members out, junk
//! gossip costs one signature check and then the connection, a node that
//! only dials in never gets copies, and a peer that serves junk is asked
//! last. The attackers are built from the crate's own modules (the secure
//! handshake, the frame codec, identities), and come from other loopback
//! addresses (127.x.y.z) than the members, as from other hosts.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cas_core::identity::Identity;
use cas_core::net::frame::{self, decode, encode, FrameCodec, Message, PeerRecord, Request, Response};
use cas_core::net::placement::rank_nodes;
use cas_core::net::secure::{initiate, Credentials, SecureStream};
use cas_core::testing::rogue::{connect_from, serve_as_rogue, Counts, Records, Rogue};
use cas_core::{Limits, Node, PeerState};
use common::{content, net_config, wait_for, TEST_NETWORK_KEY};
use futures::{SinkExt, StreamExt};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// The handshake as a member (or a member's throwaway identity) does it,
/// from `from`, claiming to listen at `listen`.
async fn member_connect(
    from: IpAddr,
    to: SocketAddr,
    identity: Identity,
    listen: SocketAddr,
) -> Result<Framed<SecureStream, FrameCodec>, String> {
    let tcp = connect_from(from, to).await.map_err(|e| e.to_string())?;
    let creds = Credentials::new(TEST_NETWORK_KEY, identity, listen, false);
    let (stream, _) = initiate(Box::new(tcp), &creds, None).await.map_err(|e| e.to_string())?;
    Ok(Framed::new(stream, frame::codec()))
}

/// Sends one request and waits for its answer (skipping the node's own requests).
async fn ask(conn: &mut Framed<SecureStream, FrameCodec>, id: u64, body: Request) -> Option<Response> {
    conn.send(encode(&Message::Request { id, body })).await.ok()?;
    while let Some(Ok(f)) = conn.next().await {
        match decode(&f).ok()? {
            Message::Response { id: got, body } if got == id => return Some(body),
            Message::Goodbye { .. } => return None,
            _ => {}
        }
    }
    None
}

/// A member's handshake and one ping from 127.0.0.1, within `limit`.
async fn member_handshake_and_ping(node: SocketAddr, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let attempt = async {
        let mut conn =
            member_connect([127, 0, 0, 1].into(), node, Identity::generate(), ([127, 0, 0, 1], 9).into()).await?;
        match ask(&mut conn, 1, Request::Ping).await {
            Some(Response::Pong) => Ok(started.elapsed()),
            other => Err(format!("ping answered {other:?}")),
        }
    };
    tokio::time::timeout(limit, attempt).await.map_err(|_| format!("no handshake and ping within {limit:?}"))?
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Records of `n` fresh identities, each signature spoilt: verifying one
/// costs as much as verifying a good one, and none may count.
fn records_with_bad_signatures(n: usize) -> Vec<PeerRecord> {
    (0..n)
        .map(|i| {
            let mut r = PeerRecord::sign(&Identity::generate(), ([10, 9, 0, 1], 7000).into(), 1, i as u64);
            r.signature[1][0] ^= 1;
            r
        })
        .collect()
}

#[test]
fn junk_gossip_costs_one_signature_check_and_then_the_connection() {
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let node = Node::start(net_config(&dir.path().join("a"), &[])).await.unwrap();
        let addr = node.address().unwrap();
        let idle = member_handshake_and_ping(addr, Duration::from_secs(5)).await.unwrap();
        let junk = records_with_bad_signatures(10_001);
        let mut rogue = member_connect([127, 0, 3, 1].into(), addr, Identity::generate(), ([127, 0, 3, 1], 9).into())
            .await
            .unwrap();
        let before = node.debug_gossip_signatures_checked();
        let answer = ask(&mut rogue, 1, Request::Gossip { peers: junk.clone() }).await;
        assert!(matches!(answer, Some(Response::Error { .. })), "a message with bad signatures is refused: {answer:?}");
        let checked = node.debug_gossip_signatures_checked() - before;
        assert_eq!(checked, 1, "the first bad signature ends the merge, whatever the message's length");
        assert_eq!(node.stats().gossip_rejected, 1);
        assert!(node.peers().is_empty(), "nothing of the message counted");
        // Meanwhile a member is served at once...
        let during = member_handshake_and_ping(addr, Duration::from_secs(5)).await.unwrap();
        // ...and the second such message costs the rogue its connection.
        let second = ask(&mut rogue, 2, Request::Gossip { peers: junk }).await;
        assert!(matches!(second, Some(Response::Error { .. }) | None), "{second:?}");
        let closed =
            tokio::time::timeout(Duration::from_secs(10), async { while let Some(Ok(_)) = rogue.next().await {} });
        assert!(closed.await.is_ok(), "the node closes the connection of a peer that sends bad gossip again");
        assert_eq!(node.stats().gossip_rejected, 2);
        println!("member handshake + ping: {idle:?} idle, {during:?} right after a 10,001-record junk message");
    });
}

/// Opens idle TCP connections from `sources` (round robin), `per_source`
/// each, reopening each as the node closes it, until `stop`. Returns how
/// many connections it opened in all.
async fn outsider_flood(node: SocketAddr, sources: Vec<IpAddr>, per_source: usize, stop: CancellationToken) -> usize {
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for source in sources {
        for _ in 0..per_source {
            let (stop, opened) = (stop.clone(), opened.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let Ok(mut tcp) = connect_from(source, node).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 16];
                    // Idle until the node closes it (or the test ends).
                    tokio::select! {
                        _ = tcp.read(&mut buf) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    opened.load(Ordering::Relaxed)
}

#[test]
fn an_outsider_flood_of_idle_connections_does_not_lock_members_out() {
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let a = Node::start(net_config(&dir.path().join("a"), &[])).await.unwrap();
        let addr = a.address().unwrap();
        // 1,000 idle connections from 64 addresses, one per /24.
        let sources: Vec<IpAddr> = (0..64u8).map(|i| IpAddr::from([127, 1, i, 1])).collect();
        let stop = CancellationToken::new();
        let flood = tokio::spawn(outsider_flood(addr, sources, 1000 / 64 + 1, stop.clone()));
        wait_for("the flood to fill the handshake room", Duration::from_secs(20), || a.stats().connections_evicted > 0)
            .await;
        let mut ok = 0;
        let mut times = Vec::new();
        for _ in 0..40 {
            match member_handshake_and_ping(addr, Duration::from_secs(1)).await {
                Ok(t) => {
                    ok += 1;
                    times.push(t);
                }
                Err(e) => println!("a member failed: {e}"),
            }
        }
        // A new node joins through the flooded one.
        let joined = Instant::now();
        let b = Node::start(net_config(&dir.path().join("b"), &[&a])).await.unwrap();
        wait_for("the new node to see the flooded one alive", Duration::from_secs(5), || common::alive(&b) == 1).await;
        let joined = joined.elapsed();
        stop.cancel();
        let opened = flood.await.unwrap();
        times.sort();
        println!(
            "outsider flood ({opened} connections opened, {} seats given up): {ok}/40 member handshakes + pings \
             within 1 s, median {:?}, worst {:?}; a new node joined in {joined:?}",
            a.stats().connections_evicted,
            times.get(times.len() / 2),
            times.last()
        );
        assert!(opened >= 1000, "the flood kept at least 1,000 connections coming ({opened})");
        assert!(ok >= 38, "at least 95% of member handshakes succeed within 1 s: {ok}/40");
    });
}

#[test]
fn throwaway_identities_from_one_host_do_not_lock_members_out() {
    // More than the 1,024 inbound seats in all.
    const IDENTITIES: usize = 1100;
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let a = Node::start(net_config(&dir.path().join("a"), &[])).await.unwrap();
        let addr = a.address().unwrap();
        let host: IpAddr = [127, 0, 9, 1].into();
        let mut held = Vec::new();
        let mut handshaken = 0;
        for _ in 0..IDENTITIES {
            if let Ok(conn) = member_connect(host, addr, Identity::generate(), SocketAddr::new(host, 9)).await {
                handshaken += 1;
                held.push(conn);
            }
        }
        let mut ok = 0;
        for _ in 0..20 {
            match member_handshake_and_ping(addr, Duration::from_secs(1)).await {
                Ok(_) => ok += 1,
                Err(e) => println!("a member failed: {e}"),
            }
        }
        let joined = Instant::now();
        let b = Node::start(net_config(&dir.path().join("b"), &[&a])).await.unwrap();
        wait_for("the new node to see the other alive", Duration::from_secs(5), || common::alive(&b) == 1).await;
        // The flood churned its own seats: its oldest connections were closed.
        let mut closed = 0;
        for conn in held.iter_mut().take(100) {
            if tokio::time::timeout(Duration::from_millis(200), conn.next()).await.is_ok_and(|f| f.is_none()) {
                closed += 1;
            }
        }
        println!(
            "{IDENTITIES} throwaway identities from one address ({handshaken} handshaken, {} seats given up, \
             {closed} of its first 100 closed): {ok}/20 member handshakes + pings within 1 s; a new node \
             joined in {:?}",
            a.stats().connections_evicted,
            joined.elapsed()
        );
        assert!(ok >= 19, "at least 95% of member handshakes succeed within 1 s: {ok}/20");
        assert_eq!(handshaken, IDENTITIES, "every handshake succeeds: the newest are never refused");
        assert!(
            a.stats().connections_evicted >= (IDENTITIES - 256) as u64,
            "one address holds at most 256 inbound seats"
        );
        assert!(closed >= 90, "the flood's oldest connections were closed to make room ({closed}/100)");
    });
}

#[test]
fn a_peer_that_serves_junk_is_asked_once_in_a_get() {
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let mut config = net_config(&dir.path().join("a"), &[]);
        config.replicas = 2;
        let a = Node::start(config).await.unwrap();
        let b = Node::start(net_config(&dir.path().join("b"), &[&a])).await.unwrap();
        let rogue = Rogue::start(TEST_NETWORK_KEY, [127, 0, 5, 1].into(), 1, 0).await.unwrap();
        // The rogue dials in (and serves that connection too); the node
        // then reaches it at its own listener.
        rogue.introduce(0, a.address().unwrap()).await.unwrap();
        wait_for("a to see b and the rogue alive", Duration::from_secs(20), || common::alive(&a) == 2).await;
        let data = content(7, 40 * common::MIN_CHUNK);
        let report = a.put_bytes(&data).await.unwrap();
        assert!(
            rogue.counts().stores.load(Ordering::Relaxed) > 0,
            "the rogue is a placement target (it has a listener)"
        );
        let stat = a.stat(&report.key).await.unwrap();
        let rogue_id = rogue.identities()[0].0.id();
        let mut ranked_first = 0;
        for (id, _) in &stat.holders {
            let mut nodes = vec![a.id(), b.id(), rogue_id];
            rank_nodes(id, &mut nodes, |n| *n);
            ranked_first += usize::from(nodes[0] == rogue_id);
        }
        assert!(ranked_first >= 2, "the rogue ranks first for several blobs ({ranked_first})");

        let mut config = net_config(&dir.path().join("c"), &[&a]);
        config.parallelism = 1;
        let c = Node::start(config).await.unwrap();
        wait_for("c to see a, b and the rogue alive", Duration::from_secs(20), || common::alive(&c) == 3).await;
        let got = c.get_bytes(&report.key).await.unwrap();
        assert!(got == data, "the file is whole despite the junk");
        let asked = rogue.counts().gets.load(Ordering::Relaxed);
        println!(
            "the rogue ranked first for {ranked_first} of {} blobs and was asked {asked} times",
            stat.holders.len()
        );
        assert_eq!(asked, 1, "after its first junk answer the rogue is asked last, and so not at all");
        assert!(c.stats().verification_failures >= 1);
    });
}

#[test]
fn a_node_that_only_dials_in_never_gets_copies() {
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let a = Node::start(net_config(&dir.path().join("a"), &[])).await.unwrap();
        let b = Node::start(net_config(&dir.path().join("b"), &[&a])).await.unwrap();
        wait_for("a and b to see each other", Duration::from_secs(20), || {
            common::alive(&a) == 1 && common::alive(&b) == 1
        })
        .await;
        // It claims an address where a listener the test holds accepts and
        // hangs up: the node's dial there fails, and the test sees it tried.
        let claimed = TcpListener::bind("127.0.6.1:0").await.unwrap();
        let claimed_addr = claimed.local_addr().unwrap();
        let identity = Identity::generate();
        let conn =
            member_connect(claimed_addr.ip(), a.address().unwrap(), identity.clone(), claimed_addr).await.unwrap();
        let counts = Arc::new(Counts::default());
        let records = Arc::new(Records::new(vec![(identity.clone(), claimed_addr)]));
        // It answers every request over its own connection, as a node would.
        let serving = tokio::spawn(serve_as_rogue(conn, identity.id(), records, counts.clone()));
        let (probe, _) = tokio::time::timeout(Duration::from_secs(20), claimed.accept())
            .await
            .expect("the node tries the address the rogue claims")
            .unwrap();
        drop(probe);
        drop(claimed);
        let report = a.put_bytes(&content(9, 8 * common::MIN_CHUNK)).await.unwrap();
        assert_eq!(report.replicas, 1, "the copies went to b only");
        assert!(!a.peers().iter().any(|p| p.id == identity.id()), "the rogue is not a peer of a");
        assert_eq!(counts.stores.load(Ordering::Relaxed), 0, "and was sent no copy");
        serving.abort();
    });
}

/// Whether the node ends `conn` within `limit` (its goodbye, or the end of
/// the stream), skipping the node's own requests meanwhile.
async fn ended_within(conn: &mut Framed<SecureStream, FrameCodec>, limit: Duration) -> bool {
    let end = async {
        while let Some(Ok(f)) = conn.next().await {
            if matches!(decode(&f), Ok(Message::Goodbye { .. })) {
                return;
            }
        }
    };
    tokio::time::timeout(limit, end).await.is_ok()
}

/// Whether the node closes a raw TCP connection within `limit`.
async fn tcp_closed_within(tcp: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(limit, tcp.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

/// A node in `dir` with the limits `set` gives it.
async fn node_with_limits(dir: &TempDir, set: impl FnOnce(&mut Limits)) -> Node {
    let mut config = net_config(&dir.path().join("a"), &[]);
    set(&mut config.limits);
    Node::start(config).await.unwrap()
}

#[test]
fn admission_limits_set_by_the_operator_take_effect() {
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let a = node_with_limits(&dir, |l| {
            l.max_handshaking_per_address = 2;
            // Longer than the default (1 s), to tell the setting from it.
            l.first_message_timeout = Duration::from_secs(3);
            l.max_inbound_per_address = 4;
        })
        .await;
        let addr = a.address().unwrap();

        // Handshake room: 5 idle sockets from one address keep 2 seats, the
        // newest, until the first message is due; the 3 oldest go at once.
        let idle: IpAddr = [127, 0, 8, 1].into();
        let mut sockets = Vec::new();
        for _ in 0..5 {
            sockets.push(connect_from(idle, addr).await.unwrap());
        }
        let opened = Instant::now();
        for (i, tcp) in sockets.iter_mut().enumerate().take(3) {
            assert!(tcp_closed_within(tcp, Duration::from_secs(2)).await, "idle socket {i} gave up its seat at once");
        }
        assert_eq!(a.stats().connections_evicted, 3, "2 handshaking seats per address");
        tokio::time::sleep(Duration::from_millis(1500).saturating_sub(opened.elapsed())).await;
        for tcp in &mut sockets[3..] {
            assert!(!tcp_closed_within(tcp, Duration::ZERO).await, "still within the 3 s first_message_timeout");
        }
        for tcp in &mut sockets[3..] {
            assert!(tcp_closed_within(tcp, Duration::from_secs(4)).await, "closed once the first message is due");
        }
        let idle_for = opened.elapsed();

        // Inbound room: 12 throwaway identities from one address keep 4
        // seats, the newest; a member from another address gets in.
        let host: IpAddr = [127, 0, 9, 1].into();
        let mut held = Vec::new();
        for _ in 0..12 {
            held.push(member_connect(host, addr, Identity::generate(), SocketAddr::new(host, 9)).await.unwrap());
        }
        for (i, conn) in held.iter_mut().enumerate().take(8) {
            assert!(ended_within(conn, Duration::from_secs(5)).await, "the flood's connection {i} was closed");
        }
        for (i, conn) in held.iter_mut().enumerate().skip(8) {
            let pong = ask(conn, 1, Request::Ping).await;
            assert!(matches!(pong, Some(Response::Pong)), "the newest 4 keep their seats ({i}: {pong:?})");
        }
        assert_eq!(a.stats().connections_evicted, 3 + 8, "4 inbound seats per address");
        let member = member_handshake_and_ping(addr, Duration::from_secs(1)).await.unwrap();
        println!(
            "with 2 handshaking seats per address and a 3 s first message, idle sockets were closed after \
             {idle_for:?}; with 4 inbound seats per address, 8 of 12 throwaway identities lost theirs; a member \
             from another address got in in {member:?}"
        );
    });
}

#[test]
fn one_strike_closes_a_connection_at_its_first_bad_gossip() {
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let node = node_with_limits(&dir, |l| l.bad_gossip_strikes = 1).await;
        let from: IpAddr = [127, 0, 3, 2].into();
        let mut rogue = member_connect(from, node.address().unwrap(), Identity::generate(), SocketAddr::new(from, 9))
            .await
            .unwrap();
        let answer = ask(&mut rogue, 1, Request::Gossip { peers: records_with_bad_signatures(3) }).await;
        assert!(matches!(answer, Some(Response::Error { .. }) | None), "{answer:?}");
        assert!(ended_within(&mut rogue, Duration::from_secs(10)).await, "the first bad message ends the connection");
        assert_eq!(node.stats().gossip_rejected, 1);
    });
}

#[test]
fn repair_audits_a_holder_that_claims_every_blob_and_restores_honest_copies() {
    const REPLICAS: usize = 2;
    cas_core::logging::init();
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let config = |name: &str, bootstrap: &[&Node]| {
            let mut c = net_config(&dir.path().join(name), bootstrap);
            c.replicas = REPLICAS;
            // No background round: the test runs each round itself.
            c.repair_interval = Duration::from_secs(3600);
            c
        };
        let owner = Node::start(config("owner", &[])).await.unwrap();
        let mut honest = Vec::new();
        for name in ["b", "c", "d"] {
            honest.push(Node::start(config(name, &[&owner])).await.unwrap());
        }
        // It claims every blob, acknowledges every copy and drops it, and
        // answers every audit with junk.
        let rogue = Rogue::start(TEST_NETWORK_KEY, [127, 0, 7, 1].into(), 1, 0).await.unwrap();
        rogue.introduce(0, owner.address().unwrap()).await.unwrap();
        for n in honest.iter().chain([&owner]) {
            wait_for("every node to see the 4 others alive", Duration::from_secs(30), || common::alive(n) == 4).await;
        }
        let data = content(25, 40 * common::MIN_CHUNK);
        let report = owner.put_bytes(&data).await.unwrap();
        let ids: Vec<_> = owner.stat(&report.key).await.unwrap().holders.into_iter().map(|(id, _)| id).collect();
        let sent_to_rogue = rogue.counts().stored().len();
        assert!(sent_to_rogue > 0, "the rogue took copies");

        // The owner goes: of each blob, the honest survivors hold 1 or 2
        // copies, and the rogue claims one more.
        owner.shutdown().await;
        let owner_id = owner.id();
        for n in &honest {
            wait_for("the owner to leave placement", Duration::from_secs(30), || {
                n.peers().iter().any(|p| p.id == owner_id && p.state != PeerState::Alive)
            })
            .await;
        }
        let honest_copies = |id: &cas_core::format::BlobId| honest.iter().filter(|n| n.store().has(id)).count();
        let short = ids.iter().filter(|id| honest_copies(id) < REPLICAS + 1).count();
        assert!(short > 0, "some blobs are short of honest copies");

        let mut rounds = 0;
        let (mut audited, mut failed) = (0, 0);
        while ids.iter().any(|id| honest_copies(id) < REPLICAS + 1) {
            rounds += 1;
            assert!(rounds <= 10, "every blob back to {} honest copies within 10 rounds", REPLICAS + 1);
            for n in &honest {
                let round = n.repair_round().await.unwrap();
                audited += round.audited;
                failed += round.audits_failed;
            }
        }
        let rogue_audits = rogue.counts().audits.load(Ordering::Relaxed) as u64;
        let stats: Vec<_> = honest.iter().map(|n| n.stats()).collect();
        let (stat_audits, stat_failed) =
            (stats.iter().map(|s| s.audits).sum::<u64>(), stats.iter().map(|s| s.audits_failed).sum::<u64>());
        println!(
            "{} blobs, {sent_to_rogue} copies sent to the rogue, {short} short of honest copies after the owner \
             left: restored in {rounds} rounds; {audited} audits, {failed} failed (the rogue was audited \
             {rogue_audits} times)",
            ids.len()
        );
        assert!(rogue_audits >= 1, "the rogue was audited");
        assert_eq!(failed, rogue_audits, "every audit of the rogue failed, and no honest holder's");
        assert!(audited > failed, "honest holders were audited and passed");
        assert_eq!((stat_audits, stat_failed), (audited, failed), "the stats count the audits");
        assert!(stats.iter().map(|s| s.blobs_repaired).sum::<u64>() >= short as u64);
        // Settled: the rogue, a liar now, is neither audited nor given copies.
        let stores = rogue.counts().stores.load(Ordering::Relaxed);
        for n in &honest {
            let round = n.repair_round().await.unwrap();
            assert_eq!((round.copied, round.audits_failed), (0, 0), "{round:?}");
        }
        assert_eq!(rogue.counts().stores.load(Ordering::Relaxed), stores);
        // And the file is whole from a node that holds none of it.
        let reader = Node::start(config("reader", &[&honest[0]])).await.unwrap();
        wait_for("the reader to see the others", Duration::from_secs(30), || common::alive(&reader) >= 3).await;
        assert!(reader.get_bytes(&report.key).await.unwrap() == data, "the file survives its owner");
    });
}
