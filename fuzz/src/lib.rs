//! The checks behind the cargo-fuzz targets in `fuzz_targets/`: arbitrary bytes become
//! parameters (clamped to sizes that keep one execution fast), the core runs, and the SPEC §8
//! invariants are asserted. Any `Err` the core returns must be a caller's-mistake variant,
//! never `Error::Internal`; any panic is a finding.
//!
//! Targets: [`mask_sampling`] (counts, `noise_mask`, `SpanScratch::layout`, `Composer`),
//! [`mask_application`] (`check_tokens`, `admit`, `apply_runs` round trip), [`planner`]
//! (`plan_denoiser` lengths are produced and maximal), [`sample_index`]
//! (`SampleIndex::build` tiling, boundaries, tail; `Corpus::slice`), [`packing`]
//! (`pack_bins` + `denoise_rows`: next-fit, order, fit, per-example equality, formats).
#![allow(
    clippy::float_cmp,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::missing_panics_doc,
    clippy::many_single_char_names,
    clippy::too_many_lines
)]

use arbitrary::Unstructured;
use ul2_core::rng::{Purpose, Stream};
use ul2_core::{
    Budget, Composer, Corpus, Denoised, Denoiser, Documents, Error, Family, Format, Kind, Layout, Mixture, Options, OutToken,
    Overflow, PlanRow, RowConfig, RowScratch, Rows, Runs, SampleIndex, Sentinels, SpanParams, SpanScratch, applied_lengths,
    apply_runs, denoise_row, denoise_rows, example_bounds, noise_mask, pack_bins, plan_denoiser,
};

// ---------------------------------------------------------------------------------------------
// Bytes -> parameters
// ---------------------------------------------------------------------------------------------

/// A thin reader over the fuzzer's bytes; every draw succeeds (zeros once the bytes run out).
pub struct Input<'a>(Unstructured<'a>);

impl<'a> Input<'a> {
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self(Unstructured::new(data))
    }
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
    /// Mostly a valid density in `[0, 1]` (fine steps and the special values), sometimes
    /// anything at all (NaN, infinities, negatives, raw bits).
    pub fn density(&mut self) -> f64 {
        match self.int(0, 15) {
            0 => 0.0,
            1 => 0.5,
            2 => 1.0,
            3 => f64::from_bits(self.u64()),
            4 => [f64::NAN, f64::INFINITY, -0.1, 1.5, -0.0, 1e-300, f64::MIN_POSITIVE][self.size(0, 6)],
            _ => self.int(0, 1 << 20) as f64 / f64::from(1 << 20),
        }
    }
    /// Mostly a valid mean span length, sometimes anything at all.
    pub fn mean_span(&mut self) -> f64 {
        match self.int(0, 15) {
            0 => f64::from_bits(self.u64()),
            1 => [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300, 1e300, 0.5][self.size(0, 6)],
            2 => self.int(1, 64) as f64,
            _ => self.int(1, 1 << 16) as f64 / 256.0,
        }
    }
    pub fn overflow(&mut self) -> Overflow {
        [Overflow::Error, Overflow::Cap, Overflow::T5][self.size(0, 2)]
    }
}

/// An error from the core must be the caller's mistake, never a broken invariant.
#[track_caller]
pub fn not_internal(e: &Error) {
    assert!(!matches!(e, Error::Internal(_)), "internal error reached: {e}");
    assert!(!e.to_string().is_empty());
}

/// `(inputs, targets)` budgets' vocabulary: sentinel ids sit at the top of a 32k vocabulary,
/// ordinary tokens (`2 + i % 997`) and prompts (`< 1000`) far below them.
fn t5_sentinels(u: &mut Input<'_>) -> Sentinels {
    let count = u.size(1, 300);
    Sentinels::t5(32_000 + count as i64, count, u.overflow(), true).expect("valid sentinels")
}

/// Longest row (raw tokens or output width) the targets denoise; plans beyond it are
/// checked against the budget only.
const MAX_ROW: usize = 1 << 16;

