//! Gaps, overlaps, sequence breaks and task coverage over millions of
//! segments, and the clock checks of Article 10.
//!
//! Inputs are columns (one slice per field, as numpy hands them over); times
//! are int64 nanoseconds since the Unix epoch, UTC. Devices are integer codes
//! (the Python side maps names to codes). Every function is a sort followed by
//! one linear scan, so 10^7 segments take about a second.

use rayon::prelude::*;

/// Nanoseconds in one second.
pub const NS: i64 = 1_000_000_000;
/// Sequence number meaning "the naming gives none".
pub const NO_SEQUENCE: i64 = -1;

/// Segments as columns: `device[i]` recorded from `start[i]` to `end[i]`,
/// with file sequence number `sequence[i]` (or [`NO_SEQUENCE`]).
#[derive(Clone, Copy)]
pub struct Segments<'a> {
    pub device: &'a [i64],
    pub start: &'a [i64],
    pub end: &'a [i64],
    pub sequence: &'a [i64],
}

/// Intervals found on one device between two segments (by index into the input).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Intervals {
    pub device: Vec<i64>,
    pub start: Vec<i64>,
    pub end: Vec<i64>,
    /// The segment before the interval (the one whose end reaches furthest).
    pub before: Vec<u64>,
    /// The segment after (for overlaps: the one that starts inside another).
    pub after: Vec<u64>,
}

impl Intervals {
    fn push(&mut self, device: i64, start: i64, end: i64, before: usize, after: usize) {
        self.device.push(device);
        self.start.push(start);
        self.end.push(end);
        self.before.push(before as u64);
        self.after.push(after as u64);
    }

    fn extend(&mut self, other: Intervals) {
        self.device.extend(other.device);
        self.start.extend(other.start);
        self.end.extend(other.end);
        self.before.extend(other.before);
        self.after.extend(other.after);
    }

    pub fn len(&self) -> usize {
        self.device.len()
    }

    pub fn is_empty(&self) -> bool {
        self.device.is_empty()
    }
}

/// Missing file numbers: on `device`, after sequence number `last_seen`
/// (segment `before`) the next one is `next_seen` (segment `after`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SequenceBreaks {
    pub device: Vec<i64>,
    pub last_seen: Vec<i64>,
    pub next_seen: Vec<i64>,
    pub before: Vec<u64>,
    pub after: Vec<u64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub gaps: Intervals,
    pub overlaps: Intervals,
    pub sequence_breaks: SequenceBreaks,
}

/// Why the columns cannot be analysed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimelineError {
    #[error("columns differ in length: {0}")]
    LengthMismatch(String),
    #[error("segment {index} ends before it starts ({start} > {end})")]
    NegativeDuration { index: usize, start: i64, end: i64 },
}

fn check_lengths(names: &[(&str, usize)]) -> Result<(), TimelineError> {
    if names.windows(2).all(|w| w[0].1 == w[1].1) {
        return Ok(());
    }
    Err(TimelineError::LengthMismatch(names.iter().map(|(n, l)| format!("{n}={l}")).collect::<Vec<_>>().join(", ")))
}

fn check_intervals(start: &[i64], end: &[i64]) -> Result<(), TimelineError> {
    match start.par_iter().zip(end).position_any(|(s, e)| e < s) {
        Some(index) => Err(TimelineError::NegativeDuration { index, start: start[index], end: end[index] }),
        None => Ok(()),
    }
}

/// Dense group numbers for device codes: `device - min` when the codes are
/// compact (the Python side hands over 0..n), otherwise ranks of the sorted
/// distinct codes. Groups keep the order of the codes.
fn device_groups(device: &[i64]) -> (Vec<u32>, usize) {
    let (Some(&min), Some(&max)) = (device.par_iter().min(), device.par_iter().max()) else { return (Vec::new(), 0) };
    let span = (i128::from(max) - i128::from(min)) as u128;
    if span < (2 * device.len() as u128 + 1024).min(u32::MAX as u128) {
        return (device.par_iter().map(|&d| (d - min) as u32).collect(), span as usize + 1);
    }
    let mut codes = device.to_vec();
    codes.par_sort_unstable();
    codes.dedup();
    (device.par_iter().map(|d| codes.binary_search(d).expect("code is present") as u32).collect(), codes.len())
}

