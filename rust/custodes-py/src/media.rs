//! Bindings for `custodes_core::media`: facts as plain dicts and lists
//! (the Python model wraps them), per-sample times as numpy arrays.

use std::path::PathBuf;

use custodes_core::media::{self, MediaFacts, ProbeError};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use rayon::prelude::*;

use crate::error;
use crate::gateway::detached;

fn facts_to_dict<'py>(py: Python<'py>, f: &MediaFacts, gap_factor: f64, samples: bool) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("file_size", f.file_size)?;
    d.set_item("major_brand", &f.major_brand)?;
    d.set_item("compatible_brands", &f.compatible_brands)?;
    // Interned: a file of a million top-level boxes of one type costs a million pointers, not a million strings.
    d.set_item("top_level", PyList::new(py, f.top_level.iter().map(|t| PyString::intern(py, t)))?)?;
    d.set_item("fragmented", f.fragmented)?;
    let movie_timescale = f.movie.as_ref().map_or(0, |m| m.timescale);
    match &f.movie {
        Some(m) => {
            let md = PyDict::new(py);
            md.set_item("creation", m.creation)?;
            md.set_item("modification", m.modification)?;
            md.set_item("timescale", m.timescale)?;
            md.set_item("duration", m.duration)?;
            d.set_item("movie", md)?;
        }
        None => d.set_item("movie", py.None())?,
    }
    let tracks = PyList::empty(py);
    for t in &f.tracks {
        let td = PyDict::new(py);
        td.set_item("id", t.id)?;
        td.set_item("handler", &t.handler)?;
        td.set_item("kind", t.kind())?;
        td.set_item("codec", &t.codec)?;
        td.set_item("tkhd_creation", t.tkhd_creation)?;
        td.set_item("mdhd_creation", t.mdhd_creation)?;
        td.set_item("timescale", t.timescale)?;
        td.set_item("duration", t.duration)?;
        td.set_item("sample_count", t.sample_count)?;
        td.set_item("sync_sample_count", t.sync_sample_count)?;
        td.set_item("edits", t.edits.iter().map(|e| (e.segment_duration, e.media_time)).collect::<Vec<_>>())?;
        let (delay, media_start) = t.edit_shift();
        td.set_item("edit_shift", (delay, media_start))?;
        match &t.timecode {
            Some(tc) => {
                let tcd = PyDict::new(py);
                tcd.set_item("frame", tc.frame)?;
                tcd.set_item("frames_per_second", tc.frames_per_second)?;
                tcd.set_item("drop_frame", tc.drop_frame)?;
                tcd.set_item("display", tc.display())?;
                tcd.set_item("seconds_of_day", tc.seconds_of_day())?;
                td.set_item("timecode", tcd)?;
            }
            None => td.set_item("timecode", py.None())?,
        }
        match media::track_timing(t, movie_timescale, gap_factor) {
            Some(tm) => {
                let tmd = PyDict::new(py);
                tmd.set_item("start", tm.start)?;
                tmd.set_item("end", tm.end)?;
                tmd.set_item("median_step", tm.median_step)?;
                tmd.set_item("gaps", tm.gaps)?;
                td.set_item("timing", tmd)?;
            }
            None => td.set_item("timing", py.None())?,
        }
        if samples {
            td.set_item("pts", t.pts().into_pyarray(py))?;
            td.set_item("offsets", t.sample_offsets.clone().into_pyarray(py))?;
            td.set_item("sizes", t.sample_sizes.clone().into_pyarray(py))?;
        }
        tracks.append(td)?;
    }
    d.set_item("tracks", tracks)?;
    d.set_item("metadata", &f.metadata)?;
    d.set_item("location", &f.location)?;
    d.set_item("mdat", f.mdat.iter().map(|m| (m.offset, m.declared_size)).collect::<Vec<_>>())?;
    d.set_item("missing_bytes", f.missing_bytes)?;
    d.set_item("problems", f.problems.iter().map(|p| (p.kind, p.detail.as_str())).collect::<Vec<_>>())?;
    Ok(d)
}

/// Container facts of many files, read in parallel: one dict per path, or
/// the exception saying why the file could not be opened.
#[pyfunction]
#[pyo3(signature = (paths, gap_factor=3.0, samples=false))]
fn probe_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    gap_factor: f64,
    samples: bool,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let job_paths = paths.clone();
    let outcomes: Vec<Result<MediaFacts, ProbeError>> =
        detached(py, move || job_paths.par_iter().map(|p| media::probe_file(p)).collect());
    outcomes
        .iter()
        .zip(&paths)
        .map(|(o, p)| match o {
            Ok(f) => Ok(facts_to_dict(py, f, gap_factor, samples)?.into_any()),
            Err(e) => error::probe_exception(py, e, p),
        })
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(probe_files, m)?)?;
    Ok(())
}