fn filler(length: usize, salt: u64) -> Vec<i32> {
    (0..length).map(|i| 2 + ((i as u64).wrapping_add(salt) % 997) as i32).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Mask sampling
// ---------------------------------------------------------------------------------------------

/// SPEC §2/§8.1: `span_counts` follow T5's float32 formula; `noise_mask` has exactly `N`
/// noise tokens in `n` alternating non-empty spans starting clean and ending noisy; with
/// `random_roll` it is exactly `tf.roll` of the unrolled mask by the keyed offset (so `n` or
/// `n + 1` runs); `SpanScratch::layout` is a pure function of its arguments (a scratch that
/// drew other layouts before gives the same runs) and agrees with `Runs::from_mask`;
/// `Composer::compose` gives `parts` positive parts summing to `total`.
pub fn mask_sampling(data: &[u8]) {
    let mut u = Input::new(data);
    let length = if u.bool() { u.size(0, 64) } else { u.size(0, 1 << 14) };
    let r = u.density();
    let mu = u.mean_span();
    let num_spans = u.bool().then(|| u.size(0, 300));
    let roll = u.bool();
    let (seed, key) = (u.u64(), u.u64());

    // Composer, on its own.
    let total = u.size(1, 1 << 14);
    let parts = u.size(1, total);
    let mut out = Vec::new();
    Composer::default().compose(total, parts, &mut Stream::new(seed, key, Purpose::NoiseSpans), &mut out);
    assert_eq!(out.len(), parts);
    assert!(out.iter().all(|&p| p >= 1));
    assert_eq!(out.iter().map(|&p| p as usize).sum::<usize>(), total);

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
    let counts = match params.counts(length) {
        Ok(c) => c,
        Err(e) => {
            not_internal(&e);
            assert!(noise_mask(length, &params, seed, key).is_err());
            return;
        }
    };
    // The counts, restated from SPEC §2.
    let (noise, spans) = counts;
    if r == 0.0 || length < 2 {
        assert_eq!(counts, (0, 0));
    } else {
        let n_tokens = ((length as f32 * r as f32).round_ties_even() as usize).clamp(1, length - 1);
        assert_eq!(noise, n_tokens);
        let n_spans = num_spans.unwrap_or_else(|| ((n_tokens as f32 / mu as f32).round_ties_even() as usize).max(1));
        assert_eq!(spans, n_spans);
        assert!(spans >= 1 && spans <= noise && spans <= length - noise);
    }

    let mask = noise_mask(length, &params, seed, key).expect("counts were valid");
    assert_eq!(mask.len(), length);
    assert_eq!(mask.iter().filter(|&&m| m).count(), noise);
    let runs = Runs::from_mask(&mask).expect("a small mask");
    assert!(runs.lengths.iter().all(|&l| l > 0));
    assert_eq!(runs.lengths.iter().map(|&l| l as usize).sum::<usize>(), length);

    // The layout through a scratch that drew something else first.
    let mut scratch = SpanScratch::default();
    let mut drawn = Runs::default();
    scratch.layout(64, (20, 7), true, seed ^ 1, key.wrapping_add(1), &mut drawn).expect("a small row");
    scratch.layout(length, counts, roll, seed, key, &mut drawn).expect("a small row");
    assert_eq!(drawn, runs, "layout differs from the mask's runs (scratch reuse?)");

    let unrolled = noise_mask(length, &SpanParams { random_roll: false, ..params }, seed, key).expect("valid");
    if spans == 0 {
        assert!(!mask.contains(&true));
        assert_eq!(mask, unrolled);
        return;
    }
    let u_runs = Runs::from_mask(&unrolled).expect("a small mask");
    assert!(!u_runs.first_is_noise, "the unrolled mask starts clean");
    assert!(!u_runs.ends_clean(), "the unrolled mask ends with noise");
    assert_eq!(u_runs.noise_runs(), spans);
    assert_eq!(u_runs.lengths.len(), 2 * spans);
    if roll {
        let offset = Stream::new(seed, key, Purpose::Roll).below(length as u64) as usize;
        for (i, &m) in mask.iter().enumerate() {
            assert_eq!(m, unrolled[(i + length - offset) % length], "not tf.roll by {offset} at {i}");
        }
        let split = mask[0] && mask[length - 1];
        assert_eq!(runs.noise_runs(), spans + usize::from(split));
    } else {
        assert_eq!(mask, unrolled);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Mask application
// ---------------------------------------------------------------------------------------------

/// SPEC §2/§8.3 for any mask and tokens: `check_tokens` refuses exactly the negative,
/// out-of-vocabulary, too-wide and (when checked) colliding ids, naming a real culprit;
/// `admit` refuses exactly what the policy refuses; `apply_runs` writes `applied_lengths`,
/// the T5 layout run by run, and re-inserting targets at their sentinels gives the tokens.
pub fn mask_application(data: &[u8]) {
    let mut u = Input::new(data);
    if u.bool() { application::<i32>(&mut u) } else { application::<i64>(&mut u) }
}

fn application<O: OutToken>(u: &mut Input<'_>) {
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
    let tokens: Vec<i64> = (0..length)
        .map(|_| match (wild, u.int(0, 63)) {
            (true, 0) => -(u.int(1, 3) as i64),
            (true, 1) => u.int(0, i64::MAX as u64) as i64,
            (true, 2) => i64::from(i32::MAX) + u.int(0, 3) as i64,
            _ => u.int(2, 6000) as i64,
        })
        .collect();
    // A mask made of runs (realistic) or of raw bits.
    let mut mask = Vec::with_capacity(length);
    let mut noisy = u.bool();
    while mask.len() < length {
        let run = if u.bool() { 1 } else { u.size(1, 12) };
        mask.extend(std::iter::repeat_n(noisy, run.min(length - mask.len())));
        noisy = !noisy;
    }

    let limit = sentinels.vocab_size().map_or(O::MAX, |v| (v - 1).min(O::MAX));
    match sentinels.check_tokens(&tokens, O::MAX, "tokens") {
        Err(e) => {
            not_internal(&e);
            match e {
                Error::TokenOutOfRange { position, token, .. } => {
                    assert_eq!(tokens[position], token);
                    assert!(token < 0 || token > limit, "{token} refused but in [0, {limit}]");
                }
                Error::SentinelCollision { position, token, .. } => {
                    assert_eq!(tokens[position], token);
                    assert!(check && sentinels.contains(token));
                }
                other => panic!("unexpected error from check_tokens: {other}"),
            }
            return;
        }
        Ok(()) => {
            for &t in &tokens {
                assert!((0..=limit).contains(&t), "{t} accepted but outside [0, {limit}]");
                assert!(!(check && sentinels.contains(t)), "collision {t} accepted");
            }
        }
    }

    let runs = Runs::from_mask(&mask).expect("a small mask");
    let mut again = Vec::new();
    runs.write_mask(&mut again);
    assert_eq!(again, mask);
    let (li, lt) = applied_lengths(&runs, length);
    let used = runs.noise_runs() + usize::from(runs.ends_clean());
    match sentinels.admit(used, 0) {
        Err(e) => {
            not_internal(&e);
            assert!(matches!(e, Error::SentinelOverflow { .. }));
            assert!(used > sentinels.count());
            return;
        }
        Ok(n) if n != used => {
            assert_eq!(sentinels.on_overflow, Overflow::Cap);
            assert!(n <= sentinels.count() && used > sentinels.count());
            return;
        }
        Ok(_) => {}
    }
    if used > sentinels.count() {
        assert_eq!(sentinels.on_overflow, Overflow::T5);
    }
    let ids: Vec<i64> = (0..used).map(|k| sentinels.id(k)).collect();
    assert!(ids.iter().all(|&id| id >= 0), "admitted sentinel ids below 0: {ids:?}");
    if ids.iter().any(|&id| id > O::MAX) {
        return; // the Python layer refuses such sentinels for the output dtype first
    }
    let (mut inputs, mut targets) = (vec![O::from_i64(-7); li], vec![O::from_i64(-7); lt]);
    assert_eq!(apply_runs(&tokens, &runs, &sentinels, &mut inputs, &mut targets), (li, lt));
    let out = |v: &[O]| -> Vec<i64> { v.iter().map(|&x| format!("{x:?}").parse::<i64>().expect("int")).collect() };
    let (inputs, targets) = (out(&inputs), out(&targets));

    // The layout, run by run (whatever the ids are).
    let (mut i, mut t, mut k, mut pos) = (0usize, 0usize, 0usize, 0usize);
    let mut is_noise = runs.first_is_noise;
    for &len in &runs.lengths {
        let len = len as usize;
        if is_noise {
            assert_eq!(inputs[i], ids[k]);
            assert_eq!(targets[t], ids[k]);
            assert_eq!(&targets[t + 1..=t + len], &tokens[pos..pos + len]);
            i += 1;
            t += len + 1;
            k += 1;
        } else {
            assert_eq!(&inputs[i..i + len], &tokens[pos..pos + len]);
            i += len;
        }
        pos += len;
        is_noise = !is_noise;
    }
    if runs.ends_clean() {
        assert_eq!(targets[t], ids[k]);
        t += 1;
    }
    assert_eq!((i, t), (li, lt));
    assert!(length > 0 || (li, lt) == (0, 0));
    assert_eq!(li + lt, length + 2 * runs.noise_runs() + usize::from(runs.ends_clean()));

    // The round trip by ids alone (SPEC §8.3), where ids cannot be confused with tokens.
    // (Past the last id, policy "t5" counts down and may meet an id already used.)
    if !(used <= sentinels.count() && tokens.iter().all(|&t| !sentinels.contains(t))) {
        return;
    }
    let mut blocks: Vec<(i64, Vec<i64>)> = Vec::new();
    for &x in &targets {
        if sentinels.contains(x) {
            blocks.push((x, Vec::new()));
        } else {
            blocks.last_mut().expect("targets start with a sentinel").1.push(x);
        }
    }
    let marks: Vec<i64> = inputs.iter().copied().filter(|&x| sentinels.contains(x)).collect();
    assert_eq!(marks, ids[..runs.noise_runs()]);
    assert_eq!(blocks.iter().map(|b| b.0).collect::<Vec<_>>(), ids);
    let mut raw = Vec::with_capacity(length);
    let mut next = 0;
    for &x in &inputs {
        if sentinels.contains(x) {
            assert_eq!(blocks[next].0, x);
            raw.extend_from_slice(&blocks[next].1);
            next += 1;
        } else {
            raw.push(x);
        }
    }
    assert_eq!(raw, tokens, "round trip");
}

// ---------------------------------------------------------------------------------------------
// 3. Planner
// ---------------------------------------------------------------------------------------------

/// A denoiser from bytes (prompt of up to 8 ids below 1000), or `None` where the core refuses
/// it (checked not to be an internal error).
fn denoiser(u: &mut Input<'_>) -> Option<Denoiser> {
    let prefix: Vec<i64> = (0..u.size(0, 8)).map(|_| u.int(2, 999) as i64).collect();
    let kind = match u.int(0, 5) {
        0 => Kind::CausalLm,
        1 => Kind::PrefixLm { suffix_density: if u.bool() { u.density() } else { [0.5, 0.25, 0.0][u.size(0, 2)] } },
        _ => {
            let r = if u.bool() { [0.15, 0.5, 0.25, 0.8][u.size(0, 3)] } else { u.density() };
            let mu = if u.bool() { [3.0, 8.0, 32.0, 64.0, 1.0][u.size(0, 4)] } else { u.mean_span() };
            let n = (u.int(0, 7) == 0).then(|| u.size(1, 40));
            match SpanParams::new(r, mu, n, u.int(0, 3) == 0) {
                Ok(p) => Kind::SpanCorruption(p),
                Err(e) => {
                    not_internal(&e);
                    return None;
                }
            }
        }
    };
    match Denoiser::new(kind, prefix) {
        Ok(d) => Some(d),
        Err(e) => {
            not_internal(&e);
            None
        }
    }
}

fn budget(u: &mut Input<'_>) -> Budget {
    if u.bool() {
        Budget::EncoderDecoder { inputs: u.size(0, 2048), targets: u.bool().then(|| u.size(0, 2048)) }
    } else {
        Budget::Decoder { sequence: u.size(0, 4096) }
    }
}

/// `(width0, width1)` of output rows for a budget and its plans, as the bindings size them.
fn widths(budget: Budget, plans: &[PlanRow]) -> Layout {
    match budget {
        Budget::EncoderDecoder { inputs, targets } => Layout {
            family: Family::EncoderDecoder,
            widths: (inputs, targets.unwrap_or_else(|| plans.iter().map(|p| p.targets_length).max().unwrap_or(0))),
        },
        Budget::Decoder { sequence } => Layout { family: Family::Decoder, widths: (sequence, 0) },
    }
}

/// SPEC §8.4: for any denoiser, budget, EOS and sentinel policy, `plan_denoiser` either
/// refuses (a caller's-mistake error) or gives a raw length whose rows, for any key, are
/// produced within the budget with exactly the planned lengths (at most, for the
/// random-length prefix LM and rolled masks); span corruption's and causal LM's raw lengths
/// are maximal: one more token no longer fits.
pub fn planner(data: &[u8]) {
    let mut u = Input::new(data);
    let Some(d) = denoiser(&mut u) else { return };
    let budget = budget(&mut u);
    let eos = u.bool();
    let sentinels = t5_sentinels(&mut u);
    let row = match plan_denoiser(&d, budget, eos, &sentinels) {
        Ok(r) => r,
        Err(e) => return not_internal(&e),
    };
    let p = d.prefix.len();
    let e = usize::from(eos);
    assert!(row.raw_length >= 1);
    match budget {
        Budget::EncoderDecoder { inputs, targets } => {
            assert!(row.inputs_length <= inputs, "{row:?} over inputs {inputs}");
            assert!(targets.is_none_or(|t| row.targets_length <= t), "{row:?} over targets {targets:?}");
        }
        // Prefix LM's lengths are separate maxima (long inputs, or long targets); a row holds both.
        Budget::Decoder { sequence } if matches!(d.kind, Kind::PrefixLm { .. }) => {
            assert!(p + row.raw_length + 2 * e <= sequence, "{row:?} > {sequence}");
        }
        Budget::Decoder { sequence } => assert!(row.inputs_length + row.targets_length <= sequence, "{row:?} > {sequence}"),
    }
    let layout = widths(budget, &[row]);
    if row.raw_length + layout.widths.1 > MAX_ROW {
        return; // legal (e.g. noise_density ~ 1 without targets_length), too big to fuzz fast
    }
    let mixture = Mixture::new(vec![(d.clone(), 1.0)]).expect("one denoiser");
    let max_raw = [row.raw_length];
    let cfg = RowConfig { mixture: &mixture, sentinels: &sentinels, eos_id: eos.then_some(1), seed: u.u64(), max_raw: &max_raw };
    let tokens = filler(row.raw_length, u.u64());
    let exact = match &d.kind {
        Kind::SpanCorruption(params) => !params.random_roll,
        Kind::CausalLm => true,
        Kind::PrefixLm { .. } => false,
    };
    for _ in 0..u.size(1, 4) {
        let key = u.u64();
        let out = denoise_rows(&cfg, &Rows::Ragged(vec![&tokens[..]]), &[key], &[0, 1], layout, 0i32)
            .unwrap_or_else(|e| panic!("planned row refused: {e} ({row:?}, {budget:?}, {d:?})"));
        let seg = out.segments[0];
        let (li, lt) = (seg.inputs as usize, seg.targets as usize);
        if exact {
            assert_eq!((li, lt), (row.inputs_length, row.targets_length), "{d:?} {budget:?}");
        } else {
            assert!(li <= row.inputs_length && lt <= row.targets_length, "{li},{lt} vs {row:?}");
        }
        if let Kind::PrefixLm { .. } | Kind::CausalLm = d.kind {
            assert_eq!(li + lt, p + row.raw_length + 2 * e);
        }
        assert_eq!(example_bounds(&cfg, row.raw_length, key).map(|b| b.0), Ok(0));
    }
    // Maximality: one more raw token does not fit (where bounds are exact or an upper bound
    // that the planner itself uses).
    let at_half = matches!(&d.kind, Kind::SpanCorruption(params) if params.noise_density == 0.5);
    if matches!(d.kind, Kind::PrefixLm { .. }) || at_half {
        return;
    }
    let free = RowConfig { max_raw: &[], ..cfg };
    let Ok((_, i1, t1)) = example_bounds(&free, row.raw_length + 1, 0) else {
        return;
    };
    let fits = match budget {
        // Causal LM's targets default to the inputs budget (the whole row is the target).
        Budget::EncoderDecoder { inputs, targets } => {
            let targets = targets.or(matches!(d.kind, Kind::CausalLm).then_some(inputs));
            i1 <= inputs && targets.is_none_or(|t| t1 <= t)
        }
        Budget::Decoder { sequence } => i1 + t1 <= sequence,
    };
    assert!(!fits, "raw {} + 1 still fits ({i1}, {t1}) in {budget:?}: {d:?}", row.raw_length);
}

// ---------------------------------------------------------------------------------------------
// 4. Sample index
// ---------------------------------------------------------------------------------------------

/// SPEC §1/§8.6: over any documents, mixture rates and raw lengths, `SampleIndex::build`
/// either refuses bad offsets or tiles the stream: contiguous samples from 0, each of its
/// denoiser's raw length (`concat`) with the denoiser drawn from `(seed, k)`, a tail shorter
/// than the next draw's length; in `respect` mode no sample crosses a boundary and only a
/// document's last sample is short; `Corpus::slice` is the joined stream's slice.
pub fn sample_index(data: &[u8]) {
    let mut u = Input::new(data);
    let n_docs = u.size(0, 40);
    let mut tokens: Vec<u16> = Vec::new();
    let mut offsets: Vec<u64> = vec![0];
    for _ in 0..n_docs {
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
        // Broken offsets: must be refused, not trusted.
        let i = u.size(0, offsets.len() - 1);
        offsets[i] = u.int(0, tokens.len() as u64 + 5);
    }
    let whole = u.bool();
    let separator = u.bool().then_some(3u16);
    let documents = if u.bool() { Documents::Concat } else { Documents::Respect };
    let n = u.size(1, 5);
    let entries: Vec<(Denoiser, f64)> =
        (0..n).map(|_| (Denoiser::new(Kind::CausalLm, vec![]).expect("ok"), u.int(0, 4) as f64)).collect();
    let raw_lengths: Vec<usize> = (0..n).map(|_| if u.bool() { u.size(1, 8) } else { u.size(1, 700) }).collect();
    let seed = u.u64();
    let mixture = match Mixture::new(entries) {
        Ok(m) => m,
        Err(e) => return not_internal(&e),
    };
    let corpus = Corpus { tokens: (&tokens).into(), doc_offsets: (!whole).then_some(&offsets[..]), separator };
    let index = match SampleIndex::build(&corpus, &mixture, &raw_lengths, documents, seed) {
        Ok(i) => i,
        Err(e) => {
            not_internal(&e);
            let ok_offsets = whole
                || (offsets[0] == 0
                    && *offsets.last().expect("non-empty") == tokens.len() as u64
                    && offsets.windows(2).all(|w| w[0] <= w[1]));
            let sep_conflict = documents == Documents::Respect && separator.is_some();
            assert!(!ok_offsets || sep_conflict, "valid corpus refused: {e}");
            return;
        }
    };
    let valid_offsets = whole
        || (offsets[0] == 0
            && *offsets.last().expect("non-empty") == tokens.len() as u64
            && offsets.windows(2).all(|w| w[0] <= w[1]));
    assert!(valid_offsets, "broken doc_offsets accepted: {offsets:?} for {} tokens", tokens.len());
    let stream = corpus.stream_len();
    // The joined stream, written out.
    let mut joined: Vec<u16> = Vec::new();
    match (separator, corpus.doc_offsets) {
        (Some(s), Some(off)) => {
            for (j, w) in off.windows(2).enumerate() {
                if j > 0 {
                    joined.push(s);
                }
                joined.extend_from_slice(&tokens[w[0] as usize..w[1] as usize]);
            }
        }
        _ => joined.extend_from_slice(&tokens),
    }
    assert_eq!(joined.len() as u64, stream);

    let mut at = 0u64;
    let mut scratch = Vec::new();
    for k in 0..index.len() {
        let (a, b) = index.span(k);
        assert_eq!(a, at, "sample {k} does not start where {} ended", k.saturating_sub(1));
        assert!(b > a, "empty sample {k}");
        let d = index.denoiser(k);
        assert_eq!(d, mixture.choose(seed, k as u64));
        let raw = raw_lengths[d] as u64;
        match documents {
            Documents::Concat => assert_eq!(b - a, raw),
            Documents::Respect => {
                assert!(b - a <= raw);
                let off = corpus.doc_offsets.unwrap_or(&[0, tokens.len() as u64][..]).to_vec();
                let doc = off.partition_point(|&o| o <= a) - 1;
                let end = off[doc + 1..].iter().copied().find(|&o| o > a).expect("a document holds the sample");
                assert!(b <= end, "sample {k} ({a}, {b}) crosses the boundary {end}");
                assert!(b - a == raw || b == end, "short sample {k} not at its document's end");
            }
        }
        if k % 7 == 0 || k + 1 == index.len() {
            assert_eq!(
                corpus.slice(a, b, &mut scratch).expect("a small slice"),
                &joined[a as usize..b as usize],
                "slice of sample {k}"
            );
        }
        at = b;
    }
    assert_eq!(at + index.tail, stream, "samples plus tail cover the stream");
    match documents {
        Documents::Concat => {
            let next = raw_lengths[mixture.choose(seed, index.len() as u64)] as u64;
            assert!(index.tail < next, "tail {} would fit another sample of {next}", index.tail);
        }
        Documents::Respect => assert_eq!(index.tail, 0),
    }
    // Arbitrary slices of the joined stream.
    for _ in 0..u.size(0, 4) {
        let a = u.int(0, stream);
        let b = u.int(a, stream);
        assert_eq!(corpus.slice(a, b, &mut scratch).expect("a small slice"), &joined[a as usize..b as usize]);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Packing
// ---------------------------------------------------------------------------------------------

/// SPEC §5/§8.4/§8.6 for packed batches: `pack_bins` groups examples in order, next-fit,
/// each row within its widths, and refuses (naming a row) exactly the examples that fit no
/// row; `denoise_rows` then fills every row without error; each segment is the example's
/// own single-row output, in order, with its denoiser drawn from `(seed, key)`; padding is
/// `pad`; every format names arrays of the right shapes, with `cu_seqlens` ending at
/// `rows · width`.
pub fn packing(data: &[u8]) {
    let mut u = Input::new(data);
    let n_denoisers = u.size(1, 4);
    let mut entries = Vec::new();
    for _ in 0..n_denoisers {
        if let Some(d) = denoiser(&mut u) {
            entries.push((d, u.int(1, 4) as f64));
        }
    }
    let Ok(mixture) = Mixture::new(entries) else {
        return;
    };
    let budget = budget(&mut u);
    let eos = u.bool();
    let sentinels = t5_sentinels(&mut u);
    let mut plans = Vec::new();
    for d in mixture.denoisers() {
        match plan_denoiser(d, budget, eos, &sentinels) {
            Ok(r) => plans.push(r),
            Err(e) => return not_internal(&e),
        }
    }
    let layout = widths(budget, &plans);
    let max_raw: Vec<usize> = plans.iter().map(|p| p.raw_length).collect();
    let longest = *max_raw.iter().max().expect("a denoiser");
    if longest + layout.widths.1 > MAX_ROW {
        return; // e.g. noise_density ~ 1 without targets_length: legal, but too big to fuzz fast
    }
    let cfg = RowConfig { mixture: &mixture, sentinels: &sentinels, eos_id: eos.then_some(1), seed: u.u64(), max_raw: &max_raw };
    let n = u.size(1, 48);
    let rows: Vec<Vec<i32>> = (0..n)
        .map(|i| {
            let len = match u.int(0, 9) {
                0 => 0,
                1 => longest + u.size(0, 2), // too long for some denoisers
                _ => u.size(0, longest.min(600)),
            };
            filler(len, i as u64 * 31)
        })
        .collect();
    let keys: Vec<u64> =
        if u.bool() { (0..n as u64).map(|k| k + u.int(0, 3)).collect() } else { (0..n).map(|_| u.u64()).collect() };
    let source = Rows::Ragged(rows.iter().map(Vec::as_slice).collect());
    let pad = if u.bool() { 0i32 } else { 5 };

    let bins = match pack_bins(&cfg, |i| rows[i].len(), &keys, layout) {
        Ok(b) => b,
        Err(e) => {
            not_internal(&e);
            assert!(matches!(e, Error::DoesNotFit { .. } | Error::SentinelOverflow { .. } | Error::Invalid { .. }), "{e}");
            // Some example really fits nowhere.
            let refused = (0..n).any(|i| match example_bounds(&cfg, rows[i].len(), keys[i]) {
                Err(_) => true,
                Ok((_, a, b)) => match layout.family {
                    Family::EncoderDecoder => a > layout.widths.0 || b > layout.widths.1,
                    Family::Decoder => a + b > layout.widths.0,
                },
            });
            assert!(refused, "pack_bins refused a batch whose examples all fit: {e}");
            return;
        }
    };
    assert_eq!(bins[0], 0);
    assert_eq!(*bins.last().expect("bins"), n);
    assert!(bins.windows(2).all(|w| w[0] < w[1]), "empty or unordered row: {bins:?}");
    let need = |i: usize| -> (usize, usize) {
        let (_, a, b) = example_bounds(&cfg, rows[i].len(), keys[i]).expect("packed examples have bounds");
        match layout.family {
            Family::EncoderDecoder => (a, b),
            Family::Decoder => (a + b, 0),
        }
    };
    for w in bins.windows(2) {
        let (mut a, mut b) = (0, 0);
        for i in w[0]..w[1] {
            let (x, y) = need(i);
            a += x;
            b += y;
        }
        assert!(a <= layout.widths.0 && b <= layout.widths.1, "row {w:?} over its widths");
        if w[1] < n {
            let (x, y) = need(w[1]);
            assert!(a + x > layout.widths.0 || b + y > layout.widths.1, "next-fit: example {} fit row {w:?}", w[1]);
        }
    }

    let packed = denoise_rows(&cfg, &source, &keys, &bins, layout, pad).unwrap_or_else(|e| panic!("packed rows refused: {e}"));
    assert_eq!(packed.rows, bins.len() - 1);
    assert_eq!(packed.segments.len(), n);
    assert_eq!(packed.row_starts, bins);
    let (w0, w1) = layout.widths;
    let mut scratch = RowScratch::default();
    let wide = (w0 + w1).max(1) * 2 + 16;
    for r in 0..packed.rows {
        let (mut a, mut b) = (0usize, 0usize);
        for i in bins[r]..bins[r + 1] {
            let seg = packed.segments[i];
            assert_eq!(seg.denoiser as usize, mixture.choose(cfg.seed, keys[i]));
            // The example alone, in roomy buffers.
            let (mut ii, mut tt) = (vec![pad; wide], vec![pad; wide]);
            let l = denoise_row(&cfg, &rows[i], keys[i], &mut scratch, &mut ii, &mut tt).expect("fits alone");
            assert_eq!((l.inputs, l.targets), (seg.inputs as usize, seg.targets as usize));
            let first = &packed.first[r * w0..(r + 1) * w0];
            match layout.family {
                Family::EncoderDecoder => {
                    assert_eq!(&first[a..a + l.inputs], &ii[..l.inputs], "encoder segment {i}");
                    let second = &packed.second[r * w1..(r + 1) * w1];
                    assert_eq!(&second[b..b + l.targets], &tt[..l.targets], "decoder segment {i}");
                    a += l.inputs;
                    b += l.targets;
                }
                Family::Decoder => {
                    assert_eq!(&first[a..a + l.inputs], &ii[..l.inputs], "inputs of segment {i}");
                    assert_eq!(&first[a + l.inputs..a + l.inputs + l.targets], &tt[..l.targets], "targets of segment {i}");
                    a += l.inputs + l.targets;
                }
            }
        }
        assert!(packed.first[r * w0 + a..(r + 1) * w0].iter().all(|&x| x == pad), "row {r} padding");
        if layout.family == Family::EncoderDecoder {
            assert!(packed.second[r * w1 + b..(r + 1) * w1].iter().all(|&x| x == pad), "row {r} decoder padding");
        }
    }
    let fill = packed.fill_rate();
    assert!((0.0..=1.0).contains(&fill), "fill rate {fill}");

    let formats: &[Format] = match layout.family {
        Family::EncoderDecoder => &[Format::Hf, Format::Seqio],
        Family::Decoder => &[Format::Decoder, Format::SeqioDecoder],
    };
    let format = formats[u.size(0, 1)];
    let options = Options { packed: true, bidirectional_mask: u.bool(), denoiser: u.bool() };
    check_format(packed, format, pad, options);
}

fn check_format(d: Denoised<i32>, format: Format, pad: i32, options: Options) {
    let (rows, (w0, w1)) = (d.rows, d.widths);
    let fields = ul2_core::format(d, format, pad, options).unwrap_or_else(|e| panic!("format refused: {e}"));
    for f in &fields {
        assert_eq!(f.data.len(), f.shape.iter().product::<usize>(), "{} shape {:?}", f.name, f.shape);
        if f.name.ends_with("cu_seqlens") {
            let width = if f.name.starts_with("decoder") && format == Format::Hf { w1 } else { w0 };
            assert_eq!(f.data.first(), Some(&0));
            assert_eq!(*f.data.last().expect("cu_seqlens"), (rows * width) as i32, "{}", f.name);
            assert!(f.data.windows(2).all(|w| w[0] <= w[1]), "{} decreases", f.name);
        } else if f.shape.len() == 2 {
            assert_eq!(f.shape[0], rows, "{}", f.name);
        }
    }
}
