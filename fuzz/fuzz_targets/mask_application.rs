//! cargo-fuzz target: `ul2_testkit::check::mask_application` on arbitrary cases.
#![no_main]

libfuzzer_sys::fuzz_target!(|case: ul2_testkit::cases::ApplicationCase| ul2_testkit::check::mask_application(&case));
