//! The named arrays of each format, computed from the segments of denoised rows.

use rayon::prelude::*;

use super::{Denoised, Field, Format, IGNORE_INDEX, Options, Segment};
use crate::OutToken;
use crate::alloc::RowOut;
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

/// A `[rows, width]` array written in parallel, each row once: `f` writes it front to back
/// from the row's index and segments, `tail` fills the rest.
fn per_row<O: OutToken>(
    d: &Denoised<O>,
    width: usize,
    tail: O,
    f: impl Fn(usize, &[Segment], &mut RowOut<'_, O>) + Sync,
) -> Result<Vec<O>> {
    crate::alloc::rows(d.rows, width, tail, "rows", |r, out| f(r, d.row_segments(r), out))
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
    let init = O::from_i64(init);
    per_row(d, width, init, |_, segs, out| {
        for (i, (s, l, seg)) in spans(segs, part).enumerate() {
            out.fill_to(init, s);
            out.fill(O::from_i64(value(i, seg)), l);
        }
    })
}

fn positions<O: OutToken>(d: &Denoised<O>, width: usize, part: Part) -> Result<Vec<O>> {
    let zero = O::from_i64(0);
    per_row(d, width, zero, |_, segs, out| {
        for (s, l, _) in spans(segs, part) {
            out.fill_to(zero, s);
            for p in 0..l {
                out.push(O::from_i64(p as i64));
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
    per_row(d, width, pad, |r, segs, out| {
        let src = &tokens[r * width..(r + 1) * width];
        for (s, l, _) in spans(segs, part) {
            let n = if packed { l } else { (l + 1).min(width - s) };
            if n > 0 {
                out.fill_to(pad, s);
                out.push(start);
                out.copy(&src[s..s + n - 1]);
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

/// Appends `name` when it was computed (it is `None` when not selected).
fn put<O>(out: &mut Vec<Field<O>>, name: &'static str, shape: Vec<usize>, data: Option<Vec<O>>) {
    if let Some(data) = data {
        out.push(Field { name, shape, data });
    }
}

/// Names `d`'s buffers for `format`, computing only the arrays `opts.fields` selects.
#[allow(clippy::too_many_lines)] // one arm per format, each listing its names in order
pub fn format<O: OutToken>(d: Denoised<O>, format: Format, pad: O, opts: Options) -> Result<Vec<Field<O>>> {
    if format.family() != d.family {
        return Err(Error::Internal(format!("format {format:?} on {:?} rows", d.family)));
    }
    let (rows, (w0, w1)) = (d.rows, d.widths);
    let want = |name: &str| opts.fields.is_none_or(|f| f.contains(name));
    let packed = |name: &str| opts.packed && want(name);
    let zero = O::from_i64(0);
    let mut out = Vec::new();
    match format {
        Format::Hf | Format::Seqio => {
            let hf = format == Format::Hf;
            let (dec_in_name, dec_seen_name) = if hf {
                ("decoder_input_ids", "decoder_attention_mask")
            } else {
                ("decoder_input_tokens", "decoder_loss_weights")
            };
            let (enc_segments, enc_positions) =
                if hf { ("segment_ids", "positions") } else { ("encoder_segment_ids", "encoder_positions") };
            let dec_in = want(dec_in_name)
                .then(|| shifted(&d, &d.second, w1, Part::Decoder, if hf { pad } else { zero }, pad, opts.packed))
                .transpose()?;
            let enc_seen = (hf && want("attention_mask")).then(|| mark(&d, w0, Part::Encoder, 0, |_, _| 1)).transpose()?;
            let dec_seen = want(dec_seen_name).then(|| mark(&d, w1, Part::Decoder, 0, |_, _| 1)).transpose()?;
            let es = packed(enc_segments).then(|| mark(&d, w0, Part::Encoder, 0, |i, _| i as i64 + 1)).transpose()?;
            let ep = packed(enc_positions).then(|| positions(&d, w0, Part::Encoder)).transpose()?;
            let ds = packed("decoder_segment_ids").then(|| mark(&d, w1, Part::Decoder, 0, |i, _| i as i64 + 1)).transpose()?;
            let dp = packed("decoder_positions").then(|| positions(&d, w1, Part::Decoder)).transpose()?;
            let denoiser = opts.denoiser.then(|| denoiser_field(&d, w1, Part::Decoder, opts.packed)).transpose()?;
            let ce = (hf && packed("cu_seqlens")).then(|| cu_seqlens(&d, w0, Part::Encoder)).transpose()?;
            let cd = (hf && packed("decoder_cu_seqlens")).then(|| cu_seqlens(&d, w1, Part::Decoder)).transpose()?;
            let labels = if hf { want("labels") } else { want("decoder_target_tokens") };
            let row_targets: Vec<usize> = if hf && labels {
                (0..rows).map(|r| spans(d.row_segments(r), Part::Decoder).map(|(_, l, _)| l).sum()).collect()
            } else {
                Vec::new()
            };
            let Denoised { first, mut second, .. } = d;
            if hf && labels && w1 > 0 {
                // Targets fill each decoder row from its start; the rest is padding.
                let ignore = O::from_i64(IGNORE_INDEX);
                second.par_chunks_mut(w1).zip(&row_targets).for_each(|(row, &used)| row[used..].fill(ignore));
            }
            let (first, second) =
                (want(if hf { "input_ids" } else { "encoder_input_tokens" }).then_some(first), labels.then_some(second));
            let (enc, dec) = (vec![rows, w0], vec![rows, w1]);
            if hf {
                put(&mut out, "input_ids", enc.clone(), first);
                put(&mut out, "attention_mask", enc.clone(), enc_seen);
                put(&mut out, "labels", dec.clone(), second);
            } else {
                put(&mut out, "encoder_input_tokens", enc.clone(), first);
                put(&mut out, "decoder_target_tokens", dec.clone(), second);
            }
            put(&mut out, dec_in_name, dec.clone(), dec_in);
            put(&mut out, dec_seen_name, dec.clone(), dec_seen);
            put(&mut out, enc_segments, enc.clone(), es);
            put(&mut out, enc_positions, enc, ep);
            put(&mut out, "decoder_segment_ids", dec.clone(), ds);
            put(&mut out, "decoder_positions", dec, dp);
            for (name, cu) in [("cu_seqlens", ce), ("decoder_cu_seqlens", cd)] {
                put(&mut out, name, vec![cu.as_ref().map_or(0, Vec::len)], cu);
            }
            if let Some(f) = denoiser {
                out.push(f);
            }
        }
        Format::Decoder | Format::SeqioDecoder => {
            let shape = || vec![rows, w0];
            let (seg_name, pos_name) = if format == Format::Decoder {
                ("segment_ids", "positions")
            } else {
                ("decoder_segment_ids", "decoder_positions")
            };
            let seg = packed(seg_name).then(|| mark(&d, w0, Part::Sequence, 0, |i, _| i as i64 + 1)).transpose()?;
            let pos = packed(pos_name).then(|| positions(&d, w0, Part::Sequence)).transpose()?;
            let denoiser = opts.denoiser.then(|| denoiser_field(&d, w0, Part::Sequence, opts.packed)).transpose()?;
            if format == Format::Decoder {
                let labels = want("labels")
                    .then(|| {
                        let ignore = O::from_i64(IGNORE_INDEX);
                        per_row(&d, w0, ignore, |r, segs, out| {
                            let src = &d.first[r * w0..(r + 1) * w0];
                            for (s, l, _) in spans(segs, Part::Targets) {
                                out.fill_to(ignore, s);
                                out.copy(&src[s..s + l]);
                            }
                        })
                    })
                    .transpose()?;
                let seen = want("attention_mask").then(|| mark(&d, w0, Part::Sequence, 0, |_, _| 1)).transpose()?;
                let bidi = ((opts.bidirectional_mask || opts.packed) && want("bidirectional_mask"))
                    .then(|| mark(&d, w0, Part::Inputs, 0, |_, _| 1))
                    .transpose()?;
                let prefix = (!opts.packed && want("prefix_lengths")).then(|| {
                    (0..rows)
                        .map(|r| O::from_i64(d.row_segments(r).first().map_or(0, |s| i64::from(s.inputs))))
                        .collect::<Vec<_>>()
                });
                let cu = packed("cu_seqlens").then(|| cu_seqlens(&d, w0, Part::Sequence)).transpose()?;
                put(&mut out, "input_ids", shape(), want("input_ids").then_some(d.first));
                put(&mut out, "attention_mask", shape(), seen);
                put(&mut out, "labels", shape(), labels);
                put(&mut out, "prefix_lengths", vec![rows], prefix);
                put(&mut out, "bidirectional_mask", shape(), bidi);
                put(&mut out, seg_name, shape(), seg);
                put(&mut out, pos_name, shape(), pos);
                put(&mut out, "cu_seqlens", vec![cu.as_ref().map_or(0, Vec::len)], cu);
            } else {
                let loss = want("decoder_loss_weights").then(|| mark(&d, w0, Part::Targets, 0, |_, _| 1)).transpose()?;
                let dec_in = want("decoder_input_tokens")
                    .then(|| shifted(&d, &d.first, w0, Part::Sequence, zero, pad, opts.packed))
                    .transpose()?;
                // seqio's PrefixLMFeatureConverter: full attention over the inputs and one
                // position more (`position < len(inputs) + 1`).
                let causal = want("decoder_causal_attention")
                    .then(|| {
                        per_row(&d, w0, zero, |_, segs, out| {
                            for (s, l, seg) in spans(segs, Part::Sequence) {
                                out.fill_to(zero, s);
                                out.fill(O::from_i64(1), (seg.inputs as usize + 1).min(l));
                            }
                        })
                    })
                    .transpose()?;
                put(&mut out, "decoder_target_tokens", shape(), want("decoder_target_tokens").then_some(d.first));
                put(&mut out, "decoder_input_tokens", shape(), dec_in);
                put(&mut out, "decoder_loss_weights", shape(), loss);
                put(&mut out, "decoder_causal_attention", shape(), causal);
                put(&mut out, seg_name, shape(), seg);
                put(&mut out, pos_name, shape(), pos);
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
