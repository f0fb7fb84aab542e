//! SPEC §2 / §8.3: token checks, the sentinel policy, and applying a mask.

use ul2_core::{Error, OutToken, Overflow, Runs, applied_lengths, apply_runs};

use super::not_internal;
use crate::cases::ApplicationCase;
use crate::reference::{reference_apply, reinsert};

/// For any mask, tokens and sentinels: `check_tokens` refuses exactly the negative,
/// out-of-vocabulary, too-wide and (when checked) colliding ids, naming a real culprit;
/// `admit` refuses (or caps) exactly what the policy refuses; `apply_runs` writes
/// `applied_lengths` of the T5 layout ([`reference_apply`]); and re-inserting targets at
/// their sentinels ([`reinsert`]) gives the tokens back.
pub fn mask_application(c: &ApplicationCase) {
    if c.wide { application::<i64>(c) } else { application::<i32>(c) }
}

fn application<O: OutToken + Into<i64>>(c: &ApplicationCase) {
    let (sentinels, tokens, length) = (&c.sentinels, &c.tokens, c.tokens.len());
    let check = sentinels.check_collisions;
    let limit = sentinels.vocab_size().map_or(O::MAX, |v| (v - 1).min(O::MAX));
    match sentinels.check_tokens(tokens, O::MAX, "tokens") {
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
            for &t in tokens {
                assert!((0..=limit).contains(&t), "{t} accepted but outside [0, {limit}]");
                assert!(!(check && sentinels.contains(t)), "collision {t} accepted");
            }
        }
    }

    let runs = Runs::from_mask(&c.mask).expect("a small mask");
    let mut again = Vec::new();
    runs.write_mask(&mut again);
    assert_eq!(again, c.mask);
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
        return; // the engine refuses such sentinels for the output dtype first
    }
    let (mut inputs, mut targets) = (vec![O::from_i64(-7); li], vec![O::from_i64(-7); lt]);
    assert_eq!(apply_runs(tokens, &runs, sentinels, &mut inputs, &mut targets), (li, lt));
    let wide = |v: &[O]| -> Vec<i64> { v.iter().map(|&x| x.into()).collect() };
    let (inputs, targets) = (wide(&inputs), wide(&targets));
    let (want_in, want_tg) = reference_apply(tokens, &c.mask, sentinels);
    assert_eq!(inputs, want_in, "inputs are not the T5 layout");
    assert_eq!(targets, want_tg, "targets are not the T5 layout");
    assert!(length > 0 || (li, lt) == (0, 0));
    assert_eq!(li + lt, length + 2 * runs.noise_runs() + usize::from(runs.ends_clean()));

    // By ids alone, where ids cannot be confused with tokens. (Past the last id, policy
    // "t5" counts down and may meet an id already used.)
    if used <= sentinels.count() && tokens.iter().all(|&t| !sentinels.contains(t)) {
        assert_eq!(reinsert(&inputs, &targets, sentinels).as_ref(), Ok(tokens), "round trip");
    }
}
