//! The gateway against real nodes on 127.0.0.1 (port 0), through raw
//! HTTP/1.1 over TCP and a Unix socket.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cas_core::{Config, Key, Node, PeerState};
use cas_http::{serve, serve_unix, Options, Server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection (`Connection: close`), with `Host:
/// host` unless `headers` name another.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    read_answer(stream, method == "HEAD").await
}

async fn read_answer<S: AsyncRead + Unpin>(mut stream: S, head: bool) -> Answer {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await.expect("answer in time").unwrap();
    parse(&raw, head)
}

/// A request written out whole, as given.
async fn raw_request(server: &Server, request: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(stream, false).await
}

fn parse(raw: &[u8], head: bool) -> Answer {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let text = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .map(|l| l.split_once(':').unwrap())
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") {
        body = dechunk(&body);
    } else if let (Some(len), false) = (headers.get("content-length"), head) {
        assert_eq!(body.len(), len.parse::<usize>().unwrap(), "body length = Content-Length");
    }
    Answer { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 4 + size..];
    }
}

async fn http(server: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let stream = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    exchange(stream, server.address(), method, path, headers, body).await
}

/// Bytes that never repeat a chunk (xorshift).
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn config(dir: &tempfile::TempDir, name: &str) -> Config {
    let mut config = Config::new(dir.path().join(name));
    config.fsync = false;
    config.chunk_size = 64 * 1024;
    config
}

async fn lone_node(dir: &tempfile::TempDir) -> (Node, Server) {
    let node = Node::start(config(dir, "a")).await.unwrap();
    let server = serve(node.clone(), "127.0.0.1:0", Options::default()).await.unwrap();
    (node, server)
}

/// Polls `done` every 20 ms for at most 20 s.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_whole_files_with_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend(data(300_000, 1));
    let key = node.put_bytes(&pdf).await.unwrap().key;

    let a = http(&server, "GET", &format!("/cas/{key}"), &[], b"").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, pdf);
    assert_eq!(a.header("content-length"), Some("300009"));
    assert_eq!(a.header("content-type"), Some("application/pdf"), "sniffed from the first bytes");
    assert_eq!(a.header("etag").unwrap(), format!("\"{}\"", key.manifest_id));
    assert_eq!(a.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(a.header("accept-ranges"), Some("bytes"));
    assert_eq!(a.header("content-disposition"), None);

    let a = http(&server, "GET", &format!("/cas/{key}?filename=Le%20film.mp4"), &[], b"").await;
    assert_eq!(a.header("content-type"), Some("video/mp4"), "the name wins");
    assert_eq!(
        a.header("content-disposition"),
        Some("inline; filename=\"Le film.mp4\"; filename*=UTF-8''Le%20film.mp4")
    );
    assert_eq!(a.body, pdf);

    let head = http(&server, "HEAD", &format!("/cas/{key}?name=x.txt"), &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("300009"));
    assert_eq!(head.header("content-type"), Some("text/plain; charset=utf-8"));

    let etag = a.header("etag").unwrap().to_string();
    let a = http(&server, "GET", &format!("/cas/{key}"), &[("If-None-Match", &etag)], b"").await;
    assert_eq!(a.status, 304);
    assert!(a.body.is_empty());

    let empty = node.put_bytes(b"").await.unwrap().key;
    let a = http(&server, "GET", &format!("/cas/{empty}"), &[], b"").await;
    assert_eq!((a.status, a.body.len()), (200, 0));
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_over_max_get_bytes_are_streamed_whatever_their_claimed_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, "a");
    config.max_get_bytes = 100;
    let node = Node::start(config).await.unwrap();
    let server = serve(node.clone(), "127.0.0.1:0", Options::default()).await.unwrap();
    // Larger than max_get_bytes, and than the bytes its type is sniffed from.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend(data(1000, 2));
    let key = node.put_bytes(&pdf).await.unwrap().key;
    let a = http(&server, "GET", &format!("/cas/{key}"), &[], b"").await;
    assert_eq!((a.status, a.header("content-type")), (200, Some("application/pdf")), "{}", a.text());
    assert_eq!(a.body, pdf);

    // 4 TiB of zeros (one real chunk): its length is announced, its last
    // bytes served, and nothing is sized from its claim.
    let size = cas_core::format::MAX_CHUNKS * cas_core::format::MAX_CHUNK_SIZE as u64;
    let zeros = cas_core::testing::put_zeros(&node, size).unwrap();
    let head = http(&server, "HEAD", &format!("/cas/{zeros}"), &[], b"").await;
    assert_eq!((head.status, head.header("content-length")), (200, Some(size.to_string().as_str())));
    let a = http(&server, "GET", &format!("/cas/{zeros}"), &[("Range", "bytes=-10")], b"").await;
    assert_eq!((a.status, a.body), (206, vec![0u8; 10]));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_answer_exactly_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let file = data(5 * 65536 + 123, 2);
    let size = file.len() as u64;
    let key = node.put_bytes(&file).await.unwrap().key;
    let path = format!("/cas/{key}");
    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=65535-65536", 65535, 65537),
        ("bytes=100000-", 100000, size),
        ("bytes=-10", size - 10, size),
        ("bytes=70000-999999999", 70000, size),
        ("bytes=0-", 0, size),
    ] {
        let a = http(&server, "GET", &path, &[("Range", range)], b"").await;
        assert_eq!(a.status, 206, "{range}");
        assert_eq!(a.body, &file[start as usize..end as usize], "{range}");
        assert_eq!(a.header("content-range").unwrap(), format!("bytes {start}-{}/{size}", end - 1));
        assert_eq!(a.header("content-length").unwrap(), (end - start).to_string());
    }
    for range in [format!("bytes={size}-"), "bytes=9-3".into(), "bytes=0-1,5-6".into(), "pages=1-2".into()] {
        let a = http(&server, "GET", &path, &[("Range", &range)], b"").await;
        assert_eq!(a.status, 416, "{range}");
        assert!(a.json()["error"].as_str().unwrap().contains("range"));
        assert_eq!(a.header("content-range").unwrap(), format!("bytes */{size}"));
    }
    let metrics = http(&server, "GET", "/metrics", &[], b"").await.text();
    assert!(metrics.lines().any(|l| l == "cas_http_partial_responses_total 6"), "{metrics}");
    // A stale If-Range asks for the whole file.
    let a = http(&server, "GET", &path, &[("Range", "bytes=0-0"), ("If-Range", "\"other\"")], b"").await;
    assert_eq!((a.status, a.body.len()), (200, file.len()));
    node.shutdown().await;
}

