//! `make bench`: on this machine, in one run, the crypto ceiling of put and
//! get, the I/O baseline (the same file operations without crypto), local
//! put and get of a 1 GiB file through the real `Node` API (fsync off and
//! on), `GET /cas/{key}` of that file from the HTTP gateway over loopback
//! (against local get), network put (3 replicas) and get (from non-owners) on a loopback
//! cluster of node processes, and the peak memory of each. Prints a Markdown
//! table and writes it to `bench/results.md`.
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
//! `Config::parallelism` in the children, and `CAS_BENCH_NETWORK_ONLY=1`
//! runs only the network rows (printed, not saved), `CAS_BENCH_REPAIR_ONLY=1`
//! only the repair rounds: knobs for experiments.
//!
//! After the table, the cost of a repair round on a store of 100,000 blobs
//! (`repair.rs`): the first round after a start against rounds with no change.

mod baseline;
mod ceiling;
mod child;
mod repair;

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
/// The secure transport may cost at most this share of network throughput.
const TARGET_TRANSPORT_COST: f64 = 0.10;

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
    /// Against the crypto ceiling of the same direction.
    vs_crypto: Option<f64>,
    /// Against the I/O baseline of the same direction.
    vs_io: Option<f64>,
    /// Network rows: against the local figure (fsync off).
    vs_local: Option<f64>,
    peak_rss_mib: Option<f64>,
}

/// Set: only the network rows.
const NETWORK_ONLY_ENV: &str = "CAS_BENCH_NETWORK_ONLY";
/// Set: only the repair rounds.
const REPAIR_ONLY_ENV: &str = "CAS_BENCH_REPAIR_ONLY";

/// Nodes of the loopback cluster, besides the putting and getting ones.
const CLUSTER_NODES: usize = 4;

fn bench() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let base = std::env::var_os("CAS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    if std::env::var_os(REPAIR_ONLY_ENV).is_some() {
        let work = tempfile::Builder::new().prefix("cas-bench-").tempdir_in(&base).expect("bench directory");
        println!("{}", render_repair(repair::measure(work.path())));
        return;
    }
    eprintln!("measuring the crypto ceiling on {cores} cores...");
    let (put_ceiling, get_ceiling) = ceiling::measure(CEILING_WINDOWS, CEILING_TIME);
    let mut rows = vec![
        Row {
            operation: format!("crypto ceiling, put: 2x SHA-256 + AES-256-GCM ({cores} threads)"),
            mb_per_s: put_ceiling / 1e6,
            vs_crypto: Some(1.0),
            vs_io: None,
            vs_local: None,
            peak_rss_mib: None,
        },
        Row {
            operation: format!("crypto ceiling, get: SHA-256 + AES-256-GCM ({cores} threads)"),
            mb_per_s: get_ceiling / 1e6,
            vs_crypto: Some(1.0),
            vs_io: None,
            vs_local: None,
            peak_rss_mib: None,
        },
    ];

    let work = tempfile::Builder::new().prefix("cas-bench-").tempdir_in(&base).expect("bench directory");
    let input = work.path().join("input.bin");
    eprintln!("writing a {} MiB input file in {}...", FILE_SIZE >> 20, work.path().display());
    write_input(&input, FILE_SIZE);
    let input_digest = digest(&input); // also warms the page cache
    sync();
    if std::env::var_os(NETWORK_ONLY_ENV).is_some() {
        // A knob for experiments: the network rows only, printed, not saved.
        println!("{}", render(&network(work.path(), &input, &input_digest, f64::NAN, f64::NAN), cores));
        return;
    }

    // The I/O baseline runs beside each put and get below, in the same memory
    // state: on a VM whose freed memory goes back to the host, writes into
    // fresh pages cost several times more than into warm ones.
    let (mut io_put, mut io_get) = (0f64, 0f64);
    let mut baseline = |run: usize| {
        let dir = work.path().join(format!("baseline-{run}"));
        let out = work.path().join("baseline.out");
        sync();
        io_put = io_put.max(baseline::put(&input, &dir, 1 << 20, cores));
        sync();
        io_get = io_get.max(baseline::get(&dir, &out, FILE_SIZE, 1 << 20));
        std::fs::remove_dir_all(&dir).expect("remove baseline files");
        std::fs::remove_file(&out).expect("remove baseline output");
    };
    let mut local = Vec::new();
    let mut http_gets = Vec::new();
    for fsync in [false, true] {
        let label = if fsync { "fsync on" } else { "fsync off" };
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            eprintln!("{label}: run {} of {RUNS}...", run + 1);
            baseline(run);
            let data_dir = work.path().join(format!("data-{run}"));
            let dest = work.path().join(format!("out-{run}.bin"));
            let flag = if fsync { "fsync" } else { "no-fsync" };
            sync();
            let put = child::run(&["put", path_str(&data_dir), path_str(&input), flag]);
            let key = put.key.clone().expect("put reports the key");
            sync();
            let get = child::run(&["get", path_str(&data_dir), &key, path_str(&dest), flag]);
            assert!(digest(&dest) == input_digest, "get returned other bytes than were put");
            if !fsync {
                // The same file through the HTTP gateway, over loopback.
                std::fs::remove_file(&dest).expect("remove output");
                sync();
                let http = child::run(&["http", path_str(&data_dir), &key, path_str(&dest), flag]);
                assert!(digest(&dest) == input_digest, "GET /cas/{{key}} returned other bytes than were put");
                http_gets.push(http);
            }
            std::fs::remove_dir_all(&data_dir).expect("remove data directory");
            std::fs::remove_file(&dest).expect("remove output");
            puts.push(put);
            gets.push(get);
        }
        let size = format!("{} GiB", FILE_SIZE >> 30);
        local.push((format!("local put {size}, {label}"), puts, put_ceiling, true));
        local.push((format!("local get {size}, {label}"), gets, get_ceiling, false));
    }
    let baseline_row = |operation: String, bytes_per_s: f64| Row {
        operation,
        mb_per_s: bytes_per_s / 1e6,
        vs_crypto: None,
        vs_io: Some(1.0),
        vs_local: None,
        peak_rss_mib: None,
    };
    rows.push(baseline_row(
        format!("I/O baseline, put: 1 MiB pieces into new files, no crypto ({cores} threads)"),
        io_put,
    ));
    rows.push(baseline_row("I/O baseline, get: those files into one file, no crypto".into(), io_get));

    for (operation, runs, ceiling, is_put) in local {
        let io = if is_put { io_put } else { io_get };
        rows.push(row(operation, &runs, Some(ceiling), Some(io), None));
    }
    let local_put = rows.iter().find(|r| r.operation.starts_with("local put") && r.operation.ends_with("fsync off"));
    let local_put = local_put.expect("local put row").mb_per_s * 1e6;
    let local_get = rows.iter().find(|r| r.operation.starts_with("local get") && r.operation.ends_with("fsync off"));
    let local_get = local_get.expect("local get row").mb_per_s * 1e6;
    let size = format!("{} GiB", FILE_SIZE >> 30);
    let http = format!("HTTP GET /cas/{{key}} {size} over loopback into a file, fsync off (vs local get)");
    rows.push(row(http, &http_gets, Some(get_ceiling), Some(io_get), Some(local_get)));
    rows.extend(network(work.path(), &input, &input_digest, local_put, local_get));

    let mut table = render(&rows, cores);
    table.push_str(&render_repair(repair::measure(work.path())));
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

