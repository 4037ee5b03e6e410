//! The store's listing: the digest tree read by the core with the GIL let go.

use std::path::PathBuf;

use custodes_core::listing::{self as core, DigestRange, TreeEntry};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::gateway::detached;

/// Every entry under `folder` (a tree of `ab/cd/<digest>`) that is not a folder, in the tree's order, as
/// `(digest, is_link)` for an object at its own place within `low <= digest < high`, and `(path below
/// folder, None)` for anything else. Folders the range rules out are not read.
#[pyfunction]
#[pyo3(signature = (folder, low = String::new(), high = None))]
fn list_digest_tree(
    py: Python<'_>,
    folder: PathBuf,
    low: String,
    high: Option<String>,
) -> PyResult<Vec<(Py<PyAny>, Option<bool>)>> {
    let range = DigestRange { low, high };
    let entries = detached(py, move || core::list_digest_tree(&folder, &range));
    // A path below the folder goes out as `str` (os.fsdecode's), as os.scandir names it, not as a pathlib.Path.
    entries
        .into_iter()
        .map(|e| {
            Ok(match e {
                TreeEntry::Object { digest, link } => (PyString::new(py, &digest).into_any().unbind(), Some(link)),
                TreeEntry::Elsewhere(path) => (path.into_os_string().into_pyobject(py)?.into_any().unbind(), None),
            })
        })
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(list_digest_tree, m)?)?;
    Ok(())
}
