//! The put pipeline: read chunks, seal them in parallel on the blocking
//! pool, store them, then seal and store the manifest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{blocking, compute, Cancel, Node, Progress};
use crate::error::{Error, Result};
use crate::format::{chunk_count, seal_chunk, BlobId, Manifest, MAX_CHUNKS, TAG_LEN};
use crate::key::Key;
use crate::store::VerifiedBlob;

/// What a put did.
#[derive(Debug, Clone)]
pub struct PutReport {
    /// The file's key.
    pub key: Key,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// Blobs (chunks and manifest) newly written to the local store; 0 when
    /// the same content was stored before.
    pub new_blobs: u64,
    /// The fewest copies on other nodes reached by any blob of the file.
    pub replicas: usize,
}

/// Where the plaintext of one chunk comes from.
enum ChunkInput {
    /// Already read (from a stream or a buffer).
    Bytes(Vec<u8>),
    /// To be read by the worker with a positional read, so reads run in parallel too.
    File { file: Arc<std::fs::File>, path: Arc<PathBuf>, offset: u64, len: usize },
}

impl ChunkInput {
    fn into_plaintext(self) -> Result<Vec<u8>> {
        match self {
            ChunkInput::Bytes(b) => Ok(b),
            ChunkInput::File { file, path, offset, len } => {
                let mut buf = Vec::with_capacity(len + TAG_LEN);
                read_exact_at_uninit(&file, &mut buf, len, offset).map_err(|e| {
                    let source = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        std::io::Error::other("the file shrank while it was being stored")
                    } else {
                        e
                    };
                    Error::Input { path: path.to_path_buf(), source }
                })?;
                Ok(buf)
            }
        }
    }
}

/// Source of chunk inputs, in order.
enum PutSource<'a> {
    File { file: Arc<std::fs::File>, path: Arc<PathBuf>, size: u64, next: u64 },
    Reader(&'a mut (dyn AsyncRead + Unpin + Send)),
}

impl PutSource<'_> {
    async fn next(&mut self, chunk_size: usize) -> Result<Option<ChunkInput>> {
        match self {
            PutSource::File { file, path, size, next } => {
                if *next >= *size {
                    return Ok(None);
                }
                let len = (*size - *next).min(chunk_size as u64) as usize;
                let input = ChunkInput::File { file: file.clone(), path: path.clone(), offset: *next, len };
                *next += len as u64;
                Ok(Some(input))
            }
            PutSource::Reader(reader) => {
                let mut buf = Vec::with_capacity(chunk_size + TAG_LEN);
                while buf.len() < chunk_size {
                    let want = (chunk_size - buf.len()) as u64;
                    let n = (&mut **reader)
                        .take(want)
                        .read_to_end(&mut buf)
                        .await
                        .map_err(|e| Error::Input { path: PathBuf::from("<stream>"), source: e })?;
                    if n == 0 {
                        break;
                    }
                }
                Ok((!buf.is_empty()).then_some(ChunkInput::Bytes(buf)))
            }
        }
    }
}

impl Node {
    /// Stores the file at `path`.
    pub async fn put_file(&self, path: impl AsRef<Path>, progress: Option<Progress>) -> Result<PutReport> {
        self.put_file_cancellable(path, progress, &Cancel::new()).await
    }

