//! SPEC §8 guarantees 1, 3, 4 and 5 as proptest properties (§8.2 lives in `statistics.rs`).
//!
//! Every property compares the library with an independent statement of the contract: the
//! counts with SPEC §2's formula, the layout with a naive mask-to-T5 reference, the round
//! trip by re-inserting target spans at their sentinels. `PROPTEST_CASES` scales all runs
//! (default 256; the heavier batch properties run a quarter of that).
// Densities are compared exactly on purpose: 0.5 and 0 are special values of the contract.
#![allow(clippy::float_cmp)]

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use ul2_core::rng::{Purpose, Stream};
use ul2_core::{
    Budget, Composer, Denoiser, Error, Kind, Mixture, Overflow, RowConfig, RowScratch, Rows, Runs, Sentinels, SpanParams,
    SpanScratch, denoise_batch, denoise_row, noise_mask, plan_denoiser, prefix_bounds, prefix_split, span_counts,
};

// ---------------------------------------------------------------------------------------------
// Independent statements of the contract
// ---------------------------------------------------------------------------------------------

/// SPEC §2's counts, written out again: `N = clamp(round_f32(L·r), 1, L−1)`,
/// `n = max(1, round_f32(N/μ))` (or `num_spans`); `L < 2` or `r = 0` gives `(0, 0)`.
/// `None` where the counts cannot be realised (`n > N` or `n > L − N`).
fn spec_counts(length: usize, r: f64, mu: f64, num_spans: Option<usize>) -> Option<(usize, usize)> {
    if r == 0.0 || length < 2 {
        return Some((0, 0));
    }
    let noise = ((length as f32 * r as f32).round_ties_even() as usize).clamp(1, length - 1);
    let spans = num_spans.unwrap_or_else(|| ((noise as f32 / mu as f32).round_ties_even() as usize).max(1));
    (spans <= noise && spans <= length - noise).then_some((noise, spans))
}

/// SPEC §3's bounds, written out again.
fn spec_prefix_bounds(length: usize, r: f64) -> (usize, usize) {
    if length <= 1 {
        return (0, 0);
    }
    let hi = length - 1;
    let scaled = ((1.0f32 - 2.0f32 * r as f32) * hi as f32).round_ties_even() as usize;
    (hi.min(scaled.max(1)), hi)
}

/// Maximal runs of a mask as `(is_noise, start, len)`.
fn runs_of(mask: &[bool]) -> Vec<(bool, usize, usize)> {
    let mut out: Vec<(bool, usize, usize)> = Vec::new();
    for (i, &m) in mask.iter().enumerate() {
        match out.last_mut() {
            Some((v, _, len)) if *v == m => *len += 1,
            _ => out.push((m, i, 1)),
        }
    }
    out
}

/// The T5 layout of `tokens` under `mask`, straight from the description in CONTEXT/SPEC §2:
/// inputs = clean tokens with each noise run replaced by the next sentinel; targets = each
/// sentinel then its run; one more sentinel when the mask ends clean or has no noise (L ≥ 1).
fn reference_apply(tokens: &[i64], mask: &[bool], sentinels: &Sentinels) -> (Vec<i64>, Vec<i64>) {
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

/// Re-inserts each target span at its sentinel in `inputs` (SPEC §8.3). Also checks that
/// inputs and targets carry the same sentinels, `ids[0], ids[1], …`, in the same order; the
/// targets may end with one extra, empty sentinel span (the mask ended clean).
fn reinsert(inputs: &[i64], targets: &[i64], sentinels: &Sentinels) -> Result<Vec<i64>, String> {
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

fn mixture_of(kind: Kind, prefix: Vec<i64>) -> Mixture {
    Mixture::new(vec![(Denoiser::new(kind, prefix).unwrap(), 1.0)]).unwrap()
}

/// Runs one row through `denoise_row` into buffers of the given widths, pre-filled with a
/// marker; checks nothing past the reported lengths was written and returns the fronts.
fn run_row(cfg: &RowConfig<'_>, tokens: &[i32], key: u64, widths: (usize, usize)) -> Result<(Vec<i64>, Vec<i64>, usize), Error> {
    const MARK: i64 = -7;
    let (mut inputs, mut targets) = (vec![MARK; widths.0], vec![MARK; widths.1]);
    let lens = denoise_row(cfg, tokens, key, &mut RowScratch::default(), &mut inputs, &mut targets)?;
    assert!(inputs[lens.inputs..].iter().all(|&x| x == MARK), "inputs written past length {}", lens.inputs);
    assert!(targets[lens.targets..].iter().all(|&x| x == MARK), "targets written past length {}", lens.targets);
    inputs.truncate(lens.inputs);
    targets.truncate(lens.targets);
    Ok((inputs, targets, lens.denoiser))
}

/// Deterministic filler tokens in `[2, 2 + modulo)` for rows whose length is only known at run time.
fn filler(length: usize, salt: u64, modulo: u64) -> Vec<i32> {
    let mut s = Stream::new(salt, length as u64, Purpose::NoiseSpans);
    (0..length).map(|_| 2 + s.below(modulo) as i32).collect()
}

/// Proptest's defaults (256 cases, or `PROPTEST_CASES`) with failures recorded in
/// `rust/ul2-core/proptest-regressions/properties.txt` (committed, replayed first on every
/// run). Proptest cannot place that file itself for integration tests.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/properties.txt"
        )))),
        ..ProptestConfig::default()
    }
}

