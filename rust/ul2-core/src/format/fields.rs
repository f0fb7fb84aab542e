//! The named arrays of each format, computed from the segments of denoised rows.

use rayon::prelude::*;

use super::{Denoised, Field, Format, IGNORE_INDEX, Options, Segment};
use crate::OutToken;
use crate::error::{Error, Result};

/// Which part of a row a per-token array describes: the encoder or decoder buffer, or in
/// a decoder row each segment whole, its inputs or its targets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Encoder,
    Decoder,
    Sequence,
    Inputs,
    Targets,
}

/// Fills a `[rows, width]` array in parallel from each row's index and segments.
fn per_row<O: OutToken>(
    d: &Denoised<O>,
    width: usize,
    init: O,
    f: impl Fn(usize, &[Segment], &mut [O]) + Sync,
) -> Result<Vec<O>> {
    let mut out = crate::alloc::filled(d.rows.saturating_mul(width), init, "rows")?;
    if width > 0 {
        out.par_chunks_mut(width).enumerate().for_each(|(r, row)| f(r, d.row_segments(r), row));
    }
    Ok(out)
}

/// `(start, length, segment)` of each segment's span in one part of a row.
fn spans(segs: &[Segment], part: Part) -> impl Iterator<Item = (usize, usize, &Segment)> {
    let mut at = 0usize;
    segs.iter().map(move |s| {
        let (i, t) = (s.inputs as usize, s.targets as usize);
        // (offset inside the segment, length of the part, room the segment takes)
        let (skip, len, whole) = match part {
            Part::Encoder => (0, i, i),
            Part::Decoder => (0, t, t),
            Part::Sequence => (0, i + t, i + t),
            Part::Inputs => (0, i, i + t),
            Part::Targets => (i, t, i + t),
        };
        let start = at + skip;
        at += whole;
        (start, len, s)
    })
}

/// `value` on each segment's span of `part`, `init` elsewhere.
fn mark<O: OutToken>(
    d: &Denoised<O>,
    width: usize,
    part: Part,
    init: i64,
    value: impl Fn(usize, &Segment) -> i64 + Sync,
) -> Result<Vec<O>> {
    per_row(d, width, O::from_i64(init), |_, segs, row| {
        for (i, (s, l, seg)) in spans(segs, part).enumerate() {
            row[s..s + l].fill(O::from_i64(value(i, seg)));
        }
    })
}

fn positions<O: OutToken>(d: &Denoised<O>, width: usize, part: Part) -> Result<Vec<O>> {
    per_row(d, width, O::from_i64(0), |_, segs, row| {
        for (s, l, _) in spans(segs, part) {
            for (p, v) in row[s..s + l].iter_mut().enumerate() {
                *v = O::from_i64(p as i64);
            }
        }
    })
}

/// Tokens shifted right by one with `start` first. Packed rows restart at every segment
/// and keep padding after the last (seqio's `make_autoregressive_inputs` with segment
/// ids); a one-example row is shifted whole, so its last token (EOS) lands right after the
/// targets, as HF's `shift_tokens_right` and seqio's unpacked converter give.
fn shifted<O: OutToken>(
    d: &Denoised<O>,
    tokens: &[O],
    width: usize,
    part: Part,
    start: O,
    pad: O,
    packed: bool,
) -> Result<Vec<O>> {
    per_row(d, width, pad, |r, segs, row| {
        let src = &tokens[r * width..(r + 1) * width];
        for (s, l, _) in spans(segs, part) {
            let n = if packed { l } else { (l + 1).min(width - s) };
            if n > 0 {
                row[s] = start;
                row[s + 1..s + n].copy_from_slice(&src[s..s + n - 1]);
            }
        }
    })
}

