//! Fuzz target: see `portcullis::invariants::chunked_decoding` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::invariants::chunked_decoding(data));
