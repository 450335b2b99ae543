//! The file a get writes. Where the file system allows it (Linux O_TMPFILE:
//! ext4, xfs, btrfs, tmpfs...), it has no name until it is complete: a
//! process killed in the middle of a get leaves nothing behind, not even a
//! temporary file. Elsewhere it is a named temporary file beside the
//! destination, unlinked on failure or cancellation (but left behind if the
//! process is killed).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use tempfile::TempPath;

const TEMP_PREFIX: &str = ".cas-get-";

/// Where the bytes go until the commit.
pub(crate) enum Pending {
    /// An O_TMPFILE file in `dir`, linked in at the commit.
    Unnamed { dir: PathBuf },
    /// A named temporary file, unlinked when dropped.
    Named(TempPath),
}

/// Opens the output for `dest`, in the directory `parent`.
pub(crate) fn create(parent: &Path) -> io::Result<(File, Pending)> {
    // 0666 before the umask, like any newly created file.
    match OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(0o666).open(parent) {
        Ok(file) => return Ok((file, Pending::Unnamed { dir: parent.to_path_buf() })),
        // Not supported by this file system or kernel: a named temporary file.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(parent)?;
    let (file, path) = tmp.into_parts();
    Ok((file, Pending::Named(path)))
}

impl Pending {
    /// Gives the complete file its name `dest`, replacing what was there.
    pub(crate) fn commit(self, file: &File, dest: &Path) -> io::Result<()> {
        match self {
            Pending::Named(path) => path.persist(dest).map_err(|e| e.error),
            Pending::Unnamed { dir } => {
                // linkat cannot replace a file: link under a fresh name, then rename over `dest`.
                let name = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
                link_unnamed(file, &name)?;
                std::fs::rename(&name, dest).inspect_err(|_| {
                    let _ = std::fs::remove_file(&name);
                })
            }
        }
    }
}

/// Links an O_TMPFILE file at `name` (through /proc/self/fd, which needs no
/// privilege; AT_EMPTY_PATH, which does, when /proc is not mounted).
fn link_unnamed(file: &File, name: &Path) -> io::Result<()> {
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
