//! Helpers shared by the integration tests: deterministic content, nodes in
//! temporary directories, and a look at the files a data directory holds.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cas_core::format::BlobId;
use cas_core::store::BlobStore;
use cas_core::{Config, Node, PeerState};
use sha2::{Digest, Sha256};

/// The smallest chunk size FORMAT.md allows.
pub const MIN_CHUNK: usize = 64 * 1024;
/// The default chunk size.
pub const DEFAULT_CHUNK: usize = 1024 * 1024;

/// `len` bytes that depend only on `seed`: SHA-256 of (seed, counter) blocks
/// (the generator of the format test vectors).
pub fn generate(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(len);
    out
}

/// `len` deterministic bytes for a numbered test input.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    generate(&seed.to_le_bytes(), len)
}

/// A data directory and an input/output area inside one temporary directory.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("temporary directory") }
    }

    /// `<tmp>/data`: the node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A path in the scratch area (not in the data directory).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `bytes` to a file of the scratch area and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write input file");
        path
    }

    /// A config for the data directory, fsync off (these tests do not cut power).
    pub fn config(&self, chunk_size: usize) -> Config {
        let mut config = Config::new(self.data_dir());
        config.chunk_size = chunk_size as u32;
        config.fsync = false;
        config
    }

    /// Starts a node on the data directory.
    pub async fn node(&self, chunk_size: usize) -> Node {
        Node::start(self.config(chunk_size)).await.expect("node starts")
    }
}

/// Path of the blob file `id` under a data directory.
pub fn blob_path(data_dir: &Path, id: &BlobId) -> PathBuf {
    let hex = id.to_hex();
    data_dir.join("blobs").join(&hex[..2]).join(hex)
}

/// Every blob file on disk (walked directly, not through the store);
/// temporary files of writes in progress (`.tmp-*`) are not blobs.
pub fn blob_files(data_dir: &Path) -> Vec<PathBuf> {
    fan_out_files(data_dir, |name| !name.starts_with('.'))
}

/// Temporary files of interrupted or failed writes left in the store.
pub fn temp_files(data_dir: &Path) -> Vec<PathBuf> {
    fan_out_files(data_dir, |name| name.starts_with(".tmp-"))
}

