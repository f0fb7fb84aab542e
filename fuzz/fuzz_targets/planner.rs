//! cargo-fuzz target: see `ul2_fuzz::planner` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ul2_fuzz::planner(data));