/// Rows bucketed by device: `rows[bounds[g]..bounds[g + 1]]` are group g's,
/// each bucket sorted by `key`. A counting scatter reads the columns once,
/// front to back, so 10^7 shuffled rows cost no random reads; each bucket
/// then sorts inside the cache, buckets in parallel.
fn bucket_by_device<T: Send + Copy + Default, K: Ord>(
    groups: &[u32],
    n_groups: usize,
    row: impl Fn(usize) -> Option<T> + Sync,
    key: impl Fn(&T) -> K + Sync,
) -> (Vec<T>, Vec<usize>) {
    let mut bounds = vec![0usize; n_groups + 1];
    let mut rows: Vec<Option<T>> = Vec::new();
    rows.reserve_exact(groups.len());
    for (i, &g) in groups.iter().enumerate() {
        if let Some(r) = row(i) {
            bounds[g as usize + 1] += 1;
            rows.push(Some(r));
        } else {
            rows.push(None);
        }
    }
    for g in 0..n_groups {
        bounds[g + 1] += bounds[g];
    }
    let mut next = bounds.clone();
    let mut out = vec![T::default(); bounds[n_groups]];
    for (r, &g) in rows.into_iter().zip(groups) {
        if let Some(r) = r {
            out[next[g as usize]] = r;
            next[g as usize] += 1;
        }
    }
    let mut slices: Vec<&mut [T]> = Vec::with_capacity(n_groups);
    let mut rest = out.as_mut_slice();
    for g in 0..n_groups {
        let (head, tail) = rest.split_at_mut(bounds[g + 1] - bounds[g]);
        slices.push(head);
        rest = tail;
    }
    slices.into_par_iter().for_each(|b| b.sort_unstable_by_key(&key));
    (out, bounds)
}

/// Per device: gaps longer than `gap_tolerance` ns, overlaps of any length,
/// and breaks in the file numbering.
pub fn analyse(seg: Segments<'_>, gap_tolerance: i64) -> Result<Analysis, TimelineError> {
    check_lengths(&[
        ("device", seg.device.len()),
        ("start", seg.start.len()),
        ("end", seg.end.len()),
        ("sequence", seg.sequence.len()),
    ])?;
    if seg.device.len() > u32::MAX as usize {
        return Err(TimelineError::LengthMismatch(format!("{} segments exceed 2^32", seg.device.len())));
    }
    check_intervals(seg.start, seg.end)?;
    let (groups, n_groups) = device_groups(seg.device);
    let ((by_time, time_bounds), (by_seq, seq_bounds)) = rayon::join(
        || bucket_by_device(&groups, n_groups, |i| Some((seg.start[i], seg.end[i], i as u32)), |&(s, e, _)| (s, e)),
        || {
            bucket_by_device(
                &groups,
                n_groups,
                |i| (seg.sequence[i] != NO_SEQUENCE).then(|| (seg.sequence[i], i as u32)),
                |&(q, _)| q,
            )
        },
    );
    // Each device's scan is independent: run them in parallel, then concatenate in device order.
    let per_device: Vec<(Intervals, Intervals, SequenceBreaks)> = (0..n_groups)
        .into_par_iter()
        .map(|g| {
            let (mut gaps, mut overlaps, mut breaks) =
                (Intervals::default(), Intervals::default(), SequenceBreaks::default());
            let rows = &by_time[time_bounds[g]..time_bounds[g + 1]];
            if let Some(&(_, first_end, first)) = rows.first() {
                let d = seg.device[first as usize];
                let (mut reach, mut reach_idx) = (first_end, first as usize);
                for &(s, e, i) in &rows[1..] {
                    let i = i as usize;
                    if s > reach.saturating_add(gap_tolerance) {
                        gaps.push(d, reach, s, reach_idx, i);
                    } else if s < reach {
                        overlaps.push(d, s, e.min(reach), reach_idx, i);
                    }
                    if e > reach {
                        (reach, reach_idx) = (e, i);
                    }
                }
            }
            for w in by_seq[seq_bounds[g]..seq_bounds[g + 1]].windows(2) {
                let ((qa, a), (qb, b)) = (w[0], w[1]);
                if qb > qa.saturating_add(1) {
                    breaks.device.push(seg.device[a as usize]);
                    breaks.last_seen.push(qa);
                    breaks.next_seen.push(qb);
                    breaks.before.push(u64::from(a));
                    breaks.after.push(u64::from(b));
                }
            }
            (gaps, overlaps, breaks)
        })
        .collect();
    let mut out = Analysis::default();
    for (gaps, overlaps, breaks) in per_device {
        out.gaps.extend(gaps);
        out.overlaps.extend(overlaps);
        let sb = &mut out.sequence_breaks;
        sb.device.extend(breaks.device);
        sb.last_seen.extend(breaks.last_seen);
        sb.next_seen.extend(breaks.next_seen);
        sb.before.extend(breaks.before);
        sb.after.extend(breaks.after);
    }
    Ok(out)
}

