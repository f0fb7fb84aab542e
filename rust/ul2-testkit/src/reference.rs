//! The contract written out again, independently of the core's code: SPEC §2's counts and
//! output lengths, §3's prefix bounds, the T5 layout of a mask, the round trip through the
//! sentinels, and the joined stream of a corpus.

use ul2_core::Sentinels;
use ul2_core::rng::{Purpose, Stream};

/// SPEC §2's counts before T5's feasibility check: `N = clamp(round_f32(L·r), 1, L−1)`,
/// `n = max(1, round_f32(N/μ))` (or `num_spans`); `L < 2` or `r = 0` gives `(0, 0)`.
#[must_use]
pub fn spec_counts_unchecked(length: usize, r: f64, mu: f64, num_spans: Option<usize>) -> (usize, usize) {
    if r == 0.0 || length < 2 {
        return (0, 0);
    }
    let noise = ((length as f32 * r as f32).round_ties_even() as usize).clamp(1, length - 1);
    let spans = num_spans.unwrap_or_else(|| ((noise as f32 / mu as f32).round_ties_even() as usize).max(1));
    (noise, spans)
}

/// Whether T5's mask can draw the counts (`n <= N` and `n <= L − N`).
#[must_use]
pub fn spec_valid(length: usize, r: f64, mu: f64, num_spans: Option<usize>) -> bool {
    let (noise, spans) = spec_counts_unchecked(length, r, mu, num_spans);
    spans <= noise && spans <= length - noise
}

/// SPEC §2's counts, `None` where T5's mask cannot draw them.
#[must_use]
pub fn spec_counts(length: usize, r: f64, mu: f64, num_spans: Option<usize>) -> Option<(usize, usize)> {
    spec_valid(length, r, mu, num_spans).then(|| spec_counts_unchecked(length, r, mu, num_spans))
}

/// Output lengths `(inputs, targets)` of an unrolled span-corruption row of `raw` tokens
/// (prompt `p`, EOS `e`), whether T5 can draw its counts or not. No noise: the row stays
/// whole and the targets are T5's single sentinel.
#[must_use]
pub fn spec_lengths(raw: usize, r: f64, mu: f64, num_spans: Option<usize>, p: usize, e: usize) -> (usize, usize) {
    let (noise, spans) = spec_counts_unchecked(raw, r, mu, num_spans);
    let targets = if spans == 0 { usize::from(raw > 0) } else { noise + spans };
    (p + raw - noise + spans + e, targets + e)
}

/// SPEC §3's prefix-LM split range `[lo, hi]`.
#[must_use]
pub fn spec_prefix_bounds(length: usize, r: f64) -> (usize, usize) {
    if length <= 1 {
        return (0, 0);
    }
    let hi = length - 1;
    let scaled = ((1.0f32 - 2.0f32 * r as f32) * hi as f32).round_ties_even() as usize;
    (hi.min(scaled.max(1)), hi)
}

/// Maximal runs of a mask as `(is_noise, start, len)`.
#[must_use]
pub fn runs_of(mask: &[bool]) -> Vec<(bool, usize, usize)> {
    let mut out: Vec<(bool, usize, usize)> = Vec::new();
    for (i, &m) in mask.iter().enumerate() {
        match out.last_mut() {
            Some((v, _, len)) if *v == m => *len += 1,
            _ => out.push((m, i, 1)),
        }
    }
    out
}

/// The T5 layout of `tokens` under `mask`, from SPEC §2's description: inputs = clean
/// tokens with each noise run replaced by the next sentinel; targets = each sentinel then
/// its run; one more sentinel when the mask ends clean (or has no noise, L ≥ 1).
#[must_use]
pub fn reference_apply(tokens: &[i64], mask: &[bool], sentinels: &Sentinels) -> (Vec<i64>, Vec<i64>) {
    let (mut inputs, mut targets, mut k) = (Vec::new(), Vec::new(), 0usize);
    for (noise, start, len) in runs_of(mask) {
        let span = &tokens[start..start + len];
        if noise {
            inputs.push(sentinels.id(k));
            targets.push(sentinels.id(k));
            targets.extend_from_slice(span);
            k += 1;
        } else {
            inputs.extend_from_slice(span);
        }
    }
    if mask.last() == Some(&false) {
        targets.push(sentinels.id(k));
    }
    (inputs, targets)
}

