//! Rust errors to Python exceptions: one enum, one mapping, one class per variant.
//!
//! The classes live in `custodes.errors` (Python), so the hierarchy is
//! declared once and documented where Python users read it. They are looked
//! up once, when `custodes._core` is imported ([`init`]): a class name that
//! is misspelt here, or missing there, makes that import fail rather than the
//! first raise. Call sites use `?`: each core error type converts into
//! [`Error`] and [`Error`] into `PyErr`.

use std::io;
use std::path::{Path, PathBuf};

use custodes_core::hashing::{HashError, UnknownAlgorithm};
use custodes_core::media::ProbeError;
use custodes_core::merkle::MerkleError;
use custodes_core::timeline::TimelineError;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

/// Declares the cache of `custodes.errors` classes: one field per class, filled in one go.
macro_rules! python_classes {
    ($($field:ident => $name:literal,)*) => {
        struct Classes {
            $($field: Py<PyType>,)*
        }

        impl Classes {
            fn load(py: Python<'_>) -> PyResult<Self> {
                let module = py.import("custodes.errors")?;
                Ok(Classes { $($field: exception_class(&module, $name)?,)* })
            }
        }
    };
}

python_classes! {
    unknown_algorithm => "UnknownAlgorithmError",
    timeline_input => "TimelineInputError",
    merkle_input => "MerkleInputError",
    read => "EvidenceReadError",
    not_found => "EvidenceNotFoundError",
    permission_denied => "EvidencePermissionError",
    not_regular_file => "NotRegularFileError",
    symlink_loop => "SymlinkLoopError",
    changed_while_reading => "ChangedWhileReadingError",
    cancelled => "HashingCancelledError",
}

/// `custodes.errors.<name>`, which must be an exception class.
fn exception_class(module: &Bound<'_, PyModule>, name: &str) -> PyResult<Py<PyType>> {
    let class = module.getattr(name)?.cast_into::<PyType>()?;
    if !class.is_subclass_of::<PyException>()? {
        return Err(PyErr::new::<pyo3::exceptions::PyTypeError, _>(format!(
            "custodes.errors.{name} is not an Exception subclass"
        )));
    }
    Ok(class.unbind())
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || Classes::load(py))
}

/// Look every class up; called once from the module's initialisation.
pub fn init(py: Python<'_>) -> PyResult<()> {
    classes(py).map(|_| ())
}

/// Everything the binding raises, whatever part of the core it came from.
#[derive(Debug)]
pub enum Error {
    UnknownAlgorithm(UnknownAlgorithm),
    Timeline(TimelineError),
    Merkle(MerkleError),
    /// A file that could not be hashed or copied.
    Hash {
        path: PathBuf,
        error: HashError,
    },
    /// An exception Python raised already (a wrong argument type, an OS failure of the binding itself).
    Python(PyErr),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<UnknownAlgorithm> for Error {
    fn from(e: UnknownAlgorithm) -> Self {
        Error::UnknownAlgorithm(e)
    }
}

impl From<TimelineError> for Error {
    fn from(e: TimelineError) -> Self {
        Error::Timeline(e)
    }
}

impl From<MerkleError> for Error {
    fn from(e: MerkleError) -> Self {
        Error::Merkle(e)
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::Python(e)
    }
}

/// An OS failure of the binding itself (spawning a thread): Python's own `OSError` subclass for it.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Python(e.into())
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        Python::attach(|py| {
            let raised = match e {
                Error::Python(e) => return e,
                Error::UnknownAlgorithm(e) => with_message(py, |c| &c.unknown_algorithm, e.to_string()),
                Error::Timeline(e) => with_message(py, |c| &c.timeline_input, e.to_string()),
                Error::Merkle(e) => with_message(py, |c| &c.merkle_input, e.to_string()),
                Error::Hash { path, error } => hash_exception(py, &error, &path),
            };
            match raised {
                Ok(value) => PyErr::from_value(value),
                Err(e) => e,
            }
        })
    }
}

/// An instance of one of the `ValueError`-like classes, made with one message.
fn with_message<'py>(
    py: Python<'py>,
    class: impl FnOnce(&Classes) -> &Py<PyType>,
    message: String,
) -> PyResult<Bound<'py, PyAny>> {
    class(classes(py)?).bind(py).call1((message,))
}

/// An instance of an `EvidenceReadError` class: `OSError(errno, strerror, filename)`.
fn evidence<'py>(
    py: Python<'py>,
    class: &Py<PyType>,
    errno: Option<i32>,
    message: String,
    path: &Path,
) -> PyResult<Bound<'py, PyAny>> {
    let args = PyTuple::new(
        py,
        [
            errno.into_pyobject(py)?.into_any(),
            message.into_pyobject(py)?.into_any(),
            path.into_pyobject(py)?.into_any(),
        ],
    )?;
    class.bind(py).call1(args)
}

/// The exception instance saying why `path` could not be hashed (or opened for probing).
pub fn hash_exception<'py>(py: Python<'py>, err: &HashError, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    let c = classes(py)?;
    let (class, errno) = match err {
        HashError::NotFound => (&c.not_found, Some(libc::ENOENT)),
        HashError::PermissionDenied => (&c.permission_denied, Some(libc::EACCES)),
        HashError::NotRegularFile { .. } => (&c.not_regular_file, None),
        HashError::SymlinkLoop => (&c.symlink_loop, Some(libc::ELOOP)),
        HashError::ChangedWhileReading { .. }
        | HashError::ModifiedWhileReading { .. }
        | HashError::TouchedWhileReading { .. } => (&c.changed_while_reading, None),
        HashError::Cancelled => (&c.cancelled, None),
        HashError::Io(e) => (&c.read, e.raw_os_error()),
    };
    evidence(py, class, errno, err.to_string(), path)
}

/// The exception instance saying why `path` could not be probed.
///
/// Refusals at opening are the hashing ones; a read that fails part way is
/// classed by what the operating system said (a file gone, access revoked),
/// an `EvidenceReadError` otherwise, never a hashing error.
pub fn probe_exception<'py>(py: Python<'py>, err: &ProbeError, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    match err {
        ProbeError::Open(e) => hash_exception(py, e, path),
        ProbeError::Read(e) => {
            let c = classes(py)?;
            let class = match e.kind() {
                io::ErrorKind::NotFound => &c.not_found,
                io::ErrorKind::PermissionDenied => &c.permission_denied,
                _ => &c.read,
            };
            evidence(py, class, e.raw_os_error(), err.to_string(), path)
        }
    }
}
