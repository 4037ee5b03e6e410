//! Bindings for `custodes_core::merkle`: raw 32-byte hashes as `bytes`.

use custodes_core::merkle::{self, Accumulator, Hash};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Mutex;

use crate::gateway::detached;

fn hash(b: &[u8]) -> PyResult<Hash> {
    b.try_into().map_err(|_| PyValueError::new_err(format!("a Merkle hash is 32 bytes, not {}", b.len())))
}

/// Leaf hashes packed back to back (32 bytes each), as the ledger stores them.
fn leaves(packed: &[u8]) -> PyResult<Vec<Hash>> {
    if packed.len() % 32 != 0 {
        return Err(PyValueError::new_err("packed leaf hashes must be a multiple of 32 bytes"));
    }
    Ok(packed.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect())
}

fn hashes(list: Vec<Vec<u8>>) -> PyResult<Vec<Hash>> {
    list.iter().map(|b| hash(b)).collect()
}

#[pyfunction]
fn merkle_leaf_hash<'py>(py: Python<'py>, entry: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &merkle::leaf_hash(entry))
}

#[pyfunction]
fn merkle_root<'py>(py: Python<'py>, packed_leaves: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let l = leaves(packed_leaves)?;
    Ok(PyBytes::new(py, &detached(py, move || merkle::root(&l))))
}

#[pyfunction]
fn merkle_inclusion_proof<'py>(
    py: Python<'py>,
    packed_leaves: &[u8],
    index: usize,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let l = leaves(packed_leaves)?;
    let proof = detached(py, move || merkle::inclusion_proof(&l, index)).ok_or_else(|| {
        PyValueError::new_err(format!("leaf {index} is not in a tree of {} leaves", packed_leaves.len() / 32))
    })?;
    Ok(proof.iter().map(|h| PyBytes::new(py, h)).collect())
}

#[pyfunction]
fn merkle_consistency_proof<'py>(
    py: Python<'py>,
    packed_leaves: &[u8],
    size1: usize,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let l = leaves(packed_leaves)?;
    let proof = detached(py, move || merkle::consistency_proof(&l, size1)).ok_or_else(|| {
        PyValueError::new_err(format!("no consistency proof from size {size1} to {}", packed_leaves.len() / 32))
    })?;
    Ok(proof.iter().map(|h| PyBytes::new(py, h)).collect())
}

#[pyfunction]
fn merkle_verify_inclusion(
    leaf_hash: &[u8],
    index: u64,
    tree_size: u64,
    proof: Vec<Vec<u8>>,
    root: &[u8],
) -> PyResult<bool> {
    Ok(merkle::verify_inclusion(&hash(leaf_hash)?, index, tree_size, &hashes(proof)?, &hash(root)?))
}

#[pyfunction]
fn merkle_verify_consistency(
    size1: u64,
    size2: u64,
    proof: Vec<Vec<u8>>,
    root1: &[u8],
    root2: &[u8],
) -> PyResult<bool> {
    Ok(merkle::verify_consistency(size1, size2, &hashes(proof)?, &hash(root1)?, &hash(root2)?))
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
    fn extend(&self, packed_leaves: &[u8]) -> PyResult<()> {
        let l = leaves(packed_leaves)?;
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
