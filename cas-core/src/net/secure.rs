//! The secure channel under every connection, whatever the transport: a
//! Noise handshake (`Noise_XXpsk0_25519_AESGCM_SHA256`, by the `snow` crate)
//! keyed by the network key, in which each side proves its node identity;
//! then every byte each way travels in encrypted, authenticated records.
//! PROTOCOL.md describes the bytes.
//!
//! - The network key is the Noise pre-shared key, mixed in before the first
//!   message: a dialer without it fails on its first message, before the
//!   listener has read anything from it but the 8-byte preamble.
//! - Each process has a fresh Noise static key, signed by the node's ed25519
//!   identity key; the handshake payload carries the identity public key and
//!   that signature, so each side learns the other's node id and knows it
//!   holds the key.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::frame::{addr_bytes, addr_from_bytes, ADDR_LEN};
use super::transport::BoxStream;
use crate::identity::{verify, Identity, NodeId};

/// Bumped on any incompatible change of the handshake or the messages.
pub const PROTOCOL_VERSION: u32 = 2;
/// The dialer's first bytes, in clear: magic then the protocol version
/// (big-endian). Also the Noise prologue, so both sides hash the same.
pub const PREAMBLE: [u8; 8] = {
    let v = PROTOCOL_VERSION.to_be_bytes();
    [b'C', b'A', b'S', b'N', v[0], v[1], v[2], v[3]]
};
/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XXpsk0_25519_AESGCM_SHA256";
/// Largest Noise message (the Noise limit).
pub const MAX_RECORD: usize = 65535;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// Most plaintext bytes in one record.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;
/// Context of the signature binding a Noise static key to an identity.
const STATIC_KEY_CONTEXT: &[u8] = b"cas-noise-static-v1\0";
/// Length of the identity payload of handshake messages 2 and 3.
const PAYLOAD_LEN: usize = 32 + 64 + ADDR_LEN + 1;
/// Flag bit: this side asks for the bench-only plaintext mode.
const FLAG_PLAINTEXT: u8 = 1;
/// Reject codes, sent by a listener as a zero-length message then one byte.
const REJECT_NETWORK_KEY: u8 = 1;
const REJECT_VERSION: u8 = 2;
/// Longest handshake message (ours are under 300 bytes): a peer cannot make
/// a handshake hold more.
const MAX_HANDSHAKE_MSG: usize = 1024;
/// Encrypted bytes buffered for writing before a write waits for the socket.
const WRITE_HIGH_WATER: usize = 4 * (MAX_RECORD + 2);

/// What this process proves in every handshake.
pub struct Credentials {
    network_key: [u8; 32],
    identity: Identity,
    listen: SocketAddr,
    plaintext: bool,
    static_private: Vec<u8>,
    /// The identity's signature of this process's Noise static public key.
    proof: [u8; 64],
}

impl Credentials {
    /// Credentials for a node with `identity`, advertising `listen`, in the
    /// network of `network_key`; a fresh Noise static key for this process.
    /// `plaintext` (bench only) turns encryption off after the handshake on
    /// connections whose other side asks for it too.
    pub fn new(network_key: [u8; 32], identity: Identity, listen: SocketAddr, plaintext: bool) -> Credentials {
        let builder = snow::Builder::new(NOISE_PARAMS.parse().expect("valid Noise parameters"));
        let keys = builder.generate_keypair().expect("the OS random source works");
        let mut signed = STATIC_KEY_CONTEXT.to_vec();
        signed.extend_from_slice(&keys.public);
        let proof = identity.sign(&signed);
        Credentials { network_key, identity, listen, plaintext, static_private: keys.private, proof }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut p = [0u8; PAYLOAD_LEN];
        p[..32].copy_from_slice(&self.identity.public_key());
        p[32..96].copy_from_slice(&self.proof);
        p[96..96 + ADDR_LEN].copy_from_slice(&addr_bytes(self.listen));
        p[115] = if self.plaintext { FLAG_PLAINTEXT } else { 0 };
        p
    }

