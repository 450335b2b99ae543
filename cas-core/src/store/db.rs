//! What the two embedded databases of a data dir (the blob index and the
//! catalog, both redb) share: creating the file owner-only, waiting for a
//! handle this process still holds, telling damage from other failures.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, DatabaseError, StorageError};

use crate::error::Error;

/// How long an open waits for the database of a node of this process that
/// was just shut down: its last writes may still hold the file.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// An I/O-kind error about the database at `path`: storage full when the
/// disk was (ENOSPC, EDQUOT), so that callers can tell a full disk from
/// other failures.
pub(crate) fn db_error(path: &Path, what: &str, e: impl Into<redb::Error>) -> Error {
    let source = match e.into() {
        redb::Error::Io(io) => io,
        e => std::io::Error::other(e.to_string()),
    };
    Error::io(format!("{what} {}", path.display()), source)
}

/// Creates the file owner-only (redb would use the umask) and opens it as a
/// database, waiting (bounded) while another handle in this process still
/// has it open.
pub(crate) fn open(path: &Path) -> crate::error::Result<std::result::Result<Database, DatabaseError>> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let deadline = std::time::Instant::now() + OPEN_WAIT;
    loop {
        match Database::create(path) {
            Err(DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return Ok(other),
        }
    }
}

/// Whether `e` says the file is not a sound database (as opposed to an I/O
/// failure or a database in use).
pub(crate) fn is_damage(e: &DatabaseError) -> bool {
    match e {
        DatabaseError::Storage(StorageError::Corrupted(_)) => true,
        DatabaseError::Storage(StorageError::Io(io)) => {
            matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
        }
        _ => false,
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
