//! The inputs the checks take, one type a subject. Each is plain data (so proptest can also
//! build one from its own strategies) and `Arbitrary`, drawn through [`Input`] as the fuzz
//! targets have always drawn them.

use arbitrary::{Arbitrary, Unstructured};
use ul2_core::{Budget, Denoiser, Documents, Sentinels};

use crate::input::Input;

/// One noise mask: `noise_mask(length, SpanParams::new(..)?, seed, key)`, parameters valid or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskCase {
    pub length: usize,
    pub noise_density: f64,
    pub mean_span_length: f64,
    pub num_spans: Option<usize>,
    pub random_roll: bool,
    pub seed: u64,
    pub key: u64,
}

/// One composition of `total` into `parts` (`1 <= parts <= total`), appended to `already`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeCase {
    pub total: usize,
    pub parts: usize,
    pub seed: u64,
    pub key: u64,
    pub already: Vec<u32>,
}

/// What the `mask_sampling` target draws: a composition and a mask.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingCase {
    pub compose: ComposeCase,
    pub mask: MaskCase,
}

/// Any mask over any tokens (negative, too wide, colliding with sentinels) with any
/// sentinels, applied into int32 or (`wide`) int64 outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationCase {
    pub sentinels: Sentinels,
    pub tokens: Vec<i64>,
    pub mask: Vec<bool>,
    pub wide: bool,
}

/// One denoiser planned for a budget, then run on rows of the planned length under `keys`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanCase {
    pub denoiser: Denoiser,
    pub budget: Budget,
    /// EOS (id 1) appended.
    pub eos: bool,
    pub sentinels: Sentinels,
    pub seed: u64,
    pub keys: Vec<u64>,
    /// Varies the rows' tokens.
    pub salt: u64,
}

/// A corpus (`doc_offsets` possibly broken; `None`: one document), a mixture of `rates`
/// whose denoiser `d` takes `raw_lengths[d]` tokens, and ranges of the joined stream to slice.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexCase<T> {
    pub tokens: Vec<T>,
    pub doc_offsets: Option<Vec<u64>>,
    pub separator: Option<T>,
    pub documents: Documents,
    pub rates: Vec<f64>,
    pub raw_lengths: Vec<usize>,
    pub seed: u64,
    /// Fractions (of `u16::MAX`) of the stream's length: where each extra slice starts and ends.
    pub slices: Vec<(u16, u16)>,
}

/// A row's length relative to the longest planned raw length (unknown until planning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLength {
    Empty,
    /// Longer than the longest plan by this much (`0`: exactly the longest; too long for
    /// the other denoisers).
    PastLongest(usize),
    /// At most `min(longest, 600)`: this fraction of `u16::MAX` of it.
    Within(u16),
}

/// A mixture packed into the rows of a budget: what the engine plans, packs and formats.
#[derive(Debug, Clone, PartialEq)]
pub struct PackCase {
    pub entries: Vec<(Denoiser, f64)>,
    pub budget: Budget,
    pub eos: bool,
    pub sentinels: Sentinels,
    pub seed: u64,
    pub rows: Vec<RowLength>,
    pub keys: Vec<u64>,
    pub pad: i32,
    /// The family's first or second format (`hf`/`seqio`, `decoder`/`seqio_decoder`).
    pub second_format: bool,
    pub bidirectional_mask: bool,
    pub denoiser_field: bool,
}

impl<'a> Arbitrary<'a> for MaskCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut u = Input(u);
        let length = if u.bool() { u.size(0, 64) } else { u.size(0, 1 << 14) };
        Ok(Self {
            length,
            noise_density: u.density(),
            mean_span_length: u.mean_span(),
            num_spans: u.bool().then(|| u.size(0, 300)),
            random_roll: u.bool(),
            seed: u.u64(),
            key: u.u64(),
        })
    }
}

impl<'a> Arbitrary<'a> for ComposeCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut u = Input(u);
        let total = u.size(1, 1 << 14);
        let parts = u.size(1, total);
        let already = (0..u.size(0, 2)).map(|_| u.int(0, u64::from(u32::MAX)) as u32).collect();
        Ok(Self { total, parts, seed: u.u64(), key: u.u64(), already })
    }
}

impl<'a> Arbitrary<'a> for SamplingCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self { compose: ComposeCase::arbitrary(u)?, mask: MaskCase::arbitrary(u)? })
    }
}

