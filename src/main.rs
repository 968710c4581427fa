//! The `depin-orcha` command line. SKELETON.
fn main() {}
