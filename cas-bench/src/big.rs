//! `BENCH_BIG=1 make bench`: a 5 GiB file (`CAS_BENCH_MIB` overrides) put
//! and got locally, then on the loopback cluster (4 node processes, the
//! putting client and the getting client), once each, reporting every
//! process's peak RSS (VmHWM) against the 150 MiB target. Memory must be
//! bounded by configuration, not by file size: this is the file size that
//! would show it. Writes `bench/results-big.md`; checks the free disk space
//! first and says so, and skips, if there is not enough.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::{cpu_name, size_label, TARGET_RSS_MIB};
use crate::{child, cluster_run, digest, path_str, results_path, sync, throughput, ClusterPlan, Setup, CLUSTER_NODES};

/// The file size of the big run, in MiB.
pub const DEFAULT_MIB: u64 = 5 << 10;

/// Free bytes for an unprivileged user on the file system of `dir` (`df`).
fn free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["-Pk"]).arg(dir).output().expect("run df");
    assert!(out.status.success(), "df {} failed", dir.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).expect("df prints a line for the file system");
    let kib: u64 = line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).expect("df's Available column");
    kib << 10
}

/// One process of the big run.
struct Process {
    name: String,
    did: String,
    mb_per_s: Option<f64>,
    peak_rss_kib: u64,
}

pub fn run(base: &Path, size: u64, cores: usize) {
    let results = results_path("results-big.md");
    let mut out = format!("# CAS benchmark: a {} file (BENCH_BIG=1)\n\n", size_label(size));
    // At the fullest: the input, the owner's copy and 3 replicas during the
    // network put; a margin for the file systems' own needs.
    let need = 5 * size + (1 << 30);
    let free = free_bytes(base);
    if free < need {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        writeln!(
            out,
            "Skipped: {:.1} GiB free in {}, {:.1} GiB needed (5x the file and 1 GiB). Set CAS_BENCH_DIR to a \
             larger file system or CAS_BENCH_MIB to a smaller size.",
            gib(free),
            base.display(),
            gib(need)
        )
        .unwrap();
        eprint!("{out}");
        std::fs::write(&results, &out).expect("write bench/results-big.md");
        return;
    }
    let setup = Setup::new(base, size, cores);
    let label = size_label(size);
    let mut processes = Vec::new();

    eprintln!("big: local put and get of {label}...");
    let (data, dest) = (setup.path().join("local"), setup.path().join("out.bin"));
    sync();
    let put = child::run(&["put", path_str(&data), path_str(&setup.input), "no-fsync"]);
    let key = put.key.clone().expect("put reports the key");
    sync();
    let get = child::run(&["get", path_str(&data), &key, path_str(&dest), "no-fsync"]);
    assert!(digest(&dest) == setup.digest, "get returned other bytes than were put");
    std::fs::remove_dir_all(&data).expect("remove data directory");
    std::fs::remove_file(&dest).expect("remove output");
    for (name, did, m) in [("local put", "put_file, fsync off", &put), ("local get", "get_file, fsync off", &get)] {
        processes.push(Process {
            name: name.into(),
            did: did.into(),
            mb_per_s: Some(throughput(m, size) / 1e6),
            peak_rss_kib: m.peak_rss_kib,
        });
    }

    eprintln!("big: network put and get of {label} ({CLUSTER_NODES} node processes)...");
    let plan = ClusterPlan { plaintext: false, open: false, lean_get: false, drop_owner: true };
    let cluster = cluster_run(&setup.path().join("cluster"), &setup, plan);
    for (i, kib) in cluster.node_peaks_kib.iter().enumerate() {
        let did = "held replicas of the put's chunks, served the get".into();
        processes.push(Process { name: format!("cluster node {i}"), did, mb_per_s: None, peak_rss_kib: *kib });
    }
    for (name, did, m) in [
        ("network put client", "put_file, 3 replicas", &cluster.put),
        ("network get client", "get_file, holding nothing", &cluster.get),
    ] {
        processes.push(Process {
            name: name.into(),
            did: did.into(),
            mb_per_s: Some(throughput(m, size) / 1e6),
            peak_rss_kib: m.peak_rss_kib,
        });
    }

    writeln!(
        out,
        "{}, {cores} cores. One run each (not a median: this run is about memory), fsync off, 1 MiB chunks; \
         peak RSS is each process's VmHWM. The network part is the loopback cluster of `make bench` \
         ({CLUSTER_NODES} node processes, 3 replicas, secure transport), the putting and the getting client \
         in processes of their own; the getting one holds nothing.\n",
        cpu_name()
    )
    .unwrap();
    writeln!(out, "| process | did | MB/s | peak RSS MiB | < {TARGET_RSS_MIB} MiB |").unwrap();
    writeln!(out, "|---|---|---:|---:|---|").unwrap();
    let mut all_ok = true;
    for p in &processes {
        let mib = p.peak_rss_kib as f64 / 1024.0;
        let ok = mib < TARGET_RSS_MIB;
        all_ok &= ok;
        let mb = p.mb_per_s.map_or("-".into(), |v| format!("{v:.0}"));
        let verdict = if ok { "yes" } else { "NO" };
        writeln!(out, "| {} | {} | {mb} | {mib:.1} | {verdict} |", p.name, p.did).unwrap();
    }
    let verdict = if all_ok { "met" } else { "MISSED" };
    writeln!(out, "\nTarget: every process's peak RSS < {TARGET_RSS_MIB} MiB: {verdict}.").unwrap();
    println!("{out}");
    std::fs::write(&results, &out).expect("write bench/results-big.md");
    eprintln!("written to {}", results.display());
}
