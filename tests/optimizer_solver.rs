//! The optimizer's solvers on hand-built models: golden plans computed by hand, the case the
//! greedy prototype cannot solve (resources needed together), and a seeded loop of random
//! instances showing that the LP never plans worse than greedy and never breaks a bound or the
//! capacity.

use std::collections::BTreeMap;

use depin_orcha::optimizer::{greedy, solve, Curve, Group, NodeModel, Problem, ResourceCurve};
use depin_orcha::resources::{Allocation, Resource, Resources};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn alloc(cpu: f64, mem: f64, disk: f64, bw: f64) -> Allocation {
    Resources {
        cpu_cores: cpu,
        memory_bytes: mem,
        disk_bytes: disk,
        bandwidth_bytes_per_second: bw,
    }
}

fn curve(points: &[(f64, f64)]) -> Curve {
    Curve::new(points.to_vec()).expect("test curve is concave")
}

fn model(node: &str, current: Allocation, lower: Allocation, upper: Allocation) -> NodeModel {
    NodeModel {
        node: node.into(),
        protocol: node.into(),
        current,
        lower,
        upper,
        scale: 1.0,
        groups: Vec::new(),
        confidence: 1.0,
        switching_cost_usd: 0.0,
        notes: Vec::new(),
    }
}

fn total(problem: &Problem, target: &BTreeMap<String, Allocation>) -> f64 {
    problem
        .models
        .iter()
        .map(|m| m.value(&target[&m.node]))
        .sum()
}

/// Two nodes share 10 cores. A earns 0.2/core up to 4 cores, then 1/30 per core; B earns
/// 0.15/core up to 2 cores, then 0.05. Filling the steepest slopes first: A's 4 cores, B's
/// first 2, then B's 0.05 beats A's 0.033 for the last 4: A = 4, B = 6, worth 1.3 USD/h.
fn two_nodes_one_resource() -> Problem {
    let cpu_only = |c: f64| alloc(c, 0.0, 0.0, 0.0);
    let mut a = model("a", cpu_only(5.0), cpu_only(0.0), cpu_only(10.0));
    a.groups.push(Group {
        weight: 1.0,
        curves: vec![ResourceCurve {
            resource: Resource::CpuCores,
            curve: curve(&[(0.0, 0.0), (4.0, 0.8), (10.0, 1.0)]),
        }],
    });
    let mut b = model("b", cpu_only(5.0), cpu_only(0.0), cpu_only(10.0));
    b.groups.push(Group {
        weight: 1.0,
        curves: vec![ResourceCurve {
            resource: Resource::CpuCores,
            curve: curve(&[(0.0, 0.0), (2.0, 0.3), (10.0, 0.7)]),
        }],
    });
    Problem {
        models: vec![a, b],
        available: cpu_only(10.0),
        capacity: cpu_only(10.0),
    }
}

#[test]
fn golden_two_nodes_one_resource() {
    let p = two_nodes_one_resource();
    let t = solve(&p).expect("feasible");
    assert!((t["a"].cpu_cores - 4.0).abs() < 1e-6, "{t:?}");
    assert!((t["b"].cpu_cores - 6.0).abs() < 1e-6, "{t:?}");
    assert!((total(&p, &t) - 1.3).abs() < 1e-9);
    // Greedy moves 1 % steps and gets there too on a single resource.
    let g = greedy::plan(&p);
    assert!((g["a"].cpu_cores - 4.0).abs() < 1e-6, "{g:?}");
}

#[test]
fn golden_with_a_bound_and_a_reserve() {
    // Same market, but a reserve leaves 9 cores and B may hold at most 5.5: A's first 4 cores
    // earn 0.2 each, more than B's 0.05, so A keeps 4 and B gets the remaining 5.
    let mut p = two_nodes_one_resource();
    p.models[1].upper.cpu_cores = 5.5;
    p.available.cpu_cores = 9.0;
    let t = solve(&p).expect("feasible");
    assert!((t["a"].cpu_cores - 4.0).abs() < 1e-6, "{t:?}");
    assert!((t["b"].cpu_cores - 5.0).abs() < 1e-6, "{t:?}");
    // Now B is bounded at 4.5 and 9 available: A gets 4.5 (the rest).
    p.models[1].upper.cpu_cores = 4.5;
    let t = solve(&p).expect("feasible");
    assert!((t["b"].cpu_cores - 4.5).abs() < 1e-6, "{t:?}");
    assert!((t["a"].cpu_cores - 4.5).abs() < 1e-6, "{t:?}");
}

