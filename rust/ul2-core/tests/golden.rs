//! Golden vectors (SPEC §6): the keyed RNG streams and the keyed outputs built on them are
//! part of ul2's output format. `tests/data/golden.json` pins them; `tests/test_golden.py`
//! checks the same file through the Python bindings.
//!
//! `UL2_BLESS=1 cargo test -p ul2-core --test golden` (re)writes the file from the current
//! implementation. Do that only for a deliberate, announced change of the streams: every
//! example for a given seed changes with it.
//!
//! u64 values above 2^53 (seeds, raw stream words) are stored as decimal strings so that
//! JSON readers that use doubles (JavaScript, some Python tools) do not round them.

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::{Value, json};
use ul2_core::rng::{Purpose, Stream};
use ul2_core::{
    Denoiser, Kind, Mixture, Overflow, RowConfig, Rows, Sentinels, SpanParams, denoise_batch, noise_mask, prefix_split,
};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/golden.json");

const SEEDS: [u64; 3] = [0, 1, (1 << 63) + 5];
const KEYS: [u64; 3] = [0, 1, 12345];
const PURPOSES: [(&str, Purpose); 5] = [
    ("noise_spans", Purpose::NoiseSpans),
    ("clean_spans", Purpose::CleanSpans),
    ("roll", Purpose::Roll),
    ("prefix", Purpose::Prefix),
    ("denoiser", Purpose::Denoiser),
];

/// `(length, noise_density, mean_span_length, random_roll)`.
const MASKS: [(usize, f64, f64, bool); 3] = [(568, 0.15, 3.0, false), (64, 0.5, 3.0, true), (100, 0.5, 8.0, false)];
/// `(length, suffix_density)`.
const SPLITS: [(usize, f64); 2] = [(511, 0.5), (511, 0.25)];
const CHOICE_DENOISERS: usize = 7;
const CHOICE_KEYS: u64 = 32;

/// A u64 as JSON: a number up to 2^53, a decimal string above.
fn u64_json(v: u64) -> Value {
    if v <= 1 << 53 { json!(v) } else { json!(v.to_string()) }
}

fn u64_from(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().expect("u64 string"),
        v => v.as_u64().expect("u64 number"),
    }
}

fn pairs() -> impl Iterator<Item = (u64, u64)> {
    SEEDS.iter().flat_map(|&s| KEYS.iter().map(move |&k| (s, k)))
}

fn streams() -> Value {
    let mut out = Vec::new();
    for (seed, key) in pairs() {
        for (name, purpose) in PURPOSES {
            let mut s = Stream::new(seed, key, purpose);
            let words: Vec<Value> = (0..4).map(|_| u64_json(s.next_u64())).collect();
            out.push(json!({"seed": u64_json(seed), "key": u64_json(key), "purpose": name, "u64": words}));
        }
    }
    Value::Array(out)
}

/// `Stream::below` (Lemire's method) and `unit_f64` on fresh `prefix` streams, including
/// bounds where rejection is likely (just above 2^63) and the largest bound.
fn draws() -> Value {
    let bounds: [u64; 7] = [1, 2, 3, 7, 1000, (1 << 63) + 1, u64::MAX];
    let mut out = Vec::new();
    for (seed, key) in pairs() {
        let mut below = Vec::new();
        for s in bounds {
            let mut st = Stream::new(seed, key, Purpose::Prefix);
            let v: Vec<Value> = (0..4).map(|_| u64_json(st.below(s))).collect();
            below.push(json!({"bound": u64_json(s), "values": v}));
        }
        // unit_f64 is m·2^-53 with m < 2^53; m is stored (exact in JSON, whatever the float parser).
        let mut st = Stream::new(seed, key, Purpose::Denoiser);
        let unit: Vec<u64> = (0..4).map(|_| unit_mantissa(st.unit_f64())).collect();
        out.push(json!({"seed": u64_json(seed), "key": u64_json(key), "below": below, "unit_f64_times_2_53": unit}));
    }
    Value::Array(out)
}

/// `x·2^53`, which must be an integer for a 53-bit uniform float.
fn unit_mantissa(x: f64) -> u64 {
    let m = x * (1u64 << 53) as f64;
    assert!((0.0..1.0).contains(&x) && m.fract() == 0.0, "unit_f64 {x} is not a multiple of 2^-53 in [0, 1)");
    m as u64
}

