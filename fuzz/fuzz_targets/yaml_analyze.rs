//! Fuzz target: see `sluice_fuzz::analyze::yaml`.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::analyze::yaml(data));
