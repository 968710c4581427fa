//! The write-ahead log: every committed batch (one scrape, one import slice) is one framed
//! record, written and fsynced before the samples become visible, so a crash loses at most the
//! batch being written. The log is split into numbered segment files `wal-NNNNNNNNNN`; a
//! snapshot starts a new segment and, once it is safely on disk, deletes the segments it covers.
//!
//! A record names the series it introduces (ref and labels) and then lists samples by ref, so
//! the labels are written once per series and segment rather than once per sample.
//!
//! When a record cannot be written or fsynced (full disk, storage turned read-only, I/O
//! errors) the failure is counted in `depin_tsdb_wal_write_failures_total` and logged with the
//! segment's path (at most once a minute while it lasts, and once when writes succeed again),
//! and the batch is still applied in memory: the loops, queries and alerts keep working on
//! what is held, and the next snapshot that succeeds makes it durable. Prometheus drops such
//! a batch instead; for a single-host monitor that would make every alert, this one included,
//! go blind exactly when the disk fills. The series a failed record introduced are named again
//! in the next record that is written, so a replay after the disk recovers still knows them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::codec::{self, Malformed, Reader};
use super::series::SeriesRef;
use crate::labels::Labels;

const SEGMENT_PREFIX: &str = "wal-";
const RECORD_BATCH: u8 = 1;

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
    /// A failed write may have left part of a record past `bytes` that could not be cut off
    /// yet; nothing is appended behind it until it is.
    torn: bool,
    /// Series introduced by records that failed to be written: the next written record names
    /// them.
    unlogged_series: Vec<(SeriesRef, Labels)>,
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

static WAL_FAILURES: Mutex<FailureLog> = Mutex::new(FailureLog::new());

fn failure_log() -> std::sync::MutexGuard<'static, FailureLog> {
    WAL_FAILURES.lock().unwrap_or_else(|e| e.into_inner())
}

