//! The planner at its edges: budgets near the 32-bit limit of a row, and PrefixLM budgets
//! far larger than their targets.
//!
//! Each search is checked against a plain scan over every raw length, written out here
//! independently of `plan.rs`.
use std::sync::mpsc;
use std::time::Duration;

use ul2_core::{
    Budget, Denoiser, Error, Kind, Overflow, PlanRow, Sentinels, SpanParams, plan_denoiser,
    plan_span_corruption, prefix_bounds,
};

const ROW_LIMIT: usize = u32::MAX as usize;

/// `f()` on another thread, failing the test if it has not returned after a minute: a plan
/// that scans its budget token by token takes hours at these sizes, and should fail rather
/// than hang the suite.
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what}: still planning after a minute"))
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
    let densities = [
        0.0,
        1e-7,
        1e-4,
        0.003,
        0.05,
        0.1,
        0.2,
        0.25,
        0.3,
        1.0 / 3.0,
        0.4,
        0.49,
        0.5,
    ];
    for &r in &densities {
        for (p, e) in [(0, 1), (0, 0), (3, 1)] {
            let d = denoiser(Kind::PrefixLm { suffix_density: r }, p);
            let mut budgets = Vec::new();
            for inputs in (1..300).chain([511, 512, 1000, 4096, 65_537]) {
                budgets.push(Budget::EncoderDecoder {
                    inputs,
                    targets: None,
                });
                budgets.push(Budget::Decoder { sequence: inputs });
                for targets in [0, 1, 2, 3, 5, 17, 100, 255, 256, 511, 4000] {
                    budgets.push(Budget::EncoderDecoder {
                        inputs,
                        targets: Some(targets),
                    });
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
        let budget = Budget::EncoderDecoder {
            inputs: ROW_LIMIT,
            targets: Some(512),
        };
        let plan = within_a_minute("PrefixLM at 2**32 - 1", move || {
            plan_denoiser(
                &denoiser(Kind::PrefixLm { suffix_density: r }, 0),
                budget,
                true,
                &sentinels(),
            )
        })
        .unwrap();
        // The longest possible targets (raw - lo + EOS) fit the 512, and one more raw token
        // would overflow them or the inputs.
        let max_targets = |raw: usize| raw - prefix_bounds(raw, r).0 + 1;
        assert_eq!(plan.targets_length, max_targets(plan.raw_length));
        let room = ROW_LIMIT - 1;
        assert!(plan.targets_length <= 512, "r={r}: {plan:?}");
        assert!(
            plan.raw_length == room || max_targets(plan.raw_length + 1) > 512,
            "r={r}: {plan:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Rows are limited to 2**32 - 1 tokens (item 12): run lengths are u32
// ---------------------------------------------------------------------------------------------

#[test]
fn budgets_beyond_the_row_limit_are_refused_for_every_denoiser() {
    let s = sentinels();
    let kinds = [
        span(0.15, 3.0, None),
        span(0.5, 3.0, Some(4)),
        Kind::PrefixLm {
            suffix_density: 0.5,
        },
        Kind::CausalLm,
    ];
    let over = ROW_LIMIT + 1;
    for kind in kinds {
        let d = denoiser(kind, 1);
        for (budget, arg) in [
            (
                Budget::EncoderDecoder {
                    inputs: over,
                    targets: None,
                },
                "inputs_length",
            ),
            (
                Budget::EncoderDecoder {
                    inputs: 1 << 36,
                    targets: Some(512),
                },
                "inputs_length",
            ),
            (
                Budget::EncoderDecoder {
                    inputs: 512,
                    targets: Some(over),
                },
                "targets_length",
            ),
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
    assert!(
        message(&err).starts_with("inputs_length=68719476736: too large"),
        "{err}"
    );
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
        Kind::PrefixLm {
            suffix_density: 0.5,
        },
        Kind::CausalLm,
    ];
    for kind in kinds {
        let d = denoiser(kind, 0);
        for budget in [
            Budget::EncoderDecoder {
                inputs: ROW_LIMIT,
                targets: None,
            },
            Budget::EncoderDecoder {
                inputs: ROW_LIMIT,
                targets: Some(ROW_LIMIT),
            },
            Budget::EncoderDecoder {
                inputs: ROW_LIMIT - 5,
                targets: Some(1 << 30),
            },
            Budget::Decoder {
                sequence: ROW_LIMIT,
            },
        ] {
            match plan_denoiser(&d, budget, true, &s) {
                Ok(plan) => assert!(
                    plan.raw_length <= ROW_LIMIT,
                    "{:?} at {budget:?}: {plan:?}",
                    d.kind
                ),
                Err(err) => assert!(
                    message(&err).contains("2**32 - 1"),
                    "{:?} at {budget:?}: {err}",
                    d.kind
                ),
            }
        }
    }
}
