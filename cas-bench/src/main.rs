//! `make bench`: on this machine, in one run, the crypto ceiling of put and
//! get, local put and get of a 1 GiB file through the real `Node` API (fsync
//! off and on), and the peak memory of each. Prints a Markdown table and
//! writes it to `bench/results.md`.
//!
//! Throughput is plaintext bytes per second (MB = 10^6 bytes), the best of a
//! few runs, for the ceilings and the operations alike: other load on the
//! machine only makes a run slower. Each put and get runs in a child process
//! of its own (this binary with a hidden subcommand) whose peak RSS is read
//! from VmHWM. Dirty pages are synced before each timed step, so that one
//! step's writeback does not run during the next; the input file is in the
//! page cache.
//!
//! `CAS_BENCH_DIR` chooses where the file and data directories go (default:
//! the system temporary directory); `CAS_BENCH_PARALLELISM` sets
//! `Config::parallelism` in the children, for experiments.

mod ceiling;
mod child;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Size of the file put and got.
const FILE_SIZE: u64 = 1 << 30;
/// Runs of each put/get; the best is reported.
const RUNS: usize = 3;
/// Each crypto ceiling is the best of this many windows of CEILING_TIME.
const CEILING_WINDOWS: usize = 3;
const CEILING_TIME: Duration = Duration::from_secs(1);
/// Targets of the issue: put and get (fsync off) at this share of their
/// ceiling, and peak RSS under this many MiB.
const TARGET_RATIO: f64 = 0.8;
const TARGET_RSS_MIB: f64 = 150.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(child::SUBCOMMAND) {
        return match child::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    bench();
    ExitCode::SUCCESS
}

/// One line of the table.
struct Row {
    operation: String,
    mb_per_s: f64,
    ratio: f64,
    peak_rss_mib: Option<f64>,
}

fn bench() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("measuring the crypto ceiling on {cores} cores...");
    let (put_ceiling, get_ceiling) = ceiling::measure(CEILING_WINDOWS, CEILING_TIME);
    let mut rows = vec![
        Row {
            operation: format!("crypto ceiling, put: 2x SHA-256 + AES-256-GCM ({cores} threads)"),
            mb_per_s: put_ceiling / 1e6,
            ratio: 1.0,
            peak_rss_mib: None,
        },
        Row {
            operation: format!("crypto ceiling, get: SHA-256 + AES-256-GCM ({cores} threads)"),
            mb_per_s: get_ceiling / 1e6,
            ratio: 1.0,
            peak_rss_mib: None,
        },
    ];

    let base = std::env::var_os("CAS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let work = tempfile::Builder::new().prefix("cas-bench-").tempdir_in(&base).expect("bench directory");
    let input = work.path().join("input.bin");
    eprintln!("writing a {} MiB input file in {}...", FILE_SIZE >> 20, work.path().display());
    write_input(&input, FILE_SIZE);
    let input_digest = digest(&input); // also warms the page cache
    sync();

    for fsync in [false, true] {
        let label = if fsync { "fsync on" } else { "fsync off" };
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            eprintln!("{label}: run {} of {RUNS}...", run + 1);
            let data_dir = work.path().join(format!("data-{run}"));
            let dest = work.path().join(format!("out-{run}.bin"));
            let flag = if fsync { "fsync" } else { "no-fsync" };
            sync();
            let put = child::run(&["put", path_str(&data_dir), path_str(&input), flag]);
            let key = put.key.clone().expect("put reports the key");
            sync();
            let get = child::run(&["get", path_str(&data_dir), &key, path_str(&dest), flag]);
            assert!(digest(&dest) == input_digest, "get returned other bytes than were put");
            std::fs::remove_dir_all(&data_dir).expect("remove data directory");
            std::fs::remove_file(&dest).expect("remove output");
            puts.push(put);
            gets.push(get);
        }
        let size = format!("{} GiB", FILE_SIZE >> 30);
        rows.push(row(format!("local put {size}, {label}"), &puts, put_ceiling));
        rows.push(row(format!("local get {size}, {label}"), &gets, get_ceiling));
    }

    let table = render(&rows, cores);
    println!("{table}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results.md");
    std::fs::create_dir_all(results.parent().unwrap()).expect("bench directory");
    std::fs::write(&results, &table).expect("write bench/results.md");
    eprintln!("written to {}", results.display());
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Writes every dirty page to disk (outside the timed steps).
fn sync() {
    let ok = std::process::Command::new("sync").status().is_ok_and(|s| s.success());
    assert!(ok, "`sync` failed");
}

