//! The stream side of the core (SPEC §1, §5, §8.5–8.6): the joined token stream
//! ([`Corpus::slice`]), the sample index ([`SampleIndex::build`]), next-fit packing
//! ([`pack_bins`] + [`denoise_rows`]), the formatter ([`format`]) and thread-count
//! independence.
//!
//! Every property compares the library with a naive statement of the contract: the joined
//! stream built by concatenating documents, the index by its tiling and boundary rules, packed
//! rows with examples denoised one by one through [`denoise_row`] (those are ul2-testkit's
//! checks, which the fuzz targets run too), formats with arrays written out by hand (and the
//! seqio vectors of the reference, §7.4 and §8). `PROPTEST_CASES` scales every property
//! (default 256).
// Examples, bounds and rows are parallel arrays indexed together.
#![allow(clippy::needless_range_loop)]

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use ul2_core::format::IGNORE_INDEX;
use ul2_core::{
    Corpus, Denoised, Denoiser, Documents, Error, Family, Field, Format, Kind, Layout, Mixture, Options, Overflow, RowConfig,
    Rows, SampleIndex, Samples, Segment, Selection, Sentinels, SpanParams, denoise_rows, example_bounds, format, pack_bins,
};
use ul2_testkit::cases::IndexCase;
use ul2_testkit::check;
use ul2_testkit::reference::{flatten, joined};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Proptest's defaults (256 cases or `PROPTEST_CASES`); failures are reported, not persisted.
fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: Some(Box::new(FileFailurePersistence::Off)), ..ProptestConfig::default() }
}

/// `SplitMix64`, for deterministic test data outside proptest.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Span-corruption settings `(μ, r, random_roll)` that T5's counts can realise at every length.
const SPAN_POOL: [(f64, f64, bool); 6] =
    [(3.0, 0.15, false), (2.0, 0.5, false), (1.0, 0.25, false), (8.0, 0.5, false), (3.0, 0.15, true), (2.0, 0.25, true)];

/// Denoiser `choice` of the pool (span corruption, then S(.5), S(.25), causal, FIM with each
/// loss) with a `prompt`-token prompt.
fn pool_denoiser(choice: usize, prompt: usize) -> Denoiser {
    let kind = match choice {
        i if i < SPAN_POOL.len() => {
            let (mu, r, roll) = SPAN_POOL[i];
            Kind::SpanCorruption(SpanParams::new(r, mu, None, roll).unwrap())
        }
        i if i == SPAN_POOL.len() => Kind::PrefixLm { suffix_density: 0.5 },
        i if i == SPAN_POOL.len() + 1 => Kind::PrefixLm { suffix_density: 0.25 },
        i if i == SPAN_POOL.len() + 2 => Kind::CausalLm,
        i => {
            let loss = if i == SPAN_POOL.len() + 3 { ul2_core::FimLoss::All } else { ul2_core::FimLoss::Middle };
            Kind::FillInTheMiddle(ul2_core::FimParams::new(850, 851, 852, 0.5, loss).unwrap())
        }
    };
    Denoiser::new(kind, (0..prompt).map(|j| 800 + j as i64).collect()).unwrap()
}

const POOL_SIZE: usize = SPAN_POOL.len() + 5;

fn mixture_strategy() -> impl Strategy<Value = Mixture> {
    prop::collection::vec(((0..POOL_SIZE, 0usize..3).prop_map(|(c, p)| pool_denoiser(c, p)), 0.1f64..1.0), 1..5)
        .prop_map(|entries| Mixture::new(entries).unwrap())
}

/// Ids 900..999 are sentinels; ordinary tokens stay below.
fn sentinels() -> Sentinels {
    Sentinels::t5(1000, 100, Overflow::Error, true).unwrap()
}

fn eos_strategy() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![3 => Just(Some(1i64)), 1 => Just(None)]
}

/// What one example takes of a row: `(first buffer, second buffer)`.
fn need(family: Family, inputs: usize, targets: usize) -> (usize, usize) {
    match family {
        Family::EncoderDecoder => (inputs, targets),
        Family::Decoder => (inputs + targets, 0),
    }
}

/// Widths that hold the largest bounded example, plus some slack.
fn widths_for(family: Family, bounds: &[(usize, usize, usize)], slack: (usize, usize)) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for &(_, i, t) in bounds {
        let (x, y) = need(family, i, t);
        a = a.max(x);
        b = b.max(y);
    }
    match family {
        Family::EncoderDecoder => (a + slack.0, b + slack.1),
        Family::Decoder => (a + slack.0, 0),
    }
}

fn get<'a, O>(fields: &'a [Field<O>], name: &str) -> &'a Field<O> {
    fields.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no field {name:?}"))
}

fn names<O>(fields: &[Field<O>]) -> Vec<&'static str> {
    let mut n: Vec<_> = fields.iter().map(|f| f.name).collect();
    n.sort_unstable();
    n
}

fn sorted(mut n: Vec<&'static str>) -> Vec<&'static str> {
    n.sort_unstable();
    n
}

fn seg(denoiser: u32, inputs: u32, targets: u32) -> Segment {
    Segment { denoiser, inputs, targets }
}

// ---------------------------------------------------------------------------------------------
// 1. Corpus::slice
// ---------------------------------------------------------------------------------------------

/// Document lengths 0..20, with empty documents common.
fn doc_lengths(docs: std::ops::Range<usize>) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1 => Just(0usize), 3 => 0usize..20], docs)
}