/// How much of each task window its device's segments cover.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Covered nanoseconds per task window.
    pub covered: Vec<i64>,
    /// Uncovered sub-intervals: the task window (by index) and the interval.
    pub uncovered_task: Vec<u64>,
    pub uncovered_start: Vec<i64>,
    pub uncovered_end: Vec<i64>,
}

/// Coverage of task windows (`task_device[j]` should record from
/// `task_start[j]` to `task_end[j]`) by the segments of that device.
pub fn coverage(
    seg_device: &[i64],
    seg_start: &[i64],
    seg_end: &[i64],
    task_device: &[i64],
    task_start: &[i64],
    task_end: &[i64],
) -> Result<Coverage, TimelineError> {
    check_lengths(&[("device", seg_device.len()), ("start", seg_start.len()), ("end", seg_end.len())])?;
    check_lengths(&[
        ("task_device", task_device.len()),
        ("task_start", task_start.len()),
        ("task_end", task_end.len()),
    ])?;
    check_intervals(seg_start, seg_end)?;
    check_intervals(task_start, task_end)?;
    // One grouping for segments and tasks alike, so a task finds its device's bucket.
    let all: Vec<i64> = seg_device.iter().chain(task_device).copied().collect();
    let (groups, n_groups) = device_groups(&all);
    let (seg_groups, task_groups) = groups.split_at(seg_device.len());
    let (rows, bounds) = bucket_by_device(seg_groups, n_groups, |i| Some((seg_start[i], seg_end[i])), |&r| r);
    // Running maximum of `end` within each bucket: monotone, so the first
    // segment that can reach into a window is a binary search away.
    let mut reach = vec![0i64; rows.len()];
    for g in 0..n_groups {
        let mut r = i64::MIN;
        for k in bounds[g]..bounds[g + 1] {
            r = r.max(rows[k].1);
            reach[k] = r;
        }
    }
    let per_task: Vec<(i64, Vec<(i64, i64)>)> = (0..task_device.len())
        .into_par_iter()
        .map(|j| {
            let (ts, te) = (task_start[j], task_end[j]);
            let g = task_groups[j] as usize;
            let (lo, hi) = (bounds[g], bounds[g + 1]);
            let first = lo + reach[lo..hi].partition_point(|&r| r <= ts);
            let mut covered = 0i64;
            let mut holes = Vec::new();
            let mut cursor = ts; // everything before `cursor` is accounted for
            for &(s, e) in &rows[first..hi] {
                if s >= te {
                    break;
                }
                if e <= cursor || e == s {
                    continue; // already covered, or an empty segment that covers nothing
                }
                if s > cursor {
                    holes.push((cursor, s));
                    cursor = s;
                }
                let until = e.min(te);
                covered += until - cursor;
                cursor = until;
                if cursor >= te {
                    break;
                }
            }
            if cursor < te {
                holes.push((cursor, te));
            }
            (covered, holes)
        })
        .collect();
    let mut out = Coverage::default();
    for (j, (covered, holes)) in per_task.into_iter().enumerate() {
        out.covered.push(covered);
        for (s, e) in holes {
            out.uncovered_task.push(j as u64);
            out.uncovered_start.push(s);
            out.uncovered_end.push(e);
        }
    }
    Ok(out)
}

