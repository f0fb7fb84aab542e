//! proptest strategies: any [`cases`](crate::cases) type drawn from bytes exactly as the fuzz
//! targets draw it, and the parameter strategies the core's properties share.

use std::fmt::Debug;

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use ul2_core::{Budget, Overflow};

/// A case drawn from up to 4 KiB of bytes, as libFuzzer's inputs are; shrinking the bytes
/// shrinks the case towards the low end of each draw. Bytes that do not make a case (a
/// refused denoiser) are skipped.
pub fn arbitrary<C: for<'a> Arbitrary<'a> + Debug>() -> impl Strategy<Value = C> {
    prop::collection::vec(any::<u8>(), 0..4096)
        .prop_filter_map("bytes that make no case", |bytes| C::arbitrary_take_rest(Unstructured::new(&bytes)).ok())
}

/// Densities in `[0, 1]` with the special values 0, 0.15, 0.5 and 1 common.
pub fn density() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(0.0),
        1 => Just(0.15),
        1 => Just(0.5),
        1 => Just(1.0),
        6 => 0.0f64..=1.0,
    ]
}

/// Mean span lengths around T5's and UL2's (1, 3, 8, 64).
pub fn mean_span() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(1.0),
        1 => Just(3.0),
        1 => Just(8.0),
        1 => Just(64.0),
        4 => 0.3f64..70.0,
    ]
}

pub fn overflow() -> impl Strategy<Value = Overflow> {
    prop_oneof![Just(Overflow::Error), Just(Overflow::Cap), Just(Overflow::T5)]
}

/// Encoder-decoder budgets up to `inputs` (targets given or not, up to `targets`) three
/// times in four, decoder-only ones up to `sequence`.
pub fn budget(inputs: usize, targets: usize, sequence: usize) -> impl Strategy<Value = Budget> {
    prop_oneof![
        3 => (1..inputs, prop::option::weighted(0.4, 1..targets))
            .prop_map(|(inputs, targets)| Budget::EncoderDecoder { inputs, targets }),
        1 => (1..sequence).prop_map(|sequence| Budget::Decoder { sequence }),
    ]
}
