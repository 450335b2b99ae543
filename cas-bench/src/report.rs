//! The rows of the table, rendered as Markdown (`bench/results.md`) and as
//! JSON (`bench/results.json`, which `bench/plot.py` draws).

use std::fmt::Write as _;

use crate::repair;

/// Targets of issue 10, each a share of the figure named in [`Fraction::of`].
pub const TARGET_LOCAL: f64 = 0.85;
pub const TARGET_LOCAL_FSYNC: f64 = 0.8;
pub const TARGET_NETWORK_PUT: f64 = 0.5;
pub const TARGET_NETWORK_GET: f64 = 0.8;
pub const TARGET_OPEN: f64 = 0.8;
pub const TARGET_RSS_MIB: f64 = 150.0;
/// The secure transport may cost at most this share of network throughput.
pub const TARGET_TRANSPORT_COST: f64 = 0.10;

/// A row's throughput as a share of what bounds it: what the plot draws and
/// what its target, if it has one, is judged on.
pub struct Fraction {
    /// What the share is of ("the combined ceiling", "local put"...).
    pub of: String,
    pub value: f64,
    pub target: Option<f64>,
}

/// One line of the table. Figures are medians over the runs (MB/s =
/// 10^6 bytes per second); ratios are medians of each run's own ratio.
#[derive(Default)]
pub struct Row {
    pub operation: String,
    pub mb_per_s: f64,
    /// Local rows: the crypto ceiling and I/O baseline of the row's
    /// direction measured beside each run, and what they allow together.
    pub crypto: Option<f64>,
    pub io: Option<f64>,
    pub combined: Option<f64>,
    pub vs_combined: Option<f64>,
    pub vs_crypto: Option<f64>,
    pub vs_io: Option<f64>,
    /// fsync on: the disk's fsynced write rate measured beside each run, and
    /// the row against min(combined ceiling, that rate).
    pub fsynced: Option<f64>,
    pub vs_fsync_bound: Option<f64>,
    /// Network and HTTP rows: against the local figure.
    pub vs_local: Option<f64>,
    /// Network rows: against raw TCP over loopback, measured beside each run.
    pub vs_raw_tcp: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub fraction: Option<Fraction>,
}

/// The median (the mean of the two middle values for an even count); NaN
/// for none.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `1 / (1/crypto + 1/io)`: crypto and the kernel's copies share the same
/// cores, so their times add up.
pub fn combined(crypto: f64, io: f64) -> f64 {
    1.0 / (1.0 / crypto + 1.0 / io)
}

/// "1 GiB", or "64 MiB" for sizes that are not whole GiB.
pub fn size_label(size: u64) -> String {
    if size.is_multiple_of(1 << 30) {
        format!("{} GiB", size >> 30)
    } else {
        format!("{} MiB", size >> 20)
    }
}

pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// How the numbers were taken: the paragraph above the table.
pub struct Method {
    pub cores: usize,
    pub size: u64,
    pub runs: usize,
    pub ceiling: String,
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

pub fn render(rows: &[Row], m: &Method) -> String {
    let mut out = String::new();
    writeln!(out, "# CAS benchmark\n").unwrap();
    writeln!(
        out,
        "{}, {} cores. {} file, 1 MiB chunks; MB/s = 10^6 plaintext bytes per second, the median of {} runs. \
         Beside each run of a local row, right before it and again right after it (each figure at the higher \
         of the two): the crypto ceiling of its direction ({}) and the I/O baseline (the same file operations \
         without crypto); the combined ceiling of a run is \
         1 / (1/crypto + 1/I/O baseline), since both share the same cores. `vs combined` is the median of each \
         run's throughput over its own combined ceiling (likewise `vs crypto`, `vs I/O`); the ceiling columns \
         are medians. Network rows are against local (fsync off), the HTTP row against local get of the same \
         run. Peak RSS is the largest VmHWM of the runs' processes. Dirty pages are synced before each timed \
         step.\n",
        cpu_name(),
        m.cores,
        size_label(m.size),
        m.runs,
        m.ceiling
    )
    .unwrap();
    writeln!(
        out,
        "| operation | MB/s | crypto ceiling | I/O baseline | combined ceiling | vs combined | vs crypto | vs I/O \
         | vs local | peak RSS MiB |"
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    for r in rows {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.operation,
            cell(Some(r.mb_per_s), 0),
            cell(r.crypto, 0),
            cell(r.io, 0),
            cell(r.combined, 0),
            cell(r.vs_combined, 2),
            cell(r.vs_crypto, 2),
            cell(r.vs_io, 2),
            cell(r.vs_local, 2),
            cell(r.peak_rss_mib, 1)
        )
        .unwrap();
    }
    let fsynced: Vec<&Row> = rows.iter().filter(|r| r.fsynced.is_some()).collect();
    if !fsynced.is_empty() {
        writeln!(
            out,
            "\nfsync on: the disk's fsynced write rate, measured beside each run (1 MiB pieces into new files, \
             each file then its directory fsynced, as the store does, 2 threads):"
        )
        .unwrap();
        for r in fsynced {
            writeln!(
                out,
                "{} MB/s beside {} (median); the row is at {} of min(combined ceiling, fsynced write rate).",
                cell(r.fsynced, 0),
                r.operation,
                cell(r.vs_fsync_bound, 2)
            )
            .unwrap();
        }
    }
    let tcp: Vec<String> =
        rows.iter().filter_map(|r| r.vs_raw_tcp.map(|v| format!("{} {v:.2}", r.operation))).collect();
    if !tcp.is_empty() {
        writeln!(
            out,
            "\nAgainst raw TCP over loopback (the same bytes through one socket, no crypto, measured beside each \
             network run; median of each run's ratio): {}.",
            tcp.join("; ")
        )
        .unwrap();
    }
    writeln!(out, "\nTargets (median of {} runs):\n", m.runs).unwrap();
    for r in rows {
        if let Some(Fraction { of, value, target: Some(target) }) = &r.fraction {
            if !value.is_finite() {
                continue; // not measured in this run (CAS_BENCH_NETWORK_ONLY: no local rows)
            }
            writeln!(
                out,
                "- {}: {} of {of} (target >= {target}): {}",
                r.operation,
                cell(Some(*value), 2),
                verdict(*value >= *target)
            )
            .unwrap();
        }
    }
    let rss_ok = rows.iter().filter_map(|r| r.peak_rss_mib).all(|m| m < TARGET_RSS_MIB);
    writeln!(out, "- peak RSS of every process < {TARGET_RSS_MIB} MiB: {}", verdict(rss_ok)).unwrap();
    if let Some(line) = transport_cost(rows) {
        writeln!(out, "- {line}").unwrap();
    }
    out
}

/// What the secure transport costs: 1 - secure / plaintext throughput.
fn transport_cost(rows: &[Row]) -> Option<String> {
    let cost = |op: &str| {
        let find = |plain: bool| {
            rows.iter()
                .find(|r| r.operation.starts_with(op) && r.operation.contains("encryption off") == plain)
                .map(|r| r.mb_per_s)
        };
        Some(1.0 - find(false)? / find(true)?)
    };
    let (put, get) = (cost("network put")?, cost("network get")?);
    let ok = put <= TARGET_TRANSPORT_COST && get <= TARGET_TRANSPORT_COST;
    Some(format!(
        "secure transport cost (1 - secure/plaintext throughput, same runs): put {:.0}%, get {:.0}% \
         (target <= {:.0}%): {}",
        put * 100.0,
        get * 100.0,
        TARGET_TRANSPORT_COST * 100.0,
        verdict(ok)
    ))
}

/// The rows as JSON for `bench/plot.py` (numbers in MB/s and ratios; null
/// where a row has no such figure).
pub fn to_json(rows: &[Row], m: &Method) -> String {
    let num = |v: Option<f64>| v.filter(|x| x.is_finite()).map_or("null".to_string(), |x| format!("{x:.4}"));
    let mut out = String::new();
    writeln!(
        out,
        "{{\n  \"cpu\": {},\n  \"cores\": {},\n  \"file_bytes\": {},\n  \"runs\": {},\n  \"rows\": [",
        json_string(&cpu_name()),
        m.cores,
        m.size,
        m.runs
    )
    .unwrap();
    for (i, r) in rows.iter().enumerate() {
        let fraction = r.fraction.as_ref().map_or("null".to_string(), |f| {
            format!(
                "{{\"of\": {}, \"value\": {}, \"target\": {}}}",
                json_string(&f.of),
                num(Some(f.value)),
                num(f.target)
            )
        });
        writeln!(
            out,
            "    {{\"operation\": {}, \"mb_per_s\": {}, \"crypto_mb_per_s\": {}, \"io_baseline_mb_per_s\": {}, \
             \"combined_mb_per_s\": {}, \"vs_combined\": {}, \"fsynced_mb_per_s\": {}, \"vs_fsync_bound\": {}, \
             \"vs_local\": {}, \"vs_raw_tcp\": {}, \"peak_rss_mib\": {}, \"fraction\": {fraction}}}{}",
            json_string(&r.operation),
            num(Some(r.mb_per_s)),
            num(r.crypto),
            num(r.io),
            num(r.combined),
            num(r.vs_combined),
            num(r.fsynced),
            num(r.vs_fsync_bound),
            num(r.vs_local),
            num(r.vs_raw_tcp),
            num(r.peak_rss_mib),
            if i + 1 < rows.len() { "," } else { "" }
        )
        .unwrap();
    }
    out.push_str("  ]\n}\n");
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The repair section: each round's blobs checked and time, against the
/// first; the store's open time, against the open after a crash.
pub fn render_repair(m: repair::Measured) -> String {
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
