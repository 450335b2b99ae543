//! A node at its capacity limit refuses new blobs with StorageFull, leaves no
//! partial blob or temporary file, and stays usable for what still fits.

mod common;

use cas_core::store::BlobStore;
use cas_core::ErrorKind;
use common::{blob_files, content, temp_files, Scratch, MIN_CHUNK};

const BLOB: u64 = MIN_CHUNK as u64 + 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_beyond_capacity_is_storage_full() {
    let s = Scratch::new();
    let capacity = 3 * BLOB + 1024;
    let mut config = s.config(MIN_CHUNK);
    config.capacity = Some(capacity);
    let node = cas_core::Node::start(config).await.unwrap();

    let input = s.file("big", &content(1, 8 * MIN_CHUNK));
    let err = node.put_file(&input, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
    assert!(err.to_string().contains(&capacity.to_string()), "says which limit: {err}");

    let data_dir = s.data_dir();
    assert_eq!(temp_files(&data_dir), Vec::<std::path::PathBuf>::new(), "no temporary file left");
    let store = node.store();
    assert!(store.used_bytes() <= capacity, "{} used, capacity {capacity}", store.used_bytes());
    let files = blob_files(&data_dir);
    assert_eq!(files.len() as u64, store.blob_count());
    let on_disk: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert_eq!(on_disk, store.used_bytes());
    // What was written is whole: every blob verifies.
    store
        .for_each_blob(|id, len| {
            assert_eq!(len, BLOB);
            assert!(store.get(&id).unwrap().is_some());
        })
        .unwrap();

    // A small file still fits; the refused one is refused again.
    let small = node.put_bytes(&content(2, 100)).await.expect("a small file fits");
    assert!(node.get_bytes(&small.key).await.unwrap() == content(2, 100));
    assert_eq!(node.put_file(&input, None).await.unwrap_err().kind(), ErrorKind::StorageFull);
}

#[test]
fn store_capacity_counts_existing_blobs_and_frees_on_remove() {
    let dir = tempfile::tempdir().unwrap();
    let blob = |seed| cas_core::store::VerifiedBlob::new(content(seed, 1000));
    {
        let store = BlobStore::open(dir.path(), false, None).unwrap();
        store.put(&blob(1)).unwrap();
        store.put(&blob(2)).unwrap();
    }
    // Reopened with a limit of three blobs: the two already there count.
    let store = BlobStore::open(dir.path(), false, Some(3000)).unwrap();
    assert!(store.has_room_for(1000) && !store.has_room_for(1001));
    assert!(store.put(&blob(3)).unwrap());
    let err = store.put(&blob(4)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
    assert!(!store.has(&blob(4).id()));
    assert_eq!(temp_files(dir.path()), Vec::<std::path::PathBuf>::new());
    // Storing a blob already there needs no room.
    assert!(!store.put(&blob(1)).unwrap());
    assert!(store.remove(&blob(1).id()).unwrap());
    assert!(store.put(&blob(4)).unwrap());
    assert_eq!(store.used_bytes(), 3000);
}
