//! Parameters from bytes: a reader over [`Unstructured`] whose every draw succeeds (the low
//! end of its range once the bytes run out), and the core's parameters drawn from it, mostly
//! valid, sometimes at or past their edges.

use arbitrary::Unstructured;
use ul2_core::{Budget, Denoiser, FimLoss, FimParams, InfillParams, Kind, Overflow, Sentinels, SpanParams};

use crate::check::not_internal;

pub struct Input<'u, 'a>(pub &'u mut Unstructured<'a>);

impl Input<'_, '_> {
    /// An integer in `[lo, hi]`.
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.int_in_range(lo..=hi).unwrap_or(lo)
    }
    pub fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.int(lo as u64, hi as u64) as usize
    }
    pub fn bool(&mut self) -> bool {
        self.0.arbitrary::<bool>().unwrap_or(false)
    }
    pub fn u64(&mut self) -> u64 {
        self.0.arbitrary::<u64>().unwrap_or(0)
    }
    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.size(0, items.len() - 1)]
    }
    /// Mostly a valid density in `[0, 1]` (fine steps and the special values), sometimes
    /// anything at all (NaN, infinities, negatives, raw bits).
    pub fn density(&mut self) -> f64 {
        match self.int(0, 15) {
            0 => 0.0,
            1 => 0.5,
            2 => 1.0,
            3 => f64::from_bits(self.u64()),
            4 => self.pick(&[f64::NAN, f64::INFINITY, -0.1, 1.5, -0.0, 1e-300, f64::MIN_POSITIVE]),
            _ => self.int(0, 1 << 20) as f64 / f64::from(1 << 20),
        }
    }
    /// Mostly a valid mean span length, sometimes anything at all.
    pub fn mean_span(&mut self) -> f64 {
        match self.int(0, 15) {
            0 => f64::from_bits(self.u64()),
            1 => self.pick(&[0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300, 1e300, 0.5]),
            2 => self.int(1, 64) as f64,
            _ => self.int(1, 1 << 16) as f64 / 256.0,
        }
    }
    pub fn overflow(&mut self) -> Overflow {
        self.pick(&[Overflow::Error, Overflow::Cap, Overflow::T5])
    }
    /// T5's sentinels at the top of a 32k vocabulary, far above ordinary tokens (`< 1000`).
    pub fn t5_sentinels(&mut self) -> Sentinels {
        let count = self.size(1, 300);
        Sentinels::t5(32_000 + count as i64, count, self.overflow(), true).expect("valid sentinels")
    }
    /// A denoiser (prompt of up to 8 ids below 1000), or `None` where the core refuses its
    /// parameters (checked to be a caller's-mistake error).
    pub fn denoiser(&mut self) -> Option<Denoiser> {
        let prefix: Vec<i64> = (0..self.size(0, 8)).map(|_| self.int(2, 999) as i64).collect();
        let kind = match self.int(0, 7) {
            0 => Kind::CausalLm,
            7 => {
                // Mostly a mask id below the sentinels, sometimes a sentinel's; any rates at all.
                let mask = if self.int(0, 7) == 0 { 32_000 } else { 1003 };
                let r = if self.bool() { self.pick(&[0.3, 0.15, 0.0, 1.0]) } else { self.density() };
                let lambda = if self.bool() { self.pick(&[3.5, 1.0, 0.05, 256.0]) } else { self.mean_span() };
                match InfillParams::new(r, lambda, mask) {
                    Ok(p) => Kind::TextInfilling(p),
                    Err(e) => {
                        not_internal(&e);
                        return None;
                    }
                }
            }
            6 => {
                // Mostly three distinct ids below the sentinels, sometimes colliding ones.
                let ids = if self.int(0, 7) == 0 { self.pick(&[[5, 5, 6], [32_000, 5, 6]]) } else { [1000, 1001, 1002] };
                let rate = if self.bool() { self.pick(&[0.0, 0.5, 1.0]) } else { self.density() };
                let loss = if self.bool() { FimLoss::All } else { FimLoss::Middle };
                match FimParams::new(ids[0], ids[1], ids[2], rate, loss) {
                    Ok(p) => Kind::FillInTheMiddle(p),
                    Err(e) => {
                        not_internal(&e);
                        return None;
                    }
                }
            }
            1 => Kind::PrefixLm { suffix_density: if self.bool() { self.density() } else { self.pick(&[0.5, 0.25, 0.0]) } },
            _ => {
                let r = if self.bool() { self.pick(&[0.15, 0.5, 0.25, 0.8]) } else { self.density() };
                let mu = if self.bool() { self.pick(&[3.0, 8.0, 32.0, 64.0, 1.0]) } else { self.mean_span() };
                let n = (self.int(0, 7) == 0).then(|| self.size(1, 40));
                match SpanParams::new(r, mu, n, self.int(0, 3) == 0) {
                    Ok(p) => Kind::SpanCorruption(p),
                    Err(e) => {
                        not_internal(&e);
                        return None;
                    }
                }
            }
        };
        Denoiser::new(kind, prefix).map_err(|e| not_internal(&e)).ok()
    }
    /// An encoder-decoder budget (targets given or left to the plan) or a decoder-only one,
    /// zero-sized ones included.
    pub fn budget(&mut self) -> Budget {
        if self.bool() {
            Budget::EncoderDecoder { inputs: self.size(0, 2048), targets: self.bool().then(|| self.size(0, 2048)) }
        } else {
            Budget::Decoder { sequence: self.size(0, 4096) }
        }
    }
}
