//! Gorilla XOR float compression as Prometheus' `tsdb/chunkenc/xor.go` does it: each value is
//! XORed with the previous one and only the bits between the leading and trailing zeros are
//! kept, reusing the previous window when the new one fits inside it.
//!
//! Used two ways: as the fallback value stream inside our chunks (see `chunk.rs`) when values
//! are neither small decimals nor well served by integer deltas, and, through
//! [`encode_prometheus_chunk`], as the baseline that benchmarks compare our chunks against.

use super::bits::{BitReader, BitWriter, EndOfData};
use super::Sample;

/// Appends `values` as a Gorilla XOR stream (first value raw, then XOR deltas).
pub fn write_values(w: &mut BitWriter, values: &[f64]) {
    let Some((&first, rest)) = values.split_first() else {
        return;
    };
    w.bits(first.to_bits(), 64);
    let mut st = XorState {
        prev: first.to_bits(),
        leading: u8::MAX,
        trailing: 0,
    };
    for &v in rest {
        st.write(w, v.to_bits());
    }
}

/// Reads `n` values written by [`write_values`].
pub fn read_values(r: &mut BitReader, n: usize, out: &mut Vec<f64>) -> Result<(), EndOfData> {
    if n == 0 {
        return Ok(());
    }
    let first = r.bits(64)?;
    out.push(f64::from_bits(first));
    let mut st = XorState {
        prev: first,
        leading: u8::MAX,
        trailing: 0,
    };
    for _ in 1..n {
        out.push(f64::from_bits(st.read(r)?));
    }
    Ok(())
}

struct XorState {
    prev: u64,
    /// `u8::MAX` until the first non-zero XOR has set a window.
    leading: u8,
    trailing: u8,
}

impl XorState {
    fn write(&mut self, w: &mut BitWriter, v: u64) {
        let x = v ^ self.prev;
        self.prev = v;
        if x == 0 {
            w.bit(false);
            return;
        }
        w.bit(true);
        // Five bits hold the leading-zero count, so it is capped at 31 as in Prometheus.
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
            w.bit(false);
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            w.bits(x >> self.trailing, sig);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        w.bit(true);
        w.bits(leading as u64, 5);
        let sig = 64 - leading as u32 - trailing as u32;
        // 64 significant bits do not fit in six bits; 0 stands for 64 (never a real width).
        w.bits((sig & 63) as u64, 6);
        w.bits(x >> trailing, sig);
    }

    fn read(&mut self, r: &mut BitReader) -> Result<u64, EndOfData> {
        if !r.bit()? {
            return Ok(self.prev);
        }
        if r.bit()? {
            let leading = r.bits(5)? as u8;
            let mut sig = r.bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.leading = leading;
            self.trailing = 64u8.saturating_sub(leading).saturating_sub(sig);
        } else if self.leading == u8::MAX {
            // A window reuse before any window was set: the data is damaged.
            return Err(EndOfData(0));
        }
        let sig = 64 - self.leading as u32 - self.trailing as u32;
        let x = r.bits(sig)? << self.trailing;
        self.prev ^= x;
        Ok(self.prev)
    }
}

/// The chunk Prometheus' head would build for these samples (XOR encoding, version 2 dod
/// buckets of 14/17/20/64 bits): a 2-byte sample count, the first timestamp as a varint, the
/// second as a uvarint delta, then delta-of-delta timestamps interleaved with XOR values.
/// Only the benchmark baseline uses it.
pub fn encode_prometheus_chunk(samples: &[Sample]) -> Vec<u8> {
    let mut w = BitWriter::new();
    w.bits(samples.len() as u64, 16);
    let mut prev_t = 0i64;
    let mut prev_delta = 0i64;
    let mut st = XorState {
        prev: 0,
        leading: u8::MAX,
        trailing: 0,
    };
    for (i, s) in samples.iter().enumerate() {
        match i {
            0 => {
                byte_varint(&mut w, super::bits::zigzag(s.t));
                w.bits(s.v.to_bits(), 64);
                st.prev = s.v.to_bits();
            }
            1 => {
                prev_delta = s.t - prev_t;
                byte_varint(&mut w, prev_delta as u64);
                st.write(&mut w, s.v.to_bits());
            }
            _ => {
                let delta = s.t - prev_t;
                let dod = delta - prev_delta;
                prev_delta = delta;
                let fits = |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1i64 << (n - 1);
                if dod == 0 {
                    w.bit(false);
                } else if fits(14) {
                    w.bits(0b10, 2);
                    w.bits(dod as u64, 14);
                } else if fits(17) {
                    w.bits(0b110, 3);
                    w.bits(dod as u64, 17);
                } else if fits(20) {
                    w.bits(0b1110, 4);
                    w.bits(dod as u64, 20);
                } else {
                    w.bits(0b1111, 4);
                    w.bits(dod as u64, 64);
                }
                st.write(&mut w, s.v.to_bits());
            }
        }
        prev_t = s.t;
    }
    w.into_bytes()
}

/// A Go-style byte varint written into the bit stream (Prometheus writes these byte-aligned
/// at the start of a chunk, where the stream is still aligned, so the size is the same).
fn byte_varint(w: &mut BitWriter, mut v: u64) {
    loop {
        let more = v >= 0x80;
        w.bits((v & 0x7f) | if more { 0x80 } else { 0 }, 8);
        v >>= 7;
        if !more {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_values_round_trip_bit_exactly() {
        let vals = [
            1.0,
            1.0,
            2.5,
            f64::from_bits(super::super::STALE_NAN_BITS),
            -0.0,
            f64::INFINITY,
            1e-300,
            123456.789,
            123456.79,
            f64::MIN_POSITIVE,
            f64::from_bits(u64::MAX),
        ];
        let mut w = BitWriter::new();
        write_values(&mut w, &vals);
        let bytes = w.into_bytes();
        let mut out = Vec::new();
        read_values(&mut BitReader::new(&bytes), vals.len(), &mut out).unwrap();
        let a: Vec<u64> = vals.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u64> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn prometheus_chunk_of_constant_scrapes_is_about_two_bits_per_sample() {
        let s: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 5000,
                v: 1.0,
            })
            .collect();
        let n = encode_prometheus_chunk(&s).len();
        // 2 (count) + 6 (t0) + 2 (delta) + 8 (v0) + 118 samples × 2 bits.
        assert!((40..=60).contains(&n), "{n}");
    }
}
