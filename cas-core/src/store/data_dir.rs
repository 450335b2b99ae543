//! What a data directory holds besides blobs: the lock, the convergence
//! secret and the node id.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

const LOCK_RETRIES: u32 = 20;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// An opened, locked data directory. The lock is released on drop.
pub struct DataDir {
    path: PathBuf,
    lock: Mutex<Option<File>>,
    /// The convergence secret (FORMAT.md "Secret").
    pub secret: [u8; 32],
    /// This node's persistent random id.
    pub node_id: [u8; 32],
}

impl DataDir {
    /// Creates the directory if needed and takes its lock; loads (or creates)
    /// the secret and node id. `secret` overrides the stored secret for this run.
    pub fn open(path: &Path, secret: Option<[u8; 32]>) -> Result<DataDir> {
        // Owner-only when we create it: it holds the secret and the control socket.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| Error::io(format!("creating data directory {}", path.display()), e))?;
        let lock_path = path.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        // A process forked elsewhere in this program shares the lock until it
        // execs; a short retry rides that out before calling the dir taken.
        let mut attempts = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                Err(TryLockError::WouldBlock) => return Err(Error::DataDirLocked { data_dir: path.to_path_buf() }),
                Err(TryLockError::Error(e)) => return Err(Error::io(format!("locking {}", lock_path.display()), e)),
            }
        }
        let secret = match secret {
            Some(s) => s,
            None => load_or_create(&path.join("secret"))?,
        };
        let node_id = load_or_create(&path.join("node_id"))?;
        Ok(DataDir { path: path.to_path_buf(), lock: Mutex::new(Some(lock)), secret, node_id })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock (at shutdown), so another process may open the directory.
    pub fn release(&self) {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Reads 32 raw bytes, or creates the file with random bytes and mode 0600.
fn load_or_create(path: &Path) -> Result<[u8; 32]> {
    match fs::read(path) {
        Ok(bytes) => {
            return bytes.as_slice().try_into().map_err(|_| {
                Error::InvalidArgument(format!(
                    "{} must hold exactly 32 raw bytes, it holds {}",
                    path.display(),
                    bytes.len()
                ))
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    }
    let value: [u8; 32] = rand::random();
    let ctx = |e| Error::io(format!("creating {}", path.display()), e);
    let dir = path.parent().expect("file in a directory");
    let mut tmp = tempfile::Builder::new().prefix(".new").tempfile_in(dir).map_err(ctx)?;
    tmp.write_all(&value).map_err(ctx)?;
    tmp.as_file().sync_all().map_err(ctx)?;
    // tempfile creates files with mode 0600 already: owner-only.
    tmp.persist_noclobber(path).map_err(|e| ctx(e.error))?;
    super::sync_dir(dir).map_err(ctx)?;
    Ok(value)
}
