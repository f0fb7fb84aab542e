//! SPEC §8.2: the random parts follow their exact laws. Goodness-of-fit tests with fixed
//! seeds and keys, so every run draws the same numbers and a pass or fail is reproducible.
//!
//! * Part lengths of a uniform composition of `K` into `m` parts:
//!   `P(len = j) = C(K−j−1, m−2) / C(K−1, m−1)`, `j = 1 ..= K−m+1` (one part per draw, so the
//!   counts are independent), through `Composer` and through `noise_mask`.
//! * Every composition equally likely (all `C(K−1, m−1)` of them seen, chi-square flat).
//! * Denoiser frequencies match the mixture's rates; prefix splits are uniform on `[lo, hi]`.
//!
//! Each statistic is compared with the chi-square critical value at p = 0.001 for its degrees
//! of freedom (Wilson–Hilferty approximation: 1.2% above the exact value at df = 5, 0.6% at
//! df = 10, under 0.1% from df = 50; slightly conservative, never looser than the table).

use std::collections::HashMap;

use ul2_core::rng::{Purpose, Stream};
use ul2_core::{Composer, Denoiser, Kind, Mixture, SpanParams, noise_mask, prefix_bounds, prefix_split, span_counts};

const SEED: u64 = 20_260_101;

/// Upper 0.001 quantile of the standard normal.
const Z_999: f64 = 3.090_232_306_167_813;

/// Chi-square critical value at p = 0.001 for `df` degrees of freedom (Wilson–Hilferty):
/// `df · (1 − 2/(9df) + z·sqrt(2/(9df)))³`. E.g. df = 10 → 29.76 (table: 29.59), df = 83 →
/// 128.63 (exact: 128.57).
fn chi2_critical(df: usize) -> f64 {
    let k = df as f64;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + Z_999 * a.sqrt()).powi(3)
}

#[test]
fn wilson_hilferty_matches_the_table() {
    // Tabulated chi-square 0.999 quantiles (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.4).
    for (df, table) in [(5, 20.515), (10, 29.588), (20, 45.315), (30, 59.703), (50, 86.661), (100, 149.449)] {
        let approx = chi2_critical(df);
        let rel = (approx - table) / table;
        assert!((0.0..0.015).contains(&rel), "df={df}: {approx} vs table {table}");
    }
}

fn ln_choose(n: usize, k: usize) -> f64 {
    (1..=k).map(|i| ((n - k + i) as f64 / i as f64).ln()).sum()
}

/// The uniform-composition law of one part's length, `P(len = j)` for `j = 0 ..= K−m+1`
/// (index 0 is the impossible length 0).
fn part_law(total: usize, parts: usize) -> Vec<f64> {
    let mut p = vec![0.0; total - parts + 2];
    if parts == 1 {
        p[total] = 1.0;
        return p;
    }
    let denom = ln_choose(total - 1, parts - 1);
    for (j, pj) in p.iter_mut().enumerate().skip(1) {
        *pj = (ln_choose(total - j - 1, parts - 2) - denom).exp();
    }
    let sum: f64 = p.iter().sum();
    assert!((sum - 1.0).abs() < 1e-9, "law sums to {sum}");
    p
}

/// Pearson's statistic of `observed` against `probs` (same indexing), merging tail bins
/// (from the right) until every expected count is at least 5. Returns `(statistic, df)`.
fn chi_square(observed: &[u64], probs: &[f64]) -> (f64, usize) {
    let n: u64 = observed.iter().sum();
    assert_eq!(observed.len(), probs.len());
    // Bins with zero probability must stay empty.
    for (j, (&o, &p)) in observed.iter().zip(probs).enumerate() {
        assert!(p > 0.0 || o == 0, "{o} draws of impossible value {j}");
    }
    let mut bins: Vec<(f64, f64)> = Vec::new(); // (observed, expected)
    let (mut o_acc, mut e_acc) = (0.0, 0.0);
    for (&o, &p) in observed.iter().zip(probs).rev() {
        o_acc += o as f64;
        e_acc += p * n as f64;
        if e_acc >= 5.0 {
            bins.push((o_acc, e_acc));
            (o_acc, e_acc) = (0.0, 0.0);
        }
    }
    if e_acc > 0.0 || o_acc > 0.0 {
        let last = bins.last_mut().expect("at least one bin with expected >= 5");
        last.0 += o_acc;
        last.1 += e_acc;
    }
    assert!(bins.len() >= 2, "too few draws for a chi-square test");
    let stat = bins.iter().map(|&(o, e)| (o - e) * (o - e) / e).sum();
    (stat, bins.len() - 1)
}

