//! A resource's `response:`: how a node's earnings follow the amount it gets.

use serde_yaml::Value;

use super::query::query;
use super::raw::RawResponse;
use super::scalar::{amount, number, show};
use crate::optimizer::{Curve, Response, ResponseModel};
use crate::resources::Resource;
use crate::schema::diag::{join_index, join_key, Diagnostics};
use crate::schema::units;

pub(super) fn validate_response(
    r: Resource,
    v: Value,
    path: &str,
    d: &mut Diagnostics,
) -> Option<Response> {
    let raw: RawResponse = match v {
        Value::Null => RawResponse::default(),
        Value::String(s) => RawResponse {
            model: Some(s),
            ..RawResponse::default()
        },
        v => d.deserialize(path, v)?,
    };
    let mut ok = true;
    let model = match raw.model.as_deref().unwrap_or("marginal") {
        "marginal" => marginal(r, &raw, path, &mut ok, d),
        "curve" => curve(r, &raw, path, &mut ok, d),
        other => {
            d.error(
                &join_key(path, "model"),
                format!("unknown model \"{other}\"; expected marginal or curve"),
            );
            return None;
        }
    };
    let demand_cap = match &raw.demand_cap {
        None => None,
        Some(v) => {
            let q = query(v, &join_key(path, "demand_cap"), d);
            if q.is_none() {
                ok = false;
            }
            q
        }
    };
    let weight = match &raw.weight {
        None => 1.0,
        Some(v) => match number(v) {
            Some(w) if w.is_finite() && w >= 0.0 => w,
            _ => {
                d.error(
                    &join_key(path, "weight"),
                    format!("must be a number of 0 or more, got {}", show(v)),
                );
                ok = false;
                1.0
            }
        },
    };
    ok.then_some(Response {
        model,
        demand_cap,
        weight,
    })
}

/// `model: marginal`: a knee, `auto` or an amount above 0; `ok` turns false on a finding.
fn marginal(
    r: Resource,
    raw: &RawResponse,
    path: &str,
    ok: &mut bool,
    d: &mut Diagnostics,
) -> ResponseModel {
    if raw.points.is_some() {
        d.error(
            &join_key(path, "points"),
            "points belong to model: curve; marginal takes a knee",
        );
        *ok = false;
    }
    let knee = match &raw.knee {
        None => None,
        Some(v) if units::is_auto(v) => None,
        Some(v) => match amount(r, v, &join_key(path, "knee"), d) {
            Some(k) if k > 0.0 => Some(k),
            Some(_) => {
                d.error(&join_key(path, "knee"), "must be greater than 0");
                *ok = false;
                None
            }
            None => {
                *ok = false;
                None
            }
        },
    };
    ResponseModel::Marginal { knee }
}

/// `model: curve`: points `[amount, relative earnings]` forming a concave curve; `ok` turns
/// false on a finding. Concavity is checked only while `ok` holds.
fn curve(
    r: Resource,
    raw: &RawResponse,
    path: &str,
    ok: &mut bool,
    d: &mut Diagnostics,
) -> ResponseModel {
    if raw.knee.is_some() {
        d.error(
            &join_key(path, "knee"),
            "a knee belongs to model: marginal; a curve is given by its points",
        );
        *ok = false;
    }
    let pp = join_key(path, "points");
    let Some(Value::Sequence(list)) = &raw.points else {
        d.error(
            &pp,
            "model: curve needs points: [[amount, relative earnings], ...] starting at [0, 0]",
        );
        *ok = false;
        return ResponseModel::Curve { points: Vec::new() };
    };
    let mut pts = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let ip = join_index(&pp, i);
        match p {
            Value::Sequence(xy) if xy.len() == 2 => {
                let x = amount(r, &xy[0], &join_index(&ip, 0), d);
                let y = number(&xy[1]);
                if y.is_none() {
                    d.error(&join_index(&ip, 1), "expected a number (relative earnings)");
                }
                match x.zip(y) {
                    Some(xy) => pts.push(xy),
                    None => *ok = false,
                }
            }
            _ => {
                d.error(&ip, "expected [amount, relative earnings]");
                *ok = false;
            }
        }
    }
    if *ok {
        if let Err(e) = Curve::new(pts.clone()) {
            d.error(&pp, e);
            *ok = false;
        }
    }
    ResponseModel::Curve { points: pts }
}
