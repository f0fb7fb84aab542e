//! Fill-in-the-middle (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in
//! the Middle"; StarCoder), at the token level.
//!
//! # Law (part of ul2's output format; pinned by golden vectors)
//!
//! A row of `n` raw tokens is cut at two points drawn independently and uniformly from
//! `{0, …, n}` and sorted, `a ≤ b` (stream `(seed, k, FimCuts)`: `below(n + 1)` twice), as
//! Megatron-LM's `GPTFIMDataset._fim_permute_sequence` and bigcode's Megatron `permute` do
//! with `np_rng.randint(0, len + 1, size=2)`, there over characters. So
//! `P(a = i, b = j) = 2/(n+1)²` for `i < j` and `1/(n+1)²` for `i = j`: prefix `tokens[..a]`,
//! middle `tokens[a..b]`, suffix `tokens[b..]`, each possibly empty. The row is SPM with
//! probability `spm_rate` (`unit_f64` of the first draw of `(seed, k, FimOrder)` below
//! `spm_rate`), else PSM:
//!
//! - PSM: `<pre> prefix <suf> suffix <mid> middle`
//! - SPM: `<pre> <suf> suffix <mid> prefix middle` (the FIM paper's SPM variant StarCoder and
//!   Megatron train with)
//!
//! The context is everything before the middle; [`FimLoss`] says whether the targets are the
//! whole rearranged row or only the middle. Either way the row holds `3 + n` tokens besides the
//! prompt and EOS, whatever the cuts: the planner fills a budget exactly.

use crate::error::{Error, Result};
use crate::rng::{Purpose, Stream};
use crate::{OutToken, Token};

/// Which part of a fill-in-the-middle row is the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FimLoss {
    /// The whole rearranged row (`<pre>` to the end of the middle): inputs hold only the
    /// prompt, as in [`super::Kind::CausalLm`].
    All,
    /// Only the middle: inputs are the prompt and the context (prefix and suffix with their
    /// ids), targets the middle. Encoder-decoder rows always use this split.
    Middle,
}

impl FimLoss {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(Self::All),
            "middle" => Ok(Self::Middle),
            _ => Err(Error::invalid("loss", format!("{s:?}"), "must be 'all' or 'middle'")),
        }
    }
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Middle => "middle",
        }
    }
}

/// The parameters of a fill-in-the-middle denoiser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FimParams {
    pub prefix_id: i64,
    pub middle_id: i64,
    pub suffix_id: i64,
    pub spm_rate: f64,
    pub loss: FimLoss,
}

impl FimParams {
    /// Checks the ids (each `>= 0`, all three distinct) and `spm_rate` (in `[0, 1]`).
    pub fn new(prefix_id: i64, middle_id: i64, suffix_id: i64, spm_rate: f64, loss: FimLoss) -> Result<Self> {
        let named = [("prefix_id", prefix_id), ("middle_id", middle_id), ("suffix_id", suffix_id)];
        for (i, &(arg, id)) in named.iter().enumerate() {
            if id < 0 {
                return Err(Error::invalid(arg, id, "must be >= 0"));
            }
            if let Some(&(other, _)) = named[..i].iter().find(|(_, o)| *o == id) {
                return Err(Error::invalid(arg, id, format!("is also {other}; the three FIM ids must differ")));
            }
        }
        if !(0.0..=1.0).contains(&spm_rate) {
            return Err(Error::invalid("spm_rate", crate::error::real(spm_rate), "must be a number in [0, 1]"));
        }
        Ok(Self { prefix_id, middle_id, suffix_id, spm_rate, loss })
    }

    /// The ids with their argument names, for checks against sentinels and the dtype.
    #[must_use]
    pub const fn ids(&self) -> [(&'static str, i64); 3] {
        [("prefix_id", self.prefix_id), ("middle_id", self.middle_id), ("suffix_id", self.suffix_id)]
    }

    /// These parameters with the middle as the target (encoder-decoder rows).
    #[must_use]
    pub const fn middle_only(self) -> Self {
        Self { loss: FimLoss::Middle, ..self }
    }

    /// `(inputs, targets)` lengths without prompt and EOS of a row of `length` tokens whose
    /// middle has `middle` tokens: they always sum to `3 + length`.
    #[must_use]
    pub const fn lengths(&self, length: usize, middle: usize) -> (usize, usize) {
        match self.loss {
            FimLoss::All => (0, 3 + length),
            FimLoss::Middle => (3 + length - middle, middle),
        }
    }
}

/// The ids a fill-in-the-middle row carries besides its tokens.
pub const FIM_IDS: usize = 3;

/// The cut points and arrangement of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FimSplit {
    /// Prefix length `a`.
    pub prefix: usize,
    /// Middle length `b − a`.
    pub middle: usize,
    /// SPM (else PSM).
    pub spm: bool,
}

