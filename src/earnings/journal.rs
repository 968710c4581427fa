//! The ledger on disk, under `<storage.path>/earnings/`:
//!
//! - `journal.jsonl`: one line per applied observation, `<crc32 of the JSON, 8 hex> <JSON>\n`
//!   (the format of the reallocation history), each with a strictly increasing `seq`, fsynced
//!   before any counter moves;
//! - `snapshot.json`: the whole state as of a `seq`, written to a temporary file, fsynced and
//!   renamed; the journal is emptied after it, and replay skips lines the snapshot holds, so a
//!   crash between the two changes nothing;
//! - `LOCK`: held (flock) while the process runs: a second instance on the same path would
//!   double every credit, so it refuses to start and names the holder's pid.
//!
//! A torn last line (a crash while writing it) is cut off: its observation was never applied,
//! and the node's next answer carries the same money. A damaged line elsewhere is skipped,
//! counted and logged with its line number; the damaged file is kept beside the new one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{Change, State};

/// The directory under `--storage.path`.
pub const DIR: &str = "earnings";
pub const JOURNAL: &str = "journal.jsonl";
pub const SNAPSHOT: &str = "snapshot.json";
/// Lines after which the journal is folded into the snapshot.
pub const COMPACT_LINES: usize = 10_000;
/// Bytes after which the journal is folded into the snapshot.
pub const COMPACT_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("earnings ledger {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("earnings ledger {path}: {message}")]
    Damaged { path: PathBuf, message: String },
    #[error("earnings ledger {path} is in use by another depin-orcha (pid {pid}): two instances on one --storage.path would count every earning twice")]
    Locked { path: PathBuf, pid: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    #[serde(flatten)]
    change: Change,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    seq: u64,
    state: State,
}

/// What opening found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenReport {
    /// Journal lines replayed on top of the snapshot.
    pub replayed: usize,
    /// A torn last line was cut off.
    pub torn_tail: bool,
    /// Line numbers (1-based) of damaged lines that were skipped.
    pub damaged_lines: Vec<usize>,
}

/// The open journal: appends lines and folds them into the snapshot.
pub struct Journal {
    dir: PathBuf,
    file: File,
    seq: u64,
    lines: usize,
    len: u64,
    _lock: File,
}

/// `<crc32 hex> <json>\n`.
fn encode(json: &str) -> String {
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

/// The JSON of a line whose checksum holds.
fn decode(line: &str) -> Option<&str> {
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32fast::hash(json.as_bytes()) == crc).then_some(json)
}

