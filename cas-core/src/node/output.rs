//! The file a get writes. Where the file system allows it (Linux O_TMPFILE:
//! ext4, xfs, btrfs, tmpfs...), it has no name until it is complete: a
//! process killed in the middle of a get leaves nothing behind, not even a
//! temporary file. Elsewhere it is a named temporary file beside the
//! destination, unlinked on failure or cancellation (but left behind if the
//! process is killed).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use crate::store::unnamed::{link_unnamed, open_unnamed};

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
    if let Some(file) = open_unnamed(parent, 0o666)? {
        return Ok((file, Pending::Unnamed { dir: parent.to_path_buf() }));
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
