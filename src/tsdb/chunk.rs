//! Compressed chunks: up to [`CHUNK_SAMPLES`] samples of one series in one immutable byte string.
//!
//! A chunk is encoded once, when the head cuts it, so the encoder can look at all its samples and
//! pick the smallest of several lossless encodings (Prometheus' head encodes sample by sample and
//! must stay with Gorilla XOR):
//!
//! * Timestamps, relative to the chunk's first one (kept in [`Chunk::mint`], not in the bytes),
//!   are integers coded by `intseq.rs`: delta-of-delta as in Gorilla for regular scrapes (zero
//!   bits per sample when evenly spaced), with a residual coder chosen per chunk instead of
//!   Gorilla's fixed buckets, so jittery wall-clock scrapes cost a few bits, not 16.
//! * Values are tried as decimals first: when every value `v` of the chunk satisfies
//!   `round(v·10^k) / 10^k == v` bit for bit for one small `k` (integers have `k = 0`), the
//!   integers `v·10^k` go through `intseq.rs` (deltas, deltas of deltas or a fitted line;
//!   zig-zag or unsigned; truncated binary, Rice or exp-Golomb). Otherwise the raw IEEE bits are
//!   taken as integers (a monotonic counter's bits grow by small positive steps), or Gorilla XOR
//!   is used; the smallest encoding wins, so no chunk is bigger than its XOR form by more than
//!   a few bits.
//! * Staleness markers are kept as a list of sample positions and left out of the value stream,
//!   so they round-trip bit-exactly and do not spoil the decimal detection.

use super::bits::{BitReader, BitWriter, EndOfData};
use super::intseq::{self, IntSeqError};
use super::{is_stale_nan, stale_nan, xor, Sample};

/// Samples per chunk: twice Prometheus' 120. Each chunk pays a header (format, the encodings
/// chosen, first values), and our encoder sees the whole chunk at once, so longer chunks cost
/// fewer bytes per sample (2.000 instead of 2.040 on the benchmark's data, under
/// VictoriaMetrics' 2.013); the price is a longer open head per series (at most 240 × 16 bytes
/// before it is sealed) and more to decode for a query that needs one sample of a sealed chunk.
pub const CHUNK_SAMPLES: usize = 240;

/// No chunk is ever cut larger; a count above this is damage, not a reason to allocate.
const MAX_SAMPLES: usize = 1 << 16;

/// Format version written in the first four bits of every chunk.
const FORMAT: u64 = 3;