    /// [`Node::put_file`] that `cancel` can stop from another task or
    /// thread (or from its progress callback). A cancelled put fails with
    /// [`Error::Cancelled`] once no worker writes on its behalf any more: it
    /// leaves no temporary file and no key. Chunks it stored before stay in
    /// the store as whole blobs (content-addressed: a later put of the same
    /// bytes reuses them). Its point of no return is the storing of the
    /// manifest, after the last progress call.
    pub async fn put_file_cancellable(
        &self,
        path: impl AsRef<Path>,
        progress: Option<Progress>,
        cancel: &Cancel,
    ) -> Result<PutReport> {
        let started = Instant::now();
        self.check_open()?;
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let (file, size) = blocking(move || {
            let file = std::fs::File::open(&p)?;
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Err(std::io::Error::other("is a directory"));
            }
            Ok((file, meta.len()))
        })
        .await
        .map_err(|source| Error::Input { path: path.clone(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let source = PutSource::File { file: Arc::new(file), path: Arc::new(path), size, next: 0 };
        let report = self.put_source(source, size, progress, cancel).await?;
        self.record_put(&report, name, started).await;
        Ok(report)
    }

    /// Stores a buffer.
    pub async fn put_bytes(&self, data: &[u8]) -> Result<PutReport> {
        self.put_bytes_named(data, "").await
    }

    /// Stores a buffer, listed under `name` by [`Node::files`].
    pub async fn put_bytes_named(&self, data: &[u8], name: &str) -> Result<PutReport> {
        let mut reader = data;
        self.put_reader_named(&mut reader, data.len() as u64, None, name, &Cancel::new()).await
    }

    /// [`Node::put_reader_cancellable`], listed under `name` by [`Node::files`].
    pub async fn put_reader_named(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        size_hint: u64,
        progress: Option<Progress>,
        name: &str,
        cancel: &Cancel,
    ) -> Result<PutReport> {
        let started = Instant::now();
        self.check_open()?;
        let report = self.put_source(PutSource::Reader(reader), size_hint, progress, cancel).await?;
        self.record_put(&report, name.to_string(), started).await;
        Ok(report)
    }

    /// Adds a finished put to the catalog, and its time since `started` to
    /// the put latencies. The file is stored whatever happens here: a
    /// catalog that cannot be written is a warning.
    async fn record_put(&self, report: &PutReport, name: String, started: Instant) {
        let (key, size) = (report.key, report.size);
        let recorded = match self.catalog() {
            Ok(catalog) => blocking(move || catalog.record(&key, &name, size)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            tracing::warn!(key = %report.key, "the file is stored, but not listed in the catalog: {e}");
        }
        self.inner.latency.put.observe(started.elapsed());
    }

    /// Stores everything `reader` yields. `size_hint` is only reported to
    /// `progress` as the total (0 if unknown) until the last call, which
    /// gives the size stored as both.
    pub async fn put_reader(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        size_hint: u64,
        progress: Option<Progress>,
    ) -> Result<PutReport> {
        self.put_reader_cancellable(reader, size_hint, progress, &Cancel::new()).await
    }

    /// [`Node::put_reader`] that `cancel` can stop, as
    /// [`Node::put_file_cancellable`].
    pub async fn put_reader_cancellable(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        size_hint: u64,
        progress: Option<Progress>,
        cancel: &Cancel,
    ) -> Result<PutReport> {
        self.put_reader_named(reader, size_hint, progress, "", cancel).await
    }

    async fn put_source(
        &self,
        mut source: PutSource<'_>,
        total: u64,
        progress: Option<Progress>,
        cancel: &Cancel,
    ) -> Result<PutReport> {
        let chunk_size = self.inner.config.chunk_size;
        let window = self.inner.config.put_window(chunk_size);
        let secret = self.inner.dir.secret;
        let fsync = self.inner.config.fsync;
        // Chunks finish in any order (a slow one does not hold back the
        // window behind it); each lands in its place.
        let mut chunks: Vec<Option<(BlobId, [u8; 32])>> = Vec::new();
        let mut inflight = FuturesUnordered::new();
        let (mut done, mut new_blobs, mut min_replicas) = (0u64, 0u64, usize::MAX);
        let mut exhausted = false;
        loop {
            while !exhausted && inflight.len() < window {
                let next = tokio::select! {
                    next = source.next(chunk_size as usize) => next,
                    _ = cancel.cancelled() => Err(Error::Cancelled),
                };
                match next {
                    Err(e) => return Err(settle(inflight, e).await),
                    Ok(None) => exhausted = true,
                    Ok(Some(input)) => {
                        if chunks.len() as u64 >= MAX_CHUNKS {
                            let e = Error::InvalidArgument(format!(
                                "the input has more than {MAX_CHUNKS} chunks of {chunk_size} bytes; use a larger chunk size"
                            ));
                            return Err(settle(inflight, e).await);
                        }
                        let node = self.clone();
                        let index = chunks.len();
                        chunks.push(None);
                        inflight.push(async move {
                            let store = node.store_for_put()?;
                            let (blob, new, key, len) = if fsync {
                                // Read and sealed on a core; stored where
                                // many chunks can wait on the disk at once.
                                let (blob, key, len) = compute(move || seal_input(&secret, input)).await?;
                                let (blob, new) = blocking(move || store.put(&blob).map(|new| (blob, new))).await?;
                                (blob, new, key, len)
                            } else {
                                // Read, sealed and stored (into the page
                                // cache: CPU-bound too) in one job.
                                compute(move || {
                                    let (blob, key, len) = seal_input(&secret, input)?;
                                    let new = store.put(&blob)?;
                                    Ok::<_, Error>((blob, new, key, len))
                                })
                                .await?
                            };
                            let stored = node.replicate_stored(blob, new).await?;
                            Ok::<_, Error>((index, stored, key, len))
                        });
                    }
                }
            }
            let next = tokio::select! {
                next = inflight.next() => next,
                _ = cancel.cancelled() => Some(Err(Error::Cancelled)),
            };
            let Some(result) = next else { break };
            let (index, stored, key, len) = match result {
                Ok(v) => v,
                Err(e) => return Err(settle(inflight, e).await),
            };
            chunks[index] = Some((stored.id, key));
            new_blobs += stored.new as u64;
            min_replicas = min_replicas.min(stored.replicas);
            done += len;
            if let Some(p) = &progress {
                // An unknown total (0) stays unknown; a hint that was too
                // small grows with what was read.
                p(done, if total == 0 { 0 } else { total.max(done) });
            }
            if let Err(e) = cancel.check() {
                return Err(settle(inflight, e).await);
            }
        }
        let chunks: Vec<_> = chunks.into_iter().map(|c| c.expect("every chunk finished")).collect();
        let count = chunks.len() as u64;
        debug_assert_eq!(count, chunk_count(done, chunk_size));
        let (blob, key) = blocking(move || {
            let manifest = Manifest::new(chunk_size, done, chunks)?;
            let (blob, key) = manifest.seal(&secret);
            Ok::<_, Error>((VerifiedBlob::computed(key.manifest_id, blob), key))
        })
        .await?;
        if let Some(p) = &progress {
            p(done, done);
        }
        // The point of no return: a cancel that comes later is told it came
        // too late, and the file is stored.
        cancel.commit()?;
        let store = self.store_for_put()?;
        let (new, blob) = blocking(move || store.put(&blob).map(|new| (new, blob))).await?;
        let stored = self.replicate_stored(blob, new).await?;
        new_blobs += stored.new as u64;
        min_replicas = min_replicas.min(stored.replicas);
        Ok(PutReport { key, size: done, chunks: count, new_blobs, replicas: min_replicas })
    }

    /// The store a put writes its blobs to. A streaming put that outlives
    /// shutdown() stops at its next blob.
    fn store_for_put(&self) -> Result<crate::store::BlobStore> {
        self.check_open()?;
        Ok(self.inner.store.clone())
    }

    /// Copies a blob just stored locally (`new` if it was not there before)
    /// to other nodes, when there are peers, and checks `min_replicas`.
    async fn replicate_stored(&self, blob: VerifiedBlob, new: bool) -> Result<StoredBlob> {
        let id = blob.id();
        let replicas = match self.network() {
            Some(net) => net.replicate(id, blob.into_bytes().into(), self.inner.config.replicas, !new).await,
            None => 0,
        };
        if replicas < self.inner.config.min_replicas {
            return Err(Error::Replication {
                what: format!("blob {id}"),
                reached: replicas,
                required: self.inner.config.min_replicas,
            });
        }
        Ok(StoredBlob { id, new, replicas })
    }
}

/// Reads and seals one chunk: its blob, its key and its plaintext length.
fn seal_input(secret: &[u8; 32], input: ChunkInput) -> Result<(VerifiedBlob, [u8; 32], u64)> {
    let plaintext = input.into_plaintext()?;
    let len = plaintext.len() as u64;
    let sealed = seal_chunk(secret, plaintext);
    Ok((VerifiedBlob::computed(sealed.id, sealed.blob), sealed.key, len))
}

/// Waits for the chunk tasks still in flight, then returns `err`: a failed
/// put returns only when no worker still writes on its behalf (no temporary
/// file or half-counted blob appears after the error).
async fn settle<S: Stream + Unpin>(mut inflight: S, err: Error) -> Error {
    while inflight.next().await.is_some() {}
    err
}

/// The outcome of storing one blob.
struct StoredBlob {
    id: BlobId,
    new: bool,
    replicas: usize,
}

/// `read_exact_at` into the spare capacity of `buf` (which must be empty):
/// `len` bytes from `offset`, without first zeroing them (a memset of every
/// chunk, a tenth of a put's user time).
fn read_exact_at_uninit(file: &std::fs::File, buf: &mut Vec<u8>, len: usize, offset: u64) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    debug_assert!(buf.is_empty());
    buf.reserve(len);
    while buf.len() < len {
        let filled = buf.len();
        let spare = &mut buf.spare_capacity_mut()[..len - filled];
        let at = offset + filled as u64;
        let at = libc::off_t::try_from(at).map_err(std::io::Error::other)?;
        // SAFETY: pread writes at most `spare.len()` bytes into `spare`, memory
        // this Vec owns; the length grows only by what it reports written.
        let n = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match n {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // SAFETY: the first `n` bytes of the spare capacity were just written.
            n => unsafe { buf.set_len(filled + n as usize) },
        }
    }
    Ok(())
}
