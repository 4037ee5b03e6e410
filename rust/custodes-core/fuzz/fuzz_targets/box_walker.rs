//! Any bytes at all, as a footage file: the walker must return facts and
//! problems, never panic, never allocate what the bytes cannot back, and
//! keep every promise `assert_walker_invariants` checks (lists within their
//! caps, times that fit int64 ns, finite timings within the longest span).
#![no_main]

use std::io::Cursor;

use custodes_core::media::{assert_walker_invariants, probe_reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let facts = probe_reader(&mut Cursor::new(data), data.len() as u64).expect("in-memory reads cannot fail");
    assert_walker_invariants(&facts);
});
