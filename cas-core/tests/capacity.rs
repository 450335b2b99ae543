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

/// A tmpfs mounted for a test (a disk that fills up), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts `mib` MiB at `dir` (made); `None`, said on stderr, where it
    /// cannot be (not root): the caller skips its test.
    fn mount(dir: &std::path::Path, mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            other => {
                eprintln!("skipped: cannot mount a tmpfs ({other:?})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_the_node_writes_again_once_space_returns() {
    use common::{indexed, on_disk, wait_for};
    use std::time::Duration;
    let s = Scratch::new();
    let disk = s.path("disk");
    let Some(_mounted) = Tmpfs::mount(&disk, 8) else { return };
    // Most of the disk is taken by something else.
    let mut config = cas_core::Config::new(disk.join("data"));
    config.fsync = false;
    config.chunk_size = MIN_CHUNK as u32;
    config.repair_interval = Duration::from_millis(200);
    config.scrub_rate = 0;
    let node = cas_core::Node::start(config).await.unwrap();
    assert_eq!(node.stats().cannot_write, 0);

    // The disk, filled but for 256 KiB by something else.
    let mut pieces = Vec::new();
    loop {
        let piece = disk.join(format!("piece{}", pieces.len()));
        if std::fs::write(&piece, vec![7u8; 64 << 10]).is_err() {
            let _ = std::fs::remove_file(&piece);
            break;
        }
        pieces.push(piece);
    }
    for piece in pieces.split_off(pieces.len().saturating_sub(4)) {
        std::fs::remove_file(piece).unwrap();
    }
    let mut kept = Vec::new();
    let mut refused = None;
    for seed in 0..2000 {
        match node.put_bytes(&content(seed, 100)).await {
            Ok(report) => kept.push((seed, report.key)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("the disk fills up");
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
    assert!(!kept.is_empty());
    wait_for("the node to say it cannot write", Duration::from_secs(10), || node.stats().cannot_write == 1).await;
    assert!(node.write_problem().is_some());
    // It serves what it holds.
    for (seed, key) in &kept {
        assert!(node.get_bytes(key).await.unwrap() == content(*seed, 100));
    }

    for piece in pieces {
        std::fs::remove_file(piece).unwrap();
    }
    wait_for("the node to write again", Duration::from_secs(30), || node.stats().cannot_write == 0).await;
    assert_eq!(node.write_problem(), None);
    let again = node.put_bytes(&content(999, 100_000)).await.expect("puts work again");
    assert!(node.get_bytes(&again.key).await.unwrap() == content(999, 100_000));
    let store = node.store();
    assert_eq!(indexed(store), on_disk(store), "the index agrees with the files");
    assert_eq!(store.blob_count(), on_disk(store).len() as u64);
    assert_eq!(store.used_bytes(), on_disk(store).values().sum::<u64>());
    node.shutdown().await;
}
