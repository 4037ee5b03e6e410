//! Rust errors to Python exceptions: one mapping, one class per variant.
//!
//! The classes live in `custodes.errors` (Python), so the hierarchy is
//! declared once and documented where Python users read it.

use custodes_core::hashing::{HashError, UnknownAlgorithm};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::path::Path;

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("custodes.errors")?.getattr(name)
}

/// The exception instance describing why `path` could not be hashed.
pub fn hash_error<'py>(py: Python<'py>, err: &HashError, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    let (name, errno) = match err {
        HashError::NotFound => ("EvidenceNotFoundError", Some(libc::ENOENT)),
        HashError::PermissionDenied => ("EvidencePermissionError", Some(libc::EACCES)),
        HashError::NotRegularFile { .. } => ("NotRegularFileError", None),
        HashError::SymlinkLoop => ("SymlinkLoopError", Some(libc::ELOOP)),
        HashError::ChangedWhileReading { .. } => ("ChangedWhileReadingError", None),
        HashError::Cancelled => ("HashingCancelledError", None),
        HashError::Io(e) => ("EvidenceReadError", e.raw_os_error()),
    };
    // OSError(errno, strerror, filename) fills .errno/.strerror/.filename.
    let args = PyTuple::new(
        py,
        [
            errno.into_pyobject(py)?.into_any(),
            err.to_string().into_pyobject(py)?.into_any(),
            path.into_pyobject(py)?.into_any(),
        ],
    )?;
    class(py, name)?.call1(args)
}

/// A `custodes.errors` class instantiated with one message, as a raisable error.
fn raise(py: Python<'_>, name: &str, message: String) -> PyErr {
    match class(py, name).and_then(|cls| cls.call1((message,))) {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

pub fn unknown_algorithm(py: Python<'_>, err: UnknownAlgorithm) -> PyErr {
    raise(py, "UnknownAlgorithmError", err.to_string())
}

/// Bad timeline columns are the caller's mistake: a ValueError subclass.
pub fn timeline(py: Python<'_>, err: custodes_core::timeline::TimelineError) -> PyErr {
    raise(py, "TimelineInputError", err.to_string())
}
