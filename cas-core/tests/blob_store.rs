//! The blob store on its own: it accepts only bytes that hash to their id,
//! storing an existing id is a no-op, it counts what it holds when reopened,
//! and it clears leftovers of interrupted writes.

mod common;

use cas_core::format::BlobId;
use cas_core::identity::NodeId;
use cas_core::net::audit::{self, AuditDigests};
use cas_core::store::{BlobStore, VerifiedBlob, STREAM_PIECE};
use cas_core::ErrorKind;
use common::{blob_path, content, entries, temp_files};

#[test]
fn bytes_that_do_not_hash_to_the_id_are_refused() {
    let bytes = content(1, 4096);
    let id = BlobId::of(&bytes);
    assert_eq!(VerifiedBlob::check(id, bytes.clone()).unwrap().id(), id);

    let mut changed = bytes.clone();
    changed[100] ^= 1;
    let err = VerifiedBlob::check(id, changed).err().expect("changed bytes refused");
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains(&id.to_hex()), "names the blob: {err}");

    assert!(VerifiedBlob::check(id, bytes[..4095].to_vec()).is_err(), "truncated bytes refused");
    assert!(VerifiedBlob::check(BlobId([0; 32]), bytes).is_err(), "wrong id refused");

    let oversized = vec![0u8; cas_core::format::MAX_BLOB_LEN + 1];
    let id = BlobId::of(&oversized);
    let err = VerifiedBlob::check(id, oversized).err().expect("a blob larger than any valid one is refused");
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
}

#[test]
fn put_get_and_put_again_is_a_no_op() {
    put_get_and_put_again(false);
}

/// As where the file system has no O_TMPFILE: named temporary files, renamed.
#[test]
fn put_get_and_put_again_is_a_no_op_with_named_temporary_files() {
    put_get_and_put_again(true);
}

