//! What an MP4/MOV (ISO-BMFF / QuickTime) file says about its own time.
//!
//! A small box walker that treats every file as hostile: every size and count
//! is checked against the bytes that remain before anything is allocated,
//! arithmetic is checked, nesting depth is bounded, and `mdat` payloads are
//! never read (the walker seeks past them). Only `moov` and `moof` boxes are
//! read into memory, one at a time, each bounded in size. A damaged file gives
//! facts as far as they go plus [`Problem`]s; it never gives a panic.
//!
//! Time and memory stay linear in the bytes read: every list the walker keeps
//! (boxes per parent, tracks, edits, metadata items, fragments, samples,
//! problems) has a hard cap, and breaching one is a problem, never a reason to
//! keep going at any cost. A table that run-length encodes samples (`stts`,
//! a `trun` without per-sample fields) is expanded only within one sample
//! budget per file; what lies beyond is counted, not stored.
//!
//! Every value handed on fits the type that receives it: times are int64 ns
//! since 1970 downstream, so an MP4 time or a span inside the file that would
//! not fit is a `time_out_of_range` problem and is treated as absent
//! ([`MediaFacts::mp4_time`], [`check_spans`]).

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::hashing::{open_evidence, HashError};

/// Seconds between 1904-01-01 (the MP4 epoch) and 1970-01-01.
pub const MP4_EPOCH_OFFSET: i64 = 2_082_844_800;
/// Largest `moov`/`moof` read into memory; a real one this large would hold days of samples.
pub const MAX_META_BOX: u64 = 256 << 20;
/// Samples kept for timing analysis, all tracks of one file together (about
/// 4 days of 30 fps video); at most 28 bytes each (time, offset, size, composition offset).
pub const MAX_SAMPLES: usize = 10_000_000;
/// Tracks read per movie: real footage has a handful (video, audio, timecode, telemetry).
pub const MAX_TRACKS: usize = 1024;
/// Child boxes read inside one box (a `moov` holds its tracks, a `moof` its `traf`s).
pub const MAX_CHILDREN: usize = 100_000;
/// Top-level boxes read per file (a fragmented recording has two per fragment).
pub const MAX_TOP_LEVEL_BOXES: usize = 1_000_000;
/// `moof` fragments read, and `mdat` boxes listed, per file (10 hours in fragments of 0.1 s).
pub const MAX_FRAGMENTS: usize = 360_000;
/// Entries read from one edit list (real ones have one to three).
pub const MAX_EDITS: usize = 1024;
/// Metadata items (`udta` texts, `keys`/`ilst` entries) read per file.
pub const MAX_METADATA_ITEMS: usize = 1024;
/// Longest metadata key (`com.apple.quicktime.location.ISO6709` is 36 bytes).
pub const MAX_KEY_LEN: usize = 1024;
/// Problems listed per file; any beyond are counted in one last problem.
pub const MAX_PROBLEMS: usize = 100;
/// Longest span of time inside one file (a duration, an edit delay, a sample
/// time): ten years. Nothing recorded lasts that long; a longer one is a misread field.
pub const MAX_SPAN_SECONDS: u64 = 315_576_000;
/// Latest MP4 time (seconds since 1904) custodes accepts, about 2252-04: its
/// ns since 1970 fit int64 with room for any span inside the file, so a
/// creation time plus a duration or a gap offset never overflows downstream.
pub const LATEST_MP4_TIME: u64 = (i64::MAX as u64 / 1_000_000_000) - MAX_SPAN_SECONDS + MP4_EPOCH_OFFSET as u64;
const MAX_DEPTH: usize = 16;

/// A problem met while reading the container: the file is still evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovieHeader {
    /// Seconds since 1904-01-01 as written; 0 means the device wrote no time.
    pub creation: u64,
    pub modification: u64,
    pub timescale: u32,
    pub duration: u64,
}

/// One entry of an edit list (`elst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// In the movie timescale.
    pub segment_duration: u64,
    /// In the media timescale; -1 for an empty edit (a delay before the media starts).
    pub media_time: i64,
}

/// The `tmcd` timecode of a track: the frame number of its first sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timecode {
    pub frame: u32,
    pub frames_per_second: u8,
    pub drop_frame: bool,
}

