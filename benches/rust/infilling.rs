//! Cost per raw token of BART's text infilling against the T5 preset, in one run: the same
//! rows (256 × each denoiser's planned raw length at 512 inputs), one thread, rows denoised
//! into buffers allocated once. Criterion's throughput is raw tokens, so the two
//! `…/elem` times compare directly.
//!
//! Measured once (2 shared cores, rustc 1.95, release): T5 256×568 in 107.2 µs, 0.74 ns per raw
//! token; text infilling (0.3, 3.5) 256×511 in 142.5 µs, 1.09 ns per raw token: 1.48× T5 (one
//! Poisson draw and table search per span, and the targets copy the whole row).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ul2_core::rng::{Purpose, Stream};
use ul2_core::{
    Budget, Config, Denoiser, Engine, InfillParams, Kind, LongRows, Mixture, Overflow, RowScratch, Rows, Sentinels, SpanParams,
    denoise_row,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 256;
const VOCAB: i64 = 32_128;

fn engine(kind: Kind) -> Engine {
    let mixture = Mixture::new(vec![(Denoiser::new(kind, Vec::new()).expect("valid denoiser"), 1.0)]).expect("mixture");
    let sentinels = Sentinels::t5(VOCAB, 100, Overflow::Error, true).expect("valid sentinels");
    let budget = Budget::EncoderDecoder { inputs: 512, targets: None };
    Engine::new(Config { long_rows: LongRows::Error, ..Config::new(mixture, sentinels, budget) }).expect("configuration")
}

fn cost_per_raw_token(c: &mut Criterion) {
    let mut g = c.benchmark_group("cost_per_raw_token");
    let kinds = [
        ("t5", Kind::SpanCorruption(SpanParams::new(0.15, 3.0, None, false).expect("T5"))),
        ("text_infilling_0.3_3.5", Kind::TextInfilling(InfillParams::new(0.3, 3.5, 3).expect("BART"))),
    ];
    for (name, kind) in kinds {
        let engine = engine(kind);
        let raw = engine.raw_lengths()[0];
        let (w_in, w_tg) = engine.layout().widths;
        let cfg = engine.row_config();
        let mut s = Stream::new(12_345, 0, Purpose::NoiseSpans);
        let data: Vec<i32> = (0..ROWS * raw).map(|_| 4 + s.below((VOCAB - 100 - 4) as u64) as i32).collect();
        let rows = Rows::Dense { data: &data, rows: ROWS, width: raw };
        let (mut inputs, mut targets) = (vec![0i32; ROWS * w_in], vec![0i32; ROWS * w_tg]);
        let (mut scratch, mut gather) = (RowScratch::default(), Vec::new());
        g.throughput(Throughput::Elements((ROWS * raw) as u64));
        g.bench_function(format!("{name}_{ROWS}x{raw}"), |b| {
            b.iter(|| {
                for (i, (inp, tgt)) in inputs.chunks_mut(w_in).zip(targets.chunks_mut(w_tg)).enumerate() {
                    let row = rows.row(i, &mut gather).expect("row");
                    black_box(denoise_row(&cfg, row, i as u64, &mut scratch, inp, tgt).expect("row fits"));
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, cost_per_raw_token);
criterion_main!(benches);
