//! Core throughput of `ul2-core` (criterion). Throughput is in raw input tokens, so
//! `elem/s` reads as tokens/s; the planner, which does not touch tokens, is timed per call.
//!
//! Workload: T5's span corruption at `inputs_length = 512` (the engine plans 568 raw tokens,
//! 85 noise tokens in 28 spans, 483 clean tokens, targets 114), `Sentinels::t5(32128, 100)`,
//! int32 tokens in `[2, 32028)`, EOS 1, pad 0. Batches are 256 rows. Lengths and widths come
//! from the engine (`Engine::new`), never restated here.
//!
//! Also the sample index (10^8 tokens) and next-fit packing (4096 short examples), and ul2
//! next to its floor and a memcpy (group `floor`, see `floor.rs`).
//!
//! Run: `cargo bench -p ul2-benches` (all), `cargo bench -p ul2-benches -- denoise_batch`
//! (one group), `cargo test -p ul2-benches --benches` (each once, as a smoke test).

mod floor;

use std::hint::black_box;
use std::time::Duration;

// The extension's allocator (see rust/ul2-python/src/lib.rs), so the benches that allocate
// output buffers measure what Python callers get, not glibc's page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use floor::Floor;
use ul2_core::rng::{Purpose, Stream};
use ul2_core::{
    Bins, Budget, Composer, Config, Corpus, Denoised, Denoiser, Documents, Engine, FimLoss, FimParams, Format, Kind, LongRows,
    Mixture, Options, Overflow, RowConfig, RowScratch, Rows, Runs, SampleIndex, Sentinels, SpanParams, SpanScratch,
    applied_lengths, apply_runs, denoise_batch, denoise_row, pack_bins, plan_span_corruption,
};

const INPUTS: usize = 512;
const ROWS: usize = 256;
const VOCAB: i64 = 32_128;
const SEED: u64 = 0;

fn t5_params() -> SpanParams {
    SpanParams::new(0.15, 3.0, None, false).expect("valid T5 parameters")
}

fn t5_sentinels() -> Sentinels {
    Sentinels::t5(VOCAB, 100, Overflow::Error, true).expect("valid sentinels")
}

fn span(r: f64, mu: f64) -> Denoiser {
    Denoiser::new(Kind::SpanCorruption(SpanParams::new(r, mu, None, false).expect("valid parameters")), Vec::new())
        .expect("valid denoiser")
}

fn t5_mixture() -> Mixture {
    Mixture::new(vec![(span(0.15, 3.0), 1.0)]).expect("valid mixture")
}

/// UL2 as released (`ul2.presets.ul2()`, no prompts): R(3,.15), R(8,.15), X(3,.5), X(8,.5),
/// X(64,.15), X(64,.5), S(.5), uniform rates.
fn ul2_mixture() -> Mixture {
    let s = Denoiser::new(Kind::PrefixLm { suffix_density: 0.5 }, Vec::new()).expect("valid denoiser");
    let spans = [(0.15, 3.0), (0.15, 8.0), (0.5, 3.0), (0.5, 8.0), (0.15, 64.0), (0.5, 64.0)];
    Mixture::new(spans.iter().map(|&(r, mu)| (span(r, mu), 1.0)).chain([(s, 1.0)]).collect()).expect("valid mixture")
}

/// The engine for `mixture`, `sentinels` and `budget` (EOS 1, pad 0, int32): its plan and
/// row widths are the workload's.
fn engine(mixture: Mixture, sentinels: Sentinels, budget: Budget) -> Engine {
    Engine::new(Config { seed: SEED, long_rows: LongRows::Error, ..Config::new(mixture, sentinels, budget) })
        .expect("a valid configuration")
}

/// T5 at `inputs_length = 512`: `(engine, raw length, (noise, spans))`.
fn t5() -> (Engine, usize, (usize, usize)) {
    let engine = engine(t5_mixture(), t5_sentinels(), Budget::EncoderDecoder { inputs: INPUTS, targets: None });
    let raw = engine.raw_lengths()[0];
    let counts = t5_params().counts(raw).expect("counts");
    (engine, raw, counts)
}

/// A pool of every core (`RAYON_NUM_THREADS` or all), entered from outside as the extension
/// does for large calls; explicit, as the bench thread itself becomes the one-thread pool's
/// worker in `batch`.
fn all_threads() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().build().expect("pool"))
}

