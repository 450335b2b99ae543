//! The blob index agrees with the blob files: it records each blob's
//! length, origin and last verification; a reopen after an orderly close
//! reads its totals from it; after a crash, or with the index missing or
//! damaged, the next open reconciles it with the files.

mod common;

use std::path::Path;

use cas_core::format::BlobId;
use cas_core::store::{BlobStore, Origin, VerifiedBlob, INDEX_FILE};
use common::{blob_path, content, indexed, on_disk};

fn fill(dir: &Path, count: u64) -> Vec<VerifiedBlob> {
    let store = BlobStore::open(dir, false, None).unwrap();
    let blobs: Vec<VerifiedBlob> = (0..count).map(|i| VerifiedBlob::new(content(100 + i, 1000 + i as usize))).collect();
    for b in &blobs {
        assert!(store.put(b).unwrap());
    }
    blobs
}

#[test]
fn each_blob_is_indexed_with_its_length_origin_and_verification() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    let (a, b, c) =
        (VerifiedBlob::new(content(1, 10)), VerifiedBlob::new(content(2, 20)), VerifiedBlob::new(content(3, 30)));
    store.put(&a).unwrap();
    store.put_from(&b, Origin::Replica).unwrap();
    store.put_from(&c, Origin::Fetched).unwrap();
    // The first origin stays.
    assert!(!store.put_from(&a, Origin::Fetched).unwrap());
    let origin = |blob: &VerifiedBlob| store.entry(&blob.id()).unwrap().unwrap().origin;
    assert_eq!((origin(&a), origin(&b), origin(&c)), (Origin::Put, Origin::Replica, Origin::Fetched));
    let entry = store.entry(&b.id()).unwrap().unwrap();
    assert_eq!(entry.len, 20);
    assert!(entry.verified.is_some(), "a blob is verified when it is written");
    assert_eq!(store.contains(&[a.id(), BlobId([9; 32]), c.id()]).unwrap(), [true, false, true]);
    assert_eq!(indexed(&store), on_disk(&store));

    assert!(store.remove(&a.id()).unwrap());
    assert_eq!(store.entry(&a.id()).unwrap(), None);
    common::flip_byte(&blob_path(dir.path(), &c.id()), 3);
    assert!(store.get(&c.id()).is_err(), "corruption detected");
    assert_eq!(store.entry(&c.id()).unwrap(), None, "a quarantined blob leaves the index");
    assert_eq!(indexed(&store), on_disk(&store));
    assert_eq!((store.blob_count(), store.used_bytes()), (1, 20));
}

#[test]
fn an_orderly_reopen_reads_the_index_not_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20);
    // A file slipped into blobs/ behind a closed store's back is not seen:
    // the totals come from the index.
    let stray = VerifiedBlob::new(content(999, 5));
    let path = blob_path(dir.path(), &stray.id());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, stray.bytes()).unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!(store.blob_count(), 20);
    assert_eq!(store.entry(&stray.id()).unwrap(), None);
}

#[test]
fn after_a_crash_the_index_is_reconciled_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = fill(dir.path(), 30);
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    // What a crash can leave: a file whose row was not written, a row
    // whose file is gone.
    let unindexed = VerifiedBlob::new(content(500, 77));
    let path = blob_path(dir.path(), &unindexed.id());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, unindexed.bytes()).unwrap();
    std::fs::remove_file(blob_path(dir.path(), &blobs[4].id())).unwrap();
    store.close_as_if_crashed();
    drop(store);

    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!(indexed(&store), on_disk(&store));
    assert_eq!(store.blob_count(), 30);
    assert_eq!(store.used_bytes(), on_disk(&store).values().sum::<u64>());
    assert_eq!(store.entry(&unindexed.id()).unwrap().unwrap().origin, Origin::Unknown);
    assert_eq!(store.entry(&blobs[5].id()).unwrap().unwrap().origin, Origin::Put, "rows that were right stay");
}

#[test]
fn a_missing_or_damaged_index_is_rebuilt_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 25);
    std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!((indexed(&store).len(), store.blob_count()), (25, 25));
    assert_eq!(indexed(&store), on_disk(&store));
    drop(store);

    std::fs::write(dir.path().join(INDEX_FILE), vec![0x5a; 8192]).unwrap();
    let store = BlobStore::open(dir.path(), false, None).expect("a damaged index is rebuilt, not fatal");
    assert_eq!(indexed(&store), on_disk(&store));
    assert_eq!(store.blob_count(), 25);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(INDEX_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the index is owner-only");
}

#[test]
fn a_closed_store_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    store.close();
    let err = store.put(&VerifiedBlob::new(content(1, 10))).unwrap_err();
    assert_eq!(err.kind(), cas_core::ErrorKind::Closed, "{err}");
    assert!(common::blob_files(dir.path()).is_empty(), "nothing written after the close");
}
