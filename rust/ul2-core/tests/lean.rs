//! Lean shards (issue #16): the rows [`Engine::denoise_items`] gives, stored as their buffers
//! and segment table and read back through [`Denoised::from_table`], name to the very fields
//! [`Engine::run_items`] gives, for every format, packed or not, at both dtypes.

use ul2_core::{
    Budget, Config, Denoised, DenoisedRows, Denoiser, Documents, Dtype, Engine, Fields, Format, Kind, Line, Mixture, Overflow,
    Segment, Sentinels, SpanParams,
};

fn mixture() -> Mixture {
    let span = |r, mu| Kind::SpanCorruption(SpanParams::new(r, mu, None, false).unwrap());
    Mixture::new(vec![
        (Denoiser::new(span(0.15, 3.0), vec![]).unwrap(), 1.0),
        (Denoiser::new(span(0.5, 8.0), vec![7]).unwrap(), 1.0),
        (Denoiser::new(Kind::CausalLm, vec![8, 9]).unwrap(), 1.0),
    ])
    .unwrap()
}

/// `d` through the arrays a shard stores, as integers.
fn stored<O: ul2_core::OutToken>(d: &Denoised<O>) -> Denoised<O> {
    let table: Vec<i64> = Segment::table(&d.segments).into_iter().map(i64::from).collect();
    let starts: Vec<i64> = d.row_starts.iter().map(|&s| s as i64).collect();
    let layout = ul2_core::Layout { family: d.family, widths: d.widths };
    Denoised::from_table(layout, d.first.clone(), d.second.clone(), &table, &starts).unwrap()
}

#[test]
fn stored_rows_name_to_the_fields_of_run_items() {
    let tokens: Vec<i32> = (0..4000).map(|i| 10 + (i * 7919 % 800)).collect();
    let sentinels = Sentinels::t5(1000, 100, Overflow::Error, true).unwrap();
    let budgets = [
        (Budget::EncoderDecoder { inputs: 40, targets: None }, [Format::Hf, Format::Seqio]),
        (Budget::Decoder { sequence: 48 }, [Format::Decoder, Format::SeqioDecoder]),
    ];
    for (budget, formats) in budgets {
        for format in formats {
            for (pack, dtype, bidi) in [(false, Dtype::Int32, false), (true, Dtype::Int64, true), (false, Dtype::Int64, true)] {
                let mut config = Config::new(mixture(), sentinels.clone(), budget);
                (config.format, config.pack, config.dtype, config.bidirectional_mask) = (Some(format), pack, dtype, bidi);
                let engine = Engine::new(config).unwrap().with_denoiser_field();
                let corpus = engine.corpus(Line::Slice(&tokens), None, None).unwrap();
                let index = engine.index(&corpus, Documents::Concat).unwrap();
                let ids: Vec<u64> = (0..index.len() as u64).step_by(3).collect();
                let full = engine.run_items(&corpus, &index, &ids).unwrap().fields;
                let rows = match engine.denoise_items(&corpus, &index, &ids).unwrap() {
                    DenoisedRows::Int32(d) => DenoisedRows::Int32(stored(&d)),
                    DenoisedRows::Int64(d) => DenoisedRows::Int64(stored(&d)),
                };
                assert!(matches!(
                    (&full, &rows),
                    (Fields::Int32(_), DenoisedRows::Int32(_)) | (Fields::Int64(_), DenoisedRows::Int64(_))
                ));
                assert_eq!(engine.format_rows(rows).unwrap(), full, "{format:?} pack={pack} {dtype:?}");
            }
        }
    }
}