/// Classic values a device clock falls back to when its battery dies:
/// the MP4 epoch, the Unix epoch and the turn of the millennium.
pub const CLOCK_RESET_EPOCHS: [(i64, &str); 3] =
    [(-2_082_844_800 * NS, "1904-01-01"), (0, "1970-01-01"), (946_684_800 * NS, "2000-01-01")];

/// For each time: 0 when plausible, 1 when before `floor`, or 2 + k when
/// within a year after reset epoch k of [`CLOCK_RESET_EPOCHS`] (which names it).
/// The year is added to the epoch, never subtracted from the time: `t - epoch`
/// wrapped around for times near the end of int64 with a floor past 2195.
pub fn clock_unset(times: &[i64], floor: i64) -> Vec<u8> {
    const YEAR: i64 = 366 * 86_400 * NS;
    times
        .par_iter()
        .map(|&t| {
            if t >= floor {
                return 0;
            }
            CLOCK_RESET_EPOCHS.iter().position(|&(epoch, _)| t >= epoch && t < epoch + YEAR).map_or(1, |k| 2 + k as u8)
        })
        .collect()
}

/// True where a time lies more than `tolerance` after `reference` (a clock running ahead).
pub fn clock_future(times: &[i64], reference: i64, tolerance: i64) -> Vec<bool> {
    times.par_iter().map(|&t| t > reference.saturating_add(tolerance)).collect()
}

/// True where two readings of the same moment differ by more than `tolerance`
/// (the time in a file's name against the time in its container).
pub fn time_mismatch(a: &[i64], b: &[i64], tolerance: i64) -> Result<Vec<bool>, TimelineError> {
    check_lengths(&[("a", a.len()), ("b", b.len())])?;
    Ok(a.par_iter().zip(b).map(|(&x, &y)| (i128::from(x) - i128::from(y)).abs() > i128::from(tolerance)).collect())
}

