//! The blob store of one data directory: immutable, verified blobs as files.
//!
//! Layout: `blobs/<first two hex chars>/<64 hex chars>`, the 256 fan-out
//! directories made when the store is (not in a blob's write); a write goes to a
//! file without a name (O_TMPFILE) in its blob's directory, is fsynced (if
//! configured) and linked in under its id, so a blob is either absent or
//! whole, and a crash leaves nothing behind. Where the file system has no
//! O_TMPFILE, the file is a named `.tmp-*` one, renamed; leftovers of a
//! crash are then removed at open. (Files being written live in the fan-out
//! directories, not in one shared directory, so that parallel writers do not
//! all contend on one directory.) Blobs that fail verification on read move
//! to `quarantine/`.
//!
//! Every blob file has a row in the blob index (`index.rs`): its length,
//! how it came, when it was last verified. The totals and every
//! enumeration (repair, scrub) come from the index, not from listing
//! directories, except on a start after a crash, which reconciles the two.
//! Files can still go or change behind the node's back: a start after an
//! orderly close checks each row's file (a `stat`), the answer to which
//! blobs are held ([`BlobStore::contains`], what peers are told) checks
//! the files it claims, and the scrub finds the rest.

mod catalog;
mod data_dir;
mod db;
mod index;
pub(crate) mod unnamed;

use std::fs::{self, File};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) use catalog::Catalog;
pub use catalog::{FileEntry, CATALOG_FILE};
pub use data_dir::{DataDir, IDENTITY_FILE, NETWORK_KEY_FILE};
pub(crate) use index::Placement;
pub use index::{BlobEntry, Origin, INDEX_FILE};
use index::{Index, Opened};
use unnamed::{link_unnamed, open_unnamed};

use crate::error::{is_disk_full, Error, Result};
use crate::format::{BlobId, MAX_BLOB_LEN};

/// Name prefix of blobs being written.
const TEMP_PREFIX: &str = ".tmp-";
/// Bytes read at a time by [`BlobStore::stream`].
pub const STREAM_PIECE: usize = 64 * 1024;

/// Bytes whose SHA-256 is known to equal `id`: the only thing the store accepts.
pub struct VerifiedBlob {
    id: BlobId,
    bytes: Vec<u8>,
}

impl VerifiedBlob {
    /// Hashes `bytes` to get their id.
    pub fn new(bytes: Vec<u8>) -> VerifiedBlob {
        VerifiedBlob { id: BlobId::of(&bytes), bytes }
    }

    /// Checks that `bytes` hash to `id`.
    pub fn check(id: BlobId, bytes: Vec<u8>) -> Result<VerifiedBlob> {
        if bytes.len() > MAX_BLOB_LEN {
            return Err(Error::integrity_blob(&id, "larger than any valid blob"));
        }
        if BlobId::of(&bytes) != id {
            return Err(Error::integrity_blob(&id, "content does not hash to its id"));
        }
        Ok(VerifiedBlob { id, bytes })
    }

    /// For ids computed by the caller from these very bytes (the sealing step).
    pub(crate) fn computed(id: BlobId, bytes: Vec<u8>) -> VerifiedBlob {
        debug_assert_eq!(BlobId::of(&bytes), id);
        VerifiedBlob { id, bytes }
    }

