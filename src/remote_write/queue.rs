//! The durable queue of one remote: `<storage.path>/remote_write/<name>/`, segment files
//! (`00000001.seg`, …) of records, each record one ready-to-send part of a write request
//! (snappy-compressed protobuf) with its sample count and newest timestamp, guarded by a CRC;
//! and `position`, the first unsent record, rewritten (write, fsync, rename) after every
//! successful send. Appends are fsynced once per batch, so a crash or an outage of the remote
//! loses nothing that fits the capacity; beyond it the oldest records are dropped and counted.
//!
//! Record layout: `len: u32 LE | crc32(payload): u32 LE | payload`, payload =
//! `samples: u32 LE | max_t: i64 LE | snappy(WriteRequest protobuf)`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::remote_write::Capacity;

/// A segment past this size is closed and the next record starts a new one.
pub const SEGMENT_BYTES: u64 = 8 << 20;
const HEADER: u64 = 8;
const META: usize = 12;

/// Where one record sits and what it holds.
#[derive(Clone, Debug)]
pub struct RecordMeta {
    pub seg: u64,
    pub off: u64,
    /// Payload bytes (without the 8-byte header).
    pub len: u32,
    pub samples: u32,
    pub max_t: i64,
    /// When it was appended (opening the queue counts as now for records found on disk).
    pub appended: Instant,
}

impl RecordMeta {
    fn end(&self) -> (u64, u64) {
        (self.seg, self.off + HEADER + self.len as u64)
    }
}

/// What opening found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OpenReport {
    pub records: usize,
    pub samples: u64,
    /// Bytes cut from a torn or damaged tail.
    pub truncated_bytes: u64,
}

pub struct Queue {
    dir: PathBuf,
    capacity: Capacity,
    writer: File,
    write_seg: u64,
    write_off: u64,
    records: VecDeque<RecordMeta>,
    pending_samples: u64,
    pending_bytes: u64,
    /// Newest timestamp appended / sent, for the lag gauge.
    pub newest_appended: Option<i64>,
    pub newest_sent: Option<i64>,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:08}.seg"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".seg").and_then(|s| s.parse().ok())
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

fn read_position(dir: &Path) -> (u64, u64) {
    let Ok(b) = fs::read(dir.join("position")) else {
        return (0, 0);
    };
    if b.len() != 20 || crc32fast::hash(&b[..16]).to_le_bytes() != b[16..20] {
        // A damaged position file: start from the oldest segment kept (sends duplicates
        // rather than losing data).
        return (0, 0);
    }
    let seg = u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8]));
    let off = u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8]));
    (seg, off)
}

fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    fs::rename(&tmp, dir.join(name))
}

impl Queue {
    /// Opens (or creates) the queue in `dir`: keeps the records after the persisted position,
    /// cuts a torn tail, and starts a fresh segment for new appends.
    pub fn open(dir: &Path, capacity: Capacity) -> io::Result<(Queue, OpenReport)> {
        fs::create_dir_all(dir)?;
        let (pseg, poff) = read_position(dir);
        let segs = list_segments(dir)?;
        let mut records = VecDeque::new();
        let mut report = OpenReport::default();
        let now = Instant::now();
        for &seq in &segs {
            let p = seg_path(dir, seq);
            if seq < pseg {
                fs::remove_file(&p)?;
                continue;
            }
            let data = fs::read(&p)?;
            let mut off = if seq == pseg { poff } else { 0 };
            while off + HEADER <= data.len() as u64 {
                let o = off as usize;
                let len = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                let crc = u32::from_le_bytes([data[o + 4], data[o + 5], data[o + 6], data[o + 7]]);
                let start = o + HEADER as usize;
                let end = start + len as usize;
                if end > data.len() || (len as usize) < META {
                    break;
                }
                let payload = &data[start..end];
                if crc32fast::hash(payload) != crc {
                    break;
                }
                let samples = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let mut t = [0u8; 8];
                t.copy_from_slice(&payload[4..12]);
                records.push_back(RecordMeta {
                    seg: seq,
                    off,
                    len,
                    samples,
                    max_t: i64::from_le_bytes(t),
                    appended: now,
                });
                report.records += 1;
                report.samples += samples as u64;
                off = end as u64;
            }
            if off < data.len() as u64 {
                // Torn write at a crash, or damage: what follows cannot be trusted.
                report.truncated_bytes += data.len() as u64 - off;
                let f = OpenOptions::new().write(true).open(&p)?;
                f.set_len(off)?;
                f.sync_all()?;
            }
        }
        let write_seg = segs.last().map_or(1, |s| s + 1);
        let writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(seg_path(dir, write_seg))?;
        let mut q = Queue {
            dir: dir.to_path_buf(),
            capacity,
            writer,
            write_seg,
            write_off: 0,
            pending_samples: records.iter().map(|r| r.samples as u64).sum(),
            pending_bytes: records.iter().map(|r| r.len as u64 + HEADER).sum(),
            newest_appended: records.iter().map(|r| r.max_t).max(),
            newest_sent: None,
            records,
        };
        q.persist_position()?;
        Ok((q, report))
    }