/// A node that holds nothing serves a range of a file another node stored:
/// it fetches (and keeps) only the manifest and the chunks the range covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_fetches_only_the_chunks_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let network_key = cas_core::generate_network_key();
    let mut a = config(&dir, "a");
    a.listen = Some("127.0.0.1:0".into());
    a.network_key = Some(network_key);
    a.gossip_interval = Duration::from_millis(100);
    a.repair_interval = Duration::from_secs(3600);
    let a = Node::start(a).await.unwrap();
    let file = data(10 * 65536, 3);
    let key = a.put_bytes(&file).await.unwrap().key;

    let mut b = config(&dir, "b");
    b.listen = Some("127.0.0.1:0".into());
    b.network_key = Some(network_key);
    b.gossip_interval = Duration::from_millis(100);
    b.repair_interval = Duration::from_secs(3600);
    b.bootstrap = vec![a.address().unwrap().to_string()];
    let b = Node::start(b).await.unwrap();
    eventually("b sees a alive", async || b.peers().iter().any(|p| p.state == PeerState::Alive)).await;
    assert_eq!(b.stats().blobs_stored, 0);
    let server = serve(b.clone(), "127.0.0.1:0", Options::default()).await.unwrap();

    // Chunks 3 and 4 of 10.
    let answer = http(&server, "GET", &format!("/cas/{key}"), &[("Range", "bytes=200000-300000")], b"").await;
    assert_eq!(answer.status, 206);
    assert_eq!(answer.body, &file[200000..300001]);
    assert_eq!(b.stats().blobs_stored, 3, "the manifest and the two chunks covered");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_store_the_body_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let file = data(1_000_000, 4);
    let a = http(&server, "POST", "/cas?name=notes.bin", &[], &file).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let reply = a.json();
    let key: Key = reply["key"].as_str().unwrap().parse().unwrap();
    assert_eq!(reply["size"], 1_000_000);
    assert_eq!(reply["replicas"], 0);
    assert_eq!(node.get_bytes(&key).await.unwrap(), file);
    let files = node.files().await.unwrap();
    assert_eq!((files.len(), files[0].name.as_str(), files[0].key), (1, "notes.bin", key));

    let listed = http(&server, "GET", "/api/files", &[], b"").await.json();
    assert_eq!(listed["files"][0]["key"], key.to_string());
    assert_eq!(listed["files"][0]["name"], "notes.bin");
    assert_eq!(listed["files"][0]["size"], 1_000_000);
    node.shutdown().await;
}

