//! Node kind `http_json`: any node with a JSON status endpoint. One GET per poll (optional
//! headers and a bearer token), and a mapping of JSON pointers (RFC 6901, `/a/b/0`) to
//! earnings per token, usage and allocation per resource, each with an optional `scale`
//! factor to reach the base unit (token units, cores, bytes, bytes per second). A value may
//! be a JSON number or a string holding a decimal number; anything else, or a missing field,
//! is skipped and counted (`depin_adapter_values_skipped_total{field="<pointer>"}`).

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::fields::{number_or_string, valid_pointer};
use super::mapping::{self, request, MappedSpec};
use super::{Adapter, Observation, PollFuture};
use crate::net::http::fetch_json;
use crate::resources::Resource;
use crate::schema::diag::Diagnostics;

/// Where one number is and how to scale it.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub pointer: String,
    pub scale: f64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawField {
    Pointer(String),
    Full {
        pointer: String,
        #[serde(default)]
        scale: Option<f64>,
    },
}

/// The settings of an `http_json` node: fields are JSON pointers.
pub type HttpJsonSpec = MappedSpec<Field>;

fn field(raw: &RawField, path: &str, d: &mut Diagnostics) -> Option<Field> {
    let (pointer, scale) = match raw {
        RawField::Pointer(p) => (p.clone(), 1.0),
        RawField::Full { pointer, scale } => (pointer.clone(), scale.unwrap_or(1.0)),
    };
    let mut ok = true;
    if !valid_pointer(&pointer) {
        d.error(
            path,
            format!("{pointer:?} is not a JSON pointer (write /key/0/key)"),
        );
        ok = false;
    }
    if !scale.is_finite() || scale <= 0.0 {
        d.error(path, format!("scale must be a number above 0, got {scale}"));
        ok = false;
    }
    ok.then_some(Field { pointer, scale })
}

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<HttpJsonSpec> {
    mapping::validate("http_json", block, path, node_path, node_name, d, field)
}

/// Applies the mapping to an answer.
pub fn read(spec: &HttpJsonSpec, v: &Json) -> Observation {
    let mut obs = Observation::default();
    let get = |f: &Field, skipped: &mut Vec<String>| -> Option<f64> {
        match v.pointer(&f.pointer).and_then(number_or_string) {
            Some(x) if x >= 0.0 => Some(x * f.scale),
            _ => {
                skipped.push(f.pointer.clone());
                None
            }
        }
    };
    for (token, f) in &spec.earnings {
        if let Some(x) = get(f, &mut obs.skipped) {
            obs.earnings.insert(token.clone(), x);
        }
    }
    for r in Resource::ALL {
        if let Some(f) = spec.usage.get_ref(r) {
            obs.usage.set(r, get(f, &mut obs.skipped));
        }
        if let Some(f) = spec.allocation_fields.get_ref(r) {
            obs.allocation.set(r, get(f, &mut obs.skipped));
        }
    }
    obs
}

pub struct HttpJsonNode {
    name: String,
    spec: HttpJsonSpec,
}

impl HttpJsonNode {
    pub fn new(name: &str, spec: HttpJsonSpec) -> HttpJsonNode {
        HttpJsonNode {
            name: name.to_string(),
            spec,
        }
    }
}

impl Adapter for HttpJsonNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        &self.spec.protocol
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(async move {
            let req = request(
                &self.spec.url,
                &self.spec.headers,
                self.spec.bearer.as_ref(),
            )?;
            let v = fetch_json(&req).await?;
            Ok(read(&self.spec, &v))
        })
    }
}

impl super::kind::NodeSpec for HttpJsonSpec {
    fn kind(&self) -> &'static str {
        "http_json"
    }

    fn protocol(&self) -> &str {
        &self.protocol
    }

    fn allocation(&self) -> Option<crate::resources::Allocation> {
        self.allocation
    }

    fn tokens(&self) -> Vec<String> {
        self.earnings.keys().cloned().collect()
    }

    fn build(
        &self,
        name: &str,
        _clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(HttpJsonNode::new(name, self.clone()))
    }
}
