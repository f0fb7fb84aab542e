//! SPEC §8.4: planned lengths are produced lengths, within the budget, and maximal.

use ul2_core::{
    Budget, Config, Denoiser, Engine, FimLoss, Kind, LongRows, Mixture, Overflow, PlanRow, RowConfig, Rows, Sentinels,
    denoise_rows, example_bounds, plan_denoiser,
};

use super::{EOS, MAX_ROW, not_internal, run_row};
use crate::cases::PlanCase;
use crate::reference::{filler, spec_counts};

/// For any denoiser, budget, EOS and sentinel policy, `plan_denoiser` and `Engine::new`
/// both refuse (a caller's-mistake error) or both plan the same raw length, within the
/// budget (a decoder row of prefix or causal LM filled exactly). Rows of that length, for
/// any key, are produced through the engine's layout and into buffers of exactly the
/// planned lengths: those lengths exactly (at most, for the random-length prefix LM and
/// rolled masks), with the planned spans and sentinels; at `r = 0.5` targets stay within
/// inputs. Span corruption's and causal LM's raw lengths are maximal: one more token no
/// longer fits.
pub fn planner(c: &PlanCase) {
    let d = &c.denoiser;
    let eos_id = c.eos.then_some(EOS);
    let mixture = Mixture::new(vec![(d.clone(), 1.0)]).expect("one denoiser");
    let config = Config {
        eos_id,
        seed: c.seed,
        // Rows past their raw length are refused, as pack_bins refuses them.
        long_rows: LongRows::Error,
        ..Config::new(mixture, c.sentinels.clone(), c.budget)
    };
    let (plan, engine) = match (plan_denoiser(d, c.budget, c.eos, &c.sentinels), Engine::new(config)) {
        (Ok(plan), Ok(engine)) => (plan, engine),
        (Err(e), Err(f)) => {
            not_internal(&e);
            not_internal(&f);
            return;
        }
        (plan, engine) => panic!("plan_denoiser gives {plan:?} but Engine::new {:?}", engine.err()),
    };
    assert_eq!(engine.raw_lengths(), [plan.raw_length], "the engine plans otherwise");
    within_budget(d, c.budget, c.eos, &plan);
    let layout = engine.layout();
    if plan.raw_length + layout.widths.1 > MAX_ROW {
        return; // legal (e.g. noise_density ~ 1 without targets_length), too big to fuzz fast
    }
    let cfg = engine.row_config();
    let tokens = filler(plan.raw_length, c.salt, 997);
    for &key in &c.keys {
        let out = denoise_rows(&cfg, &Rows::Ragged(vec![&tokens[..]]), &[key], &[0, 1], layout, 0i32)
            .unwrap_or_else(|e| panic!("planned row refused: {e} ({plan:?}, {c:?})"));
        let (inputs, targets, _) = run_row(&cfg, &tokens, key, (plan.inputs_length, plan.targets_length))
            .unwrap_or_else(|e| panic!("planned row does not fit its planned lengths: {e} ({plan:?}, {c:?})"));
        let seg = out.segments[0];
        assert_eq!((seg.inputs as usize, seg.targets as usize), (inputs.len(), targets.len()), "{c:?}");
        produced(d, c.budget, &c.sentinels, &plan, &inputs, &targets, c.eos);
        assert_eq!(example_bounds(&cfg, plan.raw_length, key).map(|b| b.0), Ok(0));
    }
    maximal(&cfg, d, c.budget, &plan);
}

fn within_budget(d: &Denoiser, budget: Budget, eos: bool, plan: &PlanRow) {
    let (p, e) = (d.prefix.len(), usize::from(eos));
    assert!(plan.raw_length >= 1, "{plan:?}");
    match budget {
        Budget::EncoderDecoder { inputs, targets } => {
            assert!(plan.inputs_length <= inputs, "{plan:?} over inputs {inputs}");
            assert!(targets.is_none_or(|t| plan.targets_length <= t), "{plan:?} over targets {targets:?}");
        }
        // Prefix LM's lengths are separate maxima (long inputs, or long targets); a row
        // holds both, and every split (or the whole row as target) fills the sequence.
        Budget::Decoder { sequence } if matches!(d.kind, Kind::PrefixLm { .. } | Kind::CausalLm) => {
            assert_eq!(p + plan.raw_length + 2 * e, sequence, "{plan:?}");
        }
        // Fill-in-the-middle rows hold the three ids and one EOS, however they are cut.
        Budget::Decoder { sequence } if matches!(d.kind, Kind::FillInTheMiddle(_)) => {
            assert_eq!(p + 3 + plan.raw_length + e, sequence, "{plan:?}");
        }
        Budget::Decoder { sequence } => {
            assert!(plan.inputs_length + plan.targets_length <= sequence, "{plan:?} over sequence {sequence}");
        }
    }
}

