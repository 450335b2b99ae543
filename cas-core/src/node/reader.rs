//! A seekable reader over a stored file that fetches only the chunks it needs.

use std::io::SeekFrom;
use std::sync::Arc;

use futures::stream::{Stream, StreamExt};

use super::Node;
use crate::error::{Error, Result};
use crate::format::Manifest;
use crate::key::Key;

/// Reads a file by key, one chunk at a time, from any position.
pub struct FileReader {
    node: Node,
    manifest: Arc<Manifest>,
    pos: u64,
    /// The last chunk fetched: its index and plaintext.
    current: Option<(u32, Vec<u8>)>,
    chunks_fetched: u64,
}

impl Node {
    /// Opens the file of `key` for reading (fetches only its manifest now).
    pub async fn open(&self, key: &Key) -> Result<FileReader> {
        let manifest = Arc::new(self.load_manifest(key).await?);
        Ok(FileReader { node: self.clone(), manifest, pos: 0, current: None, chunks_fetched: 0 })
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

    /// How many chunks this reader has fetched so far.
    pub fn chunks_fetched(&self) -> u64 {
        self.chunks_fetched
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
        if self.pos >= self.size() || buf.is_empty() {
            return Ok(0);
        }
        let chunk_size = self.manifest.header.chunk_size as u64;
        let index = (self.pos / chunk_size) as u32;
        if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
            let plain = self.node.fetch_chunk(&self.manifest, index).await?;
            self.chunks_fetched += 1;
            self.current = Some((index, plain));
        }
        let (_, plain) = self.current.as_ref().expect("chunk just loaded");
        let start = (self.pos - index as u64 * chunk_size) as usize;
        let n = buf.len().min(plain.len() - start);
        buf[..n].copy_from_slice(&plain[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads exactly the bytes `[offset, offset + len)`, clipped to the end
    /// of the file. More than `Config::max_get_bytes` fails with
    /// [`Error::InvalidArgument`].
    pub async fn read_range(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.pos = offset;
        let end = offset.saturating_add(len as u64).min(self.size());
        let want = end.saturating_sub(offset);
        self.node.check_fits_in_memory(want, "the range")?;
        // Grown a chunk at a time as bytes are read: the file's size is the
        // manifest's claim.
        let step = self.manifest.header.chunk_size as u64;
        let (mut out, mut filled) = (Vec::new(), 0);
        while (filled as u64) < want {
            if filled == out.len() {
                out.resize(filled + (want - filled as u64).min(step) as usize, 0);
            }
            match self.read(&mut out[filled..]).await? {
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
    /// not fetched again.
    pub fn into_stream(self, offset: u64, len: u64) -> impl Stream<Item = Result<Vec<u8>>> + Send + 'static {
        let size = self.size();
        let start = offset.min(size);
        let end = start.saturating_add(len).min(size);
        let chunk_size = self.manifest.header.chunk_size as u64;
        let chunks = if start < end { start / chunk_size..(end - 1) / chunk_size + 1 } else { 0..0 };
        let window = self.node.inner.config.window(self.manifest.header.chunk_size);
        let (node, manifest, mut held) = (self.node, self.manifest, self.current);
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
    }
}
