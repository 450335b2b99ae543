//! One connection to a peer: the handshake, then many concurrent requests
//! each way, matched to responses by request id. Queues are bounded (our
//! requests in flight, frames waiting to be written, requests served at
//! once, bytes of requests being served, bytes of answers not yet written);
//! every request has a timeout; a connection on which no complete frame
//! arrives for the idle timeout is closed; a malformed frame or a flood
//! closes this connection only. Besides, large frames, request bodies and
//! answers take their bytes from the node's memory budget (budget.rs),
//! shared by every connection.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{Decoder, Framed};
use tokio_util::sync::CancellationToken;

use super::budget::{Held, MemoryBudget, Pool, Source, SMALL_FRAME};
use super::frame::{self, FrameCodec, Message, Request, Response, MAX_FRAME_LEN};
use super::log_limit::LogLimit;
use super::secure::{self, Credentials, HandshakeError};
use super::transport::BoxStream;
use crate::error::Error;
use crate::identity::NodeId;

/// Frames waiting to be written on one connection.
const OUTBOX_FRAMES: usize = 16;
/// Our requests in flight on one connection at most; more wait their turn.
pub(crate) const MAX_REQUESTS_IN_FLIGHT: usize = 32;
/// A peer with more requests than this in flight on one connection is
/// flooding it (an honest one keeps to MAX_REQUESTS_IN_FLIGHT, with room for
/// requests it gave up on that we still serve): the connection is closed.
/// The reader never waits on a handler that waits on the peer (it waits only
/// for REQUEST_BUDGET, held across local work), so two busy peers can never
/// wedge a connection by each waiting for the other to read.
pub(crate) const MAX_SERVED_IN_FLIGHT: usize = 2 * MAX_REQUESTS_IN_FLIGHT;
/// Bytes of answers loaded and not yet written, per connection: a peer that
/// does not read its answers cannot make us load more (two of the largest
/// blobs, so one is loaded while the other is written).
const ANSWER_BUDGET: usize = 2 * MAX_FRAME_LEN;
/// Bytes of request frames being served at once, per connection (one
/// frame of the largest size; more wait for it to be served).
///
/// The reader waits for this budget. That is safe because only handlers of
/// requests that need nothing from the peer hold it (storing a blob,
/// answering gossip, a ping or which blobs we hold: local work that finishes
/// whatever the peer does), and they release it before queueing their
/// answer, so a full outbox does not hold it either. A GetBlob, whose
/// handler waits for the peer to read earlier answers (ANSWER_BUDGET), holds
/// none: its frame is a few dozen bytes, and MAX_SERVED_IN_FLIGHT bounds how
/// many wait. So the wait ends whatever the peer does, and meanwhile the
/// peer's own reader is not waiting on us. Request bodies on a connection
/// are at most two frames: this budget in the handlers, and the one frame
/// the waiting reader holds (a frame is briefly held up to three times on
/// its way in: gathered, joined, decoded).
///
/// The reader also waits for the node's incoming pool (budget.rs): before
/// gathering a large frame, and for a request body to be served. The same
/// argument holds there: that pool is held by frames being gathered, which
/// their senders' writers finish (or the idle timeout ends), and by request
/// bodies of these same local handlers, never by answers waiting for a
/// peer to read (they are in the answers pool). Both waits are bounded by
/// the idle timeout all the same: a peer whose frames cannot get memory
/// for that long is cut off.
const REQUEST_BUDGET: usize = MAX_FRAME_LEN;

/// Limits of one connection, from the node's configuration.
#[derive(Clone)]
pub(crate) struct Limits {
    /// Closes a connection on which no complete frame arrived for this long,
    /// or whose peer leaves answers unread this long, or whose frames or
    /// answers wait this long for the memory budget.
    pub idle_timeout: Duration,
    /// The node's memory budget.
    pub budget: Arc<MemoryBudget>,
    /// Where the connection comes from, for its share of the budget.
    pub source: Source,
}

