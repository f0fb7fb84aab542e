//! SPEC §2 / §8.1: counts, noise masks, run layouts, compositions.

use ul2_core::rng::{Purpose, Stream};
use ul2_core::{Composer, Error, Runs, SpanParams, SpanScratch, noise_mask, span_counts};

use super::not_internal;
use crate::cases::{ComposeCase, MaskCase, SamplingCase};
use crate::reference::spec_counts;

/// The `mask_sampling` fuzz target: [`composition`] and [`noise_masks`].
pub fn mask_sampling(case: &SamplingCase) {
    composition(&case.compose);
    noise_masks(&case.mask);
}

/// `Composer::compose` appends (never overwrites) `parts` positive parts summing to
/// `total`; a reused composer draws the same parts from the same stream.
pub fn composition(c: &ComposeCase) {
    let stream = || Stream::new(c.seed, c.key, Purpose::NoiseSpans);
    let mut composer = Composer::default();
    let mut out = c.already.clone();
    composer.compose(c.total, c.parts, &mut stream(), &mut out);
    assert_eq!(&out[..c.already.len()], &c.already[..], "compose must append, not overwrite");
    let got = &out[c.already.len()..];
    assert_eq!(got.len(), c.parts);
    assert!(got.iter().all(|&p| p >= 1), "zero part in {got:?}");
    assert_eq!(got.iter().map(|&p| p as usize).sum::<usize>(), c.total);
    let mut again = Vec::new();
    composer.compose(c.total, c.parts, &mut stream(), &mut again);
    assert_eq!(&again[..], got, "a reused composer draws differently");
}

/// `SpanParams::new` accepts exactly the valid parameters; the counts are SPEC §2's (a
/// `ValueError` where T5 cannot draw them); `noise_mask` has exactly `N` noise tokens, the
/// same for the same `(seed, key)`; unrolled, `n` alternating non-empty spans start clean
/// and end noisy; rolled, it is exactly `tf.roll` of the unrolled mask by the keyed offset
/// (so `n` or `n + 1` noise runs); `SpanScratch::layout` (the batch path) gives the mask's
/// runs, also from a scratch that drew another layout before.
pub fn noise_masks(c: &MaskCase) {
    let MaskCase { length, noise_density: r, mean_span_length: mu, num_spans, random_roll: roll, seed, key } = *c;
    let valid = (0.0..=1.0).contains(&r) && mu.is_finite() && mu > 0.0 && num_spans != Some(0);
    let params = match SpanParams::new(r, mu, num_spans, roll) {
        Ok(p) => p,
        Err(e) => {
            not_internal(&e);
            assert!(!valid, "valid parameters refused: r={r} mu={mu} n={num_spans:?}: {e}");
            return;
        }
    };
    assert!(valid, "invalid parameters accepted: r={r} mu={mu} n={num_spans:?}");
    let Some((noise, spans)) = spec_counts(length, r, mu, num_spans) else {
        for got in [params.counts(length).map(|_| ()), noise_mask(length, &params, seed, key).map(|_| ())] {
            assert!(matches!(got, Err(Error::Invalid { .. })), "counts T5 cannot draw: expected a ValueError, got {got:?}");
        }
        return;
    };
    assert_eq!(params.counts(length).ok(), Some((noise, spans)), "counts of {c:?}");
    if num_spans.is_none() {
        assert_eq!(span_counts(length, r, mu).ok(), Some((noise, spans)));
    }

    let mask = noise_mask(length, &params, seed, key).expect("counts are valid");
    assert_eq!(mask.len(), length);
    assert_eq!(mask.iter().filter(|&&m| m).count(), noise);
    assert_eq!(noise_mask(length, &params, seed, key).ok().as_ref(), Some(&mask), "same (seed, key), other mask");
    let runs = Runs::from_mask(&mask).expect("a small mask");
    assert!(runs.lengths.iter().all(|&l| l > 0), "empty run in {runs:?}");
    assert_eq!(runs.lengths.iter().map(|&l| l as usize).sum::<usize>(), length);
    let mut scratch = SpanScratch::default();
    let mut drawn = Runs::default();
    scratch.layout(64, (20, 7), true, seed ^ 1, key.wrapping_add(1), &mut drawn).expect("a small row");
    scratch.layout(length, (noise, spans), roll, seed, key, &mut drawn).expect("a small row");
    assert_eq!(drawn, runs, "layout differs from the mask's runs (scratch reuse?)");

    let unrolled = noise_mask(length, &SpanParams { random_roll: false, ..params }, seed, key).expect("valid");
    if spans == 0 {
        assert!(!mask.contains(&true));
        assert_eq!(mask, unrolled);
        return;
    }
    let plain = Runs::from_mask(&unrolled).expect("a small mask");
    assert!(!plain.first_is_noise, "the unrolled mask starts clean");
    assert!(!plain.ends_clean(), "the unrolled mask ends with noise");
    assert_eq!(plain.noise_runs(), spans);
    assert_eq!(plain.lengths.len(), 2 * spans);
    if roll {
        let offset = Stream::new(seed, key, Purpose::Roll).below(length as u64) as usize;
        for (i, &m) in mask.iter().enumerate() {
            assert_eq!(m, unrolled[(i + length - offset) % length], "not tf.roll by {offset} at {i}");
        }
        // A run cut by the wrap shows up at both ends and counts twice.
        let split = mask[0] && mask[length - 1];
        assert_eq!(runs.noise_runs(), spans + usize::from(split));
    } else {
        assert_eq!(mask, unrolled);
    }
}
