//! The native half of the Python package `cas` (imported as `cas._cas`).
//! It only translates: cas-core types to Python objects, cas-core errors to
//! the exception classes of `cas.errors`, and blocking calls to calls that
//! release the GIL. The pure-Python half (`python/cas`) holds the exception
//! hierarchy, the io wrapper returned by `Node.open` and the command line.

mod cancel;
mod errors;
mod info;
mod node;
mod reader;
mod wait;

use pyo3::prelude::*;

#[pymodule]
mod _cas {
    #[pymodule_export]
    use crate::cancel::Cancel;
    #[pymodule_export]
    use crate::info::{FileEntry, Peer, Stat, Stats};
    #[pymodule_export]
    use crate::node::Node;
    #[pymodule_export]
    use crate::reader::Reader;

    use pyo3::prelude::*;
    use pyo3::types::PyBytes;

    /// A new random 32-byte network key: give it to every node of a new
    /// network (`Node(network_key=...)`) and keep it secret.
    #[pyfunction]
    fn generate_network_key(py: Python<'_>) -> Bound<'_, PyBytes> {
        PyBytes::new(py, &cas_core::generate_network_key())
    }

    /// Checks a `HOST:PORT` address as `Node` does at start (`port_zero`:
    /// whether port 0 is allowed); raises `InvalidArgumentError` naming
    /// `setting` and the value. For the command line, which reports a bad
    /// address as a usage error before it starts anything.
    #[pyfunction]
    fn _check_address(setting: &str, address: &str, port_zero: bool) -> PyResult<()> {
        cas_core::config::check::address(setting, address, port_zero).map_err(crate::errors::to_pyerr)
    }

    /// A key as a person hands it over (whitespace around it ignored), in
    /// its exact form; raises `InvalidKeyError` saying what is wrong. For the
    /// command line, which reports a bad key as a usage error before it
    /// asks the node anything.
    #[pyfunction]
    fn _parse_key(key: &str) -> PyResult<String> {
        let key = cas_core::Key::parse_input(key).map_err(|e| crate::errors::to_pyerr(e.into()))?;
        Ok(key.to_string())
    }

    /// A test hook, deliberately undocumented: stores a file of `size`
    /// zeros on `node` from one real chunk (see cas_core::testing) and
    /// returns its key.
    #[pyfunction]
    fn _put_zeros(node: &crate::node::Node, size: u64) -> PyResult<String> {
        let node = node.node()?;
        Ok(cas_core::testing::put_zeros(&node, size).map_err(crate::errors::to_pyerr)?.to_string())
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // Warnings to stderr by default; CAS_LOG=info (or a tracing filter) for more.
        cas_core::logging::init();
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}

/// Looks up `name` in the pure-Python module `module` of the package.
fn python_attr<'py>(py: Python<'py>, module: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import(module)?.getattr(name)
}
