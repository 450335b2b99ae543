//! Put then get gives back the same bytes, through every way of getting:
//! `get_file`, `get_bytes` and the `open` reader, at the edge sizes around
//! a chunk and at the smallest and the default chunk size.

mod common;

use cas_core::Node;
use common::{content, Scratch, DEFAULT_CHUNK, MIN_CHUNK};

/// 0, 1, chunk-1, chunk, chunk+1 and several chunks plus a remainder.
fn sizes(chunk: usize) -> [usize; 6] {
    [0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk + 123]
}

/// Reads the whole file through the reader, with a buffer that does not
/// divide the chunk size, so reads straddle chunk boundaries.
async fn read_all(node: &Node, key: &cas_core::Key) -> Vec<u8> {
    let mut reader = node.open(key).await.expect("open");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 10_007];
    loop {
        let n = reader.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(reader.position(), out.len() as u64);
    out
}

async fn round_trip_at(chunk: usize) {
    let s = Scratch::new();
    let node = s.node(chunk).await;
    for (n, size) in sizes(chunk).into_iter().enumerate() {
        let data = content(n as u64 + chunk as u64, size);
        let input = s.file(&format!("in-{size}"), &data);
        let report = node.put_file(&input, None).await.expect("put_file");
        assert_eq!(report.size, size as u64, "size {size}");
        assert_eq!(report.chunks, size.div_ceil(chunk) as u64, "size {size}: chunk count");

        let dest = s.path(&format!("out-{size}"));
        let written = node.get_file(&report.key, &dest, None).await.expect("get_file");
        assert_eq!(written, size as u64);
        assert!(std::fs::read(&dest).unwrap() == data, "size {size}: get_file bytes differ");

        assert!(node.get_bytes(&report.key).await.expect("get_bytes") == data, "size {size}: get_bytes differ");
        assert!(read_all(&node, &report.key).await == data, "size {size}: reader bytes differ");

        // The key depends on the content only, not on how it was handed in.
        assert_eq!(node.put_bytes(&data).await.expect("put_bytes").key, report.key, "size {size}: put_bytes key");
        let mut stream = data.as_slice();
        let via_reader = node.put_reader(&mut stream, size as u64, None).await.expect("put_reader");
        assert_eq!(via_reader.key, report.key, "size {size}: put_reader key");

        // And it survives the trip through its string form.
        let parsed: cas_core::Key = report.key.to_string().parse().expect("key parses");
        assert!(node.get_bytes(&parsed).await.unwrap() == data);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_smallest_chunk_size() {
    round_trip_at(MIN_CHUNK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_default_chunk_size() {
    round_trip_at(DEFAULT_CHUNK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_file_replaces_an_existing_destination() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let data = content(7, 3 * MIN_CHUNK + 5);
    let report = node.put_bytes(&data).await.unwrap();
    let dest = s.file("existing", &content(8, 10 * MIN_CHUNK));
    node.get_file(&report.key, &dest, None).await.expect("get over an existing file");
    assert!(std::fs::read(&dest).unwrap() == data, "old content must be fully replaced");
    assert_eq!(common::entries(s.dir.path()).iter().filter(|n| n.starts_with(".cas-get-")).count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reads_what_it_stored() {
    let s = Scratch::new();
    let data = content(9, 2 * MIN_CHUNK + 1);
    let node = s.node(MIN_CHUNK).await;
    let key = node.put_bytes(&data).await.unwrap().key;
    node.shutdown().await;
    drop(node);
    let node = s.node(MIN_CHUNK).await;
    assert!(node.get_bytes(&key).await.expect("get after restart") == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_got_back_has_the_permissions_of_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let key = node.put_bytes(&content(3, 1000)).await.unwrap().key;
    let dest = s.path("got");
    node.get_file(&key, &dest, None).await.unwrap();
    // A file created the ordinary way in the same place: 0666 less the umask.
    let plain = s.path("plain");
    std::fs::File::create(&plain).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dest), mode(&plain), "not owner-only like a temporary file");
}