impl Timecode {
    /// `HH:MM:SS:FF`, as ffprobe prints it.
    pub fn display(&self) -> String {
        let fps = u32::from(self.frames_per_second.max(1));
        let (ff, secs) = (self.frame % fps, self.frame / fps);
        format!("{:02}:{:02}:{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60, secs % 60, ff)
    }

    /// Seconds since midnight of the day the timecode counts in (device-local).
    pub fn seconds_of_day(&self) -> f64 {
        f64::from(self.frame) / f64::from(self.frames_per_second.max(1))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Track {
    pub id: u32,
    /// The `hdlr` handler type: `vide`, `soun`, `tmcd`, `meta`, ...
    pub handler: String,
    /// The four-cc of the first sample description, if there is one.
    pub codec: Option<String>,
    pub tkhd_creation: u64,
    pub mdhd_creation: u64,
    pub timescale: u32,
    /// `mdhd` duration in `timescale` units (for fragmented files: the sum of fragment durations).
    pub duration: u64,
    pub edits: Vec<Edit>,
    /// Samples the tables (or fragments) declare.
    pub sample_count: u64,
    /// Decode time of each sample in `timescale` units (capped at [`MAX_SAMPLES`]).
    pub dts: Vec<i64>,
    /// Composition offset of each sample (empty when the track has none).
    pub cts_offsets: Vec<i64>,
    /// Duration of the last sample, to close the last frame.
    pub last_sample_duration: u64,
    pub sync_sample_count: Option<u64>,
    /// Largest `offset + size` of any sample, where the tables give it.
    pub max_sample_end: u64,
    /// File offset of the first sample, where the tables give it.
    pub first_sample_offset: Option<u64>,
    /// File offset and size of each sample, in decode order (capped at [`MAX_SAMPLES`]),
    /// for drivers that read a metadata track's samples (GoPro GPMF telemetry).
    pub sample_offsets: Vec<u64>,
    pub sample_sizes: Vec<u32>,
    pub timecode: Option<Timecode>,
}

impl Track {
    /// `video`, `audio`, `timecode`, `metadata` or `data`, as a person says it.
    pub fn kind(&self) -> &'static str {
        match self.handler.as_str() {
            "vide" => "video",
            "soun" => "audio",
            "tmcd" => "timecode",
            "meta" | "mdta" => "metadata",
            "subt" | "text" | "sbtl" => "subtitle",
            _ => "data",
        }
    }

    /// Presentation times of the samples in `timescale` units, in decode order.
    pub fn pts(&self) -> Vec<i64> {
        if self.cts_offsets.len() == self.dts.len() {
            self.dts.iter().zip(&self.cts_offsets).map(|(d, c)| d.saturating_add(*c)).collect()
        } else {
            self.dts.clone()
        }
    }

    /// Movie-timescale delay and media start given by the edit list: the
    /// media time `media_start` is shown at movie time `delay`.
    pub fn edit_shift(&self) -> (u64, i64) {
        let mut delay = 0u64;
        for e in &self.edits {
            if e.media_time < 0 {
                delay = delay.saturating_add(e.segment_duration);
            } else {
                return (delay, e.media_time);
            }
        }
        (delay, 0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaData {
    pub offset: u64,
    /// The size the box header declares (to end of file when it says 0).
    pub declared_size: u64,
}

/// Everything the container says, plus what was wrong with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaFacts {
    pub file_size: u64,
    pub major_brand: Option<String>,
    pub compatible_brands: Vec<String>,
    /// Top-level box types in file order.
    pub top_level: Vec<String>,
    pub movie: Option<MovieHeader>,
    pub fragmented: bool,
    pub tracks: Vec<Track>,
    /// QuickTime / iTunes-style metadata: `com.apple.quicktime.creationdate`, `©day`, ...
    pub metadata: Vec<(String, String)>,
    /// ISO 6709 location string (`+40.6892-074.0445+10.000/`).
    pub location: Option<String>,
    pub mdat: Vec<MediaData>,
    /// `trex` defaults per track for fragments: (track id, sample duration, sample size).
    pub fragment_defaults: Vec<(u32, u32, u32)>,
    /// Bytes that boxes or samples point to beyond the end of the file.
    pub missing_bytes: u64,
    /// At most [`MAX_PROBLEMS`], then one `too_many_problems` counting the rest.
    pub problems: Vec<Problem>,
    /// What the caps left out, reported once each when the walk ends.
    caps: Caps,
}

/// Counters behind the caps of one walk.
#[derive(Debug, Clone, Default, PartialEq)]
struct Caps {
    samples_kept: usize,
    samples_dropped: u64,
    metadata_dropped: usize,
    problems_dropped: usize,
}

impl MediaFacts {
    pub fn has_moov(&self) -> bool {
        self.top_level.iter().any(|t| t == "moov")
    }

    /// Record a problem; past [`MAX_PROBLEMS`] only count it, so a file of a
    /// million bad boxes cannot make a million findings.
    fn problem(&mut self, kind: &'static str, detail: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { kind, detail: detail.into() });
        } else {
            self.caps.problems_dropped += 1;
        }
    }

    /// A byte the file points to: past the end it is missing (truncation);
    /// past any offset a file can have (`off_t` is int64) it is a misread field.
    fn note_end(&mut self, end: u64) {
        if end > i64::MAX as u64 {
            self.problem("malformed_offset", format!("an offset of {end} points past the end any file can have"));
            return;
        }
        self.missing_bytes = self.missing_bytes.max(end.saturating_sub(self.file_size));
    }

    /// Sample entries the file-wide budget still allows.
    fn sample_room(&self) -> usize {
        MAX_SAMPLES - self.caps.samples_kept
    }

    /// An MP4 time (seconds since 1904) as written, or 0 (no time) with a
    /// problem when it lies after [`LATEST_MP4_TIME`]: the one range rule for
    /// the creation and modification times of `mvhd`, `tkhd` and `mdhd`. Only
    /// 64-bit (version 1) fields can exceed it, a version byte flipped from 0
    /// to 1 among them.
    fn mp4_time(&mut self, what: &str, raw: u64) -> u64 {
        if raw <= LATEST_MP4_TIME {
            return raw;
        }
        self.problem(
            "time_out_of_range",
            format!(
                "{what} of {raw} s after 1904 is later than custodes can represent (after 2252); treated as absent"
            ),
        );
        0
    }

    /// The problems that summarise what the caps left out; called once, last.
    fn close_caps(&mut self) {
        if self.caps.samples_dropped > 0 {
            let n = self.caps.samples_dropped;
            self.problem(
                "too_many_samples",
                format!("timing of {n} samples not read: custodes reads {MAX_SAMPLES} per file"),
            );
        }
        if self.caps.metadata_dropped > 0 {
            let n = self.caps.metadata_dropped;
            self.problem(
                "too_many_boxes",
                format!("{n} metadata items not read: custodes reads {MAX_METADATA_ITEMS} per file"),
            );
        }
        if self.caps.problems_dropped > 0 {
            let n = self.caps.problems_dropped;
            self.problems.push(Problem { kind: "too_many_problems", detail: format!("{n} more problems not listed") });
        }
    }
}

/// A duration field: all ones means "unknown" (ISO/IEC 14496-12 8.2.2.3), read as 0.
fn header_duration(raw: u64, wide: bool) -> u64 {
    if raw == u64::MAX || (!wide && raw == u64::from(u32::MAX)) {
        0
    } else {
        raw
    }
}

/// Whether `units` of `timescale` per second is a span custodes accepts ([`MAX_SPAN_SECONDS`]).
fn span_fits(units: f64, timescale: u32) -> bool {
    timescale == 0 || units.abs() / f64::from(timescale) <= MAX_SPAN_SECONDS as f64
}

/// Why a byte range could not be parsed.
#[derive(Debug)]
struct Malformed(String);

type Parse<T> = Result<T, Malformed>;

/// A checked cursor over bytes already in memory.
#[derive(Clone)]
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cur { buf, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        if n > self.remaining() {
            return Err(Malformed(format!("needs {n} bytes, {} left", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn skip(&mut self, n: usize) -> Parse<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Parse<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Parse<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i32(&mut self) -> Parse<i32> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Parse<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn fourcc(&mut self) -> Parse<[u8; 4]> {
        Ok(self.take(4)?.try_into().expect("4 bytes"))
    }
    /// Version and flags of a full box.
    fn full(&mut self) -> Parse<(u8, u32)> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
    /// A count of entries of `entry_size` bytes each, refused if they cannot fit.
    fn count(&mut self, entry_size: usize) -> Parse<usize> {
        let n = self.u32()? as usize;
        match n.checked_mul(entry_size) {
            Some(bytes) if bytes <= self.remaining() => Ok(n),
            _ => Err(Malformed(format!("{n} entries of {entry_size} bytes do not fit in {} bytes", self.remaining()))),
        }
    }
}

fn fourcc_str(t: &[u8]) -> String {
    t.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '?' }).collect()
}

/// Child boxes of an in-memory box payload, at most [`MAX_CHILDREN`] of them:
/// one more is an error naming the parent, and the iteration ends there.
struct Children<'a> {
    cur: Cur<'a>,
    parent: &'static str,
    seen: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = Parse<([u8; 4], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cur.remaining() == 0 {
            return None;
        }
        if self.seen == MAX_CHILDREN {
            self.cur.pos = self.cur.buf.len();
            return Some(Err(Malformed(format!(
                "more than {MAX_CHILDREN} boxes inside '{}'; the rest not read",
                self.parent
            ))));
        }
        self.seen += 1;
        // Some QuickTime atoms end their child lists with a 4-byte zero terminator.
        if self.cur.remaining() < 8 {
            let rest = self.cur.take(self.cur.remaining()).ok()?;
            return if rest.iter().all(|&b| b == 0) { None } else { Some(Err(Malformed("trailing bytes".into()))) };
        }
        Some(self.next_box())
    }
}

impl<'a> Children<'a> {
    fn of(payload: &'a [u8], parent: &'static str) -> Self {
        Children { cur: Cur::new(payload), parent, seen: 0 }
    }

    fn next_box(&mut self) -> Parse<([u8; 4], &'a [u8])> {
        let start = self.cur.pos;
        let size32 = self.cur.u32()?;
        let typ = self.cur.fourcc()?;
        let size = match size32 {
            0 => (self.cur.buf.len() - start) as u64,
            1 => self.cur.u64()?,
            n => u64::from(n),
        };
        let header = self.cur.pos - start;
        let body = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_sub(header))
            .ok_or_else(|| Malformed(format!("box '{}' declares size {size}", fourcc_str(&typ))))?;
        let payload = self.cur.take(body).map_err(|_| {
            Malformed(format!(
                "box '{}' declares {size} bytes, only {} left",
                fourcc_str(&typ),
                self.cur.remaining() + header
            ))
        })?;
        Ok((typ, payload))
    }
}

/// Why the container facts of a file could not be read at all.
///
/// Hostile or broken content is never an error here: it becomes a problem in
/// the facts. Only a file that cannot be opened or read ends a probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The file was refused at opening, for the reasons hashing refuses one
    /// (missing, permission denied, not a regular file, a symlink loop).
    #[error(transparent)]
    Open(#[from] HashError),
    /// Reading the container failed part way: an I/O error, or the file shrank under the reader.
    #[error("read failed while probing: {0}")]
    Read(#[source] io::Error),
}

/// Read the container facts of the file at `path`.
///
/// Opened through [`open_evidence`], the opener hashing uses: a FIFO, device
/// or directory is refused at once as not a regular file, never waited on.
pub fn probe_file(path: &Path) -> Result<MediaFacts, ProbeError> {
    let (mut file, meta) = open_evidence(path)?;
    probe_reader(&mut file, meta.len()).map_err(ProbeError::Read)
}

/// Read the container facts from any seekable byte source of `file_size` bytes.
pub fn probe_reader<R: Read + Seek>(r: &mut R, file_size: u64) -> io::Result<MediaFacts> {
    let r = &mut Source::new(r, file_size);
    let mut facts = MediaFacts { file_size, ..MediaFacts::default() };
    // Where each `moof` lies; each is read and parsed after `moov`, one at a time.
    let mut fragments: Vec<(u64, u64, u64)> = Vec::new();
    let mut moov: Option<Vec<u8>> = None;
    let (mut skipped_moof, mut skipped_mdat) = (0usize, 0usize);
    let mut pos = 0u64;
    while pos < file_size {
        if facts.top_level.len() == MAX_TOP_LEVEL_BOXES {
            facts.problem(
                "too_many_boxes",
                format!("more than {MAX_TOP_LEVEL_BOXES} top-level boxes; the rest from offset {pos} not read"),
            );
            break;
        }
        let Some((typ, header_len, size)) = read_top_header(r, pos, file_size, &mut facts)? else { break };
        let name = fourcc_str(&typ);
        let end = pos.saturating_add(size);
        facts.top_level.push(name.clone());
        if end > file_size {
            facts.note_end(end);
            facts.problem(
                "truncated_box",
                format!(
                    "'{name}' at offset {pos} declares {size} bytes; the file ends {} bytes short",
                    end - file_size
                ),
            );
        }
        match &typ {
            b"ftyp" => parse_ftyp(&read_payload(r, pos, header_len, size.min(4096), file_size)?, &mut facts),
            b"mdat" if facts.mdat.len() == MAX_FRAGMENTS => skipped_mdat += 1,
            b"mdat" => facts.mdat.push(MediaData { offset: pos, declared_size: size }),
            b"moov" | b"moof" => {
                if size > MAX_META_BOX {
                    facts.problem(
                        "oversized_box",
                        format!("'{name}' of {size} bytes is larger than custodes reads ({MAX_META_BOX})"),
                    );
                } else if &typ == b"moov" {
                    if moov.is_some() {
                        facts.problem("duplicate_moov", format!("second 'moov' at offset {pos} ignored"));
                    } else {
                        moov = Some(read_payload(r, pos, header_len, size, file_size)?);
                    }
                } else if fragments.len() == MAX_FRAGMENTS {
                    skipped_moof += 1;
                } else {
                    fragments.push((pos, header_len, size));
                }
            }
            _ => {}
        }
        pos = end;
    }
    if skipped_moof > 0 {
        facts.problem(
            "too_many_boxes",
            format!("{skipped_moof} 'moof' fragments not read: custodes reads {MAX_FRAGMENTS} per file"),
        );
    }
    if skipped_mdat > 0 {
        facts.problem(
            "too_many_boxes",
            format!("{skipped_mdat} 'mdat' boxes not listed: custodes lists {MAX_FRAGMENTS} per file"),
        );
    }
    match moov {
        Some(m) => {
            if let Err(Malformed(e)) = parse_moov(&m, &mut facts) {
                facts.problem("malformed_moov", e);
            }
        }
        None => {
            facts.problem("no_moov", "no 'moov' box: the file has no index of its samples (recording never finalised?)")
        }
    }
    if !fragments.is_empty() {
        facts.fragmented = true;
        // Lookups by track id in constant time: a file of many fragments must not cost fragments x tracks.
        let mut index = FragmentIndex::default();
        for (i, t) in facts.tracks.iter().enumerate() {
            index.tracks.entry(t.id).or_insert(i);
        }
        for &(id, duration, size) in &facts.fragment_defaults {
            index.trex.entry(id).or_insert((duration, size));
        }
        for &(offset, header_len, size) in &fragments {
            let payload = read_payload(r, offset, header_len, size, file_size)?;
            if let Err(Malformed(e)) = parse_moof(offset, &payload, &index, &mut facts) {
                facts.problem("malformed_moof", format!("at offset {offset}: {e}"));
            }
        }
    }
    check_spans(&mut facts);
    let ends: Vec<u64> = facts.tracks.iter().map(|t| t.max_sample_end).collect();
    for end in ends {
        facts.note_end(end);
    }
    read_timecodes(r, &mut facts)?;
    facts.close_caps();
    Ok(facts)
}

/// Every span inside the file, checked in one place once all is read: the
/// movie and track durations and each track's sample times (edit list
/// applied) must stay within [`MAX_SPAN_SECONDS`], else the value is a
/// `time_out_of_range` problem and is treated as absent (duration 0, no
/// sample times, hence no timing).
fn check_spans(facts: &mut MediaFacts) {
    let movie_timescale = facts.movie.as_ref().map_or(0, |m| m.timescale);
    if let Some(m) = facts.movie.as_mut() {
        if !span_fits(m.duration as f64, m.timescale) {
            let detail = format!(
                "'mvhd' duration of {} units at {} per second is longer than {MAX_SPAN_SECONDS} s; treated as absent",
                m.duration, m.timescale
            );
            m.duration = 0;
            facts.problem("time_out_of_range", detail);
        }
    }
    let mut found = Vec::new();
    for t in facts.tracks.iter_mut() {
        if !span_fits(t.duration as f64, t.timescale) {
            found.push(format!("track {}: duration of {} units at {} per second is longer than {MAX_SPAN_SECONDS} s; treated as absent", t.id, t.duration, t.timescale));
            t.duration = 0;
        }
        // How far from zero any time that track_timing derives can reach: the
        // furthest presentation time, plus the last frame's duration (the
        // recorded one, or else the median step, at most twice that furthest
        // time), plus the edit list's media start and delay.
        let cts = |i: usize| t.cts_offsets.get(i).copied().unwrap_or(0);
        let furthest = (0..t.dts.len()).map(|i| (t.dts[i] as f64 + cts(i) as f64).abs()).fold(0.0, f64::max);
        let last = if t.last_sample_duration > 0 { t.last_sample_duration as f64 } else { 2.0 * furthest };
        let (delay, media_start) = t.edit_shift();
        let seconds = |units: f64, timescale: u32| if timescale == 0 { 0.0 } else { units / f64::from(timescale) };
        let reach =
            seconds(furthest + last + (media_start as f64).abs(), t.timescale) + seconds(delay as f64, movie_timescale);
        let fits = reach <= MAX_SPAN_SECONDS as f64;
        if !fits && !t.dts.is_empty() {
            found.push(format!(
                "track {}: sample times reach beyond {MAX_SPAN_SECONDS} s; timing treated as absent",
                t.id
            ));
            t.dts = Vec::new();
            t.cts_offsets = Vec::new();
        }
    }
    for detail in found {
        facts.problem("time_out_of_range", detail);
    }
}

/// Tracks and `trex` defaults by track id, for fragments.
#[derive(Default)]
struct FragmentIndex {
    tracks: HashMap<u32, usize>,
    trex: HashMap<u32, (u32, u32)>,
}

/// The header of the top-level box at `pos`: (type, header length, total size).
fn read_top_header<R: Read + Seek>(
    r: &mut Source<'_, R>,
    pos: u64,
    file_size: u64,
    facts: &mut MediaFacts,
) -> io::Result<Option<([u8; 4], u64, u64)>> {
    let left = file_size - pos;
    if left < 8 {
        facts.problem("trailing_bytes", format!("{left} bytes after the last box at offset {pos}"));
        return Ok(None);
    }
    let mut h = [0u8; 16];
    r.read_at(pos, &mut h[..8])?;
    let size32 = u32::from_be_bytes(h[..4].try_into().expect("4"));
    let typ: [u8; 4] = h[4..8].try_into().expect("4");
    let (header_len, size) = match size32 {
        0 => (8, left),
        1 => {
            if left < 16 {
                facts.problem("malformed_box", format!("64-bit box header at offset {pos} cut off"));
                return Ok(None);
            }
            r.read_at(pos + 8, &mut h[8..16])?;
            (16, u64::from_be_bytes(h[8..16].try_into().expect("8")))
        }
        n => (8, u64::from(n)),
    };
    // A size past what any file offset can be (`off_t` is int64) is not a size.
    if size < header_len || size > i64::MAX as u64 || !typ.iter().all(|b| (0x20..0x7f).contains(b) || *b == 0xa9) {
        facts.problem("malformed_box", format!("not a box at offset {pos} (size {size}, type {:?})", fourcc_str(&typ)));
        return Ok(None);
    }
    Ok(Some((typ, header_len, size)))
}

/// The payload of a box, as much of it as the file holds.
fn read_payload<R: Read + Seek>(
    r: &mut Source<'_, R>,
    pos: u64,
    header_len: u64,
    size: u64,
    file_size: u64,
) -> io::Result<Vec<u8>> {
    let start = pos + header_len;
    let end = pos.saturating_add(size).min(file_size);
    let mut buf = vec![0u8; end.saturating_sub(start) as usize];
    r.read_at(start, &mut buf)?;
    Ok(buf)
}

/// Bytes of the source around the last read, kept so that walking many
/// small top-level boxes costs one read per window, not a seek and a read per box.
const WINDOW: usize = 64 << 10;

/// A byte source read at given offsets, through one window of [`WINDOW`] bytes.
struct Source<'r, R> {
    r: &'r mut R,
    size: u64,
    window: Vec<u8>,
    start: u64,
}

impl<'r, R: Read + Seek> Source<'r, R> {
    fn new(r: &'r mut R, size: u64) -> Self {
        Source { r, size, window: Vec::new(), start: 0 }
    }

    /// Fill `buf` with the bytes at `pos`; an error if the source ends first.
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.len() > WINDOW / 2 {
            self.r.seek(SeekFrom::Start(pos))?;
            return self.r.read_exact(buf);
        }
        let end = pos.saturating_add(buf.len() as u64);
        if pos < self.start || end > self.start + self.window.len() as u64 {
            let want = usize::try_from(self.size.saturating_sub(pos)).unwrap_or(usize::MAX).clamp(buf.len(), WINDOW);
            self.window.resize(want, 0);
            self.start = pos;
            self.r.seek(SeekFrom::Start(pos))?;
            if let Err(e) = self.r.read_exact(&mut self.window) {
                self.window.clear();
                return Err(e);
            }
        }
        let at = (pos - self.start) as usize;
        buf.copy_from_slice(&self.window[at..at + buf.len()]);
        Ok(())
    }
}

fn parse_ftyp(p: &[u8], facts: &mut MediaFacts) {
    let mut c = Cur::new(p);
    if let Ok(major) = c.fourcc() {
        facts.major_brand = Some(fourcc_str(&major));
        let _ = c.u32();
        while let Ok(b) = c.fourcc() {
            facts.compatible_brands.push(fourcc_str(&b));
        }
    }
}

fn parse_moov(p: &[u8], facts: &mut MediaFacts) -> Parse<()> {
    let mut traks = 0usize;
    let mut trex = 0usize;
    let walked = (|| {
        for child in Children::of(p, "moov") {
            let (typ, body) = child?;
            match &typ {
                b"mvhd" => facts.movie = Some(parse_mvhd(body, facts)?),
                b"trak" => {
                    traks += 1;
                    if traks > MAX_TRACKS {
                        continue;
                    }
                    match parse_trak(body, facts) {
                        Ok(t) => facts.tracks.push(t),
                        Err(Malformed(e)) => facts.problem("malformed_track", e),
                    }
                }
                b"mvex" => {
                    facts.fragmented = true;
                    for e in Children::of(body, "mvex") {
                        let (t, b) = e?;
                        if &t == b"trex" {
                            trex += 1;
                            if trex > MAX_TRACKS {
                                continue;
                            }
                            let mut c = Cur::new(b);
                            c.full()?;
                            let track_id = c.u32()?;
                            c.skip(4)?; // default sample description index
                            let (duration, size) = (c.u32()?, c.u32()?);
                            facts.fragment_defaults.push((track_id, duration, size));
                        }
                    }
                }
                b"udta" => parse_udta(body, facts, 0),
                b"meta" => parse_meta(body, facts),
                _ => {}
            }
        }
        Ok(())
    })();
    if traks > MAX_TRACKS {
        facts.problem(
            "too_many_tracks",
            format!("{traks} 'trak' boxes (or more); custodes reads the first {MAX_TRACKS}"),
        );
    }
    if trex > MAX_TRACKS {
        facts.problem(
            "too_many_tracks",
            format!("{trex} 'trex' boxes (or more); custodes reads the first {MAX_TRACKS}"),
        );
    }
    walked
}

fn parse_mvhd(p: &[u8], facts: &mut MediaFacts) -> Parse<MovieHeader> {
    let mut c = Cur::new(p);
    let (version, _) = c.full()?;
    let wide = version == 1;
    let (creation, modification) = if wide { (c.u64()?, c.u64()?) } else { (u64::from(c.u32()?), u64::from(c.u32()?)) };
    let timescale = c.u32()?;
    let duration = header_duration(if wide { c.u64()? } else { u64::from(c.u32()?) }, wide);
    Ok(MovieHeader {
        creation: facts.mp4_time("'mvhd' creation time", creation),
        modification: facts.mp4_time("'mvhd' modification time", modification),
        timescale,
        duration,
    })
}

/// Sample tables of one track as read from `stbl`, before they become times.
#[derive(Default)]
struct SampleTables {
    stts: Vec<(u32, u32)>,
    ctts: Vec<(u32, i64)>,
    sizes: Vec<u32>,
    constant_size: u32,
    size_count: u64,
    stsc: Vec<(u32, u32)>,
    chunk_offsets: Vec<u64>,
    sync: Option<u64>,
}

fn parse_trak(p: &[u8], facts: &mut MediaFacts) -> Parse<Track> {
    let mut track = Track::default();
    let mut tables = SampleTables::default();
    for child in Children::of(p, "trak") {
        let (typ, body) = child?;
        match &typ {
            b"tkhd" => {
                let mut c = Cur::new(body);
                let (version, _) = c.full()?;
                let (creation, modification) =
                    if version == 1 { (c.u64()?, c.u64()?) } else { (u64::from(c.u32()?), u64::from(c.u32()?)) };
                track.id = c.u32()?;
                track.tkhd_creation = facts.mp4_time(&format!("track {}: 'tkhd' creation time", track.id), creation);
                facts.mp4_time(&format!("track {}: 'tkhd' modification time", track.id), modification);
            }
            b"edts" => {
                for e in Children::of(body, "edts") {
                    let (t, b) = e?;
                    if &t == b"elst" {
                        track.edits = parse_elst(b, facts)?;
                    }
                }
            }
            b"mdia" => parse_mdia(body, &mut track, &mut tables, facts, 0)?,
            _ => {}
        }
    }
    build_samples(&mut track, &tables, facts);
    Ok(track)
}

fn parse_elst(p: &[u8], facts: &mut MediaFacts) -> Parse<Vec<Edit>> {
    let mut c = Cur::new(p);
    let (version, _) = c.full()?;
    let n = c.count(if version == 1 { 20 } else { 12 })?;
    if n > MAX_EDITS {
        facts.problem("too_many_boxes", format!("edit list of {n} entries; custodes reads the first {MAX_EDITS}"));
    }
    let mut edits = Vec::with_capacity(n.min(MAX_EDITS));
    for _ in 0..n.min(MAX_EDITS) {
        let (segment_duration, media_time) =
            if version == 1 { (c.u64()?, c.u64()? as i64) } else { (u64::from(c.u32()?), i64::from(c.i32()?)) };
        c.skip(4)?; // media rate
        edits.push(Edit { segment_duration, media_time });
    }
    Ok(edits)
}

/// Walk `mdia` and the containers below it (`minf`, `stbl`; depth 0, 1, 2),
/// handing each box to its parser. Any of these boxes is read at any depth, as
/// files put them; only `mdia`'s own `hdlr` names the track's handler.
fn parse_mdia(
    p: &[u8],
    track: &mut Track,
    tables: &mut SampleTables,
    facts: &mut MediaFacts,
    depth: usize,
) -> Parse<()> {
    if depth > MAX_DEPTH {
        return Err(Malformed("boxes nested too deep".into()));
    }
    for child in Children::of(p, ["mdia", "minf", "stbl"][depth.min(2)]) {
        let (typ, body) = child?;
        match &typ {
            b"mdhd" => parse_mdhd(body, track, facts)?,
            // Only mdia's hdlr says what the track is; QuickTime puts a second,
            // data-reference hdlr ('alis', 'url ') inside minf.
            b"hdlr" if depth == 0 => track.handler = parse_hdlr(body)?,
            b"minf" | b"stbl" => parse_mdia(body, track, tables, facts, depth + 1)?,
            b"stsd" => parse_stsd(body, track)?,
            b"stts" => tables.stts = parse_stts(body)?,
            b"ctts" => tables.ctts = parse_ctts(body)?,
            b"stsz" => parse_stsz(body, tables)?,
            b"stsc" => tables.stsc = parse_stsc(body)?,
            b"stco" => tables.chunk_offsets = parse_stco(body)?,
            b"co64" => tables.chunk_offsets = parse_co64(body)?,
            b"stss" => tables.sync = Some(parse_stss(body)?),
            _ => {}
        }
    }
    Ok(())
}

/// `mdhd`: the track's creation time, timescale and duration.
fn parse_mdhd(p: &[u8], track: &mut Track, facts: &mut MediaFacts) -> Parse<()> {
    let mut c = Cur::new(p);
    let (version, _) = c.full()?;
    let wide = version == 1;
    // Each time is checked as soon as it is read: a box cut short after it still says so.
    let mut time = |c: &mut Cur, what: &str| -> Parse<u64> {
        let raw = if wide { c.u64()? } else { u64::from(c.u32()?) };
        Ok(facts.mp4_time(&format!("track {}: 'mdhd' {what} time", track.id), raw))
    };
    track.mdhd_creation = time(&mut c, "creation")?;
    time(&mut c, "modification")?;
    track.timescale = c.u32()?;
    track.duration = header_duration(if wide { c.u64()? } else { u64::from(c.u32()?) }, wide);
    Ok(())
}

/// `hdlr`: the handler type ('vide', 'soun', 'tmcd', ...).
fn parse_hdlr(p: &[u8]) -> Parse<String> {
    let mut c = Cur::new(p);
    c.full()?;
    c.skip(4)?;
    Ok(fourcc_str(&c.fourcc()?))
}

/// `stsd`: the codec of the first sample entry, and a timecode track's rate.
/// An empty description leaves what an earlier `stsd` said.
fn parse_stsd(p: &[u8], track: &mut Track) -> Parse<()> {
    let mut c = Cur::new(p);
    c.full()?;
    if c.u32()? == 0 {
        return Ok(());
    }
    let _size = c.u32()?;
    let fmt = c.fourcc()?;
    track.codec = Some(fourcc_str(&fmt));
    if &fmt == b"tmcd" {
        track.timecode = Some(parse_tmcd_entry(&mut c)?);
    }
    Ok(())
}

/// The rest of a `tmcd` sample entry, after its size and format.
fn parse_tmcd_entry(c: &mut Cur) -> Parse<Timecode> {
    // SampleEntry: 6 reserved + 2 data ref; then reserved, flags, timescale, frame duration, frames.
    c.skip(6 + 2 + 4)?;
    let flags = c.u32()?;
    let timescale = c.u32()?;
    let frame_duration = c.u32()?;
    let frames = c.u8()?;
    // The rate is timescale / frame duration (30000/1001 counts as 30), as
    // ffmpeg reads it; number_of_frames is sometimes written as 29 for that rate.
    let fps = if frame_duration > 0 {
        u8::try_from((u64::from(timescale) + u64::from(frame_duration) / 2) / u64::from(frame_duration))
            .unwrap_or(frames)
    } else {
        frames
    };
    Ok(Timecode { frame: 0, frames_per_second: fps, drop_frame: flags & 1 == 1 })
}

/// `stts`: (sample count, sample duration) runs.
fn parse_stts(p: &[u8]) -> Parse<Vec<(u32, u32)>> {
    let mut c = Cur::new(p);
    c.full()?;
    let n = c.count(8)?;
    (0..n).map(|_| Ok((c.u32()?, c.u32()?))).collect()
}

/// `ctts`: (sample count, composition offset) runs.
fn parse_ctts(p: &[u8]) -> Parse<Vec<(u32, i64)>> {
    let mut c = Cur::new(p);
    let (version, _) = c.full()?;
    let n = c.count(8)?;
    (0..n)
        .map(|_| {
            let count = c.u32()?;
            let raw = c.u32()?;
            // Version 0 is unsigned by the letter of the spec, but encoders write negative offsets there too.
            let off = if version == 0 && raw <= i32::MAX as u32 { i64::from(raw) } else { i64::from(raw as i32) };
            Ok((count, off))
        })
        .collect()
}

/// `stsz`: one size for every sample, or each sample's size.
fn parse_stsz(p: &[u8], tables: &mut SampleTables) -> Parse<()> {
    let mut c = Cur::new(p);
    c.full()?;
    tables.constant_size = c.u32()?;
    if tables.constant_size == 0 {
        let n = c.count(4)?;
        tables.sizes = (0..n).map(|_| c.u32()).collect::<Parse<_>>()?;
        tables.size_count = n as u64;
    } else {
        tables.size_count = u64::from(c.u32()?);
    }
    Ok(())
}

/// `stsc`: (first chunk, samples per chunk) runs; the description index is skipped.
fn parse_stsc(p: &[u8]) -> Parse<Vec<(u32, u32)>> {
    let mut c = Cur::new(p);
    c.full()?;
    let n = c.count(12)?;
    (0..n)
        .map(|_| {
            let first = c.u32()?;
            let per_chunk = c.u32()?;
            c.skip(4)?;
            Ok((first, per_chunk))
        })
        .collect()
}

/// `stco`: 32-bit chunk offsets.
fn parse_stco(p: &[u8]) -> Parse<Vec<u64>> {
    let mut c = Cur::new(p);
    c.full()?;
    let n = c.count(4)?;
    (0..n).map(|_| Ok(u64::from(c.u32()?))).collect()
}

/// `co64`: 64-bit chunk offsets.
fn parse_co64(p: &[u8]) -> Parse<Vec<u64>> {
    let mut c = Cur::new(p);
    c.full()?;
    let n = c.count(8)?;
    (0..n).map(|_| c.u64()).collect()
}

/// `stss`: the number of sync samples (the list itself is not kept).
fn parse_stss(p: &[u8]) -> Parse<u64> {
    let mut c = Cur::new(p);
    c.full()?;
    Ok(c.count(4)? as u64)
}

/// Turn the run-length tables into per-sample decode times and the furthest
/// byte any sample occupies.
///
/// Per-sample lists are kept only within the file's sample budget
/// ([`MAX_SAMPLES`]); the counts, the last duration and the furthest byte are
/// computed whatever the budget, from the tables alone.
fn build_samples(track: &mut Track, t: &SampleTables, facts: &mut MediaFacts) {
    let declared: u64 = t.stts.iter().map(|&(n, _)| u64::from(n)).sum();
    track.sample_count = if t.size_count > 0 { t.size_count } else { declared };
    track.sync_sample_count = t.sync;
    let room = facts.sample_room();
    let keep = usize::try_from(declared).unwrap_or(usize::MAX).min(room);
    let mut dts = Vec::with_capacity(keep);
    let mut time: i64 = 0;
    for &(count, delta) in &t.stts {
        let n = (count as usize).min(keep - dts.len());
        for _ in 0..n {
            dts.push(time);
            time = time.saturating_add(i64::from(delta));
        }
        track.last_sample_duration = u64::from(delta);
    }
    track.dts = dts;
    if !t.ctts.is_empty() {
        let mut offs = Vec::with_capacity(track.dts.len());
        'c: for &(count, off) in &t.ctts {
            for _ in 0..count {
                if offs.len() == track.dts.len() {
                    break 'c;
                }
                offs.push(off);
            }
        }
        if offs.len() == track.dts.len() {
            track.cts_offsets = offs;
        }
    }
    // Where each sample lies: chunks from stco/co64, samples per chunk from stsc,
    // sizes from stsz. Each chunk is visited once at most (stsc runs must
    // start at increasing chunks), so the work is bounded by the chunk count,
    // which the file's bytes bound, never by a count the file merely declares.
    let total = track.sample_count;
    let mut sample: u64 = 0;
    let n_chunks = t.chunk_offsets.len();
    let mut next_chunk = 0usize;
    let mut out_of_order = false;
    'chunks: for (k, &(first, per_chunk)) in t.stsc.iter().enumerate() {
        let first = (first as usize).saturating_sub(1);
        if first < next_chunk {
            out_of_order = true;
            break;
        }
        let last = t.stsc.get(k + 1).map_or(n_chunks, |&(next, _)| (next as usize).saturating_sub(1).min(n_chunks));
        next_chunk = last.max(first);
        for &chunk_offset in t.chunk_offsets.get(first..last.max(first)).unwrap_or(&[]) {
            if sample >= total {
                break 'chunks;
            }
            let n = u64::from(per_chunk).min(total - sample);
            let from = usize::try_from(sample).unwrap_or(usize::MAX);
            let size_of = |k: usize| if t.constant_size > 0 { Some(t.constant_size) } else { t.sizes.get(k).copied() };
            let bytes = if t.constant_size > 0 {
                n.saturating_mul(u64::from(t.constant_size))
            } else {
                let to = usize::try_from(sample + n).unwrap_or(usize::MAX).min(t.sizes.len());
                t.sizes[from.min(t.sizes.len())..to].iter().map(|&s| u64::from(s)).sum()
            };
            // Per-sample positions, as far as the budget allows.
            let mut at = chunk_offset;
            for k in from..from.saturating_add(n as usize).min(room) {
                let Some(size) = size_of(k) else { break };
                track.sample_offsets.push(at);
                track.sample_sizes.push(size);
                at = at.saturating_add(u64::from(size));
            }
            if sample == 0 {
                track.first_sample_offset = Some(chunk_offset);
            }
            track.max_sample_end = track.max_sample_end.max(chunk_offset.saturating_add(bytes));
            sample += n;
        }
    }
    if out_of_order {
        facts.problem(
            "malformed_track",
            format!("track {}: 'stsc' runs not in chunk order; sample positions read up to there", track.id),
        );
    }
    facts.caps.samples_kept += track.dts.len().max(track.sample_offsets.len());
    facts.caps.samples_dropped += declared.max(total).saturating_sub(room as u64);
}

