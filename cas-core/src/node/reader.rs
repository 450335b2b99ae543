//! A seekable reader over a stored file that fetches only the chunks it
//! needs, and reads ahead when it is read sequentially.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{Stream, StreamExt};
use tokio_util::task::AbortOnDropHandle;

use super::Node;
use crate::error::{Error, Result};
use crate::format::Manifest;
use crate::key::Key;

/// A chunk being fetched ahead of the position; dropping it stops the fetch.
type Ahead = (u32, AbortOnDropHandle<Result<Vec<u8>>>);

/// Reads a file by key, one chunk at a time, from any position.
///
/// Read-ahead: once the reads have gone through a whole chunk in order and
/// reach the next one, the reader also starts fetching the chunks after it
/// (1, then 2, 4... up to the node's window less the chunk it holds, so
/// that it never holds more than `Config::max_inflight_bytes` of chunks).
/// A read elsewhere (a seek out of what is being read ahead) drops them.
pub struct FileReader {
    node: Node,
    manifest: Arc<Manifest>,
    pos: u64,
    /// The last chunk fetched: its index and plaintext.
    current: Option<(u32, Vec<u8>)>,
    chunks_fetched: u64,
    /// Where the current run of contiguous reads began, and where it is now.
    run_start: u64,
    run_end: u64,
    /// Chunks fetched ahead, in order of index, at most `depth` of them.
    ahead: VecDeque<Ahead>,
    depth: usize,
    /// The most chunks read ahead: the node's window less the one held.
    max_depth: usize,
    /// When [`Node::open`] began: a stream of the whole file counts as a
    /// get from then (see [`FileReader::into_stream`]).
    opened: Instant,
}

impl Node {
    /// Opens the file of `key` for reading (fetches only its manifest now).
    pub async fn open(&self, key: &Key) -> Result<FileReader> {
        let opened = Instant::now();
        let manifest = Arc::new(self.load_manifest(key).await?);
        let max_depth = self.inner.config.window(manifest.header.chunk_size) - 1;
        Ok(FileReader {
            node: self.clone(),
            manifest,
            pos: 0,
            current: None,
            chunks_fetched: 0,
            run_start: 0,
            run_end: 0,
            ahead: VecDeque::new(),
            depth: 0,
            max_depth,
            opened,
        })
    }
}

impl FileReader {
    /// The file's size.
    pub fn size(&self) -> u64 {
        self.manifest.header.file_size
    }

