//! The denoising stage: denoisers and mixtures, and what happens to one row. Span
//! corruption draws its layout in [`spans`], prefix LM its split in [`prefix`],
//! fill-in-the-middle its cuts in [`fim`]; [`mask`] writes inputs and targets with the ids of
//! [`sentinels`]; BART's text infilling is [`infilling`].

pub mod fim;
pub mod infilling;
pub mod mask;
pub mod prefix;
pub mod sentinels;
pub mod spans;

use crate::error::{Error, Result, Where};
use crate::rng::{Purpose, Stream};
use crate::{OutToken, Token};
use fim::{FIM_IDS, FimParams, fim_split, write_fim};
use infilling::{InfillParams, InfillScratch};
use mask::{applied_lengths, apply_runs, convert};
use prefix::{check_suffix_density, prefix_split};
use sentinels::Sentinels;
use spans::{Runs, SpanParams, SpanScratch};

/// The objective of one denoiser.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// T5 span corruption: R and X denoisers.
    SpanCorruption(SpanParams),
    /// Prefix LM (the S-denoiser), T5's `prefix_lm`.
    PrefixLm { suffix_density: f64 },
    /// Plain next-token prediction: the whole row is the target.
    CausalLm,
    /// Fill-in-the-middle: the row cut in three and rearranged around three ids ([`fim`]).
    FillInTheMiddle(FimParams),
    /// BART's text infilling: Poisson-length spans each replaced by one mask id; the
    /// targets are the row.
    TextInfilling(InfillParams),
}

/// A denoiser with its mode prompt (token ids prepended to the inputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Denoiser {
    pub kind: Kind,
    pub prefix: Vec<i64>,
}

impl Denoiser {
    pub fn new(kind: Kind, prefix: Vec<i64>) -> Result<Self> {
        if let Kind::PrefixLm { suffix_density } = kind {
            check_suffix_density(suffix_density)?;
        }
        if let Some(&t) = prefix.iter().find(|t| **t < 0) {
            return Err(Error::invalid("prefix", t, "prompt token ids must be >= 0"));
        }
        Ok(Self { kind, prefix })
    }
}

/// Denoisers with sampling rates (unnormalised, like seqio's).
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    denoisers: Vec<Denoiser>,
    cumulative: Vec<f64>,
}

impl Mixture {
    pub fn new(entries: Vec<(Denoiser, f64)>) -> Result<Self> {
        if entries.is_empty() {
            return Err(Error::invalid("mixture", "[]", "must hold at least one denoiser"));
        }
        if let Some(bad) = entries.iter().map(|e| e.1).find(|r| !(r.is_finite() && *r >= 0.0)) {
            return Err(Error::invalid("rate", crate::error::real(bad), "rates must be finite numbers >= 0"));
        }
        // Relative to the largest rate, so sums neither overflow (1e308) nor lose precision
        // (subnormals); exact for powers of two, e.g. equal rates.
        let top = entries.iter().map(|e| e.1).fold(0.0, f64::max);
        if top <= 0.0 {
            return Err(Error::invalid("rate", 0, "at least one rate must be > 0"));
        }
        let mut total = 0.0;
        let cumulative = entries
            .iter()
            .map(|(_, rate)| {
                total += rate / top;
                total
            })
            .collect();
        Ok(Self { denoisers: entries.into_iter().map(|(d, _)| d).collect(), cumulative })
    }

    #[must_use]
    pub fn denoisers(&self) -> &[Denoiser] {
        &self.denoisers
    }

    /// This mixture as encoder-decoder rows use it: fill-in-the-middle targets the middle
    /// (the encoder reads the context), whatever its decoder-only `loss`.
    #[must_use]
    pub fn for_encoder_decoder(mut self) -> Self {
        for d in &mut self.denoisers {
            if let Kind::FillInTheMiddle(p) = &mut d.kind {
                *p = p.middle_only();
            }
        }
        self
    }

    /// Running sums of the rates (relative to the largest): denoiser `i` has weight
    /// `cumulative[i] − cumulative[i − 1]`.
    #[must_use]
    pub fn cumulative(&self) -> &[f64] {
        &self.cumulative
    }