fn parse_udta(p: &[u8], facts: &mut MediaFacts, depth: usize) {
    for child in Children::of(p, "udta") {
        let Ok((typ, body)) = child else { return };
        match &typ {
            b"\xa9xyz" => {
                if let Some(s) = quicktime_string(body) {
                    facts.location.get_or_insert(s.clone());
                    push_metadata(facts, "\u{a9}xyz".into(), s);
                }
            }
            [0xa9, ..] => {
                if let Some(s) = quicktime_string(body) {
                    push_metadata(facts, fourcc_str(&typ).replacen('?', "\u{a9}", 1), s);
                }
            }
            b"meta" if depth < 2 => parse_meta(body, facts),
            _ => {}
        }
    }
}

/// One metadata item, within the file's cap ([`MAX_METADATA_ITEMS`]).
fn push_metadata(facts: &mut MediaFacts, key: String, value: String) {
    if facts.metadata.len() < MAX_METADATA_ITEMS {
        facts.metadata.push((key, value));
    } else {
        facts.caps.metadata_dropped += 1;
    }
}

/// A QuickTime user-data text: 16-bit length, 16-bit language, then the text.
fn quicktime_string(p: &[u8]) -> Option<String> {
    let mut c = Cur::new(p);
    let len = c.u16().ok()? as usize;
    c.u16().ok()?;
    let s = c.take(len).ok()?;
    Some(String::from_utf8_lossy(s).trim_end_matches('\0').to_string())
}

