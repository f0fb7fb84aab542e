//! Length planning: the raw length that fills an output budget exactly.
//!
//! The planner counts with the same functions the denoisers use ([`SpanParams::counts`],
//! [`Sentinels::admit`], [`prefix_bounds`]), so planned lengths are produced lengths.

use crate::denoise::fim::{FIM_IDS, FimLoss};
use crate::denoise::infilling::InfillParams;
use crate::denoise::prefix::prefix_bounds;
use crate::denoise::sentinels::Sentinels;
use crate::denoise::spans::{SpanParams, lengths, span_lengths};
use crate::denoise::{Denoiser, Kind};
use crate::error::{Error, Result};

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

/// Largest `x` in `[lo, cap]` with `fits(x)`, for a `fits` monotone on that range; `None`
/// when not even `fits(lo)`.
fn largest<F: FnMut(usize) -> Result<bool>>(lo: usize, cap: usize, mut fits: F) -> Result<Option<usize>> {
    if !fits(lo)? {
        return Ok(None);
    }
    let mut step = 1usize;
    while lo + step <= cap && fits(lo + step)? {
        step = step.saturating_mul(2);
    }
    let (mut good, mut bad) = (lo + step / 2, (lo + step).min(cap + 1));
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if fits(mid)? { good = mid } else { bad = mid }
    }
    Ok(Some(good))
}

/// The longest row: a mask's run lengths are `u32`. The search stops here, and a budget
/// that would need more is refused.
const MAX_RAW: usize = u32::MAX as usize;

/// Refuses a budget longer than a row can be, naming it.
fn check_budget(arg: &'static str, value: usize) -> Result<()> {
    if value > MAX_RAW {
        return Err(Error::invalid(arg, value, "too large: rows are limited to 2**32 - 1 tokens"));
    }
    Ok(())
}

/// The shortest raw length from which `params` counts are valid: 1 when they always are
/// (a 1-token row has no noise), else the first length where `N` and `L − N` reach
/// `num_spans` (both only grow with `L`, so validity is monotone from 2 tokens on).
fn first_valid(params: &SpanParams) -> Result<usize> {
    if params.counts(2).is_ok() {
        return Ok(1);
    }
    params.counts(MAX_RAW)?; // never valid: report why
    let (mut bad, mut good) = (2usize, MAX_RAW);
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if params.counts(mid).is_ok() { good = mid } else { bad = mid }
    }
    Ok(good)
}

/// Noise counts below the longest fitting row that the search looks through for a row T5
/// can draw. Where some lengths are invalid (at r = 0.5, μ = 1 every L ≡ 3 mod 4 asks for
/// more spans than non-noise tokens) the next count down has one; where none of these has
/// one, valid rows are far shorter than the budget and refusing says more than a plan would.
const NOISE_COUNTS_SEARCHED: usize = 64;

/// The largest raw length whose row T5 can draw and whose `(inputs, targets)` pass `fits`
/// and `keep`: `None` when not even the shortest row fits, `MAX_RAW` when the budget does
/// not bound the row. `fits` must stay false for longer rows once it is false (output
/// lengths grow with the raw length); `keep` must hold from some length on among rows of
/// one noise count.
///
/// The search runs on drafted counts, whose lengths grow at every length, then steps down
/// to a row `counts` accepts. Rows with the same `N` differ in their non-noise tokens only:
/// `n ≤ L − N` and T5's targets ≤ inputs (`2N − L ≤ prompt`) hold from some length of that
/// `N` on, `n ≤ N` for all of them or none, so the longest row of each `N` decides.
fn largest_span_raw(
    params: &SpanParams,
    prompt: usize,
    eos: usize,
    sentinels: Option<&Sentinels>,
    fits: impl Fn((usize, usize)) -> bool,
    keep: impl Fn((usize, usize)) -> bool,
) -> Result<Option<usize>> {
    let first = first_valid(params)?;
    let drafted = |raw: usize| -> Result<(usize, usize)> {
        let (i, t, ..) = lengths(raw, params.counts_unchecked(raw), params, prompt, eos, sentinels)?;
        Ok((i, t))
    };
    let Some(top) = largest(first, MAX_RAW, |raw| Ok(fits(drafted(raw)?)))? else {
        return Ok(None);
    };
    if top >= MAX_RAW {
        return Ok(Some(top));
    }
    let mut raw = top;
    for _ in 0..NOISE_COUNTS_SEARCHED {
        if let Ok(counts) = params.counts(raw) {
            let (i, t, ..) = lengths(raw, counts, params, prompt, eos, sentinels)?;
            if fits((i, t)) && keep((i, t)) {
                return Ok(Some(raw));
            }
        }
        // Down to the longest row of the next noise count.
        let noise = params.counts_unchecked(raw).0;
        let (mut below, mut at) = (first - 1, raw);
        while at - below > 1 {
            let mid = below + (at - below) / 2;
            if params.counts_unchecked(mid).0 < noise { below = mid } else { at = mid }
        }
        if below < first {
            break;
        }
        raw = below;
    }
    Err(params.counts(top).err().unwrap_or_else(|| {
        Error::invalid(
            "noise_density",
            crate::error::real(params.noise_density),
            format!("no row T5 can draw near the {top}-token row keeps targets within inputs"),
        )
    }))
}

