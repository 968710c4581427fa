//! Which of the project's own YAML files a text is: a Prometheus rule file (`groups`) or an
//! optimization rules file (the controller's schema). `run`, `check config`, `check rules` and
//! the rule loader all ask here, so they agree on every file.

use serde_yaml::Value;

/// The top-level keys of an optimization rules file.
pub const OPTIMIZATION_KEYS: [&str; 6] = [
    "interval",
    "gates",
    "confidence",
    "resources",
    "protocols",
    "nodes",
];

/// Whether `text` is an optimization rules file rather than a Prometheus rule file: a mapping
/// without `groups` holding one of the optimization keys. Text that is not YAML is not one
/// (the rule-file parser reports it).
pub fn is_optimization_rules(text: &str) -> bool {
    let Ok(Value::Mapping(top)) = serde_yaml::from_str::<Value>(text) else {
        return false;
    };
    let has = |k: &str| top.contains_key(Value::String(k.into()));
    !has("groups") && OPTIMIZATION_KEYS.iter().any(|k| has(k))
}

/// Whether the file at `path` is an optimization rules file (false when it cannot be read).
pub fn is_optimization_file(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| is_optimization_rules(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimization_files_are_told_from_rule_files() {
        assert!(is_optimization_rules("interval: 5m\ngates: {}\n"));
        assert!(is_optimization_rules("protocols: {}\n"));
        assert!(!is_optimization_rules("groups: []\n"));
        assert!(!is_optimization_rules("groups: []\nnodes: {}\n"));
        assert!(!is_optimization_rules(""));
        assert!(!is_optimization_rules("{{ not yaml"));
    }
}
