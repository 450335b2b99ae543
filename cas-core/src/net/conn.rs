//! One connection to a peer: the handshake, then many concurrent requests
//! each way, matched to responses by request id. Queues are bounded (our
//! requests in flight, frames waiting to be written, requests served at
//! once); every request has a timeout; a connection on which no complete
//! frame arrives for the idle timeout is closed; a malformed frame or a
//! flood closes this connection only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::frame::{self, FrameCodec, Message, Request, Response, MAGIC, PROTOCOL_VERSION};
use super::transport::BoxStream;
use crate::error::Error;
use crate::node::NodeId;

/// Frames waiting to be written on one connection.
const OUTBOX_FRAMES: usize = 16;
/// Our requests in flight on one connection at most; more wait their turn.
pub(crate) const MAX_REQUESTS_IN_FLIGHT: usize = 32;
/// A peer with more requests than this in flight on one connection is
/// flooding it (an honest one keeps to MAX_REQUESTS_IN_FLIGHT, with room for
/// requests it gave up on that we still serve): the connection is closed.
/// The reader never waits on the handlers, so two busy peers can never wedge
/// a connection by each waiting for the other to read.
pub(crate) const MAX_SERVED_IN_FLIGHT: usize = 2 * MAX_REQUESTS_IN_FLIGHT;
/// How long the handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Limits of one connection, from the node's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Closes a connection on which no complete frame arrived for this long.
    pub idle_timeout: Duration,
}

/// Serves requests arriving from peers.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, request: Request) -> BoxFuture<'static, Response>;
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// A live, handshaken connection.
pub(crate) struct Connection {
    pub peer: NodeId,
    /// The peer's advertised listen address (from its hello).
    pub peer_listen: SocketAddr,
    /// Whether this side dialed.
    pub outbound: bool,
    out: mpsc::Sender<Bytes>,
    /// Bounds our requests in flight.
    slots: Semaphore,
    pending: Pending,
    next_id: AtomicU64,
    closed: CancellationToken,
}

/// A stream with the framing of the protocol.
pub(crate) type FramedStream = Framed<BoxStream, FrameCodec>;

/// Exchanges hellos. Returns the framed stream and the peer's id and listen address.
pub(crate) async fn handshake(
    stream: BoxStream,
    me: NodeId,
    my_listen: SocketAddr,
) -> Result<(FramedStream, NodeId, SocketAddr), String> {
    let mut framed = Framed::new(stream, frame::codec());
    let hello = Message::Hello { magic: MAGIC, version: PROTOCOL_VERSION, node_id: me, listen: my_listen };
    let exchange = async {
        framed.send(frame::encode(&hello)).await.map_err(|e| format!("sending hello: {e}"))?;
        let first = framed.next().await.ok_or("closed before its hello")?.map_err(|e| format!("reading hello: {e}"))?;
        match frame::decode(&first)? {
            Message::Hello { magic, .. } if magic != MAGIC => Err("not a CAS peer (bad magic)".to_string()),
            Message::Hello { version, .. } if version != PROTOCOL_VERSION => {
                Err(format!("protocol version {version}, this node speaks {PROTOCOL_VERSION}"))
            }
            Message::Hello { node_id, .. } if node_id == me => Err("connected to itself".to_string()),
            Message::Hello { node_id, listen, .. } => Ok((node_id, listen)),
            Message::Goodbye { reason } => Err(format!("peer refused: {reason}")),
            other => Err(format!("expected a hello, got {}", variant_name(&other))),
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Ok(Ok((peer, listen))) => Ok((framed, peer, listen)),
        Ok(Err(reason)) => {
            let bye = Message::Goodbye { reason: reason.clone() };
            let _ = tokio::time::timeout(Duration::from_millis(200), framed.send(frame::encode(&bye))).await;
            Err(reason)
        }
        Err(_) => Err("handshake timed out".into()),
    }
}

fn variant_name(msg: &Message) -> &'static str {
    match msg {
        Message::Hello { .. } => "hello",
        Message::Goodbye { .. } => "goodbye",
        Message::Request { .. } => "request",
        Message::Response { .. } => "response",
    }
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
        let (sink, stream) = framed.split();
        tokio::spawn(write_loop(sink, rx, conn.closed.clone()));
        tokio::spawn(read_loop(stream, conn.clone(), handler, limits));
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
        let frame = frame::encode(&Message::Request { id, body });
        let result = tokio::time::timeout(timeout, async {
            let _slot = self.slots.acquire().await.map_err(|_| ())?;
            self.out.send(frame).await.map_err(|_| ())?;
            rx.await.map_err(|_| ())
        })
        .await;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(())) => Err(Error::Network(format!("connection to {} closed during a request", self.peer_listen))),
            Err(_) => Err(Error::Timeout(format!("peer {} did not answer within {timeout:?}", self.peer_listen))),
        }
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<FramedStream, Bytes>,
    mut rx: mpsc::Receiver<Bytes>,
    closed: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            _ = closed.cancelled() => {
                // Flush what is queued (a goodbye, say), briefly, then stop.
                while let Ok(f) = rx.try_recv() {
                    if tokio::time::timeout(Duration::from_millis(200), sink.send(f)).await.is_err() { break; }
                }
                None
            }
        };
        let Some(frame) = frame else { break };
        if let Err(e) = sink.send(frame).await {
            tracing::debug!("write failed: {e}");
            break;
        }
    }
    closed.cancel();
    let _ = sink.close().await;
}

/// Why the reader stopped.
enum Stop {
    /// The peer closed, said goodbye, or this side closed the connection.
    Quiet,
    /// No complete frame arrived for the idle timeout.
    Idle,
    /// The peer broke the protocol.
    Bad(String),
}

async fn read_loop(
    mut stream: futures::stream::SplitStream<FramedStream>,
    conn: Arc<Connection>,
    handler: Arc<dyn Handler>,
    limits: Limits,
) {
    let serving = Arc::new(AtomicUsize::new(0));
    // Runs from the last complete frame: bytes of a frame that never
    // completes (a trickle) do not keep the connection.
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let stop = loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = conn.closed.cancelled() => break Stop::Quiet,
            _ = &mut idle => break Stop::Idle,
        };
        let frame = match next {
            None => break Stop::Quiet,
            Some(Ok(f)) => f,
            Some(Err(e)) => break Stop::Bad(format!("bad frame: {e}")),
        };
        match frame::decode(&frame) {
            Ok(Message::Request { id, body }) => {
                if serving.fetch_add(1, Ordering::SeqCst) >= MAX_SERVED_IN_FLIGHT {
                    break Stop::Bad(format!("more than {MAX_SERVED_IN_FLIGHT} requests in flight"));
                }
                let (handler, out, peer, serving) = (handler.clone(), conn.out.clone(), conn.peer, serving.clone());
                tokio::spawn(async move {
                    let body = handler.handle(peer, body).await;
                    let _ = out.send(frame::encode(&Message::Response { id, body })).await;
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
            Ok(Message::Hello { .. }) => break Stop::Bad("unexpected second hello".into()),
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
            tracing::warn!(peer = %conn.peer_listen, "closing connection: {reason}");
            Some(reason)
        }
    };
    if let Some(reason) = goodbye {
        let _ = conn.out.try_send(frame::encode(&Message::Goodbye { reason }));
    }
    conn.closed.cancel();
    // Wake every waiter: their senders drop with the map entries.
    conn.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
}
