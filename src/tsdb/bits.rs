//! Bit streams for chunk encodings: a writer that packs values of any width most significant
//! bit first, and a reader that fails cleanly (instead of panicking) when the bytes run out,
//! because chunks also come back from snapshot files that may be damaged.

/// The bytes ended before the value being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("chunk data ends early at bit {0}")]
pub struct EndOfData(pub usize);

#[derive(Default, Debug, Clone)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 means the last byte is full or there is none).
    used: u32,
}

impl BitWriter {
    pub fn new() -> Self {
        BitWriter::default()
    }

    pub fn bit(&mut self, b: bool) {
        self.bits(b as u64, 1)
    }

    /// Writes the low `n` bits of `v` (`n` ≤ 64).
    pub fn bits(&mut self, v: u64, mut n: u32) {
        debug_assert!(n <= 64);
        while n > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(n);
            // The `take` bits just below position `n` of `v`.
            let chunk = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            n -= take;
        }
    }

    /// An unsigned varint inside the bit stream: 7 bits of payload and a continuation bit.
    pub fn uvarint(&mut self, mut v: u64) {
        loop {
            let more = v >= 0x80;
            self.bit(more);
            self.bits(v & 0x7f, 7);
            v >>= 7;
            if !more {
                break;
            }
        }
    }

    pub fn bit_len(&self) -> usize {
        if self.used == 0 {
            self.bytes.len() * 8
        } else {
            (self.bytes.len() - 1) * 8 + self.used as usize
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes allocated for the stream.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    pub fn bit(&mut self) -> Result<bool, EndOfData> {
        Ok(self.bits(1)? == 1)
    }

    pub fn bits(&mut self, mut n: u32) -> Result<u64, EndOfData> {
        if self.pos + n as usize > self.bytes.len() * 8 {
            return Err(EndOfData(self.pos));
        }
        let mut v: u64 = 0;
        while n > 0 {
            let byte = self.bytes[self.pos / 8];
            let off = (self.pos % 8) as u32;
            let avail = 8 - off;
            let take = avail.min(n);
            let chunk = (byte >> (avail - take)) & ((1u16 << take) - 1) as u8;
            v = (v << take) | chunk as u64;
            self.pos += take as usize;
            n -= take;
        }
        Ok(v)
    }

    pub fn uvarint(&mut self) -> Result<u64, EndOfData> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let more = self.bit()?;
            let part = self.bits(7)?;
            if shift < 64 {
                v |= part << shift;
            }
            shift += 7;
            if !more {
                return Ok(v);
            }
            if shift > 70 {
                return Err(EndOfData(self.pos));
            }
        }
    }
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_round_trip() {
        let mut w = BitWriter::new();
        let vals: Vec<(u64, u32)> = vec![
            (1, 1),
            (0, 3),
            (0x1234, 13),
            (u64::MAX, 64),
            (5, 7),
            (0, 0),
            (0xdead_beef, 32),
            (1 << 62, 63),
        ];
        for &(v, n) in &vals {
            w.bits(v, n);
        }
        w.uvarint(300);
        w.uvarint(u64::MAX);
        let total = w.bit_len();
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), total.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &vals {
            let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            assert_eq!(r.bits(n).unwrap(), v & mask);
        }
        assert_eq!(r.uvarint().unwrap(), 300);
        assert_eq!(r.uvarint().unwrap(), u64::MAX);
        assert!(r.bits(9).is_err());
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
