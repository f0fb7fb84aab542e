//! BART's text infilling (Lewis et al. 2020, §2.2; fairseq's `DenoisingDataset` with
//! `--mask-length span-poisson --replace-length 1`): spans of Poisson(λ) length are each
//! replaced by one mask id, a length-0 span inserting one; the targets are the row itself.
//!
//! # fairseq's algorithm (`add_whole_word_mask`, every token a word start)
//!
//! fairseq sees `S = L + 2` tokens (BOS, the `L` tokens, EOS); the `W = L` interior ones may be
//! masked. With `p = --mask`:
//! 1. `num_to_mask = ceil(f32(W) · f32(p))` (a float32 tensor times a Python float).
//! 2. Lengths are drawn from `Categorical(ps)`, `ps[k]` the Poisson(λ) pmf for `k = 0, 1, …`
//!    up to the first `k` with `ps[k] < 1e-7` (renormalised), `num_to_mask` at a time until their
//!    running sum reaches `num_to_mask`; the first `i` with `cum[i] ≥ num_to_mask` is the last
//!    span and gets `lengths[i] = num_to_mask − cum[i − 1]` (so it is ≥ 1); later draws are
//!    dropped.
//! 3. Zero lengths become `num_inserts`; the `m` positive ones get `m` distinct start positions,
//!    uniform among the `W` interior positions (`randperm`), paired with the lengths in draw
//!    order. Each start becomes `<mask>` and the next `length − 1` tokens are deleted, stopping
//!    at EOS; spans may overlap (a start inside another span is deleted with it), so fewer
//!    than `num_to_mask` tokens may be masked and two spans may merge into one mask.
//! 4. `add_insertion_noise(source, num_inserts / len(source))` puts
//!    `n = ceil(len · (num_inserts / len))` masks at distinct positions of the longer
//!    sequence, never first or last (`randperm(len + n − 2)[:n] + 1`).
//!
//! # ul2's algorithm (exact counts, one layout law)
//!
//! 1. `N = min(L, ceil(f32(L) · f32(noise_density)))`, fairseq's step 1 on the same `W = L`,
//!    its float32 included: `f32(0.3)` is `0.30000001`, so 100 tokens at 0.3 mask 31.
//! 2. Lengths `X₁, X₂, …` are i.i.d. Poisson(λ) (the table below: truncated only where the
//!    mass left is below 2⁻⁶⁰), drawn until `X₁ + … + X_j ≥ N` **or `j = N`**; the last span is
//!    `N − (X₁ + … + X_{j−1})`. fairseq's rule but for the cap `j ≤ N` (it binds only when
//!    `N − 1` draws sum to less than `N`: for `N = 1`, a first draw of 0), which bounds the
//!    inputs by the raw length.
//! 3. The spans, in draw order, are placed without overlap: the `L − N` clean tokens are cut
//!    into `j + 1` gaps (before, between and after the spans), a uniformly random weak
//!    composition, so every arrangement of the ordered spans among the clean tokens is
//!    equally likely. Each span (a zero-length one too) becomes one mask id.
//!
//! So exactly `N` tokens are masked in `j` masks, inputs have `L − N + j ≤ L` tokens, and the
//! targets are the `L` raw tokens. The deliberate differences from fairseq: no overlap (fairseq
//! masks fewer than `N` tokens and merges spans), inserts placed as spans of length 0 among the
//! others rather than after the masking, the cap `j ≤ N`, and the Poisson table's tail.
//!
//! Draws are keyed by `(seed, key)` with purposes [`Purpose::InfillSpans`] (lengths: one `u64`
//! each, `(x >> 11)·2⁻⁵³` against the cumulative table) and [`Purpose::InfillGaps`] (the weak
//! composition, by [`Composer`] on `L − N + j + 1` into `j + 1` positive parts, minus one each).

use super::spans::Composer;
use crate::alloc::reserve;
use crate::error::{Error, Result};
use crate::rng::{Purpose, Stream};

/// Largest `poisson_lambda`: the table's first term `e^−λ` stays a normal float, and spans
/// that long are beyond what text infilling is used for.
pub const MAX_LAMBDA: f64 = 256.0;

/// Parameters of BART's text infilling, validated once by [`InfillParams::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct InfillParams {
    pub noise_density: f64,
    pub poisson_lambda: f64,
    pub mask_id: i64,
    /// `cdf[k]` = P(X ≤ k) for X ~ Poisson(λ), normalised so the last entry is 1.
    cdf: Vec<f64>,
}