    fn builder(&self) -> snow::Builder<'_> {
        snow::Builder::new(NOISE_PARAMS.parse().expect("valid Noise parameters"))
            .local_private_key(&self.static_private)
            .and_then(|b| b.psk(0, &self.network_key))
            .and_then(|b| b.prologue(&PREAMBLE))
            .expect("valid Noise keys")
    }
}

/// Who the other side proved to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its node id (the hash of `public_key`).
    pub id: NodeId,
    /// Its ed25519 identity public key.
    pub public_key: [u8; 32],
    /// The address it says peers dial it at.
    pub listen: SocketAddr,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The other side holds another network key (or none).
    #[error("wrong or missing network key: {0}")]
    NetworkKey(&'static str),
    #[error("not a CAS peer (bad preamble)")]
    NotCas,
    #[error("the peer speaks protocol version {theirs}, this node speaks {PROTOCOL_VERSION}")]
    Version { theirs: u32 },
    #[error("the peer's identity proof is invalid")]
    BadProof,
    #[error("expected node {expected}, met node {found}")]
    UnexpectedPeer { expected: NodeId, found: NodeId },
    #[error("connected to itself")]
    Itself,
    #[error("one side only asked for the bench-only plaintext mode")]
    PlaintextMismatch,
    #[error("handshake failed: {0}")]
    Noise(String),
    #[error("connection failed during the handshake: {0}")]
    Io(#[from] io::Error),
}

fn noise_err(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

async fn send_msg(stream: &mut BoxStream, msg: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Reads one handshake message; `Ok(Err(code))` for a reject.
async fn recv_msg(stream: &mut BoxStream, buf: &mut [u8; MAX_HANDSHAKE_MSG]) -> io::Result<Result<usize, u8>> {
    let len = stream.read_u16().await? as usize;
    if len == 0 {
        return Ok(Err(stream.read_u8().await?));
    }
    if len > MAX_HANDSHAKE_MSG {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a {len}-byte handshake message")));
    }
    stream.read_exact(&mut buf[..len]).await?;
    Ok(Ok(len))
}

fn parse_payload(payload: &[u8], remote_static: Option<&[u8]>) -> Result<(Peer, bool), HandshakeError> {
    let (Ok(p), Some(remote_static)) = (<&[u8; PAYLOAD_LEN]>::try_from(payload), remote_static) else {
        return Err(HandshakeError::BadProof);
    };
    let public_key: [u8; 32] = p[..32].try_into().expect("32 bytes");
    let proof: [u8; 64] = p[32..96].try_into().expect("64 bytes");
    let mut signed = STATIC_KEY_CONTEXT.to_vec();
    signed.extend_from_slice(remote_static);
    if !verify(&public_key, &signed, &proof) {
        return Err(HandshakeError::BadProof);
    }
    let listen = addr_from_bytes(p[96..96 + ADDR_LEN].try_into().expect("19 bytes")).ok_or(HandshakeError::BadProof)?;
    let peer = Peer { id: NodeId::of_public_key(&public_key), public_key, listen };
    Ok((peer, p[115] & FLAG_PLAINTEXT != 0))
}

fn finish(
    stream: BoxStream,
    state: snow::HandshakeState,
    me: &Credentials,
    peer: Peer,
    plaintext: bool,
) -> Result<(SecureStream, Peer), HandshakeError> {
    if plaintext != me.plaintext {
        return Err(HandshakeError::PlaintextMismatch);
    }
    let noise = state.into_transport_mode().map_err(noise_err)?;
    Ok((SecureStream::new(stream, (!plaintext).then_some(noise)), peer))
}

/// The dialer's side. With `expected`, a peer proving another id is refused
/// before this side sends its own proof.
pub async fn initiate(
    mut stream: BoxStream,
    me: &Credentials,
    expected: Option<NodeId>,
) -> Result<(SecureStream, Peer), HandshakeError> {
    let mut state = me.builder().build_initiator().map_err(noise_err)?;
    let (mut msg, mut payload) = ([0u8; MAX_HANDSHAKE_MSG], [0u8; MAX_HANDSHAKE_MSG]);
    stream.write_all(&PREAMBLE).await?;
    let n = state.write_message(&[], &mut msg[..]).map_err(noise_err)?;
    send_msg(&mut stream, &msg[..n]).await?;
    let n = match recv_msg(&mut stream, &mut msg).await {
        Ok(Ok(n)) => n,
        Ok(Err(REJECT_VERSION)) => return Err(HandshakeError::Version { theirs: 0 }),
        Ok(Err(_)) => return Err(HandshakeError::NetworkKey("the peer refused this node's network key")),
        // A peer of protocol 1 closes on our preamble.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(HandshakeError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection (an older CAS version, or not a CAS node)",
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let len = state.read_message(&msg[..n], &mut payload).map_err(noise_err)?;
    let (peer, plaintext) = parse_payload(&payload[..len], state.get_remote_static())?;
    if peer.id == me.id() {
        return Err(HandshakeError::Itself);
    }
    if let Some(expected) = expected.filter(|e| *e != peer.id) {
        return Err(HandshakeError::UnexpectedPeer { expected, found: peer.id });
    }
    let n = state.write_message(&me.payload(), &mut msg[..]).map_err(noise_err)?;
    send_msg(&mut stream, &msg[..n]).await?;
    finish(stream, state, me, peer, plaintext)
}

/// The listener's side.
pub async fn respond(stream: BoxStream, me: &Credentials) -> Result<(SecureStream, Peer), HandshakeError> {
    respond_within(stream, me, None).await
}

/// [`respond`], with the dialer's first bytes (the preamble and message 1)
/// due within `first_message` if given: a socket that stays idle cannot
/// hold the listener's room for the whole handshake.
pub async fn respond_within(
    mut stream: BoxStream,
    me: &Credentials,
    first_message: Option<std::time::Duration>,
) -> Result<(SecureStream, Peer), HandshakeError> {
    let (mut msg, mut payload) = ([0u8; MAX_HANDSHAKE_MSG], [0u8; MAX_HANDSHAKE_MSG]);
    let first = async {
        let mut preamble = [0u8; 8];
        stream.read_exact(&mut preamble).await?;
        if preamble[..4] != PREAMBLE[..4] {
            return Err(HandshakeError::NotCas);
        }
        if preamble != PREAMBLE {
            let _ = stream.write_all(&[0, 0, REJECT_VERSION]).await;
            let theirs = u32::from_be_bytes(preamble[4..].try_into().expect("4 bytes"));
            return Err(HandshakeError::Version { theirs });
        }
        Ok(recv_msg(&mut stream, &mut msg).await?)
    };
    let first = match first_message {
        Some(within) => tokio::time::timeout(within, first).await.map_err(|_| {
            HandshakeError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no first handshake message within {within:?}"),
            ))
        })?,
        None => first.await,
    };
    let Ok(n) = first? else {
        return Err(HandshakeError::Noise("a reject from the dialer".into()));
    };
    let mut state = me.builder().build_responder().map_err(noise_err)?;
    if state.read_message(&msg[..n], &mut payload).is_err() {
        let _ = stream.write_all(&[0, 0, REJECT_NETWORK_KEY]).await;
        let _ = stream.flush().await;
        return Err(HandshakeError::NetworkKey("the dialer does not hold this network's key"));
    }
    let n = state.write_message(&me.payload(), &mut msg[..]).map_err(noise_err)?;
    send_msg(&mut stream, &msg[..n]).await?;
    let Ok(n) = recv_msg(&mut stream, &mut msg).await? else {
        return Err(HandshakeError::Noise("a reject from the dialer".into()));
    };
    let len = state.read_message(&msg[..n], &mut payload).map_err(noise_err)?;
    let (peer, plaintext) = parse_payload(&payload[..len], state.get_remote_static())?;
    if peer.id == me.id() {
        return Err(HandshakeError::Itself);
    }
    finish(stream, state, me, peer, plaintext)
}

/// A handshaken stream: what is written is sealed into records of at most
/// [`MAX_RECORD_PLAINTEXT`] bytes (`u16` length, then ciphertext and tag),
/// what is read is opened and checked. Memory is fixed per stream: one
/// record's worth each way, plus a bounded write buffer.
pub struct SecureStream {
    inner: BoxStream,
    /// `None` in the bench-only plaintext mode.
    noise: Option<snow::TransportState>,
    /// Raw bytes read: `raw[rstart..rend]` not yet opened.
    raw: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// Opened bytes not yet returned: `plain[pstart..pend]`.
    plain: Box<[u8]>,
    pstart: usize,
    pend: usize,
    /// Sealed records not yet written: `out[wpos..wend]`. The buffer keeps
    /// its length (records are sealed into memory already there, not into
    /// memory zeroed for each one).
    out: Vec<u8>,
    wpos: usize,
    wend: usize,
}

impl SecureStream {
    fn new(inner: BoxStream, noise: Option<snow::TransportState>) -> SecureStream {
        let (raw, plain): (Box<[u8]>, Box<[u8]>) = if noise.is_some() {
            (vec![0; 2 * (MAX_RECORD + 2)].into(), vec![0; MAX_RECORD].into())
        } else {
            (Box::default(), Box::default())
        };
        SecureStream {
            inner,
            noise,
            raw,
            rstart: 0,
            rend: 0,
            plain,
            pstart: 0,
            pend: 0,
            out: Vec::new(),
            wpos: 0,
            wend: 0,
        }
    }

    /// Writes out sealed records until none is left or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wend {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.wpos..self.wend]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        (self.wpos, self.wend) = (0, 0);
        Poll::Ready(Ok(()))
    }
}

fn bad_record(e: snow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a record failed authentication: {e}"))
}

impl AsyncRead for SecureStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(noise) = this.noise.as_mut() else { return Pin::new(&mut this.inner).poll_read(cx, buf) };
        loop {
            if this.pstart < this.pend {
                let n = (this.pend - this.pstart).min(buf.remaining());
                buf.put_slice(&this.plain[this.pstart..this.pstart + n]);
                this.pstart += n;
                return Poll::Ready(Ok(()));
            }
            let have = this.rend - this.rstart;
            if have >= 2 {
                let len = u16::from_be_bytes([this.raw[this.rstart], this.raw[this.rstart + 1]]) as usize;
                if have >= 2 + len {
                    let record = &this.raw[this.rstart + 2..this.rstart + 2 + len];
                    let n = noise.read_message(record, &mut this.plain).map_err(bad_record)?;
                    this.rstart += 2 + len;
                    (this.pstart, this.pend) = (0, n);
                    continue;
                }
            }
            if this.rstart == this.rend {
                (this.rstart, this.rend) = (0, 0);
            } else if this.raw.len() - this.rstart < 2 + MAX_RECORD {
                // Make room for a whole record behind the partial one.
                this.raw.copy_within(this.rstart..this.rend, 0);
                (this.rstart, this.rend) = (0, have);
            }
            let mut rb = ReadBuf::new(&mut this.raw[this.rend..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let got = rb.filled().len();
            if got == 0 {
                return Poll::Ready(if have == 0 {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection mid-record"))
                });
            }
            this.rend += got;
        }
    }
}

impl AsyncWrite for SecureStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.noise.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.wend - this.wpos >= WRITE_HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        if this.wpos >= WRITE_HIGH_WATER {
            // Partly written: move the rest to the front, so the buffer stays
            // within the high-water mark and a record.
            this.out.copy_within(this.wpos..this.wend, 0);
            (this.wpos, this.wend) = (0, this.wend - this.wpos);
        }
        let noise = this.noise.as_mut().expect("checked above");
        let n = buf.len().min(MAX_RECORD_PLAINTEXT);
        let start = this.wend;
        if this.out.len() < start + 2 + n + TAG_LEN {
            this.out.resize(start + 2 + n + TAG_LEN, 0);
        }
        let sealed = noise
            .write_message(&buf[..n], &mut this.out[start + 2..start + 2 + n + TAG_LEN])
            .map_err(|e| io::Error::other(format!("sealing a record: {e}")))?;
        this.out[start..start + 2].copy_from_slice(&(sealed as u16).to_be_bytes());
        this.wend = start + 2 + sealed;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::memory::MemoryTransport;
    use crate::net::transport::Transport;

    fn creds(key: u8, plaintext: bool) -> Credentials {
        Credentials::new([key; 32], Identity::generate(), ([127, 0, 0, 1], 7000).into(), plaintext)
    }

    async fn pair() -> (BoxStream, BoxStream) {
        let t = MemoryTransport::default();
        let mut l = t.listen("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(t.dial(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Two streams of one network, handshaken: the dialer's and the
    /// listener's, each with the peer it proved, and the credentials used.
    async fn handshaken() -> ((SecureStream, Peer), (SecureStream, Peer), Credentials, Credentials) {
        let (a, b) = pair().await;
        let (ca, cb) = (creds(1, false), creds(1, false));
        let (ra, rb) = tokio::join!(initiate(a, &ca, Some(cb.id())), respond(b, &cb));
        (ra.unwrap(), rb.unwrap(), ca, cb)
    }

    #[tokio::test]
    async fn records_carry_bytes_both_ways_and_ids_are_proved() {
        let ((mut sa, pa), (mut sb, pb), ca, cb) = handshaken().await;
        assert_eq!((pa.id, pb.id), (cb.id(), ca.id()));
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let (w, r) = tokio::join!(
            async {
                sa.write_all(&big).await.unwrap();
                sa.shutdown().await.unwrap();
            },
            async {
                let mut got = Vec::new();
                sb.read_to_end(&mut got).await.unwrap();
                got
            }
        );
        let () = w;
        assert_eq!(r, big);
    }

    /// A reader that takes its bytes a little at a time: the writer's sealed
    /// records are written out in part again and again, and what arrives is
    /// still every byte in order.
    #[tokio::test]
    async fn a_slow_reader_gets_every_byte_of_records_written_in_parts() {
        let ((mut sa, _), (mut sb, _), _, _) = handshaken().await;
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 65_521) as u8).collect();
        let (w, r) = tokio::join!(
            async {
                for piece in big.chunks(100_003) {
                    sa.write_all(piece).await.unwrap();
                }
                sa.shutdown().await.unwrap();
            },
            async {
                let (mut got, mut buf) = (Vec::new(), [0u8; 1000]);
                loop {
                    let n = sb.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break got;
                    }
                    got.extend_from_slice(&buf[..n]);
                    tokio::task::yield_now().await;
                }
            }
        );
        let () = w;
        assert!(r == big, "{} bytes read of {}", r.len(), big.len());
    }

    #[tokio::test]
    async fn a_wrong_network_key_is_named_on_both_sides() {
        let (a, b) = pair().await;
        let (ca, cb) = (creds(1, false), creds(2, false));
        let (ra, rb) = tokio::join!(initiate(a, &ca, None), respond(b, &cb));
        assert!(matches!(ra, Err(HandshakeError::NetworkKey(_))), "{:?}", ra.err());
        assert!(matches!(rb, Err(HandshakeError::NetworkKey(_))), "{:?}", rb.err());
    }

    #[tokio::test]
    async fn a_dialer_expecting_another_node_stops_before_proving_itself() {
        let (a, b) = pair().await;
        let (ca, cb) = (creds(1, false), creds(1, false));
        let other = Identity::generate().id();
        let (ra, rb) = tokio::join!(initiate(a, &ca, Some(other)), respond(b, &cb));
        assert!(matches!(ra, Err(HandshakeError::UnexpectedPeer { .. })));
        assert!(rb.is_err(), "the listener never learns who dialed");
    }

    #[tokio::test]
    async fn plaintext_needs_both_sides() {
        let (a, b) = pair().await;
        let (ca, cb) = (creds(1, true), creds(1, false));
        let (ra, _) = tokio::join!(initiate(a, &ca, None), respond(b, &cb));
        assert!(matches!(ra, Err(HandshakeError::PlaintextMismatch)));
    }
}
