//! Byte-level encoding shared by the WAL, snapshots and block indexes: varints, length-prefixed strings and
//! label sets, and the record frame `[len: u32 LE][crc32: u32 LE][payload]` that lets a reader
//! find where a file stops being trustworthy (torn write, flipped bit) and keep what is before.

use crate::labels::Labels;

pub const FRAME_HEADER: usize = 8;

/// Records larger than this are taken as damage rather than allocated.
pub const MAX_RECORD: usize = 1 << 30;

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Where and why a file stopped being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub reason: String,
}

/// The frame at `pos`: its payload, or why it is not a whole frame.
fn frame_at(bytes: &[u8], pos: usize) -> Result<&[u8], &'static str> {
    let rest = &bytes[pos..];
    if rest.len() < FRAME_HEADER {
        return Err("truncated record header");
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_RECORD {
        return Err("record length out of range");
    }
    if rest.len() - FRAME_HEADER < len {
        return Err("truncated record");
    }
    let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

/// Splits a file into record payloads up to the first damaged frame.
#[cfg(test)]
pub fn read_frames(bytes: &[u8]) -> (Vec<&[u8]>, Option<Damage>) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        match frame_at(bytes, pos) {
            Ok(payload) => {
                out.push(payload);
                pos += FRAME_HEADER + payload.len();
            }
            Err(reason) => {
                return (
                    out,
                    Some(Damage {
                        offset: pos as u64,
                        reason: reason.to_string(),
                    }),
                )
            }
        }
    }
    (out, None)
}

/// Splits a file into record payloads (with their offsets), skipping damage: after a frame
/// that does not check out, reading goes on at the next offset where a whole non-empty frame
/// does (a checksum that matches by chance is one in four billion). A flipped byte costs the
/// record it is in, a torn write the records it tore; every damaged stretch is listed.
pub fn read_frames_resync(bytes: &[u8]) -> (Vec<(u64, &[u8])>, Vec<Damage>) {
    let mut out = Vec::new();
    let mut damage = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        match frame_at(bytes, pos) {
            Ok(payload) => {
                out.push((pos as u64, payload));
                pos += FRAME_HEADER + payload.len();
            }
            Err(reason) => {
                damage.push(Damage {
                    offset: pos as u64,
                    reason: reason.to_string(),
                });
                let next = (pos + 1..bytes.len().saturating_sub(FRAME_HEADER))
                    .find(|&p| frame_at(bytes, p).is_ok_and(|f| !f.is_empty()));
                match next {
                    Some(p) => pos = p,
                    None => break,
                }
            }
        }
    }
    (out, damage)
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, super::bits::zigzag(v))
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn put_labels(out: &mut Vec<u8>, l: &Labels) {
    put_uvarint(out, l.len() as u64);
    for x in l.iter() {
        put_bytes(out, x.name.as_bytes());
        put_bytes(out, x.value.as_bytes());
    }
}

/// The payload is well framed (its CRC matched) but does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record at byte {at}: {what}")]
pub struct Malformed {
    pub at: usize,
    pub what: &'static str,
}

pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn bad(&self, what: &'static str) -> Malformed {
        Malformed { at: self.pos, what }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.b.len()
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        let v = *self.b.get(self.pos).ok_or_else(|| self.bad("ends early"))?;
        self.pos += 1;
        Ok(v)
    }

    pub fn uvarint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.bad("varint too long"))
    }

    pub fn varint(&mut self) -> Result<i64, Malformed> {
        Ok(super::bits::unzigzag(self.uvarint()?))
    }

    pub fn u64_le(&mut self) -> Result<u64, Malformed> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.b.len() - self.pos < n {
            return Err(self.bad("ends early"));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.uvarint()? as usize;
        self.take(n)
    }

    pub fn string(&mut self) -> Result<String, Malformed> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("label is not UTF-8"))
    }

    pub fn labels(&mut self) -> Result<Labels, Malformed> {
        let n = self.uvarint()? as usize;
        if n > self.b.len() {
            return Err(self.bad("label count out of range"));
        }
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((self.string()?, self.string()?));
        }
        Ok(Labels::from_pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stop_at_the_first_bad_byte() {
        let mut file = frame(b"one");
        file.extend(frame(b"two"));
        let good = file.len();
        file.extend(frame(b"three"));
        let (ok, dmg) = read_frames(&file);
        assert_eq!(ok, vec![&b"one"[..], b"two", b"three"]);
        assert!(dmg.is_none());
        for cut in good..file.len() {
            let (ok, dmg) = read_frames(&file[..cut]);
            assert_eq!(ok.len(), 2, "cut at {cut}");
            assert_eq!(
                dmg.map(|d| d.offset),
                if cut == good { None } else { Some(good as u64) }
            );
        }
        let mut flipped = file.clone();
        flipped[good + FRAME_HEADER + 1] ^= 1;
        let (ok, dmg) = read_frames(&flipped);
        assert_eq!(ok.len(), 2);
        assert_eq!(dmg.unwrap().reason, "checksum mismatch");
    }

    #[test]
    fn resync_skips_only_the_damaged_record() {
        let mut file = frame(b"one");
        let second = file.len();
        file.extend(frame(b"two two"));
        let third = file.len();
        file.extend(frame(b"three"));
        for i in second..third {
            let mut bytes = file.clone();
            bytes[i] ^= 0x08;
            let (ok, dmg) = read_frames_resync(&bytes);
            let payloads: Vec<&[u8]> = ok.iter().map(|x| x.1).collect();
            assert_eq!(payloads, vec![&b"one"[..], b"three"], "byte {i}");
            assert_eq!(ok[1].0, third as u64);
            assert_eq!(dmg.len(), 1);
            assert_eq!(dmg[0].offset, second as u64);
        }
        // A torn tail: the whole frames before it.
        let (ok, dmg) = read_frames_resync(&file[..file.len() - 2]);
        assert_eq!(ok.len(), 2);
        assert_eq!(dmg[0].reason, "truncated record");
    }

    #[test]
    fn varints_and_labels_round_trip() {
        let mut b = Vec::new();
        put_uvarint(&mut b, u64::MAX);
        put_varint(&mut b, -123456789);
        let l = Labels::from_pairs([("__name__", "x"), ("a", "ü\"")]);
        put_labels(&mut b, &l);
        let mut r = Reader::new(&b);
        assert_eq!(r.uvarint().unwrap(), u64::MAX);
        assert_eq!(r.varint().unwrap(), -123456789);
        assert_eq!(r.labels().unwrap(), l);
        assert!(r.is_empty());
        assert!(r.u8().is_err());
    }
}
