//! SPEC §8 guarantees 1, 3, 4 and 5 as proptest properties (§8.2 lives in `statistics.rs`).
//!
//! The invariants are ul2-testkit's `check_*` functions, which the fuzz targets run too;
//! these properties draw their cases from proptest strategies (and, at the end, from bytes
//! exactly as the fuzz targets do). The kit's `reference` module is the independent
//! statement of the contract: the counts by SPEC §2's formula, the layout by a naive
//! mask-to-T5 reference, the round trip by re-inserting target spans at their sentinels.
//! `PROPTEST_CASES` scales all runs (default 256; the heavier ones run a quarter of that).
// Densities are compared exactly on purpose: 0.5 and 0 are special values of the contract.
#![allow(clippy::float_cmp)]

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use ul2_core::rng::{Purpose, Stream};
use ul2_core::{
    Budget, Denoiser, Error, FimLoss, FimParams, Kind, Mixture, Overflow, RowConfig, Rows, Sentinels, SpanParams, denoise_batch,
    fim_split, noise_mask, plan_denoiser, prefix_bounds, prefix_split,
};
use ul2_testkit::cases::{ApplicationCase, ComposeCase, IndexCase, MaskCase, PackCase, PlanCase, SamplingCase};
use ul2_testkit::check::{self, run_row};
use ul2_testkit::reference::{reference_apply, reinsert, spec_counts, spec_lengths, spec_prefix_bounds, spec_valid};
use ul2_testkit::strategy::{arbitrary, budget, density, mean_span, overflow};

