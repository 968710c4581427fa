//! The market index of one node, filtered per grid point: a random-walk level plus daily and
//! weekly harmonics, estimated jointly with the response curve (see the `learn` module doc).
//! The covariance and gains do not depend on the grid point, so they are computed once per
//! point in time; each grid point keeps its own state mean and log-likelihood.

/// Daily harmonics (k = 1..4) and weekly (k = 1).
const DAILY_K: usize = 4;
const WEEKLY_K: usize = 1;
/// State size: level + 2 per harmonic.
pub const D: usize = 1 + 2 * (DAILY_K + WEEKLY_K);
/// Prior standard deviations of the daily and weekly coefficients (log scale).
const SEASONAL_PRIOR_SD: (f64, f64) = (0.7, 0.3);
/// An innovation larger than this many standard deviations under every grid point is a shock
/// of the market (a level step), not evidence about the curve.
const SHOCK_SD: f64 = 4.0;
/// Placeholder log-response for grid points under which an allocation earns nothing.
const LOG_ZERO: f64 = -50.0;

/// `e^x` to a relative error below 1e-9 for `x` in [−700, 700] (tested), for the market
/// index's averages, where libm's last bits matter nothing: `x = n·ln 2 + r` with `|r| ≤ ½ ln 2`,
/// `e^r` by its Taylor polynomial to degree 9, `2^n` written into the exponent bits. No
/// branches and no calls, so a loop of it vectorises. Outside [−700, 700] it saturates at
/// `e^±700`; NaN stays NaN.
pub fn fast_exp(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding 1.5·2^52 rounds to an integer held in the low bits of the mantissa.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let x = x.clamp(-700.0, 700.0);
    let t = x * std::f64::consts::LOG2_E + SHIFTER;
    let n = t - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 362_880.0;
    for c in [
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // The low bits of `t` hold n (two's complement under the shifter's 2^51): the exponent.
    let scale = f64::from_bits((t.to_bits().wrapping_add(1023) & 0x7ff) << 52);
    p * scale
}

/// The design row at hour `hour` (hours since the Unix epoch, UTC).
pub fn design(hour: i64) -> [f64; D] {
    let mut z = [0.0; D];
    z[0] = 1.0;
    let day = hour.rem_euclid(24) as f64;
    let week = hour.rem_euclid(168) as f64;
    let mut i = 1;
    for k in 1..=DAILY_K {
        let a = std::f64::consts::TAU * k as f64 * day / 24.0;
        z[i] = a.cos();
        z[i + 1] = a.sin();
        i += 2;
    }
    for k in 1..=WEEKLY_K {
        let a = std::f64::consts::TAU * k as f64 * week / 168.0;
        z[i] = a.cos();
        z[i + 1] = a.sin();
        i += 2;
    }
    z
}

/// The filter's state.
#[derive(Clone, Debug)]
pub struct Filter {
    /// Per grid point, its state mean (`D` numbers each, point after point).
    pub s: Vec<f64>,
    /// The shared covariance.
    pub p: [[f64; D]; D],
    /// Per grid point, the log-likelihood of the data so far.
    pub ll: Vec<f64>,
    /// Variance of the level's hourly step.
    pub q: f64,
    /// Variance of one hour's observation noise (at full exposure).
    pub r: f64,
    /// The hour of the last point used (None before the first).
    pub last_hour: Option<i64>,
    /// Points used.
    pub used: usize,
    /// Points taken as shocks.
    pub shocks: usize,
}

impl Filter {
    pub fn new(points: usize, q: f64, r: f64) -> Filter {
        Filter {
            s: vec![0.0; points * D],
            p: [[0.0; D]; D],
            ll: vec![0.0; points],
            q,
            r,
            last_hour: None,
            used: 0,
            shocks: 0,
        }
    }

    /// One observation: `y` = log tokens per hour at full exposure, `x[j]` = log response of
    /// the allocation in force under point `j`, `exposure` ∈ (0, 1].
    pub fn step(&mut self, hour: i64, y: f64, x: &[f64], exposure: f64) {
        let r = self.r / exposure.max(1e-3);
        let z = design(hour);
        let xf = |v: f64| if v.is_finite() { v } else { LOG_ZERO };
        let Some(last) = self.last_hour else {
            for (j, xj) in x.iter().enumerate() {
                self.s[j * D] = y - xf(*xj);
            }
            self.p = [[0.0; D]; D];
            self.p[0][0] = r;
            for (i, row) in self.p.iter_mut().enumerate().skip(1) {
                let sd = if i <= 2 * DAILY_K {
                    SEASONAL_PRIOR_SD.0
                } else {
                    SEASONAL_PRIOR_SD.1
                };
                row[i] = sd * sd;
            }
            self.last_hour = Some(hour);
            self.used = 1;
            return;
        };
        self.p[0][0] += self.q * (hour - last).max(0) as f64;
        self.last_hour = Some(hour);
        let (mut pz, mut f) = self.project(&z, r);
        let innovation = |s: &[f64], j: usize, xj: f64| {
            let sj = &s[j * D..(j + 1) * D];
            y - xf(xj) - sj.iter().zip(&z).map(|(a, b)| a * b).sum::<f64>()
        };
        let v: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(j, xj)| innovation(&self.s, j, *xj))
            .collect();
        let vmin = v.iter().map(|v| v.abs()).fold(f64::INFINITY, f64::min);
        if vmin > SHOCK_SD * f.sqrt() {
            // No curve explains it: the market moved. The level takes the jump.
            self.p[0][0] += vmin * vmin;
            (pz, f) = self.project(&z, r);
            self.shocks += 1;
        } else {
            for (ll, vj) in self.ll.iter_mut().zip(&v) {
                *ll += -0.5 * vj * vj / f;
            }
        }
        let k: Vec<f64> = pz.iter().map(|p| p / f).collect();
        for (j, vj) in v.iter().enumerate() {
            let sj = &mut self.s[j * D..(j + 1) * D];
            for (a, ka) in sj.iter_mut().zip(&k) {
                *a += vj * ka;
            }
        }
        for (row, ka) in self.p.iter_mut().zip(&k) {
            for (p, pzb) in row.iter_mut().zip(&pz) {
                *p -= ka * pzb;
            }
        }
        for a in 0..D {
            for b in 0..a {
                let m = 0.5 * (self.p[a][b] + self.p[b][a]);
                self.p[a][b] = m;
                self.p[b][a] = m;
            }
        }
        self.used += 1;
    }

    /// `P·z` and `zᵀ·P·z + r`.
    fn project(&self, z: &[f64; D], r: f64) -> ([f64; D], f64) {
        let mut pz = [0.0; D];
        for (a, row) in self.p.iter().enumerate() {
            pz[a] = row.iter().zip(z).map(|(p, zb)| p * zb).sum();
        }
        let f = pz.iter().zip(z).map(|(a, b)| a * b).sum::<f64>() + r;
        (pz, f)
    }

    /// Point `j`'s state mean.
    pub fn state(&self, j: usize) -> &[f64] {
        &self.s[j * D..(j + 1) * D]
    }

    /// Per grid point, the mean of `exp(level + seasonal)` over the `horizon` hours after the
    /// last point (log-normal mean: `exp(μ + ½σ²)`), in tokens per hour per unit of response.
    pub fn index_over(&self, horizon: usize) -> Vec<f64> {
        let points = self.ll.len();
        let Some(last) = self.last_hour else {
            return vec![0.0; points];
        };
        let horizon = horizon.max(1);
        let rows: Vec<([f64; D], f64)> = (1..=horizon as i64)
            .map(|dh| {
                let z = design(last + dh);
                let (_, f) = self.project(&z, 0.0);
                (z, f + self.q * dh as f64)
            })
            .collect();
        (0..points)
            .map(|j| {
                let s = self.state(j);
                rows.iter()
                    .map(|(z, var)| {
                        let m: f64 = s.iter().zip(z).map(|(a, b)| a * b).sum();
                        fast_exp(m + 0.5 * var)
                    })
                    .sum::<f64>()
                    / horizon as f64
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_row_repeats_daily_and_weekly() {
        assert_eq!(design(5), design(5 + 168));
        let a = design(5);
        let b = design(5 + 24);
        assert!((0..9).all(|i| (a[i] - b[i]).abs() < 1e-9));
        assert!((a[9] - b[9]).abs() > 1e-3);
    }

    #[test]
    fn fast_exp_is_exp_to_a_billionth() {
        let mut worst: f64 = 0.0;
        let mut x = -700.0;
        while x <= 700.0 {
            worst = worst.max((fast_exp(x) / x.exp() - 1.0).abs());
            x += 0.013_7;
        }
        for x in [-1e-300, 0.0, 1e-12, -0.34657, 0.34657, 1.0, 709.0 - 9.0] {
            worst = worst.max((fast_exp(x) / x.exp() - 1.0).abs());
        }
        assert!(worst < 1e-9, "{worst:e}");
        assert!(fast_exp(-800.0) < 1e-300 && fast_exp(-800.0) > 0.0);
        assert!(fast_exp(800.0).is_finite());
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(f64::NAN).is_nan());
    }

    #[test]
    fn a_daily_cycle_is_learned_and_predicted() {
        // One grid point, constant response: y = 2 + 0.8·cos(2π h/24), no noise.
        let mut f = Filter::new(1, 1e-6, 1e-4);
        for hour in 0..24 * 14 {
            let y = 2.0 + 0.8 * (std::f64::consts::TAU * (hour % 24) as f64 / 24.0).cos();
            f.step(hour, y, &[0.0], 1.0);
        }
        // Two weeks cannot tell the level from the weekly harmonic, so only the daily
        // coefficient and the prediction are checked.
        let s = f.state(0);
        assert!((s[1] - 0.8).abs() < 0.05, "{s:?}");
        // The mean over a day of exp(2 + 0.8 cos) is e² · I₀(0.8) ≈ 7.389 · 1.166.
        let m = f.index_over(24)[0];
        assert!((m / (7.389 * 1.166) - 1.0).abs() < 0.1, "{m}");
    }

    #[test]
    fn a_jump_no_point_explains_is_a_shock_not_evidence() {
        let mut f = Filter::new(2, 1e-5, 1e-3);
        for hour in 0..48 {
            f.step(hour, 1.0, &[0.0, -0.1], 1.0);
        }
        let before = f.ll.clone();
        f.step(48, 5.0, &[0.0, -0.1], 1.0);
        assert_eq!(f.shocks, 1);
        assert_eq!(f.ll, before);
    }
}
