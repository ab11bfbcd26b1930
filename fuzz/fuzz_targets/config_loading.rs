//! Fuzz target: see `portcullis::invariants::config_loading` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::invariants::config_loading(data));
