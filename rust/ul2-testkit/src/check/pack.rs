//! SPEC §5 / §8.4 / §8.6: next-fit packing, packed rows, and the formats' arrays.

use ul2_core::{
    Bins, Config, Denoised, Engine, Error, Family, Fields, Format, Kind, Layout, LongRows, Mixture, Options, OutToken, RowConfig,
    Rows, Segment, denoise_row, denoise_rows, example_bounds, format, pack_bins,
};

use super::{EOS, MAX_ROW, not_internal};
use crate::cases::PackCase;
use crate::reference::filler;

/// The engine plans a mixture for a budget, packs rows of any length (some too long for
/// their denoiser) next-fit ([`packed_rows`]) and formats them: `engine.run` gives exactly
/// the formatted [`packed_rows`] and their fill rate, and every format names arrays of the
/// right shapes ([`formatted`]).
pub fn packing(c: &PackCase) {
    let mixture = match Mixture::new(c.entries.clone()) {
        Ok(m) => m,
        Err(e) => return not_internal(&e),
    };
    let decoder = matches!(c.budget, ul2_core::Budget::Decoder { .. });
    let fmt = match (decoder, c.second_format) {
        (false, false) => Format::Hf,
        (false, true) => Format::Seqio,
        (true, false) => Format::Decoder,
        (true, true) => Format::SeqioDecoder,
    };
    let config = Config {
        eos_id: c.eos.then_some(EOS),
        pad_id: i64::from(c.pad),
        format: Some(fmt),
        seed: c.seed,
        pack: true,
        bidirectional_mask: c.bidirectional_mask,
        // Rows past their raw length are refused, as pack_bins refuses them.
        long_rows: LongRows::Error,
        ..Config::new(mixture, c.sentinels.clone(), c.budget)
    };
    let engine = match Engine::new(config) {
        Ok(e) => e,
        Err(e) => return not_internal(&e),
    };
    let layout = engine.layout();
    let longest = *engine.raw_lengths().iter().max().expect("a denoiser");
    if longest + layout.widths.1 > MAX_ROW {
        return; // e.g. noise_density ~ 1 without targets_length: legal, but too big to fuzz fast
    }
    let rows: Vec<Vec<i32>> = c.rows.iter().enumerate().map(|(i, r)| filler(r.resolve(longest), i as u64 * 31, 997)).collect();
    let Some(packed) = packed_rows(&engine.row_config(), &rows, &c.keys, layout, c.pad) else { return };

    let source = Rows::Ragged(rows.iter().map(Vec::as_slice).collect());
    let out = engine.run(&source, &c.keys, Bins::Pack(|i: usize| rows[i].len())).expect("the same rows packed");
    let options = Options { packed: true, bidirectional_mask: c.bidirectional_mask, denoiser: false, fields: None };
    let fields = format(packed.clone(), fmt, c.pad, options).expect("packed rows format");
    assert!(out.fields == Fields::Int32(fields), "engine.run differs from packing, denoising and formatting");
    assert_eq!(out.fill_rate, packed.fill_rate());
    formatted(packed, fmt, c.pad, Options { denoiser: c.denoiser_field, ..options });
}

