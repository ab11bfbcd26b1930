//! Fuzz target: see `portcullis::invariants::path_normalization` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::invariants::path_normalization(data));
