//! The blob index agrees with the blob files: it records each blob's
//! length, origin and last verification; a reopen after an orderly close
//! reads it and checks each row's file; after a crash, or with the index
//! missing or damaged, the next open reconciles it with the files. A file
//! removed or cut short behind the store's back is never claimed.

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

/// Cuts a blob file to half its length.
fn cut_short(dir: &Path, id: &BlobId) {
    let path = blob_path(dir, id);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
}

#[test]
fn an_orderly_reopen_drops_rows_whose_file_is_gone_or_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = fill(dir.path(), 20);
    // Behind the closed store's back: one file removed, one cut short.
    std::fs::remove_file(blob_path(dir.path(), &blobs[3].id())).unwrap();
    cut_short(dir.path(), &blobs[7].id());

    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!(store.entry(&blobs[3].id()).unwrap(), None, "the removed file's row is dropped");
    assert_eq!(store.entry(&blobs[7].id()).unwrap(), None, "the cut file's row is dropped");
    assert!(dir.path().join("quarantine").join(blobs[7].id().to_hex()).exists(), "the cut file is set aside");
    assert_eq!(indexed(&store), on_disk(&store));
    assert_eq!(store.blob_count(), 18);
    assert_eq!(store.used_bytes(), on_disk(&store).values().sum::<u64>());
    assert_eq!(store.contains(&[blobs[3].id(), blobs[7].id(), blobs[8].id()]).unwrap(), [false, false, true]);
    // Both can be stored again.
    assert!(store.put(&blobs[3]).unwrap() && store.put(&blobs[7]).unwrap());
    assert_eq!((store.blob_count(), indexed(&store)), (20, on_disk(&store)));
}

#[test]
fn a_running_store_claims_no_file_that_is_gone_or_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = fill(dir.path(), 10);
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    let ids: Vec<BlobId> = blobs.iter().map(|b| b.id()).collect();
    let total: u64 = blobs.iter().map(|b| b.bytes().len() as u64).sum();
    std::fs::remove_file(blob_path(dir.path(), &ids[1])).unwrap();
    cut_short(dir.path(), &ids[2]);

    // What peers are told: neither is claimed, and both leave the index at once.
    let mut want = vec![true; 10];
    (want[1], want[2]) = (false, false);
    assert_eq!(store.contains(&ids).unwrap(), want);
    assert_eq!(store.entry(&ids[1]).unwrap(), None);
    assert_eq!(store.entry(&ids[2]).unwrap(), None);
    assert!(dir.path().join("quarantine").join(ids[2].to_hex()).exists());
    assert_eq!(indexed(&store), on_disk(&store));
    assert_eq!(store.blob_count(), 8);
    assert_eq!(store.used_bytes(), total - blobs[1].bytes().len() as u64 - blobs[2].bytes().len() as u64);
    // A copy given again is stored and claimed.
    assert!(store.put(&blobs[1]).unwrap());
    assert_eq!(store.contains(&ids[1..2]).unwrap(), [true]);

    // A file removed and written again before anyone noticed is counted once.
    std::fs::remove_file(blob_path(dir.path(), &ids[4])).unwrap();
    assert!(store.put(&blobs[4]).unwrap(), "the file was gone: written again");
    store.forget_if_missing(&ids[4]); // too late: the file is back, the row stays
    assert_eq!(store.contains(&ids[4..5]).unwrap(), [true]);
    assert_eq!((store.blob_count(), store.used_bytes()), (9, total - blobs[2].bytes().len() as u64));
    assert_eq!(indexed(&store), on_disk(&store));
}

#[test]
fn an_index_a_failed_write_left_unusable_is_reopened_and_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = fill(dir.path(), 10);
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!(store.write_problem(), None);
    store.fail_index_as_if_disk_full();
    assert!(store.write_problem().unwrap().contains("blob index"), "{:?}", store.write_problem());
    assert_eq!(store.contains(&[blobs[0].id()]).unwrap(), [true], "an unusable index: the files answer");
    // Blobs are still read from their files.
    assert_eq!(store.get(&blobs[0].id()).unwrap().unwrap().bytes(), blobs[0].bytes());
    // Meanwhile a file arrived whose row was lost, and one went.
    let lost_row = VerifiedBlob::new(content(700, 300));
    let path = blob_path(dir.path(), &lost_row.id());
    std::fs::write(&path, lost_row.bytes()).unwrap();
    std::fs::remove_file(blob_path(dir.path(), &blobs[1].id())).unwrap();

    store.recover().unwrap();
    assert_eq!(store.write_problem(), None);
    assert_eq!(indexed(&store), on_disk(&store));
    assert_eq!((store.blob_count(), store.used_bytes()), (10, on_disk(&store).values().sum::<u64>()));
    assert_eq!(store.contains(&[lost_row.id(), blobs[1].id()]).unwrap(), [true, false]);
    assert!(store.put(&blobs[1]).unwrap(), "writes work again");
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
