//! Bindings for `custodes_core::hashing`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodes_core::hashing::{self as core, Algorithm, FileDigest, HashError, HashOptions, Progress};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::error;
use crate::gateway::detached;

fn parse_algorithms(names: Vec<String>) -> error::Result<Vec<Algorithm>> {
    if names.is_empty() {
        return Err(core::UnknownAlgorithm(String::new()).into());
    }
    let mut out: Vec<Algorithm> = Vec::with_capacity(names.len());
    for n in names {
        let a: Algorithm = n.parse()?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

type Outcomes = Vec<Result<FileDigest, HashError>>;

/// A batch of files being hashed on background threads.
///
/// Python polls it (`wait`, `bytes_done`) to show progress and to stay
/// interruptible; the batch itself never touches a Python object.
#[pyclass(frozen, module = "custodes._core")]
struct HashJob {
    paths: Vec<PathBuf>,
    algorithms: Vec<Algorithm>,
    progress: Arc<Progress>,
    done: Mutex<Option<Receiver<Outcomes>>>,
    outcomes: Mutex<Option<Outcomes>>,
}

#[pymethods]
impl HashJob {
    #[new]
    #[pyo3(signature = (paths, algorithms, threads=None, chunk_size=core::DEFAULT_CHUNK_SIZE))]
    fn new(
        paths: Vec<PathBuf>,
        algorithms: Vec<String>,
        threads: Option<usize>,
        chunk_size: usize,
    ) -> error::Result<Self> {
        let algorithms = parse_algorithms(algorithms)?;
        let progress = Arc::new(Progress::default());
        let options = HashOptions { threads, chunk_size, ..HashOptions::default() };
        let (tx, rx) = mpsc::channel();
        // On the hashing pool, not a thread of its own: ingest starts a batch per file it reads back.
        core::hash_files_in_background(paths.clone(), algorithms.clone(), options, Arc::clone(&progress), move |o| {
            // The receiver may be gone if Python dropped the job; nothing to report then.
            let _ = tx.send(o);
        });
        Ok(HashJob { paths, algorithms, progress, done: Mutex::new(Some(rx)), outcomes: Mutex::new(None) })
    }

    /// Wait up to `timeout` seconds (forever when None); True once the batch is finished.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> bool {
        // Take the receiver out and drop the lock before letting go of the GIL:
        // a second Python thread calling wait() must not block on our lock while
        // holding the GIL we need back.
        let taken = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(rx) = taken else {
            // Finished, or another thread is waiting on it right now.
            let finished = self.outcomes.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            if !finished {
                detached(py, || std::thread::sleep(Duration::from_millis(10)));
            }
            return finished;
        };
        let (rx, received) = detached(py, move || {
            let r = match timeout {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => rx.recv_timeout(Duration::from_secs_f64(t.max(0.0))),
            };
            (rx, r)
        });
        let outcomes = match received {
            Ok(outcomes) => outcomes,
            Err(RecvTimeoutError::Timeout) => {
                *self.done.lock().unwrap_or_else(|p| p.into_inner()) = Some(rx);
                return false;
            }
            // The worker died without sending (a panic): report every file as failed rather than hang.
            Err(RecvTimeoutError::Disconnected) => {
                self.paths.iter().map(|_| Err(HashError::Io(std::io::Error::other("hashing thread failed")))).collect()
            }
        };
        *self.outcomes.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcomes);
        true
    }

    /// Stop the batch; unfinished files end with HashingCancelledError.
    fn cancel(&self) {
        self.progress.cancel();
    }

    #[getter]
    fn bytes_done(&self) -> u64 {
        self.progress.bytes_done.load(Ordering::Relaxed)
    }

    /// Bytes the batch will read, known once every file has been looked at (0 before).
    #[getter]
    fn bytes_total(&self) -> u64 {
        self.progress.bytes_total.load(Ordering::Relaxed)
    }

    #[getter]
    fn files_done(&self) -> u64 {
        self.progress.files_done.load(Ordering::Relaxed)
    }

    #[getter]
    fn algorithms(&self) -> Vec<&'static str> {
        self.algorithms.iter().map(|a| a.name()).collect()
    }

    /// `(sizes, digests, errors)` once finished: sizes a list (0 where an
    /// error occurred), digests one `bytes` per algorithm holding the n digests
    /// back to back (digest i at `[i*len:(i+1)*len]`), errors a list of
    /// `(index, exception)`. Packed bytes rather than numpy: a hash run should
    /// not pay numpy's import time, and there is nothing to compute on them.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<(Vec<u64>, Vec<Bound<'py, PyBytes>>, Bound<'py, PyList>)> {
        while !self.wait(py, None) {}
        let guard = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let outcomes = guard.as_ref().expect("wait(None) stores the outcomes");
        let n = outcomes.len();
        let mut sizes = vec![0u64; n];
        let mut digests: Vec<Vec<u8>> = self.algorithms.iter().map(|a| vec![0u8; n * a.digest_len()]).collect();
        let errors = PyList::empty(py);
        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Ok(fd) => {
                    sizes[i] = fd.size;
                    for (k, (d, a)) in fd.digests.iter().zip(&self.algorithms).enumerate() {
                        let len = a.digest_len();
                        digests[k][i * len..(i + 1) * len].copy_from_slice(d);
                    }
                }
                Err(e) => errors.append((i, error::hash_exception(py, e, &self.paths[i])?))?,
            }
        }
        Ok((sizes, digests.iter().map(|d| PyBytes::new(py, d)).collect(), errors))
    }
}

