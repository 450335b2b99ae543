//! cas-core errors as instances of the exception classes in `cas.errors`
//! (defined in Python so that, say, `InvalidKeyError` can also be a
//! `ValueError`).

use cas_core::{Error, ErrorKind};
use pyo3::prelude::*;

/// The name of the `cas.errors` class for an error.
fn class_name(e: &Error) -> &'static str {
    match e.kind() {
        ErrorKind::InvalidKey => "InvalidKeyError",
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::Integrity => "IntegrityError",
        ErrorKind::Input => "InputError",
        ErrorKind::Destination => "DestinationError",
        ErrorKind::StorageFull => "StorageFullError",
        ErrorKind::DataDirLocked => "DataDirLockedError",
        ErrorKind::Network => "NetworkError",
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::Replication => "ReplicationError",
        ErrorKind::InvalidArgument => "InvalidArgumentError",
        ErrorKind::Closed => "ClosedError",
        ErrorKind::Io => "StorageError",
        ErrorKind::Cancelled => "CancelledError",
        _ => "CasError",
    }
}

/// Converts a cas-core error into the matching Python exception.
pub fn to_pyerr(e: Error) -> PyErr {
    Python::attach(|py| build(py, &e).unwrap_or_else(|lookup_failed| lookup_failed))
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let message = match e {
        Error::Closed => closed_text("this cas.Node"),
        e => e.to_string(),
    };
    let exc = crate::python_attr(py, "cas.errors", class_name(e))?.call1((message,))?;
    // The OSError subclasses carry the usual errno and filename too.
    if let Error::Input { path, source } | Error::Destination { path, source } = e {
        exc.setattr("filename", path.as_os_str())?;
        if let Some(errno) = source.raw_os_error() {
            exc.setattr("errno", errno)?;
            exc.setattr("strerror", source.to_string())?;
        }
    }
    Ok(PyErr::from_value(exc))
}

/// The `ClosedError` raised when `what` ("this cas.Node", ...) is used after `close()`.
pub fn closed(what: &str) -> PyErr {
    Python::attach(|py| {
        match crate::python_attr(py, "cas.errors", "ClosedError").and_then(|cls| cls.call1((closed_text(what),))) {
            Ok(exc) => PyErr::from_value(exc),
            Err(lookup_failed) => lookup_failed,
        }
    })
}

fn closed_text(what: &str) -> String {
    let hint = if what.contains("Node") {
        "create a new cas.Node(data_dir) to keep using the store"
    } else {
        "open the key again with node.open(key)"
    };
    format!("{what} has been closed; {hint}")
}
