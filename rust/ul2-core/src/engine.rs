//! The whole pipeline behind one validated configuration: rows or a corpus's samples in,
//! named arrays out. Bindings build a [`Config`], call [`Engine::new`] and run it; every rule
//! (default format, budget and format agreeing, ids fitting the output, planning, packing)
//! lives here.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::denoise_rows;
use crate::denoise::sentinels::Sentinels;
use crate::denoise::{Mixture, RowConfig, example_bounds};
use crate::error::{Error, Result};
use crate::format::{Denoised, Family, Field, Format, Layout, Options, Selection, format, reformat};
use crate::index::SampleIndex;
use crate::pack::pack;
use crate::plan::{Budget, plan_denoiser};
use crate::source::{Corpus, Documents, Line, RowSource, Samples};
use crate::{OutToken, Token};

/// Width of the output token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    #[default]
    Int32,
    /// For ids past 2**31 - 1, or frameworks that index embeddings with int64.
    Int64,
}

impl Dtype {
    /// Largest id the outputs hold.
    #[must_use]
    pub const fn max_id(self) -> i64 {
        match self {
            Self::Int32 => i32::MAX as i64,
            Self::Int64 => i64::MAX,
        }
    }
}

/// What happens to a row longer than its denoiser's planned raw length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongRows {
    /// Its first raw-length tokens are used; the rest are counted in [`Stats`].
    #[default]
    Cut,
    /// It is an error naming the row.
    Error,
}

impl LongRows {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cut" => Ok(Self::Cut),
            "error" => Ok(Self::Error),
            _ => Err(Error::invalid("long_rows", format!("{s:?}"), "must be 'cut' or 'error'")),
        }
    }
}

/// What one call read, cut and padded: nothing the caller passed goes uncounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Examples denoised.
    pub rows: u64,
    /// Raw tokens they used.
    pub tokens: u64,
    /// Rows longer than their denoiser's raw length, and the tokens cut from them.
    pub cut_rows: u64,
    pub cut_tokens: u64,
    /// Output positions holding padding.
    pub padding: u64,
}

/// [`Stats`] summed over the calls of one transform, from any thread.
#[derive(Debug, Default)]
pub struct RunningStats([AtomicU64; 5]);

impl RunningStats {
    pub fn add(&self, s: &Stats) {
        for (total, v) in self.0.iter().zip([s.rows, s.tokens, s.cut_rows, s.cut_tokens, s.padding]) {
            total.fetch_add(v, Ordering::Relaxed);
        }
    }
    #[must_use]
    pub fn get(&self) -> Stats {
        let [rows, tokens, cut_rows, cut_tokens, padding] = self.0.each_ref().map(|v| v.load(Ordering::Relaxed));
        Stats { rows, tokens, cut_rows, cut_tokens, padding }
    }
}

/// Everything that fixes a batch transform's outputs; [`Engine::new`] validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mixture: Mixture,
    pub sentinels: Sentinels,
    pub budget: Budget,
    /// Appended to inputs and targets (`None`: no EOS).
    pub eos_id: Option<i64>,
    pub pad_id: i64,
    /// `None`: `hf` for an encoder-decoder budget, `decoder` for a decoder-only one.
    pub format: Option<Format>,
    pub seed: u64,
    /// Every draw is a function of `(seed, epoch, k, purpose)`; epoch 0 is the seed's own.
    pub epoch: u64,
    pub dtype: Dtype,
    /// Pack consecutive examples into each output row.
    pub pack: bool,
    /// Decoder formats: add the per-token `bidirectional_mask`.
    pub bidirectional_mask: bool,
    pub long_rows: LongRows,
    /// Only these outputs of the format are computed (`None`: all). Datasets and streams add
    /// `denoiser` whatever this says.
    pub fields: Option<Vec<String>>,
}

impl Config {
    /// `mixture`, `sentinels` and `budget` with the other options at their defaults, as the
    /// Python API has them: EOS 1, padding 0, the budget's default format, seed 0, epoch 0,
    /// int32, unpacked, long rows cut, every field.
    #[must_use]
    pub fn new(mixture: Mixture, sentinels: Sentinels, budget: Budget) -> Self {
        Self {
            mixture,
            sentinels,
            budget,
            eos_id: Some(1),
            pad_id: 0,
            format: None,
            seed: 0,
            epoch: 0,
            dtype: Dtype::Int32,
            pack: false,
            bidirectional_mask: false,
            long_rows: LongRows::Cut,
            fields: None,
        }
    }
}

