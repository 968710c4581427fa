//! The simulator: the market model that simulated nodes earn from (`market`). Scenarios, the
//! virtual-clock driver and the baselines come later; everything here takes its time from the
//! caller (a [`crate::clock::Clock`]), so a simulated month runs in seconds.

pub mod market;
