//! Runner for Prometheus' `promqltest` scripts (`load`, `clear`, `eval instant|range`, `expect`).
//!
//! SKELETON: filled in by the promqltest work.