/// Largest decimal exponent tried: `10^15` keeps typical magnitudes below 2^53.
const MAX_DECIMAL_EXP: u32 = 15;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    EndOfData(#[from] EndOfData),
    #[error(transparent)]
    IntSeq(#[from] IntSeqError),
    #[error("chunk format {0} is unknown")]
    UnknownFormat(u64),
    #[error("chunk is damaged: {0}")]
    Damaged(&'static str),
}

/// One sealed chunk. `mint` is not repeated in the encoded bytes (timestamps are stored
/// relative to it); `maxt` is kept so queries and retention can skip chunks without decoding.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub mint: i64,
    pub maxt: i64,
    pub data: Box<[u8]>,
}

impl Chunk {
    /// Encodes samples (time-ordered, at least one).
    pub fn encode(samples: &[Sample]) -> Chunk {
        let mint = samples.first().map_or(0, |s| s.t);
        let maxt = samples.last().map_or(0, |s| s.t);
        Chunk {
            mint,
            maxt,
            data: encode(samples).into(),
        }
    }

    /// Rebuilds a chunk from stored bytes, checking that they decode.
    pub fn from_data(mint: i64, data: Vec<u8>) -> Result<Chunk, ChunkError> {
        let s = decode(&data, mint)?;
        let Some(last) = s.last() else {
            return Err(ChunkError::Damaged("empty chunk"));
        };
        Ok(Chunk {
            mint,
            maxt: last.t,
            data: data.into(),
        })
    }

    pub fn samples(&self) -> Result<Vec<Sample>, ChunkError> {
        decode(&self.data, self.mint)
    }

    /// Number of samples, read from the chunk header.
    pub fn count(&self) -> usize {
        let mut r = BitReader::new(&self.data);
        r.bits(4)
            .and_then(|_| r.uvarint())
            .map_or(0, |n| n as usize)
    }

    /// Bytes of the encoded samples.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    /// Bytes this struct and the allocation of its data take besides the data itself.
    pub const META_BYTES: usize = std::mem::size_of::<Chunk>() + 8;
}

/// Encodes samples (time-ordered); the first timestamp is the caller's to keep.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut w = BitWriter::new();
    w.bits(FORMAT, 4);
    w.uvarint(samples.len() as u64);

    let stale: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| is_stale_nan(s.v))
        .map(|(i, _)| i)
        .collect();
    // One bit when there are none, which is nearly always.
    w.bit(!stale.is_empty());
    if !stale.is_empty() {
        w.uvarint(stale.len() as u64);
        let mut prev = 0;
        for &i in &stale {
            w.uvarint((i - prev) as u64);
            prev = i;
        }
    }

    let mint = samples.first().map_or(0, |s| s.t);
    let ts: Vec<i64> = samples.iter().map(|s| s.t.wrapping_sub(mint)).collect();
    // Evenly spaced scrapes, the common case, are just the step.
    let step = ts.get(1).copied().unwrap_or(0);
    let regular = step >= 0
        && ts
            .iter()
            .enumerate()
            .all(|(i, &t)| Some(t) == step.checked_mul(i as i64));
    w.bit(regular);
    if regular {
        w.uvarint(step as u64);
    } else {
        intseq::write(&mut w, &ts);
    }

    let values: Vec<f64> = samples
        .iter()
        .map(|s| s.v)
        .filter(|v| !is_stale_nan(*v))
        .collect();
    let mut best = BitWriter::new();
    best.bits(ValueMode::Xor as u64, 2);
    xor::write_values(&mut best, &values);

    let raw: Vec<i64> = values.iter().map(|v| v.to_bits() as i64).collect();
    let mut cand = BitWriter::new();
    cand.bits(ValueMode::RawBits as u64, 2);
    intseq::write(&mut cand, &raw);
    if cand.bit_len() < best.bit_len() {
        best = cand;
    }

    if let Some((k, ints)) = as_decimals(&values) {
        let mut cand = BitWriter::new();
        cand.bits(ValueMode::Decimal as u64, 2);
        cand.bits(k as u64, 4);
        intseq::write(&mut cand, &ints);
        if cand.bit_len() < best.bit_len() {
            best = cand;
        }
    }

    let (nbits, bytes) = (best.bit_len(), best.into_bytes());
    let mut r = BitReader::new(&bytes);
    // Copy the chosen value stream after the common part, bit for bit.
    let mut left = nbits;
    while left > 0 {
        let n = left.min(64) as u32;
        if let Ok(v) = r.bits(n) {
            w.bits(v, n);
        }
        left -= n as usize;
    }
    w.into_bytes()
}