impl InfillParams {
    pub fn new(noise_density: f64, poisson_lambda: f64, mask_id: i64) -> Result<Self> {
        if !(0.0..=1.0).contains(&noise_density) {
            return Err(Error::invalid("noise_density", crate::error::real(noise_density), "must be a number in [0, 1]"));
        }
        if !(poisson_lambda > 0.0 && poisson_lambda <= MAX_LAMBDA) {
            return Err(Error::invalid(
                "poisson_lambda",
                crate::error::real(poisson_lambda),
                format!("must be a number in (0, {MAX_LAMBDA}] (the mean span length)"),
            ));
        }
        if mask_id < 0 {
            return Err(Error::invalid("mask_id", mask_id, "must be >= 0"));
        }
        Ok(Self { noise_density, poisson_lambda, mask_id, cdf: poisson_cdf(poisson_lambda) })
    }

    /// `N`, the masked tokens of a `length`-token row: `min(L, ceil(f32(L)·f32(r)))`.
    #[must_use]
    pub fn noise_tokens(&self, length: usize) -> usize {
        let n = ((length as f32) * (self.noise_density as f32)).ceil() as usize;
        n.min(length)
    }

    /// The span lengths of example `key` (zeros are inserts), in draw order, each passed
    /// to `push`; returns how many.
    pub fn draw_spans(&self, length: usize, seed: u64, key: u64, mut push: impl FnMut(u32)) -> usize {
        let noise = self.noise_tokens(length);
        if noise == 0 {
            return 0;
        }
        let mut rng = Stream::new(seed, key, Purpose::InfillSpans);
        let (mut sum, mut count) = (0usize, 0usize);
        loop {
            let u = rng.unit_f64();
            let x = self.cdf.partition_point(|&c| c <= u);
            count += 1;
            if sum + x >= noise || count == noise {
                push((noise - sum) as u32);
                return count;
            }
            sum += x;
            push(x as u32);
        }
    }

    /// `(inputs, targets)` of example `key` without prompt and EOS: `(L − N + j, L)`.
    #[must_use]
    pub fn lengths(&self, length: usize, seed: u64, key: u64) -> (usize, usize) {
        let spans = self.draw_spans(length, seed, key, |_| ());
        (length - self.noise_tokens(length) + spans, length)
    }

    /// The Poisson table: `cdf[k]` = P(X ≤ k), normalised.
    #[must_use]
    pub fn cdf(&self) -> &[f64] {
        &self.cdf
    }
}

/// Poisson(λ) pmf terms `e^−λ λ^k / k!` summed for `k = 0..=K`, `K` the first `k ≥ λ` whose
/// term is below 2⁻⁶⁰ (so the dropped tail, at most about `(K + 1)` times that term, is far
/// below a 53-bit uniform's resolution), divided by their sum.
fn poisson_cdf(lambda: f64) -> Vec<f64> {
    let mut term = (-lambda).exp();
    let mut sums = vec![term];
    let mut k = 0.0;
    while k < lambda || term >= (2f64).powi(-60) {
        k += 1.0;
        term *= lambda / k;
        sums.push(sums[sums.len() - 1] + term);
    }
    let total = sums[sums.len() - 1];
    let last = sums.len() - 1;
    for (i, s) in sums.iter_mut().enumerate() {
        *s = if i == last { 1.0 } else { *s / total };
    }
    sums
}

/// Per-thread scratch of text infilling: the spans and the gaps of one row.
#[derive(Debug, Default, Clone)]
pub struct InfillScratch {
    composer: Composer,
    spans: Vec<u32>,
    gaps: Vec<u32>,
}

impl InfillScratch {
    /// Draws example `key`'s spans and gaps; returns the inputs length (no prompt, no EOS).
    pub fn layout(&mut self, length: usize, params: &InfillParams, seed: u64, key: u64) -> Result<usize> {
        self.spans.clear();
        self.gaps.clear();
        let noise = params.noise_tokens(length);
        reserve(&mut self.spans, noise, "length")?;
        let spans = &mut self.spans;
        let j = params.draw_spans(length, seed, key, |x| spans.push(x));
        let clean = length - noise;
        reserve(&mut self.gaps, j + 1, "length")?;
        if j == 0 {
            self.gaps.push(clean as u32);
        } else {
            self.composer.reserve(clean + j + 1)?;
            self.composer.compose(clean + j + 1, j + 1, &mut Stream::new(seed, key, Purpose::InfillGaps), &mut self.gaps);
            for g in &mut self.gaps {
                *g -= 1;
            }
        }
        Ok(clean + j)
    }

    /// Writes the inputs of the last [`InfillScratch::layout`]: gap, mask, gap, …, mask, gap.
    pub fn write<T: crate::Token, O: crate::OutToken>(&self, tokens: &[T], mask_id: i64, inputs: &mut [O]) {
        let mask = O::from_i64(mask_id);
        let (mut pos, mut at) = (0usize, 0usize);
        for (i, &g) in self.gaps.iter().enumerate() {
            let g = g as usize;
            super::mask::convert(&tokens[pos..pos + g], &mut inputs[at..at + g]);
            pos += g;
            at += g;
            if let Some(&s) = self.spans.get(i) {
                inputs[at] = mask;
                at += 1;
                pos += s as usize;
            }
        }
        debug_assert_eq!((pos, at), (tokens.len(), inputs.len()));
    }