/// Digests of an in-memory byte string, one `bytes` per algorithm.
#[pyfunction]
fn hash_bytes<'py>(py: Python<'py>, algorithms: Vec<String>, data: &[u8]) -> error::Result<Vec<Bound<'py, PyBytes>>> {
    let algorithms = parse_algorithms(algorithms)?;
    let owned = data.to_vec();
    let digests = detached(py, move || core::hash_bytes(&algorithms, &owned));
    Ok(digests.iter().map(|d| PyBytes::new(py, d)).collect())
}

/// A way to stop copies under way: each copy given it ends at its next buffer
/// with HashingCancelledError once `cancel()` is called (ingest's, on Ctrl-C:
/// a copy of a multi-GB file from a slow card ran to its end first).
#[pyclass(frozen, module = "custodes._core")]
struct CopyCancel {
    progress: Arc<Progress>,
}

#[pymethods]
impl CopyCancel {
    #[new]
    fn new() -> Self {
        CopyCancel { progress: Arc::new(Progress::default()) }
    }

    fn cancel(&self) {
        self.progress.cancel();
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.progress.is_cancelled()
    }
}

/// Copy `src` to the new file `dst` (which must not exist), hashing on the way:
/// `(size, [digest per algorithm])`. Not fsynced; read errors raise the
/// same classes as per-file hashing errors, naming `src`; `cancel` stops it.
#[pyfunction]
#[pyo3(signature = (src, dst, algorithms, cancel=None))]
fn copy_and_hash<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: PathBuf,
    algorithms: Vec<String>,
    cancel: Option<&CopyCancel>,
) -> error::Result<(u64, Vec<Bound<'py, PyBytes>>)> {
    let algorithms = parse_algorithms(algorithms)?;
    let s = src.clone();
    let progress = cancel.map_or_else(|| Arc::new(Progress::default()), |c| Arc::clone(&c.progress));
    let r = detached(py, move || core::copy_file_hashed(&s, &dst, &algorithms, core::DEFAULT_CHUNK_SIZE, &progress));
    // The core's error does not carry the path; the binding adds it here.
    let fd = match r {
        Ok(fd) => fd,
        Err(error) => return Err(error::Error::Hash { path: src, error }),
    };
    Ok((fd.size, fd.digests.iter().map(|x| PyBytes::new(py, x)).collect()))
}

/// Digests of a stream fed in chunks (an object read from any storage
/// backend): every algorithm in one pass over each chunk, the GIL let go while
/// a chunk is hashed. Only immutable `bytes` are taken, so no Python code can
/// change a chunk while it is being hashed without the GIL.
#[pyclass(frozen, module = "custodes._core")]
struct StreamHasher {
    algorithms: Vec<Algorithm>,
    state: Mutex<Option<core::StreamHasher>>,
}

impl StreamHasher {
    fn finished() -> PyErr {
        pyo3::exceptions::PyValueError::new_err("this StreamHasher has finished; start a new one")
    }
}

#[pymethods]
impl StreamHasher {
    #[new]
    fn new(algorithms: Vec<String>) -> error::Result<Self> {
        let algorithms = parse_algorithms(algorithms)?;
        let state = Mutex::new(Some(core::StreamHasher::new(&algorithms)));
        Ok(StreamHasher { algorithms, state })
    }

    /// Feed one chunk.
    fn update(&self, py: Python<'_>, chunk: &Bound<'_, PyBytes>) -> PyResult<()> {
        let bytes: &[u8] = chunk.as_bytes();
        let mut guard = self.state.lock().map_err(|_| Self::finished())?;
        let hasher = guard.as_mut().ok_or_else(Self::finished)?;
        // Large chunks only: for a few bytes, letting go of the GIL costs more than hashing them.
        if bytes.len() >= 64 * 1024 {
            detached(py, || hasher.update(bytes));
        } else {
            hasher.update(bytes);
        }
        Ok(())
    }

    /// Bytes fed so far.
    #[getter]
    fn size(&self) -> PyResult<u64> {
        let guard = self.state.lock().map_err(|_| Self::finished())?;
        Ok(guard.as_ref().ok_or_else(Self::finished)?.size())
    }

    #[getter]
    fn algorithms(&self) -> Vec<&'static str> {
        self.algorithms.iter().map(|a| a.name()).collect()
    }

    /// `(size, [digest per algorithm])`; the hasher takes no more chunks after this.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<(u64, Vec<Bound<'py, PyBytes>>)> {
        let hasher = self.state.lock().map_err(|_| Self::finished())?.take().ok_or_else(Self::finished)?;
        let fd = hasher.finalize();
        Ok((fd.size, fd.digests.iter().map(|d| PyBytes::new(py, d)).collect()))
    }
}

/// Names of the algorithms the core knows, the evidence default first.
#[pyfunction]
fn algorithms() -> Vec<&'static str> {
    Algorithm::ALL.iter().map(|a| a.name()).collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HashJob>()?;
    m.add_class::<StreamHasher>()?;
    m.add_class::<CopyCancel>()?;
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms, m)?)?;
    m.add_function(wrap_pyfunction!(copy_and_hash, m)?)?;
    Ok(())
}
