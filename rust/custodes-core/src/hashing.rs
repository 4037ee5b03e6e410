//! Hashing footage at disk speed.
//!
//! Each file is opened once and read once, in chunks of about 1 MiB that stay
//! in cache, and every requested algorithm consumes the same bytes. Files are
//! hashed in parallel (rayon), but the number of readers per storage device is
//! bounded: on a rotational disk a second reader makes both slower. A file that
//! cannot be read, vanishes, is not a regular file, or changes size while it is
//! read gives a per-file [`HashError`]; it never fails the batch.
//!
//! Many small files cost little more than their syscalls: each worker thread
//! keeps one page-aligned read buffer for every file it reads (never zeroed
//! again), a file smaller than it is read in one call (open, fstat, read,
//! fstat, close), and nothing is probed per file. A batch of fewer files than
//! threads hashes a large file on several cores in BLAKE3 mode: the threads
//! read disjoint leaves of it with `pread` and hash each as a subtree of
//! BLAKE3's tree, merged in order. Files are always read, never mapped: a
//! mapped file truncated underneath kills the process with SIGBUS, where a
//! read reports it.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use digest::Digest;
use rayon::prelude::*;

/// Chunk size for reads: large enough that syscalls are negligible, small
/// enough that the chunk stays in L2 while every digest consumes it.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;

/// In the several-cores BLAKE3 mode, each read fills this many chunks (2 MiB
/// by default): big enough that BLAKE3's parallel update splits it across the
/// cores, small enough that the two buffers stay in cache between the copy out
/// of the page cache and the hashing. Measured on 1 GiB (2 cores): at 8 MiB the
/// copy went to memory and back (20% more CPU time than at 1-4 MiB), and 4 MiB
/// was slower than 1-2 MiB.
const WIDE_CHUNKS: usize = 2;

/// A digest algorithm custodes can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256 (FIPS 180-4): the evidence default.
    Sha256,
    /// BLAKE3: fast re-verification.
    Blake3,
    /// SM3 (GB/T 32905-2016): required by Chinese government crypto rules.
    Sm3,
    /// MD5: legacy only, for collection stations that record it. Not collision resistant.
    Md5,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [Algorithm::Sha256, Algorithm::Blake3, Algorithm::Sm3, Algorithm::Md5];

    /// The name used in the CLI, JSON, the catalog and BagIt manifests.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Blake3 => "blake3",
            Algorithm::Sm3 => "sm3",
            Algorithm::Md5 => "md5",
        }
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 | Algorithm::Sm3 => 32,
            Algorithm::Md5 => 16,
        }
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| {
                a.name().eq_ignore_ascii_case(s) || (s.eq_ignore_ascii_case("sha-256") && *a == Algorithm::Sha256)
            })
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// An algorithm name that custodes does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown hash algorithm {0:?} (known: sha256, blake3, sm3, md5)")]
pub struct UnknownAlgorithm(pub String);

/// Why one file could not be hashed. Each variant maps to one Python exception class.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("no such file (dangling symlink or vanished before it was read)")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    #[error("not a regular file: {kind}")]
    NotRegularFile { kind: &'static str },
    #[error("too many levels of symbolic links (symlink loop)")]
    SymlinkLoop,
    #[error("file changed size while being read: {expected} bytes when opened, {read} bytes read, {now} bytes now")]
    ChangedWhileReading { expected: u64, read: u64, now: u64 },
    #[error("file was written to while being read: its size is still {size} bytes, its modification time changed")]
    ModifiedWhileReading { size: u64 },
    #[error(
        "file's change time moved while it was read, its size and modification time as they were: its mode, owner \
         or links changed meanwhile, or it was written and its modification time set back; read it again"
    )]
    TouchedWhileReading { size: u64 },
    #[error("hashing was cancelled before this file was finished")]
    Cancelled,
    #[error("{0}")]
    Io(io::Error),
}

impl From<io::Error> for HashError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => HashError::NotFound,
            io::ErrorKind::PermissionDenied => HashError::PermissionDenied,
            io::ErrorKind::IsADirectory => HashError::NotRegularFile { kind: "directory" },
            _ if e.raw_os_error() == Some(libc::ELOOP) => HashError::SymlinkLoop,
            _ => HashError::Io(e),
        }
    }
}

/// The digests of one file, in the order the algorithms were requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub digests: Vec<Vec<u8>>,
}

/// Shared counters a caller may read while a batch runs, and a way to stop it.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_done: AtomicU64,
    /// Sum of the sizes of the batch's files, set once they have all been looked at.
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    /// Ask the batch to stop; files not yet finished end with [`HashError::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// How a batch is run.
#[derive(Debug, Clone)]
pub struct HashOptions {
    /// Files hashed at once; `None` = the rayon default (one per core).
    pub threads: Option<usize>,
    /// Readers at once on one rotational disk (solid-state devices get `threads`);
    /// `None` = 1 when `threads` is left to the default, else `threads`: a
    /// caller who names a number of readers has said what the storage takes.
    pub readers_per_rotational_device: Option<usize>,
    pub chunk_size: usize,
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions { threads: None, readers_per_rotational_device: None, chunk_size: DEFAULT_CHUNK_SIZE }
    }
}

/// One running digest of each requested algorithm, all fed the same bytes.
struct MultiHasher {
    states: Vec<State>,
}

enum State {
    Sha256(sha2::Sha256),
    Blake3(Box<blake3::Hasher>),
    Sm3(sm3::Sm3),
    Md5(md5::Md5),
}

impl MultiHasher {
    fn new(algorithms: &[Algorithm]) -> Self {
        let states = algorithms
            .iter()
            .map(|a| match a {
                Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
                Algorithm::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
                Algorithm::Sm3 => State::Sm3(sm3::Sm3::new()),
                Algorithm::Md5 => State::Md5(md5::Md5::new()),
            })
            .collect();
        MultiHasher { states }
    }

    /// Feed one chunk to every digest. Inside a rayon pool (batch hashing),
    /// work that can be split is offered to it: several digests side by side,
    /// BLAKE3's tree in parallel; while every worker has a file of its own
    /// nobody steals and this costs nothing, at the tail of a batch idle
    /// workers help the last files. Outside a pool (a copy on a caller's
    /// thread) everything stays on this thread: handing each chunk to another
    /// thread would cost more than it saves. So does a worker holding a
    /// device's reader slot (see [`hashing_alone`]).
    fn update(&mut self, bytes: &[u8]) {
        let in_pool = rayon::current_thread_index().is_some() && !ALONE.get();
        let update_one = |state: &mut State| match state {
            State::Sha256(h) => h.update(bytes),
            State::Blake3(h) => {
                if in_pool {
                    h.update_rayon(bytes);
                } else {
                    h.update(bytes);
                }
            }
            State::Sm3(h) => h.update(bytes),
            State::Md5(h) => h.update(bytes),
        };
        match self.states.as_mut_slice() {
            [one] => update_one(one),
            many if in_pool => many.par_iter_mut().for_each(update_one),
            many => many.iter_mut().for_each(update_one),
        }
    }

    fn finalize(self) -> Vec<Vec<u8>> {
        self.states
            .into_iter()
            .map(|state| match state {
                State::Sha256(h) => h.finalize().to_vec(),
                State::Blake3(h) => h.finalize().as_bytes().to_vec(),
                State::Sm3(h) => h.finalize().to_vec(),
                State::Md5(h) => h.finalize().to_vec(),
            })
            .collect()
    }
}