fn assert_fits(what: &str, observed: &[u64], probs: &[f64]) {
    let (stat, df) = chi_square(observed, probs);
    let critical = chi2_critical(df);
    assert!(
        stat < critical,
        "{what}: chi-square {stat:.1} >= {critical:.1} (df {df}, p < 0.001)\nobserved {observed:?}\nexpected {:?}",
        probs.iter().map(|p| p * observed.iter().sum::<u64>() as f64).collect::<Vec<_>>()
    );
}

/// Histogram of one part per draw (part `d mod m` of draw `d`) of `draws` compositions of
/// `total` into `parts`, checking on the way that each draw has `parts` positive parts
/// summing to `total` (so its mean part length is exactly `total / parts`).
fn composer_histogram(total: usize, parts: usize, draws: u64) -> Vec<u64> {
    let mut hist = vec![0u64; total - parts + 2];
    let mut composer = Composer::default();
    let mut out = Vec::with_capacity(parts);
    for d in 0..draws {
        out.clear();
        composer.compose(total, parts, &mut Stream::new(SEED, d, Purpose::NoiseSpans), &mut out);
        assert_eq!(out.len(), parts);
        assert!(out.iter().all(|&x| x >= 1));
        let sum: u64 = out.iter().map(|&x| u64::from(x)).sum();
        // Mean part length K/m exactly: sum·m == K·m compared in integers.
        assert_eq!(sum * parts as u64, (total * parts) as u64, "draw {d}: mean part length is not {total}/{parts}");
        hist[out[(d % parts as u64) as usize] as usize] += 1;
    }
    hist
}

#[test]
fn composer_part_lengths_follow_the_law_85_into_28() {
    // T5's standard row: 568 raw tokens, 85 noise tokens in 28 spans.
    assert_fits("K=85, m=28", &composer_histogram(85, 28, 20_000), &part_law(85, 28));
}

#[test]
fn composer_part_lengths_follow_the_law_10_into_4() {
    assert_fits("K=10, m=4", &composer_histogram(10, 4, 20_000), &part_law(10, 4));
}

#[test]
fn composer_part_lengths_follow_the_law_when_drawing_the_complement() {
    // parts − 1 > (total − 1)/2: the composer picks the gaps that are *not* cuts.
    assert_fits("K=10, m=8", &composer_histogram(10, 8, 20_000), &part_law(10, 8));
    // Several bitset words (199 gaps), complement branch, long-tailed law.
    assert_fits("K=200, m=150", &composer_histogram(200, 150, 10_000), &part_law(200, 150));
    // One word boundary exactly (64 gaps), direct branch.
    assert_fits("K=65, m=9", &composer_histogram(65, 9, 20_000), &part_law(65, 9));
}

/// Every composition of `total` into `parts` is equally likely.
fn assert_compositions_uniform(total: usize, parts: usize, per_composition: u64) {
    let count = ln_choose(total - 1, parts - 1).exp().round() as u64;
    let draws = count * per_composition;
    let mut seen: HashMap<Vec<u32>, u64> = HashMap::new();
    let mut composer = Composer::default();
    for d in 0..draws {
        let mut out = Vec::new();
        composer.compose(total, parts, &mut Stream::new(SEED ^ 0xc0, d, Purpose::CleanSpans), &mut out);
        *seen.entry(out).or_default() += 1;
    }
    assert_eq!(seen.len() as u64, count, "{total} into {parts}: saw {} of the {count} compositions", seen.len());
    let mut observed: Vec<u64> = seen.into_values().collect();
    observed.sort_unstable();
    let probs = vec![1.0 / count as f64; count as usize];
    assert_fits(&format!("compositions of {total} into {parts}"), &observed, &probs);
}