/// `meta` with `keys` + `ilst` (QuickTime) or `ilst` alone (iTunes style).
fn parse_meta(p: &[u8], facts: &mut MediaFacts) {
    // QuickTime's moov/meta is a plain box; ISO's udta/meta is a full box. Tell them apart by what follows.
    let body = if p.len() >= 8 && &p[4..8] == b"hdlr" { p } else { p.get(4..).unwrap_or(&[]) };
    // A key longer than MAX_KEY_LEN is not used (None): keys are copied once per
    // value, so a long one repeated would cost more than the bytes that hold it.
    let mut keys: Vec<Option<String>> = Vec::new();
    let mut items: Vec<([u8; 4], &[u8])> = Vec::new();
    for child in Children::of(body, "meta") {
        let Ok((typ, b)) = child else { return };
        match &typ {
            b"keys" => {
                let mut c = Cur::new(b);
                if c.full().is_err() {
                    return;
                }
                let Ok(n) = c.count(8) else { return };
                if n > MAX_METADATA_ITEMS {
                    facts.caps.metadata_dropped += n - MAX_METADATA_ITEMS;
                }
                for _ in 0..n.min(MAX_METADATA_ITEMS) {
                    let Ok(size) = c.u32() else { return };
                    let Ok(_ns) = c.fourcc() else { return };
                    let Ok(k) = c.take((size as usize).saturating_sub(8)) else { return };
                    if k.len() > MAX_KEY_LEN {
                        facts.problem(
                            "malformed_metadata",
                            format!("metadata key of {} bytes (custodes reads keys up to {MAX_KEY_LEN})", k.len()),
                        );
                        keys.push(None);
                    } else {
                        keys.push(Some(String::from_utf8_lossy(k).into_owned()));
                    }
                }
            }
            b"ilst" => {
                for item in Children::of(b, "ilst") {
                    let Ok(item) = item else { break };
                    items.push(item);
                }
            }
            _ => {}
        }
    }
    for (typ, b) in items {
        let index = u32::from_be_bytes(typ) as usize;
        let key = match keys.get(index.wrapping_sub(1)) {
            Some(Some(k)) => k.clone(),
            _ => fourcc_str(&typ).replacen('?', "\u{a9}", 1),
        };
        for d in Children::of(b, "ilst item") {
            let Ok((dt, db)) = d else { break };
            if &dt == b"data" && db.len() >= 8 {
                let type_code = u32::from_be_bytes(db[..4].try_into().expect("4")) & 0x00ff_ffff;
                if type_code == 1 {
                    let value = String::from_utf8_lossy(&db[8..]).into_owned();
                    if key.ends_with("location.ISO6709") {
                        facts.location.get_or_insert(value.clone());
                    }
                    push_metadata(facts, key.clone(), value);
                }
            }
        }
    }
}