fn masks() -> Value {
    let mut out = Vec::new();
    for (length, r, mu, roll) in MASKS {
        let params = SpanParams::new(r, mu, None, roll).unwrap();
        for (seed, key) in pairs() {
            let mask = noise_mask(length, &params, seed, key).unwrap();
            let noise: Vec<usize> = (0..length).filter(|&i| mask[i]).collect();
            out.push(json!({
                "length": length, "noise_density": r, "mean_span_length": mu, "random_roll": roll,
                "seed": u64_json(seed), "key": u64_json(key), "noise": noise,
            }));
        }
    }
    Value::Array(out)
}

fn splits() -> Value {
    let mut out = Vec::new();
    for (length, r) in SPLITS {
        for (seed, key) in pairs() {
            let k = prefix_split(length, r, seed, key).unwrap();
            out.push(json!({"length": length, "suffix_density": r, "seed": u64_json(seed), "key": u64_json(key), "split": k}));
        }
    }
    Value::Array(out)
}

/// A uniform mixture of 7 causal denoisers whose prompts are `[100 + i]`, so the Python side
/// can read the choice off `input_ids[:, 0]`.
fn choice_mixture() -> Mixture {
    let entries = (0..CHOICE_DENOISERS as i64).map(|i| (Denoiser::new(Kind::CausalLm, vec![100 + i]).unwrap(), 1.0)).collect();
    Mixture::new(entries).unwrap()
}

fn choices() -> Value {
    let m = choice_mixture();
    let out: Vec<Value> = SEEDS
        .iter()
        .map(|&seed| {
            let chosen: Vec<usize> = (0..CHOICE_KEYS).map(|k| m.choose(seed, k)).collect();
            json!({"seed": u64_json(seed), "denoisers": CHOICE_DENOISERS, "prompt_base": 100,
                   "keys": (0..CHOICE_KEYS).collect::<Vec<_>>(), "choices": chosen})
        })
        .collect();
    Value::Array(out)
}

/// Whole denoised rows of a small mixed mixture through the batch path (Python: `Collator`).
/// Each denoiser is described in the JSON so the Python side can rebuild the mixture.
fn rows() -> Value {
    let span = |mu, r, n, roll| Kind::SpanCorruption(SpanParams::new(r, mu, n, roll).unwrap());
    let described = [
        (
            span(3.0, 0.15, None, false),
            vec![3],
            1.0,
            json!({"type": "SpanCorruption", "mean_span_length": 3.0, "noise_density": 0.15, "num_spans": null, "random_roll": false, "prefix": [3]}),
        ),
        (
            span(8.0, 0.5, None, true),
            vec![4],
            1.0,
            json!({"type": "SpanCorruption", "mean_span_length": 8.0, "noise_density": 0.5, "num_spans": null, "random_roll": true, "prefix": [4]}),
        ),
        (
            span(2.0, 0.3, None, false),
            vec![5],
            1.0,
            json!({"type": "SpanCorruption", "mean_span_length": 2.0, "noise_density": 0.3, "num_spans": null, "random_roll": false, "prefix": [5]}),
        ),
        (
            Kind::PrefixLm { suffix_density: 0.25 },
            vec![6],
            1.0,
            json!({"type": "PrefixLM", "suffix_density": 0.25, "prefix": [6]}),
        ),
        (Kind::CausalLm, vec![7], 1.0, json!({"type": "CausalLM", "prefix": [7]})),
    ];
    let mut desc = Vec::new();
    let mut entries = Vec::new();
    for (kind, prefix, rate, d) in described {
        entries.push((Denoiser::new(kind, prefix).unwrap(), rate));
        desc.push(json!({"rate": rate, "denoiser": d}));
    }
    let mixture = Mixture::new(entries).unwrap();
    let (vocab, count, eos, pad, inputs_width, targets_width) = (32_128i64, 100usize, 1i64, 0i32, 64usize, 64usize);
    let sentinels = Sentinels::t5(vocab, count, Overflow::Error, true).unwrap();
    let keys: Vec<u64> = (0..12).chain([12345, 1 << 30]).collect();
    let tokens: Vec<Vec<i32>> = keys
        .iter()
        .enumerate()
        .map(|(i, _)| (0..40 - 2 * (i % 5)).map(|j| 10 + ((i * 37 + j * 11) % 1000) as i32).collect())
        .collect();
    let mut cases = Vec::new();
    for seed in [0u64, (1 << 63) + 5] {
        let cfg = RowConfig { max_raw: &[], mixture: &mixture, sentinels: &sentinels, eos_id: Some(eos), seed };
        let ragged = Rows::Ragged(tokens.iter().map(Vec::as_slice).collect());
        let out = denoise_batch(&cfg, &ragged, &keys, inputs_width, targets_width, pad).unwrap();
        let rows: Vec<Value> = (0..keys.len())
            .map(|i| {
                let l = out.segments[i];
                let inputs = &out.first[i * inputs_width..i * inputs_width + l.inputs as usize];
                let targets = &out.second[i * targets_width..i * targets_width + l.targets as usize];
                json!({"key": u64_json(keys[i]), "denoiser": l.denoiser, "inputs": inputs, "targets": targets})
            })
            .collect();
        cases.push(json!({"seed": u64_json(seed), "rows": rows}));
    }
    json!({
        "mixture": desc, "vocab_size": vocab, "sentinel_count": count, "eos_id": eos, "pad_id": pad,
        "inputs_length": inputs_width, "targets_length": targets_width, "tokens": tokens, "cases": cases,
    })
}

