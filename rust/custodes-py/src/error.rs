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
    let args = PyTuple::new(py, [errno.into_pyobject(py)?.into_any(), err.to_string().into_pyobject(py)?.into_any(), path.into_pyobject(py)?.into_any()])?;
    class(py, name)?.call1(args)
}

pub fn unknown_algorithm(py: Python<'_>, err: UnknownAlgorithm) -> PyErr {
    match class(py, "UnknownAlgorithmError") {
        Ok(cls) => PyErr::from_value(cls.call1((err.to_string(),)).unwrap_or_else(|e| e.into_value(py).into_bound(py).into_any())),
        Err(e) => e,
    }
}