    pub fn id(&self) -> BlobId {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Counters the store keeps (shared with the index's writer, which
/// corrects them for rows whose file vanished).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    used_bytes: AtomicU64,
    blob_count: AtomicU64,
    quarantined: AtomicU64,
}

impl Counters {
    /// A counted blob file of `len` bytes is no longer there.
    fn forget(&self, len: u64) {
        self.used_bytes.fetch_sub(len, Ordering::Relaxed);
        self.blob_count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A directory of blobs. Cheap to clone; all methods are blocking (call them
/// from `spawn_blocking`) and safe to use from many threads.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    blobs: PathBuf,
    quarantine: PathBuf,
    fsync: bool,
    capacity: Option<u64>,
    counters: Arc<Counters>,
    index: Index,
    /// Set by tests: write as on a file system without O_TMPFILE.
    named_only: std::sync::atomic::AtomicBool,
    /// Why the last blob write failed on the disk (full, I/O error);
    /// cleared by a write that succeeds ([`BlobStore::recover`] tries one).
    write_failure: std::sync::Mutex<Option<String>>,
}

impl StoreInner {
    fn close(&self) {
        let c = &self.counters;
        // The totals are read once every write in flight has finished.
        self.index.close(|| (c.used_bytes.load(Ordering::Relaxed), c.blob_count.load(Ordering::Relaxed)));
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        self.close();
    }
}

impl BlobStore {
    /// Opens (creating if needed) the store under `root`. After an orderly
    /// close this checks each indexed file's length (`check_rows`); after a crash (or with
    /// the index missing or damaged) it removes the temporary files of
    /// interrupted writes and reconciles the index with the blob files.
    pub fn open(root: &Path, fsync: bool, capacity: Option<u64>) -> Result<BlobStore> {
        let blobs = root.join("blobs");
        let quarantine = root.join("quarantine");
        for dir in [&blobs, &quarantine] {
            fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        make_fan_out(&blobs, fsync)
            .map_err(|e| Error::io(format!("creating the directories of {}", blobs.display()), e))?;
        let counters = Arc::new(Counters::default());
        let (index, opened) = Index::open(root, counters.clone())?;
        let store = BlobStore {
            inner: Arc::new(StoreInner {
                blobs,
                quarantine,
                fsync,
                capacity,
                counters,
                index,
                named_only: Default::default(),
                write_failure: Default::default(),
            }),
        };
        let checked = match opened {
            Opened::Clean => store.check_rows(),
            Opened::Reconcile => store.reconcile(),
            Opened::Unwritable => Err(Error::StorageFull { what: "the blob index cannot be written".into() }),
        };
        let (bytes, count) = match checked {
            Ok(totals) => totals,
            // A full disk: start read-only, with the totals of the files;
            // the index is reopened and reconciled once the disk has room.
            Err(Error::StorageFull { what }) => {
                store.inner.index.fail_as_if_disk_full();
                tracing::warn!("{what}: starting read-only (serving the blobs held) until the disk has room");
                store.file_totals()?
            }
            Err(e) => return Err(e),
        };
        store.inner.counters.used_bytes.store(bytes, Ordering::Relaxed);
        store.inner.counters.blob_count.store(count, Ordering::Relaxed);
        // A disk that is full (or failing) is said at once, not at the first put.
        match store.probe_write() {
            Ok(()) | Err(Error::StorageFull { .. }) => Ok(store),
            Err(e) => Err(e),
        }
    }

    /// Makes the index agree with `blobs/` (after a crash); returns the totals.
    fn reconcile(&self) -> Result<(u64, u64)> {
        self.remove_temporaries()?;
        self.reconcile_index()
    }

    /// Adds a row for each blob file without one, drops the rows without a
    /// file (or of another length); returns the totals.
    fn reconcile_index(&self) -> Result<(u64, u64)> {
        let index = &self.inner.index;
        let mut batch = Vec::new();
        let mut failed = None;
        self.for_each_fan_out_entry(|entry| {
            if let Some(id) = entry.file_name().to_str().and_then(BlobId::from_hex) {
                batch.push((id, entry.metadata()?.len()));
            }
            if batch.len() >= 4096 {
                if let Err(e) = index.reconcile_files(&batch) {
                    failed = Some(e);
                    return Err(std::io::Error::other("index"));
                }
                batch.clear();
            }
            Ok(())
        })
        .map_err(|e| failed.take().unwrap_or(e))?;
        index.reconcile_files(&batch)?;
        let totals = index.reconcile_rows(|id, len| self.len_of(id) == Some(len))?;
        tracing::debug!(
            blobs = totals.1,
            bytes = totals.0,
            "blob index reconciled with {}",
            self.inner.blobs.display()
        );
        Ok(totals)
    }

    /// After an orderly close: drops the rows whose file is gone, and moves
    /// aside (to `quarantine/`) a file whose length is not its row's (both
    /// changed behind the node's back); returns the totals of the rest. One
    /// `stat` per blob, no directory walk: a file added by hand is not seen.
    fn check_rows(&self) -> Result<(u64, u64)> {
        let totals = self.inner.index.reconcile_rows(|id, len| match self.len_of(id) {
            Some(l) if l == len => true,
            Some(l) => {
                tracing::warn!(blob = %id, "blob file is {l} bytes, not {len}: moved to quarantine");
                if self.move_to_quarantine(id) {
                    self.inner.counters.quarantined.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            None => {
                tracing::warn!(blob = %id, "blob file is gone: dropped from the index");
                false
            }
        })?;
        Ok(totals)
    }

    /// The totals (bytes, count) of the blob files in `blobs/`, walked.
    fn file_totals(&self) -> Result<(u64, u64)> {
        let (mut bytes, mut count) = (0, 0);
        self.for_each_blob(|_, len| {
            bytes += len;
            count += 1;
        })?;
        Ok((bytes, count))
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.inner.blobs.join(&hex[..2]).join(hex)
    }

    /// Whether the blob is stored.
    pub fn has(&self, id: &BlobId) -> bool {
        self.path(id).exists()
    }

    /// Stores a blob put on this node. Returns `false` (and writes nothing)
    /// if it was present.
    pub fn put(&self, blob: &VerifiedBlob) -> Result<bool> {
        self.put_from(blob, Origin::Put)
    }

    /// Stores a blob that came as `origin` (recorded only if it is new).
    pub fn put_from(&self, blob: &VerifiedBlob, origin: Origin) -> Result<bool> {
        let path = self.path(&blob.id);
        if path.exists() {
            return Ok(false);
        }
        let held = self.inner.index.hold()?;
        // Read-only until the index can be written again: a file without
        // its row would not be counted.
        if self.inner.index.is_broken() {
            return Err(Error::StorageFull { what: self.write_problem().unwrap_or_default() });
        }
        let len = blob.bytes.len() as u64;
        let counters = &self.inner.counters;
        // Reserve the space first, so concurrent writers cannot overshoot.
        let before = counters.used_bytes.fetch_add(len, Ordering::Relaxed);
        if let Some(cap) = self.inner.capacity {
            if before + len > cap {
                counters.used_bytes.fetch_sub(len, Ordering::Relaxed);
                return Err(Error::StorageFull {
                    what: format!("node capacity of {cap} bytes reached ({before} used, blob of {len} bytes refused)"),
                });
            }
        }
        let written = self.write_new(&path, &blob.bytes);
        self.note_write(&written);
        match written {
            Ok(true) => {
                self.inner.index.insert(&held, &blob.id, len, origin);
                counters.blob_count.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Ok(false) => {
                counters.used_bytes.fetch_sub(len, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => {
                counters.used_bytes.fetch_sub(len, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Records whether a blob write reached the disk.
    fn note_write<T>(&self, result: &Result<T>) {
        let failure = match result {
            Err(e @ (Error::StorageFull { .. } | Error::Io { .. })) => Some(e.to_string()),
            Err(_) => return,
            Ok(_) => None,
        };
        let mut slot = self.inner.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            if let Some(f) = &failure {
                tracing::warn!("the store cannot write: {f}");
            }
        }
        *slot = failure;
    }

    /// Why this store cannot write now, if it cannot: the last blob write
    /// failed on the disk, or the index cannot be written. Reads still work.
    pub fn write_problem(&self) -> Option<String> {
        if self.inner.index.is_broken() {
            return Some(
                "the blob index cannot be written (a write failed; it is reopened when the disk has room)".into(),
            );
        }
        self.inner.write_failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Recovers from write failures once the disk takes writes again:
    /// reopens a blob index that a failed write left unusable and
    /// reconciles it with `blobs/` (what was queued then is lost), and
    /// after a failed blob write, tries a small one. Called now and then by
    /// the node; cheap when nothing failed.
    pub fn recover(&self) -> Result<()> {
        if self.inner.index.recover()? {
            let (bytes, count) = self.reconcile_index()?;
            self.inner.counters.used_bytes.store(bytes, Ordering::Relaxed);
            self.inner.counters.blob_count.store(count, Ordering::Relaxed);
        }
        if self.inner.write_failure.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            self.probe_write()?;
        }
        Ok(())
    }

    /// Writes (and removes) a small file, as a blob write would: whether
    /// the disk takes writes, noted for [`BlobStore::write_problem`].
    fn probe_write(&self) -> Result<()> {
        let probe = self.inner.blobs.join(format!("{TEMP_PREFIX}probe"));
        let written = fs::write(&probe, [0u8; 64 * 1024]).map_err(|e| Error::io("writing a probe file", e));
        let _ = fs::remove_file(&probe);
        self.note_write(&written);
        written
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> Result<bool> {
        let ctx = |e: std::io::Error| Error::io(format!("writing blob {}", path.display()), e);
        let dir = path.parent().expect("blob path has a parent");
        match self.write_in(dir, path, bytes) {
            // The fan-out directory made at open is gone (removed by hand):
            // make it again, once.
            Err(e) if e.kind() == IoKind::NotFound => {
                make_dir(dir, &self.inner.blobs, self.inner.fsync).map_err(ctx)?;
                self.write_in(dir, path, bytes).map_err(ctx)
            }
            result => result.map_err(ctx),
        }
    }

    /// Writes a new blob file at `path`, in the existing directory `dir`.
    fn write_in(&self, dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
        // A file without a name, linked in whole: no temporary name to create
        // and remove, and nothing left behind by a crash. A named temporary
        // file where the file system cannot.
        let unnamed = match self.inner.named_only.load(Ordering::Relaxed) {
            true => None,
            false => open_unnamed(dir, 0o600)?,
        };
        if let Some(mut file) = unnamed {
            file.write_all(bytes)?;
            if self.inner.fsync {
                file.sync_data()?;
            }
            // A link never replaces: a concurrent writer of the same id wins, we are a no-op.
            match link_unnamed(&file, path) {
                Ok(()) => {}
                Err(e) if e.kind() == IoKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(e),
            }
            if self.inner.fsync {
                sync_dir(dir)?;
            }
            return Ok(true);
        }
        let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        if self.inner.fsync {
            tmp.as_file().sync_data()?;
        }
        // Rename never replaces: a concurrent writer of the same id wins, we are a no-op.
        match tmp.persist_noclobber(path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == IoKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e.error),
        }
        if self.inner.fsync {
            sync_dir(dir)?;
        }
        Ok(true)
    }

    /// The size of blob `id`'s file, without reading it; `None` if absent.
    pub fn len_of(&self, id: &BlobId) -> Option<u64> {
        fs::metadata(self.path(id)).ok().map(|m| m.len())
    }

    /// Reads and verifies a blob. `Ok(None)` if absent; a blob that fails
    /// verification is moved to quarantine and reported as an integrity error.
    pub fn get(&self, id: &BlobId) -> Result<Option<VerifiedBlob>> {
        let path = self.path(id);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading blob {}", path.display()), e)),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        let mut bytes = Vec::with_capacity(len.min(MAX_BLOB_LEN) + 1);
        // Read at most one byte more than the largest blob: an oversized file fails below.
        (&mut file)
            .take(MAX_BLOB_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading blob {}", path.display()), e))?;
        match VerifiedBlob::check(*id, bytes) {
            Ok(blob) => Ok(Some(blob)),
            Err(err) => {
                self.quarantine(id);
                Err(err)
            }
        }
    }

    /// Reads blob `id` in pieces of [`STREAM_PIECE`] bytes, passing each to
    /// `piece`, and verifies it as [`BlobStore::get`] does, in bounded
    /// memory: `Ok(false)` if absent (a file gone from under an index row
    /// drops the row), an integrity error (the blob quarantined) if its
    /// bytes do not hash to its id. `piece` has seen the bytes either way.
    pub fn stream(&self, id: &BlobId, mut piece: impl FnMut(&[u8])) -> Result<bool> {
        use sha2::Digest;
        let path = self.path(id);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == IoKind::NotFound => {
                self.forget_if_missing(id);
                return Ok(false);
            }
            Err(e) => return Err(Error::io(format!("reading blob {}", path.display()), e)),
        };
        let (mut hash, mut buf, mut len) = (sha2::Sha256::new(), vec![0u8; STREAM_PIECE], 0usize);
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("reading blob {}", path.display()), e)),
            };
            len += n;
            if len > MAX_BLOB_LEN {
                self.quarantine(id);
                return Err(Error::integrity_blob(id, "larger than any valid blob"));
            }
            hash.update(&buf[..n]);
            piece(&buf[..n]);
        }
        if BlobId(hash.finalize().into()) != *id {
            self.quarantine(id);
            return Err(Error::integrity_blob(id, "content does not hash to its id"));
        }
        Ok(true)
    }

    /// Moves a bad blob out of the way so that a good replica can replace it.
    pub fn quarantine(&self, id: &BlobId) {
        // Counted at its indexed length (the file may have been cut short).
        let indexed = self.entry(id).ok().flatten().map(|e| e.len);
        let Ok(held) = self.inner.index.hold() else { return };
        let Some(file_len) = self.len_of(id) else { return };
        let len = indexed.unwrap_or(file_len);
        self.inner.index.remove(&held, id);
        if self.move_to_quarantine(id) {
            let c = &self.inner.counters;
            c.forget(len);
            c.quarantined.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(blob = %id, "blob failed verification and was quarantined");
        }
    }

    /// Moves blob `id`'s file to `quarantine/`; whether it was there to move.
    fn move_to_quarantine(&self, id: &BlobId) -> bool {
        fs::rename(self.path(id), self.inner.quarantine.join(id.to_hex())).is_ok()
    }

    /// Deletes a blob (used by repair when a node holds a surplus copy).
    pub fn remove(&self, id: &BlobId) -> Result<bool> {
        let path = self.path(id);
        let held = self.inner.index.hold()?;
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => return Ok(false),
        };
        self.inner.index.remove(&held, id);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.inner.counters.forget(len);
                Ok(true)
            }
            Err(e) if e.kind() == IoKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("removing blob {}", path.display()), e)),
        }
    }

    /// Removes the temporary files of writes a crash interrupted.
    fn remove_temporaries(&self) -> Result<()> {
        self.for_each_fan_out_entry(|entry| {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
            Ok(())
        })
    }

    /// What the index knows of blob `id` (length, origin, last verified).
    pub fn entry(&self, id: &BlobId) -> Result<Option<BlobEntry>> {
        self.inner.index.entry(id)
    }

    /// Which of `ids` are stored and readable: indexed (one lookup for all)
    /// and with a file of the indexed length (a `stat` each). A file that
    /// vanished is dropped from the index at once, one whose length changed
    /// is quarantined: neither is claimed (so a peer gives a new copy).
    pub fn contains(&self, ids: &[BlobId]) -> Result<Vec<bool>> {
        let lengths = match self.inner.index.lengths(ids) {
            Ok(lengths) => lengths,
            // An index that a failed write left unusable: the files answer.
            Err(_) if self.inner.index.is_broken() => return Ok(ids.iter().map(|id| self.has(id)).collect()),
            Err(e) => return Err(e),
        };
        Ok(ids.iter().zip(lengths).map(|(id, len)| len.is_some_and(|len| self.file_is(id, len))).collect())
    }

    /// Whether blob `id`'s file has length `len` (its indexed length);
    /// when not, the file is dealt with as [`BlobStore::contains`] says.
    fn file_is(&self, id: &BlobId, len: u64) -> bool {
        match self.len_of(id) {
            Some(l) if l == len => true,
            Some(l) => {
                tracing::warn!(blob = %id, "blob file is {l} bytes, not {len}");
                self.quarantine(id);
                false
            }
            None => {
                self.forget_if_missing(id);
                false
            }
        }
    }

    /// Drops blob `id` from the index if its file is gone (removed behind the
    /// node's back). The index's writer decides, in order with every other
    /// change: a file written again meanwhile keeps its row. Reads made
    /// after this call see the outcome.
    pub fn forget_if_missing(&self, id: &BlobId) {
        let Ok(held) = self.inner.index.hold() else { return };
        if !self.path(id).exists() {
            tracing::warn!(blob = %id, "blob file is gone: dropping it from the index");
            self.inner.index.forget_if_missing(&held, id, self.path(id));
        }
    }

    /// Up to `limit` stored blobs (id, length) after `after`, in id order,
    /// from the index: a walk over a large store in bounded memory.
    pub fn page(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<(BlobId, u64)>> {
        self.inner.index.page(after, limit)
    }

    /// Records that blob `id` was just read and found good.
    pub fn mark_verified(&self, id: &BlobId) -> Result<()> {
        self.inner.index.set_verified(id)
    }

    pub(crate) fn index(&self) -> &Index {
        &self.inner.index
    }

    /// For tests of the way blobs are written where the file system has no
    /// O_TMPFILE: named temporary files, renamed.
    #[doc(hidden)]
    pub fn use_named_temporary_files(&self) {
        self.inner.named_only.store(true, Ordering::Relaxed);
    }

    /// For tests of recovery from a failed index write: leaves the index as
    /// a write that failed for lack of space does (unusable until
    /// [`BlobStore::recover`] reopens it).
    #[doc(hidden)]
    pub fn fail_index_as_if_disk_full(&self) {
        self.inner.index.fail_as_if_disk_full();
    }

    /// Closes the index (marking it consistent with the files); later
    /// writes fail with `Closed`. Dropping the last handle does the same.
    pub fn close(&self) {
        self.inner.close();
    }

    /// For tests of crash recovery in one process: closes the index as a
    /// crash would leave it, so that the next open reconciles it with the
    /// files (a real crash is tested with killed processes).
    #[doc(hidden)]
    pub fn close_as_if_crashed(&self) {
        self.inner.index.close_as_if_crashed();
        self.inner.close();
    }

    /// Calls `f(id, len)` for every blob file in `blobs/` (a directory
    /// walk: for checks and tests; the node itself walks the index).
    pub fn for_each_blob(&self, mut f: impl FnMut(BlobId, u64)) -> Result<()> {
        self.for_each_fan_out_entry(|entry| {
            if let Some(id) = entry.file_name().to_str().and_then(BlobId::from_hex) {
                f(id, entry.metadata()?.len());
            }
            Ok(())
        })
    }

    /// Calls `f` for every entry of every fan-out directory.
    fn for_each_fan_out_entry(&self, mut f: impl FnMut(&fs::DirEntry) -> std::io::Result<()>) -> Result<()> {
        let mut walk = || -> std::io::Result<()> {
            for fan in fs::read_dir(&self.inner.blobs)? {
                let fan = fan?;
                if fan.file_type()?.is_dir() {
                    for entry in fs::read_dir(fan.path())? {
                        f(&entry?)?;
                    }
                }
            }
            Ok(())
        };
        walk().map_err(|e| Error::io(format!("listing blobs in {}", self.inner.blobs.display()), e))
    }

    /// Bytes stored.
    pub fn used_bytes(&self) -> u64 {
        self.inner.counters.used_bytes.load(Ordering::Relaxed)
    }

    /// Number of blobs stored.
    pub fn blob_count(&self) -> u64 {
        self.inner.counters.blob_count.load(Ordering::Relaxed)
    }

    /// Blobs quarantined since start.
    pub fn quarantined(&self) -> u64 {
        self.inner.counters.quarantined.load(Ordering::Relaxed)
    }

    /// Whether a blob of `len` bytes would fit under the capacity limit now.
    pub fn has_room_for(&self, len: u64) -> bool {
        self.inner.capacity.is_none_or(|cap| self.used_bytes() + len <= cap)
    }
}

/// Makes a directory's entries durable (after a create or rename in it).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the 256 fan-out directories `00`..`ff` of `blobs` when the last
/// one is missing (a new store): once, at open, rather than a `mkdir` in
/// every blob write (for a fresh store, 256 directories made during its
/// first put).
fn make_fan_out(blobs: &Path, fsync: bool) -> std::io::Result<()> {
    if blobs.join("ff").is_dir() {
        return Ok(());
    }
    // In order, so that `ff` there means all are.
    for fan in 0..=255u8 {
        make_dir(&blobs.join(format!("{fan:02x}")), blobs, false)?;
    }
    // New directories must themselves be durable in blobs/.
    if fsync {
        sync_dir(blobs)?;
    }
    Ok(())
}

/// Makes the directory `dir` in `parent` if it is missing.
fn make_dir(dir: &Path, parent: &Path, fsync: bool) -> std::io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) if fsync => sync_dir(parent),
        Ok(()) => Ok(()),
        Err(e) if e.kind() == IoKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Maps a write error at the destination to the right public error.
pub(crate) fn destination_error(path: &Path, e: std::io::Error) -> Error {
    if is_disk_full(&e) {
        Error::StorageFull { what: format!("no space left writing {}", path.display()) }
    } else {
        Error::Destination { path: path.to_path_buf(), source: e }
    }
}
