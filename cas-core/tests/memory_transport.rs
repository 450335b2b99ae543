//! The node over an in-memory transport: no sockets at all, which shows the
//! node reaches the network only through the `Transport` trait.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cas_core::net::memory::MemoryTransport;
use cas_core::Node;
use common::{alive, content, net_config, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_memory_pipes_replicate_and_get() {
    let dir = tempfile::tempdir().unwrap();
    let transport = Arc::new(MemoryTransport::default());
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..3 {
        let mut cfg = net_config(&dir.path().join(format!("m{i}")), &nodes.iter().take(1).collect::<Vec<_>>());
        cfg.listen = Some("127.0.0.1:0".into());
        nodes.push(Node::start_with_transport(cfg, transport.clone()).await.unwrap());
    }
    for n in &nodes {
        wait_for("3-node mesh in memory", Duration::from_secs(20), || alive(n) == 2).await;
    }
    let data = content(9, 5 * 64 * 1024 + 1);
    let report = nodes[0].put_bytes(&data).await.unwrap();
    assert_eq!(report.replicas, 2, "both peers hold every blob");
    nodes[0].shutdown().await;
    // A newcomer holds nothing: every byte it gets crosses the memory pipes.
    let newcomer_cfg = net_config(&dir.path().join("m3"), &[&nodes[1]]);
    let newcomer = Node::start_with_transport(newcomer_cfg, transport.clone()).await.unwrap();
    assert!(newcomer.get_bytes(&report.key).await.unwrap() == data);
    assert!(newcomer.stats().bytes_received >= data.len() as u64);
}