/// Device-clock times corrected to the trusted clock.
///
/// At each docking the station read the device clock (`device_readings[k]`)
/// and its own trusted clock (`trusted_readings[k]`) at the same instant. The
/// device's error is taken as linear between two readings (a clock drifts
/// steadily) and constant before the first and after the last.
pub fn correct_times(
    times: &[i64],
    device_readings: &[i64],
    trusted_readings: &[i64],
) -> Result<Vec<i64>, TimelineError> {
    check_lengths(&[("device_readings", device_readings.len()), ("trusted_readings", trusted_readings.len())])?;
    let mut readings: Vec<(i64, i64)> =
        device_readings.iter().zip(trusted_readings).map(|(&d, &t)| (d, t.saturating_sub(d))).collect();
    readings.sort_unstable();
    if readings.is_empty() {
        return Ok(times.to_vec());
    }
    Ok(times
        .par_iter()
        .map(|&t| {
            let k = readings.partition_point(|&(d, _)| d <= t);
            let offset = if k == 0 {
                readings[0].1
            } else if k == readings.len() {
                readings[k - 1].1
            } else {
                let ((d0, o0), (d1, o1)) = (readings[k - 1], readings[k]);
                let span = i128::from(d1) - i128::from(d0);
                if span == 0 {
                    o1
                } else {
                    (i128::from(o0) + (i128::from(o1) - i128::from(o0)) * (i128::from(t) - i128::from(d0)) / span)
                        as i64
                }
            };
            t.saturating_add(offset)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs<'a>(d: &'a [i64], s: &'a [i64], e: &'a [i64], q: &'a [i64]) -> Segments<'a> {
        Segments { device: d, start: s, end: e, sequence: q }
    }

    #[test]
    fn gaps_overlaps_and_breaks_per_device() {
        // Device 1: [0,10) [10,20) [25,30) [28,40); device 2: [0,5) [100,110); shuffled input order.
        let d = [1, 2, 1, 1, 2, 1];
        let s = [25, 100, 0, 10, 0, 28];
        let e = [30, 110, 10, 20, 5, 40];
        let q = [3, 2, 1, 2, 1, 5];
        let a = analyse(segs(&d, &s, &e, &q), 2).unwrap();
        assert_eq!(
            (a.gaps.device.clone(), a.gaps.start.clone(), a.gaps.end.clone()),
            (vec![1, 2], vec![20, 5], vec![25, 100])
        );
        assert_eq!((a.overlaps.start.clone(), a.overlaps.end.clone()), (vec![28], vec![30]));
        assert_eq!((a.sequence_breaks.last_seen.clone(), a.sequence_breaks.next_seen.clone()), (vec![3], vec![5]));
        assert_eq!(a.sequence_breaks.before, vec![0]);
        // A gap within tolerance is no gap.
        assert_eq!(analyse(segs(&d, &s, &e, &q), 5).unwrap().gaps.len(), 1);
    }

    #[test]
    fn contained_segment_is_an_overlap_and_reach_is_kept() {
        let a = analyse(segs(&[0, 0, 0], &[0, 10, 50], &[100, 20, 120], &[-1, -1, -1]), 0).unwrap();
        assert_eq!(a.overlaps.start, vec![10, 50]);
        assert_eq!(a.overlaps.end, vec![20, 100]);
        assert!(a.gaps.is_empty());
    }

    #[test]
    fn bad_columns_are_errors() {
        assert!(matches!(analyse(segs(&[0], &[1, 2], &[3], &[0]), 0), Err(TimelineError::LengthMismatch(_))));
        assert_eq!(
            analyse(segs(&[0], &[5], &[4], &[0]), 0),
            Err(TimelineError::NegativeDuration { index: 0, start: 5, end: 4 })
        );
    }

    #[test]
    fn coverage_of_task_windows() {
        let c =
            coverage(&[7, 7, 7, 8], &[0, 50, 60, 0], &[40, 55, 200, 1000], &[7, 7, 9], &[10, 45, 0], &[100, 58, 10])
                .unwrap();
        assert_eq!(c.covered, vec![30 + 5 + 40, 5 + 0, 0]);
        assert_eq!(c.uncovered_task, vec![0, 0, 1, 1, 2]);
        assert_eq!(c.uncovered_start, vec![40, 55, 45, 55, 0]);
        assert_eq!(c.uncovered_end, vec![50, 60, 50, 58, 10]);
    }

    #[test]
    fn clock_checks() {
        let floor = 1_262_304_000 * NS; // 2010-01-01
        let t = [0, 946_684_800 * NS + 3600 * NS, 1_000_000_000 * NS, -2_082_844_800 * NS, 1_700_000_000 * NS];
        assert_eq!(clock_unset(&t, floor), vec![3, 4, 1, 2, 0]);
        assert_eq!(clock_future(&[10, 20, 31], 20, 10), vec![false, false, true]);
        // A time near the end of int64 under a late floor is before the floor, not a 1904 reset.
        assert_eq!(clock_unset(&[i64::MAX - 2, i64::MAX - 1, i64::MAX], i64::MAX), vec![1, 1, 0]);
        assert_eq!(time_mismatch(&[0, 100], &[2, 0], 5).unwrap(), vec![false, true]);
    }

    // Found by cargo-mutants (scripts/mutants --rust): each edge below survived a mutant.
    #[test]
    fn edges_that_mutants_survived() {
        // File number 1 counts and -1 means none: 1 then 3 is a break, the unnumbered file is not in it.
        let a = analyse(segs(&[0, 0, 0], &[0, 10, 20], &[10, 20, 30], &[1, NO_SEQUENCE, 3]), 0).unwrap();
        assert_eq!((a.sequence_breaks.last_seen, a.sequence_breaks.next_seen), (vec![1], vec![3]));
        // A zero-length segment is valid (a file with no samples), only a negative one is an error.
        assert!(analyse(segs(&[0], &[5], &[5], &[NO_SEQUENCE]), 0).is_ok());
        // The interval lists count what they hold.
        let a = analyse(segs(&[0, 0, 0], &[0, 20, 25], &[10, 30, 40], &[-1, -1, -1]), 0).unwrap();
        assert_eq!((a.gaps.len(), a.gaps.is_empty(), a.overlaps.len(), a.overlaps.is_empty()), (1, false, 1, false));
        let none = analyse(segs(&[0], &[0], &[1], &[-1]), 0).unwrap();
        assert_eq!((none.gaps.len(), none.gaps.is_empty()), (0, true));
        // Device codes far apart (and on both sides of zero) are ranked, not laid out densely:
        // a dense layout would need a bucket per code in between, or wrap around u32.
        for far in [[0, i64::MAX / 2], [-(1 << 40), 1 << 40]] {
            let d = [far[1], far[0], far[1], far[0]];
            let a = analyse(segs(&d, &[0, 0, 20, 10], &[10, 10, 30, 11], &[-1; 4]), 0).unwrap();
            assert_eq!(
                (a.gaps.device.clone(), a.gaps.start.clone(), a.gaps.end.clone()),
                (vec![far[1]], vec![10], vec![20])
            );
            assert!(a.overlaps.is_empty());
        }
    }

    // More edges cargo-mutants found unguarded: each comparison exactly at its boundary.
    #[test]
    fn boundaries_that_mutants_survived() {
        // Two segments end together: the gap after them is "after" the first one (ties keep the earlier).
        let a = analyse(segs(&[0, 0, 0], &[0, 5, 20], &[10, 10, 30], &[-1, -1, -1]), 0).unwrap();
        assert_eq!((a.gaps.start.clone(), a.gaps.before.clone(), a.gaps.after.clone()), (vec![10], vec![0], vec![2]));
        // Coverage: touching segments leave no hole; an empty segment inside a hole does not split it.
        let c = coverage(&[0, 0], &[0, 50], &[50, 100], &[0], &[0], &[100]).unwrap();
        assert_eq!((c.covered.clone(), c.uncovered_start.clone()), (vec![100], vec![]));
        let c = coverage(&[0, 0], &[10, 50], &[10, 60], &[0], &[0], &[100]).unwrap();
        assert_eq!((c.covered, c.uncovered_start, c.uncovered_end), (vec![10], vec![0, 60], vec![50, 100]));
        // A reset clock is named for a year after its epoch (366 days), not a moment longer.
        const YEAR: i64 = 366 * 86_400 * NS;
        let y2k = 946_684_800 * NS;
        let floor = 1_104_537_600 * NS;
        assert_eq!(clock_unset(&[y2k + 200 * 86_400 * NS, y2k + YEAR - 1, y2k + YEAR], floor), vec![4, 4, 1]);
        // Ahead of the reference by exactly the tolerance is not the future; one more nanosecond is.
        assert_eq!(clock_future(&[30, 31], 20, 10), vec![false, true]);
        // Name and container apart by exactly the tolerance agree; equal large times agree.
        assert_eq!(time_mismatch(&[105, 106, 1_000_000], &[100, 100, 1_000_000], 5).unwrap(), vec![false, true, false]);
        // Clock correction between dockings that are not at time zero: 10 s slow at 1000 s, 30 s slow at 2000 s.
        let got = correct_times(&[1500 * NS, 1250 * NS], &[1000 * NS, 2000 * NS], &[1010 * NS, 2030 * NS]).unwrap();
        assert_eq!(got, vec![1520 * NS, 1265 * NS]);
    }

    #[test]
    fn linear_clock_correction_between_dockings() {
        // Device 10 s slow at docking one (t=0), 30 s slow at docking two (t=1000 s).
        let dev = [0, 1000 * NS];
        let trusted = [10 * NS, 1030 * NS];
        let got = correct_times(&[-5 * NS, 0, 500 * NS, 2000 * NS], &dev, &trusted).unwrap();
        assert_eq!(got, vec![5 * NS, 10 * NS, 520 * NS, 2030 * NS]);
    }
}
