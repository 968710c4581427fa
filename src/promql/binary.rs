//! Binary operators: arithmetic, comparison (filtering or `bool`), `atan2`, between scalars,
//! scalar and vector, and vector and vector with one-to-one or many-to-one matching
//! (`on`/`ignoring`, `group_left`/`group_right`); and the set operators `and`, `or`, `unless`.
//! Follows `VectorBinop`, `VectorscalarBinop` and `resultMetric` in Prometheus' engine.go,
//! including their error texts.

use std::collections::{HashMap, HashSet};

use promql_parser::label::Labels as NameList;
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::engine::{labels_string, merge_same_labels, Cursor, Evaluated, Evaluator, Out};
use super::value::{Matrix, Sample, Series};
use super::Error;
use crate::labels::{Labels, METRIC_NAME};

/// A binary operator, parsed once per expression rather than matched as text per sample.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Mod,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Op, Error> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "^" => Op::Pow,
            "%" => Op::Mod,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return Err(Error::Eval(format!("unknown binary operator \"{s}\""))),
        })
    }
}

fn is_comparison(op: Op) -> bool {
    matches!(op, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
}

fn is_set_op(op: Op) -> bool {
    matches!(op, Op::And | Op::Or | Op::Unless)
}

/// Arithmetic drops the metric name: the result is no longer the same quantity.
fn changes_metric_schema(op: Op) -> bool {
    matches!(
        op,
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Mod | Op::Atan2
    )
}

/// One element operation: the value, and whether a comparison holds (true for arithmetic).
fn elem_binop(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Pow => (l.powf(r), true),
        // Rust's `%` on floats is C's fmod, the same as Go's math.Mod.
        Op::Mod => (l % r, true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        // Set operators never reach element arithmetic.
        Op::And | Op::Or | Op::Unless => (f64::NAN, false),
    }
}

fn btos(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// How two vectors are matched.
struct Matching {
    on: bool,
    names: Vec<String>,
    card: Card,
    include: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Matching {
    fn new(m: &Option<BinModifier>) -> Self {
        let names_of = |l: &NameList| l.labels.clone();
        let (on, names) = match m.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, names_of(l)),
            Some(LabelModifier::Exclude(l)) => (false, names_of(l)),
            None => (false, Vec::new()),
        };
        let (card, include) = match m.as_ref().map(|m| &m.card) {
            Some(VectorMatchCardinality::ManyToOne(l)) => (Card::ManyToOne, names_of(l)),
            Some(VectorMatchCardinality::OneToMany(l)) => (Card::OneToMany, names_of(l)),
            _ => (Card::OneToOne, Vec::new()),
        };
        Matching {
            on,
            names,
            card,
            include,
        }
    }

    /// The labels two series must share to match (Prometheus' `MatchLabels`).
    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            l.keep(&self.names)
        } else {
            let mut drop = self.names.clone();
            drop.push(METRIC_NAME.to_string());
            l.drop(&drop)
        }
    }
}

/// Maps each series of both sides to the ordinal of its match signature.
fn signatures(m: &Matching, lhs: &Matrix, rhs: &Matrix) -> (Vec<usize>, Vec<usize>) {
    let mut ords: HashMap<Labels, usize> = HashMap::new();
    let mut ord = |l: &Labels| {
        let sig = m.signature(l);
        let n = ords.len();
        *ords.entry(sig).or_insert(n)
    };
    let ls = lhs.iter().map(|s| ord(&s.labels)).collect();
    let rs = rhs.iter().map(|s| ord(&s.labels)).collect();
    (ls, rs)
}

