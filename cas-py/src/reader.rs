//! `cas._cas.Reader`: the native reader that `cas.file.File` (an
//! `io.RawIOBase`) wraps.

use std::io::SeekFrom;

use cas_core::FileReader;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::Mutex;

use crate::errors::{closed, to_pyerr};
use crate::wait::wait;

/// Bytes a read makes room for at a time (the largest chunk).
const READ_STEP: u64 = 16 * 1024 * 1024;

/// A seekable reader over one stored file; fetches only the chunks it reads.
/// A tokio mutex guards it so a read can hold it across `.await` while the
/// GIL is released.
#[pyclass(frozen, module = "cas._cas")]
pub struct Reader {
    /// `None` once closed.
    inner: Mutex<Option<FileReader>>,
    size: u64,
}

impl Reader {
    pub fn new(reader: FileReader) -> Reader {
        let size = reader.size();
        Reader { inner: Mutex::new(Some(reader)), size }
    }

    /// Runs a quick, non-blocking operation on the open reader. Waiting
    /// for the lock (a read may hold it) happens with the GIL released.
    fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut FileReader) -> PyResult<T> + Send) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.inner.blocking_lock();
            match guard.as_mut() {
                Some(reader) => f(reader),
                None => Err(closed("this file")),
            }
        })
    }
}

#[pymethods]
impl Reader {
    /// Reads up to `size` bytes (all the rest when negative) from the
    /// current position; fewer only at the end of the file.
    #[pyo3(signature = (size=-1))]
    fn read<'py>(&self, py: Python<'py>, size: i64) -> PyResult<Bound<'py, PyBytes>> {
        let data = wait(py, None, async {
            let mut guard = self.inner.lock().await;
            let Some(reader) = guard.as_mut() else { return Ok(None) };
            let left = self.size.saturating_sub(reader.position());
            let want = if size < 0 { left } else { left.min(size as u64) };
            // Grown as bytes are read, never sized at once: the file's size
            // is its manifest's claim.
            let (mut buf, mut filled) = (Vec::new(), 0);
            while (filled as u64) < want {
                if filled == buf.len() {
                    buf.resize(filled + (want - filled as u64).min(READ_STEP) as usize, 0);
                }
                match reader.read(&mut buf[filled..]).await? {
                    0 => break,
                    n => filled += n,
                }
            }
            buf.truncate(filled);
            Ok(Some(buf))
        })?;
        match data {
            Some(data) => Ok(PyBytes::new(py, &data)),
            None => Err(closed("this file")),
        }
    }

    /// Moves the position like `io.IOBase.seek`; returns the new position.
    #[pyo3(signature = (offset, whence=0))]
    fn seek(&self, py: Python<'_>, offset: i64, whence: i32) -> PyResult<u64> {
        let to = match whence {
            0 if offset < 0 => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!("negative seek position {offset}")))
            }
            0 => SeekFrom::Start(offset as u64),
            1 => SeekFrom::Current(offset),
            2 => SeekFrom::End(offset),
            _ => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "invalid whence ({whence}, should be 0, 1 or 2)"
                )))
            }
        };
        self.with(py, |r| r.seek(to).map_err(to_pyerr))
    }

    /// The current position.
    fn tell(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |r| Ok(r.position()))
    }

    /// The file's size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// How many chunks this reader has fetched so far.
    #[getter]
    fn chunks_fetched(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |r| Ok(r.chunks_fetched()))
    }

    /// Releases the reader; calling it again does nothing.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.blocking_lock().take());
    }
}
