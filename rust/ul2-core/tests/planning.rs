//! The planner at its edges: raw lengths whose counts T5 cannot realise, budgets near the
//! 32-bit limit of a row, and PrefixLM budgets far larger than their targets.
//!
//! Each search is checked against a plain scan over every raw length, by SPEC §2's
//! arithmetic (ul2-testkit's `reference`), independently of `plan.rs`.
// Densities are compared exactly on purpose: 0.5 is a special value of the contract.
#![allow(clippy::float_cmp)]

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use ul2_core::{
    Budget, Denoiser, Error, Kind, Overflow, PlanRow, Sentinels, SpanParams, plan_denoiser, plan_span_corruption, prefix_bounds,
};
use ul2_testkit::reference::{spec_lengths, spec_valid};

const ROW_LIMIT: usize = u32::MAX as usize;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/planning.txt"
        )))),
        ..ProptestConfig::default()
    }
}

/// `f()` on another thread, failing the test if it has not returned after a minute: a plan
/// that scans its budget token by token takes hours at these sizes, and should fail rather
/// than hang the suite.
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}: still planning after a minute"))
}

fn sentinels() -> Sentinels {
    Sentinels::t5(1_000_000, 100_000, Overflow::Error, true).unwrap()
}

fn denoiser(kind: Kind, prompt: usize) -> Denoiser {
    Denoiser::new(kind, vec![2; prompt]).unwrap()
}

fn span(r: f64, mu: f64, num_spans: Option<usize>) -> Kind {
    Kind::SpanCorruption(SpanParams::new(r, mu, num_spans, false).unwrap())
}

fn message(e: &Error) -> String {
    e.to_string()
}

// ---------------------------------------------------------------------------------------------
// PrefixLM (item 12): a jump instead of a token-by-token scan, same results
// ---------------------------------------------------------------------------------------------

/// The planner's PrefixLM rule as it was, one raw token at a time: from the whole room down
/// while the longest possible targets overflow `targets_length`.
fn linear_prefix_plan(budget: Budget, r: f64, p: usize, e: usize) -> Option<(usize, usize, usize)> {
    let (room, targets) = match budget {
        Budget::EncoderDecoder { inputs, targets } => (inputs.checked_sub(p + e), targets),
        Budget::Decoder { sequence } => (sequence.checked_sub(p + 2 * e), None),
    };
    let mut raw = room.filter(|&r| r >= 2)?;
    let max_targets = |raw: usize| raw - prefix_bounds(raw, r).0 + e;
    if let Some(tl) = targets {
        while raw > 1 && max_targets(raw) > tl {
            raw -= 1;
        }
        if max_targets(raw) > tl {
            return None;
        }
    }
    Some((raw, p + raw - 1 + e, max_targets(raw)))
}

fn plan_tuple(row: &PlanRow) -> (usize, usize, usize) {
    (row.raw_length, row.inputs_length, row.targets_length)
}