/// How examples are grouped into output rows.
pub enum Bins<F> {
    /// One example per row.
    One,
    /// Next-fit packing; `F` gives example `i`'s raw length.
    Pack(F),
    /// Row starts computed elsewhere (a dataset's pack index).
    Given(Vec<usize>),
}

/// A grouping that never asks for lengths (a dataset's rows are packed when it is built).
type NoLengths = fn(usize) -> usize;

/// Named output arrays of the configured width.
#[derive(Debug, Clone, PartialEq)]
pub enum Fields {
    Int32(Vec<Field<i32>>),
    Int64(Vec<Field<i64>>),
}

/// Denoised rows of the configured width, before naming: what a lean shard stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenoisedRows {
    Int32(Denoised<i32>),
    Int64(Denoised<i64>),
}

/// One call's outputs, the fraction of their positions holding tokens, and its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub fields: Fields,
    pub fill_rate: f64,
    pub stats: Stats,
}

/// Rows cut to their denoiser's raw length (`long_rows="cut"`).
struct Cut<'a, S> {
    source: &'a S,
    /// Example `i`'s longest usable length: its denoiser's planned raw length.
    limits: Vec<usize>,
}

impl<T: Token, S: RowSource<T>> RowSource<T> for Cut<'_, S> {
    fn len(&self) -> usize {
        self.source.len()
    }
    fn row_len(&self, i: usize) -> usize {
        self.source.row_len(i).min(self.limits[i])
    }
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        let row = self.source.row(i, scratch)?;
        Ok(&row[..row.len().min(self.limits[i])])
    }
    fn locate(&self, i: usize, e: Error) -> Error {
        self.source.locate(i, e)
    }
}

/// A validated [`Config`] with its plan: what a collator or a dataset runs.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Config,
    format: Format,
    layout: Layout,
    options: Options,
    raw_lengths: Vec<usize>,
}

impl Engine {
    pub fn new(config: Config) -> Result<Self> {
        let decoder = matches!(config.budget, Budget::Decoder { .. });
        let format = config.format.unwrap_or(if decoder { Format::Decoder } else { Format::Hf });
        let family = format.family();
        if (family == Family::Decoder) != decoder {
            let (kind, budget) = if family == Family::Decoder {
                ("decoder-only", "sequence_length")
            } else {
                ("encoder-decoder", "inputs_length (and targets_length)")
            };
            return Err(Error::invalid("format", format!("{:?}", format.name()), format!("{kind} formats take {budget}")));
        }
        let (s, max) = (&config.sentinels, config.dtype.max_id());
        let fix = match config.dtype {
            Dtype::Int32 => "use dtype=numpy.int64",
            Dtype::Int64 => "give sentinel ids below 2**63",
        };
        s.check_fits(max, fix)?;
        if let Some(e) = config.eos_id {
            s.check_id("eos_id", e, max)?;
        }
        s.check_id("pad_id", config.pad_id, max)?;
        for (i, d) in config.mixture.denoisers().iter().enumerate() {
            for &t in &d.prefix {
                s.check_id("prefix", t, max).map_err(|e| e.in_mixture(i))?;
            }
            if let crate::denoise::Kind::FillInTheMiddle(p) = &d.kind {
                for (arg, id) in p.ids() {
                    s.check_id(arg, id, max).map_err(|e| e.in_mixture(i))?;
                }
            }
            if let crate::denoise::Kind::TextInfilling(p) = &d.kind {
                s.check_id("mask_id", p.mask_id, max).map_err(|e| e.in_mixture(i))?;
            }
        }
        let plans = config
            .mixture
            .denoisers()
            .iter()
            .enumerate()
            .map(|(i, d)| plan_denoiser(d, config.budget, config.eos_id.is_some(), s).map_err(|e| e.in_mixture(i)))
            .collect::<Result<Vec<_>>>()?;
        let widths = match config.budget {
            Budget::EncoderDecoder { inputs, targets } => {
                (inputs, targets.unwrap_or_else(|| plans.iter().map(|p| p.targets_length).max().unwrap_or(0)))
            }
            Budget::Decoder { sequence } => (sequence, 0),
        };
        let mut config = config;
        if family == Family::EncoderDecoder {
            config.mixture = config.mixture.for_encoder_decoder();
        }
        let mut options =
            Options { packed: config.pack, bidirectional_mask: config.bidirectional_mask, denoiser: false, fields: None };
        options.fields = config.fields.as_deref().map(|names| Selection::new(format, options, names)).transpose()?;
        Ok(Self {
            format,
            layout: Layout { family, widths },
            options,
            raw_lengths: plans.iter().map(|p| p.raw_length).collect(),
            config,
        })
    }

