//! Put and get stream: a file of several GiB goes through in bounded memory.
//! Peak RSS (ru_maxrss of a child process) is deterministic enough to assert.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{assert_big_file, local_example, write_big_file};

const SIZE: u64 = 2 * 1024 * 1024 * 1024 + 12345;
const LIMIT_MIB: u64 = 150;

/// Runs `cmd` to completion; returns its stdout and its peak RSS in MiB.
#[allow(clippy::zombie_processes, reason = "the child is reaped by wait4, which also reports its rusage")]
fn run_measured(cmd: &mut Command) -> (String, u64) {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start child");
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which nothing else reaps.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed ({status}): {stderr}");
    // ru_maxrss is in KiB on Linux. It can include the parent's RSS at the
    // spawn (vfork), which only makes this bound conservative.
    (stdout, usage.ru_maxrss as u64 / 1024)
}

/// A directory for the big files: in memory (/dev/shm) when it has room, so
/// the test measures the pipeline and not the disk.
fn big_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let room = free_bytes(shm).unwrap_or(0);
    if room > 3 * SIZE + (4 << 30) {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then(|| st.f_bavail * st.f_frsize)
}

#[test]
fn multi_gigabyte_put_and_get_stay_under_150_mib() {
    let dir = big_dir();
    let input: PathBuf = dir.path().join("big.bin");
    let data_dir = dir.path().join("data");
    let out = dir.path().join("out.bin");
    write_big_file(&input, 41, SIZE);

    let (stdout, put_mib) = run_measured(local_example().arg("--no-fsync").arg("put").arg(&data_dir).arg(&input));
    let key = stdout.lines().last().expect("put prints the key").to_owned();
    std::fs::remove_file(&input).unwrap();

    let (_, get_mib) = run_measured(local_example().arg("--no-fsync").arg("get").arg(&data_dir).arg(&key).arg(&out));
    std::fs::remove_dir_all(&data_dir).unwrap();
    println!("peak RSS for {SIZE} bytes: put {put_mib} MiB, get {get_mib} MiB");
    assert_big_file(&out, 41, SIZE);
    std::fs::remove_file(&out).unwrap();

    assert!(put_mib < LIMIT_MIB, "put peaked at {put_mib} MiB, limit {LIMIT_MIB} MiB");
    assert!(get_mib < LIMIT_MIB, "get peaked at {get_mib} MiB, limit {LIMIT_MIB} MiB");
}