#[test]
fn prefix_lm_plans_match_the_linear_scan() {
    let s = sentinels();
    // Small densities converge slowest (each jump shrinks the gap by a factor 1 - 2r), and
    // 1e-7 is where float32 rounding of (1 - 2r)·hi dominates the split's lower bound.
    let densities = [0.0, 1e-7, 1e-4, 0.003, 0.05, 0.1, 0.2, 0.25, 0.3, 1.0 / 3.0, 0.4, 0.49, 0.5];
    for &r in &densities {
        for (p, e) in [(0, 1), (0, 0), (3, 1)] {
            let d = denoiser(Kind::PrefixLm { suffix_density: r }, p);
            let mut budgets = Vec::new();
            for inputs in (1..300).chain([511, 512, 1000, 4096, 65_537]) {
                budgets.push(Budget::EncoderDecoder { inputs, targets: None });
                budgets.push(Budget::Decoder { sequence: inputs });
                for targets in [0, 1, 2, 3, 5, 17, 100, 255, 256, 511, 4000] {
                    budgets.push(Budget::EncoderDecoder { inputs, targets: Some(targets) });
                }
            }
            for budget in budgets {
                let want = linear_prefix_plan(budget, r, p, e);
                let got = plan_denoiser(&d, budget, e == 1, &s);
                match (want, got) {
                    (Some(w), Ok(g)) => {
                        assert_eq!(plan_tuple(&g), w, "r={r} p={p} e={e} {budget:?}");
                    }
                    (None, Err(Error::Invalid { .. })) => {}
                    (w, g) => {
                        panic!("r={r} p={p} e={e} {budget:?}: linear scan {w:?}, planner {g:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn prefix_lm_plans_the_largest_row_at_once() {
    for r in [0.5, 0.25, 0.1, 0.0] {
        let budget = Budget::EncoderDecoder { inputs: ROW_LIMIT, targets: Some(512) };
        let plan = within_a_minute("PrefixLM at 2**32 - 1", move || {
            plan_denoiser(&denoiser(Kind::PrefixLm { suffix_density: r }, 0), budget, true, &sentinels())
        })
        .unwrap();
        // The longest possible targets (raw - lo + EOS) fit the 512, and one more raw token
        // would overflow them or the inputs.
        let max_targets = |raw: usize| raw - prefix_bounds(raw, r).0 + 1;
        assert_eq!(plan.targets_length, max_targets(plan.raw_length));
        let room = ROW_LIMIT - 1;
        assert!(plan.targets_length <= 512, "r={r}: {plan:?}");
        assert!(plan.raw_length == room || max_targets(plan.raw_length + 1) > 512, "r={r}: {plan:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Rows are limited to 2**32 - 1 tokens (item 12): run lengths are u32
// ---------------------------------------------------------------------------------------------

#[test]
fn budgets_beyond_the_row_limit_are_refused_for_every_denoiser() {
    let s = sentinels();
    let kinds = [span(0.15, 3.0, None), span(0.5, 3.0, Some(4)), Kind::PrefixLm { suffix_density: 0.5 }, Kind::CausalLm];
    let over = ROW_LIMIT + 1;
    for kind in kinds {
        let d = denoiser(kind, 1);
        for (budget, arg) in [
            (Budget::EncoderDecoder { inputs: over, targets: None }, "inputs_length"),
            (Budget::EncoderDecoder { inputs: 1 << 36, targets: Some(512) }, "inputs_length"),
            (Budget::EncoderDecoder { inputs: 512, targets: Some(over) }, "targets_length"),
            (Budget::Decoder { sequence: over }, "sequence_length"),
        ] {
            let got = within_a_minute("a budget over the limit", {
                let (d, s) = (d.clone(), s.clone());
                move || plan_denoiser(&d, budget, true, &s)
            });
            let err = got.expect_err(&format!("{:?} at {budget:?} must be refused", d.kind));
            let text = message(&err);
            assert!(text.starts_with(&format!("{arg}=")), "{text}");
            assert!(text.contains("2**32 - 1"), "{text}");
        }
    }
    let params = SpanParams::new(0.15, 3.0, None, false).unwrap();
    let err = plan_span_corruption(1 << 36, &params, None, 0, true, None).unwrap_err();
    assert!(message(&err).starts_with("inputs_length=68719476736: too large"), "{err}");
}

#[test]
fn no_plan_exceeds_the_row_limit() {
    // Capped spans, so that rows of 2**32 tokens are plannable when they fit.
    let s = Sentinels::t5(1_000_000, 100_000, Overflow::Cap, true).unwrap();
    let kinds = [
        span(0.15, 3.0, None),
        span(0.5, 3.0, None),
        span(0.15, 64.0, Some(2)),
        span(0.0, 3.0, None),
        Kind::PrefixLm { suffix_density: 0.5 },
        Kind::CausalLm,
    ];
    for kind in kinds {
        let d = denoiser(kind, 0);
        for budget in [
            Budget::EncoderDecoder { inputs: ROW_LIMIT, targets: None },
            Budget::EncoderDecoder { inputs: ROW_LIMIT, targets: Some(ROW_LIMIT) },
            Budget::EncoderDecoder { inputs: ROW_LIMIT - 5, targets: Some(1 << 30) },
            Budget::Decoder { sequence: ROW_LIMIT },
        ] {
            match plan_denoiser(&d, budget, true, &s) {
                Ok(plan) => assert!(plan.raw_length <= ROW_LIMIT, "{:?} at {budget:?}: {plan:?}", d.kind),
                Err(err) => assert!(message(&err).contains("2**32 - 1"), "{:?} at {budget:?}: {err}", d.kind),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Span corruption where some raw lengths cannot be realised (item 13)
// ---------------------------------------------------------------------------------------------

fn spec_fits(lengths: (usize, usize), budget: Budget) -> bool {
    let (i, t) = lengths;
    match budget {
        Budget::EncoderDecoder { inputs, targets } => i <= inputs && targets.is_none_or(|tl| t <= tl),
        Budget::Decoder { sequence } => i + t <= sequence,
    }
}

/// T5's helper keeps targets within inputs at `r = 0.5` (encoder-decoder budgets only).
fn half_rule(r: f64, lengths: (usize, usize), budget: Budget) -> bool {
    r != 0.5 || matches!(budget, Budget::Decoder { .. }) || lengths.1 <= lengths.0
}

fn spec_plan(row: &PlanRow) -> (usize, usize) {
    (row.raw_length, row.targets_length)
}

#[test]
fn mean_span_one_at_half_density_plans_raw_510_at_512() {
    let params = SpanParams::new(0.5, 1.0, None, false).unwrap();
    // T5's helper says (510, 512): its loop stops at 511 (inputs 512, targets 513, a row
    // T5's mask cannot draw) and the r = 0.5 rule steps back one token without recounting.
    // At 510 the mask gives 255 spans of one token: 511 inputs and 511 targets.
    let row = plan_span_corruption(512, &params, None, 0, true, None).unwrap();
    assert_eq!(spec_plan(&row), (510, 511), "{row:?}");
    assert_eq!((row.inputs_length, row.spans), (511, 255));
    for (inputs, want) in [(511, 510), (513, 512), (514, 513), (515, 514), (516, 514), (4, 2), (3, 2), (2, 1)] {
        let row = plan_span_corruption(inputs, &params, None, 0, true, None).unwrap();
        assert_eq!(row.raw_length, want, "inputs_length={inputs}: {row:?}");
        assert!(params.counts(row.raw_length).is_ok());
    }
}

#[test]
fn small_mean_spans_plan_the_largest_realisable_row() {
    let s = sentinels();
    for r in [0.5, 0.45, 0.55, 0.6] {
        for mu in [1.0, 1.05, 1.1, 1.2, 1.25, 1.3, 1.4] {
            for num_spans in [None, Some(3)] {
                for (p, e) in [(0, 1), (1, 0), (2, 1)] {
                    let d = denoiser(span(r, mu, num_spans), p);
                    for size in (1..160).chain([255, 511, 512, 1024]) {
                        for budget in [
                            Budget::EncoderDecoder { inputs: size, targets: None },
                            Budget::EncoderDecoder { inputs: size, targets: Some(size / 2 + 3) },
                            Budget::Decoder { sequence: size },
                        ] {
                            check_against_scan(&d, r, mu, num_spans, p, e, budget, &s);
                        }
                    }
                }
            }
        }
    }
}

/// The planner against a scan over every raw length: when it plans, the row is the largest
/// that T5 can realise and that fits; when it refuses, either nothing fits or T5 cannot draw
/// the longest row that would.
#[allow(clippy::too_many_arguments)]
fn check_against_scan(
    which: &Denoiser,
    r: f64,
    mu: f64,
    num_spans: Option<usize>,
    p: usize,
    e: usize,
    budget: Budget,
    sents: &Sentinels,
) {
    let fits = |raw| spec_fits(spec_lengths(raw, r, mu, num_spans, p, e), budget);
    let acceptable = |raw| {
        let lengths = spec_lengths(raw, r, mu, num_spans, p, e);
        spec_valid(raw, r, mu, num_spans) && spec_fits(lengths, budget) && half_rule(r, lengths, budget)
    };
    // With a fixed num_spans a 1-token row (no noise, as T5) is a degenerate fit the planner
    // does not take.
    let shortest = if num_spans.is_some() { 2 } else { 1 };
    // Output lengths grow with the raw length: nothing past the first overflow fits.
    let top = (1..=ROW_LIMIT).find(|&raw| !fits(raw)).unwrap() - 1;
    let want = (shortest..=top).rev().find(|&raw| acceptable(raw));
    let top = (top >= 1).then_some(top);
    match plan_denoiser(which, budget, e == 1, sents) {
        Ok(plan) => {
            let lengths = spec_lengths(plan.raw_length, r, mu, num_spans, p, e);
            assert_eq!(Some(plan.raw_length), want, "{:?} {budget:?}: {plan:?}", which.kind);
            assert_eq!((plan.inputs_length, plan.targets_length), lengths, "{:?} {budget:?}", which.kind);
        }
        Err(err) => {
            assert!(!matches!(err, Error::Internal(_)), "{err}");
            // Refused although a row fits: T5 cannot draw the longest fitting row, and the
            // message says so for that row, not for some probe elsewhere.
            if let (Some(_), Some(top)) = (want, top) {
                assert!(!spec_valid(top, r, mu, num_spans), "{:?} {budget:?}: {err}", which.kind);
                let text = message(&err);
                let names_top = text.contains(&format!(" {top}-token row")) || text.contains(&format!("at length {top};"));
                assert!(names_top, "{:?} {budget:?}: {err}", which.kind);
            }
        }
    }
}

#[test]
fn unrealisable_counts_are_reported_for_the_budgets_row() {
    // Every length from 5 on needs more spans (n = N ≈ 0.6·L) than its non-noise tokens.
    let params = SpanParams::new(0.6, 1.0, None, false).unwrap();
    let err = plan_span_corruption(512, &params, None, 0, true, None).unwrap_err();
    let text = message(&err);
    assert!(text.starts_with("noise_density=0.6:"), "{text}");
    assert!(text.contains("a 511-token row"), "{text}");
    assert!(!text.contains("3-token"), "{text}");
}

#[test]
fn too_small_names_the_shortest_row_and_the_budget() {
    // With 10 spans the shortest row T5 can draw at r = 0.5 has 20 tokens: 20 - 10 + 10 + EOS.
    let params = SpanParams::new(0.5, 3.0, Some(10), false).unwrap();
    let err = plan_span_corruption(12, &params, None, 0, true, None).unwrap_err();
    assert_eq!(
        message(&err),
        "inputs_length=12: too small: the shortest row (20 tokens) needs 21 inputs (prompt of 0 and EOS included)"
    );
    let d = denoiser(Kind::SpanCorruption(params), 2);
    let err = plan_denoiser(&d, Budget::Decoder { sequence: 30 }, true, &sentinels()).unwrap_err();
    assert_eq!(
        message(&err),
        "sequence_length=30: too small: the shortest row (20 tokens) needs 44 tokens, 23 inputs and 21 \
         targets (prompt of 2 and EOS included)"
    );
    let params = SpanParams::new(0.15, 3.0, None, false).unwrap();
    let err = plan_span_corruption(1, &params, None, 0, true, None).unwrap_err();
    assert_eq!(
        message(&err),
        "inputs_length=1: too small: the shortest row (1 token) needs 2 inputs (prompt of 0 and EOS included)"
    );
}

proptest! {
    #![proptest_config(config())]

    /// For any counts rule and budget: a planned row is one T5 can draw, produces the planned
    /// lengths and fits, and no longer row T5 can draw fits.
    #[test]
    fn planned_rows_are_realisable_and_maximal(
        r in prop_oneof![Just(0.5), Just(0.15), 0.0f64..=1.0],
        mu in prop_oneof![Just(1.0), 0.3f64..1.6, 1.0f64..70.0],
        num_spans in prop::option::weighted(0.2, 1usize..30),
        budget in prop_oneof![
            3 => (1usize..5000, prop::option::weighted(0.4, 1usize..3000))
                .prop_map(|(inputs, targets)| Budget::EncoderDecoder { inputs, targets }),
            1 => (1usize..8000).prop_map(|sequence| Budget::Decoder { sequence }),
        ],
        eos in any::<bool>(),
        p in 0usize..4,
    ) {
        let e = usize::from(eos);
        let d = denoiser(span(r, mu, num_spans), p);
        let Ok(plan) = plan_denoiser(&d, budget, eos, &sentinels()) else { return Ok(()) };
        let raw = plan.raw_length;
        let lengths = spec_lengths(raw, r, mu, num_spans, p, e);
        prop_assert!(spec_valid(raw, r, mu, num_spans), "{plan:?}: T5 cannot draw {raw} tokens");
        prop_assert_eq!((plan.inputs_length, plan.targets_length), lengths);
        prop_assert!(spec_fits(lengths, budget) && half_rule(r, lengths, budget), "{:?} over {:?}", plan, budget);
        // Outputs grow with the raw length, so past the first raw whose row overflows
        // nothing longer fits.
        let longer = (raw + 1..=ROW_LIMIT).find(|&l| {
            let lengths = spec_lengths(l, r, mu, num_spans, p, e);
            !spec_fits(lengths, budget) || (spec_valid(l, r, mu, num_spans) && half_rule(r, lengths, budget))
        });
        let longer = longer.unwrap();
        prop_assert!(!spec_fits(spec_lengths(longer, r, mu, num_spans, p, e), budget),
            "{plan:?}: {longer} tokens also fit {budget:?}");
    }
}