/// A client that sends part of its body and goes away stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_upload_stores_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let mut stream = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    let head =
        format!("POST /cas?name=cut.bin HTTP/1.1\r\nHost: {}\r\nContent-Length: 10000000\r\n\r\n", server.address());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data(300_000, 5)).await.unwrap();
    let status = || async { http(&server, "GET", "/api/status", &[], b"").await.json() };
    eventually("the upload is in progress", async || status().await["requests_in_progress"] == 1).await;
    drop(stream);
    eventually("the upload is over", async || status().await["requests_in_progress"] == 0).await;
    assert!(node.files().await.unwrap().is_empty());
    // Whole chunks sealed before the cut may stay, as blobs named by their hash.
    let leftovers: Vec<_> =
        walk(node.data_dir()).into_iter().filter(|p| p.contains("tmp") || p.starts_with('.')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    node.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let a = http(&server, "GET", "/cas/cas1-not-a-key", &[], b"").await;
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().contains("invalid key"));

    let unknown = Key { manifest_id: cas_core::format::BlobId([7; 32]), manifest_key: [1; 32] };
    let a = http(&server, "GET", &format!("/cas/{unknown}"), &[], b"").await;
    assert_eq!(a.status, 404);
    assert!(a.json()["error"].as_str().unwrap().contains("not found"));
    let a = http(&server, "HEAD", &format!("/cas/{unknown}"), &[], b"").await;
    assert_eq!(a.status, 404);

    let a = http(&server, "GET", "/nothing/here", &[], b"").await;
    assert_eq!(a.status, 404);
    assert!(a.json()["error"].is_string());
    node.shutdown().await;

    // Too few peers for min_replicas: 503, and no file.
    let mut c = config(&dir, "c");
    c.listen = Some("127.0.0.1:0".into());
    c.min_replicas = 2;
    let node = Node::start(c).await.unwrap();
    let server = serve(node.clone(), "127.0.0.1:0", Options::default()).await.unwrap();
    let a = http(&server, "POST", "/cas", &[], &data(1000, 6)).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("replica"));
    assert!(node.files().await.unwrap().is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_peers_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    node.put_bytes(&data(200_000, 7)).await.unwrap();
    let health = http(&server, "GET", "/health", &[], b"").await;
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));

    let status = http(&server, "GET", "/api/status", &[], b"").await.json();
    assert_eq!(status["id"], node.id().to_string());
    assert_eq!(status["stats"]["blobs_stored"], node.stats().blobs_stored);
    assert_eq!(status["requests_in_progress"], 0, "status is not counted");
    assert_eq!(status["pid"], std::process::id());

    let peers = http(&server, "GET", "/api/peers", &[], b"").await.json();
    assert_eq!(peers["self"]["id"], node.id().to_string());
    assert_eq!(peers["peers"].as_array().unwrap().len(), 0);

    let metrics = http(&server, "GET", "/metrics", &[], b"").await;
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    let stats = node.stats();
    for line in [
        format!("cas_stored_bytes {}", stats.bytes_stored),
        format!("cas_stored_blobs {}", stats.blobs_stored),
        "cas_sent_bytes_total 0".into(),
        format!("cas_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        "# TYPE cas_put_duration_seconds histogram".into(),
        "cas_fetch_duration_seconds_count 0".into(),
        "cas_scrub_restored_total 0".into(),
        "cas_peers{state=\"alive\"} 0".into(),
        "cas_http_requests_in_progress 0".into(),
        "# TYPE cas_request_timeouts_total counter".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
    }
    for name in ["received_bytes", "requests_served", "verification_failures", "blobs_repaired"] {
        assert!(text.contains(&format!("\ncas_{name}_total ")), "{name}");
    }
    for name in ["peers_alive", "scrubbed_blobs_total", "scrubbed_bytes_total", "scrub_corrupt_total"] {
        assert!(text.contains(&format!("\ncas_{name} ")), "{name}");
    }
    let page = http(&server, "GET", "/", &[], b"").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_addresses_need_a_token_for_uploads_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(&dir, "a")).await.unwrap();
    let refused = serve(node.clone(), "0.0.0.0:0", Options::default()).await.err().expect("refused");
    assert!(refused.to_string().contains("token"), "{refused}");

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let options = Options::with_token_file(&token_file).unwrap();
    let server = serve(node.clone(), "0.0.0.0:0", options).await.unwrap();
    let port = server.address().rsplit_once(':').unwrap().1;
    let local = format!("127.0.0.1:{port}");
    let call = async |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        exchange(tokio::net::TcpStream::connect(&local).await.unwrap(), &local, method, path, headers, body).await
    };
    let file = data(5000, 8);
    for (method, path) in [("POST", "/cas"), ("GET", "/api/status"), ("GET", "/api/files"), ("GET", "/metrics")] {
        let a = call(method, path, &[], &file).await;
        assert_eq!(a.status, 401, "{method} {path}");
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        let a = call(method, path, &[("Authorization", "Bearer wrong!")], &file).await;
        assert_eq!(a.status, 401, "{method} {path}");
    }
    let a = call("POST", "/cas", &[("Authorization", "Bearer s3cret")], &file).await;
    assert_eq!(a.status, 200);
    let key = a.json()["key"].as_str().unwrap().to_string();
    let a = call("GET", "/api/status", &[("Authorization", "Bearer s3cret")], b"").await;
    assert_eq!(a.status, 200);
    // Downloads by key and health stay open.
    let a = call("GET", &format!("/cas/{key}"), &[], b"").await;
    assert_eq!((a.status, a.body), (200, file));
    assert_eq!(call("GET", "/health", &[], b"").await.status, 200);
    // Bound to every address: any IP literal with the port, and localhost;
    // not a name (it could be rebound to this machine).
    for (host, status) in
        [(format!("192.0.2.7:{port}"), 200), (format!("localhost:{port}"), 200), (format!("nas.example:{port}"), 403)]
    {
        assert_eq!(call("GET", "/health", &[("Host", &host)], b"").await.status, status, "{host}");
    }

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    assert!(Options::with_token_file(&empty).is_err());
    assert!(Options::with_token_file(dir.path().join("absent")).is_err());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_an_owner_only_unix_socket_until_the_node_stops() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(&dir, "a")).await.unwrap();
    let path = dir.path().join("http.sock");
    std::fs::write(&path, b"stale").unwrap();
    let server = serve_unix(node.clone(), &path, Options::default()).await.unwrap();
    assert_eq!(server.address(), path.display().to_string());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let a = exchange(stream, "cas", "POST", "/cas?name=x", &[], b"hello").await;
    assert_eq!(a.status, 200);
    let key = a.json()["key"].as_str().unwrap().to_string();
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    assert_eq!(exchange(stream, "cas", "GET", &format!("/cas/{key}"), &[], b"").await.body, b"hello");
    // No browser reaches a Unix socket: no Host or Origin check there.
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let a = exchange(stream, "evil.example", "POST", "/cas", &[("Origin", "http://evil.example")], b"unix").await;
    assert_eq!(a.status, 200, "{}", a.text());

    // Shutting the node down stops the server: connections are refused.
    node.shutdown().await;
    eventually("the server stops", async || tokio::net::UnixStream::connect(&path).await.is_err()).await;
    let tcp = {
        let node = Node::start(config(&dir, "b")).await.unwrap();
        let server = serve(node.clone(), "127.0.0.1:0", Options::default()).await.unwrap();
        let address = server.address().to_string();
        server.shutdown().await;
        node.shutdown().await;
        address
    };
    assert!(tokio::net::TcpStream::connect(&tcp).await.is_err(), "stopped by shutdown()");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_and_why_a_download_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let file = data(4 * 65536, 9);
    let key = node.put_bytes(&file).await.unwrap().key;
    let stat = http(&server, "GET", &format!("/api/stat/{key}"), &[], b"").await.json();
    assert_eq!((stat["size"].as_u64(), stat["chunks"].as_u64()), (Some(4 * 65536), Some(4)));
    assert_eq!(stat["manifest_id"], key.manifest_id.to_string());
    assert_eq!(stat["nodes"], serde_json::json!([{ "id": node.id().to_string(), "address": null, "self": true }]));
    let holders = stat["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 5, "the manifest and 4 chunks");
    assert_eq!(http(&server, "GET", "/api/stat/cas1bad", &[], b"").await.status, 400);

    // The last chunk corrupt on disk: the body stops short of its length,
    // and /api/cut tells why, once.
    let last = holders[4]["blob"].as_str().unwrap();
    let blob = node.data_dir().join("blobs").join(&last[..2]).join(last);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    assert_eq!(http(&server, "GET", &format!("/api/cut/{key}"), &[], b"").await.status, 404);
    let mut stream = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    let request = format!("GET /cas/{key} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.address());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    // The connection is cut: with the head (200) or, when the failure
    // came before hyper flushed it, with nothing.
    assert!(raw.is_empty() || raw.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&raw));
    assert!(raw.len() < 3 * 65536 + 4096, "cut before the last chunk");
    let why = http(&server, "GET", &format!("/api/cut/{key}"), &[], b"").await;
    assert_eq!(why.status, 502);
    assert!(why.json()["error"].as_str().unwrap().contains("integrity"), "{}", why.text());
    assert_eq!(http(&server, "GET", &format!("/api/cut/{key}"), &[], b"").await.status, 404);
    node.shutdown().await;
}