    pub fn pending_samples(&self) -> u64 {
        self.pending_samples
    }

    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// When the oldest pending record was appended.
    pub fn oldest_appended(&self) -> Option<Instant> {
        self.records.front().map(|r| r.appended)
    }

    /// Seconds between the newest appended and the newest sent sample (0 when all is sent).
    pub fn lag_seconds(&self) -> f64 {
        match (
            self.records.is_empty(),
            self.newest_appended,
            self.newest_sent,
        ) {
            (true, _, _) => 0.0,
            (false, Some(a), Some(s)) => (a - s).max(0) as f64 / 1000.0,
            (false, Some(a), None) => {
                let oldest = self.records.iter().map(|r| r.max_t).min().unwrap_or(a);
                (a - oldest).max(0) as f64 / 1000.0
            }
            _ => 0.0,
        }
    }

    /// Appends records `(samples, max_t, snappy bytes)` and fsyncs once. Returns the samples
    /// dropped (oldest first) to stay within the capacity.
    pub fn append(&mut self, recs: &[(u32, i64, Vec<u8>)]) -> io::Result<u64> {
        if recs.is_empty() {
            return Ok(0);
        }
        if self.write_off >= SEGMENT_BYTES {
            self.writer.sync_all()?;
            self.write_seg += 1;
            self.write_off = 0;
            self.writer = OpenOptions::new()
                .create(true)
                .append(true)
                .open(seg_path(&self.dir, self.write_seg))?;
        }
        let now = Instant::now();
        let mut buf = Vec::new();
        let mut metas = Vec::new();
        for (samples, max_t, body) in recs {
            let mut payload = Vec::with_capacity(META + body.len());
            payload.extend_from_slice(&samples.to_le_bytes());
            payload.extend_from_slice(&max_t.to_le_bytes());
            payload.extend_from_slice(body);
            let off = self.write_off + buf.len() as u64;
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
            metas.push(RecordMeta {
                seg: self.write_seg,
                off,
                len: payload.len() as u32,
                samples: *samples,
                max_t: *max_t,
                appended: now,
            });
        }
        self.writer.write_all(&buf)?;
        self.writer.sync_data()?;
        self.write_off += buf.len() as u64;
        for m in metas {
            self.pending_samples += m.samples as u64;
            self.pending_bytes += m.len as u64 + HEADER;
            self.newest_appended = Some(self.newest_appended.map_or(m.max_t, |t| t.max(m.max_t)));
            self.records.push_back(m);
        }
        let mut dropped = 0;
        while self.over_capacity() {
            let Some(r) = self.records.pop_front() else {
                break;
            };
            self.pending_samples -= r.samples as u64;
            self.pending_bytes -= r.len as u64 + HEADER;
            dropped += r.samples as u64;
        }
        if dropped > 0 {
            self.persist_position()?;
        }
        Ok(dropped)
    }

    fn over_capacity(&self) -> bool {
        match self.capacity {
            Capacity::Samples(n) => self.pending_samples > n,
            Capacity::Bytes(n) => self.pending_bytes > n,
        }
    }

    /// The oldest pending records, as many as fit `max_samples` (at least one), with their
    /// compressed bodies.
    pub fn peek(&self, max_samples: usize) -> io::Result<Vec<(RecordMeta, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut file: Option<(u64, File)> = None;
        for r in &self.records {
            if !out.is_empty() && total + r.samples as usize > max_samples {
                break;
            }
            if file.as_ref().map(|f| f.0) != Some(r.seg) {
                file = Some((r.seg, File::open(seg_path(&self.dir, r.seg))?));
            }
            let Some((_, f)) = file.as_mut() else { break };
            f.seek(SeekFrom::Start(r.off + HEADER + META as u64))?;
            let mut body = vec![0u8; r.len as usize - META];
            f.read_exact(&mut body)?;
            total += r.samples as usize;
            out.push((r.clone(), body));
        }
        Ok(out)
    }

