//! Sentinel ids and mask application in T5's layout.

use crate::error::{Error, Result, Where};

/// What to do when a row has more noise spans than sentinel ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `ValueError` naming the row, the spans and the sentinels available (default).
    Error,
    /// Limit the number of spans to the sentinels available.
    Cap,
    /// Keep counting down below the last sentinel into the vocabulary, as T5 does.
    T5,
}

impl Overflow {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "error" => Ok(Self::Error),
            "cap" => Ok(Self::Cap),
            "t5" => Ok(Self::T5),
            _ => Err(Error::invalid("on_overflow", format!("{s:?}"), "must be 'error', 'cap' or 't5'")),
        }
    }
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Cap => "cap",
            Self::T5 => "t5",
        }
    }
}

/// Membership test for sentinel ids inside `[lo, hi]`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Membership {
    /// The ids fill `[lo, hi]`: a range test (T5's layout).
    Range,
    /// A bitset over `[lo, hi]`, for scattered ids spanning at most 2^24 values.
    Bits(Vec<u64>),
    /// Sorted ids, binary-searched, for ids spread wider than that.
    Sorted(Vec<i64>),
}

/// Sentinel ids: `ids[k]` stands for `<extra_id_k>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    ids: Vec<i64>,
    vocab_size: Option<i64>,
    pub on_overflow: Overflow,
    pub check_collisions: bool,
    lo: i64,
    hi: i64,
    /// How to tell a sentinel id within `[lo, hi]`.
    member: Membership,
}

impl Sentinels {
    /// T5's layout: `<extra_id_k> = vocab_size − 1 − k` for `k < count`.
    pub fn t5(vocab_size: i64, count: usize, on_overflow: Overflow, check_collisions: bool) -> Result<Self> {
        if count == 0 {
            return Err(Error::invalid("count", 0, "must be >= 1"));
        }
        if vocab_size < count as i64 {
            return Err(Error::invalid(
                "vocab_size",
                vocab_size,
                format!("must be >= count={count} so every sentinel id is >= 0"),
            ));
        }
        let mut ids = crate::alloc::with_capacity(count, "count")?;
        ids.extend((0..count).map(|k| vocab_size - 1 - k as i64));
        Ok(Self::build(ids, Some(vocab_size), on_overflow, check_collisions))
    }

