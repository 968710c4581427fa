//! The write-ahead log: every committed batch (one scrape, one import slice) is one framed
//! record, written and fsynced before the samples become visible, so a crash loses at most the
//! batch being written. The log is split into numbered segment files `wal-NNNNNNNNNN`; a
//! snapshot starts a new segment and, once it is safely on disk, deletes the segments it covers.
//! The log covers only the head: what is in block files is never in a segment that is kept.
//!
//! A record names the series it introduces (ref and labels) and then lists samples by ref, so
//! the labels are written once per series and segment rather than once per sample.
//!
//! When a record cannot be written or fsynced (full disk, storage turned read-only, I/O
//! errors) the failure is counted (`Gauges::wal_write_failures`) and logged with the segment's
//! path (at most once a minute while it lasts, and once when writes succeed again), and the
//! batch is still applied in memory: the loops, queries and alerts keep working on what is
//! held. The record is kept and written, in order, before the next one: the first append after
//! the disk frees up makes every batch of the outage durable. Prometheus drops such a batch
//! instead; for a single-host monitor that would make every alert, this one included, go blind
//! exactly when the disk fills. Kept records are bounded ([`UNWRITTEN_LIMIT`]); beyond it the
//! oldest are given up (their samples are durable with the next snapshot that succeeds), and
//! the series they introduced are named in the oldest record kept.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::codec::{self, Malformed, Reader};
use super::series::SeriesRef;
use super::stats::Counters;
use crate::labels::Labels;

const SEGMENT_PREFIX: &str = "wal-";
const RECORD_BATCH: u8 = 1;

/// Bytes of records kept in memory while they cannot be written.
pub const UNWRITTEN_LIMIT: usize = 64 << 20;

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{seq:010}"))
}

/// Segment files in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub struct WalWriter {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Bytes of whole, fsynced records in the current segment.
    bytes: u64,
    /// Older segments still on disk (a snapshot has not covered them yet): (seq, bytes).
    closed: Vec<(u64, u64)>,
    /// A failed write may have left part of a record past `bytes` that could not be cut off
    /// yet; nothing is appended behind it until it is.
    torn: bool,
    /// Framed records that could not be written yet, oldest first.
    unwritten: Vec<Vec<u8>>,
    unwritten_bytes: usize,
    /// [`UNWRITTEN_LIMIT`], lowered by tests.
    unwritten_limit: usize,
    /// fsync each record (see `Options::sync_wal`).
    pub sync: bool,
    failures: FailureLog,
}

/// Keeps a failing disk from flooding the log (which may sit on that same disk): the first
/// failure of an episode is logged, then at most one line per [`FailureLog::EVERY`] with the
/// count since the previous line, and one line when the writes succeed again.
pub(super) struct FailureLog {
    episode_start: Option<Instant>,
    last_line: Option<Instant>,
    since_last_line: u64,
    in_episode: u64,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(60);

    pub(super) const fn new() -> FailureLog {
        FailureLog {
            episode_start: None,
            last_line: None,
            since_last_line: 0,
            in_episode: 0,
        }
    }

    /// Counts one failure; true when it is to be logged now (with [`Self::pending`] failures).
    pub(super) fn failed(&mut self, now: Instant) -> bool {
        self.episode_start.get_or_insert(now);
        self.in_episode += 1;
        self.since_last_line += 1;
        let due = self
            .last_line
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY);
        if due {
            self.last_line = Some(now);
        }
        due
    }

    /// Failures counted since the previous line, including this one; resets the count.
    pub(super) fn pending(&mut self) -> u64 {
        std::mem::take(&mut self.since_last_line)
    }

    /// Ends an episode; returns how many failures it had and how long it lasted, if there was one.
    pub(super) fn succeeded(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let start = self.episode_start.take()?;
        let n = std::mem::take(&mut self.in_episode);
        self.last_line = None;
        self.since_last_line = 0;
        Some((n, now.duration_since(start)))
    }
}

