//! Fuzz target: see `sluice_proxy::fuzzing::tls_client_hello`.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_proxy::fuzzing::tls_client_hello(data));
