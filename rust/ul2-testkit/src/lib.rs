//! The SPEC §8 invariants of `ul2-core`, stated once.
//!
//! [`cases`] are the inputs (valid ones and their edges: denoisers and mixtures, sentinels,
//! budgets, rows, corpora with documents and separators, masks), each `Arbitrary`, so that
//! fuzz bytes and proptest ([`strategy::arbitrary`]) draw the same cases. [`check`] runs the
//! core on a case and asserts the invariants against [`reference`], the contract written out
//! again without the core's code. The proptest properties in `rust/ul2-core/tests/` and the
//! cargo-fuzz targets in `fuzz/` are thin callers of both. A violated invariant panics: that
//! is a fuzz finding, and a failing (shrunk) case under proptest.
// Checks assert by design; densities 0 and 0.5 are compared exactly as special values of
// the contract; the checks use SPEC's short names (n, r, p, e; a and b for positions); a
// case's flags are the call's flags; a check reads top to bottom as the contract does.
#![allow(
    clippy::missing_panics_doc,
    clippy::float_cmp,
    clippy::many_single_char_names,
    clippy::struct_excessive_bools,
    clippy::too_many_lines
)]

pub mod cases;
pub mod check;
pub mod input;
pub mod reference;
#[cfg(feature = "proptest")]
pub mod strategy;