#[test]
fn all_84_compositions_of_10_into_4_are_equally_likely() {
    assert_compositions_uniform(10, 4, 60);
}

#[test]
fn all_compositions_are_equally_likely_in_the_complement_branch() {
    // C(9, 6) = 84 again, drawn through the complement (6 cuts > 9/2 gaps).
    assert_compositions_uniform(10, 7, 60);
}

/// Lengths of the maximal noise (or clean) runs of a mask, in order.
fn run_lengths(mask: &[bool], noise: bool) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < mask.len() {
        let j = (i..mask.len()).find(|&j| mask[j] != mask[i]).unwrap_or(mask.len());
        if mask[i] == noise {
            out.push(j - i);
        }
        i = j;
    }
    out
}

#[test]
fn noise_mask_span_lengths_follow_the_law() {
    // The public mask of T5's standard row: 85 noise tokens in 28 runs, 483 clean tokens in 28.
    let params = SpanParams::new(0.15, 3.0, None, false).unwrap();
    let (noise, spans) = span_counts(568, 0.15, 3.0).unwrap();
    let draws = 8_000u64;
    let mut noise_hist = vec![0u64; noise - spans + 2];
    let mut clean_hist = vec![0u64; 568 - noise - spans + 2];
    for d in 0..draws {
        let mask = noise_mask(568, &params, SEED, d).unwrap();
        let (nr, cr) = (run_lengths(&mask, true), run_lengths(&mask, false));
        assert_eq!((nr.len(), cr.len()), (spans, spans));
        // Exact means: N/n noise and (L−N)/n clean tokens per span.
        assert_eq!(nr.iter().sum::<usize>(), noise);
        assert_eq!(cr.iter().sum::<usize>(), 568 - noise);
        let pick = (d % spans as u64) as usize;
        noise_hist[nr[pick]] += 1;
        clean_hist[cr[pick]] += 1;
    }
    assert_fits("noise spans of (568, .15, 3)", &noise_hist, &part_law(noise, spans));
    assert_fits("clean spans of (568, .15, 3)", &clean_hist, &part_law(568 - noise, spans));
}

#[test]
fn denoiser_frequencies_match_the_rates() {
    let rates = [1.0, 2.0, 0.0, 0.5, 4.0, 1.0 / 3.0, 1.0];
    let entries = rates.iter().map(|&r| (Denoiser::new(Kind::CausalLm, vec![]).unwrap(), r)).collect();
    let m = Mixture::new(entries).unwrap();
    let total: f64 = rates.iter().sum();
    let probs: Vec<f64> = rates.iter().map(|r| r / total).collect();
    let mut hist = vec![0u64; rates.len()];
    for k in 0..30_000 {
        hist[m.choose(SEED, k)] += 1;
    }
    assert_eq!(hist[2], 0, "a zero-rate denoiser was chosen");
    assert_fits("denoiser choice", &hist, &probs);
}

#[test]
fn prefix_splits_are_uniform_on_their_range() {
    for (length, r) in [(511, 0.5), (511, 0.25), (40, 0.1)] {
        let (lo, hi) = prefix_bounds(length, r);
        let mut hist = vec![0u64; hi + 1];
        let draws = 60 * (hi - lo + 1) as u64;
        for k in 0..draws {
            hist[prefix_split(length, r, SEED, k).unwrap()] += 1;
        }
        let mut probs = vec![0.0; hi + 1];
        probs[lo..=hi].fill(1.0 / (hi - lo + 1) as f64);
        assert_fits(&format!("prefix split of {length} at {r}"), &hist, &probs);
        // Exact mean of the law: (lo + hi)/2; the sample mean within 4 standard errors.
        let n = draws as f64;
        let mean = hist.iter().enumerate().map(|(k, &c)| k as f64 * c as f64).sum::<f64>() / n;
        let width = (hi - lo + 1) as f64;
        let se = ((width * width - 1.0) / 12.0 / n).sqrt();
        let want = (lo + hi) as f64 / 2.0;
        assert!((mean - want).abs() < 4.0 * se, "mean split {mean} vs {want} (se {se})");
    }
}

