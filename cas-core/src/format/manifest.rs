//! The manifest blob (FORMAT.md, "Manifest").

use super::{mac, open_in_place, seal_in_place, sha256, valid_chunk_size, BlobId, TAG_LEN};
use crate::error::ManifestError;
use crate::key::Key;

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 24;
const MAGIC: &[u8; 4] = b"CASM";
const VERSION: u8 = 1;
const KIND_FILE: u8 = 0;
/// A manifest is one blob no larger than the largest chunk blob.
pub const MAX_CHUNKS: u64 = 262_143;

/// The public header of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestHeader {
    pub chunk_size: u32,
    pub file_size: u64,
    pub count: u32,
}

impl ManifestHeader {
    /// Plaintext length of chunk `i`.
    pub fn chunk_len(&self, i: u32) -> usize {
        let start = i as u64 * self.chunk_size as u64;
        (self.file_size - start).min(self.chunk_size as u64) as usize
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[4] = VERSION;
        h[5] = KIND_FILE;
        h[8..12].copy_from_slice(&self.chunk_size.to_le_bytes());
        h[12..20].copy_from_slice(&self.file_size.to_le_bytes());
        h[20..24].copy_from_slice(&self.count.to_le_bytes());
        h
    }
}

/// ceil(file_size / chunk_size).
pub(crate) fn chunk_count(file_size: u64, chunk_size: u32) -> u64 {
    file_size.div_ceil(chunk_size as u64)
}

/// A complete manifest: header, chunk ids and chunk keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    pub header: ManifestHeader,
    pub chunk_ids: Vec<BlobId>,
    pub chunk_keys: Vec<[u8; 32]>,
}

impl Manifest {
    /// Builds the manifest of a file from its chunks, in order.
    pub fn new(chunk_size: u32, file_size: u64, chunks: Vec<(BlobId, [u8; 32])>) -> Result<Manifest, ManifestError> {
        if !valid_chunk_size(chunk_size) {
            return Err(ManifestError::BadChunkSize(chunk_size));
        }
        let count = chunk_count(file_size, chunk_size);
        if count > MAX_CHUNKS {
            return Err(ManifestError::TooManyChunks(count));
        }
        if count != chunks.len() as u64 {
            return Err(ManifestError::CountMismatch { count: chunks.len() as u32, file_size, chunk_size });
        }
        let (chunk_ids, chunk_keys) = chunks.into_iter().unzip();
        Ok(Manifest { header: ManifestHeader { chunk_size, file_size, count: count as u32 }, chunk_ids, chunk_keys })
    }

    /// Encodes and seals the manifest: returns the blob and the key.
    pub fn seal(&self, secret: &[u8; 32]) -> (Vec<u8>, Key) {
        let count = self.chunk_ids.len();
        let mut blob = Vec::with_capacity(HEADER_LEN + 64 * count + TAG_LEN);
        blob.extend_from_slice(&self.header.encode());
        for id in &self.chunk_ids {
            blob.extend_from_slice(&id.0);
        }
        let public_len = blob.len();
        let km = mac(secret, b"cas/v1/manifest-key", &sha256(&blob));
        let mut keys = Vec::with_capacity(32 * count + TAG_LEN);
        for k in &self.chunk_keys {
            keys.extend_from_slice(k);
        }
        seal_in_place(&km, &mut keys, &blob[..public_len]);
        blob.extend_from_slice(&keys);
        let key = Key { manifest_id: BlobId::of(&blob), manifest_key: km };
        (blob, key)
    }

    /// Checks the public part of a manifest blob: header and length. Storage
    /// nodes use this to learn the chunk ids without being able to read keys.
    pub fn parse_public(blob: &[u8]) -> Result<(ManifestHeader, Vec<BlobId>), ManifestError> {
        if blob.len() < HEADER_LEN {
            return Err(ManifestError::TooShort(blob.len()));
        }
        if &blob[..4] != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        if blob[4] != VERSION {
            return Err(ManifestError::UnknownVersion(blob[4]));
        }
        if blob[5] != KIND_FILE {
            return Err(ManifestError::UnknownKind(blob[5]));
        }
        let flags = u16::from_le_bytes([blob[6], blob[7]]);
        if flags != 0 {
            return Err(ManifestError::NonZeroFlags(flags));
        }
        let chunk_size = u32::from_le_bytes(blob[8..12].try_into().unwrap());
        let file_size = u64::from_le_bytes(blob[12..20].try_into().unwrap());
        let count = u32::from_le_bytes(blob[20..24].try_into().unwrap());
        if !valid_chunk_size(chunk_size) {
            return Err(ManifestError::BadChunkSize(chunk_size));
        }
        if chunk_count(file_size, chunk_size) != count as u64 {
            return Err(ManifestError::CountMismatch { count, file_size, chunk_size });
        }
        let expected = HEADER_LEN + 64 * count as usize + TAG_LEN;
        if blob.len() != expected {
            return Err(ManifestError::BadLength { found: blob.len(), expected, count });
        }
        let ids_end = HEADER_LEN + 32 * count as usize;
        let ids = blob[HEADER_LEN..ids_end].chunks_exact(32).map(|c| BlobId(c.try_into().unwrap())).collect();
        Ok((ManifestHeader { chunk_size, file_size, count }, ids))
    }

    /// Parses a manifest blob (whose id was already verified) and opens its
    /// chunk keys with the manifest key, which authenticates the header and ids.
    pub fn open(blob: &[u8], manifest_key: &[u8; 32]) -> Result<Manifest, ManifestError> {
        let (header, chunk_ids) = Manifest::parse_public(blob)?;
        let public_len = HEADER_LEN + 32 * header.count as usize;
        let mut keys = blob[public_len..].to_vec();
        if !open_in_place(manifest_key, &mut keys, &blob[..public_len]) {
            return Err(ManifestError::Unauthentic);
        }
        let chunk_keys = keys.chunks_exact(32).map(|c| c.try_into().unwrap()).collect();
        Ok(Manifest { header, chunk_ids, chunk_keys })
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest").field("header", &self.header).field("chunks", &self.chunk_ids.len()).finish()
    }
}
