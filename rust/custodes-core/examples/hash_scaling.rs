//! Multi-core scaling of the hashing engine, for machines with many cores.
//!
//!     cargo run --release -p custodes-core --example hash_scaling -- DIR [GIB] [FILES]
//!
//! Builds a corpus of FILES files totalling GIB GiB of pseudo-random bytes in
//! DIR (once), warms the page cache, then times `hash_files` at 1, 2, 4, ...
//! threads up to the core count, for SHA-256 and BLAKE3, and the peers
//! `sha256sum` and `b3sum` (one process, as users run them) when installed.
//! Prints GiB/s and the speed-up over one thread.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use custodes_core::hashing::{hash_files, Algorithm, HashOptions, Progress};

fn build_corpus(dir: &PathBuf, gib: u64, files: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let size = (gib << 30) / files;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..files)
        .map(|i| {
            let p = dir.join(format!("clip{i:03}.mp4"));
            if std::fs::metadata(&p).map(|m| m.len()).ok() != Some(size) {
                let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&p).unwrap());
                let mut buf = vec![0u8; 1 << 20];
                for _ in 0..size >> 20 {
                    for chunk in buf.chunks_exact_mut(8) {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        chunk.copy_from_slice(&state.to_le_bytes());
                    }
                    f.write_all(&buf).unwrap();
                }
            }
            p
        })
        .collect()
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median3<F: FnMut()>(mut f: F) -> f64 {
    let mut v = [time(&mut f), time(&mut f), time(&mut f)];
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[1]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map_or("hash-scaling-corpus", String::as_str));
    let gib: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let files: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let paths = build_corpus(&dir, gib, files);
    let total = (gib << 30) as f64 / (1u64 << 30) as f64;
    let p = Progress::default();
    hash_files(&paths, &[Algorithm::Blake3], &HashOptions::default(), &p); // warm the page cache
    println!("corpus: {files} files, {gib} GiB, {cores} cores, warm cache, median of 3");
    for algo in [Algorithm::Sha256, Algorithm::Blake3] {
        let mut base = 0.0;
        let mut threads = 1;
        while threads <= cores {
            let opts = HashOptions {
                threads: Some(threads),
                readers_per_rotational_device: Some(threads),
                ..HashOptions::default()
            };
            let s = median3(|| {
                let r = hash_files(&paths, &[algo], &opts, &p);
                assert!(r.iter().all(|x| x.is_ok()));
            });
            if threads == 1 {
                base = s;
            }
            println!(
                "  {:7} custodes threads={threads:<3} {:7.2} GiB/s  speed-up {:5.2}x",
                algo.name(),
                total / s,
                base / s
            );
            threads = if threads * 2 > cores && threads != cores { cores } else { threads * 2 };
        }
        let peer = if algo == Algorithm::Sha256 { "sha256sum" } else { "b3sum" };
        let ok = std::process::Command::new(peer).arg("--version").output().is_ok_and(|o| o.status.success());
        if ok {
            let s = median3(|| {
                let out = std::process::Command::new(peer).args(&paths).output().unwrap();
                assert!(out.status.success());
            });
            println!("  {:7} {peer:<20}      {:7.2} GiB/s", algo.name(), total / s);
        } else {
            println!("  {:7} {peer}: not installed here", algo.name());
        }
    }
}
