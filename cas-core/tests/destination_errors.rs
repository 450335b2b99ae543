//! A get whose destination cannot be written fails with a typed error naming
//! the destination, and leaves no partial file behind.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cas_core::{Error, ErrorKind};
use common::{content, entries, Scratch, MIN_CHUNK};

fn io_source(err: &Error) -> &std::io::Error {
    std::error::Error::source(err).and_then(|s| s.downcast_ref()).expect("an I/O cause")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_is_a_regular_file() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let key = node.put_bytes(&content(1, 3 * MIN_CHUNK)).await.unwrap().key;
    let not_a_dir = s.file("plain-file", b"not a directory");
    let dest = not_a_dir.join("out.bin");

    let err = node.get_file(&key, &dest, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    assert_eq!(io_source(&err).kind(), std::io::ErrorKind::NotADirectory, "{err}");
    assert!(err.to_string().contains(&*dest.to_string_lossy()), "names the destination: {err}");
    assert_eq!(std::fs::read(&not_a_dir).unwrap(), b"not a directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_does_not_exist() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let key = node.put_bytes(b"hello").await.unwrap().key;
    let dest = s.path("missing-dir").join("out.bin");
    let err = node.get_file(&key, &dest, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    assert!(err.to_string().contains(&*dest.to_string_lossy()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_is_a_directory() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let key = node.put_bytes(&content(2, 1000)).await.unwrap().key;
    let dest = s.path("a-directory");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep"), b"mine").unwrap();

    let err = node.get_file(&key, &dest, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&*dest.to_string_lossy()) && msg.contains("directory"), "{msg}");
    assert_eq!(entries(&dest), ["keep"], "the directory is untouched");
    assert_eq!(entries(s.dir.path()).iter().filter(|n| n.starts_with(".cas-get-")).count(), 0);
}

/// A small tmpfs, unmounted on drop.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts a 512 KiB tmpfs, or says why it cannot.
    fn mount() -> Result<SmallTmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let fstype = CString::new("tmpfs").unwrap();
        let options = CString::new("size=512k").unwrap();
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, options.as_ptr().cast()) };
        if rc != 0 {
            return Err(format!("mount -t tmpfs failed: {}", std::io::Error::last_os_error()));
        }
        Ok(SmallTmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_disk_full() {
    let fs = match SmallTmpfs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED destination_disk_full: cannot mount a small filesystem ({why}); run as root");
            return;
        }
    };
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let data = content(3, 2 * 1024 * 1024);
    let key = node.put_bytes(&data).await.unwrap().key;
    let dest: PathBuf = fs.path().join("out.bin");

    let err = node.get_file(&key, &dest, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
    assert!(err.to_string().contains(&*dest.to_string_lossy()), "names the destination: {err}");
    assert_eq!(entries(fs.path()), Vec::<String>::new(), "no partial file left on the full disk");

    // The same get to a disk with room succeeds: the failure hurt nothing.
    let ok = s.path("out.bin");
    node.get_file(&key, &ok, None).await.unwrap();
    assert!(std::fs::read(&ok).unwrap() == data);
}
