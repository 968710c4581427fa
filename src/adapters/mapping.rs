//! What the two generic node kinds, `http_json` and `prometheus`, share: one URL with headers
//! and a bearer token, and a mapping from where a number is in the answer (a JSON pointer, a
//! series selector: the kind's field type `F`) to earnings per token, usage and allocation per
//! resource, plus an optional fixed allocation. One settings struct and one validation over
//! that field type, so the two kinds cannot drift apart in what they accept.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::exec::protocol_word;
use super::PollError;
use crate::net::http::HttpRequest;
use crate::resources::{Allocation, Resource, Resources};
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

/// The validated settings of a generic node; `F` says where one number is.
#[derive(Clone, Debug, PartialEq)]
pub struct MappedSpec<F> {
    pub protocol: String,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub bearer: Option<Credential>,
    pub earnings: BTreeMap<String, F>,
    pub usage: Resources<Option<F>>,
    pub allocation_fields: Resources<Option<F>>,
    pub allocation: Option<Allocation>,
}

/// The block as written; `R` is the kind's field as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "R: Deserialize<'de>"))]
struct RawMapped<R> {
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
    earnings: Option<BTreeMap<String, R>>,
    #[serde(default)]
    usage: Option<BTreeMap<String, R>>,
    #[serde(default)]
    allocation_fields: Option<BTreeMap<String, R>>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

/// Validates the block of node kind `kind` (its settings key, e.g. `http_json`), with `field`
/// checking one field as written; every error goes to `d` with its key path.
pub fn validate<R: for<'de> Deserialize<'de>, F: Clone>(
    kind: &str,
    block: Option<Value>,
    path: &str,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
    field: impl Fn(&R, &str, &mut Diagnostics) -> Option<F> + Copy,
) -> Option<MappedSpec<F>> {
    let Some(block) = block else {
        d.error(
            node_path,
            format!("missing required key \"{kind}\" (the settings of a node of kind {kind})"),
        );
        return None;
    };
    let raw: RawMapped<R> = d.deserialize(path, block)?;
    let protocol = protocol_word(raw.protocol, kind, path, d);
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
    Some(MappedSpec {
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

/// Validates `earnings:` (token → field) for the generic kinds.
fn token_map<R, F: Clone>(
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
fn resource_map<R, F: Clone>(
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
