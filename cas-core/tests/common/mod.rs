//! Helpers shared by the integration tests: nodes on 127.0.0.1 port 0 with
//! fast gossip, deterministic content, and bounded polling.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use cas_core::{Config, Node, PeerState};

/// A config for a networked test node: loopback, port 0, quick gossip.
pub fn net_config(dir: &Path, bootstrap: &[&Node]) -> Config {
    let mut c = Config::new(dir);
    c.listen = Some("127.0.0.1:0".into());
    c.bootstrap = bootstrap.iter().map(|n| n.address().expect("networked").to_string()).collect();
    c.fsync = false;
    c.chunk_size = 64 * 1024;
    c.gossip_interval = Duration::from_millis(100);
    c.suspect_after = Duration::from_millis(1500);
    c.dead_after = Duration::from_millis(3000);
    c.forget_after = Duration::from_secs(60);
    c.request_timeout = Duration::from_secs(5);
    c
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alive peers of `node`.
pub fn alive(node: &Node) -> usize {
    node.peers().iter().filter(|p| p.state == PeerState::Alive).count()
}

/// Deterministic pseudo-random bytes.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
