//! Test hooks for tests outside cas-core (the gateway's, and the Python
//! package's, which cannot seal blobs itself), and the rogue member of the
//! Sybil tests ([`rogue`]); not an API.

pub mod rogue;

use crate::error::{Error, Result};
use crate::format::{seal_chunk, BlobId, Manifest, MAX_CHUNKS, MAX_CHUNK_SIZE};
use crate::key::Key;
use crate::node::Node;
use crate::store::VerifiedBlob;

/// Stores a file of `size` zero bytes on `node` without reading or writing
/// `size` bytes: chunks of the largest size, all the same blob (as
/// deduplication stores a file of zeros), so a few real chunks back a
/// manifest that claims up to 4 TiB. Returns its key. Lets tests check what
/// a reader does with a size that nothing it holds could fit.
pub fn put_zeros(node: &Node, size: u64) -> Result<Key> {
    let chunk_size = MAX_CHUNK_SIZE as u64;
    let secret = [0x5a; 32];
    let seal = |len: u64| -> Result<(BlobId, [u8; 32])> {
        let chunk = seal_chunk(&secret, vec![0; len as usize]);
        node.store().put(&VerifiedBlob::new(chunk.blob))?;
        Ok((chunk.id, chunk.key))
    };
    let (full, tail) = (size / chunk_size, size % chunk_size);
    if size.div_ceil(chunk_size) > MAX_CHUNKS {
        return Err(Error::InvalidArgument(format!("{size} bytes is more than a file can hold")));
    }
    let mut chunks = Vec::new();
    if full > 0 {
        chunks.resize(full as usize, seal(chunk_size)?);
    }
    if tail > 0 {
        chunks.push(seal(tail)?);
    }
    let (blob, key) = Manifest::new(MAX_CHUNK_SIZE, size, chunks)?.seal(&secret);
    node.store().put(&VerifiedBlob::new(blob))?;
    Ok(key)
}
