//! Mask application: a row's runs become its inputs (noise spans replaced by sentinels) and
//! targets (each span after its sentinel), T5's layout.

use crate::denoise::sentinels::Sentinels;
use crate::denoise::spans::Runs;
use crate::error::{Error, Result, Where};

/// Lengths `(inputs, targets)` that [`apply_runs`] writes for `runs` (no EOS, no prompt).
#[must_use]
pub fn applied_lengths(runs: &Runs, length: usize) -> (usize, usize) {
    let noise_runs = runs.noise_runs();
    let mut noise = 0usize;
    let mut is_noise = runs.first_is_noise;
    for &l in &runs.lengths {
        if is_noise {
            noise += l as usize;
        }
        is_noise = !is_noise;
    }
    let trailing = usize::from(runs.ends_clean());
    (length - noise + noise_runs, noise + noise_runs + trailing)
}

/// Writes inputs and targets for `tokens` under `runs` into `inputs` and `targets`, whose
/// lengths must be those [`applied_lengths`] gives (every position is written).
///
/// Layout: inputs are the non-noise tokens with each noise run replaced by the next
/// sentinel; targets are each of those sentinels followed by the run it replaced, so
/// sentinel `k` marks the same run on both sides even when the mask starts with noise
/// (T5 misaligns that case). When the mask ends clean the targets end with one more
/// sentinel, as T5's `nonnoise_span_to_unique_sentinel` does: a clean row gives `[S0]`.
/// For masks that start clean this is exactly T5's output.
pub fn apply_runs<T: crate::Token, O: crate::OutToken>(
    tokens: &[T],
    runs: &Runs,
    sentinels: &Sentinels,
    inputs: &mut [O],
    targets: &mut [O],
) -> (usize, usize) {
    let (mut pos, mut i, mut t, mut k) = (0usize, 0usize, 0usize, 0usize);
    let mut is_noise = runs.first_is_noise;
    for &len in &runs.lengths {
        let len = len as usize;
        if is_noise {
            let s = O::from_i64(sentinels.id(k));
            k += 1;
            inputs[i] = s;
            i += 1;
            targets[t] = s;
            copy_run::<NOISE_COPY, _, _>(tokens, pos, len, targets, t + 1);
            t += len + 1;
        } else {
            copy_run::<CLEAN_COPY, _, _>(tokens, pos, len, inputs, i);
            i += len;
        }
        pos += len;
        is_noise = !is_noise;
    }
    if runs.ends_clean() {
        targets[t] = O::from_i64(sentinels.id(k));
        t += 1;
    }
    debug_assert_eq!((i, t), (inputs.len(), targets.len()));
    (i, t)
}

/// Fixed copy widths of [`copy_run`]: almost all noise runs (mean 3 in T5's preset) fit
/// the first, most clean runs (mean about 17) the second. Tuned on the T5 preset (criterion
/// `denoise_batch`): 16/32 beat 8/32, 8/64 and 16/64; longer spans (X denoisers) take the
/// exact path.
const NOISE_COPY: usize = 16;
const CLEAN_COPY: usize = 32;

/// Copies `tokens[pos..pos + len]` to `dst[at..at + len]`.
///
/// Span corruption copies many short runs (T5's preset: 28 noise and 28 clean runs per
/// row), where a libc `memmove` call per run costs more than the copy, and so does a
/// loop whose varying trip count the branch predictor keeps missing. So a run of at most
/// `W` tokens is copied as exactly `W` tokens, branch-free, even past the run's end
/// wherever both slices have room: `dst` is exactly the row's output and runs are written
/// in order, so the excess is overwritten by the next run or sentinel. Longer runs, and
/// runs near either end, are copied exactly.
#[allow(clippy::inline_always)] // measured: as a call per run it cost as much as the copy
#[inline(always)]
fn copy_run<const W: usize, T: crate::Token, O: crate::OutToken>(tokens: &[T], pos: usize, len: usize, dst: &mut [O], at: usize) {
    if len <= W && pos + W <= tokens.len() && at + W <= dst.len() {
        let s: &[T; W] = tokens[pos..pos + W].try_into().expect("W tokens");
        let d: &mut [O; W] = (&mut dst[at..at + W]).try_into().expect("W slots");
        *d = s.map(|t| O::from_i64(t.to_i64()));
    } else {
        convert(&tokens[pos..pos + len], &mut dst[at..at + len]);
    }
}

/// Element-wise copy with widening/narrowing; compiles to a `memcpy` or a vector loop.
#[inline]
pub(crate) fn convert<T: crate::Token, O: crate::OutToken>(src: &[T], dst: &mut [O]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = O::from_i64(s.to_i64());
    }
}

/// `(inputs, targets)` of `tokens` under `mask` (`true` = noise) in T5's sentinel layout,
/// EOS appended to both when given: the primitive behind `ul2.apply_mask`.
pub fn apply_mask<T: crate::Token, O: crate::OutToken>(
    tokens: &[T],
    mask: &[bool],
    s: &Sentinels,
    eos: Option<i64>,
) -> Result<(Vec<O>, Vec<O>)> {
    if mask.len() != tokens.len() {
        return Err(Error::Invalid {
            arg: "mask",
            value: format!("<{} values>", mask.len()),
            reason: format!("must have one value per token ({} tokens)", tokens.len()),
        });
    }
    s.check_tokens(tokens, O::MAX, "tokens")?;
    s.check_fits(O::MAX, "outputs take the width of tokens: pass int64 tokens")?;
    if let Some(e) = eos {
        s.check_id("eos_id", e, O::MAX)?;
    }
    let runs = Runs::from_mask(mask)?;
    let (li, lt) = applied_lengths(&runs, tokens.len());
    let used = runs.noise_runs() + usize::from(runs.ends_clean());
    if s.admit(used, 0)? != used {
        return Err(Error::SentinelOverflow {
            where_: Where::arg("sentinels"),
            spans: used,
            needed: used,
            available: s.count(),
            fix: "on_overflow='cap' cannot shorten a given mask; give more sentinel ids or pass on_overflow='t5'",
        });
    }
    let e = usize::from(eos.is_some());
    let zero = O::from_i64(0);
    let (mut inputs, mut targets) =
        (crate::alloc::filled(li + e, zero, "tokens")?, crate::alloc::filled(lt + e, zero, "tokens")?);
    apply_runs(tokens, &runs, s, &mut inputs[..li], &mut targets[..lt]);
    if let Some(e) = eos {
        inputs[li] = O::from_i64(e);
        targets[lt] = O::from_i64(e);
    }
    Ok((inputs, targets))
}