#[test]
fn roll_offsets_are_uniform() {
    // A rolled mask of (64, .5, 3) is the unrolled one rotated by the Roll stream's offset;
    // recover each offset and check it is uniform on [0, 64).
    let plain = SpanParams::new(0.5, 3.0, None, false).unwrap();
    let rolled = SpanParams::new(0.5, 3.0, None, true).unwrap();
    let length = 64;
    let mut hist = vec![0u64; length];
    let draws = 64 * 60;
    for k in 0..draws {
        let a = noise_mask(length, &plain, SEED, k).unwrap();
        let b = noise_mask(length, &rolled, SEED, k).unwrap();
        let offsets: Vec<usize> = (0..length).filter(|&s| (0..length).all(|i| b[(i + s) % length] == a[i])).collect();
        assert!(!offsets.is_empty(), "key {k}: rolled mask is not a rotation");
        // A periodic mask matches several rotations; count the draw only when unambiguous.
        if let [s] = offsets[..] {
            hist[s] += 1;
        }
    }
    let counted: u64 = hist.iter().sum();
    assert!(counted > draws * 9 / 10, "too many periodic masks: {counted} of {draws}");
    assert_fits("roll offset", &hist, &vec![1.0 / length as f64; length]);
}

/// Fill-in-the-middle cuts: `(a, b)` sorted from two independent uniform draws on
/// `{0, …, n}`, so `P(a = i, b = j) = 2/(n+1)²` for `i < j` and `1/(n+1)²` for `i = j`;
/// over all `(n+1)(n+2)/2` pairs at once, and its marginals (prefix `a`, middle `b − a`).
#[test]
fn fim_cuts_follow_the_sorted_pair_law() {
    let n = 12usize;
    let pairs: Vec<(usize, usize)> = (0..=n).flat_map(|i| (i..=n).map(move |j| (i, j))).collect();
    let cell = 1.0 / ((n + 1) * (n + 1)) as f64;
    let probs: Vec<f64> = pairs.iter().map(|&(i, j)| if i == j { cell } else { 2.0 * cell }).collect();
    let mut joint = vec![0u64; pairs.len()];
    let (mut prefix, mut middle) = (vec![0u64; n + 1], vec![0u64; n + 1]);
    for key in 0..200_000 {
        let s = ul2_core::fim_split(n, 0.5, SEED, key);
        let (a, b) = (s.prefix, s.prefix + s.middle);
        joint[pairs.iter().position(|&p| p == (a, b)).expect("a <= b <= n")] += 1;
        prefix[a] += 1;
        middle[s.middle] += 1;
    }
    assert_fits("FIM (a, b)", &joint, &probs);
    let m1 = ((n + 1) * (n + 1)) as f64;
    let prefix_law: Vec<f64> = (0..=n).map(|i| (2 * (n - i) + 1) as f64 / m1).collect();
    let middle_law: Vec<f64> =
        (0..=n).map(|d| if d == 0 { (n + 1) as f64 / m1 } else { 2.0 * (n + 1 - d) as f64 / m1 }).collect();
    assert_fits("FIM prefix", &prefix, &prefix_law);
    assert_fits("FIM middle", &middle, &middle_law);
}

/// The arrangement is SPM with probability `spm_rate`, independently of the cuts.
#[test]
fn fim_order_follows_spm_rate_independently_of_the_cuts() {
    for rate in [0.5, 0.2] {
        // [PSM with an empty prefix, PSM otherwise, SPM with an empty prefix, SPM otherwise]
        let mut counts = [0u64; 4];
        for key in 0..100_000 {
            let s = ul2_core::fim_split(3, rate, SEED, key);
            counts[2 * usize::from(s.spm) + usize::from(s.prefix > 0)] += 1;
        }
        let empty = 7.0 / 16.0; // P(a = 0) = (2n + 1)/(n + 1)² at n = 3
        let probs = [(1.0 - rate) * empty, (1.0 - rate) * (1.0 - empty), rate * empty, rate * (1.0 - empty)];
        assert_fits(&format!("FIM order at spm_rate={rate}"), &counts, &probs);
    }
}
