//! An in-process transport over tokio duplex pipes: no sockets, for tests
//! and simulations. Nodes sharing one `MemoryTransport` form a network;
//! addresses are only names (port 0 picks the next free one).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::transport::{BoxStream, Listener, Transport};

/// Bytes buffered in each direction of an in-memory connection.
const PIPE_BUFFER: usize = 256 * 1024;

type Incoming = mpsc::Sender<(BoxStream, SocketAddr)>;

/// A private network of in-memory listeners.
#[derive(Clone, Default)]
pub struct MemoryTransport {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    listeners: HashMap<SocketAddr, Incoming>,
    next_port: u16,
}

struct MemoryListener {
    addr: SocketAddr,
    incoming: mpsc::Receiver<(BoxStream, SocketAddr)>,
    transport: MemoryTransport,
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        self.transport.inner.lock().unwrap_or_else(|e| e.into_inner()).listeners.remove(&self.addr);
    }
}

impl Listener for MemoryListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            self.incoming.recv().await.ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "transport closed"))
        })
    }
}

impl Transport for MemoryTransport {
    fn listen<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let mut addr: SocketAddr =
                addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
            let mut reg = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if addr.port() == 0 {
                reg.next_port = reg.next_port.max(1000) + 1;
                addr.set_port(reg.next_port);
            }
            if reg.listeners.contains_key(&addr) {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, format!("{addr} is in use")));
            }
            let (tx, rx) = mpsc::channel(16);
            reg.listeners.insert(addr, tx);
            Ok(Box::new(MemoryListener { addr, incoming: rx, transport: self.clone() }) as Box<dyn Listener>)
        })
    }

    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let target = self.inner.lock().unwrap_or_else(|e| e.into_inner()).listeners.get(&addr).cloned();
            let target = target.ok_or_else(|| {
                io::Error::new(io::ErrorKind::ConnectionRefused, format!("nothing listens at {addr}"))
            })?;
            let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
            let from: SocketAddr = ([127, 0, 0, 1], 0).into();
            target
                .send((Box::new(theirs), from))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, format!("{addr} stopped listening")))?;
            Ok(Box::new(ours) as BoxStream)
        })
    }
}
