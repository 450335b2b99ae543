//! `open()` read in order fetches the next chunks ahead of the reads,
//! within the node's window; a read elsewhere drops what was read ahead.

mod common;

use std::io::SeekFrom;
use std::time::Duration;

use cas_core::format::TAG_LEN;
use cas_core::{FileReader, Node};
use common::{alive, content, net_config, wait_for, Scratch, MIN_CHUNK};

const C: u64 = MIN_CHUNK as u64;
const CHUNKS: u64 = 16;

/// Reads exactly `buf.len()` bytes (the reader stops at chunk boundaries).
async fn read_exact(reader: &mut FileReader, buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await.unwrap();
        assert!(n > 0, "unexpected end of file at {}", reader.position());
        filled += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequential_reads_over_the_network_fetch_ahead_and_a_far_seek_drops_it() {
    let dir = tempfile::TempDir::new().unwrap();
    // The owner keeps the only copy: a put must not place chunks on the
    // getter (it would if gossip had already told the owner of it), or the
    // getter would read them from its own disk and nothing would arrive.
    let mut config = net_config(&dir.path().join("owner"), &[]);
    config.replicas = 0;
    let owner = Node::start(config).await.unwrap();
    let mut config = net_config(&dir.path().join("getter"), &[&owner]);
    // A window of 4 chunks: the chunk held and at most 3 read ahead.
    config.parallelism = 4;
    config.keep_fetched = false;
    let getter = Node::start(config).await.unwrap();
    // Both know each other before the put (the case that used to place
    // copies on the getter).
    wait_for("the two nodes to see each other", Duration::from_secs(20), || alive(&getter) == 1 && alive(&owner) == 1)
        .await;
    let data = content(41, (CHUNKS * C) as usize);
    let key = owner.put_bytes(&data).await.unwrap().key;
    assert_eq!(getter.stats().blobs_stored, 0, "the getter holds nothing");

    let mut reader = getter.open(&key).await.unwrap();
    let manifest_bytes = getter.stats().bytes_received;
    assert!(manifest_bytes > 0, "the manifest came over the network");
    assert_eq!(reader.chunks_fetched(), 0);
    let mut chunk = vec![0u8; C as usize];
    // Chunk 0: nothing read ahead yet (one chunk read is not a sequence).
    read_exact(&mut reader, &mut chunk).await;
    assert_eq!((reader.chunks_fetched(), reader.chunks_ahead()), (1, 0));
    // Chunks 1 and 2, each after a whole chunk read in order: 1, then 2
    // more chunks are fetched ahead.
    read_exact(&mut reader, &mut chunk).await;
    assert_eq!((reader.chunks_fetched(), reader.chunks_ahead()), (3, 1));
    read_exact(&mut reader, &mut chunk).await;
    assert_eq!((reader.chunks_fetched(), reader.chunks_ahead()), (5, 2));
    assert!(chunk[..] == data[2 * C as usize..3 * C as usize]);
    // With no read in between, chunks 3 and 4 arrive from the owner.
    let blob = C + TAG_LEN as u64;
    wait_for("chunks 3 and 4 to arrive ahead of the reads", Duration::from_secs(20), || {
        getter.stats().bytes_received >= manifest_bytes + 5 * blob
    })
    .await;
    // Read on, in pieces that do not match chunks: read-ahead stays within
    // the window (3 chunks ahead) and every chunk is fetched once.
    let mut piece = vec![0u8; 10_000];
    let mut pos = 3 * C;
    while pos < 8 * C {
        let n = reader.read(&mut piece).await.unwrap();
        assert!(piece[..n] == data[pos as usize..pos as usize + n]);
        pos += n as u64;
        let held = reader.position().div_ceil(C).max(1);
        assert!(reader.chunks_ahead() <= 3, "{} chunks ahead", reader.chunks_ahead());
        assert!(reader.chunks_fetched() <= held + 3, "{} fetched for {held} read", reader.chunks_fetched());
    }
    assert_eq!(reader.chunks_ahead(), 3);
    let fetched = reader.chunks_fetched();
    assert_eq!(fetched, 8 + 3, "chunks 0 to 7 read, 8 to 10 ahead");

    // A seek far away: what was read ahead is dropped, one chunk fetched.
    reader.seek(SeekFrom::Start(13 * C + 5)).unwrap();
    read_exact(&mut reader, &mut piece[..100]).await;
    assert!(piece[..100] == data[(13 * C + 5) as usize..(13 * C + 105) as usize]);
    assert_eq!((reader.chunks_fetched(), reader.chunks_ahead()), (fetched + 1, 0));
    // The rest of chunk 13 and into 14: chunk 13 was not read whole, so
    // still nothing ahead; after all of 14, chunk 15 is read ahead... and
    // it is the last one.
    let rest = (C - 105) as usize + 10;
    read_exact(&mut reader, &mut vec![0u8; rest]).await;
    assert_eq!((reader.chunks_fetched(), reader.chunks_ahead()), (fetched + 2, 0));
    read_exact(&mut reader, &mut vec![0u8; (C - 10) as usize]).await;
    reader.read(&mut piece[..1]).await.unwrap();
    assert_eq!((reader.chunks_fetched(), reader.chunks_ahead()), (fetched + 3, 0), "15 is the last chunk");
    let mut tail = vec![0u8; 2 * C as usize];
    let n = reader.read(&mut tail).await.unwrap();
    assert_eq!(n as u64, C - 1);
    assert_eq!(reader.read(&mut tail).await.unwrap(), 0, "end of file");

    // Read whole from the start, the file comes back intact and each chunk
    // is fetched once.
    let mut reader = getter.open(&key).await.unwrap();
    let mut all = vec![0u8; data.len()];
    read_exact(&mut reader, &mut all).await;
    assert!(all == data);
    assert_eq!(reader.chunks_fetched(), CHUNKS);
    assert_eq!(reader.chunks_ahead(), 0);
    getter.shutdown().await;
    owner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_one_chunk_reads_nothing_ahead() {
    let s = Scratch::new();
    let mut config = s.config(MIN_CHUNK);
    // Room for exactly one chunk in flight: the reader holds only that one.
    config.max_inflight_bytes = MIN_CHUNK + TAG_LEN;
    let node = Node::start(config).await.unwrap();
    let data = content(42, (6 * C + 17) as usize);
    let key = node.put_bytes(&data).await.unwrap().key;
    let mut reader = node.open(&key).await.unwrap();
    let mut piece = vec![0u8; 7000];
    let mut got = Vec::new();
    loop {
        let n = reader.read(&mut piece).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&piece[..n]);
        assert_eq!(reader.chunks_ahead(), 0);
    }
    assert!(got == data);
    assert_eq!(reader.chunks_fetched(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_ahead_is_an_error_at_its_chunk_and_then_retried() {
    let s = Scratch::new();
    let mut config = s.config(MIN_CHUNK);
    config.parallelism = 4;
    let node = Node::start(config).await.unwrap();
    let data = content(43, (8 * C) as usize);
    let key = node.put_bytes(&data).await.unwrap().key;
    // Chunk 3 is lost from the only store that has it.
    let stat = node.stat(&key).await.unwrap();
    let lost = stat.holders[1 + 3].0;
    std::fs::remove_file(common::blob_path(&s.data_dir(), &lost)).unwrap();

    let mut reader = node.open(&key).await.unwrap();
    let mut chunk = vec![0u8; C as usize];
    for _ in 0..3 {
        read_exact(&mut reader, &mut chunk).await;
    }
    assert!(reader.chunks_ahead() > 0, "chunk 3 is read ahead");
    let err = reader.read(&mut chunk).await.unwrap_err();
    assert!(matches!(err, cas_core::Error::NotFound { .. }), "{err:?}");
    assert_eq!(reader.position(), 3 * C, "a failed read does not move");
    // The next chunks are still readable after a seek past the lost one.
    reader.seek(SeekFrom::Start(4 * C)).unwrap();
    read_exact(&mut reader, &mut chunk).await;
    assert!(chunk[..] == data[4 * C as usize..5 * C as usize]);
}