impl Evaluator<'_> {
    pub(crate) fn eval_binary(&mut self, b: &BinaryExpr) -> Result<Evaluated, Error> {
        let op_name = b.op.to_string();
        let op = Op::parse(&op_name)?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        let held = lhs.num_samples() + rhs.num_samples();
        let out = match (lhs, rhs) {
            (Evaluated::Scalar(a), Evaluated::Scalar(c)) => {
                let mut v = Vec::with_capacity(a.len());
                for (x, y) in a.iter().zip(&c) {
                    let (r, keep) = elem_binop(op, *x, *y);
                    v.push(if is_comparison(op) { btos(keep) } else { r });
                }
                Evaluated::Scalar(v)
            }
            (Evaluated::Vector(m), Evaluated::Scalar(s)) => {
                Evaluated::Vector(self.vector_scalar(op, m, &s, false, return_bool)?)
            }
            (Evaluated::Scalar(s), Evaluated::Vector(m)) => {
                Evaluated::Vector(self.vector_scalar(op, m, &s, true, return_bool)?)
            }
            (Evaluated::Vector(l), Evaluated::Vector(r)) => {
                let matching = Matching::new(&b.modifier);
                if is_set_op(op) {
                    Evaluated::Vector(self.set_op(op, l, r, &matching)?)
                } else {
                    Evaluated::Vector(self.vector_binop(op, l, r, &matching, return_bool)?)
                }
            }
            (l, r) => {
                return Err(Error::Eval(format!(
                    "binary operator \"{op_name}\" not allowed between {} and {}",
                    l.type_name(),
                    r.type_name()
                )))
            }
        };
        self.st.release(held);
        Ok(out)
    }

    /// A vector and a scalar; `swap` when the scalar is on the left.
    fn vector_scalar(
        &mut self,
        op: Op,
        m: Matrix,
        s: &[f64],
        swap: bool,
        return_bool: bool,
    ) -> Result<Matrix, Error> {
        let cmp = is_comparison(op);
        let drop_name = changes_metric_schema(op) || return_bool;
        let mut out = Vec::with_capacity(m.len());
        for series in m {
            self.st.check_alive()?;
            let mut samples = Vec::with_capacity(series.samples.len());
            for p in series.samples {
                let sv = s.get(self.step_index(p.t)).copied().unwrap_or(f64::NAN);
                let (l, r) = if swap { (sv, p.v) } else { (p.v, sv) };
                let (mut v, keep) = elem_binop(op, l, r);
                // A comparison keeps the vector element's value, whichever side it is on.
                if cmp && swap {
                    v = r;
                }
                if return_bool {
                    samples.push(Sample {
                        t: p.t,
                        v: btos(keep),
                    });
                } else if keep {
                    samples.push(Sample { t: p.t, v });
                }
            }
            if !samples.is_empty() {
                let labels = if drop_name {
                    series.labels.without_metric_name()
                } else {
                    series.labels
                };
                out.push(Series { labels, samples });
            }
        }
        if drop_name {
            merge_same_labels(out)
        } else {
            Ok(out)
        }
    }

    fn vector_binop(
        &mut self,
        op: Op,
        lhs: Matrix,
        rhs: Matrix,
        m: &Matching,
        return_bool: bool,
    ) -> Result<Matrix, Error> {
        let (lsig, rsig) = signatures(m, &lhs, &rhs);
        // Work with the "many" side on the left; group_right swaps the sides.
        let swapped = m.card == Card::OneToMany;
        let (many, one, msig, osig) = if swapped {
            (&rhs, &lhs, &rsig, &lsig)
        } else {
            (&lhs, &rhs, &lsig, &rsig)
        };
        let drop_name = changes_metric_schema(op) || return_bool;
        let n_sigs = lsig.iter().chain(rsig.iter()).max().map_or(0, |m| m + 1);
        // Output slot per (many, one) pair: the result labels depend only on the two series.
        let mut slots: HashMap<(usize, usize), usize> = HashMap::new();
        // The last (one-side series, slot) of each many-side series: usually the same pair
        // matches at every step.
        let mut last_slot: Vec<Option<(usize, usize)>> = vec![None; many.len()];
        let (mut mcur, mut ocur) = (Cursor::new(many), Cursor::new(one));
        let (mut mv, mut ov) = (Vec::new(), Vec::new());
        let mut right: Vec<Option<(usize, f64)>> = vec![None; n_sigs];
        let mut touched: Vec<usize> = Vec::new();
        let mut matched_one = vec![false; n_sigs];
        // (signature, result slot) pairs seen at this step, for many-to-one matching.
        let mut matched_many: HashSet<(usize, usize)> = HashSet::new();
        let mut out = Out::default();
        for k in 0..self.steps() {
            self.st.check_alive()?;
            let ts = self.step_ts(k);
            mcur.gather(many, ts, &mut mv);
            ocur.gather(one, ts, &mut ov);
            // Forget the previous step's "one" side.
            for sig in touched.drain(..) {
                right[sig] = None;
            }
            if mv.is_empty() || ov.is_empty() {
                continue;
            }
            for &(oi, v) in &ov {
                if let Some((prev, _)) = right[osig[oi]] {
                    let side = if swapped { "left" } else { "right" };
                    let group = labels_string(&m.signature(&one[oi].labels));
                    let mut d = [
                        labels_string(&one[oi].labels),
                        labels_string(&one[prev].labels),
                    ];
                    d.sort();
                    return Err(Error::Eval(format!(
                        "found duplicate series for the match group {group} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        d[0], d[1]
                    )));
                }
                right[osig[oi]] = Some((oi, v));
                touched.push(osig[oi]);
            }
            for &(mi, _) in &mv {
                matched_one[msig[mi]] = false;
            }
            matched_many.clear();
            for &(mi, v) in &mv {
                let sig = msig[mi];
                let Some((oi, ovv)) = right[sig] else {
                    continue;
                };
                let (fl, fr) = if swapped { (ovv, v) } else { (v, ovv) };
                let (mut val, keep) = elem_binop(op, fl, fr);
                if return_bool {
                    val = btos(keep);
                }
                let slot = match last_slot[mi] {
                    Some((o, s)) if o == oi => s,
                    _ => match slots.get(&(mi, oi)) {
                        Some(&s) => s,
                        None => {
                            let s = out.slot(&result_metric(
                                &many[mi].labels,
                                &one[oi].labels,
                                m,
                                drop_name,
                            ));
                            slots.insert((mi, oi), s);
                            s
                        }
                    },
                };
                last_slot[mi] = Some((oi, slot));
                if m.card == Card::OneToOne {
                    if matched_one[sig] {
                        return Err(Error::Eval(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                        ));
                    }
                    matched_one[sig] = true;
                } else if !matched_many.insert((sig, slot)) {
                    return Err(Error::Eval(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                if !keep && !return_bool {
                    continue;
                }
                out.push_at(self.st, slot, ts, val)?;
            }
        }
        Ok(out.finish())
    }

    fn set_op(&mut self, op: Op, lhs: Matrix, rhs: Matrix, m: &Matching) -> Result<Matrix, Error> {
        let (lsig, rsig) = signatures(m, &lhs, &rhs);
        let (mut lcur, mut rcur) = (Cursor::new(&lhs), Cursor::new(&rhs));
        let (mut lv, mut rv) = (Vec::new(), Vec::new());
        let mut out = Out::default();
        for k in 0..self.steps() {
            self.st.check_alive()?;
            let ts = self.step_ts(k);
            lcur.gather(&lhs, ts, &mut lv);
            rcur.gather(&rhs, ts, &mut rv);
            match op {
                Op::And => {
                    if lv.is_empty() || rv.is_empty() {
                        continue;
                    }
                    let present: HashSet<usize> = rv.iter().map(|&(i, _)| rsig[i]).collect();
                    for &(i, v) in &lv {
                        if present.contains(&lsig[i]) {
                            out.push(self.st, ts, &lhs[i].labels, v)?;
                        }
                    }
                }
                Op::Or => {
                    let present: HashSet<usize> = lv.iter().map(|&(i, _)| lsig[i]).collect();
                    for &(i, v) in &lv {
                        out.push(self.st, ts, &lhs[i].labels, v)?;
                    }
                    for &(i, v) in &rv {
                        if !present.contains(&rsig[i]) {
                            out.push(self.st, ts, &rhs[i].labels, v)?;
                        }
                    }
                }
                _ => {
                    let present: HashSet<usize> = rv.iter().map(|&(i, _)| rsig[i]).collect();
                    for &(i, v) in &lv {
                        if !present.contains(&lsig[i]) {
                            out.push(self.st, ts, &lhs[i].labels, v)?;
                        }
                    }
                }
            }
        }
        Ok(out.finish())
    }
}

/// The labels of a vector-vector result (Prometheus' `resultMetric`): the "many" side's labels,
/// without the name after arithmetic or `bool`, reduced to the matching labels for one-to-one,
/// plus the `group_x(...)` labels copied from the "one" side.
fn result_metric(many: &Labels, one: &Labels, m: &Matching, drop_name: bool) -> Labels {
    let mut l = if drop_name {
        many.without_metric_name()
    } else {
        many.clone()
    };
    if m.card == Card::OneToOne {
        l = if m.on {
            l.keep(&m.names)
        } else {
            l.drop(&m.names)
        };
    }
    if m.include.is_empty() {
        return l;
    }
    let mut b = l.builder();
    for n in &m.include {
        match one.get(n) {
            Some(v) => b.set(n.clone(), v),
            None => b.del(n),
        };
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use crate::promql::engine::testutil::{add, instant, range};
    use crate::tsdb::Db;

    fn db() -> Db {
        let db = Db::in_memory();
        add(&db, "req", &[("job", "a"), ("code", "200")], &[(0, 10.0)]);
        add(&db, "req", &[("job", "a"), ("code", "500")], &[(0, 2.0)]);
        add(&db, "req", &[("job", "b"), ("code", "200")], &[(0, 4.0)]);
        add(&db, "limit", &[("job", "a"), ("team", "x")], &[(0, 20.0)]);
        add(&db, "limit", &[("job", "b"), ("team", "y")], &[(0, 8.0)]);
        db
    }

    fn sorted(mut v: Vec<(String, f64)>) -> Vec<(String, f64)> {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn group_left_copies_labels_from_the_one_side() {
        let db = db();
        let r = sorted(instant(&db, "req / on(job) group_left(team) limit", 0).unwrap());
        assert_eq!(
            r,
            vec![
                ("{code=\"200\", job=\"a\", team=\"x\"}".into(), 0.5),
                ("{code=\"200\", job=\"b\", team=\"y\"}".into(), 0.5),
                ("{code=\"500\", job=\"a\", team=\"x\"}".into(), 0.1),
            ]
        );
        let err = instant(&db, "req / on(job) limit", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
        );
    }

    #[test]
    fn group_right_reports_duplicates_on_the_left() {
        let db = db();
        let err = instant(&db, "req / on(job) group_right limit", 0).unwrap_err();
        assert!(
            err.to_string()
                .contains("on the left hand-side of the operation"),
            "{err}"
        );
    }

    #[test]
    fn comparisons_filter_or_return_bool() {
        let db = db();
        let r = sorted(instant(&db, "req > 3", 0).unwrap());
        assert_eq!(r.len(), 2);
        assert!(
            r.iter().all(|(l, _)| l.starts_with("req{")),
            "comparison keeps the name: {r:?}"
        );
        let r = sorted(instant(&db, "5 < bool req", 0).unwrap());
        assert_eq!(
            r.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![1.0, 0.0, 0.0]
        );
        assert!(
            r.iter().all(|(l, _)| !l.starts_with("req")),
            "bool drops the name: {r:?}"
        );
        // A scalar on the left of a filtering comparison keeps the vector's value.
        let r = sorted(instant(&db, "5 < req", 0).unwrap());
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![10.0]);
    }

    #[test]
    fn set_operators_match_on_signatures() {
        let db = db();
        let r = sorted(instant(&db, "req and on(job) limit{team=\"x\"}", 0).unwrap());
        assert_eq!(r.len(), 2);
        let r = sorted(instant(&db, "req unless on(job) limit{team=\"x\"}", 0).unwrap());
        assert_eq!(r, vec![("req{code=\"200\", job=\"b\"}".into(), 4.0)]);
        let r = instant(&db, "limit{team=\"x\"} or on(job) req", 0).unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
    }

    #[test]
    fn go_modulo_and_power_semantics() {
        let db = Db::in_memory();
        assert_eq!(instant(&db, "-7 % 3", 0).unwrap()[0].1, -1.0);
        assert!(instant(&db, "1 % 0", 0).unwrap()[0].1.is_nan());
        assert_eq!(instant(&db, "2 ^ 3 ^ 2", 0).unwrap()[0].1, 512.0);
        assert_eq!(
            instant(&db, "(1 atan2 1) * 4", 0).unwrap()[0].1,
            std::f64::consts::PI
        );
    }

    #[test]
    fn range_matching_follows_series_through_gaps() {
        let db = Db::in_memory();
        add(&db, "a", &[("k", "1")], &[(0, 1.0), (60, 2.0), (600, 3.0)]);
        add(&db, "b", &[("k", "1")], &[(0, 10.0), (600, 30.0)]);
        let r = range(&db, "a + b", 0, 600, 300).unwrap();
        assert_eq!(r, vec![("{k=\"1\"}".into(), vec![(0, 11.0), (600, 33.0)])]);
    }
}