/// [`config`] with a `divisor`-th of the cases, for the heavier properties.
fn scaled_config(divisor: u32) -> ProptestConfig {
    let base = config();
    ProptestConfig { cases: (base.cases / divisor).max(1), ..base }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn density() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(0.0),
        1 => Just(0.15),
        1 => Just(0.5),
        1 => Just(1.0),
        6 => 0.0f64..=1.0,
    ]
}

fn mean_span() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(1.0),
        1 => Just(3.0),
        1 => Just(8.0),
        1 => Just(64.0),
        4 => 0.3f64..70.0,
    ]
}

// ---------------------------------------------------------------------------------------------
// §8.1: counts, runs, alternation, roll
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mask_counts_and_layout_without_roll(
        length in 0usize..1500,
        r in density(),
        mu in mean_span(),
        num_spans in prop::option::weighted(0.2, 1usize..60),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let params = SpanParams::new(r, mu, num_spans, false).unwrap();
        let got = noise_mask(length, &params, seed, key);
        let Some((noise, spans)) = spec_counts(length, r, mu, num_spans) else {
            prop_assert!(matches!(got, Err(Error::Invalid { .. })), "expected a ValueError, got {got:?}");
            return Ok(());
        };
        if num_spans.is_none() {
            prop_assert_eq!(span_counts(length, r, mu).unwrap(), (noise, spans));
        }
        let mask = got.unwrap();
        prop_assert_eq!(mask.len(), length);
        prop_assert_eq!(mask.iter().filter(|&&m| m).count(), noise);
        let runs = runs_of(&mask);
        if spans == 0 {
            prop_assert!(mask.iter().all(|&m| !m));
            return Ok(());
        }
        // Alternating clean/noise pairs, clean first, noise last, every run non-empty.
        prop_assert_eq!(runs.len(), 2 * spans);
        prop_assert!(!mask[0], "mask starts with noise");
        prop_assert!(mask[length - 1], "mask does not end with noise");
        prop_assert_eq!(runs.iter().filter(|r| r.0).count(), spans);

        // The run layout the batch path uses is the same mask, already in maximal runs.
        let mut layout = Runs::default();
        SpanScratch::default().layout(length, (noise, spans), false, seed, key, &mut layout).unwrap();
        prop_assert!(layout.lengths.iter().all(|&l| l > 0));
        prop_assert_eq!(&layout, &Runs::from_mask(&mask).unwrap());
        prop_assert_eq!(layout.noise_runs(), spans);
        prop_assert!(!layout.ends_clean());

        // Same (seed, key) → same mask.
        prop_assert_eq!(noise_mask(length, &params, seed, key).unwrap(), mask);
    }

    #[test]
    fn rolled_mask_is_a_rotation_with_n_or_n_plus_one_runs(
        length in 0usize..1500,
        r in density(),
        mu in mean_span(),
        num_spans in prop::option::weighted(0.2, 1usize..60),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let rolled = noise_mask(length, &SpanParams::new(r, mu, num_spans, true).unwrap(), seed, key);
        let Some((noise, spans)) = spec_counts(length, r, mu, num_spans) else {
            prop_assert!(matches!(rolled, Err(Error::Invalid { .. })), "expected a ValueError, got {rolled:?}");
            return Ok(());
        };
        let rolled = rolled.unwrap();
        let plain = noise_mask(length, &SpanParams::new(r, mu, num_spans, false).unwrap(), seed, key).unwrap();
        prop_assert_eq!(rolled.len(), length);
        prop_assert_eq!(rolled.iter().filter(|&&m| m).count(), noise);
        // A rotation of the unrolled mask (the roll has its own stream, the spans are shared).
        let doubled: Vec<bool> = plain.iter().chain(&plain).copied().collect();
        prop_assert!(
            length == 0 || doubled.windows(length).any(|w| w == rolled.as_slice()),
            "rolled mask is not a rotation of the unrolled one"
        );
        let noise_runs = runs_of(&rolled).iter().filter(|r| r.0).count();
        if spans == 0 {
            prop_assert_eq!(noise_runs, 0);
            return Ok(());
        }
        // A run cut by the wrap shows up at both ends and counts twice.
        let wrapped = rolled[0] && rolled[length - 1];
        prop_assert_eq!(noise_runs, spans + usize::from(wrapped));

        let mut layout = Runs::default();
        SpanScratch::default().layout(length, (noise, spans), true, seed, key, &mut layout).unwrap();
        prop_assert!(layout.lengths.iter().all(|&l| l > 0), "empty run in {layout:?}");
        prop_assert_eq!(layout.lengths.iter().map(|&l| l as usize).sum::<usize>(), length);
        prop_assert_eq!(&layout, &Runs::from_mask(&rolled).unwrap());
        prop_assert_eq!(layout.noise_runs(), noise_runs);
    }

    #[test]
    fn compositions_have_parts_positive_parts_summing_to_total(
        (total, parts) in (1usize..3000).prop_flat_map(|t| (Just(t), 1..=t)),
        seed in any::<u64>(),
        key in any::<u64>(),
        already in prop::collection::vec(any::<u32>(), 0..3),
    ) {
        let mut out = already.clone();
        let mut composer = Composer::default();
        composer.compose(total, parts, &mut Stream::new(seed, key, Purpose::NoiseSpans), &mut out);
        prop_assert_eq!(&out[..already.len()], &already[..], "compose must append, not overwrite");
        let got = &out[already.len()..];
        prop_assert_eq!(got.len(), parts);
        prop_assert!(got.iter().all(|&p| p > 0), "zero part in {got:?}");
        prop_assert_eq!(got.iter().map(|&p| p as usize).sum::<usize>(), total);
        // The reused composer gives the same draw for the same stream.
        let mut again = Vec::new();
        composer.compose(total, parts, &mut Stream::new(seed, key, Purpose::NoiseSpans), &mut again);
        prop_assert_eq!(&again[..], got);
    }

    #[test]
    fn prefix_split_stays_in_bounds(
        length in 0usize..5000,
        r in prop_oneof![Just(0.0), Just(0.25), Just(0.5), 0.0f64..=0.5],
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let (lo, hi) = spec_prefix_bounds(length, r);
        prop_assert_eq!(prefix_bounds(length, r), (lo, hi));
        let k = prefix_split(length, r, seed, key).unwrap();
        prop_assert!(lo <= k && k <= hi, "split {k} outside [{lo}, {hi}]");
        prop_assert_eq!(prefix_split(length, r, seed, key).unwrap(), k);
    }

    #[test]
    fn prefix_split_rejects_densities_outside_t5s_range(
        r in prop_oneof![0.500_000_1f64..10.0, -10.0f64..-1e-9, Just(f64::NAN), Just(f64::INFINITY)],
        length in 0usize..100,
    ) {
        let got = prefix_split(length, r, 0, 0);
        prop_assert!(matches!(got, Err(Error::Invalid { arg: "suffix_density", .. })), "got {got:?}");
    }

    #[test]
    fn mixture_choice_is_in_range_and_never_a_zero_rate(
        rates in prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..10.0, 1e-9f64..1e-6], 1..12),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        prop_assume!(rates.iter().sum::<f64>() > 0.0);
        let entries = rates
            .iter()
            .map(|&r| (Denoiser::new(Kind::CausalLm, vec![]).unwrap(), r))
            .collect();
        let m = Mixture::new(entries).unwrap();
        let i = m.choose(seed, key);
        prop_assert!(i < rates.len());
        prop_assert!(rates.len() == 1 || rates[i] > 0.0, "chose denoiser {i} with rate 0 from {rates:?}");
        prop_assert_eq!(m.choose(seed, key), i);
    }
}

