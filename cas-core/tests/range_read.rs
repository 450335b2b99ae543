//! The reader returns exactly the bytes of a range and fetches only the
//! chunks that cover it.

mod common;

use std::io::SeekFrom;

use cas_core::{Key, Node};
use common::{content, Scratch, MIN_CHUNK};

const C: u64 = MIN_CHUNK as u64;
const SIZE: u64 = 5 * C + 123;

/// Chunks that cover `[offset, offset + len)` clipped to the file.
fn chunks_covering(offset: u64, len: u64) -> u64 {
    let end = (offset + len).min(SIZE);
    if end <= offset {
        return 0;
    }
    (end - 1) / C - offset / C + 1
}

/// A node holding a file of SIZE bytes: (its scratch area, node, bytes, key).
async fn stored(seed: u64) -> (Scratch, Node, Vec<u8>, Key) {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let data = content(seed, SIZE as usize);
    let key = node.put_bytes(&data).await.unwrap().key;
    (s, node, data, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_return_exact_bytes_and_fetch_only_their_chunks() {
    let (_s, node, data, key) = stored(11).await;

    let cases: &[(u64, u64)] = &[
        (0, 10),
        (0, C),             // exactly the first chunk
        (C - 5, 10),        // spans the first boundary
        (C, C),             // exactly the second chunk
        (2 * C + 7, 2 * C), // spans three chunks
        (C - 1, 3 * C + 2), // touches five chunks by one byte at each end
        (0, SIZE),          // the whole file
        (SIZE - 10, 10),    // the end of the file
        (5 * C, 123),       // exactly the short last chunk
        (SIZE - 10, 1000),  // runs past the end: clipped
        (SIZE, 10),         // at the end: empty
        (SIZE + 1000, 10),  // past the end: empty
        (3 * C, 0),         // empty range
    ];
    for &(offset, len) in cases {
        let mut reader = node.open(&key).await.unwrap();
        assert_eq!(reader.chunks_fetched(), 0, "open fetches only the manifest");
        let got = reader.read_range(offset, len as usize).await.unwrap();
        let start = offset.min(SIZE) as usize;
        let end = (offset + len).min(SIZE) as usize;
        assert!(got == data[start..end], "range ({offset}, {len}): wrong bytes (got {} bytes)", got.len());
        assert_eq!(reader.chunks_fetched(), chunks_covering(offset, len), "range ({offset}, {len}): chunks fetched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_then_read_fetches_one_chunk_per_chunk_read() {
    let (_s, node, data, key) = stored(12).await;
    let mut reader = node.open(&key).await.unwrap();
    assert_eq!(reader.size(), SIZE);

    assert_eq!(reader.seek(SeekFrom::End(-20)).unwrap(), SIZE - 20);
    let mut buf = [0u8; 64];
    let n = reader.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], &data[(SIZE - 20) as usize..]);
    assert_eq!(reader.read(&mut buf).await.unwrap(), 0, "end of file");
    assert_eq!(reader.chunks_fetched(), 1);

    // Reads within the chunk already held fetch nothing more.
    reader.seek(SeekFrom::Start(5 * C)).unwrap();
    reader.read(&mut buf[..10]).await.unwrap();
    reader.seek(SeekFrom::Current(-10)).unwrap();
    reader.read(&mut buf[..10]).await.unwrap();
    assert_eq!(&buf[..10], &data[(5 * C) as usize..(5 * C + 10) as usize]);
    assert_eq!(reader.chunks_fetched(), 1);

    // A read stops at the chunk boundary rather than fetching the next chunk.
    reader.seek(SeekFrom::Start(C - 3)).unwrap();
    assert_eq!(reader.read(&mut buf).await.unwrap(), 3);
    assert_eq!(&buf[..3], &data[(C - 3) as usize..C as usize]);
    assert_eq!(reader.chunks_fetched(), 2);

    assert!(reader.seek(SeekFrom::Current(-(SIZE as i64) * 2)).is_err(), "negative position");
    reader.seek(SeekFrom::Start(SIZE + 5)).unwrap();
    assert_eq!(reader.read(&mut buf).await.unwrap(), 0, "past the end");
    assert_eq!(reader.chunks_fetched(), 2);
}
