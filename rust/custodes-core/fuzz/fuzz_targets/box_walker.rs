//! Any bytes at all, as a footage file: the walker must return facts and
//! problems, never panic, never allocate what the bytes cannot back, and
//! every timing it derives must be finite.
#![no_main]

use std::io::Cursor;

use custodes_core::media::{probe_reader, track_timing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let facts = probe_reader(&mut Cursor::new(data), data.len() as u64).expect("in-memory reads cannot fail");
    let movie_timescale = facts.movie.as_ref().map_or(0, |m| m.timescale);
    for track in &facts.tracks {
        if let Some(t) = track_timing(track, movie_timescale, 3.0) {
            assert!(t.start.is_finite() && t.end.is_finite());
        }
    }
});