fn build() -> Value {
    json!({
        "about": "ul2 golden vectors: keyed RNG streams and keyed outputs. Generated by \
                  rust/ul2-core/tests/golden.rs with UL2_BLESS=1; read by that test and tests/test_golden.py. \
                  u64 values above 2^53 are decimal strings.",
        "streams": streams(),
        "draws": draws(),
        "noise_mask": masks(),
        "prefix_split": splits(),
        "mixture_choice": choices(),
        "denoise_rows": rows(),
    })
}

/// Indented JSON that keeps arrays of numbers and strings on one line (diffs stay readable).
fn write_json(v: &Value, depth: usize, out: &mut String) {
    let pad = |d: usize| "  ".repeat(d);
    match v {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (k, x)) in map.iter().enumerate() {
                let _ = write!(out, "{}{}: ", pad(depth + 1), Value::String(k.clone()));
                write_json(x, depth + 1, out);
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{}}}", pad(depth));
        }
        Value::Array(items) if items.iter().any(|x| x.is_object() || x.is_array()) => {
            out.push_str("[\n");
            for (i, x) in items.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write_json(x, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{}]", pad(depth));
        }
        scalar_or_flat => out.push_str(&scalar_or_flat.to_string()),
    }
}

/// The pinned file (or, with `UL2_BLESS=1`, the freshly written one).
fn pinned() -> &'static Value {
    static PINNED: OnceLock<Value> = OnceLock::new();
    PINNED.get_or_init(|| {
        if std::env::var("UL2_BLESS").is_ok_and(|v| v == "1") {
            let v = build();
            let mut text = String::new();
            write_json(&v, 0, &mut text);
            text.push('\n');
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v, "golden.json does not read back");
            std::fs::create_dir_all(std::path::Path::new(PATH).parent().unwrap()).unwrap();
            std::fs::write(PATH, text).unwrap();
            eprintln!("wrote {PATH}");
            return v;
        }
        let text = std::fs::read_to_string(PATH)
            .unwrap_or_else(|e| panic!("{PATH}: {e}; generate it with UL2_BLESS=1 cargo test -p ul2-core --test golden"));
        serde_json::from_str(&text).expect("golden.json is valid JSON")
    })
}

fn section(name: &str) -> &'static Vec<Value> {
    pinned()[name].as_array().unwrap_or_else(|| panic!("golden.json has no array {name:?}"))
}

fn changed(what: &str) -> String {
    format!(
        "{what} differs from tests/data/golden.json: the keyed streams changed, so every example for a given \
         seed changes. If that is deliberate, announce it and rerun with UL2_BLESS=1."
    )
}

#[test]
fn stream_words_are_pinned() {
    let cases = section("streams");
    assert_eq!(cases.len(), SEEDS.len() * KEYS.len() * PURPOSES.len());
    for case in cases {
        let (seed, key) = (u64_from(&case["seed"]), u64_from(&case["key"]));
        let purpose = PURPOSES.iter().find(|p| p.0 == case["purpose"]).expect("known purpose").1;
        let want: Vec<u64> = case["u64"].as_array().unwrap().iter().map(u64_from).collect();
        let mut s = Stream::new(seed, key, purpose);
        let got: Vec<u64> = (0..want.len()).map(|_| s.next_u64()).collect();
        assert_eq!(got, want, "{} (seed={seed}, key={key}, purpose={})", changed("Stream::new"), case["purpose"]);
    }
}

