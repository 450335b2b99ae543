//! Wire messages and their framing: a 4-byte big-endian length, then a
//! bincode-encoded [`Message`]. Frames over [`MAX_FRAME_LEN`] are refused
//! before they are read.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use crate::format::{BlobId, MAX_BLOB_LEN};
use crate::identity::NodeId;

/// The largest frame: the largest blob plus room for its envelope.
pub const MAX_FRAME_LEN: usize = MAX_BLOB_LEN + 4096;
/// Most blob ids in one `HasBlobs` request.
pub const MAX_HAS_BATCH: usize = 4096;

/// A peer as gossip describes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerRecord {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// When the peer last started (ms since the epoch): a restart outranks old heartbeats.
    pub incarnation: u64,
    /// Advances every gossip round while the peer lives.
    pub heartbeat: u64,
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
