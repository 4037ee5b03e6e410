//! What an MP4/MOV (ISO-BMFF / QuickTime) file says about its own time.
//!
//! A small box walker that treats every file as hostile: every size and count
//! is checked against the bytes that remain before anything is allocated,
//! arithmetic is checked, nesting depth is bounded, and `mdat` payloads are
//! never read (the walker seeks past them). Only `moov` and `moof` boxes are
//! read into memory, each bounded in size. A damaged file gives facts as far
//! as they go plus [`Problem`]s; it never gives a panic.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Seconds between 1904-01-01 (the MP4 epoch) and 1970-01-01.
pub const MP4_EPOCH_OFFSET: i64 = 2_082_844_800;
/// Largest `moov`/`moof` read into memory; a real one this large would hold days of samples.
pub const MAX_META_BOX: u64 = 256 << 20;
/// Samples kept per track for timing analysis (about 4 days of 30 fps video).
pub const MAX_SAMPLES: usize = 10_000_000;
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
    pub problems: Vec<Problem>,
}

impl MediaFacts {
    pub fn has_moov(&self) -> bool {
        self.top_level.iter().any(|t| t == "moov")
    }

    fn problem(&mut self, kind: &'static str, detail: impl Into<String>) {
        self.problems.push(Problem { kind, detail: detail.into() });
    }

    fn note_end(&mut self, end: u64) {
        self.missing_bytes = self.missing_bytes.max(end.saturating_sub(self.file_size));
    }
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

/// Child boxes of an in-memory box payload.
struct Children<'a> {
    cur: Cur<'a>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Parse<([u8; 4], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cur.remaining() == 0 {
            return None;
        }
        // Some QuickTime atoms end their child lists with a 4-byte zero terminator.
        if self.cur.remaining() < 8 {
            let rest = self.cur.take(self.cur.remaining()).ok()?;
            return if rest.iter().all(|&b| b == 0) { None } else { Some(Err(Malformed("trailing bytes".into()))) };
        }
        Some(self.next_box())
    }
}

impl<'a> Children<'a> {
    fn of(payload: &'a [u8]) -> Self {
        Children { cur: Cur::new(payload) }
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
            Malformed(format!("box '{}' declares {size} bytes, only {} left", fourcc_str(&typ), self.cur.remaining() + header))
        })?;
        Ok((typ, payload))
    }
}

/// Read the container facts of the file at `path`.
pub fn probe_file(path: &Path) -> io::Result<MediaFacts> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    probe_reader(&mut file, meta.len())
}

/// Read the container facts from any seekable byte source of `file_size` bytes.
pub fn probe_reader<R: Read + Seek>(r: &mut R, file_size: u64) -> io::Result<MediaFacts> {
    let mut facts = MediaFacts { file_size, ..MediaFacts::default() };
    let mut fragments: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut moov: Option<Vec<u8>> = None;
    let mut pos = 0u64;
    while pos < file_size {
        let Some((typ, header_len, size)) = read_top_header(r, pos, file_size, &mut facts)? else { break };
        let name = fourcc_str(&typ);
        let end = pos.saturating_add(size);
        facts.top_level.push(name.clone());
        if end > file_size {
            facts.note_end(end);
            facts.problem("truncated_box", format!("'{name}' at offset {pos} declares {size} bytes; the file ends {} bytes short", end - file_size));
        }
        match &typ {
            b"ftyp" => parse_ftyp(&read_payload(r, pos, header_len, size.min(4096), file_size)?, &mut facts),
            b"mdat" => facts.mdat.push(MediaData { offset: pos, declared_size: size }),
            b"moov" | b"moof" => {
                if size > MAX_META_BOX {
                    facts.problem("oversized_box", format!("'{name}' of {size} bytes is larger than custodes reads ({MAX_META_BOX})"));
                } else {
                    let payload = read_payload(r, pos, header_len, size, file_size)?;
                    if &typ == b"moov" {
                        if moov.is_some() {
                            facts.problem("duplicate_moov", format!("second 'moov' at offset {pos} ignored"));
                        } else {
                            moov = Some(payload);
                        }
                    } else {
                        fragments.push((pos, payload));
                    }
                }
            }
            _ => {}
        }
        pos = end;
    }
    match moov {
        Some(m) => {
            if let Err(Malformed(e)) = parse_moov(&m, &mut facts) {
                facts.problem("malformed_moov", e);
            }
        }
        None => facts.problem("no_moov", "no 'moov' box: the file has no index of its samples (recording never finalised?)"),
    }
    for (offset, payload) in &fragments {
        facts.fragmented = true;
        if let Err(Malformed(e)) = parse_moof(*offset, payload, &mut facts) {
            facts.problem("malformed_moof", format!("at offset {offset}: {e}"));
        }
    }
    for t in &facts.tracks.clone() {
        facts.note_end(t.max_sample_end);
    }
    read_timecodes(r, &mut facts)?;
    Ok(facts)
}

