//! Reading a file into memory is bounded by `Config::max_get_bytes`, checked
//! against the size a manifest claims before anything is fetched; nothing is
//! allocated from that claim. Streaming reads have no such bound.

mod common;

use std::io::SeekFrom;

use cas_core::format::{seal_chunk, BlobId, Manifest, ManifestHeader, MAX_CHUNKS, MAX_CHUNK_SIZE};
use cas_core::store::VerifiedBlob;
use cas_core::testing::put_zeros;
use cas_core::{Error, ErrorKind};
use common::{content, Scratch, MIN_CHUNK};

/// The largest file a manifest can describe: its most chunks, each of the
/// largest size (4 TiB less 16 MiB).
const FOUR_TIB: u64 = MAX_CHUNKS * MAX_CHUNK_SIZE as u64;

/// `err` refuses to read `claimed` bytes into memory, saying how big, the
/// limit and what to do instead.
fn assert_refused(err: Error, claimed: u64, limit: u64) {
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let text = err.to_string();
    for part in [
        &claimed.to_string(),
        &format!("max_get_bytes ({limit})"),
        "read it in pieces",
        "get it to a file",
        "raise max_get_bytes",
    ] {
        assert!(text.contains(part), "the message says {part:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_manifest_claiming_four_tib_is_refused_not_allocated() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    // A valid manifest of the most chunks allowed, each the largest size:
    // one real chunk of zeros, repeated (what deduplication stores for a
    // 4 TiB file of zeros). Whoever has the key may well have made it.
    let key = put_zeros(&node, FOUR_TIB).unwrap();
    assert_eq!(node.stat(&key).await.unwrap().size, FOUR_TIB, "the manifest opens and claims {FOUR_TIB} bytes");
    let limit = node.config().max_get_bytes;

    assert_refused(node.get_bytes(&key).await.unwrap_err(), FOUR_TIB, limit);

    let mut reader = node.open(&key).await.unwrap();
    assert_refused(reader.read_range(0, usize::MAX).await.unwrap_err(), FOUR_TIB, limit);
    assert_refused(reader.read_to_end().await.unwrap_err(), FOUR_TIB, limit);
    assert_eq!(reader.chunks_fetched(), 0, "refused before fetching anything");
    // From a position, the message says the rest and the whole.
    reader.seek(SeekFrom::Start(5)).unwrap();
    let err = reader.read_to_end().await.unwrap_err();
    assert_refused(err, FOUR_TIB - 5, limit);
    // Streaming reads any size: the last bytes of the claimed file.
    assert_eq!(reader.read_range(FOUR_TIB - 10, usize::MAX).await.unwrap(), vec![0u8; 10]);
    reader.seek(SeekFrom::End(-10)).unwrap();
    assert_eq!(reader.read_to_end().await.unwrap(), vec![0u8; 10]);
    assert_eq!(reader.read_to_end().await.unwrap(), Vec::<u8>::new(), "at the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_to_end_reads_a_file_within_max_get_bytes() {
    let s = Scratch::new();
    let data = content(7, 3 * MIN_CHUNK + 5);
    let mut config = s.config(MIN_CHUNK);
    config.max_get_bytes = data.len() as u64 - 1;
    let node = cas_core::Node::start(config).await.unwrap();
    let key = node.put_bytes(&data).await.unwrap().key;
    let mut reader = node.open(&key).await.unwrap();
    assert_refused(reader.read_to_end().await.unwrap_err(), data.len() as u64, data.len() as u64 - 1);
    reader.seek(SeekFrom::Start(1)).unwrap();
    assert!(reader.read_to_end().await.unwrap() == data[1..], "the rest fits");
    assert_eq!(reader.position(), data.len() as u64);
}

/// A manifest sealed as given, its header and chunk list unchecked.
fn seal_unchecked(node: &cas_core::Node, header: ManifestHeader, chunks: Vec<(BlobId, [u8; 32])>) -> cas_core::Key {
    let (chunk_ids, chunk_keys) = chunks.into_iter().unzip();
    let (blob, key) = Manifest { header, chunk_ids, chunk_keys }.seal(&[9; 32]);
    node.store().put(&VerifiedBlob::new(blob)).unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_beyond_the_chunks_is_an_integrity_error() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let secret = [3u8; 32];
    let chunk = seal_chunk(&secret, content(8, MIN_CHUNK));
    node.store().put(&VerifiedBlob::new(chunk.blob)).unwrap();
    let one = (chunk.id, chunk.key);
    let chunk_size = MIN_CHUNK as u32;

    // One chunk claiming 4 TiB: the count does not cover the size, so the
    // manifest does not open at all.
    let header = ManifestHeader { chunk_size, file_size: FOUR_TIB, count: 1 };
    let key = seal_unchecked(&node, header, vec![one]);
    for err in [node.open(&key).await.err().unwrap(), node.get_bytes(&key).await.unwrap_err()] {
        assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    }

    // A count that covers the size, but a last chunk of a full chunk's bytes
    // where the size leaves room for 10: the reader serves the real chunks,
    // then fails on that one, clearly, at the end.
    let file_size = 2 * MIN_CHUNK as u64 + 10;
    let header = ManifestHeader { chunk_size, file_size, count: 3 };
    let key = seal_unchecked(&node, header, vec![one; 3]);
    let mut reader = node.open(&key).await.unwrap();
    assert!(
        reader.read_range(0, 2 * MIN_CHUNK).await.unwrap() == [content(8, MIN_CHUNK), content(8, MIN_CHUNK)].concat()
    );
    let mut buf = vec![0u8; 100];
    let err = reader.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains("wrong length"), "{err}");
    reader.seek(SeekFrom::Start(0)).unwrap();
    assert_eq!(reader.read_to_end().await.unwrap_err().kind(), ErrorKind::Integrity);
    assert_eq!(node.get_bytes(&key).await.unwrap_err().kind(), ErrorKind::Integrity);
    // The real chunk is not blamed for the manifest's claim: still served.
    assert!(reader.read_range(MIN_CHUNK as u64, MIN_CHUNK).await.unwrap() == content(8, MIN_CHUNK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_get_bytes_is_the_largest_file_get_bytes_returns() {
    let s = Scratch::new();
    let data = content(5, 3 * MIN_CHUNK + 5);
    let mut config = s.config(MIN_CHUNK);
    config.max_get_bytes = data.len() as u64;
    let node = cas_core::Node::start(config).await.unwrap();
    let fits = node.put_bytes(&data).await.unwrap().key;
    let over = node.put_bytes(&content(6, data.len() + 1)).await.unwrap().key;
    assert!(node.get_bytes(&fits).await.unwrap() == data);
    let err = node.get_bytes(&over).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // get_file streams it.
    let dest = s.path("over.bin");
    node.get_file(&over, &dest, None).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), content(6, data.len() + 1));
    let mut reader = node.open(&over).await.unwrap();
    assert!(reader.read_range(1, usize::MAX).await.unwrap() == content(6, data.len() + 1)[1..]);
}
