//! Span corruption's random part: T5's counts, uniform compositions and the (optionally
//! rolled) run layout of the noise mask.

use super::sentinels::{Overflow, Sentinels};
use crate::alloc::{reserve, with_capacity};
use crate::error::{Error, Result};
use crate::rng::{Purpose, Stream};

/// Parameters of one span-corruption draw, validated once by [`SpanParams::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanParams {
    pub noise_density: f64,
    pub mean_span_length: f64,
    pub num_spans: Option<usize>,
    pub random_roll: bool,
}

impl SpanParams {
    pub fn new(noise_density: f64, mean_span_length: f64, num_spans: Option<usize>, random_roll: bool) -> Result<Self> {
        if !(0.0..=1.0).contains(&noise_density) {
            return Err(Error::invalid("noise_density", crate::error::real(noise_density), "must be a number in [0, 1]"));
        }
        if !(mean_span_length.is_finite() && mean_span_length > 0.0) {
            return Err(Error::invalid("mean_span_length", crate::error::real(mean_span_length), "must be a finite number > 0"));
        }
        if num_spans == Some(0) {
            return Err(Error::invalid("num_spans", 0, "must be >= 1 (or None to derive it)"));
        }
        Ok(Self { noise_density, mean_span_length, num_spans, random_roll })
    }

    /// `(N, n)` for a row of `length` tokens: the mask's exact counts (see [`span_counts`]).
    pub fn counts(&self, length: usize) -> Result<(usize, usize)> {
        counts(length, self.noise_density, self.mean_span_length, self.num_spans)
    }

    /// [`SpanParams::counts`] before the check that the mask can draw them: these grow
    /// with the length at every length, so the planner can search on them.
    #[must_use]
    pub fn counts_unchecked(&self, length: usize) -> (usize, usize) {
        unchecked_counts(length, self.noise_density, self.mean_span_length, self.num_spans)
    }
}

/// T5's counts `(N, n)` for `length` raw tokens, as realised by its mask.
///
/// `N = clamp(round_f32(L·r), 1, L−1)`, `n = max(1, round_f32(N/μ))` in float32 with
/// ties-to-even, computed on `max(L, 2)` as T5 does; so `L < 2` and `r = 0` give `(0, 0)`.
/// Counts T5 cannot realise (`n > N`, or `n > L − N` when `r > 0.5`) are a `ValueError`
/// where T5 crashes.
pub fn span_counts(length: usize, noise_density: f64, mean_span_length: f64) -> Result<(usize, usize)> {
    SpanParams::new(noise_density, mean_span_length, None, false)?.counts(length)
}

fn unchecked_counts(length: usize, r: f64, mu: f64, num_spans: Option<usize>) -> (usize, usize) {
    if r == 0.0 || length < 2 {
        return (0, 0);
    }
    let noise = ((length as f32) * (r as f32)).round_ties_even() as usize;
    let noise = noise.clamp(1, length - 1);
    let spans = num_spans.unwrap_or_else(|| (((noise as f32) / (mu as f32)).round_ties_even() as usize).max(1));
    (noise, spans)
}

fn counts(length: usize, r: f64, mu: f64, num_spans: Option<usize>) -> Result<(usize, usize)> {
    let (noise, spans) = unchecked_counts(length, r, mu, num_spans);
    if noise == 0 {
        return Ok((0, 0));
    }
    if spans > noise {
        return Err(match num_spans {
            Some(n) => {
                Error::invalid("num_spans", n, format!("more spans than the {noise} noise tokens of a {length}-token row"))
            }
            None => Error::invalid(
                "mean_span_length",
                crate::error::real(mu),
                format!("gives {spans} spans for {noise} noise tokens at length {length}; must be >= 1"),
            ),
        });
    }
    if spans > length - noise {
        return Err(Error::invalid(
            if num_spans.is_some() { "num_spans" } else { "noise_density" },
            if num_spans.is_some() { spans.to_string() } else { crate::error::real(r) },
            format!(
                "{spans} noise spans need as many non-noise spans but a {length}-token row has only {} non-noise tokens; \
                 lower noise_density or raise mean_span_length",
                length - noise
            ),
        ));
    }
    Ok((noise, spans))
}