fn mixture_of(kind: Kind, prefix: Vec<i64>) -> Mixture {
    Mixture::new(vec![(Denoiser::new(kind, prefix).unwrap(), 1.0)]).unwrap()
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
// §8.1: counts, runs, alternation, roll
// ---------------------------------------------------------------------------------------------

fn mask_case() -> impl Strategy<Value = MaskCase> {
    (0usize..1500, density(), mean_span(), prop::option::weighted(0.2, 1usize..60), any::<bool>(), any::<u64>(), any::<u64>())
        .prop_map(|(length, noise_density, mean_span_length, num_spans, random_roll, seed, key)| MaskCase {
            length,
            noise_density,
            mean_span_length,
            num_spans,
            random_roll,
            seed,
            key,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn noise_masks_have_spec_counts_and_layout(case in mask_case()) {
        check::noise_masks(&case);
    }

    #[test]
    fn compositions_have_parts_positive_parts_summing_to_total(
        (total, parts) in (1usize..3000).prop_flat_map(|t| (Just(t), 1..=t)),
        seed in any::<u64>(),
        key in any::<u64>(),
        already in prop::collection::vec(any::<u32>(), 0..3),
    ) {
        check::composition(&ComposeCase { total, parts, seed, key, already });
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

fn fim_params() -> impl Strategy<Value = FimParams> {
    (prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0f64..=1.0], any::<bool>()).prop_map(|(rate, all)| {
        FimParams::new(20_000, 20_001, 20_002, rate, if all { FimLoss::All } else { FimLoss::Middle }).unwrap()
    })
}

proptest! {
    #![proptest_config(config())]

    /// A fill-in-the-middle row is the prompt, then PSM `<pre> P <suf> S <mid> M` or SPM
    /// `<pre> <suf> S <mid> P M` of the keyed cuts, then EOS; the split between inputs and
    /// targets is at the start (loss="all") or at the middle; P M S gives the raw row back.
    #[test]
    fn fill_in_the_middle_round_trips(
        toks in tokens(1200),
        params in fim_params(),
        prefix in prompt(),
        eos in prop::option::of(Just(1i64)),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(VOCAB, SENTINELS, Overflow::Error, true).unwrap();
        let mixture = mixture_of(Kind::FillInTheMiddle(params), prefix.clone());
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: eos, seed };
        let l = toks.len();
        let (inputs, targets, _) = run_row(&cfg, &toks, key, (prefix.len() + l + 3, l + 4)).unwrap();
        let split = fim_split(l, params.spm_rate, seed, key);
        let (a, b) = (split.prefix, split.prefix + split.middle);
        prop_assert!(b <= l);
        prop_assert_eq!(split.spm, if params.spm_rate == 0.0 { false } else if params.spm_rate == 1.0 { true } else { split.spm });
        let raw: Vec<i64> = toks.iter().map(|&t| i64::from(t)).collect();
        let (p_, m_, s_) = (&raw[..a], &raw[a..b], &raw[b..]);
        let mut context = vec![params.prefix_id];
        if split.spm {
            context.push(params.suffix_id);
            context.extend_from_slice(s_);
            context.push(params.middle_id);
            context.extend_from_slice(p_);
        } else {
            context.extend_from_slice(p_);
            context.push(params.suffix_id);
            context.extend_from_slice(s_);
            context.push(params.middle_id);
        }
        let (mut want_in, mut want_tg) = (prefix.clone(), Vec::new());
        match params.loss {
            FimLoss::All => want_tg.extend(context.iter().chain(m_)),
            FimLoss::Middle => {
                want_in.extend(&context);
                want_tg.extend_from_slice(m_);
            }
        }
        want_tg.extend(eos);
        prop_assert_eq!(&inputs, &want_in);
        prop_assert_eq!(&targets, &want_tg);
        prop_assert_eq!(inputs.len() + targets.len(), prefix.len() + 3 + l + usize::from(eos.is_some()));
    }
}

// ---------------------------------------------------------------------------------------------
// §8.4: planned lengths are produced lengths
// ---------------------------------------------------------------------------------------------

fn plan_kind() -> impl Strategy<Value = Kind> {
    let span = |(r, mu, roll)| Kind::SpanCorruption(SpanParams::new(r, mu, None, roll).unwrap());
    prop_oneof![
        4 => (density(), mean_span(), any::<bool>()).prop_map(span),
        2 => (Just(0.15), prop_oneof![Just(3.0), Just(8.0), Just(64.0)], any::<bool>()).prop_map(span),
        2 => (Just(0.5), prop_oneof![Just(3.0), Just(8.0), Just(32.0), Just(64.0)], any::<bool>()).prop_map(span),
        2 => prop_oneof![Just(0.25), Just(0.5), 0.0f64..=0.5].prop_map(|r| Kind::PrefixLm { suffix_density: r }),
        1 => Just(Kind::CausalLm),
        2 => fim_params().prop_map(Kind::FillInTheMiddle),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn planned_lengths_are_produced_lengths(
        kind in plan_kind(),
        budget in budget(1100, 700, 2000),
        eos in any::<bool>(),
        prefix in prop::collection::vec(2i64..100, 0..4),
        (count, policy) in (prop_oneof![1usize..8, 8usize..300], overflow()),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(32_000, count, policy, true).unwrap();
        let denoiser = Denoiser::new(kind, prefix).unwrap();
        check::planner(&PlanCase { denoiser, budget, eos, sentinels, seed, keys: vec![key], salt: seed });
    }

    /// The planner's raw length is the largest that fits (T5's helper grows `T` while `T + 1`
    /// fits), over the mean span lengths and densities of UL2's denoisers.
    #[test]
    fn planned_raw_length_is_maximal(
        (r, mu) in prop_oneof![
            (0.0f64..=1.0, 0.3f64..70.0),
            (Just(0.15), prop_oneof![Just(3.0), Just(8.0), Just(64.0)]),
            (Just(0.5), prop_oneof![Just(3.0), Just(8.0), Just(32.0)]),
        ],
        budget in budget(1100, 700, 2000),
        eos in any::<bool>(),
        prefix in prop::collection::vec(2i64..100, 0..4),
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(1_000_000, 100_000, Overflow::Error, true).unwrap();
        let params = SpanParams::new(r, mu, None, false).unwrap();
        let denoiser = Denoiser::new(Kind::SpanCorruption(params), prefix).unwrap();
        check::planner(&PlanCase { denoiser, budget, eos, sentinels, seed, keys: vec![key], salt: seed });
    }
}

/// Output lengths `(inputs, targets)` of an unrolled span-corruption row of `raw` tokens by
/// SPEC §2's arithmetic (prompt `p`, EOS `e`), or `None` where T5 cannot realise the counts.
fn spec_span_lengths(raw: usize, r: f64, mu: f64, num_spans: Option<usize>, p: usize, e: usize) -> Option<(usize, usize)> {
    spec_valid(raw, r, mu, num_spans).then(|| spec_lengths(raw, r, mu, num_spans, p, e))
}

/// The planner against a brute-force search over every raw length: the largest raw whose
/// row T5 can realise and whose outputs fit (at `r = 0.5` with targets ≤ inputs, T5's
/// helper rule), for `mean_span_length`-derived and explicit `num_spans` counts.
// SPEC §2's names: r, p (prompt), e (EOS), i and t (lengths).
#[allow(clippy::many_single_char_names)]
fn planner_matches_brute_force(r: f64, mu: f64, num_spans: Option<usize>, budget: Budget, eos: bool, p: usize) {
    let e = usize::from(eos);
    let fits = |raw: usize| -> bool {
        let Some((i, t)) = spec_span_lengths(raw, r, mu, num_spans, p, e) else { return false };
        match budget {
            Budget::EncoderDecoder { inputs, targets } => i <= inputs && targets.is_none_or(|tl| t <= tl) && (r != 0.5 || t <= i),
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
            let plan = got.unwrap_or_else(|err| panic!("a {raw}-token row fits {budget:?} but planning fails: {err}"));
            assert_eq!(plan.raw_length, raw, "{plan:?}");
            assert_eq!(Some((plan.inputs_length, plan.targets_length)), spec_span_lengths(raw, r, mu, num_spans, p, e));
        }
        None => assert!(
            got.as_ref().is_err() || got.as_ref().is_ok_and(|p| p.raw_length < shortest),
            "no row fits {budget:?} but the plan is {got:?}"
        ),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn planner_matches_brute_force_search(
        r in prop_oneof![Just(0.0), Just(0.15), Just(0.5), 0.0f64..=0.5],
        mu in prop_oneof![Just(3.0), Just(8.0), 1.5f64..70.0],
        num_spans in prop::option::weighted(0.4, 1usize..20),
        budget in budget(600, 300, 1000),
        eos in any::<bool>(),
        p in 0usize..4,
    ) {
        planner_matches_brute_force(r, mu, num_spans, budget, eos, p);
    }
}

/// The cases proptest once shrank failures of the brute-force search to (recorded in the
/// regression files this replaces): tiny budgets with a fixed span count, and no noise.
#[test]
fn planner_matches_brute_force_on_past_failures() {
    let enc_dec = |inputs| Budget::EncoderDecoder { inputs, targets: None };
    planner_matches_brute_force(0.15, 3.0, Some(2), enc_dec(10), false, 0);
    planner_matches_brute_force(0.15, 3.0, Some(2), enc_dec(2), false, 0);
    planner_matches_brute_force(0.0, 3.0, None, enc_dec(4), false, 3);
}

/// The case behind `planner_matches_brute_force_search`'s `num_spans` runs, spelled out: an X-style
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
        (Denoiser::new(Kind::FillInTheMiddle(FimParams::new(20, 21, 22, 0.5, FimLoss::Middle).unwrap()), vec![8]).unwrap(), 1.0),
        (Denoiser::new(Kind::FillInTheMiddle(FimParams::new(20, 21, 22, 0.25, FimLoss::All).unwrap()), vec![]).unwrap(), 1.0),
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

// ---------------------------------------------------------------------------------------------
// The fuzz targets' cases, drawn from bytes as libFuzzer draws them
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(scaled_config(4))]

    #[test]
    fn fuzz_mask_sampling(case in arbitrary::<SamplingCase>()) {
        check::mask_sampling(&case);
    }

    #[test]
    fn fuzz_mask_application(case in arbitrary::<ApplicationCase>()) {
        check::mask_application(&case);
    }

    #[test]
    fn fuzz_planner(case in arbitrary::<PlanCase>()) {
        check::planner(&case);
    }

    #[test]
    fn fuzz_sample_index(case in arbitrary::<IndexCase<u16>>()) {
        check::sample_index(&case);
    }

    #[test]
    fn fuzz_packing(case in arbitrary::<PackCase>()) {
        check::packing(&case);
    }
}