/// The header of the top-level box at `pos`: (type, header length, total size).
fn read_top_header<R: Read + Seek>(
    r: &mut R,
    pos: u64,
    file_size: u64,
    facts: &mut MediaFacts,
) -> io::Result<Option<([u8; 4], u64, u64)>> {
    let left = file_size - pos;
    if left < 8 {
        facts.problem("trailing_bytes", format!("{left} bytes after the last box at offset {pos}"));
        return Ok(None);
    }
    r.seek(SeekFrom::Start(pos))?;
    let mut h = [0u8; 16];
    r.read_exact(&mut h[..8])?;
    let size32 = u32::from_be_bytes(h[..4].try_into().expect("4"));
    let typ: [u8; 4] = h[4..8].try_into().expect("4");
    let (header_len, size) = match size32 {
        0 => (8, left),
        1 => {
            if left < 16 {
                facts.problem("malformed_box", format!("64-bit box header at offset {pos} cut off"));
                return Ok(None);
            }
            r.read_exact(&mut h[8..16])?;
            (16, u64::from_be_bytes(h[8..16].try_into().expect("8")))
        }
        n => (8, u64::from(n)),
    };
    if size < header_len || !typ.iter().all(|b| (0x20..0x7f).contains(b) || *b == 0xa9) {
        facts.problem("malformed_box", format!("not a box at offset {pos} (size {size}, type {:?})", fourcc_str(&typ)));
        return Ok(None);
    }
    Ok(Some((typ, header_len, size)))
}

