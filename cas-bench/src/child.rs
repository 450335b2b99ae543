//! One measured operation in a process of its own, so that its peak memory
//! is its own: the bench binary runs itself with a hidden subcommand.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cas_core::{Config, Key, Node};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "__measure";

/// What one child reports.
pub struct Measured {
    /// Seconds the put_file or get_file call (or the HTTP GET) took.
    pub seconds: f64,
    /// The process's peak RSS, in KiB (VmHWM).
    pub peak_rss_kib: u64,
    /// The key (put only).
    pub key: Option<String>,
}

/// Runs `put DATA_DIR FILE FSYNC [BOOTSTRAP PEERS]`,
/// `get DATA_DIR KEY DEST FSYNC [BOOTSTRAP PEERS]`, `open DATA_DIR KEY DEST
/// FSYNC [BOOTSTRAP PEERS]` (`Node::open`, read in order into DEST) or
/// `http DATA_DIR KEY DEST FSYNC` (`GET /cas/KEY` of the node's HTTP
/// gateway over loopback TCP, into DEST) in a child. With
/// BOOTSTRAP, the child's node listens on 127.0.0.1, joins through that
/// address and waits until it sees PEERS alive peers before timing.
pub fn run(args: &[&str]) -> Measured {
    run_with(args, false)
}

/// [`run`], with encryption off after the handshake when `plaintext`.
pub fn run_with(args: &[&str], plaintext: bool) -> Measured {
    run_env(args, plaintext, &[])
}

/// [`run_with`], with `env` added to the child's environment.
pub fn run_env(args: &[&str], plaintext: bool, env: &[(&str, &str)]) -> Measured {
    let exe = std::env::current_exe().expect("own executable");
    let mut cmd = Command::new(exe);
    if plaintext {
        cmd.env(PLAINTEXT_ENV, "1");
    }
    cmd.envs(env.iter().copied());
    let out = cmd.arg(SUBCOMMAND).args(args).output().expect("start measured child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "measured child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let field = |name: &str| stdout.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
    Measured {
        seconds: field("seconds=").and_then(|v| v.parse().ok()).expect("child reports seconds"),
        peak_rss_kib: field("peak_rss_kib=").and_then(|v| v.parse().ok()).expect("child reports peak RSS"),
        key: field("key="),
    }
}

/// A node process of the loopback cluster: `serve DATA_DIR [BOOTSTRAP]`
/// prints `address=…`, serves until its standard input closes, then prints
/// `peak_rss_kib=…`.
pub struct Server {
    child: std::process::Child,
    pub address: String,
}

impl Server {
    pub fn start(data_dir: &Path, bootstrap: Option<&str>, plaintext: bool) -> Server {
        use std::io::BufRead;
        use std::process::Stdio;
        let exe = std::env::current_exe().expect("own executable");
        let mut cmd = Command::new(exe);
        if plaintext {
            cmd.env(PLAINTEXT_ENV, "1");
        }
        cmd.arg(SUBCOMMAND).arg("serve").arg(data_dir).args(bootstrap);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start a node process");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.as_mut().expect("piped stdout"));
        stdout.read_line(&mut line).expect("node process reports its address");
        let address = line.trim().strip_prefix("address=").expect("address=… line").to_owned();
        Server { child, address }
    }

    /// Stops the process; returns its peak RSS in KiB.
    pub fn stop(mut self) -> u64 {
        use std::io::Read;
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.child.stdout.take().expect("piped stdout").read_to_string(&mut rest).expect("read node output");
        assert!(self.child.wait().expect("node process exits").success(), "node process failed");
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix("peak_rss_kib="))
            .and_then(|v| v.parse().ok())
            .expect("node process reports its peak RSS")
    }
}

/// The key of the bench's loopback networks.
const BENCH_NETWORK_KEY: [u8; 32] = [0xbe; 32];
/// Set (to anything) in a child's environment: no encryption after the
/// handshake, to measure what the secure transport costs.
pub const PLAINTEXT_ENV: &str = "CAS_BENCH_PLAINTEXT";
/// Set to 0 in a child's environment: its node does not keep the blobs it
/// fetches (`Config::keep_fetched` off).
pub const KEEP_FETCHED_ENV: &str = "CAS_BENCH_KEEP_FETCHED";

fn network_config(config: &mut Config, bootstrap: Option<&String>) {
    config.listen = Some("127.0.0.1:0".into());
    config.network_key = Some(BENCH_NETWORK_KEY);
    config.faults.plaintext_transport = std::env::var_os(PLAINTEXT_ENV).is_some();
    config.bootstrap = bootstrap.into_iter().cloned().collect();
    config.gossip_interval = std::time::Duration::from_millis(200);
}