/// One thread as the extension runs it: the bench thread is the pool's only worker, so the
/// work runs there rather than being handed over (ul2-python's detach.rs). Built once, as a
/// thread can be in one pool only.
fn one_thread() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().expect("pool"))
}

/// `rows × width` token ids below the sentinel range, from a fixed stream.
fn tokens(rows: usize, width: usize) -> Vec<i32> {
    let mut s = Stream::new(12_345, 0, Purpose::NoiseSpans);
    (0..rows * width).map(|_| 2 + s.below((VOCAB - 100 - 2) as u64) as i32).collect()
}

fn compose(c: &mut Criterion) {
    let mut g = c.benchmark_group("compose");
    let (_, raw, (noise, spans)) = t5();
    let mut composer = Composer::default();
    let mut out = Vec::with_capacity(spans);
    for (total, name) in
        [(noise, format!("noise_{noise}_into_{spans}")), (raw - noise, format!("clean_{}_into_{spans}", raw - noise))]
    {
        let parts = spans;
        g.throughput(Throughput::Elements(total as u64));
        let mut key = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                key = key.wrapping_add(1);
                let mut rng = Stream::new(SEED, key, Purpose::NoiseSpans);
                out.clear();
                composer.compose(black_box(total), black_box(parts), &mut rng, &mut out);
                black_box(out.len())
            });
        });
    }
    g.finish();
}

fn layout(c: &mut Criterion) {
    let mut g = c.benchmark_group("layout");
    let (_, raw, counts) = t5();
    g.throughput(Throughput::Elements(raw as u64));
    let mut scratch = SpanScratch::default();
    let mut runs = Runs::default();
    for (roll, name) in [(false, format!("t5_{raw}")), (true, format!("t5_{raw}_random_roll"))] {
        let mut key = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                key = key.wrapping_add(1);
                scratch.layout(black_box(raw), counts, roll, SEED, key, &mut runs).unwrap();
                black_box(runs.lengths.len())
            });
        });
    }
    g.finish();
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_runs");
    let (engine, raw, counts) = t5();
    g.throughput(Throughput::Elements(raw as u64));
    let sentinels = t5_sentinels();
    let row = tokens(1, raw);
    let mut runs = Runs::default();
    SpanScratch::default().layout(raw, counts, false, SEED, 7, &mut runs).unwrap();
    let (li, lt) = applied_lengths(&runs, raw);
    // The engine's widths hold the row and its EOS exactly.
    assert_eq!((li + 1, lt + 1), engine.layout().widths);
    let (mut inputs, mut targets) = (vec![0i32; li], vec![0i32; lt]);
    g.bench_function(format!("t5_{raw}_i32"), |b| {
        b.iter(|| black_box(apply_runs(black_box(&row), &runs, &sentinels, &mut inputs, &mut targets)));
    });
    g.finish();
}

fn plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan_span_corruption");
    let sentinels = t5_sentinels();
    for (r, mu, name) in [(0.15, 3.0, "t5_512"), (0.5, 64.0, "x_64_0.5_512")] {
        let params = SpanParams::new(r, mu, None, false).expect("valid parameters");
        g.bench_function(name, |b| {
            b.iter(|| plan_span_corruption(black_box(INPUTS), &params, None, 0, true, Some(&sentinels)).expect("plan"));
        });
    }
    g.finish();
}

