//! `sluice-bench`: side-by-side benchmarks of the Sluice data plane and controller.
#![forbid(unsafe_code)]

fn main() {}
