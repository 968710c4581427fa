//! The grid of curve parameters one node's learner weighs: a knee per paid resource (each
//! member of a `needs_together` group its own) and a share per group, every combination one
//! grid point, with its prior. `g(a; θ)` at an allocation is computed here for every point.

use std::collections::BTreeMap;

use crate::resources::{Allocation, Resource};

/// Knees per single resource and per member of a group of several.
const KNEES_SINGLE: usize = 20;
const KNEES_TOGETHER: usize = 12;
/// Shares of one group (when a node has several groups), from 5 % to 95 %.
const SHARES: usize = 7;
/// The knee grid spans this range, relative to the resource's upper range.
const KNEE_SPAN: (f64, f64) = (1.0 / 300.0, 10.0);
/// A guess is a log-normal prior: a factor of 4 is one standard deviation.
const GUESS_SD_FACTOR: f64 = 4.0;

/// `1 − exp(−x/k)`.
pub fn h(x: f64, k: f64) -> f64 {
    -(-x.max(0.0) / k).exp_m1()
}

/// Every grid point's parameters, column by column (index `j` is one point).
#[derive(Clone, Debug)]
pub struct Grid {
    /// The groups, each a list of resources (one for a single resource).
    pub groups: Vec<Vec<Resource>>,
    /// `knees[g][m][j]`: the knee of member `m` of group `g` at point `j`.
    pub knees: Vec<Vec<Vec<f64>>>,
    /// `shares[g][j]`: group `g`'s share of the node's ceiling at point `j`.
    pub shares: Vec<Vec<f64>>,
    /// The log prior of each point (−∞ where the shares do not add up).
    pub log_prior: Vec<f64>,
    /// `axes[g][m]`: the distinct knees of member `m` of group `g`, and `at[g][m][j]` the
    /// one point `j` takes: `h` at an allocation is computed once per knee on the axis, not
    /// once per point.
    axes: Vec<Vec<Vec<f64>>>,
    at: Vec<Vec<Vec<u16>>>,
    /// Whether a group's share is 1 at every point (a node with one group).
    whole: bool,
}

impl Grid {
    /// The grid for `groups`, knees scaled to `upper` (the most the node may hold of each
    /// resource), with an optional guess per resource.
    pub fn new(
        groups: &[Vec<Resource>],
        upper: &Allocation,
        guesses: &BTreeMap<Resource, f64>,
    ) -> Grid {
        // Axes: every member's knee, then the shares of every group but the last.
        let mut axes: Vec<Vec<f64>> = Vec::new();
        for g in groups {
            let n = if g.len() == 1 {
                KNEES_SINGLE
            } else {
                KNEES_TOGETHER
            };
            for r in g {
                let reference = upper.get(*r).max(1e-12);
                axes.push(log_space(
                    reference * KNEE_SPAN.0,
                    reference * KNEE_SPAN.1,
                    n,
                ));
            }
        }
        if groups.len() > 1 {
            for _ in 0..groups.len() - 1 {
                axes.push(lin_space(0.05, 0.95, SHARES));
            }
        }
        let size: usize = axes.iter().map(Vec::len).product();
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(size); axes.len()];
        let mut positions: Vec<Vec<u16>> = vec![Vec::with_capacity(size); axes.len()];
        for j in 0..size {
            let mut rest = j;
            for (a, axis) in axes.iter().enumerate().rev() {
                columns[a].push(axis[rest % axis.len()]);
                positions[a].push((rest % axis.len()) as u16);
                rest /= axis.len();
            }
        }
        let mut member_axes = Vec::new();
        let mut at = Vec::new();
        let (mut axis, mut position) = (axes.iter(), positions.into_iter());
        for g in groups {
            member_axes.push(
                g.iter()
                    .map(|_| axis.next().cloned().unwrap_or_default())
                    .collect(),
            );
            at.push(
                g.iter()
                    .map(|_| position.next().unwrap_or_default())
                    .collect(),
            );
        }
        let mut log_prior = vec![0.0; size];
        let mut knees = Vec::new();
        let mut col = columns.into_iter();
        for g in groups {
            let mut members = Vec::new();
            for r in g {
                let k = col.next().expect("one axis per member");
                if let Some(guess) = guesses.get(r).filter(|v| **v > 0.0) {
                    for (lp, kj) in log_prior.iter_mut().zip(&k) {
                        *lp += -0.5 * ((kj / guess).ln() / GUESS_SD_FACTOR.ln()).powi(2);
                    }
                }
                members.push(k);
            }
            knees.push(members);
        }
        let mut shares: Vec<Vec<f64>> = col.collect();
        if groups.len() > 1 {
            let last: Vec<f64> = (0..size)
                .map(|j| 1.0 - shares.iter().map(|s| s[j]).sum::<f64>())
                .collect();
            for (lp, l) in log_prior.iter_mut().zip(&last) {
                if *l <= 1e-9 {
                    *lp = f64::NEG_INFINITY;
                }
            }
            shares.push(last);
        } else {
            shares.push(vec![1.0; size]);
        }
        Grid {
            groups: groups.to_vec(),
            knees,
            shares,
            log_prior,
            axes: member_axes,
            at,
            whole: groups.len() == 1,
        }
    }

    pub fn len(&self) -> usize {
        self.log_prior.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log_prior.is_empty()
    }

    /// `g(a; θ_j) = Σ_g share_g · min_{r ∈ g} h(a_r / k_r)` at every point.
    pub fn response(&self, a: &Allocation) -> Vec<f64> {
        let mut out = vec![0.0; self.len()];
        for (g, members) in self.groups.iter().enumerate() {
            // h on each member's knee axis (a few dozen exponentials), then looked up per point.
            let table: Vec<Vec<f64>> = members
                .iter()
                .zip(&self.axes[g])
                .map(|(r, axis)| axis.iter().map(|k| h(a.get(*r), *k)).collect())
                .collect();
            let at = &self.at[g];
            match (table.len(), self.whole) {
                (1, true) => {
                    for (o, i) in out.iter_mut().zip(&at[0]) {
                        *o = table[0][*i as usize];
                    }
                }
                (1, false) => {
                    let shares = &self.shares[g];
                    for ((o, i), s) in out.iter_mut().zip(&at[0]).zip(shares) {
                        *o += s * table[0][*i as usize];
                    }
                }
                _ => {
                    let shares = &self.shares[g];
                    for (j, o) in out.iter_mut().enumerate() {
                        let v = table
                            .iter()
                            .zip(at)
                            .map(|(t, i)| t[i[j] as usize])
                            .fold(f64::INFINITY, f64::min);
                        *o += shares[j] * v;
                    }
                }
            }
        }
        out
    }

    /// The distinct knees of member `m` of group `g` (ascending), and the one point `j` takes
    /// is `knee_axis(g, m)[knee_position(g, m)[j]]`.
    pub fn knee_axis(&self, g: usize, m: usize) -> &[f64] {
        &self.axes[g][m]
    }

    pub fn knee_position(&self, g: usize, m: usize) -> &[u16] {
        &self.at[g][m]
    }

    /// Where resource `r` is: (group, member), when the node is paid for it.
    pub fn position(&self, r: Resource) -> Option<(usize, usize)> {
        self.groups
            .iter()
            .enumerate()
            .find_map(|(g, members)| members.iter().position(|x| *x == r).map(|m| (g, m)))
    }
}