/// Which budget a row that fits nowhere runs into first, as an error that describes the
/// shortest row T5 can draw.
fn too_small_span(params: &SpanParams, budget: Budget, prompt_length: usize, eos: usize) -> Error {
    let shortest = first_valid(params).unwrap_or(1);
    let (i, t, ..) = span_lengths(shortest, params, prompt_length, eos, None).unwrap_or((usize::MAX, 0, 0, 0));
    let row = if shortest == 1 { "1 token".to_owned() } else { format!("{shortest} tokens") };
    let included = format!("prompt of {prompt_length} and EOS included");
    match budget {
        Budget::EncoderDecoder { inputs, targets: Some(tl) } if i <= inputs && t > tl => Error::invalid(
            "targets_length",
            tl,
            format!("too small: the shortest row ({row}) needs {t} target tokens (EOS included)"),
        ),
        Budget::EncoderDecoder { inputs, .. } => {
            Error::invalid("inputs_length", inputs, format!("too small: the shortest row ({row}) needs {i} inputs ({included})"))
        }
        Budget::Decoder { sequence } => Error::invalid(
            "sequence_length",
            sequence,
            format!("too small: the shortest row ({row}) needs {} tokens, {i} inputs and {t} targets ({included})", i + t),
        ),
    }
}

/// T5's `random_spans_helper` made exact: the largest raw length whose inputs (prompt and
/// EOS included) fit `inputs_length` and whose targets fit `targets_length` when given;
/// at `noise_density == 0.5` targets may not exceed inputs. Raw lengths whose counts T5's
/// mask cannot draw are skipped. Returns `(raw, targets)`.
pub fn plan_span_corruption(
    inputs_length: usize,
    params: &SpanParams,
    targets_length: Option<usize>,
    prompt_length: usize,
    eos: bool,
    sentinels: Option<&Sentinels>,
) -> Result<PlanRow> {
    check_budget("inputs_length", inputs_length)?;
    if let Some(tl) = targets_length {
        check_budget("targets_length", tl)?;
    }
    let eos = usize::from(eos);
    let fits = |(i, t): (usize, usize)| i <= inputs_length && targets_length.is_none_or(|tl| t <= tl);
    #[allow(clippy::float_cmp)] // T5's helper special-cases exactly 0.5
    let at_half = params.noise_density == 0.5;
    // The helper's rule at r = 0.5, recounted: targets may not outgrow inputs.
    let keep = |(i, t): (usize, usize)| !at_half || t <= i;
    let Some(raw) = largest_span_raw(params, prompt_length, eos, sentinels, fits, keep)? else {
        let budget = Budget::EncoderDecoder { inputs: inputs_length, targets: targets_length };
        return Err(too_small_span(params, budget, prompt_length, eos));
    };
    if raw >= MAX_RAW {
        let inputs_at = |raw| lengths(raw, params.counts_unchecked(raw), params, prompt_length, eos, None).map_or(0, |l| l.0);
        let grows = inputs_at(MAX_RAW) > inputs_at(MAX_RAW / 2);
        return Err(match targets_length {
            _ if grows => {
                Error::invalid("inputs_length", inputs_length, "too large: the raw length would exceed 2**32 - 1 tokens")
            }
            None => Error::invalid(
                "targets_length",
                "None",
                format!("noise_density={} never fills the inputs; give targets_length", params.noise_density),
            ),
            Some(tl) => Error::invalid("targets_length", tl, "too large: the raw length would exceed 2**32 - 1 tokens"),
        });
    }
    let (inputs_length, targets_length, spans, used) = span_lengths(raw, params, prompt_length, eos, sentinels)?;
    if let Some(s) = sentinels {
        s.admit(spans, used - spans)?;
    }
    Ok(PlanRow { raw_length: raw, inputs_length, targets_length, spans, sentinels: used })
}

