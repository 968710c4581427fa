//! test.go's `@` modifier cases: an instant case run again with every selector and subquery
//! pinned by `@ <t>`, at other evaluation times, expecting the same result.

use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};

use super::exec::walk;

/// Functions whose result depends on the evaluation time even when their arguments are pinned
/// by `@` (`AtModifierUnsafeFunctions`).
pub(super) const AT_MODIFIER_UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

/// test.go's `atModifierTestCases`: the expression with `@ <at>` on every selector and
/// subquery that has none (selectors inside subqueries keep theirs), to be evaluated at
/// other times with the same expected result. Empty when a function makes that unsafe.
pub(super) fn at_modifier_variants(expr: &Expr, at: i64) -> Vec<(Expr, i64)> {
    let mut unsafe_fn = false;
    walk(expr, &mut |e| {
        if let Expr::Call(c) = e {
            unsafe_fn |= AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&c.func.name);
        }
    });
    if unsafe_fn {
        return Vec::new();
    }
    let pinned = {
        let mut e = expr.clone();
        pin_at(&mut e, &at_modifier(at));
        e
    };
    let times = if at == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![at.saturating_mul(-10), 0, at / 5, at, at.saturating_mul(10)]
    };
    times.into_iter().map(|t| (pinned.clone(), t)).collect()
}

pub(super) fn at_modifier(ms: i64) -> AtModifier {
    let d = Duration::from_millis(ms.unsigned_abs());
    AtModifier::At(if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    })
}

pub(super) fn pin_at(e: &mut Expr, at: &AtModifier) {
    match e {
        Expr::VectorSelector(vs) => {
            vs.at.get_or_insert_with(|| at.clone());
        }
        Expr::MatrixSelector(ms) => {
            ms.vs.at.get_or_insert_with(|| at.clone());
        }
        // The selectors inside a subquery are evaluated relative to it: leave them alone.
        Expr::Subquery(sq) => {
            sq.at.get_or_insert_with(|| at.clone());
        }
        Expr::Aggregate(a) => {
            if let Some(p) = a.param.as_mut() {
                pin_at(p, at);
            }
            pin_at(&mut a.expr, at);
        }
        Expr::Unary(u) => pin_at(&mut u.expr, at),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, at);
            pin_at(&mut b.rhs, at);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at),
        Expr::Call(c) => {
            for a in c.args.args.iter_mut() {
                pin_at(a, at);
            }
        }
        _ => {}
    }
}
