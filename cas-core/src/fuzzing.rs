//! The properties the fuzz targets check (`fuzz/`, README "Fuzzing"). Each
//! `check_*` takes arbitrary bytes and panics if a property fails; the fuzz
//! targets call them, and `tests/fuzz_regressions.rs` replays the inputs
//! under `fuzz/regressions/` through the same functions. Not an API: public
//! only so that the fuzz crate and that test can reach it.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{KeyParseError, ManifestError};
use crate::format::{chunk_count, open_chunk, seal_in_place, valid_chunk_size, BlobId, Manifest, ManifestHeader};
use crate::format::{HEADER_LEN, MAX_CHUNKS, TAG_LEN};
use crate::key::{Key, KEY_LEN};
use crate::net::frame::{self, FrameCodec, Message, Request, Response, MAX_FRAME_LEN, SEGMENT_LEN};

/// A check: arbitrary bytes in, a panic if a property fails.
pub type Check = fn(&[u8]);

/// Every fuzz target, by the name of its binary in `fuzz/fuzz_targets/`
/// and of its directory under `fuzz/regressions/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("frame", check_frame),
    ("frame_codec", check_frame_codec),
    ("manifest_parse", check_manifest_parse),
    ("manifest_open", check_manifest_open),
    ("key_parse", check_key_parse),
    ("chunk_open", check_chunk_open),
];

/// The check of the target called `name`.
pub fn check(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// A frame body as a connection decodes it. A message that decodes encodes
/// to at most as many bytes, which decode to a message that encodes the same
/// again; and the signatures of any gossip records it carries can be checked
/// without panicking. (Not byte for byte: bincode accepts an integer in a
/// longer form than needed, e.g. 5 as `fb 05 00`. Harmless: no signature or
/// id covers the bytes of a frame.)
pub fn check_frame(data: &[u8]) {
    let Ok(msg) = frame::decode(data) else { return };
    let encoded = frame::encode(&msg);
    assert!(encoded.len() <= data.len(), "{} bytes re-encoded as {}", data.len(), encoded.len());
    let again = frame::decode(&encoded).expect("an encoded message decodes");
    assert_eq!(frame::encode(&again), encoded, "a decoded message encodes back the same");
    let peers = match &msg {
        Message::Request { body: Request::Gossip { peers }, .. } => peers.as_slice(),
        Message::Response { body: Response::Gossip { peers }, .. } => peers.as_slice(),
        _ => &[],
    };
    for p in peers {
        let _ = p.verify();
    }
}

/// The input of [`check_frame_codec`]: the sizes of the pieces the stream
/// arrives in (cycled; 0 = a read that brings nothing), then the stream.
pub fn frame_codec_input(piece_sizes: &[u8], stream: &[u8]) -> Vec<u8> {
    assert!(piece_sizes.len() < 16, "at most 15 piece sizes");
    let mut input = vec![piece_sizes.len() as u8];
    input.extend_from_slice(piece_sizes);
    input.extend_from_slice(stream);
    input
}

/// How a byte stream of frames ends.
#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    /// After a whole frame (or with no byte at all).
    Clean,
    /// In the middle of a header or a body.
    Truncated,
    /// At a header declaring more than [`MAX_FRAME_LEN`].
    Oversized,
}

/// What the framing of PROTOCOL.md says `stream` holds: its whole frames in
/// order, and how it ends.
fn frames_of(mut stream: &[u8]) -> (Vec<&[u8]>, StreamEnd) {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, StreamEnd::Clean);
        }
        let Some((header, rest)) = stream.split_first_chunk::<{ frame::HEADER_LEN }>() else {
            return (frames, StreamEnd::Truncated);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > MAX_FRAME_LEN {
            return (frames, StreamEnd::Oversized);
        }
        if rest.len() < len {
            return (frames, StreamEnd::Truncated);
        }
        frames.push(&rest[..len]);
        stream = &rest[len..];
    }
}

