//! `cas.Cancel`: stops a `Node.get` from another thread.

use pyo3::prelude::*;

/// A cancellation handle for one `Node.get(..., cancel=c)`. `cancel()` may
/// be called from any thread, before or during the get.
#[pyclass(frozen, module = "cas")]
#[derive(Default)]
pub struct Cancel {
    pub(crate) inner: cas_core::Cancel,
}

#[pymethods]
impl Cancel {
    #[new]
    fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the get to stop. Returns True if it will raise `CancelledError`
    /// and leave nothing at its destination, False if it had already
    /// completed (its file is in place).
    fn cancel(&self) -> bool {
        self.inner.cancel()
    }

    /// Whether `cancel()` stopped the get.
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!("cas.Cancel(cancelled={})", if self.inner.is_cancelled() { "True" } else { "False" })
    }
}