impl WalWriter {
    /// Opens segment `seq` for appending (creating it). `closed`: older segments on disk that
    /// the log still needs, with their sizes.
    pub fn open(dir: &Path, seq: u64, closed: Vec<(u64, u64)>) -> std::io::Result<WalWriter> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        sync_dir(dir)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            seq,
            file,
            bytes,
            closed,
            torn: false,
            unwritten: Vec::new(),
            unwritten_bytes: 0,
            unwritten_limit: UNWRITTEN_LIMIT,
            sync: true,
            failures: FailureLog::new(),
        })
    }

    pub fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.seq)
    }

    /// Bytes in the current segment.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of every segment this log keeps on disk.
    pub fn total_bytes(&self) -> u64 {
        self.bytes + self.closed.iter().map(|c| c.1).sum::<u64>()
    }

    /// Appends one record and waits until it is on disk, after any records kept from failed
    /// writes. A record that cannot be written is counted, logged and kept (see the module
    /// head), and `Ok` is returned: the caller applies the batch in memory. `Err` is never
    /// returned today; the signature stays so a caller may still handle one.
    pub fn log(&mut self, payload: &[u8], counters: &Counters) -> std::io::Result<()> {
        let rec = codec::frame(payload);
        self.unwritten_bytes += rec.len();
        self.unwritten.push(rec);
        let all: Vec<u8> = if self.unwritten.len() == 1 {
            std::mem::take(&mut self.unwritten[0])
        } else {
            self.unwritten.concat()
        };
        match self.write_synced(&all) {
            Ok(()) => {
                self.bytes += all.len() as u64;
                let kept = self.unwritten.len() - 1;
                self.unwritten.clear();
                self.unwritten_bytes = 0;
                counters
                    .wal_bytes
                    .store(self.total_bytes(), std::sync::atomic::Ordering::Relaxed);
                if let Some((n, lasted)) = self.failures.succeeded(Instant::now()) {
                    tracing::warn!(
                        path = %self.path().display(),
                        failures = n,
                        lasted_seconds = lasted.as_secs(),
                        records_written_now = kept,
                        "write-ahead log writes succeed again; the records kept while they failed are written and durable"
                    );
                }
            }
            Err(e) => {
                if self.unwritten.len() == 1 {
                    self.unwritten[0] = all;
                }
                Counters::add(&counters.wal_write_failures, 1);
                self.give_up_beyond_limit();
                if self.failures.failed(Instant::now()) {
                    tracing::error!(
                        path = %self.path().display(),
                        error = %e,
                        failures = self.failures.pending(),
                        kept_records = self.unwritten.len(),
                        "write-ahead log write failed; the record is kept in memory and written before the next one (counted in depin_tsdb_wal_write_failures_total)"
                    );
                }
            }
        }
        Ok(())
    }

    /// Drops the oldest kept records beyond [`UNWRITTEN_LIMIT`]; the series they introduced
    /// are named in the oldest record kept, so a replay still knows them.
    fn give_up_beyond_limit(&mut self) {
        let mut names: Vec<(SeriesRef, Labels)> = Vec::new();
        while self.unwritten_bytes > self.unwritten_limit && self.unwritten.len() > 1 {
            let rec = self.unwritten.remove(0);
            self.unwritten_bytes -= rec.len();
            let given_up = rec
                .get(codec::FRAME_HEADER..)
                .and_then(|p| BatchRecord::decode(p).ok());
            names.extend(given_up.map(|b| b.series).unwrap_or_default());
        }
        if names.is_empty() {
            return;
        }
        let Some(first) = self.unwritten.first_mut() else {
            return;
        };
        if let Some(mut rec) = first
            .get(codec::FRAME_HEADER..)
            .and_then(|p| BatchRecord::decode(p).ok())
        {
            for (r, l) in names {
                if !rec.series.iter().any(|(x, _)| *x == r) {
                    rec.series.push((r, l));
                }
            }
            let framed = codec::frame(&rec.encode());
            self.unwritten_bytes = self.unwritten_bytes - first.len() + framed.len();
            *first = framed;
        }
    }

    /// Records kept from failed writes: a snapshot that covers them takes them (see
    /// [`WalWriter::restore_unwritten`] if it fails).
    pub fn take_unwritten(&mut self) -> Vec<Vec<u8>> {
        self.unwritten_bytes = 0;
        std::mem::take(&mut self.unwritten)
    }

    /// Puts back records a failed snapshot took, before any kept since.
    pub fn restore_unwritten(&mut self, mut recs: Vec<Vec<u8>>) {
        recs.append(&mut self.unwritten);
        self.unwritten_bytes = recs.iter().map(Vec::len).sum();
        self.unwritten = recs;
        self.give_up_beyond_limit();
    }

    /// Writes and fsyncs framed records at the end of the whole records; on failure cuts
    /// off what part of them reached the file, or every later record would sit behind damage.
    fn write_synced(&mut self, rec: &[u8]) -> std::io::Result<()> {
        if self.torn {
            self.file.set_len(self.bytes)?;
            self.torn = false;
        }
        let sync = self.sync;
        let written =
            self.file
                .write_all(rec)
                .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Append mode writes at the file's end, so the cut must succeed before the next
            // record; until then `torn` stays set and the next write retries it first.
            self.torn = self.file.set_len(self.bytes).is_err();
            return Err(e);
        }
        Ok(())
    }

    /// Starts the next segment for a snapshot; returns the sequence number of the newest
    /// segment the snapshot covers. An empty segment is kept (nothing to cover), so failed
    /// snapshots leave no trail of empty segments behind.
    pub fn rotate(&mut self) -> std::io::Result<u64> {
        let old = self.seq;
        if self.bytes == 0 && !self.torn {
            return Ok(old - 1);
        }
        let mut next = WalWriter::open(&self.dir, old + 1, Vec::new())?;
        if self.torn {
            // Best effort: the old segment's replay stops at the damage either way.
            let _ = self.file.set_len(self.bytes);
        }
        next.closed = std::mem::take(&mut self.closed);
        next.closed.push((old, self.bytes));
        next.unwritten = std::mem::take(&mut self.unwritten);
        next.unwritten_bytes = self.unwritten_bytes;
        next.failures = std::mem::replace(&mut self.failures, FailureLog::new());
        next.sync = self.sync;
        *self = next;
        Ok(old)
    }

    /// Deletes the segments up to `covered` (a snapshot holds what they held); returns the
    /// first deletion that failed.
    pub fn remove_covered(
        &mut self,
        covered: u64,
        counters: &Counters,
    ) -> Result<(), (PathBuf, std::io::Error)> {
        let mut result = Ok(());
        for (seq, p) in list_segments(&self.dir).map_err(|e| (self.dir.clone(), e))? {
            if seq <= covered && seq != self.seq {
                if let Err(e) = std::fs::remove_file(&p) {
                    result = result.and(Err((p, e)));
                    continue;
                }
                self.closed.retain(|c| c.0 != seq);
            }
        }
        counters
            .wal_bytes
            .store(self.total_bytes(), std::sync::atomic::Ordering::Relaxed);
        result
    }
}

