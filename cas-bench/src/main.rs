//! `make bench`: on this machine, in one run, local put and get of a 1 GiB
//! file through the real `Node` API (fsync off and on), each run with the
//! crypto ceiling and the I/O baseline of its direction measured beside it
//! (and the disk's fsynced write rate beside the fsync-on runs); `GET
//! /cas/{key}` of that file from the HTTP gateway over loopback; network put
//! (3 replicas), get and sequential `Node::open` reads (from non-owners) on
//! a loopback cluster of node processes, with raw TCP over loopback beside
//! them; and the peak memory of each process. Prints a Markdown table and
//! writes it to `bench/results.md`, and the rows to `bench/results.json`
//! (which `bench/plot.py` draws into `bench/throughput.png`).
//!
//! Throughput is plaintext bytes per second (MB = 10^6 bytes), the median
//! of three runs. The ceilings are measured beside each run rather than once
//! because on this VM fresh page-cache memory is slow to touch the first
//! time, so the same copy costs more or less from one moment to the next;
//! each run is judged against what the machine allowed at that moment. Each
//! put and get runs in a child process of its own (this binary with a hidden
//! subcommand) whose peak RSS is read from VmHWM. Dirty pages are synced
//! before each timed step, so that one step's writeback does not run during
//! the next; the input file is in the page cache.
//!
//! Knobs: `CAS_BENCH_MIB` sets the file size in MiB (default 1024; for quick
//! runs); `CAS_BENCH_DIR` where the files go (default: the system temporary
//! directory); `CAS_BENCH_PARALLELISM` sets `Config::parallelism` in the
//! children; `CAS_BENCH_NETWORK_ONLY=1` runs only the network rows (printed,
//! not saved), `CAS_BENCH_REPAIR_ONLY=1` only the repair rounds;
//! `CAS_BENCH_LOCAL_ONLY=1` only the local rows (printed, not saved);
//! `BENCH_BIG=1` only the 5 GiB run of `big.rs` (into `bench/results-big.md`).
//!
//! After the table, the cost of a repair round on a store of 100,000 blobs
//! (`repair.rs`): the first round after a start against rounds with no change.

mod baseline;
mod big;
mod ceiling;
mod child;
mod repair;
mod report;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sha2::{Digest, Sha256};

use report::{combined, median, size_label, Fraction, Method, Row};

/// Size of the file put and got, in MiB, unless SIZE_ENV says otherwise.
const DEFAULT_MIB: u64 = 1024;
const SIZE_ENV: &str = "CAS_BENCH_MIB";
/// Set: only the network rows.
const NETWORK_ONLY_ENV: &str = "CAS_BENCH_NETWORK_ONLY";
/// Set: only the repair rounds.
const REPAIR_ONLY_ENV: &str = "CAS_BENCH_REPAIR_ONLY";
/// Set: only the local rows, printed, not saved.
const LOCAL_ONLY_ENV: &str = "CAS_BENCH_LOCAL_ONLY";
/// Set: only the big run (`big.rs`).
const BIG_ENV: &str = "BENCH_BIG";
/// Runs of each put/get; the median is reported.
const RUNS: usize = 3;
/// The crypto ceiling beside each run: the best of this many windows.
const CEILING_WINDOWS: usize = 3;
const CEILING_TIME: Duration = Duration::from_millis(500);
/// Bytes written by each measurement of the fsynced write rate.
const FSYNCED_BYTES: u64 = 256 << 20;
/// The pieces of the baselines: one default chunk.
const PIECE: usize = 1 << 20;
/// Nodes of the loopback cluster, besides the putting and getting ones.
const CLUSTER_NODES: usize = 4;

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

/// The file size: SIZE_ENV MiB, or `default_mib`.
fn file_size(default_mib: u64) -> u64 {
    let mib = std::env::var(SIZE_ENV).ok().map(|v| v.parse::<u64>().expect("CAS_BENCH_MIB: a number of MiB"));
    let mib = mib.unwrap_or(default_mib);
    assert!(mib > 0, "CAS_BENCH_MIB must be at least 1");
    mib << 20
}

