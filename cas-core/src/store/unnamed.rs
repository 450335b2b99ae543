//! Files without a name (Linux O_TMPFILE: ext4, xfs, btrfs, tmpfs...),
//! linked in under their name once complete: a process killed while writing
//! one leaves nothing behind. Used for blobs and for the file a get writes.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// A new file without a name in `dir` (O_TMPFILE), or `None` where the
/// file system or kernel does not support it.
pub(crate) fn open_unnamed(dir: &Path, mode: u32) -> io::Result<Option<File>> {
    match OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(mode).open(dir) {
        Ok(file) => Ok(Some(file)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Links an O_TMPFILE file at `name` (through /proc/self/fd, which needs no
/// privilege; AT_EMPTY_PATH, which does, when /proc is not mounted).
pub(crate) fn link_unnamed(file: &File, name: &Path) -> io::Result<()> {
    let target = CString::new(name.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let fd = file.as_raw_fd();
    let proc_path = CString::new(format!("/proc/self/fd/{fd}")).map_err(io::Error::other)?;
    // SAFETY: both paths are NUL-terminated C strings that outlive the calls.
    let rc = unsafe {
        libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if rc == 0 {
        return Ok(());
    }
    let proc_err = io::Error::last_os_error();
    let empty = c"";
    // SAFETY: as above; AT_EMPTY_PATH links the file `fd` itself.
    let rc = unsafe { libc::linkat(fd, empty.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_EMPTY_PATH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(proc_err)
    }
}