/// Serves requests arriving from peers.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers `request`. An answer that may be large (a blob) first takes
    /// its size from `answers`; the permit goes back with the response and
    /// is released once that response is written.
    fn handle(&self, from: NodeId, request: Request, answers: AnswerBudget) -> BoxFuture<'static, Answer>;
}

/// A response, and the budget its bytes hold until written.
pub(crate) struct Answer {
    pub body: Response,
    pub permit: Option<AnswerPermit>,
}

impl From<Response> for Answer {
    fn from(body: Response) -> Answer {
        Answer { body, permit: None }
    }
}

/// The bytes of answers a connection may hold unwritten: its own bound,
/// and its share of the node's answers pool.
#[derive(Clone)]
pub(crate) struct AnswerBudget {
    bytes: Arc<Semaphore>,
    node: Arc<MemoryBudget>,
    source: Source,
    wait: Duration,
    out: mpsc::Sender<OutFrame>,
    closed: CancellationToken,
    /// Set by the first answer that gave up waiting (it says why, once).
    gave_up: Arc<AtomicBool>,
}

/// Budget held by one answer until it is written.
#[allow(dead_code, reason = "held for its drop")]
pub(crate) struct AnswerPermit(OwnedSemaphorePermit, Held);

impl AnswerBudget {
    /// Reserves `len` bytes for an answer, waiting while earlier answers
    /// are unwritten, or the node's answers pool (or this source's share of
    /// it) is full. If no room comes within the idle timeout, the
    /// connection is closed and `None` returned.
    pub(crate) async fn reserve(&self, len: usize) -> Option<AnswerPermit> {
        let n = len.min(ANSWER_BUDGET);
        let acquire = async {
            let conn = self.bytes.clone().acquire_many_owned(n as u32).await.ok()?;
            let node = self.node.reserve(Pool::Answers, self.source, n).await;
            Some(AnswerPermit(conn, node))
        };
        tokio::select! {
            permit = tokio::time::timeout(self.wait, acquire) => match permit {
                Ok(Some(permit)) => return Some(permit),
                Ok(None) => {}
                Err(_) => {
                    if !self.gave_up.swap(true, Ordering::SeqCst) {
                        self.node.note_closed();
                        let reason =
                            format!("peer does not read its answers (one waited {:?} for room)", self.wait);
                        warn_closing(None, &reason);
                        let _ = self.out.try_send(OutFrame::new(Message::Goodbye { reason }, None));
                    }
                    self.closed.cancel();
                }
            },
            _ = self.closed.cancelled() => {}
        }
        None
    }
}

/// A frame to write (its body in the two parts of
/// [`frame::encode_parts`]), with the answer budget it releases once written.
struct OutFrame {
    head: Bytes,
    blob: Bytes,
    _permit: Option<AnswerPermit>,
}