/// `bench/NAME` in the source tree.
fn results_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench");
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir.join(name)
}

/// Where the bench works: the input file, in a temporary directory removed
/// when this is dropped.
struct Setup {
    work: tempfile::TempDir,
    input: PathBuf,
    digest: [u8; 32],
    size: u64,
    cores: usize,
}

impl Setup {
    fn new(base: &Path, size: u64, cores: usize) -> Setup {
        let work = tempfile::Builder::new().prefix("cas-bench-").tempdir_in(base).expect("bench directory");
        let input = work.path().join("input.bin");
        eprintln!("writing a {} input file in {}...", size_label(size), work.path().display());
        write_input(&input, size);
        let digest = digest(&input); // also warms the page cache
        sync();
        Setup { work, input, digest, size, cores }
    }

    fn path(&self) -> &Path {
        self.work.path()
    }
}

fn bench() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let base = std::env::var_os("CAS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    if std::env::var_os(REPAIR_ONLY_ENV).is_some() {
        let work = tempfile::Builder::new().prefix("cas-bench-").tempdir_in(&base).expect("bench directory");
        println!("{}", report::render_repair(repair::measure(work.path())));
        return;
    }
    if std::env::var_os(BIG_ENV).is_some() {
        big::run(&base, file_size(big::DEFAULT_MIB), cores);
        return;
    }
    let setup = Setup::new(&base, file_size(DEFAULT_MIB), cores);
    let method = Method {
        cores,
        size: setup.size,
        runs: RUNS,
        ceiling: format!("best of {CEILING_WINDOWS} windows of {CEILING_TIME:?} on every core"),
    };
    if std::env::var_os(NETWORK_ONLY_ENV).is_some() {
        // A knob for experiments: the network rows only, printed, not saved.
        println!("{}", report::render(&network(&setup, f64::NAN, f64::NAN), &method));
        return;
    }
    let mut rows = local(&setup);
    if std::env::var_os(LOCAL_ONLY_ENV).is_some() {
        // A knob for experiments: the local rows only, printed, not saved.
        println!("{}", report::render(&rows, &method));
        return;
    }
    let fsync_off = |op: &str| {
        let row = rows.iter().find(|r| r.operation.starts_with(op) && r.operation.ends_with("fsync off"));
        row.expect("local row").mb_per_s * 1e6
    };
    let (local_put, local_get) = (fsync_off("local put"), fsync_off("local get"));
    rows.extend(network(&setup, local_put, local_get));

    let mut table = report::render(&rows, &method);
    table.push_str(&report::render_repair(repair::measure(setup.path())));
    println!("{table}");
    let (md, json) = (results_path("results.md"), results_path("results.json"));
    std::fs::write(&md, &table).expect("write bench/results.md");
    std::fs::write(&json, report::to_json(&rows, &method)).expect("write bench/results.json");
    eprintln!("written to {} and {}", md.display(), json.display());
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Writes every dirty page to disk (outside the timed steps).
fn sync() {
    let ok = std::process::Command::new("sync").status().is_ok_and(|s| s.success());
    assert!(ok, "`sync` failed");
}

/// Sets the files of an earlier step aside, emptied, instead of deleting
/// them: they go with the bench's directory when it ends. On ext4 without a
/// journal (as on this project's VM), a file made within a minute after
/// files were deleted in its inode group first scans past the deleted
/// inodes (`recently_deleted`): 15% of a local put's samples when the step before
/// it had removed its 1024 files. A write-once store rarely deletes, so no
/// timed step follows a mass deletion here. Emptying frees the space and the
/// page cache as deleting does; the inodes stay until the end.
fn retire(path: &Path) {
    static RETIRED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    empty_files(path).unwrap_or_else(|e| panic!("emptying {}: {e}", path.display()));
    let n = RETIRED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let aside = path.with_file_name(format!("retired-{n}"));
    std::fs::rename(path, &aside).unwrap_or_else(|e| panic!("setting {} aside: {e}", path.display()));
}

