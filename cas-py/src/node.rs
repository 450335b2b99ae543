//! `cas.Node`: a running node, shared by any number of Python threads.

use std::path::PathBuf;
use std::sync::Mutex;

use cas_core::{Config, Key};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PyTuple};

use crate::cancel::Cancel;
use crate::errors::{closed, to_pyerr};
use crate::info::{FileEntry, Peer, Stat, Stats};
use crate::reader::Reader;
use crate::wait::{wait, wait_cancellable, Callback};

/// A CAS node on a data directory. Use it as a context manager, or call
/// `close()`; every method may be called from several threads at once, and
/// none holds the GIL while it waits.
#[pyclass(frozen, module = "cas")]
pub struct Node {
    /// `None` once closed.
    inner: Mutex<Option<cas_core::Node>>,
    data_dir: PathBuf,
    /// HTTP gateways started by `serve_http`, stopped by `close`.
    servers: Mutex<Vec<cas_http::Server>>,
}

impl Node {
    /// The running node, or `ClosedError`.
    pub(crate) fn node(&self) -> PyResult<cas_core::Node> {
        self.lock().clone().ok_or_else(|| closed("this cas.Node"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<cas_core::Node>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Parses a key string (`InvalidKeyError` when malformed).
fn parse_key(key: &str) -> PyResult<Key> {
    Key::parse_input(key).map_err(|e| to_pyerr(e.into()))
}

/// A 32-byte key argument, or a clear error naming it.
fn key32(name: &str, bytes: &[u8]) -> PyResult<[u8; 32]> {
    bytes.try_into().map_err(|_| {
        to_pyerr(cas_core::Error::InvalidArgument(format!("{name} must be exactly 32 bytes, got {}", bytes.len())))
    })
}

/// A duration argument in seconds (a float); its range is checked at start.
fn seconds_arg(name: &str, seconds: f64) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(seconds).map_err(|_| {
        to_pyerr(cas_core::Error::InvalidArgument(format!("{name} {seconds} s is not a duration in seconds")))
    })
}

#[pymethods]
impl Node {
    /// Opens `data_dir` (creating it if needed, and locking it against other
    /// processes) and starts the node.
    #[new]
    #[pyo3(signature = (data_dir, *, listen=None, bootstrap=Vec::new(), replicas=3, min_replicas=0,
                        chunk_size=None, capacity=None, secret=None, fsync=true, network_key=None,
                        advertise=None, gossip_interval=None, request_timeout=None, suspect_after=None,
                        dead_after=None, forget_after=None, repair_interval=None, keep_fetched=true,
                        parallelism=0, scrub_rate=None, idle_timeout=None, max_get_bytes=None,
                        memory_budget=None, placement_diversity=None,
                        max_handshaking=None, max_handshaking_per_address=None, max_handshaking_per_prefix=None,
                        first_message_timeout=None, handshake_timeout=None, max_inbound=None,
                        max_inbound_per_address=None, max_inbound_per_prefix=None, bad_gossip_strikes=None,
                        liar_penalty=None,
                        _pause_before_commit=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        data_dir: PathBuf,
        listen: Option<String>,
        bootstrap: Vec<String>,
        replicas: usize,
        min_replicas: usize,
        chunk_size: Option<u32>,
        capacity: Option<u64>,
        secret: Option<Vec<u8>>,
        fsync: bool,
        network_key: Option<Vec<u8>>,
        advertise: Option<String>,
        gossip_interval: Option<f64>,
        request_timeout: Option<f64>,
        suspect_after: Option<f64>,
        dead_after: Option<f64>,
        forget_after: Option<f64>,
        repair_interval: Option<f64>,
        keep_fetched: bool,
        parallelism: usize,
        scrub_rate: Option<u64>,
        idle_timeout: Option<f64>,
        max_get_bytes: Option<u64>,
        memory_budget: Option<u64>,
        placement_diversity: Option<&str>,
        max_handshaking: Option<usize>,
        max_handshaking_per_address: Option<usize>,
        max_handshaking_per_prefix: Option<usize>,
        first_message_timeout: Option<f64>,
        handshake_timeout: Option<f64>,
        max_inbound: Option<usize>,
        max_inbound_per_address: Option<usize>,
        max_inbound_per_prefix: Option<usize>,
        bad_gossip_strikes: Option<u64>,
        liar_penalty: Option<f64>,
        _pause_before_commit: Option<PathBuf>,
    ) -> PyResult<Node> {
        let mut config = Config::new(&data_dir);
        config.listen = listen;
        config.bootstrap = bootstrap;
        config.advertise = advertise;
        config.network_key = network_key.map(|k| key32("network_key", &k)).transpose()?;
        config.replicas = replicas;
        config.min_replicas = min_replicas;
        if let Some(size) = chunk_size {
            config.chunk_size = size;
        }
        config.capacity = capacity;
        config.fsync = fsync;
        // A test hook (see cas_core::config::Faults), deliberately undocumented.
        config.faults.pause_before_commit = _pause_before_commit;
        config.secret = secret.map(|s| key32("secret", &s)).transpose()?;
        config.keep_fetched = keep_fetched;
        config.parallelism = parallelism;
        if let Some(rate) = scrub_rate {
            config.scrub_rate = rate;
        }
        if let Some(bytes) = max_get_bytes {
            config.max_get_bytes = bytes;
        }
        if let Some(bytes) = memory_budget {
            // Past usize only on a 32-bit host, where no budget that large fits.
            config.memory_budget = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(diversity) = placement_diversity {
            config.placement_diversity = diversity.parse().map_err(crate::errors::to_pyerr)?;
        }
        for (name, seconds, field) in [
            ("gossip_interval", gossip_interval, &mut config.gossip_interval),
            ("request_timeout", request_timeout, &mut config.request_timeout),
            ("suspect_after", suspect_after, &mut config.suspect_after),
            ("dead_after", dead_after, &mut config.dead_after),
            ("forget_after", forget_after, &mut config.forget_after),
            ("repair_interval", repair_interval, &mut config.repair_interval),
            ("idle_timeout", idle_timeout, &mut config.idle_timeout),
        ] {
            if let Some(seconds) = seconds {
                *field = seconds_arg(name, seconds)?;
            }
        }
        let limits = &mut config.limits;
        for (count, field) in [
            (max_handshaking, &mut limits.max_handshaking),
            (max_handshaking_per_address, &mut limits.max_handshaking_per_address),
            (max_handshaking_per_prefix, &mut limits.max_handshaking_per_prefix),
            (max_inbound, &mut limits.max_inbound),
            (max_inbound_per_address, &mut limits.max_inbound_per_address),
            (max_inbound_per_prefix, &mut limits.max_inbound_per_prefix),
        ] {
            *field = count.unwrap_or(*field);
        }
        if let Some(strikes) = bad_gossip_strikes {
            limits.bad_gossip_strikes = strikes.try_into().map_err(|_| {
                to_pyerr(cas_core::Error::InvalidArgument(format!(
                    "bad_gossip_strikes {strikes} is out of range: 1 to {}",
                    u32::MAX
                )))
            })?;
        }
        for (name, seconds, field) in [
            ("first_message_timeout", first_message_timeout, &mut limits.first_message_timeout),
            ("handshake_timeout", handshake_timeout, &mut limits.handshake_timeout),
            ("liar_penalty", liar_penalty, &mut limits.liar_penalty),
        ] {
            if let Some(seconds) = seconds {
                *field = seconds_arg(name, seconds)?;
            }
        }
        let node = wait(py, None, cas_core::Node::start(config))?;
        Ok(Node { inner: Mutex::new(Some(node)), data_dir, servers: Mutex::default() })
    }

    /// Stores the file at `path`; returns its key, a `cas.PutResult`. A
    /// callback that raises, or Ctrl-C, stops the put (cas_core's
    /// cancellation, as for `get`).
    #[pyo3(signature = (path, progress=None))]
    fn put<'py>(&self, py: Python<'py>, path: PathBuf, progress: Option<Py<PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        let cancel = cas_core::Cancel::new();
        let callback = Callback::new(progress, Some(&cancel));
        let progress = callback.as_ref().map(|c| c.progress());
        let put = node.put_file_cancellable(&path, progress, &cancel);
        let report = wait_cancellable(py, callback.as_ref(), Some(&cancel), put)?;
        put_result(py, &node, &report)
    }

    /// Stores `data` (bytes, bytearray or any buffer); returns its key.
    /// `name` labels it in `files()`.
    #[pyo3(signature = (data, progress=None, name=None))]
    fn put_bytes<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'_, PyAny>,
        progress: Option<Py<PyAny>>,
        name: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        // Through memoryview, not bytes(data): bytes(5) is five zero bytes and
        // bytes([1, 2]) copies a list; only buffers (TypeError otherwise).
        let bytes = match data.cast::<PyBytes>() {
            Ok(b) => b.clone(),
            Err(_) => PyMemoryView::from(data)?.call_method0("tobytes")?.cast_into::<PyBytes>()?,
        };
        let mut slice: &[u8] = bytes.as_bytes();
        let size = slice.len() as u64;
        let cancel = cas_core::Cancel::new();
        let callback = Callback::new(progress, Some(&cancel));
        let progress = callback.as_ref().map(|c| c.progress());
        let name = name.unwrap_or_default();
        let put = node.put_reader_named(&mut slice, size, progress, &name, &cancel);
        let report = wait_cancellable(py, callback.as_ref(), Some(&cancel), put)?;
        put_result(py, &node, &report)
    }

    /// Writes the file of `key` to `dest` (replacing it); returns its size.
    /// On failure (a callback that raises, Ctrl-C, `cancel`) nothing is left
    /// at `dest`.
    #[pyo3(signature = (key, dest, progress=None, cancel=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &str,
        dest: PathBuf,
        progress: Option<Py<PyAny>>,
        cancel: Option<Py<Cancel>>,
    ) -> PyResult<u64> {
        let key = parse_key(key)?;
        let node = self.node()?;
        let cancel = cancel.map_or_else(cas_core::Cancel::new, |c| c.get().inner.clone());
        let callback = Callback::new(progress, Some(&cancel));
        let progress = callback.as_ref().map(|c| c.progress());
        let get = node.get_file_cancellable(&key, &dest, progress, &cancel);
        wait_cancellable(py, callback.as_ref(), Some(&cancel), get)
    }

