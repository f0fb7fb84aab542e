//! cargo-fuzz target: `ul2_testkit::check::planner` on arbitrary cases.
#![no_main]

libfuzzer_sys::fuzz_target!(|case: ul2_testkit::cases::PlanCase| ul2_testkit::check::planner(&case));
