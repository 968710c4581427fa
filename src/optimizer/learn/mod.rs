//! What a node earns from more or less of each resource, learned from its own history rather
//! than told: every hour the node ran at some allocation is a data point, every reallocation
//! an experiment. Pure: it takes points, gives curves with their uncertainty.
//!
//! # The model
//!
//! Per node and hour *t* (UTC hour of day *h*, hour of week *w*), with `y_t` the tokens earned
//! at full exposure:
//!
//! ```text
//! ln y_t = ln g(a_t; θ) + L_t + s(t) + ε_t        ε_t ~ N(0, r / up_t)
//! L_t    = L_{t−1} + η_t                          η_t ~ N(0, q)   (trend, drift)
//! s(t)   = Σ_{k=1..4} (α_k cos 2πkh/24 + β_k sin 2πkh/24) + γ cos 2πw/168 + δ sin 2πw/168
//! g(a;θ) = Σ_groups share_g · min_{r ∈ g} (1 − exp(−a_r / k_r))        Σ share_g = 1
//! ```
//!
//! A group is one paid resource or a `needs_together` list (each member with its own knee).
//! θ (knees, shares) lives on a fixed grid ([`grid::Grid`]: 20 knees per single resource from
//! 1/300 to 10 times its upper range, 12 per member of a group, 7 shares); for every grid point
//! a Kalman filter ([`filter::Filter`]) tracks the level and the seasonal coefficients, which
//! is how hours at different times of day, week and trend become comparable: only what the
//! market index does not explain (the innovation) informs θ. Each point accumulates the
//! log-likelihood of its innovations; the posterior is `π_j ∝ prior_j · exp(τ · ll_j)` with
//! τ = ½ (tempering widens it to allow for what the model gets wrong). An innovation no grid
//! point explains (beyond 4 σ under all) is a market shock: the level takes it, θ learns
//! nothing from it. `q` and `r` come from the moments of first differences of the
//! de-seasonalised data within spans of one allocation (`Var Δ = q + 2r`, `Cov(Δ_t, Δ_{t−1})
//! = −r`), refitted every day of data.
//!
//! Why a grid posterior and not a least-squares fit of a free concave curve: in a month a node
//! visits a handful of allocations; one knee per resource is identifiable from two or three,
//! and the grid gives the uncertainty (the spread of the posterior) and its extrapolation
//! above the highest level visited, which is where decisions are made.
//!
//! # Value and uncertainty
//!
//! Under grid point *j* the node earns `V_j(a) = m_j · g(a; θ_j)` tokens per hour, with `m_j`
//! the mean over the next `horizon` hours of `exp(L + s + ½ var)`. A gain `V_j(a') − V_j(a)`
//! has a posterior distribution over *j*; its bands are weighted quantiles ([`Band`]). Across
//! nodes, each node's distribution is resampled to 256 values and paired by a fixed
//! permutation ([`joint`]), so a transfer between two uncertain nodes is not counted as if
//! both were wrong at once.
//!
//! Usage never shapes a curve: in the market it is demand, censored at the allocation
//! ([`censor`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::resources::{Allocation, Resource};

pub mod censor;
pub mod decide;
pub mod filter;
pub mod grid;
pub mod points;

pub use points::{Exclusion, Point, Series};

/// Tempering of the likelihood (a power posterior).
const TEMPER: f64 = 0.5;
/// Noise levels before there are enough pairs to estimate them.
const DEFAULT_VARIANCE: f64 = 0.05 * 0.05;
/// Refit `q`, `r` and replay every this many used points.
const REFIT_EVERY: usize = 24;
/// Samples per node in the joint distribution of a gain.
pub const JOINT_SAMPLES: usize = 256;

/// What a node's learner is built for.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The paid resources, grouped (a `needs_together` list is one group).
    pub groups: Vec<Vec<Resource>>,
    /// The most the node may hold of each resource (the knee grid's scale).
    pub upper: Allocation,
    /// Optional guesses of knees (priors, a factor 4 = one standard deviation).
    pub guesses: BTreeMap<Resource, f64>,
}

