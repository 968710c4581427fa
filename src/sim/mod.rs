//! SKELETON: sim.
