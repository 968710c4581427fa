//! The schema layer: reading the project's YAML files with positions (every error names
//! `FILE:LINE:COL: key.path`), the unit-bearing scalars (durations, sizes, cores) and the
//! raw allocation block shared by every file that states one. Below config, rules, optimizer
//! and scenarios, which all read YAML through it; above the vocabulary only.

pub mod allocation;
pub mod diag;
pub mod files;
pub mod units;

pub use allocation::RawAllocation;
