//! custodes-core: the byte-level work of custodes, in pure Rust with no
//! Python in it, so that `cargo test` and `cargo bench` exercise it alone.
//!
//! - [`hashing`]: reading footage once and computing SHA-256, BLAKE3, SM3 (and legacy MD5).
//! - [`media`]: what an MP4/MOV file says about its own time, read as hostile input.
//! - [`timeline`]: gaps, overlaps, sequence breaks, task coverage and clock checks over columns.
//! - [`listing`]: the objects of a content-addressed tree (`ab/cd/<digest>`), its folders read in parallel.
//! - [`merkle`]: RFC 9162 Merkle trees, proofs and a constant-memory root accumulator.

pub mod hashing;
pub mod listing;
pub mod media;
pub mod merkle;
pub mod timeline;
