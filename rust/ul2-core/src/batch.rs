//! The batch stage: many rows at once, written straight into output buffers that are
//! allocated once, one disjoint chunk per row, so results never depend on threads.

use rayon::prelude::*;

use crate::denoise::{RowConfig, RowLengths, RowScratch, denoise_row};
use crate::error::{Error, Result, Where};
use crate::format::{Denoised, Family, Layout, Segment};
use crate::source::{RowSource, Rows};
use crate::{OutToken, Token};

/// Rows per rayon task: enough work per task to amortise scheduling, but at least a few
/// tasks per thread for balance.
fn rows_per_task(rows: usize) -> usize {
    (rows / (rayon::current_num_threads() * 4)).clamp(1, 64)
}

/// Denoises every row (`keys[i]` is row `i`'s example key) into encoder-decoder rows of
/// `inputs_width` and `targets_width`, one example per row: [`denoise_rows`] without packing.
pub fn denoise_batch<T: Token, O: OutToken>(
    cfg: &RowConfig<'_>,
    rows: &Rows<'_, T>,
    keys: &[u64],
    inputs_width: usize,
    targets_width: usize,
    pad: O,
) -> Result<Denoised<O>> {
    let n = rows.len();
    if keys.len() != n {
        return Err(Error::invalid("keys", format!("<{} keys>", keys.len()), format!("need one key per row ({n} rows)")));
    }
    let layout = Layout { family: Family::EncoderDecoder, widths: (inputs_width, targets_width) };
    denoise_rows(cfg, rows, keys, &(0..=n).collect::<Vec<_>>(), layout, pad)
}

/// Denoises examples `0..keys.len()` of `source` (example `i` is keyed `keys[i]`) into
/// output rows, row `r` holding examples `bins[r]..bins[r + 1]` one after another, in
/// parallel on the current rayon pool. The error of the lowest example wins.
pub fn denoise_rows<T: Token, O: OutToken, S: RowSource<T>>(
    cfg: &RowConfig<'_>,
    source: &S,
    keys: &[u64],
    bins: &[usize],
    layout: Layout,
    pad: O,
) -> Result<Denoised<O>> {
    if keys.len() != source.len() || bins.first() != Some(&0) || bins.last() != Some(&keys.len()) {
        return Err(Error::Internal(format!(
            "{} keys, {} examples, bins {:?}..{:?}",
            keys.len(),
            source.len(),
            bins.first(),
            bins.last()
        )));
    }
    let rows = bins.len() - 1;
    let (w0, w1) = layout.widths;
    // Decoder rows have no second buffer; a one-slot stand-in keeps the zip below uniform.
    let (c0, c1) = (w0.max(1), if layout.family == Family::Decoder { 1 } else { w1.max(1) });
    let budget = if layout.family == Family::Decoder { "sequence_length" } else { "inputs_length" };
    let mut first = crate::alloc::filled(rows.saturating_mul(c0), pad, budget)?;
    let mut second = crate::alloc::filled(rows.saturating_mul(c1), pad, "targets_length")?;
    let chunk = rows_per_task(rows);
    let parts = first
        .par_chunks_mut(c0 * chunk)
        .zip(second.par_chunks_mut(c1 * chunk))
        .enumerate()
        .map_init(
            || (RowScratch::default(), Vec::<T>::new(), Vec::<O>::new()),
            |(scratch, gather, tbuf), (c, (firsts, seconds))| {
                let mut segments = Vec::new();
                for (j, (a, b)) in firsts.chunks_mut(c0).zip(seconds.chunks_mut(c1)).enumerate() {
                    let r = c * chunk + j;
                    let (a, b) = (&mut a[..w0], &mut b[..if layout.family == Family::Decoder { 0 } else { w1 }]);
                    let (mut oa, mut ob) = (0usize, 0usize);
                    for (i, &key) in (bins[r]..bins[r + 1]).zip(&keys[bins[r]..bins[r + 1]]) {
                        let tokens = source.row(i, gather).map_err(|e| (i, e))?;
                        let l = match layout.family {
                            Family::EncoderDecoder => denoise_row(cfg, tokens, key, scratch, &mut a[oa..], &mut b[ob..]),
                            Family::Decoder => decoder_row(cfg, tokens, key, scratch, &mut a[oa..], tbuf, pad),
                        }
                        .map_err(|e| (i, source.locate(i, e)))?;
                        segments.push(Segment {
                            denoiser: l.denoiser as u32,
                            inputs: l.inputs as u32,
                            targets: l.targets as u32,
                        });
                        match layout.family {
                            Family::EncoderDecoder => {
                                oa += l.inputs;
                                ob += l.targets;
                            }
                            Family::Decoder => oa += l.inputs + l.targets,
                        }
                    }
                }
                Ok(segments)
            },
        )
        .collect::<Vec<std::result::Result<Vec<Segment>, (usize, Error)>>>();
    let mut segments = Vec::with_capacity(keys.len());
    let mut first_error: Option<(usize, Error)> = None;
    for p in parts {
        match p {
            Ok(s) => segments.extend(s),
            Err((i, e)) => {
                if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                    first_error = Some((i, e));
                }
            }
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    if w0 == 0 {
        first.clear();
    }
    if layout.family == Family::Decoder || w1 == 0 {
        second.clear();
    }
    Ok(Denoised { rows, family: layout.family, widths: layout.widths, first, second, segments, row_starts: bins.to_vec() })
}

/// A decoder-only example: inputs then targets in one stretch of `row`.
fn decoder_row<T: Token, O: OutToken>(
    cfg: &RowConfig<'_>,
    tokens: &[T],
    key: u64,
    scratch: &mut RowScratch,
    row: &mut [O],
    tbuf: &mut Vec<O>,
    pad: O,
) -> Result<RowLengths> {
    let room = row.len();
    // Scratch for the targets, grown once: denoise_row writes what is read of it.
    if tbuf.len() < room {
        crate::alloc::reserve(tbuf, room, "sequence_length")?;
        tbuf.resize(room, pad);
    }
    let l = denoise_row(cfg, tokens, key, scratch, row, &mut tbuf[..room])?;
    if l.inputs + l.targets > room {
        row[..l.inputs].fill(pad);
        return Err(Error::DoesNotFit {
            where_: Where::arg("rows"),
            what: "sequence",
            length: l.inputs + l.targets,
            budget: "sequence_length",
            limit: room,
            fix: format!("this row has {} raw tokens; pass rows no longer than the planned raw_length (ul2.plan)", tokens.len()),
        });
    }
    row[l.inputs..l.inputs + l.targets].copy_from_slice(&tbuf[..l.targets]);
    Ok(l)
}