fn batch_once(cfg: &RowConfig<'_>, rows: &Rows<'_, i32>, keys: &[u64], (inputs, targets): (usize, usize)) -> Denoised<i32> {
    denoise_batch(cfg, rows, keys, inputs, targets, 0i32).expect("every row fits")
}

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("denoise_batch");
    let (engine, raw, _) = t5();
    let widths = engine.layout().widths;
    let (w_in, w_tg) = widths;
    g.throughput(Throughput::Elements((ROWS * raw) as u64));
    let cfg = engine.row_config();
    let data = tokens(ROWS, raw);
    let rows = Rows::Dense { data: &data, rows: ROWS, width: raw };
    let keys: Vec<u64> = (0..ROWS as u64).collect();
    let out = batch_once(&cfg, &rows, &keys, widths);
    assert!(out.segments.iter().all(|l| (l.inputs as usize, l.targets as usize) == widths));

    // The same 256 rows, one thread, into buffers allocated once: the denoising work alone,
    // without allocating and prefilling fresh output buffers as `denoise_batch` does.
    let (mut inputs, mut targets) = (vec![0i32; ROWS * w_in], vec![0i32; ROWS * w_tg]);
    let (mut scratch, mut gather) = (RowScratch::default(), Vec::new());
    g.bench_function(format!("t5_{ROWS}x{raw}_rows_into_reused_buffers"), |b| {
        b.iter(|| {
            for (i, (inp, tgt)) in inputs.chunks_mut(w_in).zip(targets.chunks_mut(w_tg)).enumerate() {
                let l = denoise_row(&cfg, rows.row(i, &mut gather).unwrap(), keys[i], &mut scratch, inp, tgt).expect("row fits");
                black_box(l);
            }
        });
    });

    let single = one_thread();
    g.bench_function(format!("t5_{ROWS}x{raw}_1_thread"), |b| {
        b.iter(|| single.install(|| black_box(batch_once(&cfg, &rows, black_box(&keys), widths))));
    });
    let all = all_threads();
    g.bench_function(format!("t5_{ROWS}x{raw}_{}_threads", all.current_num_threads()), |b| {
        b.iter(|| all.install(|| black_box(batch_once(&cfg, &rows, black_box(&keys), widths))));
    });
    g.finish();

    let mut g = c.benchmark_group("format");
    g.throughput(Throughput::Elements((ROWS * raw) as u64));
    for (format, name) in [(Format::Hf, "hf_256"), (Format::Seqio, "seqio_256")] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || out.clone(),
                |o| {
                    single.install(|| {
                        black_box(ul2_core::format(o, format, 0, Options::default()).expect("encoder-decoder format"))
                    })
                },
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

/// Fill-in-the-middle against T5 in one run, per raw token: 256 rows through `denoise_row`
/// into buffers allocated once, one thread. T5 at `inputs_length = 512` (568 raw tokens);
/// FIM (ids 32000..32002, spm_rate 0.5) encoder-decoder at 512 (509 raw, middle targets) and
/// decoder-only at `sequence_length = 512` with `loss="all"` (508 raw).
fn fim_vs_t5(c: &mut Criterion) {
    let mut g = c.benchmark_group("fim_vs_t5");
    let fim = |loss| {
        let p = FimParams::new(32_000, 32_001, 32_002, 0.5, loss).expect("valid FIM parameters");
        Mixture::new(vec![(Denoiser::new(Kind::FillInTheMiddle(p), Vec::new()).expect("valid denoiser"), 1.0)])
            .expect("valid mixture")
    };
    let cases = [
        ("t5_512", t5().0),
        (
            "fim_enc_dec_512",
            engine(fim(FimLoss::Middle), t5_sentinels(), Budget::EncoderDecoder { inputs: INPUTS, targets: None }),
        ),
        ("fim_decoder_512_loss_all", engine(fim(FimLoss::All), t5_sentinels(), Budget::Decoder { sequence: INPUTS })),
    ];
    for (name, engine) in &cases {
        let raw = engine.raw_lengths()[0];
        // Decoder rows: a targets buffer as wide as the sequence (denoise_row's view of one).
        let (w_in, w_tg) = match engine.layout().widths {
            (w, 0) => (w, w),
            widths => widths,
        };
        let cfg = engine.row_config();
        let data = tokens(ROWS, raw);
        let rows = Rows::Dense { data: &data, rows: ROWS, width: raw };
        let keys: Vec<u64> = (0..ROWS as u64).collect();
        let (mut inputs, mut targets) = (vec![0i32; ROWS * w_in], vec![0i32; ROWS * w_tg]);
        let (mut scratch, mut gather) = (RowScratch::default(), Vec::new());
        g.throughput(Throughput::Elements((ROWS * raw) as u64));
        g.bench_function(format!("{name}_{ROWS}x{raw}_rows_into_reused_buffers"), |b| {
            b.iter(|| {
                for (i, (inp, tgt)) in inputs.chunks_mut(w_in).zip(targets.chunks_mut(w_tg)).enumerate() {
                    let row = rows.row(i, &mut gather).unwrap();
                    black_box(denoise_row(&cfg, row, keys[i], &mut scratch, inp, tgt).expect("row fits"));
                }
            });
        });
    }
    g.finish();
}