    /// Span lengths of the last layout (zeros are inserts), in order.
    #[must_use]
    pub fn spans(&self) -> &[u32] {
        &self.spans
    }

    /// Clean gaps of the last layout: before the first span, between spans, after the last.
    #[must_use]
    pub fn gaps(&self) -> &[u32] {
        &self.gaps
    }
}

/// `(inputs, targets)` of `tokens` as example `key` (no prompt, no EOS): the primitive behind
/// `ul2.text_infilling`.
pub fn text_infilling<T: crate::Token, O: crate::OutToken>(
    tokens: &[T],
    params: &InfillParams,
    seed: u64,
    key: u64,
) -> Result<(Vec<O>, Vec<O>)> {
    let mut scratch = InfillScratch::default();
    let li = scratch.layout(tokens.len(), params, seed, key)?;
    let mut inputs = crate::alloc::filled(li, O::from_i64(0), "tokens")?;
    scratch.write(tokens, params.mask_id, &mut inputs);
    let mut targets = crate::alloc::filled(tokens.len(), O::from_i64(0), "tokens")?;
    super::mask::convert(tokens, &mut targets);
    Ok((inputs, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_fairseq_float32_ceil() {
        let p = InfillParams::new(0.3, 3.5, 5).unwrap();
        // float32: 10 · 0.3 rounds to exactly 3 (float64 would give 3.0000000000000004 → 4).
        assert_eq!(p.noise_tokens(10), 3);
        assert_eq!(p.noise_tokens(1), 1);
        assert_eq!(p.noise_tokens(0), 0);
        assert_eq!(p.noise_tokens(512), 154);
        // …but f32(0.3) is 0.30000001: 100 tokens mask 31, as fairseq's do.
        assert_eq!(p.noise_tokens(100), 31);
        assert_eq!(p.noise_tokens(200), 61);
        assert_eq!(InfillParams::new(1.0, 3.5, 5).unwrap().noise_tokens(7), 7);
        assert_eq!(InfillParams::new(0.0, 3.5, 5).unwrap().noise_tokens(7), 0);
    }

    #[test]
    #[allow(clippy::float_cmp)] // the table ends at exactly 1
    fn table_is_poisson() {
        let p = InfillParams::new(0.3, 3.5, 5).unwrap();
        let cdf = p.cdf();
        assert!((cdf[0] - (-3.5f64).exp()).abs() < 1e-15);
        assert!((cdf[3] - cdf[2] - (-3.5f64).exp() * 3.5f64.powi(3) / 6.0).abs() < 1e-15);
        assert_eq!(cdf[cdf.len() - 1], 1.0);
        assert!(cdf.windows(2).all(|w| w[0] <= w[1]));
        let big = InfillParams::new(0.3, MAX_LAMBDA, 5).unwrap();
        assert!(big.cdf().len() > 256 && big.cdf().len() < 600);
    }

    #[test]
    fn spans_sum_to_the_budget_and_are_capped() {
        let p = InfillParams::new(0.3, 3.5, 5).unwrap();
        for key in 0..2000 {
            let mut spans = Vec::new();
            let j = p.draw_spans(100, 7, key, |x| spans.push(x));
            assert_eq!(j, spans.len());
            assert_eq!(spans.iter().map(|&x| x as usize).sum::<usize>(), 31);
            assert!(*spans.last().unwrap() >= 1 && j <= 31);
        }
        // N = 1: one span of length 1, whatever the first draw.
        for key in 0..200 {
            let mut spans = Vec::new();
            assert_eq!(p.draw_spans(3, 0, key, |x| spans.push(x)), 1);
            assert_eq!(spans, [1]);
        }
    }

    #[test]
    fn rows_round_trip() {
        let p = InfillParams::new(0.3, 3.5, 1000).unwrap();
        let tokens: Vec<i32> = (0..200).collect();
        for key in 0..500 {
            let (inputs, targets) = text_infilling::<i32, i64>(&tokens, &p, 3, key).unwrap();
            assert_eq!(targets, tokens.iter().map(|&t| i64::from(t)).collect::<Vec<_>>());
            let masks = inputs.iter().filter(|&&t| t == 1000).count();
            assert_eq!(inputs.len(), 200 - 61 + masks);
            // The clean tokens are kept in order.
            let kept: Vec<i64> = inputs.iter().copied().filter(|&t| t != 1000).collect();
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(kept.len(), 139);
        }
    }
}
