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
    /// Seconds the put_file or get_file call took.
    pub seconds: f64,
    /// The process's peak RSS, in KiB (VmHWM).
    pub peak_rss_kib: u64,
    /// The key (put only).
    pub key: Option<String>,
}

/// Runs `put DATA_DIR FILE FSYNC` or `get DATA_DIR KEY DEST FSYNC` in a child.
pub fn run(args: &[&str]) -> Measured {
    let exe = std::env::current_exe().expect("own executable");
    let out = Command::new(exe).arg(SUBCOMMAND).args(args).output().expect("start measured child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "measured child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let field = |name: &str| stdout.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
    Measured {
        seconds: field("seconds=").and_then(|v| v.parse().ok()).expect("child reports seconds"),
        peak_rss_kib: field("peak_rss_kib=").and_then(|v| v.parse().ok()).expect("child reports peak RSS"),
        key: field("key="),
    }
}

/// The child's side: runs the operation and prints what `run` parses.
pub fn main(args: &[String]) -> cas_core::Result<()> {
    let [op, data_dir, rest @ ..] = args else { panic!("usage: {SUBCOMMAND} put|get DATA_DIR ...") };
    let fsync = rest.last().map(String::as_str) == Some("fsync");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let mut config = Config::new(data_dir);
        config.fsync = fsync;
        // A knob for experiments: chunks in flight per put or get.
        if let Some(n) = std::env::var("CAS_BENCH_PARALLELISM").ok().and_then(|v| v.parse().ok()) {
            config.parallelism = n;
        }
        let node = Node::start(config).await?;
        let start = Instant::now();
        let key = match (op.as_str(), rest) {
            ("put", [file, _]) => Some(node.put_file(file, None).await?.key.to_string()),
            ("get", [key, dest, _]) => {
                node.get_file(&Key::parse(key)?, Path::new(dest), None).await?;
                None
            }
            _ => panic!("usage: {SUBCOMMAND} put DATA_DIR FILE FSYNC | get DATA_DIR KEY DEST FSYNC"),
        };
        let seconds = start.elapsed().as_secs_f64();
        node.shutdown().await;
        print!("seconds={seconds} peak_rss_kib={}", peak_rss_kib());
        if let Some(key) = key {
            print!(" key={key}");
        }
        println!();
        Ok(())
    })
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
