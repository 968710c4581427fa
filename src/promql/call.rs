//! Function calls: the engine evaluates the arguments for the whole range, then calls
//! [`functions::call`] once per step with that step's arguments (and, for a range-vector
//! argument, the step's window after `offset` and `@`). What Prometheus does in the engine
//! rather than in the function bodies is here: `timestamp()` over a selector sees the samples'
//! own timestamps, and sorting functions warn in range queries.

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr};

use super::engine::{unwrap_paren, Cursor, Evaluated, Evaluator, Out};
use super::functions::{self, FnArg, FnCall};
use super::selector::RangeArg;
use super::value::{InstantSample, Matrix, Value};
use super::Error;
use crate::labels::Labels;

/// One step's function arguments, the range window if an argument is a range vector, and the
/// samples the step's windows hold.
type StepArgs = (Vec<FnArg>, Option<(i64, i64)>, usize);

/// One evaluated argument, over all steps.
enum Arg {
    Scalar(Vec<f64>),
    String(String),
    Vector(Matrix, Cursor),
    Range(RangeArg),
}

impl Evaluator<'_> {
    pub(crate) fn eval_call(&mut self, c: &Call) -> Result<Evaluated, Error> {
        let name = c.func.name;
        let exprs = &c.args.args;
        if name == "timestamp" {
            if let Some(Expr::VectorSelector(vs)) = exprs.first().map(|a| unwrap_paren(a)) {
                return self.eval_timestamp(c, vs);
            }
        }
        // The query-context functions are constants of the outermost query (Prometheus folds
        // them into number literals before evaluation).
        if exprs.is_empty() {
            let secs = |ms: i64| ms as f64 / 1000.0;
            let v = match name {
                "start" => Some(secs(self.query_start)),
                "end" => Some(secs(self.query_end)),
                "range" => Some(secs(self.query_end - self.query_start)),
                "step" => Some(secs(self.query_step)),
                _ => None,
            };
            if let Some(v) = v {
                return Ok(Evaluated::Scalar(vec![v; self.steps()]));
            }
        }
        let (mut args, held) = self.eval_call_args(name, exprs)?;
        if let [Arg::Range(r)] = args.as_slice() {
            if functions::is_per_series(name) && !tests::general_path_only() {
                if let Some(v) = self.call_per_series(name, r)? {
                    self.st.release(held);
                    return Ok(v);
                }
            }
        }
        if matches!(
            name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ) && !self.is_instant()
        {
            self.st
                .annotations
                .warn("PromQL warning: sort is ineffective for range queries since results are always ordered by labels");
        }

        let steps = self.steps();
        let mut out = Out::default();
        let mut scalars = Vec::with_capacity(if c.func.return_type == ValueType::Scalar {
            steps
        } else {
            0
        });
        let mut buf = Vec::new();
        for k in 0..steps {
            self.st.check_alive()?;
            let ts = self.step_ts(k);
            let (fn_args, window, step_held) = self.step_args(&mut args, k, ts, &mut buf)?;
            let call = FnCall {
                name,
                args: fn_args,
                arg_exprs: exprs,
                ts,
                window,
            };
            let result = functions::call(call, &mut self.st.annotations)?;
            self.st.release(step_held);
            match result {
                Value::Scalar { v, .. } => scalars.push(v),
                Value::Vector(vec) => {
                    for s in &vec {
                        out.push(self.st, ts, &s.labels, s.v)?;
                    }
                }
                other => {
                    return Err(Error::Eval(format!(
                        "function {name} returned a {}",
                        other.type_name()
                    )));
                }
            }
        }
        self.st.release(held);
        if c.func.return_type == ValueType::Scalar {
            scalars.resize(steps, f64::NAN);
            Ok(Evaluated::Scalar(scalars))
        } else {
            Ok(Evaluated::Vector(out.finish()))
        }
    }

    /// A function of one range vector that works series by series
    /// ([`functions::is_per_series`]): each step's window is a slice of each series, and each
    /// series' output labels are made once, instead of a matrix copied per step. The same
    /// values, annotations, limits and order of output as the general path; `None` (the
    /// general path then decides) when two series have the same labels without their names,
    /// which the general path refuses at a step where both have samples.
    fn call_per_series(&mut self, name: &str, r: &RangeArg) -> Result<Option<Evaluated>, Error> {
        let labels: Vec<Labels> = r
            .series
            .iter()
            .map(|s| s.labels.without_metric_name())
            .collect();
        let mut sorted: Vec<&Labels> = labels.iter().collect();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Ok(None);
        }
        let counter = matches!(name, "rate" | "increase");
        let mut slots = vec![None; r.series.len()];
        let mut bounds = vec![(0, 0); r.series.len()];
        let mut out = Out::default();
        let mut step_values: Vec<(usize, f64)> = Vec::new();
        for k in 0..self.steps() {
            self.st.check_alive()?;
            let ts = self.step_ts(k);
            let (start, end) = r.window(ts);
            let mut held = 0;
            for (s, b) in r.series.iter().zip(bounds.iter_mut()) {
                let lo = s.samples.partition_point(|p| p.t <= start);
                let hi = s.samples.partition_point(|p| p.t <= end).max(lo);
                *b = (lo, hi);
                held += hi - lo;
            }
            // The windows are held while the step's values are computed and given back before
            // the outputs are counted, as the general path does.
            self.st.hold(held)?;
            step_values.clear();
            for (i, s) in r.series.iter().enumerate() {
                let (lo, hi) = bounds[i];
                if lo == hi {
                    continue;
                }
                if let Some(v) = functions::series_value(name, &s.samples[lo..hi], (start, end)) {
                    step_values.push((i, v));
                }
            }
            self.st.release(held);
            for &(i, v) in &step_values {
                let slot = *slots[i].get_or_insert_with(|| out.slot(&labels[i]));
                out.push_at(self.st, slot, ts, v)?;
                if counter {
                    functions::note_counter_name(&r.series[i].labels, &mut self.st.annotations);
                }
            }
        }
        Ok(Some(Evaluated::Vector(out.finish())))
    }

    /// Evaluates a call's arguments over all steps; also returns the samples they hold.
    fn eval_call_args(
        &mut self,
        name: &str,
        exprs: &[Box<Expr>],
    ) -> Result<(Vec<Arg>, usize), Error> {
        let mut args = Vec::with_capacity(exprs.len());
        let mut held = 0;
        for e in exprs {
            if let Some(r) = self.eval_range_arg(e)? {
                held += r.held;
                args.push(Arg::Range(r));
                continue;
            }
            let v = self.eval(e)?;
            held += v.num_samples();
            args.push(match v {
                Evaluated::Scalar(v) => Arg::Scalar(v),
                Evaluated::String(s) => Arg::String(s),
                Evaluated::Vector(m) => {
                    let cur = Cursor::new(&m);
                    Arg::Vector(m, cur)
                }
                Evaluated::Matrix(_) => {
                    return Err(Error::Eval(format!(
                        "unexpected range vector argument to {name}"
                    )))
                }
            });
        }
        Ok((args, held))
    }

    /// The arguments of step `k` (at `ts`) as the function sees them, the range window if an
    /// argument is a range vector, and the samples this step's windows hold.
    fn step_args(
        &mut self,
        args: &mut [Arg],
        k: usize,
        ts: i64,
        buf: &mut Vec<(usize, f64)>,
    ) -> Result<StepArgs, Error> {
        let mut window = None;
        let mut step_held = 0;
        let mut fn_args = Vec::with_capacity(args.len());
        for a in args.iter_mut() {
            fn_args.push(match a {
                Arg::Scalar(v) => FnArg::Scalar(v.get(k).copied().unwrap_or(f64::NAN)),
                Arg::String(s) => FnArg::String(s.clone()),
                Arg::Vector(m, cur) => {
                    cur.gather(m, ts, buf);
                    FnArg::Vector(
                        buf.iter()
                            .map(|&(i, v)| InstantSample {
                                labels: m[i].labels.clone(),
                                t: ts,
                                v,
                            })
                            .collect(),
                    )
                }
                Arg::Range(r) => {
                    let (m, w) = r.window_matrix(ts);
                    window = Some(w);
                    let n: usize = m.iter().map(|s| s.samples.len()).sum();
                    step_held += n;
                    self.st.hold(n)?;
                    FnArg::Matrix(m)
                }
            });
        }
        Ok((fn_args, window, step_held))
    }

    /// `timestamp(selector)`: the function sees each sample's own timestamp, not the step's.
    fn eval_timestamp(
        &mut self,
        c: &Call,
        vs: &promql_parser::parser::VectorSelector,
    ) -> Result<Evaluated, Error> {
        let (m, origs) = self.eval_vector_selector(vs)?;
        let held = m.iter().map(|s| s.samples.len()).sum();
        let mut cur = Cursor::new(&m);
        let mut pos = vec![0usize; m.len()];
        let mut buf = Vec::new();
        let mut out = Out::default();
        for k in 0..self.steps() {
            self.st.check_alive()?;
            let ts = self.step_ts(k);
            cur.gather(&m, ts, &mut buf);
            let vec = buf
                .iter()
                .map(|&(i, v)| {
                    // The cursor and `pos` advance together: the point's index in its series.
                    let t = origs[i][pos[i]];
                    pos[i] += 1;
                    InstantSample {
                        labels: m[i].labels.clone(),
                        t,
                        v,
                    }
                })
                .collect();
            let call = FnCall {
                name: c.func.name,
                args: vec![FnArg::Vector(vec)],
                arg_exprs: &c.args.args,
                ts,
                window: None,
            };
            match functions::call(call, &mut self.st.annotations)? {
                Value::Vector(vec) => {
                    for s in &vec {
                        out.push(self.st, ts, &s.labels, s.v)?;
                    }
                }
                other => {
                    return Err(Error::Eval(format!(
                        "function timestamp returned a {}",
                        other.type_name()
                    )))
                }
            }
        }
        self.st.release(held);
        Ok(Evaluated::Vector(out.finish()))
    }
}

