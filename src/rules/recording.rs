//! A recording rule (Prometheus' `rules/recording.go`): evaluates its expression and renames
//! the result to the recorded metric with the rule's labels. Appending to storage and
//! staleness are the group's job.

use std::collections::BTreeMap;

use super::group::{query_vector, RuleStatus};
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::{Engine, Expr, InstantSample};
use crate::tsdb::Queryable;

#[derive(Clone, Debug)]
pub struct RecordingRule {
    name: String,
    expr: Expr,
    /// The expression as written in the file.
    expr_text: String,
    labels: Labels,
    pub(crate) status: RuleStatus,
}

impl RecordingRule {
    pub fn new(
        name: String,
        expr: Expr,
        expr_text: String,
        labels: BTreeMap<String, String>,
    ) -> Self {
        RecordingRule {
            name,
            expr,
            expr_text,
            labels: Labels::from_pairs(labels),
            status: RuleStatus::default(),
        }
    }

    /// The recorded metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The expression as written in the rule file.
    pub fn expr_text(&self) -> &str {
        &self.expr_text
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn status(&self) -> &RuleStatus {
        &self.status
    }

    /// Evaluates at `query_ts` (the group's evaluation time minus its query offset): the
    /// samples to record, or Prometheus' error text.
    pub fn eval(
        &self,
        query_ts: i64,
        q: &dyn Queryable,
        engine: &Engine,
        limit: usize,
    ) -> Result<Vec<InstantSample>, String> {
        let mut vector = query_vector(engine, q, &self.expr, query_ts)?;
        for s in &mut vector {
            let mut b = s.labels.builder();
            b.set(METRIC_NAME, self.name.clone());
            for l in self.labels.iter() {
                b.set(l.name.clone(), l.value.clone());
            }
            s.labels = b.build();
            s.t = query_ts;
        }
        let mut seen = std::collections::HashSet::new();
        if !vector.iter().all(|s| seen.insert(&s.labels)) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        if limit > 0 && vector.len() > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                vector.len()
            ));
        }
        Ok(vector)
    }

    /// Identity for carrying state across reloads (Prometheus' `nameAndLabels`).
    pub(crate) fn identity(&self) -> String {
        format!("{}{}", self.name, self.labels)
    }

    /// Prometheus compares groups by their rules' YAML; the parts that matter are these.
    pub(crate) fn definition(&self) -> String {
        format!(
            "record:{}\nexpr:{}\nlabels:{}",
            self.name, self.expr, self.labels
        )
    }
}
