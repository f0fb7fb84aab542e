//! Prefix-LM split (the S-denoiser), T5's `random_prefix_noise_mask`.

use crate::error::{Error, Result};
use crate::rng::{Purpose, Stream};

/// Checks a suffix density: T5 allows `[0, 0.5]`.
pub fn check_suffix_density(suffix_density: f64) -> Result<f64> {
    if (0.0..=0.5).contains(&suffix_density) {
        Ok(suffix_density)
    } else {
        Err(Error::invalid("suffix_density", crate::error::real(suffix_density), "must be a number in [0, 0.5] (T5's prefix_lm)"))
    }
}

/// The inclusive range `[lo, hi]` the split point is drawn from:
/// `hi = L − 1`, `lo = min(hi, max(1, round_f32((1 − 2r)·hi)))`; `L ≤ 1` gives `[0, 0]`.
#[must_use]
pub fn prefix_bounds(length: usize, suffix_density: f64) -> (usize, usize) {
    if length <= 1 {
        return (0, 0);
    }
    let hi = length - 1;
    let scaled = ((1.0 - 2.0 * suffix_density as f32) * hi as f32).round_ties_even() as usize;
    (hi.min(scaled.max(1)), hi)
}

/// Split point `k` (inputs = `tokens[..k]`, targets = `tokens[k..]`), uniform on
/// [`prefix_bounds`], keyed by `(seed, key)`.
pub fn prefix_split(length: usize, suffix_density: f64, seed: u64, key: u64) -> Result<usize> {
    let (lo, hi) = prefix_bounds(length, check_suffix_density(suffix_density)?);
    Ok(lo + Stream::new(seed, key, Purpose::Prefix).below((hi - lo + 1) as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_t5() {
        assert_eq!(prefix_bounds(511, 0.5), (1, 510));
        assert_eq!(prefix_bounds(511, 0.25), (255, 510));
        assert_eq!(prefix_bounds(2, 0.5), (1, 1));
        assert_eq!(prefix_bounds(1, 0.5), (0, 0));
        assert_eq!(prefix_bounds(10, 0.0), (9, 9));
    }

    #[test]
    fn rejects_densities_t5_cannot_do() {
        assert!(prefix_split(10, 0.6, 0, 0).is_err());
        assert!(prefix_split(10, f64::NAN, 0, 0).is_err());
    }
}
