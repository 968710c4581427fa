//! The learning planner (`planner: learning` in the rules): one [`NodeLearner`] per node, fed
//! each completed hour from the node's own series in the tsdb (its USD earnings counter,
//! `depin_adapter_up`, `depin_usage_*`, `depin_allocation_*`; never a simulator's), the hours
//! kept under `--storage.path` ([`LearningStore`]) and replayed at start. It plans on the
//! learned curves with the rule of [`crate::optimizer::learn::decide`]: move only when the
//! gain after switching holds at the pessimistic end of its band, else probe an uncertain paid
//! resource within the day's exploration budget (`exploration_budget`, USD at risk per day),
//! or venture a large expected gain the band cannot prove yet within the same budget, else
//! hold.
//!
//! Earnings are learned in USD: a token's price path is part of the level the learner tracks,
//! like any other trend. The budget is charged when a probe is proposed for the first time;
//! the same probe proposed again (the gates held it back) is not charged twice. A venture is
//! charged once a later round finds its target in force: the gates may hold it back, and a
//! venture that never happened risked nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use super::planner::{PlanInput, Planner};
use crate::clock::{DAY_MS, HOUR_MS};
use crate::labels::Matcher;
use crate::optimizer::explain::NodeLearning;
use crate::optimizer::learn::decide::{self, Choice, Settings};
use crate::optimizer::learn::{points, NodeLearner, Series, Spec};
use crate::optimizer::{self, OptimizationRules, Plan};
use crate::reallocation::learning::LearningStore;
use crate::resources::{Allocation, Resource};
use crate::tsdb::{Db, Queryable};

/// Hours of history a learner starts from (and the store keeps).
const WINDOW_HOURS: i64 = 30 * 24;
/// Hours the values are averaged over: the third of a day ahead. The split follows the part
/// of the daily cycle to come (two nodes whose busy hours differ can trade a resource twice a
/// day within `max_reallocations_per_day: 2`) while a single hour's noise still evens out;
/// over a whole day the cycle evened out and the split was the day's average.
const HORIZON: usize = 8;
/// A node and resource probed are not probed again within this.
const PROBE_SPACING_MS: i64 = DAY_MS;
/// Hours after a change that say nothing (restart, counters catching up).
const SETTLE_HOURS: i64 = 1;
/// A venture not in force within this was not applied: it is not charged.
const VENTURE_PENDING_MS: i64 = HOUR_MS;
/// How close the allocation in force must be to a venture's target (a fraction of it) for the
/// venture to count as applied (actuators round).
const VENTURE_MATCH: f64 = 0.02;

/// A venture proposed and not yet seen in force.
struct Venture {
    at_ms: i64,
    /// The nodes it moves, at their targets.
    target: BTreeMap<String, Allocation>,
    at_risk_usd: f64,
}

impl Venture {
    fn in_force(&self, problem: &optimizer::Problem) -> bool {
        self.target.iter().all(|(node, t)| {
            problem.models.iter().any(|m| {
                m.node == *node
                    && Resource::ALL.into_iter().all(|r| {
                        (m.current.get(r) - t.get(r)).abs()
                            <= VENTURE_MATCH * t.get(r).abs().max(1e-12)
                    })
            })
        })
    }
}

struct State {
    learners: BTreeMap<String, NodeLearner>,
    store: Option<LearningStore>,
    /// Points read back from the store, per node, until its learner is built.
    replay: BTreeMap<String, Vec<points::Point>>,
    /// Budget charged: (time, USD).
    spent: Vec<(i64, f64)>,
    /// Probes proposed: (node, resource) → (time, target amount).
    probed: BTreeMap<(String, Resource), (i64, f64)>,
    venture: Option<Venture>,
}

/// Plans on curves learned from each node's history.
pub struct LearningPlanner {
    state: Mutex<State>,
    metrics: Option<optimizer::OptimizerMetrics>,
}