    /// The current position.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The file's chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.manifest.header.chunk_size
    }

    /// How many chunks this reader has fetched so far (those it started to
    /// read ahead included).
    pub fn chunks_fetched(&self) -> u64 {
        self.chunks_fetched
    }

    /// How many chunks past the one it holds the reader is fetching, or
    /// has fetched, ahead of its reads.
    pub fn chunks_ahead(&self) -> usize {
        self.ahead.len()
    }

    /// Moves the position; past the end is allowed (reads there return 0).
    pub fn seek(&mut self, pos: SeekFrom) -> Result<u64> {
        let new = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| Error::InvalidArgument("seek to a negative or overflowing position".into()))?;
        Ok(self.pos)
    }

    /// Reads up to `buf.len()` bytes at the current position (fewer only at a
    /// chunk boundary or the end); 0 at the end of the file.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let last = self.manifest.header.count.saturating_sub(1);
        self.read_before(buf, last).await
    }

    /// [`FileReader::read`] that reads ahead no further than chunk `last`.
    async fn read_before(&mut self, buf: &mut [u8], last: u32) -> Result<usize> {
        if self.pos >= self.size() || buf.is_empty() {
            return Ok(0);
        }
        let chunk_size = self.manifest.header.chunk_size as u64;
        let index = (self.pos / chunk_size) as u32;
        if self.pos != self.run_end {
            self.run_start = self.pos;
        }
        if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
            self.load(index, last).await?;
        }
        let (_, plain) = self.current.as_ref().expect("chunk just loaded");
        let start = (self.pos - index as u64 * chunk_size) as usize;
        let n = buf.len().min(plain.len() - start);
        buf[..n].copy_from_slice(&plain[start..start + n]);
        self.pos += n as u64;
        self.run_end = self.pos;
        Ok(n)
    }

    /// Makes chunk `index` the current one, from what was read ahead or
    /// fetched now, and reads ahead of it (no further than chunk `last`).
    async fn load(&mut self, index: u32, last: u32) -> Result<()> {
        let chunk_size = self.manifest.header.chunk_size as u64;
        // The reads so far went through the whole previous chunk, in order.
        let sequential = index > 0 && self.run_start <= (index as u64 - 1) * chunk_size;
        while self.ahead.front().is_some_and(|(i, _)| *i < index) {
            self.ahead.pop_front();
        }
        let queued = self.ahead.front().is_some_and(|(i, _)| *i == index);
        if sequential {
            self.depth = (self.depth * 2).max(1).min(self.max_depth);
        } else if !queued {
            // A read elsewhere: what was read ahead is not wanted.
            self.ahead.clear();
            self.depth = 0;
        }
        // The chunk held is let go first: with the read-ahead, the reader
        // holds at most its window of chunks.
        self.current = None;
        let wanted = if queued { self.ahead.pop_front() } else { None };
        self.ahead.truncate(self.depth);
        let end = index.saturating_add(self.depth as u32).min(last);
        let mut next = self.ahead.back().map_or(index + 1, |(i, _)| i + 1);
        while next <= end {
            let (node, manifest) = (self.node.clone(), self.manifest.clone());
            let fetch = tokio::spawn(async move { node.fetch_chunk(&manifest, next).await });
            self.ahead.push_back((next, AbortOnDropHandle::new(fetch)));
            self.chunks_fetched += 1;
            next += 1;
        }
        let plain = match wanted {
            Some((_, fetch)) => match fetch.await {
                Ok(result) => result?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => return Err(Error::Cancelled),
            },
            None => {
                self.chunks_fetched += 1;
                self.node.fetch_chunk(&self.manifest, index).await?
            }
        };
        self.current = Some((index, plain));
        Ok(())
    }

    /// Reads exactly the bytes `[offset, offset + len)`, clipped to the end
    /// of the file. More than `Config::max_get_bytes` fails with
    /// [`Error::InvalidArgument`] before any chunk is fetched.
    pub async fn read_range(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let want = self.size().min(offset.saturating_add(len as u64)).saturating_sub(offset);
        self.node.check_fits_in_memory(want, "the range")?;
        self.pos = offset;
        self.gather(want).await
    }

    /// Reads from the position to the end of the file. More than
    /// `Config::max_get_bytes` fails with [`Error::InvalidArgument`] before
    /// any chunk is fetched, whatever size the file claims: read it in
    /// pieces ([`FileReader::read`], [`FileReader::into_stream`]) instead.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>> {
        let (pos, size) = (self.pos, self.size());
        let what = match pos {
            0 => "the file".to_string(),
            _ => format!("the rest of the file from position {pos} (of {size} bytes)"),
        };
        let rest = size.saturating_sub(pos);
        self.node.check_fits_in_memory(rest, &what)?;
        self.gather(rest).await
    }

    /// Reads `want` bytes from the position, which the caller checked fit
    /// in memory and lie within the file.
    async fn gather(&mut self, want: u64) -> Result<Vec<u8>> {
        // Grown a chunk at a time as bytes are read: the file's size is the
        // manifest's claim.
        let step = self.manifest.header.chunk_size as u64;
        // Read ahead within the range only.
        let last = (self.pos.saturating_add(want).saturating_sub(1) / step) as u32;
        let (mut out, mut filled) = (Vec::new(), 0);
        while (filled as u64) < want {
            if filled == out.len() {
                out.resize(filled + (want - filled as u64).min(step) as usize, 0);
            }
            match self.read_before(&mut out[filled..], last).await? {
                0 => break,
                n => filled += n,
            }
        }
        out.truncate(filled);
        Ok(out)
    }

    /// The bytes `[offset, offset + len)`, clipped to the end of the file,
    /// as a stream of pieces (at most one chunk each, in order). Only the
    /// chunks the range covers are fetched, several at a time within the
    /// node's window (`parallelism`, `max_inflight_bytes`), so memory stays
    /// bounded whatever the length. A chunk this reader already holds is
    /// not fetched again. A stream of the whole file that yields its last
    /// piece counts as a get (`Stats::get_latency`), timed from the open.
    pub fn into_stream(self, offset: u64, len: u64) -> impl Stream<Item = Result<Vec<u8>>> + Send + 'static {
        let size = self.size();
        let start = offset.min(size);
        let end = start.saturating_add(len).min(size);
        let chunk_size = self.manifest.header.chunk_size as u64;
        let chunks = if start < end { start / chunk_size..(end - 1) / chunk_size + 1 } else { 0..0 };
        let window = self.node.inner.config.window(self.manifest.header.chunk_size);
        let (node, manifest, mut held) = (self.node, self.manifest, self.current);
        let whole = start == 0 && end == size;
        let (opened, mut left, timed) = (self.opened, chunks.end - chunks.start, node.clone());
        futures::stream::iter(chunks)
            .map(move |i| {
                let (node, manifest) = (node.clone(), manifest.clone());
                let held = held.take_if(|(index, _)| *index as u64 == i).map(|(_, plain)| plain);
                async move {
                    let plain = match held {
                        Some(plain) => plain,
                        None => node.fetch_chunk(&manifest, i as u32).await?,
                    };
                    let base = i * chunk_size;
                    let from = start.saturating_sub(base) as usize;
                    let to = (end - base).min(plain.len() as u64) as usize;
                    Ok(if from == 0 && to == plain.len() { plain } else { plain[from..to].to_vec() })
                }
            })
            .buffered(window)
            .inspect(move |piece| {
                left -= 1;
                if whole && left == 0 && piece.is_ok() {
                    timed.inner.latency.get.observe(opened.elapsed());
                }
            })
    }
}
