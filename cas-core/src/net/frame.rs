//! Wire messages and their framing: a 4-byte big-endian length, then a
//! bincode-encoded [`Message`]. Frames over [`MAX_FRAME_LEN`] are refused
//! before they are read, and memory for a frame follows the bytes that
//! arrive, never the length a peer declares.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use crate::format::{BlobId, MAX_BLOB_LEN};
use crate::identity::{verify, Identity, NodeId};

/// The largest frame: the largest blob plus room for its envelope.
pub const MAX_FRAME_LEN: usize = MAX_BLOB_LEN + 4096;
/// Most blob ids in one `HasBlobs` request.
pub const MAX_HAS_BATCH: usize = 4096;

/// A peer as gossip describes it, signed by the peer itself: nobody else
/// can make a record about a node count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerRecord {
    /// The node's id: the hash of `public_key` (checked by [`PeerRecord::verify`]).
    pub id: NodeId,
    /// The node's ed25519 identity key.
    pub public_key: [u8; 32],
    pub addr: SocketAddr,
    /// When the peer last started (ms since the epoch, and always above the
    /// last one): a restart outranks old heartbeats.
    pub incarnation: u64,
    /// Advances every gossip round while the peer lives.
    pub heartbeat: u64,
    /// The node's signature of the fields above (see [`PeerRecord::signed_bytes`]).
    pub signature: [[u8; 32]; 2],
}

/// Length of [`addr_bytes`].
pub(crate) const ADDR_LEN: usize = 19;

/// An address in the fixed layout the handshake and the record signatures
/// use: family (4 or 6), 16 address bytes (IPv4 in the first 4), port (big-endian).
pub(crate) fn addr_bytes(addr: SocketAddr) -> [u8; ADDR_LEN] {
    let mut b = [0u8; ADDR_LEN];
    match addr.ip() {
        IpAddr::V4(v4) => {
            b[0] = 4;
            b[1..5].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            b[0] = 6;
            b[1..17].copy_from_slice(&v6.octets());
        }
    }
    b[17..].copy_from_slice(&addr.port().to_be_bytes());
    b
}

/// The address of [`addr_bytes`], if the family byte is valid.
pub(crate) fn addr_from_bytes(b: &[u8; ADDR_LEN]) -> Option<SocketAddr> {
    let ip: IpAddr = match b[0] {
        4 => <[u8; 4]>::try_from(&b[1..5]).ok()?.into(),
        6 => <[u8; 16]>::try_from(&b[1..17]).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_be_bytes([b[17], b[18]])))
}

/// Context of the signature of a gossip record.
const RECORD_CONTEXT: &[u8] = b"cas-peer-record-v1\0";

impl PeerRecord {
    /// A record of the node of `identity`, signed by it.
    pub fn sign(identity: &Identity, addr: SocketAddr, incarnation: u64, heartbeat: u64) -> PeerRecord {
        let mut r = PeerRecord {
            id: identity.id(),
            public_key: identity.public_key(),
            addr,
            incarnation,
            heartbeat,
            signature: [[0; 32]; 2],
        };
        let sig = identity.sign(&r.signed_bytes());
        r.signature = [sig[..32].try_into().expect("32 bytes"), sig[32..].try_into().expect("32 bytes")];
        r
    }

    /// What the signature covers: the context string, the id, the address
    /// (family byte 4 or 6, 16 address bytes, port big-endian), incarnation
    /// and heartbeat (big-endian).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut m = RECORD_CONTEXT.to_vec();
        m.extend_from_slice(&self.id.0);
        m.extend_from_slice(&addr_bytes(self.addr));
        m.extend_from_slice(&self.incarnation.to_be_bytes());
        m.extend_from_slice(&self.heartbeat.to_be_bytes());
        m
    }

    /// Whether the record is the node's own: its id is its key's, and the
    /// key signed it.
    pub fn verify(&self) -> bool {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&self.signature[0]);
        sig[32..].copy_from_slice(&self.signature[1]);
        NodeId::of_public_key(&self.public_key) == self.id && verify(&self.public_key, &self.signed_bytes(), &sig)
    }
}

