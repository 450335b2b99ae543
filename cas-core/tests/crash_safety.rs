//! A put killed with SIGKILL midway leaves a store in which every blob
//! verifies, and the same put run again afterwards succeeds. A get killed
//! midway leaves nothing at all beside its destination.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use cas_core::store::BlobStore;
use common::{assert_big_file, blob_files, local_example, temp_files, write_big_file, Scratch, MIN_CHUNK};

const SIZE: u64 = 300 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_killed_midway_leaves_only_whole_blobs() {
    let s = Scratch::new();
    let input = s.path("big.bin");
    write_big_file(&input, 31, SIZE);
    let data_dir = s.data_dir();

    // fsync on (the default) and the smallest chunks: thousands of blob
    // writes, so the kill lands among them.
    let mut child = local_example()
        .arg("put")
        .arg(&data_dir)
        .arg(&input)
        .args(["--chunk-size", &MIN_CHUNK.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the local example");
    common::wait_until("the child to store some blobs", Duration::from_secs(60), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the put exited ({status}) before it could be killed");
        }
        blob_files(&data_dir).len() >= 20
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the put was still running when killed: {status}");

    let chunks = SIZE.div_ceil(MIN_CHUNK as u64);
    let survivors = blob_files(&data_dir).len() as u64;
    assert!(survivors < chunks, "killed midway: {survivors} of {chunks} chunks stored");

    // Every blob that made it is whole; leftovers of the interrupted write
    // go; the index lists exactly the blob files.
    let store = BlobStore::open(&data_dir, true, None).unwrap();
    assert_eq!(temp_files(&data_dir), Vec::<std::path::PathBuf>::new());
    assert_eq!(store.blob_count(), survivors);
    assert_eq!(common::indexed(&store), common::on_disk(&store));
    let mut checked = 0u64;
    store
        .for_each_blob(|id, len| {
            assert_eq!(len, MIN_CHUNK as u64 + 16, "blob {id}: every survivor is a whole chunk");
            match store.get(&id) {
                Ok(Some(_)) => checked += 1,
                other => panic!("blob {id} does not verify after the kill: {:?}", other.map(|b| b.is_some())),
            }
        })
        .unwrap();
    assert_eq!(checked, survivors);
    assert_eq!(store.quarantined(), 0);
    drop(store);

    // The put again: it reuses what survived and completes.
    let mut config = s.config(MIN_CHUNK);
    config.fsync = true;
    let node = cas_core::Node::start(config).await.expect("the lock died with the killed process");
    let report = node.put_file(&input, None).await.expect("put after the crash");
    assert_eq!(report.chunks, chunks);
    assert_eq!(report.new_blobs, chunks + 1 - survivors, "surviving chunks are reused, the rest are new");
    let out = s.path("out.bin");
    node.get_file(&report.key, &out, None).await.unwrap();
    assert_big_file(&out, 31, SIZE);
}

/// The file the process `pid` is writing in `dir` without a name yet
/// (O_TMPFILE: `/proc/PID/fd/N` reads `DIR/#INODE (deleted)`), and how far
/// it has written.
fn unnamed_output(pid: u32, dir: &std::path::Path) -> Option<u64> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with(&format!("{}/#", dir.display())) && target.ends_with("(deleted)") {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())).ok()?;
            return info.lines().find_map(|l| l.strip_prefix("pos:")).and_then(|p| p.trim().parse().ok());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_killed_midway_leaves_nothing_beside_its_destination() {
    let s = Scratch::new();
    let input = s.path("big.bin");
    write_big_file(&input, 32, SIZE);
    let node = cas_core::Node::start(s.config(MIN_CHUNK)).await.unwrap();
    let key = node.put_file(&input, None).await.unwrap().key;
    node.shutdown().await;
    drop(node);

    let out_dir = s.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("copy.bin");
    let mut child = local_example()
        .arg("get")
        .arg(s.data_dir())
        .arg(key.to_string())
        .arg(&dest)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the local example");
    common::wait_until("the get to write part of the file", Duration::from_secs(60), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the get exited ({status}) before it could be killed");
        }
        unnamed_output(child.id(), &out_dir).is_some_and(|pos| pos > 0 && pos < SIZE)
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the get was still running when killed: {status}");
    assert_eq!(common::entries(&out_dir), Vec::<String>::new(), "no partial file, no temporary file");
}