impl<'a> Arbitrary<'a> for ApplicationCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut u = Input(u);
        let wide = u.bool();
        let length = u.size(0, 2048);
        let check = u.bool();
        let sentinels = if u.bool() {
            let count = u.size(1, 200);
            let vocab = count as i64 + u.int(0, 70_000) as i64;
            Sentinels::t5(vocab, count, u.overflow(), check).expect("count <= vocab")
        } else {
            let mut ids: Vec<i64> = (0..u.size(1, 64)).map(|_| u.int(0, 5000) as i64).collect();
            if u.bool() {
                ids.push(u.int(0, i64::MAX as u64) as i64);
            }
            ids.sort_unstable();
            ids.dedup();
            if u.bool() {
                ids.reverse();
            }
            Sentinels::from_ids(ids, u.overflow(), check).expect("distinct non-negative ids")
        };
        let wild = u.bool();
        let tokens = (0..length)
            .map(|_| match (wild, u.int(0, 63)) {
                (true, 0) => -(u.int(1, 3) as i64),
                (true, 1) => u.int(0, i64::MAX as u64) as i64,
                (true, 2) => i64::from(i32::MAX) + u.int(0, 3) as i64,
                _ => u.int(2, 6000) as i64,
            })
            .collect();
        // Runs (realistic masks), single tokens among them.
        let mut mask = Vec::with_capacity(length);
        let mut noisy = u.bool();
        while mask.len() < length {
            let run = if u.bool() { 1 } else { u.size(1, 12) };
            mask.extend(std::iter::repeat_n(noisy, run.min(length - mask.len())));
            noisy = !noisy;
        }
        Ok(Self { sentinels, tokens, mask, wide })
    }
}

impl<'a> Arbitrary<'a> for PlanCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut u = Input(u);
        // A refused denoiser is a finding already checked; the rest of the case is moot.
        let Some(denoiser) = u.denoiser() else { return Err(arbitrary::Error::IncorrectFormat) };
        let budget = u.budget();
        let eos = u.bool();
        let sentinels = u.t5_sentinels();
        let seed = u.u64();
        let salt = u.u64();
        let keys = (0..u.size(1, 4)).map(|_| u.u64()).collect();
        Ok(Self { denoiser, budget, eos, sentinels, seed, keys, salt })
    }
}

impl<'a> Arbitrary<'a> for IndexCase<u16> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut u = Input(u);
        let mut tokens: Vec<u16> = Vec::new();
        let mut offsets: Vec<u64> = vec![0];
        for _ in 0..u.size(0, 40) {
            let len = match u.int(0, 7) {
                0 => 0,
                1 => 1,
                2 => u.size(0, 3000),
                _ => u.size(0, 200),
            };
            let at = tokens.len();
            tokens.extend((0..len).map(|i| 10 + ((at + i) % 60_000) as u16));
            offsets.push(tokens.len() as u64);
        }
        if u.int(0, 15) == 0 && offsets.len() > 2 {
            let i = u.size(0, offsets.len() - 1);
            offsets[i] = u.int(0, tokens.len() as u64 + 5);
        }
        let whole = u.bool();
        let separator = u.bool().then_some(3u16);
        let documents = if u.bool() { Documents::Concat } else { Documents::Respect };
        let n = u.size(1, 5);
        let rates = (0..n).map(|_| u.int(0, 4) as f64).collect();
        let raw_lengths = (0..n).map(|_| if u.bool() { u.size(1, 8) } else { u.size(1, 700) }).collect();
        let seed = u.u64();
        let slices = (0..u.size(0, 4)).map(|_| (u.int(0, 0xffff) as u16, u.int(0, 0xffff) as u16)).collect();
        Ok(Self { tokens, doc_offsets: (!whole).then_some(offsets), separator, documents, rates, raw_lengths, seed, slices })
    }
}

impl<'a> Arbitrary<'a> for PackCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut u = Input(u);
        let mut entries = Vec::new();
        for _ in 0..u.size(1, 4) {
            if let Some(d) = u.denoiser() {
                entries.push((d, u.int(1, 4) as f64));
            }
        }
        let budget = u.budget();
        let eos = u.bool();
        let sentinels = u.t5_sentinels();
        let seed = u.u64();
        let n = u.size(1, 48);
        let rows = (0..n)
            .map(|_| match u.int(0, 9) {
                0 => RowLength::Empty,
                1 => RowLength::PastLongest(u.size(0, 2)),
                _ => RowLength::Within(u.int(0, 0xffff) as u16),
            })
            .collect();
        let keys = if u.bool() { (0..n as u64).map(|k| k + u.int(0, 3)).collect() } else { (0..n).map(|_| u.u64()).collect() };
        let pad = if u.bool() { 0 } else { 5 };
        Ok(Self {
            entries,
            budget,
            eos,
            sentinels,
            seed,
            rows,
            keys,
            pad,
            second_format: u.bool(),
            bidirectional_mask: u.bool(),
            denoiser_field: u.bool(),
        })
    }
}

impl RowLength {
    /// The length for a plan whose longest raw length is `longest`.
    #[must_use]
    pub fn resolve(self, longest: usize) -> usize {
        match self {
            Self::Empty => 0,
            Self::PastLongest(extra) => longest + extra,
            Self::Within(f) => longest.min(600) * usize::from(f) / usize::from(u16::MAX),
        }
    }
}
