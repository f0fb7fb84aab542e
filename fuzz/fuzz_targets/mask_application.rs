//! cargo-fuzz target: see `ul2_fuzz::mask_application` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ul2_fuzz::mask_application(data));
