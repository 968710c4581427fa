//! The set of series in memory: lookup by labels (for the appender) and by ref (for the index and
//! the WAL), plus the label index. One `RwLock` in `Db` guards it; readers take it only long
//! enough to collect `Arc`s of the series they need, the appender takes it for writing only when
//! a new series appears or retention removes empty ones.

use std::collections::HashMap;
use std::sync::Arc;

use super::index::Index;
use super::series::{MemSeries, SeriesRef};
use crate::labels::{Labels, Matcher};

#[derive(Default)]
pub struct Head {
    by_labels: HashMap<Labels, Arc<MemSeries>>,
    by_ref: HashMap<SeriesRef, Arc<MemSeries>>,
    index: Index,
    next_ref: SeriesRef,
}

impl Head {
    pub fn get(&self, labels: &Labels) -> Option<&Arc<MemSeries>> {
        self.by_labels.get(labels)
    }

    pub fn get_ref(&self, r: SeriesRef) -> Option<&Arc<MemSeries>> {
        self.by_ref.get(&r)
    }

    /// The series with these labels, created with a fresh ref if missing.
    pub fn get_or_create(&mut self, labels: &Labels) -> Arc<MemSeries> {
        if let Some(s) = self.by_labels.get(labels) {
            return s.clone();
        }
        let r = self.next_ref;
        self.insert(r, labels.clone())
    }

    /// Creates a series under a given ref (from a snapshot or WAL) or returns the existing series
    /// with these labels.
    pub fn insert(&mut self, r: SeriesRef, labels: Labels) -> Arc<MemSeries> {
        if let Some(s) = self.by_labels.get(&labels) {
            return s.clone();
        }
        let s = Arc::new(MemSeries::new(r, labels.clone()));
        self.index.add(r, &labels);
        self.by_ref.insert(r, s.clone());
        self.by_labels.insert(labels, s.clone());
        self.next_ref = self.next_ref.max(r + 1);
        s
    }

    pub fn remove(&mut self, r: SeriesRef) {
        if let Some(s) = self.by_ref.remove(&r) {
            self.by_labels.remove(&s.labels);
            self.index.remove(r, &s.labels);
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.by_ref.len()
    }

    pub fn next_ref(&self) -> SeriesRef {
        self.next_ref
    }

    pub fn set_next_ref(&mut self, r: SeriesRef) {
        self.next_ref = self.next_ref.max(r);
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Series passing all matchers, in ref order.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        self.index
            .select(matchers)
            .into_iter()
            .filter_map(|r| self.by_ref.get(&r).cloned())
            .collect()
    }

    /// Every series, in ref order.
    pub fn all(&self) -> Vec<Arc<MemSeries>> {
        self.select(&[])
    }
}
