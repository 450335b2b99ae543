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
            tune(&stream)?;
            Ok((Box::new(stream) as BoxStream, addr))
        })
    }
}

/// How long sent bytes may stay unacknowledged before the kernel gives up
/// on a connection (TCP_USER_TIMEOUT), and how long an idle one goes
/// before keep-alive probes start (then every KEEPALIVE_INTERVAL, 3 times).
/// A path that died (a partition, a host gone without a word) is then
/// noticed in seconds, and the next request dials again; without them, a
/// request on it waits for TCP's retransmission back-off, which after a
/// 30 s partition means another 30 s or more. A live link, however slow,
/// acknowledges what it receives.
const USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(20);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Nagle off, and the timeouts above.
fn tune(stream: &tokio::net::TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    stream.set_nodelay(true)?;
    let fd = stream.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| -> io::Result<()> {
        // SAFETY: fd is the open socket of `stream`, value a c_int that lives for the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, USER_TIMEOUT.as_millis() as libc::c_int)?;
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE.as_secs() as libc::c_int)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, KEEPALIVE_INTERVAL.as_secs() as libc::c_int)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3)
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
            tune(&stream)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}