/// Digests of an in-memory byte string (test vectors, ledger entries).
pub fn hash_bytes(algorithms: &[Algorithm], bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut hasher = MultiHasher::new(algorithms);
    hasher.update(bytes);
    hasher.finalize()
}

/// Chunks at least this large are spread over the pool (see [`StreamHasher::update`]).
pub const SPREAD_CHUNK: usize = 1 << 20;

/// Incremental digests of a stream, for callers that produce the bytes
/// themselves (ingest hashes while it copies).
pub struct StreamHasher {
    inner: MultiHasher,
    size: u64,
}

impl StreamHasher {
    pub fn new(algorithms: &[Algorithm]) -> Self {
        StreamHasher { inner: MultiHasher::new(algorithms), size: 0 }
    }

    /// Feed one chunk. A chunk of [`SPREAD_CHUNK`] or more fed from outside a
    /// pool is hashed on the global rayon pool, where BLAKE3's tree and several
    /// digests go side by side on idle cores: one big object streamed from a
    /// bucket would otherwise hash on one core (BLAKE3 at under half the speed
    /// of the batch hasher on the same file). A smaller chunk stays on the
    /// caller's thread, where the handoff would cost more than it saves.
    pub fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if bytes.len() >= SPREAD_CHUNK && rayon::current_thread_index().is_none() {
            let inner = &mut self.inner;
            rayon::scope(|_| inner.update(bytes)); // runs the closure on a worker of the global pool
        } else {
            self.inner.update(bytes);
        }
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finalize(self) -> FileDigest {
        FileDigest { size: self.size, digests: self.inner.finalize() }
    }
}

fn file_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "named pipe (FIFO)"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Hash one file, reading it once (again only where its change time moved meanwhile: [`again_if_touched`]).
pub fn hash_file(
    path: &Path,
    algorithms: &[Algorithm],
    chunk_size: usize,
    progress: &Progress,
) -> Result<FileDigest, HashError> {
    again_if_touched(progress, || read_evidence(path, algorithms, chunk_size, progress, |_| Ok(())))
}

/// Hash one large file on several cores. BLAKE3 alone hashes the file as
/// the subtrees of its tree, each read with `pread` on whichever of the pool's
/// threads is free (see [`blake3_tree`]); BLAKE3 with other digests reads
/// with the next read in flight while BLAKE3's parallel update spreads each
/// buffer (the other digests are serial). A file of at most two chunks, or a
/// run without BLAKE3, is read as [`hash_file`] reads it. Call it from inside
/// a rayon pool: the pool's threads are the cores used.
pub fn hash_file_wide(
    path: &Path,
    algorithms: &[Algorithm],
    chunk_size: usize,
    progress: &Progress,
) -> Result<FileDigest, HashError> {
    if !algorithms.contains(&Algorithm::Blake3) {
        return hash_file(path, algorithms, chunk_size, progress);
    }
    again_if_touched(progress, || hash_file_wide_once(path, algorithms, chunk_size, progress))
}

/// One read of [`hash_file_wide`] (BLAKE3 among the algorithms).
fn hash_file_wide_once(
    path: &Path,
    algorithms: &[Algorithm],
    chunk_size: usize,
    progress: &Progress,
) -> Result<FileDigest, HashError> {
    let wide_chunk = chunk_size.max(4096).saturating_mul(WIDE_CHUNKS);
    let (file, meta) = open_evidence(path)?;
    if meta.len() <= wide_chunk as u64 {
        return read_opened(file, &meta, algorithms, chunk_size, progress, |_| Ok(()));
    }
    advise_sequential(&file);
    if algorithms == [Algorithm::Blake3] {
        // The largest power of two at most the chunk size, so small chunks (tests) make many leaves.
        let leaf = (chunk_size.max(blake3::CHUNK_LEN) / 2 + 1).next_power_of_two().min(TREE_LEAF);
        return blake3_tree(&file, &meta, leaf, progress);
    }
    read_wide(&file, &meta, algorithms, wide_chunk, progress, |_| Ok(()))
}

/// Bytes of the file hashed as one subtree by one thread in [`blake3_tree`]:
/// a power of two, so every leaf but the last is a whole subtree of BLAKE3's
/// tree; large enough that BLAKE3's SIMD hashes many of its 1 KiB chunks at
/// once and a `pread` per leaf costs nothing. Measured on 1 GiB (2 cores,
/// page-aligned buffers), CPU time of the whole hash: 0.254 s at 256 KiB,
/// 0.244 s at 512 KiB, 0.235 s at 1 MiB.
const TREE_LEAF: usize = 1 << 20;

/// BLAKE3 of a file of `opened.len()` bytes, more than one `leaf`, on every
/// thread of the current pool, without mapping the file (a mapped file cut
/// short underneath kills the process; a read reports it).
///
/// The file is cut into leaves of `leaf` bytes (a power of two, at least
/// BLAKE3's chunk), the last one short. Threads take the leaves in file order
/// (so the kernel sees one reader going forward, and reads ahead for it),
/// each `pread`s its leaf into its own buffer and hashes it as the subtree at
/// that offset (`set_input_offset`, `finalize_non_root`). The chaining values
/// are merged in leaf order, as BLAKE3's own hasher merges its chunks: a leaf
/// is a whole subtree of `leaf / CHUNK_LEN` chunks, so after the k-th leaf the
/// stack holds one subtree per bit set in k; the last leaf is merged into the
/// stack from the top down, the final merge being the root. Memory is one
/// leaf per thread and a few chaining values, whatever the file's size.
///
/// A leaf that comes in short (the file was cut), a read error or a
/// cancellation stops every thread at its next leaf; the checks after the
/// last read are those of [`read_opened`].
fn blake3_tree(
    file: &File,
    opened: &std::fs::Metadata,
    leaf: usize,
    progress: &Progress,
) -> Result<FileDigest, HashError> {
    use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};
    debug_assert!(leaf.is_power_of_two() && leaf >= blake3::CHUNK_LEN);
    let expected = opened.len();
    let leaves = expected.div_ceil(leaf as u64);
    assert!(leaves >= 2, "a file of one leaf is hashed by read_opened");
    let next = AtomicU64::new(0);
    let read_total = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failed: Mutex<Option<HashError>> = Mutex::new(None);
    struct Merge {
        /// Chaining values of leaves finished before every earlier one was, by leaf number.
        early: std::collections::BTreeMap<u64, ChainingValue>,
        /// The next leaf to merge.
        merged: u64,
        /// One subtree per bit set in `merged`, largest first (unmerged pairs wait for the next push).
        stack: Vec<ChainingValue>,
        last: Option<ChainingValue>,
    }
    // Merge the stack down to one subtree per bit set in `count`, the leaves before the next push.
    fn settle(stack: &mut Vec<ChainingValue>, count: u64) {
        while stack.len() > count.count_ones() as usize {
            let right = stack.pop().expect("two on the stack");
            let left = stack.pop().expect("two on the stack");
            stack.push(merge_subtrees_non_root(&left, &right, Mode::Hash));
        }
    }
    let merge = Mutex::new(Merge { early: Default::default(), merged: 0, stack: Vec::new(), last: None });
    let fail = |e: HashError| {
        stop.store(true, Ordering::Relaxed);
        failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
    };
    let work = || {
        let mut buf = ReadBuffer::take(leaf);
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if progress.is_cancelled() {
                return fail(HashError::Cancelled);
            }
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= leaves {
                return;
            }
            let offset = k * leaf as u64;
            let len = (expected - offset).min(leaf as u64) as usize;
            buf.clear();
            while buf.len() < len {
                let at = offset + buf.len() as u64;
                match read_into_spare_at(file, &mut buf, len, Some(at)) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return fail(e.into()),
                }
            }
            let got = read_total.fetch_add(buf.len() as u64, Ordering::Relaxed) + buf.len() as u64;
            progress.bytes_done.fetch_add(buf.len() as u64, Ordering::Relaxed);
            if buf.len() < len {
                let now = file.metadata().map_or(0, |m| m.len());
                return fail(HashError::ChangedWhileReading { expected, read: got, now });
            }
            let cv = blake3::Hasher::new().set_input_offset(offset).update(&buf).finalize_non_root();
            let mut m = merge.lock().unwrap_or_else(|p| p.into_inner());
            m.early.insert(k, cv);
            loop {
                let n = m.merged;
                let Some(cv) = m.early.remove(&n) else { break };
                if n == leaves - 1 {
                    m.last = Some(cv);
                } else {
                    settle(&mut m.stack, n);
                    m.stack.push(cv);
                }
                m.merged += 1;
            }
        }
    };
    let helpers = (rayon::current_num_threads() as u64).min(leaves) - 1;
    rayon::scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| work());
        }
        work();
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    unchanged_since_open(file, opened, read_total.into_inner())?;
    let Merge { mut stack, last, .. } = merge.into_inner().unwrap_or_else(|p| p.into_inner());
    settle(&mut stack, leaves - 1);
    let mut right = last.expect("every leaf was merged");
    let root = loop {
        let left = stack.pop().expect("the first leaf is on the stack");
        if stack.is_empty() {
            break merge_subtrees_root(&left, &right, Mode::Hash);
        }
        right = merge_subtrees_non_root(&left, &right, Mode::Hash);
    };
    Ok(FileDigest { size: expected, digests: vec![root.as_bytes().to_vec()] })
}