/// Golem-like G needs 1 core per 2 GiB (linear, 1 USD/h per work unit up to 6); S earns
/// 0.1 USD/h per GiB of memory. G holds 2 cores and 4 GiB, S 4 GiB; 8 cores and 8 GiB in all.
/// Two GiB moved from S to G (with one more core) earn 1 and lose 0.2: G should get all the
/// memory (8 GiB) and 4 cores. One resource at a time earns nothing, so greedy stalls.
fn together_problem() -> Problem {
    let mut g = model(
        "g",
        alloc(2.0, 4.0, 0.0, 0.0),
        alloc(0.0, 0.0, 0.0, 0.0),
        alloc(8.0, 8.0, 0.0, 0.0),
    );
    let work = curve(&[(0.0, 0.0), (6.0, 6.0)]);
    g.groups.push(Group {
        weight: 1.0,
        curves: vec![
            ResourceCurve {
                resource: Resource::CpuCores,
                curve: work.clone(),
            },
            ResourceCurve {
                resource: Resource::MemoryBytes,
                curve: curve(&[(0.0, 0.0), (12.0, 6.0)]),
            },
        ],
    });
    let mut s = model(
        "s",
        alloc(0.0, 4.0, 0.0, 0.0),
        alloc(0.0, 0.0, 0.0, 0.0),
        alloc(0.0, 8.0, 0.0, 0.0),
    );
    s.groups.push(Group {
        weight: 1.0,
        curves: vec![ResourceCurve {
            resource: Resource::MemoryBytes,
            curve: curve(&[(0.0, 0.0), (8.0, 0.8)]),
        }],
    });
    Problem {
        models: vec![g, s],
        available: alloc(8.0, 8.0, 0.0, 0.0),
        capacity: alloc(8.0, 8.0, 1.0, 1.0),
    }
}

#[test]
fn golden_resources_needed_together() {
    let p = together_problem();
    let t = solve(&p).expect("feasible");
    assert!((t["g"].memory_bytes - 8.0).abs() < 1e-6, "{t:?}");
    assert!((t["g"].cpu_cores - 4.0).abs() < 1e-6, "{t:?}");
    assert!(t["s"].memory_bytes.abs() < 1e-6, "{t:?}");
    assert!((total(&p, &t) - 4.0).abs() < 1e-6);
    // The prototype's weakness, kept visible: no single-resource step pays, so it stays put.
    let g = greedy::plan(&p);
    assert!((total(&p, &g) - 2.4).abs() < 1e-9, "{g:?}");
}

#[test]
fn over_capacity_is_infeasible_with_a_message() {
    let mut p = two_nodes_one_resource();
    p.models[0].lower.cpu_cores = 6.0;
    p.models[1].lower.cpu_cores = 6.0;
    let e = solve(&p).expect_err("12 cores of lower bounds do not fit 10");
    let msg = e.to_string();
    assert!(
        msg.contains("cpu_cores") && msg.contains("12 cores"),
        "{msg}"
    );
}

/// A random concave curve from 0 to `top` in `pieces` segments of falling slope.
fn random_curve(rng: &mut SmallRng, top: f64) -> Curve {
    let pieces = rng.random_range(1..6);
    let mut slopes: Vec<f64> = (0..pieces).map(|_| rng.random_range(0.0..1.0)).collect();
    slopes.sort_by(|a, b| b.total_cmp(a));
    let mut pts = vec![(0.0, 0.0)];
    let mut x = 0.0;
    let mut y = 0.0;
    for s in slopes {
        let dx = top * rng.random_range(0.05..0.5);
        x += dx;
        y += s * dx / top;
        pts.push((x, y));
    }
    curve(&pts)
}