/// Everything that crosses a connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// Sent before closing a connection on purpose.
    Goodbye {
        reason: String,
    },
    Request {
        id: u64,
        body: Request,
    },
    Response {
        id: u64,
        body: Response,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Push-pull gossip: the sender's table; the answer is the receiver's.
    Gossip {
        peers: Vec<PeerRecord>,
    },
    Ping,
    /// Store a blob; the receiver verifies it first.
    StoreBlob {
        id: BlobId,
        data: Bytes,
    },
    GetBlob {
        id: BlobId,
    },
    /// Which of these blobs the receiver holds.
    HasBlobs {
        ids: Vec<BlobId>,
    },
    /// Prove possession of a blob: the answer is `Audited` with
    /// [`audit::digest`](super::audit) of the receiver's copy, or `NotFound`.
    Audit {
        id: BlobId,
        nonce: [u8; 32],
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Gossip {
        peers: Vec<PeerRecord>,
    },
    Pong,
    Stored,
    /// Not stored: `full` when for lack of room (pick another node).
    Refused {
        full: bool,
        reason: String,
    },
    Blob {
        data: Bytes,
    },
    NotFound,
    Has {
        present: Vec<bool>,
    },
    /// The request could not be served.
    Error {
        message: String,
    },
    /// The answer to `Audit`.
    Audited {
        digest: [u8; 32],
    },
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes a message into a frame body.
pub fn encode(msg: &Message) -> Bytes {
    bincode::serde::encode_to_vec(msg, bincode_config()).expect("messages always encode").into()
}

/// The frame body of `msg` in two parts, whose concatenation is
/// [`encode`]'s: the bytes before the blob of a message that carries one
/// (`StoreBlob`, `Blob`), and that blob, shared rather than copied (it is
/// the message's last field, so its bytes end the frame). Other messages
/// come whole in the first part.
pub fn encode_parts(mut msg: Message) -> (Bytes, Bytes) {
    let data = match &mut msg {
        Message::Request { body: Request::StoreBlob { data, .. }, .. }
        | Message::Response { body: Response::Blob { data }, .. } => std::mem::take(data),
        _ => return (encode(&msg), Bytes::new()),
    };
    let mut head = bincode::serde::encode_to_vec(&msg, bincode_config()).expect("messages always encode");
    // An empty blob ends the encoding as its length, 0, in one byte: put
    // the blob's real length in its place.
    debug_assert_eq!(head.last(), Some(&0));
    head.pop();
    let len = bincode::encode_to_vec(data.len() as u64, bincode::config::standard()).expect("a length encodes");
    head.extend_from_slice(&len);
    (head.into(), data)
}

/// Decodes a frame body; the whole frame must be one message.
pub fn decode(frame: &[u8]) -> Result<Message, String> {
    let (msg, used) = bincode::serde::decode_from_slice(frame, bincode_config()).map_err(|e| e.to_string())?;
    if used != frame.len() {
        return Err(format!("{} trailing bytes after the message", frame.len() - used));
    }
    Ok(msg)
}

/// The length-prefixed framing with the size limit.
pub fn codec() -> FrameCodec {
    FrameCodec::default()
}

/// Bytes of a frame's header.
pub const HEADER_LEN: usize = 4;
/// The read buffer grows toward a frame that has not fully arrived by at
/// most this much, or by what has arrived of it if that is more.
pub(crate) const SEGMENT_LEN: usize = 64 * 1024;

/// The header of a frame of `len` bytes; an error over [`MAX_FRAME_LEN`].
pub fn header(len: usize) -> io::Result<[u8; HEADER_LEN]> {
    if len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {len} bytes is over the {MAX_FRAME_LEN}-byte limit"),
        ));
    }
    Ok((len as u32).to_be_bytes())
}

/// The framing codec. A declared length over [`MAX_FRAME_LEN`] fails as soon
/// as the header is read. A frame gathers in the read buffer, which grows
/// toward it by at most [`SEGMENT_LEN`] or what has arrived of it, whichever
/// is more (so at most doubling), and is split off it whole, without a copy.
/// A peer that declares a large frame and sends little pins little (a
/// general purpose length-delimited codec reserves the declared length at
/// once).
#[derive(Debug, Default)]
pub struct FrameCodec {
    /// The length of the frame whose header was taken, until it is whole.
    pending: Option<usize>,
}