/// Truncates every file under `path` (or `path` itself) to 0 bytes.
fn empty_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            empty_files(&entry?.path())?;
        }
        return Ok(());
    }
    if !meta.is_file() {
        return Ok(());
    }
    if meta.permissions().mode() & 0o200 == 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)
}

/// Plaintext bytes per second of one measured operation on `size` bytes.
fn throughput(m: &child::Measured, size: u64) -> f64 {
    size as f64 / m.seconds
}

/// One run of a local operation and what was measured beside it, in bytes
/// per second.
struct LocalRun {
    measured: child::Measured,
    crypto: f64,
    io: f64,
    /// fsync on: the disk's fsynced write rate.
    fsynced: Option<f64>,
}

/// The I/O baseline of put and get beside run `run`, in the same memory
/// state as the operation: on a VM whose freed memory goes back to the host,
/// writes into fresh pages cost several times more than into warm ones.
fn io_baseline(setup: &Setup, run: usize) -> (f64, f64) {
    let dir = setup.path().join(format!("baseline-{run}"));
    let out = setup.path().join("baseline.out");
    sync();
    let put = baseline::put(&setup.input, &dir, PIECE, setup.cores);
    sync();
    let get = baseline::get(&dir, &out, setup.size, PIECE, setup.cores);
    retire(&dir);
    retire(&out);
    (put, get)
}

/// What bounds one local run, in bytes per second.
#[derive(Clone, Copy)]
struct Ceilings {
    crypto_put: f64,
    crypto_get: f64,
    io_put: f64,
    io_get: f64,
    /// fsync on: the disk's fsynced write rate.
    fsynced: Option<f64>,
}

impl Ceilings {
    fn measure(setup: &Setup, run: usize, fsync: bool) -> Ceilings {
        let (crypto_put, crypto_get) = ceiling::measure(CEILING_WINDOWS, CEILING_TIME);
        let (io_put, io_get) = io_baseline(setup, run);
        let fsynced = fsync.then(|| fsynced_rate(setup));
        Ceilings { crypto_put, crypto_get, io_put, io_get, fsynced }
    }

    /// Each figure at the higher of the two measurements.
    fn max(self, other: Ceilings) -> Ceilings {
        Ceilings {
            crypto_put: self.crypto_put.max(other.crypto_put),
            crypto_get: self.crypto_get.max(other.crypto_get),
            io_put: self.io_put.max(other.io_put),
            io_get: self.io_get.max(other.io_get),
            fsynced: self.fsynced.zip(other.fsynced).map(|(a, b)| a.max(b)),
        }
    }
}

/// The disk's fsynced write rate beside a run (bytes per second).
fn fsynced_rate(setup: &Setup) -> f64 {
    let dir = setup.path().join("fsynced");
    sync();
    let rate = baseline::fsynced_write(&dir, FSYNCED_BYTES.min(setup.size), PIECE, setup.cores);
    retire(&dir);
    rate
}

