//! Instruction counts of the T5 workload's parts, for callgrind: timings on a shared machine
//! are noise, instruction counts are not. The workload is `core.rs`'s: T5 at
//! `inputs_length = 512`, 256 rows of 568 int32 tokens, `hf`, one thread.
//!
//! ```text
//! cargo build --profile bench -p ul2-benches --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
//!     --toggle-collect='instructions::measured*' target/release/examples/instructions call 10
//! ```
//!
//! counts only `measured` (the `*` takes in its generic instances), which runs the part `n` times (the last argument); divide the
//! `Collected` total by `n` and by the units the part prints. Parts: `call` (`Engine::run`,
//! fresh outputs), `lean` (the same call with `fields` = `input_ids`, `attention_mask` and
//! `labels`, what a Hugging Face T5 reads), `floor` (`floor.rs`'s kernel), `layout` (`SpanScratch::layout`, two
//! compositions a row), `compose` (`Composer::compose` of a row's noise and clean tokens, each
//! from a fresh stream as `layout` seeds them).

mod floor;

use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use floor::Floor;
use ul2_core::rng::{Purpose, Stream};
use ul2_core::{Bins, Budget, Composer, Config, Denoiser, Engine, Kind, LongRows, Mixture, Overflow, Rows, Runs, Sentinels};
use ul2_core::{SpanParams, SpanScratch};

const ROWS: usize = 256;

#[inline(never)]
fn measured(n: usize, mut part: impl FnMut()) {
    for _ in 0..n {
        part();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, part, n] = &args[..] else { panic!("usage: instructions call|lean|floor|layout|compose N") };
    let n: usize = n.parse().expect("a count");
    let params = SpanParams::new(0.15, 3.0, None, false).expect("valid T5 parameters");
    let mixture =
        Mixture::new(vec![(Denoiser::new(Kind::SpanCorruption(params), Vec::new()).expect("denoiser"), 1.0)]).expect("mixture");
    let sentinels = Sentinels::t5(32_128, 100, Overflow::Error, true).expect("sentinels");
    let config = Config {
        long_rows: LongRows::Error,
        ..Config::new(mixture, sentinels, Budget::EncoderDecoder { inputs: 512, targets: None })
    };
    let lean = ["input_ids", "attention_mask", "labels"].map(String::from).to_vec();
    let engine = Engine::new(if part == "lean" { Config { fields: Some(lean), ..config } } else { config })
        .expect("a valid configuration");
    let raw = engine.raw_lengths()[0];
    let (noise, spans) = params.counts(raw).expect("counts");
    let mut s = Stream::new(12_345, 0, Purpose::NoiseSpans);
    let data: Vec<i32> = (0..ROWS * raw).map(|_| 2 + s.below(32_128 - 100 - 2) as i32).collect();
    let keys: Vec<u64> = (0..ROWS as u64).collect();
    let seed = engine.seed();
    let units = match part.as_str() {
        "call" | "lean" => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().expect("pool");
            let rows = Rows::Dense { data: &data, rows: ROWS, width: raw };
            measured(n, || {
                black_box(pool.install(|| engine.run(&rows, &keys, Bins::<fn(usize) -> usize>::One).expect("rows fit")));
            });
            "calls of 256 rows"
        }
        "floor" => {
            let floor = Floor::new(&engine, raw, &keys);
            let mut out = floor.outputs();
            measured(n, || floor.run(black_box(&data), black_box(&mut out)));
            let rows = Rows::Dense { data: &data, rows: ROWS, width: raw };
            Floor::check(&out, &engine.run(&rows, &keys, Bins::<fn(usize) -> usize>::One).expect("rows fit"));
            "calls of 256 rows"
        }
        "layout" => {
            let (mut scratch, mut runs) = (SpanScratch::default(), Runs::default());
            measured(n, || {
                for &key in &keys {
                    scratch.layout(raw, (noise, spans), false, seed, key, &mut runs).expect("layout");
                    black_box(&runs);
                }
            });
            "x 512 compositions"
        }
        "compose" => {
            let (mut composer, mut out) = (Composer::default(), Vec::with_capacity(spans));
            measured(n, || {
                for &key in &keys {
                    for (total, purpose) in [(noise, Purpose::NoiseSpans), (raw - noise, Purpose::CleanSpans)] {
                        out.clear();
                        composer.compose(total, spans, &mut Stream::new(seed, key, purpose), &mut out);
                        black_box(&out);
                    }
                }
            });
            "x 512 compositions"
        }
        _ => panic!("parts: call, lean, floor, layout, compose"),
    };
    println!("{part}: {n} {units}");
}
