//! The formatter layer: denoised token buffers and their segments become the named arrays
//! of one ecosystem (SPEC §5). Every derived array is computed from the segment lengths,
//! never by counting non-zero ids, so an id 0 inside a sequence is kept.

use crate::error::{Error, Result};

/// Label value outside the targets in Hugging Face formats (ignored by the loss).
pub const IGNORE_INDEX: i64 = -100;

/// Encoder-decoder rows (inputs and targets buffers) or decoder-only rows (one sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    EncoderDecoder,
    Decoder,
}

/// Shape of the output rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub family: Family,
    /// Encoder-decoder `(inputs, targets)`; decoder `(sequence, 0)`.
    pub widths: (usize, usize),
}

/// Output naming and layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Hugging Face encoder-decoder: `input_ids`, `attention_mask`, `labels`, …
    Hf,
    /// seqio / t5x encoder-decoder: `encoder_input_tokens`, `decoder_target_tokens`, …
    Seqio,
    /// Hugging Face decoder-only prefix LM: `input_ids`, `labels`, `prefix_lengths`, …
    Decoder,
    /// seqio decoder-only prefix LM: `decoder_target_tokens`, `decoder_causal_attention`, …
    SeqioDecoder,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "hf" => Ok(Self::Hf),
            "seqio" => Ok(Self::Seqio),
            "decoder" => Ok(Self::Decoder),
            "seqio_decoder" => Ok(Self::SeqioDecoder),
            _ => Err(Error::invalid("format", format!("{s:?}"), "must be 'hf', 'seqio', 'decoder' or 'seqio_decoder'")),
        }
    }

    /// The name `parse` reads.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hf => "hf",
            Self::Seqio => "seqio",
            Self::Decoder => "decoder",
            Self::SeqioDecoder => "seqio_decoder",
        }
    }

    #[must_use]
    pub const fn family(self) -> Family {
        match self {
            Self::Hf | Self::Seqio => Family::EncoderDecoder,
            Self::Decoder | Self::SeqioDecoder => Family::Decoder,
        }
    }
}

/// One named output array: `shape` is `[rows, width]` or `[n]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<O> {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<O>,
}

/// One example inside an output row: its denoiser and how many input and target tokens it
/// filled (prompt and EOS included). In decoder rows the targets follow the inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub denoiser: u32,
    pub inputs: u32,
    pub targets: u32,
}

/// Denoised rows before naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denoised<O> {
    pub rows: usize,
    pub family: Family,
    /// Encoder-decoder: `(inputs, targets)` widths. Decoder: `(sequence, 0)`.
    pub widths: (usize, usize),
    /// Encoder tokens, or the decoder sequence; `[rows, widths.0]`, padded.
    pub first: Vec<O>,
    /// Decoder targets (encoder-decoder only); `[rows, widths.1]`, padded.
    pub second: Vec<O>,
    /// Segments of every row, row after row.
    pub segments: Vec<Segment>,
    /// Row `r` holds `segments[row_starts[r]..row_starts[r + 1]]`.
    pub row_starts: Vec<usize>,
}

impl<O> Denoised<O> {
    fn row_segments(&self, r: usize) -> &[Segment] {
        &self.segments[self.row_starts[r]..self.row_starts[r + 1]]
    }

    /// Output positions holding tokens, and all of them (the rest is padding).
    #[must_use]
    pub fn positions(&self) -> (u64, u64) {
        let used: u64 = self.segments.iter().map(|s| u64::from(s.inputs) + u64::from(s.targets)).sum();
        (used, (self.rows * (self.widths.0 + self.widths.1)) as u64)
    }

    /// Fraction of output positions holding tokens (not padding).
    #[must_use]
    pub fn fill_rate(&self) -> f64 {
        let (used, total) = self.positions();
        if total == 0 { 0.0 } else { used as f64 / total as f64 }
    }
}

