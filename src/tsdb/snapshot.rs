//! Snapshots: the whole database in one file, written to `snapshot.tmp`, fsynced and renamed to
//! `snapshot`, so a crash leaves either the old or the new one. Sealed chunks are written as
//! they are held in memory (already compressed); open heads as raw samples.
//!
//! The file is a sequence of framed records (see `codec.rs`): a header (which WAL segments the
//! snapshot covers, the next series ref), one record per series, and an end record. Damage stops
//! the load at the last good series.
//!
//! A snapshot that fails (here, or when the WAL cannot start its next segment) is counted in
//! `depin_tsdb_snapshot_failures_total` and logged with the path and error (at most once a
//! minute while failures last); its partial temp file is removed, so a full disk is not made
//! fuller by the attempt.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::chunk::{self, Chunk};
use super::codec::{self, Damage, Malformed, Reader};
use super::series::SeriesRef;
use super::wal::{sync_dir, FailureLog};
use super::Sample;
use crate::labels::Labels;

pub const FILE_NAME: &str = "snapshot";
const TMP_NAME: &str = "snapshot.tmp";
const MAGIC: &[u8] = b"DEPIN-ORCHA-SNAPSHOT";
const VERSION: u8 = 1;
const REC_HEADER: u8 = 1;
const REC_SERIES: u8 = 2;
const REC_END: u8 = 3;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Every WAL segment with this number or lower is contained in the snapshot.
    pub wal_seq: u64,
    pub next_ref: SeriesRef,
}

pub struct SnapshotSeries {
    pub sref: SeriesRef,
    pub labels: Labels,
    pub chunks: Vec<Chunk>,
    pub head: Vec<Sample>,
}

static FAILURES: Mutex<FailureLog> = Mutex::new(FailureLog::new());

fn failure_log() -> std::sync::MutexGuard<'static, FailureLog> {
    FAILURES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts and logs a failed snapshot attempt; `path` is the file it failed on.
pub(super) fn count_failure(path: &Path, e: &std::io::Error) {
    crate::tsdb::failures::storage_failures().snapshot.inc();
    let mut log = failure_log();
    if log.failed(Instant::now()) {
        tracing::error!(
            path = %path.display(),
            error = %e,
            failures = log.pending(),
            "tsdb snapshot failed (counted in depin_tsdb_snapshot_failures_total); the write-ahead log still holds the data and keeps growing"
        );
    }
}

/// Writes a snapshot atomically; returns its size in bytes. On failure the temp file is
/// removed and the failure counted and logged; the previous snapshot stays in place.
pub fn write(
    dir: &Path,
    header: Header,
    series: impl IntoIterator<Item = SnapshotSeries>,
) -> std::io::Result<u64> {
    let tmp = dir.join(TMP_NAME);
    match write_tmp_and_rename(dir, &tmp, header, series) {
        Ok(size) => {
            if let Some((n, lasted)) = failure_log().succeeded(Instant::now()) {
                tracing::warn!(
                    path = %path(dir).display(),
                    failures = n,
                    lasted_seconds = lasted.as_secs(),
                    "tsdb snapshots succeed again"
                );
            }
            Ok(size)
        }
        Err((at, e)) => {
            // Nothing to do when the temp file was never created or is already renamed.
            let _ = std::fs::remove_file(&tmp);
            count_failure(&at, &e);
            Err(e)
        }
    }
}

/// The steps of [`write`]; an error names the file it happened on.
fn write_tmp_and_rename(
    dir: &Path,
    tmp: &Path,
    header: Header,
    series: impl IntoIterator<Item = SnapshotSeries>,
) -> Result<u64, (PathBuf, std::io::Error)> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut w = BufWriter::new(File::create(tmp).map_err(at(tmp))?);
    let size = write_records(&mut w, header, series).map_err(at(tmp))?;
    let f = w
        .into_inner()
        .map_err(|e| (tmp.to_path_buf(), e.into_error()))?;
    f.sync_all().map_err(at(tmp))?;
    drop(f);
    std::fs::rename(tmp, path(dir)).map_err(at(&path(dir)))?;
    sync_dir(dir).map_err(at(dir))?;
    Ok(size)
}

fn write_records(
    w: &mut BufWriter<File>,
    header: Header,
    series: impl IntoIterator<Item = SnapshotSeries>,
) -> std::io::Result<u64> {
    let mut size = 0u64;
    let mut put = |w: &mut BufWriter<File>, payload: &[u8]| -> std::io::Result<()> {
        let rec = codec::frame(payload);
        size += rec.len() as u64;
        w.write_all(&rec)
    };

    let mut b = vec![REC_HEADER];
    codec::put_bytes(&mut b, MAGIC);
    b.push(VERSION);
    codec::put_uvarint(&mut b, header.wal_seq);
    codec::put_uvarint(&mut b, header.next_ref);
    put(w, &b)?;

    let mut count = 0u64;
    for s in series {
        b.clear();
        b.push(REC_SERIES);
        codec::put_uvarint(&mut b, s.sref);
        codec::put_labels(&mut b, &s.labels);
        codec::put_uvarint(&mut b, s.chunks.len() as u64);
        for c in &s.chunks {
            codec::put_varint(&mut b, c.mint);
            codec::put_bytes(&mut b, &c.data);
        }
        codec::put_uvarint(&mut b, s.head.len() as u64);
        let mut prev = 0i64;
        for x in &s.head {
            codec::put_varint(&mut b, x.t.wrapping_sub(prev));
            b.extend_from_slice(&x.v.to_bits().to_le_bytes());
            prev = x.t;
        }
        put(w, &b)?;
        count += 1;
    }
    b.clear();
    b.push(REC_END);
    codec::put_uvarint(&mut b, count);
    put(w, &b)?;

    Ok(size)
}