// ---------------------------------------------------------------------------------------------
// §8.3: round trip through denoise_row
// ---------------------------------------------------------------------------------------------

const VOCAB: i64 = 50_000;
const SENTINELS: usize = 2_000;

fn tokens(max_len: usize) -> impl Strategy<Value = Vec<i32>> {
    prop::collection::vec(2i32..(VOCAB as i32 - SENTINELS as i32), 0..max_len)
}

fn prompt() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(0i64..(VOCAB - SENTINELS as i64), 0..4)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn span_corruption_round_trips(
        toks in tokens(1200),
        r in density(),
        mu in mean_span(),
        num_spans in prop::option::weighted(0.1, 1usize..40),
        random_roll in any::<bool>(),
        prefix in prompt(),
        eos in prop::option::of(Just(1i64)),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(VOCAB, SENTINELS, Overflow::Error, true).unwrap();
        let params = SpanParams::new(r, mu, num_spans, random_roll).unwrap();
        let mixture = mixture_of(Kind::SpanCorruption(params), prefix.clone());
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: eos, seed };
        let l = toks.len();
        let widths = (prefix.len() + l + 3, 2 * l + 3);
        let got = run_row(&cfg, &toks, key, widths);
        if spec_counts(l, r, mu, num_spans).is_none() {
            prop_assert!(matches!(got, Err(Error::Invalid { .. })), "expected a ValueError, got {got:?}");
            return Ok(());
        }
        let (inputs, targets, _) = got.unwrap();
        let e = usize::from(eos.is_some());
        prop_assert_eq!(&inputs[..prefix.len()], &prefix[..], "prompt not at the front");
        if let Some(eos) = eos {
            prop_assert_eq!(inputs.last(), Some(&eos));
            prop_assert_eq!(targets.last(), Some(&eos));
        }
        let body_in = &inputs[prefix.len()..inputs.len() - e];
        let body_tg = &targets[..targets.len() - e];

        // Exactly the T5 layout of the keyed mask (noise_mask and the batch path agree).
        let raw: Vec<i64> = toks.iter().map(|&t| i64::from(t)).collect();
        let mask = noise_mask(l, &params, seed, key).unwrap();
        let (ref_in, ref_tg) = reference_apply(&raw, &mask, &sentinels);
        prop_assert_eq!(body_in, &ref_in[..]);
        prop_assert_eq!(body_tg, &ref_tg[..]);

        // Round trip without looking at the mask.
        let back = reinsert(body_in, body_tg, &sentinels).map_err(TestCaseError::fail)?;
        prop_assert_eq!(back, raw);
    }

    #[test]
    fn prefix_lm_round_trips(
        toks in tokens(1200),
        r in prop_oneof![Just(0.25), Just(0.5), 0.0f64..=0.5],
        prefix in prompt(),
        eos in prop::option::of(Just(1i64)),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(VOCAB, SENTINELS, Overflow::Error, true).unwrap();
        let mixture = mixture_of(Kind::PrefixLm { suffix_density: r }, prefix.clone());
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: eos, seed };
        let l = toks.len();
        let (inputs, targets, _) = run_row(&cfg, &toks, key, (prefix.len() + l + 1, l + 1)).unwrap();
        let e = usize::from(eos.is_some());
        prop_assert_eq!(&inputs[..prefix.len()], &prefix[..]);
        if let Some(eos) = eos {
            prop_assert_eq!(inputs.last(), Some(&eos));
            prop_assert_eq!(targets.last(), Some(&eos));
        }
        let body_in = &inputs[prefix.len()..inputs.len() - e];
        let body_tg = &targets[..targets.len() - e];
        let k = body_in.len();
        let (lo, hi) = spec_prefix_bounds(l, r);
        prop_assert!(lo <= k && k <= hi, "split {k} outside [{lo}, {hi}]");
        prop_assert_eq!(k, prefix_split(l, r, seed, key).unwrap());
        prop_assert!(body_in.iter().chain(body_tg).all(|&t| !sentinels.contains(t)), "sentinel in prefix-LM output");
        let back: Vec<i64> = body_in.iter().chain(body_tg).copied().collect();
        let raw: Vec<i64> = toks.iter().map(|&t| i64::from(t)).collect();
        prop_assert_eq!(back, raw);
    }

    #[test]
    fn causal_lm_round_trips(
        toks in tokens(600),
        prefix in prompt(),
        eos in prop::option::of(Just(1i64)),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(VOCAB, SENTINELS, Overflow::Error, true).unwrap();
        let mixture = mixture_of(Kind::CausalLm, prefix.clone());
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: eos, seed };
        let l = toks.len();
        let (inputs, targets, _) = run_row(&cfg, &toks, key, (prefix.len() + 1, l + 1)).unwrap();
        let mut want_in = prefix.clone();
        let mut want_tg: Vec<i64> = toks.iter().map(|&t| i64::from(t)).collect();
        if let Some(eos) = eos {
            want_in.push(eos);
            want_tg.push(eos);
        }
        prop_assert_eq!(inputs, want_in);
        prop_assert_eq!(targets, want_tg);
    }
}