/// Re-inserts each target span at its sentinel in `inputs` (SPEC §8.3), looking at ids
/// alone. Also checks that inputs and targets carry the same sentinels, `ids[0], ids[1], …`,
/// in the same order; the targets may end with one extra, empty sentinel span (the mask
/// ended clean).
pub fn reinsert(inputs: &[i64], targets: &[i64], sentinels: &Sentinels) -> Result<Vec<i64>, String> {
    let mut spans: Vec<(i64, Vec<i64>)> = Vec::new();
    for &t in targets {
        if sentinels.contains(t) {
            spans.push((t, Vec::new()));
        } else {
            spans.last_mut().ok_or_else(|| format!("targets start with non-sentinel {t}"))?.1.push(t);
        }
    }
    let in_sents: Vec<i64> = inputs.iter().copied().filter(|&t| sentinels.contains(t)).collect();
    let expected: Vec<i64> = (0..in_sents.len()).map(|k| sentinels.id(k)).collect();
    if in_sents != expected {
        return Err(format!("input sentinels {in_sents:?} are not ids[0..{}] in order", in_sents.len()));
    }
    let tgt_sents: Vec<i64> = spans.iter().map(|s| s.0).collect();
    match tgt_sents.len().checked_sub(in_sents.len()) {
        Some(0) => {}
        Some(1) if spans.last().is_some_and(|s| s.1.is_empty()) && tgt_sents.last() == Some(&sentinels.id(in_sents.len())) => {}
        _ => return Err(format!("target sentinels {tgt_sents:?} do not match input sentinels {in_sents:?}")),
    }
    if tgt_sents[..in_sents.len()] != in_sents[..] {
        return Err(format!("target sentinels {tgt_sents:?} differ in order from input sentinels {in_sents:?}"));
    }
    let mut out = Vec::with_capacity(inputs.len() + targets.len());
    let mut next = 0;
    for &t in inputs {
        if sentinels.contains(t) {
            if spans[next].1.is_empty() {
                return Err(format!("sentinel {t} in inputs replaces an empty span"));
            }
            out.extend_from_slice(&spans[next].1);
            next += 1;
        } else {
            out.push(t);
        }
    }
    Ok(out)
}

/// The documents of `tokens` cut at `offsets` (valid ones); `None`: one document.
#[must_use]
pub fn documents<'t, T>(tokens: &'t [T], offsets: Option<&[u64]>) -> Vec<&'t [T]> {
    match offsets {
        Some(off) => off.windows(2).map(|w| &tokens[w[0] as usize..w[1] as usize]).collect(),
        None => vec![tokens],
    }
}

/// The joined stream written out: documents with `sep` between them (none after the last),
/// and for each position the index of its token in the flat array (`None` for a separator).
#[must_use]
pub fn joined<T: Copy>(docs: &[&[T]], sep: Option<T>) -> (Vec<T>, Vec<Option<usize>>) {
    let (mut out, mut origin, mut flat) = (Vec::new(), Vec::new(), 0usize);
    for (j, d) in docs.iter().enumerate() {
        if let (true, Some(s)) = (j > 0, sep) {
            out.push(s);
            origin.push(None);
        }
        for &t in *d {
            out.push(t);
            origin.push(Some(flat));
            flat += 1;
        }
    }
    (out, origin)
}

/// Flat tokens and `[0, …, len]` offsets of `docs`.
#[must_use]
pub fn flatten<T: Copy>(docs: &[Vec<T>]) -> (Vec<T>, Vec<u64>) {
    let mut tokens = Vec::new();
    let mut offsets = vec![0u64];
    for d in docs {
        tokens.extend_from_slice(d);
        offsets.push(tokens.len() as u64);
    }
    (tokens, offsets)
}

/// `length` deterministic ordinary tokens in `[2, 2 + modulo)`, varied by `salt`.
#[must_use]
pub fn filler(length: usize, salt: u64, modulo: u64) -> Vec<i32> {
    let mut s = Stream::new(salt, length as u64, Purpose::NoiseSpans);
    (0..length).map(|_| 2 + s.below(modulo) as i32).collect()
}
