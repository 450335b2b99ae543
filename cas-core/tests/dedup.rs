//! Content addressing deduplicates: the same file stored twice gives the
//! same key and writes nothing new; identical chunks in one file are one blob.

mod common;

use common::{blob_files, content, Scratch, MIN_CHUNK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_file_twice_same_key_no_new_blobs() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let data = content(1, 4 * MIN_CHUNK + 99);
    let input = s.file("in", &data);

    let first = node.put_file(&input, None).await.unwrap();
    assert_eq!(first.new_blobs, 5 + 1, "5 chunks and the manifest are new");
    let count = node.store().blob_count();
    let used = node.store().used_bytes();
    let on_disk = blob_files(&s.data_dir());
    assert_eq!(on_disk.len() as u64, count);

    let second = node.put_file(&input, None).await.unwrap();
    assert_eq!(second.key, first.key);
    assert_eq!(second.new_blobs, 0);
    assert_eq!(node.store().blob_count(), count);
    assert_eq!(node.store().used_bytes(), used);
    assert_eq!(blob_files(&s.data_dir()), on_disk);

    // A copy of the file under another name is the same content.
    let copy = s.file("copy", &data);
    let third = node.put_file(&copy, None).await.unwrap();
    assert_eq!((third.key, third.new_blobs), (first.key, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_chunks_are_stored_once() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    // Four identical chunks, then a short different tail.
    let block = content(2, MIN_CHUNK);
    let mut data = block.repeat(4);
    data.extend_from_slice(&content(3, 1000));

    let report = node.put_bytes(&data).await.unwrap();
    assert_eq!(report.chunks, 5);
    assert_eq!(report.new_blobs, 3, "one repeated chunk, the tail and the manifest");
    assert_eq!(node.store().blob_count(), 3);
    assert_eq!(blob_files(&s.data_dir()).len(), 3);
    assert!(node.get_bytes(&report.key).await.unwrap() == data);

    // A file made of that same block shares its blob with the first file.
    let other = node.put_bytes(&block.repeat(2)).await.unwrap();
    assert_eq!(other.new_blobs, 1, "only the new manifest");
    assert_eq!(blob_files(&s.data_dir()).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_content_different_key() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let mut data = content(4, 2 * MIN_CHUNK);
    let a = node.put_bytes(&data).await.unwrap();
    *data.last_mut().unwrap() ^= 1;
    let b = node.put_bytes(&data).await.unwrap();
    assert_ne!(a.key, b.key);
    assert_eq!(b.new_blobs, 2, "the changed last chunk and a new manifest");
}