impl LearningPlanner {
    /// A planner that keeps its hours in `dir/learning.jsonl` (None: in memory), with its
    /// plans in `registry`'s `depin_optimizer_*` metrics when given.
    pub fn new(
        dir: Option<&Path>,
        now_ms: i64,
        registry: Option<&prometheus::Registry>,
    ) -> Result<LearningPlanner, String> {
        let (store, replay) = match dir {
            Some(d) => {
                let (s, loaded) = LearningStore::open(d, now_ms / HOUR_MS - WINDOW_HOURS)
                    .map_err(|e| e.to_string())?;
                if !loaded.damaged_lines.is_empty() || loaded.torn_tail_bytes.is_some() {
                    tracing::warn!(lines = ?loaded.damaged_lines, torn = ?loaded.torn_tail_bytes, path = ?s.path(), "damaged learning data was skipped");
                }
                (Some(s), loaded.points)
            }
            None => (None, BTreeMap::new()),
        };
        let metrics = match registry {
            Some(r) => Some(optimizer::OptimizerMetrics::register(r).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(LearningPlanner {
            state: Mutex::new(State {
                learners: BTreeMap::new(),
                store,
                replay,
                spent: Vec::new(),
                probed: BTreeMap::new(),
                venture: None,
            }),
            metrics,
        })
    }

    /// Every node's learner as it is now (for explanations and tests).
    pub fn learners(&self) -> BTreeMap<String, NodeLearner> {
        super::lock(&self.state).learners.clone()
    }
}

/// The learner's spec for a node of `model`: its paid groups (weight above 0) and bounds.
fn spec_for(rules: &OptimizationRules, m: &optimizer::NodeModel, cap: &Allocation) -> Spec {
    let bounds = rules
        .for_node(&m.node, &m.protocol)
        .map(|r| r.bounds)
        .unwrap_or_default();
    let upper = cap.map(|r, c| bounds.get(&r).map(|b| b.1).unwrap_or(c).max(1e-12));
    Spec {
        groups: m
            .groups
            .iter()
            .filter(|g| g.weight > 0.0)
            .map(|g| g.curves.iter().map(|c| c.resource).collect())
            .collect(),
        upper,
        guesses: BTreeMap::new(),
    }
}

/// The node's series in `[from, to]` ms from the tsdb.
fn series(db: &Db, node: &str, current: &Allocation, from: i64, to: i64) -> Series {
    let one = |name: &str| -> Vec<(i64, f64)> {
        let m = [
            Matcher::equal("__name__", name),
            Matcher::equal("node", node),
        ];
        let mut s: Vec<(i64, f64)> = db
            .select(&m, from, to)
            .into_iter()
            .next()
            .map(|s| s.samples.iter().map(|x| (x.t, x.v)).collect())
            .unwrap_or_default();
        s.retain(|(_, v)| v.is_finite());
        s
    };
    let mut out = Series {
        earnings: one("depin_earnings_usd_total"),
        up: one("depin_adapter_up"),
        ..Default::default()
    };
    let mut changes: BTreeMap<i64, Vec<(Resource, f64)>> = BTreeMap::new();
    for r in Resource::ALL {
        let u = one(&format!("depin_usage_{}", r.key()));
        if !u.is_empty() {
            out.usage.insert(r, u);
        }
        for (t, v) in one(&format!("depin_allocation_{}", r.key())) {
            changes.entry(t).or_default().push((r, v));
        }
    }
    let mut a = *current;
    let mut first = true;
    for (t, vs) in changes {
        let mut b = a;
        for (r, v) in vs {
            b.set(r, v);
        }
        if first || b != a {
            out.allocations.push((t, b));
        }
        first = false;
        a = b;
    }
    if out.allocations.is_empty() {
        out.allocations.push((from, *current));
    }
    out
}

impl State {
    /// Builds missing learners (replaying stored hours) and feeds each the hours completed
    /// since its last.
    fn feed(&mut self, i: &PlanInput<'_>, problem: &optimizer::Problem) {
        let now_hour = i.now_ms / HOUR_MS;
        for m in &problem.models {
            let spec = spec_for(i.rules, m, &problem.capacity);
            let rebuild = self.learners.get(&m.node).is_none_or(|l| *l.spec() != spec);
            if rebuild {
                let mut l = NodeLearner::new(spec);
                let old = self
                    .learners
                    .get(&m.node)
                    .map(|l| l.points().to_vec())
                    .or_else(|| self.replay.remove(&m.node))
                    .unwrap_or_default();
                for p in old {
                    l.add(p);
                }
                self.learners.insert(m.node.clone(), l);
            }
            let Some(l) = self.learners.get_mut(&m.node) else {
                continue;
            };
            let from = l.next_hour().unwrap_or(now_hour - WINDOW_HOURS);
            if from >= now_hour {
                continue;
            }
            let s = series(
                i.db,
                &m.node,
                &m.current,
                (from - SETTLE_HOURS - 1) * HOUR_MS,
                now_hour * HOUR_MS,
            );
            for p in points::hourly(&s, from, now_hour, SETTLE_HOURS) {
                if let Some(store) = &mut self.store {
                    if let Err(e) = store.append(&m.node, &p) {
                        tracing::warn!(error = %e, "cannot keep a learning point");
                    }
                }
                l.add(p);
            }
        }
    }
}

impl Planner for LearningPlanner {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        let started = std::time::Instant::now();
        let inputs = i.gather()?;
        let (problem, mut left_out) = optimizer::build_problem_for_learning(i.rules, &inputs);
        let mut all_left = inputs.left_out.clone();
        all_left.append(&mut left_out);
        let mut st = super::lock(&self.state);
        st.feed(i, &problem);
        st.spent.retain(|(t, _)| *t > i.now_ms - DAY_MS);
        st.probed
            .retain(|_, (t, _)| *t > i.now_ms - PROBE_SPACING_MS);
        if let Some(v) = st.venture.take() {
            if v.in_force(&problem) {
                st.spent.push((i.now_ms, v.at_risk_usd));
                if let Some(m) = &self.metrics {
                    for node in v.target.keys() {
                        m.venture_applied(node);
                    }
                }
            } else if v.at_ms > i.now_ms - VENTURE_PENDING_MS {
                st.venture = Some(v);
            }
        }
        let spent: f64 = st.spent.iter().map(|s| s.1).sum();
        let settings = Settings {
            horizon: HORIZON,
            hold_hours: i.rules.gates.min_hold.as_secs_f64() / 3600.0,
            budget_left_usd: (i
                .rules
                .exploration_budget
                .usd_per_day(inputs.nodes.iter().map(|n| n.value_per_hour).sum())
                - spent)
                .max(0.0),
            step: problem.capacity.map(|r, c| {
                i.rules
                    .gates
                    .max_step
                    .get(r)
                    .map(|s| s.limit(c))
                    .unwrap_or(f64::INFINITY)
            }),
            skip: st.probed.keys().cloned().collect::<BTreeSet<_>>(),
            min_confidence: i.rules.gates.min_confidence,
        };
        let learners: BTreeMap<String, &NodeLearner> =
            st.learners.iter().map(|(k, v)| (k.clone(), v)).collect();
        let out = decide::decide(&problem, &learners, |p| optimizer::solve(p).ok(), &settings);
        let mut plan = optimizer::plan_for(i.rules, i.now_ms, &out.problem, &out.target, all_left);
        explain(&mut plan, &out, &learners, &settings);
        tracing::debug!(explanation = ?plan.explanation, "learning planner");
        if let Some(m) = &self.metrics {
            for model in &out.problem.models {
                let Some(l) = learners.get(&model.node) else {
                    continue;
                };
                let mut nl = NodeLearning::new(&model.node, l, &model.current, 1.0, HORIZON);
                nl.probe = match &out.choice {
                    Choice::Probe(p) if p.node == model.node => Some(p.reason.clone()),
                    _ => None,
                };
                m.observe_node(&model.node, &nl);
            }
        }
        drop(learners);
        if let Choice::Venture(at_risk) = out.choice {
            let target: BTreeMap<String, Allocation> = decide::moved(&out.problem, &out.target)
                .map(|(m, t)| (m.node.clone(), *t))
                .collect();
            let pending = st.venture.as_ref().is_some_and(|v| v.target == target);
            if !plan.moves.is_empty() && !pending {
                st.venture = Some(Venture {
                    at_ms: i.now_ms,
                    target,
                    at_risk_usd: at_risk,
                });
            }
        }
        if let Choice::Probe(p) = &out.choice {
            let key = (p.node.clone(), p.resource);
            if !plan.moves.is_empty() && st.probed.get(&key).map(|x| x.1) != Some(p.to) {
                st.probed.insert(key, (i.now_ms, p.to));
                st.spent.push((i.now_ms, p.at_risk_usd));
                if let Some(m) = &self.metrics {
                    m.probe_applied(&p.node, p.resource);
                }
            }
        }
        drop(st);
        if let Some(m) = &self.metrics {
            m.observe(&plan, started.elapsed().as_secs_f64());
        }
        Ok(plan)
    }
}

/// The plan's numbers from the decision (see `decide`'s module doc), and why in its
/// explanation: per node and paid resource the learned curve, then each decision step.
fn explain(
    plan: &mut Plan,
    out: &decide::Outcome,
    learners: &BTreeMap<String, &NodeLearner>,
    s: &Settings,
) {
    match &out.choice {
        Choice::Exploit | Choice::Venture(_) => plan.expected_gain_usd_per_hour = out.gain.mean,
        Choice::Probe(_) => plan.expected_gain_usd_per_hour = out.gain.hi,
        Choice::Hold => {}
    }
    if !plan.moves.is_empty() {
        plan.confidence = out.confidence;
        plan.improvement = if plan.current_usd_per_hour > 0.0 {
            plan.expected_gain_usd_per_hour / plan.current_usd_per_hour
        } else {
            0.0
        };
        plan.roi = (plan.switching_cost_usd > 0.0).then(|| {
            (plan.expected_gain_usd_per_hour * plan.hold_hours - plan.switching_cost_usd)
                / plan.switching_cost_usd
        });
    }
    let step = s.step.map(|_, v| if v.is_finite() { v } else { 1.0 });
    let mut lines = Vec::new();
    for m in &out.problem.models {
        let Some(l) = learners.get(&m.node) else {
            continue;
        };
        for x in l.learned(&m.current, s.horizon, &step) {
            lines.push(format!(
                "learned {} {}: {} h observed, {} level(s); marginal {:.3e} USD/h per unit (10 %: {:.3e}, 90 %: {:.3e}); knee {} ({} to {})",
                m.node,
                x.resource.key(),
                x.observations,
                x.levels,
                x.marginal.mean,
                x.marginal.lo,
                x.marginal.hi,
                optimizer::fmt_amount(x.resource, x.knee.mean),
                optimizer::fmt_amount(x.resource, x.knee.lo),
                optimizer::fmt_amount(x.resource, x.knee.hi),
            ));
        }
    }
    lines.extend(out.notes.iter().cloned());
    lines.push(match &out.choice {
        Choice::Exploit => format!(
            "decision: move (gain at the pessimistic end {:+.4} USD/h; P(net gain > 0) = {:.2})",
            out.gain.lo, out.confidence
        ),
        Choice::Venture(at_risk) => format!(
            "decision: move at a risk (expected gain {:+.4} USD/h, 10 %: {:+.4}; P(net gain > 0) = {:.2}; {:.4} USD of the exploration budget at risk)",
            out.gain.mean, out.gain.lo, out.confidence, at_risk
        ),
        Choice::Probe(p) => format!(
            "decision: probe {} {} ({} → {}{}); P(loss within the budget) = {:.2}",
            p.node,
            p.resource.key(),
            optimizer::fmt_amount(p.resource, p.from),
            optimizer::fmt_amount(p.resource, p.to),
            p.donor
                .as_ref()
                .map(|d| format!(", taken from {d}"))
                .unwrap_or_default(),
            out.confidence
        ),
        Choice::Hold => {
            "decision: hold (no gain at the pessimistic end, no probe within the budget)".into()
        }
    });
    plan.explanation.extend(lines);
}

/// The planner the rules ask for (`planner`), keeping what it learns under `storage` when
/// given, its plans in `registry`'s metrics when given.
pub fn planner_for(
    rules: &OptimizationRules,
    storage: Option<&Path>,
    now_ms: i64,
    registry: Option<&prometheus::Registry>,
) -> Result<Box<dyn Planner>, String> {
    Ok(match rules.planner {
        optimizer::PlannerKind::Model => Box::new(match registry {
            Some(r) => super::OptimizerPlanner::with_metrics(r).map_err(|e| e.to_string())?,
            None => super::OptimizerPlanner::default(),
        }),
        optimizer::PlannerKind::Learning => {
            Box::new(LearningPlanner::new(storage, now_ms, registry)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(golem_cores: f64) -> optimizer::Problem {
        let model = |node: &str, cores: f64| optimizer::NodeModel {
            node: node.into(),
            protocol: node.into(),
            current: Allocation {
                cpu_cores: cores,
                memory_bytes: 4e9,
                ..Default::default()
            },
            lower: Allocation::default(),
            upper: Allocation::default(),
            scale: 1.0,
            groups: Vec::new(),
            confidence: 1.0,
            switching_cost_usd: 0.0,
            notes: Vec::new(),
        };
        optimizer::Problem {
            models: vec![model("golem", golem_cores), model("golem-2", 2.0)],
            available: Allocation::default(),
            capacity: Allocation::default(),
        }
    }

    /// A move proven at the pessimistic end reports its expected gain as the posterior mean:
    /// `gates.min_improvement` judges that, as it judges any planner's expected gain. A gain
    /// whose 10 % quantile is only just positive but whose mean is 2 % of the earnings passes
    /// a 1 % gate.
    #[test]
    fn a_proven_move_is_judged_by_its_mean_gain() {
        use crate::optimizer::learn::Band;
        use crate::reallocation::gates::{self, Mode};
        let rules = optimizer::parse_str(
            "gates: {min_improvement: 1%}\nnodes: {golem: {value_per_hour: '1'}}\n",
            "test",
        )
        .unwrap();
        let problem = host(3.0);
        let mut target: BTreeMap<String, Allocation> = problem
            .models
            .iter()
            .map(|m| (m.node.clone(), m.current))
            .collect();
        target.get_mut("golem").unwrap().cpu_cores = 4.0;
        let mut plan = optimizer::plan_for(&rules, 0, &problem, &target, Vec::new());
        assert!(!plan.moves.is_empty());
        plan.current_usd_per_hour = 0.1;
        let out = decide::Outcome {
            problem: problem.clone(),
            target,
            choice: Choice::Exploit,
            gain: Band {
                lo: 0.0001,
                mean: 0.002,
                hi: 0.003,
            },
            confidence: 0.95,
            notes: Vec::new(),
        };
        let settings = Settings {
            horizon: HORIZON,
            hold_hours: 1.0,
            budget_left_usd: 0.0,
            min_confidence: 0.7,
            step: Allocation::default(),
            skip: BTreeSet::new(),
        };
        explain(&mut plan, &out, &BTreeMap::new(), &settings);
        assert_eq!(plan.expected_gain_usd_per_hour, 0.002);
        assert!(
            (plan.improvement - 0.02).abs() < 1e-12,
            "{}",
            plan.improvement
        );
        let v = gates::min_improvement(&plan, &rules.gates, Mode::Plan);
        assert!(v.pass, "{}", v.reason);
    }

    /// A venture is charged to the budget only once its target is in force: within the
    /// actuators' rounding, for every node it moves; a node it moves that is not planned (down,
    /// left out) means it is not in force.
    #[test]
    fn a_venture_is_in_force_only_when_every_node_it_moves_holds_its_target() {
        let v = |nodes: &[&str]| Venture {
            at_ms: 0,
            target: nodes
                .iter()
                .map(|n| {
                    let a = Allocation {
                        cpu_cores: 3.0,
                        memory_bytes: 4e9,
                        ..Default::default()
                    };
                    (n.to_string(), a)
                })
                .collect(),
            at_risk_usd: 0.01,
        };
        assert!(v(&["golem"]).in_force(&host(3.0)));
        assert!(v(&["golem"]).in_force(&host(3.05)), "within 2 %");
        assert!(!v(&["golem"]).in_force(&host(3.1)), "beyond 2 %");
        assert!(!v(&["golem"]).in_force(&host(2.0)), "not applied");
        assert!(!v(&["golem", "golem-2"]).in_force(&host(3.0)), "one of two");
        assert!(!v(&["storj"]).in_force(&host(3.0)), "a node not planned");
    }
}
