//! SKELETON: config.
