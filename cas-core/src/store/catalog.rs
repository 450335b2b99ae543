//! The catalog: the files this node put (key, name, size, time), so that a
//! user who lost a key can find it again. It lives in
//! `<data_dir>/catalog.redb`, an embedded database (redb), owner-only like
//! the rest of the data dir: keys are read capabilities.
//!
//! Unlike blobs, the catalog cannot be rebuilt from anything else (a key
//! holds the file's decryption key, which only the put knew). A catalog that
//! cannot be opened is moved aside (`catalog.redb.damaged-<ms>`), reported
//! at warning level, and a new one is started: the node still runs.
//!
//! A write that fails (the disk is full) leaves the database refusing
//! every operation until it is reopened: [`Catalog::recover`], which the
//! node calls every repair interval, reopens it and tries a write, so puts
//! are recorded again once the disk has room, without a restart. Opening
//! writes nothing (unless redb must repair the file), so a node starts on
//! a full disk.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::db::{self, is_damage, now_ms};
use crate::error::{Error, Result};
use crate::key::Key;

/// The catalog's file in the data dir.
pub const CATALOG_FILE: &str = "catalog.redb";

/// (key, name) -> (size, time in ms since the epoch, put number). The same
/// content put under two names is two entries; put again under the same
/// name, one entry with the latest time. The put number orders the list
/// (two puts can share a millisecond).
const FILES: TableDefinition<(&str, &str), (u64, u64, u64)> = TableDefinition::new("files");
/// "next" -> the next put number.
const COUNTER: TableDefinition<&str, u64> = TableDefinition::new("counter");

/// One file this node put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The file's key.
    pub key: Key,
    /// The file name given to the put (without its directory), or the label
    /// given to `put_bytes_named`/`put_reader_named`; empty when none.
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// When it was (last) put.
    pub time: SystemTime,
}

pub(crate) struct Catalog {
    /// `None` while it cannot be opened: the disk was full at start (an
    /// open can write), or a reopen failed.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// Why the last write failed, and whether for lack of space: redb
    /// refuses every later operation until the database is reopened
    /// ([`Catalog::recover`]).
    failure: Mutex<Option<(String, bool)>>,
}

fn db_error(path: &Path, what: &str, e: impl Into<redb::Error>) -> Error {
    db::db_error(path, &format!("{what} the catalog"), e)
}

impl Catalog {
    /// Opens (creating, mode 0600) the catalog of the data dir at `dir`.
    /// Nothing is written: on a full disk the node starts all the same,
    /// and the catalog is opened (or reopened) once it has room.
    pub(crate) fn open(dir: &Path) -> Result<Catalog> {
        let path = dir.join(CATALOG_FILE);
        let db = match db::open(&path)? {
            Ok(db) => Some(db),
            // Only a file that is not a sound database is moved aside; any
            // other failure (I/O, a database still open) is an error.
            Err(e) if is_damage(&e) => {
                let aside = dir.join(format!("{CATALOG_FILE}.damaged-{}", now_ms()));
                tracing::warn!(
                    path = %path.display(), aside = %aside.display(),
                    "the catalog of files put here cannot be opened ({e}); moved aside, starting a new one"
                );
                std::fs::rename(&path, &aside).map_err(|e| Error::io(format!("moving aside {}", path.display()), e))?;
                return Catalog::open(dir);
            }
            Err(e) => match db_error(&path, "opening", e) {
                Error::StorageFull { what } => {
                    tracing::warn!("{what}: the catalog is opened once the disk has room");
                    None
                }
                e => return Err(e),
            },
        };
        let failure = db.is_none().then(|| ("the disk was full when the node started".to_string(), true));
        Ok(Catalog { db: RwLock::new(db), path, failure: Mutex::new(failure) })
    }

    /// Why the catalog cannot be written now, if it cannot.
    pub(crate) fn write_problem(&self) -> Option<String> {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.as_ref().map(|(why, _)| format!("the catalog cannot be written ({why})"))
    }