proptest! {
    #![proptest_config(config())]

    /// Every `[start, stop)` of the joined stream equals the naive join; a range without a
    /// separator is borrowed from the token array itself.
    #[test]
    fn slice_equals_the_naive_join(
        lengths in doc_lengths(1..7),
        sep in prop_oneof![Just(None), Just(Some(-1i32)), Just(Some(5i32))],
        with_offsets in prop::bool::weighted(0.8),
    ) {
        // Distinct token values, so a misaligned slice cannot look right by accident.
        let mut next = 100i32;
        let docs: Vec<Vec<i32>> = lengths.iter().map(|&n| (0..n).map(|_| { next += 1; next }).collect()).collect();
        let (tokens, offsets) = flatten(&docs);
        let corpus = Corpus { tokens: (&tokens).into(), doc_offsets: with_offsets.then_some(&offsets[..]), separator: sep };
        prop_assert!(corpus.validate().is_ok());
        let len = corpus.stream_len();
        check::corpus_slices(&corpus, &tokens, (0..=len).flat_map(|a| (a..=len).map(move |b| (a, b))));
    }
}

/// `doc_offsets = [0]` (no documents, no tokens) passes `validate`, so its only range must slice.
#[test]
fn slice_of_a_corpus_without_documents() {
    let tokens: [i32; 0] = [];
    let offsets = [0u64];
    for sep in [None, Some(1)] {
        let corpus = Corpus { tokens: (&tokens).into(), doc_offsets: Some(&offsets[..]), separator: sep };
        corpus.validate().unwrap();
        assert_eq!(corpus.stream_len(), 0);
        let mut scratch = Vec::new();
        assert_eq!(corpus.slice(0, 0, &mut scratch).unwrap(), &[] as &[i32], "separator {sep:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. SampleIndex::build and Corpus::validate
// ---------------------------------------------------------------------------------------------

/// A mixture of `rates.len()` denoisers (the kind does not matter to the index; distinct
/// prompts keep the denoisers distinct).
fn index_mixture(rates: &[f64]) -> Mixture {
    Mixture::new(rates.iter().enumerate().map(|(i, &r)| (Denoiser::new(Kind::CausalLm, vec![i as i64]).unwrap(), r)).collect())
        .unwrap()
}

fn index_case() -> impl Strategy<Value = (Vec<usize>, Vec<(usize, f64)>, u64)> {
    (doc_lengths(0..8), prop::collection::vec((1usize..12, 0.05f64..1.0), 1..5), any::<u64>())
}

/// The kit's index case over documents of `lengths` (tokens all 7).
fn case(
    lengths: &[usize],
    denoisers: &[(usize, f64)],
    seed: u64,
    with_offsets: bool,
    separator: Option<i32>,
    documents: Documents,
) -> IndexCase<i32> {
    let docs: Vec<Vec<i32>> = lengths.iter().map(|&n| vec![7; n]).collect();
    let (tokens, offsets) = flatten(&docs);
    IndexCase {
        tokens,
        doc_offsets: with_offsets.then_some(offsets),
        separator,
        documents,
        rates: denoisers.iter().map(|d| d.1).collect(),
        raw_lengths: denoisers.iter().map(|d| d.0).collect(),
        seed,
        slices: vec![],
    }
}

proptest! {
    #![proptest_config(config())]

    /// Concat: samples tile `[0, stream_len − tail)` in order, each as long as its denoiser's raw
    /// length; the tail is shorter than the sample that would come next.
    #[test]
    fn concat_index_tiles_the_stream(
        (lengths, denoisers, seed) in index_case(),
        sep in prop_oneof![Just(None), Just(Some(1i32))],
        with_offsets in prop::bool::weighted(0.8),
    ) {
        check::sample_index(&case(&lengths, &denoisers, seed, with_offsets, sep, Documents::Concat));
    }

    /// Respect: samples never cross a document boundary, cover every document completely, are
    /// shorter than their raw length only at a document's end; no tail.
    #[test]
    fn respect_index_covers_each_document(
        (lengths, denoisers, seed) in index_case(),
        with_offsets in prop::bool::weighted(0.8),
    ) {
        check::sample_index(&case(&lengths, &denoisers, seed, with_offsets, None, Documents::Respect));
    }

    /// Offsets not starting at 0, not ending at len(tokens), or decreasing are rejected by
    /// `validate` and by `build`, naming `doc_offsets`.
    #[test]
    fn validate_rejects_bad_offsets(
        lengths in doc_lengths(1..6),
        fault in 0usize..5,
        amount in 1u64..5,
        at in any::<prop::sample::Index>(),
    ) {
        for documents in [Documents::Concat, Documents::Respect] {
            let mut case = case(&lengths, &[(3, 1.0)], 0, true, Some(1), documents);
            let n = case.tokens.len() as u64;
            let offsets = case.doc_offsets.as_mut().unwrap();
            match fault {
                0 => offsets[0] = amount,
                1 => *offsets.last_mut().unwrap() = n + amount,
                2 => {
                    prop_assume!(n > 0);
                    *offsets.last_mut().unwrap() = n - 1;
                }
                3 => {
                    // Raise one inner offset above its successor (needs two documents).
                    prop_assume!(offsets.len() >= 3);
                    let i = 1 + at.index(offsets.len() - 2);
                    offsets[i] = offsets[i + 1] + amount;
                }
                _ => offsets.clear(),
            }
            check::sample_index(&case);
        }
    }
}

#[test]
fn index_is_compact() {
    assert!(SampleIndex::bytes_per_sample() <= 16);
}

#[test]
fn build_rejects_raw_lengths_that_do_not_match_the_mixture() {
    let tokens = [5i32; 10];
    let corpus = Corpus { tokens: (&tokens).into(), doc_offsets: None, separator: None };
    let mixture = index_mixture(&[1.0, 1.0]);
    for raw in [&[3usize][..], &[3, 0], &[3, 4, 5]] {
        assert!(SampleIndex::build(&corpus, &mixture, raw, Documents::Concat, 0).is_err(), "{raw:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. pack_bins + denoise_rows
// ---------------------------------------------------------------------------------------------

fn rows_and_keys() -> impl Strategy<Value = (Vec<Vec<i32>>, Vec<u64>)> {
    (0usize..12).prop_flat_map(|n| {
        (prop::collection::vec(prop::collection::vec(0i32..900, 0..14), n), prop::collection::vec(0u64..1 << 40, n))
    })
}

proptest! {
    #![proptest_config(config())]

    /// Next-fit packing: bins are valid and next-fit; every packed row fits; each packed
    /// segment is exactly the example denoised alone (decoder rows: inputs then targets).
    #[test]
    fn packed_rows_hold_the_unpacked_examples(
        (rows, keys) in rows_and_keys(),
        mixture in mixture_strategy(),
        decoder in any::<bool>(),
        eos_id in eos_strategy(),
        slack in (0usize..8, 0usize..8),
        seed in any::<u64>(),
    ) {
        let sentinels = sentinels();
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id, seed };
        let family = if decoder { Family::Decoder } else { Family::EncoderDecoder };
        let n = rows.len();
        let bounds: Vec<_> = (0..n).map(|i| example_bounds(&cfg, rows[i].len(), keys[i]).unwrap()).collect();
        let layout = Layout { family, widths: widths_for(family, &bounds, slack) };
        prop_assert!(check::packed_rows(&cfg, &rows, &keys, layout, -7i64).is_some(), "examples sized for the rows refused");
    }

    /// A corpus's samples as a row source give exactly what the same tokens give as rows.
    #[test]
    fn samples_source_matches_rows_of_the_joined_stream(
        lengths in doc_lengths(1..8),
        raw in prop::collection::vec(1usize..16, 1..4),
        concat in any::<bool>(),
        sep in prop_oneof![Just(None), Just(Some(1i32))],
        ids in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        decoder in any::<bool>(),
        seed in any::<u64>(),
        token_seed in any::<u64>(),
    ) {
        let mut g = Lcg(token_seed);
        let docs: Vec<Vec<i32>> = lengths.iter().map(|&n| (0..n).map(|_| 2 + g.below(898) as i32).collect()).collect();
        let (tokens, offsets) = flatten(&docs);
        let sep = if concat { sep } else { None };
        let corpus = Corpus { tokens: (&tokens).into(), doc_offsets: Some(&offsets[..]), separator: sep };
        let choices: Vec<usize> = (0..raw.len()).map(|i| (i * 4 + seed as usize % 4) % POOL_SIZE).collect();
        let mixture = Mixture::new(choices.iter().map(|&c| (pool_denoiser(c, 1), 1.0)).collect()).unwrap();
        let documents = if concat { Documents::Concat } else { Documents::Respect };
        let index = SampleIndex::build(&corpus, &mixture, &raw, documents, seed).unwrap();
        prop_assume!(!index.is_empty());
        let ids: Vec<u64> = ids.iter().map(|x| x.index(index.len()) as u64).collect();
        let keys = ids.clone();
        let (stream, _) = joined(&docs.iter().map(Vec::as_slice).collect::<Vec<_>>(), sep);
        let refs: Vec<&[i32]> = ids.iter().map(|&k| {
            let (a, b) = index.span(k as usize);
            &stream[a as usize..b as usize]
        }).collect();
        let rows = Rows::Ragged(refs);
        let samples = Samples { corpus, index: &index, ids: &ids };

        let sentinels = sentinels();
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed };
        let family = if decoder { Family::Decoder } else { Family::EncoderDecoder };
        let bounds: Vec<_> = ids.iter().map(|&k| {
            let (a, b) = index.span(k as usize);
            example_bounds(&cfg, (b - a) as usize, k).unwrap()
        }).collect();
        // Each sample is denoised with its own index's denoiser.
        for (i, &k) in ids.iter().enumerate() {
            prop_assert_eq!(bounds[i].0, index.denoiser(k as usize));
        }
        let layout = Layout { family, widths: widths_for(family, &bounds, (3, 2)) };
        let single: Vec<usize> = (0..=ids.len()).collect();
        let span_len = |i: usize| {
            let (a, b) = index.span(ids[i] as usize);
            (b - a) as usize
        };
        let bins = pack_bins(&cfg, span_len, &keys, layout).unwrap();
        for b in [&single, &bins] {
            let want = denoise_rows(&cfg, &rows, &keys, b, layout, 0i32).unwrap();
            let got = denoise_rows(&cfg, &samples, &keys, b, layout, 0i32).unwrap();
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn pack_bins_of_no_examples_is_one_empty_boundary() {
    let mixture = Mixture::new(vec![(pool_denoiser(0, 0), 1.0)]).unwrap();
    let sentinels = sentinels();
    let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed: 0 };
    let layout = Layout { family: Family::EncoderDecoder, widths: (8, 8) };
    let bins = pack_bins(&cfg, |_| 0, &[], layout).unwrap();
    assert_eq!(bins, vec![0]);
    let rows: Rows<'_, i32> = Rows::Ragged(vec![]);
    let d = denoise_rows(&cfg, &rows, &[], &bins, layout, 0i32).unwrap();
    assert_eq!((d.rows, d.first.len(), d.second.len(), d.segments.len()), (0, 0, 0, 0));
}

#[test]
fn pack_bins_rejects_an_example_wider_than_the_row() {
    let mixture = Mixture::new(vec![(pool_denoiser(SPAN_POOL.len() + 2, 0), 1.0)]).unwrap(); // causal: targets = L + EOS
    let sentinels = sentinels();
    let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed: 0 };
    let lengths = [3usize, 9, 2];
    let keys = [0u64, 1, 2];
    let err = pack_bins(&cfg, |i| lengths[i], &keys, Layout { family: Family::EncoderDecoder, widths: (4, 8) }).unwrap_err();
    assert!(matches!(err, Error::DoesNotFit { what: "targets", length: 10, limit: 8, .. }), "{err:?}");
    assert!(err.to_string().starts_with("rows[1]:"), "{err}");
    let err = pack_bins(&cfg, |i| lengths[i], &keys, Layout { family: Family::Decoder, widths: (10, 0) }).unwrap_err();
    assert!(matches!(err, Error::DoesNotFit { what: "sequence", length: 11, limit: 10, .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. format
// ---------------------------------------------------------------------------------------------

const HF: [&str; 5] = ["input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask"];
const SEQIO: [&str; 4] = ["encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"];
const X: i64 = IGNORE_INDEX;

/// Two unpacked encoder-decoder rows (widths 5/4): one with padding, one full.
fn enc_dec_rows(pad: i64) -> Denoised<i64> {
    let p = pad;
    Denoised {
        rows: 2,
        family: Family::EncoderDecoder,
        widths: (5, 4),
        first: vec![10, 11, 1, p, p, 12, 13, 14, 15, 1],
        second: vec![20, 1, p, p, 21, 22, 23, 1],
        segments: vec![seg(1, 3, 2), seg(0, 5, 4)],
        row_starts: vec![0, 1, 2],
    }
}

fn opts(packed: bool, bidirectional_mask: bool, denoiser: bool) -> Options {
    Options { packed, bidirectional_mask, denoiser, fields: None }
}

#[test]
fn hf_unpacked_names_shapes_and_values() {
    let pad = 7;
    let out = format(enc_dec_rows(pad), Format::Hf, pad, Options::default()).unwrap();
    assert_eq!(names(&out), sorted(HF.to_vec()));
    for name in ["input_ids", "attention_mask"] {
        assert_eq!(get(&out, name).shape, vec![2, 5], "{name}");
    }
    for name in ["labels", "decoder_input_ids", "decoder_attention_mask"] {
        assert_eq!(get(&out, name).shape, vec![2, 4], "{name}");
    }
    assert_eq!(get(&out, "input_ids").data, vec![10, 11, 1, 7, 7, 12, 13, 14, 15, 1]);
    assert_eq!(get(&out, "attention_mask").data, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    assert_eq!(get(&out, "labels").data, vec![20, 1, X, X, 21, 22, 23, 1]);
    assert_eq!(get(&out, "decoder_attention_mask").data, vec![1, 1, 0, 0, 1, 1, 1, 1]);
    // Inside the targets: the pad id first, then the labels shifted right.
    let dii = &get(&out, "decoder_input_ids").data;
    assert_eq!(&dii[0..2], &[7, 20]);
    assert_eq!(&dii[4..8], &[7, 21, 22, 23]);
    assert_eq!(dii[3], 7, "decoder inputs are padded with pad_id");
}

/// SPEC §5 / CONTEXT: `decoder_input_ids` are the labels shifted right (HF's
/// `shift_tokens_right`: pad first, −100 → pad); seqio's unpacked `decoder_input_tokens` are
/// `make_autoregressive_inputs(targets)` = `[0] + targets[:-1]`. Either way the row's last
/// target (EOS) reappears one position after the targets when the row has room.
#[test]
fn unpacked_decoder_inputs_are_the_whole_row_shifted_right() {
    let pad = 0;
    let hf = format(enc_dec_rows(pad), Format::Hf, pad, Options::default()).unwrap();
    assert_eq!(get(&hf, "decoder_input_ids").data, vec![0, 20, 1, 0, 0, 21, 22, 23]);
    let seqio = format(enc_dec_rows(pad), Format::Seqio, pad, Options::default()).unwrap();
    assert_eq!(get(&seqio, "decoder_input_tokens").data, vec![0, 20, 1, 0, 0, 21, 22, 23]);
    // Reference §7.4 (PrefixLMFeatureConverter, unpacked): targets [9,4,6,1,3,9,1,0,0].
    let d = decoder_vector();
    let out = format(d, Format::SeqioDecoder, 0, Options::default()).unwrap();
    assert_eq!(get(&out, "decoder_input_tokens").data, vec![0, 9, 4, 6, 1, 3, 9, 1, 0]);
}

#[test]
fn seqio_unpacked_names_shapes_and_values() {
    let out = format(enc_dec_rows(0), Format::Seqio, 0, opts(false, false, true)).unwrap();
    let mut want = SEQIO.to_vec();
    want.push("denoiser");
    assert_eq!(names(&out), sorted(want));
    assert_eq!(get(&out, "encoder_input_tokens").shape, vec![2, 5]);
    for name in ["decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"] {
        assert_eq!(get(&out, name).shape, vec![2, 4], "{name}");
    }
    assert_eq!(get(&out, "encoder_input_tokens").data, vec![10, 11, 1, 0, 0, 12, 13, 14, 15, 1]);
    assert_eq!(get(&out, "decoder_target_tokens").data, vec![20, 1, 0, 0, 21, 22, 23, 1]);
    assert_eq!(get(&out, "decoder_loss_weights").data, vec![1, 1, 0, 0, 1, 1, 1, 1]);
    let dit = &get(&out, "decoder_input_tokens").data;
    assert_eq!(&dit[0..2], &[0, 20]);
    assert_eq!(&dit[4..8], &[0, 21, 22, 23]);
    let den = get(&out, "denoiser");
    assert_eq!((den.shape.clone(), den.data.clone()), (vec![2], vec![1, 0]));
}

/// Reference §8: seqio's `trim_and_pack_dataset` docstring vectors, verified against seqio.
#[test]
fn seqio_packing_vectors() {
    // {inputs:[8,7,1],targets:[4,1]} + {inputs:[2,3,4,1],targets:[5,6,1]} at 10/7.
    let d = Denoised {
        rows: 1,
        family: Family::EncoderDecoder,
        widths: (10, 7),
        first: vec![8, 7, 1, 2, 3, 4, 1, 0, 0, 0],
        second: vec![4, 1, 5, 6, 1, 0, 0],
        segments: vec![seg(0, 3, 2), seg(0, 4, 3)],
        row_starts: vec![0, 2],
    };
    let out = format(d, Format::Seqio, 0i32, opts(true, false, false)).unwrap();
    let mut want = SEQIO.to_vec();
    want.extend(["encoder_segment_ids", "encoder_positions", "decoder_segment_ids", "decoder_positions"]);
    assert_eq!(names(&out), sorted(want));
    assert_eq!(get(&out, "encoder_input_tokens").data, vec![8, 7, 1, 2, 3, 4, 1, 0, 0, 0]);
    assert_eq!(get(&out, "encoder_segment_ids").data, vec![1, 1, 1, 2, 2, 2, 2, 0, 0, 0]);
    assert_eq!(get(&out, "encoder_positions").data, vec![0, 1, 2, 0, 1, 2, 3, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_target_tokens").data, vec![4, 1, 5, 6, 1, 0, 0]);
    assert_eq!(get(&out, "decoder_segment_ids").data, vec![1, 1, 2, 2, 2, 0, 0]);
    assert_eq!(get(&out, "decoder_positions").data, vec![0, 1, 0, 1, 2, 0, 0]);
    assert_eq!(get(&out, "decoder_input_tokens").data, vec![0, 4, 0, 5, 6, 0, 0]);
    assert_eq!(get(&out, "decoder_loss_weights").data, vec![1, 1, 1, 1, 1, 0, 0]);
    for f in &out {
        assert_eq!(f.shape, vec![1, if f.name.starts_with("encoder") { 10 } else { 7 }], "{}", f.name);
    }

    // EncDecFeatureConverter docstring: encoder [7,8,5,1,8,4,9,3,1,0], decoder targets
    // [3,9,1,4,1,0,0] → decoder inputs [0,3,9,0,4,0,0].
    let d = Denoised {
        rows: 1,
        family: Family::EncoderDecoder,
        widths: (10, 7),
        first: vec![7, 8, 5, 1, 8, 4, 9, 3, 1, 0],
        second: vec![3, 9, 1, 4, 1, 0, 0],
        segments: vec![seg(0, 4, 3), seg(0, 5, 2)],
        row_starts: vec![0, 2],
    };
    let out = format(d, Format::Seqio, 0i64, opts(true, false, false)).unwrap();
    assert_eq!(get(&out, "decoder_input_tokens").data, vec![0, 3, 9, 0, 4, 0, 0]);
    assert_eq!(get(&out, "encoder_segment_ids").data, vec![1, 1, 1, 1, 2, 2, 2, 2, 2, 0]);
    assert_eq!(get(&out, "decoder_segment_ids").data, vec![1, 1, 1, 2, 2, 0, 0]);
}

/// Two packed encoder-decoder rows (widths 6/5): row 0 = examples A, B (encoder padded,
/// decoder full), row 1 = example C (encoder full, decoder padded).
fn packed_enc_dec() -> Denoised<i64> {
    Denoised {
        rows: 2,
        family: Family::EncoderDecoder,
        widths: (6, 5),
        first: vec![10, 11, 1, 12, 1, 0, 13, 14, 15, 16, 17, 1],
        second: vec![20, 1, 21, 22, 1, 23, 1, 0, 0, 0],
        segments: vec![seg(1, 3, 2), seg(0, 2, 3), seg(2, 6, 2)],
        row_starts: vec![0, 2, 3],
    }
}

#[test]
fn hf_packed_segments_positions_and_cu_seqlens() {
    let d = packed_enc_dec();
    assert!((d.fill_rate() - 18.0 / 22.0).abs() < 1e-12);
    let out = format(d, Format::Hf, 0i64, opts(true, false, true)).unwrap();
    let mut want = HF.to_vec();
    want.extend([
        "segment_ids",
        "positions",
        "decoder_segment_ids",
        "decoder_positions",
        "cu_seqlens",
        "decoder_cu_seqlens",
        "denoiser",
    ]);
    assert_eq!(names(&out), sorted(want));
    for name in ["input_ids", "attention_mask", "segment_ids", "positions"] {
        assert_eq!(get(&out, name).shape, vec![2, 6], "{name}");
    }
    for name in ["labels", "decoder_input_ids", "decoder_attention_mask", "decoder_segment_ids", "decoder_positions", "denoiser"]
    {
        assert_eq!(get(&out, name).shape, vec![2, 5], "{name}");
    }
    assert_eq!(get(&out, "attention_mask").data, vec![1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]);
    assert_eq!(get(&out, "segment_ids").data, vec![1, 1, 1, 2, 2, 0, 1, 1, 1, 1, 1, 1]);
    assert_eq!(get(&out, "positions").data, vec![0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 4, 5]);
    assert_eq!(get(&out, "decoder_segment_ids").data, vec![1, 1, 2, 2, 2, 1, 1, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_positions").data, vec![0, 1, 0, 1, 2, 0, 1, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_attention_mask").data, vec![1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    assert_eq!(get(&out, "labels").data, vec![20, 1, 21, 22, 1, 23, 1, X, X, X]);
    assert_eq!(get(&out, "decoder_input_ids").data, vec![0, 20, 0, 21, 22, 0, 23, 0, 0, 0]);
    // [0, segment ends…, padding end] over the flattened batch; a full row has no padding entry.
    let cu = get(&out, "cu_seqlens");
    assert_eq!((cu.shape.clone(), cu.data.clone()), (vec![5], vec![0, 3, 5, 6, 12]));
    let dcu = get(&out, "decoder_cu_seqlens");
    assert_eq!((dcu.shape.clone(), dcu.data.clone()), (vec![5], vec![0, 2, 5, 7, 10]));
    assert_eq!(get(&out, "denoiser").data, vec![1, 1, 0, 0, 0, 2, 2, -1, -1, -1]);
}

#[test]
fn hf_decoder_start_token_is_the_pad_id_in_every_segment() {
    let mut d = packed_enc_dec();
    for t in d.first.iter_mut().chain(d.second.iter_mut()).filter(|t| **t == 0) {
        *t = 5;
    }
    let out = format(d, Format::Hf, 5i64, opts(true, false, false)).unwrap();
    assert_eq!(get(&out, "decoder_input_ids").data, vec![5, 20, 5, 21, 22, 5, 23, 5, 5, 5]);
    assert_eq!(get(&out, "labels").data, vec![20, 1, 21, 22, 1, 23, 1, X, X, X]);
    // seqio's start token is 0 whatever the pad id.
    let mut d = packed_enc_dec();
    d.second[7..].fill(5);
    let out = format(d, Format::Seqio, 5i64, opts(true, false, false)).unwrap();
    assert_eq!(get(&out, "decoder_input_tokens").data, vec![0, 20, 0, 21, 22, 0, 23, 5, 5, 5]);
}

/// Reference §7.4: inputs [9,4,6,1] and targets [3,9,1] in one decoder row of 9.
fn decoder_vector() -> Denoised<i64> {
    Denoised {
        rows: 1,
        family: Family::Decoder,
        widths: (9, 0),
        first: vec![9, 4, 6, 1, 3, 9, 1, 0, 0],
        second: vec![],
        segments: vec![seg(0, 4, 3)],
        row_starts: vec![0, 1],
    }
}

#[test]
fn seqio_decoder_prefix_lm_vector() {
    let out = format(decoder_vector(), Format::SeqioDecoder, 0, Options::default()).unwrap();
    assert_eq!(
        names(&out),
        sorted(vec!["decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights", "decoder_causal_attention"])
    );
    for f in &out {
        assert_eq!(f.shape, vec![1, 9], "{}", f.name);
    }
    assert_eq!(get(&out, "decoder_target_tokens").data, vec![9, 4, 6, 1, 3, 9, 1, 0, 0]);
    assert_eq!(get(&out, "decoder_causal_attention").data, vec![1, 1, 1, 1, 1, 0, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_loss_weights").data, vec![0, 0, 0, 0, 1, 1, 1, 0, 0]);
    assert_eq!(&get(&out, "decoder_input_tokens").data[..7], &[0, 9, 4, 6, 1, 3, 9]);
}

/// Two decoder rows of 8: `[800, 10, 1 | 20, 21, 1]` + padding, and `[11, 1 | 22…26, 1]` full.
fn decoder_rows() -> Denoised<i64> {
    Denoised {
        rows: 2,
        family: Family::Decoder,
        widths: (8, 0),
        first: vec![800, 10, 1, 20, 21, 1, 0, 0, 11, 1, 22, 23, 24, 25, 26, 1],
        second: vec![],
        segments: vec![seg(2, 3, 3), seg(0, 2, 6)],
        row_starts: vec![0, 1, 2],
    }
}

#[test]
fn decoder_unpacked_names_and_values() {
    let out = format(decoder_rows(), Format::Decoder, 0, Options::default()).unwrap();
    assert_eq!(names(&out), sorted(vec!["input_ids", "attention_mask", "labels", "prefix_lengths"]));
    for name in ["input_ids", "attention_mask", "labels"] {
        assert_eq!(get(&out, name).shape, vec![2, 8], "{name}");
    }
    assert_eq!(get(&out, "input_ids").data, decoder_rows().first);
    assert_eq!(get(&out, "attention_mask").data, vec![1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(get(&out, "labels").data, vec![X, X, X, 20, 21, 1, X, X, X, X, 22, 23, 24, 25, 26, 1]);
    let p = get(&out, "prefix_lengths");
    assert_eq!((p.shape.clone(), p.data.clone()), (vec![2], vec![3, 2]));

    let out = format(decoder_rows(), Format::Decoder, 0, opts(false, true, true)).unwrap();
    assert_eq!(
        names(&out),
        sorted(vec!["input_ids", "attention_mask", "labels", "prefix_lengths", "bidirectional_mask", "denoiser"])
    );
    let b = get(&out, "bidirectional_mask");
    assert_eq!((b.shape.clone(), b.data.clone()), (vec![2, 8], vec![1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]));
    assert_eq!(get(&out, "denoiser").data, vec![2, 0]);
}

/// Packed decoder rows of 8: `[a a | b b][c c | d]` + one pad, then one full segment `[3 | 5]`.
fn packed_decoder_rows() -> Denoised<i64> {
    Denoised {
        rows: 2,
        family: Family::Decoder,
        widths: (8, 0),
        first: vec![30, 1, 31, 1, 32, 1, 1, 0, 40, 41, 1, 42, 43, 44, 45, 1],
        second: vec![],
        segments: vec![seg(0, 2, 2), seg(1, 2, 1), seg(0, 3, 5)],
        row_starts: vec![0, 2, 3],
    }
}

#[test]
fn decoder_packed_segments_positions_and_cu_seqlens() {
    // bidirectional_mask is always there when packed, even if not asked for.
    let out = format(packed_decoder_rows(), Format::Decoder, 0, opts(true, false, true)).unwrap();
    assert_eq!(
        names(&out),
        sorted(vec![
            "input_ids",
            "attention_mask",
            "labels",
            "bidirectional_mask",
            "segment_ids",
            "positions",
            "cu_seqlens",
            "denoiser"
        ])
    );
    assert_eq!(get(&out, "attention_mask").data, vec![1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(get(&out, "labels").data, vec![X, X, 31, 1, X, X, 1, X, X, X, X, 42, 43, 44, 45, 1]);
    assert_eq!(get(&out, "bidirectional_mask").data, vec![1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]);
    assert_eq!(get(&out, "segment_ids").data, vec![1, 1, 1, 1, 2, 2, 2, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(get(&out, "positions").data, vec![0, 1, 2, 3, 0, 1, 2, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
    let cu = get(&out, "cu_seqlens");
    assert_eq!((cu.shape.clone(), cu.data.clone()), (vec![5], vec![0, 4, 7, 8, 16]));
    let den = get(&out, "denoiser");
    assert_eq!((den.shape.clone(), den.data.clone()), (vec![2, 8], vec![0, 0, 0, 0, 1, 1, 1, -1, 0, 0, 0, 0, 0, 0, 0, 0]));
}

#[test]
fn seqio_decoder_packed_restarts_every_segment() {
    // Row 0: [9 4 1 | 3 1][6 1 | 7 1] (full); row 1: [5 1 | 8 1] + 5 pads.
    let d = Denoised {
        rows: 2,
        family: Family::Decoder,
        widths: (9, 0),
        first: vec![9, 4, 1, 3, 1, 6, 1, 7, 1, 5, 1, 8, 1, 0, 0, 0, 0, 0],
        second: vec![],
        segments: vec![seg(0, 3, 2), seg(0, 2, 2), seg(0, 2, 2)],
        row_starts: vec![0, 2, 3],
    };
    let out = format(d, Format::SeqioDecoder, 0i32, opts(true, false, false)).unwrap();
    assert_eq!(
        names(&out),
        sorted(vec![
            "decoder_target_tokens",
            "decoder_input_tokens",
            "decoder_loss_weights",
            "decoder_causal_attention",
            "decoder_segment_ids",
            "decoder_positions"
        ])
    );
    assert_eq!(get(&out, "decoder_input_tokens").data, vec![0, 9, 4, 1, 3, 0, 6, 1, 7, 0, 5, 1, 8, 0, 0, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_causal_attention").data, vec![1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_loss_weights").data, vec![0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_segment_ids").data, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    assert_eq!(get(&out, "decoder_positions").data, vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0, 0, 0]);
}

#[test]
fn format_of_the_wrong_family_is_refused() {
    assert!(matches!(format(enc_dec_rows(0), Format::Decoder, 0, Options::default()), Err(Error::Internal(_))));
    assert!(matches!(format(decoder_rows(), Format::Hf, 0, Options::default()), Err(Error::Internal(_))));
    assert_eq!(Format::parse("seqio_decoder").unwrap(), Format::SeqioDecoder);
    assert_eq!(Format::SeqioDecoder.family(), Family::Decoder);
    assert!(matches!(Format::parse("t5"), Err(Error::Invalid { arg: "format", .. })));
}

/// `Format::names` lists what `format` emits, in order; a selection of them gives exactly
/// those arrays of the full output (and `denoiser`, bookkeeping, whatever it says).
#[test]
fn fields_select_arrays_of_the_full_output() {
    let (enc_dec, decoder) = ([Format::Hf, Format::Seqio], [Format::Decoder, Format::SeqioDecoder]);
    let cases = [
        (enc_dec_rows(7), false, enc_dec),
        (packed_enc_dec(), true, enc_dec),
        (decoder_rows(), false, decoder),
        (packed_decoder_rows(), true, decoder),
    ];
    for (rows, packed, formats) in cases {
        for fmt in formats {
            for (bidi, denoiser) in [(false, false), (true, false), (false, true)] {
                let o = opts(packed, bidi, denoiser);
                let full = format(rows.clone(), fmt, 7, o).unwrap();
                let all = fmt.names(o);
                assert_eq!(full.iter().map(|f| f.name).collect::<Vec<_>>(), all, "{fmt:?} {o:?}");
                let choosable: Vec<&str> = all.iter().copied().filter(|&n| n != "denoiser").collect();
                let subsets = choosable.iter().map(|&n| vec![n]).chain([
                    choosable.iter().copied().step_by(2).collect(),
                    choosable.iter().copied().skip(1).step_by(2).collect(),
                ]);
                for names in subsets.filter(|n: &Vec<&str>| !n.is_empty()) {
                    let fields = Some(Selection::new(fmt, opts(packed, bidi, false), &names).unwrap());
                    let got = format(rows.clone(), fmt, 7, Options { fields, ..o }).unwrap();
                    let want: Vec<_> = full.iter().filter(|f| names.contains(&f.name) || f.name == "denoiser").cloned().collect();
                    assert_eq!(got, want, "{fmt:?} {o:?} {names:?}");
                }
            }
        }
    }
}

#[test]
fn fields_outside_the_format_are_refused_with_the_valid_names() {
    let err = Selection::new(Format::Hf, Options::default(), &["input_ids", "segment_ids"]).unwrap_err();
    assert!(matches!(err, Error::Invalid { arg: "fields", .. }), "{err:?}");
    assert!(err.to_string().contains("\"decoder_attention_mask\""), "{err}");
    assert!(Selection::new(Format::Hf, opts(true, false, false), &["segment_ids"]).is_ok());
    let err = Selection::new::<&str>(Format::Seqio, Options::default(), &[]).unwrap_err();
    assert!(matches!(err, Error::Invalid { arg: "fields", .. }), "{err:?}");
    assert!(Selection::new(Format::Decoder, opts(true, false, false), &["prefix_lengths"]).is_err());
    assert!(Selection::new(Format::Decoder, Options::default(), &["denoiser"]).is_err());
}

// ---------------------------------------------------------------------------------------------
// 5. Determinism across thread counts
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct RunOutput {
    bins: Vec<usize>,
    unpacked: Denoised<i32>,
    packed: Denoised<i32>,
    fields: Vec<Field<i32>>,
    samples: Denoised<i32>,
}

fn run_everything(family: Family, pad: i32, docs: &[Vec<i32>], rows: &[Vec<i32>], keys: &[u64]) -> RunOutput {
    let entries = (0..POOL_SIZE).map(|c| (pool_denoiser(c, c % 3), 1.0 + c as f64)).collect();
    let mixture = Mixture::new(entries).unwrap();
    let sentinels = sentinels();
    let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed: 17 };
    let widths = match family {
        Family::EncoderDecoder => (96, 64),
        Family::Decoder => (128, 0),
    };
    let layout = Layout { family, widths };
    let source = Rows::Ragged(rows.iter().map(Vec::as_slice).collect());
    let bins = pack_bins(&cfg, |i| rows[i].len(), keys, layout).unwrap();
    let single: Vec<usize> = (0..=rows.len()).collect();
    let unpacked = denoise_rows(&cfg, &source, keys, &single, layout, pad).unwrap();
    let packed = denoise_rows(&cfg, &source, keys, &bins, layout, pad).unwrap();
    let fmt = match family {
        Family::EncoderDecoder => [Format::Hf, Format::Seqio],
        Family::Decoder => [Format::Decoder, Format::SeqioDecoder],
    };
    let mut fields = Vec::new();
    for f in fmt {
        fields.extend(format(packed.clone(), f, pad, opts(true, true, true)).unwrap());
        fields.extend(format(unpacked.clone(), f, pad, opts(false, true, true)).unwrap());
    }
    let (tokens, offsets) = flatten(docs);
    let corpus = Corpus { tokens: (&tokens).into(), doc_offsets: Some(&offsets[..]), separator: Some(1) };
    let raw: Vec<usize> = (0..POOL_SIZE).map(|i| 20 + 3 * i).collect();
    let index = SampleIndex::build(&corpus, &mixture, &raw, Documents::Concat, 17).unwrap();
    let ids: Vec<u64> = (0..index.len() as u64).rev().collect();
    let samples = Samples { corpus, index: &index, ids: &ids };
    let sample_bins: Vec<usize> = (0..=ids.len()).collect();
    let samples = denoise_rows(&cfg, &samples, &ids, &sample_bins, layout, pad).unwrap();
    RunOutput { bins, unpacked, packed, fields, samples }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut g = Lcg(3);
    let rows: Vec<Vec<i32>> = (0..300).map(|_| (0..g.below(48)).map(|_| 2 + g.below(898) as i32).collect()).collect();
    let keys: Vec<u64> = (0..rows.len() as u64).map(|i| i * 7 + 3).collect();
    let docs: Vec<Vec<i32>> = (0..60).map(|_| (0..g.below(60)).map(|_| 2 + g.below(898) as i32).collect()).collect();
    // One thread appends each row to the outputs; several write them over filled buffers: a
    // padding other than 0 tells the two apart wherever a row would be left unwritten.
    for (family, pad) in [(Family::EncoderDecoder, 0), (Family::Decoder, 0), (Family::EncoderDecoder, 7), (Family::Decoder, 7)] {
        let runs: Vec<RunOutput> = [1, 2, 3]
            .into_iter()
            .map(|threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| run_everything(family, pad, &docs, &rows, &keys))
            })
            .collect();
        assert!(runs[0].packed.rows < rows.len(), "packing should merge rows");
        assert!(runs[0].samples.rows > 10);
        assert!(runs[0].unpacked.first.contains(&pad), "{family:?}: some padding");
        for (threads, run) in [2, 3].into_iter().zip(&runs[1..]) {
            assert!(*run == runs[0], "{family:?} pad {pad}: {threads} threads differ from 1");
        }
    }
}

/// Of several bad rows the lowest one's error is reported, whatever the number of threads
/// (tasks stop at their first error and are read in row order).
#[test]
fn the_lowest_bad_row_is_reported_on_any_thread_count() {
    let mixture = Mixture::new(vec![(pool_denoiser(0, 0), 1.0)]).unwrap();
    let sentinels = sentinels();
    let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(1), seed: 17 };
    let layout = Layout { family: Family::EncoderDecoder, widths: (96, 64) };
    let mut rows: Vec<Vec<i32>> = (0..400).map(|i| (0..30).map(|j| 2 + ((i * 31 + j) % 800)).collect()).collect();
    for (r, bad) in [(390, -5), (130, -2), (260, -3)] {
        rows[r][4] = bad;
    }
    let source = Rows::Ragged(rows.iter().map(Vec::as_slice).collect());
    let keys: Vec<u64> = (0..rows.len() as u64).collect();
    let single: Vec<usize> = (0..=rows.len()).collect();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let err = pool.install(|| denoise_rows(&cfg, &source, &keys, &single, layout, 0i32)).unwrap_err();
        assert!(err.to_string().contains("-2"), "{threads} threads: {err}");
    }
}