/// The payload of a box, as much of it as the file holds.
fn read_payload<R: Read + Seek>(r: &mut R, pos: u64, header_len: u64, size: u64, file_size: u64) -> io::Result<Vec<u8>> {
    let start = pos + header_len;
    let end = pos.saturating_add(size).min(file_size);
    let mut buf = vec![0u8; end.saturating_sub(start) as usize];
    r.seek(SeekFrom::Start(start))?;
    r.read_exact(&mut buf)?;
    Ok(buf)
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
    for child in Children::of(p) {
        let (typ, body) = child?;
        match &typ {
            b"mvhd" => facts.movie = Some(parse_mvhd(body)?),
            b"trak" => match parse_trak(body) {
                Ok(t) => facts.tracks.push(t),
                Err(Malformed(e)) => facts.problem("malformed_track", e),
            },
            b"mvex" => {
                facts.fragmented = true;
                for e in Children::of(body) {
                    let (t, b) = e?;
                    if &t == b"trex" {
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
}

fn parse_mvhd(p: &[u8]) -> Parse<MovieHeader> {
    let mut c = Cur::new(p);
    let (version, _) = c.full()?;
    Ok(if version == 1 {
        MovieHeader { creation: c.u64()?, modification: c.u64()?, timescale: c.u32()?, duration: c.u64()? }
    } else {
        MovieHeader {
            creation: u64::from(c.u32()?),
            modification: u64::from(c.u32()?),
            timescale: c.u32()?,
            duration: u64::from(c.u32()?),
        }
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

fn parse_trak(p: &[u8]) -> Parse<Track> {
    let mut track = Track::default();
    let mut tables = SampleTables::default();
    for child in Children::of(p) {
        let (typ, body) = child?;
        match &typ {
            b"tkhd" => {
                let mut c = Cur::new(body);
                let (version, _) = c.full()?;
                if version == 1 {
                    track.tkhd_creation = c.u64()?;
                    c.skip(8)?;
                } else {
                    track.tkhd_creation = u64::from(c.u32()?);
                    c.skip(4)?;
                }
                track.id = c.u32()?;
            }
            b"edts" => {
                for e in Children::of(body) {
                    let (t, b) = e?;
                    if &t == b"elst" {
                        track.edits = parse_elst(b)?;
                    }
                }
            }
            b"mdia" => parse_mdia(body, &mut track, &mut tables, 0)?,
            _ => {}
        }
    }
    build_samples(&mut track, &tables)?;
    Ok(track)
}

fn parse_elst(p: &[u8]) -> Parse<Vec<Edit>> {
    let mut c = Cur::new(p);
    let (version, _) = c.full()?;
    let n = c.count(if version == 1 { 20 } else { 12 })?;
    let mut edits = Vec::with_capacity(n);
    for _ in 0..n {
        let (segment_duration, media_time) =
            if version == 1 { (c.u64()?, c.u64()? as i64) } else { (u64::from(c.u32()?), i64::from(c.i32()?)) };
        c.skip(4)?; // media rate
        edits.push(Edit { segment_duration, media_time });
    }
    Ok(edits)
}

fn parse_mdia(p: &[u8], track: &mut Track, tables: &mut SampleTables, depth: usize) -> Parse<()> {
    if depth > MAX_DEPTH {
        return Err(Malformed("boxes nested too deep".into()));
    }
    for child in Children::of(p) {
        let (typ, body) = child?;
        match &typ {
            b"mdhd" => {
                let mut c = Cur::new(body);
                let (version, _) = c.full()?;
                if version == 1 {
                    track.mdhd_creation = c.u64()?;
                    c.skip(8)?;
                    track.timescale = c.u32()?;
                    track.duration = c.u64()?;
                } else {
                    track.mdhd_creation = u64::from(c.u32()?);
                    c.skip(4)?;
                    track.timescale = c.u32()?;
                    track.duration = u64::from(c.u32()?);
                }
            }
            // Only mdia's hdlr says what the track is; QuickTime puts a second,
            // data-reference hdlr ('alis', 'url ') inside minf.
            b"hdlr" if depth == 0 => {
                let mut c = Cur::new(body);
                c.full()?;
                c.skip(4)?;
                track.handler = fourcc_str(&c.fourcc()?);
            }
            b"minf" | b"stbl" => parse_mdia(body, track, tables, depth + 1)?,
            b"stsd" => {
                let mut c = Cur::new(body);
                c.full()?;
                if c.u32()? > 0 {
                    let _size = c.u32()?;
                    let fmt = c.fourcc()?;
                    track.codec = Some(fourcc_str(&fmt));
                    if &fmt == b"tmcd" {
                        // SampleEntry: 6 reserved + 2 data ref; then reserved, flags, timescale, frame duration, frames.
                        c.skip(6 + 2 + 4)?;
                        let flags = c.u32()?;
                        let timescale = c.u32()?;
                        let frame_duration = c.u32()?;
                        let frames = c.u8()?;
                        // The rate is timescale / frame duration (30000/1001 counts as 30), as
                        // ffmpeg reads it; number_of_frames is sometimes written as 29 for that rate.
                        let fps = if frame_duration > 0 {
                            u8::try_from((u64::from(timescale) + u64::from(frame_duration) / 2) / u64::from(frame_duration)).unwrap_or(frames)
                        } else {
                            frames
                        };
                        track.timecode = Some(Timecode { frame: 0, frames_per_second: fps, drop_frame: flags & 1 == 1 });
                    }
                }
            }
            b"stts" => {
                let mut c = Cur::new(body);
                c.full()?;
                let n = c.count(8)?;
                tables.stts = (0..n).map(|_| Ok((c.u32()?, c.u32()?))).collect::<Parse<_>>()?;
            }
            b"ctts" => {
                let mut c = Cur::new(body);
                let (version, _) = c.full()?;
                let n = c.count(8)?;
                tables.ctts = (0..n)
                    .map(|_| {
                        let count = c.u32()?;
                        let raw = c.u32()?;
                        // Version 0 is unsigned by the letter of the spec, but encoders write negative offsets there too.
                        let off = if version == 0 && raw <= i32::MAX as u32 { i64::from(raw) } else { i64::from(raw as i32) };
                        Ok((count, off))
                    })
                    .collect::<Parse<_>>()?;
            }
            b"stsz" => {
                let mut c = Cur::new(body);
                c.full()?;
                tables.constant_size = c.u32()?;
                if tables.constant_size == 0 {
                    let n = c.count(4)?;
                    tables.sizes = (0..n).map(|_| c.u32()).collect::<Parse<_>>()?;
                    tables.size_count = n as u64;
                } else {
                    tables.size_count = u64::from(c.u32()?);
                }
            }
            b"stsc" => {
                let mut c = Cur::new(body);
                c.full()?;
                let n = c.count(12)?;
                tables.stsc = (0..n)
                    .map(|_| {
                        let first = c.u32()?;
                        let per_chunk = c.u32()?;
                        c.skip(4)?;
                        Ok((first, per_chunk))
                    })
                    .collect::<Parse<_>>()?;
            }
            b"stco" => {
                let mut c = Cur::new(body);
                c.full()?;
                let n = c.count(4)?;
                tables.chunk_offsets = (0..n).map(|_| Ok(u64::from(c.u32()?))).collect::<Parse<_>>()?;
            }
            b"co64" => {
                let mut c = Cur::new(body);
                c.full()?;
                let n = c.count(8)?;
                tables.chunk_offsets = (0..n).map(|_| c.u64()).collect::<Parse<_>>()?;
            }
            b"stss" => {
                let mut c = Cur::new(body);
                c.full()?;
                tables.sync = Some(c.count(4)? as u64);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Turn the run-length tables into per-sample decode times and the furthest
/// byte any sample occupies.
fn build_samples(track: &mut Track, t: &SampleTables) -> Parse<()> {
    let declared: u64 = t.stts.iter().map(|&(n, _)| u64::from(n)).sum();
    track.sample_count = if t.size_count > 0 { t.size_count } else { declared };
    track.sync_sample_count = t.sync;
    let keep = usize::try_from(declared).unwrap_or(usize::MAX).min(MAX_SAMPLES);
    let mut dts = Vec::with_capacity(keep);
    let mut time: i64 = 0;
    'runs: for &(count, delta) in &t.stts {
        for _ in 0..count {
            if dts.len() == keep {
                break 'runs;
            }
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
    // sizes from stsz. Work is bounded by the chunk count (which the file's
    // bytes bound), never by a count the file merely declares.
    let total = track.sample_count;
    let mut sample: u64 = 0;
    let n_chunks = t.chunk_offsets.len();
    'chunks: for (k, &(first, per_chunk)) in t.stsc.iter().enumerate() {
        let first = (first as usize).saturating_sub(1);
        let last = t.stsc.get(k + 1).map_or(n_chunks, |&(next, _)| (next as usize).saturating_sub(1).min(n_chunks));
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
            // Per-sample positions, as far as the cap allows.
            let mut at = chunk_offset;
            for k in from..from.saturating_add(n as usize).min(MAX_SAMPLES) {
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
    Ok(())
}

fn parse_udta(p: &[u8], facts: &mut MediaFacts, depth: usize) {
    for child in Children::of(p) {
        let Ok((typ, body)) = child else { return };
        match &typ {
            b"\xa9xyz" => {
                if let Some(s) = quicktime_string(body) {
                    facts.location.get_or_insert(s.clone());
                    facts.metadata.push(("\u{a9}xyz".into(), s));
                }
            }
            [0xa9, ..] => {
                if let Some(s) = quicktime_string(body) {
                    facts.metadata.push((fourcc_str(&typ).replacen('?', "\u{a9}", 1), s));
                }
            }
            b"meta" if depth < 2 => parse_meta(body, facts),
            _ => {}
        }
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
    let mut keys: Vec<String> = Vec::new();
    let mut items: Vec<([u8; 4], &[u8])> = Vec::new();
    for child in Children::of(body) {
        let Ok((typ, b)) = child else { return };
        match &typ {
            b"keys" => {
                let mut c = Cur::new(b);
                if c.full().is_err() {
                    return;
                }
                let Ok(n) = c.count(8) else { return };
                for _ in 0..n {
                    let Ok(size) = c.u32() else { return };
                    let Ok(_ns) = c.fourcc() else { return };
                    let Ok(k) = c.take((size as usize).saturating_sub(8)) else { return };
                    keys.push(String::from_utf8_lossy(k).into_owned());
                }
            }
            b"ilst" => {
                for item in Children::of(b) {
                    let Ok(item) = item else { break };
                    items.push(item);
                }
            }
            _ => {}
        }
    }
    for (typ, b) in items {
        let index = u32::from_be_bytes(typ) as usize;
        let key = if (1..=keys.len()).contains(&index) { keys[index - 1].clone() } else { fourcc_str(&typ).replacen('?', "\u{a9}", 1) };
        for d in Children::of(b) {
            let Ok((dt, db)) = d else { break };
            if &dt == b"data" && db.len() >= 8 {
                let type_code = u32::from_be_bytes(db[..4].try_into().expect("4")) & 0x00ff_ffff;
                if type_code == 1 {
                    let value = String::from_utf8_lossy(&db[8..]).into_owned();
                    if key.ends_with("location.ISO6709") {
                        facts.location.get_or_insert(value.clone());
                    }
                    facts.metadata.push((key.clone(), value));
                }
            }
        }
    }
}

fn parse_moof(moof_offset: u64, p: &[u8], facts: &mut MediaFacts) -> Parse<()> {
    for child in Children::of(p) {
        let (typ, body) = child?;
        if &typ != b"traf" {
            continue;
        }
        let mut track_id = 0u32;
        let mut base = moof_offset;
        let mut default_duration: Option<u32> = None;
        let mut default_size: Option<u32> = None;
        let mut decode_time: Option<u64> = None;
        let mut runs: Vec<&[u8]> = Vec::new();
        for b in Children::of(body) {
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
        let trex = facts.fragment_defaults.iter().find(|d| d.0 == track_id).copied();
        let default_duration = default_duration.or(trex.map(|d| d.1)).unwrap_or(0);
        let default_size = default_size.or(trex.map(|d| d.2)).unwrap_or(0);
        let Some(track) = facts.tracks.iter_mut().find(|t| t.id == track_id) else {
            facts.problem("unknown_track", format!("fragment for track {track_id}, which 'moov' does not declare"));
            continue;
        };
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
            let fits = if per_sample == 0 { n <= MAX_SAMPLES } else { n.checked_mul(per_sample).is_some_and(|b| b <= c.remaining()) };
            if !fits {
                return Err(Malformed(format!("trun declares {n} samples that do not fit")));
            }
            for _ in 0..n {
                let duration = if flags & 0x100 != 0 { c.u32()? } else { default_duration };
                let size = if flags & 0x200 != 0 { c.u32()? } else { default_size };
                if flags & 0x400 != 0 {
                    c.skip(4)?;
                }
                let cts = if flags & 0x800 != 0 {
                    let raw = c.u32()?;
                    if version == 0 { i64::from(raw) } else { i64::from(raw as i32) }
                } else {
                    0
                };
                if track.first_sample_offset.is_none() {
                    track.first_sample_offset = Some(offset);
                }
                if track.sample_offsets.len() < MAX_SAMPLES {
                    track.sample_offsets.push(offset);
                    track.sample_sizes.push(size);
                }
                if track.dts.len() < MAX_SAMPLES {
                    if flags & 0x800 != 0 || !track.cts_offsets.is_empty() {
                        track.cts_offsets.resize(track.dts.len(), 0);
                        track.cts_offsets.push(cts);
                    }
                    track.dts.push(time);
                }
                track.sample_count += 1;
                time = time.saturating_add(i64::from(duration));
                track.last_sample_duration = u64::from(duration);
                offset = offset.saturating_add(u64::from(size));
                track.max_sample_end = track.max_sample_end.max(offset);
            }
        }
        track.duration = track.duration.max(u64::try_from(time).unwrap_or(0));
    }
    Ok(())
}

/// The first frame number of each `tmcd` track lives in its first sample, in
/// `mdat`: four bytes read at that sample's offset, nothing else of `mdat`.
fn read_timecodes<R: Read + Seek>(r: &mut R, facts: &mut MediaFacts) -> io::Result<()> {
    let file_size = facts.file_size;
    for t in facts.tracks.iter_mut() {
        let (Some(tc), Some(offset)) = (t.timecode.as_mut(), t.first_sample_offset) else { continue };
        if offset.checked_add(4).is_none_or(|end| end > file_size) {
            continue;
        }
        r.seek(SeekFrom::Start(offset))?;
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
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
    Some(TrackTiming { start: at(first), end: at(last.saturating_add(last_duration)), median_step: median as f64 / ts, gaps })
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
        assert_eq!(f.major_brand.as_deref(), Some("isom"));
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
