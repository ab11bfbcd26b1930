//! Fuzz target: see `portcullis::invariants::header_sanitizing` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::invariants::header_sanitizing(data));