fn random_problem(rng: &mut SmallRng) -> Problem {
    let cap = alloc(16.0, 32e9, 4e12, 12.5e6);
    let n = rng.random_range(2..7);
    let used: Vec<Resource> = Resource::ALL
        .into_iter()
        .filter(|_| rng.random_bool(0.7))
        .collect();
    let used = if used.is_empty() {
        vec![Resource::CpuCores]
    } else {
        used
    };
    let mut models = Vec::new();
    for i in 0..n {
        // Current allocations: a random share that keeps the total within capacity.
        let current = cap.map(|_, c| c * rng.random_range(0.0..1.0) / n as f64);
        let mut lower = current;
        let mut upper = current;
        for r in &used {
            let c = cap.get(*r);
            let lo = if rng.random_bool(0.3) {
                current.get(*r) * rng.random_range(0.0..1.0)
            } else {
                0.0
            };
            let hi = if rng.random_bool(0.3) {
                current.get(*r) + c * rng.random_range(0.0..0.3)
            } else {
                c
            };
            lower.set(*r, lo);
            upper.set(*r, hi);
        }
        let mut m = model(&format!("n{i}"), current, lower, upper);
        m.scale = rng.random_range(0.01..5.0);
        // Groups: sometimes two resources together, otherwise one each.
        let mut rest = used.clone();
        if rest.len() >= 2 && rng.random_bool(0.5) {
            let a = rest.remove(0);
            let b = rest.remove(0);
            let work = random_curve(rng, 1.0);
            let ra = cap.get(a) * rng.random_range(0.1..0.6);
            let rb = cap.get(b) * rng.random_range(0.1..0.6);
            m.groups.push(Group {
                weight: rng.random_range(0.2..2.0),
                curves: vec![
                    ResourceCurve {
                        resource: a,
                        curve: work.stretched(ra),
                    },
                    ResourceCurve {
                        resource: b,
                        curve: work.stretched(rb),
                    },
                ],
            });
        }
        for r in rest {
            if rng.random_bool(0.8) {
                m.groups.push(Group {
                    weight: rng.random_range(0.2..2.0),
                    curves: vec![ResourceCurve {
                        resource: r,
                        curve: random_curve(rng, cap.get(r)),
                    }],
                });
            } else {
                m.lower.set(r, m.current.get(r));
                m.upper.set(r, m.current.get(r));
            }
        }
        models.push(m);
    }
    // Sometimes a reserve takes part of the capacity.
    let available = cap.map(|_, c| if rng.random_bool(0.3) { c * 0.9 } else { c });
    Problem {
        models,
        available,
        capacity: cap,
    }
}

#[test]
fn lp_never_plans_worse_than_greedy_on_random_instances() {
    let mut rng = SmallRng::seed_from_u64(20261125);
    let mut lp_better = 0;
    let mut checked = 0;
    for case in 0..300 {
        let p = random_problem(&mut rng);
        // Cases where lower bounds alone exceed what is available are infeasible for both.
        let feasible = Resource::ALL
            .into_iter()
            .all(|r| p.models.iter().map(|m| m.lower.get(r)).sum::<f64>() <= p.available.get(r));
        if !feasible {
            assert!(solve(&p).is_err(), "case {case}");
            continue;
        }
        checked += 1;
        let lp = solve(&p).unwrap_or_else(|e| panic!("case {case}: {e}"));
        let gr = greedy::plan(&p);
        let (v_lp, v_gr) = (total(&p, &lp), total(&p, &gr));
        let scale: f64 = p.models.iter().map(|m| m.scale).sum();
        assert!(
            v_lp >= v_gr - 1e-6 * scale,
            "case {case}: LP {v_lp} < greedy {v_gr}"
        );
        if v_lp > v_gr + 1e-6 * scale {
            lp_better += 1;
        }
        // The LP's plan respects every range and the capacity.
        for r in Resource::ALL {
            let mut sum = 0.0;
            for m in &p.models {
                let v = lp[&m.node].get(r);
                assert!(
                    v >= m.lower.get(r) - 1e-6 * p.capacity.get(r)
                        && v <= m.upper.get(r) + 1e-6 * p.capacity.get(r),
                    "case {case}: {} {} = {v} outside [{}, {}]",
                    m.node,
                    r.key(),
                    m.lower.get(r),
                    m.upper.get(r)
                );
                sum += v;
            }
            let held: f64 = p.models.iter().map(|m| m.current.get(r)).sum();
            // Never more than available, unless the nodes already held more and cannot shed it.
            assert!(
                sum <= p.available.get(r).max(held) + 1e-6 * p.capacity.get(r),
                "case {case}: {} total {sum} > {}",
                r.key(),
                p.available.get(r)
            );
        }
    }
    assert!(checked > 200, "only {checked} feasible cases");
    // On random instances with groups the LP is strictly better in a good share of cases.
    assert!(
        lp_better > 10,
        "LP strictly better in only {lp_better} cases"
    );
}
