//! Fuzz target: see `sluice_proxy::fuzzing::proxy_protocol`.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_proxy::fuzzing::proxy_protocol(data));
