//! Length planning: the raw length that fills an output budget exactly.
//!
//! The planner counts with the same functions the denoisers use ([`SpanParams::counts`],
//! [`Sentinels::admit`], [`prefix_bounds`]), so planned lengths are produced lengths.

use crate::denoiser::{Denoiser, Kind};
use crate::error::{Error, Result};
use crate::prefix::prefix_bounds;
use crate::sentinels::Sentinels;
use crate::spans::SpanParams;

/// The output budget of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Encoder-decoder: inputs (prompt included) and optionally targets lengths.
    EncoderDecoder { inputs: usize, targets: Option<usize> },
    /// Decoder-only: prompt + inputs + targets in one row.
    Decoder { sequence: usize },
}

/// What one denoiser produces at its planned raw length (maxima for the random-length
/// S and rolled denoisers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRow {
    pub raw_length: usize,
    pub inputs_length: usize,
    pub targets_length: usize,
    pub spans: usize,
    pub sentinels: usize,
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
    let (noise, spans) = params.counts(raw)?;
    let roll = usize::from(params.random_roll && spans > 0);
    let spans = match sentinels {
        Some(s) if s.on_overflow == crate::Overflow::Cap => s.admit(spans, roll)?,
        _ => spans,
    };
    // A row without noise still gets T5's single target sentinel.
    let used = if spans == 0 { usize::from(raw > 0) } else { spans + roll };
    let inputs = prompt + raw - noise + if spans == 0 { 0 } else { spans + roll } + eos;
    Ok((inputs, noise + used + eos, spans, used))
}

/// Largest `x` in `[0, cap]` with `fits(x)`, for a monotone `fits` with `fits(0)`.
fn largest<F: FnMut(usize) -> Result<bool>>(cap: usize, mut fits: F) -> Result<Option<usize>> {
    if !fits(0)? {
        return Ok(None);
    }
    let mut hi = 1usize;
    while hi <= cap && fits(hi)? {
        hi = hi.saturating_mul(2);
    }
    let (mut lo, mut hi) = (hi / 2, hi.min(cap + 1)); // fits(lo), !fits(hi) or hi > cap
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? { lo = mid } else { hi = mid }
    }
    Ok(Some(lo))
}

/// Raw lengths beyond this are treated as unbounded (e.g. `noise_density=1`).
const MAX_RAW: usize = 1 << 40;

/// T5's `random_spans_helper` made exact: the largest raw length whose inputs (prompt and
/// EOS included) fit `inputs_length` and whose targets fit `targets_length` when given;
/// at `noise_density == 0.5` targets may not exceed inputs. Returns `(raw, targets)`.
pub fn plan_span_corruption(
    inputs_length: usize,
    params: &SpanParams,
    targets_length: Option<usize>,
    prompt_length: usize,
    eos: bool,
    sentinels: Option<&Sentinels>,
) -> Result<PlanRow> {
    let eos = usize::from(eos);
    let fits = |raw: usize| -> Result<bool> {
        let (i, t, ..) = span_lengths(raw, params, prompt_length, eos, sentinels)?;
        Ok(i <= inputs_length && targets_length.is_none_or(|tl| t <= tl))
    };
    let Some(mut raw) = largest(MAX_RAW, fits)? else {
        return Err(Error::invalid(
            "inputs_length",
            inputs_length,
            format!("too small for a prompt of {prompt_length} tokens plus EOS"),
        ));
    };
    if raw >= MAX_RAW {
        return Err(Error::invalid(
            "targets_length",
            "None",
            format!("noise_density={} never fills the inputs; give targets_length", params.noise_density),
        ));
    }
    let mut lens = span_lengths(raw, params, prompt_length, eos, sentinels)?;
    if params.noise_density == 0.5 {
        while raw > 0 && lens.1 > lens.0 {
            raw -= 1;
            lens = span_lengths(raw, params, prompt_length, eos, sentinels)?;
        }
    }
    if raw == 0 {
        return Err(Error::invalid(
            "inputs_length",
            inputs_length,
            format!("too small: no raw token fits with a prompt of {prompt_length} tokens"),
        ));
    }
    let (inputs_length, targets_length, spans, used) = lens;
    if let Some(s) = sentinels {
        s.admit(spans, used - spans)?;
    }
    Ok(PlanRow {
        raw_length: raw,
        inputs_length,
        targets_length,
        spans,
        sentinels: used,
    })
}