fn parse_moof(moof_offset: u64, p: &[u8], index: &FragmentIndex, facts: &mut MediaFacts) -> Parse<()> {
    let mut trafs = 0usize;
    for child in Children::of(p, "moof") {
        let (typ, body) = child?;
        if &typ != b"traf" {
            continue;
        }
        trafs += 1;
        if trafs > MAX_TRACKS {
            return Err(Malformed(format!("more than {MAX_TRACKS} 'traf' boxes in one fragment; the rest not read")));
        }
        let mut track_id = 0u32;
        let mut base = moof_offset;
        let mut default_duration: Option<u32> = None;
        let mut default_size: Option<u32> = None;
        let mut decode_time: Option<u64> = None;
        let mut runs: Vec<&[u8]> = Vec::new();
        for b in Children::of(body, "traf") {
            let (t, tb) = b?;
            let mut c = Cur::new(tb);
            match &t {
                b"tfhd" => {
                    let (_, flags) = c.full()?;
                    track_id = c.u32()?;
                    if flags & 0x1 != 0 {
                        base = c.u64()?;
                    }
                    if flags & 0x2 != 0 {
                        c.skip(4)?;
                    }
                    if flags & 0x8 != 0 {
                        default_duration = Some(c.u32()?);
                    }
                    if flags & 0x10 != 0 {
                        default_size = Some(c.u32()?);
                    }
                }
                b"tfdt" => {
                    let (version, _) = c.full()?;
                    decode_time = Some(if version == 1 { c.u64()? } else { u64::from(c.u32()?) });
                }
                b"trun" => runs.push(tb),
                _ => {}
            }
        }
        // What tfhd leaves out, the movie's trex says.
        let trex = index.trex.get(&track_id).copied();
        let default_duration = default_duration.or(trex.map(|d| d.0)).unwrap_or(0);
        let default_size = default_size.or(trex.map(|d| d.1)).unwrap_or(0);
        let Some(&at) = index.tracks.get(&track_id) else {
            facts.problem("unknown_track", format!("fragment for track {track_id}, which 'moov' does not declare"));
            continue;
        };
        let mut room = facts.sample_room();
        let mut dropped = 0u64;
        let track = &mut facts.tracks[at];
        let kept_before = track.dts.len().max(track.sample_offsets.len());
        let mut time = match decode_time {
            Some(t) => i64::try_from(t).unwrap_or(i64::MAX),
            None => track.dts.last().map_or(0, |d| d.saturating_add(track.last_sample_duration as i64)),
        };
        for run in runs {
            let mut c = Cur::new(run);
            let (version, flags) = c.full()?;
            let per_sample = [0x100, 0x200, 0x400, 0x800].iter().filter(|&&f| flags & f != 0).count() * 4;
            let n = c.u32()? as usize;
            let mut offset = base;
            if flags & 0x1 != 0 {
                offset = base.saturating_add_signed(i64::from(c.i32()?));
            }
            if flags & 0x4 != 0 {
                c.skip(4)?;
            }
            // With per-sample fields the bytes bound the count; without, only a sane ceiling does.
            let fits = if per_sample == 0 {
                n <= MAX_SAMPLES
            } else {
                n.checked_mul(per_sample).is_some_and(|b| b <= c.remaining())
            };
            if !fits {
                return Err(Malformed(format!("trun declares {n} samples that do not fit")));
            }
            if n > 0 && track.first_sample_offset.is_none() {
                track.first_sample_offset = Some(offset);
            }
            // Samples read one by one: all of them when the run's bytes hold
            // per-sample fields, else only those the budget keeps.
            let one_by_one = if per_sample == 0 { n.min(room) } else { n };
            for _ in 0..one_by_one {
                let duration = if flags & 0x100 != 0 { c.u32()? } else { default_duration };
                let size = if flags & 0x200 != 0 { c.u32()? } else { default_size };
                if flags & 0x400 != 0 {
                    c.skip(4)?;
                }
                let cts = if flags & 0x800 != 0 {
                    let raw = c.u32()?;
                    if version == 0 {
                        i64::from(raw)
                    } else {
                        i64::from(raw as i32)
                    }
                } else {
                    0
                };
                if room > 0 {
                    room -= 1;
                    track.sample_offsets.push(offset);
                    track.sample_sizes.push(size);
                    if flags & 0x800 != 0 || !track.cts_offsets.is_empty() {
                        track.cts_offsets.resize(track.dts.len(), 0);
                        track.cts_offsets.push(cts);
                    }
                    track.dts.push(time);
                } else {
                    dropped += 1;
                }
                track.sample_count += 1;
                time = time.saturating_add(i64::from(duration));
                track.last_sample_duration = u64::from(duration);
                offset = offset.saturating_add(u64::from(size));
                track.max_sample_end = track.max_sample_end.max(offset);
            }
            // The rest of a run without per-sample fields: all alike, counted in one step.
            let rest = (n - one_by_one) as u64;
            if rest > 0 {
                dropped += rest;
                track.sample_count += rest;
                time = time.saturating_add(
                    i64::try_from(rest.saturating_mul(u64::from(default_duration))).unwrap_or(i64::MAX),
                );
                track.last_sample_duration = u64::from(default_duration);
                offset = offset.saturating_add(rest.saturating_mul(u64::from(default_size)));
                track.max_sample_end = track.max_sample_end.max(offset);
            }
        }
        track.duration = track.duration.max(u64::try_from(time).unwrap_or(0));
        let kept = track.dts.len().max(track.sample_offsets.len()) - kept_before;
        facts.caps.samples_kept += kept;
        facts.caps.samples_dropped += dropped;
    }
    Ok(())
}