/// Decodes a chunk whose first sample is at `mint`.
pub fn decode(data: &[u8], mint: i64) -> Result<Vec<Sample>, ChunkError> {
    let mut r = BitReader::new(data);
    let format = r.bits(4)?;
    if format != FORMAT {
        return Err(ChunkError::UnknownFormat(format));
    }
    let n = r.uvarint()? as usize;
    if n > MAX_SAMPLES {
        return Err(ChunkError::Damaged("sample count over the limit"));
    }
    let nstale = if r.bit()? { r.uvarint()? as usize } else { 0 };
    if nstale > n {
        return Err(ChunkError::Damaged("more staleness markers than samples"));
    }
    let mut stale = vec![false; n];
    let mut pos = 0usize;
    for _ in 0..nstale {
        pos = pos
            .checked_add(r.uvarint()? as usize)
            .ok_or(ChunkError::Damaged("stale position"))?;
        *stale
            .get_mut(pos)
            .ok_or(ChunkError::Damaged("stale position beyond the chunk"))? = true;
    }
    let ts: Vec<i64> = if r.bit()? {
        let step = r.uvarint()? as i64;
        (0..n as i64)
            .map(|i| mint.wrapping_add(step.wrapping_mul(i)))
            .collect()
    } else {
        intseq::read(&mut r, n)?
            .into_iter()
            .map(|t| t.wrapping_add(mint))
            .collect()
    };
    let nvals = n - nstale;
    let mut values = Vec::with_capacity(nvals);
    match r.bits(2)? {
        m if m == ValueMode::Xor as u64 => xor::read_values(&mut r, nvals, &mut values)?,
        m if m == ValueMode::RawBits as u64 => values.extend(
            intseq::read(&mut r, nvals)?
                .into_iter()
                .map(|x| f64::from_bits(x as u64)),
        ),
        m if m == ValueMode::Decimal as u64 => {
            let k = r.bits(4)? as usize;
            let scale = POW10[k];
            values.extend(
                intseq::read(&mut r, nvals)?
                    .into_iter()
                    .map(|x| x as f64 / scale),
            );
        }
        _ => return Err(ChunkError::Damaged("unknown value encoding")),
    }
    let mut vals = values.into_iter();
    let mut out = Vec::with_capacity(n);
    for (i, t) in ts.into_iter().enumerate() {
        let v = if stale[i] {
            stale_nan()
        } else {
            vals.next().ok_or(ChunkError::Damaged("too few values"))?
        };
        out.push(Sample { t, v });
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum ValueMode {
    Decimal = 0,
    RawBits = 1,
    Xor = 2,
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The smallest `k` for which every value is an integer over `10^k`, exactly and reversibly.
fn as_decimals(values: &[f64]) -> Option<(u32, Vec<i64>)> {
    const LIMIT: f64 = (1u64 << 53) as f64;
    'k: for k in 0..=MAX_DECIMAL_EXP {
        let scale = POW10[k as usize];
        let mut ints = Vec::with_capacity(values.len());
        for &v in values {
            let n = (v * scale).round();
            // Division by an exact power of ten is correctly rounded, so `n / scale` is the
            // double nearest to the decimal n·10^-k, which is what a parser produced for v.
            if !n.is_finite() || n.abs() >= LIMIT || (n / scale).to_bits() != v.to_bits() {
                continue 'k;
            }
            ints.push(n as i64);
        }
        return Some((k, ints));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &[Sample]) -> usize {
        let data = encode(s);
        let back = decode(&data, s[0].t).unwrap();
        assert_eq!(back.len(), s.len());
        for (a, b) in s.iter().zip(&back) {
            assert_eq!(a.t, b.t);
            assert_eq!(
                a.v.to_bits(),
                b.v.to_bits(),
                "value at {}: {} vs {}",
                a.t,
                a.v,
                b.v
            );
        }
        data.len()
    }

    fn series(mut f: impl FnMut(i64) -> f64) -> Vec<Sample> {
        (0..120)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 5000,
                v: f(i),
            })
            .collect()
    }

    #[test]
    fn constant_series_takes_a_few_bytes_per_chunk() {
        let n = round_trip(&series(|_| 1.0));
        assert!(n <= 16, "{n} bytes");
    }

    #[test]
    fn three_decimal_gauge_beats_xor_by_far() {
        let s = series(|i| {
            ((2.0 + (i as f64 / 7.0).sin() + ((i * 37 % 101) as f64) / 1000.0) * 1000.0).round()
                / 1000.0
        });
        let ours = round_trip(&s);
        let gorilla = xor::encode_prometheus_chunk(&s).len();
        assert!(ours * 2 < gorilla, "ours {ours} vs gorilla {gorilla}");
    }

    #[test]
    fn full_precision_counter_is_no_worse_than_xor() {
        let mut v = 0.0f64;
        let mut seed = 7u64;
        let s = series(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v += (seed >> 11) as f64 / (1u64 << 53) as f64 * 0.001;
            v
        });
        let ours = round_trip(&s);
        let gorilla = xor::encode_prometheus_chunk(&s).len();
        assert!(ours <= gorilla, "ours {ours} vs gorilla {gorilla}");
    }

    #[test]
    fn odd_values_and_staleness_round_trip_bit_exactly() {
        let odd = [
            stale_nan(),
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e-300,
            0.1 + 0.2,
            f64::MAX,
            f64::MIN_POSITIVE / 2.0,
            9007199254740993.0,
        ];
        let s = series(|i| odd[i as usize % odd.len()]);
        round_trip(&s);
        // Staleness markers among decimals keep the decimal encoding.
        let s = series(|i| {
            if i % 30 == 29 {
                stale_nan()
            } else {
                (i as f64) * 0.25
            }
        });
        let n = round_trip(&s);
        let gorilla = xor::encode_prometheus_chunk(&s).len();
        assert!(n * 3 < gorilla, "ours {n} vs gorilla {gorilla}");
    }

    #[test]
    fn irregular_timestamps_and_short_chunks_round_trip() {
        let mut t = -5_000i64;
        let s: Vec<Sample> = (0..97)
            .map(|i| {
                t += 4_990 + (i * 7919 % 23) + if i == 50 { 3_600_000 } else { 0 };
                Sample { t, v: i as f64 }
            })
            .collect();
        round_trip(&s);
        for n in 1..5 {
            round_trip(&s[..n]);
        }
        round_trip(&[
            Sample {
                t: i64::MIN,
                v: 1.0,
            },
            Sample {
                t: i64::MAX,
                v: 2.0,
            },
        ]);
    }

    #[test]
    fn damaged_data_is_an_error_not_a_panic() {
        let s = series(|i| i as f64 * 1.5);
        let data = encode(&s);
        for cut in 0..data.len() {
            let _ = decode(&data[..cut], 0);
        }
        for i in 0..data.len() {
            let mut d = data.clone();
            d[i] ^= 0x5a;
            let _ = decode(&d, 0);
        }
        assert!(decode(&data[..data.len() / 2], 0).is_err());
    }
}
