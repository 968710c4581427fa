//! Opening a persistent database: load the snapshot, replay the WAL segments written after it,
//! and carry on logging in a fresh segment. A damaged snapshot or segment gives what precedes the
//! damage; the file is renamed to `<name>.corrupt-<unix ms>`, logged with `tracing::warn!`
//! (file and byte offset) and listed in the [`OpenReport`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::codec::{self, Damage};
use super::series::{admit, Admit, MemSeries, SeriesRef};
use super::wal::{self, BatchRecord, WalWriter};
use super::{io_err, lock, snapshot, DamagedFile, Db, Error, OpenReport, Sample};

impl Db {
    pub(super) fn recover(&self, dir: &Path) -> Result<OpenReport, Error> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut report = OpenReport::default();

        let snap = snapshot::path(dir);
        let mut covered = 0u64;
        match std::fs::read(&snap) {
            Ok(bytes) => {
                let loaded = snapshot::load(&bytes);
                if let Some(h) = loaded.header {
                    covered = h.wal_seq;
                    self.head_write().set_next_ref(h.next_ref);
                }
                report.snapshot_series = loaded.series.len();
                {
                    let mut head = self.head_write();
                    for s in loaded.series {
                        let ms = head.insert(s.sref, s.labels);
                        let mut d = ms.lock();
                        d.last = s.head.last().copied().or_else(|| {
                            s.chunks
                                .last()
                                .and_then(|c| c.samples().ok())
                                .and_then(|v| v.last().copied())
                        });
                        for c in s.chunks {
                            d.push_chunk(c);
                        }
                        d.set_head(&s.head);
                    }
                }
                if let Some(d) = loaded.damage {
                    report.damaged.push(move_aside(&snap, d));
                    // Segments the damaged snapshot claimed to cover (left by a crash before
                    // their deletion) are now the better source: replay whatever is there.
                    covered = 0;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    path: snap,
                    source: e,
                })
            }
        }

        let mut next_seq = covered + 1;
        let mut by_wal_ref: HashMap<SeriesRef, Arc<MemSeries>> = HashMap::new();
        for (seq, path) in wal::list_segments(dir).map_err(io_err(dir))? {
            next_seq = next_seq.max(seq + 1);
            if seq <= covered {
                // Left over from a crash between writing a snapshot and deleting what it covers.
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            report.wal_segments += 1;
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let (frames, mut damage) = codec::read_frames(&bytes);
            let mut offset = 0u64;
            for f in frames {
                match BatchRecord::decode(f) {
                    Ok(rec) => {
                        report.wal_records += 1;
                        self.replay(rec, &mut by_wal_ref, &mut report);
                    }
                    Err(e) => {
                        damage = Some(Damage {
                            offset,
                            reason: e.to_string(),
                        });
                        break;
                    }
                }
                offset += (codec::FRAME_HEADER + f.len()) as u64;
            }
            if let Some(d) = damage {
                report.damaged.push(move_aside(&path, d));
            }
        }

        // Everything in memory now comes from the snapshot or the WAL, so new records may refer
        // to these series by ref alone.
        let all = self.head_read().all();
        let mut bytes = 0i64;
        for s in &all {
            s.set_in_wal();
            let d = s.lock();
            bytes += (d.bytes() + s.index_bytes()) as i64;
            if let Some(l) = d.last {
                self.newest.fetch_max(l.t, Ordering::Relaxed);
            }
        }
        self.mem_bytes.store(bytes, Ordering::Relaxed);

        let w =
            WalWriter::open(dir, next_seq).map_err(io_err(&wal::segment_path(dir, next_seq)))?;
        lock(&self.commit).wal = Some(w);
        Ok(report)
    }

    fn replay(
        &self,
        rec: BatchRecord,
        by_wal_ref: &mut HashMap<SeriesRef, Arc<MemSeries>>,
        report: &mut OpenReport,
    ) {
        if !rec.series.is_empty() {
            let mut head = self.head_write();
            for (r, labels) in rec.series {
                by_wal_ref.insert(r, head.insert(r, labels));
            }
        }
        for (r, t, v) in rec.samples {
            report.wal_samples += 1;
            let s = match by_wal_ref.get(&r) {
                Some(s) => s.clone(),
                None => match self.head_read().get_ref(r) {
                    Some(s) => s.clone(),
                    None => {
                        report.wal_samples_skipped += 1;
                        continue;
                    }
                },
            };
            let mut d = s.lock();
            match admit(d.last_key(), t, v) {
                Admit::Append => {
                    d.push(Sample { t, v });
                }
                Admit::Duplicate => {}
                _ => report.wal_samples_skipped += 1,
            }
        }
    }
}

fn move_aside(path: &Path, d: Damage) -> DamagedFile {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |x| x.as_millis());
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".corrupt-{ms}"));
    let target: PathBuf = path.with_file_name(name);
    let moved_to = match std::fs::rename(path, &target) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "could not move damaged tsdb file aside");
            None
        }
    };
    tracing::warn!(
        file = %path.display(),
        offset = d.offset,
        reason = %d.reason,
        moved_to = ?moved_to.as_ref().map(|p| p.display().to_string()),
        "damaged tsdb file: loaded the records before the offset, moved the file aside"
    );
    DamagedFile {
        path: path.to_path_buf(),
        moved_to,
        offset: d.offset,
        reason: d.reason,
    }
}
