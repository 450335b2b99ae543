//! Error types. One enum per concern (key parsing, manifest parsing, the blob
//! store) and [`Error`], the type every public API returns, which also carries
//! a coarse [`ErrorKind`] for the C and Python bindings.

use std::path::PathBuf;

use crate::format::BlobId;

/// Why a key string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The string is empty.
    #[error("the key is empty")]
    Empty,
    /// The string does not start with `cas1`.
    #[error("the key does not start with \"cas1\" (unknown or missing version prefix)")]
    BadPrefix,
    /// Wrong number of characters.
    #[error("the key has {found} characters, expected {expected}")]
    BadLength { found: usize, expected: usize },
    /// An upper-case letter: keys are lower case only.
    #[error("the key contains the upper-case character {ch:?} at position {pos}; keys are lower case")]
    UpperCase { ch: char, pos: usize },
    /// A whitespace character (often a copy-and-paste accident).
    #[error("the key contains whitespace at position {pos}")]
    Whitespace { pos: usize },
    /// A character outside the base32 alphabet `a-z2-7`.
    #[error("the key contains {ch:?} at position {pos}, which is not in the base32 alphabet a-z2-7")]
    BadCharacter { ch: char, pos: usize },
    /// The unused low bits of the last character are not zero.
    #[error("the key's last character has non-zero padding bits (the key was altered or truncated)")]
    NonZeroPadding,
}

impl KeyParseError {
    /// The same reason with its position `by` bytes further on.
    pub(crate) fn shifted(self, by: usize) -> KeyParseError {
        match self {
            KeyParseError::UpperCase { ch, pos } => KeyParseError::UpperCase { ch, pos: pos + by },
            KeyParseError::Whitespace { pos } => KeyParseError::Whitespace { pos: pos + by },
            KeyParseError::BadCharacter { ch, pos } => KeyParseError::BadCharacter { ch, pos: pos + by },
            other => other,
        }
    }
}

/// Why a manifest blob was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {0} bytes, shorter than its 24-byte header")]
    TooShort(usize),
    #[error("manifest has bad magic bytes (expected \"CASM\")")]
    BadMagic,
    #[error("manifest has unknown format version {0} (this build reads version 1)")]
    UnknownVersion(u8),
    #[error("manifest has unknown kind {0} (expected 0, a file)")]
    UnknownKind(u8),
    #[error("manifest has non-zero flags {0:#06x}")]
    NonZeroFlags(u16),
    #[error("manifest chunk size {0} is not a power of two from 64 KiB to 16 MiB")]
    BadChunkSize(u32),
    #[error("manifest chunk count {count} does not match file size {file_size} at chunk size {chunk_size}")]
    CountMismatch { count: u32, file_size: u64, chunk_size: u32 },
    #[error("manifest is {found} bytes, expected {expected} for {count} chunks")]
    BadLength { found: usize, expected: usize, count: u32 },
    #[error("the file has too many chunks for one manifest ({0}); use a larger chunk size")]
    TooManyChunks(u64),
    #[error("manifest keys do not decrypt with this key (wrong key or tampered manifest)")]
    Unauthentic,
}

/// A coarse classification of [`Error`], stable across versions, for bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    InvalidKey,
    NotFound,
    Integrity,
    Input,
    Destination,
    StorageFull,
    DataDirLocked,
    Network,
    Timeout,
    Replication,
    InvalidArgument,
    Closed,
    Io,
    Cancelled,
}

/// Every error of the public API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key string is malformed.
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyParseError),
    /// No node that could be asked holds the blob (or the key was never stored).
    #[error("not found: {what} (no reachable node holds it; check the key, or that the nodes that stored it are up)")]
    NotFound { what: String },
    /// Bytes failed verification (hash, authentication tag, length, or manifest checks).
    #[error("integrity failure: {what}")]
    Integrity { what: String },
    /// The input file could not be opened or read.
    #[error("cannot read input {}: {source}", path.display())]
    Input { path: PathBuf, source: std::io::Error },
    /// The destination could not be created or written.
    #[error("cannot write destination {}: {source}", path.display())]
    Destination { path: PathBuf, source: std::io::Error },
    /// The node's capacity limit or the disk is full.
    #[error("storage full: {what}")]
    StorageFull { what: String },
    /// Another process holds this data directory.
    #[error("data directory {} is in use by another CAS process (lock file {}); stop it or choose another --data-dir", data_dir.display(), data_dir.join("lock").display())]
    DataDirLocked { data_dir: PathBuf },
    /// A network operation failed.
    #[error("network error: {0}")]
    Network(String),
    /// A network operation took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Fewer replicas than required were stored.
    #[error("only {reached} replica(s) stored for {what}, {required} required (min_replicas); start more nodes or lower min_replicas")]
    Replication { what: String, reached: usize, required: usize },
    /// A configuration value or argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The node or handle was shut down.
    #[error("the node has been shut down")]
    Closed,
    /// The caller cancelled the operation (a progress callback, Ctrl-C, or a
    /// [`crate::Cancel`]); it left nothing behind.
    #[error("cancelled")]
    Cancelled,
    /// Any other I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidKey(_) => ErrorKind::InvalidKey,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Integrity { .. } => ErrorKind::Integrity,
            Error::Input { .. } => ErrorKind::Input,
            Error::Destination { .. } => ErrorKind::Destination,
            Error::StorageFull { .. } => ErrorKind::StorageFull,
            Error::DataDirLocked { .. } => ErrorKind::DataDirLocked,
            Error::Network(_) => ErrorKind::Network,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Replication { .. } => ErrorKind::Replication,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Closed => ErrorKind::Closed,
            Error::Io { .. } => ErrorKind::Io,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        if is_disk_full(&source) {
            return Error::StorageFull { what: format!("{}: {source}", context.into()) };
        }
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn integrity_blob(id: &BlobId, why: &str) -> Error {
        Error::Integrity { what: format!("blob {id}: {why}") }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Self {
        Error::Integrity { what: e.to_string() }
    }
}