/// The best throughput of the runs, its ratios, and the largest peak RSS.
fn row(operation: String, runs: &[child::Measured], crypto: Option<f64>, io: Option<f64>, local: Option<f64>) -> Row {
    let best = runs.iter().map(|m| FILE_SIZE as f64 / m.seconds).fold(0.0, f64::max);
    let peak = runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    Row {
        operation,
        mb_per_s: best / 1e6,
        vs_crypto: crypto.map(|c| best / c),
        vs_io: io.map(|c| best / c),
        vs_local: local.map(|c| best / c),
        peak_rss_mib: Some(peak),
    }
}

/// Network put and get on a loopback cluster of node processes: a put from
/// a fifth node (3 replicas), then a get on a sixth that holds nothing.
/// Fresh cluster per run, fsync off everywhere. Each run is done twice, over
/// the secure transport and with encryption off after the handshake (a
/// bench-only mode), back to back so that both see the same machine.
fn network(work: &Path, input: &Path, input_digest: &[u8; 32], local_put: f64, local_get: f64) -> Vec<Row> {
    let (mut puts, mut gets, mut server_peak) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()], 0u64);
    for run in 0..RUNS {
        for (mode, plaintext) in [false, true].into_iter().enumerate() {
            let what = if plaintext { "plaintext" } else { "secure" };
            eprintln!("network: run {} of {RUNS}, {what} ({CLUSTER_NODES} node processes)...", run + 1);
            let (put, get, peak) =
                cluster_run(&work.join(format!("cluster-{run}-{what}")), input, input_digest, plaintext);
            puts[mode].push(put);
            gets[mode].push(get);
            server_peak = server_peak.max(peak);
        }
    }
    let size = format!("{} GiB", FILE_SIZE >> 30);
    let put_name = format!("network put {size}, 3 replicas, {CLUSTER_NODES}+1 processes");
    let get_name = format!("network get {size}, from non-owners");
    let mut rows = vec![
        row(put_name.clone(), &puts[0], None, None, Some(local_put)),
        row(get_name.clone(), &gets[0], None, None, Some(local_get)),
        row(format!("{put_name}, encryption off (bench only)"), &puts[1], None, None, Some(local_put)),
        row(format!("{get_name}, encryption off (bench only)"), &gets[1], None, None, Some(local_get)),
    ];
    rows.push(Row {
        operation: "cluster node process (largest of all)".into(),
        mb_per_s: f64::NAN,
        vs_crypto: None,
        vs_io: None,
        vs_local: None,
        peak_rss_mib: Some(server_peak as f64 / 1024.0),
    });
    rows
}

