//! One connection to a peer: the handshake, then many concurrent requests
//! each way, matched to responses by request id. Queues are bounded; every
//! request has a timeout; a malformed frame closes this connection only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::frame::{self, Message, Request, Response, MAGIC, PROTOCOL_VERSION};
use super::transport::BoxStream;
use crate::error::Error;
use crate::node::NodeId;

/// Frames waiting to be written on one connection.
const OUTBOX_FRAMES: usize = 16;
/// Requests from one peer served at once; the reader stops reading beyond it.
const INBOUND_CONCURRENCY: usize = 8;
/// How long the handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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
    pending: Pending,
    next_id: AtomicU64,
    closed: CancellationToken,
}

type FramedStream = Framed<BoxStream, LengthDelimitedCodec>;

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
    ) -> Arc<Connection> {
        let (out, rx) = mpsc::channel(OUTBOX_FRAMES);
        let conn = Arc::new(Connection {
            peer,
            peer_listen,
            outbound,
            out,
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
            closed: parent.child_token(),
        });
        let (sink, stream) = framed.split();
        tokio::spawn(write_loop(sink, rx, conn.closed.clone()));
        tokio::spawn(read_loop(stream, conn.clone(), handler));
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

async fn read_loop(
    mut stream: futures::stream::SplitStream<FramedStream>,
    conn: Arc<Connection>,
    handler: Arc<dyn Handler>,
) {
    let permits = Arc::new(Semaphore::new(INBOUND_CONCURRENCY));
    let reason = loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = conn.closed.cancelled() => break None,
        };
        let frame = match next {
            None => break None,
            Some(Ok(f)) => f,
            Some(Err(e)) => break Some(format!("bad frame: {e}")),
        };
        match frame::decode(&frame) {
            Ok(Message::Request { id, body }) => {
                let Ok(permit) = permits.clone().acquire_owned().await else { break None };
                let (handler, out, peer) = (handler.clone(), conn.out.clone(), conn.peer);
                tokio::spawn(async move {
                    let body = handler.handle(peer, body).await;
                    let _ = out.send(frame::encode(&Message::Response { id, body })).await;
                    drop(permit);
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
                break None;
            }
            Ok(Message::Hello { .. }) => break Some("unexpected second hello".into()),
            Err(e) => break Some(format!("malformed message: {e}")),
        }
    };
    if let Some(reason) = reason {
        tracing::warn!(peer = %conn.peer_listen, "closing connection: {reason}");
        let _ = conn.out.try_send(frame::encode(&Message::Goodbye { reason }));
    }
    conn.closed.cancel();
    // Wake every waiter: their senders drop with the map entries.
    conn.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
}
