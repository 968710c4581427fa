//! The nodes as the controller drives them: each configured node with its adapter and, where
//! the optimization rules name one, its actuator.

use std::sync::Arc;
use std::time::Duration;

use super::controller::ControlledNode;
use crate::actuators::{self, ActuatorKind, ActuatorSpec, VerifySpec};
use crate::adapters::Adapter;
use crate::config::Config;
use crate::optimizer::OptimizationRules;

/// The nodes of `config` as the controller drives them. A node gets an actuator from the
/// rules' `actuator` (its own block over its protocol's); an actuator that cannot be built
/// (a storj_config without config_file, a config file without the key…) leaves that node
/// observed only, with a warning in the result, and the others run.
pub fn controlled_nodes(
    config: &Config,
    rules: &OptimizationRules,
    adapters: &[Arc<dyn Adapter>],
) -> (Vec<ControlledNode>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for n in &config.nodes {
        let Some(adapter) = adapters.iter().find(|a| a.name() == n.name).cloned() else {
            warnings.push(format!("node {}: no adapter was built for it", n.name));
            continue;
        };
        let rule = rules
            .for_node(&n.name, n.protocol())
            .and_then(|r| r.actuator.map(|a| (r.path, a)));
        let verify = VerifySpec {
            poll_timeout: n.poll_timeout,
            ..VerifySpec::default()
        };
        let spec = match rule {
            None => None,
            Some((path, a)) => match ActuatorKind::from_rule(&a, &n.name) {
                Ok(kind) => {
                    // A restart takes longer than a live change: wait up to 5 minutes for
                    // the node to come back and report the new allocation.
                    let verify = if kind.disruptive() {
                        VerifySpec {
                            attempts: 30,
                            interval: Duration::from_secs(10),
                            ..verify
                        }
                    } else {
                        verify
                    };
                    Some(ActuatorSpec { kind, verify })
                }
                Err(e) => {
                    warnings.push(format!(
                        "{path}.actuator: {e}; node {} is observed but not moved",
                        n.name
                    ));
                    None
                }
            },
        };
        let actuator = match spec.map(|s| actuators::build(&s, adapter.clone())) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                warnings.push(format!("{e}; it is not moved"));
                None
            }
        };
        out.push(ControlledNode {
            name: n.name.clone(),
            protocol: n.protocol().to_string(),
            adapter,
            actuator,
            poll_interval: n.poll_interval,
            poll_timeout: n.poll_timeout,
            configured: n.allocation(),
        });
    }
    (out, warnings)
}
