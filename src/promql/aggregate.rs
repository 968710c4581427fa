//! Aggregation operators: `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`,
//! `quantile`, `topk`, `bottomk`, `limitk`, `limit_ratio` and `count_values`, with `by` and
//! `without`. Follows `rangeEvalAgg`, `aggregation` and `aggregationK` in Prometheus'
//! engine.go: Kahan summation for `sum` and `avg` (switching to an incremental mean on
//! overflow), Welford's method for `stddev`, Go's heap order for `topk`/`bottomk`, and the
//! label-hash sampling of `limit_ratio`.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::engine::{Cursor, Evaluated, Evaluator, Out};
use super::numeric::{go_max, go_min, kahan_inc};
use super::value::Matrix;
use super::Error;
use crate::compat::strconv::format_float;
use crate::labels::{Labels, METRIC_NAME};

/// Prometheus' `quantile` over the values of one group (`phi`-quantile, linear interpolation).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaNs sort first, as Prometheus' vectorByValueHeap.Less has it.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Per-group state of one step.
#[derive(Clone, Default)]
struct Group {
    seen: bool,
    value: f64,
    mean: f64,
    kahan_c: f64,
    count: f64,
    incremental: bool,
    values: Vec<f64>,
}

impl Group {
    /// A group's state after its first sample `f` in this step.
    fn first(op: &str, f: f64) -> Group {
        let mut g = Group {
            seen: true,
            value: f,
            mean: f,
            count: 1.0,
            ..Group::default()
        };
        match op {
            "stddev" | "stdvar" => {
                g.value = if f.is_nan() || f.is_infinite() {
                    f64::NAN
                } else {
                    0.0
                }
            }
            "quantile" => g.values.push(f),
            "group" => g.value = 1.0,
            _ => {}
        }
        g
    }

    /// Adds a further sample `f` of this step.
    fn add(&mut self, op: &str, f: f64) -> Result<(), Error> {
        let g = self;
        match op {
            "sum" => (g.value, g.kahan_c) = kahan_inc(f, g.value, g.kahan_c),
            "avg" => {
                g.count += 1.0;
                if !g.incremental {
                    let (nv, nc) = kahan_inc(f, g.value, g.kahan_c);
                    if !nv.is_infinite() {
                        g.value = nv;
                        g.kahan_c = nc;
                        return Ok(());
                    }
                    // The running sum would overflow: continue with an incremental mean.
                    g.incremental = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.kahan_c /= g.count - 1.0;
                }
                let q = (g.count - 1.0) / g.count;
                (g.mean, g.kahan_c) = kahan_inc(f / g.count, q * g.mean, q * g.kahan_c);
            }
            "max" => {
                if g.value < f || g.value.is_nan() {
                    g.value = f;
                }
            }
            "min" => {
                if g.value > f || g.value.is_nan() {
                    g.value = f;
                }
            }
            "count" => g.count += 1.0,
            "stddev" | "stdvar" => {
                g.count += 1.0;
                let delta = f - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (f - g.mean);
            }
            "quantile" => g.values.push(f),
            "group" => {}
            _ => return Err(Error::Eval(format!("unknown aggregation operator {op:?}"))),
        }
        Ok(())
    }

    /// The group's value for this step; `q` is the step's `quantile` parameter.
    fn result(&mut self, op: &str, q: f64) -> f64 {
        let g = self;
        match op {
            "sum" => g.value + g.kahan_c,
            "avg" if g.incremental => g.mean + g.kahan_c,
            "avg" => g.value / g.count + g.kahan_c / g.count,
            "count" => g.count,
            "stdvar" => g.value / g.count,
            "stddev" => (g.value / g.count).sqrt(),
            "quantile" => quantile(q, &mut g.values),
            _ => g.value,
        }
    }
}

/// An element of a `topk`/`bottomk`/`limitk` heap: input series index and value.
type HeapItem = (usize, f64);

/// Go's `container/heap` with Prometheus' `vectorByValueHeap` (`reverse` = false: NaN or the
/// lower value is "less") or `vectorByReverseValueHeap` (`reverse` = true), so that ties pick
/// the same series as Prometheus.
fn heap_less(h: &[HeapItem], i: usize, j: usize, reverse: bool) -> bool {
    let (vi, vj) = (h[i].1, h[j].1);
    if vi.is_nan() {
        return true;
    }
    if reverse {
        vi > vj
    } else {
        vi < vj
    }
}