fn put_get_and_put_again(named: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), true, None).unwrap();
    if named {
        store.use_named_temporary_files();
    }
    let blob = VerifiedBlob::new(content(2, 10_000));
    let id = blob.id();
    assert!(store.get(&id).unwrap().is_none());
    assert!(!store.has(&id));

    assert!(store.put(&blob).unwrap(), "first put writes");
    let path = blob_path(dir.path(), &id);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!((store.blob_count(), store.used_bytes()), (1, 10_000));

    assert!(!store.put(&blob).unwrap(), "second put is a no-op");
    assert_eq!((store.blob_count(), store.used_bytes()), (1, 10_000));
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified, "the file is not rewritten");
    assert_eq!(store.get(&id).unwrap().expect("stored").bytes(), blob.bytes());
    assert_eq!(temp_files(dir.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn concurrent_puts_of_one_id_store_it_once() {
    concurrent_puts_of_one_id(false);
}

#[test]
fn concurrent_puts_of_one_id_store_it_once_with_named_temporary_files() {
    concurrent_puts_of_one_id(true);
}

fn concurrent_puts_of_one_id(named: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    if named {
        store.use_named_temporary_files();
    }
    let bytes = content(3, 200_000);
    let written: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, bytes) = (store.clone(), bytes.clone());
                scope.spawn(move || store.put(&VerifiedBlob::new(bytes)).unwrap() as usize)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(written, 1, "exactly one writer stores the blob");
    assert_eq!((store.blob_count(), store.used_bytes()), (1, 200_000));
    assert_eq!(temp_files(dir.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn reopening_counts_used_bytes_and_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [1, 1000, 65_552, 300_000];
    {
        let store = BlobStore::open(dir.path(), false, None).unwrap();
        for (i, len) in sizes.into_iter().enumerate() {
            store.put(&VerifiedBlob::new(content(10 + i as u64, len))).unwrap();
        }
    }
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!(store.blob_count(), sizes.len() as u64);
    assert_eq!(store.used_bytes(), sizes.iter().sum::<usize>() as u64);
    let mut listed = Vec::new();
    store.for_each_blob(|id, len| listed.push((id, len))).unwrap();
    listed.sort_by_key(|(_, len)| *len);
    for ((id, len), (i, size)) in listed.into_iter().zip(sizes.into_iter().enumerate()) {
        assert_eq!(len, size as u64);
        assert_eq!(id, BlobId::of(&content(10 + i as u64, size)));
    }
}

#[test]
fn leftovers_of_interrupted_writes_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    let blob = VerifiedBlob::new(content(4, 5000));
    store.put(&blob).unwrap();
    // Leftovers of interrupted writes exist only after a crash.
    store.close_as_if_crashed();
    drop(store);
    let fan = blob_path(dir.path(), &blob.id()).parent().unwrap().to_path_buf();
    std::fs::write(fan.join(".tmp-half-written"), content(4, 2500)).unwrap();
    std::fs::write(fan.join(".tmp-XYZ"), b"").unwrap();
    assert_eq!(temp_files(dir.path()).len(), 2);

    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!(temp_files(dir.path()), Vec::<std::path::PathBuf>::new());
    assert_eq!((store.blob_count(), store.used_bytes()), (1, 5000), "leftovers are never counted as blobs");
    assert!(store.get(&blob.id()).unwrap().is_some());
}

#[test]
fn a_corrupted_blob_is_quarantined_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    let blob = VerifiedBlob::new(content(5, 3000));
    store.put(&blob).unwrap();
    common::flip_byte(&blob_path(dir.path(), &blob.id()), 2999);

    let err = store.get(&blob.id()).err().expect("corruption detected");
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert_eq!(entries(&dir.path().join("quarantine")), [blob.id().to_hex()]);
    assert!(!store.has(&blob.id()));
    assert_eq!((store.blob_count(), store.used_bytes(), store.quarantined()), (0, 0, 1));
    // A good copy can be stored again in its place.
    assert!(store.put(&blob).unwrap());
    assert!(store.get(&blob.id()).unwrap().is_some());
}

#[test]
fn a_blob_streamed_for_an_audit_comes_in_pieces_and_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    let blob = VerifiedBlob::new(content(6, 3 * STREAM_PIECE + 17));
    store.put(&blob).unwrap();
    let (holder, nonce) = (NodeId([4; 32]), [5u8; 32]);
    let mut digests = AuditDigests::new(&nonce, &[holder]);
    let mut pieces = Vec::new();
    assert!(store
        .stream(&blob.id(), |p| {
            pieces.push(p.len());
            digests.update(p)
        })
        .unwrap());
    assert!(pieces.iter().all(|&n| n <= STREAM_PIECE), "{pieces:?}");
    assert_eq!(digests.finish(), [audit::digest(&holder, &nonce, blob.bytes())], "the digest of the bytes as stored");

    assert!(!store.stream(&BlobId([1; 32]), |_| {}).unwrap(), "an absent blob");
    common::flip_byte(&blob_path(dir.path(), &blob.id()), 100);
    let err = store.stream(&blob.id(), |_| {}).expect_err("corruption detected");
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert_eq!(entries(&dir.path().join("quarantine")), [blob.id().to_hex()], "and quarantined");
    assert!(!store.has(&blob.id()));
}

#[test]
fn files_that_are_not_blobs_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    store.put(&VerifiedBlob::new(content(6, 10))).unwrap();
    std::fs::write(dir.path().join("blobs").join("README"), b"stray").unwrap();
    std::fs::create_dir_all(dir.path().join("blobs/ab")).unwrap();
    std::fs::write(dir.path().join("blobs/ab/not-hex"), b"stray").unwrap();
    drop(store);
    let store = BlobStore::open(dir.path(), false, None).unwrap();
    assert_eq!((store.blob_count(), store.used_bytes()), (1, 10));
}

/// The store makes its 256 fan-out directories when it is created; a blob
/// whose directory was removed since (by hand) makes it again.
#[test]
fn a_new_store_has_its_fan_out_and_a_removed_directory_is_made_again() {
    for named in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), true, None).unwrap();
        if named {
            store.use_named_temporary_files();
        }
        let fans = std::fs::read_dir(dir.path().join("blobs")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir());
        assert_eq!(fans.count(), 256, "the fan-out is made with the store");

        let blob = VerifiedBlob::new(content(7, 3000));
        let path = blob_path(dir.path(), &blob.id());
        std::fs::remove_dir(path.parent().unwrap()).unwrap();
        assert!(store.put(&blob).unwrap(), "the write makes its directory again");
        assert_eq!(store.get(&blob.id()).unwrap().unwrap().bytes(), blob.bytes());
        assert_eq!(std::fs::read(&path).unwrap(), blob.bytes());
        assert!(temp_files(dir.path()).is_empty(), "nothing left behind (named: {named})");
    }
}
