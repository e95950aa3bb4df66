//! nextmark-bench.
fn main() {}
