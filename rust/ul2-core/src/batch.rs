//! The batch stage: many rows at once, written straight into output buffers that are
//! allocated once, one disjoint chunk per row, so results never depend on threads.

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
/// parallel on the current rayon pool. The error of the lowest example wins (tasks run in
/// row order, each stopping at its first).
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
    let decoder = layout.family == Family::Decoder;
    let w1 = if decoder { 0 } else { w1 };
    let budget = if decoder { "sequence_length" } else { "inputs_length" };
    // On one thread each row is padded just before its examples are written into it, in
    // cache, rather than both buffers filled in a pass of their own first.
    let (first, second, parts) = crate::alloc::row_pairs(
        rows,
        (w0, w1),
        pad,
        rows_per_task(rows),
        (budget, "targets_length"),
        || (RowScratch::default(), Vec::<T>::new(), Vec::<O>::new(), Vec::<Segment>::new()),
        |(scratch, gather, tbuf, segments), r, a, b| -> Result<()> {
            let (mut oa, mut ob) = (0usize, 0usize);
            for (i, &key) in (bins[r]..bins[r + 1]).zip(&keys[bins[r]..bins[r + 1]]) {
                let tokens = source.row(i, gather)?;
                let l = if decoder {
                    decoder_row(cfg, tokens, key, scratch, &mut a[oa..], tbuf, pad)
                } else {
                    denoise_row(cfg, tokens, key, scratch, &mut a[oa..], &mut b[ob..])
                }
                .map_err(|e| source.locate(i, e))?;
                segments.push(Segment { denoiser: l.denoiser as u32, inputs: l.inputs as u32, targets: l.targets as u32 });
                if decoder {
                    oa += l.inputs + l.targets;
                } else {
                    oa += l.inputs;
                    ob += l.targets;
                }
            }
            Ok(())
        },
        |(_, _, _, segments)| std::mem::take(segments),
    )?;
    let segments = parts.concat();
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