    /// This engine with a `denoiser` output naming each example's denoiser (datasets add it).
    #[must_use]
    pub fn with_denoiser_field(mut self) -> Self {
        self.options.denoiser = true;
        self
    }

    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }
    #[must_use]
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// Planned raw length of each denoiser.
    #[must_use]
    pub fn raw_lengths(&self) -> &[usize] {
        &self.raw_lengths
    }

    /// `(inputs_length, targets_length, sequence_length)` as the family has them, the
    /// targets width resolved by the plan.
    #[must_use]
    pub fn widths(&self) -> (Option<usize>, Option<usize>, Option<usize>) {
        let (w0, w1) = self.layout.widths;
        match self.layout.family {
            Family::EncoderDecoder => (Some(w0), Some(w1), None),
            Family::Decoder => (None, None, Some(w0)),
        }
    }

    /// The seed of this epoch's draws ([`crate::rng::epoch_seed`]).
    #[must_use]
    pub fn seed(&self) -> u64 {
        crate::rng::epoch_seed(self.config.seed, self.config.epoch)
    }

    #[must_use]
    pub fn row_config(&self) -> RowConfig<'_> {
        let c = &self.config;
        RowConfig {
            max_raw: &self.raw_lengths,
            mixture: &c.mixture,
            sentinels: &c.sentinels,
            eos_id: c.eos_id,
            seed: self.seed(),
        }
    }

    /// Upper bound of the tokens a call over `examples` writes (packed rows hold several).
    #[must_use]
    pub fn work(&self, examples: usize) -> usize {
        examples.saturating_mul(self.layout.widths.0 + self.layout.widths.1)
    }

    /// Denoises `source`'s examples (example `i` keyed `keys[i]`), grouped into rows by
    /// `bins`, into named arrays, on the current rayon pool.
    pub fn run<T: Token, S: RowSource<T>>(
        &self,
        source: &S,
        keys: &[u64],
        bins: Bins<impl Fn(usize) -> usize + Sync>,
    ) -> Result<Output> {
        if self.config.long_rows == LongRows::Error || keys.len() != source.len() {
            return self.run_counted(source, keys, bins, Stats::default());
        }
        // Only a row longer than the shortest raw length can be too long: its denoiser is
        // drawn to know, and a batch with nothing to cut runs on its own rows.
        let (cfg, shortest) = (self.row_config(), self.raw_lengths.iter().copied().min().unwrap_or(usize::MAX));
        let mut stats = Stats::default();
        let mut limits: Option<Vec<usize>> = None;
        for (i, &key) in keys.iter().enumerate() {
            let whole = source.row_len(i);
            if whole <= shortest {
                continue;
            }
            let limit = self.raw_lengths[cfg.mixture.choose(cfg.seed, key)];
            if whole > limit {
                stats.cut_rows += 1;
                stats.cut_tokens += (whole - limit) as u64;
                limits.get_or_insert_with(|| vec![usize::MAX; source.len()])[i] = limit;
            }
        }
        let Some(limits) = limits else { return self.run_counted(source, keys, bins, stats) };
        let cut = Cut { source, limits };
        let limits = &cut.limits;
        let bins: Bins<Box<dyn Fn(usize) -> usize + Sync + '_>> = match bins {
            Bins::One => Bins::One,
            Bins::Pack(lengths) => Bins::Pack(Box::new(move |i| lengths(i).min(limits[i]))),
            Bins::Given(b) => Bins::Given(b),
        };
        self.run_counted(&cut, keys, bins, stats)
    }

    pub(crate) fn run_counted<T: Token, S: RowSource<T>>(
        &self,
        source: &S,
        keys: &[u64],
        bins: Bins<impl Fn(usize) -> usize + Sync>,
        mut stats: Stats,
    ) -> Result<Output> {
        stats.rows = keys.len() as u64;
        stats.tokens = (0..source.len()).map(|i| source.row_len(i) as u64).sum();
        let (fields, fill_rate, padding) = match self.config.dtype {
            Dtype::Int32 => self.run_as::<T, i32, S>(source, keys, bins).map(|(f, fill, pad)| (Fields::Int32(f), fill, pad))?,
            Dtype::Int64 => self.run_as::<T, i64, S>(source, keys, bins).map(|(f, fill, pad)| (Fields::Int64(f), fill, pad))?,
        };
        stats.padding = padding;
        Ok(Output { fields, fill_rate, stats })
    }

    fn run_as<T: Token, O: OutToken, S: RowSource<T>>(
        &self,
        source: &S,
        keys: &[u64],
        bins: Bins<impl Fn(usize) -> usize + Sync>,
    ) -> Result<(Vec<Field<O>>, f64, u64)> {
        let d = self.denoise_as(source, keys, bins)?;
        let (fill, (used, total)) = (d.fill_rate(), d.positions());
        Ok((format(d, self.format, O::from_i64(self.config.pad_id), self.options)?, fill, total - used))
    }

    fn denoise_as<T: Token, O: OutToken, S: RowSource<T>>(
        &self,
        source: &S,
        keys: &[u64],
        bins: Bins<impl Fn(usize) -> usize + Sync>,
    ) -> Result<Denoised<O>> {
        let cfg = self.row_config();
        let bins = match bins {
            Bins::One => (0..=keys.len()).collect(),
            Bins::Pack(lengths) => pack(&cfg, lengths, keys, self.layout)?.0,
            Bins::Given(b) => b,
        };
        denoise_rows(&cfg, source, keys, &bins, self.layout, O::from_i64(self.config.pad_id))
    }

    /// A corpus over `tokens` whose `separator` is checked as outputs carry it (see
    /// [`Sentinels::check_id`]).
    pub fn corpus<'a, T: Token>(
        &self,
        tokens: Line<'a, T>,
        doc_offsets: Option<&'a [u64]>,
        separator: Option<i64>,
    ) -> Result<Corpus<'a, T>> {
        if let Some(s) = separator {
            self.config.sentinels.check_id("separator_id", s, self.config.dtype.max_id())?;
        }
        Corpus::new(tokens, doc_offsets, separator)
    }

    /// The sample index of `corpus` (and its pack index, when packing), checked so that
    /// every sample can be denoised.
    pub fn index<T: Token>(&self, corpus: &Corpus<'_, T>, documents: Documents) -> Result<DatasetIndex> {
        let index = SampleIndex::build(corpus, &self.config.mixture, &self.raw_lengths, documents, self.seed())?;
        if !self.options.packed {
            if documents == Documents::Respect {
                // Documents' short last samples may not fit their denoiser (e.g. fewer
                // tokens than num_spans needs): say so now, not at some later item.
                self.check_samples(&index)?;
            }
            return Ok(DatasetIndex { index, rows: None, fill_rate: 0.0 });
        }
        let keys: Vec<u64> = (0..index.len() as u64).collect();
        let span = |i: usize| {
            let (a, b) = index.span(i);
            (b - a) as usize
        };
        // Bounds are exact but for random_roll, so this is the fill rate (or a hair above).
        let (rows, used) = pack(&self.row_config(), span, &keys, self.layout)?;
        let (w0, w1) = self.layout.widths;
        let fill_rate = used as f64 / (rows.len().saturating_sub(1) * (w0 + w1)).max(1) as f64;
        Ok(DatasetIndex { index, rows: Some(rows), fill_rate })
    }

    /// Every sample can be denoised: its lengths are bounded without denoising it.
    fn check_samples(&self, index: &SampleIndex) -> Result<()> {
        use rayon::prelude::*;
        let cfg = self.row_config();
        // The first failing sample, whatever the scheduling.
        let failure = (0..index.len()).into_par_iter().find_map_first(|k| {
            let (a, b) = index.span(k);
            example_bounds(&cfg, (b - a) as usize, k as u64).err().map(|e| {
                Error::invalid(
                    "documents",
                    "'respect'",
                    format!("sample {k} ({} tokens, a document's end) cannot be denoised: {e}", b - a),
                )
            })
        });
        failure.map_or(Ok(()), Err)
    }

    /// Items `ids` of a dataset (samples, or packed rows of samples) as one batch.
    pub fn run_items<T: Token>(&self, corpus: &Corpus<'_, T>, index: &DatasetIndex, ids: &[u64]) -> Result<Output> {
        let (samples, bins) = Self::items(index, ids)?;
        // A sample is its denoiser's raw length or shorter: nothing to cut.
        let source = Samples { corpus: *corpus, index: &index.index, ids: &samples };
        self.run_counted(&source, &samples, bins, Stats::default())
    }

    /// Items `ids` of a dataset as [`run_items`](Self::run_items) denoises them, before
    /// naming: [`crate::format::reformat`] with this engine's format, padding and options
    /// gives `run_items`' fields.
    pub fn denoise_items<T: Token>(&self, corpus: &Corpus<'_, T>, index: &DatasetIndex, ids: &[u64]) -> Result<DenoisedRows> {
        let (samples, bins) = Self::items(index, ids)?;
        let source = Samples { corpus: *corpus, index: &index.index, ids: &samples };
        Ok(match self.config.dtype {
            Dtype::Int32 => DenoisedRows::Int32(self.denoise_as(&source, &samples, bins)?),
            Dtype::Int64 => DenoisedRows::Int64(self.denoise_as(&source, &samples, bins)?),
        })
    }

    /// `rows`' named arrays under this engine's format, padding and options.
    pub fn format_rows(&self, rows: DenoisedRows) -> Result<Fields> {
        let pad = self.config.pad_id;
        Ok(match rows {
            DenoisedRows::Int32(d) => Fields::Int32(reformat(d, self.format, i32::from_i64(pad), self.options)?),
            DenoisedRows::Int64(d) => Fields::Int64(reformat(d, self.format, pad, self.options)?),
        })
    }

    /// The samples items `ids` hold, and how they group into rows.
    fn items(index: &DatasetIndex, ids: &[u64]) -> Result<(Vec<u64>, Bins<NoLengths>)> {
        let n = index.len() as u64;
        if ids.is_empty() {
            return Err(Error::invalid("keys", "[]", "empty batch (0 keys)"));
        }
        if let Some(&bad) = ids.iter().find(|&&k| k >= n) {
            return Err(Error::OutOfRange { arg: "keys", index: bad, len: n, what: "rows" });
        }
        Ok(match &index.rows {
            None => (ids.to_vec(), Bins::One),
            Some(rows) => {
                let mut samples = Vec::new();
                let mut bins = vec![0];
                for &r in ids {
                    samples.extend(rows[r as usize] as u64..rows[r as usize + 1] as u64);
                    bins.push(samples.len());
                }
                (samples, Bins::Given(bins))
            }
        })
    }
}