/// The first frame number of each `tmcd` track lives in its first sample, in
/// `mdat`: four bytes read at that sample's offset, nothing else of `mdat`.
fn read_timecodes<R: Read + Seek>(r: &mut Source<'_, R>, facts: &mut MediaFacts) -> io::Result<()> {
    let file_size = facts.file_size;
    for t in facts.tracks.iter_mut() {
        let (Some(tc), Some(offset)) = (t.timecode.as_mut(), t.first_sample_offset) else { continue };
        if offset.checked_add(4).is_none_or(|end| end > file_size) {
            continue;
        }
        let mut b = [0u8; 4];
        r.read_at(offset, &mut b)?;
        tc.frame = u32::from_be_bytes(b);
    }
    Ok(())
}

/// The timing of one track on the movie's time line, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackTiming {
    /// Presentation time of the first sample, edit list applied.
    pub start: f64,
    /// Presentation time at which the last sample ends.
    pub end: f64,
    /// The typical frame (sample) duration: the median step between presentation times.
    pub median_step: f64,
    /// Holes in presentation time longer than `k` median steps: (from, to).
    pub gaps: Vec<(f64, f64)>,
}

/// Presentation-time analysis of a track, on PTS in presentation order.
///
/// Decode times are the wrong thing to look at: a slow-motion phone clip
/// decodes in clumps (12,000-tick jumps) while it presents at a steady 1/30 s.
/// Sorting presentation times and looking at the steps between them finds the
/// real holes, and only those.
pub fn track_timing(track: &Track, movie_timescale: u32, k: f64) -> Option<TrackTiming> {
    if track.timescale == 0 || track.dts.is_empty() {
        return None;
    }
    let mut pts = track.pts();
    pts.sort_unstable();
    let ts = f64::from(track.timescale);
    let (delay, media_start) = track.edit_shift();
    let shift = if movie_timescale > 0 { delay as f64 / f64::from(movie_timescale) } else { 0.0 };
    let at = |p: i64| shift + (p.saturating_sub(media_start)) as f64 / ts;
    let mut steps: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0).collect();
    let median = if steps.is_empty() {
        track.last_sample_duration as i64
    } else {
        let mid = steps.len() / 2;
        *steps.select_nth_unstable(mid).1
    };
    let last_duration = if track.last_sample_duration > 0 { track.last_sample_duration as i64 } else { median };
    let mut gaps = Vec::new();
    if median > 0 {
        let limit = k * median as f64;
        for w in pts.windows(2) {
            if (w[1] - w[0]) as f64 > limit {
                gaps.push((at(w[0] + median), at(w[1])));
            }
        }
    }
    let (first, last) = (pts[0], *pts.last().expect("non-empty"));
    Some(TrackTiming {
        start: at(first),
        end: at(last.saturating_add(last_duration)),
        median_step: median as f64 / ts,
        gaps,
    })
}

