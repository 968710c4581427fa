//! Gorilla XOR float compression as Prometheus' `tsdb/chunkenc/xor.go` does it: each value is
//! XORed with the previous one and only the bits between the leading and trailing zeros are
//! kept, reusing the previous window when the new one fits inside it.
//!
//! Used three ways: as the fallback value stream inside our chunks (see `chunk.rs`) when values
//! are neither small decimals nor well served by integer deltas; as the open head of a series
//! ([`XorAppender`], Prometheus' streaming format, so the samples waiting for their chunk to be
//! cut are not held at 16 bytes each); and, through [`encode_prometheus_chunk`], as the
//! baseline that benchmarks compare our chunks against.

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

#[derive(Clone, Debug)]
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

/// Prometheus' head chunk, built one sample at a time: the first timestamp as a varint and the
/// first value raw, then the second timestamp as a uvarint delta, then delta-of-delta timestamps
/// in 14/17/20/64-bit buckets; values XORed as above.
#[derive(Clone, Debug)]
pub struct XorAppender {
    w: BitWriter,
    n: usize,
    first_t: i64,
    t: i64,
    delta: i64,
    st: XorState,
}

impl Default for XorAppender {
    fn default() -> Self {
        XorAppender {
            w: BitWriter::new(),
            n: 0,
            first_t: 0,
            t: 0,
            delta: 0,
            st: XorState {
                prev: 0,
                leading: u8::MAX,
                trailing: 0,
            },
        }
    }
}

impl XorAppender {
    pub fn append(&mut self, s: Sample) {
        let w = &mut self.w;
        match self.n {
            0 => {
                byte_varint(w, super::bits::zigzag(s.t));
                w.bits(s.v.to_bits(), 64);
                self.st.prev = s.v.to_bits();
                self.first_t = s.t;
            }
            1 => {
                self.delta = s.t.wrapping_sub(self.t);
                byte_varint(w, self.delta as u64);
                self.st.write(w, s.v.to_bits());
            }
            _ => {
                let delta = s.t.wrapping_sub(self.t);
                let dod = delta.wrapping_sub(self.delta);
                self.delta = delta;
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
                self.st.write(w, s.v.to_bits());
            }
        }
        self.t = s.t;
        self.n += 1;
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn first_t(&self) -> Option<i64> {
        (self.n > 0).then_some(self.first_t)
    }

    pub fn last_t(&self) -> Option<i64> {
        (self.n > 0).then_some(self.t)
    }

    /// Heap bytes held.
    pub fn allocated_bytes(&self) -> usize {
        self.w.capacity()
    }

    pub fn bytes(&self) -> &[u8] {
        self.w.as_bytes()
    }

    /// The samples appended so far.
    pub fn samples(&self) -> Vec<Sample> {
        // Written by this process, so it decodes; a failure would be a bug, and returning what
        // decoded beats a panic in a reader.
        decode_stream(self.w.as_bytes(), self.n).unwrap_or_else(|(partial, e)| {
            tracing::error!(error = %e, "open head failed to decode");
            partial
        })
    }
}

/// Decodes `n` samples of an [`XorAppender`] stream.
pub fn decode_stream(bytes: &[u8], n: usize) -> Result<Vec<Sample>, (Vec<Sample>, EndOfData)> {
    let mut out = Vec::with_capacity(n);
    let mut r = BitReader::new(bytes);
    let mut go = || -> Result<(), EndOfData> {
        let (mut t, mut delta) = (0i64, 0i64);
        let mut st = XorState {
            prev: 0,
            leading: u8::MAX,
            trailing: 0,
        };
        for i in 0..n {
            match i {
                0 => {
                    t = super::bits::unzigzag(read_byte_varint(&mut r)?);
                    st.prev = r.bits(64)?;
                    out.push(Sample {
                        t,
                        v: f64::from_bits(st.prev),
                    });
                    continue;
                }
                1 => delta = read_byte_varint(&mut r)? as i64,
                _ => {
                    let mut ones = 0;
                    while ones < 4 && r.bit()? {
                        ones += 1;
                    }
                    let dod = match ones {
                        0 => 0,
                        1 => signed(r.bits(14)?, 14),
                        2 => signed(r.bits(17)?, 17),
                        3 => signed(r.bits(20)?, 20),
                        _ => r.bits(64)? as i64,
                    };
                    delta = delta.wrapping_add(dod);
                }
            }
            t = t.wrapping_add(delta);
            out.push(Sample {
                t,
                v: f64::from_bits(st.read(&mut r)?),
            });
        }
        Ok(())
    };
    match go() {
        Ok(()) => Ok(out),
        Err(e) => Err((out, e)),
    }
}

/// An `n`-bit two's complement value, as Prometheus writes dod buckets.
fn signed(u: u64, n: u32) -> i64 {
    if u > 1 << (n - 1) {
        u as i64 - (1i64 << n)
    } else {
        u as i64
    }
}

/// The chunk Prometheus' head would build for these samples (XOR encoding): a 2-byte sample
/// count, then the [`XorAppender`] stream. Only the benchmark baseline uses it.
pub fn encode_prometheus_chunk(samples: &[Sample]) -> Vec<u8> {
    let mut a = XorAppender::default();
    for s in samples {
        a.append(*s);
    }
    let mut out = (samples.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(a.bytes());
    out
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

fn read_byte_varint(r: &mut BitReader) -> Result<u64, EndOfData> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = r.bits(8)?;
        v |= (b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Ok(v)
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
    fn appender_stream_round_trips_every_dod_bucket() {
        let mut a = XorAppender::default();
        let mut t = -3i64;
        let mut want = Vec::new();
        for (i, step) in [
            5000i64,
            5000,
            5001,
            9000,
            70_000,
            600_000,
            5_000_000_000,
            1,
            1,
        ]
        .iter()
        .enumerate()
        {
            t += step;
            let s = Sample {
                t,
                v: (i as f64 * 0.37).sin(),
            };
            a.append(s);
            want.push(s);
        }
        assert_eq!(a.samples(), want);
        assert_eq!((a.first_t(), a.last_t(), a.len()), (Some(4997), Some(t), 9));
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