/// A quantity's posterior: the `lo` and `hi` quantiles and the mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub lo: f64,
    pub mean: f64,
    pub hi: f64,
}

/// One node's learner.
#[derive(Clone, Debug)]
pub struct NodeLearner {
    spec: Spec,
    grid: grid::Grid,
    filter: filter::Filter,
    points: Vec<Point>,
    /// `ln g(a; θ_j)` per distinct allocation seen.
    responses: Vec<(Allocation, Vec<f64>)>,
    /// The median tokens per hour of usable points (the floor of a trough is 1 % of it).
    y_median: f64,
    since_refit: usize,
    /// Per resource (in [`Resource::ALL`]'s order), the distinct amounts of the points
    /// [`NodeLearner::levels`] counts, ascending.
    seen: [Vec<f64>; 4],
    /// What only changes when a point is added: computed on first use after a change.
    cache: Cache,
}

/// The posterior and the market index of the last horizon asked for, cleared by every change
/// of the filter (a plan round reads them many times between two hourly points).
#[derive(Clone, Debug, Default)]
struct Cache {
    posterior: OnceLock<Vec<f64>>,
    index: OnceLock<(usize, Vec<f64>)>,
}

impl NodeLearner {
    pub fn new(spec: Spec) -> NodeLearner {
        let grid = grid::Grid::new(&spec.groups, &spec.upper, &spec.guesses);
        let filter = filter::Filter::new(grid.len(), DEFAULT_VARIANCE, DEFAULT_VARIANCE);
        NodeLearner {
            spec,
            grid,
            filter,
            points: Vec::new(),
            responses: Vec::new(),
            y_median: 0.0,
            since_refit: 0,
            seen: Default::default(),
            cache: Cache::default(),
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn grid(&self) -> &grid::Grid {
        &self.grid
    }

    /// Every point given, used or not.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Points the filter used.
    pub fn observations(&self) -> usize {
        self.filter.used
    }

    /// Points taken as market shocks.
    pub fn shocks(&self) -> usize {
        self.filter.shocks
    }

    /// The hour after the last point given (where the next one starts).
    pub fn next_hour(&self) -> Option<i64> {
        self.points.last().map(|p| p.hour + 1)
    }

    /// Adds one hour (hours in order; an hour already given is ignored).
    pub fn add(&mut self, p: Point) {
        if self.push(p, false) {
            self.refit();
        }
    }

    /// Adds hours in order as [`NodeLearner::add`] does one by one, except that the refits
    /// falling due inside the batch are made once, at its end (twice: once to learn from
    /// every point with the noise levels before the batch, once more with those estimated
    /// from that): loading weeks of stored hours replays them twice, not once a day.
    pub fn extend(&mut self, points: impl IntoIterator<Item = Point>) {
        let mut due = false;
        for p in points {
            due |= self.push(p, due);
        }
        if due {
            self.refit();
            self.refit();
        }
    }

    /// Appends `p` and steps the filter with it unless `deferred`; true when a refit is due.
    fn push(&mut self, p: Point, deferred: bool) -> bool {
        if self.next_hour().is_some_and(|h| p.hour < h) {
            return false;
        }
        if p.excluded.is_none() && p.up >= 0.5 && p.tokens > 0.0 {
            for (seen, r) in self.seen.iter_mut().zip(Resource::ALL) {
                let v = p.allocation.get(r);
                let i = seen.partition_point(|x| *x < v);
                if seen.get(i) != Some(&v) {
                    seen.insert(i, v);
                }
            }
        }
        let index = self.points.len();
        self.points.push(p);
        if self.usable(index).is_none() {
            return false;
        }
        self.cache = Cache::default();
        self.since_refit += 1;
        if self.since_refit >= REFIT_EVERY {
            return true;
        }
        if !deferred {
            self.step(index);
        }
        false
    }

    /// The response row of point `i` when it can be learned from.
    fn usable(&mut self, i: usize) -> Option<usize> {
        let p = &self.points[i];
        if p.excluded.is_some() || p.up < 0.5 || p.tokens <= 0.0 || !p.tokens.is_finite() {
            return None;
        }
        let a = p.allocation;
        let row = match self.responses.iter().position(|(b, _)| *b == a) {
            Some(row) => row,
            None => {
                let g: Vec<f64> = self.grid.response(&a).iter().map(|v| v.ln()).collect();
                self.responses.push((a, g));
                self.responses.len() - 1
            }
        };
        // An allocation that earns nothing under every curve says nothing about them.
        self.responses[row]
            .1
            .iter()
            .any(|v| v.is_finite())
            .then_some(row)
    }

    fn log_y(&self, p: &Point) -> f64 {
        let y = p.tokens / p.up.max(1e-9);
        let floor = if self.y_median > 0.0 {
            0.01 * self.y_median
        } else {
            1e-12
        };
        y.max(floor).ln()
    }

    fn step(&mut self, i: usize) {
        let Some(row) = self.usable(i) else {
            return;
        };
        let p = &self.points[i];
        if self.y_median <= 0.0 {
            self.y_median = p.tokens / p.up;
        }
        let (hour, y, up) = (p.hour, self.log_y(p), p.up);
        let x = std::mem::take(&mut self.responses[row].1);
        self.filter.step(hour, y, &x, up);
        self.responses[row].1 = x;
    }

    /// Estimates `q` and `r` again from all points, then replays them.
    pub fn refit(&mut self) {
        self.since_refit = 0;
        let usable: Vec<usize> = (0..self.points.len())
            .filter(|i| self.usable(*i).is_some())
            .collect();
        let mut ys: Vec<f64> = usable
            .iter()
            .map(|i| self.points[*i].tokens / self.points[*i].up)
            .collect();
        ys.sort_by(f64::total_cmp);
        self.y_median = ys.get(ys.len() / 2).copied().unwrap_or(0.0);
        let (q, r) = if self.filter.used > 30 {
            self.noise(&usable)
                .unwrap_or((self.filter.q, self.filter.r))
        } else {
            (self.filter.q, self.filter.r)
        };
        self.filter = filter::Filter::new(self.grid.len(), q, r);
        for i in usable {
            self.step(i);
        }
        // `noise` read the posterior of the filter just replaced.
        self.cache = Cache::default();
    }

    /// `(q, r)` by the method of moments on consecutive hours at one allocation, from the
    /// posterior-mean seasonal profile; None with fewer than 24 pairs.
    fn noise(&self, usable: &[usize]) -> Option<(f64, f64)> {
        let w = self.posterior();
        let mut seasonal = [0.0; filter::D];
        for (j, wj) in w.iter().enumerate() {
            for (s, v) in seasonal.iter_mut().zip(self.filter.state(j)) {
                *s += wj * v;
            }
        }
        let deseason = |p: &Point| {
            let z = filter::design(p.hour);
            self.log_y(p) - (1..filter::D).map(|i| z[i] * seasonal[i]).sum::<f64>()
        };
        let mut e: Vec<(i64, f64)> = Vec::new();
        for pair in usable.windows(2) {
            let (a, b) = (&self.points[pair[0]], &self.points[pair[1]]);
            if b.hour == a.hour + 1 && a.allocation == b.allocation {
                e.push((b.hour, deseason(b) - deseason(a)));
            }
        }
        if e.len() < 24 {
            return None;
        }
        let mut sorted: Vec<f64> = e.iter().map(|x| x.1).collect();
        sorted.sort_by(f64::total_cmp);
        let med = sorted[sorted.len() / 2];
        let mut dev: Vec<f64> = sorted.iter().map(|v| (v - med).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let mad = 1.4826 * dev[dev.len() / 2] + 1e-9;
        let keep: Vec<bool> = e.iter().map(|x| (x.1 - med).abs() < 5.0 * mad).collect();
        let kept: Vec<f64> = e
            .iter()
            .zip(&keep)
            .filter(|k| *k.1)
            .map(|k| k.0 .1)
            .collect();
        let g0 = kept.iter().map(|v| v * v).sum::<f64>() / kept.len().max(1) as f64;
        let lag: Vec<f64> = (1..e.len())
            .filter(|i| e[*i].0 == e[i - 1].0 + 1 && keep[*i] && keep[i - 1])
            .map(|i| e[i].1 * e[i - 1].1)
            .collect();
        let g1 = if lag.len() > 10 {
            lag.iter().sum::<f64>() / lag.len() as f64
        } else {
            -0.25 * g0
        };
        let r = (-g1).clamp(0.05 * g0, 0.5 * g0).max(1e-4);
        let q = (g0 - 2.0 * r).max(0.02 * g0).max(1e-5);
        Some((q, r))
    }

    /// The posterior weight of every grid point (the prior alone before any data).
    pub fn posterior(&self) -> Vec<f64> {
        self.weights().to_vec()
    }

    fn weights(&self) -> &[f64] {
        self.cache
            .posterior
            .get_or_init(|| self.compute_posterior())
    }

    fn compute_posterior(&self) -> Vec<f64> {
        let lp: Vec<f64> = self
            .grid
            .log_prior
            .iter()
            .zip(&self.filter.ll)
            .map(|(p, l)| p + TEMPER * l)
            .collect();
        let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = lp.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = w.iter().sum();
        w.into_iter().map(|v| v / sum).collect()
    }

    /// Per grid point, the market index over the next `horizon` hours (tokens per hour at
    /// response 1). Zero before the first observation.
    pub fn index(&self, horizon: usize) -> Vec<f64> {
        let (h, index) = self
            .cache
            .index
            .get_or_init(|| (horizon, self.filter.index_over(horizon)));
        if *h == horizon {
            index.clone()
        } else {
            self.filter.index_over(horizon)
        }
    }

    /// Per grid point, tokens per hour at `a`, given `index` from [`NodeLearner::index`].
    pub fn values(&self, index: &[f64], a: &Allocation) -> Vec<f64> {
        self.grid
            .response(a)
            .iter()
            .zip(index)
            .map(|(g, m)| g * m)
            .collect()
    }

    /// The knee of `r` as a posterior band (10 %, mean of the log, 90 %).
    pub fn knee(&self, r: Resource, w: &[f64]) -> Option<Band> {
        let (g, m) = self.grid.position(r)?;
        // The weight of each knee on the axis: the same quantiles as over every point.
        let axis = self.grid.knee_axis(g, m);
        let mut on_axis = vec![0.0; axis.len()];
        for (i, wj) in self.grid.knee_position(g, m).iter().zip(w) {
            on_axis[*i as usize] += wj;
        }
        let logs: Vec<f64> = axis.iter().map(|k| k.ln()).collect();
        let b = band(&logs, &on_axis, 0.1);
        Some(Band {
            lo: b.lo.exp(),
            mean: b.mean.exp(),
            hi: b.hi.exp(),
        })
    }

    /// Distinct amounts of `r` among the points used.
    pub fn levels(&self, r: Resource) -> usize {
        Resource::ALL
            .iter()
            .position(|x| *x == r)
            .map_or(0, |i| self.seen[i].len())
    }

    /// For a `needs_together` group: the amount of each member per unit of the first, the
    /// posterior geometric mean of the knee ratios (the mix the learned curves ask for).
    pub fn mix(&self, group: usize, w: &[f64]) -> Vec<f64> {
        let knees = &self.grid.knees[group];
        knees
            .iter()
            .map(|k| {
                w.iter()
                    .zip(k.iter().zip(&knees[0]))
                    .map(|(wj, (a, b))| wj * (a / b).ln())
                    .sum::<f64>()
                    .exp()
            })
            .collect()
    }
}

/// What was learned about one paid resource of a node, for the explanation of a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Learned {
    #[serde(with = "super::resource_key")]
    pub resource: Resource,
    /// Hours the filter used (the node's, shared by its resources).
    pub observations: usize,
    /// Distinct amounts of the resource among them.
    pub levels: usize,
    /// Tokens per hour one more unit would earn over the horizon (10 %, mean, 90 %).
    pub marginal: Band,
    /// The knee (10 %, geometric mean, 90 %).
    pub knee: Band,
}

impl NodeLearner {
    /// What was learned about each paid resource at allocation `a`, over `horizon` hours;
    /// the marginal value is the slope over `step` units above `a` (below it at the top).
    pub fn learned(&self, a: &Allocation, horizon: usize, step: &Allocation) -> Vec<Learned> {
        let w = self.weights();
        let index = self.index(horizon);
        let here = self.values(&index, a);
        let mut out = Vec::new();
        for r in self.spec.groups.iter().flatten() {
            let d = step.get(*r).max(1e-12);
            let mut b = *a;
            let up = a.get(*r) + d <= self.spec.upper.get(*r) || a.get(*r) < d;
            b.set(*r, if up { a.get(*r) + d } else { a.get(*r) - d });
            let there = self.values(&index, &b);
            let slope: Vec<f64> = here
                .iter()
                .zip(&there)
                .map(|(x, y)| if up { (y - x) / d } else { (x - y) / d })
                .collect();
            out.push(Learned {
                resource: *r,
                observations: self.observations(),
                levels: self.levels(*r),
                marginal: band(&slope, w, 0.1),
                knee: self.knee(*r, w).unwrap_or_default(),
            });
        }
        out
    }
}

/// Weighted `alpha` and `1 − alpha` quantiles and the mean of `v` under weights `w`.
pub fn band(v: &[f64], w: &[f64], alpha: f64) -> Band {
    let mut idx: Vec<usize> = (0..v.len()).filter(|i| w[*i] > 0.0).collect();
    if idx.is_empty() {
        return Band::default();
    }
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let total: f64 = idx.iter().map(|i| w[*i]).sum();
    let mean = idx.iter().map(|i| w[*i] * v[*i]).sum::<f64>() / total;
    let quantile = |q: f64| {
        let mut acc = 0.0;
        for i in &idx {
            acc += w[*i] / total;
            if acc >= q - 1e-12 {
                return v[*i];
            }
        }
        v[idx[idx.len() - 1]]
    };
    Band {
        lo: quantile(alpha),
        mean,
        hi: quantile(1.0 - alpha),
    }
}

/// `values` under weights `w`, resampled to [`JOINT_SAMPLES`] sorted values (systematic
/// resampling: deterministic, the same numbers every time).
pub fn resample(values: &[f64], w: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let total: f64 = w.iter().sum();
    let mut out = Vec::with_capacity(JOINT_SAMPLES);
    let mut acc = 0.0;
    let mut k = 0;
    for i in idx {
        acc += w[i] / total;
        while k < JOINT_SAMPLES && (k as f64 + 0.5) / JOINT_SAMPLES as f64 <= acc + 1e-12 {
            out.push(values[i]);
            k += 1;
        }
    }
    while out.len() < JOINT_SAMPLES {
        out.push(out.last().copied().unwrap_or(0.0));
    }
    out
}

/// The sum of independent nodes' resampled gains, paired by a fixed permutation per node
/// (`k ↦ (k·(2n+1)·97 + 31·n) mod 256` for the `n`-th): [`JOINT_SAMPLES`] joint samples.
pub fn joint(parts: &[Vec<f64>]) -> Vec<f64> {
    let m = JOINT_SAMPLES;
    let mut out = vec![0.0; m];
    for (n, part) in parts.iter().enumerate() {
        for (k, o) in out.iter_mut().enumerate() {
            let i = if n == 0 {
                k
            } else {
                (k * (2 * n + 1) * 97 + 31 * n) % m
            };
            *o += part[i];
        }
    }
    out
}

/// The `alpha` and `1 − alpha` quantiles and the mean of equally weighted samples.
pub fn sample_band(samples: &[f64], alpha: f64) -> Band {
    let w = vec![1.0; samples.len()];
    band(samples, &w, alpha)
}

#[cfg(test)]
mod tests;