fn fan_out_files(data_dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(fans) = std::fs::read_dir(data_dir.join("blobs")) else { return out };
    for fan in fans.flatten() {
        if let Ok(entries) = std::fs::read_dir(fan.path()) {
            out.extend(entries.flatten().filter(|e| keep(&e.file_name().to_string_lossy())).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// Names in a directory, sorted (empty if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Flips one bit of the byte at `offset` of a file.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read file to corrupt");
    bytes[offset] ^= 0x01;
    std::fs::write(path, bytes).expect("write corrupted file");
}

/// Polls `cond` every few milliseconds until it holds; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `local` example built beside this test binary
/// (`target/<profile>/deps/<test>` -> `target/<profile>/examples/local`).
pub fn local_example() -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("examples").join("local");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo test` builds examples; with a test filter, run `cargo build --release --example local` first",
        bin.display()
    );
    Command::new(bin)
}

/// Block of the large generated files: every 64 KiB of it starts with its
/// own counter, so no two chunks of a file are equal at any chunk size.
const BIG_BLOCK: usize = 1024 * 1024;

/// Calls `f` with each block of the file `write_big_file` writes, in order.
fn for_each_big_block(seed: u64, size: u64, mut f: impl FnMut(&[u8])) {
    let base = content(seed, BIG_BLOCK);
    let mut block = vec![0u8; BIG_BLOCK];
    let mut offset = 0u64;
    while offset < size {
        block.copy_from_slice(&base);
        let index = offset / BIG_BLOCK as u64;
        for (j, piece) in block.chunks_mut(MIN_CHUNK).enumerate() {
            let counter = index * (BIG_BLOCK / MIN_CHUNK) as u64 + j as u64;
            piece[..8].copy_from_slice(&counter.to_le_bytes());
        }
        let n = (size - offset).min(BIG_BLOCK as u64) as usize;
        f(&block[..n]);
        offset += n as u64;
    }
}

/// Writes a file of `size` bytes quickly: a pseudo-random 1 MiB block,
/// repeated, with per-64-KiB counters.
pub fn write_big_file(path: &Path, seed: u64, size: u64) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    for_each_big_block(seed, size, |block| file.write_all(block).unwrap());
}

/// Checks that the file at `path` is exactly what `write_big_file` wrote.
pub fn assert_big_file(path: &Path, seed: u64, size: u64) {
    use std::io::Read;
    assert_eq!(std::fs::metadata(path).unwrap().len(), size, "{}: size", path.display());
    let mut file = std::fs::File::open(path).unwrap();
    let mut got = vec![0u8; BIG_BLOCK];
    let mut offset = 0u64;
    for_each_big_block(seed, size, |want| {
        file.read_exact(&mut got[..want.len()]).unwrap();
        assert!(got[..want.len()] == *want, "{}: bytes differ in the block at offset {offset}", path.display());
        offset += want.len() as u64;
    });
}

/// Dials `addr` and runs the secure handshake as a fresh node of the
/// network of `key` would (for tests that speak the wire protocol by hand).
pub async fn secure_connect(
    addr: std::net::SocketAddr,
    key: [u8; 32],
) -> Result<(cas_core::net::secure::SecureStream, cas_core::net::secure::Peer), cas_core::net::secure::HandshakeError> {
    use cas_core::identity::Identity;
    use cas_core::net::secure::{initiate, Credentials};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let creds = Credentials::new(key, Identity::generate(), ([127, 0, 0, 1], 9).into(), false);
    initiate(Box::new(tcp), &creds, None).await
}

/// The network key of every test network.
pub const TEST_NETWORK_KEY: [u8; 32] = [0x42; 32];

/// A config for a networked test node: loopback, port 0, quick gossip.
pub fn net_config(dir: &Path, bootstrap: &[&Node]) -> Config {
    let mut c = Config::new(dir);
    c.listen = Some("127.0.0.1:0".into());
    c.network_key = Some(TEST_NETWORK_KEY);
    c.bootstrap = bootstrap.iter().map(|n| n.address().expect("networked").to_string()).collect();
    c.fsync = false;
    c.chunk_size = MIN_CHUNK as u32;
    c.gossip_interval = Duration::from_millis(100);
    c.suspect_after = Duration::from_millis(1500);
    c.dead_after = Duration::from_millis(3000);
    c.forget_after = Duration::from_secs(60);
    c.request_timeout = Duration::from_secs(5);
    c
}

/// Polls `cond` every 20 ms, without blocking the runtime, until it holds
/// or `limit` passes.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alive peers of `node`.
pub fn alive(node: &Node) -> usize {
    node.peers().iter().filter(|p| p.state == PeerState::Alive).count()
}

/// shared/vectors/format-v1.json (or the file `CAS_VECTORS` names).
pub fn vectors() -> serde_json::Value {
    let path = std::env::var_os("CAS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/format-v1.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read test vectors at {} ({e}); set CAS_VECTORS", path.display()));
    serde_json::from_str(&text).expect("vectors are JSON")
}

/// Every (id, length) the index lists, walked a page at a time.
pub fn indexed(store: &BlobStore) -> std::collections::BTreeMap<BlobId, u64> {
    let mut out = std::collections::BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.page(after, 7).unwrap();
        let Some((last, _)) = page.last() else { return out };
        after = Some(*last);
        out.extend(page);
    }
}

/// Every (id, length) of the blob files on disk.
pub fn on_disk(store: &BlobStore) -> std::collections::BTreeMap<BlobId, u64> {
    let mut out = std::collections::BTreeMap::new();
    store
        .for_each_blob(|id, len| {
            out.insert(id, len);
        })
        .unwrap();
    out
}

/// A field of this process's /proc/self/status, in KiB.
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Growth of this process's peak RSS from a starting point.
pub struct RssPeak {
    base_kib: u64,
}

impl RssPeak {
    pub fn start() -> RssPeak {
        // "5" resets the peak (VmHWM) to the current RSS.
        std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS (Linux 4.0 or later)");
        RssPeak { base_kib: proc_status_kib("VmRSS:") }
    }

    pub fn growth_mib(&self) -> u64 {
        proc_status_kib("VmHWM:").saturating_sub(self.base_kib) / 1024
    }
}