    /// The denoiser of example `key`: index `i` with probability `rate_i / Σ rates`.
    #[must_use]
    pub fn choose(&self, seed: u64, key: u64) -> usize {
        if self.denoisers.len() == 1 {
            return 0;
        }
        let total = self.cumulative[self.cumulative.len() - 1];
        let u = crate::rng::unit_f64(Stream::first_u64(seed, key, Purpose::Denoiser)) * total;
        // The first `i` with `u < cumulative[i]`, counted rather than searched for: the
        // sums never decrease, and a search's random exit point is a branch mispredicted
        // about once per example.
        let below = self.cumulative.iter().filter(|&&c| c <= u).count();
        below.min(self.cumulative.len() - 1)
    }
}

/// Everything a row needs besides its tokens and key.
#[derive(Debug, Clone, Copy)]
pub struct RowConfig<'a> {
    pub mixture: &'a Mixture,
    pub sentinels: &'a Sentinels,
    pub eos_id: Option<i64>,
    pub seed: u64,
    /// Longest row each denoiser accepts (its planned raw length); empty: no limit but the
    /// output budgets.
    pub max_raw: &'a [usize],
}

impl RowConfig<'_> {
    /// Refuses a row longer than denoiser `index`'s planned raw length, whatever its draws
    /// (a prefix split may fit a longer row for some keys only).
    fn check_raw(&self, index: usize, length: usize) -> Result<()> {
        match self.max_raw.get(index) {
            Some(&limit) if length > limit => Err(Error::DoesNotFit {
                where_: Where::arg("rows"),
                what: "row",
                length,
                budget: "raw_length",
                limit,
                fix: format!(
                    "that is the planned raw length of mixture[{index}] (ul2.plan); split longer rows, or pass long_rows='cut'"
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Per-thread scratch, grown once and reused for every row.
#[derive(Debug, Default, Clone)]
pub struct RowScratch {
    spans: SpanScratch,
    runs: Runs,
    infill: InfillScratch,
}

/// One denoised row: which denoiser, and how much of each output it filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowLengths {
    pub denoiser: usize,
    pub inputs: usize,
    pub targets: usize,
}

/// Denoises `tokens` (example `key`) into the fronts of `inputs` and `targets`, whose
/// lengths are the budgets; a row that would not fit is an error, never cut.
pub fn denoise_row<T: Token, O: OutToken>(
    cfg: &RowConfig<'_>,
    tokens: &[T],
    key: u64,
    scratch: &mut RowScratch,
    inputs: &mut [O],
    targets: &mut [O],
) -> Result<RowLengths> {
    cfg.sentinels.check_tokens(tokens, O::MAX, "rows")?;
    let index = cfg.mixture.choose(cfg.seed, key);
    cfg.check_raw(index, tokens.len())?;
    let denoiser = &cfg.mixture.denoisers[index];
    let eos = usize::from(cfg.eos_id.is_some());
    let p = denoiser.prefix.len();
    let length = tokens.len();
    let (li, lt) = match &denoiser.kind {
        Kind::SpanCorruption(params) => {
            let (noise, spans) = params.counts(length)?;
            let roll = usize::from(params.random_roll && spans > 0);
            let spans = cfg.sentinels.admit(spans, roll)?;
            scratch.spans.layout(length, (noise, spans), params.random_roll, cfg.seed, key, &mut scratch.runs)?;
            let (ai, at) = applied_lengths(&scratch.runs, length);
            fit(p + ai + eos, inputs.len(), "inputs", "inputs_length", length)?;
            fit(at + eos, targets.len(), "targets", "targets_length", length)?;
            apply_runs(tokens, &scratch.runs, cfg.sentinels, &mut inputs[p..p + ai], &mut targets[..at]);
            (p + ai, at)
        }
        Kind::PrefixLm { suffix_density } => {
            let k = prefix_split(length, *suffix_density, cfg.seed, key)?;
            fit(p + k + eos, inputs.len(), "inputs", "inputs_length", length)?;
            fit(length - k + eos, targets.len(), "targets", "targets_length", length)?;
            convert(&tokens[..k], &mut inputs[p..p + k]);
            convert(&tokens[k..], &mut targets[..length - k]);
            (p + k, length - k)
        }
        Kind::CausalLm => {
            fit(p + eos, inputs.len(), "inputs", "inputs_length", length)?;
            fit(length + eos, targets.len(), "targets", "targets_length", length)?;
            convert(tokens, &mut targets[..length]);
            (p, length)
        }
        Kind::FillInTheMiddle(params) => {
            // The ids delimit the context: EOS ends the targets only (below), so the decoder
            // row is the same sequence under either loss.
            let split = fim_split(length, params.spm_rate, cfg.seed, key);
            let (ai, at) = params.lengths(length, split.middle);
            fit(p + ai, inputs.len(), "inputs", "inputs_length", length)?;
            fit(at + eos, targets.len(), "targets", "targets_length", length)?;
            let context = FIM_IDS + length - split.middle;
            match params.loss {
                fim::FimLoss::Middle => {
                    write_fim(tokens, split, params, &mut inputs[p..p + context], &mut targets[..split.middle]);
                }
                fim::FimLoss::All => {
                    let (c, m) = targets[..at].split_at_mut(context);
                    write_fim(tokens, split, params, c, m);
                }
            }
            (p + ai, at)
        }
        Kind::TextInfilling(params) => {
            let ai = scratch.infill.layout(length, params, cfg.seed, key)?;
            fit(p + ai + eos, inputs.len(), "inputs", "inputs_length", length)?;
            fit(length + eos, targets.len(), "targets", "targets_length", length)?;
            scratch.infill.write(tokens, params.mask_id, &mut inputs[p..p + ai]);
            convert(tokens, &mut targets[..length]);
            (p + ai, length)
        }
    };
    for (d, &s) in inputs.iter_mut().zip(&denoiser.prefix) {
        *d = O::from_i64(s);
    }
    // Fill-in-the-middle's ids delimit its context, so only its targets end with EOS.
    let inputs_eos = !matches!(denoiser.kind, Kind::FillInTheMiddle(_));
    let (li, lt) = match cfg.eos_id {
        Some(e) => {
            if inputs_eos {
                inputs[li] = O::from_i64(e);
            }
            targets[lt] = O::from_i64(e);
            (li + usize::from(inputs_eos), lt + 1)
        }
        None => (li, lt),
    };
    Ok(RowLengths { denoiser: index, inputs: li, targets: lt })
}

/// Upper bounds of `(inputs, targets)` lengths (prompt and EOS included) of example `key`
/// with `length` raw tokens, without denoising it: exact but for `random_roll`, whose wrap
/// may add one sentinel (text infilling draws its span lengths, not their places). Used to pack rows before filling them.
pub fn example_bounds(cfg: &RowConfig<'_>, length: usize, key: u64) -> Result<(usize, usize, usize)> {
    let index = cfg.mixture.choose(cfg.seed, key);
    cfg.check_raw(index, length)?;
    let denoiser = &cfg.mixture.denoisers[index];
    let (p, e) = (denoiser.prefix.len(), usize::from(cfg.eos_id.is_some()));
    let (i, t) = match &denoiser.kind {
        Kind::SpanCorruption(params) => {
            let (i, t, spans, used) = crate::denoise::spans::span_lengths(length, params, p, e, Some(cfg.sentinels))?;
            cfg.sentinels.admit(spans, used - spans)?;
            (i, t)
        }
        Kind::PrefixLm { suffix_density } => {
            let k = prefix_split(length, *suffix_density, cfg.seed, key)?;
            (p + k + e, length - k + e)
        }
        Kind::CausalLm => (p + e, length + e),
        Kind::FillInTheMiddle(params) => {
            let middle = match params.loss {
                fim::FimLoss::All => 0, // the split does not move the targets' end
                fim::FimLoss::Middle => fim_split(length, params.spm_rate, cfg.seed, key).middle,
            };
            let (i, t) = params.lengths(length, middle);
            (p + i, t + e)
        }
        Kind::TextInfilling(params) => {
            let (i, t) = params.lengths(length, cfg.seed, key);
            (p + i + e, t + e)
        }
    };
    Ok((index, i, t))
}

fn fit(length: usize, limit: usize, what: &'static str, budget: &'static str, raw: usize) -> Result<()> {
    if length <= limit {
        return Ok(());
    }
    Err(Error::DoesNotFit {
        where_: Where::arg("rows"),
        what,
        length,
        budget,
        limit,
        fix: format!("this row has {raw} raw tokens; pass rows no longer than the planned raw_length (ul2.plan)"),
    })
}
