//! Fuzz target: see `portcullis::invariants::request_round_trip` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::invariants::request_round_trip(data));