impl OutFrame {
    fn new(msg: Message, permit: Option<AnswerPermit>) -> OutFrame {
        let (head, blob) = frame::encode_parts(msg);
        OutFrame { head, blob, _permit: permit }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// A request's place in `pending`, removed on drop.
struct PendingEntry<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// A live, handshaken connection.
pub(crate) struct Connection {
    pub peer: NodeId,
    /// The peer's advertised listen address (from its hello).
    pub peer_listen: SocketAddr,
    /// Whether this side dialed.
    pub outbound: bool,
    out: mpsc::Sender<OutFrame>,
    /// Bounds our requests in flight.
    slots: Semaphore,
    pending: Pending,
    next_id: AtomicU64,
    closed: CancellationToken,
}

/// A stream with the framing of the protocol.
pub(crate) type FramedStream = Framed<BoxStream, FrameCodec>;

/// Runs the secure handshake on a fresh stream (as the dialer when
/// `outbound`, expecting `expected` if given), within the handshake
/// timeouts of `limits`, then frames the secure stream. Returns the framed
/// stream and the peer as it proved itself.
pub(crate) async fn handshake(
    stream: BoxStream,
    me: &Credentials,
    outbound: bool,
    expected: Option<NodeId>,
    limits: &crate::config::Limits,
) -> Result<(FramedStream, secure::Peer), HandshakeError> {
    let run = async {
        if outbound {
            secure::initiate(stream, me, expected).await
        } else {
            secure::respond_within(stream, me, Some(limits.first_message_timeout)).await
        }
    };
    let (stream, peer) = tokio::time::timeout(limits.handshake_timeout, run)
        .await
        .map_err(|_| HandshakeError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")))??;
    Ok((Framed::new(Box::new(stream) as BoxStream, frame::codec()), peer))
}

impl Connection {
    /// Starts the reader and writer tasks of a handshaken stream.
    pub(crate) fn spawn(
        framed: FramedStream,
        peer: NodeId,
        peer_listen: SocketAddr,
        outbound: bool,
        handler: Arc<dyn Handler>,
        parent: &CancellationToken,
        limits: Limits,
    ) -> Arc<Connection> {
        let (out, rx) = mpsc::channel(OUTBOX_FRAMES);
        let conn = Arc::new(Connection {
            peer,
            peer_listen,
            outbound,
            out,
            slots: Semaphore::new(MAX_REQUESTS_IN_FLIGHT),
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
            closed: parent.child_token(),
        });
        // Frames are written straight from their buffers (a framed sink
        // would copy each into a write buffer that keeps the size of the
        // largest frame ever sent). The reader keeps what the handshake read
        // past the hello, and decodes it before reading more.
        let parts = framed.into_parts();
        debug_assert!(parts.write_buf.is_empty(), "the handshake flushes what it sends");
        let (read_half, write_half) = tokio::io::split(parts.io);
        let reader = FrameReader { io: read_half, buf: parts.read_buf, codec: parts.codec };
        tokio::spawn(write_loop(write_half, rx, conn.closed.clone()));
        tokio::spawn(read_loop(reader, conn.clone(), handler, limits));
        conn
    }

    /// Whether the connection has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves once the connection has closed.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Closes the connection; requests in flight fail.
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    /// Sends a request and waits for its response, at most `timeout`.
    pub(crate) async fn request(&self, body: Request, timeout: Duration) -> Result<Response, Error> {
        if self.is_closed() {
            return Err(Error::Network(format!("connection to {} is closed", self.peer_listen)));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        // Removes the entry however the request ends, also when its caller
        // drops it (a hedged fetch whose other request answered first): the
        // answer, if it comes, is then discarded on arrival.
        let _entry = PendingEntry { pending: &self.pending, id };
        let frame = OutFrame::new(Message::Request { id, body }, None);
        let result = tokio::time::timeout(timeout, async {
            let _slot = self.slots.acquire().await.map_err(|_| ())?;
            self.out.send(frame).await.map_err(|_| ())?;
            rx.await.map_err(|_| ())
        })
        .await;
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(())) => Err(Error::Network(format!("connection to {} closed during a request", self.peer_listen))),
            Err(_) => Err(Error::Timeout(format!("peer {} did not answer within {timeout:?}", self.peer_listen))),
        }
    }
}

async fn write_loop(mut io: WriteHalf<BoxStream>, mut rx: mpsc::Receiver<OutFrame>, closed: CancellationToken) {
    const GRACE: Duration = Duration::from_millis(200);
    loop {
        let frame = tokio::select! {
            biased;
            _ = closed.cancelled() => {
                // Flush what is queued (a goodbye, say), briefly, then stop.
                while let Ok(f) = rx.try_recv() {
                    if !matches!(tokio::time::timeout(GRACE, write_frame(&mut io, &f)).await, Ok(Ok(()))) {
                        break;
                    }
                }
                None
            }
            f = rx.recv() => f,
        };
        let Some(frame) = frame else { break };
        // A peer that does not read blocks the write: closing the
        // connection must still end it, after a brief grace.
        let written = {
            let write = write_frame(&mut io, &frame);
            tokio::pin!(write);
            tokio::select! {
                w = &mut write => w,
                _ = closed.cancelled() => match tokio::time::timeout(GRACE, &mut write).await {
                    Ok(w) => w,
                    Err(_) => break,
                },
            }
        };
        drop(frame); // written: its answer budget is free
        if let Err(e) = written {
            tracing::debug!("write failed: {e}");
            break;
        }
    }
    closed.cancel();
    let _ = tokio::time::timeout(GRACE, io.shutdown()).await;
}

/// Writes one frame, header and body together, without copying the body.
async fn write_frame(io: &mut WriteHalf<BoxStream>, frame: &OutFrame) -> std::io::Result<()> {
    let header = frame::header(frame.head.len() + frame.blob.len())?;
    io.write_all_buf(&mut Buf::chain(&header[..], &frame.head[..]).chain(&frame.blob[..])).await?;
    io.flush().await
}

/// Bounds the warnings about connections closed for misbehaving (process
/// wide: they are logged where no node is at hand).
pub(crate) static CLOSING_WARNINGS: once_cell::sync::Lazy<LogLimit> =
    once_cell::sync::Lazy::new(|| LogLimit::of_peer_events("closed misbehaving connections"));

/// Logs a connection closed for misbehaving, at a bounded rate: a member
/// opening many bad connections must not fill the log.
pub(crate) fn warn_closing(peer: Option<SocketAddr>, reason: &str) {
    CLOSING_WARNINGS.warn(|| match peer {
        Some(peer) => tracing::warn!(%peer, "closing connection: {reason}"),
        None => tracing::warn!("closing connection: {reason}"),
    });
}

/// Why the reader stopped.
enum Stop {
    /// The peer closed, said goodbye, or this side closed the connection.
    Quiet,
    /// No complete frame arrived for the idle timeout.
    Idle,
    /// The peer broke the protocol.
    Bad(String),
    /// The connection broke under the frames (reset, timed out, cut in the
    /// middle of a frame): a peer that died or a network that failed, not
    /// misbehaviour, so not a warning.
    Lost(std::io::Error),
    /// A frame waited for the memory budget for the idle timeout.
    OverBudget,
}

/// What the reader finds next on the wire.
enum Incoming {
    Frame(Bytes),
    /// A frame over [`SMALL_FRAME`] of this declared length has begun: it
    /// is gathered once its bytes are reserved.
    Large(usize),
    Closed,
}

/// Reads frames, and stops before gathering a large one until told that
/// its bytes are reserved (a framed stream reads whatever arrives).
struct FrameReader {
    io: ReadHalf<BoxStream>,
    buf: BytesMut,
    codec: FrameCodec,
}

impl FrameReader {
    /// The next frame; or, if `reserved` is false, the length of a large
    /// frame before more of it is read. Cancel safe.
    async fn next(&mut self, reserved: bool) -> std::io::Result<Incoming> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf)? {
                return Ok(Incoming::Frame(frame));
            }
            match self.codec.pending_len() {
                Some(len) if len > SMALL_FRAME && !reserved => return Ok(Incoming::Large(len)),
                _ => {}
            }
            self.buf.reserve(1);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(match self.codec.decode_eof(&mut self.buf)? {
                    Some(frame) => Incoming::Frame(frame),
                    None => Incoming::Closed,
                });
            }
        }
    }
}

