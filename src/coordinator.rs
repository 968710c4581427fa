//! SKELETON: the poll loop.
