//! Fuzz target: see `portcullis::invariants::upstream_answer_head` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::invariants::upstream_answer_head(data));