    /// After a failed write (or an open the disk did not allow), reopens
    /// the database and tries a write: once the disk has room again, the
    /// catalog takes puts without a restart. Cheap when nothing failed.
    pub(crate) fn recover(&self) -> Result<()> {
        if self.failure.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Ok(());
        }
        {
            let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
            *db = None; // redb allows one handle: this one goes first
            match db::open(&self.path)? {
                Ok(reopened) => *db = Some(reopened),
                Err(e) => return self.note(Err(db_error(&self.path, "reopening", e))),
            }
        }
        self.write(|_, _| Ok(()))?;
        tracing::info!(path = %self.path.display(), "the catalog takes writes again");
        Ok(())
    }

    /// Remembers a failed write (cleared by one that succeeds); returns its error.
    fn note<T>(&self, result: Result<T>) -> Result<T> {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => *failure = None,
            Err(e) => {
                if failure.is_none() {
                    tracing::warn!("{e}; the catalog is reopened when the disk takes writes");
                }
                // Later operations fail for the first failure's reason.
                let full = matches!(e, Error::StorageFull { .. }) || failure.as_ref().is_some_and(|(_, full)| *full);
                *failure = Some((e.to_string(), full));
            }
        }
        result
    }

    /// Runs `f` on the files table with the next put number, in one transaction.
    fn write(&self, f: impl FnOnce(&mut redb::Table<(&str, &str), (u64, u64, u64)>, u64) -> Result<()>) -> Result<()> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let result = match guard.as_ref() {
            Some(db) => self.write_in(db, f),
            None => Err(self.unavailable()),
        };
        drop(guard);
        self.note(result)
    }

    fn write_in(
        &self,
        db: &Database,
        f: impl FnOnce(&mut redb::Table<(&str, &str), (u64, u64, u64)>, u64) -> Result<()>,
    ) -> Result<()> {
        let err = |e: redb::Error| db_error(&self.path, "writing", e);
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut counter = txn.open_table(COUNTER).map_err(|e| err(e.into()))?;
            let next = counter.get("next").map_err(|e| err(e.into()))?.map_or(0, |v| v.value());
            counter.insert("next", next + 1).map_err(|e| err(e.into()))?;
            let mut table = txn.open_table(FILES).map_err(|e| err(e.into()))?;
            f(&mut table, next)?;
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    /// The error while there is no database: storage full if the disk was.
    fn unavailable(&self) -> Error {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let (why, full) = failure.clone().unwrap_or_default();
        let what = format!("the catalog {} is unavailable: {why}", self.path.display());
        match full {
            true => Error::StorageFull { what },
            false => Error::io(what, std::io::Error::other("reopened when it can be")),
        }
    }

    /// Records a put.
    pub(crate) fn record(&self, key: &Key, name: &str, size: u64) -> Result<()> {
        let key = key.to_string();
        let path = self.path.clone();
        self.write(|table, seq| {
            table.insert((key.as_str(), name), (size, now_ms(), seq)).map_err(|e| db_error(&path, "writing", e))?;
            Ok(())
        })
    }

    /// Every entry, oldest first.
    pub(crate) fn list(&self) -> Result<Vec<FileEntry>> {
        let err = |e: redb::Error| db_error(&self.path, "reading", e);
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or_else(|| self.unavailable())?;
        let txn = db.begin_read().map_err(|e| err(e.into()))?;
        let table = match txn.open_table(FILES) {
            Ok(table) => table,
            // A new catalog: nothing was put yet.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e.into())),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let (key, name) = k.value();
            let (size, time, seq) = v.value();
            // A key that does not parse was not written by this code: skip it.
            let Ok(key) = key.parse::<Key>() else { continue };
            let entry = FileEntry { key, name: name.to_string(), size, time: UNIX_EPOCH + Duration::from_millis(time) };
            out.push((seq, entry));
        }
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, entry)| entry).collect())
    }
}
