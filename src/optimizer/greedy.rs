//! The first prototype's solver, kept as the baseline the LP is measured against: compare
//! earnings per unit pairwise and move one unit (1 % of capacity) of one resource at a time from
//! the node that loses least by giving it up (or from free capacity) to the node that gains
//! most by getting it, while that improves the total. It sees one resource at a time, so it
//! stalls where resources only earn together (more cores without more memory earn nothing),
//! which the LP does not.

use std::collections::BTreeMap;

use super::{NodeModel, Problem};
use crate::resources::{Allocation, Resource};

/// The step, as a fraction of the resource's capacity.
pub const STEP_FRACTION: f64 = 0.01;

/// Upper bound on steps, so a pathological model cannot loop for long.
const MAX_STEPS: usize = 100_000;

/// The greedy split: the target allocation per node.
pub fn plan(problem: &Problem) -> BTreeMap<String, Allocation> {
    let models = &problem.models;
    let mut alloc: Vec<Allocation> = models.iter().map(|m| m.current).collect();
    let mut value: Vec<f64> = models.iter().map(|m| m.value(&m.current)).collect();
    let step = problem.capacity.map(|_, c| c.max(0.0) * STEP_FRACTION);
    let mut free = problem
        .available
        .map(|r, avail| avail - alloc.iter().map(|a| a.get(r)).sum::<f64>());
    let eps = 1e-12 * value.iter().map(|v| v.abs()).sum::<f64>().max(1e-300);

    // Over capacity: release where it costs least until it fits.
    for r in Resource::ALL {
        let d = step.get(r);
        if d <= 0.0 {
            continue;
        }
        let mut guard = 0;
        while free.get(r) < -1e-9 * d && guard < MAX_STEPS {
            guard += 1;
            let Some((j, loss_at)) = best_donor(models, &alloc, &value, r, d, None) else {
                break;
            };
            let left = alloc[j].get(r) - d;
            alloc[j].set(r, left);
            value[j] = loss_at;
            free.set(r, free.get(r) + d);
        }
    }

    for _ in 0..MAX_STEPS {
        let mut best: Option<Step> = None;
        for r in Resource::ALL {
            let d = step.get(r);
            if d <= 0.0 {
                continue;
            }
            // Receivers ranked by gain; the best two, so a donor can differ from the receiver.
            let mut top: [Option<(usize, f64, f64)>; 2] = [None, None];
            for (i, m) in models.iter().enumerate() {
                if alloc[i].get(r) + d > m.upper.get(r) + 1e-9 * d {
                    continue;
                }
                let mut a = alloc[i];
                a.set(r, a.get(r) + d);
                let v = m.value(&a);
                let gain = v - value[i];
                if top[0].is_none_or(|t| gain > t.2) {
                    top[1] = top[0];
                    top[0] = Some((i, v, gain));
                } else if top[1].is_none_or(|t| gain > t.2) {
                    top[1] = Some((i, v, gain));
                }
            }
            for (i, v, gain) in top.into_iter().flatten() {
                let candidate = if free.get(r) >= d * (1.0 - 1e-9) {
                    Some((r, i, v, None, gain))
                } else {
                    best_donor(models, &alloc, &value, r, d, Some(i))
                        .map(|(j, vj)| (r, i, v, Some((j, vj)), gain - (value[j] - vj)))
                };
                if let Some(c) = candidate {
                    if best.as_ref().is_none_or(|b| c.4 > b.4) {
                        best = Some(c);
                    }
                }
            }
        }
        let Some((r, i, vi, donor, delta)) = best else {
            break;
        };
        if delta <= eps {
            break;
        }
        let d = step.get(r);
        let got = alloc[i].get(r) + d;
        alloc[i].set(r, got);
        value[i] = vi;
        match donor {
            Some((j, vj)) => {
                let left = alloc[j].get(r) - d;
                alloc[j].set(r, left);
                value[j] = vj;
            }
            None => free.set(r, free.get(r) - d),
        }
    }
    models
        .iter()
        .zip(alloc)
        .map(|(m, a)| (m.node.clone(), a))
        .collect()
}

/// One candidate step: (resource, receiver, its value after, the donor and its value after or
/// None for free capacity, the change of the total).
type Step = (Resource, usize, f64, Option<(usize, f64)>, f64);

/// The node (other than `except`) that loses least by giving up `d` of `r`, and its value
/// after.
fn best_donor(
    models: &[NodeModel],
    alloc: &[Allocation],
    value: &[f64],
    r: Resource,
    d: f64,
    except: Option<usize>,
) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64, f64)> = None;
    for (j, m) in models.iter().enumerate() {
        if Some(j) == except || alloc[j].get(r) - d < m.lower.get(r) - 1e-9 * d {
            continue;
        }
        let mut a = alloc[j];
        a.set(r, a.get(r) - d);
        let v = m.value(&a);
        let loss = value[j] - v;
        if best.is_none_or(|b| loss < b.2) {
            best = Some((j, v, loss));
        }
    }
    best.map(|(j, v, _)| (j, v))
}
