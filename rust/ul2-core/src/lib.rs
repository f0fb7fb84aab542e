//! `ul2-core`: T5 span corruption and the UL2 mixture of denoisers, exact and keyed.
//!
//! Data flows one way, one module a stage: token sources ([`source`]: caller's rows, a
//! corpus of documents) → the sample index ([`index`]: which tokens and which denoiser example
//! `k` takes) → a denoiser per example ([`denoise`]: span corruption, prefix LM, sentinels and
//! mask application, keyed randomness from [`rng`]) with lengths the planner ([`plan`]) fixes
//! in advance → packing into rows ([`pack`]) → the rows of a batch ([`batch`]) → named arrays
//! ([`format`]). [`engine`] runs the whole pipeline from one validated [`Config`], read by key
//! through [`arguments`]. No Python here: the `ul2-python` crate converts and dispatches.
#![forbid(unsafe_code)]

mod alloc;
pub mod arguments;
pub mod batch;
pub mod denoise;
pub mod engine;
pub mod error;
pub mod format;
pub mod index;
pub mod pack;
pub mod plan;
pub mod rng;
pub mod source;
pub mod stream;

pub use arguments::Arguments;
pub use batch::{denoise_batch, denoise_rows};
pub use denoise::fim::{FimLoss, FimParams, FimSplit, fim_split};
pub use denoise::infilling::{InfillParams, InfillScratch, text_infilling};
pub use denoise::mask::{applied_lengths, apply_mask, apply_runs};
pub use denoise::prefix::{prefix_bounds, prefix_split};
pub use denoise::sentinels::{Overflow, Sentinels};
pub use denoise::spans::{Composer, Runs, SpanParams, SpanScratch, noise_mask, span_counts};
pub use denoise::{Denoiser, Kind, Mixture, RowConfig, RowLengths, RowScratch, denoise_row, example_bounds};
pub use engine::{
    Bins, Config, DatasetIndex, DenoisedRows, Dtype, Engine, Fields, KeyCounter, LongRows, Output, RunningStats, Stats,
};
pub use error::{Error, Result, Where};
pub use format::{Denoised, Family, Field, Format, Layout, Options, SEGMENT_COLUMNS, Segment, Selection, format, reformat};
pub use index::SampleIndex;
pub use pack::{NextFit, pack, pack_bins};
pub use plan::{Budget, PlanRow, plan_denoiser, plan_span_corruption};
pub use source::{Corpus, Documents, Line, RowSource, Rows, Samples, Strided, finish_offsets};
pub use stream::{Resume, Stream, StreamCounts};

/// An input token type (what NumPy arrays may hold: int32, int64, uint16, uint32).
pub trait Token: Copy + Ord + Send + Sync + 'static {
    /// Size in bytes.
    const BYTES: usize;
    /// The token held in `bytes` (`BYTES` of them, native byte order, any alignment).
    fn from_ne_slice(bytes: &[u8]) -> Self;
    fn to_i64(self) -> i64;
    /// `v` as this type, if it fits.
    fn try_from_i64(v: i64) -> Option<Self>;
    /// Whether any token is outside `[0, limit]` or, when given, inside `[lo, hi]`: one
    /// branch-free pass on the tokens' bits as unsigned integers of their own width
    /// (negative values wrap above any limit the type can hold), which vectorises.
    fn any_outside(tokens: &[Self], limit: i64, inside: Option<(i64, i64)>) -> bool;
}

/// An output token type (int32 or int64; signed for the −100 labels).
pub trait OutToken: Copy + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    /// Largest id the type holds.
    const MAX: i64;
    /// Caller guarantees `v` fits (ids are checked against [`OutToken::MAX`] first).
    fn from_i64(v: i64) -> Self;
}

macro_rules! token {
    ($($t:ty => $u:ty),*) => {$(
        impl Token for $t {
            const BYTES: usize = size_of::<$t>();
            #[inline]
            fn from_ne_slice(bytes: &[u8]) -> Self {
                let mut b = [0; size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_ne_bytes(b)
            }
            #[inline]
            fn to_i64(self) -> i64 { i64::from(self) }
            #[inline]
            fn try_from_i64(v: i64) -> Option<Self> { Self::try_from(v).ok() }
            #[inline]
            fn any_outside(tokens: &[Self], limit: i64, inside: Option<(i64, i64)>) -> bool {
                if limit < 0 {
                    return !tokens.is_empty();
                }
                let top = i64::from(<$t>::MAX);
                let limit = limit.min(top) as $u;
                match inside {
                    Some((lo, hi)) if lo <= top && hi >= 0 => {
                        let lo = lo.max(0);
                        let (base, span) = (lo as $u, (hi.min(top) - lo) as $u);
                        tokens.iter().fold(false, |bad, &t| {
                            bad | ((t as $u) > limit) | ((t as $u).wrapping_sub(base) <= span)
                        })
                    }
                    _ => tokens.iter().fold(false, |bad, &t| bad | ((t as $u) > limit)),
                }
            }
        }
    )*};
}
token!(i32 => u32, i64 => u64, u16 => u16, u32 => u32);

impl OutToken for i32 {
    const MAX: i64 = i32::MAX as i64;
    #[inline]
    fn from_i64(v: i64) -> Self {
        v as i32
    }
}
impl OutToken for i64 {
    const MAX: i64 = i64::MAX;
    #[inline]
    fn from_i64(v: i64) -> Self {
        v
    }
}
