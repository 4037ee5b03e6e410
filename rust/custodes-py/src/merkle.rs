//! Bindings for `custodes_core::merkle`: raw 32-byte hashes as `bytes`.
//! Malformed input raises `custodes.errors.MerkleInputError` (a `ValueError`).

use custodes_core::merkle::{self, Accumulator, Hash, MerkleError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Mutex;

use crate::error;
use crate::gateway::detached;

fn hashes(list: &[Vec<u8>]) -> Result<Vec<Hash>, MerkleError> {
    list.iter().map(|b| merkle::hash_from_slice(b)).collect()
}

#[pyfunction]
fn merkle_leaf_hash<'py>(py: Python<'py>, entry: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &merkle::leaf_hash(entry))
}

#[pyfunction]
fn merkle_root<'py>(py: Python<'py>, packed_leaves: &[u8]) -> error::Result<Bound<'py, PyBytes>> {
    let l = merkle::unpack_leaves(packed_leaves)?;
    Ok(PyBytes::new(py, &detached(py, move || merkle::root(&l))))
}

#[pyfunction]
fn merkle_inclusion_proof<'py>(
    py: Python<'py>,
    packed_leaves: &[u8],
    index: usize,
) -> error::Result<Vec<Bound<'py, PyBytes>>> {
    let l = merkle::unpack_leaves(packed_leaves)?;
    let proof = detached(py, move || merkle::inclusion_proof(&l, index))?;
    Ok(proof.iter().map(|h| PyBytes::new(py, h)).collect())
}

#[pyfunction]
fn merkle_consistency_proof<'py>(
    py: Python<'py>,
    packed_leaves: &[u8],
    size1: usize,
) -> error::Result<Vec<Bound<'py, PyBytes>>> {
    let l = merkle::unpack_leaves(packed_leaves)?;
    let proof = detached(py, move || merkle::consistency_proof(&l, size1))?;
    Ok(proof.iter().map(|h| PyBytes::new(py, h)).collect())
}

#[pyfunction]
fn merkle_verify_inclusion(
    leaf_hash: &[u8],
    index: u64,
    tree_size: u64,
    proof: Vec<Vec<u8>>,
    root: &[u8],
) -> error::Result<bool> {
    let (leaf, proof, root) = (merkle::hash_from_slice(leaf_hash)?, hashes(&proof)?, merkle::hash_from_slice(root)?);
    Ok(merkle::verify_inclusion(&leaf, index, tree_size, &proof, &root))
}

#[pyfunction]
fn merkle_verify_consistency(
    size1: u64,
    size2: u64,
    proof: Vec<Vec<u8>>,
    root1: &[u8],
    root2: &[u8],
) -> error::Result<bool> {
    let (proof, root1, root2) = (hashes(&proof)?, merkle::hash_from_slice(root1)?, merkle::hash_from_slice(root2)?);
    Ok(merkle::verify_consistency(size1, size2, &proof, &root1, &root2))
}

/// The root of a growing log in O(log n) memory, for streaming verification.
#[pyclass(frozen, module = "custodes._core")]
struct MerkleAccumulator {
    inner: Mutex<Accumulator>,
}

#[pymethods]
impl MerkleAccumulator {
    #[new]
    fn new() -> Self {
        MerkleAccumulator { inner: Mutex::new(Accumulator::new()) }
    }

    /// Append leaf hashes packed back to back.
    fn extend(&self, packed_leaves: &[u8]) -> error::Result<()> {
        let l = merkle::unpack_leaves(packed_leaves)?;
        let mut acc = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for h in l {
            acc.push(h);
        }
        Ok(())
    }

    #[getter]
    fn size(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).size()
    }

    fn root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.lock().unwrap_or_else(|p| p.into_inner()).root())
    }

    /// The roots of the perfect subtrees so far, left to right (see `resume`).
    fn frontier<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        let acc = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        acc.frontier().iter().map(|h| PyBytes::new(py, h)).collect()
    }

    /// An accumulator that goes on from a frontier saved at `size`.
    #[staticmethod]
    fn resume(size: u64, frontier: Vec<Vec<u8>>) -> error::Result<Self> {
        let inner = Accumulator::resume(size, &hashes(&frontier)?)?;
        Ok(MerkleAccumulator { inner: Mutex::new(inner) })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<MerkleAccumulator>()?;
    m.add_function(wrap_pyfunction!(merkle_leaf_hash, m)?)?;
    m.add_function(wrap_pyfunction!(merkle_root, m)?)?;
    m.add_function(wrap_pyfunction!(merkle_inclusion_proof, m)?)?;
    m.add_function(wrap_pyfunction!(merkle_consistency_proof, m)?)?;
    m.add_function(wrap_pyfunction!(merkle_verify_inclusion, m)?)?;
    m.add_function(wrap_pyfunction!(merkle_verify_consistency, m)?)?;
    Ok(())
}
