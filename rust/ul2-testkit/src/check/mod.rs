//! The checks, one module a subject. Each takes a case, runs the core and panics on the
//! first violated invariant; a caller's mistake the core reports as an `Err` is fine, but
//! never [`Error::Internal`].

mod index;
mod mask;
mod pack;
mod plan;
mod spans;

pub use index::{corpus_slices, sample_index};
pub use mask::mask_application;
pub use pack::{formatted, packed_rows, packing};
pub use plan::planner;
pub use spans::{composition, mask_sampling, noise_masks};
use ul2_core::{Error, RowConfig, RowScratch, denoise_row};

/// An error from the core must be the caller's mistake, never a broken invariant.
#[track_caller]
pub fn not_internal(e: &Error) {
    match e {
        Error::Internal(_) => panic!("internal error reached: {e}"),
        Error::InMixture { error, .. } => not_internal(error),
        _ => assert!(!e.to_string().is_empty()),
    }
}

/// Longest row (raw tokens or output width) the checks denoise; longer plans are checked
/// against their budget only, so that one fuzz execution stays fast.
pub const MAX_ROW: usize = 1 << 16;

/// EOS id of the cases that append one (below every sentinel).
pub const EOS: i64 = 1;

/// `tokens` through [`denoise_row`] into buffers of `widths`, pre-filled with a marker:
/// nothing past the reported lengths may be written. Returns the fronts and the denoiser.
pub fn run_row(
    cfg: &RowConfig<'_>,
    tokens: &[i32],
    key: u64,
    widths: (usize, usize),
) -> Result<(Vec<i64>, Vec<i64>, usize), Error> {
    const MARK: i64 = -7;
    let (mut inputs, mut targets) = (vec![MARK; widths.0], vec![MARK; widths.1]);
    let lens = denoise_row(cfg, tokens, key, &mut RowScratch::default(), &mut inputs, &mut targets)?;
    assert!(inputs[lens.inputs..].iter().all(|&x| x == MARK), "inputs written past length {}", lens.inputs);
    assert!(targets[lens.targets..].iter().all(|&x| x == MARK), "targets written past length {}", lens.targets);
    inputs.truncate(lens.inputs);
    targets.truncate(lens.targets);
    Ok((inputs, targets, lens.denoiser))
}