/// Local put and get, fsync off and on, and the HTTP gateway's GET, each
/// run with its ceilings measured beside it.
fn local(setup: &Setup) -> Vec<Row> {
    let work = setup.path();
    let size = size_label(setup.size);
    let (mut rows, mut https, mut http_vs_get) = (Vec::new(), Vec::new(), Vec::new());
    for fsync in [false, true] {
        let label = if fsync { "fsync on" } else { "fsync off" };
        let flag = if fsync { "fsync" } else { "no-fsync" };
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            eprintln!("{label}: run {} of {RUNS}: ceilings, put and get, ceilings again...", run + 1);
            // The ceilings are measured right before the run and again right
            // after it, each figure kept at the higher of the two: the run is
            // never judged against a moment (load, memory state) worse than
            // its own. Measured only before the run, in a first full run on a
            // loaded machine, the I/O baseline came out below local put itself.
            let before = Ceilings::measure(setup, run, fsync);
            let data_dir = work.join(format!("data-{run}"));
            let dest = work.join(format!("out-{run}.bin"));
            sync();
            let put = child::run(&["put", path_str(&data_dir), path_str(&setup.input), flag]);
            let key = put.key.clone().expect("put reports the key");
            sync();
            let get = child::run(&["get", path_str(&data_dir), &key, path_str(&dest), flag]);
            assert!(digest(&dest) == setup.digest, "get returned other bytes than were put");
            let mut http = None;
            if !fsync {
                // The same file through the HTTP gateway, over loopback.
                retire(&dest);
                sync();
                let measured = child::run(&["http", path_str(&data_dir), &key, path_str(&dest), flag]);
                assert!(digest(&dest) == setup.digest, "GET /cas/{{key}} returned other bytes than were put");
                http_vs_get.push(get.seconds / measured.seconds);
                http = Some(measured);
            }
            retire(&data_dir);
            retire(&dest);
            let c = before.max(Ceilings::measure(setup, run, fsync));
            if let Some(http) = http {
                https.push(LocalRun { measured: http, crypto: c.crypto_get, io: c.io_get, fsynced: None });
            }
            puts.push(LocalRun { measured: put, crypto: c.crypto_put, io: c.io_put, fsynced: c.fsynced });
            gets.push(LocalRun { measured: get, crypto: c.crypto_get, io: c.io_get, fsynced: c.fsynced });
        }
        let target = Some(if fsync { report::TARGET_LOCAL_FSYNC } else { report::TARGET_LOCAL });
        rows.push(local_row(format!("local put {size}, {label}"), &puts, setup.size, target));
        rows.push(local_row(format!("local get {size}, {label}"), &gets, setup.size, target));
    }
    let http = format!("HTTP GET /cas/{{key}} {size} over loopback into a file, fsync off (vs local get)");
    let mut http = local_row(http, &https, setup.size, None);
    http.vs_local = Some(median(http_vs_get));
    rows.push(http);
    rows
}

/// A local row: medians of the runs and of each run's ratios; the largest
/// peak RSS.
fn local_row(operation: String, runs: &[LocalRun], size: u64, target: Option<f64>) -> Row {
    let each = |f: &dyn Fn(&LocalRun) -> f64| median(runs.iter().map(f));
    let rate = |r: &LocalRun| throughput(&r.measured, size);
    let ceiling = |r: &LocalRun| combined(r.crypto, r.io);
    let vs_combined = each(&|r| rate(r) / ceiling(r));
    let fsync_on = runs.iter().all(|r| r.fsynced.is_some());
    let bound = |r: &LocalRun| ceiling(r).min(r.fsynced.unwrap_or(f64::INFINITY));
    let vs_fsync_bound = fsync_on.then(|| each(&|r| rate(r) / bound(r)));
    let fraction = match vs_fsync_bound {
        Some(value) => Fraction { of: "min(combined ceiling, fsynced write rate)".into(), value, target },
        None => Fraction { of: "the combined ceiling".into(), value: vs_combined, target },
    };
    Row {
        operation,
        mb_per_s: each(&rate) / 1e6,
        crypto: Some(each(&|r| r.crypto) / 1e6),
        io: Some(each(&|r| r.io) / 1e6),
        combined: Some(each(&ceiling) / 1e6),
        vs_combined: Some(vs_combined),
        vs_crypto: Some(each(&|r| rate(r) / r.crypto)),
        vs_io: Some(each(&|r| rate(r) / r.io)),
        fsynced: fsync_on.then(|| each(&|r| r.fsynced.unwrap_or(f64::NAN)) / 1e6),
        vs_fsync_bound,
        peak_rss_mib: Some(peak_mib(runs.iter().map(|r| r.measured.peak_rss_kib))),
        fraction: Some(fraction),
        ..Row::default()
    }
}