/// Keys for calls that give none: consecutive example numbers, shared by the threads that
/// call one transform, never reused.
#[derive(Debug, Default)]
pub struct KeyCounter(AtomicU64);

impl KeyCounter {
    /// The next `n` keys.
    pub fn take(&self, n: usize) -> Result<std::ops::Range<u64>> {
        let start = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| k.checked_add(n as u64)).map_err(|k| {
            Error::invalid(
                "keys",
                "None",
                format!("the running key counter ({k}) would pass 2**64 - 1 with {n} rows; pass keys="),
            )
        })?;
        Ok(start..start + n as u64)
    }
    /// The key the next call starts at.
    #[must_use]
    pub fn next(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Continues from `key` (a transform restored from a pickle).
    pub fn set(&self, key: u64) {
        self.0.store(key, Ordering::Relaxed);
    }
}

/// A corpus's sample index, and its pack index when packing.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetIndex {
    pub index: SampleIndex,
    /// Packed: item `r` holds samples `rows[r]..rows[r + 1]`.
    rows: Option<Vec<usize>>,
    /// Packed: fraction of output positions holding tokens, over the whole dataset.
    pub fill_rate: f64,
}

impl DatasetIndex {
    /// Items: samples, or packed rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.as_ref().map_or(self.index.len(), |r| r.len().saturating_sub(1))
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The samples item `r` holds (`r..r + 1` unless packed); `r < len()`.
    #[must_use]
    pub fn samples(&self, r: usize) -> (usize, usize) {
        self.rows.as_ref().map_or((r, r + 1), |rows| (rows[r], rows[r + 1]))
    }
    /// Heap bytes of the sample index and pack index.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.index.heap_bytes() + self.rows.as_ref().map_or(0, |r| r.capacity() * size_of::<usize>())
    }
}
