//! Row-parallel drivers: many rows at once, written straight into output buffers that are
//! allocated once, one disjoint chunk per row, so results never depend on threads.

use rayon::prelude::*;

use crate::denoiser::{RowConfig, RowLengths, RowScratch, denoise_row};
use crate::error::{Error, Result};
use crate::{OutToken, Token};

/// Rows of token ids, borrowed from the caller without a copy.
#[derive(Debug, Clone)]
pub enum Rows<'a, T> {
    /// A C-contiguous `[rows, width]` array.
    Dense { data: &'a [T], width: usize },
    /// Ragged rows (e.g. a list of 1-D arrays).
    Ragged(Vec<&'a [T]>),
}

impl<'a, T> Rows<'a, T> {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Dense { data, width } => data.len().checked_div(*width).unwrap_or(0),
            Self::Ragged(rows) => rows.len(),
        }
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[must_use]
    pub fn row(&self, i: usize) -> &'a [T] {
        match self {
            Self::Dense { data, width } => &data[i * width..(i + 1) * width],
            Self::Ragged(rows) => rows[i],
        }
    }
}

/// Encoder-decoder outputs before formatting: `[rows, width]` buffers padded with `pad`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncDec<O> {
    pub rows: usize,
    pub inputs_width: usize,
    pub targets_width: usize,
    pub inputs: Vec<O>,
    pub targets: Vec<O>,
    pub lengths: Vec<RowLengths>,
}

/// Rows per rayon task: enough work per task to amortise scheduling, but at least a few
/// tasks per thread for balance.
fn rows_per_task(rows: usize) -> usize {
    (rows / (rayon::current_num_threads() * 4)).clamp(1, 64)
}

/// Denoises every row (`keys[i]` is row `i`'s example key) in parallel on the current
/// rayon pool. On errors, the one of the lowest row is returned, so the message does not
/// depend on scheduling.
pub fn denoise_batch<T: Token, O: OutToken>(
    cfg: &RowConfig<'_>,
    rows: &Rows<'_, T>,
    keys: &[u64],
    inputs_width: usize,
    targets_width: usize,
    pad: O,
) -> Result<EncDec<O>> {
    let n = rows.len();
    if keys.len() != n {
        return Err(Error::invalid("keys", format!("<{} keys>", keys.len()), format!("need one key per row ({n} rows)")));
    }
    let mut inputs = vec![pad; n * inputs_width];
    let mut targets = vec![pad; n * targets_width];
    let mut lengths = vec![RowLengths::default(); n];
    let chunk = rows_per_task(n);
    // Zero-width outputs cannot be chunked; every row then fails `fit` (EOS needs a slot).
    let (iw, tw) = (inputs_width.max(1), targets_width.max(1));
    if inputs_width == 0 || targets_width == 0 {
        inputs.resize(n * iw, pad);
        targets.resize(n * tw, pad);
    }
    let first_error = inputs
        .par_chunks_mut(iw * chunk)
        .zip(targets.par_chunks_mut(tw * chunk))
        .zip(lengths.par_chunks_mut(chunk))
        .enumerate()
        .map_init(RowScratch::default, |scratch, (c, ((inp, tgt), lens))| {
            for (j, ((inp, tgt), len)) in inp.chunks_mut(iw).zip(tgt.chunks_mut(tw)).zip(lens).enumerate() {
                let row = c * chunk + j;
                let (inp, tgt) = (&mut inp[..inputs_width], &mut tgt[..targets_width]);
                match denoise_row(cfg, rows.row(row), keys[row], scratch, inp, tgt) {
                    Ok(l) => *len = l,
                    Err(e) => return Some((row, e.at_row(row))),
                }
            }
            None
        })
        .flatten()
        .min_by_key(|(row, _)| *row);
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    Ok(EncDec {
        rows: n,
        inputs_width,
        targets_width,
        inputs,
        targets,
        lengths,
    })
}

/// Output naming and layout (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Hugging Face encoder-decoder names.
    Hf,
    /// seqio / t5x encoder-decoder names.
    Seqio,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "hf" => Ok(Self::Hf),
            "seqio" => Ok(Self::Seqio),
            _ => Err(Error::invalid("format", format!("{s:?}"), "must be 'hf' or 'seqio'")),
        }
    }
}

/// One named `[rows, width]` output array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<O> {
    pub name: &'static str,
    pub width: usize,
    pub data: Vec<O>,
}

/// Label value outside the targets in the Hugging Face format (ignored by the loss).
pub const IGNORE_INDEX: i64 = -100;

/// Turns denoised buffers into the named arrays of `format`, reusing the two buffers and
/// filling the derived ones in parallel.
#[must_use]
pub fn format_enc_dec<O: OutToken>(out: EncDec<O>, format: Format, pad: O) -> Vec<Field<O>> {
    let EncDec { inputs_width: iw, targets_width: tw, mut targets, inputs, lengths, rows } = out;
    let ones = |width: usize, len: fn(&RowLengths) -> usize| {
        let mut m = vec![O::from_i64(0); rows * width];
        if width > 0 {
            m.par_chunks_mut(width).zip(&lengths).for_each(|(row, l)| row[..len(l)].fill(O::from_i64(1)));
        }
        m
    };
    let mut shifted = vec![pad; rows * tw];
    if tw > 0 {
        shifted.par_chunks_mut(tw).zip(targets.par_chunks(tw)).zip(&lengths).for_each(|((d, t), l)| {
            let n = l.targets.min(tw - 1);
            d[1..=n].copy_from_slice(&t[..n]);
        });
    }
    let input_mask = ones(iw, |l| l.inputs);
    let target_mask = ones(tw, |l| l.targets);
    match format {
        Format::Hf => {
            if tw > 0 {
                let ignore = O::from_i64(IGNORE_INDEX);
                targets.par_chunks_mut(tw).zip(&lengths).for_each(|(row, l)| row[l.targets..].fill(ignore));
            }
            vec![
                Field { name: "input_ids", width: iw, data: inputs },
                Field { name: "attention_mask", width: iw, data: input_mask },
                Field { name: "labels", width: tw, data: targets },
                Field { name: "decoder_input_ids", width: tw, data: shifted },
                Field { name: "decoder_attention_mask", width: tw, data: target_mask },
            ]
        }
        Format::Seqio => vec![
            Field { name: "encoder_input_tokens", width: iw, data: inputs },
            Field { name: "decoder_target_tokens", width: tw, data: targets },
            Field { name: "decoder_input_tokens", width: tw, data: shifted },
            Field { name: "decoder_loss_weights", width: tw, data: target_mask },
        ],
    }
}
