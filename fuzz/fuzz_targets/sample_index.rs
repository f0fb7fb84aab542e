//! cargo-fuzz target: `ul2_testkit::check::sample_index` on arbitrary cases.
#![no_main]

libfuzzer_sys::fuzz_target!(|case: ul2_testkit::cases::IndexCase<u16>| ul2_testkit::check::sample_index(&case));
