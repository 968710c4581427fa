//! Helpers that speak other programs' formats and conventions: Go's float text
//! (`strconv`), Prometheus' and Go's durations, and the civil calendar behind RFC 3339 and month
//! boundaries. Part of the vocabulary layer: it imports nothing of the crate.

pub mod calendar;
pub mod duration;
pub mod strconv;