// ---------------------------------------------------------------------------------------------
// §8.4: planned lengths are produced lengths
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum PlanKind {
    Span { r: f64, mu: f64, roll: bool },
    Prefix { r: f64 },
    Causal,
}

fn plan_kind() -> impl Strategy<Value = PlanKind> {
    prop_oneof![
        4 => (density(), mean_span(), any::<bool>()).prop_map(|(r, mu, roll)| PlanKind::Span { r, mu, roll }),
        2 => (Just(0.15), prop_oneof![Just(3.0), Just(8.0), Just(64.0)], any::<bool>())
            .prop_map(|(r, mu, roll)| PlanKind::Span { r, mu, roll }),
        2 => (Just(0.5), prop_oneof![Just(3.0), Just(8.0), Just(32.0), Just(64.0)], any::<bool>())
            .prop_map(|(r, mu, roll)| PlanKind::Span { r, mu, roll }),
        2 => prop_oneof![Just(0.25), Just(0.5), 0.0f64..=0.5].prop_map(|r| PlanKind::Prefix { r }),
        1 => Just(PlanKind::Causal),
    ]
}

fn budget() -> impl Strategy<Value = Budget> {
    prop_oneof![
        3 => (1usize..1100, prop::option::weighted(0.4, 1usize..700))
            .prop_map(|(inputs, targets)| Budget::EncoderDecoder { inputs, targets }),
        1 => (1usize..2000).prop_map(|sequence| Budget::Decoder { sequence }),
    ]
}