/// What a format emits besides its fixed names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Rows hold several examples: add segment ids, positions and `cu_seqlens`.
    pub packed: bool,
    /// Decoder formats: add the per-token `bidirectional_mask` (always present when packed).
    pub bidirectional_mask: bool,
    /// Add `denoiser`: `[rows]` (or `[rows, width]` per token, −1 on padding, when packed).
    /// Bookkeeping of datasets and streams: emitted whatever `fields` says.
    pub denoiser: bool,
    /// Only these of [`Format::names`] are computed (`None`: all of them).
    pub fields: Option<Selection>,
}

/// Every name any format emits: a selection of them is a bit set, so [`Options`] stays `Copy`.
const NAMES: [&str; 21] = [
    "input_ids",
    "attention_mask",
    "labels",
    "decoder_input_ids",
    "decoder_attention_mask",
    "segment_ids",
    "positions",
    "decoder_segment_ids",
    "decoder_positions",
    "cu_seqlens",
    "decoder_cu_seqlens",
    "encoder_input_tokens",
    "decoder_target_tokens",
    "decoder_input_tokens",
    "decoder_loss_weights",
    "encoder_segment_ids",
    "encoder_positions",
    "prefix_lengths",
    "bidirectional_mask",
    "decoder_causal_attention",
    "denoiser",
];

/// Some of a format's output names (`fields=`): the formatter computes only these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection(u32);

impl Selection {
    /// `names` checked against what `format` emits under `opts`; an unknown or missing name
    /// is an error listing the valid ones.
    pub fn new<S: AsRef<str>>(format: Format, opts: Options, names: &[S]) -> Result<Self> {
        let valid = format.names(opts);
        let listing = || {
            let packed = if opts.packed { " with pack=True" } else { "" };
            format!("format {:?}{packed} has the fields {valid:?}", format.name())
        };
        if names.is_empty() {
            return Err(Error::invalid("fields", "()", format!("name at least one field; {}", listing())));
        }
        let mut bits = 0;
        for name in names {
            let name = name.as_ref();
            if !valid.contains(&name) {
                return Err(Error::invalid("fields", format!("{name:?}"), format!("not an output: {}", listing())));
            }
            bits |= Self::bit(name);
        }
        Ok(Self(bits))
    }

    fn bit(name: &str) -> u32 {
        NAMES.iter().position(|&n| n == name).map_or(0, |i| 1 << i)
    }

    #[must_use]
    pub fn contains(self, name: &str) -> bool {
        self.0 & Self::bit(name) != 0
    }
}

impl Format {
    /// The arrays [`format`] emits under `opts` (all of them, whatever `opts.fields`), in
    /// their order.
    #[must_use]
    pub fn names(self, opts: Options) -> Vec<&'static str> {
        let packed = opts.packed;
        let mut names: Vec<&'static str> = match self {
            Self::Hf => {
                let mut n = vec!["input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask"];
                if packed {
                    n.extend([
                        "segment_ids",
                        "positions",
                        "decoder_segment_ids",
                        "decoder_positions",
                        "cu_seqlens",
                        "decoder_cu_seqlens",
                    ]);
                }
                n
            }
            Self::Seqio => {
                let mut n = vec!["encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"];
                if packed {
                    n.extend(["encoder_segment_ids", "encoder_positions", "decoder_segment_ids", "decoder_positions"]);
                }
                n
            }
            Self::Decoder => {
                let mut n = vec!["input_ids", "attention_mask", "labels"];
                if !packed {
                    n.push("prefix_lengths");
                }
                if opts.bidirectional_mask || packed {
                    n.push("bidirectional_mask");
                }
                if packed {
                    n.extend(["segment_ids", "positions", "cu_seqlens"]);
                }
                n
            }
            Self::SeqioDecoder => {
                let mut n =
                    vec!["decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights", "decoder_causal_attention"];
                if packed {
                    n.extend(["decoder_segment_ids", "decoder_positions"]);
                }
                n
            }
        };
        if opts.denoiser {
            names.push("denoiser");
        }
        names
    }
}

mod fields;
pub use fields::format;
mod denoised;
pub use denoised::{SEGMENT_COLUMNS, reformat};