#[cfg(not(test))]
mod tests {
    pub(super) fn general_path_only() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::promql::engine::testutil::{add, range};

    thread_local! {
        static GENERAL_PATH_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// In tests: whether this thread turned the per-series path off, to compare the two.
    pub(super) fn general_path_only() -> bool {
        GENERAL_PATH_ONLY.with(|g| g.get())
    }

    #[test]
    fn the_per_series_path_answers_as_the_general_one() {
        use crate::promql::{EngineOptions, QueryResult};
        let db = Db::in_memory();
        // A counter with a reset and a gap, a gauge with NaN and a stale marker, two series
        // that collide once their names are dropped, and one series named like a gauge.
        let counter: Vec<(i64, f64)> = (0..200)
            .filter(|t| !(80..110).contains(t))
            .map(|t| (t * 15, if t < 120 { t as f64 } else { (t - 120) as f64 }))
            .collect();
        add(&db, "c_total", &[("a", "1")], &counter);
        add(&db, "c_total", &[("a", "2")], &counter[..50]);
        let gauge: Vec<(i64, f64)> = (0..200)
            .map(|t| {
                let v = match t {
                    33 => f64::NAN,
                    77 => crate::tsdb::stale_nan(),
                    _ => ((t * 37) % 11) as f64 - 4.5,
                };
                (t * 15, v)
            })
            .collect();
        add(&db, "g", &[("a", "1")], &gauge);
        add(&db, "h", &[("a", "1")], &gauge[100..]);
        add(&db, "notacounter", &[], &counter);
        let run = |q: &str, instant: bool, general: bool| -> Result<QueryResult, Error> {
            GENERAL_PATH_ONLY.with(|g| g.set(general));
            let e = Engine::new(EngineOptions::default());
            let expr = parse(q).unwrap();
            let r = if instant {
                e.instant_query(&db, &expr, 1_500_000)
            } else {
                e.range_query(&db, &expr, 0, 3_000_000, 37_000)
            };
            GENERAL_PATH_ONLY.with(|g| g.set(false));
            r
        };
        let fns = [
            "rate",
            "increase",
            "delta",
            "irate",
            "idelta",
            "avg_over_time",
            "sum_over_time",
            "count_over_time",
            "min_over_time",
            "max_over_time",
            "ts_of_min_over_time",
            "ts_of_max_over_time",
            "ts_of_first_over_time",
            "ts_of_last_over_time",
            "present_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "mad_over_time",
            "changes",
            "resets",
            "deriv",
        ];
        for f in fns {
            for sel in [
                "c_total[2m]",
                "g[1m]",
                "g[5m] offset 3m",
                "{__name__=~\"g|h\"}[3m]",
                "notacounter[4m]",
                "g[10m:1m]",
            ] {
                let q = format!("{f}({sel})");
                for instant in [false, true] {
                    let fast = run(&q, instant, false);
                    let general = run(&q, instant, true);
                    match (&fast, &general) {
                        (Ok(a), Ok(b)) => {
                            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{q}");
                        }
                        _ => assert_eq!(fast, general, "{q}"),
                    }
                }
            }
        }
    }
    use crate::promql::{parse, Engine, EngineOptions, Error};
    use crate::tsdb::Db;

    #[test]
    fn max_samples_counts_windows_not_the_whole_selection() {
        // 1001 raw samples, but each step's function sees at most 10 of them.
        let db = Db::in_memory();
        add(
            &db,
            "x",
            &[],
            &(0..=1000).map(|t| (t, t as f64)).collect::<Vec<_>>(),
        );
        let e = Engine::new(EngineOptions {
            max_samples: 50,
            ..Default::default()
        });
        let q = parse("count_over_time(x[10s])").unwrap();
        let r = e.range_query(&db, &q, 0, 1_000_000, 100_000);
        assert!(r.is_ok(), "{r:?}");
        let q = parse("count_over_time(x[100s])").unwrap();
        assert_eq!(
            e.range_query(&db, &q, 0, 1_000_000, 100_000).unwrap_err(),
            Error::TooManySamples("query execution")
        );
    }

    #[test]
    fn timestamp_of_a_selector_is_the_sample_time() {
        let db = Db::in_memory();
        add(&db, "x", &[], &[(10, 1.0), (70, 2.0)]);
        let r = range(&db, "timestamp(x)", 0, 120, 30).unwrap();
        assert_eq!(
            r[0].1,
            vec![(30, 10.0), (60, 10.0), (90, 70.0), (120, 70.0)]
        );
        // Anything but a bare selector reports the evaluation time.
        let r = range(&db, "timestamp(-x)", 60, 120, 60).unwrap();
        assert_eq!(r[0].1, vec![(60, 60.0), (120, 120.0)]);
    }

    #[test]
    fn sort_warns_in_range_queries() {
        let db = Db::in_memory();
        add(&db, "x", &[], &[(0, 1.0)]);
        let r = Engine::default()
            .range_query(&db, &parse("sort(x)").unwrap(), 0, 60_000, 30_000)
            .unwrap();
        assert_eq!(
            r.annotations.warnings,
            vec!["PromQL warning: sort is ineffective for range queries since results are always ordered by labels"]
        );
    }

    #[test]
    fn query_context_functions_are_constants_of_the_outer_query() {
        let db = Db::in_memory();
        let r = range(&db, "step() + range() + start() + end()", 100, 130, 10).unwrap();
        assert_eq!(
            r[0].1,
            vec![(100, 270.0), (110, 270.0), (120, 270.0), (130, 270.0)]
        );
        let r = crate::promql::engine::testutil::instant(&db, "step() + range()", 100).unwrap();
        assert_eq!(r[0].1, 0.0);
    }
}
