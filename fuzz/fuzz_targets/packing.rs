//! cargo-fuzz target: `ul2_testkit::check::packing` on arbitrary cases.
#![no_main]

libfuzzer_sys::fuzz_target!(|case: ul2_testkit::cases::PackCase| ul2_testkit::check::packing(&case));