/// Copy `src` to a new file `dst`, hashing the bytes as they pass: the one
/// read of the evidence feeds both the copy and every digest.
///
/// `dst` must not exist (`O_EXCL`): a copy never overwrites. The copy is not
/// fsynced here; the caller does that, then reads it back to re-hash, so each
/// step of ingest can be checked (and crashed) on its own.
///
/// A file of more than [`WIDE_COPY`] bytes is copied on the global rayon
/// pool, as [`read_wide`] reads: the next read, the write of this buffer and
/// each digest of it side by side, so the copy goes at the speed of its
/// slowest digest, not of the sum of all of them and the write (1 GiB with
/// SHA-256 and BLAKE3 on 2 cores: 1.5 s one after the other). Each buffer
/// written is handed to the kernel's write-back at once
/// ([`start_write_back`]), so the caller's fsync finds little left to write.
pub fn copy_file_hashed(
    src: &Path,
    dst: &Path,
    algorithms: &[Algorithm],
    chunk_size: usize,
    progress: &Progress,
) -> Result<FileDigest, HashError> {
    use std::io::Write;
    let writing =
        |e: io::Error| HashError::Io(io::Error::new(e.kind(), format!("writing the copy {}: {e}", dst.display())));
    let (file, meta) = open_evidence(src)?;
    // Created only once the source has opened as a regular file: nothing is left behind for a bad source.
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dst).map_err(writing)?;
    if meta.len() <= WIDE_COPY {
        return read_opened(file, &meta, algorithms, chunk_size, progress, |chunk| {
            out.write_all(chunk).map_err(writing)
        });
    }
    advise_sequential(&file);
    let mut written: u64 = 0;
    let wide_chunk = chunk_size.max(4096).saturating_mul(WIDE_CHUNKS);
    rayon::scope(|_| {
        read_wide(&file, &meta, algorithms, wide_chunk, progress, |chunk| {
            out.write_all(chunk).map_err(writing)?;
            start_write_back(&out, written, chunk.len());
            written += chunk.len() as u64;
            Ok(())
        })
    })
}

/// Files larger than this are copied wide (see [`copy_file_hashed`]); a
/// smaller one is copied on the caller's thread, where many small files go
/// side by side on the caller's threads and a hand-off per file would cost
/// more than it saves.
const WIDE_COPY: u64 = 8 << 20;

/// Start writing `len` bytes of `file` at `offset` back to its storage,
/// without waiting: the disk writes while the copy goes on, instead of all at
/// the fsync after it. Advice only (`sync_file_range` promises nothing
/// durable; the caller's fsync does): a failure here is left to that fsync.
fn start_write_back(file: &File, offset: u64, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain syscall on a descriptor we own; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Open a file of evidence for reading: the one opener every reader of
/// footage uses (hashing, copying, the box walker).
///
/// The file is opened with `O_NONBLOCK` so that a FIFO planted on a volume
/// cannot hang the run (a blocking open of a FIFO waits for a writer for ever);
/// the open descriptor is then checked to be a regular file before anything is
/// read, so a device or pipe is refused at once. Returns the file and the
/// metadata of that same descriptor (no race with a rename in between).
pub fn open_evidence(path: &Path) -> Result<(File, std::fs::Metadata), HashError> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(HashError::NotRegularFile { kind: file_kind(&meta.file_type()) });
    }
    Ok((file, meta))
}

/// Read a file once, front to back, feeding every digest and `sink`.
///
/// The file comes from [`open_evidence`]. The size is taken from that
/// descriptor, and a file that ends early, grows, or whose size differs after
/// reading is an error: its digest would describe bytes that are not the evidence.
fn read_evidence(
    path: &Path,
    algorithms: &[Algorithm],
    chunk_size: usize,
    progress: &Progress,
    sink: impl FnMut(&[u8]) -> Result<(), HashError>,
) -> Result<FileDigest, HashError> {
    let (file, meta) = open_evidence(path)?;
    read_opened(file, &meta, algorithms, chunk_size, progress, sink)
}

/// [`read_evidence`] once the file is open; `opened` is what `fstat` said of
/// the descriptor at its open.
///
/// Reading stops as soon as the size said at the open has come in: a small
/// file is one `read`, with no second `read` to see the end. That read would
/// only show that no byte lay past the size at the moment it ran; the `fstat`
/// after the last read (in [`unchanged_since_open`]) shows the same, later:
/// a file that grew while it was read is longer then, and one written to or
/// grown and cut back to the same size has a new modification time. A
/// reported size that is smaller than the bytes there (files under /proc
/// say 0) is still caught: the last read asks for one byte more than is
/// left, so an extra byte comes in with it, and a file said to be empty is
/// read once.
fn read_opened(
    file: File,
    opened: &std::fs::Metadata,
    algorithms: &[Algorithm],
    chunk_size: usize,
    progress: &Progress,
    mut sink: impl FnMut(&[u8]) -> Result<(), HashError>,
) -> Result<FileDigest, HashError> {
    let expected = opened.len();
    let chunk_size = chunk_size.max(4096);
    // A file that fits the buffer is read in one call: read-ahead advice would only cost a syscall.
    if expected > chunk_size as u64 {
        advise_sequential(&file);
    }
    let mut hasher = MultiHasher::new(algorithms);
    let mut buf = ReadBuffer::take(chunk_size + 1);
    let mut read_total: u64 = 0;
    loop {
        if progress.is_cancelled() {
            return Err(HashError::Cancelled);
        }
        buf.clear();
        let left = expected.saturating_sub(read_total);
        let want = if left <= chunk_size as u64 { left as usize + 1 } else { chunk_size };
        let n = match read_into_spare(&file, &mut buf, want) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        sink(&buf[..])?;
        hasher.update(&buf[..]);
        read_total += n as u64;
        progress.bytes_done.fetch_add(n as u64, Ordering::Relaxed);
        if read_total >= expected {
            break;
        }
    }
    drop(buf);
    unchanged_since_open(&file, opened, read_total)?;
    Ok(FileDigest { size: expected, digests: hasher.finalize() })
}

