//! The one place where the binding lets go of the GIL.
//!
//! Everything slow (reading files, hashing, waiting for a background batch)
//! runs inside [`detached`]; the closure may hold only owned Rust data, never a
//! Python object, so nothing Python can change moves under it. The one borrow
//! allowed is the buffer of an immutable `bytes` object the caller holds
//! (`StreamHasher.update`): no Python code can change it.

use pyo3::marker::Ungil;
use pyo3::Python;

pub fn detached<T, F>(py: Python<'_>, work: F) -> T
where
    F: Ungil + FnOnce() -> T,
    T: Ungil,
{
    py.detach(work)
}
