//! `custodes._core`: the Python face of custodes-core.
//!
//! Only adaptation lives here: paths and numpy arrays in, numpy arrays and
//! small records out, the GIL released (through [`gateway::detached`]) around
//! all work, Rust errors mapped to `custodes.errors` classes.

mod error;
mod gateway;
mod hashing;
mod listing;
mod media;
mod merkle;
mod timeline;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The custodes.errors classes, looked up now so that a missing one fails this import.
    error::init(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    hashing::register(m)?;
    listing::register(m)?;
    media::register(m)?;
    merkle::register(m)?;
    timeline::register(m)?;
    Ok(())
}