/// [`FrameCodec`] fed a stream (see [`frame_codec_input`]) in pieces, as
/// reads bring it: it yields the frames the stream holds, whatever the
/// pieces; refuses an oversized header when it arrives; tells a clean end
/// from a truncated one; and the memory it holds (its own and what it
/// reserves in the read buffer) follows the bytes received, never a
/// declared length.
pub fn check_frame_codec(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = n as usize % 16;
    if rest.len() < n {
        return;
    }
    let (sizes, stream) = rest.split_at(n);
    let mut sizes: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
    if sizes.iter().all(|&s| s == 0) {
        sizes = vec![stream.len().max(1)]; // the whole stream in one read
    }

    let mut codec = FrameCodec::default();
    let mut src = BytesMut::new();
    let mut got: Vec<Bytes> = Vec::new();
    let (mut fed, mut refused) = (0, None);
    'feed: for &size in sizes.iter().cycle() {
        if fed == stream.len() {
            break;
        }
        let piece = &stream[fed..(fed + size).min(stream.len())];
        src.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match codec.decode(&mut src) {
                Ok(Some(frame)) => got.push(frame),
                Ok(None) => break,
                Err(e) => {
                    refused = Some(e);
                    break 'feed;
                }
            }
        }
        let held = src.capacity();
        assert!(held <= 4 * fed + 4 * SEGMENT_LEN, "{held} bytes held after receiving {fed}");
    }
    let end = match refused {
        Some(e) => {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert!(
                src.capacity() <= 2 * fed + 4 * SEGMENT_LEN,
                "an oversized frame is refused before any of it is held"
            );
            StreamEnd::Oversized
        }
        None => match codec.decode_eof(&mut src) {
            Ok(None) => StreamEnd::Clean,
            Ok(Some(_)) => panic!("a whole frame was left for the end of the stream"),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
                StreamEnd::Truncated
            }
        },
    };
    let (frames, expected_end) = frames_of(stream);
    assert_eq!(end, expected_end);
    assert!(got.iter().map(|f| &f[..]).eq(frames.iter().copied()), "the frames of the stream, in order");

    let mut wire = BytesMut::new();
    for f in got {
        codec.encode(f, &mut wire).expect("a decoded frame is within the limit");
    }
    assert_eq!(&wire[..], &stream[..wire.len()], "frames encode back to the bytes they came from");
}

/// A manifest blob's public part, as a storage node checks it. An accepted
/// blob has exactly the shape FORMAT.md says, its chunks cover the file, and
/// a manifest made of the parsed header and ids seals to the same public
/// bytes.
pub fn check_manifest_parse(blob: &[u8]) {
    let (header, ids) = match Manifest::parse_public(blob) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert!(!matches!(e, ManifestError::Unauthentic | ManifestError::TooManyChunks(_)), "{e}");
            return;
        }
    };
    let ManifestHeader { chunk_size, file_size, count } = header;
    assert!(valid_chunk_size(chunk_size));
    assert_eq!(chunk_count(file_size, chunk_size), count as u64);
    assert_eq!(blob.len(), HEADER_LEN + 64 * count as usize + TAG_LEN);
    assert_eq!(ids.len(), count as usize);
    let public_len = HEADER_LEN + 32 * ids.len();
    assert!(ids.iter().map(|id| &id.0[..]).eq(blob[HEADER_LEN..public_len].chunks(32)));
    let mut covered = 0u64;
    for i in 0..count {
        let len = header.chunk_len(i);
        assert!(len > 0 && len <= chunk_size as usize, "chunk {i} of {count} has {len} bytes");
        covered += len as u64;
    }
    assert_eq!(covered, file_size, "the chunks cover the file exactly");

    let Some(rebuilt) = manifest_with_zero_keys(header, &ids) else { return };
    let (sealed, _) = rebuilt.seal(&[0; 32]);
    assert_eq!(sealed[..public_len], blob[..public_len], "the public part is re-serialized byte for byte");
    assert_eq!(Manifest::parse_public(&sealed), Ok((header, ids)));
}

/// The manifest of a parsed header and ids, with all-zero chunk keys; `None`
/// over [`MAX_CHUNKS`] chunks (such a blob is over the largest blob size: no
/// node stores it).
fn manifest_with_zero_keys(header: ManifestHeader, ids: &[BlobId]) -> Option<Manifest> {
    if header.count as u64 > MAX_CHUNKS {
        return None;
    }
    let chunks = ids.iter().map(|id| (*id, [0; 32])).collect();
    Some(Manifest::new(header.chunk_size, header.file_size, chunks).expect("a parsed header makes a manifest"))
}

/// A key that is no manifest's: opens nothing.
const STRANGER_KEY: [u8; 32] = [0x5a; 32];

/// The input of [`check_manifest_open`]: the convergence secret, then the blob.
pub fn manifest_open_input(secret: &[u8; 32], blob: &[u8]) -> Vec<u8> {
    [&secret[..], blob].concat()
}

