//! Compressed chunks: up to [`CHUNK_SAMPLES`] samples of one series in one immutable byte string.
//!
//! A chunk is encoded once, when the head cuts it, so the encoder can look at all its samples and
//! pick the smallest of several lossless encodings (Prometheus' head encodes sample by sample and
//! must stay with Gorilla XOR):
//!
//! * Timestamps are delta-of-delta, as in Gorilla. Instead of Gorilla's fixed bucket widths the
//!   residuals are Rice-coded (or fixed width, or zero bits when all scrapes are evenly spaced)
//!   with a parameter chosen for the chunk, so jittery wall-clock scrapes cost a few bits, not 16.
//! * Values are tried as decimals first: when every value `v` of the chunk satisfies
//!   `round(v·10^k) / 10^k == v` bit for bit for one small `k` (integers have `k = 0`), the
//!   integers `v·10^k` are stored as deltas or deltas of deltas, zig-zag or unsigned, Rice or
//!   fixed width. Otherwise the raw IEEE bits are taken as integers (monotonic counters become
//!   small positive deltas), or Gorilla XOR; the smallest encoding wins.
//! * Staleness markers are kept as a list of sample positions and left out of the value stream,
//!   so they round-trip bit-exactly and do not spoil the decimal detection.

use std::sync::Arc;

use super::bits::{unzigzag, zigzag, BitReader, BitWriter, EndOfData};
use super::{is_stale_nan, stale_nan, xor, Sample};

/// Samples per chunk, as Prometheus' head chunks.
pub const CHUNK_SAMPLES: usize = 120;

/// No chunk is ever cut larger; a count above this is damage, not a reason to allocate.
const MAX_SAMPLES: usize = 1 << 16;

/// Format version written in the first four bits of every chunk.
const FORMAT: u64 = 1;

/// Largest decimal exponent tried: `10^15` keeps typical magnitudes below 2^53.
const MAX_DECIMAL_EXP: u32 = 15;

/// A Rice code uses at most this many unary bits before it falls back to an explicit width.
const RICE_ESCAPE: u64 = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    EndOfData(#[from] EndOfData),
    #[error("chunk format {0} is unknown")]
    UnknownFormat(u64),
    #[error("chunk is damaged: {0}")]
    Damaged(&'static str),
}

/// One sealed chunk. `mint`/`maxt` repeat what the data holds so queries and retention can skip
/// chunks without decoding them.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub mint: i64,
    pub maxt: i64,
    pub count: u32,
    pub data: Arc<[u8]>,
}

impl Chunk {
    /// Encodes samples (time-ordered, at least one).
    pub fn encode(samples: &[Sample]) -> Chunk {
        let mint = samples.first().map_or(0, |s| s.t);
        let maxt = samples.last().map_or(0, |s| s.t);
        Chunk {
            mint,
            maxt,
            count: samples.len() as u32,
            data: encode(samples).into(),
        }
    }

    /// Rebuilds a chunk from stored bytes, checking that they decode.
    pub fn from_data(data: Vec<u8>) -> Result<Chunk, ChunkError> {
        let s = decode(&data)?;
        let (Some(first), Some(last)) = (s.first(), s.last()) else {
            return Err(ChunkError::Damaged("empty chunk"));
        };
        Ok(Chunk {
            mint: first.t,
            maxt: last.t,
            count: s.len() as u32,
            data: data.into(),
        })
    }

    pub fn samples(&self) -> Result<Vec<Sample>, ChunkError> {
        decode(&self.data)
    }

