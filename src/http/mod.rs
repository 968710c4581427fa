//! SKELETON: http.