/// The best throughput of the runs and their largest peak RSS.
fn row(operation: String, runs: &[child::Measured], ceiling: f64) -> Row {
    let best = runs.iter().map(|m| FILE_SIZE as f64 / m.seconds).fold(0.0, f64::max);
    let peak = runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    Row { operation, mb_per_s: best / 1e6, ratio: best / ceiling, peak_rss_mib: Some(peak) }
}

fn render(rows: &[Row], cores: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut out = String::new();
    writeln!(out, "# CAS benchmark\n").unwrap();
    writeln!(
        out,
        "{cpu}, {cores} cores. {} GiB file, 1 MiB chunks; MB/s = 10^6 plaintext bytes per second, \
         best of {RUNS} runs (ceilings: best of {CEILING_WINDOWS} windows of {CEILING_TIME:?}); \
         peak RSS is the largest VmHWM of the runs' processes. Dirty pages are synced \
         before each timed step. Ratio: put against the put ceiling, get against the get ceiling.\n",
        FILE_SIZE >> 30
    )
    .unwrap();
    writeln!(out, "| operation | MB/s | ratio to ceiling | peak RSS MiB |").unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for r in rows {
        let rss = r.peak_rss_mib.map_or("-".into(), |m| format!("{m:.1}"));
        writeln!(out, "| {} | {:.0} | {:.2} | {rss} |", r.operation, r.mb_per_s, r.ratio).unwrap();
    }
    let fsync_off: Vec<&Row> = rows.iter().filter(|r| r.operation.ends_with("fsync off")).collect();
    let ratio_ok = fsync_off.iter().all(|r| r.ratio >= TARGET_RATIO);
    let rss_ok = rows.iter().filter_map(|r| r.peak_rss_mib).all(|m| m < TARGET_RSS_MIB);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    writeln!(
        out,
        "\nTargets: put and get with fsync off at >= {TARGET_RATIO} of their ceiling: {}; \
         peak RSS < {TARGET_RSS_MIB} MiB: {}.",
        verdict(ratio_ok),
        verdict(rss_ok)
    )
    .unwrap();
    out
}

/// Writes `size` bytes: a pseudo-random 1 MiB block repeated, with a counter
/// at every 64 KiB so that no two chunks are equal (nothing deduplicates).
fn write_input(path: &Path, size: u64) {
    const BLOCK: usize = 1 << 20;
    let mut block = Vec::with_capacity(BLOCK);
    for i in 0u64.. {
        if block.len() >= BLOCK {
            break;
        }
        block.extend_from_slice(&Sha256::digest(i.to_le_bytes()));
    }
    let mut file = std::fs::File::create(path).expect("create input");
    let mut counter = 0u64;
    let mut written = 0u64;
    while written < size {
        for piece in block.chunks_mut(64 << 10) {
            piece[..8].copy_from_slice(&counter.to_le_bytes());
            counter += 1;
        }
        let n = (size - written).min(BLOCK as u64) as usize;
        file.write_all(&block[..n]).expect("write input");
        written += n as u64;
    }
}

/// SHA-256 of a file, read in 1 MiB pieces.
fn digest(path: &Path) -> [u8; 32] {
    let mut file = std::fs::File::open(path).expect("open for digest");
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    loop {
        let n = file.read(&mut buf).expect("read for digest");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}