/// Plans one denoiser for a budget.
pub fn plan_denoiser(denoiser: &Denoiser, budget: Budget, eos: bool, sentinels: &Sentinels) -> Result<PlanRow> {
    let p = denoiser.prefix.len();
    let e = usize::from(eos);
    match (&denoiser.kind, budget) {
        (Kind::SpanCorruption(params), Budget::EncoderDecoder { inputs, targets }) => {
            plan_span_corruption(inputs, params, targets, p, eos, Some(sentinels))
        }
        (Kind::SpanCorruption(params), Budget::Decoder { sequence }) => {
            let fits = |raw: usize| -> Result<bool> {
                let (i, t, ..) = span_lengths(raw, params, p, e, Some(sentinels))?;
                Ok(i + t <= sequence)
            };
            let raw = largest(MAX_RAW, fits)?.filter(|&r| r > 0).ok_or_else(|| too_small("sequence_length", sequence, p))?;
            let (i, t, spans, used) = span_lengths(raw, params, p, e, Some(sentinels))?;
            sentinels.admit(spans, used - spans)?;
            Ok(PlanRow { raw_length: raw, inputs_length: i, targets_length: t, spans, sentinels: used })
        }
        (Kind::PrefixLm { suffix_density }, budget) => {
            // T5's prefix_lm: the split leaves at least one target token, so inputs use at
            // most raw − 1 + EOS (one slot short of the budget, as T5's 511 at 512).
            let (room, targets) = match budget {
                Budget::EncoderDecoder { inputs, targets } => (inputs.checked_sub(p + e), targets),
                Budget::Decoder { sequence } => (sequence.checked_sub(p + 2 * e), None),
            };
            let arg = if matches!(budget, Budget::Decoder { .. }) { "sequence_length" } else { "inputs_length" };
            let mut raw = room.filter(|&r| r >= 2).ok_or_else(|| too_small(arg, budget_len(budget), p))?;
            let max_targets = |raw: usize| raw - prefix_bounds(raw, *suffix_density).0 + e;
            if let Some(tl) = targets {
                while raw > 1 && max_targets(raw) > tl {
                    raw -= 1;
                }
                if max_targets(raw) > tl {
                    return Err(too_small("targets_length", tl, 0));
                }
            }
            Ok(PlanRow {
                raw_length: raw,
                inputs_length: p + raw - 1 + e,
                targets_length: max_targets(raw),
                spans: 0,
                sentinels: 0,
            })
        }
        (Kind::CausalLm, budget) => {
            let room = match budget {
                Budget::EncoderDecoder { inputs, targets } => {
                    if p + e > inputs {
                        return Err(too_small("inputs_length", inputs, p));
                    }
                    targets.unwrap_or(inputs).checked_sub(e)
                }
                Budget::Decoder { sequence } => sequence.checked_sub(p + 2 * e),
            };
            let arg = if matches!(budget, Budget::Decoder { .. }) { "sequence_length" } else { "targets_length" };
            let raw = room.filter(|&r| r >= 1).ok_or_else(|| too_small(arg, budget_len(budget), p))?;
            // Inputs hold the prompt and EOS only, in both families.
            Ok(PlanRow { raw_length: raw, inputs_length: p + e, targets_length: raw + e, spans: 0, sentinels: 0 })
        }
    }
}

const fn budget_len(b: Budget) -> usize {
    match b {
        Budget::EncoderDecoder { inputs, .. } => inputs,
        Budget::Decoder { sequence } => sequence,
    }
}

fn too_small(arg: &'static str, value: usize, prompt: usize) -> Error {
    Error::invalid(arg, value, format!("too small: no raw token fits with a prompt of {prompt} tokens plus EOS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(inputs: usize, r: f64, mu: f64) -> (usize, usize) {
        let p = SpanParams::new(r, mu, None, false).unwrap();
        let row = plan_span_corruption(inputs, &p, None, 0, true, None).unwrap();
        (row.raw_length, row.targets_length)
    }

    #[test]
    fn t5_helper_vectors() {
        assert_eq!(plan(512, 0.15, 3.0), (568, 114));
        assert_eq!(plan(64, 0.2, 2.0), (70, 22));
        assert_eq!(plan(64, 0.2, 1.0), (63, 27));
        assert_eq!(plan(512, 0.5, 3.0), (766, 512));
        assert_eq!(plan(512, 0.15, 8.0), (588, 100));
        assert_eq!(plan(512, 0.5, 8.0), (908, 512));
        assert_eq!(plan(512, 0.15, 64.0), (600, 92));
        assert_eq!(plan(512, 0.5, 64.0), (1006, 512));
        assert_eq!(plan(1024, 0.15, 3.0), (1137, 229));
        // The helper says (990, 512); at 990 the mask really gives 511 targets.
        assert_eq!(plan(512, 0.5, 32.0), (990, 511));
    }
}