/// The sample index over a 10^8-token stream (u16, one document) for UL2's seven
/// denoisers planned at 512/512; throughput in samples.
fn index(c: &mut Criterion) {
    let mut g = c.benchmark_group("sample_index");
    let tokens = vec![7u16; 100_000_000];
    let corpus = Corpus { tokens: (&tokens).into(), doc_offsets: None, separator: None };
    // X(3, .5) has 128 spans at 512: more than T5's 100 sentinels, so they continue below.
    let sentinels = Sentinels::t5(VOCAB, 100, Overflow::T5, true).expect("valid sentinels");
    let engine = engine(ul2_mixture(), sentinels, Budget::EncoderDecoder { inputs: INPUTS, targets: Some(512) });
    let (mixture, raw_lengths) = (&engine.config().mixture, engine.raw_lengths());
    let samples = SampleIndex::build(&corpus, mixture, raw_lengths, Documents::Concat, SEED).expect("index").len();
    g.throughput(Throughput::Elements(samples as u64));
    g.sample_size(20);
    g.bench_function(format!("ul2_lengths_1e8_tokens_{}_threads", all_threads().current_num_threads()), |b| {
        b.iter(|| {
            all_threads()
                .install(|| SampleIndex::build(&corpus, mixture, raw_lengths, Documents::Concat, black_box(SEED)).expect("index"))
        });
    });
    g.finish();
}

/// Next-fit packing of 4096 short T5 examples (64 to 511 raw tokens) into decoder rows of
/// 1024; throughput in examples.
fn packing(c: &mut Criterion) {
    const EXAMPLES: usize = 4096;
    let mut g = c.benchmark_group("pack");
    let engine = engine(t5_mixture(), t5_sentinels(), Budget::Decoder { sequence: 1024 });
    let (cfg, layout) = (engine.row_config(), engine.layout());
    let mut s = Stream::new(12_345, 1, Purpose::NoiseSpans);
    let lengths: Vec<usize> = (0..EXAMPLES).map(|_| 64 + s.below(448) as usize).collect();
    let keys: Vec<u64> = (0..EXAMPLES as u64).collect();
    g.throughput(Throughput::Elements(EXAMPLES as u64));
    g.bench_function(format!("t5_4096_examples_into_1024_{}_threads", all_threads().current_num_threads()), |b| {
        b.iter(|| all_threads().install(|| pack_bins(&cfg, |i| lengths[i], black_box(&keys), layout).expect("fits")));
    });
    g.finish();
}

/// ul2 (`Engine::run`, `hf`, one thread, fresh outputs) next to its floor and a memcpy of
/// the output bytes into a reused buffer, on the same batch: T5 at inputs_length 512 in
/// batches of 1, 16, 256 and 4096 rows, and 256-row batches at inputs_length 128, 2048 and
/// 8192. Each case's floor is checked byte for byte against ul2's outputs first, so
/// `cargo test -p ul2-benches --benches` checks them all. `benches/report.py` prints the ratios.
fn floor_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30);
    let single = one_thread();
    for (inputs, rows) in [(512, 1), (512, 16), (512, 256), (512, 4096), (128, 256), (2048, 256), (8192, 256)] {
        // Past about 1000 inputs T5's 100 sentinels run out; ids continue below them, as in T5.
        let sentinels = Sentinels::t5(VOCAB, 100, Overflow::T5, true).expect("valid sentinels");
        let engine = engine(t5_mixture(), sentinels, Budget::EncoderDecoder { inputs, targets: None });
        let raw = engine.raw_lengths()[0];
        let data = tokens(rows, raw);
        let source = Rows::Dense { data: &data, rows, width: raw };
        let keys: Vec<u64> = (0..rows as u64).collect();
        let ul2 = || single.install(|| engine.run(&source, &keys, Bins::<fn(usize) -> usize>::One).expect("every row fits"));
        let floor = Floor::new(&engine, raw, &keys);
        let mut out = floor.outputs();
        floor.run(&data, &mut out);
        Floor::check(&out, &ul2());
        let elements = out.iter().map(Vec::len).sum();
        let (src, mut dst) = (vec![1i32; elements], vec![0i32; elements]);
        let case = format!("t5_{inputs}_{rows}x{raw}");
        g.throughput(Throughput::Elements((rows * raw) as u64));
        g.bench_function(BenchmarkId::new(&case, "ul2"), |b| b.iter(|| black_box(ul2())));
        g.bench_function(BenchmarkId::new(&case, "floor"), |b| {
            b.iter(|| {
                floor.run(black_box(&data), &mut out);
                black_box(&mut out);
            });
        });
        g.bench_function(BenchmarkId::new(&case, "memcpy"), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, compose, layout, apply, plan, batch, fim_vs_t5, index, packing, floor_group);
criterion_main!(benches);
