//! The node kinds as the config file names them: what a kind's validated settings answer
//! ([`NodeSpec`]: its protocol, tokens, written allocation, and how its adapter is built) and
//! the table `kind:` is read against ([`KINDS`]). A new kind is one file in `adapters/` and one
//! line in [`KINDS`]; nothing else in the program matches on kinds.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use serde_yaml::Value;

use super::Adapter;
use crate::clock::SharedClock;
use crate::resources::Allocation;
use crate::schema::diag::Diagnostics;

/// A kind's settings block, validated: everything the rest of the program asks of a
/// configured node, whatever its kind.
pub trait NodeSpec: SpecAny {
    /// The word in `kind:`, which is also the key of the kind's settings block.
    fn kind(&self) -> &'static str;
    /// The value of the `protocol` label.
    fn protocol(&self) -> &str;
    /// The allocation written in the settings block, for kinds that have one.
    fn allocation(&self) -> Option<Allocation>;
    /// The tokens the node is known to pay in (to warn about missing prices).
    fn tokens(&self) -> Vec<String>;
    /// The runtime adapter of the node called `name`.
    fn build(&self, name: &str, clock: SharedClock) -> Arc<dyn Adapter>;
    /// Who earns, when the config already names it (a Streamr operator contract), with the
    /// node's stated share of it: two nodes claiming one account must each state a share,
    /// or its earnings would be counted twice.
    fn earning_account(&self) -> Option<(String, Option<f64>)> {
        None
    }
}

/// Comparison and downcasting for specs held as `dyn NodeSpec` (a config compares equal when
/// its nodes' settings do; tests reach a kind's own fields). Every `PartialEq` spec has it.
pub trait SpecAny: Any + Send + Sync + Debug {
    fn as_any(&self) -> &dyn Any;
    fn same_as(&self, other: &dyn Any) -> bool;
}

impl<T: Any + Send + Sync + Debug + PartialEq> SpecAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn same_as(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

impl PartialEq for dyn NodeSpec {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other.as_any())
    }
}

/// Where a node's settings block sits, for the kind's validation to name its errors.
pub struct KindBlock<'a> {
    /// The settings block (`storj: {...}`), absent when the node has none.
    pub block: Option<Value>,
    /// The block's key path, e.g. `nodes[0].storj`.
    pub path: &'a str,
    /// The node's key path, e.g. `nodes[0]`.
    pub node_path: &'a str,
    /// The node's name, for messages and defaults (an empty string when it has none).
    pub node_name: &'a str,
}

/// One node kind: its word in `kind:` and how its settings block is validated.
pub struct Kind {
    pub name: &'static str,
    pub validate: fn(KindBlock<'_>, &mut Diagnostics) -> Option<Arc<dyn NodeSpec>>,
}

fn shared<S: NodeSpec>(s: S) -> Arc<dyn NodeSpec> {
    Arc::new(s)
}

/// Every node kind, in the order the config's error message lists them.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "sim",
        validate: |b, d| {
            super::sim::validate(b.block, b.path, b.node_path, b.node_name, d).map(shared)
        },
    },
    Kind {
        name: "storj",
        validate: |b, d| super::storj::validate(b.block, b.path, d).map(shared),
    },
    Kind {
        name: "golem",
        validate: |b, d| super::golem::validate(b.block, b.path, b.node_name, d).map(shared),
    },
    Kind {
        name: "streamr",
        validate: |b, d| super::streamr::validate(b.block, b.path, b.node_name, d).map(shared),
    },
    Kind {
        name: "grass",
        validate: |b, d| {
            super::grass::validate(b.block, b.path, b.node_path, b.node_name, d).map(shared)
        },
    },
    Kind {
        name: "http_json",
        validate: |b, d| {
            super::http_json::validate(b.block, b.path, b.node_path, b.node_name, d).map(shared)
        },
    },
    Kind {
        name: "prometheus",
        validate: |b, d| {
            super::prometheus::validate(b.block, b.path, b.node_path, b.node_name, d).map(shared)
        },
    },
    Kind {
        name: "exec",
        validate: |b, d| super::exec::validate(b.block, b.path, b.node_path, d).map(shared),
    },
];

/// The kind called `name`.
pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The words `kind:` accepts, for error messages.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}
