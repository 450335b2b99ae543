//! The standard process metrics of `/metrics` (`process_*`, as Prometheus's
//! client libraries name them), read from `/proc/self` on Linux; elsewhere
//! there are none.

/// Appends the process metrics to `out`, each with its HELP and TYPE
/// lines; nothing where `/proc/self` cannot be read.
#[cfg(target_os = "linux")]
pub(crate) fn write_metrics(out: &mut String) {
    use std::fmt::Write;
    let Some(p) = read() else { return };
    let metrics: [(&str, &str, &str, f64); 5] = [
        ("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.", p.cpu_seconds),
        ("process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.", p.resident_bytes),
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size, in bytes.", p.virtual_bytes),
        ("process_open_fds", "gauge", "Open file descriptors.", p.open_fds),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            p.start_time,
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn write_metrics(_out: &mut String) {}

#[cfg(target_os = "linux")]
struct Process {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    start_time: f64,
}

#[cfg(target_os = "linux")]
fn read() -> Option<Process> {
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let (ticks, page) = (ticks as f64, page as f64);
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (in parentheses, which may hold
    // spaces), from field 3 (the state) on: see proc(5).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let (utime, stime, start_ticks, vsize, rss) = (field(14)?, field(15)?, field(22)?, field(23)?, field(24)?);
    // Boot time, in seconds since the epoch: the start time counts from it.
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: f64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    Some(Process {
        cpu_seconds: (utime + stime) / ticks,
        resident_bytes: rss * page,
        virtual_bytes: vsize,
        open_fds,
        start_time: boot + start_ticks / ticks,
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn reads_this_process() {
        let p = super::read().expect("/proc/self is readable on Linux");
        assert!(p.resident_bytes > 0.0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time > 1e9 && p.start_time <= now + 1.0);
    }
}
