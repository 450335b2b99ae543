//! The content format of FORMAT.md: how plaintext becomes sealed chunk blobs,
//! a manifest blob and a key. Pure functions, no I/O.

mod chunk;
mod manifest;

use std::fmt;

use hmac::{KeyInit, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::{Digest, Sha256};

pub use chunk::{open_chunk, seal_chunk, SealedChunk};
pub(crate) use manifest::chunk_count;
pub use manifest::{Manifest, ManifestHeader, HEADER_LEN, MAX_CHUNKS};

/// Smallest allowed chunk size (64 KiB).
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest allowed chunk size (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Default chunk size (1 MiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// No blob is larger than this: the largest chunk and its tag.
pub const MAX_BLOB_LEN: usize = MAX_CHUNK_SIZE as usize + TAG_LEN;

/// The id of a blob: the SHA-256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(sha256(bytes))
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<BlobId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(BlobId(out))
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.to_hex()[..16])
    }
}

/// Whether `chunk_size` is a power of two within the allowed range.
pub fn valid_chunk_size(chunk_size: u32) -> bool {
    chunk_size.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `MAC(label, x)`: HMAC-SHA-256 keyed with the convergence secret over label || x.
pub(crate) fn mac(secret: &[u8; 32], label: &[u8], x: &[u8]) -> [u8; 32] {
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.update(x);
    m.finalize().into_bytes().into()
}

/// AES-256-GCM by `ring`: its stitched AES-and-GHASH code runs about three
/// times as fast here as the `aes-gcm` crate (ARCHITECTURE.md); the bytes
/// are the same (the vectors check them).
fn cipher(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

/// The zero nonce of `SEAL`: every key seals one plaintext only (chunk keys
/// are derived from the chunk, manifest keys from the manifest).
fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; 12])
}

/// `SEAL(k, p, aad)`: AES-256-GCM with a zero nonce, ciphertext || tag, in place.
pub(crate) fn seal_in_place(key: &[u8; 32], buf: &mut Vec<u8>, aad: &[u8]) {
    let tag = cipher(key)
        .seal_in_place_separate_tag(zero_nonce(), Aad::from(aad), buf)
        .expect("a blob is far under AES-GCM's length limit");
    buf.reserve_exact(TAG_LEN);
    buf.extend_from_slice(tag.as_ref());
}

/// Opens a sealed buffer in place, leaving the plaintext; `false` if
/// authentication fails (the buffer's contents are then of no use).
pub(crate) fn open_in_place(key: &[u8; 32], buf: &mut Vec<u8>, aad: &[u8]) -> bool {
    match cipher(key).open_in_place(zero_nonce(), Aad::from(aad), buf) {
        Ok(plain) => {
            let len = plain.len();
            buf.truncate(len);
            true
        }
        Err(_) => false,
    }
}
