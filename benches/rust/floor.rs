//! The floor of ul2's scatter pattern: the `hf` arrays of a T5 span-corruption batch written
//! with the copies ul2 makes, each output byte written once, no randomness and no checks.
//! The runs come from ul2's own span layout, drawn when the floor is built; only
//! [`Floor::run`] is timed, so ul2 / floor is what the rest of ul2 costs (drawing, checks,
//! extra passes, allocation) and floor / memcpy what the pattern costs next to a plain copy.

use ul2_core::format::IGNORE_INDEX;
use ul2_core::{Engine, Field, Fields, Format, Kind, Output, Runs, SpanScratch};

/// The arrays ul2 returns for the `hf` format, in its order.
pub const FIELDS: [&str; 5] = ["input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask"];

/// One batch's copies: every row `raw` tokens, example `r` keyed `keys[r]`.
pub struct Floor {
    raw: usize,
    widths: (usize, usize),
    /// Every row's run lengths, clean and noise alternating from a clean run.
    runs: Vec<u32>,
    /// Row `r`'s runs are `runs[starts[r]..starts[r + 1]]`.
    starts: Vec<usize>,
    sentinels: Vec<i32>,
    eos: i32,
    pad: i32,
}

impl Floor {
    /// The floor of `engine` (one span-corruption denoiser without prompt or roll, EOS, int32
    /// `hf` outputs, unpacked) on rows of `raw` tokens.
    pub fn new(engine: &Engine, raw: usize, keys: &[u64]) -> Self {
        let c = engine.config();
        assert_eq!(engine.format(), Format::Hf);
        assert!(!c.pack && c.mixture.denoisers().len() == 1);
        let denoiser = &c.mixture.denoisers()[0];
        let Kind::SpanCorruption(params) = &denoiser.kind else { panic!("the floor is span corruption's") };
        assert!(!params.random_roll && denoiser.prefix.is_empty());
        let (noise, spans) = params.counts(raw).expect("counts");
        let spans = c.sentinels.admit(spans, 0).expect("sentinels for every span");
        let (mut scratch, mut drawn) = (SpanScratch::default(), Runs::default());
        let (mut runs, mut starts) = (Vec::new(), vec![0]);
        for &key in keys {
            scratch.layout(raw, (noise, spans), false, engine.seed(), key, &mut drawn).expect("layout");
            assert!(!drawn.first_is_noise && drawn.lengths.len() == 2 * spans);
            runs.extend_from_slice(&drawn.lengths);
            starts.push(runs.len());
        }
        Self {
            raw,
            widths: engine.layout().widths,
            runs,
            starts,
            sentinels: (0..spans).map(|k| c.sentinels.id(k) as i32).collect(),
            eos: c.eos_id.expect("EOS") as i32,
            pad: c.pad_id as i32,
        }
    }

    /// Buffers for [`Floor::run`], in [`FIELDS`] order.
    pub fn outputs(&self) -> [Vec<i32>; 5] {
        let rows = self.starts.len() - 1;
        let (w0, w1) = self.widths;
        [w0, w0, w1, w1, w1].map(|w| vec![0; rows * w])
    }

    /// Writes the batch of `tokens` (`rows × raw`) into `out`.
    pub fn run(&self, tokens: &[i32], out: &mut [Vec<i32>; 5]) {
        let (w0, w1) = self.widths;
        let [input_ids, attention_mask, labels, decoder_input_ids, decoder_attention_mask] = out;
        let rows = tokens
            .chunks_exact(self.raw)
            .zip(self.starts.windows(2))
            .zip(input_ids.chunks_exact_mut(w0).zip(attention_mask.chunks_exact_mut(w0)))
            .zip(labels.chunks_exact_mut(w1).zip(decoder_input_ids.chunks_exact_mut(w1)))
            .zip(decoder_attention_mask.chunks_exact_mut(w1));
        for ((((row, bounds), (inputs, seen)), (targets, shifted)), target_seen) in rows {
            let (mut at, mut i, mut t) = (0, 0, 0);
            for (pair, &s) in self.runs[bounds[0]..bounds[1]].chunks_exact(2).zip(&self.sentinels) {
                let (clean, noise) = (pair[0] as usize, pair[1] as usize);
                inputs[i..i + clean].copy_from_slice(&row[at..at + clean]);
                inputs[i + clean] = s;
                targets[t] = s;
                targets[t + 1..t + 1 + noise].copy_from_slice(&row[at + clean..at + clean + noise]);
                (at, i, t) = (at + clean + noise, i + clean + 1, t + noise + 1);
            }
            inputs[i] = self.eos;
            inputs[i + 1..].fill(self.pad);
            targets[t] = self.eos;
            targets[t + 1..].fill(IGNORE_INDEX as i32);
            let (li, lt) = (i + 1, t + 1);
            // HF's shift_tokens_right: the start token (the pad id), then the targets.
            let n = lt.min(w1 - 1);
            shifted[0] = self.pad;
            shifted[1..=n].copy_from_slice(&targets[..n]);
            shifted[n + 1..].fill(self.pad);
            seen[..li].fill(1);
            seen[li..].fill(0);
            target_seen[..lt].fill(1);
            target_seen[lt..].fill(0);
        }
    }

    /// Panics unless `out` (from [`Floor::run`]) is byte for byte ul2's `output`.
    pub fn check(out: &[Vec<i32>; 5], output: &Output) {
        let Fields::Int32(fields) = &output.fields else { panic!("int32 outputs") };
        let names: Vec<_> = fields.iter().map(|f: &Field<i32>| f.name).collect();
        assert_eq!(names, FIELDS);
        for ((f, mine), name) in fields.iter().zip(out).zip(FIELDS) {
            assert!(f.data == *mine, "the floor's {name} differs from ul2's");
        }
    }
}
