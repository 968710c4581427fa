//! How far back from its evaluation time an expression reads: the longest range selector or
//! subquery with its offset, plus the lookback delta of instant selectors. Storage uses it to
//! keep what the rules and estimators read in memory (`tsdb::Db::require_head_range`).
//!
//! `@` pins a selector to a fixed time that can be anywhere; it does not count here.

use std::time::Duration;

use promql_parser::parser::{Expr, Offset};

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        // A negative offset reads later, not earlier.
        Some(Offset::Neg(_)) | None => 0,
    }
}

fn ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

/// Milliseconds back from the evaluation time that `expr` reads, with `lookback_delta_ms` for
/// instant selectors (5 m in Prometheus).
pub fn farthest_ms(expr: &Expr, lookback_delta_ms: i64) -> i64 {
    let f = |e: &Expr| farthest_ms(e, lookback_delta_ms);
    match expr {
        Expr::VectorSelector(vs) => lookback_delta_ms + offset_ms(&vs.offset),
        Expr::MatrixSelector(m) => ms(&m.range) + offset_ms(&m.vs.offset),
        Expr::Subquery(sq) => ms(&sq.range) + offset_ms(&sq.offset) + f(&sq.expr),
        Expr::Aggregate(a) => f(&a.expr).max(a.param.as_deref().map_or(0, f)),
        Expr::Unary(u) => f(&u.expr),
        Expr::Binary(b) => f(&b.lhs).max(f(&b.rhs)),
        Expr::Paren(p) => f(&p.expr),
        Expr::Call(c) => c.args.args.iter().map(|a| f(a)).max().unwrap_or(0),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far(q: &str) -> i64 {
        farthest_ms(&promql_parser::parser::parse(q).unwrap(), 300_000) / 1000
    }

    #[test]
    fn ranges_offsets_and_subqueries_add_up() {
        assert_eq!(far("1"), 0);
        assert_eq!(far("up"), 300);
        assert_eq!(far("up offset 1h"), 3900);
        assert_eq!(far("rate(x[5m])"), 300);
        assert_eq!(far("sum(rate(x[1d] offset 1h)) / on() y"), 90_000);
        assert_eq!(
            far("max_over_time(rate(x[5m])[1h:1m] offset 10m)"),
            3600 + 600 + 300
        );
        assert_eq!(far("quantile_over_time(0.9, x[2h] offset -1h)"), 7200);
        assert_eq!(far("topk(scalar(max(max_over_time(y[3h]))), x)"), 10_800);
    }
}