fn log_space(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (a, b) = (lo.ln(), hi.ln());
    (0..n)
        .map(|i| (a + (b - a) * i as f64 / (n - 1) as f64).exp())
        .collect()
}

fn lin_space(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(disk: f64, bw: f64) -> Allocation {
        Allocation {
            disk_bytes: disk,
            bandwidth_bytes_per_second: bw,
            ..Default::default()
        }
    }

    #[test]
    fn two_groups_make_knees_times_knees_times_shares() {
        let g = Grid::new(
            &[
                vec![Resource::DiskBytes],
                vec![Resource::BandwidthBytesPerSecond],
            ],
            &alloc(2e12, 8e6),
            &BTreeMap::new(),
        );
        assert_eq!(g.len(), 20 * 20 * 7);
        // Shares add up to one at every point.
        for j in 0..g.len() {
            assert!((g.shares[0][j] + g.shares[1][j] - 1.0).abs() < 1e-12);
        }
        // Nothing allocated earns nothing; the response is at most 1.
        assert!(g.response(&alloc(0.0, 0.0)).iter().all(|v| *v == 0.0));
        assert!(g.response(&alloc(1e15, 1e12)).iter().all(|v| *v <= 1.0));
        assert_eq!(g.position(Resource::BandwidthBytesPerSecond), Some((1, 0)));
        assert_eq!(g.position(Resource::CpuCores), None);
    }

    #[test]
    fn the_response_by_knee_axis_is_the_formula_at_every_point() {
        let shapes = [
            vec![
                vec![Resource::DiskBytes],
                vec![Resource::BandwidthBytesPerSecond],
            ],
            vec![vec![Resource::CpuCores, Resource::MemoryBytes]],
            vec![vec![Resource::BandwidthBytesPerSecond]],
        ];
        let upper = Allocation {
            cpu_cores: 8.0,
            memory_bytes: 16e9,
            disk_bytes: 2e12,
            bandwidth_bytes_per_second: 8e6,
        };
        let a = Allocation {
            cpu_cores: 3.0,
            memory_bytes: 4e9,
            disk_bytes: 0.7e12,
            bandwidth_bytes_per_second: 2.5e6,
        };
        for groups in shapes {
            let g = Grid::new(&groups, &upper, &BTreeMap::new());
            let fast = g.response(&a);
            for (j, v) in fast.iter().enumerate() {
                let direct: f64 = groups
                    .iter()
                    .enumerate()
                    .map(|(gi, members)| {
                        g.shares[gi][j]
                            * members
                                .iter()
                                .enumerate()
                                .map(|(m, r)| h(a.get(*r), g.knees[gi][m][j]))
                                .fold(f64::INFINITY, f64::min)
                    })
                    .sum();
                assert_eq!(*v, direct, "{groups:?} point {j}");
            }
        }
    }

    #[test]
    fn a_guess_favours_knees_near_it() {
        let mut guesses = BTreeMap::new();
        guesses.insert(Resource::BandwidthBytesPerSecond, 2e6);
        let g = Grid::new(
            &[vec![Resource::BandwidthBytesPerSecond]],
            &alloc(0.0, 8e6),
            &guesses,
        );
        let best = (0..g.len())
            .max_by(|a, b| g.log_prior[*a].total_cmp(&g.log_prior[*b]))
            .unwrap();
        let k = g.knees[0][0][best];
        assert!(k > 1e6 && k < 4e6, "{k}");
    }

    #[test]
    fn a_group_earns_as_its_scarcer_member() {
        let g = Grid::new(
            &[vec![Resource::CpuCores, Resource::MemoryBytes]],
            &Allocation {
                cpu_cores: 8.0,
                memory_bytes: 16e9,
                ..Default::default()
            },
            &BTreeMap::new(),
        );
        assert_eq!(g.len(), 144);
        let lots_of_cpu = Allocation {
            cpu_cores: 1e6,
            memory_bytes: 1e9,
            ..Default::default()
        };
        let v = g.response(&lots_of_cpu);
        for (j, vj) in v.iter().enumerate() {
            assert!((vj - h(1e9, g.knees[0][1][j])).abs() < 1e-12);
        }
    }
}
