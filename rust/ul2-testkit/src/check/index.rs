//! SPEC §1 / §8.6: the joined stream of a corpus and its sample index.

use std::collections::BTreeSet;
use std::fmt::Debug;

use ul2_core::{Corpus, Denoiser, Documents, Error, Kind, Mixture, SampleIndex, Token};

use super::not_internal;
use crate::cases::IndexCase;
use crate::reference::{documents, joined};

/// Over any documents, mixture rates and raw lengths, `SampleIndex::build` refuses broken
/// offsets (as `validate` does, naming `doc_offsets`) and a separator in `respect` mode,
/// or tiles the stream: contiguous non-empty samples from 0, each with the denoiser drawn
/// from `(seed, k)`; `concat`: each of its denoiser's raw length, a tail shorter than the
/// next draw's; `respect`: no sample crosses a boundary, every non-empty document starts
/// one, only a document's last sample is short, no tail. Samples' slices and the case's
/// ranges are the joined stream's ([`corpus_slices`]).
pub fn sample_index<T: Token + Debug>(c: &IndexCase<T>) {
    let tokens = &c.tokens[..];
    let n = tokens.len() as u64;
    let corpus = Corpus { tokens: tokens.into(), doc_offsets: c.doc_offsets.as_deref(), separator: c.separator };
    // Distinct prompts keep the denoisers apart; their kind does not matter to the index.
    let entries = c.rates.iter().enumerate().map(|(i, &r)| (Denoiser::new(Kind::CausalLm, vec![i as i64]).expect("ok"), r));
    let mixture = match Mixture::new(entries.collect()) {
        Ok(m) => m,
        Err(e) => return not_internal(&e),
    };
    let built = SampleIndex::build(&corpus, &mixture, &c.raw_lengths, c.documents, c.seed);
    let offsets_valid = c
        .doc_offsets
        .as_ref()
        .is_none_or(|o| o.first() == Some(&0) && o.last() == Some(&n) && o.windows(2).all(|w| w[0] <= w[1]));
    if !offsets_valid {
        for err in [corpus.validate().expect_err("broken offsets validated"), built.expect_err("broken offsets indexed")] {
            assert!(matches!(err, Error::Invalid { arg: "doc_offsets", .. }), "offsets {:?}: {err:?}", c.doc_offsets);
            assert!(err.to_string().starts_with("doc_offsets="), "{err}");
        }
        return;
    }
    corpus.validate().expect("valid offsets refused");
    if c.documents == Documents::Respect && c.separator.is_some() {
        let err = built.expect_err("a separator in respect mode accepted");
        assert!(matches!(err, Error::Invalid { arg: "separator_id", .. }), "{err:?}");
        return;
    }
    let index = built.unwrap_or_else(|e| panic!("valid corpus refused: {e}"));
    let stream = joined(&documents(tokens, c.doc_offsets.as_deref()), c.separator).0.len() as u64;
    assert_eq!(corpus.stream_len(), stream);

    let bounds = c.doc_offsets.clone().unwrap_or_else(|| vec![0, n]);
    let mut starts = BTreeSet::new();
    let mut at = 0u64;
    for k in 0..index.len() {
        let (a, b) = index.span(k);
        assert_eq!(a, at, "sample {k} does not start where {} ended", k.saturating_sub(1));
        assert!(b > a, "empty sample {k}");
        let d = index.denoiser(k);
        assert_eq!(d, mixture.choose(c.seed, k as u64), "denoiser of sample {k}");
        let raw = c.raw_lengths[d] as u64;
        match c.documents {
            Documents::Concat => assert_eq!(b - a, raw, "sample {k} length"),
            Documents::Respect => {
                assert!(b - a <= raw, "sample {k} longer than its raw length");
                // The document holding `a`: the last non-empty one beginning at or before it.
                let j = (0..bounds.len() - 1).rfind(|&j| bounds[j] <= a && bounds[j] < bounds[j + 1]).expect("a document");
                assert!(b <= bounds[j + 1], "sample {k} ({a}, {b}) crosses the end {} of document {j}", bounds[j + 1]);
                assert!(b - a == raw || b == bounds[j + 1], "short sample {k} not at its document's end");
                starts.insert(a);
            }
        }
        at = b;
    }
    assert_eq!(at + index.tail, stream, "samples plus tail cover the stream");
    match c.documents {
        Documents::Concat => {
            let next = c.raw_lengths[mixture.choose(c.seed, index.len() as u64)] as u64;
            assert!(index.tail < next, "tail {} would fit another sample of {next}", index.tail);
        }
        Documents::Respect => {
            assert_eq!(index.tail, 0);
            for (j, w) in bounds.windows(2).enumerate() {
                assert!(w[1] == w[0] || starts.contains(&w[0]), "document {j} (at {}) does not start a sample", w[0]);
            }
        }
    }
    let samples = (0..index.len()).filter(|k| k % 7 == 0 || k + 1 == index.len()).map(|k| index.span(k));
    let scaled = |f: u16| stream * u64::from(f) / u64::from(u16::MAX);
    let ranges = c.slices.iter().map(|&(x, y)| (scaled(x.min(y)), scaled(x.max(y))));
    corpus_slices(&corpus, tokens, samples.chain(ranges));
}

/// Each `[start, stop)` of `corpus`'s joined stream (over the flat `tokens`) equals the
/// joined stream written out, and a range without a separator is borrowed from the token
/// array itself (in a corpus without separators, every range is).
pub fn corpus_slices<T: Token + Debug>(corpus: &Corpus<'_, T>, tokens: &[T], ranges: impl IntoIterator<Item = (u64, u64)>) {
    let (reference, origin) = joined(&documents(tokens, corpus.doc_offsets), corpus.separator);
    let gathers = corpus.doc_offsets.is_some() && corpus.separator.is_some();
    assert_eq!(corpus.stream_len(), reference.len() as u64);
    // Stale contents must never leak into a slice.
    let mut scratch = tokens.iter().take(3).copied().collect();
    for (start, stop) in ranges {
        let (a, b) = (start as usize, stop as usize);
        let got = corpus.slice(start, stop, &mut scratch).unwrap_or_else(|e| panic!("slice [{a}, {b}): {e}"));
        assert_eq!(got, &reference[a..b], "slice [{a}, {b})");
        if b > a && origin[a..b].iter().all(Option::is_some) {
            let flat = origin[a].expect("a token");
            assert!(std::ptr::eq(got.as_ptr(), tokens[flat..].as_ptr()), "slice [{a}, {b}) copied, not borrowed");
        }
        if !gathers {
            assert!(std::ptr::eq(got.as_ptr(), tokens[a..].as_ptr()), "slice [{a}, {b}) of a stream without separators");
        }
    }
}