/// A manifest blob opened with the key its secret gives it (see
/// [`manifest_open_input`]) and with a fixed stranger's key. Opening fails
/// as parsing does, or as unauthentic; what opens re-seals to the same blob
/// and key; a stranger's key opens nothing.
pub fn check_manifest_open(data: &[u8]) {
    let Some((secret, blob)) = data.split_first_chunk::<32>() else { return };
    let (header, ids) = match Manifest::parse_public(blob) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert_eq!(Manifest::open(blob, &STRANGER_KEY), Err(e.clone()));
            assert_eq!(Manifest::open(blob, secret), Err(e));
            return;
        }
    };
    // The key the secret gives this public part, as a put derives it.
    let Some(skeleton) = manifest_with_zero_keys(header, &ids) else { return };
    let manifest_key = skeleton.seal(secret).1.manifest_key;

    match Manifest::open(blob, &manifest_key) {
        Ok(m) => {
            assert_eq!((m.header, &m.chunk_ids), (header, &ids));
            assert_eq!(m.chunk_keys.len(), ids.len());
            let (sealed, key) = m.seal(secret);
            assert_eq!(sealed, blob, "an opened manifest re-seals to its blob");
            assert_eq!(key, Key { manifest_id: BlobId::of(blob), manifest_key });
        }
        Err(e) => assert_eq!(e, ManifestError::Unauthentic),
    }
    if manifest_key != STRANGER_KEY {
        assert_eq!(Manifest::open(blob, &STRANGER_KEY), Err(ManifestError::Unauthentic));
    }
}

/// A key string: arbitrary bytes as a caller could hand them over (lossily
/// made UTF-8), and the first 64 bytes as a key's raw contents; parsed as
/// FORMAT.md's exact form and as input (`Key::parse_input`). A key that
/// parses displays as the same string (less surrounding whitespace); a rejection says truthfully why
/// (the position and character it names are there); every key displays as
/// a string that parses back to it.
pub fn check_key_parse(data: &[u8]) {
    check_key_str(&String::from_utf8_lossy(data));
    if let Some((raw, _)) = data.split_first_chunk::<64>() {
        let (id, key) = raw.split_at(32);
        let k = Key { manifest_id: BlobId(id.try_into().unwrap()), manifest_key: key.try_into().unwrap() };
        let s = k.to_string();
        assert_eq!(s.len(), KEY_LEN);
        assert_eq!(s.parse::<Key>(), Ok(k));
    }
}

fn check_key_str(s: &str) {
    // FORMAT.md's exact form, then as a person hands it over (whitespace
    // around it ignored, positions still in `s`).
    check_key_str_as(s, s, Key::parse(s));
    check_key_str_as(s, s.trim(), Key::parse_input(s));
}

/// `parsed`, the outcome of parsing `s` as the key string `key_part`.
fn check_key_str_as(s: &str, key_part: &str, parsed: Result<Key, KeyParseError>) {
    let e = match parsed {
        Ok(k) => {
            assert_eq!(k.to_string(), key_part, "a parsed key displays as its string");
            assert_eq!(key_part.parse::<Key>(), Ok(k));
            return;
        }
        Err(e) => e,
    };
    assert!(!e.to_string().is_empty());
    let at = |pos: usize| s.get(pos..).and_then(|rest| rest.chars().next());
    match e {
        KeyParseError::Empty => assert!(key_part.is_empty()),
        KeyParseError::BadPrefix => assert!(!key_part.starts_with("cas1")),
        KeyParseError::BadLength { found, expected } => {
            assert_eq!((found, expected), (key_part.len(), KEY_LEN));
            assert_ne!(found, expected);
        }
        KeyParseError::Whitespace { pos } => assert!(at(pos).is_some_and(char::is_whitespace), "{e}"),
        KeyParseError::UpperCase { ch, pos } | KeyParseError::BadCharacter { ch, pos } => {
            assert_eq!(at(pos), Some(ch), "{e}")
        }
        KeyParseError::NonZeroPadding => assert_eq!(key_part.len(), KEY_LEN),
    }
}

/// The input of [`check_chunk_open`]: the chunk key, then the blob.
pub fn chunk_open_input(key: &[u8; 32], blob: &[u8]) -> Vec<u8> {
    [&key[..], blob].concat()
}

/// A chunk blob opened with a key (see [`chunk_open_input`]): at any length
/// but its own it is refused before decryption, whatever the key; what opens
/// has the expected length and seals back to the same blob.
pub fn check_chunk_open(data: &[u8]) {
    let Some((key, blob)) = data.split_first_chunk::<32>() else { return };
    let wrong_length = open_chunk(key, Vec::new(), 1).expect_err("a blob shorter than its tag");
    let fits = blob.len().checked_sub(TAG_LEN);
    for len in [0, 1, blob.len(), blob.len() + 1, blob.len().wrapping_sub(TAG_LEN + 1), usize::MAX] {
        if Some(len) != fits {
            assert_eq!(open_chunk(key, blob.to_vec(), len), Err(wrong_length), "length {len}");
        }
    }
    let Some(len) = fits else { return };
    match open_chunk(key, blob.to_vec(), len) {
        Ok(plaintext) => {
            assert_eq!(plaintext.len(), len);
            let mut sealed = plaintext;
            seal_in_place(key, &mut sealed, b"");
            assert_eq!(sealed, blob, "an opened chunk seals back to its blob");
        }
        Err(e) => assert_ne!(e, wrong_length),
    }
}
