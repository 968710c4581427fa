//! The report's [`Source`] over a local database and reallocation history (a private copy of
//! `--storage.path`, or one built in a test).

use std::collections::BTreeMap;

use super::{Correction, RawSeries, Reallocation, ReportError, Row, Source};
use crate::earnings::Event;
use crate::promql::{value::Value, Engine};
use crate::reallocation::History;
use crate::tsdb::{Db, Queryable};

pub struct LocalSource<'a> {
    pub db: &'a Db,
    pub engine: Engine,
    pub history: &'a History,
    /// The earnings ledger's state, when the storage has one.
    pub ledger: Option<&'a crate::earnings::State>,
}

fn map(l: &crate::labels::Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

impl Source for LocalSource<'_> {
    fn instant(&self, query: &str, t_ms: i64) -> Result<Vec<Row>, ReportError> {
        let err = |message: String| ReportError::Query {
            query: query.to_string(),
            message,
        };
        let expr = crate::promql::parse(query).map_err(|e| err(e.to_string()))?;
        let r = self
            .engine
            .instant_query(self.db, &expr, t_ms)
            .map_err(|e| err(e.to_string()))?;
        Ok(match r.value {
            Value::Vector(v) => v.into_iter().map(|s| (map(&s.labels), s.v)).collect(),
            Value::Scalar { v, .. } => vec![(BTreeMap::new(), v)],
            _ => Vec::new(),
        })
    }

    fn raw(&self, selector: &str, t_ms: i64, range_ms: i64) -> Result<Vec<RawSeries>, ReportError> {
        let sets =
            crate::http::params::parse_match_sets(&[selector]).map_err(|e| ReportError::Query {
                query: selector.to_string(),
                message: e.to_string(),
            })?;
        let mut out = Vec::new();
        for ms in sets {
            for s in self.db.select(&ms, t_ms - range_ms + 1, t_ms) {
                let samples = s.samples.iter().map(|x| (x.t, x.v)).collect();
                out.push((map(&s.labels), samples));
            }
        }
        Ok(out)
    }

    fn corrections(&self) -> Result<Vec<Correction>, ReportError> {
        let Some(state) = self.ledger else {
            return Ok(Vec::new());
        };
        Ok(state
            .history
            .iter()
            .filter_map(|(t_ms, node, e)| {
                let c = |stream: &String, period: &String, token: &str, amount: f64| Correction {
                    t_ms: *t_ms,
                    node: node.clone(),
                    stream: stream.clone(),
                    period: period.clone(),
                    token: token.to_string(),
                    amount,
                    cause: None,
                    reversed: false,
                };
                match e {
                    Event::Corrected {
                        stream,
                        period,
                        token,
                        amount,
                        cause,
                    } => Some(Correction {
                        cause: cause.clone(),
                        ..c(stream, period, token, amount.to_f64())
                    }),
                    Event::Reversed {
                        stream,
                        period,
                        amount,
                    } => Some(Correction {
                        reversed: true,
                        ..c(stream, period, "", amount.to_f64())
                    }),
                    Event::LateReading { .. } => None,
                }
            })
            .collect())
    }

    fn reallocations(&self) -> Result<Vec<Reallocation>, ReportError> {
        Ok(self
            .history
            .summaries()
            .into_iter()
            .map(|s| Reallocation {
                id: s.id,
                started_ms: s.started_ms,
                finished_ms: s.finished_ms,
                summary: s.summary,
                outcome: s.outcome.map(|o| o.as_str().to_string()),
                expected_gain_usd_per_hour: s.expected_gain_usd_per_hour,
                realized_gain_usd_per_hour: s.realized_gain_usd_per_hour,
                nodes: s.steps.iter().map(|st| st.node.clone()).collect(),
                held_hours: 0.0,
                attributed_usd: None,
            })
            .collect())
    }
}
