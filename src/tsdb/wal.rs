//! The write-ahead log: every committed batch (one scrape, one import slice) is one framed
//! record, written and fsynced before the samples become visible, so a crash loses at most the
//! batch being written. The log is split into numbered segment files `wal-NNNNNNNNNN`; a
//! snapshot starts a new segment and, once it is safely on disk, deletes the segments it covers.
//!
//! A record names the series it introduces (ref and labels) and then lists samples by ref, so
//! the labels are written once per series and segment rather than once per sample.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    bytes: u64,
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
        })
    }

    pub fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.seq)
    }

    /// Bytes in the current segment.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends one record and waits until it is on disk.
    pub fn log(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let rec = codec::frame(payload);
        let written = self
            .file
            .write_all(&rec)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut off a partly written record, or every later record would sit behind damage.
            let _ = self.file.set_len(self.bytes);
            return Err(e);
        }
        self.bytes += rec.len() as u64;
        Ok(())
    }

    /// Starts the next segment; returns the sequence number of the one just closed.
    pub fn rotate(&mut self) -> std::io::Result<u64> {
        let old = self.seq;
        *self = WalWriter::open(&self.dir, old + 1)?;
        Ok(old)
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
}
