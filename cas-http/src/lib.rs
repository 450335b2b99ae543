//! The HTTP gateway of a CAS node: files by key (`GET /cas/{key}`, with
//! ranges), uploads (`POST /cas`), the node's status, peers and catalog
//! (`/api/...`), Prometheus metrics (`/metrics`), `/health`, and a web page
//! (`/`). `cas-core` knows nothing of HTTP; this crate translates.
//!
//! ```no_run
//! # async fn demo(node: cas_core::Node) -> cas_core::Result<()> {
//! let server = cas_http::serve(node, "127.0.0.1:0", cas_http::Options::default()).await?;
//! println!("http://{}/", server.address());
//! # Ok(()) }
//! ```

mod api;
mod files;
mod mime;
mod origin;
mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cas_core::{Error, ErrorKind, Node};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// How the gateway is served.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The bearer token that uploads, `/api/...` and `/metrics` require
    /// (`Authorization: Bearer TOKEN`); downloads by key, `/health` and the
    /// page stay open (a key is the capability). Required to bind an
    /// address other than loopback.
    pub token: Option<String>,
    /// Other names a TCP gateway answers to, besides its own address (on
    /// loopback also `127.0.0.1`, `localhost` and `[::1]`; on `0.0.0.0` or
    /// `::`, any IP address and `localhost`): `NAME` with any port or none (e.g. the
    /// public name of a reverse proxy in front of it), `NAME:PORT` with that
    /// port only, or an IP address. A request whose `Host` is none of these,
    /// or an upload whose `Origin` is another site, is refused with 403
    /// (pages of other sites in the user's browser cannot use the gateway;
    /// see the README). Not used on a Unix socket, which browsers cannot reach.
    pub allowed_hosts: Vec<String>,
}

impl Options {
    /// Options with the token read from `path` (surrounding whitespace
    /// removed); an empty or unreadable file is an error.
    pub fn with_token_file(path: impl AsRef<Path>) -> cas_core::Result<Options> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read the HTTP token file {}: {e}", path.display())))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Error::InvalidArgument(format!("the HTTP token file {} is empty", path.display())));
        }
        Ok(Options { token: Some(token.to_string()), ..Options::default() })
    }
}

/// A running gateway. It stops when [`Server::shutdown`] is called, when
/// it is dropped, or when its node is shut down.
pub struct Server {
    address: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Where it listens: `host:port` for TCP (the bound port, also when 0
    /// was asked), the socket's path for a Unix socket.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops accepting connections and waits until the server task ends
    /// (requests in flight are cut).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Gateway {
    pub(crate) node: Node,
    token: Option<Arc<str>>,
    /// The hosts a TCP gateway answers to; `None` on a Unix socket.
    hosts: Option<Arc<origin::Hosts>>,
    pub(crate) requests_in_progress: Arc<AtomicU64>,
    pub(crate) requests_done: Arc<AtomicU64>,
    /// Downloads answered 206 (byte ranges: a video seeking, a resumed download).
    pub(crate) partial_responses: Arc<AtomicU64>,
    /// Why the last downloads cut short were cut, by key (a few only): the
    /// status was sent before, so the client asks `/api/cut/{key}`.
    pub(crate) cut: Arc<std::sync::Mutex<Vec<(String, Error)>>>,
}

/// How many reasons for cut downloads are kept.
const CUT_KEPT: usize = 16;

impl Gateway {
    pub(crate) fn record_cut(&self, key: String, e: Error) {
        let mut cut = self.cut.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cut.retain(|(k, _)| *k != key);
        if cut.len() >= CUT_KEPT {
            cut.remove(0);
        }
        cut.push((key, e));
    }

    pub(crate) fn take_cut(&self, key: &str) -> Option<Error> {
        let mut cut = self.cut.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = cut.iter().position(|(k, _)| k == key)?;
        Some(cut.remove(at).1)
    }
}

/// Serves the gateway of `node` on TCP `address` (`HOST:PORT`; port 0 picks
/// a free one), or on a Unix socket for `unix:PATH` (as [`serve_unix`]). A
/// non-loopback TCP address requires `options.token`. It answers only
/// requests for its own address or `options.allowed_hosts` (see
/// [`Options::allowed_hosts`]).
pub async fn serve(node: Node, address: &str, options: Options) -> cas_core::Result<Server> {
    if let Some(path) = address.strip_prefix("unix:") {
        return serve_unix(node, path, options).await;
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| Error::InvalidArgument(format!("HTTP address {address:?} is not HOST:PORT: {e}")))?
        .collect();
    let Some(&addr) = addrs.first() else {
        return Err(Error::InvalidArgument(format!("HTTP address {address:?} resolves to nothing")));
    };
    if options.token.is_none() && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(Error::InvalidArgument(format!(
            "the HTTP gateway on {address} (not a loopback address) needs a bearer token for uploads and the API \
             (cas serve --http-token FILE); downloads by key stay open"
        )));
    }
    let allowed = origin::parse_allowed(&options.allowed_hosts)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Network(format!("cannot listen for HTTP on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::Network(format!("HTTP listener on {addr}: {e}")))?;
    let hosts = origin::Hosts::new(bound, allowed);
    Ok(spawn(node, listener, bound.to_string(), options, Some(hosts)))
}

/// Serves the gateway of `node` on the Unix socket `path` (mode 0600: only
/// its owner may connect), replacing a stale socket file there.
pub async fn serve_unix(node: Node, path: impl AsRef<Path>, options: Options) -> cas_core::Result<Server> {
    use std::os::unix::fs::PermissionsExt;
    let path: PathBuf = path.as_ref().to_path_buf();
    let context = |what: &str, e: std::io::Error| Error::Network(format!("{what} {}: {e}", path.display()));
    // Bound in a fresh 0700 directory, made 0600, then renamed into place:
    // nobody else can connect in between, and the process umask (shared by
    // the node's threads) is never touched.
    let parent = path.parent().unwrap_or(Path::new("."));
    let private = tempfile::Builder::new().prefix(".h").tempdir_in(parent).map_err(|e| context("cannot bind", e))?;
    let staging = private.path().join("s");
    let listener = tokio::net::UnixListener::bind(&staging).map_err(|e| context("cannot listen on", e))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600)).map_err(|e| context("chmod", e))?;
    std::fs::rename(&staging, &path).map_err(|e| context("cannot bind", e))?;
    Ok(spawn(node, listener, path.display().to_string(), options, None))
}

