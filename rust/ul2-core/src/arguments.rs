//! Named configuration read by key (pydantic-core's way), so each parameter is declared once,
//! where the core reads and checks it: a binding implements [`Arguments`] over its
//! language's mapping (a Python dict), and the core reads denoisers and the engine's
//! configuration from it. Adding a parameter is one line here and one field in the binding's
//! own declaration (the Python dataclass or `TypedDict` that documents it).

use crate::denoise::fim::{FimLoss, FimParams};
use crate::denoise::infilling::InfillParams;
use crate::denoise::sentinels::Sentinels;
use crate::denoise::spans::SpanParams;
use crate::denoise::{Denoiser, Kind, Mixture};
use crate::engine::{Config, Dtype, LongRows};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::plan::Budget;

/// A mapping of argument names to values. Each getter returns `None` for a missing key or a
/// null value (Python's `None`) and an error naming the key for a value of the wrong type.
pub trait Arguments {
    type Error: From<Error>;
    fn real(&self, name: &'static str) -> Result<Option<f64>, Self::Error>;
    /// An integer `>= 0`.
    fn count(&self, name: &'static str) -> Result<Option<usize>, Self::Error>;
    fn int(&self, name: &'static str) -> Result<Option<i64>, Self::Error>;
    /// An integer in `[0, 2**64)`.
    fn seed(&self, name: &'static str) -> Result<Option<u64>, Self::Error>;
    fn flag(&self, name: &'static str) -> Result<Option<bool>, Self::Error>;
    fn text(&self, name: &'static str) -> Result<Option<String>, Self::Error>;
    /// A sequence of names.
    fn names(&self, name: &'static str) -> Result<Option<Vec<String>>, Self::Error>;
    /// A sequence of token ids, each `>= 0`.
    fn ids(&self, name: &'static str) -> Result<Option<Vec<i64>>, Self::Error>;
    /// The error for a required argument that is null (`expected` says what it must be) or
    /// missing (a bug of the binding, which passes every key).
    fn missing(&self, name: &'static str, expected: &'static str) -> Self::Error;
}

/// `value` of a required argument, or [`Arguments::missing`].
fn required<A: Arguments, T>(a: &A, value: Option<T>, name: &'static str, expected: &'static str) -> Result<T, A::Error> {
    value.ok_or_else(|| a.missing(name, expected))
}

impl SpanParams {
    pub fn from_arguments<A: Arguments>(a: &A) -> Result<Self, A::Error> {
        Ok(Self::new(
            required(a, a.real("noise_density")?, "noise_density", "a number")?,
            required(a, a.real("mean_span_length")?, "mean_span_length", "a number")?,
            a.count("num_spans")?,
            required(a, a.flag("random_roll")?, "random_roll", "True or False")?,
        )?)
    }
}

impl FimParams {
    pub fn from_arguments<A: Arguments>(a: &A) -> Result<Self, A::Error> {
        Ok(Self::new(
            required(a, a.int("prefix_id")?, "prefix_id", "an int token id")?,
            required(a, a.int("middle_id")?, "middle_id", "an int token id")?,
            required(a, a.int("suffix_id")?, "suffix_id", "an int token id")?,
            required(a, a.real("spm_rate")?, "spm_rate", "a number")?,
            FimLoss::parse(&required(a, a.text("loss")?, "loss", "'all' or 'middle'")?)?,
        )?)
    }
}

impl InfillParams {
    pub fn from_arguments<A: Arguments>(a: &A) -> Result<Self, A::Error> {
        Ok(Self::new(
            required(a, a.real("noise_density")?, "noise_density", "a number")?,
            required(a, a.real("poisson_lambda")?, "poisson_lambda", "a number")?,
            required(a, a.int("mask_id")?, "mask_id", "an int")?,
        )?)
    }
}

impl Denoiser {
    /// A denoiser from its fields, `type` naming its kind (`SpanCorruption`, `PrefixLM`,
    /// `CausalLM`, `FillInTheMiddle`), as `Denoiser.to_dict` gives them.
    pub fn from_arguments<A: Arguments>(a: &A) -> Result<Self, A::Error> {
        let kind = match required(a, a.text("type")?, "type", "a denoiser's name")?.as_str() {
            "SpanCorruption" => Kind::SpanCorruption(SpanParams::from_arguments(a)?),
            "PrefixLM" => {
                Kind::PrefixLm { suffix_density: required(a, a.real("suffix_density")?, "suffix_density", "a number")? }
            }
            "CausalLM" => Kind::CausalLm,
            "FillInTheMiddle" => Kind::FillInTheMiddle(FimParams::from_arguments(a)?),
            "TextInfilling" => Kind::TextInfilling(InfillParams::from_arguments(a)?),
            other => {
                return Err(Error::invalid(
                    "type",
                    format!("{other:?}"),
                    "must be 'SpanCorruption', 'PrefixLM', 'CausalLM', 'FillInTheMiddle' or 'TextInfilling'",
                )
                .into());
            }
        };
        Ok(Self::new(kind, a.ids("prefix")?.unwrap_or_default())?)
    }
}

impl Mixture {
    /// Denoisers with their `rate`s, one mapping each.
    pub fn from_arguments<A: Arguments>(entries: &[A]) -> Result<Self, A::Error> {
        let entries = entries
            .iter()
            .map(|a| Ok((Denoiser::from_arguments(a)?, required(a, a.real("rate")?, "rate", "a number")?)))
            .collect::<Result<Vec<_>, A::Error>>()?;
        Ok(Self::new(entries)?)
    }
}

impl Dtype {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "int32" => Ok(Self::Int32),
            "int64" => Ok(Self::Int64),
            _ => Err(Error::invalid("dtype", format!("{s:?}"), "must be numpy.int32 or numpy.int64")),
        }
    }
}

impl Budget {
    /// The budget callers give: `inputs_length` (and optionally `targets_length`) for
    /// encoder-decoder rows, or `sequence_length` for decoder-only rows.
    pub fn new(inputs: Option<usize>, targets: Option<usize>, sequence: Option<usize>) -> Result<Self> {
        match (inputs, targets, sequence) {
            (Some(inputs), targets, None) => Ok(Self::EncoderDecoder { inputs, targets }),
            (None, None, Some(sequence)) => Ok(Self::Decoder { sequence }),
            (None, _, None) => Err(Error::invalid(
                "inputs_length",
                "None",
                "give inputs_length (encoder-decoder) or sequence_length (decoder-only)",
            )),
            _ => Err(Error::invalid(
                "sequence_length",
                sequence.map_or_else(|| "None".to_owned(), |s| s.to_string()),
                "give either sequence_length (decoder-only) or inputs_length/targets_length (encoder-decoder), not both",
            )),
        }
    }

    pub fn from_arguments<A: Arguments>(a: &A) -> Result<Self, A::Error> {
        Ok(Self::new(a.count("inputs_length")?, a.count("targets_length")?, a.count("sequence_length")?)?)
    }
}

impl Config {
    /// The engine's configuration: `mixture` and `sentinels` as the binding converted them,
    /// every other parameter read from `a`, which holds every key (the binding's
    /// declaration gives the defaults; `None` lengths, `eos_id` and `format` mean "not set").
    pub fn from_arguments<A: Arguments>(a: &A, mixture: Mixture, sentinels: Sentinels) -> Result<Self, A::Error> {
        Ok(Self {
            mixture,
            sentinels,
            budget: Budget::from_arguments(a)?,
            eos_id: a.int("eos_id")?,
            pad_id: required(a, a.int("pad_id")?, "pad_id", "an int")?,
            format: a.text("format")?.map(|f| Format::parse(&f)).transpose()?,
            seed: required(a, a.seed("seed")?, "seed", "an int")?,
            epoch: required(a, a.seed("epoch")?, "epoch", "an int")?,
            dtype: Dtype::parse(&required(a, a.text("dtype")?, "dtype", "numpy.int32 or numpy.int64")?)?,
            pack: required(a, a.flag("pack")?, "pack", "True or False")?,
            bidirectional_mask: required(a, a.flag("bidirectional_mask")?, "bidirectional_mask", "True or False")?,
            long_rows: LongRows::parse(&required(a, a.text("long_rows")?, "long_rows", "'cut' or 'error'")?)?,
            fields: a.names("fields")?,
        })
    }
}
