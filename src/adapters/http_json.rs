//! Node kind `http_json`: any node with a JSON status endpoint. One GET per poll (optional
//! headers and a bearer token), and a mapping of JSON pointers (RFC 6901, `/a/b/0`) to
//! earnings per token, usage and allocation per resource, each with an optional `scale`
//! factor to reach the base unit (token units, cores, bytes, bytes per second). A value may
//! be a JSON number or a string holding a decimal number; anything else, or a missing field,
//! is skipped and counted (`depin_adapter_values_skipped_total{field="<pointer>"}`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::exec::protocol_word;
use super::fields::{number_or_string, valid_pointer};
use super::http::{fetch_json, HttpRequest};
use super::{Adapter, Allocation, Observation, PollError, PollFuture, Resource, Resources};
use crate::config::diag::{join_key, Diagnostics};
use crate::config::RawAllocation;

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

#[derive(Clone, Debug, PartialEq)]
pub struct HttpJsonSpec {
    pub protocol: String,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub bearer: Option<Credential>,
    pub earnings: BTreeMap<String, Field>,
    pub usage: Resources<Option<Field>>,
    pub allocation_fields: Resources<Option<Field>>,
    pub allocation: Option<Allocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpJson {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    bearer_token_env: Option<String>,
    #[serde(default)]
    earnings: Option<BTreeMap<String, RawField>>,
    #[serde(default)]
    usage: Option<BTreeMap<String, RawField>>,
    #[serde(default)]
    allocation_fields: Option<BTreeMap<String, RawField>>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

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

/// Validates `earnings:` (token → field) for the generic kinds.
pub fn token_map<R, F: Clone>(
    raw: Option<&BTreeMap<String, R>>,
    path: &str,
    d: &mut Diagnostics,
    one: impl Fn(&R, &str, &mut Diagnostics) -> Option<F>,
) -> Option<BTreeMap<String, F>> {
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (token, f) in raw.into_iter().flatten() {
        let p = join_key(path, token);
        if token.trim().is_empty() {
            d.error(&p, "a token name must not be empty");
            ok = false;
        }
        match one(f, &p, d) {
            Some(f) => {
                out.insert(token.clone(), f);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Validates a `usage:`/`allocation_fields:` map whose keys are resource names.
pub fn resource_map<R, F: Clone>(
    raw: Option<&BTreeMap<String, R>>,
    path: &str,
    d: &mut Diagnostics,
    one: impl Fn(&R, &str, &mut Diagnostics) -> Option<F>,
) -> Option<Resources<Option<F>>> {
    let mut out: Resources<Option<F>> = Resources {
        cpu_cores: None,
        memory_bytes: None,
        disk_bytes: None,
        bandwidth_bytes_per_second: None,
    };
    let mut ok = true;
    for (key, f) in raw.into_iter().flatten() {
        let p = join_key(path, key);
        let Some(r) = Resource::ALL.into_iter().find(|r| r.key() == key) else {
            let names: Vec<&str> = Resource::ALL.iter().map(|r| r.key()).collect();
            d.error(
                &p,
                format!(
                    "unknown resource \"{key}\"; expected one of {}",
                    names.join(", ")
                ),
            );
            ok = false;
            continue;
        };
        match one(f, &p, d) {
            Some(f) => out.put(r, Some(f)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<HttpJsonSpec> {
    let Some(block) = block else {
        d.error(
            node_path,
            "missing required key \"http_json\" (the settings of a node of kind http_json)",
        );
        return None;
    };
    let raw: RawHttpJson = d.deserialize(path, block)?;
    let protocol = protocol_word(raw.protocol, "http_json", path, d);
    let url = conf::http_url(raw.url.as_deref(), None, &join_key(path, "url"), d);
    let bearer = Credential::validate(
        raw.bearer_token_file.as_deref(),
        raw.bearer_token_env.as_deref(),
        None,
        path,
        "bearer_token_file",
        node_name,
        raw.bearer_token_env.is_some(),
        d,
    );
    let earnings = token_map(raw.earnings.as_ref(), &join_key(path, "earnings"), d, field);
    let usage = resource_map(raw.usage.as_ref(), &join_key(path, "usage"), d, field);
    let alloc_fields = resource_map(
        raw.allocation_fields.as_ref(),
        &join_key(path, "allocation_fields"),
        d,
        field,
    );
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(HttpJsonSpec {
        protocol: protocol?,
        url: url?,
        headers: conf::headers(raw.headers.as_ref()),
        bearer: bearer?,
        earnings: earnings?,
        usage: usage?,
        allocation_fields: alloc_fields?,
        allocation: allocation?,
    })
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

impl<T> Resources<Option<T>> {
    /// The field of one resource, by reference.
    pub fn get_ref(&self, r: Resource) -> Option<&T> {
        match r {
            Resource::CpuCores => self.cpu_cores.as_ref(),
            Resource::MemoryBytes => self.memory_bytes.as_ref(),
            Resource::DiskBytes => self.disk_bytes.as_ref(),
            Resource::BandwidthBytesPerSecond => self.bandwidth_bytes_per_second.as_ref(),
        }
    }

    fn put(&mut self, r: Resource, v: Option<T>) {
        match r {
            Resource::CpuCores => self.cpu_cores = v,
            Resource::MemoryBytes => self.memory_bytes = v,
            Resource::DiskBytes => self.disk_bytes = v,
            Resource::BandwidthBytesPerSecond => self.bandwidth_bytes_per_second = v,
        }
    }
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

/// The request of a generic kind: its URL, headers and bearer token.
pub fn request(
    url: &url::Url,
    headers: &[(String, String)],
    bearer: Option<&Credential>,
) -> Result<HttpRequest, PollError> {
    let mut req = HttpRequest::get(url.clone());
    req.headers.extend(headers.iter().cloned());
    if let Some(b) = bearer {
        req = req.bearer(&b.read()?);
    }
    Ok(req)
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