    /// Any ids, in `<extra_id_0>, <extra_id_1>, …` order; they must be distinct and >= 0.
    pub fn from_ids(ids: Vec<i64>, on_overflow: Overflow, check_collisions: bool) -> Result<Self> {
        if ids.is_empty() {
            return Err(Error::invalid("ids", "[]", "must hold at least one sentinel id"));
        }
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, id)| **id < 0) {
            return Err(Error::invalid("ids", format!("[..{id}..]"), format!("ids[{i}]={id} is negative")));
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if let Some(&[twice, _]) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid("ids", format!("[..{twice}..]"), format!("{twice} appears twice")));
        }
        Ok(Self::build(ids, None, on_overflow, check_collisions))
    }

    fn build(ids: Vec<i64>, vocab_size: Option<i64>, on_overflow: Overflow, check_collisions: bool) -> Self {
        let lo = *ids.iter().min().expect("non-empty");
        let hi = *ids.iter().max().expect("non-empty");
        let span = (hi - lo) as u64 + 1;
        let member = if span == ids.len() as u64 {
            Membership::Range
        } else if span <= 1 << 24 {
            let mut bits = vec![0u64; span.div_ceil(64) as usize];
            for &id in &ids {
                let b = (id - lo) as usize;
                bits[b / 64] |= 1 << (b % 64);
            }
            Membership::Bits(bits)
        } else {
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            Membership::Sorted(sorted)
        };
        Self { ids, vocab_size, on_overflow, check_collisions, lo, hi, member }
    }

    #[must_use]
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }
    #[must_use]
    pub fn count(&self) -> usize {
        self.ids.len()
    }
    #[must_use]
    pub fn vocab_size(&self) -> Option<i64> {
        self.vocab_size
    }

    /// Whether `token` is one of the sentinel ids.
    #[inline]
    #[must_use]
    pub fn contains(&self, token: i64) -> bool {
        token >= self.lo
            && token <= self.hi
            && match &self.member {
                Membership::Range => true,
                Membership::Bits(bits) => {
                    let b = (token - self.lo) as usize;
                    bits[b / 64] >> (b % 64) & 1 == 1
                }
                Membership::Sorted(sorted) => sorted.binary_search(&token).is_ok(),
            }
    }

    /// Checks an id that rows carry besides their tokens (EOS, padding, a prompt, a document
    /// separator), as tokens are checked: inside the vocabulary, representable in outputs
    /// of ids up to `max_id`, and not a sentinel (a sentinel there makes the targets
    /// ambiguous) unless collisions are not checked.
    pub fn check_id(&self, arg: &'static str, id: i64, max_id: i64) -> Result<()> {
        let reason = if id < 0 {
            "must be >= 0".to_owned()
        } else if let Some(reason) = self.out_of_range(id, max_id) {
            reason
        } else if let Some(k) = self.ids.iter().position(|&s| s == id).filter(|_| self.check_collisions) {
            format!("is the sentinel <extra_id_{k}>; give another id (or pass check_collisions=False to Sentinels)")
        } else {
            return Ok(());
        };
        Err(Error::invalid(arg, id, reason))
    }

    /// Why an id `>= 0` cannot be output (outside the vocabulary, or wider than `max_id`),
    /// as token and id checks both say it.
    fn out_of_range(&self, id: i64, max_id: i64) -> Option<String> {
        if let Some(v) = self.vocab_size.filter(|&v| id >= v) {
            Some(format!("is outside the vocabulary (vocab_size={v})"))
        } else if id > max_id {
            Some(format!("does not fit the output dtype (max {max_id}); use dtype=numpy.int64"))
        } else {
            None
        }
    }

    /// Checks that every sentinel id fits outputs of ids up to `max_id` (a wider id would
    /// be cut to another, real token).
    pub fn check_fits(&self, max_id: i64, fix: &str) -> Result<()> {
        if self.hi <= max_id {
            return Ok(());
        }
        let k = self.ids.iter().position(|&s| s == self.hi).unwrap_or(0);
        Err(Error::invalid(
            "sentinels",
            format!("<extra_id_{k}>={}", self.hi),
            format!("does not fit the output dtype (max {max_id}); {fix}"),
        ))
    }

    /// The id of the `k`-th sentinel of a row; past the last id it continues downwards from
    /// the lowest id, as T5 does (only reached with `on_overflow="t5"`).
    #[inline]
    #[must_use]
    pub fn id(&self, k: usize) -> i64 {
        match self.ids.get(k) {
            Some(&id) => id,
            // Below the lowest id, so no id repeats (T5's layout: below <extra_id_{E-1}>).
            None => self.lo - (k + 1 - self.ids.len()) as i64,
        }
    }

    /// Spans a row may have under the overflow policy: `spans` itself, capped for
    /// `Cap`, or an error for `Error` when it needs more sentinels than there are.
    /// `extra` is the number of sentinels beyond one per span the row may use
    /// (one for `random_roll`, whose wrap can split a span).
    pub fn admit(&self, spans: usize, extra: usize) -> Result<usize> {
        let needed = spans + extra;
        if needed <= self.count() || spans == 0 {
            return Ok(spans);
        }
        match self.on_overflow {
            Overflow::T5 => {
                let lowest = self.id(needed - 1);
                if lowest < 0 {
                    return Err(Error::SentinelOverflow {
                        where_: Where::arg("sentinels"),
                        spans,
                        needed,
                        available: self.count(),
                        fix: "on_overflow='t5' would count below id 0; use 'cap' or more sentinels",
                    });
                }
                Ok(spans)
            }
            Overflow::Cap if self.count() > extra => Ok(self.count() - extra),
            Overflow::Cap | Overflow::Error => Err(Error::SentinelOverflow {
                where_: Where::arg("sentinels"),
                spans,
                needed,
                available: self.count(),
                fix: "give more sentinel ids (Sentinels.t5(vocab_size, count=...)), lower noise_density or raise \
                      mean_span_length, or pass on_overflow='cap' or 't5'",
            }),
        }
    }

    /// Checks a row's tokens: non-negative, below the vocabulary size when known, at most
    /// `max_id` (what the output dtype holds) and, unless turned off, not a sentinel id.
    /// One vectorised pass ([`crate::Token::any_outside`]); the per-token scan runs only
    /// to name the culprit (or to clear ids between scattered sentinels).
    pub fn check_tokens<T: crate::Token>(&self, tokens: &[T], max_id: i64, arg: &'static str) -> Result<()> {
        let limit = self.vocab_size.map_or(max_id, |v| (v - 1).min(max_id));
        let (limit, inside) = match self.check_collisions.then_some((self.lo, self.hi)) {
            // Sentinels at the top of the ids allowed (T5's layout): one bound, one test.
            Some((lo, hi)) if hi >= limit && lo <= limit.saturating_add(1) => (lo - 1, None),
            inside => (limit, inside),
        };
        if !T::any_outside(tokens, limit, inside) {
            return Ok(());
        }
        for (position, &t) in tokens.iter().enumerate() {
            let token = t.to_i64();
            let reason = if token < 0 {
                "is negative".to_owned()
            } else if let Some(reason) = self.out_of_range(token, max_id) {
                reason
            } else if self.check_collisions && self.contains(token) {
                return Err(Error::SentinelCollision { where_: Where::arg(arg), position, token });
            } else {
                continue;
            };
            return Err(Error::TokenOutOfRange { where_: Where::arg(arg), position, token, reason });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denoise::mask::apply_mask;

    fn apply(tokens: &[i64], mask: &[bool], s: &Sentinels) -> (Vec<i64>, Vec<i64>) {
        apply_mask(tokens, mask, s, None).unwrap()
    }

    #[test]
    fn t5_denoise_vector() {
        let s = Sentinels::t5(26, 2, Overflow::Error, true).unwrap();
        let tokens = [3, 2, 20, 4, 3, 2, 8, 13, 2, 3, 2, 23, 7, 19, 22, 3, 2, 7, 2];
        let mut mask = vec![false; 19];
        mask[8] = true;
        mask[14..].iter_mut().for_each(|m| *m = true);
        let (i, t) = apply(&tokens, &mask, &s);
        assert_eq!(i, [3, 2, 20, 4, 3, 2, 8, 13, 25, 3, 2, 23, 7, 19, 24]);
        assert_eq!(t, [25, 2, 24, 22, 3, 2, 7, 2]);
    }

    #[test]
    fn no_noise_gives_one_sentinel_target() {
        let s = Sentinels::t5(1000, 100, Overflow::Error, true).unwrap();
        assert_eq!(apply(&[10, 11, 12], &[false; 3], &s), (vec![10, 11, 12], vec![999]));
    }

    #[test]
    fn scattered_ids_are_told_apart_from_their_neighbours() {
        for ids in [vec![5, 9, 7], vec![3, 1 << 30]] {
            let s = Sentinels::from_ids(ids.clone(), Overflow::Error, true).unwrap();
            let lo = *ids.iter().min().unwrap();
            for t in lo - 2..lo + 12 {
                assert_eq!(s.contains(t), ids.contains(&t), "{t} in {ids:?}");
            }
            assert!(s.check_tokens(&[6i64, 8, 4], 1 << 40, "rows").is_ok());
            assert!(matches!(s.check_tokens(&[6i64, lo], 1 << 40, "rows"), Err(Error::SentinelCollision { .. })));
        }
    }

    #[test]
    fn overflow_policies() {
        let e = Sentinels::t5(1000, 100, Overflow::Error, true).unwrap();
        assert!(matches!(e.admit(128, 0), Err(Error::SentinelOverflow { needed: 128, .. })));
        let c = Sentinels::t5(1000, 100, Overflow::Cap, true).unwrap();
        assert_eq!(c.admit(128, 1).unwrap(), 99);
        let t = Sentinels::t5(1000, 100, Overflow::T5, true).unwrap();
        assert_eq!(t.admit(128, 0).unwrap(), 128);
        assert_eq!(t.id(127), 1000 - 128);
    }
}