/// Reusable buffers for drawing compositions; one per worker thread, so the hot loop
/// allocates nothing per row once they have grown.
#[derive(Debug, Default, Clone)]
pub struct Composer {
    /// One byte per gap, `stamp` where chosen in this draw: what each draw tests. Bytes
    /// rather than bits, as consecutive draws then rarely read what the last one wrote
    /// (testing a bitset word chains draw after draw through store forwarding, 1.5× the
    /// time of a row's layout). A new stamp per draw rather than clearing, so a draw costs
    /// nothing for the gaps it does not choose; cleared only when the stamp wraps.
    marks: Vec<u8>,
    stamp: u8,
    /// The same choices as bits, to read them out in order a word at a time; all clear
    /// between draws, as reading them out clears them.
    bits: Vec<u64>,
}

impl Composer {
    /// Grows the buffers for compositions of up to `total`: a huge row is a `MemoryError`,
    /// not an abort.
    pub(crate) fn reserve(&mut self, total: usize) -> Result<()> {
        reserve(&mut self.marks, total, "length")?;
        reserve(&mut self.bits, total.div_ceil(64), "length")
    }

    /// Appends to `out` a uniformly random composition of `total` into `parts` positive
    /// integers (every composition equally likely).
    ///
    /// A composition is a choice of `parts − 1` cut points among the `total − 1` gaps.
    /// Floyd's algorithm picks that subset with `parts − 1` draws (or its complement, when
    /// smaller); reading the bitset in order gives the cuts sorted. Cost:
    /// `O(min(parts, total − parts))` draws plus a pass over `total / 64` words, never a
    /// shuffle.
    pub fn compose(&mut self, total: usize, parts: usize, rng: &mut Stream, out: &mut Vec<u32>) {
        let start = out.len();
        out.resize(start + parts, 0);
        self.draw::<1>(total, parts, rng, &mut out[start..]);
    }

    /// [`Composer::compose`] into `out[0], out[STRIDE], …`: a stride of 2 writes a row's
    /// noise or clean runs straight into their alternating places.
    #[allow(clippy::inline_always)] // measured: 3% of a row's layout instructions as a call
    #[inline(always)]
    fn draw<const STRIDE: usize>(&mut self, total: usize, parts: usize, rng: &mut Stream, out: &mut [u32]) {
        debug_assert!(parts >= 1 && parts <= total && (parts - 1) * STRIDE < out.len());
        let gaps = total - 1;
        let cuts = parts - 1;
        let complement = cuts > gaps / 2;
        let chosen = if complement { gaps - cuts } else { cuts };
        let words = gaps.div_ceil(64);
        // A power-of-two slice lets masking the word index stand in for its bounds check.
        let span = words.next_power_of_two();
        if self.bits.len() < span {
            self.bits.resize(span, 0);
        }
        if self.marks.len() < gaps {
            self.marks.resize(gaps, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.fill(0);
            self.stamp = 1;
        }
        let (marks, bits, stamp) = (&mut self.marks[..gaps], &mut self.bits[..span], self.stamp);
        for j in (gaps - chosen)..gaps {
            let t = rng.below(j as u64 + 1) as usize;
            let pick = if marks[t] == stamp { j } else { t };
            marks[pick] = stamp;
            bits[(pick / 64) & (span - 1)] |= 1 << (pick % 64);
        }
        // Gap g (0-based) is the cut between item g and item g+1.
        let (mut last, mut k) = (0usize, 0usize);
        for (w, word) in bits[..words].iter_mut().enumerate() {
            let mut cutset = std::mem::take(word);
            if complement {
                let valid = if (w + 1) * 64 <= gaps { u64::MAX } else { (1u64 << (gaps % 64)) - 1 };
                cutset = !cutset & valid;
            }
            while cutset != 0 {
                let g = w * 64 + cutset.trailing_zeros() as usize;
                out[k * STRIDE] = (g + 1 - last) as u32;
                (last, k) = (g + 1, k + 1);
                cutset &= cutset - 1;
            }
        }
        out[k * STRIDE] = (total - last) as u32;
    }
}

/// The noise mask of one row as alternating runs: `first_is_noise` says what the first run
/// is, `lengths` the run lengths (all positive, summing to the row length).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Runs {
    pub first_is_noise: bool,
    pub lengths: Vec<u32>,
}

impl Runs {
    /// Number of noise runs (each gets its own sentinel).
    #[must_use]
    pub fn noise_runs(&self) -> usize {
        let n = self.lengths.len();
        if self.first_is_noise { n.div_ceil(2) } else { n / 2 }
    }

