//! Prometheus' relabelling (`relabel_config`) of a label set, for `write_relabel_configs`:
//! replace, keep, drop, labelmap, labeldrop, labelkeep with Prometheus' defaults (separator
//! `;`, regex `(.*)` anchored at both ends, replacement `$1`).

use crate::config::remote_write::{RelabelAction, RelabelConfig};
use crate::labels::Labels;

/// The relabelled set, or `None` when a rule drops the series (or no label is left).
pub fn process(labels: &Labels, rules: &[RelabelConfig]) -> Option<Labels> {
    let mut cur = labels.clone();
    for r in rules {
        cur = apply(cur, r)?;
    }
    (!cur.is_empty()).then_some(cur)
}

fn apply(labels: Labels, r: &RelabelConfig) -> Option<Labels> {
    let value = r
        .source_labels
        .iter()
        .map(|n| labels.get(n).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&r.separator);
    match r.action {
        RelabelAction::Keep => r.regex.is_match(&value).then_some(labels),
        RelabelAction::Drop => (!r.regex.is_match(&value)).then_some(labels),
        RelabelAction::Replace => {
            let Some(caps) = r.regex.captures(&value) else {
                return Some(labels);
            };
            let mut target = String::new();
            caps.expand(&r.target_label, &mut target);
            let mut res = String::new();
            caps.expand(&r.replacement, &mut res);
            if !valid_label_name(&target) {
                return Some(labels);
            }
            let mut b = labels.builder();
            // An empty result deletes the label, as in Prometheus.
            b.set(target, res);
            Some(b.build())
        }
        RelabelAction::LabelMap => {
            let mut b = labels.builder();
            for l in labels.iter() {
                if let Some(caps) = r.regex.captures(&l.name) {
                    let mut name = String::new();
                    caps.expand(&r.replacement, &mut name);
                    b.set(name, l.value.clone());
                }
            }
            Some(b.build())
        }
        RelabelAction::LabelDrop | RelabelAction::LabelKeep => {
            let keep_matching = r.action == RelabelAction::LabelKeep;
            let mut b = labels.builder();
            for l in labels.iter() {
                if r.regex.is_match(&l.name) != keep_matching {
                    b.del(&l.name);
                }
            }
            Some(b.build())
        }
    }
}

fn valid_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn rules(yaml: &str) -> Vec<RelabelConfig> {
        let text = format!(
            "host: {{capacity: {{disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}}}\nremote_write:\n  - url: http://x:1/w\n    write_relabel_configs:\n{yaml}"
        );
        let c = parse_str(&text, "t.yml").unwrap_or_else(|e| panic!("{e}"));
        c.remote_write[0].write_relabel_configs.clone()
    }

    fn ls(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p.iter().copied())
    }

    #[test]
    fn keep_drop_and_anchoring() {
        let r = rules("      - {source_labels: [__name__], regex: 'depin_.*', action: keep}\n      - {source_labels: [protocol], regex: grass, action: drop}\n");
        assert!(process(&ls(&[("__name__", "depin_up"), ("protocol", "storj")]), &r).is_some());
        assert!(process(&ls(&[("__name__", "depin_up"), ("protocol", "grass")]), &r).is_none());
        // Anchored: "grass" does not match "grasshopper".
        assert!(process(
            &ls(&[("__name__", "depin_up"), ("protocol", "grasshopper")]),
            &r
        )
        .is_some());
        assert!(process(&ls(&[("__name__", "go_goroutines")]), &r).is_none());
    }

    #[test]
    fn replace_labelmap_labeldrop_labelkeep() {
        let r = rules("      - {source_labels: [node, protocol], separator: '/', regex: '(.*)/(.*)', target_label: id, replacement: '${2}-$1'}\n      - {regex: 'node', action: labeldrop}\n      - {regex: '(proto)col', replacement: 'x_$1', action: labelmap}\n");
        let out = process(
            &ls(&[("__name__", "m"), ("node", "n1"), ("protocol", "storj")]),
            &r,
        )
        .unwrap();
        assert_eq!(
            out,
            ls(&[
                ("__name__", "m"),
                ("id", "storj-n1"),
                ("protocol", "storj"),
                ("x_proto", "storj")
            ])
        );
        let keep = rules("      - {regex: '__name__|host', action: labelkeep}\n");
        let out = process(
            &ls(&[("__name__", "m"), ("host", "a"), ("node", "x")]),
            &keep,
        )
        .unwrap();
        assert_eq!(out, ls(&[("__name__", "m"), ("host", "a")]));
    }

    #[test]
    fn replace_with_empty_result_deletes_and_no_match_leaves_alone() {
        let r = rules(
            "      - {source_labels: [node], regex: 'gone', target_label: node, replacement: ''}\n",
        );
        let out = process(&ls(&[("__name__", "m"), ("node", "gone")]), &r).unwrap();
        assert_eq!(out, ls(&[("__name__", "m")]));
        let out = process(&ls(&[("__name__", "m"), ("node", "kept")]), &r).unwrap();
        assert_eq!(out, ls(&[("__name__", "m"), ("node", "kept")]));
    }
}