fn overflow() -> impl Strategy<Value = Overflow> {
    prop_oneof![Just(Overflow::Error), Just(Overflow::Cap), Just(Overflow::T5)]
}

/// Number of sentinel tokens in a produced row's targets (EOS is id 1, never a sentinel here).
fn sentinel_tokens(targets: &[i64], sentinels: &Sentinels, first: usize) -> usize {
    // With on_overflow="t5" ids continue below the sentinel range, so count by position in
    // the id sequence rather than by membership.
    let ids: Vec<i64> = (0..first).map(|k| sentinels.id(k)).collect();
    targets.iter().filter(|t| ids.contains(t)).count()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn planned_lengths_are_produced_lengths(
        kind in plan_kind(),
        budget in budget(),
        eos in any::<bool>(),
        prefix in prop::collection::vec(2i64..100, 0..4),
        (count, policy) in (prop_oneof![1usize..8, 8usize..300], overflow()),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(32_000, count, policy, true).unwrap();
        let dkind = match kind {
            PlanKind::Span { r, mu, roll } => Kind::SpanCorruption(SpanParams::new(r, mu, None, roll).unwrap()),
            PlanKind::Prefix { r } => Kind::PrefixLm { suffix_density: r },
            PlanKind::Causal => Kind::CausalLm,
        };
        let denoiser = Denoiser::new(dkind.clone(), prefix.clone()).unwrap();
        let plan = match plan_denoiser(&denoiser, budget, eos, &sentinels) {
            Ok(plan) => plan,
            Err(e) => {
                prop_assert!(!matches!(e, Error::Internal(_)), "internal error {e}");
                return Ok(());
            }
        };
        let p = prefix.len();
        let e = usize::from(eos);
        prop_assert!(plan.raw_length >= 1);
        // The plan respects the budget.
        match (kind, budget) {
            (_, Budget::EncoderDecoder { inputs, targets }) => {
                prop_assert!(plan.inputs_length <= inputs, "{plan:?} over inputs budget {inputs}");
                if let Some(t) = targets {
                    prop_assert!(plan.targets_length <= t, "{plan:?} over targets budget {t}");
                }
            }
            (PlanKind::Prefix { .. } | PlanKind::Causal, Budget::Decoder { sequence }) => {
                // Every split (or the whole row as target) fills the sequence exactly.
                prop_assert_eq!(p + plan.raw_length + 2 * e, sequence, "{:?}", plan);
            }
            (_, Budget::Decoder { sequence }) => {
                prop_assert!(plan.inputs_length + plan.targets_length <= sequence, "{plan:?} over sequence {sequence}");
            }
        }
        // A row of raw_length tokens fills buffers of exactly the planned widths.
        let mixture = Mixture::new(vec![(denoiser, 1.0)]).unwrap();
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: eos.then_some(1), seed };
        let toks = filler(plan.raw_length, seed, 1000);
        let got = run_row(&cfg, &toks, key, (plan.inputs_length, plan.targets_length));
        let (inputs, targets, _) =
            got.map_err(|err| TestCaseError::fail(format!("planned row failed: {err} (plan {plan:?})")))?;
        match kind {
            PlanKind::Span { r, mu, roll } => {
                let (_, n) = spec_counts(plan.raw_length, r, mu, None).unwrap();
                let n = if policy == Overflow::Cap { n.min(count - usize::from(roll && n > 0)) } else { n };
                prop_assert_eq!(plan.spans, n, "{:?}", plan);
                let used = sentinel_tokens(&targets, &sentinels, plan.sentinels.max(n + 2));
                if roll {
                    prop_assert!(inputs.len() <= plan.inputs_length);
                    prop_assert!(targets.len() <= plan.targets_length);
                    prop_assert!(used <= plan.sentinels, "{used} sentinels used, {} planned", plan.sentinels);
                } else {
                    prop_assert_eq!(inputs.len(), plan.inputs_length, "{:?}", plan);
                    prop_assert_eq!(targets.len(), plan.targets_length, "{:?}", plan);
                    prop_assert_eq!(used, plan.sentinels, "{:?}", plan);
                }
                if r == 0.5 && !roll && matches!(budget, Budget::EncoderDecoder { targets: None, .. }) {
                    prop_assert!(plan.targets_length <= plan.inputs_length, "{plan:?}: r=0.5 targets exceed inputs");
                }
            }
            PlanKind::Prefix { .. } => {
                prop_assert!(inputs.len() <= plan.inputs_length);
                prop_assert!(targets.len() <= plan.targets_length);
                prop_assert_eq!(inputs.len() + targets.len(), p + plan.raw_length + 2 * e);
            }
            PlanKind::Causal => {
                prop_assert_eq!(inputs.len(), plan.inputs_length);
                prop_assert_eq!(targets.len(), plan.targets_length);
            }
        }
    }

    /// The planner's raw length is the largest that fits (T5's helper grows `T` while `T + 1`
    /// fits), checked by producing a row one token longer without a roll.
    #[test]
    fn planned_raw_length_is_maximal(
        (r, mu) in prop_oneof![
            (0.0f64..=1.0, 0.3f64..70.0),
            (Just(0.15), prop_oneof![Just(3.0), Just(8.0), Just(64.0)]),
            (Just(0.5), prop_oneof![Just(3.0), Just(8.0), Just(32.0)]),
        ],
        budget in budget(),
        eos in any::<bool>(),
        prefix in prop::collection::vec(2i64..100, 0..4),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(1_000_000, 100_000, Overflow::Error, true).unwrap();
        let params = SpanParams::new(r, mu, None, false).unwrap();
        let denoiser = Denoiser::new(Kind::SpanCorruption(params), prefix.clone()).unwrap();
        let Ok(plan) = plan_denoiser(&denoiser, budget, eos, &sentinels) else { return Ok(()) };
        let mixture = Mixture::new(vec![(denoiser, 1.0)]).unwrap();
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: eos.then_some(1), seed };
        let raw = plan.raw_length + 1;
        let toks = filler(raw, seed, 1000);
        let Ok((inputs, targets, _)) = run_row(&cfg, &toks, key, (4 * raw + 10, 4 * raw + 10)) else {
            return Ok(()); // T5 cannot realise the counts one token longer: nothing to grow into.
        };
        let fits = match budget {
            Budget::EncoderDecoder { inputs: bi, targets: bt } => {
                // At r = 0.5 T5's helper also keeps targets <= inputs.
                inputs.len() <= bi && bt.is_none_or(|bt| targets.len() <= bt) && (r != 0.5 || targets.len() <= inputs.len())
            }
            Budget::Decoder { sequence } => inputs.len() + targets.len() <= sequence,
        };
        prop_assert!(!fits, "raw {} also fits {budget:?} (inputs {}, targets {}); plan {plan:?}", raw, inputs.len(), targets.len());
    }
}

