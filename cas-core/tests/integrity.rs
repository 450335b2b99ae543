//! A stored blob that changed on disk is caught on read: the get fails with
//! an integrity error, the bad blob is quarantined, and nothing is written
//! at the destination.

mod common;

use std::path::PathBuf;

use cas_core::format::{BlobId, Manifest};
use cas_core::{ErrorKind, Key, Node};
use common::{blob_path, content, entries, flip_byte, Scratch, MIN_CHUNK};

struct Stored {
    s: Scratch,
    node: Node,
    key: Key,
    data: Vec<u8>,
    chunk_ids: Vec<BlobId>,
}

async fn store_file() -> Stored {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let data = content(21, 4 * MIN_CHUNK + 500);
    let key = node.put_bytes(&data).await.unwrap().key;
    let manifest = std::fs::read(blob_path(&s.data_dir(), &key.manifest_id)).unwrap();
    let (_, chunk_ids) = Manifest::parse_public(&manifest).unwrap();
    assert_eq!(chunk_ids.len(), 5);
    Stored { s, node, key, data, chunk_ids }
}

impl Stored {
    fn quarantined(&self, id: &BlobId) -> bool {
        self.s.data_dir().join("quarantine").join(id.to_hex()).is_file() && !blob_path(&self.s.data_dir(), id).exists()
    }

    /// A destination in a directory of its own, to check nothing is left there.
    fn dest(&self) -> PathBuf {
        let dir = self.s.path("out");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("file")
    }

    async fn get_file_fails_cleanly(&self, bad: &BlobId) {
        let dest = self.dest();
        let err = self.node.get_file(&self.key, &dest, None).await.expect_err("get of a corrupted file must fail");
        assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
        assert!(err.to_string().contains(&bad.to_hex()), "the message names the bad blob: {err}");
        assert!(self.quarantined(bad), "the bad blob is moved to quarantine");
        assert_eq!(entries(dest.parent().unwrap()), Vec::<String>::new(), "nothing left at the destination");
        assert_eq!(self.node.stats().verification_failures, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_a_chunk_fails_get_file() {
    let st = store_file().await;
    let bad = st.chunk_ids[2];
    flip_byte(&blob_path(&st.s.data_dir(), &bad), 1234);
    st.get_file_fails_cleanly(&bad).await;
    // Quarantined, the blob is now simply missing here (a peer would supply it).
    let err = st.node.get_file(&st.key, st.dest(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_the_last_byte_of_a_chunk_tag() {
    let st = store_file().await;
    let bad = st.chunk_ids[4];
    let path = blob_path(&st.s.data_dir(), &bad);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    flip_byte(&path, len - 1);
    st.get_file_fails_cleanly(&bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_chunk_fails_get_file() {
    let st = store_file().await;
    let bad = st.chunk_ids[0];
    let path = blob_path(&st.s.data_dir(), &bad);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    st.get_file_fails_cleanly(&bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_the_manifest_fails_get_file() {
    let st = store_file().await;
    // Byte 12 is the low byte of the file size in the header.
    flip_byte(&blob_path(&st.s.data_dir(), &st.key.manifest_id), 12);
    st.get_file_fails_cleanly(&st.key.manifest_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_the_manifest_sealed_keys_fails_open() {
    let st = store_file().await;
    let path = blob_path(&st.s.data_dir(), &st.key.manifest_id);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    flip_byte(&path, len - 40);
    let err = st.node.open(&st.key).await.err().expect("open of a corrupted manifest must fail");
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(st.quarantined(&st.key.manifest_id));
    let err = st.node.get_bytes(&st.key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_a_chunk_fails_get_bytes() {
    let st = store_file().await;
    let bad = st.chunk_ids[1];
    flip_byte(&blob_path(&st.s.data_dir(), &bad), 0);
    let err = st.node.get_bytes(&st.key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(st.quarantined(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_fails_on_the_bad_chunk_and_serves_the_good_ones() {
    let st = store_file().await;
    let bad = st.chunk_ids[3];
    flip_byte(&blob_path(&st.s.data_dir(), &bad), 77);
    let mut reader = st.node.open(&st.key).await.unwrap();
    let c = MIN_CHUNK as u64;
    let err = reader.read_range(3 * c + 10, 100).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(st.quarantined(&bad));
    let good = reader.read_range(c, 2 * MIN_CHUNK).await.unwrap();
    assert!(good == st.data[MIN_CHUNK..3 * MIN_CHUNK]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_swapped_for_another_valid_blob_is_caught() {
    // Each blob is whole and hashes to its own name, but it sits under the
    // name of another: the file name is the id, so this is a mismatch too.
    let st = store_file().await;
    let (a, b) = (st.chunk_ids[0], st.chunk_ids[1]);
    std::fs::copy(blob_path(&st.s.data_dir(), &b), blob_path(&st.s.data_dir(), &a)).unwrap();
    let err = st.node.get_bytes(&st.key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(st.quarantined(&a));
}