/// One fresh cluster: the put, the get, and the largest node peak RSS (KiB).
fn cluster_run(
    dir: &Path,
    input: &Path,
    input_digest: &[u8; 32],
    plaintext: bool,
) -> (child::Measured, child::Measured, u64) {
    let first = child::Server::start(&dir.join("node0"), None, plaintext);
    let boot = first.address.clone();
    let mut servers = vec![first];
    for i in 1..CLUSTER_NODES {
        servers.push(child::Server::start(&dir.join(format!("node{i}")), Some(&boot), plaintext));
    }
    let peers = CLUSTER_NODES.to_string();
    sync();
    let owner = dir.join("owner");
    let put = child::run_with(&["put", path_str(&owner), path_str(input), "no-fsync", &boot, &peers], plaintext);
    let key = put.key.clone().expect("put reports the key");
    sync();
    // The owner is gone; the getter holds nothing: every byte crosses the network.
    let (getter, dest) = (dir.join("getter"), dir.join("out.bin"));
    let get = child::run_with(&["get", path_str(&getter), &key, path_str(&dest), "no-fsync", &boot, &peers], plaintext);
    assert!(digest(&dest) == *input_digest, "network get returned other bytes than were put");
    let peak = servers.into_iter().map(child::Server::stop).max().unwrap_or(0);
    std::fs::remove_dir_all(dir).expect("remove cluster directory");
    (put, get, peak)
}

/// What the secure transport costs: 1 - secure / plaintext throughput.
fn transport_cost(rows: &[Row]) -> Option<String> {
    let find = |suffix: &str, op: &str| {
        rows.iter().find(|r| r.operation.starts_with(op) && r.operation.ends_with(suffix)).map(|r| r.mb_per_s)
    };
    let cost = |op: &str| {
        let secure = rows.iter().find(|r| r.operation.starts_with(op) && !r.operation.contains("encryption off"))?;
        Some(1.0 - secure.mb_per_s / find("(bench only)", op)?)
    };
    let (put, get) = (cost("network put")?, cost("network get")?);
    let ok = put <= TARGET_TRANSPORT_COST && get <= TARGET_TRANSPORT_COST;
    Some(format!(
        "Secure transport cost (1 - secure/plaintext throughput, same run): put {:.0}%, get {:.0}%; \
         target <= {:.0}%: {}.",
        put * 100.0,
        get * 100.0,
        TARGET_TRANSPORT_COST * 100.0,
        if ok { "met" } else { "MISSED" }
    ))
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
         before each timed step. Ratios: put rows against the put ceiling and baseline, get rows against the get ones; network rows \
         against local (fsync off).\n",
        FILE_SIZE >> 30
    )
    .unwrap();
    writeln!(out, "| operation | MB/s | vs crypto ceiling | vs I/O baseline | vs local | peak RSS MiB |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|").unwrap();
    let cell = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |x| format!("{x:.digits$}"));
    for r in rows {
        let mb = if r.mb_per_s.is_nan() { "-".into() } else { format!("{:.0}", r.mb_per_s) };
        writeln!(
            out,
            "| {} | {mb} | {} | {} | {} | {} |",
            r.operation,
            cell(r.vs_crypto, 2),
            cell(r.vs_io, 2),
            cell(r.vs_local, 2),
            cell(r.peak_rss_mib, 1)
        )
        .unwrap();
    }
    let fsync_off: Vec<&Row> = rows.iter().filter(|r| r.operation.ends_with("fsync off")).collect();
    let ratio_ok = fsync_off.iter().all(|r| r.vs_crypto.is_some_and(|x| x >= TARGET_RATIO));
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
    if let Some(line) = transport_cost(rows) {
        writeln!(out, "\n{line}").unwrap();
    }
    out
}

/// The repair section: each round's blobs checked and time, against the
/// first; the store's open time, against the open after a crash.
fn render_repair(m: repair::Measured) -> String {
    let (blobs, rounds) = (m.blobs, m.rounds);
    let mut out = String::new();
    writeln!(
        out,
        "\n## Repair round on a store of {blobs} blobs\n\n3 nodes in one process (loopback, secure transport), \
         each holding the same {blobs} blobs of 256 bytes, 2 replicas: nothing to copy. A round checks what \
         changed (new blobs, membership) and a sweep of {} confirmed blobs.\n",
        cas_core::node::REPAIR_SWEEP
    )
    .unwrap();
    writeln!(out, "| round | blobs checked | copies | ms | vs first round |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    let first = rounds.first().map_or(f64::NAN, |r| r.seconds);
    for r in &rounds {
        writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.3} |",
            r.what,
            r.report.checked,
            r.report.copied,
            r.seconds * 1e3,
            r.seconds / first
        )
        .unwrap();
    }
    writeln!(out, "\n| store of {blobs} blobs: open | ms | vs open after a crash |\n|---|---:|---:|").unwrap();
    let crashed = m.opens.last().map_or(f64::NAN, |o| o.1);
    for (what, seconds) in &m.opens {
        writeln!(out, "| {what} | {:.1} | {:.3} |", seconds * 1e3, seconds / crashed).unwrap();
    }
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