impl WalWriter {
    /// Opens segment `seq` for appending (creating it).
    pub fn open(dir: &Path, seq: u64) -> std::io::Result<WalWriter> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        sync_dir(dir)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            seq,
            file,
            bytes,
            torn: false,
            unlogged_series: Vec::new(),
        })
    }

    pub fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.seq)
    }

    /// Bytes in the current segment.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends one record and waits until it is on disk. A record that cannot be written is
    /// counted and logged here and `Ok` is returned: the caller applies the batch in memory
    /// (see the module head). `Err` is never returned today; the signature stays so a caller
    /// may still handle one.
    pub fn log(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut with_names = None;
        if !self.unlogged_series.is_empty() {
            if let Ok(mut rec) = BatchRecord::decode(payload) {
                for (r, l) in &self.unlogged_series {
                    if !rec.series.iter().any(|(x, _)| x == r) {
                        rec.series.push((*r, l.clone()));
                    }
                }
                with_names = Some(rec.encode());
            }
        }
        let rec = codec::frame(with_names.as_deref().unwrap_or(payload));
        match self.write_synced(&rec) {
            Ok(()) => {
                self.bytes += rec.len() as u64;
                self.unlogged_series.clear();
                if let Some((n, lasted)) = failure_log().succeeded(Instant::now()) {
                    tracing::warn!(
                        path = %self.path().display(),
                        failures = n,
                        lasted_seconds = lasted.as_secs(),
                        "write-ahead log writes succeed again; samples of the failed writes are durable once the next snapshot succeeds"
                    );
                }
            }
            Err(e) => {
                crate::tsdb::failures::storage_failures().wal_write.inc();
                if let Ok(failed) = BatchRecord::decode(payload) {
                    for (r, l) in failed.series {
                        if !self.unlogged_series.iter().any(|(x, _)| *x == r) {
                            self.unlogged_series.push((r, l));
                        }
                    }
                }
                let mut log = failure_log();
                if log.failed(Instant::now()) {
                    tracing::error!(
                        path = %self.path().display(),
                        error = %e,
                        failures = log.pending(),
                        "write-ahead log write failed (counted in depin_tsdb_wal_write_failures_total); samples are kept in memory only until a snapshot succeeds"
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes and fsyncs one framed record at the end of the whole records; on failure cuts
    /// off what part of it reached the file, or every later record would sit behind damage.
    fn write_synced(&mut self, rec: &[u8]) -> std::io::Result<()> {
        if self.torn {
            self.file.set_len(self.bytes)?;
            self.torn = false;
        }
        let written = self
            .file
            .write_all(rec)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Append mode writes at the file's end, so the cut must succeed before the next
            // record; until then `torn` stays set and the next write retries it first.
            self.torn = self.file.set_len(self.bytes).is_err();
            return Err(e);
        }
        Ok(())
    }

    /// Starts the next segment; returns the sequence number of the one just closed. Only a
    /// snapshot rotates, so a failure counts in `depin_tsdb_snapshot_failures_total`.
    pub fn rotate(&mut self) -> std::io::Result<u64> {
        let old = self.seq;
        match WalWriter::open(&self.dir, old + 1) {
            Ok(mut next) => {
                if self.torn {
                    // Best effort: the old segment's replay stops at the damage either way.
                    let _ = self.file.set_len(self.bytes);
                }
                next.unlogged_series = std::mem::take(&mut self.unlogged_series);
                *self = next;
                Ok(old)
            }
            Err(e) => {
                super::snapshot::count_failure(&segment_path(&self.dir, old + 1), &e);
                Err(e)
            }
        }
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
        let mut w = WalWriter::open(dir.path(), 9).unwrap();
        w.log(&rec.encode()).unwrap();
        assert_eq!(w.rotate().unwrap(), 9);
        w.log(&rec.encode()).unwrap();
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![9, 10]);
        let bytes = std::fs::read(&segs[1].1).unwrap();
        let (frames, dmg) = codec::read_frames(&bytes);
        assert!(dmg.is_none());
        assert_eq!(BatchRecord::decode(frames[0]).unwrap().series, rec.series);
    }

    fn wal_failures() -> u64 {
        crate::tsdb::failures::storage_failures().wal_write.get()
    }

    /// A real ENOSPC: `/dev/full` accepts the open and fails every write with "No space left on
    /// device". The segment's file is swapped for it and back, as a disk filling and freeing.
    #[test]
    fn a_failed_write_is_counted_leaves_no_bytes_and_its_series_are_named_in_the_next_record() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full on this system to make writes fail");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        let first = BatchRecord {
            series: vec![(1, a.clone())],
            samples: vec![(1, 1000, 1.0)],
        };
        w.log(&first.encode()).unwrap();
        let good_len = w.bytes();

        let real = std::mem::replace(
            &mut w.file,
            OpenOptions::new().append(true).open("/dev/full").unwrap(),
        );
        let before = wal_failures();
        let failed = BatchRecord {
            series: vec![(2, b.clone())],
            samples: vec![(1, 2000, 2.0), (2, 2000, 5.0)],
        };
        // The caller is told nothing went wrong: it keeps the batch in memory.
        w.log(&failed.encode()).unwrap();
        assert!(wal_failures() > before, "the failure is counted");
        assert_eq!(w.bytes(), good_len);

        w.file = real;
        let after = BatchRecord {
            series: vec![],
            samples: vec![(2, 3000, 6.0)],
        };
        w.log(&after.encode()).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        assert_eq!(bytes.len() as u64, w.bytes());
        let (frames, dmg) = codec::read_frames(&bytes);
        assert!(dmg.is_none(), "no partial record in the segment: {dmg:?}");
        assert_eq!(frames.len(), 2, "the failed record is not in the file");
        let second = BatchRecord::decode(frames[1]).unwrap();
        assert_eq!(
            second.series,
            vec![(2, b)],
            "series b, first named in the failed record, is named again"
        );
        assert_eq!(second.samples.len(), 1);
        // Named once is enough.
        w.log(&after.encode()).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let (frames, _) = codec::read_frames(&bytes);
        assert!(BatchRecord::decode(frames[2]).unwrap().series.is_empty());
    }

    #[test]
    fn a_failed_rotation_keeps_the_writer_and_counts_a_snapshot_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 4).unwrap();
        // The next segment's name is taken by a directory: opening it as a file fails.
        std::fs::create_dir(segment_path(dir.path(), 5)).unwrap();
        let before = crate::tsdb::failures::storage_failures().snapshot.get();
        assert!(w.rotate().is_err());
        assert!(crate::tsdb::failures::storage_failures().snapshot.get() > before);
        assert_eq!(w.path(), segment_path(dir.path(), 4));
        w.log(&BatchRecord::default().encode()).unwrap();
        assert!(w.bytes() > 0, "the old segment still takes records");
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