fn heap_up(h: &mut [HeapItem], mut j: usize, reverse: bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !heap_less(h, j, i, reverse) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [HeapItem], i0: usize, reverse: bool) -> bool {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && heap_less(h, j1 + 1, j1, reverse) {
            j = j1 + 1;
        }
        if !heap_less(h, j, i, reverse) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

fn heap_push(h: &mut Vec<HeapItem>, x: HeapItem, reverse: bool) {
    h.push(x);
    let j = h.len() - 1;
    heap_up(h, j, reverse);
}

fn heap_fix0(h: &mut [HeapItem], reverse: bool) {
    if !heap_down(h, 0, reverse) {
        heap_up(h, 0, reverse);
    }
}

/// Go's `sort.Sort(sort.Reverse(heap))` for the small heaps of topk/bottomk: an insertion sort
/// (what Go uses below 13 elements) with the reversed order.
fn sort_reverse(h: &mut [HeapItem], reverse: bool) {
    for i in 1..h.len() {
        let mut j = i;
        // Reverse(Less)(j, j-1) == Less(j-1, j).
        while j > 0 && heap_less(h, j - 1, j, reverse) {
            h.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// xxHash64 (seed 0), as Prometheus hashes label sets.
fn xxhash64(data: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    let rd64 = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let rd32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
    let round = |acc: u64, input: u64| {
        acc.wrapping_add(input.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    };
    let merge = |acc: u64, val: u64| (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4);
    let n = data.len();
    let mut p = 0;
    let mut h: u64;
    if n >= 32 {
        let (mut v1, mut v2, mut v3, mut v4) =
            (P1.wrapping_add(P2), P2, 0u64, 0u64.wrapping_sub(P1));
        while p + 32 <= n {
            v1 = round(v1, rd64(&data[p..]));
            v2 = round(v2, rd64(&data[p + 8..]));
            v3 = round(v3, rd64(&data[p + 16..]));
            v4 = round(v4, rd64(&data[p + 24..]));
            p += 32;
        }
        h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        h = merge(h, v4);
    } else {
        h = P5;
    }
    h = h.wrapping_add(n as u64);
    while p + 8 <= n {
        h ^= round(0, rd64(&data[p..]));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        p += 8;
    }
    if p + 4 <= n {
        h ^= rd32(&data[p..]).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        p += 4;
    }
    while p < n {
        h ^= (data[p] as u64).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
        p += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^= h >> 32;
    h
}

/// Prometheus' `labels.Hash()` in its default (`stringlabels`) layout: each name and value
/// prefixed by its length (one byte below 255, else 0xff and three bytes little-endian).
pub(crate) fn labels_hash(l: &Labels) -> u64 {
    let mut b = Vec::with_capacity(64);
    let mut put = |s: &str| {
        let n = s.len();
        if n < 255 {
            b.push(n as u8);
        } else {
            b.extend_from_slice(&[255, n as u8, (n >> 8) as u8, (n >> 16) as u8]);
        }
        b.extend_from_slice(s.as_bytes());
    };
    for x in l.iter() {
        put(&x.name);
        put(&x.value);
    }
    xxhash64(&b)
}

/// Whether `limit_ratio(r, …)` keeps a series (Prometheus' `AddRatioSampleWithOffset`).
fn ratio_keeps(r: f64, l: &Labels) -> bool {
    let offset = labels_hash(l) as f64 / u64::MAX as f64;
    (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r)
}

impl Evaluator<'_> {
    pub(crate) fn eval_aggregate(&mut self, a: &AggregateExpr) -> Result<Evaluated, Error> {
        let op = a.op.to_string();
        let (without, mut grouping) = match &a.modifier {
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
            None => (false, Vec::new()),
        };
        if op == "count_values" {
            let label = match a.param.as_deref().map(|p| self.eval(p)).transpose()? {
                Some(Evaluated::String(s)) => s,
                _ => return Err(Error::Eval("count_values needs a string parameter".into())),
            };
            if label.is_empty() {
                return Err(Error::Eval(format!("invalid label name {label:?}")));
            }
            if !without {
                grouping.push(label.clone());
            }
            let input = self.eval_vector(&a.expr)?;
            return self.count_values(&input, &label, without, &grouping);
        }
        let params = match a.param.as_deref() {
            Some(p) => Some(self.eval_scalar(p)?),
            None => None,
        };
        let input = self.eval_vector(&a.expr)?;
        let held: usize = input.iter().map(|s| s.samples.len()).sum();
        let group_key = |l: &Labels| -> Labels {
            if without {
                let mut drop = grouping.clone();
                drop.push(METRIC_NAME.to_string());
                l.drop(&drop)
            } else {
                l.keep(&grouping)
            }
        };
        // Groups in order of their first input series, as Prometheus builds its result.
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut keys: Vec<Labels> = Vec::new();
        let series_group: Vec<usize> = input
            .iter()
            .map(|s| {
                let k = group_key(&s.labels);
                // Looked up before it is copied: most series join a group that exists.
                match index.get(&k) {
                    Some(&i) => i,
                    None => {
                        index.insert(k.clone(), keys.len());
                        keys.push(k);
                        keys.len() - 1
                    }
                }
            })
            .collect();
        let params = params.unwrap_or_default();
        let out = match op.as_str() {
            "topk" | "bottomk" | "limitk" | "limit_ratio" => {
                self.aggregate_k(&op, &input, &series_group, keys.len(), &params)?
            }
            _ => self.aggregate_simple(&op, &input, &series_group, &keys, &params)?,
        };
        self.st.release(held);
        Ok(Evaluated::Vector(out))
    }

    fn aggregate_simple(
        &mut self,
        op: &str,
        input: &Matrix,
        series_group: &[usize],
        keys: &[Labels],
        params: &[f64],
    ) -> Result<Matrix, Error> {
        if op == "quantile" && !params.is_empty() {
            self.warn_quantile_params(params);
        }
        let mut groups = vec![Group::default(); keys.len()];
        let mut cur = Cursor::new(input);
        let mut buf = Vec::new();
        let mut out = Out::default();
        for k in 0..self.steps() {
            self.st.check_alive()?;
            let ts = self.step_ts(k);
            cur.gather(input, ts, &mut buf);
            for g in groups.iter_mut() {
                g.seen = false;
            }
            for &(si, f) in &buf {
                let g = &mut groups[series_group[si]];
                if g.seen {
                    g.add(op, f)?;
                } else {
                    *g = Group::first(op, f);
                }
            }
            for (gi, g) in groups.iter_mut().enumerate() {
                if !g.seen {
                    continue;
                }
                let v = g.result(op, params.get(k).copied().unwrap_or(f64::NAN));
                out.push(self.st, ts, &keys[gi], v)?;
            }
        }
        Ok(out.finish())
    }

    /// Warns once about the lowest and highest quantile parameters outside [0, 1] (and NaN).
    fn warn_quantile_params(&mut self, params: &[f64]) {
        let (mut lo, mut hi, mut nan) = (f64::MAX, -f64::MAX, false);
        for &p in params {
            lo = go_min(lo, p);
            hi = go_max(hi, p);
            nan |= p.is_nan();
        }
        if nan {
            self.st
                .annotations
                .warn("PromQL warning: quantile value should be between 0 and 1, got NaN");
        }
        if hi > 1.0 {
            self.st.annotations.warn(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                format_float(hi, 'g', -1)
            ));
        }
        if lo < 0.0 {
            self.st.annotations.warn(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                format_float(lo, 'g', -1)
            ));
        }
    }

    fn aggregate_k(
        &mut self,
        op: &str,
        input: &Matrix,
        series_group: &[usize],
        n_groups: usize,
        params: &[f64],
    ) -> Result<Matrix, Error> {
        if !self.check_k_params(op, params)? {
            return Ok(Vec::new());
        }
        let reverse = op == "bottomk";
        let mut heaps: Vec<Vec<HeapItem>> = vec![Vec::new(); n_groups];
        let mut seen = vec![false; n_groups];
        let mut cur = Cursor::new(input);
        let mut buf = Vec::new();
        let mut out = Out::default();
        for step in 0..self.steps() {
            self.st.check_alive()?;
            let ts = self.step_ts(step);
            cur.gather(input, ts, &mut buf);
            let p = params.get(step).copied().unwrap_or(0.0);
            let (k, r) = match op {
                "limit_ratio" => {
                    if p == 0.0 {
                        continue;
                    }
                    (0usize, p.clamp(-1.0, 1.0))
                }
                _ => {
                    // Go's int64() truncates toward zero.
                    let k = (p.trunc() as i64).min(input.len() as i64);
                    if k < 1 {
                        continue;
                    }
                    (k as usize, 0.0)
                }
            };
            for h in heaps.iter_mut() {
                h.clear();
            }
            seen.iter_mut().for_each(|s| *s = false);
            let mut groups_complete = 0;
            for &(si, f) in &buf {
                let gi = series_group[si];
                let h = &mut heaps[gi];
                match op {
                    "topk" | "bottomk" => {
                        if h.len() < k {
                            heap_push(h, (si, f), reverse);
                        } else {
                            let top = h[0].1;
                            let better = if reverse { top > f } else { top < f };
                            if better || (top.is_nan() && !f.is_nan()) {
                                h[0] = (si, f);
                                if k > 1 {
                                    heap_fix0(h, reverse);
                                }
                            }
                        }
                    }
                    "limitk" => {
                        if h.len() < k {
                            heap_push(h, (si, f), false);
                            if h.len() == k && !seen[gi] {
                                seen[gi] = true;
                                groups_complete += 1;
                                if groups_complete == n_groups {
                                    break;
                                }
                            }
                        }
                    }
                    _ => {
                        if ratio_keeps(r, &input[si].labels) {
                            heap_push(h, (si, f), false);
                        }
                    }
                }
            }
            for h in heaps.iter_mut() {
                if matches!(op, "topk" | "bottomk") && h.len() > 1 {
                    sort_reverse(h, reverse);
                }
                for &(si, f) in h.iter() {
                    out.push(self.st, ts, &input[si].labels, f)?;
                }
            }
        }
        Ok(out.finish())
    }

    /// Checks the `k` (or ratio) parameters of every step as Prometheus does before evaluating
    /// `topk`, `bottomk`, `limitk` or `limit_ratio`; `false` when the result is empty anyway.
    fn check_k_params(&mut self, op: &str, params: &[f64]) -> Result<bool, Error> {
        let (mut lo, mut hi, mut nan) = (f64::MAX, -f64::MAX, false);
        for &p in params {
            lo = go_min(lo, p);
            hi = go_max(hi, p);
            nan |= p.is_nan();
        }
        if op == "limit_ratio" {
            if hi == 0.0 && lo == 0.0 {
                return Ok(false);
            }
            if nan {
                return Err(Error::Eval("Ratio value is NaN".into()));
            }
            if hi > 1.0 {
                self.st.annotations.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to 1",
                    format_float(hi, 'g', -1)
                ));
            }
            if lo < -1.0 {
                self.st.annotations.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to -1",
                    format_float(lo, 'g', -1)
                ));
            }
        } else {
            if hi < 1.0 {
                return Ok(false);
            }
            if nan {
                return Err(Error::Eval("Parameter value is NaN".into()));
            }
            // Go's float64 nearest to math.MinInt64 / math.MaxInt64 as Prometheus compares them.
            const MIN_INT64: f64 = -9223372036854774784.0;
            const MAX_INT64: f64 = 9223372036854774784.0;
            if lo <= MIN_INT64 {
                return Err(Error::Eval(format!(
                    "Scalar value {} underflows int64",
                    format_float(lo, 'g', -1)
                )));
            }
            if hi >= MAX_INT64 {
                return Err(Error::Eval(format!(
                    "Scalar value {} overflows int64",
                    format_float(hi, 'g', -1)
                )));
            }
        }
        Ok(true)
    }

    fn count_values(
        &mut self,
        input: &Matrix,
        label: &str,
        without: bool,
        grouping: &[String],
    ) -> Result<Evaluated, Error> {
        let mut cur = Cursor::new(input);
        let mut buf = Vec::new();
        let mut out = Out::default();
        for k in 0..self.steps() {
            self.st.check_alive()?;
            let ts = self.step_ts(k);
            cur.gather(input, ts, &mut buf);
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut counts: Vec<(Labels, f64)> = Vec::new();
            for &(si, f) in &buf {
                let mut b = input[si].labels.builder();
                b.set(label, format_float(f, 'f', -1));
                let l = b.build();
                let key = if without {
                    let mut drop = grouping.to_vec();
                    drop.push(METRIC_NAME.to_string());
                    l.drop(&drop)
                } else {
                    l.keep(grouping)
                };
                match index.get(&key) {
                    Some(&i) => counts[i].1 += 1.0,
                    None => {
                        index.insert(key.clone(), counts.len());
                        counts.push((key, 1.0));
                    }
                }
            }
            for (l, c) in &counts {
                out.push(self.st, ts, l, *c)?;
            }
        }
        let held: usize = input.iter().map(|s| s.samples.len()).sum();
        self.st.release(held);
        Ok(Evaluated::Vector(out.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_reference_vectors() {
        // Reference values of XXH64 with seed 0.
        assert_eq!(xxhash64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash64(b"abc"), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn quantile_interpolates_and_caps() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        assert!(quantile(f64::NAN, &mut v).is_nan());
    }

    #[test]
    fn kahan_sum_keeps_small_terms() {
        let (mut s, mut c) = (0.0, 0.0);
        for x in [1e100, 1.0, -1e100] {
            (s, c) = kahan_inc(x, s, c);
        }
        assert_eq!(s + c, 1.0);
    }
}

#[cfg(test)]
mod query_tests {
    use crate::promql::engine::testutil::{add, instant, instant_full};
    use crate::tsdb::Db;

    fn db() -> Db {
        let db = Db::in_memory();
        for (i, v) in [3.0, 1.0, 3.0, 2.0, f64::NAN].iter().enumerate() {
            add(
                &db,
                "m",
                &[("i", &i.to_string()), ("g", if i < 2 { "x" } else { "y" })],
                &[(0, *v)],
            );
        }
        db
    }

    #[test]
    fn topk_orders_descending_and_prefers_numbers_to_nan() {
        let db = db();
        let r = instant(&db, "topk(2, m)", 0).unwrap();
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![3.0, 3.0]);
        let r = instant(&db, "bottomk by (g) (1, m)", 0).unwrap();
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![1.0, 2.0]);
        let err = instant(&db, "topk(scalar(nothing), m)", 0).unwrap_err();
        assert_eq!(err.to_string(), "Parameter value is NaN");
    }

    #[test]
    fn count_values_and_group_labels() {
        let db = db();
        let mut r = instant(&db, "count_values(\"val\", m)", 0).unwrap();
        r.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            r,
            vec![
                ("{val=\"1\"}".into(), 1.0),
                ("{val=\"2\"}".into(), 1.0),
                ("{val=\"3\"}".into(), 2.0),
                ("{val=\"NaN\"}".into(), 1.0)
            ]
        );
        let r = instant(&db, "group by (g) (m)", 0).unwrap();
        assert_eq!(
            r,
            vec![("{g=\"x\"}".into(), 1.0), ("{g=\"y\"}".into(), 1.0)]
        );
    }

    #[test]
    fn avg_survives_overflowing_sums_and_stddev_is_population() {
        let db = Db::in_memory();
        add(&db, "big", &[("i", "1")], &[(0, f64::MAX)]);
        add(&db, "big", &[("i", "2")], &[(0, f64::MAX)]);
        assert_eq!(instant(&db, "avg(big)", 0).unwrap()[0].1, f64::MAX);
        let db = Db::in_memory();
        for (i, v) in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0].iter().enumerate() {
            add(&db, "s", &[("i", &i.to_string())], &[(0, *v)]);
        }
        assert_eq!(instant(&db, "stddev(s)", 0).unwrap()[0].1, 2.0);
        assert_eq!(instant(&db, "stdvar(s)", 0).unwrap()[0].1, 4.0);
    }

    #[test]
    fn invalid_parameters_warn_like_prometheus() {
        let db = db();
        let r = instant_full(&db, "quantile(1.5, m)", 0).unwrap();
        assert_eq!(
            r.annotations.warnings,
            vec!["PromQL warning: quantile value should be between 0 and 1, got 1.5"]
        );
        let r = instant_full(&db, "limit_ratio(1.1, m)", 0).unwrap();
        assert_eq!(
            r.annotations.warnings,
            vec!["PromQL warning: ratio value should be between -1 and 1, got 1.1, capping to 1"]
        );
    }

    #[test]
    fn limit_ratio_complements_partition_the_series() {
        let db = db();
        let a = instant(&db, "limit_ratio(0.3, m)", 0).unwrap();
        let b = instant(&db, "limit_ratio(-0.7, m)", 0).unwrap();
        assert_eq!(a.len() + b.len(), 5);
        assert!(a.iter().all(|x| !b.contains(x)));
    }
}