/// The split of example `key`'s row of `length` tokens (see the module's law).
#[must_use]
pub fn fim_split(length: usize, spm_rate: f64, seed: u64, key: u64) -> FimSplit {
    let mut cuts = Stream::new(seed, key, Purpose::FimCuts);
    let span = length as u64 + 1;
    let (first, second) = (cuts.below(span) as usize, cuts.below(span) as usize);
    let (start, end) = (first.min(second), first.max(second));
    let spm = spm_rate > 0.0 && crate::rng::unit_f64(Stream::first_u64(seed, key, Purpose::FimOrder)) < spm_rate;
    FimSplit { prefix: start, middle: end - start, spm }
}

/// Writes the rearranged row: the context (`3 + length − middle` tokens) into `context`, the
/// middle into `middle`; the caller has sized both.
pub fn write_fim<T: Token, O: OutToken>(tokens: &[T], split: FimSplit, params: &FimParams, context: &mut [O], middle: &mut [O]) {
    let (a, b) = (split.prefix, split.prefix + split.middle);
    let (prefix, mid, suffix) = (&tokens[..a], &tokens[a..b], &tokens[b..]);
    let mut at = 0;
    // Copies `piece`, then `id`.
    let mut put = |piece: &[T], id: Option<i64>| {
        super::mask::convert(piece, &mut context[at..at + piece.len()]);
        at += piece.len();
        if let Some(id) = id {
            context[at] = O::from_i64(id);
            at += 1;
        }
    };
    put(&[], Some(params.prefix_id));
    if split.spm {
        put(&[], Some(params.suffix_id));
        put(suffix, Some(params.middle_id));
        put(prefix, None);
    } else {
        put(prefix, Some(params.suffix_id));
        put(suffix, Some(params.middle_id));
    }
    super::mask::convert(mid, middle);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(spm_rate: f64) -> FimParams {
        FimParams::new(100, 101, 102, spm_rate, FimLoss::All).unwrap()
    }

    fn row(tokens: &[i32], split: FimSplit) -> Vec<i64> {
        let m = split.middle;
        let mut out = vec![-1i64; 3 + tokens.len()];
        let (c, t) = out.split_at_mut(3 + tokens.len() - m);
        write_fim(tokens, split, &params(0.5), c, t);
        out
    }

    #[test]
    fn psm_and_spm_layouts() {
        let t = [1, 2, 3, 4, 5];
        let split = FimSplit { prefix: 1, middle: 2, spm: false };
        assert_eq!(row(&t, split), [100, 1, 102, 4, 5, 101, 2, 3]);
        assert_eq!(row(&t, FimSplit { spm: true, ..split }), [100, 102, 4, 5, 101, 1, 2, 3]);
        // Empty pieces.
        assert_eq!(row(&t, FimSplit { prefix: 0, middle: 0, spm: false }), [100, 102, 1, 2, 3, 4, 5, 101]);
        assert_eq!(row(&t, FimSplit { prefix: 5, middle: 0, spm: true }), [100, 102, 101, 1, 2, 3, 4, 5]);
        assert_eq!(row(&[], FimSplit { prefix: 0, middle: 0, spm: false }), [100, 102, 101]);
    }

    #[test]
    fn cuts_stay_in_the_row_and_rates_decide_the_order() {
        for key in 0..2000 {
            let s = fim_split(7, 0.5, 3, key);
            assert!(s.prefix + s.middle <= 7, "{s:?}");
            assert!(!fim_split(7, 0.0, 3, key).spm);
            assert!(fim_split(7, 1.0, 3, key).spm);
            assert_eq!(fim_split(0, 0.5, 3, key).prefix + fim_split(0, 0.5, 3, key).middle, 0);
        }
    }

    #[test]
    fn bad_parameters_name_their_argument() {
        let bad = |r: Result<FimParams>, arg: &str| {
            let e = r.unwrap_err().to_string();
            assert!(e.starts_with(&format!("{arg}=")), "{e}");
        };
        bad(FimParams::new(-1, 1, 2, 0.5, FimLoss::All), "prefix_id");
        bad(FimParams::new(1, 1, 2, 0.5, FimLoss::All), "middle_id");
        bad(FimParams::new(1, 2, 1, 0.5, FimLoss::All), "suffix_id");
        bad(FimParams::new(1, 2, 3, 1.5, FimLoss::All), "spm_rate");
        bad(FimParams::new(1, 2, 3, f64::NAN, FimLoss::All), "spm_rate");
        bad(FimLoss::parse("prefix").map(|_| params(0.5)), "loss");
    }
}