/// The largest of peak RSS figures in KiB, in MiB.
fn peak_mib(kib: impl IntoIterator<Item = u64>) -> f64 {
    kib.into_iter().max().unwrap_or(0) as f64 / 1024.0
}

/// Network put and get on a loopback cluster of node processes: a put from
/// a fifth node (3 replicas), then a get, and `Node::open` read in order, on
/// further nodes that hold nothing. Fresh cluster per run, fsync off
/// everywhere. Each run is done twice, over the secure transport and with
/// encryption off after the handshake (a bench-only mode; no open() there),
/// back to back so that both see the same machine, after raw TCP over
/// loopback.
fn network(setup: &Setup, local_put: f64, local_get: f64) -> Vec<Row> {
    let (mut secure, mut plain, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        eprintln!("network: run {} of {RUNS}: raw TCP over loopback...", run + 1);
        raw.push(baseline::tcp_loopback(setup.size, PIECE));
        // Secure and plaintext clusters take turns going first: neither
        // always runs in the memory state the other leaves behind.
        let order = if run % 2 == 0 { [false, true] } else { [true, false] };
        for plaintext in order {
            let what = if plaintext { "plaintext" } else { "secure" };
            eprintln!("network: run {} of {RUNS}, {what} ({CLUSTER_NODES} node processes)...", run + 1);
            let plan = ClusterPlan { plaintext, open: !plaintext, lean_get: !plaintext, drop_owner: false };
            let result = cluster_run(&setup.path().join(format!("cluster-{run}-{what}")), setup, plan);
            if plaintext { &mut plain } else { &mut secure }.push(result);
        }
    }
    let size = size_label(setup.size);
    let row = |operation: String, runs: &[&child::Measured], local: f64, target: Option<(&str, f64)>| {
        let mb = median(runs.iter().map(|m| throughput(m, setup.size)));
        let vs_local = mb / local;
        Row {
            operation,
            mb_per_s: mb / 1e6,
            vs_local: Some(vs_local),
            vs_raw_tcp: Some(median(runs.iter().zip(&raw).map(|(m, r)| throughput(m, setup.size) / r))),
            peak_rss_mib: Some(peak_mib(runs.iter().map(|m| m.peak_rss_kib))),
            fraction: target.map(|(of, t)| Fraction { of: of.into(), value: vs_local, target: Some(t) }),
            ..Row::default()
        }
    };
    let put_name = format!("network put {size}, 3 replicas, {CLUSTER_NODES}+1 processes");
    let get_name = format!("network get {size}, from non-owners");
    let opens: Vec<&child::Measured> = secure.iter().filter_map(|r| r.open.as_ref()).collect();
    let mut open = row(
        format!("network open() {size} read sequentially, 1 MiB reads into a file, from non-owners"),
        &opens,
        local_get,
        None,
    );
    let vs_get = median(secure.iter().filter_map(|r| Some(r.get.seconds / r.open.as_ref()?.seconds)));
    open.fraction =
        Some(Fraction { of: "network get_file (same runs)".into(), value: vs_get, target: Some(report::TARGET_OPEN) });
    // Against local get too (it writes one copy, as local get does), with
    // no target of its own: in the plot beside the default getter.
    let mut lean_get = row(
        format!("{get_name}, not keeping what it fetches (keep_fetched off)"),
        &secure.iter().filter_map(|r| r.lean_get.as_ref()).collect::<Vec<_>>(),
        local_get,
        None,
    );
    lean_get.fraction = lean_get.vs_local.map(|value| Fraction { of: "local get".into(), value, target: None });
    let rows = vec![
        Row {
            operation: format!("raw TCP over loopback {size}: one socket, 1 MiB writes and reads, no crypto"),
            mb_per_s: median(raw.iter().copied()) / 1e6,
            ..Row::default()
        },
        row(put_name.clone(), &puts(&secure), local_put, Some(("local put", report::TARGET_NETWORK_PUT))),
        row(get_name.clone(), &gets(&secure), local_get, Some(("local get", report::TARGET_NETWORK_GET))),
        open,
        lean_get,
        row(format!("{put_name}, encryption off (bench only)"), &puts(&plain), local_put, None),
        row(format!("{get_name}, encryption off (bench only)"), &gets(&plain), local_get, None),
        Row {
            operation: "cluster node process (largest of all)".into(),
            mb_per_s: f64::NAN,
            peak_rss_mib: Some(peak_mib(secure.iter().chain(&plain).flat_map(|r| r.node_peaks_kib.clone()))),
            ..Row::default()
        },
    ];
    rows
}