fn spawn<L>(node: Node, listener: L, address: String, options: Options, hosts: Option<origin::Hosts>) -> Server
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let gateway = Gateway {
        node: node.clone(),
        token: options.token.map(Arc::from),
        hosts: hosts.map(Arc::new),
        requests_in_progress: Arc::default(),
        requests_done: Arc::default(),
        partial_responses: Arc::default(),
        cut: Arc::default(),
    };
    let app = router(gateway);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let until = async move {
            tokio::select! {
                _ = stopped.cancelled() => {}
                _ = node.closed() => {}
            }
        };
        // Not graceful: a download in flight would hold the node's end.
        tokio::select! {
            result = axum::serve(listener, app) => {
                if let Err(e) = result {
                    tracing::warn!("the HTTP gateway stopped: {e}");
                }
            }
            _ = until => {}
        }
    });
    tracing::info!(address = %address, "HTTP gateway listening");
    Server { address, stop, task: Some(task) }
}

fn router(gateway: Gateway) -> Router {
    let guarded = Router::new()
        .route("/cas", axum::routing::post(files::upload))
        .route("/api/status", get(api::status))
        .route("/api/peers", get(api::peers))
        .route("/api/files", get(api::files))
        .route("/api/stat/{key}", get(api::stat))
        .route("/api/cut/{key}", get(files::cut))
        .route("/metrics", get(api::metrics))
        .route_layer(middleware::from_fn_with_state(gateway.clone(), authorize));
    Router::new()
        .route("/", get(api::page))
        .route("/health", get(api::health))
        .route("/cas/{key}", get(files::download))
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path; see GET / and /cas/{key}") })
        .layer(middleware::from_fn_with_state(gateway.clone(), count_requests))
        // Outermost: a request for another host or from another site is
        // refused before anything else (and not counted).
        .layer(middleware::from_fn_with_state(gateway.clone(), origin::only_own_origin))
        .with_state(gateway)
}

/// Counts requests in progress (until the response body is sent) and done,
/// other than `/api/status`, `/metrics` and `/health`.
async fn count_requests(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    struct InProgress(Gateway);
    impl Drop for InProgress {
        fn drop(&mut self) {
            self.0.requests_in_progress.fetch_sub(1, Ordering::Relaxed);
            self.0.requests_done.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Questions about the node itself are not work done for a client.
    if matches!(request.uri().path(), "/api/status" | "/metrics" | "/health") {
        return next.run(request).await;
    }
    gateway.requests_in_progress.fetch_add(1, Ordering::Relaxed);
    let guard = InProgress(gateway);
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    // The wrapped body no longer tells its size: say it in the header.
    let sized = !matches!(parts.status, StatusCode::NOT_MODIFIED | StatusCode::NO_CONTENT);
    if let (true, Some(len), false) =
        (sized, axum::body::HttpBody::size_hint(&body).exact(), parts.headers.contains_key(header::CONTENT_LENGTH))
    {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let body = body.into_data_stream().map(move |piece| {
        let _held = &guard;
        piece
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// Refuses a request without the gateway's bearer token, if it has one.
async fn authorize(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    if let Some(token) = &gateway.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
            let mut response =
                error(StatusCode::UNAUTHORIZED, "this needs the gateway's token: Authorization: Bearer TOKEN");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON error body `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The status for an error of the node, and a JSON body that names its kind.
pub(crate) fn node_error(e: Error) -> Response {
    let (status, kind) = match e.kind() {
        ErrorKind::InvalidKey => (StatusCode::BAD_REQUEST, "invalid_key"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        ErrorKind::Input => (StatusCode::BAD_REQUEST, "input"),
        ErrorKind::Replication => (StatusCode::SERVICE_UNAVAILABLE, "replication"),
        ErrorKind::Network => (StatusCode::SERVICE_UNAVAILABLE, "network"),
        ErrorKind::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        ErrorKind::Closed => (StatusCode::SERVICE_UNAVAILABLE, "closed"),
        ErrorKind::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
        ErrorKind::Integrity => (StatusCode::BAD_GATEWAY, "integrity"),
        ErrorKind::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, "cancelled"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (status, Json(serde_json::json!({ "error": e.to_string(), "kind": kind }))).into_response()
}
