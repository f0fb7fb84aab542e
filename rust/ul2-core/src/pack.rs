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
    let mut fit = NextFit::new(layout);
    let mut bins = vec![0];
    for (i, bound) in bounds.into_iter().enumerate() {
        let (_, li, lt) = bound.map_err(|(_, e)| e)?;
        if fit.place(i, li, lt)? {
            bins.push(i);
        }
    }
    if !keys.is_empty() {
        bins.push(keys.len());
    }
    let used = fit.used;
    Ok((bins, used))
}

/// The next-fit rule one example at a time: what [`pack`] runs over a whole batch and a
/// stream ([`crate::stream`]) runs as its samples arrive, so both close rows at the same
/// examples.
#[derive(Debug, Clone, Copy)]
pub struct NextFit {
    layout: Layout,
    /// Positions the open row's examples take (encoder or sequence, decoder).
    open: (usize, usize),
    /// Examples in the open row.
    examples: usize,
    /// Positions every placed example takes.
    pub used: u64,
}

impl NextFit {
    #[must_use]
    pub const fn new(layout: Layout) -> Self {
        Self { layout, open: (0, 0), examples: 0, used: 0 }
    }

    /// Examples in the open row.
    #[must_use]
    pub const fn open_examples(&self) -> usize {
        self.examples
    }

    /// Places example `i` (its bounded inputs and targets lengths `li`, `lt`; `i` names it in
    /// an error). `true`: it starts a new row, closing the open one.
    pub fn place(&mut self, i: usize, li: usize, lt: usize) -> Result<bool> {
        let (w0, w1) = self.layout.widths;
        let (need_a, need_b) = match self.layout.family {
            Family::EncoderDecoder => (li, lt),
            Family::Decoder => (li + lt, 0),
        };
        if need_a > w0 || need_b > w1 {
            let (what, budget, length, limit) = match self.layout.family {
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
        let (a, b) = self.open;
        let new_row = self.examples > 0 && (a + need_a > w0 || b + need_b > w1);
        if new_row {
            self.open = (0, 0);
            self.examples = 0;
        }
        self.open.0 += need_a;
        self.open.1 += need_b;
        self.examples += 1;
        self.used += (need_a + need_b) as u64;
        Ok(new_row)
    }

    /// Closes the open row (a stream's end); the next example starts a new one.
    pub fn close(&mut self) {
        self.open = (0, 0);
        self.examples = 0;
    }
}
