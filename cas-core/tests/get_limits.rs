//! Reading a file into memory is bounded by `Config::max_get_bytes`, checked
//! against the size a manifest claims before anything is fetched; nothing is
//! allocated from that claim. Streaming reads have no such bound.

mod common;

use cas_core::format::{seal_chunk, Manifest, MAX_CHUNKS, MAX_CHUNK_SIZE};
use cas_core::store::VerifiedBlob;
use cas_core::ErrorKind;
use common::{content, Scratch, MIN_CHUNK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_manifest_claiming_four_tib_is_refused_not_allocated() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    // A valid manifest of the most chunks allowed, each the largest size:
    // one real chunk of zeros, repeated (what deduplication stores for a
    // 4 TiB file of zeros). Whoever has the key may well have made it.
    let secret = [7u8; 32];
    let chunk = seal_chunk(&secret, vec![0u8; MAX_CHUNK_SIZE as usize]);
    node.store().put(&VerifiedBlob::new(chunk.blob)).unwrap();
    let size = MAX_CHUNKS * MAX_CHUNK_SIZE as u64;
    let manifest = Manifest::new(MAX_CHUNK_SIZE, size, vec![(chunk.id, chunk.key); MAX_CHUNKS as usize]).unwrap();
    let (blob, key) = manifest.seal(&secret);
    node.store().put(&VerifiedBlob::new(blob)).unwrap();
    assert_eq!(node.stat(&key).await.unwrap().size, size, "the manifest opens and claims {size} bytes");

    let err = node.get_bytes(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("max_get_bytes") && err.to_string().contains(&size.to_string()), "{err}");

    let mut reader = node.open(&key).await.unwrap();
    let err = reader.read_range(0, usize::MAX).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // Streaming reads any size: the last bytes of the claimed file.
    assert_eq!(reader.read_range(size - 10, usize::MAX).await.unwrap(), vec![0u8; 10]);
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