/// One committed batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchRecord {
    /// Series first named in this batch.
    pub series: Vec<(SeriesRef, Labels)>,
    pub samples: Vec<(SeriesRef, i64, f64)>,
}

impl BatchRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + self.samples.len() * 12);
        b.push(RECORD_BATCH);
        codec::put_uvarint(&mut b, self.series.len() as u64);
        for (r, l) in &self.series {
            codec::put_uvarint(&mut b, *r);
            codec::put_labels(&mut b, l);
        }
        codec::put_uvarint(&mut b, self.samples.len() as u64);
        // Timestamps as deltas from the previous sample: within a scrape they are all equal.
        let mut prev_t = 0i64;
        for &(r, t, v) in &self.samples {
            codec::put_uvarint(&mut b, r);
            codec::put_varint(&mut b, t.wrapping_sub(prev_t));
            b.extend_from_slice(&v.to_bits().to_le_bytes());
            prev_t = t;
        }
        b
    }

    pub fn decode(payload: &[u8]) -> Result<BatchRecord, Malformed> {
        let mut r = Reader::new(payload);
        if r.u8()? != RECORD_BATCH {
            return Err(Malformed {
                at: 0,
                what: "unknown record type",
            });
        }
        let mut rec = BatchRecord::default();
        let n = r.uvarint()? as usize;
        for _ in 0..n.min(payload.len()) {
            let sref = r.uvarint()?;
            rec.series.push((sref, r.labels()?));
        }
        let n = r.uvarint()? as usize;
        rec.samples.reserve(n.min(payload.len()));
        let mut prev_t = 0i64;
        for _ in 0..n {
            let sref = r.uvarint()?;
            let t = prev_t.wrapping_add(r.varint()?);
            let v = f64::from_bits(r.u64_le()?);
            rec.samples.push((sref, t, v));
            prev_t = t;
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> Counters {
        Counters::default()
    }

    #[test]
    fn batch_records_round_trip_and_segments_sort() {
        let rec = BatchRecord {
            series: vec![(7, Labels::from_pairs([("__name__", "a")]))],
            samples: vec![
                (7, 1000, 1.5),
                (3, 1000, super::super::stale_nan()),
                (7, 995, -0.0),
            ],
        };
        let back = BatchRecord::decode(&rec.encode()).unwrap();
        assert_eq!(back.series, rec.series);
        let bits = |r: &BatchRecord| {
            r.samples
                .iter()
                .map(|s| (s.0, s.1, s.2.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&back), bits(&rec));

        let dir = tempfile::tempdir().unwrap();
        let c = counters();
        let mut w = WalWriter::open(dir.path(), 9, Vec::new()).unwrap();
        w.log(&rec.encode(), &c).unwrap();
        assert_eq!(w.rotate().unwrap(), 9);
        w.log(&rec.encode(), &c).unwrap();
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![9, 10]);
        let on_disk: u64 = segs
            .iter()
            .map(|s| std::fs::metadata(&s.1).unwrap().len())
            .sum();
        assert_eq!(w.total_bytes(), on_disk, "every kept segment is counted");
        assert_eq!(
            c.wal_bytes.load(std::sync::atomic::Ordering::Relaxed),
            on_disk
        );
        let bytes = std::fs::read(&segs[1].1).unwrap();
        let (frames, dmg) = codec::read_frames(&bytes);
        assert!(dmg.is_none());
        assert_eq!(BatchRecord::decode(frames[0]).unwrap().series, rec.series);
        w.remove_covered(9, &c).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        assert_eq!(w.total_bytes(), w.bytes());
    }

    #[test]
    fn rotating_an_empty_segment_starts_no_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 4, Vec::new()).unwrap();
        // Nothing to cover but what came before segment 4.
        assert_eq!(w.rotate().unwrap(), 3);
        assert_eq!(w.rotate().unwrap(), 3);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        assert_eq!(w.path(), segment_path(dir.path(), 4));
    }

    /// Swaps the segment's file for `/dev/full`, whose writes fail with "No space left on
    /// device" (a real ENOSPC), and back: a disk filling and freeing.
    fn fill(w: &mut WalWriter) -> File {
        std::mem::replace(
            &mut w.file,
            OpenOptions::new().append(true).open("/dev/full").unwrap(),
        )
    }

    #[test]
    fn a_failed_write_is_kept_and_written_before_the_next_record() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full on this system to make writes fail");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let c = counters();
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        let mut w = WalWriter::open(dir.path(), 1, Vec::new()).unwrap();
        let first = BatchRecord {
            series: vec![(1, a.clone())],
            samples: vec![(1, 1000, 1.0)],
        };
        w.log(&first.encode(), &c).unwrap();
        let good_len = w.bytes();

        let real = fill(&mut w);
        let failed = BatchRecord {
            series: vec![(2, b.clone())],
            samples: vec![(1, 2000, 2.0), (2, 2000, 5.0)],
        };
        // The caller is told nothing went wrong: it keeps the batch in memory.
        w.log(&failed.encode(), &c).unwrap();
        assert_eq!(
            c.wal_write_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(w.bytes(), good_len);

        // The disk frees up: the next record brings the kept one with it, in order.
        w.file = real;
        let after = BatchRecord {
            series: vec![],
            samples: vec![(2, 3000, 6.0)],
        };
        w.log(&after.encode(), &c).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        assert_eq!(bytes.len() as u64, w.bytes());
        let (frames, dmg) = codec::read_frames(&bytes);
        assert!(dmg.is_none(), "no partial record in the segment: {dmg:?}");
        let recs: Vec<BatchRecord> = frames
            .iter()
            .map(|f| BatchRecord::decode(f).unwrap())
            .collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].series, vec![(2, b)]);
        assert_eq!(recs[1].samples.len(), 2);
        assert_eq!(recs[2].samples.len(), 1);
    }

    #[test]
    fn records_beyond_the_limit_are_given_up_and_their_series_named_again() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full on this system to make writes fail");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let c = counters();
        let mut w = WalWriter::open(dir.path(), 1, Vec::new()).unwrap();
        w.unwritten_limit = 100;
        let real = fill(&mut w);
        let b = Labels::from_pairs([("__name__", "b")]);
        let named = BatchRecord {
            series: vec![(2, b.clone())],
            samples: (0..10).map(|i| (2, i, 1.0)).collect(),
        };
        w.log(&named.encode(), &c).unwrap();
        let more = BatchRecord {
            series: vec![],
            samples: (10..20).map(|i| (2, i, 1.0)).collect(),
        };
        w.log(&more.encode(), &c).unwrap();
        assert_eq!(w.unwritten.len(), 1, "the oldest record is given up");
        w.file = real;
        w.log(&BatchRecord::default().encode(), &c).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let (frames, _) = codec::read_frames(&bytes);
        let first = BatchRecord::decode(frames[0]).unwrap();
        assert_eq!(first.series, vec![(2, b)], "series b is named again");
        assert_eq!(first.samples.len(), 10);
        assert_eq!(first.samples[0].1, 10, "the oldest record was given up");
    }

    #[test]
    fn a_failed_rotation_keeps_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let c = counters();
        let mut w = WalWriter::open(dir.path(), 4, Vec::new()).unwrap();
        w.log(&BatchRecord::default().encode(), &c).unwrap();
        // The next segment's name is taken by a directory: opening it as a file fails.
        std::fs::create_dir(segment_path(dir.path(), 5)).unwrap();
        assert!(w.rotate().is_err());
        assert_eq!(w.path(), segment_path(dir.path(), 4));
        let before = w.bytes();
        w.log(&BatchRecord::default().encode(), &c).unwrap();
        assert!(w.bytes() > before, "the old segment still takes records");
    }

    #[test]
    fn failure_lines_come_once_a_minute_while_failing_and_once_on_recovery() {
        let mut f = FailureLog::new();
        let t0 = Instant::now();
        assert!(f.failed(t0), "the first failure is logged");
        assert_eq!(f.pending(), 1);
        let logged: Vec<bool> = (1..=5)
            .map(|i| f.failed(t0 + Duration::from_secs(10 * i)))
            .collect();
        assert_eq!(logged, vec![false; 5]);
        assert!(f.failed(t0 + Duration::from_secs(61)));
        assert_eq!(
            f.pending(),
            6,
            "the line says how many failed since the last one"
        );
        assert_eq!(
            f.succeeded(t0 + Duration::from_secs(90)),
            Some((7, Duration::from_secs(90)))
        );
        assert_eq!(f.succeeded(t0 + Duration::from_secs(95)), None);
        assert!(
            f.failed(t0 + Duration::from_secs(100)),
            "a new episode logs at once"
        );
    }
}
