//! The get pipeline: fetch the manifest, then fetch, verify and decrypt
//! chunks concurrently within a bounded window.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{Stream, StreamExt};

use super::{blocking, Cancel, Node, NodeId, Progress};
use crate::error::{Error, Result};
use crate::format::{open_chunk, BlobId, Manifest};
use crate::key::Key;
use crate::store::{destination_error, sync_dir};

/// What `stat` reports about a key.
#[derive(Debug, Clone)]
pub struct StatInfo {
    /// Plaintext size in bytes.
    pub size: u64,
    /// Chunk size of the file.
    pub chunk_size: u32,
    /// Number of chunks.
    pub chunks: u64,
    /// The manifest's blob id.
    pub manifest_id: BlobId,
    /// Every blob of the file (manifest first, then the distinct chunks) and
    /// the alive nodes known to hold it.
    pub holders: Vec<(BlobId, Vec<NodeId>)>,
}

impl Node {
    /// Fetches chunk `i` of a manifest and returns its verified plaintext.
    pub(crate) async fn fetch_chunk(&self, manifest: &Manifest, i: u32) -> Result<Vec<u8>> {
        let id = manifest.chunk_ids[i as usize];
        let key = manifest.chunk_keys[i as usize];
        let len = manifest.header.chunk_len(i);
        // Read (or fetched and kept), verified and opened in one blocking task.
        self.fetch_then(id, move |blob| {
            open_chunk(&key, blob.into_bytes(), len).map_err(|why| Error::integrity_blob(&id, why))
        })
        .await
    }