/// The check after the last read of a file: `read` bytes came in, the size
/// said at the open, and the descriptor's size, modification time and change
/// time now are those of the open. The size is the check that cannot be
/// fooled by a clock; the modification time (to the file system's
/// granularity) adds writes that keep the size, which the bytes read cannot
/// show, and the change time a write whose modification time was set back
/// after it (`touch -r`, a copy tool keeping times: a hostile review stored a
/// file rewritten so, bytes the card never held whole), which no caller can
/// set.
fn unchanged_since_open(file: &File, opened: &std::fs::Metadata, read: u64) -> Result<(), HashError> {
    let expected = opened.len();
    let now = file.metadata()?;
    if read != expected || now.len() != expected {
        return Err(HashError::ChangedWhileReading { expected, read, now: now.len() });
    }
    if (now.mtime(), now.mtime_nsec()) != (opened.mtime(), opened.mtime_nsec()) {
        return Err(HashError::ModifiedWhileReading { size: expected });
    }
    if (now.ctime(), now.ctime_nsec()) != (opened.ctime(), opened.ctime_nsec()) {
        return Err(HashError::TouchedWhileReading { size: expected });
    }
    Ok(())
}

/// Reads of one file while each ends with only its change time moved (a chmod, a link made or removed
/// meanwhile, as a backup's `rsync --link-dest` does: a hostile review saw intact objects called modified);
/// the last read's outcome stands.
const TOUCHED_TRIES: usize = 3;

/// `read` again while it ends with [`HashError::TouchedWhileReading`], up to [`TOUCHED_TRIES`] reads in all;
/// the bytes of each read that is done again are taken off the progress, which counted them.
fn again_if_touched(
    progress: &Progress,
    read: impl Fn() -> Result<FileDigest, HashError>,
) -> Result<FileDigest, HashError> {
    let mut last = read();
    for _ in 1..TOUCHED_TRIES {
        let Err(HashError::TouchedWhileReading { size }) = last else { break };
        progress.bytes_done.fetch_sub(size, Ordering::Relaxed);
        last = read();
    }
    last
}

/// One read of the file into the unused capacity of `buf`, appended to what it
/// holds, until it holds at most `limit` bytes: the bytes the kernel writes
/// are the only ones ever looked at, so the buffer is never zeroed first
/// (zeroing 1 MiB per 4 KiB file was half the time of hashing many small files).
fn read_into_spare(file: &File, buf: &mut PageBuf, limit: usize) -> io::Result<usize> {
    read_into_spare_at(file, buf, limit, None)
}

