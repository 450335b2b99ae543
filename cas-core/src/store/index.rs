//! The blob index: `<data_dir>/index.redb` (redb), one row per blob file in
//! `blobs/` (its length, how it came, when it was last verified), an
//! insertion log, and what repair last confirmed about each blob's
//! placement. The files are the truth; the index is derived from them.
//!
//! Consistency with the files, crash or not: a blob's row is queued after
//! its file is in place and its removal before the file goes, all while
//! holding the index open ([`Index::hold`]); a writer thread commits the
//! queue in batches (one transaction for up to [`BATCH`] changes: a commit
//! per blob would cost as much as the blob's write), and every read waits
//! for what was queued before it. The index is marked clean only by an
//! orderly close, after every holder has let go
//! and the queue is committed. A start that finds it not clean (a crash, a
//! failed index write), missing or damaged reconciles it with `blobs/`
//! before anything else runs. So commits need not wait for the disk
//! (redb's `Durability::None`, durable every [`DURABLE_EVERY`] commits and
//! at close): a crash can lose rows, never make them lie after the next
//! start. (Files removed by hand are another matter: `Op::Forget` drops a
//! row whose file vanished, deciding in order with the other changes.)

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::db::{self, is_damage, now_ms};
use super::Counters;
use crate::error::{Error, Result};
use crate::format::BlobId;

/// The index's file in the data dir.
pub const INDEX_FILE: &str = "index.redb";

/// id -> (length, origin, last verified in ms since the epoch or 0, log number).
const BLOBS: TableDefinition<&[u8; 32], (u64, u8, u64, u64)> = TableDefinition::new("blobs");
/// log number -> id, in the order blobs arrived (repair reads what is new).
const LOG: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("log");
/// id -> (lowest rendezvous score among them, their ids concatenated): the
/// ideal holders repair last found holding the blob (or gave it to).
const PLACED: TableDefinition<&[u8; 32], (u64, &[u8])> = TableDefinition::new("placed");
/// ids repair could not confirm (a holder did not answer, a copy failed).
const UNPLACED: TableDefinition<&[u8; 32], ()> = TableDefinition::new("unplaced");
/// "clean", "bytes", "count" (valid when clean), "next" (log number),
/// "repair" (the log number repair has checked up to).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Non-durable writes between two durable commits.
const DURABLE_EVERY: u64 = 64;

/// How a blob came to this node (the first time it was stored here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Stored by a put on this node.
    Put,
    /// Given by a peer: a replica of its put, or a repair.
    Replica,
    /// Fetched from a peer by a get (kept while `keep_fetched` is on).
    Fetched,
    /// Found in `blobs/` when the index was rebuilt after a crash.
    Unknown,
}

impl Origin {
    fn to_u8(self) -> u8 {
        match self {
            Origin::Put => 1,
            Origin::Replica => 2,
            Origin::Fetched => 3,
            Origin::Unknown => 0,
        }
    }

    fn from_u8(v: u8) -> Origin {
        match v {
            1 => Origin::Put,
            2 => Origin::Replica,
            3 => Origin::Fetched,
            _ => Origin::Unknown,
        }
    }

    /// Lower-case name, for logs and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Put => "put",
            Origin::Replica => "replica",
            Origin::Fetched => "fetched",
            Origin::Unknown => "unknown",
        }
    }
}

/// What the index knows of one stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// Its length in bytes.
    pub len: u64,
    /// How it came.
    pub origin: Origin,
    /// When it was last read and found to hash to its id (by its write or
    /// by the scrub); `None` if never since the index was rebuilt.
    pub verified: Option<SystemTime>,
}

/// The ideal holders repair confirmed for a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The lowest rendezvous score among them: a node that joins with a
    /// higher score for this blob changes the set.
    pub min_score: u64,
    /// Their node ids.
    pub holders: Vec<[u8; 32]>,
}

