//! Text infilling (BART) through the engine: planned lengths are produced lengths and
//! maximal, packing bounds are exact, rows are deterministic per key and mixable with
//! span corruption (SPEC §8.4, §8.5 for the new denoiser).

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use ul2_core::{
    Budget, Denoiser, InfillParams, Kind, Mixture, Overflow, PlanRow, RowConfig, RowScratch, Sentinels, SpanParams, denoise_row,
    example_bounds, plan_denoiser, text_infilling,
};
use ul2_testkit::cases::{PackCase, PlanCase, RowLength};
use ul2_testkit::check;
use ul2_testkit::reference::filler;
use ul2_testkit::strategy::budget;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/infilling.txt"
        )))),
        ..ProptestConfig::default()
    }
}

const MASK: i64 = 1500;

fn infilling(r: f64, lambda: f64) -> Kind {
    Kind::TextInfilling(InfillParams::new(r, lambda, MASK).unwrap())
}

fn params() -> impl Strategy<Value = (f64, f64)> {
    prop_oneof![(Just(0.3), Just(3.5)), (0.0f64..=1.0, 0.01f64..40.0), (Just(1.0), 0.01f64..2.0)]
}

/// The plan's raw length is the largest whose longest row fits.
fn maximal(plan: &PlanRow, budget: Budget, p: usize, e: usize) {
    let raw = plan.raw_length + 1;
    let fits = match budget {
        Budget::EncoderDecoder { inputs, targets } => p + raw + e <= inputs && targets.is_none_or(|t| raw + e <= t),
        Budget::Decoder { sequence } => p + 2 * raw + 2 * e <= sequence,
    };
    assert!(!fits, "{plan:?}: one more raw token still fits {budget:?}");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn planned_lengths_are_produced_lengths(
        (r, lambda) in params(),
        budget in budget(1100, 700, 2000),
        eos in any::<bool>(),
        prefix in prop::collection::vec(2i64..100, 0..4),
        seed in any::<u64>(),
        keys in prop::collection::vec(any::<u64>(), 1..4),
    ) {
        let sentinels = Sentinels::t5(32_000, 100, Overflow::Error, true).unwrap();
        let denoiser = Denoiser::new(infilling(r, lambda), prefix.clone()).unwrap();
        if let Ok(plan) = plan_denoiser(&denoiser, budget, eos, &sentinels) {
            maximal(&plan, budget, prefix.len(), usize::from(eos));
        }
        check::planner(&PlanCase { denoiser, budget, eos, sentinels, seed, keys, salt: seed });
    }

    /// Packing with text infilling among span corruption and prefix LM: next-fit rows from
    /// bounds that are exact (drawn span counts), every example in place.
    #[test]
    fn packs_with_ul2_denoisers(
        (r, lambda) in params(),
        budget in budget(600, 300, 1000),
        eos in any::<bool>(),
        seed in any::<u64>(),
        rows in prop::collection::vec(prop_oneof![Just(RowLength::Empty), any::<u16>().prop_map(RowLength::Within), (0usize..3).prop_map(RowLength::PastLongest)], 1..12),
        second_format in any::<bool>(),
    ) {
        let sentinels = Sentinels::t5(32_000, 100, Overflow::Cap, true).unwrap();
        let entries = vec![
            (Denoiser::new(infilling(r, lambda), vec![7]).unwrap(), 2.0),
            (Denoiser::new(Kind::SpanCorruption(SpanParams::new(0.15, 3.0, None, false).unwrap()), vec![]).unwrap(), 1.0),
            (Denoiser::new(Kind::PrefixLm { suffix_density: 0.5 }, vec![8]).unwrap(), 1.0),
        ];
        let keys = (0..rows.len() as u64).map(|k| k.wrapping_mul(seed | 1)).collect();
        check::packing(&PackCase {
            entries, budget, eos, sentinels, seed, rows, keys, pad: 0, second_format,
            bidirectional_mask: false, denoiser_field: true,
        });
    }

    /// `example_bounds` is exact for text infilling (what packing relies on), rows are a pure
    /// function of `(seed, key)`, and the primitive gives the engine's row.
    #[test]
    fn bounds_are_exact_and_rows_keyed(
        (r, lambda) in params(),
        length in 0usize..700,
        seed in any::<u64>(),
        key in any::<u64>(),
    ) {
        let sentinels = Sentinels::t5(32_000, 100, Overflow::Error, true).unwrap();
        let d = Denoiser::new(infilling(r, lambda), vec![5, 6]).unwrap();
        let Kind::TextInfilling(params) = d.kind.clone() else { unreachable!() };
        let mixture = Mixture::new(vec![(d, 1.0)]).unwrap();
        let cfg = RowConfig { mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed, max_raw: &[] };
        let tokens = filler(length, seed, 997);
        let (mut inputs, mut targets) = (vec![-1i64; length + 3], vec![-1i64; length + 1]);
        let l = denoise_row(&cfg, &tokens, key, &mut RowScratch::default(), &mut inputs, &mut targets).unwrap();
        prop_assert_eq!(example_bounds(&cfg, length, key).unwrap(), (0, l.inputs, l.targets));
        let (pi, pt) = text_infilling::<i32, i64>(&tokens, &params, seed, key).unwrap();
        prop_assert_eq!(&inputs[2..l.inputs - 1], &pi[..]);
        prop_assert_eq!(&targets[..l.targets - 1], &pt[..]);
        prop_assert_eq!(&inputs[..2], &[5, 6]);
        let masks = pi.iter().filter(|&&t| t == MASK).count();
        let noise = params.noise_tokens(length);
        prop_assert_eq!(pi.len(), length - noise + masks);
        prop_assert!(masks <= noise && (noise == 0) == (masks == 0));
        // Another scratch, already used: the same row.
        let mut scratch = RowScratch::default();
        let (mut again, mut t2) = (vec![-1i64; length + 3], vec![-1i64; length + 1]);
        denoise_row(&cfg, &filler(300, 1, 997), key ^ 1, &mut scratch, &mut again, &mut t2).ok();
        let (mut again, mut t2) = (vec![-1i64; length + 3], vec![-1i64; length + 1]);
        denoise_row(&cfg, &tokens, key, &mut scratch, &mut again, &mut t2).unwrap();
        prop_assert_eq!(again, inputs);
    }
}