/// The child's side: runs the operation and prints what `run` parses.
pub fn main(args: &[String]) -> cas_core::Result<()> {
    let [op, data_dir, rest @ ..] = args else { panic!("usage: {SUBCOMMAND} put|get|serve DATA_DIR ...") };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if op == "serve" {
        return runtime.block_on(serve(data_dir, rest.first()));
    }
    // Optional trailing BOOTSTRAP PEERS: a networked node.
    let (rest, network) = match rest {
        [head @ .., boot, peers] if head.len() >= 2 => (head, Some((boot, peers.parse::<usize>().expect("PEERS")))),
        _ => (rest, None),
    };
    let fsync = rest.last().map(String::as_str) == Some("fsync");
    runtime.block_on(async {
        let mut config = Config::new(data_dir);
        config.fsync = fsync;
        // A knob for experiments: chunks in flight per put or get.
        if let Some(n) = std::env::var("CAS_BENCH_PARALLELISM").ok().and_then(|v| v.parse().ok()) {
            config.parallelism = n;
        }
        // Another: `CAS_BENCH_KEEP_FETCHED=0`, a getter that does not keep what it fetches.
        if std::env::var(KEEP_FETCHED_ENV).is_ok_and(|v| v == "0") {
            config.keep_fetched = false;
        }
        if let Some((boot, _)) = network {
            network_config(&mut config, Some(boot));
        }
        let node = Node::start(config).await?;
        if let Some((_, peers)) = network {
            let deadline = Instant::now() + std::time::Duration::from_secs(60);
            while node.peers().iter().filter(|p| p.state == cas_core::PeerState::Alive).count() < peers {
                assert!(Instant::now() < deadline, "the cluster did not form within 60 s");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let start = Instant::now();
        let key = match (op.as_str(), rest) {
            ("put", [file, _]) => Some(node.put_file(file, None).await?.key.to_string()),
            ("get", [key, dest, _]) => {
                node.get_file(&Key::parse(key)?, Path::new(dest), None).await?;
                None
            }
            ("open", [key, dest, _]) => {
                read_sequentially(&node, &Key::parse(key)?, Path::new(dest)).await?;
                None
            }
            ("http", [key, dest, _]) => {
                let start = Instant::now();
                let server = cas_http::serve(node.clone(), "127.0.0.1:0", cas_http::Options::default()).await?;
                // Only the GET is timed, as only get_file is above.
                let setup = start.elapsed();
                http_get(server.address(), key, Path::new(dest)).await;
                server.shutdown().await;
                return finish(&node, start.elapsed() - setup, None).await;
            }
            _ => panic!(
                "usage: {SUBCOMMAND} put DATA_DIR FILE FSYNC | get|open|http DATA_DIR KEY DEST FSYNC [BOOTSTRAP PEERS]"
            ),
        };
        finish(&node, start.elapsed(), key).await
    })
}

/// Stops the node and prints what `run` parses.
async fn finish(node: &Node, took: std::time::Duration, key: Option<String>) -> cas_core::Result<()> {
    node.shutdown().await;
    print!("seconds={} peak_rss_kib={}", took.as_secs_f64(), peak_rss_kib());
    if let Some(key) = key {
        print!(" key={key}");
    }
    println!();
    Ok(())
}

/// The size of each `FileReader::read` of the sequential `open` reads.
const OPEN_READ: usize = 1 << 20;

/// `Node::open`, then reads of OPEN_READ bytes in order to the end, each
/// written to `dest` (as a program streaming a file out would; `get_file`
/// writes a file too, so the two compare).
async fn read_sequentially(node: &Node, key: &Key, dest: &Path) -> cas_core::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut reader = node.open(key).await?;
    let mut out = tokio::fs::File::create(dest).await.expect("create the output");
    let mut buf = vec![0u8; OPEN_READ];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await.expect("write the output");
    }
    out.flush().await.expect("flush the output");
    assert_eq!(reader.position(), reader.size(), "read to the end");
    Ok(())
}

/// `GET /cas/KEY` from the gateway at `address` over loopback TCP, the body
/// written to `dest` (a plain HTTP/1.1 client: the response head, then
/// exactly Content-Length bytes).
async fn http_get(address: &str, key: &str, dest: &Path) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect to the gateway");
    let request = format!("GET /cas/{key} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send the request");
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let (mut length, mut line) = (None, String::new());
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("read the response head");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<u64>().ok();
            }
        } else {
            assert!(header.starts_with("HTTP/1.1 200"), "the gateway answered {header}");
        }
    }
    let length = length.expect("a Content-Length");
    let mut out = tokio::fs::File::create(dest).await.expect("create the output");
    let copied = tokio::io::copy_buf(&mut (&mut reader).take(length), &mut out).await.expect("copy the body");
    assert_eq!(copied, length, "the whole body");
    out.flush().await.expect("flush the output");
}

/// A cluster node: fsync off (the bench measures the pipeline, not the disk).
async fn serve(data_dir: &str, bootstrap: Option<&String>) -> cas_core::Result<()> {
    use std::io::Write;
    let mut config = Config::new(data_dir);
    config.fsync = false;
    network_config(&mut config, bootstrap);
    let node = Node::start(config).await?;
    println!("address={}", node.address().expect("listening"));
    std::io::stdout().flush().expect("flush stdout");
    // Serve until the parent closes our standard input.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .expect("stdin watcher");
    node.shutdown().await;
    println!("peak_rss_kib={}", peak_rss_kib());
    Ok(())
}

/// VmHWM of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
