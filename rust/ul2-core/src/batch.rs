//! Row-parallel drivers: many rows at once, written straight into output buffers that are
//! allocated once, one disjoint chunk per row, so results never depend on threads.

use rayon::prelude::*;

use crate::denoiser::{RowConfig, RowLengths, RowScratch, denoise_row, example_bounds};
use crate::error::{Error, Result, Where};
use crate::format::{Denoised, Family, Segment};
use crate::index::{Corpus, SampleIndex};
use crate::source::Line;
use crate::{OutToken, Token};

pub use crate::format::{Field, Format};

/// Rows of token ids, borrowed from the caller without a copy.
#[derive(Debug, Clone)]
pub enum Rows<'a, T> {
    /// A C-contiguous `[rows, width]` array (`rows` is given, as `width` may be 0).
    Dense { data: &'a [T], rows: usize, width: usize },
    /// Ragged rows (e.g. a list of 1-D arrays).
    Ragged(Vec<&'a [T]>),
    /// Rows of which some are read through strides (a strided or Fortran-order 2-D view,
    /// misaligned memory, a list holding such rows).
    Lines(Vec<Line<'a, T>>),
}

impl<T: Token> Rows<'_, T> {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Dense { rows, .. } => *rows,
            Self::Ragged(rows) => rows.len(),
            Self::Lines(rows) => rows.len(),
        }
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Row `i`'s length.
    #[must_use]
    pub fn row_len(&self, i: usize) -> usize {
        match self {
            Self::Dense { width, .. } => *width,
            Self::Ragged(rows) => rows[i].len(),
            Self::Lines(rows) => rows[i].len(),
        }
    }
    /// Row `i`: borrowed, or gathered into `scratch` when read through strides.
    pub fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        match self {
            Self::Dense { data, width, .. } => Ok(&data[i * width..(i + 1) * width]),
            Self::Ragged(rows) => Ok(rows[i]),
            Self::Lines(rows) => rows[i].range(0, rows[i].len(), scratch),
        }
    }
}

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

/// Where example `i`'s tokens come from.
pub trait RowSource<T>: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Example `i`'s tokens: borrowed, or gathered into `scratch` when not contiguous.
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]>;
    /// Points a row's error at what the caller passed (by default `rows[i]`).
    fn locate(&self, i: usize, e: Error) -> Error {
        e.at_row(i)
    }
}

impl<T: Token> RowSource<T> for Rows<'_, T> {
    fn len(&self) -> usize {
        Rows::len(self)
    }
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        Rows::row(self, i, scratch)
    }
}

/// Samples `ids[i]` of a corpus's index.
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a, T> {
    pub corpus: Corpus<'a, T>,
    pub index: &'a SampleIndex,
    pub ids: &'a [u64],
}

impl<T: Token> RowSource<T> for Samples<'_, T> {
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        let (start, stop) = self.index.span(self.ids[i] as usize);
        self.corpus.slice(start, stop, scratch)
    }

    /// A bad token is the caller's `tokens` at a stream position, not a row of theirs.
    fn locate(&self, i: usize, e: Error) -> Error {
        let (start, _) = self.index.span(self.ids[i] as usize);
        match e {
            Error::TokenOutOfRange { position, token, reason, .. } => Error::TokenOutOfRange {
                where_: Where::arg("tokens"),
                position: start as usize + position,
                token,
                reason,
            },
            Error::SentinelCollision { position, token, .. } => {
                Error::SentinelCollision { where_: Where::arg("tokens"), position: start as usize + position, token }
            }
            other => other.at_row(i),
        }
    }
}

/// Shape of the output rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub family: Family,
    /// Encoder-decoder `(inputs, targets)`; decoder `(sequence, 0)`.
    pub widths: (usize, usize),
}

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
    let mut first = crate::error::filled(rows.saturating_mul(c0), pad, budget)?;
    let mut second = crate::error::filled(rows.saturating_mul(c1), pad, "targets_length")?;
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
                        segments.push(Segment { denoiser: l.denoiser as u32, inputs: l.inputs as u32, targets: l.targets as u32 });
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
    tbuf.clear();
    crate::error::reserve(tbuf, room, "sequence_length")?;
    tbuf.resize(room, pad);
    let l = denoise_row(cfg, tokens, key, scratch, row, tbuf)?;
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
