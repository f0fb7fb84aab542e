//! The packing stage: consecutive examples grouped into output rows, next-fit, by bounds
//! computed without denoising them.

use rayon::prelude::*;

use crate::denoise::{RowConfig, example_bounds};
use crate::error::{Error, Result, Where};
use crate::format::{Family, Layout};

/// Groups examples `0..keys.len()` (in order) into rows, next-fit: a row takes examples
/// while their bounded lengths ([`example_bounds`]) fit. Returns row starts (`rows + 1`
/// entries). `lengths(i)` is example `i`'s raw length.
pub fn pack_bins(
    cfg: &RowConfig<'_>,
    lengths: impl Fn(usize) -> usize + Sync,
    keys: &[u64],
    layout: Layout,
) -> Result<Vec<usize>> {
    pack(cfg, lengths, keys, layout).map(|(bins, _)| bins)
}

/// [`pack_bins`], also returning the output positions the examples take (their bounded
/// lengths summed): the fill rate without a second pass over the bounds.
pub fn pack(
    cfg: &RowConfig<'_>,
    lengths: impl Fn(usize) -> usize + Sync,
    keys: &[u64],
    layout: Layout,
) -> Result<(Vec<usize>, u64)> {
    let bounds = keys
        .par_iter()
        .enumerate()
        .map(|(i, &k)| example_bounds(cfg, lengths(i), k).map_err(|e| (i, e.at_row(i))))
        .collect::<Vec<_>>();
    let (w0, w1) = layout.widths;
    let mut bins = vec![0];
    let (mut a, mut b) = (0usize, 0usize);
    let mut used = 0u64;
    for (i, bound) in bounds.into_iter().enumerate() {
        let (_, li, lt) = bound.map_err(|(_, e)| e)?;
        let (need_a, need_b) = match layout.family {
            Family::EncoderDecoder => (li, lt),
            Family::Decoder => (li + lt, 0),
        };
        if need_a > w0 || need_b > w1 {
            let (what, budget, length, limit) = match layout.family {
                Family::Decoder => ("sequence", "sequence_length", need_a, w0),
                Family::EncoderDecoder if need_a > w0 => ("inputs", "inputs_length", need_a, w0),
                Family::EncoderDecoder => ("targets", "targets_length", need_b, w1),
            };
            return Err(Error::DoesNotFit {
                where_: Where::row("rows", i),
                what,
                length,
                budget,
                limit,
                fix: "pass rows no longer than the planned raw_length (ul2.plan)".into(),
            });
        }
        if i > 0 && (a + need_a > w0 || b + need_b > w1) {
            bins.push(i);
            a = 0;
            b = 0;
        }
        a += need_a;
        b += need_b;
        used += (need_a + need_b) as u64;
    }
    if !keys.is_empty() {
        bins.push(keys.len());
    }
    Ok((bins, used))
}
