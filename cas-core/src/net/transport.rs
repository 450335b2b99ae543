//! The byte-stream transport under the protocol. The node only sees this
//! trait; TCP is the implementation today, others (TLS, QUIC, in-memory)
//! plug in here.

use std::io;
use std::net::SocketAddr;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connected, bidirectional byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed stream.
pub type BoxStream = Box<dyn Stream>;

/// Accepts incoming streams.
pub trait Listener: Send + 'static {
    /// The address actually bound (port 0 resolved).
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Waits for the next incoming stream and its remote address.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
}

/// Opens listeners and outgoing streams.
pub trait Transport: Send + Sync + 'static {
    /// Binds `addr` (for TCP, `host:port`; port 0 picks a free one).
    fn listen<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
    /// Connects to a peer's advertised listen address.
    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>>;
}

/// Plain TCP with Nagle off.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpTransport;

struct TcpListener(tokio::net::TcpListener);

impl Listener for TcpListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, addr) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as BoxStream, addr))
        })
    }
}

/// Connections the kernel completes and queues for accept: a flood of
/// connections (which admission.rs turns over fast) must not fill the queue
/// and drop members' connection attempts, which would retry only after a
/// second. The kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

fn listen_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Transport for TcpTransport {
    fn listen<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let mut last = io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to nothing");
            for addr in tokio::net::lookup_host(addr).await? {
                match listen_tcp(addr) {
                    Ok(listener) => return Ok(Box::new(TcpListener(listener)) as Box<dyn Listener>),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }

    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}