/// Output lengths `(inputs, targets)` of an unrolled span-corruption row of `raw` tokens by
/// SPEC §2's arithmetic (prompt `p`, EOS `e`), or `None` where T5 cannot realise the counts.
fn spec_span_lengths(raw: usize, r: f64, mu: f64, num_spans: Option<usize>, p: usize, e: usize) -> Option<(usize, usize)> {
    let (noise, spans) = spec_counts(raw, r, mu, num_spans)?;
    // No noise: the row stays whole and the targets are T5's single sentinel.
    let targets = if spans == 0 { usize::from(raw > 0) } else { noise + spans };
    Some((p + raw - noise + spans + e, targets + e))
}

proptest! {
    #![proptest_config(config())]

    /// The planner against a brute-force search over every raw length: the largest raw whose
    /// row T5 can realise and whose outputs fit (at `r = 0.5` with targets ≤ inputs, T5's
    /// helper rule), for `mean_span_length`-derived and explicit `num_spans` counts.
    #[test]
    fn planner_matches_brute_force(
        r in prop_oneof![Just(0.0), Just(0.15), Just(0.5), 0.0f64..=0.5],
        mu in prop_oneof![Just(3.0), Just(8.0), 1.5f64..70.0],
        num_spans in prop::option::weighted(0.4, 1usize..20),
        budget in prop_oneof![
            3 => (1usize..600, prop::option::weighted(0.4, 1usize..300))
                .prop_map(|(inputs, targets)| Budget::EncoderDecoder { inputs, targets }),
            1 => (1usize..1000).prop_map(|sequence| Budget::Decoder { sequence }),
        ],
        eos in any::<bool>(),
        p in 0usize..4,
    ) {
        let e = usize::from(eos);
        let fits = |raw: usize| -> bool {
            let Some((i, t)) = spec_span_lengths(raw, r, mu, num_spans, p, e) else { return false };
            match budget {
                Budget::EncoderDecoder { inputs, targets } => {
                    i <= inputs && targets.is_none_or(|tl| t <= tl) && (r != 0.5 || t <= i)
                }
                Budget::Decoder { sequence } => i + t <= sequence,
            }
        };
        // Inputs keep at least half the raw tokens (r ≤ 0.5), so nothing beyond this fits.
        let bound = match budget {
            Budget::EncoderDecoder { inputs, .. } => 2 * inputs + 4,
            Budget::Decoder { sequence } => sequence + 1,
        };
        // With a fixed num_spans, a 1-token row (no noise, as T5) is a degenerate fit that a
        // planner may take or refuse; the search looks at rows of at least 2 tokens.
        let shortest = if num_spans.is_some() { 2 } else { 1 };
        let want = (shortest..=bound).rev().find(|&raw| fits(raw));
        let sentinels = Sentinels::t5(1_000_000, 100_000, Overflow::Error, true).unwrap();
        let params = SpanParams::new(r, mu, num_spans, false).unwrap();
        let denoiser = Denoiser::new(Kind::SpanCorruption(params), vec![2; p]).unwrap();
        let got = plan_denoiser(&denoiser, budget, eos, &sentinels);
        match want {
            Some(raw) => {
                let plan = got.map_err(|err| TestCaseError::fail(format!(
                    "a {raw}-token row fits {budget:?} but planning fails: {err}"
                )))?;
                prop_assert_eq!(plan.raw_length, raw, "{:?}", plan);
                let (i, t) = spec_span_lengths(raw, r, mu, num_spans, p, e).unwrap();
                prop_assert_eq!((plan.inputs_length, plan.targets_length), (i, t));
            }
            None => prop_assert!(
                got.as_ref().is_err() || got.as_ref().is_ok_and(|p| p.raw_length < shortest),
                "no row fits {budget:?} but the plan is {got:?}"
            ),
        }
    }
}