    /// Whether the last run is non-noise (or the row is a single clean run).
    #[must_use]
    pub fn ends_clean(&self) -> bool {
        let n = self.lengths.len();
        n > 0 && (n % 2 == 1) != self.first_is_noise
    }

    /// Runs as a bool mask (`true` = noise).
    pub fn write_mask(&self, mask: &mut Vec<bool>) {
        let mut noise = self.first_is_noise;
        for &len in &self.lengths {
            mask.extend(std::iter::repeat_n(noise, len as usize));
            noise = !noise;
        }
    }

    /// Runs of an arbitrary mask.
    pub fn from_mask(mask: &[bool]) -> Result<Self> {
        let changes = mask.windows(2).filter(|w| w[0] != w[1]).count();
        let mut runs =
            Self { first_is_noise: mask.first().copied().unwrap_or(false), lengths: with_capacity(changes + 1, "mask")? };
        let mut start = 0;
        for i in 1..=mask.len() {
            if i == mask.len() || mask[i] != mask[start] {
                runs.lengths.push((i - start) as u32);
                start = i;
            }
        }
        Ok(runs)
    }
}

/// Per-thread scratch for drawing span layouts.
#[derive(Debug, Default, Clone)]
pub struct SpanScratch {
    composer: Composer,
    rolled: Vec<u32>,
}

impl SpanScratch {
    /// Draws the run layout of a `length`-token row with `(noise, spans)` from
    /// [`SpanParams::counts`] into `runs`: non-noise first, alternating, noise last; then
    /// rotated right by a uniform offset when `random_roll` is set (a run cut by the wrap
    /// becomes two runs, each with its own sentinel later).
    pub fn layout(
        &mut self,
        length: usize,
        (noise, spans): (usize, usize),
        random_roll: bool,
        seed: u64,
        key: u64,
        runs: &mut Runs,
    ) -> Result<()> {
        runs.lengths.clear();
        runs.first_is_noise = false;
        if spans == 0 {
            if length > 0 {
                runs.lengths.push(length as u32);
            }
            return Ok(());
        }
        // Scratch sized by the row: a huge row is a MemoryError, not an abort.
        let gaps = noise.max(length - noise);
        reserve(&mut self.composer.marks, gaps, "length")?;
        reserve(&mut self.composer.bits, gaps.div_ceil(64).next_power_of_two(), "length")?;
        reserve(&mut runs.lengths, 2 * spans + 1, "length")?;
        // Clean runs at even places, noise runs at odd ones.
        runs.lengths.resize(2 * spans, 0);
        self.composer.draw::<2>(noise, spans, &mut Stream::new(seed, key, Purpose::NoiseSpans), &mut runs.lengths[1..]);
        self.composer.draw::<2>(length - noise, spans, &mut Stream::new(seed, key, Purpose::CleanSpans), &mut runs.lengths);
        if random_roll {
            reserve(&mut self.rolled, 2 * spans + 1, "length")?;
            let offset = Stream::new(seed, key, Purpose::Roll).below(length as u64) as usize;
            self.roll(runs, length, offset);
        }
        Ok(())
    }

    /// Rotate right by `offset` (`tf.roll` semantics): the new row starts at old position
    /// `length − offset`.
    fn roll(&mut self, runs: &mut Runs, length: usize, offset: usize) {
        if offset == 0 {
            return;
        }
        let split = length - offset;
        let (mut at, mut run) = (0usize, 0usize);
        while at + runs.lengths[run] as usize <= split {
            at += runs.lengths[run] as usize;
            run += 1;
        }
        let cut = split - at; // tokens of `run` before the split
        self.rolled.clear();
        self.rolled.push(runs.lengths[run] - cut as u32);
        self.rolled.extend_from_slice(&runs.lengths[run + 1..]);
        // The old row ends with noise and starts clean, so no runs merge at the old seam.
        self.rolled.extend_from_slice(&runs.lengths[..run]);
        if cut > 0 {
            self.rolled.push(cut as u32);
        }
        runs.first_is_noise = run % 2 == 1;
        std::mem::swap(&mut runs.lengths, &mut self.rolled);
    }
}