#[test]
fn integer_and_float_draws_are_pinned() {
    let cases = section("draws");
    assert_eq!(cases.len(), SEEDS.len() * KEYS.len());
    for case in cases {
        let (seed, key) = (u64_from(&case["seed"]), u64_from(&case["key"]));
        for b in case["below"].as_array().unwrap() {
            let bound = u64_from(&b["bound"]);
            let want: Vec<u64> = b["values"].as_array().unwrap().iter().map(u64_from).collect();
            let mut s = Stream::new(seed, key, Purpose::Prefix);
            let got: Vec<u64> = (0..want.len()).map(|_| s.below(bound)).collect();
            assert!(got.iter().all(|&v| v < bound));
            assert_eq!(got, want, "{} (seed={seed}, key={key}, bound={bound})", changed("Stream::below"));
        }
        let want: Vec<u64> = case["unit_f64_times_2_53"].as_array().unwrap().iter().map(u64_from).collect();
        let mut s = Stream::new(seed, key, Purpose::Denoiser);
        let got: Vec<u64> = (0..want.len()).map(|_| unit_mantissa(s.unit_f64())).collect();
        assert_eq!(got, want, "{} (seed={seed}, key={key})", changed("Stream::unit_f64"));
    }
}

#[test]
fn noise_masks_are_pinned() {
    let cases = section("noise_mask");
    assert_eq!(cases.len(), MASKS.len() * SEEDS.len() * KEYS.len());
    for case in cases {
        let length = case["length"].as_u64().unwrap() as usize;
        let (r, mu) = (case["noise_density"].as_f64().unwrap(), case["mean_span_length"].as_f64().unwrap());
        let roll = case["random_roll"].as_bool().unwrap();
        let (seed, key) = (u64_from(&case["seed"]), u64_from(&case["key"]));
        let want: Vec<usize> = case["noise"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let mask = noise_mask(length, &SpanParams::new(r, mu, None, roll).unwrap(), seed, key).unwrap();
        let got: Vec<usize> = (0..length).filter(|&i| mask[i]).collect();
        assert_eq!(got, want, "{} (L={length}, r={r}, mu={mu}, roll={roll}, seed={seed}, key={key})", changed("noise_mask"));
    }
}

#[test]
fn prefix_splits_are_pinned() {
    let cases = section("prefix_split");
    assert_eq!(cases.len(), SPLITS.len() * SEEDS.len() * KEYS.len());
    for case in cases {
        let length = case["length"].as_u64().unwrap() as usize;
        let r = case["suffix_density"].as_f64().unwrap();
        let (seed, key) = (u64_from(&case["seed"]), u64_from(&case["key"]));
        let got = prefix_split(length, r, seed, key).unwrap();
        assert_eq!(
            got as u64,
            case["split"].as_u64().unwrap(),
            "{} (L={length}, r={r}, seed={seed}, key={key})",
            changed("prefix_split")
        );
    }
}

#[test]
fn mixture_choices_are_pinned() {
    let cases = section("mixture_choice");
    assert_eq!(cases.len(), SEEDS.len());
    let m = choice_mixture();
    for case in cases {
        let seed = u64_from(&case["seed"]);
        let keys: Vec<u64> = case["keys"].as_array().unwrap().iter().map(u64_from).collect();
        let want: Vec<usize> = case["choices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let got: Vec<usize> = keys.iter().map(|&k| m.choose(seed, k)).collect();
        assert_eq!(got, want, "{} (seed={seed})", changed("Mixture::choose"));
    }
}

#[test]
fn denoised_rows_are_pinned() {
    let want = &pinned()["denoise_rows"];
    let got = rows();
    assert_eq!(got["mixture"], want["mixture"], "the pinned mixture description changed");
    assert_eq!(got["tokens"], want["tokens"], "the pinned rows changed");
    for (g, w) in got["cases"].as_array().unwrap().iter().zip(want["cases"].as_array().unwrap()) {
        for (gr, wr) in g["rows"].as_array().unwrap().iter().zip(w["rows"].as_array().unwrap()) {
            assert_eq!(gr, wr, "{} (seed={})", changed("denoise_batch"), w["seed"]);
        }
    }
    assert_eq!(&got, want);
}

/// The file as a whole is what `build()` writes: no section dropped or added silently.
#[test]
fn file_is_complete() {
    assert_eq!(pinned(), &build(), "{}", changed("golden.json as a whole"));
}
