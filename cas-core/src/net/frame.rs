//! Wire messages and their framing: a 4-byte big-endian length, then a
//! bincode-encoded [`Message`]. Frames over [`MAX_FRAME_LEN`] are refused
//! before they are read.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

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
        let mut ip = [0u8; 16];
        match self.addr.ip() {
            IpAddr::V4(v4) => {
                m.push(4);
                ip[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                m.push(6);
                ip = v6.octets();
            }
        }
        m.extend_from_slice(&ip);
        m.extend_from_slice(&self.addr.port().to_be_bytes());
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
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes a message into a frame body.
pub fn encode(msg: &Message) -> Bytes {
    bincode::serde::encode_to_vec(msg, bincode_config()).expect("messages always encode").into()
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
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(MAX_FRAME_LEN).new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