fn puts(runs: &[ClusterRun]) -> Vec<&child::Measured> {
    runs.iter().map(|r| &r.put).collect()
}

fn gets(runs: &[ClusterRun]) -> Vec<&child::Measured> {
    runs.iter().map(|r| &r.get).collect()
}

/// How one cluster run goes.
struct ClusterPlan {
    /// Encryption off after the handshake (bench only).
    plaintext: bool,
    /// After the get, `Node::open` read in order on another empty node.
    open: bool,
    /// Then a get by another empty node that does not keep what it fetches.
    lean_get: bool,
    /// Delete the putting node's files once it is gone (saves disk space).
    drop_owner: bool,
}

/// What one cluster run measured.
struct ClusterRun {
    put: child::Measured,
    get: child::Measured,
    open: Option<child::Measured>,
    lean_get: Option<child::Measured>,
    /// The peak RSS of each node process, in KiB.
    node_peaks_kib: Vec<u64>,
}

/// One fresh cluster of CLUSTER_NODES processes: the put, the get, maybe
/// the open() read, each in a process of its own.
fn cluster_run(dir: &Path, setup: &Setup, plan: ClusterPlan) -> ClusterRun {
    let first = child::Server::start(&dir.join("node0"), None, plan.plaintext);
    let boot = first.address.clone();
    let mut servers = vec![first];
    for i in 1..CLUSTER_NODES {
        servers.push(child::Server::start(&dir.join(format!("node{i}")), Some(&boot), plan.plaintext));
    }
    let peers = CLUSTER_NODES.to_string();
    let measure_env = |op: &str, node: &str, arg: &str, dest: Option<&Path>, env: &[(&str, &str)]| {
        let data = dir.join(node);
        let mut args = vec![op, path_str(&data), arg];
        args.extend(dest.map(path_str));
        args.extend(["no-fsync", boot.as_str(), peers.as_str()]);
        sync();
        child::run_env(&args, plan.plaintext, env)
    };
    let measure = |op: &str, node: &str, arg: &str, dest: Option<&Path>| measure_env(op, node, arg, dest, &[]);
    let put = measure("put", "owner", path_str(&setup.input), None);
    let key = put.key.clone().expect("put reports the key");
    if plan.drop_owner {
        retire(&dir.join("owner"));
    }
    // The owner is gone; the getter holds nothing: every byte crosses the network.
    let dest = dir.join("out.bin");
    let get = measure("get", "getter", &key, Some(&dest));
    check_output(&dest, setup, "network get");
    let open = plan.open.then(|| {
        let open = measure("open", "opener", &key, Some(&dest));
        check_output(&dest, setup, "open()");
        open
    });
    let lean_get = plan.lean_get.then(|| {
        let get = measure_env("get", "lean-getter", &key, Some(&dest), &[(child::KEEP_FETCHED_ENV, "0")]);
        check_output(&dest, setup, "network get (keep_fetched off)");
        get
    });
    let node_peaks_kib = servers.into_iter().map(child::Server::stop).collect();
    retire(dir);
    ClusterRun { put, get, open, lean_get, node_peaks_kib }
}

/// Checks that `dest` holds the input, then sets it aside.
fn check_output(dest: &Path, setup: &Setup, what: &str) {
    assert!(digest(dest) == setup.digest, "{what} returned other bytes than were put");
    retire(dest);
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