impl FrameCodec {
    /// The declared length of the frame being gathered, once its header is
    /// read and until it is whole.
    pub fn pending_len(&self) -> Option<usize> {
        self.pending
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let len = match self.pending {
            Some(len) => len,
            None => {
                if src.len() < HEADER_LEN {
                    return Ok(None);
                }
                let len = u32::from_be_bytes(src[..HEADER_LEN].try_into().expect("4 bytes")) as usize;
                if len > MAX_FRAME_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("peer declared a frame of {len} bytes, over the {MAX_FRAME_LEN}-byte limit"),
                    ));
                }
                src.advance(HEADER_LEN);
                len
            }
        };
        if src.len() >= len {
            self.pending = None;
            return Ok(Some(src.split_to(len).freeze()));
        }
        self.pending = Some(len);
        // Room for the next read to bring more of the frame: never beyond
        // it, and no more than has arrived (or a segment).
        let missing = len - src.len();
        src.reserve(missing.min(src.len().max(SEGMENT_LEN)));
        Ok(None)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.pending.is_none() => Ok(None),
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed in the middle of a frame")),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        let header = header(body.len())?;
        dst.reserve(HEADER_LEN + body.len());
        dst.put_slice(&header);
        dst.put_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_their_fixed_layout() {
        for a in ["192.0.2.7:7000", "[2001:db8::1]:65535"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(addr_from_bytes(&addr_bytes(addr)), Some(addr));
        }
        assert_eq!(addr_from_bytes(&[5; ADDR_LEN]), None);
    }

    #[test]
    fn round_trip_and_trailing_garbage() {
        let msg = Message::Request {
            id: 7,
            body: Request::StoreBlob { id: BlobId([1; 32]), data: Bytes::from(vec![9u8; 1000]) },
        };
        let mut frame = encode(&msg).to_vec();
        assert!(frame.len() < 1100, "bytes are encoded compactly");
        assert!(matches!(decode(&frame), Ok(Message::Request { id: 7, .. })));
        frame.push(0);
        assert!(decode(&frame).is_err());
        assert!(decode(&[0xff; 16]).is_err());
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = header(body.len()).unwrap().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let bodies: Vec<Vec<u8>> =
            vec![vec![], b"ping".to_vec(), (0..200_000u32).map(|i| i as u8).collect(), vec![7; SEGMENT_LEN]];
        let wire: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        for step in [1, 3, 4096, SEGMENT_LEN + 1, wire.len()] {
            let (mut codec, mut src, mut got) = (FrameCodec::default(), BytesMut::new(), Vec::new());
            for piece in wire.chunks(step) {
                src.extend_from_slice(piece);
                while let Some(frame) = codec.decode(&mut src).unwrap() {
                    got.push(frame.to_vec());
                }
            }
            assert_eq!(codec.decode_eof(&mut src).unwrap(), None);
            assert!(got == bodies, "pieces of {step} bytes");
        }
    }

    #[test]
    fn an_oversized_length_is_refused_from_its_header() {
        let mut src = BytesMut::from(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes()[..]);
        assert!(FrameCodec::default().decode(&mut src).is_err());
        assert!(header(MAX_FRAME_LEN + 1).is_err());
        let mut dst = BytesMut::new();
        assert!(FrameCodec::default().encode(Bytes::from(vec![0; MAX_FRAME_LEN + 1]), &mut dst).is_err());
    }

    #[test]
    fn a_message_in_two_parts_is_the_same_frame_as_in_one() {
        let blob = |n: usize| Bytes::from((0..n).map(|i| i as u8).collect::<Vec<_>>());
        let id = BlobId([9; 32]);
        let messages = || {
            [0, 1, 127, 128, 16_383, 16_384, 65_536, 1 << 20]
                .into_iter()
                .flat_map(move |n| {
                    [
                        Message::Request { id: n as u64, body: Request::StoreBlob { id, data: blob(n) } },
                        Message::Response { id: u64::MAX - n as u64, body: Response::Blob { data: blob(n) } },
                    ]
                })
                .chain([
                    Message::Request { id: 3, body: Request::GetBlob { id } },
                    Message::Response { id: 4, body: Response::NotFound },
                    Message::Goodbye { reason: "bye".into() },
                ])
        };
        for (msg, again) in messages().zip(messages()) {
            let whole = encode(&msg);
            let (head, payload) = encode_parts(again);
            assert_eq!([&head[..], &payload[..]].concat(), whole[..], "{msg:?}");
            assert!(head.len() <= 64, "the part before the blob is small: {} bytes", head.len());
        }
    }

    #[test]
    fn audits_round_trip_and_are_small() {
        let (id, nonce, digest) = (BlobId([3; 32]), [7u8; 32], [8u8; 32]);
        let request = encode(&Message::Request { id: 5, body: Request::Audit { id, nonce } });
        let answer = encode(&Message::Response { id: 5, body: Response::Audited { digest } });
        assert!(request.len() <= 70 && answer.len() <= 40, "{} and {} bytes", request.len(), answer.len());
        match decode(&request) {
            Ok(Message::Request { id: 5, body: Request::Audit { id: got, nonce: n } }) => {
                assert_eq!((got, n), (id, nonce))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(decode(&answer), Ok(Message::Response { id: 5, body: Response::Audited { digest: d } }) if d == digest)
        );
    }

    #[test]
    fn memory_follows_the_bytes_that_arrive_not_the_declared_length() {
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::with_capacity(8192);
        src.extend_from_slice(&header(MAX_FRAME_LEN).unwrap());
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert!(src.capacity() <= 2 * SEGMENT_LEN, "{} bytes held for a declared frame", src.capacity());
        // A trickle: one byte at a time.
        for _ in 0..1000 {
            src.extend_from_slice(&[1]);
            assert_eq!(codec.decode(&mut src).unwrap(), None);
        }
        assert!(src.capacity() <= 1000 + 3 * SEGMENT_LEN, "{} bytes held for 1000 received", src.capacity());
        // A close in the middle of a frame is an error, not a clean end.
        assert!(codec.decode_eof(&mut src).is_err());
    }
}
