//! Chunk sealing (FORMAT.md, "Chunks").

use super::{mac, open_in_place, seal_in_place, sha256, BlobId, TAG_LEN};

/// A sealed chunk: its blob bytes, its id and the key that opens it.
pub struct SealedChunk {
    /// `C_i`: ciphertext || tag.
    pub blob: Vec<u8>,
    /// `id_i = SHA256(C_i)`.
    pub id: BlobId,
    /// `k_i = MAC("cas/v1/chunk-key", SHA256(P))`.
    pub key: [u8; 32],
}

/// Seals one chunk of plaintext, reusing its buffer for the ciphertext.
pub fn seal_chunk(secret: &[u8; 32], mut plaintext: Vec<u8>) -> SealedChunk {
    let key = mac(secret, b"cas/v1/chunk-key", &sha256(&plaintext));
    seal_in_place(&key, &mut plaintext, b"");
    let id = BlobId::of(&plaintext);
    SealedChunk { blob: plaintext, id, key }
}

/// Opens a chunk blob whose id was already verified, checking the tag and
/// that the plaintext has the length the manifest says. Returns the plaintext.
pub fn open_chunk(key: &[u8; 32], mut blob: Vec<u8>, expected_len: usize) -> Result<Vec<u8>, &'static str> {
    // Subtracts rather than adds: a length near usize::MAX must not wrap around.
    if blob.len().checked_sub(TAG_LEN) != Some(expected_len) {
        return Err("chunk has the wrong length for its place in the file");
    }
    if !open_in_place(key, &mut blob, b"") {
        return Err("chunk does not decrypt with its key (tampered or wrong key)");
    }
    Ok(blob)
}
