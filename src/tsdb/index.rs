//! The inverted label index: for every label name and value, the sorted list ("postings") of
//! series that carry it, as Prometheus' `tsdb/index` keeps them. A selector is answered by
//! intersecting one postings set per matcher instead of testing every series.
//!
//! A label that is absent matches as the empty string (`{a=""}` selects the series without
//! `a`), so a matcher that accepts "" is turned into "all series minus those whose value of the
//! label it rejects".

use std::collections::BTreeMap;

use super::series::SeriesRef;
use crate::labels::{Labels, MatchOp, Matcher};

#[derive(Default, Debug)]
pub struct Index {
    /// name → value → sorted series refs.
    postings: BTreeMap<String, BTreeMap<String, Vec<SeriesRef>>>,
    all: Vec<SeriesRef>,
    /// [`Index::bytes`], kept as postings come and go (`/metrics` reads it at every scrape).
    bytes: usize,
}

/// Rough bytes of one name's entry without its values, and of one value's postings.
fn name_bytes(n: &str) -> usize {
    n.len() + 48
}

fn value_bytes(v: &str, cap: usize) -> usize {
    v.len() + 48 + cap * 8
}

fn insert_sorted(v: &mut Vec<SeriesRef>, r: SeriesRef) {
    // Refs are handed out in increasing order, so this is nearly always a push.
    if v.last().is_none_or(|&l| l < r) {
        v.push(r);
    } else if let Err(i) = v.binary_search(&r) {
        v.insert(i, r);
    }
}

fn remove_sorted(v: &mut Vec<SeriesRef>, r: SeriesRef) {
    if let Ok(i) = v.binary_search(&r) {
        v.remove(i);
    }
}

impl Index {
    pub fn add(&mut self, r: SeriesRef, labels: &Labels) {
        let mut bytes = self.bytes - self.all.capacity() * 8;
        insert_sorted(&mut self.all, r);
        bytes += self.all.capacity() * 8;
        for l in labels.iter() {
            if !self.postings.contains_key(&l.name) {
                bytes += name_bytes(&l.name);
            }
            let values = self.postings.entry(l.name.clone()).or_default();
            let p = values.entry(l.value.clone()).or_default();
            let before = if p.capacity() == 0 && p.is_empty() {
                0
            } else {
                value_bytes(&l.value, p.capacity())
            };
            insert_sorted(p, r);
            bytes = bytes + value_bytes(&l.value, p.capacity()) - before;
        }
        self.bytes = bytes;
    }

    pub fn remove(&mut self, r: SeriesRef, labels: &Labels) {
        let mut bytes = self.bytes - self.all.capacity() * 8;
        remove_sorted(&mut self.all, r);
        bytes += self.all.capacity() * 8;
        for l in labels.iter() {
            let Some(values) = self.postings.get_mut(&l.name) else {
                continue;
            };
            if let Some(p) = values.get_mut(&l.value) {
                bytes -= value_bytes(&l.value, p.capacity());
                remove_sorted(p, r);
                if p.is_empty() {
                    values.remove(&l.value);
                } else {
                    bytes += value_bytes(&l.value, p.capacity());
                }
            }
            if values.is_empty() {
                self.postings.remove(&l.name);
                bytes -= name_bytes(&l.name);
            }
        }
        self.bytes = bytes;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Refs of the series that pass every matcher, sorted. No matchers: every series.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        // Cheap, selective matchers first: an exact `name="value"` usually narrows to a few series.
        let mut ordered: Vec<&Matcher> = matchers.iter().collect();
        ordered.sort_by_key(|m| match (m.op, m.value.is_empty()) {
            (MatchOp::Equal, false) => 0,
            (MatchOp::Regex, _) => 1,
            _ => 2,
        });
        let mut result: Option<Vec<SeriesRef>> = None;
        for m in ordered {
            let p = self.matching(m);
            result = Some(match result {
                None => p,
                Some(r) => intersect(&r, &p),
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                break;
            }
        }
        result.unwrap_or_else(|| self.all.clone())
    }

    fn matching(&self, m: &Matcher) -> Vec<SeriesRef> {
        let values = self.postings.get(&m.name);
        if m.op == MatchOp::Equal && !m.value.is_empty() {
            return values
                .and_then(|v| v.get(&m.value))
                .cloned()
                .unwrap_or_default();
        }
        if m.matches_empty() {
            // Every series, minus those whose value of the label the matcher rejects.
            let rejected: Vec<&Vec<SeriesRef>> = values
                .map(|v| {
                    v.iter()
                        .filter(|(val, _)| !m.matches(val))
                        .map(|(_, p)| p)
                        .collect()
                })
                .unwrap_or_default();
            subtract(&self.all, &union(&rejected))
        } else {
            let accepted: Vec<&Vec<SeriesRef>> = values
                .map(|v| {
                    v.iter()
                        .filter(|(val, _)| m.matches(val))
                        .map(|(_, p)| p)
                        .collect()
                })
                .unwrap_or_default();
            union(&accepted)
        }
    }

    /// Label names in use, sorted.
    #[cfg(test)]
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.postings.keys().map(String::as_str)
    }