    /// Marks every record up to and including `last` as done (sent or given up) and persists
    /// the position. Records already dropped in the meantime are skipped.
    pub fn commit(&mut self, last: &RecordMeta, sent: bool) -> io::Result<()> {
        let end = last.end();
        while self.records.front().is_some_and(|r| r.end() <= end) {
            let Some(r) = self.records.pop_front() else {
                break;
            };
            self.pending_samples -= r.samples as u64;
            self.pending_bytes -= r.len as u64 + HEADER;
            if sent {
                self.newest_sent = Some(self.newest_sent.map_or(r.max_t, |t| t.max(r.max_t)));
            }
        }
        self.persist_position()
    }

    /// Writes the position of the first pending record and removes the segments before it.
    fn persist_position(&mut self) -> io::Result<()> {
        let (seg, off) = match self.records.front() {
            Some(r) => (r.seg, r.off),
            None => (self.write_seg, self.write_off),
        };
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&seg.to_le_bytes());
        b.extend_from_slice(&off.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        write_atomic(&self.dir, "position", &b)?;
        for s in list_segments(&self.dir)? {
            if s < seg {
                fs::remove_file(seg_path(&self.dir, s))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u32, t: i64) -> (u32, i64, Vec<u8>) {
        (n, t, vec![t as u8; 10])
    }

    #[test]
    fn unsent_records_survive_a_reopen_and_sent_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(dir.path(), Capacity::Samples(1000)).unwrap();
        q.append(&[rec(3, 1), rec(4, 2)]).unwrap();
        q.append(&[rec(5, 3)]).unwrap();
        let batch = q.peek(7).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1].1, vec![2u8; 10]);
        q.commit(&batch[0].0, true).unwrap();
        drop(q);
        let (q, rep) = Queue::open(dir.path(), Capacity::Samples(1000)).unwrap();
        assert_eq!(rep.records, 2);
        assert_eq!(q.pending_samples(), 9);
        let b = q.peek(100).unwrap();
        assert_eq!(b.iter().map(|r| r.0.max_t).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn over_capacity_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(dir.path(), Capacity::Samples(10)).unwrap();
        assert_eq!(q.append(&[rec(4, 1), rec(4, 2)]).unwrap(), 0);
        assert_eq!(q.append(&[rec(4, 3)]).unwrap(), 4);
        assert_eq!(q.pending_samples(), 8);
        assert_eq!(q.peek(100).unwrap()[0].0.max_t, 2);
        assert_eq!(q.lag_seconds(), 0.001);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(dir.path(), Capacity::Samples(100)).unwrap();
        q.append(&[rec(1, 1), rec(1, 2)]).unwrap();
        drop(q);
        let seg = seg_path(dir.path(), 1);
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut q, rep) = Queue::open(dir.path(), Capacity::Samples(100)).unwrap();
        assert_eq!(rep.records, 1);
        assert!(rep.truncated_bytes > 0);
        q.append(&[rec(1, 9)]).unwrap();
        drop(q);
        let (q, rep) = Queue::open(dir.path(), Capacity::Samples(100)).unwrap();
        assert_eq!(rep.records, 2);
        assert_eq!(
            q.peek(10)
                .unwrap()
                .iter()
                .map(|r| r.0.max_t)
                .collect::<Vec<_>>(),
            [1, 9]
        );
    }

    #[test]
    fn sent_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(dir.path(), Capacity::Samples(100)).unwrap();
        q.append(&[rec(1, 1)]).unwrap();
        drop(q);
        let (mut q, _) = Queue::open(dir.path(), Capacity::Samples(100)).unwrap();
        q.append(&[rec(1, 2)]).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), [1, 2]);
        let b = q.peek(10).unwrap();
        q.commit(&b.last().unwrap().0, true).unwrap();
        assert!(q.is_empty());
        assert_eq!(list_segments(dir.path()).unwrap(), [2]);
    }
}
