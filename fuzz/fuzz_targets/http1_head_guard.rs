//! Fuzz target: see `sluice_proxy::fuzzing::http1_head_guard`.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_proxy::fuzzing::http1_head_guard(data));