    /// Bytes of the encoded samples.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    /// Bytes this struct and its allocation header take besides the data.
    pub const META_BYTES: usize = std::mem::size_of::<Chunk>() + 16;
}

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
    w.uvarint(stale.len() as u64);
    let mut prev = 0;
    for &i in &stale {
        w.uvarint((i - prev) as u64);
        prev = i;
    }

    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    write_ints(&mut w, &ts);

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
    write_ints(&mut cand, &raw);
    if cand.bit_len() < best.bit_len() {
        best = cand;
    }

    if let Some((k, ints)) = as_decimals(&values) {
        let mut cand = BitWriter::new();
        cand.bits(ValueMode::Decimal as u64, 2);
        cand.bits(k as u64, 4);
        write_ints(&mut cand, &ints);
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

pub fn decode(data: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let mut r = BitReader::new(data);
    let format = r.bits(4)?;
    if format != FORMAT {
        return Err(ChunkError::UnknownFormat(format));
    }
    let n = r.uvarint()? as usize;
    if n > MAX_SAMPLES {
        return Err(ChunkError::Damaged("sample count over the limit"));
    }
    let nstale = r.uvarint()? as usize;
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
    let ts = read_ints(&mut r, n)?;
    let nvals = n - nstale;
    let mut values = Vec::with_capacity(nvals);
    match r.bits(2)? {
        m if m == ValueMode::Xor as u64 => xor::read_values(&mut r, nvals, &mut values)?,
        m if m == ValueMode::RawBits as u64 => values.extend(
            read_ints(&mut r, nvals)?
                .into_iter()
                .map(|x| f64::from_bits(x as u64)),
        ),
        m if m == ValueMode::Decimal as u64 => {
            let k = r.bits(4)? as usize;
            let scale = POW10[k];
            values.extend(
                read_ints(&mut r, nvals)?
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

/// How a sequence of integers is turned into residuals and how the residuals are coded.
#[derive(Clone, Copy, Debug)]
struct IntCoding {
    /// 0: the values themselves, 1: deltas, 2: deltas of deltas.
    order: u8,
    /// Residuals are zig-zag encoded; otherwise they are all non-negative and stored as is.
    signed: bool,
    coder: Coder,
    param: u8,
}

/// How residuals are written: fixed width `param` bits (uniform noise), Rice with parameter
/// `param` (geometric-looking residuals), or exponential-Golomb of order `param` (mostly small
/// residuals with rare large ones, such as the odd late scrape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coder {
    Fixed = 0,
    Rice = 1,
    ExpGolomb = 2,
}

const INT_HEADER_BITS: usize = 2 + 1 + 2 + 7;

fn residuals(xs: &[i64], order: u8) -> Vec<i64> {
    let mut r = xs.to_vec();
    for o in 0..order as usize {
        // Difference from the back so each step uses the previous order's values.
        for i in (o + 1..r.len()).rev() {
            r[i] = r[i].wrapping_sub(r[i - 1]);
        }
    }
    r
}

fn bit_len(z: u64) -> u32 {
    64 - z.leading_zeros()
}

fn rice_cost(z: u64, k: u32) -> usize {
    let q = z >> k;
    if q < RICE_ESCAPE {
        (q + 1) as usize + k as usize
    } else {
        RICE_ESCAPE as usize + 7 + bit_len(z) as usize
    }
}

fn exp_golomb_cost(z: u64, k: u32) -> usize {
    let w = (z >> k) as u128 + 1;
    let nb = 128 - w.leading_zeros() as usize;
    2 * nb - 1 + k as usize
}

/// Writes a time- or value-sequence with the cheapest [`IntCoding`]. The reader must know
/// `xs.len()`.
fn write_ints(w: &mut BitWriter, xs: &[i64]) {
    let mut best: Option<(usize, IntCoding, Vec<i64>)> = None;
    for order in 0..=2u8 {
        let r = residuals(xs, order);
        let heads = (order as usize).min(r.len());
        let head_bits: usize = r[..heads].iter().map(|&h| uvarint_bits(zigzag(h))).sum();
        let tail = &r[heads..];
        let signed = tail.iter().any(|&x| x < 0);
        let zs: Vec<u64> = tail
            .iter()
            .map(|&x| if signed { zigzag(x) } else { x as u64 })
            .collect();
        let max = zs.iter().copied().max().unwrap_or(0);
        let fixed = IntCoding {
            order,
            signed,
            coder: Coder::Fixed,
            param: bit_len(max) as u8,
        };
        let mut cand = (zs.len() * bit_len(max) as usize, fixed);
        if max > 0 {
            let mean = zs.iter().map(|&z| z as f64).sum::<f64>() / zs.len() as f64;
            let k0 = if mean < 1.0 { 0 } else { mean.log2() as i32 };
            for k in (k0 - 2).max(0)..=(k0 + 2).min(63) {
                let cost: usize = zs.iter().map(|&z| rice_cost(z, k as u32)).sum();
                if cost < cand.0 {
                    cand = (
                        cost,
                        IntCoding {
                            order,
                            signed,
                            coder: Coder::Rice,
                            param: k as u8,
                        },
                    );
                }
            }
            // Exp-Golomb pays off when most residuals are tiny, so only small orders matter.
            for k in 0..=(k0.clamp(0, 8) as u32) {
                let cost: usize = zs.iter().map(|&z| exp_golomb_cost(z, k)).sum();
                if cost < cand.0 {
                    cand = (
                        cost,
                        IntCoding {
                            order,
                            signed,
                            coder: Coder::ExpGolomb,
                            param: k as u8,
                        },
                    );
                }
            }
        }
        let total = INT_HEADER_BITS + head_bits + cand.0;
        if best.as_ref().is_none_or(|b| total < b.0) {
            best = Some((total, cand.1, r));
        }
    }
    let Some((_, c, r)) = best else { return };
    w.bits(c.order as u64, 2);
    w.bit(c.signed);
    w.bits(c.coder as u64, 2);
    w.bits(c.param as u64, 7);
    let heads = (c.order as usize).min(r.len());
    for &h in &r[..heads] {
        w.uvarint(zigzag(h));
    }
    let k = c.param as u32;
    for &x in &r[heads..] {
        let z = if c.signed { zigzag(x) } else { x as u64 };
        match c.coder {
            Coder::Fixed => w.bits(z, k),
            Coder::Rice => {
                let q = z >> k;
                if q < RICE_ESCAPE {
                    // q ones then a zero; at most 24 bits, so one write.
                    w.bits(((1u64 << q) - 1) << 1, q as u32 + 1);
                    w.bits(z & low_mask(k), k);
                } else {
                    w.bits((1u64 << RICE_ESCAPE) - 1, RICE_ESCAPE as u32);
                    w.bits(bit_len(z) as u64, 7);
                    w.bits(z, bit_len(z));
                }
            }
            Coder::ExpGolomb => {
                // nb-1 zeros, then (z >> k) + 1 in nb bits (its top bit is the 1 that ends the
                // zeros), then the low k bits of z. u128 because (z >> 0) + 1 may need 65 bits.
                let wv = (z >> k) as u128 + 1;
                let nb = 128 - wv.leading_zeros();
                w.bits(0, nb - 1);
                if nb > 64 {
                    w.bits((wv >> 64) as u64, nb - 64);
                    w.bits(wv as u64, 64);
                } else {
                    w.bits(wv as u64, nb);
                }
                w.bits(z & low_mask(k), k);
            }
        }
    }
}

fn read_ints(r: &mut BitReader, n: usize) -> Result<Vec<i64>, ChunkError> {
    let order = r.bits(2)? as u8;
    let signed = r.bit()?;
    let coder = r.bits(2)?;
    let param = r.bits(7)? as u32;
    if order > 2 || param > 64 || (coder != Coder::Fixed as u64 && param > 63) {
        return Err(ChunkError::Damaged("integer coding header"));
    }
    let heads = (order as usize).min(n);
    let mut res = Vec::with_capacity(n);
    for _ in 0..heads {
        res.push(unzigzag(r.uvarint()?));
    }
    for _ in heads..n {
        let z = match coder {
            c if c == Coder::Fixed as u64 => r.bits(param)?,
            c if c == Coder::Rice as u64 => {
                let mut q = 0u64;
                while q < RICE_ESCAPE && r.bit()? {
                    q += 1;
                }
                if q == RICE_ESCAPE {
                    let len = r.bits(7)? as u32;
                    if len > 64 {
                        return Err(ChunkError::Damaged("escaped width over 64"));
                    }
                    r.bits(len)?
                } else {
                    (q << param) | r.bits(param)?
                }
            }
            c if c == Coder::ExpGolomb as u64 => {
                let mut zeros = 0u32;
                while !r.bit()? {
                    zeros += 1;
                    if zeros > 64 {
                        return Err(ChunkError::Damaged("exp-Golomb prefix over 64 bits"));
                    }
                }
                // The 1 just read is the top bit of (z >> k) + 1.
                let wv: u128 = (1u128 << zeros) | r.bits(zeros)? as u128;
                let q = (wv - 1) as u64;
                (q << param) | r.bits(param)?
            }
            _ => return Err(ChunkError::Damaged("unknown integer coder")),
        };
        res.push(if signed { unzigzag(z) } else { z as i64 });
    }
    // Undo the differencing, lowest order last.
    for o in (0..order as usize).rev() {
        for i in o + 1..res.len() {
            res[i] = res[i].wrapping_add(res[i - 1]);
        }
    }
    Ok(res)
}

fn low_mask(k: u32) -> u64 {
    if k >= 64 {
        u64::MAX
    } else {
        (1u64 << k) - 1
    }
}

fn uvarint_bits(v: u64) -> usize {
    8 * (bit_len(v).max(1) as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &[Sample]) -> usize {
        let data = encode(s);
        let back = decode(&data).unwrap();
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
            let _ = decode(&data[..cut]);
        }
        for i in 0..data.len() {
            let mut d = data.clone();
            d[i] ^= 0x5a;
            let _ = decode(&d);
        }
        assert!(decode(&data[..data.len() / 2]).is_err());
    }
}