/// `pack_bins` groups examples in order, next-fit, each row within `layout`'s widths, and
/// refuses (naming a row) only where some example fits no row, returning `None`. Each
/// example's bounds are its denoiser's (drawn from `(seed, key)`) and its lengths alone
/// (upper bounds under a roll); `denoise_rows` fills every row: each segment is the
/// example's own single-row output, in order, and the rest is `pad`; unpacked rows have
/// the same segments.
pub fn packed_rows<O: OutToken + Into<i64>>(
    cfg: &RowConfig<'_>,
    rows: &[Vec<i32>],
    keys: &[u64],
    layout: Layout,
    pad: O,
) -> Option<Denoised<O>> {
    let n = rows.len();
    let ((w0, w1), family) = (layout.widths, layout.family);
    let need = |b: (usize, usize, usize)| match family {
        Family::EncoderDecoder => (b.1, b.2),
        Family::Decoder => (b.1 + b.2, 0),
    };
    let bins = match pack_bins(cfg, |i| rows[i].len(), keys, layout) {
        Ok(b) => b,
        Err(e) => {
            not_internal(&e);
            assert!(matches!(e, Error::DoesNotFit { .. } | Error::SentinelOverflow { .. } | Error::Invalid { .. }), "{e}");
            let refused =
                (0..n).any(|i| example_bounds(cfg, rows[i].len(), keys[i]).map_or(true, |b| need(b).0 > w0 || need(b).1 > w1));
            assert!(refused, "pack_bins refused a batch whose examples all fit: {e}");
            return None;
        }
    };
    assert_eq!(bins[0], 0);
    assert_eq!(*bins.last().expect("bins"), n);
    assert!(bins.windows(2).all(|w| w[0] < w[1]), "empty or unordered row: {bins:?}");
    let bounds: Vec<_> =
        (0..n).map(|i| example_bounds(cfg, rows[i].len(), keys[i]).expect("packed examples have bounds")).collect();
    for w in bins.windows(2) {
        let (a, b) = (w[0]..w[1]).fold((0, 0), |(a, b), i| (a + need(bounds[i]).0, b + need(bounds[i]).1));
        assert!(a <= w0 && b <= w1, "row {w:?} needs {:?} of {:?}", (a, b), layout.widths);
        if w[1] < n {
            let (x, y) = need(bounds[w[1]]);
            assert!(a + x > w0 || b + y > w1, "next-fit: example {} fit row {w:?}", w[1]);
        }
    }
    // Each example alone, in buffers of its bounds.
    let alone: Vec<(Segment, Vec<O>, Vec<O>)> = (0..n)
        .map(|i| {
            let (d, bi, bt) = bounds[i];
            assert_eq!(d, cfg.mixture.choose(cfg.seed, keys[i]));
            let (mut inputs, mut targets) = (vec![pad; bi], vec![pad; bt]);
            let mut scratch = ul2_core::RowScratch::default();
            let l = denoise_row(cfg, &rows[i], keys[i], &mut scratch, &mut inputs, &mut targets).expect("fits alone");
            assert_eq!(l.denoiser, d);
            if matches!(&cfg.mixture.denoisers()[d].kind, Kind::SpanCorruption(p) if p.random_roll) {
                assert!(bi >= l.inputs && bt >= l.targets, "example {i} over its bounds");
            } else {
                assert_eq!((bi, bt), (l.inputs, l.targets), "example {i} bounds");
            }
            inputs.truncate(l.inputs);
            targets.truncate(l.targets);
            (Segment { denoiser: d as u32, inputs: l.inputs as u32, targets: l.targets as u32 }, inputs, targets)
        })
        .collect();

    let source = Rows::Ragged(rows.iter().map(Vec::as_slice).collect());
    let packed = denoise_rows(cfg, &source, keys, &bins, layout, pad).unwrap_or_else(|e| panic!("packed rows refused: {e}"));
    assert_eq!((packed.rows, packed.family, packed.widths), (bins.len() - 1, family, layout.widths));
    assert_eq!(packed.row_starts, bins);
    assert_eq!(packed.first.len(), packed.rows * w0);
    assert_eq!(packed.second.len(), if family == Family::Decoder { 0 } else { packed.rows * w1 });
    assert_eq!(packed.segments.len(), n);
    for r in 0..packed.rows {
        let first = &packed.first[r * w0..(r + 1) * w0];
        let second = if family == Family::Decoder { &[][..] } else { &packed.second[r * w1..(r + 1) * w1] };
        let (mut a, mut b) = (0usize, 0usize);
        for (i, (seg, inputs, targets)) in alone.iter().enumerate().take(bins[r + 1]).skip(bins[r]) {
            assert_eq!(packed.segments[i], *seg, "segment of example {i}");
            assert_eq!(&first[a..a + inputs.len()], &inputs[..], "inputs of example {i} in row {r}");
            a += inputs.len();
            let (row, at) = if family == Family::Decoder { (first, &mut a) } else { (second, &mut b) };
            assert_eq!(&row[*at..*at + targets.len()], &targets[..], "targets of example {i} in row {r}");
            *at += targets.len();
        }
        assert!(first[a..].iter().all(|&x| x == pad), "row {r} padding");
        assert!(second[b..].iter().all(|&x| x == pad), "row {r} decoder padding");
    }
    let fill = packed.fill_rate();
    assert!((0.0..=1.0).contains(&fill), "fill rate {fill}");
    let single: Vec<usize> = (0..=n).collect();
    let unpacked = denoise_rows(cfg, &source, keys, &single, layout, pad).expect("examples that pack fit a row alone");
    assert_eq!((unpacked.rows, &unpacked.segments), (n, &packed.segments));
    Some(packed)
}

/// Every array `format` names has `rows` rows (or the shape its data fills); each
/// `cu_seqlens` starts at 0, never decreases and ends at `rows · width`.
pub fn formatted<O: OutToken + Into<i64>>(d: Denoised<O>, fmt: Format, pad: O, options: Options) {
    let (rows, (w0, w1)) = (d.rows, d.widths);
    let fields = format(d, fmt, pad, options).unwrap_or_else(|e| panic!("format refused: {e}"));
    for f in &fields {
        assert_eq!(f.data.len(), f.shape.iter().product::<usize>(), "{} shape {:?}", f.name, f.shape);
        if f.name.ends_with("cu_seqlens") {
            let width = if f.name.starts_with("decoder") && fmt == Format::Hf { w1 } else { w0 };
            let cu: Vec<i64> = f.data.iter().map(|&x| x.into()).collect();
            assert_eq!(cu.first(), Some(&0));
            assert_eq!(cu.last(), Some(&((rows * width) as i64)), "{}", f.name);
            assert!(cu.windows(2).all(|w| w[0] <= w[1]), "{} decreases", f.name);
        } else if f.shape.len() == 2 {
            assert_eq!(f.shape[0], rows, "{}", f.name);
        }
    }
}
