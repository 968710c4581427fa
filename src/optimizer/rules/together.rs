//! `needs_together:` groups: resources that only earn together, with their ratio.

use serde_yaml::Value;

use super::raw::RawTogether;
use super::scalar::{amount, unknown_resource};
use crate::optimizer::{resource_from_key, Together};
use crate::schema::diag::{join_index, join_key, Diagnostics};

pub(super) fn validate_together(
    v: &Value,
    path: &str,
    d: &mut Diagnostics,
) -> Option<Vec<Together>> {
    // One group may be written without the list around it.
    let items: Vec<Value> = match v {
        Value::Sequence(s) if s.iter().all(|x| x.is_string()) && !s.is_empty() => {
            // `needs_together: [cpu_cores, memory_bytes]`: one group, current mix.
            let mut m = serde_yaml::Mapping::new();
            m.insert("resources".into(), v.clone());
            return validate_together_items(vec![Value::Mapping(m)], path, d, true);
        }
        Value::Sequence(s) => s.clone(),
        Value::Mapping(_) => {
            return validate_together_items(vec![v.clone()], path, d, true);
        }
        _ => {
            d.error(
                path,
                "expected a list of {resources: [...], ratio: [...]} (or one such mapping)",
            );
            return None;
        }
    };
    validate_together_items(items, path, d, false)
}

pub(super) fn validate_together_items(
    items: Vec<Value>,
    path: &str,
    d: &mut Diagnostics,
    single: bool,
) -> Option<Vec<Together>> {
    let mut out: Vec<Together> = Vec::new();
    let mut ok = true;
    for (i, item) in items.into_iter().enumerate() {
        let p = if single {
            path.to_string()
        } else {
            join_index(path, i)
        };
        let Some(raw) = d.deserialize::<RawTogether>(&p, item) else {
            ok = false;
            continue;
        };
        let Some(names) = raw.resources else {
            d.error(&p, "missing required key \"resources\"");
            ok = false;
            continue;
        };
        let mut resources = Vec::new();
        for (j, n) in names.iter().enumerate() {
            match resource_from_key(n) {
                Some(r) if resources.contains(&r) => {
                    d.error(
                        &join_index(&join_key(&p, "resources"), j),
                        format!("{n} is listed twice"),
                    );
                    ok = false;
                }
                Some(r) => {
                    if out.iter().any(|t| t.resources.contains(&r)) {
                        d.error(
                            &join_index(&join_key(&p, "resources"), j),
                            format!("{n} is already in another needs_together group"),
                        );
                        ok = false;
                    }
                    resources.push(r)
                }
                None => {
                    d.error(
                        &join_index(&join_key(&p, "resources"), j),
                        unknown_resource(n),
                    );
                    ok = false;
                }
            }
        }
        if resources.len() < 2 && ok {
            d.error(
                &join_key(&p, "resources"),
                "needs at least two resources (one resource alone needs no group)",
            );
            ok = false;
        }
        let ratio = match raw.ratio {
            None => None,
            Some(list) if list.len() == resources.len() => {
                let mut vals = Vec::new();
                for (j, (v, r)) in list.iter().zip(&resources).enumerate() {
                    let rp = join_index(&join_key(&p, "ratio"), j);
                    match amount(*r, v, &rp, d) {
                        Some(x) if x > 0.0 => vals.push(x),
                        Some(_) => {
                            d.error(&rp, "must be greater than 0");
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                Some(vals)
            }
            Some(list) => {
                d.error(
                    &join_key(&p, "ratio"),
                    format!(
                        "has {} values for {} resources: one amount per resource, in the same order",
                        list.len(),
                        resources.len()
                    ),
                );
                ok = false;
                None
            }
        };
        out.push(Together { resources, ratio });
    }
    ok.then_some(out)
}