/// What an open found.
pub(crate) enum Opened {
    /// Closed in order: every file has its row, but a file may have been
    /// removed (or changed) since, behind the node's back.
    Clean,
    /// Crashed, missing or rebuilt: it must be reconciled with the files.
    Reconcile,
    /// The disk is full: the index could not be opened for writing (or its
    /// mark could not be cleared). It is read as it is, if at all, and
    /// reopened and reconciled once the disk has room ([`Index::recover`]).
    Unwritable,
}

pub(crate) struct Index {
    shared: Arc<Shared>,
    /// The queue to the writer thread while the index is open; `None` once
    /// closed. Blob files change only while a read guard is held
    /// ([`Index::hold`]); the close takes it for writing.
    gate: RwLock<Option<SyncSender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the writer thread and the readers share.
struct Shared {
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// Changes queued and not committed yet.
    pending: AtomicU64,
    /// Commits since the last durable one.
    commits: AtomicU64,
    /// A row could not be written: the next start must reconcile.
    stale: AtomicBool,
    /// Tests: close as a crash would leave it (not clean).
    crashed: AtomicBool,
    /// A database operation failed (redb then refuses every later one, e.g.
    /// after a disk ran full): [`Index::recover`] reopens it.
    broken: AtomicBool,
    /// The store's totals: a row found stale by the writer (its file
    /// vanished) is taken off them.
    counters: Arc<Counters>,
}

/// A change for the writer thread, or a request to say when all before it
/// are committed.
enum Op {
    Insert {
        id: BlobId,
        len: u64,
        origin: Origin,
        verified: u64,
    },
    Remove(BlobId),
    /// Removes the row if the file at `path` is gone when the op is committed.
    Forget {
        id: BlobId,
        path: PathBuf,
    },
    Flush(SyncSender<()>),
}

/// Changes the writer commits together, at most.
const BATCH: usize = 1024;
/// How long the writer gathers changes before it commits them.
const LINGER: Duration = Duration::from_millis(5);
/// Changes queued, at most, before a writer of blobs waits.
const QUEUE: usize = 4096;

/// The index held open: blob files may change only while one is held.
pub(crate) struct Held<'a>(RwLockReadGuard<'a, Option<SyncSender<Op>>>);

impl Index {
    /// Opens (creating, mode 0600) the index under `root`. A damaged one is
    /// deleted (it is rebuilt from the files) and reported.
    pub(crate) fn open(root: &Path, counters: Arc<Counters>) -> Result<(Index, Opened)> {
        let path = root.join(INDEX_FILE);
        let (database, mut opened) = match db::open(&path)? {
            Ok(d) => (Some(d), None),
            Err(e) if is_damage(&e) => {
                tracing::warn!(path = %path.display(), "the blob index is damaged ({e}); rebuilding it from blobs/");
                std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                match db::open(&path)? {
                    Ok(d) => (Some(d), Some(Opened::Reconcile)),
                    Err(e) => (unwritable(db::db_error(&path, "creating the blob index", e))?, None),
                }
            }
            // Opening can write (redb repairs a file not closed in order).
            Err(e) => (unwritable(db::db_error(&path, "opening the blob index", e))?, None),
        };
        let unopened = database.is_none();
        let shared = Arc::new(Shared {
            db: RwLock::new(database),
            path,
            pending: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            crashed: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            counters,
        });
        let meta = |txn: &WriteTransaction, name: &str| -> Result<Option<u64>> {
            let table = txn.open_table(META).map_err(|e| shared.err(e))?;
            let value = table.get(name).map_err(|e| shared.err(e))?.map(|v| v.value());
            Ok(value)
        };
        // Read the clean mark and clear it, durably, in one transaction:
        // from now until the close, a crash means reconcile.
        let marked = !unopened
            && match shared.write_with(Durability::Immediate, |txn| {
                if opened.is_none() {
                    opened = Some(match meta(txn, "clean")? {
                        Some(1) => Opened::Clean,
                        _ => Opened::Reconcile,
                    });
                }
                shared.mark_in_use(txn)
            }) {
                Ok(()) => true,
                Err(e) => unwritable::<bool>(e)?,
            };
        if !marked {
            shared.reopen_to_read();
            opened = Some(Opened::Unwritable);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("cas-index".into())
                .spawn(move || shared.write_queued(rx))
                .map_err(|e| Error::io("starting the blob index writer", e))?
        };
        let index = Index { shared, gate: RwLock::new(Some(tx)), writer: Mutex::new(Some(writer)) };
        Ok((index, opened.unwrap_or(Opened::Reconcile)))
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        self.shared.err(e)
    }