/// A `length`-long noise mask (`true` = noise) keyed by `(seed, key)`.
pub fn noise_mask(length: usize, params: &SpanParams, seed: u64, key: u64) -> Result<Vec<bool>> {
    let counts = params.counts(length)?;
    let mut mask = with_capacity(length, "length")?;
    let mut runs = Runs::default();
    SpanScratch::default().layout(length, counts, params.random_roll, seed, key, &mut runs)?;
    runs.write_mask(&mut mask);
    Ok(mask)
}

/// Output lengths of a span-corruption row of `raw` tokens: `(inputs, targets, spans,
/// sentinels)`, prompt and EOS included; `sentinels` caps spans when given (policy `cap`).
pub(crate) fn span_lengths(
    raw: usize,
    params: &SpanParams,
    prompt: usize,
    eos: usize,
    sentinels: Option<&Sentinels>,
) -> Result<(usize, usize, usize, usize)> {
    lengths(raw, params.counts(raw)?, params, prompt, eos, sentinels)
}

/// [`span_lengths`] for given counts `(N, n)`.
pub(crate) fn lengths(
    raw: usize,
    (noise, spans): (usize, usize),
    params: &SpanParams,
    prompt: usize,
    eos: usize,
    sentinels: Option<&Sentinels>,
) -> Result<(usize, usize, usize, usize)> {
    let roll = usize::from(params.random_roll && spans > 0);
    let spans = match sentinels {
        Some(s) if s.on_overflow == Overflow::Cap => s.admit(spans, roll)?,
        _ => spans,
    };
    // A row without noise still gets T5's single target sentinel.
    let used = if spans == 0 { usize::from(raw > 0) } else { spans + roll };
    let inputs = prompt + raw - noise + if spans == 0 { 0 } else { spans + roll } + eos;
    Ok((inputs, noise + used + eos, spans, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_counts_for_the_standard_lengths() {
        assert_eq!(span_counts(568, 0.15, 3.0).unwrap(), (85, 28));
        assert_eq!(span_counts(766, 0.5, 3.0).unwrap(), (383, 128));
        assert_eq!(span_counts(600, 0.15, 64.0).unwrap(), (90, 1));
        // float32 rounding: 190·0.15 is 28.5 in float64 but 28.500002 in float32.
        assert_eq!(span_counts(190, 0.15, 3.0).unwrap().0, 29);
    }

    #[test]
    fn small_lengths_follow_t5() {
        let p = SpanParams::new(0.15, 3.0, None, false).unwrap();
        let m = |l| noise_mask(l, &p, 0, 0).unwrap();
        assert_eq!(m(0), Vec::<bool>::new());
        assert_eq!(m(1), vec![false]);
        assert_eq!(m(2), vec![false, true]);
        assert_eq!(m(3), vec![false, false, true]);
        assert_eq!(m(5), vec![false, false, false, false, true]);
    }

    #[test]
    fn a_reused_composer_draws_what_a_fresh_one_does() {
        // Past several stamp wraps, with complements and rows of several sizes in turn.
        let mut reused = Composer::default();
        for i in 0..1000u64 {
            let (total, parts) = [(85, 28), (483, 28), (20, 15), (130, 2), (64, 64), (1, 1)][i as usize % 6];
            let (mut a, mut b) = (Vec::new(), Vec::new());
            reused.compose(total, parts, &mut Stream::new(3, i, Purpose::NoiseSpans), &mut a);
            Composer::default().compose(total, parts, &mut Stream::new(3, i, Purpose::NoiseSpans), &mut b);
            assert_eq!(a, b, "draw {i}: {total} into {parts}");
        }
    }

    #[test]
    fn roll_keeps_every_token_and_splits_a_wrapped_run() {
        let mut s = SpanScratch::default();
        let mut runs = Runs { first_is_noise: false, lengths: vec![3, 2, 4, 1] };
        s.roll(&mut runs, 10, 2); // old 8,9 (clean 8, noise 9) move to the front
        assert_eq!(runs.lengths, vec![1, 1, 3, 2, 3]);
        assert!(!runs.first_is_noise);
        let mut runs = Runs { first_is_noise: false, lengths: vec![3, 2, 4, 1] };
        s.roll(&mut runs, 10, 6); // split inside the noise run at 3..5
        assert_eq!(runs.lengths, vec![1, 4, 1, 3, 1]);
        assert!(runs.first_is_noise);
        assert_eq!(runs.noise_runs(), 3);
    }
}