/// Panics unless `facts` keep the walker's promises: every list within its
/// cap, every time within [`LATEST_MP4_TIME`] (int64 ns with room for any
/// span), every timing finite and within [`MAX_SPAN_SECONDS`]. For the fuzz
/// target (`fuzz/fuzz_targets/box_walker.rs`) and the tests over its seeds.
pub fn assert_walker_invariants(facts: &MediaFacts) {
    assert!(facts.tracks.len() <= MAX_TRACKS);
    assert!(facts.problems.len() <= MAX_PROBLEMS + 1);
    assert!(facts.metadata.len() <= MAX_METADATA_ITEMS);
    assert!(facts.top_level.len() <= MAX_TOP_LEVEL_BOXES && facts.mdat.len() <= MAX_FRAGMENTS);
    assert!(facts.missing_bytes <= i64::MAX as u64);
    assert!(facts.tracks.iter().map(|t| t.dts.len().max(t.sample_offsets.len())).sum::<usize>() <= MAX_SAMPLES);
    assert!(facts.tracks.iter().all(|t| t.edits.len() <= MAX_EDITS));
    let movie_timescale = facts.movie.as_ref().map_or(0, |m| m.timescale);
    if let Some(m) = &facts.movie {
        assert!(m.creation <= LATEST_MP4_TIME && m.modification <= LATEST_MP4_TIME);
        assert!(m.timescale == 0 || m.duration / u64::from(m.timescale) <= MAX_SPAN_SECONDS);
    }
    let span = MAX_SPAN_SECONDS as f64 * (1.0 + 1e-9);
    for track in &facts.tracks {
        assert!(track.tkhd_creation <= LATEST_MP4_TIME && track.mdhd_creation <= LATEST_MP4_TIME);
        assert!(track.timescale == 0 || track.duration / u64::from(track.timescale) <= MAX_SPAN_SECONDS);
        if let Some(t) = track_timing(track, movie_timescale, 3.0) {
            assert!(t.start.is_finite() && t.end.is_finite(), "{t:?}");
            assert!(t.start.abs() <= span && t.end.abs() <= span, "{t:?}");
            assert!(t.gaps.iter().all(|&(a, b)| a.abs() <= span && b.abs() <= span), "{t:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bx(typ: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(typ);
        v.extend_from_slice(payload);
        v
    }

    /// Real footage, as ffprobe (6.1) reads it: codec tags, frame counts, the tmcd timecode, the creation
    /// time and the duration. The pytest suite compares with ffprobe live; this keeps the same facts in
    /// `cargo test`, where cargo-mutants looks.
    #[test]
    fn real_footage_agrees_with_ffprobe() {
        type Expected = (&'static str, u64, f64, Vec<(&'static str, &'static str, u64, Option<&'static str>)>);
        let cases: Vec<Expected> = vec![
            (
                "gopro/karma.mp4", // 2017-04-17T19:27:57Z
                1_492_457_277,
                12.078733,
                vec![
                    ("video", "avc1", 362, None),
                    ("audio", "mp4a", 566, None),
                    ("timecode", "tmcd", 1, Some("19:26:48:04")),
                    ("metadata", "gpmd", 13, None),
                    ("metadata", "fdsc", 943, None),
                ],
            ),
            (
                "gopro/max-heromode.mp4", // 2019-11-18T15:45:32Z
                1_574_091_932,
                10.517333,
                vec![
                    ("video", "avc1", 315, None),
                    ("audio", "mp4a", 493, None),
                    ("timecode", "tmcd", 1, Some("15:44:35:10")),
                    ("metadata", "gpmd", 11, None),
                    ("metadata", "fdsc", 821, None),
                ],
            ),
            (
                "phones/bt601.mov", // 2024-02-12T19:16:55Z
                1_707_765_415,
                1.0201,
                vec![("audio", "mp4a", 45, None), ("video", "avc1", 30, None)],
            ),
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/footage");
        for (name, created, duration, tracks) in cases {
            let f = probe_file(&root.join(name)).unwrap();
            let m = f.movie.as_ref().unwrap();
            assert_eq!(m.creation - MP4_EPOCH_OFFSET as u64, created, "{name}");
            assert!((m.duration as f64 / f64::from(m.timescale) - duration).abs() < 1e-6, "{name}");
            let got: Vec<_> = f
                .tracks
                .iter()
                .map(|t| {
                    (
                        t.kind(),
                        t.codec.as_deref().unwrap_or(""),
                        t.sample_count,
                        t.timecode.as_ref().map(|c| c.display()),
                    )
                })
                .collect();
            let want: Vec<_> = tracks.iter().map(|&(k, c, n, tc)| (k, c, n, tc.map(String::from))).collect();
            assert_eq!(got, want, "{name}");
            assert!(f.problems.is_empty(), "{name}: {:?}", f.problems);
        }
    }

    #[test]
    fn timecode_seconds_and_edit_shifts() {
        let tc = Timecode { frame: 25 * 3661 + 5, frames_per_second: 25, drop_frame: false };
        assert_eq!(tc.seconds_of_day(), 3661.2); // 01:01:01 and 5 of 25 frames
        let delayed = Track {
            edits: vec![
                Edit { segment_duration: 600, media_time: -1 },
                Edit { segment_duration: 400, media_time: -1 },
                Edit { segment_duration: 9000, media_time: 1024 },
                Edit { segment_duration: 5, media_time: -1 },
            ],
            ..Track::default()
        };
        assert_eq!(delayed.edit_shift(), (1000, 1024)); // empty edits before the first media edit only
        let plain = Track { edits: vec![Edit { segment_duration: 9000, media_time: 0 }], ..Track::default() };
        assert_eq!(plain.edit_shift(), (0, 0));
        let only_empty = Track { edits: vec![Edit { segment_duration: 7, media_time: -1 }], ..Track::default() };
        assert_eq!(only_empty.edit_shift(), (7, 0));
    }

    #[test]
    fn every_handler_has_its_kind() {
        let kinds = [
            ("vide", "video"),
            ("soun", "audio"),
            ("tmcd", "timecode"),
            ("meta", "metadata"),
            ("mdta", "metadata"),
            ("subt", "subtitle"),
            ("text", "subtitle"),
            ("sbtl", "subtitle"),
            ("hint", "data"),
            ("", "data"),
        ];
        for (handler, kind) in kinds {
            assert_eq!(Track { handler: handler.into(), ..Track::default() }.kind(), kind, "{handler:?}");
        }
    }

    #[test]
    fn the_latest_time_leaves_room_for_a_span_and_no_more() {
        // int64 ns since 1970 must hold the latest creation time plus the longest span inside a file.
        let latest = LATEST_MP4_TIME - MP4_EPOCH_OFFSET as u64;
        assert!((latest + MAX_SPAN_SECONDS) as i128 * 1_000_000_000 <= i64::MAX as i128);
        assert!((latest + MAX_SPAN_SECONDS + 1) as i128 * 1_000_000_000 > i64::MAX as i128);
        assert!((8_880_000_000..8_910_000_000).contains(&latest), "about 2252-04: {latest}"); // not a mis-typed epoch
        let tc = Timecode { frame: 30 * 3600 + 29, frames_per_second: 30, drop_frame: false };
        assert_eq!(tc.display(), "01:00:00:29");
        assert_eq!(
            Timecode { frame: 24 * 3600 * 25 + 26, frames_per_second: 25, drop_frame: false }.display(),
            "00:00:01:01"
        );
    }

    #[test]
    fn empty_and_garbage_inputs_give_problems_not_panics() {
        for bytes in [&b""[..], b"\0\0\0", b"\0\0\0\x08moov", b"\xff\xff\xff\xffmoov", b"\0\0\0\x01mdat\0\0"] {
            let f = probe_reader(&mut Cursor::new(bytes.to_vec()), bytes.len() as u64).unwrap();
            assert!(!f.problems.is_empty() || f.has_moov(), "{bytes:?}");
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        // stts claiming 2^32-1 entries inside a 16-byte box.
        let stts = bx(b"stts", &[&[0, 0, 0, 0][..], &[0xff, 0xff, 0xff, 0xff]].concat());
        let stbl = bx(b"stbl", &stts);
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &minf);
        let trak = bx(b"trak", &mdia);
        let moov = bx(b"moov", &trak);
        let f = probe_reader(&mut Cursor::new(moov.clone()), moov.len() as u64).unwrap();
        assert!(f.problems.iter().any(|p| p.kind == "malformed_track"), "{:?}", f.problems);
    }

    #[test]
    fn mdat_declared_past_end_is_truncation() {
        let mut file = bx(b"ftyp", b"isom\0\0\0\0isom");
        file.extend_from_slice(&[0, 0, 0x10, 0, b'm', b'd', b'a', b't']);
        file.extend_from_slice(&[0u8; 100]);
        let f = probe_reader(&mut Cursor::new(file.clone()), file.len() as u64).unwrap();
        assert_eq!(f.missing_bytes, 0x1000 - 108);
        assert!(f.problems.iter().any(|p| p.kind == "no_moov"));
        assert!(!f.has_moov());
        assert_eq!(f.major_brand.as_deref(), Some("isom"));
    }

    fn probe(bytes: &[u8]) -> MediaFacts {
        probe_reader(&mut Cursor::new(bytes.to_vec()), bytes.len() as u64).unwrap()
    }

    fn kinds(f: &MediaFacts) -> Vec<&'static str> {
        f.problems.iter().map(|p| p.kind).collect()
    }

    /// A version 1 `mvhd`: 64-bit creation, modification and duration.
    fn mvhd_v1(creation: u64, timescale: u32, duration: u64) -> Vec<u8> {
        let mut p = vec![1, 0, 0, 0];
        p.extend_from_slice(&creation.to_be_bytes());
        p.extend_from_slice(&creation.to_be_bytes());
        p.extend_from_slice(&timescale.to_be_bytes());
        p.extend_from_slice(&duration.to_be_bytes());
        p.extend_from_slice(&[0u8; 80]);
        bx(b"mvhd", &p)
    }

    /// A track whose `mdhd` and `tkhd` are version 1 with the given creation time.
    fn trak_v1(id: u32, creation: u64, timescale: u32, duration: u64, stbl: &[u8]) -> Vec<u8> {
        let mut tkhd = vec![1, 0, 0, 0];
        tkhd.extend_from_slice(&creation.to_be_bytes());
        tkhd.extend_from_slice(&creation.to_be_bytes());
        tkhd.extend_from_slice(&id.to_be_bytes());
        let mut mdhd = vec![1, 0, 0, 0];
        mdhd.extend_from_slice(&creation.to_be_bytes());
        mdhd.extend_from_slice(&creation.to_be_bytes());
        mdhd.extend_from_slice(&timescale.to_be_bytes());
        mdhd.extend_from_slice(&duration.to_be_bytes());
        let minf = bx(b"minf", &bx(b"stbl", stbl));
        bx(b"trak", &[bx(b"tkhd", &tkhd), bx(b"mdia", &[bx(b"mdhd", &mdhd), minf].concat())].concat())
    }

    fn full(typ: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
        bx(typ, &[&[version, 0, 0, 0][..], body].concat())
    }

    fn be(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn one_time_range_rule_for_mvhd_tkhd_and_mdhd() {
        let ok = LATEST_MP4_TIME;
        let f = probe(&bx(b"moov", &[mvhd_v1(ok, 1000, 0), trak_v1(1, ok, 1000, 0, &[])].concat()));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(f.movie.as_ref().unwrap().creation, ok);
        assert_eq!((f.tracks[0].tkhd_creation, f.tracks[0].mdhd_creation), (ok, ok));
        // The latest accepted time, in ns since 1970, leaves room for the longest accepted span.
        let ns =
            i128::from(ok as i64 - MP4_EPOCH_OFFSET) * 1_000_000_000 + i128::from(MAX_SPAN_SECONDS) * 1_000_000_000;
        assert!(ns <= i128::from(i64::MAX));

        let bad = LATEST_MP4_TIME + 1;
        let f = probe(&bx(b"moov", &[mvhd_v1(bad, 1000, 0), trak_v1(1, bad, 1000, 0, &[])].concat()));
        let m = f.movie.as_ref().unwrap();
        assert_eq!((m.creation, m.modification), (0, 0), "treated as absent");
        assert_eq!((f.tracks[0].tkhd_creation, f.tracks[0].mdhd_creation), (0, 0));
        // mvhd, tkhd and mdhd each: creation and modification.
        assert_eq!(kinds(&f), vec!["time_out_of_range"; 6], "{:?}", f.problems);
        assert!(f.problems[0].detail.contains("'mvhd' creation time"));
    }

    #[test]
    fn a_version_byte_flipped_to_1_is_a_problem_not_an_overflow() {
        // A version 0 mvhd (32-bit fields) read as version 1.
        let mut p = vec![1, 0, 0, 0];
        p.extend_from_slice(&be(&[3_800_000_000, 3_800_000_001, 1000, 60_000]));
        p.extend_from_slice(&be(&[0x0001_0000, 0x0100_0000]));
        p.extend_from_slice(&[0u8; 72]);
        let f = probe(&bx(b"moov", &bx(b"mvhd", &p)));
        let m = f.movie.as_ref().unwrap();
        assert_eq!((m.creation, m.modification), (0, 0));
        assert!(kinds(&f).contains(&"time_out_of_range"), "{:?}", f.problems);
        // The duration, now read from the rate and volume, is out of range as well.
        assert_eq!(m.duration, 0);
    }

    #[test]
    fn durations_all_ones_are_unknown_and_too_long_ones_are_problems() {
        let f = probe(&bx(b"moov", &[mvhd_v1(0, 1000, u64::MAX), trak_v1(1, 0, 1000, u64::MAX, &[])].concat()));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!((f.movie.as_ref().unwrap().duration, f.tracks[0].duration), (0, 0));

        let long = (MAX_SPAN_SECONDS + 1) * 1000;
        let f = probe(&bx(b"moov", &[mvhd_v1(0, 1000, long), trak_v1(1, 0, 1000, long, &[])].concat()));
        assert_eq!(kinds(&f), vec!["time_out_of_range"; 2], "{:?}", f.problems);
        assert_eq!((f.movie.as_ref().unwrap().duration, f.tracks[0].duration), (0, 0));

        let just = MAX_SPAN_SECONDS * 1000;
        let f = probe(&bx(b"moov", &[mvhd_v1(0, 1000, just), trak_v1(1, 0, 1000, just, &[])].concat()));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
    }

    #[test]
    fn sample_times_beyond_the_span_leave_the_track_without_timing() {
        // Two samples 2^32-1 ticks apart at 1 tick per second: 136 years.
        let stts = full(b"stts", 0, &be(&[1, 2, u32::MAX]));
        let f = probe(&bx(b"moov", &[mvhd_v1(0, 1, 0), trak_v1(1, 0, 1, 0, &stts)].concat()));
        assert_eq!(kinds(&f), vec!["time_out_of_range"], "{:?}", f.problems);
        assert!(f.tracks[0].dts.is_empty() && track_timing(&f.tracks[0], 1, 3.0).is_none());
        assert_eq!(f.tracks[0].sample_count, 2, "the count stands");

        // Within the span, but the last frame (no duration of its own) is given the
        // median step, which would carry the end past it: also out of range.
        let step = (MAX_SPAN_SECONDS * 6 / 10) as u32;
        let stts = full(b"stts", 0, &be(&[2, 1, step, 1, 0]));
        let f = probe(&bx(b"moov", &[mvhd_v1(0, 1, 0), trak_v1(1, 0, 1, 0, &stts)].concat()));
        assert_eq!(kinds(&f), vec!["time_out_of_range"], "{:?}", f.problems);
        assert_walker_invariants(&f);
        // A tenth of the span is fine, and its timing is kept.
        let stts = full(b"stts", 0, &be(&[2, 1, step / 6, 1, 0]));
        let f = probe(&bx(b"moov", &[mvhd_v1(0, 1, 0), trak_v1(1, 0, 1, 0, &stts)].concat()));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(track_timing(&f.tracks[0], 1, 3.0).unwrap().end, 2.0 * f64::from(step / 6));
        assert_walker_invariants(&f);
    }

    #[test]
    fn tracks_are_capped_and_the_walk_stays_linear() {
        let n = MAX_TRACKS + 10;
        let moov = bx(b"moov", &bx(b"trak", &[]).repeat(n));
        let f = probe(&moov);
        assert_eq!(f.tracks.len(), MAX_TRACKS);
        assert_eq!(kinds(&f), vec!["too_many_tracks"]);
        assert!(f.problems[0].detail.starts_with(&format!("{n} 'trak' boxes")));
    }

    #[test]
    fn children_per_box_are_capped() {
        let moov = bx(b"moov", &bx(b"free", &[]).repeat(MAX_CHILDREN + 1));
        let f = probe(&moov);
        assert_eq!(kinds(&f), vec!["malformed_moov"]);
        assert!(f.problems[0].detail.contains(&format!("more than {MAX_CHILDREN} boxes inside 'moov'")));
        // Exactly at the cap is fine.
        let f = probe(&bx(b"moov", &bx(b"free", &[]).repeat(MAX_CHILDREN)));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
    }

    #[test]
    fn top_level_boxes_are_capped() {
        let mut file = bx(b"moov", &[]);
        file.extend_from_slice(&bx(b"free", &[]).repeat(MAX_TOP_LEVEL_BOXES));
        let f = probe(&file);
        assert_eq!(f.top_level.len(), MAX_TOP_LEVEL_BOXES);
        assert_eq!(kinds(&f), vec!["too_many_boxes"]);
    }

    #[test]
    fn the_sample_budget_is_per_file_not_per_track() {
        // Three tracks, each a 12-byte stts claiming 2^32-1 samples.
        let stts = full(b"stts", 0, &be(&[1, u32::MAX, 1]));
        let traks: Vec<u8> = (1..=3).flat_map(|id| trak_v1(id, 0, 1000, 0, &stts)).collect();
        let f = probe(&bx(b"moov", &[mvhd_v1(0, 1000, 0), traks].concat()));
        let kept: usize = f.tracks.iter().map(|t| t.dts.len()).sum();
        assert_eq!(kept, MAX_SAMPLES);
        assert!(f.tracks.iter().all(|t| t.sample_count == u64::from(u32::MAX)));
        assert!(kinds(&f).contains(&"too_many_samples"), "{:?}", f.problems);
    }

    #[test]
    fn runs_without_sample_fields_are_counted_not_expanded() {
        // One track, fragments of runs of MAX_SAMPLES default samples each: only the budget is expanded.
        let moov = bx(b"moov", &[mvhd_v1(0, 1000, 0), trak_v1(7, 0, 1000, 0, &[])].concat());
        let tfhd = full(b"tfhd", 0, &be(&[7]));
        let truns: Vec<u8> = full(b"trun", 0, &be(&[MAX_SAMPLES as u32])).repeat(50);
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, truns].concat()));
        let f = probe(&[moov, moof].concat());
        let t = &f.tracks[0];
        assert_eq!(t.sample_count, 50 * MAX_SAMPLES as u64);
        assert_eq!(t.dts.len(), MAX_SAMPLES);
        assert!(kinds(&f).contains(&"too_many_samples"), "{:?}", f.problems);
    }

    #[test]
    fn stsc_out_of_order_is_a_problem_not_a_quadratic_walk() {
        // 20,000 chunks and 20,000 stsc runs of no samples that go back and forth
        // between chunk 1 and the last: walked as written, 10^4 x 2 x 10^4 steps.
        let stco = full(b"stco", 0, &[be(&[20_000]), be(&[0]).repeat(20_000)].concat());
        let stsc = full(b"stsc", 0, &[be(&[20_000]), be(&[1, 0, 1, 20_000, 0, 1]).repeat(10_000)].concat());
        let stts = full(b"stts", 0, &be(&[1, 10, 1]));
        let f = probe(&bx(b"moov", &trak_v1(1, 0, 1000, 0, &[stts, stsc, stco].concat())));
        assert_eq!(kinds(&f), vec!["malformed_track"], "{:?}", f.problems);
        assert!(f.problems[0].detail.contains("not in chunk order"));
    }

    #[test]
    fn problems_are_capped_and_counted() {
        let moov = bx(b"moov", &[]);
        let traf = bx(b"traf", &full(b"tfhd", 0, &be(&[99])));
        let moof = bx(b"moof", &traf.repeat(MAX_TRACKS));
        let f = probe(&[moov, moof].concat());
        assert_eq!(f.problems.len(), MAX_PROBLEMS + 1);
        let last = f.problems.last().unwrap();
        assert_eq!(last.kind, "too_many_problems");
        assert_eq!(last.detail, format!("{} more problems not listed", MAX_TRACKS - MAX_PROBLEMS));
    }

    #[test]
    fn edits_metadata_and_fragments_are_capped() {
        let elst =
            full(b"elst", 0, &[be(&[MAX_EDITS as u32 + 1]), be(&[1, 0, 0x0001_0000]).repeat(MAX_EDITS + 1)].concat());
        let trak = bx(b"trak", &[full(b"tkhd", 0, &be(&[0, 0, 3])), bx(b"edts", &elst)].concat());
        let text = [&[0u8, 1, 0, 0][..], b"x"].concat();
        let udta = bx(b"udta", &bx(b"\xa9cmt", &text).repeat(MAX_METADATA_ITEMS + 5));
        let f = probe(&bx(b"moov", &[trak, udta].concat()));
        assert_eq!(f.tracks[0].edits.len(), MAX_EDITS);
        assert_eq!(f.metadata.len(), MAX_METADATA_ITEMS);
        assert_eq!(kinds(&f), vec!["too_many_boxes", "too_many_boxes"], "{:?}", f.problems);
        assert!(f.problems[1].detail.starts_with("5 metadata items not read"));

        let mut file = bx(b"moov", &[]);
        file.extend_from_slice(&[bx(b"moof", &[]), bx(b"mdat", &[])].concat().repeat(MAX_FRAGMENTS + 2));
        let f = probe(&file);
        assert_eq!(kinds(&f), vec!["too_many_boxes", "too_many_boxes"], "{:?}", f.problems);
        assert_eq!(
            f.problems[0].detail,
            format!("2 'moof' fragments not read: custodes reads {MAX_FRAGMENTS} per file")
        );
        assert_eq!(f.problems[1].detail, format!("2 'mdat' boxes not listed: custodes lists {MAX_FRAGMENTS} per file"));
        assert_eq!(f.mdat.len(), MAX_FRAGMENTS);
        assert!(f.fragmented);
    }

    #[test]
    fn long_metadata_keys_are_not_copied() {
        let key = vec![b'k'; MAX_KEY_LEN + 1];
        let keys = full(b"keys", 0, &[be(&[1, key.len() as u32 + 8]), b"mdta".to_vec(), key].concat());
        let data = bx(b"data", &[be(&[1, 0]), b"v".to_vec()].concat());
        let ilst = bx(b"ilst", &bx(&[0, 0, 0, 1], &data.repeat(3)));
        let meta = bx(b"meta", &[full(b"hdlr", 0, &[0u8; 20]), keys, ilst].concat());
        let f = probe(&bx(b"moov", &meta));
        assert_eq!(kinds(&f), vec!["malformed_metadata"], "{:?}", f.problems);
        assert_eq!(f.metadata.len(), 3);
        assert!(f.metadata.iter().all(|(k, v)| k == "\u{a9}???" && v == "v"), "{:?}", f.metadata);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut inner = full(b"stts", 0, &be(&[0]));
        for _ in 0..10_000 {
            inner = bx(b"minf", &inner);
        }
        let f = probe(&bx(b"moov", &bx(b"trak", &bx(b"mdia", &inner))));
        assert_eq!(kinds(&f), vec!["malformed_track"]);
        assert!(f.problems[0].detail.contains("nested too deep"));
    }

    #[test]
    fn sizes_past_any_file_offset_are_malformed() {
        let mut file = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        file.extend_from_slice(&u64::MAX.to_be_bytes());
        let f = probe(&file);
        assert_eq!(f.missing_bytes, 0);
        assert_eq!(kinds(&f), vec!["malformed_box", "no_moov"], "{:?}", f.problems);
    }

    #[test]
    fn the_last_offset_a_file_can_have_is_the_boundary() {
        let mut f = MediaFacts { file_size: 100, ..MediaFacts::default() };
        f.note_end(i64::MAX as u64); // as far as any file can reach: truncation, not a misread
        assert_eq!(f.missing_bytes, i64::MAX as u64 - 100);
        assert!(f.problems.is_empty());
        f.note_end(i64::MAX as u64 + 1);
        assert_eq!(kinds(&f), vec!["malformed_offset"]);
    }

    #[test]
    fn all_ones_is_an_unknown_duration_in_its_own_width() {
        assert_eq!(header_duration(u64::from(u32::MAX), false), 0); // version 0: 32 bits of ones
        assert_eq!(header_duration(u64::from(u32::MAX), true), u64::from(u32::MAX)); // a real 64-bit value
        assert_eq!(header_duration(u64::MAX, true), 0);
        assert_eq!(header_duration(90_000, false), 90_000);
        assert_eq!(header_duration(90_000, true), 90_000);
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.mp4");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        match probe_file(&fifo) {
            Err(ProbeError::Open(HashError::NotRegularFile { kind })) => assert_eq!(kind, "named pipe (FIFO)"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_directory_or_a_missing_file_is_refused_at_opening() {
        let dir = tempfile::tempdir().unwrap();
        match probe_file(dir.path()) {
            Err(ProbeError::Open(HashError::NotRegularFile { kind })) => assert_eq!(kind, "directory"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(probe_file(&dir.path().join("gone.mp4")), Err(ProbeError::Open(HashError::NotFound))));
    }

    #[test]
    fn fuzz_seeds_keep_the_walker_invariants() {
        // Each hostile seed of the fuzz run (fuzz/seeds/make_seeds.py), with the problem it must raise.
        let expected = [
            ("mvhd-version-flipped.mp4", "time_out_of_range"),
            ("mdhd-version-flipped.mp4", "time_out_of_range"),
            ("creationdate-9999.mov", ""), // the date is text: custodes.media judges it
            ("many-traks.mp4", "too_many_tracks"),
            ("deep-nesting.mp4", "malformed_track"),
            ("huge-stts-counts.mp4", ""), // 100,000 samples from 16 bytes, within the budget
            ("huge-trun-counts.mp4", ""),
            ("stsc-out-of-order.mp4", "malformed_track"),
            ("unknown-track-flood.mp4", "too_many_problems"),
            ("many-edits.mp4", "too_many_boxes"),
            ("many-metadata-items.mp4", "too_many_boxes"),
            ("long-metadata-key.mp4", "malformed_metadata"),
            ("size-past-any-offset.mp4", "malformed_box"),
            ("duration-centuries.mp4", "time_out_of_range"),
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = expected.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "every seed has an expectation here");
        for (name, kind) in expected {
            let facts = probe_file(&dir.join(name)).unwrap();
            assert_walker_invariants(&facts);
            assert!(kind.is_empty() || kinds(&facts).contains(&kind), "{name}: {:?}", facts.problems);
        }
    }

    #[test]
    fn timing_finds_a_pts_hole_and_ignores_decode_order() {
        let mut t = Track { timescale: 30, last_sample_duration: 1, ..Track::default() };
        // Presentation 0..10 and 20..30 (a 10-frame hole), stored in a shuffled decode order.
        t.dts = (0..20).collect();
        let pts: Vec<i64> = (0..10).chain(20..30).collect();
        let mut order: Vec<usize> = (0..20).collect();
        order.swap(1, 2);
        t.cts_offsets = order.iter().zip(&t.dts).map(|(&i, d)| pts[i] - d).collect();
        let timing = track_timing(&t, 0, 3.0).unwrap();
        assert_eq!(timing.gaps.len(), 1);
        assert!((timing.gaps[0].0 - 10.0 / 30.0).abs() < 1e-9 && (timing.gaps[0].1 - 20.0 / 30.0).abs() < 1e-9);
        assert!((timing.end - 1.0).abs() < 1e-9);
    }
}