    /// Values of `name` in use, sorted.
    #[cfg(test)]
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        self.postings
            .get(name)
            .map(|v| v.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Rough bytes of the postings (labels themselves are counted with the series).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// [`Index::bytes`] counted by walking every posting list.
    #[cfg(test)]
    pub fn bytes_walked(&self) -> usize {
        self.postings
            .iter()
            .map(|(n, vs)| {
                name_bytes(n)
                    + vs.iter()
                        .map(|(v, p)| value_bytes(v, p.capacity()))
                        .sum::<usize>()
            })
            .sum::<usize>()
            + self.all.capacity() * 8
    }
}

fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|&x| {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            !(j < b.len() && b[j] == x)
        })
        .collect()
}

fn union(lists: &[&Vec<SeriesRef>]) -> Vec<SeriesRef> {
    match lists {
        [] => Vec::new(),
        [one] => (*one).clone(),
        _ => {
            let mut out: Vec<SeriesRef> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> (Index, Vec<Labels>) {
        let sets = vec![
            Labels::from_pairs([("__name__", "up"), ("job", "storj"), ("inst", "a")]),
            Labels::from_pairs([("__name__", "up"), ("job", "golem")]),
            Labels::from_pairs([("__name__", "up"), ("job", "grass"), ("inst", "b")]),
            Labels::from_pairs([("__name__", "cpu"), ("inst", "a")]),
        ];
        let mut i = Index::default();
        for (r, l) in sets.iter().enumerate() {
            i.add(r as SeriesRef, l);
        }
        (i, sets)
    }

    /// The index must agree with testing every series' labels directly.
    fn check(matchers: &[Matcher]) {
        let (i, sets) = idx();
        let want: Vec<SeriesRef> = sets
            .iter()
            .enumerate()
            .filter(|(_, l)| matchers.iter().all(|m| m.matches_labels(l)))
            .map(|(r, _)| r as SeriesRef)
            .collect();
        assert_eq!(i.select(matchers), want, "{matchers:?}");
    }

    #[test]
    fn every_matcher_kind_agrees_with_a_full_scan() {
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        use MatchOp::*;
        check(&[m(Equal, "__name__", "up")]);
        check(&[m(Equal, "__name__", "up"), m(Equal, "inst", "")]);
        check(&[m(NotEqual, "inst", "a")]);
        check(&[m(NotEqual, "inst", "")]);
        check(&[m(Regex, "job", "s.*|g.*")]);
        check(&[m(Regex, "inst", "a|")]);
        check(&[m(NotRegex, "job", "gr.*")]);
        check(&[m(NotRegex, "inst", ".+")]);
        check(&[m(Equal, "nope", "x")]);
        check(&[m(Equal, "nope", "")]);
        check(&[]);
    }

    #[test]
    fn removed_series_leave_no_names_behind() {
        let (mut i, sets) = idx();
        assert_eq!(i.bytes(), i.bytes_walked());
        i.remove(1, &sets[1]);
        assert_eq!(i.label_values("job"), vec!["grass", "storj"]);
        assert_eq!(i.bytes(), i.bytes_walked());
        i.remove(3, &sets[3]);
        i.remove(0, &sets[0]);
        i.remove(2, &sets[2]);
        assert_eq!(i.label_names().count(), 0);
        assert_eq!(i.len(), 0);
        assert_eq!(i.bytes(), i.bytes_walked());
    }

    #[test]
    fn the_running_size_equals_the_walk() {
        let mut i = Index::default();
        let mut live = Vec::new();
        for r in 0..500u64 {
            let l = Labels::from_pairs([
                ("__name__", format!("m{}", r % 7)),
                ("i", (r % 31).to_string()),
            ]);
            i.add(r, &l);
            live.push((r, l));
            if r % 3 == 0 {
                let (x, l) = live.remove((r as usize * 7) % live.len());
                i.remove(x, &l);
            }
            assert_eq!(i.bytes(), i.bytes_walked(), "after {r}");
        }
    }
}
