//! The catalog: the files this node put (key, name, size, time), so that a
//! user who lost a key can find it again. It lives in
//! `<data_dir>/catalog.redb`, an embedded database (redb), owner-only like
//! the rest of the data dir: keys are read capabilities.
//!
//! Unlike blobs, the catalog cannot be rebuilt from anything else (a key
//! holds the file's decryption key, which only the put knew). A catalog that
//! cannot be opened is moved aside (`catalog.redb.damaged-<ms>`), reported
//! at warning level, and a new one is started: the node still runs.

use std::path::{Path, PathBuf};
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
    db: Database,
    path: PathBuf,
}

fn db_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    db::db_error(path, &format!("{what} the catalog"), e)
}

impl Catalog {
    /// Opens (creating, mode 0600) the catalog of the data dir at `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Catalog> {
        let path = dir.join(CATALOG_FILE);
        let db = match db::open(&path)? {
            Ok(db) => db,
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
            Err(e) => return Err(db_error(&path, "opening", e)),
        };
        let catalog = Catalog { db, path };
        // The table exists from the start, so that listing never fails on a new catalog.
        catalog.write(|_, _| Ok(()))?;
        Ok(catalog)
    }

    /// Runs `f` on the files table with the next put number, in one transaction.
    fn write(&self, f: impl FnOnce(&mut redb::Table<(&str, &str), (u64, u64, u64)>, u64) -> Result<()>) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| db_error(&self.path, "writing", e);
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut counter = txn.open_table(COUNTER).map_err(|e| err(&e))?;
            let next = counter.get("next").map_err(|e| err(&e))?.map_or(0, |v| v.value());
            counter.insert("next", next + 1).map_err(|e| err(&e))?;
            let mut table = txn.open_table(FILES).map_err(|e| err(&e))?;
            f(&mut table, next)?;
        }
        txn.commit().map_err(|e| err(&e))
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
        let err = |e: &dyn std::fmt::Display| db_error(&self.path, "reading", e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let table = txn.open_table(FILES).map_err(|e| err(&e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| err(&e))? {
            let (k, v) = row.map_err(|e| err(&e))?;
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
