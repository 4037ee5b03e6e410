//! Bindings for `custodes_core::timeline`: int64 numpy columns in (zero copy),
//! numpy columns out.

use custodes_core::timeline::{self, Intervals, Segments};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error;
use crate::gateway::detached;

type Col<'py> = PyReadonlyArray1<'py, i64>;

fn slice<'a>(a: &'a Col<'_>) -> PyResult<&'a [i64]> {
    Ok(a.as_slice()?)
}

fn intervals_dict<'py>(py: Python<'py>, iv: Intervals) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("device", iv.device.into_pyarray(py))?;
    d.set_item("start", iv.start.into_pyarray(py))?;
    d.set_item("end", iv.end.into_pyarray(py))?;
    d.set_item("before", iv.before.into_pyarray(py))?;
    d.set_item("after", iv.after.into_pyarray(py))?;
    Ok(d)
}

/// Gaps (longer than `gap_tolerance` ns), overlaps and sequence breaks per device.
#[pyfunction]
fn analyse<'py>(
    py: Python<'py>,
    device: Col<'py>,
    start: Col<'py>,
    end: Col<'py>,
    sequence: Col<'py>,
    gap_tolerance: i64,
) -> error::Result<Bound<'py, PyDict>> {
    let seg =
        Segments { device: slice(&device)?, start: slice(&start)?, end: slice(&end)?, sequence: slice(&sequence)? };
    // The readonly borrows keep the arrays alive and unchanged while detached.
    let result = detached(py, || timeline::analyse(seg, gap_tolerance))?;
    let d = PyDict::new(py);
    d.set_item("gaps", intervals_dict(py, result.gaps)?)?;
    d.set_item("overlaps", intervals_dict(py, result.overlaps)?)?;
    let sb = result.sequence_breaks;
    let s = PyDict::new(py);
    s.set_item("device", sb.device.into_pyarray(py))?;
    s.set_item("last_seen", sb.last_seen.into_pyarray(py))?;
    s.set_item("next_seen", sb.next_seen.into_pyarray(py))?;
    s.set_item("before", sb.before.into_pyarray(py))?;
    s.set_item("after", sb.after.into_pyarray(py))?;
    d.set_item("sequence_breaks", s)?;
    Ok(d)
}

/// Covered ns per task window and the uncovered sub-intervals.
#[pyfunction]
fn coverage<'py>(
    py: Python<'py>,
    device: Col<'py>,
    start: Col<'py>,
    end: Col<'py>,
    task_device: Col<'py>,
    task_start: Col<'py>,
    task_end: Col<'py>,
) -> error::Result<Bound<'py, PyDict>> {
    let (d, s, e) = (slice(&device)?, slice(&start)?, slice(&end)?);
    let (td, ts, te) = (slice(&task_device)?, slice(&task_start)?, slice(&task_end)?);
    let c = detached(py, || timeline::coverage(d, s, e, td, ts, te))?;
    let out = PyDict::new(py);
    out.set_item("covered", c.covered.into_pyarray(py))?;
    out.set_item("uncovered_task", c.uncovered_task.into_pyarray(py))?;
    out.set_item("uncovered_start", c.uncovered_start.into_pyarray(py))?;
    out.set_item("uncovered_end", c.uncovered_end.into_pyarray(py))?;
    Ok(out)
}

/// 0 plausible, 1 before `floor`, 2 + k near reset epoch k (see `clock_reset_epochs`).
#[pyfunction]
fn clock_unset<'py>(py: Python<'py>, times: Col<'py>, floor: i64) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let t = slice(&times)?;
    Ok(detached(py, || timeline::clock_unset(t, floor)).into_pyarray(py))
}

/// `clock_unset` and `clock_future` of a few times given as a list, not a numpy column: a probe
/// checks one time per file, and `custodes probe` starts without numpy.
#[pyfunction]
fn clock_checks(times: Vec<i64>, floor: i64, reference: i64, tolerance: i64) -> (Vec<u8>, Vec<bool>) {
    (timeline::clock_unset(&times, floor), timeline::clock_future(&times, reference, tolerance))
}

#[pyfunction]
fn clock_reset_epochs() -> Vec<(i64, &'static str)> {
    timeline::CLOCK_RESET_EPOCHS.to_vec()
}

#[pyfunction]
fn clock_future<'py>(
    py: Python<'py>,
    times: Col<'py>,
    reference: i64,
    tolerance: i64,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let t = slice(&times)?;
    Ok(detached(py, || timeline::clock_future(t, reference, tolerance)).into_pyarray(py))
}

#[pyfunction]
fn time_mismatch<'py>(
    py: Python<'py>,
    a: Col<'py>,
    b: Col<'py>,
    tolerance: i64,
) -> error::Result<Bound<'py, PyArray1<bool>>> {
    let (a, b) = (slice(&a)?, slice(&b)?);
    let r = detached(py, || timeline::time_mismatch(a, b, tolerance))?;
    Ok(r.into_pyarray(py))
}

#[pyfunction]
fn correct_times<'py>(
    py: Python<'py>,
    times: Col<'py>,
    device_readings: Col<'py>,
    trusted_readings: Col<'py>,
) -> error::Result<Bound<'py, PyArray1<i64>>> {
    let (t, d, r) = (slice(&times)?, slice(&device_readings)?, slice(&trusted_readings)?);
    let out = detached(py, || timeline::correct_times(t, d, r))?;
    Ok(out.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(analyse, m)?)?;
    m.add_function(wrap_pyfunction!(coverage, m)?)?;
    m.add_function(wrap_pyfunction!(clock_unset, m)?)?;
    m.add_function(wrap_pyfunction!(clock_reset_epochs, m)?)?;
    m.add_function(wrap_pyfunction!(clock_checks, m)?)?;
    m.add_function(wrap_pyfunction!(clock_future, m)?)?;
    m.add_function(wrap_pyfunction!(time_mismatch, m)?)?;
    m.add_function(wrap_pyfunction!(correct_times, m)?)?;
    Ok(())
}
