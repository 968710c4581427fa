//! SKELETON: the metric families of /metrics.