/// Plans one denoiser for a budget.
pub fn plan_denoiser(denoiser: &Denoiser, budget: Budget, eos: bool, sentinels: &Sentinels) -> Result<PlanRow> {
    match budget {
        Budget::EncoderDecoder { inputs, targets } => {
            check_budget("inputs_length", inputs)?;
            if let Some(tl) = targets {
                check_budget("targets_length", tl)?;
            }
        }
        Budget::Decoder { sequence } => check_budget("sequence_length", sequence)?,
    }
    let p = denoiser.prefix.len();
    let e = usize::from(eos);
    match (&denoiser.kind, budget) {
        (Kind::SpanCorruption(params), Budget::EncoderDecoder { inputs, targets }) => {
            plan_span_corruption(inputs, params, targets, p, eos, Some(sentinels))
        }
        (Kind::SpanCorruption(params), Budget::Decoder { sequence }) => {
            let fits = |(i, t): (usize, usize)| i + t <= sequence;
            let raw = largest_span_raw(params, p, e, Some(sentinels), fits, |_| true)?
                .ok_or_else(|| too_small_span(params, budget, p, e))?;
            if raw >= MAX_RAW {
                return Err(Error::invalid(
                    "sequence_length",
                    sequence,
                    "too large: the raw length would exceed 2**32 - 1 tokens",
                ));
            }
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
                // Every split leaves at least one target token, plus EOS.
                if tl < 1 + e {
                    return Err(too_small("targets_length", tl, 0));
                }
                // The largest raw with room for its longest targets, without trying every
                // length: where `raw` overflows, `lo(raw) + tl − EOS < raw`, and a shorter
                // row, whose `lo` is no larger, fits only at or below that. So the jump
                // skips only rows that overflow and lands where the old one-by-one scan did.
                while max_targets(raw) > tl {
                    raw = prefix_bounds(raw, *suffix_density).0 + tl - e;
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
        (Kind::FillInTheMiddle(params), budget) => {
            // As the engine checks them, but for the output dtype, which it alone knows.
            for (arg, id) in params.ids() {
                sentinels.check_id(arg, id, i64::MAX)?;
            }
            // A row is the prompt, the three ids, the raw tokens and EOS (after the targets
            // only), however it is cut; inputs are longest with an empty middle, targets with
            // the whole row as middle. Encoder-decoder rows target the middle.
            let fits = |arg: &'static str, value: usize, room: Option<usize>| {
                room.filter(|&r| r >= 1).ok_or_else(|| {
                    Error::invalid(
                        arg,
                        value,
                        format!("too small: no raw token fits with a prompt of {p} tokens, the 3 FIM ids and EOS"),
                    )
                })
            };
            let (raw, loss) = match budget {
                Budget::EncoderDecoder { inputs, targets } => {
                    let by_inputs = fits("inputs_length", inputs, inputs.checked_sub(p + FIM_IDS))?;
                    let by_targets = targets.map(|tl| fits("targets_length", tl, tl.checked_sub(e))).transpose()?;
                    (by_targets.map_or(by_inputs, |t| t.min(by_inputs)), FimLoss::Middle)
                }
                Budget::Decoder { sequence } => {
                    (fits("sequence_length", sequence, sequence.checked_sub(p + FIM_IDS + e))?, params.loss)
                }
            };
            let (inputs_length, targets_length) = match loss {
                FimLoss::All => (p, FIM_IDS + raw + e),
                FimLoss::Middle => (p + FIM_IDS + raw, raw + e),
            };
            Ok(PlanRow { raw_length: raw, inputs_length, targets_length, spans: 0, sentinels: 0 })
        }
        (Kind::TextInfilling(params), budget) => plan_text_infilling(params, budget, p, e, sentinels),
    }
}

/// Text infilling's raw length: its inputs are at most the raw length (at most `N` spans,
/// each one mask id, replace `N` tokens), a maximum drawn whenever all `N` spans have length
/// 1 (or 0, then 1), and its targets are the raw length; so the largest raw length with
/// `prompt + raw + EOS` inputs and `raw + EOS` targets, or both in one decoder row. `spans`
/// is the most masks a row gets, `N`.
fn plan_text_infilling(params: &InfillParams, budget: Budget, p: usize, e: usize, sentinels: &Sentinels) -> Result<PlanRow> {
    // As the engine checks it, but for the output dtype, which it alone knows.
    sentinels.check_id("mask_id", params.mask_id, i64::MAX)?;
    let (raw, arg) = match budget {
        Budget::EncoderDecoder { inputs, targets } => {
            let room = inputs.checked_sub(p + e).filter(|&r| r >= 1).ok_or_else(|| too_small("inputs_length", inputs, p))?;
            match targets {
                Some(tl) => (room.min(tl.saturating_sub(e)), Some(tl)),
                None => (room, None),
            }
        }
        Budget::Decoder { sequence } => (sequence.saturating_sub(p + 2 * e) / 2, None),
    };
    if raw == 0 {
        return Err(match (budget, arg) {
            (_, Some(tl)) => too_small("targets_length", tl, 0),
            (b, _) => too_small("sequence_length", budget_len(b), p),
        });
    }
    Ok(PlanRow {
        raw_length: raw,
        inputs_length: p + raw + e,
        targets_length: raw + e,
        spans: params.noise_tokens(raw),
        sentinels: 0,
    })
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
    fn fim_counts_its_three_ids() {
        use crate::denoise::fim::FimParams;
        let sentinels = Sentinels::t5(32_000, 100, crate::Overflow::Error, true).unwrap();
        let fim = |loss| Denoiser::new(Kind::FillInTheMiddle(FimParams::new(5, 6, 7, 0.5, loss).unwrap()), vec![9, 9]).unwrap();
        let row = |d: &Denoiser, b| {
            let r = plan_denoiser(d, b, true, &sentinels).unwrap();
            (r.raw_length, r.inputs_length, r.targets_length)
        };
        let dec = Budget::Decoder { sequence: 512 };
        assert_eq!(row(&fim(FimLoss::All), dec), (506, 2, 510));
        assert_eq!(row(&fim(FimLoss::Middle), dec), (506, 511, 507));
        // Encoder-decoder rows target the middle, whatever the loss.
        let ed = Budget::EncoderDecoder { inputs: 512, targets: Some(114) };
        assert_eq!(row(&fim(FimLoss::All), ed), (113, 118, 114));
        let ed = Budget::EncoderDecoder { inputs: 512, targets: None };
        assert_eq!(row(&fim(FimLoss::All), ed), (507, 512, 508));
        let tiny = plan_denoiser(&fim(FimLoss::All), Budget::Decoder { sequence: 6 }, true, &sentinels).unwrap_err();
        assert!(tiny.to_string().starts_with("sequence_length=6: too small"), "{tiny}");
        let bad = Denoiser::new(Kind::FillInTheMiddle(FimParams::new(31_999, 6, 7, 0.5, FimLoss::All).unwrap()), vec![]).unwrap();
        let e = plan_denoiser(&bad, dec, true, &sentinels).unwrap_err().to_string();
        assert!(e.starts_with("prefix_id=31999: is the sentinel <extra_id_0>"), "{e}");
    }

    #[test]
    fn text_infilling_refuses_a_sentinel_as_its_mask_as_the_engine_does() {
        // Found by the planner fuzz target: the plan accepted what Engine::new refused.
        use crate::denoise::infilling::InfillParams;
        let sentinels = Sentinels::t5(32_000, 100, crate::Overflow::Error, true).unwrap();
        let infill = |mask| Denoiser::new(Kind::TextInfilling(InfillParams::new(0.3, 3.5, mask).unwrap()), vec![]).unwrap();
        let ed = Budget::EncoderDecoder { inputs: 512, targets: None };
        assert_eq!(plan_denoiser(&infill(5), ed, true, &sentinels).unwrap().raw_length, 511);
        let e = plan_denoiser(&infill(31_999), ed, true, &sentinels).unwrap_err().to_string();
        assert!(e.starts_with("mask_id=31999: is the sentinel <extra_id_0>"), "{e}");
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
        // The helper says (510, 512): it stops at 511, whose 256 spans T5's mask cannot draw
        // among 255 non-noise tokens, and steps back without recounting.
        assert_eq!(plan(512, 0.5, 1.0), (510, 511));
    }
}
