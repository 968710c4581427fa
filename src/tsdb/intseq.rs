//! Lossless coding of a short sequence of integers (a chunk's timestamps, or its values once
//! they are integers), choosing per sequence the cheapest of:
//!
//! * a predictor: none, previous value (delta), previous delta (delta-of-delta, Gorilla's choice
//!   for timestamps), or a straight line fitted to the chunk (noisy gauges around a slow trend:
//!   the residuals are then just the noise, not the difference of two noises);
//! * residuals zig-zag encoded or, when none is negative, as they are (monotonic counters);
//! * a residual coder: truncated binary up to the largest residual (uniform noise; zero bits
//!   when all residuals are equal), Rice (geometric-looking residuals), or exponential-Golomb
//!   (mostly tiny residuals with rare large ones, such as the odd late scrape).
//!
//! The sequence length is not stored; the caller knows it.

use super::bits::{unzigzag, zigzag, BitReader, BitWriter, EndOfData};

/// A Rice code uses at most this many unary bits before it falls back to an explicit width.
const RICE_ESCAPE: u64 = 24;

/// Fixed-point scale of the fitted line's slope (`slope = s / 2^SLOPE_SHIFT`).
const SLOPE_SHIFT: u32 = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntSeqError {
    #[error(transparent)]
    EndOfData(#[from] EndOfData),
    #[error("integer sequence header is damaged")]
    Damaged,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Predictor {
    None = 0,
    Delta = 1,
    DeltaOfDelta = 2,
    Line = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coder {
    TruncatedBinary = 0,
    Rice = 1,
    ExpGolomb = 2,
}

/// Residuals after a predictor, and the values (heads) the decoder needs to start it.
struct Residuals {
    heads: Vec<i64>,
    tail: Vec<i64>,
}

fn predict(xs: &[i64], p: Predictor) -> Residuals {
    match p {
        Predictor::None => Residuals {
            heads: vec![],
            tail: xs.to_vec(),
        },
        Predictor::Delta | Predictor::DeltaOfDelta => {
            let order = if p == Predictor::Delta { 1 } else { 2 };
            let mut r = xs.to_vec();
            for o in 0..order {
                for i in (o + 1..r.len()).rev() {
                    r[i] = r[i].wrapping_sub(r[i - 1]);
                }
            }
            let h = order.min(r.len());
            Residuals {
                heads: r[..h].to_vec(),
                tail: r[h..].to_vec(),
            }
        }
        Predictor::Line => {
            let (a, s) = fit_line(xs);
            let mut tail: Vec<i64> = xs
                .iter()
                .enumerate()
                .map(|(i, &x)| x.wrapping_sub(line_at(a, s, i)))
                .collect();
            // Move the line down to the lowest point so residuals are non-negative.
            let (min, max) = (
                tail.iter().min().copied().unwrap_or(0),
                tail.iter().max().copied().unwrap_or(0),
            );
            let a = if (max as i128 - min as i128) < i64::MAX as i128 {
                tail.iter_mut().for_each(|r| *r = r.wrapping_sub(min));
                a.wrapping_add(min)
            } else {
                a
            };
            Residuals {
                heads: vec![a, s],
                tail,
            }
        }
    }
}

fn line_at(a: i64, s: i64, i: usize) -> i64 {
    a.wrapping_add(((i as i128 * s as i128) >> SLOPE_SHIFT) as i64)
}

/// Least-squares line through `(i, xs[i])` as an intercept and a fixed-point slope.
fn fit_line(xs: &[i64]) -> (i64, i64) {
    let n = xs.len();
    let Some(&x0) = xs.first() else { return (0, 0) };
    if n < 2 {
        return (x0, 0);
    }
    // Relative to the first value, so large values (IEEE bits) keep their precision.
    let ys: Vec<f64> = xs.iter().map(|&x| x.wrapping_sub(x0) as f64).collect();
    let mean_i = (n - 1) as f64 / 2.0;
    let mean_y = ys.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let di = i as f64 - mean_i;
        sxy += di * (y - mean_y);
        sxx += di * di;
    }
    let slope = sxy / sxx;
    let s = (slope * (1u64 << SLOPE_SHIFT) as f64).round();
    let s = if s.is_finite() && s.abs() < 9.0e18 {
        s as i64
    } else {
        0
    };
    let a = x0.wrapping_add((mean_y - slope * mean_i).round() as i64);
    (a, s)
}

fn bit_len(z: u64) -> u32 {
    64 - z.leading_zeros()
}

fn low_mask(k: u32) -> u64 {
    if k >= 64 {
        u64::MAX
    } else {
        (1u64 << k) - 1
    }
}

/// Truncated binary code for values in `[0, max]`: `k` or `k + 1` bits where `2^k ≤ max + 1`.
struct Truncated {
    k: u32,
    /// Values below this use `k` bits.
    short: u128,
}

impl Truncated {
    fn new(max: u64) -> Self {
        let n = max as u128 + 1;
        let k = 127 - n.leading_zeros();
        Truncated {
            k,
            short: (1u128 << (k + 1)) - n,
        }
    }
    fn cost(&self, z: u64) -> usize {
        if (z as u128) < self.short {
            self.k as usize
        } else {
            self.k as usize + 1
        }
    }
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

fn head_cost(h: i64) -> usize {
    7 + bit_len(zigzag(h)) as usize
}

fn write_head(w: &mut BitWriter, h: i64) {
    let z = zigzag(h);
    w.bits(bit_len(z) as u64, 7);
    w.bits(z, bit_len(z));
}

fn read_head(r: &mut BitReader) -> Result<i64, IntSeqError> {
    let n = r.bits(7)? as u32;
    if n > 64 {
        return Err(IntSeqError::Damaged);
    }
    Ok(unzigzag(r.bits(n)?))
}

fn write_uvarint_cost(v: u64) -> usize {
    8 * (bit_len(v).max(1) as usize).div_ceil(7)
}

struct Plan {
    bits: usize,
    predictor: Predictor,
    signed: bool,
    coder: Coder,
    /// Rice / exp-Golomb parameter, or the largest residual for truncated binary.
    param: u64,
    res: Residuals,
}

/// Writes `xs` with the cheapest coding; see the module doc.
pub fn write(w: &mut BitWriter, xs: &[i64]) {
    let mut best: Option<Plan> = None;
    for p in [
        Predictor::None,
        Predictor::Delta,
        Predictor::DeltaOfDelta,
        Predictor::Line,
    ] {
        let res = predict(xs, p);
        let head_bits: usize = res.heads.iter().map(|&h| head_cost(h)).sum();
        let signed = res.tail.iter().any(|&x| x < 0);
        let zs: Vec<u64> = res
            .tail
            .iter()
            .map(|&x| if signed { zigzag(x) } else { x as u64 })
            .collect();
        let max = zs.iter().copied().max().unwrap_or(0);
        let tb = Truncated::new(max);
        let mut cand = (
            zs.iter().map(|&z| tb.cost(z)).sum::<usize>() + write_uvarint_cost(max),
            Coder::TruncatedBinary,
            max,
        );
        if max > 0 {
            let mean = zs.iter().map(|&z| z as f64).sum::<f64>() / zs.len() as f64;
            let k0 = if mean < 1.0 { 0 } else { mean.log2() as i32 };
            for k in (k0 - 1).max(0)..=(k0 + 1).min(63) {
                let cost: usize = zs.iter().map(|&z| rice_cost(z, k as u32)).sum::<usize>() + 6;
                if cost < cand.0 {
                    cand = (cost, Coder::Rice, k as u64);
                }
            }
            // Exp-Golomb pays off when most residuals are tiny, so only small orders matter.
            for k in 0..=(k0.clamp(0, 2) as u32) {
                let cost: usize = zs.iter().map(|&z| exp_golomb_cost(z, k)).sum::<usize>() + 6;
                if cost < cand.0 {
                    cand = (cost, Coder::ExpGolomb, k as u64);
                }
            }
        }
        let bits = 2 + 1 + 2 + head_bits + cand.0;
        if best.as_ref().is_none_or(|b| bits < b.bits) {
            best = Some(Plan {
                bits,
                predictor: p,
                signed,
                coder: cand.1,
                param: cand.2,
                res,
            });
        }
    }
    let Some(plan) = best else { return };
    w.bits(plan.predictor as u64, 2);
    w.bit(plan.signed);
    w.bits(plan.coder as u64, 2);
    match plan.coder {
        Coder::TruncatedBinary => w.uvarint(plan.param),
        Coder::Rice | Coder::ExpGolomb => w.bits(plan.param, 6),
    }
    for &h in &plan.res.heads {
        write_head(w, h);
    }
    let tb = Truncated::new(plan.param);
    let k = plan.param as u32;
    for &x in &plan.res.tail {
        let z = if plan.signed { zigzag(x) } else { x as u64 };
        match plan.coder {
            Coder::TruncatedBinary => {
                if (z as u128) < tb.short {
                    w.bits(z, tb.k);
                } else {
                    let v = z as u128 + tb.short;
                    write_wide(w, v, tb.k + 1);
                }
            }
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
                write_wide(w, wv, nb);
                w.bits(z & low_mask(k), k);
            }
        }
    }
}

/// Writes up to 65 bits.
fn write_wide(w: &mut BitWriter, v: u128, n: u32) {
    if n > 64 {
        w.bits((v >> 64) as u64, n - 64);
        w.bits(v as u64, 64);
    } else {
        w.bits(v as u64, n);
    }
}

fn read_wide(r: &mut BitReader, n: u32) -> Result<u128, EndOfData> {
    if n > 64 {
        let hi = r.bits(n - 64)? as u128;
        Ok((hi << 64) | r.bits(64)? as u128)
    } else {
        Ok(r.bits(n)? as u128)
    }
}

/// Reads `n` integers written by [`write`].
pub fn read(r: &mut BitReader, n: usize) -> Result<Vec<i64>, IntSeqError> {
    let predictor = r.bits(2)?;
    let signed = r.bit()?;
    let coder = r.bits(2)?;
    let param = match coder {
        c if c == Coder::TruncatedBinary as u64 => r.uvarint()?,
        c if c == Coder::Rice as u64 || c == Coder::ExpGolomb as u64 => r.bits(6)?,
        _ => return Err(IntSeqError::Damaged),
    };
    let nheads = match predictor {
        p if p == Predictor::None as u64 => 0,
        p if p == Predictor::Delta as u64 => 1.min(n),
        p if p == Predictor::DeltaOfDelta as u64 => 2.min(n),
        _ => 2,
    };
    let mut heads = Vec::with_capacity(nheads);
    for _ in 0..nheads {
        heads.push(read_head(r)?);
    }
    let ntail = if predictor == Predictor::Line as u64 {
        n
    } else {
        n - nheads
    };
    let tb = Truncated::new(param);
    let k = param as u32;
    let mut tail = Vec::with_capacity(ntail);
    for _ in 0..ntail {
        let z = match coder {
            c if c == Coder::TruncatedBinary as u64 => {
                let v = r.bits(tb.k)? as u128;
                if v < tb.short {
                    v as u64
                } else {
                    (((v << 1) | r.bit()? as u128) - tb.short) as u64
                }
            }
            c if c == Coder::Rice as u64 => {
                let mut q = 0u64;
                while q < RICE_ESCAPE && r.bit()? {
                    q += 1;
                }
                if q == RICE_ESCAPE {
                    let len = r.bits(7)? as u32;
                    if len > 64 {
                        return Err(IntSeqError::Damaged);
                    }
                    r.bits(len)?
                } else {
                    (q << k) | r.bits(k)?
                }
            }
            _ => {
                let mut zeros = 0u32;
                while !r.bit()? {
                    zeros += 1;
                    if zeros > 64 {
                        return Err(IntSeqError::Damaged);
                    }
                }
                // The 1 just read is the top bit of (z >> k) + 1.
                let wv: u128 = (1u128 << zeros) | read_wide(r, zeros)?;
                let q = (wv - 1) as u64;
                (q << k) | r.bits(k)?
            }
        };
        tail.push(if signed { unzigzag(z) } else { z as i64 });
    }
    Ok(match predictor {
        p if p == Predictor::Line as u64 => {
            let (a, s) = (heads[0], heads[1]);
            tail.iter()
                .enumerate()
                .map(|(i, &x)| x.wrapping_add(line_at(a, s, i)))
                .collect()
        }
        p => {
            let mut res = heads;
            res.extend(tail);
            for o in (0..p as usize).rev() {
                for i in o + 1..res.len() {
                    res[i] = res[i].wrapping_add(res[i - 1]);
                }
            }
            res
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(xs: &[i64]) -> usize {
        let mut w = BitWriter::new();
        write(&mut w, xs);
        let n = w.bit_len();
        let b = w.into_bytes();
        assert_eq!(read(&mut BitReader::new(&b), xs.len()).unwrap(), xs);
        n
    }

    #[test]
    fn every_shape_round_trips() {
        let lcg = |i: i64| {
            (i.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 40)
                % 101
        };
        let cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![7],
            vec![i64::MIN, i64::MAX],
            vec![i64::MAX, i64::MIN, 0, -1, 1],
            (0..120).map(|i| i * 5000).collect(),
            (0..120).map(|i| 2000 + i * 3 + lcg(i)).collect(),
            (0..120)
                .map(|i| 4_600_000_000_000_000_000 + i * 1_000_000_007 + lcg(i) * 1000)
                .collect(),
            (0..120)
                .map(|i| if i == 60 { 1 << 62 } else { 0 })
                .collect(),
            (0..120).map(|i| -i * i * 1000).collect(),
        ];
        for c in &cases {
            round_trip(c);
        }
    }

    #[test]
    fn the_cheapest_coding_is_close_to_the_entropy() {
        // Evenly spaced timestamps: only the heads.
        assert!(round_trip(&(0..120).map(|i| i * 5000).collect::<Vec<_>>()) < 50);
        // Uniform noise of 101 values around a line: log2(101) = 6.66 bits each.
        let noise = |i: i64| {
            (i.wrapping_mul(2862933555777941757).wrapping_add(3037000493) >> 33).rem_euclid(101)
        };
        let xs: Vec<i64> = (0..120).map(|i| 2000 + i * 2 + noise(i)).collect();
        let bits = round_trip(&xs);
        assert!(bits < 120 * 7 + 60, "{bits}");
    }
}