/// [`read_into_spare`] at `offset` when one is given (`pread`: the threads of
/// [`blake3_tree`] share one descriptor, whose file position none of them
/// moves), at the file position otherwise.
fn read_into_spare_at(file: &File, buf: &mut PageBuf, limit: usize, offset: Option<u64>) -> io::Result<usize> {
    let want = (buf.cap - buf.len).min(limit.saturating_sub(buf.len));
    // SAFETY: the kernel writes at most `want` bytes into the spare capacity we own, after the `len`
    // bytes held, and returns how many; exactly those become part of the buffer.
    let n = unsafe {
        let spare = buf.ptr.as_ptr().add(buf.len).cast();
        match offset {
            Some(at) => libc::pread(file.as_raw_fd(), spare, want, at as libc::off_t),
            None => libc::read(file.as_raw_fd(), spare, want),
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.len += n as usize;
    Ok(n as usize)
}

/// A read buffer that starts on a page boundary: the kernel copies out of the
/// page cache into it about twice as fast as into the 16-byte-aligned block
/// the allocator gives (measured: 1 GiB read in 1 MiB reads, 0.06 s of system
/// time into a page-aligned buffer, 0.12 s at an offset of 16 bytes).
/// Only the first `len` bytes, those written by a read, are ever looked at.
struct PageBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: PageBuf owns its block, as a Vec<u8> does, and is only written through `&mut`.
unsafe impl Send for PageBuf {}
unsafe impl Sync for PageBuf {}

impl PageBuf {
    const PAGE: usize = 4096;
    const EMPTY: PageBuf = PageBuf { ptr: std::ptr::NonNull::dangling(), cap: 0, len: 0 };

    fn with_capacity(cap: usize) -> Self {
        if cap == 0 {
            return PageBuf::EMPTY;
        }
        let layout = std::alloc::Layout::from_size_align(cap, Self::PAGE).expect("a buffer size fits a layout");
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(ptr) else { std::alloc::handle_alloc_error(layout) };
        PageBuf { ptr, cap, len: 0 }
    }

    fn capacity(&self) -> usize {
        self.cap
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            let layout = std::alloc::Layout::from_size_align(self.cap, Self::PAGE).expect("made from this layout");
            // SAFETY: allocated in with_capacity with this very layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by reads (a dangling pointer with len 0 when empty).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

thread_local! {
    /// The read buffer of this thread, kept between files.
    static READ_BUFFER: Cell<PageBuf> = const { Cell::new(PageBuf::EMPTY) };
}

/// This thread's read buffer, lent for one file and given back on drop.
///
/// Taken out of the thread-local rather than borrowed: while a digest waits
/// in a rayon join, this thread may steal another file's work, which then
/// finds no buffer and makes its own (the later of the two kept).
struct ReadBuffer(PageBuf);

impl ReadBuffer {
    fn take(capacity: usize) -> Self {
        let mut buf = READ_BUFFER.replace(PageBuf::EMPTY);
        if buf.capacity() < capacity {
            buf = PageBuf::with_capacity(capacity);
        }
        ReadBuffer(buf)
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        READ_BUFFER.set(std::mem::replace(&mut self.0, PageBuf::EMPTY));
    }
}

impl std::ops::Deref for ReadBuffer {
    type Target = PageBuf;
    fn deref(&self) -> &PageBuf {
        &self.0
    }
}

impl std::ops::DerefMut for ReadBuffer {
    fn deref_mut(&mut self) -> &mut PageBuf {
        &mut self.0
    }
}

/// Read a large file with the next read in flight while the digests (BLAKE3
/// across the pool's cores) consume the previous buffer: each step is one
/// rayon join of "read the next buffer" and "hash this one", so the thread
/// that reads helps hashing as soon as its read is done, and no thread or
/// channel is added. Two buffers of `wide_chunk` bytes take turns, so memory
/// does not depend on the file's size. The size checks, errors and cancelling
/// are those of [`read_opened`].
///
/// `sink` is given each buffer beside the digests (a copy writes it while the
/// buffer is hashed), in file order; its error stops the read.
fn read_wide(
    file: &File,
    opened: &std::fs::Metadata,
    algorithms: &[Algorithm],
    wide_chunk: usize,
    progress: &Progress,
    mut sink: impl FnMut(&[u8]) -> Result<(), HashError> + Send,
) -> Result<FileDigest, HashError> {
    let expected = opened.len();
    let mut hasher = MultiHasher::new(algorithms);
    let mut current = PageBuf::with_capacity(wide_chunk);
    let mut next = PageBuf::with_capacity(wide_chunk);
    let mut ended = fill_buffer(file, &mut current, progress)?;
    let mut read_total = current.len() as u64;
    loop {
        let last = ended || read_total > expected;
        let (filled, (sunk, ())) = rayon::join(
            || if last { Ok(true) } else { fill_buffer(file, &mut next, progress) },
            || rayon::join(|| sink(&current), || hasher.update(&current)),
        );
        sunk?;
        progress.bytes_done.fetch_add(current.len() as u64, Ordering::Relaxed);
        if last {
            break;
        }
        ended = filled?;
        read_total += next.len() as u64;
        std::mem::swap(&mut current, &mut next);
    }
    unchanged_since_open(file, opened, read_total)?;
    Ok(FileDigest { size: expected, digests: hasher.finalize() })
}

/// Fill `buf` to its capacity (a full buffer splits evenly across cores) or
/// to the end of the file; true when the file ended.
fn fill_buffer(file: &File, buf: &mut PageBuf, progress: &Progress) -> Result<bool, HashError> {
    buf.clear();
    while buf.len() < buf.capacity() {
        if progress.is_cancelled() {
            return Err(HashError::Cancelled);
        }
        match read_into_spare(file, buf, usize::MAX) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Tell the kernel we read front to back, so its read-ahead runs ahead of the
/// hashing and the disk and the CPU work at the same time.
fn advise_sequential(file: &File) {
    // Advice only: a file system that ignores it is fine.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Whether the block device holding files with this `st_dev` spins.
///
/// Unknown (network, overlay, tmpfs) counts as solid state. So do virtual
/// disks (virtio, Xen, loop, device mapper): their `rotational` flag is a
/// default the hypervisor never filled in (virtio-blk reports 1 on SSD-backed
/// cloud volumes), and obeying it would serialise every read for nothing.
///
/// Asked once per device per process: a batch per file (ingest's read-back)
/// would otherwise walk `/sys` for every file. A device number reused by a
/// disk plugged in later keeps the first answer; that only changes how many
/// readers it gets, never what is read.
fn is_rotational(dev: u64) -> bool {
    static KNOWN: OnceLock<Mutex<HashMap<u64, bool>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    if let Some(&r) = known.lock().unwrap_or_else(|p| p.into_inner()).get(&dev) {
        return r;
    }
    let r = probe_rotational(dev);
    known.lock().unwrap_or_else(|p| p.into_inner()).insert(dev, r);
    r
}

fn probe_rotational(dev: u64) -> bool {
    let node = PathBuf::from(format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev)));
    let Ok(real) = std::fs::canonicalize(&node) else { return false };
    let real = real.to_string_lossy();
    if ["/virtual/", "/virtio", "/xen", "/vbd-"].iter().any(|v| real.contains(v)) {
        return false;
    }
    // A partition's queue/ lives on its parent disk, one level up.
    ["queue/rotational", "../queue/rotational"]
        .iter()
        .find_map(|rel| std::fs::read_to_string(node.join(rel)).ok())
        .is_some_and(|s| s.trim() == "1")
}

/// A counting semaphore bounding the readers on one storage device.
struct DeviceSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl DeviceSlots {
    fn new(n: usize) -> Self {
        DeviceSlots { free: Mutex::new(n.max(1)), freed: Condvar::new() }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a DeviceSlots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Hash many files in parallel. The result has one entry per path, in order.
///
/// Workers take files from one queue, largest first (so a big file never
/// starts last and leaves the other cores idle at the end), interleaved
/// across storage devices so that a slow disk holding its one reader slot does
/// not starve the others.
pub fn hash_files(
    paths: &[PathBuf],
    algorithms: &[Algorithm],
    options: &HashOptions,
    progress: &Progress,
) -> Vec<Result<FileDigest, HashError>> {
    let run = || {
        let threads = rayon::current_num_threads();
        let per_rotational =
            options.readers_per_rotational_device.unwrap_or(if options.threads.is_some() { threads } else { 1 });
        // On every core: for many small files these stats are a third of the syscalls.
        let metas: Vec<Option<std::fs::Metadata>> = paths.par_iter().map(|p| std::fs::metadata(p).ok()).collect();
        let size = |i: usize| metas[i].as_ref().filter(|m| m.is_file()).map_or(0, |m| m.len());
        progress.bytes_total.store((0..paths.len()).map(size).sum(), Ordering::Relaxed);
        // Only a device that limits its readers below the thread count gets slots: taking and giving
        // back a slot costs a futex wake per file, for nothing where every worker may read at once.
        let mut limits: HashMap<u64, usize> = HashMap::new();
        for meta in metas.iter().flatten() {
            limits
                .entry(meta.dev())
                .or_insert_with(|| if is_rotational(meta.dev()) { per_rotational } else { threads });
        }
        let slots: HashMap<u64, DeviceSlots> =
            limits.into_iter().filter(|&(_, n)| n < threads).map(|(dev, n)| (dev, DeviceSlots::new(n))).collect();
        let mut by_size: Vec<usize> = (0..paths.len()).collect();
        by_size.sort_by_key(|&i| std::cmp::Reverse(size(i)));
        let devices: Vec<Option<u64>> = by_size.iter().map(|&i| metas[i].as_ref().map(|m| m.dev())).collect();
        let queue: Vec<usize> = interleave_by_device(&devices).into_iter().map(|k| by_size[k]).collect();

        // Fewer files than threads: the idle cores help hash each large file (BLAKE3 only).
        let read: fn(&Path, &[Algorithm], usize, &Progress) -> Result<FileDigest, HashError> =
            if paths.len() < threads { hash_file_wide } else { hash_file };
        let next = AtomicUsize::new(0);
        let results: Vec<OnceLock<Result<FileDigest, HashError>>> = paths.iter().map(|_| OnceLock::new()).collect();
        rayon::scope(|scope| {
            for _ in 0..threads.min(paths.len()) {
                scope.spawn(|_| {
                    while let Some(&i) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let slot = metas[i].as_ref().and_then(|m| slots.get(&m.dev())).map(DeviceSlots::acquire);
                        let r = match slot {
                            Some(_slot) => {
                                hashing_alone(|| hash_file(&paths[i], algorithms, options.chunk_size, progress))
                            }
                            None => read(&paths[i], algorithms, options.chunk_size, progress),
                        };
                        progress.files_done.fetch_add(1, Ordering::Relaxed);
                        let _ = results[i].set(r);
                    }
                });
            }
        });
        results.into_iter().map(|r| r.into_inner().expect("every queued file has a result")).collect()
    };
    match options.threads.and_then(sized_pool) {
        Some(pool) => pool.install(run),
        None => run(),
    }
}

/// Run [`hash_files`] on a pool thread and hand its results to `done`: a
/// caller that polls (the Python binding) starts no thread of its own per
/// batch. Should the batch panic, `done` is dropped uncalled.
pub fn hash_files_in_background(
    paths: Vec<PathBuf>,
    algorithms: Vec<Algorithm>,
    options: HashOptions,
    progress: Arc<Progress>,
    done: impl FnOnce(Vec<Result<FileDigest, HashError>>) + Send + 'static,
) {
    let pool = options.threads.and_then(sized_pool);
    let job = move || {
        let run = std::panic::AssertUnwindSafe(|| hash_files(&paths, &algorithms, &options, &progress));
        if let Ok(outcomes) = std::panic::catch_unwind(run) {
            done(outcomes);
        }
    };
    // On the pool the batch will use: its install() then runs in place.
    match pool {
        Some(pool) => pool.spawn(job),
        None => rayon::spawn(job),
    }
}

/// A pool of `n` threads, kept for the next batch that asks for the same
/// number (a batch per file would otherwise start `n` threads per file).
/// Only the last size is kept: callers clamp `n` to their file count, and a
/// pool per size ever asked for would pile up idle threads.
fn sized_pool(n: usize) -> Option<Arc<rayon::ThreadPool>> {
    static LAST: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);
    let n = n.max(1);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((size, pool)) = last.as_ref() {
        if *size == n {
            return Some(Arc::clone(pool));
        }
    }
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()?);
    *last = Some((n, Arc::clone(&pool)));
    Some(pool)
}

thread_local! {
    /// Set while this thread hashes a file under a device's reader slot.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with every digest on this thread: no rayon join, hence no stealing.
///
/// A worker holding the only reader slot of a spinning disk must not, while
/// it waits in a join, steal another file's task: that task would wait for
/// the slot held further up the same stack, for ever. Such a disk reads far
/// slower than one core hashes, so nothing is lost.
fn hashing_alone<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALONE.set(self.0);
        }
    }
    let _restore = Restore(ALONE.replace(true));
    f()
}

/// Indices of `devices` ordered round-robin across devices, keeping each
/// device's files in their given order.
fn interleave_by_device(devices: &[Option<u64>]) -> Vec<usize> {
    let mut queues: Vec<(Option<u64>, Vec<usize>)> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        match queues.iter_mut().find(|(k, _)| k == d) {
            Some((_, q)) => q.push(i),
            None => queues.push((*d, vec![i])),
        }
    }
    let mut order = Vec::with_capacity(devices.len());
    let longest = queues.iter().map(|(_, q)| q.len()).max().unwrap_or(0);
    for round in 0..longest {
        for (_, q) in &queues {
            if let Some(&i) = q.get(round) {
                order.push(i);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hex(b: &[u8]) -> String {
        hex::encode(b)
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        }
        assert!("sha1".parse::<Algorithm>().is_err());
    }

    #[test]
    fn empty_input_digests() {
        let d = hash_bytes(&Algorithm::ALL, b"");
        assert_eq!(hex(&d[0]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&d[1]), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        assert_eq!(hex(&d[2]), "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b");
        assert_eq!(hex(&d[3]), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn file_equals_bytes_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let p = dir.path().join("f.bin");
        std::fs::File::create(&p).unwrap().write_all(&data).unwrap();
        let progress = Progress::default();
        for chunk in [4096, 65_536, 1 << 20] {
            let got = hash_file(&p, &Algorithm::ALL, chunk, &progress).unwrap();
            assert_eq!(got.size, data.len() as u64);
            assert_eq!(got.digests, hash_bytes(&Algorithm::ALL, &data));
        }
    }

    #[test]
    fn batch_keeps_order_and_isolates_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, b"abc").unwrap();
        let paths = vec![good.clone(), dir.path().join("missing"), dir.path().to_path_buf(), good];
        let r = hash_files(&paths, &[Algorithm::Sha256], &HashOptions::default(), &Progress::default());
        assert_eq!(r.len(), 4);
        assert_eq!(
            hex(&r[0].as_ref().unwrap().digests[0]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(matches!(r[1], Err(HashError::NotFound)));
        assert!(matches!(r[2], Err(HashError::NotRegularFile { kind: "directory" })));
        assert_eq!(r[3].as_ref().unwrap(), r[0].as_ref().unwrap());
    }

    #[test]
    fn symlink_loop_and_fifo_are_errors_not_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let progress = Progress::default();
        assert!(matches!(hash_file(&a, &[Algorithm::Sha256], 4096, &progress), Err(HashError::SymlinkLoop)));
        assert!(matches!(
            hash_file(&fifo, &[Algorithm::Sha256], 4096, &progress),
            Err(HashError::NotRegularFile { kind: "named pipe (FIFO)" })
        ));
    }

    #[test]
    fn copy_hashes_what_it_writes_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i * 31 % 256) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path().join("dst");
        let p = Progress::default();
        let got = copy_file_hashed(&src, &dst, &[Algorithm::Sha256, Algorithm::Blake3], 1 << 20, &p).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert_eq!(got.digests, hash_bytes(&[Algorithm::Sha256, Algorithm::Blake3], &data));
        let again = copy_file_hashed(&src, &dst, &[Algorithm::Sha256], 1 << 20, &p);
        assert!(matches!(again, Err(HashError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(&dst).unwrap(), data, "the existing copy is untouched");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let empty_copy = dir.path().join("empty-copy");
        assert_eq!(copy_file_hashed(&empty, &empty_copy, &[Algorithm::Md5], 4096, &p).unwrap().size, 0);
        assert!(empty_copy.exists());
        let bad_dst = dir.path().join("from-a-folder");
        assert!(matches!(
            copy_file_hashed(dir.path(), &bad_dst, &[Algorithm::Md5], 4096, &p),
            Err(HashError::NotRegularFile { .. })
        ));
        assert!(!bad_dst.exists(), "nothing is created for a source that cannot be read");
    }

    #[test]
    fn digest_lengths_are_the_lengths_computed() {
        let digests = hash_bytes(&Algorithm::ALL, b"abc");
        for (a, d) in Algorithm::ALL.into_iter().zip(&digests) {
            assert_eq!(a.digest_len(), d.len(), "{}", a.name());
        }
        assert_eq!(Algorithm::Md5.digest_len(), 16);
    }

    #[test]
    fn sha_256_with_a_hyphen_is_sha256_in_any_case() {
        // What sha256sum --tag and RFC 3230 write; no other name maps to SHA-256.
        for s in ["sha-256", "SHA-256", "Sha-256", "SHA256"] {
            assert_eq!(s.parse::<Algorithm>().unwrap(), Algorithm::Sha256, "{s}");
        }
        assert_eq!("BLAKE3".parse::<Algorithm>().unwrap(), Algorithm::Blake3);
        assert!("blake-3".parse::<Algorithm>().is_err());
    }

    #[test]
    fn io_errors_map_to_what_a_custodian_can_act_on() {
        let from = |e: io::Error| HashError::from(e);
        assert!(matches!(from(io::Error::from(io::ErrorKind::NotFound)), HashError::NotFound));
        assert!(matches!(from(io::Error::from(io::ErrorKind::PermissionDenied)), HashError::PermissionDenied));
        assert!(matches!(
            from(io::Error::from_raw_os_error(libc::EISDIR)),
            HashError::NotRegularFile { kind: "directory" }
        ));
        assert!(matches!(from(io::Error::from_raw_os_error(libc::ELOOP)), HashError::SymlinkLoop));
        assert!(
            matches!(from(io::Error::from_raw_os_error(libc::EIO)), HashError::Io(e) if e.raw_os_error() == Some(libc::EIO))
        );
    }

    #[test]
    fn stream_hasher_counts_every_byte_it_is_fed() {
        let mut h = StreamHasher::new(&[Algorithm::Sha256, Algorithm::Sm3]);
        h.update(b"hello, ");
        h.update(b"");
        h.update(b"world");
        let got = h.finalize();
        assert_eq!(got.size, 12);
        assert_eq!(got.digests, hash_bytes(&[Algorithm::Sha256, Algorithm::Sm3], b"hello, world"));
    }

    #[test]
    fn chunks_spread_over_the_pool_give_the_digests_of_the_whole() {
        // Chunks on both sides of SPREAD_CHUNK, every algorithm: the pool's side-by-side digests and BLAKE3's
        // parallel tree must give exactly what one pass over the whole gives.
        let all = [Algorithm::Sha256, Algorithm::Blake3, Algorithm::Sm3, Algorithm::Md5];
        let data: Vec<u8> = (0..(5 * SPREAD_CHUNK + 12_345)).map(|i| (i * 31 % 251) as u8).collect();
        let mut h = StreamHasher::new(&all);
        for piece in [&data[..100], &data[100..SPREAD_CHUNK + 100], &data[SPREAD_CHUNK + 100..]] {
            h.update(piece);
        }
        let got = h.finalize();
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(got.digests, hash_bytes(&all, &data));
    }

    #[test]
    fn a_read_error_ends_the_file_with_that_error() {
        // /proc/self/mem is a regular file whose first page is never mapped: read(2) fails with EIO,
        // which must end this file with the error, not be retried for ever like an interrupted read.
        let got = hash_file(Path::new("/proc/self/mem"), &[Algorithm::Sha256], 4096, &Progress::default());
        assert!(matches!(&got, Err(HashError::Io(e)) if e.raw_os_error() == Some(libc::EIO)), "{got:?}");
    }

    #[test]
    fn a_file_whose_size_lies_is_refused() {
        // Files under /proc say 0 bytes but read as more: what was read is not what the file is.
        let got = hash_file(Path::new("/proc/self/status"), &[Algorithm::Sha256], 4096, &Progress::default());
        assert!(
            matches!(got, Err(HashError::ChangedWhileReading { expected: 0, read, now: 0 }) if read > 0),
            "{got:?}"
        );
    }

    #[test]
    fn interleave_round_robins_devices() {
        let devs = [Some(1), Some(1), Some(2), None, Some(1), Some(2)];
        assert_eq!(interleave_by_device(&devs), vec![0, 2, 3, 1, 5, 4]);
    }

    /// Bytes that differ at every offset, so a stale byte left in a reused buffer changes the digest.
    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
    }

    #[test]
    fn a_reused_buffer_gives_each_file_its_own_digest() {
        // Large then small then large: a short file read into the buffer a longer one filled must hash
        // only its own bytes. One thread (and -j1 batches) reuse one buffer for all of them.
        let dir = tempfile::tempdir().unwrap();
        let sizes = [2_500_000, 0, 1, 4095, 4096, 4097, 65_536, 65_537, 300_000, 7, 1 << 20, (1 << 20) + 1, 3];
        let files: Vec<(PathBuf, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let p = dir.path().join(format!("f{k}"));
                let data = pattern(n, k as u32);
                std::fs::write(&p, &data).unwrap();
                (p, data)
            })
            .collect();
        let progress = Progress::default();
        for chunk in [65_536, 1 << 20, 4096] {
            for (p, data) in &files {
                let got = hash_file(p, &Algorithm::ALL, chunk, &progress).unwrap();
                assert_eq!((got.size, &got.digests), (data.len() as u64, &hash_bytes(&Algorithm::ALL, data)));
            }
        }
        let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        for threads in [Some(1), Some(3), None] {
            let options = HashOptions { threads, ..HashOptions::default() };
            let got = hash_files(&paths, &[Algorithm::Blake3, Algorithm::Sha256], &options, &progress);
            for ((_, data), r) in files.iter().zip(got) {
                assert_eq!(r.unwrap().digests, hash_bytes(&[Algorithm::Blake3, Algorithm::Sha256], data));
            }
        }
    }

    #[test]
    fn a_copy_through_a_reused_buffer_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        for (k, n) in [3_000_000usize, 10, 70_000, 0, 5].into_iter().enumerate() {
            let src = dir.path().join(format!("s{k}"));
            let dst = dir.path().join(format!("d{k}"));
            let data = pattern(n, 99 + k as u32);
            std::fs::write(&src, &data).unwrap();
            let got = copy_file_hashed(&src, &dst, &[Algorithm::Sha256], 1 << 20, &Progress::default()).unwrap();
            assert_eq!(std::fs::read(&dst).unwrap(), data);
            assert_eq!(got.digests, hash_bytes(&[Algorithm::Sha256], &data));
        }
    }

    #[test]
    fn a_wide_copy_is_exact_and_stops_at_a_failed_write() {
        // Past WIDE_COPY: read, written and hashed side by side on the pool, 64 KiB chunks making 128 KiB
        // buffers and a ragged end; every digest and every byte as one pass over the bytes gives them.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big");
        let data = pattern(WIDE_COPY as usize + 12_345, 11);
        std::fs::write(&src, &data).unwrap();
        let algos = [Algorithm::Sha256, Algorithm::Blake3, Algorithm::Md5];
        let progress = Progress::default();
        let dst = dir.path().join("copy");
        let got = copy_file_hashed(&src, &dst, &algos, 65_536, &progress).unwrap();
        assert_eq!((got.size, &got.digests), (data.len() as u64, &hash_bytes(&algos, &data)));
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert_eq!(progress.bytes_done.load(Ordering::Relaxed), data.len() as u64, "every byte counted once");
        // The sink's error ends the read with that error, whatever the digests were doing.
        let (file, meta) = open_evidence(&src).unwrap();
        let mut fed = 0;
        let failed = read_wide(&file, &meta, &algos, 128 << 10, &Progress::default(), |_| {
            fed += 1;
            if fed == 3 {
                Err(HashError::Io(io::Error::other("disk full")))
            } else {
                Ok(())
            }
        });
        assert!(matches!(failed, Err(HashError::Io(e)) if e.to_string() == "disk full"));
        assert_eq!(fed, 3, "nothing is written after the failed write");
    }

    #[test]
    fn a_large_file_hashed_on_several_cores_equals_hash_bytes() {
        // 64 KiB chunks make 128 KiB wide reads: this file is several of them and a ragged end.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let data = pattern(5 * (128 << 10) + 12_345, 7);
        std::fs::write(&p, &data).unwrap();
        let algos = [Algorithm::Sha256, Algorithm::Blake3, Algorithm::Md5];
        let progress = Progress::default();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let got = pool.install(|| hash_file_wide(&p, &algos, 65_536, &progress)).unwrap();
        assert_eq!((got.size, &got.digests), (data.len() as u64, &hash_bytes(&algos, &data)));
        assert_eq!(progress.bytes_done.load(Ordering::Relaxed), data.len() as u64, "every byte counted once");
        // The same through a batch of one file (fewer files than threads), and without BLAKE3.
        let options = HashOptions { threads: Some(4), chunk_size: 65_536, ..HashOptions::default() };
        let batch = hash_files(std::slice::from_ref(&p), &algos, &options, &progress);
        assert_eq!(batch[0].as_ref().unwrap(), &got);
        let sha = hash_files(std::slice::from_ref(&p), &[Algorithm::Sha256], &options, &progress);
        assert_eq!(sha[0].as_ref().unwrap().digests, hash_bytes(&[Algorithm::Sha256], &data));
    }

    #[test]
    fn blake3_as_subtrees_read_apart_equals_blake3_of_the_whole() {
        // 4 KiB chunks make 4 KiB leaves (the tree above 8 KiB): sizes on both sides of leaf, chunk
        // (1 KiB) and subtree boundaries (2, 3, 4, 8, 16 leaves), on pools of 1 to 4 threads.
        let dir = tempfile::tempdir().unwrap();
        let k = 4096;
        let sizes = [
            2 * k + 1,
            2 * k + 1023,
            2 * k + 1024,
            2 * k + 1025,
            3 * k,
            3 * k + 1,
            4 * k - 1,
            4 * k,
            4 * k + 1,
            7 * k + 1,
            8 * k,
            8 * k + 1,
            15 * k + 3000,
            16 * k,
            16 * k + 1,
            48 * k + 5,
        ];
        let pools: Vec<_> = (1..=4).map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()).collect();
        for (i, &n) in sizes.iter().enumerate() {
            let p = dir.path().join(format!("f{i}"));
            let data = pattern(n, i as u32);
            std::fs::write(&p, &data).unwrap();
            let want = blake3::hash(&data);
            for pool in &pools {
                let progress = Progress::default();
                let got = pool.install(|| hash_file_wide(&p, &[Algorithm::Blake3], k, &progress)).unwrap();
                assert_eq!((got.size, &got.digests[0][..]), (n as u64, &want.as_bytes()[..]), "{n} bytes");
                assert_eq!(progress.bytes_done.load(Ordering::Relaxed), n as u64, "every byte counted once");
            }
        }
        // The production leaf (1 MiB under 1 MiB chunks): a few MiB and one byte.
        let p = dir.path().join("big");
        let data = pattern((5 << 20) + 1, 3);
        std::fs::write(&p, &data).unwrap();
        let got =
            pools[2].install(|| hash_file_wide(&p, &[Algorithm::Blake3], DEFAULT_CHUNK_SIZE, &Progress::default()));
        assert_eq!(got.unwrap().digests[0], blake3::hash(&data).as_bytes().to_vec());
    }

    #[test]
    fn a_file_written_to_during_the_parallel_read_is_an_error() {
        // Same size, new bytes: only the modification time shows it (set in the past first, so that the
        // write's time differs whatever the clock's granularity).
        let got = while_hashing_wide(|p, _| {
            use std::os::unix::fs::FileExt;
            std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(b"x", 1 << 30).unwrap();
        });
        assert!(matches!(got, Err(HashError::ModifiedWhileReading { size }) if size == 2 << 30), "{got:?}");
    }

    #[test]
    fn a_write_whose_modification_time_was_set_back_is_seen() {
        // Written at the same size while it was read, its modification time then put back as it was: the change
        // time, which no caller can set, shows it.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rewritten");
        std::fs::write(&p, b"the card's bytes").unwrap();
        let (file, opened) = open_evidence(&p).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20)); // past the file system's time granularity
        std::fs::write(&p, b"other bytes here").unwrap();
        let back = libc::timespec { tv_sec: opened.mtime(), tv_nsec: opened.mtime_nsec() };
        // SAFETY: a path we made, as a C string, and two timespecs that live through the call.
        let set = unsafe {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [back, back].as_ptr(), 0)
        };
        assert_eq!(set, 0);
        assert_eq!((std::fs::metadata(&p).unwrap().mtime_nsec(), opened.mtime_nsec()), (back.tv_nsec, back.tv_nsec));
        let got = unchanged_since_open(&file, &opened, opened.len());
        assert!(matches!(got, Err(HashError::TouchedWhileReading { size: 16 })), "{got:?}");
    }

    #[test]
    fn a_file_touched_once_while_it_is_read_is_read_again() {
        // A chmod during the first read only: read again, the digest of the bytes, each byte counted once; touched
        // during every read, the error stands.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("touched");
        std::fs::write(&p, b"the card's bytes").unwrap();
        let progress = Progress::default();
        let reads = AtomicUsize::new(0);
        let read = |every: bool| {
            let n = reads.fetch_add(1, Ordering::Relaxed);
            let (file, opened) = open_evidence(&p)?;
            progress.bytes_done.fetch_add(opened.len(), Ordering::Relaxed);
            if every || n == 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let mode = if n % 2 == 0 { 0o600 } else { 0o644 };
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            unchanged_since_open(&file, &opened, opened.len())?;
            Ok(FileDigest { size: opened.len(), digests: vec![] })
        };
        assert_eq!(again_if_touched(&progress, || read(false)).unwrap().size, 16);
        assert_eq!((reads.load(Ordering::Relaxed), progress.bytes_done.load(Ordering::Relaxed)), (2, 16));
        reads.store(0, Ordering::Relaxed);
        let got = again_if_touched(&progress, || read(true));
        assert!(matches!(got, Err(HashError::TouchedWhileReading { size: 16 })), "{got:?}");
        assert_eq!(reads.load(Ordering::Relaxed), TOUCHED_TRIES);
    }

    /// Start hashing a 2 GiB sparse file on several cores, wait until reading has begun, then do
    /// `meanwhile` to it and return what hashing said.
    fn while_hashing_wide(meanwhile: impl FnOnce(&Path, &Progress)) -> Result<FileDigest, HashError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(2 << 30).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30)).unwrap();
        drop(f);
        let progress = Progress::default();
        let options = HashOptions { threads: Some(3), ..HashOptions::default() };
        std::thread::scope(|s| {
            let job = s.spawn(|| hash_files(std::slice::from_ref(&p), &[Algorithm::Blake3], &options, &progress));
            while progress.bytes_done.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            meanwhile(&p, &progress);
            job.join().unwrap().remove(0)
        })
    }

    #[test]
    fn a_file_truncated_during_the_parallel_read_is_an_error_not_a_crash() {
        // A mapped file would kill the process here (SIGBUS); a read sees the file end early.
        let got =
            while_hashing_wide(|p, _| std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(0).unwrap());
        assert!(
            matches!(got, Err(HashError::ChangedWhileReading { expected, read, now: 0 }) if expected == 2 << 30 && read < expected),
            "{got:?}"
        );
    }

    #[test]
    fn a_parallel_read_stops_when_cancelled() {
        let got = while_hashing_wide(|_, progress| progress.cancel());
        assert!(matches!(got, Err(HashError::Cancelled)), "{got:?}");
    }

    #[test]
    fn a_background_batch_reports_what_a_batch_does() {
        use std::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let paths = vec![p, dir.path().join("missing")];
        for threads in [None, Some(2)] {
            let (tx, rx) = mpsc::channel();
            let options = HashOptions { threads, ..HashOptions::default() };
            let progress = Arc::new(Progress::default());
            hash_files_in_background(paths.clone(), vec![Algorithm::Sha256], options, progress, move |o| {
                tx.send(o).unwrap()
            });
            let got = rx.recv().unwrap();
            assert_eq!(got[0].as_ref().unwrap().digests, hash_bytes(&[Algorithm::Sha256], b"abc"));
            assert!(matches!(got[1], Err(HashError::NotFound)));
        }
        assert!(Arc::ptr_eq(&sized_pool(2).unwrap(), &sized_pool(2).unwrap()), "a pool of a size is reused");
    }

    #[test]
    fn hashing_alone_is_exact_and_scoped_to_its_file() {
        // Under a reader slot the digests run serially on the worker (MultiHasher::update reads the flag);
        // the digests are those of the bytes, and the flag does not outlive the file.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data = pattern(3 << 20, 5);
        std::fs::write(&p, &data).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let algos = [Algorithm::Sha256, Algorithm::Blake3];
        pool.install(|| {
            let me = rayon::current_thread_index();
            let got = hashing_alone(|| {
                assert!(ALONE.get());
                hash_file(&p, &algos, 1 << 20, &Progress::default())
            });
            assert_eq!(got.unwrap().digests, hash_bytes(&algos, &data));
            assert!(!ALONE.get(), "restored after the file");
            assert_eq!(rayon::current_thread_index(), me);
        });
    }

    #[test]
    fn cancelled_batch_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![0u8; 10_000]).unwrap();
        let progress = Progress::default();
        progress.cancel();
        let r = hash_files(&[p], &[Algorithm::Sha256], &HashOptions::default(), &progress);
        assert!(matches!(&r[0], Err(HashError::Cancelled)));
    }
}