/// A produced row against its plan.
fn produced(d: &Denoiser, budget: Budget, sentinels: &Sentinels, plan: &PlanRow, inputs: &[i64], targets: &[i64], eos: bool) {
    let (p, e) = (d.prefix.len(), usize::from(eos));
    match &d.kind {
        Kind::SpanCorruption(params) => {
            let (_, n) = spec_counts(plan.raw_length, params.noise_density, params.mean_span_length, params.num_spans)
                .expect("a planned row's counts are drawable");
            let roll = params.random_roll;
            let n =
                if sentinels.on_overflow == Overflow::Cap { n.min(sentinels.count() - usize::from(roll && n > 0)) } else { n };
            assert_eq!(plan.spans, n, "{plan:?}");
            let used = sentinel_tokens(targets, sentinels, plan.sentinels.max(n + 2));
            if roll {
                assert!(inputs.len() <= plan.inputs_length && targets.len() <= plan.targets_length, "{plan:?}");
                assert!(used <= plan.sentinels, "{used} sentinels used, {} planned", plan.sentinels);
            } else {
                assert_eq!((inputs.len(), targets.len()), (plan.inputs_length, plan.targets_length), "{plan:?}");
                assert_eq!(used, plan.sentinels, "{plan:?}");
            }
            let half = params.noise_density == 0.5 && !roll;
            if half && matches!(budget, Budget::EncoderDecoder { targets: None, .. }) {
                assert!(plan.targets_length <= plan.inputs_length, "{plan:?}: r=0.5 targets exceed inputs");
            }
        }
        Kind::PrefixLm { .. } => {
            assert!(inputs.len() <= plan.inputs_length && targets.len() <= plan.targets_length, "{plan:?}");
            assert_eq!(inputs.len() + targets.len(), p + plan.raw_length + 2 * e);
        }
        Kind::CausalLm => {
            assert_eq!((inputs.len(), targets.len()), (plan.inputs_length, plan.targets_length), "{plan:?}");
            assert_eq!(inputs.len() + targets.len(), p + plan.raw_length + 2 * e);
        }
        Kind::FillInTheMiddle(params) => {
            // Encoder-decoder rows and loss="middle" target the middle; loss="all" the whole row.
            let all = params.loss == FimLoss::All && matches!(budget, Budget::Decoder { .. });
            if all {
                assert_eq!((inputs.len(), targets.len()), (plan.inputs_length, plan.targets_length), "{plan:?}");
            } else {
                assert!(inputs.len() <= plan.inputs_length && targets.len() <= plan.targets_length, "{plan:?}");
            }
            assert_eq!(inputs.len() + targets.len(), p + 3 + plan.raw_length + e);
        }
        // Random inputs length, at most the planned one; the targets are the row.
        Kind::TextInfilling(_) => {
            assert!(inputs.len() <= plan.inputs_length, "{plan:?}");
            assert_eq!(targets.len(), plan.targets_length, "{plan:?}");
        }
    }
}

/// Sentinel tokens in a produced row's targets, by position in the id sequence: with
/// `on_overflow="t5"` ids continue below the sentinel range.
fn sentinel_tokens(targets: &[i64], sentinels: &Sentinels, first: usize) -> usize {
    let ids: Vec<i64> = (0..first).map(|k| sentinels.id(k)).collect();
    targets.iter().filter(|t| ids.contains(t)).count()
}

/// One more raw token does not fit (by bounds, exact but for a roll's one sentinel, which
/// the planner uses too); at `r = 0.5` T5's helper also keeps targets within inputs.
fn maximal(cfg: &RowConfig<'_>, d: &Denoiser, budget: Budget, plan: &PlanRow) {
    let half = match &d.kind {
        Kind::SpanCorruption(params) => params.noise_density == 0.5,
        Kind::CausalLm => false,
        // Random lengths: maximal by the bound the planner uses (tests/infilling.rs).
        Kind::PrefixLm { .. } | Kind::TextInfilling(_) => return,
        Kind::FillInTheMiddle(_) => {
            // Some key puts every token in the middle, another none: one more token overflows
            // the targets or the inputs.
            let (p, e) = (d.prefix.len(), usize::from(cfg.eos_id.is_some()));
            let (raw, ids) = (plan.raw_length + 1, 3);
            let fits = match budget {
                Budget::EncoderDecoder { inputs, targets } => p + ids + raw <= inputs && targets.is_none_or(|t| raw + e <= t),
                Budget::Decoder { sequence } => p + ids + raw + e <= sequence,
            };
            assert!(!fits, "raw {} + 1 still fits in {budget:?}: {d:?}", plan.raw_length);
            return;
        }
    };
    let free = RowConfig { max_raw: &[], ..*cfg };
    let Ok((_, i1, t1)) = example_bounds(&free, plan.raw_length + 1, 0) else {
        return; // T5 cannot draw the counts one token longer: nothing to grow into
    };
    let fits = match budget {
        // Causal LM's targets default to the inputs budget (the whole row is the target).
        Budget::EncoderDecoder { inputs, targets } => {
            let targets = targets.or(matches!(d.kind, Kind::CausalLm).then_some(inputs));
            i1 <= inputs && targets.is_none_or(|t| t1 <= t) && (!half || t1 <= i1)
        }
        Budget::Decoder { sequence } => i1 + t1 <= sequence,
    };
    assert!(!fits, "raw {} + 1 still fits ({i1}, {t1}) in {budget:?}: {d:?}", plan.raw_length);
}