    /// Holds the index open (a close waits for every holder). `Closed` once closed.
    pub(crate) fn hold(&self) -> Result<Held<'_>> {
        let guard = self.gate.read().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            return Err(Error::Closed);
        }
        Ok(Held(guard))
    }

    /// Records a new blob file (called with the index held, after the file
    /// is in place). Committed by the writer thread, with others; a read
    /// waits for it. A failure leaves the file counted at the next start.
    pub(crate) fn insert(&self, held: &Held<'_>, id: &BlobId, len: u64, origin: Origin) {
        self.enqueue(held, Op::Insert { id: *id, len, origin, verified: now_ms() });
    }

    /// Forgets a blob (called with the index held, before its file goes).
    pub(crate) fn remove(&self, held: &Held<'_>, id: &BlobId) {
        self.enqueue(held, Op::Remove(*id));
    }

    /// Forgets a blob whose file is gone (called with the index held): the
    /// writer removes the row, and takes it off the totals, only if the
    /// file is still missing then, so a blob written again meanwhile
    /// (its insert queued before) keeps its row.
    pub(crate) fn forget_if_missing(&self, held: &Held<'_>, id: &BlobId, path: PathBuf) {
        self.enqueue(held, Op::Forget { id: *id, path });
    }

    fn enqueue(&self, held: &Held<'_>, op: Op) {
        let tx = held.0.as_ref().expect("held open");
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        if tx.send(op).is_err() {
            self.shared.pending.fetch_sub(1, Ordering::SeqCst);
            self.shared.note(Err(Error::io(
                "queueing a change of the blob index",
                std::io::Error::other("the writer stopped"),
            )));
        }
    }

    /// Waits until every change queued so far is committed.
    fn flush(&self) {
        if self.shared.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        let guard = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else { return };
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if tx.send(Op::Flush(ack)).is_ok() {
            drop(guard);
            let _ = done.recv();
        }
    }

    /// A write transaction outside the queue (repair, scrub, reconcile);
    /// durable now and then.
    fn write(&self, f: impl FnOnce(&WriteTransaction) -> Result<()>) -> Result<()> {
        self.shared.write_with(self.shared.durability(), f)
    }

    /// A read transaction that sees every change queued before it.
    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        self.flush();
        let guard = self.shared.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or_else(|| self.shared.gone())?;
        let txn = db.begin_read().map_err(|e| self.err(e))?;
        f(&txn)
    }

    /// Leaves the index as a failed write does (unusable until
    /// [`Index::recover`] reopens it): a start whose checks could not be
    /// written, and tests that do not fill a disk.
    pub(crate) fn fail_as_if_disk_full(&self) {
        self.shared.broken.store(true, Ordering::Relaxed);
        self.shared.db.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Whether a database operation has failed since the index was (re)opened.
    pub(crate) fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Relaxed)
    }

    /// After a failed operation (redb refuses every later one, "close and
    /// re-open"), reopens the database. True when it did: changes may have
    /// been lost, and the caller must reconcile the index with the files.
    /// Fails (and is tried again later) while the disk cannot take it.
    pub(crate) fn recover(&self) -> Result<bool> {
        if !self.is_broken() {
            return Ok(false);
        }
        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        if gate.is_none() {
            return Ok(false); // closed
        }
        let mut db = self.shared.db.write().unwrap_or_else(|e| e.into_inner());
        *db = None; // redb allows one handle: this one goes first
        let path = &self.shared.path;
        match db::open(path)? {
            Ok(reopened) => *db = Some(reopened),
            Err(e) => return Err(db::db_error(path, "reopening the blob index", e)),
        }
        drop(db);
        // The mark an open writes (it may not have been written at start):
        // from now on a crash means reconcile.
        self.shared.write_with(Durability::Immediate, |txn| self.shared.mark_in_use(txn))?;
        self.shared.broken.store(false, Ordering::Relaxed);
        tracing::info!(path = %path.display(), "the blob index was reopened after a failed write");
        Ok(true)
    }

    /// The entry of blob `id`.
    pub(crate) fn entry(&self, id: &BlobId) -> Result<Option<BlobEntry>> {
        self.read(|txn| {
            let table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            let row = table.get(&id.0).map_err(|e| self.err(e))?;
            Ok(row.map(|v| {
                let (len, origin, verified, _) = v.value();
                BlobEntry {
                    len,
                    origin: Origin::from_u8(origin),
                    verified: (verified > 0).then(|| UNIX_EPOCH + Duration::from_millis(verified)),
                }
            }))
        })
    }

    /// The indexed length of each of `ids`, `None` for those not indexed
    /// (one read transaction for all).
    pub(crate) fn lengths(&self, ids: &[BlobId]) -> Result<Vec<Option<u64>>> {
        self.read(|txn| {
            let table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            ids.iter().map(|id| Ok(table.get(&id.0).map_err(|e| self.err(e))?.map(|v| v.value().0))).collect()
        })
    }

    /// Up to `limit` (id, length) after `after` in id order (from the start if `None`).
    pub(crate) fn page(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<(BlobId, u64)>> {
        self.page_of(BLOBS, after, limit, |id, (len, ..)| (id, len))
    }

    /// Up to `limit` rows of `table` (keyed by blob id) after `after`, each
    /// through `f`.
    fn page_of<V: redb::Value + 'static, T>(
        &self,
        table: TableDefinition<&[u8; 32], V>,
        after: Option<BlobId>,
        limit: usize,
        f: impl for<'a> Fn(BlobId, V::SelfType<'a>) -> T,
    ) -> Result<Vec<T>> {
        self.read(|txn| {
            let table = txn.open_table(table).map_err(|e| self.err(e))?;
            let start = after.map(|a| a.0);
            let lower = match &start {
                Some(a) => Bound::Excluded(a),
                None => Bound::Unbounded,
            };
            let mut out = Vec::new();
            for row in table.range::<&[u8; 32]>((lower, Bound::Unbounded)).map_err(|e| self.err(e))?.take(limit) {
                let (k, v) = row.map_err(|e| self.err(e))?;
                out.push(f(BlobId(*k.value()), v.value()));
            }
            Ok(out)
        })
    }

    /// Sets when blob `id` was last found good.
    pub(crate) fn set_verified(&self, id: &BlobId) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            let row = table.get(&id.0).map_err(|e| self.err(e))?.map(|v| v.value());
            if let Some((len, origin, _, seq)) = row {
                table.insert(&id.0, (len, origin, now_ms(), seq)).map_err(|e| self.err(e))?;
            }
            Ok(())
        })
    }

    /// Blobs that arrived after log number `after`, up to `limit`, with their numbers.
    pub(crate) fn log_since(&self, after: u64, limit: usize) -> Result<Vec<(u64, BlobId)>> {
        self.read(|txn| {
            let table = txn.open_table(LOG).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for row in table.range((after + 1)..).map_err(|e| self.err(e))?.take(limit) {
                let (k, v) = row.map_err(|e| self.err(e))?;
                out.push((k.value(), BlobId(*v.value())));
            }
            Ok(out)
        })
    }

    /// The log number repair has checked up to.
    pub(crate) fn repair_cursor(&self) -> Result<u64> {
        self.read(|txn| {
            let table = txn.open_table(META).map_err(|e| self.err(e))?;
            Ok(table.get("repair").map_err(|e| self.err(e))?.map_or(0, |v| v.value()))
        })
    }

    /// Up to `limit` placements after `after` in id order.
    pub(crate) fn placed_page(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<(BlobId, Placement)>> {
        self.page_of(PLACED, after, limit, |id, (min_score, ids)| {
            let holders = ids.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
            (id, Placement { min_score, holders })
        })
    }

    /// Up to `limit` ids repair could not confirm, after `after`.
    pub(crate) fn unplaced_page(&self, after: Option<BlobId>, limit: usize) -> Result<Vec<BlobId>> {
        self.page_of(UNPLACED, after, limit, |id, ()| id)
    }

    /// Records what a repair pass found, and (if given) the log number it
    /// has checked up to, in one transaction. Blobs no longer stored are skipped.
    pub(crate) fn record_repair(
        &self,
        placed: &[(BlobId, Placement)],
        unplaced: &[BlobId],
        cursor: Option<u64>,
    ) -> Result<()> {
        self.write(|txn| {
            let blobs = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            let mut placed_table = txn.open_table(PLACED).map_err(|e| self.err(e))?;
            let mut unplaced_table = txn.open_table(UNPLACED).map_err(|e| self.err(e))?;
            for (id, p) in placed {
                if blobs.get(&id.0).map_err(|e| self.err(e))?.is_none() {
                    continue;
                }
                let ids: Vec<u8> = p.holders.concat();
                placed_table.insert(&id.0, (p.min_score, ids.as_slice())).map_err(|e| self.err(e))?;
                unplaced_table.remove(&id.0).map_err(|e| self.err(e))?;
            }
            for id in unplaced {
                if blobs.get(&id.0).map_err(|e| self.err(e))?.is_none() {
                    continue;
                }
                placed_table.remove(&id.0).map_err(|e| self.err(e))?;
                unplaced_table.insert(&id.0, ()).map_err(|e| self.err(e))?;
            }
            if let Some(cursor) = cursor {
                txn.open_table(META).map_err(|e| self.err(e))?.insert("repair", cursor).map_err(|e| self.err(e))?;
            }
            Ok(())
        })
    }

    /// Makes the index agree with the files listed in `batch` (id, length):
    /// adds a row for each file without one (origin unknown), fixes lengths.
    pub(crate) fn reconcile_files(&self, batch: &[(BlobId, u64)]) -> Result<()> {
        self.write(|txn| {
            for (id, len) in batch {
                let row = txn
                    .open_table(BLOBS)
                    .map_err(|e| self.err(e))?
                    .get(&id.0)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value());
                match row {
                    Some((l, ..)) if l == *len => {}
                    Some((_, origin, _, _)) => {
                        remove_row(&self.shared, txn, id)?;
                        insert_row(&self.shared, txn, id, *len, Origin::from_u8(origin), 0)?;
                    }
                    None => {
                        insert_row(&self.shared, txn, id, *len, Origin::Unknown, 0)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Removes the rows for which `exists(id, len)` is false (their file is
    /// gone), and returns the totals (bytes, count) of the rows left.
    pub(crate) fn reconcile_rows(&self, exists: impl Fn(&BlobId, u64) -> bool) -> Result<(u64, u64)> {
        const BATCH: usize = 4096;
        let (mut bytes, mut count, mut after) = (0, 0, None);
        loop {
            let page = self.page(after, BATCH)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            let gone: Vec<BlobId> = page
                .iter()
                .filter(|(id, len)| {
                    let here = exists(id, *len);
                    if here {
                        bytes += len;
                        count += 1;
                    }
                    !here
                })
                .map(|(id, _)| *id)
                .collect();
            if !gone.is_empty() {
                self.write(|txn| gone.iter().try_for_each(|id| remove_row(&self.shared, txn, id).map(drop)))?;
            }
        }
        Ok((bytes, count))
    }

    /// Tests: the next close leaves the index as a crash would.
    pub(crate) fn close_as_if_crashed(&self) {
        self.shared.crashed.store(true, Ordering::Relaxed);
    }

    /// Closes the index: waits for every holder and for the writer to
    /// commit what is queued, then marks it clean with the store's totals
    /// (unless a write failed), durably. Afterwards nothing can hold it.
    pub(crate) fn close(&self, totals: impl FnOnce() -> (u64, u64)) {
        let Some(tx) = self.gate.write().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let (bytes, count) = totals();
        drop(tx); // the writer commits what is queued, then stops
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
        let shared = &self.shared;
        let clean = !shared.stale.load(Ordering::Relaxed)
            && !shared.crashed.load(Ordering::Relaxed)
            && !shared.broken.load(Ordering::Relaxed);
        let result = shared.write_with(Durability::Immediate, |txn| {
            let mut meta = txn.open_table(META).map_err(|e| shared.err(e))?;
            for (name, value) in [("clean", clean as u64), ("bytes", bytes), ("count", count)] {
                meta.insert(name, value).map_err(|e| shared.err(e))?;
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!("closing the blob index: {e}; it will be rebuilt at the next start");
        }
        shared.db.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Shared {
    fn err(&self, e: impl Into<redb::Error>) -> Error {
        self.broken.store(true, Ordering::Relaxed);
        db::db_error(&self.path, "the blob index", e)
    }

    /// The error while there is no database: closed, or being reopened.
    fn gone(&self) -> Error {
        if self.broken.load(Ordering::Relaxed) {
            return Error::io(
                format!("the blob index {}", self.path.display()),
                std::io::Error::other("unavailable since a failed write; reopened when it can be"),
            );
        }
        Error::Closed
    }

    /// Makes the tables (a new index) and clears the clean mark: until
    /// the close marks it again, a crash means reconcile.
    fn mark_in_use(&self, txn: &WriteTransaction) -> Result<()> {
        txn.open_table(BLOBS).map_err(|e| self.err(e))?;
        txn.open_table(LOG).map_err(|e| self.err(e))?;
        txn.open_table(PLACED).map_err(|e| self.err(e))?;
        txn.open_table(UNPLACED).map_err(|e| self.err(e))?;
        txn.open_table(META).map_err(|e| self.err(e))?.insert("clean", 0).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// After a start-time write failed for lack of space: the index as it
    /// was, for reading (redb refuses everything after a failed write
    /// until reopened; opening a file left needing repair writes, so on a
    /// full disk there may be none). Stays broken: [`Index::recover`]
    /// reopens it for writing once the disk has room.
    fn reopen_to_read(&self) {
        self.broken.store(true, Ordering::Relaxed);
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        *db = None;
        *db = db::open(&self.path).ok().and_then(|opened| opened.ok());
    }

    /// `None` most of the time; `Immediate` every [`DURABLE_EVERY`] commits,
    /// so that redb can reuse the pages earlier commits freed.
    fn durability(&self) -> Durability {
        let n = self.commits.fetch_add(1, Ordering::Relaxed);
        if n % DURABLE_EVERY == DURABLE_EVERY - 1 {
            Durability::Immediate
        } else {
            Durability::None
        }
    }

    fn write_with(&self, durability: Durability, f: impl FnOnce(&WriteTransaction) -> Result<()>) -> Result<()> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or_else(|| self.gone())?;
        let mut txn = db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(durability).map_err(|e| self.err(e))?;
        f(&txn)?;
        txn.commit().map_err(|e| self.err(e))
    }

    /// The writer thread: commits queued changes, up to [`BATCH`] per
    /// transaction, until the queue is closed and empty.
    fn write_queued(&self, rx: Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            // Gather for a moment (a put stores blobs one after another), but
            // no longer than a reader is kept waiting.
            let deadline = std::time::Instant::now() + LINGER;
            let mut ops = vec![first];
            while ops.len() < BATCH && !matches!(ops.last(), Some(Op::Flush(_))) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            // Lengths of rows whose file had vanished, to take off the totals
            // once committed.
            let mut vanished = Vec::new();
            let result = self.write_with(self.durability(), |txn| {
                for op in &ops {
                    match op {
                        // A row there already: its file vanished unnoticed,
                        // and the new file was counted again.
                        Op::Insert { id, len, origin, verified } => {
                            vanished.extend(insert_row(self, txn, id, *len, *origin, *verified)?)
                        }
                        Op::Remove(id) => {
                            remove_row(self, txn, id)?;
                        }
                        Op::Forget { id, path } => {
                            if !path.exists() {
                                vanished.extend(remove_row(self, txn, id)?);
                            }
                        }
                        Op::Flush(_) => {}
                    }
                }
                Ok(())
            });
            if result.is_ok() {
                for len in vanished {
                    self.counters.forget(len);
                }
            }
            self.note(result);
            let changes = ops.iter().filter(|op| !matches!(op, Op::Flush(_))).count() as u64;
            self.pending.fetch_sub(changes, Ordering::SeqCst);
            for op in ops {
                if let Op::Flush(ack) = op {
                    let _ = ack.send(());
                }
            }
        }
    }

    /// A failed index write: logged once, and the next start reconciles.
    fn note(&self, result: Result<()>) {
        if let Err(e) = result {
            if !self.stale.swap(true, Ordering::Relaxed) {
                tracing::warn!("{e}; the index will be rebuilt from blobs/ at the next start");
            }
        }
    }
}

/// Passes a start-time failure for lack of space (the node then starts
/// read-only); any other is returned.
fn unwritable<T: Default>(e: Error) -> Result<T> {
    match e {
        Error::StorageFull { .. } => {
            tracing::warn!("{e}: the blob index is read as it is until the disk has room");
            Ok(T::default())
        }
        e => Err(e),
    }
}

/// Adds blob `id`'s row and log entry (a no-op if it has a row: then
/// returns the length that row has).
fn insert_row(
    index: &Shared,
    txn: &WriteTransaction,
    id: &BlobId,
    len: u64,
    origin: Origin,
    verified: u64,
) -> Result<Option<u64>> {
    let mut blobs = txn.open_table(BLOBS).map_err(|e| index.err(e))?;
    if let Some(row) = blobs.get(&id.0).map_err(|e| index.err(e))? {
        return Ok(Some(row.value().0));
    }
    let mut meta = txn.open_table(META).map_err(|e| index.err(e))?;
    // Numbered inside the transaction: the log is in commit order.
    let seq = meta.get("next").map_err(|e| index.err(e))?.map_or(1, |v| v.value());
    meta.insert("next", seq + 1).map_err(|e| index.err(e))?;
    blobs.insert(&id.0, (len, origin.to_u8(), verified, seq)).map_err(|e| index.err(e))?;
    txn.open_table(LOG).map_err(|e| index.err(e))?.insert(seq, &id.0).map_err(|e| index.err(e))?;
    Ok(None)
}

/// Removes blob `id`'s row, log entry and repair records; returns the
/// length the row had, if it was there.
fn remove_row(index: &Shared, txn: &WriteTransaction, id: &BlobId) -> Result<Option<u64>> {
    let removed =
        txn.open_table(BLOBS).map_err(|e| index.err(e))?.remove(&id.0).map_err(|e| index.err(e))?.map(|v| v.value());
    if let Some((_, _, _, seq)) = removed {
        txn.open_table(LOG).map_err(|e| index.err(e))?.remove(seq).map_err(|e| index.err(e))?;
    }
    txn.open_table(PLACED).map_err(|e| index.err(e))?.remove(&id.0).map_err(|e| index.err(e))?;
    txn.open_table(UNPLACED).map_err(|e| index.err(e))?.remove(&id.0).map_err(|e| index.err(e))?;
    Ok(removed.map(|(len, ..)| len))
}