    /// The plaintext of every chunk, in order, fetched and decrypted
    /// concurrently within the configured window.
    fn chunks_in_order(&self, manifest: Arc<Manifest>) -> impl Stream<Item = Result<Vec<u8>>> + '_ {
        let window = self.inner.config.window(manifest.header.chunk_size);
        futures::stream::iter(0..manifest.header.count)
            .map(move |i| {
                let manifest = manifest.clone();
                async move { self.fetch_chunk(&manifest, i).await }
            })
            .buffered(window)
    }

    /// Writes the file of `key` to `dest` (replacing it). The bytes go to a
    /// temporary file beside `dest`, renamed at the end: a failed get leaves
    /// nothing at `dest`.
    pub async fn get_file(&self, key: &Key, dest: impl AsRef<Path>, progress: Option<Progress>) -> Result<u64> {
        self.get_file_cancellable(key, dest, progress, &Cancel::new()).await
    }

    /// [`Node::get_file`] that `cancel` can stop from another task or thread.
    /// A cancelled get fails with [`Error::Cancelled`] and leaves nothing at
    /// `dest`; [`Cancel::cancel`] says whether it came in time, so the
    /// caller always knows which of the two happened.
    pub async fn get_file_cancellable(
        &self,
        key: &Key,
        dest: impl AsRef<Path>,
        progress: Option<Progress>,
        cancel: &Cancel,
    ) -> Result<u64> {
        let started = Instant::now();
        let size = tokio::select! {
            result = self.write_file(key, dest.as_ref(), progress, cancel) => result,
            // Fires only if the cancel came before the commit; dropping the
            // get then unlinks its temporary file.
            _ = cancel.cancelled() => Err(Error::Cancelled),
        }?;
        self.inner.latency.get.observe(started.elapsed());
        Ok(size)
    }

    async fn write_file(&self, key: &Key, dest: &Path, progress: Option<Progress>, cancel: &Cancel) -> Result<u64> {
        let dest = dest.to_path_buf();
        let manifest = Arc::new(self.load_manifest(key).await?);
        let total = manifest.header.file_size;
        let d = dest.clone();
        // The pending name is owned here, not by the writer: if this future is
        // dropped (cancelled) or fails, the file never gets a name.
        let (file, pending) = blocking(move || {
            if d.is_dir() {
                return Err(Error::Destination { path: d, source: std::io::Error::other("is a directory") });
            }
            let parent = match d.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => ".".into(),
            };
            super::output::create(&parent).map_err(|e| Error::Destination { path: d.clone(), source: e })
        })
        .await?;
        // Chunks are fetched and decrypted concurrently but written in order by
        // one thread: parallel writes to one file only contend on its inode lock.
        let (chunks_tx, mut chunks_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        let writer_dest = dest.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = file;
            while let Some(plain) = chunks_rx.blocking_recv() {
                file.write_all(&plain).map_err(|e| destination_error(&writer_dest, e))?;
            }
            Ok::<_, Error>(file)
        });
        let mut chunks = self.chunks_in_order(manifest.clone());
        let mut done = 0u64;
        while let Some(result) = chunks.next().await {
            let plain = result?;
            done += plain.len() as u64;
            if chunks_tx.send(plain).await.is_err() {
                break; // the writer failed: its error is reported below
            }
            if let Some(p) = &progress {
                p(done, total);
            }
            cancel.check()?;
        }
        if total == 0 {
            if let Some(p) = &progress {
                p(0, 0);
            }
            cancel.check()?;
        }
        drop(chunks_tx);
        let file = match writer.await {
            Ok(result) => result?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.pause_before_commit(cancel).await;
        let fsync = self.inner.config.fsync;
        let cancel = cancel.clone();
        blocking(move || {
            if fsync {
                file.sync_all().map_err(|e| destination_error(&dest, e))?;
            }
            // The point of no return: a cancel that comes later is told it
            // came too late. If it came first, dropping `pending` discards the file.
            cancel.commit()?;
            pending.commit(&file, &dest).map_err(|e| destination_error(&dest, e))?;
            if fsync {
                let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                sync_dir(parent).map_err(|e| destination_error(&dest, e))?;
            }
            Ok::<_, Error>(())
        })
        .await?;
        Ok(total)
    }

    /// Test hook (`Faults::pause_before_commit`): holds a get between its
    /// last byte and its commit, announcing it with a file `paused` in the
    /// given directory, until a file `release` appears there or the get is
    /// cancelled. Lets tests cancel in exactly that window.
    async fn pause_before_commit(&self, cancel: &Cancel) {
        let Some(dir) = self.inner.config.faults.pause_before_commit.clone() else { return };
        let _ = std::fs::write(dir.join("paused"), b"");
        while !dir.join("release").exists() && !cancel.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Returns the whole file of `key` in memory. A file larger than
    /// `Config::max_get_bytes` fails with [`Error::InvalidArgument`] before
    /// any chunk is fetched ([`Node::get_file`] and [`Node::open`] stream
    /// files of any size).
    pub async fn get_bytes(&self, key: &Key) -> Result<Vec<u8>> {
        let started = Instant::now();
        let manifest = Arc::new(self.load_manifest(key).await?);
        self.check_fits_in_memory(manifest.header.file_size, "the file")?;
        // Grown as verified chunks arrive: a manifest is untrusted input,
        // and its declared size sizes nothing.
        let mut out = Vec::new();
        let mut chunks = self.chunks_in_order(manifest);
        while let Some(plain) = chunks.next().await {
            out.extend_from_slice(&plain?);
        }
        self.inner.latency.get.observe(started.elapsed());
        Ok(out)
    }

    /// Refuses to gather `size` bytes in memory over `max_get_bytes`: sizes
    /// come from manifests, which say what their author wants.
    pub(crate) fn check_fits_in_memory(&self, size: u64, what: &str) -> Result<()> {
        let limit = self.inner.config.max_get_bytes;
        if size > limit {
            return Err(Error::InvalidArgument(format!(
                "{what} is {size} bytes, over max_get_bytes ({limit}) for reading into memory: \
                 read it in pieces or get it to a file instead, or raise max_get_bytes"
            )));
        }
        Ok(())
    }

    /// Size, chunks and the holders of each blob of `key`.
    pub async fn stat(&self, key: &Key) -> Result<StatInfo> {
        let manifest = self.load_manifest(key).await?;
        let mut ids = vec![key.manifest_id];
        let mut seen = std::collections::HashSet::new();
        ids.extend(manifest.chunk_ids.iter().copied().filter(|id| seen.insert(*id)));
        let holders = self.locate_blobs(ids).await;
        Ok(StatInfo {
            size: manifest.header.file_size,
            chunk_size: manifest.header.chunk_size,
            chunks: manifest.header.count as u64,
            manifest_id: key.manifest_id,
            holders,
        })
    }

    /// Which nodes (this one and alive peers) hold each blob.
    async fn locate_blobs(&self, ids: Vec<BlobId>) -> Vec<(BlobId, Vec<NodeId>)> {
        let mut remote = match self.network() {
            Some(net) => net.locate(&ids).await,
            None => Default::default(),
        };
        let store = self.inner.store.clone();
        let me = self.inner.id;
        let local: Vec<bool> = {
            let ids = ids.clone();
            let n = ids.len();
            blocking(move || store.contains(&ids)).await.unwrap_or_else(|_| vec![false; n])
        };
        ids.into_iter()
            .zip(local)
            .map(|(id, here)| {
                let mut holders = if here { vec![me] } else { vec![] };
                holders.extend(remote.remove(&id).unwrap_or_default());
                (id, holders)
            })
            .collect()
    }
}
