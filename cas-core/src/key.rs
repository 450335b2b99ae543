//! The `cas1…` key string: a capability holding the manifest id and the
//! manifest key (FORMAT.md, "Key").

use std::fmt;
use std::str::FromStr;

use data_encoding::{Encoding, Specification};
use once_cell::sync::Lazy;

use crate::error::KeyParseError;
use crate::format::BlobId;

const PREFIX: &str = "cas1";
/// 64 bytes in unpadded base32: ceil(512 / 5) characters.
const BODY_LEN: usize = 103;
/// Length of a key string, prefix included.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN;
/// How many characters of a key string, prefix included, spell the
/// manifest id (its 256 bits end in the 52nd base32 character, which also
/// holds the first 4 bits of the manifest key).
pub const ID_CHARS: usize = PREFIX.len() + 52;

/// RFC 4648 base32, lower case, no padding, strict about trailing bits.
static BASE32_LOWER: Lazy<Encoding> = Lazy::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.check_trailing_bits = true;
    spec.encoding().expect("valid base32 specification")
});

/// A file's key: whoever holds it can fetch and decrypt the file.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// `idm`: the id (SHA-256) of the manifest blob.
    pub manifest_id: BlobId,
    /// `km`: the key that opens the manifest's sealed chunk keys.
    pub manifest_key: [u8; 32],
}

impl Key {
    /// A key as a person hands it over (typed, pasted with a space or a
    /// newline, read from a file): whitespace around it is ignored, and the
    /// rest must be what [`Key::parse`] accepts. What the C, Python, HTTP and
    /// command-line interfaces take; positions in errors count from the
    /// start of `s`.
    pub fn parse_input(s: &str) -> Result<Key, KeyParseError> {
        let lead = s.len() - s.trim_start().len();
        Key::parse(s.trim()).map_err(|e| e.shifted(lead))
    }

    /// Parses a key string in exactly FORMAT.md's form (no whitespace
    /// anywhere), saying precisely why a bad one is rejected.
    pub fn parse(s: &str) -> Result<Key, KeyParseError> {
        if s.is_empty() {
            return Err(KeyParseError::Empty);
        }
        if let Some(pos) = s.find(|c: char| c.is_whitespace()) {
            return Err(KeyParseError::Whitespace { pos });
        }
        if !s.starts_with(PREFIX) {
            return Err(KeyParseError::BadPrefix);
        }
        let body = &s[PREFIX.len()..];
        for (i, ch) in body.char_indices() {
            let pos = PREFIX.len() + i;
            if ch.is_ascii_uppercase() {
                return Err(KeyParseError::UpperCase { ch, pos });
            }
            if !matches!(ch, 'a'..='z' | '2'..='7') {
                return Err(KeyParseError::BadCharacter { ch, pos });
            }
        }
        if body.len() != BODY_LEN {
            return Err(KeyParseError::BadLength { found: s.len(), expected: KEY_LEN });
        }
        let bytes = BASE32_LOWER.decode(body.as_bytes()).map_err(|_| KeyParseError::NonZeroPadding)?;
        let mut manifest_id = [0u8; 32];
        let mut manifest_key = [0u8; 32];
        manifest_id.copy_from_slice(&bytes[..32]);
        manifest_key.copy_from_slice(&bytes[32..]);
        Ok(Key { manifest_id: BlobId(manifest_id), manifest_key })
    }
}

impl Key {
    /// The start of the key string that spells the manifest id, followed by
    /// "…": where a typo makes a key "not found", shown in full, while the
    /// rest, the secret that opens the file, stays out of messages (which
    /// end up in logs and bug reports).
    pub fn id_part(&self) -> String {
        format!("{}…", &self.to_string()[..ID_CHARS])
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 64];
        raw[..32].copy_from_slice(&self.manifest_id.0);
        raw[32..].copy_from_slice(&self.manifest_key);
        write!(f, "{PREFIX}{}", BASE32_LOWER.encode(&raw))
    }
}

/// Keys are capabilities: Debug shows only the public manifest id.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(manifest {})", self.manifest_id)
    }
}

impl FromStr for Key {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Key, KeyParseError> {
        Key::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = Key { manifest_id: BlobId([7; 32]), manifest_key: [9; 32] };
        let s = k.to_string();
        assert_eq!(s.len(), KEY_LEN);
        assert_eq!(Key::parse(&s).unwrap(), k);
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let k = Key { manifest_id: BlobId([3; 32]), manifest_key: [4; 32] };
        for pasted in [format!("{k}\n"), format!("{k} "), format!(" \t{k}\r\n"), format!("\u{a0}{k}")] {
            assert_eq!(Key::parse_input(&pasted), Ok(k), "{pasted:?}");
            // FORMAT.md's exact form has none.
            assert!(matches!(Key::parse(&pasted), Err(KeyParseError::Whitespace { .. })));
        }
        let good = k.to_string();
        assert_eq!(Key::parse_input(" \t"), Err(KeyParseError::Empty));
        let (head, tail) = good.split_at(20);
        assert_eq!(Key::parse_input(&format!(" {head} {tail}")), Err(KeyParseError::Whitespace { pos: 21 }));
        let typo = format!("{}!{}", &good[..30], &good[31..]);
        assert_eq!(Key::parse_input(&format!("\n {typo}")), Err(KeyParseError::BadCharacter { ch: '!', pos: 32 }));
    }

    #[test]
    fn the_id_part_spells_the_whole_manifest_id_and_little_of_the_key() {
        let k = Key { manifest_id: BlobId([0xff; 32]), manifest_key: [0; 32] };
        let shown = k.id_part();
        assert_eq!(shown, format!("{}…", &k.to_string()[..ID_CHARS]));
        // Every bit of the id is in the part shown: a key differing only there
        // shows differently; one differing only past it, the same.
        let mut other_id = k;
        other_id.manifest_id.0[31] ^= 1;
        assert_ne!(other_id.id_part(), shown);
        let mut other_key = k;
        other_key.manifest_key[0] ^= 0x08; // its 5th bit: past the shown character
        assert_eq!(other_key.id_part(), shown);
    }

    #[test]
    fn reasons() {
        let good = Key { manifest_id: BlobId([1; 32]), manifest_key: [2; 32] }.to_string();
        assert_eq!(Key::parse(""), Err(KeyParseError::Empty));
        assert_eq!(Key::parse(&good.replace("cas1", "cas2")), Err(KeyParseError::BadPrefix));
        assert!(matches!(Key::parse(&good[..good.len() - 1]), Err(KeyParseError::BadLength { .. })));
        assert!(matches!(Key::parse(&format!("{good}\n")), Err(KeyParseError::Whitespace { .. })));
        assert!(matches!(
            Key::parse(&good.to_uppercase().replacen("CAS1", "cas1", 1)),
            Err(KeyParseError::UpperCase { .. })
        ));
    }
}
