//! SKELETON: adapters.
