//! What a data directory holds besides blobs: the lock, the convergence
//! secret, the identity key, the network key and the last incarnation.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::identity::Identity;

/// The node's ed25519 secret seed, in the data directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// The network key, in the data directory, when none is given.
pub const NETWORK_KEY_FILE: &str = "network_key";

const LOCK_RETRIES: u32 = 20;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// An opened, locked data directory. The lock is released on drop.
pub struct DataDir {
    path: PathBuf,
    lock: Mutex<Option<File>>,
    /// The convergence secret (FORMAT.md "Secret").
    pub secret: [u8; 32],
    /// This node's key pair (`identity.key`).
    pub identity: Identity,
    /// This start's incarnation while it is not saved (the disk was full).
    unsaved_incarnation: Mutex<Option<u64>>,
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
        let identity_path = path.join(IDENTITY_FILE);
        let identity = Identity::from_seed(&load_or_create(&identity_path)?);
        warn_if_shared(&identity_path);
        Ok(DataDir {
            path: path.to_path_buf(),
            lock: Mutex::new(Some(lock)),
            secret,
            identity,
            unsaved_incarnation: Mutex::new(None),
        })
    }

    /// The network key stored in the directory; with `create`, a new random
    /// one is stored if there is none. `None` if absent and not created.
    pub fn network_key(&self, create: bool) -> Result<Option<[u8; 32]>> {
        let path = self.path.join(NETWORK_KEY_FILE);
        if !create && !path.exists() {
            return Ok(None);
        }
        let existed = path.exists();
        let key = load_or_create(&path)?;
        if existed {
            warn_if_shared(&path);
        } else {
            tracing::info!(
                path = %path.display(),
                "created a new network key: every node that joins this network needs a copy of this file \
                 (cas serve --network-key FILE)"
            );
        }
        Ok(Some(key))
    }

    /// This start's incarnation: `now_ms`, or one past the last one stored
    /// if the clock went back (or was ahead when it was stored), so that a
    /// restart always outranks the past.
    ///
    /// On a full disk the node starts all the same. The new value cannot
    /// go to a new file (the atomic replace), so it overwrites the stored
    /// 8 bytes in place, which takes no new space on most file systems.
    /// Failing that it is kept in memory and saved by
    /// [`DataDir::save_incarnation`] once the disk has room. Until then a
    /// restart could reuse it only if this node's clock were then behind
    /// it: the next start computes `max(last + 1, now)` from the same
    /// `last`, and `now` has moved on unless the clock went back.
    pub fn next_incarnation(&self, now_ms: u64) -> Result<u64> {
        let path = self.incarnation_path();
        let last = match fs::read(&path) {
            Ok(b) => b.as_slice().try_into().map_or(0, u64::from_be_bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let next = now_ms.max(last.saturating_add(1));
        *self.unsaved_incarnation.lock().unwrap_or_else(|e| e.into_inner()) = Some(next);
        match self.save_incarnation() {
            Err(Error::StorageFull { what }) => {
                tracing::warn!("{what}: incarnation {next} is saved once the disk has room");
            }
            other => other?,
        }
        Ok(next)
    }

    /// Saves this start's incarnation if it is not saved yet (the disk was
    /// full at start): see [`DataDir::next_incarnation`].
    pub fn save_incarnation(&self) -> Result<()> {
        let mut unsaved = self.unsaved_incarnation.lock().unwrap_or_else(|e| e.into_inner());
        let Some(value) = *unsaved else { return Ok(()) };
        let path = self.incarnation_path();
        match write_new(&path, &value.to_be_bytes(), true) {
            Err(Error::StorageFull { .. }) => overwrite_in_place(&path, &value.to_be_bytes())?,
            other => other?,
        }
        *unsaved = None;
        Ok(())
    }

    /// Why this start's incarnation is not saved, if it is not.
    pub fn incarnation_problem(&self) -> Option<String> {
        let unsaved = *self.unsaved_incarnation.lock().unwrap_or_else(|e| e.into_inner());
        unsaved.map(|n| format!("incarnation {n} is not saved yet"))
    }

    fn incarnation_path(&self) -> PathBuf {
        self.path.join("incarnation")
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
    write_new(path, &value, false)?;
    Ok(value)
}

/// Writes `bytes` to `path` atomically, owner-only (replacing any file with `replace`).
fn write_new(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    let ctx = |e| Error::io(format!("writing {}", path.display()), e);
    let dir = path.parent().expect("file in a directory");
    let mut tmp = tempfile::Builder::new().prefix(".new").tempfile_in(dir).map_err(ctx)?;
    tmp.write_all(bytes).map_err(ctx)?;
    tmp.as_file().sync_all().map_err(ctx)?;
    // tempfile creates files with mode 0600 already: owner-only.
    if replace {
        tmp.persist(path).map_err(|e| ctx(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| ctx(e.error))?;
    }
    super::sync_dir(dir).map_err(ctx)?;
    Ok(())
}

/// Overwrites the bytes of the existing file at `path` (of that length)
/// in place: no new file, so no new space on most file systems, at the
/// cost of the atomic replace (8 bytes are written whole in practice).
fn overwrite_in_place(path: &Path, bytes: &[u8]) -> Result<()> {
    let ctx = |e| Error::io(format!("overwriting {}", path.display()), e);
    let mut file = OpenOptions::new().write(true).open(path).map_err(ctx)?;
    if file.metadata().map_err(ctx)?.len() != bytes.len() as u64 {
        return Err(ctx(std::io::Error::from(ErrorKind::StorageFull)));
    }
    file.write_all(bytes).map_err(ctx)?;
    file.sync_all().map_err(ctx)
}

/// Warns when a key file is readable by others than its owner.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key file is readable by other users: chmod 600 it");
        }
    }
}