    /// Returns the whole file of `key` as bytes.
    fn get_bytes<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyBytes>> {
        let key = parse_key(key)?;
        let node = self.node()?;
        let data = wait(py, None, node.get_bytes(&key))?;
        Ok(PyBytes::new(py, &data))
    }

    /// Opens the file of `key` for reading: a seekable, read-only binary
    /// file (`io.RawIOBase`) that fetches only the chunks it reads.
    fn open<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let key = parse_key(key)?;
        let node = self.node()?;
        let reader = wait(py, None, node.open(&key))?;
        let native = Bound::new(py, Reader::new(reader, node.config().max_get_bytes))?;
        crate::python_attr(py, "cas.file", "File")?.call1((native,))
    }

    /// Size, chunks, and which nodes hold each blob of `key`.
    fn stat(&self, py: Python<'_>, key: &str) -> PyResult<Stat> {
        let parsed = parse_key(key)?;
        let node = self.node()?;
        let info = wait(py, None, node.stat(&parsed))?;
        Ok(Stat::new(key.to_string(), info))
    }

    /// Every peer this node knows of, with its state.
    fn peers(&self) -> PyResult<Vec<Peer>> {
        Ok(self.node()?.peers().into_iter().map(Peer::from).collect())
    }

    /// Bootstrap addresses the node is still trying to reach.
    fn unreachable_bootstrap(&self) -> PyResult<Vec<String>> {
        Ok(self.node()?.unreachable_bootstrap())
    }

    /// Bootstrap addresses (and saved peers) whose node refused this node's network key.
    fn refused_bootstrap(&self) -> PyResult<Vec<String>> {
        Ok(self.node()?.refused_bootstrap())
    }

    /// The files this node put, oldest first (a lost key can be found here).
    fn files(&self, py: Python<'_>) -> PyResult<Vec<FileEntry>> {
        let node = self.node()?;
        let files = wait(py, None, async move { node.files().await })?;
        Ok(files.into_iter().map(FileEntry::from).collect())
    }

    /// Serves this node over HTTP (the gateway: files by key, uploads, the
    /// API, metrics and the web page) until it is closed; returns the bound
    /// `host:port` (or, for `unix:PATH`, the socket's path). An address
    /// other than loopback needs `token_file`, a file holding the bearer
    /// token that uploads and the API then require. It answers only
    /// requests for its own address (and localhost on loopback) or one of
    /// `hosts`, other names it may be reached by (`NAME` or `NAME:PORT`).
    #[pyo3(signature = (address="127.0.0.1:0", *, token_file=None, hosts=None))]
    fn serve_http(
        &self,
        py: Python<'_>,
        address: &str,
        token_file: Option<PathBuf>,
        hosts: Option<Vec<String>>,
    ) -> PyResult<String> {
        let node = self.node()?;
        let mut options = match token_file {
            Some(path) => cas_http::Options::with_token_file(path).map_err(to_pyerr)?,
            None => cas_http::Options::default(),
        };
        options.allowed_hosts = hosts.unwrap_or_default();
        let server = wait(py, None, cas_http::serve(node, address, options))?;
        let bound = server.address().to_string();
        self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(server);
        Ok(bound)
    }

    /// Counters since the node started.
    fn stats(&self) -> PyResult<Stats> {
        Ok(self.node()?.stats().into())
    }

    /// The address peers reach this node at (`"host:port"`), or `None`
    /// without networking.
    #[getter]
    fn address(&self) -> PyResult<Option<String>> {
        Ok(self.node()?.address().map(|a| a.to_string()))
    }

    /// This node's persistent id (hex).
    #[getter]
    fn id(&self) -> PyResult<String> {
        Ok(self.node()?.id().to_string())
    }

    /// The data directory.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }

    /// Stops the node and releases its data directory. Calling it again
    /// does nothing; any other use afterwards raises `ClosedError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let node = self.lock().take();
        let servers = std::mem::take(&mut *self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        if !servers.is_empty() {
            wait(py, None, async move {
                for server in servers {
                    server.shutdown().await;
                }
                Ok(())
            })?;
        }
        if let Some(node) = node {
            wait(py, None, async move {
                node.shutdown().await;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the node; an exception from the `with` body propagates.
    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match self.lock().as_ref() {
            Some(node) => format!(
                "cas.Node(data_dir={:?}, id={:.12}…, address={})",
                self.data_dir.display().to_string(),
                node.id().to_string(),
                node.address().map_or("None".to_string(), |a| format!("{:?}", a.to_string()))
            ),
            None => format!("cas.Node(data_dir={:?}, closed)", self.data_dir.display().to_string()),
        }
    }
}

/// A `cas.PutResult`: the key as a `str`, with what the put did.
fn put_result<'py>(
    py: Python<'py>,
    node: &cas_core::Node,
    report: &cas_core::PutReport,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("size", report.size)?;
    kwargs.set_item("chunks", report.chunks)?;
    kwargs.set_item("new_blobs", report.new_blobs)?;
    kwargs.set_item("replicas", report.replicas)?;
    kwargs.set_item("replicas_wanted", node.config().replicas)?;
    py.import("cas.result")?.getattr("PutResult")?.call((report.key.to_string(),), Some(&kwargs))
}
