//! The `resources:` block: each resource's capacity and the reserve kept for the host.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::raw::RawResource;
use super::scalar::{amount, unknown_resource};
use crate::optimizer::{fmt_amount, resource_from_key, Capacity, ResourceRule};
use crate::resources::Resource;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::units;

pub(super) fn validate_resources(
    raw: Option<Value>,
    d: &mut Diagnostics,
) -> Option<BTreeMap<Resource, ResourceRule>> {
    let m = match raw {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            d.error("resources", "expected a mapping of resource names");
            return None;
        }
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in m {
        let key = k.as_str().unwrap_or("?").to_string();
        let path = join_key("resources", &key);
        let Some(r) = resource_from_key(&key) else {
            d.error(&path, unknown_resource(&key));
            ok = false;
            continue;
        };
        let raw: RawResource = match v {
            Value::Null => RawResource::default(),
            v => match d.deserialize(&path, v) {
                Some(x) => x,
                None => {
                    ok = false;
                    continue;
                }
            },
        };
        let mut rule = ResourceRule::default();
        if let Some(v) = &raw.capacity {
            if units::is_auto(v) {
                rule.capacity = Capacity::Auto;
            } else {
                match amount(r, v, &join_key(&path, "capacity"), d) {
                    Some(x) => rule.capacity = Capacity::Value(x),
                    None => ok = false,
                }
            }
        }
        if let Some(v) = &raw.reserve {
            match amount(r, v, &join_key(&path, "reserve"), d) {
                Some(x) => rule.reserve = x,
                None => ok = false,
            }
        }
        if let Capacity::Value(c) = rule.capacity {
            if rule.reserve > c {
                d.error(
                    &join_key(&path, "reserve"),
                    format!(
                        "reserve {} is more than the capacity {}",
                        fmt_amount(r, rule.reserve),
                        fmt_amount(r, c)
                    ),
                );
                ok = false;
            }
        }
        out.insert(r, rule);
    }
    ok.then_some(out)
}