fn lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    // A lock just released may still be held for a moment by a child process between its
    // fork and exec (or by an instance that is exiting): try for a second before refusing.
    let mut r = -1;
    for _ in 0..20 {
        // SAFETY: flock on a file descriptor this function owns; no memory is shared.
        r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if r != 0 {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        return Err(JournalError::Locked {
            path,
            pid: pid.trim().to_string(),
        });
    }
    f.set_len(0).map_err(io(&path))?;
    write!(f, "{}", std::process::id()).map_err(io(&path))?;
    Ok(f)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Journal {
    /// Opens (or creates) the ledger under `storage`, restoring its state.
    pub fn open(storage: &Path) -> Result<(Journal, State, OpenReport), JournalError> {
        let dir = storage.join(DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock = lock(&dir)?;
        let snap_path = dir.join(SNAPSHOT);
        let (mut seq, mut state) = match std::fs::read(&snap_path) {
            Ok(bytes) => {
                let s: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| JournalError::Damaged {
                        path: snap_path.clone(),
                        message: format!("{e}; the earnings counters cannot be restored from it (move it away to start them again from the nodes' totals)"),
                    })?;
                (s.seq, s.state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, State::default()),
            Err(e) => return Err(io(&snap_path)(e)),
        };
        let path = dir.join(JOURNAL);
        let mut report = OpenReport::default();
        let mut text = String::new();
        match File::open(&path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).map_err(io(&path))?;
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let pieces: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let parsed = piece
                .strip_suffix('\n')
                .and_then(decode)
                .and_then(|j| serde_json::from_str::<Line>(j).ok());
            match parsed {
                Some(line) if line.seq > seq => {
                    state.commit(&line.change);
                    seq = line.seq;
                    report.replayed += 1;
                }
                Some(_) => {}
                None if last => report.torn_tail = true,
                None => report.damaged_lines.push(i + 1),
            }
        }
        if !report.damaged_lines.is_empty() {
            let keep = dir.join(format!("{JOURNAL}.damaged-{seq}"));
            std::fs::copy(&path, &keep).map_err(io(&keep))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut j = Journal {
            dir,
            file,
            seq,
            lines: 0,
            len: 0,
            _lock: lock,
        };
        // Fold what was replayed (and drop a torn tail) into a fresh snapshot.
        if !text.is_empty() {
            j.compact(&state)?;
        }
        Ok((j, state, report))
    }

    /// Appends one change and makes it durable; on error nothing of it remains in the file.
    pub fn append(&mut self, change: &Change) -> Result<(), JournalError> {
        let path = self.dir.join(JOURNAL);
        let line = Line {
            seq: self.seq + 1,
            change: change.clone(),
        };
        let json = serde_json::to_string(&line).map_err(|e| JournalError::Damaged {
            path: path.clone(),
            message: format!("cannot encode a line: {e}"),
        })?;
        let text = encode(&json);
        let wrote = self
            .file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data());
        if let Err(e) = wrote {
            // A partial line would hide the next ones behind a damaged line: cut it.
            let _ = self.file.set_len(self.len);
            return Err(io(&path)(e));
        }
        self.seq += 1;
        self.lines += 1;
        self.len += text.len() as u64;
        Ok(())
    }

    /// Whether the journal is long enough to be folded into the snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.lines >= COMPACT_LINES || self.len >= COMPACT_BYTES
    }

    /// Writes `state` (which holds every appended line) as the snapshot and empties the journal.
    pub fn compact(&mut self, state: &State) -> Result<(), JournalError> {
        let snap = self.dir.join(SNAPSHOT);
        let tmp = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let bytes = serde_json::to_vec(&Snapshot {
            seq: self.seq,
            state: state.clone(),
        })
        .map_err(|e| JournalError::Damaged {
            path: snap.clone(),
            message: format!("cannot encode the snapshot: {e}"),
        })?;
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &snap).map_err(io(&snap))?;
        sync_dir(&self.dir)?;
        let path = self.dir.join(JOURNAL);
        self.file.set_len(0).map_err(io(&path))?;
        self.file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        self.file.sync_all().map_err(io(&path))?;
        self.lines = 0;
        self.len = 0;
        Ok(())
    }

    /// The sequence number of the last line appended.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Reads the ledger under `storage` without locking or changing it (for `report` and tests,
/// on a copy or a stopped instance's directory): the state and the journaled changes after
/// the snapshot, in order.
pub fn read(storage: &Path) -> Result<(State, Vec<Change>), JournalError> {
    let dir = storage.join(DIR);
    let snap_path = dir.join(SNAPSHOT);
    let (mut seq, mut state) = match std::fs::read(&snap_path) {
        Ok(bytes) => {
            let s: Snapshot =
                serde_json::from_slice(&bytes).map_err(|e| JournalError::Damaged {
                    path: snap_path.clone(),
                    message: e.to_string(),
                })?;
            (s.seq, s.state)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, State::default()),
        Err(e) => return Err(io(&snap_path)(e)),
    };
    let path = dir.join(JOURNAL);
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut changes = Vec::new();
    for piece in text.split_inclusive('\n') {
        let line = piece
            .strip_suffix('\n')
            .and_then(decode)
            .and_then(|j| serde_json::from_str::<Line>(j).ok());
        if let Some(l) = line.filter(|l| l.seq > seq) {
            state.commit(&l.change);
            seq = l.seq;
            changes.push(l.change);
        }
    }
    Ok((state, changes))
}