async fn read_loop(mut reader: FrameReader, conn: Arc<Connection>, handler: Arc<dyn Handler>, limits: Limits) {
    let serving = Arc::new(AtomicUsize::new(0));
    let request_bytes = Arc::new(Semaphore::new(REQUEST_BUDGET));
    let answers = AnswerBudget {
        bytes: Arc::new(Semaphore::new(ANSWER_BUDGET)),
        node: limits.budget.clone(),
        source: limits.source,
        wait: limits.idle_timeout,
        out: conn.out.clone(),
        closed: conn.closed.clone(),
        gave_up: Arc::default(),
    };
    // Runs from the last complete frame: bytes of a frame that never
    // completes (a trickle) do not keep the connection.
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    // Bytes of the node's incoming pool, waited for at most the idle
    // timeout (see REQUEST_BUDGET for why this wait cannot wedge the
    // connection).
    let reserve = |len: usize| {
        let (budget, source, closed, wait) =
            (limits.budget.clone(), limits.source, conn.closed.clone(), limits.idle_timeout);
        async move {
            tokio::select! {
                held = tokio::time::timeout(wait, budget.reserve(Pool::Incoming, source, len)) => {
                    held.map_err(|_| Stop::OverBudget)
                }
                _ = closed.cancelled() => Err(Stop::Quiet),
            }
        }
    };
    // The reservation of the large frame being gathered.
    let mut gathering: Option<Held> = None;
    let stop = loop {
        let next = tokio::select! {
            n = reader.next(gathering.is_some()) => n,
            _ = conn.closed.cancelled() => break Stop::Quiet,
            _ = &mut idle => break Stop::Idle,
        };
        let frame = match next {
            Ok(Incoming::Closed) => break Stop::Quiet,
            Ok(Incoming::Frame(f)) => f,
            Ok(Incoming::Large(len)) => match reserve(len).await {
                Ok(held) => {
                    gathering = Some(held);
                    // The wait was ours: the peer gets the whole idle
                    // timeout to send the frame.
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    continue;
                }
                Err(stop) => break stop,
            },
            Err(e) if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::InvalidInput) => {
                break Stop::Bad(format!("bad frame: {e}"))
            }
            Err(e) => break Stop::Lost(e),
        };
        let frame_len = frame.len();
        let held = gathering.take();
        match frame::decode(&frame) {
            Ok(Message::Request { id, body }) => {
                drop(frame);
                if serving.fetch_add(1, Ordering::SeqCst) >= MAX_SERVED_IN_FLIGHT {
                    break Stop::Bad(format!("more than {MAX_SERVED_IN_FLIGHT} requests in flight"));
                }
                let held = if matches!(body, Request::GetBlob { .. }) {
                    None
                } else {
                    // The body holds its bytes until served: those it was
                    // gathered with, or (a small frame) taken now.
                    let node = match held {
                        Some(held) => held,
                        None => match reserve(frame_len).await {
                            Ok(held) => held,
                            Err(stop) => break stop,
                        },
                    };
                    let acquire = request_bytes.clone().acquire_many_owned(frame_len.min(REQUEST_BUDGET) as u32);
                    tokio::select! {
                        permit = acquire => permit.ok().map(|p| (p, node)),
                        _ = conn.closed.cancelled() => break Stop::Quiet,
                    }
                };
                let (handler, out, peer, serving, answers) =
                    (handler.clone(), conn.out.clone(), conn.peer, serving.clone(), answers.clone());
                tokio::spawn(async move {
                    let answer = handler.handle(peer, body, answers).await;
                    drop(held);
                    let frame = OutFrame::new(Message::Response { id, body: answer.body }, answer.permit);
                    let _ = out.send(frame).await;
                    serving.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Ok(Message::Response { id, body }) => {
                let waiter = conn.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(tx) = waiter {
                    let _ = tx.send(body);
                }
            }
            Ok(Message::Goodbye { reason }) => {
                tracing::debug!(peer = %conn.peer_listen, "peer closed the connection: {reason}");
                break Stop::Quiet;
            }
            Err(e) => break Stop::Bad(format!("malformed message: {e}")),
        }
        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
    };
    let goodbye = match stop {
        Stop::Quiet => None,
        Stop::Idle => {
            // Routine between honest nodes too: the next request dials again.
            tracing::debug!(peer = %conn.peer_listen, "closing a connection idle for {:?}", limits.idle_timeout);
            Some(format!("no frame for {:?}", limits.idle_timeout))
        }
        Stop::Bad(reason) => {
            warn_closing(Some(conn.peer_listen), &reason);
            Some(reason)
        }
        Stop::Lost(e) => {
            tracing::debug!(peer = %conn.peer_listen, "connection lost: {e}");
            None
        }
        Stop::OverBudget => {
            limits.budget.note_closed();
            let reason = format!("over its share of the memory budget for {:?}", limits.idle_timeout);
            warn_closing(Some(conn.peer_listen), &reason);
            Some(reason)
        }
    };
    if let Some(reason) = goodbye {
        let _ = conn.out.try_send(OutFrame::new(Message::Goodbye { reason }, None));
    }
    conn.closed.cancel();
    // Wake every waiter: their senders drop with the map entries.
    conn.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
}