#[test]
fn plans_fill_the_budget() {
    let s = Sentinels::t5(32_000, 100, Overflow::Error, true).unwrap();
    let d = Denoiser::new(infilling(0.3, 3.5), vec![]).unwrap();
    let enc = plan_denoiser(&d, Budget::EncoderDecoder { inputs: 512, targets: None }, true, &s).unwrap();
    assert_eq!((enc.raw_length, enc.inputs_length, enc.targets_length, enc.spans), (511, 512, 512, 154));
    let tight = plan_denoiser(&d, Budget::EncoderDecoder { inputs: 512, targets: Some(300) }, true, &s).unwrap();
    assert_eq!((tight.raw_length, tight.targets_length), (299, 300));
    let dec = plan_denoiser(&d, Budget::Decoder { sequence: 1024 }, true, &s).unwrap();
    assert_eq!((dec.raw_length, dec.inputs_length + dec.targets_length), (511, 1024));
    for (budget, arg) in [
        (Budget::EncoderDecoder { inputs: 1, targets: None }, "inputs_length"),
        (Budget::EncoderDecoder { inputs: 10, targets: Some(1) }, "targets_length"),
        (Budget::Decoder { sequence: 3 }, "sequence_length"),
    ] {
        let e = plan_denoiser(&d, budget, true, &s).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{arg}=")), "{e}");
    }
}

#[test]
fn bad_parameters_name_the_argument() {
    for (r, lambda, mask, arg) in [
        (1.5, 3.5, 3, "noise_density"),
        (f64::NAN, 3.5, 3, "noise_density"),
        (0.3, 0.0, 3, "poisson_lambda"),
        (0.3, f64::INFINITY, 3, "poisson_lambda"),
        (0.3, 300.0, 3, "poisson_lambda"),
        (0.3, 3.5, -1, "mask_id"),
    ] {
        let e = InfillParams::new(r, lambda, mask).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{arg}=")), "{e}");
    }
}
