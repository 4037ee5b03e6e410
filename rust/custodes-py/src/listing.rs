//! The store's listing: the digest tree read by the core, streamed part by part, the GIL let go while a part is
//! awaited.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

use custodes_core::listing::{self as core, DigestRange, ObjectKind, TreeEntry};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::gateway::detached;

/// Parts read ahead of the caller: enough to keep the reading thread busy while one part is worked on.
const AHEAD: usize = 4;

/// Every entry under `folder` (a tree of `ab/cd/<digest>`) that is not a folder, in the tree's order, one
/// first-level folder's entries at a time (a list per iteration), each `(name, kind, detail)`: `(digest,
/// "object" | "link" | "special", what it is: an object's mode and owner, "0400 1000", and its names after them
/// where it has more than one, "0400 1000 2")` at an object's own place
/// within `low <= digest < high`, `(path below folder, "elsewhere", "")` for anything else, `(path below folder,
/// "unreadable", why)` for a folder that could not be read, and `(path below folder, "folder", "0777 1000")` for a
/// folder whose mode or owner differs from `folder`'s own, before what it holds. Folders the range rules out are
/// not read; links are never followed.
#[pyclass(frozen, module = "custodes._core")]
struct DigestTreeWalk {
    parts: Mutex<Receiver<Vec<TreeEntry>>>,
}

#[pymethods]
impl DigestTreeWalk {
    #[new]
    #[pyo3(signature = (folder, low = String::new(), high = None))]
    fn new(folder: PathBuf, low: String, high: Option<String>) -> Self {
        let parts = core::stream_digest_tree(folder, DigestRange { low, high }, AHEAD);
        DigestTreeWalk { parts: Mutex::new(parts) }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Vec<(Py<PyAny>, &'static str, String)>> {
        // Locked and awaited without the GIL: the reading thread may be waiting for a folder on a slow disk.
        let parts = &self.parts;
        let Some(part) = detached(py, || parts.lock().ok().and_then(|p| p.recv().ok())) else {
            return Err(PyStopIteration::new_err(())); // the tree is listed (or its thread is gone)
        };
        // A path below the folder goes out as `str` (os.fsdecode's), as os.scandir names it, not a pathlib.Path.
        part.into_iter()
            .map(|e| {
                let path = |p: PathBuf| -> PyResult<Py<PyAny>> {
                    Ok(p.into_os_string().into_pyobject(py)?.into_any().unbind())
                };
                let digest = |d: &str| PyString::new(py, d).into_any().unbind();
                Ok(match e {
                    // The permission bits in octal and the owner's uid, "0400 1000", and its number of names after
                    // them where it has more than one, "0400 1000 2" ("" when unknown): the store judges them.
                    TreeEntry::Object { digest: d, kind: ObjectKind::File(seen) } => {
                        let said = |f: core::ObjectFile| match f.names {
                            0 | 1 => format!("{:04o} {}", f.protection.mode, f.protection.uid),
                            n => format!("{:04o} {} {n}", f.protection.mode, f.protection.uid),
                        };
                        (digest(&d), "object", seen.map_or_else(String::new, said))
                    }
                    TreeEntry::Object { digest: d, kind: ObjectKind::Link } => (digest(&d), "link", String::new()),
                    TreeEntry::Object { digest: d, kind: ObjectKind::Special(what) } => {
                        (digest(&d), "special", what.to_owned())
                    }
                    TreeEntry::Elsewhere(p) => (path(p)?, "elsewhere", String::new()),
                    TreeEntry::Unreadable { path: p, error } => (path(p)?, "unreadable", error),
                    TreeEntry::Folder { path: p, protection: seen } => {
                        (path(p)?, "folder", format!("{:04o} {}", seen.mode, seen.uid))
                    }
                })
            })
            .collect()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DigestTreeWalk>()?;
    Ok(())
}