/// No answer lets another origin read it: no `Access-Control-*` header.
fn assert_no_cors(answer: &Answer, what: &str) {
    let cors: Vec<_> = answer.headers.keys().filter(|name| name.starts_with("access-control-")).collect();
    assert!(cors.is_empty(), "{what}: {cors:?}");
}

/// A DNS-rebinding page (its own name resolving to 127.0.0.1) sends its
/// name as Host: refused, as is a request without a Host or for another
/// port; the gateway's own names are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_gateway_answers_only_its_own_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let key = node.put_bytes(b"secret").await.unwrap().key.to_string();
    let port = server.address().rsplit_once(':').unwrap().1.to_string();
    let rebound = format!("some.attacker.example:{port}");
    for path in ["/api/files", "/api/status", "/", "/health", "/metrics", &format!("/cas/{key}")] {
        let a = http(&server, "GET", path, &[("Host", &rebound)], b"").await;
        assert_eq!(a.status, 403, "{path}");
        let message = a.json()["error"].as_str().unwrap().to_string();
        assert!(message.contains("some.attacker.example") && message.contains("--http-host"), "{message}");
        assert!(!a.text().contains(&key), "{path}");
        assert_no_cors(&a, path);
    }
    for host in ["127.0.0.1:1", "localhost", "127.0.0.1", "localhost.:0", "[::1]", "evil.example"] {
        let host = host.replace(":0", &format!(":{port}"));
        assert_eq!(http(&server, "GET", "/api/files", &[("Host", &host)], b"").await.status, 403, "{host}");
    }
    let none = raw_request(&server, "GET /api/files HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(none.status, 403);
    assert!(none.json()["error"].as_str().unwrap().contains("no Host"));
    let own = server.address();
    let twice = format!("GET /api/files HTTP/1.1\r\nHost: {own}\r\nHost: {rebound}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_request(&server, &twice).await.status, 403);
    let absolute = format!("GET http://{rebound}/api/files HTTP/1.1\r\nHost: {own}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_request(&server, &absolute).await.status, 403, "the target's host counts too");
    let absolute = format!("GET http://{own}/api/files HTTP/1.1\r\nHost: {own}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_request(&server, &absolute).await.status, 200);

    for host in
        [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("LOCALHOST:{port}"), format!("[::1]:{port}")]
    {
        let a = http(&server, "GET", "/api/files", &[("Host", &host)], b"").await;
        assert_eq!(a.status, 200, "{host}");
        assert_eq!(a.json()["files"][0]["key"], key, "{host}");
    }
    node.shutdown().await;
}

/// A page of another site that posts to the gateway (a form, or `fetch`)
/// stores nothing; the gateway's own page, curl and the CLI (no Origin) do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_from_other_sites_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, server) = lone_node(&dir).await;
    let port = server.address().rsplit_once(':').unwrap().1.to_string();
    // Small: the refusal comes before the body is read.
    let file = data(1000, 10);
    for (method, headers) in [
        ("POST", vec![("Origin", "http://evil.example")]),
        ("POST", vec![("Origin", "null")]),
        ("POST", vec![("Origin", &*format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1))]),
        ("POST", vec![("Origin", &*format!("http://127.0.0.1:{port}/"))]),
        ("POST", vec![("Origin", "http://evil.example"), ("Origin", &*format!("http://127.0.0.1:{port}"))]),
        ("POST", vec![("Sec-Fetch-Site", "cross-site")]),
        ("POST", vec![("Sec-Fetch-Site", "cross-site"), ("Origin", &*format!("http://127.0.0.1:{port}"))]),
        ("POST", vec![("Host", "evil.example"), ("Origin", "http://evil.example")]),
        ("PUT", vec![("Origin", "http://evil.example")]),
        ("DELETE", vec![("Origin", "http://evil.example")]),
    ] {
        let a = http(&server, method, "/cas?name=planted", &headers, &file).await;
        assert_eq!(a.status, 403, "{method} {headers:?}: {}", a.text());
        assert!(a.json()["error"].as_str().unwrap().contains("--http-host"), "{}", a.text());
        assert_no_cors(&a, "a refused upload");
    }
    assert!(node.files().await.unwrap().is_empty(), "nothing was listed");
    assert_eq!(node.stats().blobs_stored, 0, "nothing was stored");
    let listed = http(&server, "GET", "/api/files", &[], b"").await.json();
    assert_eq!(listed["files"], serde_json::json!([]));

    let own = format!("http://127.0.0.1:{port}");
    let local = format!("http://localhost:{port}");
    let localhost = format!("localhost:{port}");
    for (seed, headers) in [
        (11, vec![]),
        (12, vec![("Origin", own.as_str())]),
        (13, vec![("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")]),
        (14, vec![("Host", localhost.as_str()), ("Origin", local.as_str())]),
    ] {
        let a = http(&server, "POST", "/cas?name=mine", &headers, &data(1000, seed)).await;
        assert_eq!(a.status, 200, "{headers:?}: {}", a.text());
    }
    assert_eq!(node.files().await.unwrap().len(), 4);

    // Reads from another origin are answered (downloads by key may be
    // linked) but never with a header that lets a page read them.
    let a = http(&server, "GET", "/api/files", &[("Origin", "http://evil.example")], b"").await;
    assert_eq!(a.status, 200);
    assert_no_cors(&a, "GET /api/files");
    let preflight = [("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")];
    for path in ["/cas", "/api/files"] {
        let a = http(&server, "OPTIONS", path, &preflight, b"").await;
        assert!(a.status >= 400, "OPTIONS {path}: {}", a.status);
        assert_no_cors(&a, path);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_names_are_answered_too() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(&dir, "a")).await.unwrap();
    let bad = Options { allowed_hosts: vec!["files example".into()], ..Options::default() };
    let refused = serve(node.clone(), "127.0.0.1:0", bad).await.err().expect("refused");
    assert!(refused.to_string().contains("files example"), "{refused}");

    let options = Options { allowed_hosts: vec!["Files.Example.org".into(), "nas:9000".into()], ..Options::default() };
    let server = serve(node.clone(), "127.0.0.1:0", options).await.unwrap();
    for (host, status) in [
        ("files.example.org", 200),
        ("files.example.org:443", 200),
        ("nas:9000", 200),
        ("nas:9001", 403),
        ("other.example.org", 403),
    ] {
        assert_eq!(http(&server, "GET", "/api/status", &[("Host", host)], b"").await.status, status, "{host}");
    }
    let behind_a_proxy = [("Host", "files.example.org"), ("Origin", "https://files.example.org")];
    let a = http(&server, "POST", "/cas", &behind_a_proxy, b"via the proxy").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = http(&server, "POST", "/cas", &[("Origin", "https://other.example.org")], b"elsewhere").await;
    assert_eq!(a.status, 403);
    assert!(a.json()["error"].as_str().unwrap().contains("files.example.org, nas:9000"), "{}", a.text());
    assert_eq!(node.files().await.unwrap().len(), 1);
    node.shutdown().await;
}