/// `cu_seqlens` over the flattened `[rows, width]` batch: every segment, and each row's
/// padding tail as one more, so the last entry is `rows · width` (what varlen attention
/// kernels take).
fn cu_seqlens<O: OutToken>(d: &Denoised<O>, width: usize, part: Part) -> Result<Vec<O>> {
    // At most one entry per segment and one per row's padding tail.
    let mut out = crate::alloc::with_capacity(d.segments.len() + d.rows + 1, "rows")?;
    out.push(O::from_i64(0));
    for r in 0..d.rows {
        let base = r * width;
        let mut end = 0;
        for (s, l, _) in spans(d.row_segments(r), part) {
            end = s + l;
            out.push(O::from_i64((base + end) as i64));
        }
        if end < width {
            out.push(O::from_i64((base + width) as i64));
        }
    }
    Ok(out)
}

/// Names `d`'s buffers for `format`.
#[allow(clippy::too_many_lines)] // one arm per format, each listing its names in order
pub fn format<O: OutToken>(d: Denoised<O>, format: Format, pad: O, opts: Options) -> Result<Vec<Field<O>>> {
    if format.family() != d.family {
        return Err(Error::Internal(format!("format {format:?} on {:?} rows", d.family)));
    }
    let (rows, (w0, w1)) = (d.rows, d.widths);
    let field = |name: &'static str, width: usize, data: Vec<O>| Field { name, shape: vec![rows, width], data };
    let zero = O::from_i64(0);
    let mut out = Vec::new();
    match format {
        Format::Hf | Format::Seqio => {
            let dec_in =
                shifted(&d, &d.second, w1, Part::Decoder, if format == Format::Hf { pad } else { zero }, pad, opts.packed)?;
            let enc_seen = mark(&d, w0, Part::Encoder, 0, |_, _| 1)?;
            let dec_seen = mark(&d, w1, Part::Decoder, 0, |_, _| 1)?;
            let packed = if opts.packed {
                Some((
                    mark(&d, w0, Part::Encoder, 0, |i, _| i as i64 + 1)?,
                    positions(&d, w0, Part::Encoder)?,
                    mark(&d, w1, Part::Decoder, 0, |i, _| i as i64 + 1)?,
                    positions(&d, w1, Part::Decoder)?,
                ))
            } else {
                None
            };
            let denoiser = opts.denoiser.then(|| denoiser_field(&d, w1, Part::Decoder, opts.packed)).transpose()?;
            let cu = if opts.packed && format == Format::Hf {
                Some((cu_seqlens(&d, w0, Part::Encoder)?, cu_seqlens(&d, w1, Part::Decoder)?))
            } else {
                None
            };
            let row_targets: Vec<usize> =
                (0..rows).map(|r| spans(d.row_segments(r), Part::Decoder).map(|(_, l, _)| l).sum()).collect();
            let Denoised { first, mut second, .. } = d;
            if format == Format::Hf {
                // Targets fill each decoder row from its start; the rest is padding.
                let ignore = O::from_i64(IGNORE_INDEX);
                if w1 > 0 {
                    second.par_chunks_mut(w1).zip(&row_targets).for_each(|(row, &used)| row[used..].fill(ignore));
                }
                out.extend([
                    field("input_ids", w0, first),
                    field("attention_mask", w0, enc_seen),
                    field("labels", w1, second),
                    field("decoder_input_ids", w1, dec_in),
                    field("decoder_attention_mask", w1, dec_seen),
                ]);
                if let Some((es, ep, ds, dp)) = packed {
                    out.extend([
                        field("segment_ids", w0, es),
                        field("positions", w0, ep),
                        field("decoder_segment_ids", w1, ds),
                        field("decoder_positions", w1, dp),
                    ]);
                }
                if let Some((ce, cd)) = cu {
                    out.push(Field { name: "cu_seqlens", shape: vec![ce.len()], data: ce });
                    out.push(Field { name: "decoder_cu_seqlens", shape: vec![cd.len()], data: cd });
                }
            } else {
                out.extend([
                    field("encoder_input_tokens", w0, first),
                    field("decoder_target_tokens", w1, second),
                    field("decoder_input_tokens", w1, dec_in),
                    field("decoder_loss_weights", w1, dec_seen),
                ]);
                if let Some((es, ep, ds, dp)) = packed {
                    out.extend([
                        field("encoder_segment_ids", w0, es),
                        field("encoder_positions", w0, ep),
                        field("decoder_segment_ids", w1, ds),
                        field("decoder_positions", w1, dp),
                    ]);
                }
            }
            if let Some(f) = denoiser {
                out.push(f);
            }
        }
        Format::Decoder | Format::SeqioDecoder => {
            let seg = if opts.packed {
                Some((mark(&d, w0, Part::Sequence, 0, |i, _| i as i64 + 1)?, positions(&d, w0, Part::Sequence)?))
            } else {
                None
            };
            let denoiser = opts.denoiser.then(|| denoiser_field(&d, w0, Part::Sequence, opts.packed)).transpose()?;
            if format == Format::Decoder {
                let labels = per_row(&d, w0, O::from_i64(IGNORE_INDEX), |r, segs, row| {
                    let src = &d.first[r * w0..(r + 1) * w0];
                    for (s, l, _) in spans(segs, Part::Targets) {
                        row[s..s + l].copy_from_slice(&src[s..s + l]);
                    }
                })?;
                let seen = mark(&d, w0, Part::Sequence, 0, |_, _| 1)?;
                let bidi =
                    (opts.bidirectional_mask || opts.packed).then(|| mark(&d, w0, Part::Inputs, 0, |_, _| 1)).transpose()?;
                let prefix = (!opts.packed).then(|| {
                    (0..rows)
                        .map(|r| O::from_i64(d.row_segments(r).first().map_or(0, |s| i64::from(s.inputs))))
                        .collect::<Vec<_>>()
                });
                let cu = opts.packed.then(|| cu_seqlens(&d, w0, Part::Sequence)).transpose()?;
                out.extend([field("input_ids", w0, d.first), field("attention_mask", w0, seen), field("labels", w0, labels)]);
                if let Some(p) = prefix {
                    out.push(Field { name: "prefix_lengths", shape: vec![rows], data: p });
                }
                if let Some(b) = bidi {
                    out.push(field("bidirectional_mask", w0, b));
                }
                if let Some((s, p)) = seg {
                    out.extend([field("segment_ids", w0, s), field("positions", w0, p)]);
                }
                if let Some(c) = cu {
                    out.push(Field { name: "cu_seqlens", shape: vec![c.len()], data: c });
                }
            } else {
                let loss = mark(&d, w0, Part::Targets, 0, |_, _| 1)?;
                let dec_in = shifted(&d, &d.first, w0, Part::Sequence, zero, pad, opts.packed)?;
                // seqio's PrefixLMFeatureConverter: full attention over the inputs and one
                // position more (`position < len(inputs) + 1`).
                let causal = per_row(&d, w0, zero, |_, segs, row| {
                    for (s, l, seg) in spans(segs, Part::Sequence) {
                        let n = (seg.inputs as usize + 1).min(l);
                        row[s..s + n].fill(O::from_i64(1));
                    }
                })?;
                out.extend([
                    field("decoder_target_tokens", w0, d.first),
                    field("decoder_input_tokens", w0, dec_in),
                    field("decoder_loss_weights", w0, loss),
                    field("decoder_causal_attention", w0, causal),
                ]);
                if let Some((s, p)) = seg {
                    out.extend([field("decoder_segment_ids", w0, s), field("decoder_positions", w0, p)]);
                }
            }
            if let Some(f) = denoiser {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// `denoiser`: the mixture index per row, or per token (−1 on padding) when packed.
fn denoiser_field<O: OutToken>(d: &Denoised<O>, width: usize, part: Part, packed: bool) -> Result<Field<O>> {
    if packed {
        let data = mark(d, width, part, -1, |_, s| i64::from(s.denoiser))?;
        return Ok(Field { name: "denoiser", shape: vec![d.rows, width], data });
    }
    let data = (0..d.rows).map(|r| O::from_i64(d.row_segments(r).first().map_or(-1, |s| i64::from(s.denoiser)))).collect();
    Ok(Field { name: "denoiser", shape: vec![d.rows], data })
}