#[derive(Default)]
pub struct Loaded {
    pub header: Option<Header>,
    pub series: Vec<SnapshotSeries>,
    pub damage: Option<Damage>,
}

/// Reads a snapshot file; everything before the first damaged record is returned.
pub fn load(bytes: &[u8]) -> Loaded {
    let (frames, mut damage) = codec::read_frames(bytes);
    let mut out = Loaded::default();
    let mut offset = 0u64;
    let mut ended = false;
    for f in frames {
        match parse(f, out.header.is_none()) {
            Ok(Rec::Header(h)) => out.header = Some(h),
            Ok(Rec::Series(s)) => out.series.push(s),
            Ok(Rec::End(n)) if n == out.series.len() as u64 => ended = true,
            Ok(Rec::End(_)) => {
                damage = Some(Damage {
                    offset,
                    reason: "series count in end record does not match".into(),
                });
                break;
            }
            Err(e) => {
                damage = Some(Damage { offset, reason: e });
                break;
            }
        }
        offset += (codec::FRAME_HEADER + f.len()) as u64;
        if ended {
            break;
        }
    }
    if damage.is_none() && !ended {
        damage = Some(Damage {
            offset,
            reason: "snapshot ends without its end record".into(),
        });
    }
    out.damage = damage;
    out
}

enum Rec {
    Header(Header),
    Series(SnapshotSeries),
    End(u64),
}

fn parse(f: &[u8], want_header: bool) -> Result<Rec, String> {
    let mut r = Reader::new(f);
    let m = |e: Malformed| e.to_string();
    let kind = r.u8().map_err(m)?;
    if want_header != (kind == REC_HEADER) {
        return Err("records out of place (no header first)".into());
    }
    match kind {
        REC_HEADER => {
            if r.bytes().map_err(m)? != MAGIC {
                return Err("not a depin-orcha snapshot".into());
            }
            let v = r.u8().map_err(m)?;
            if v != VERSION {
                return Err(format!("snapshot version {v} is unknown"));
            }
            Ok(Rec::Header(Header {
                wal_seq: r.uvarint().map_err(m)?,
                next_ref: r.uvarint().map_err(m)?,
            }))
        }
        REC_SERIES => {
            let sref = r.uvarint().map_err(m)?;
            let labels = r.labels().map_err(m)?;
            let n = r.uvarint().map_err(m)? as usize;
            let mut chunks = Vec::with_capacity(n.min(f.len()));
            for _ in 0..n {
                let mint = r.varint().map_err(m)?;
                let data = r.bytes().map_err(m)?.to_vec();
                chunks.push(
                    Chunk::from_data(mint, data).map_err(|e: chunk::ChunkError| e.to_string())?,
                );
            }
            let n = r.uvarint().map_err(m)? as usize;
            let mut head = Vec::with_capacity(n.min(f.len()));
            let mut t = 0i64;
            for _ in 0..n {
                t = t.wrapping_add(r.varint().map_err(m)?);
                head.push(Sample {
                    t,
                    v: f64::from_bits(r.u64_le().map_err(m)?),
                });
            }
            Ok(Rec::Series(SnapshotSeries {
                sref,
                labels,
                chunks,
                head,
            }))
        }
        REC_END => Ok(Rec::End(r.uvarint().map_err(m)?)),
        _ => Err(format!("unknown record type {kind}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_series(v: f64) -> Vec<SnapshotSeries> {
        vec![SnapshotSeries {
            sref: 1,
            labels: Labels::from_pairs([("__name__", "up")]),
            chunks: vec![],
            head: vec![Sample { t: 1000, v }],
        }]
    }

    fn header() -> Header {
        Header {
            wal_seq: 3,
            next_ref: 2,
        }
    }

    fn failures() -> u64 {
        crate::tsdb::failures::storage_failures().snapshot.get()
    }

    fn held_value(dir: &Path) -> f64 {
        let l = load(&std::fs::read(path(dir)).unwrap());
        assert!(l.damage.is_none(), "{:?}", l.damage);
        l.series[0].head[0].v
    }

    /// A full disk while the snapshot is written (`snapshot.tmp` leads to `/dev/full`, whose
    /// writes fail with ENOSPC): the old snapshot stays, no temp file is left, it is counted.
    #[test]
    fn a_snapshot_that_cannot_be_written_leaves_the_old_one_and_no_temp_file() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full on this system to make writes fail");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), header(), one_series(1.0)).unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join(TMP_NAME)).unwrap();
        let before = failures();
        let e = write(dir.path(), header(), one_series(2.0)).unwrap_err();
        assert!(e.to_string().contains("space"), "{e}");
        assert!(failures() > before);
        assert!(
            !dir.path().join(TMP_NAME).exists(),
            "the temp file is removed"
        );
        assert_eq!(held_value(dir.path()), 1.0, "the old snapshot is untouched");
        // The disk frees up: the next snapshot is written.
        write(dir.path(), header(), one_series(3.0)).unwrap();
        assert_eq!(held_value(dir.path()), 3.0);
    }

    #[test]
    fn a_snapshot_whose_temp_file_cannot_be_created_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TMP_NAME)).unwrap();
        let before = failures();
        assert!(write(dir.path(), header(), one_series(1.0)).is_err());
        assert!(failures() > before);
        assert!(!path(dir.path()).exists());
    }
}