/// The case behind `planner_matches_brute_force`'s `num_spans` runs, spelled out: an X-style
/// denoiser with a fixed span count must plan like any other (the Python `Collator` plans every
/// denoiser of its mixture when it is built).
#[test]
fn plan_with_num_spans_fills_the_budget() {
    let sentinels = Sentinels::t5(32_128, 100, Overflow::Error, true).unwrap();
    for (r, num_spans) in [(0.5, 4), (0.15, 2), (0.3, 6)] {
        let params = SpanParams::new(r, 3.0, Some(num_spans), false).unwrap();
        let denoiser = Denoiser::new(Kind::SpanCorruption(params), vec![5]).unwrap();
        let budget = Budget::EncoderDecoder { inputs: 64, targets: Some(64) };
        let want = (1..200)
            .rev()
            .find(|&raw| {
                spec_span_lengths(raw, r, 3.0, Some(num_spans), 1, 1)
                    .is_some_and(|(i, t)| i <= 64 && t <= 64 && (r != 0.5 || t <= i))
            })
            .unwrap();
        assert_eq!(spec_counts(want, r, 3.0, Some(num_spans)).map(|c| c.1), Some(num_spans), "case must be feasible");
        let plan = plan_denoiser(&denoiser, budget, true, &sentinels)
            .unwrap_or_else(|e| panic!("r={r}, num_spans={num_spans}: a {want}-token row fits {budget:?} but: {e}"));
        assert_eq!(plan.raw_length, want, "r={r}, num_spans={num_spans}: {plan:?}");
        assert_eq!(plan.spans, num_spans);
    }
}

// ---------------------------------------------------------------------------------------------
// §8.5: batching and threads never change results
// ---------------------------------------------------------------------------------------------

fn batch_mixture() -> Mixture {
    let span = |mu, r, n, roll| Kind::SpanCorruption(SpanParams::new(r, mu, n, roll).unwrap());
    Mixture::new(vec![
        (Denoiser::new(span(3.0, 0.15, None, false), vec![3]).unwrap(), 1.0),
        (Denoiser::new(span(8.0, 0.5, None, true), vec![4]).unwrap(), 1.0),
        (Denoiser::new(span(3.0, 0.5, None, false), vec![]).unwrap(), 0.5),
        (Denoiser::new(Kind::PrefixLm { suffix_density: 0.25 }, vec![5, 6]).unwrap(), 1.0),
        (Denoiser::new(Kind::CausalLm, vec![7]).unwrap(), 1.0),
    ])
    .unwrap()
}

