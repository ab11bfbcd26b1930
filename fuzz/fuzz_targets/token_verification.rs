//! Fuzz target: see `portcullis::invariants::token_verification` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::invariants::token_verification(data));
