//! cargo-fuzz target: `ul2_testkit::check::mask_sampling` on arbitrary cases.
#![no_main]

libfuzzer_sys::fuzz_target!(|case: ul2_testkit::cases::SamplingCase| ul2_testkit::check::mask_sampling(&case));