const MAX_ROW: usize = 80;
const IW: usize = MAX_ROW + 6;
const TW: usize = 2 * MAX_ROW + 6;

fn run_batch(cfg: &RowConfig<'_>, rows: &[Vec<i32>], keys: &[u64], threads: Option<usize>) -> ul2_core::Denoised<i32> {
    let ragged = Rows::Ragged(rows.iter().map(Vec::as_slice).collect());
    let go = || denoise_batch(cfg, &ragged, keys, IW, TW, 0i32).unwrap();
    match threads {
        Some(k) => rayon::ThreadPoolBuilder::new().num_threads(k).build().unwrap().install(go),
        None => go(),
    }
}

proptest! {
    #![proptest_config(scaled_config(4))]

    #[test]
    fn batch_results_do_not_depend_on_splits_or_threads(
        rows in prop::collection::vec(prop::collection::vec(2i32..900, 0..MAX_ROW), 0..48),
        key_seed in any::<u64>(),
        cuts in prop::collection::vec(any::<bool>(), 48),
        seed in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(1000, 100, Overflow::Error, true).unwrap();
        let mixture = batch_mixture();
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed };
        let mut ks = Stream::new(key_seed, 0, Purpose::Denoiser);
        let keys: Vec<u64> = rows.iter().map(|_| if ks.below(4) == 0 { ks.next_u64() } else { ks.below(1000) }).collect();
        let n = rows.len();

        let one = run_batch(&cfg, &rows, &keys, Some(1));
        let two = run_batch(&cfg, &rows, &keys, Some(2));
        prop_assert_eq!(&one, &two, "1 thread and 2 threads differ");
        prop_assert_eq!(one.rows, n);
        prop_assert_eq!(one.first.len(), n * IW);
        prop_assert_eq!(one.second.len(), n * TW);

        // Any split into sub-batches, each keeping its rows' keys, gives the same rows.
        let mut start = 0;
        for end in 1..=n {
            if end == n || cuts[end - 1] {
                let part = run_batch(&cfg, &rows[start..end], &keys[start..end], None);
                prop_assert_eq!(&part.first[..], &one.first[start * IW..end * IW], "rows {}..{}", start, end);
                prop_assert_eq!(&part.second[..], &one.second[start * TW..end * TW], "rows {}..{}", start, end);
                prop_assert_eq!(&part.segments[..], &one.segments[start..end]);
                start = end;
            }
        }

        // Each row is what denoise_row makes of it alone, padded with pad_id.
        for (i, row) in rows.iter().enumerate() {
            let (inputs, targets, d) = run_row(&cfg, row, keys[i], (IW, TW)).unwrap();
            let l = one.segments[i];
            let (li, lt) = (l.inputs as usize, l.targets as usize);
            prop_assert_eq!(l.denoiser as usize, d);
            prop_assert_eq!(l.denoiser as usize, mixture.choose(seed, keys[i]));
            let got_in: Vec<i64> = one.first[i * IW..(i + 1) * IW].iter().map(|&x| i64::from(x)).collect();
            let got_tg: Vec<i64> = one.second[i * TW..(i + 1) * TW].iter().map(|&x| i64::from(x)).collect();
            prop_assert_eq!(&got_in[..li], &inputs[..]);
            prop_assert_eq!(&got_tg[..lt], &targets[..]);
            prop_assert!(got_in[li..].iter().all(|&x| x == 0), "row {} inputs not padded", i);
            prop_assert!(got_tg[lt..].iter().all(|&x| x == 0), "row {} targets not padded", i);
        }
    }

    #[test]
    fn dense_and_ragged_rows_agree(
        (width, flat) in (0usize..MAX_ROW).prop_flat_map(|w| (Just(w), prop::collection::vec(2i32..900, 0..(w * 24 + 1)))),
        first_key in 0u64..1_000_000,
        seed in any::<u64>(),
    ) {
        let n = flat.len().checked_div(width).unwrap_or(0);
        let data = &flat[..n * width];
        let sentinels = Sentinels::t5(1000, 100, Overflow::Error, true).unwrap();
        let mixture = batch_mixture();
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed };
        let keys: Vec<u64> = (first_key..first_key + n as u64).collect();
        let dense = Rows::Dense { data, rows: n, width };
        let ragged: Vec<Vec<i32>> = data.chunks(width.max(1)).map(<[i32]>::to_vec).collect();
        let a = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
            .install(|| denoise_batch(&cfg, &dense, &keys, IW, TW, 0i32).unwrap());
        let b = run_batch(&cfg, &ragged, &keys, Some(1));
        prop_assert_eq!(a, b);
    }
}
