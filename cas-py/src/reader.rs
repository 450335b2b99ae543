//! `cas._cas.Reader`: the native reader that `cas.file.File` (an
//! `io.RawIOBase`) wraps.

use std::io::SeekFrom;

use cas_core::FileReader;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::Mutex;

use crate::errors::{closed, to_pyerr};
use crate::wait::wait;

/// The most bytes `File.readinto` asks the reader for at once (the largest
/// chunk), so that a large buffer costs no second one as large.
const PIECE: u64 = 16 * 1024 * 1024;

/// A seekable reader over one stored file; fetches only the chunks it reads.
/// A tokio mutex guards it so a read can hold it across `.await` while the
/// GIL is released.
#[pyclass(frozen, module = "cas._cas")]
pub struct Reader {
    /// `None` once closed.
    inner: Mutex<Option<FileReader>>,
    size: u64,
    /// The node's max_get_bytes: the most one read returns.
    max_get_bytes: u64,
}

impl Reader {
    pub fn new(reader: FileReader, max_get_bytes: u64) -> Reader {
        let size = reader.size();
        Reader { inner: Mutex::new(Some(reader)), size, max_get_bytes }
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
    /// current position; fewer only at the end of the file. More than the
    /// node's max_get_bytes raises `InvalidArgumentError` before anything is
    /// fetched, whatever size the file claims.
    #[pyo3(signature = (size=-1))]
    fn read<'py>(&self, py: Python<'py>, size: i64) -> PyResult<Bound<'py, PyBytes>> {
        let data = wait(py, None, async {
            let mut guard = self.inner.lock().await;
            let Some(reader) = guard.as_mut() else { return Ok(None) };
            Ok(Some(match usize::try_from(size) {
                Ok(size) => reader.read_range(reader.position(), size).await?,
                Err(_) => reader.read_to_end().await?,
            }))
        })?;
        match data {
            Some(data) => Ok(PyBytes::new(py, &data)),
            None => Err(closed("this file")),
        }
    }

    /// The most bytes `File.readinto` asks `read` for at once: the
    /// node's max_get_bytes, or less.
    #[getter]
    fn piece(&self) -> u64 {
        self.max_get_bytes.min(PIECE)
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
