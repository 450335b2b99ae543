//! One process (one node) per data directory: a second node, in this process
//! or another, is refused with DataDirLocked until the first shuts down.
//!
//! One sequential test: the lock is an flock, and a child spawned by a
//! concurrent test would hold a copy of the lock between its fork and exec.

mod common;

use cas_core::{ErrorKind, Node};
use common::{local_example, Scratch, MIN_CHUNK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_on_the_same_dir_is_refused_until_shutdown() {
    let s = Scratch::new();
    let first = s.node(MIN_CHUNK).await;
    let key = first.put_bytes(b"locked").await.unwrap().key;

    let err = Node::start(s.config(MIN_CHUNK)).await.err().expect("second node must be refused");
    assert_eq!(err.kind(), ErrorKind::DataDirLocked, "{err}");
    assert!(err.to_string().contains(&*s.data_dir().to_string_lossy()), "names the directory: {err}");

    // Another process is refused too, and says why.
    let input = s.file("in", b"from another process");
    let out = local_example().arg("put").arg(s.data_dir()).arg(&input).output().unwrap();
    assert!(!out.status.success(), "the child must fail while the directory is locked");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another CAS process"), "{stderr}");

    // The refused starts did not disturb the running node.
    assert_eq!(first.get_bytes(&key).await.unwrap(), b"locked");

    first.shutdown().await;
    let second = Node::start(s.config(MIN_CHUNK)).await.expect("the directory is free after shutdown");
    assert_eq!(second.get_bytes(&key).await.unwrap(), b"locked");
    // Dropping the node (without shutdown) releases it too.
    drop(second);
    let out = local_example().arg("put").arg(s.data_dir()).arg(&input).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Node::start(s.config(MIN_CHUNK)).await.expect("the directory is free after the other process exits");
}
