//! The batch transform behind `ul2.Collator`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};

use numpy::{IntoPyArray, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use ul2_core::{Budget, Denoiser, Family, Format, Kind, Layout, Line, Mixture, Options, OutToken, RowConfig, RowSource, Rows, SpanParams};

use crate::arrays::{self, Pick, Tokens, with_tokens};
use crate::detach::run_detached;
use crate::errors::py;
use crate::spans::PySentinels;

/// One denoiser as the Python layer describes it:
/// `(kind, a, b, num_spans, random_roll, prefix, rate)` with `kind` one of
/// `"span"` (`a` = mean span length, `b` = noise density), `"prefix_lm"` (`a` = suffix
/// density) or `"causal"`.
pub type Spec = (String, f64, f64, Option<usize>, bool, Vec<i64>, f64);

pub fn mixture(specs: Vec<Spec>) -> PyResult<Mixture> {
    let entries = specs
        .into_iter()
        .map(|(kind, a, b, num_spans, roll, prefix, rate)| {
            let kind = match kind.as_str() {
                "span" => Kind::SpanCorruption(py(SpanParams::new(b, a, num_spans, roll))?),
                "prefix_lm" => Kind::PrefixLm { suffix_density: a },
                "causal" => Kind::CausalLm,
                other => return Err(PyValueError::new_err(format!("mixture: unknown denoiser kind {other:?}"))),
            };
            Ok((py(Denoiser::new(kind, prefix))?, rate))
        })
        .collect::<PyResult<Vec<_>>>()?;
    py(Mixture::new(entries))
}

/// A plan row: `(raw_length, inputs_length, targets_length, spans, sentinels)`.
type PlanTuple = (usize, usize, usize, usize, usize);

/// Checks denoiser specs the way the batch transform will use them.
#[pyfunction]
pub fn _validate(specs: Vec<Spec>) -> PyResult<()> {
    mixture(specs).map(drop)
}

/// Planned lengths of each denoiser of a mixture, as plain tuples
/// `(raw_length, inputs_length, targets_length, spans, sentinels)`.
#[pyfunction]
#[pyo3(signature = (specs, sentinels, inputs_length=None, targets_length=None, sequence_length=None, eos=true))]
pub fn _plan(
    specs: Vec<Spec>,
    sentinels: &Bound<'_, PyAny>,
    inputs_length: Option<&Bound<'_, PyAny>>,
    targets_length: Option<&Bound<'_, PyAny>>,
    sequence_length: Option<&Bound<'_, PyAny>>,
    eos: bool,
) -> PyResult<Vec<PlanTuple>> {
    let sentinels = sentinels_arg(sentinels)?;
    let m = mixture(specs)?;
    let budget = budget(inputs_length, targets_length, sequence_length)?;
    m.denoisers()
        .iter()
        .map(|d| {
            let r = py(ul2_core::plan_denoiser(d, budget, eos, &sentinels))?;
            Ok((r.raw_length, r.inputs_length, r.targets_length, r.spans, r.sentinels))
        })
        .collect()
}

/// The `sentinels` argument, which must be a `ul2.Sentinels`.
pub fn sentinels_arg(obj: &Bound<'_, PyAny>) -> PyResult<ul2_core::Sentinels> {
    obj.cast::<PySentinels>()
        .map(|s| s.get().0.clone())
        .map_err(|_| PyTypeError::new_err(format!("sentinels={}: expected ul2.Sentinels (Sentinels.t5 or Sentinels.from_ids)", arrays::repr(obj))))
}

fn budget(
    inputs_length: Option<&Bound<'_, PyAny>>,
    targets_length: Option<&Bound<'_, PyAny>>,
    sequence_length: Option<&Bound<'_, PyAny>>,
) -> PyResult<Budget> {
    let inputs = arrays::optional(inputs_length, |v| arrays::count(v, "inputs_length"))?;
    let targets = arrays::optional(targets_length, |v| arrays::count(v, "targets_length"))?;
    let sequence = arrays::optional(sequence_length, |v| arrays::count(v, "sequence_length"))?;
    match (inputs, targets, sequence) {
        (Some(inputs), targets, None) => Ok(Budget::EncoderDecoder { inputs, targets }),
        (None, None, Some(sequence)) => Ok(Budget::Decoder { sequence }),
        (None, _, None) => Err(PyValueError::new_err("inputs_length=None: give inputs_length (encoder-decoder) or sequence_length (decoder-only)")),
        _ => Err(PyValueError::new_err("sequence_length: give either sequence_length (decoder-only) or inputs_length/targets_length (encoder-decoder), not both")),
    }
}

/// Rows of token ids: a 2-D array or a list of 1-D arrays, borrowed without a copy.
enum Batch<'py> {
    Dense(Tokens<'py>, usize),
    /// Borrowed arrays, and row `i` as `(array, start, len)` in them.
    Ragged(Vec<Tokens<'py>>, Vec<(usize, usize, usize)>),
}

/// Names row `i` in a message about `rows`: "rows: ..." becomes "rows[i]: ...".
fn at_row(py: Python<'_>, e: &PyErr, i: usize) -> PyErr {
    let msg = e.value(py).to_string().replacen("rows:", &format!("rows[{i}]:"), 1);
    if e.is_instance_of::<PyTypeError>(py) { PyTypeError::new_err(msg) } else { PyValueError::new_err(msg) }
}

fn batch<'py>(rows: &Bound<'py, PyAny>) -> PyResult<Batch<'py>> {
    if rows.is_instance_of::<PyList>() || rows.is_instance_of::<PyTuple>() {
        let (mut arrays, mut spans) = (Vec::new(), Vec::new());
        let mut bases = HashMap::new();
        for (i, r) in rows.try_iter()?.enumerate() {
            let r = r?;
            if let Some(span) = view_of_base(&r, &mut arrays, &mut bases).map_err(|e| at_row(rows.py(), &e, i))? {
                spans.push(span);
            } else {
                let (t, shape) = arrays::tokens(&r, "rows", 1).map_err(|e| at_row(rows.py(), &e, i))?;
                arrays.push(t);
                spans.push((arrays.len() - 1, 0, shape[0]));
            }
        }
        if let Some((i, (a, ..))) = spans.iter().enumerate().find(|(_, (a, ..))| arrays[*a].dtype_name() != arrays[spans[0].0].dtype_name()) {
            return Err(PyTypeError::new_err(format!(
                "rows[{i}]: dtype {} differs from rows[0]'s {}; give every row the same dtype",
                arrays[*a].dtype_name(),
                arrays[spans[0].0].dtype_name()
            )));
        }
        return Ok(Batch::Ragged(arrays, spans));
    }
    let (t, shape) = arrays::tokens(rows, "rows", 2)?;
    Ok(Batch::Dense(t, shape[1]))
}

/// `row` as `(array, start, len)` inside its base array when it is a contiguous 1-D view
/// of a C-contiguous base of its dtype (`list(tokens_2d)`, slices of one token stream):
/// all the views of a base then share one borrow of it. rust-numpy checks each new borrow
/// against every other borrow of the same base, so borrowing the views one by one costs
/// time quadratic in the batch size. `None` for anything else, which is borrowed alone.
fn view_of_base<'py>(
    row: &Bound<'py, PyAny>,
    arrays: &mut Vec<Tokens<'py>>,
    bases: &mut HashMap<usize, usize>,
) -> PyResult<Option<(usize, usize, usize)>> {
    let Ok(view) = row.cast::<PyUntypedArray>() else { return Ok(None) };
    if view.ndim() != 1 || view.shape()[0] == 0 {
        return Ok(None);
    }
    let len = view.shape()[0];
    if len > 1 && usize::try_from(view.strides()[0]).ok() != Some(view.dtype().itemsize()) {
        return Ok(None);
    }
    let base = row.getattr(intern!(row.py(), "base"))?;
    let Ok(owner) = base.cast::<PyUntypedArray>() else { return Ok(None) };
    if !owner.dtype().is_equiv_to(&view.dtype()) || !owner.is_c_contiguous() {
        return Ok(None);
    }
    let index = match bases.entry(base.as_ptr() as usize) {
        Entry::Occupied(known) => *known.get(),
        Entry::Vacant(new) => {
            let (borrowed, _) = arrays::tokens(&base, "rows", owner.ndim())?;
            arrays.push(borrowed);
            *new.insert(arrays.len() - 1)
        }
    };
    let start = with_tokens!(&arrays[index], b => offset_in(b, view, len));
    Ok(start.map(|start| (index, start, len)))
}

/// Where `row`'s `len` elements start inside `base`, if they lie within it.
fn offset_in<T: Pick>(base: &arrays::Borrowed<'_, T>, row: &Bound<'_, PyUntypedArray>, len: usize) -> Option<usize> {
    let row = row.cast::<PyArray1<T>>().ok()?;
    let base = base.slice()?;
    let bytes = (row.data() as usize).wrapping_sub(base.as_ptr() as usize);
    let start = bytes / size_of::<T>();
    (bytes % size_of::<T>() == 0 && start <= base.len() && len <= base.len() - start).then_some(start)
}

/// The rows of a ragged batch, all of dtype `T` (checked equal beforehand): slices, or
/// lines read through their strides when any row needs it.
fn ragged<'a, T: Pick>(
    py: Python<'_>,
    _first: &arrays::Borrowed<'_, T>,
    arrays: &'a [Tokens<'_>],
    spans: &[(usize, usize, usize)],
) -> PyResult<Rows<'a, T>> {
    let lines: Vec<PyResult<Line<'a, T>>> = arrays
        .iter()
        .map(|t| T::pick(t).ok_or_else(|| PyTypeError::new_err("rows: mixed dtypes")).and_then(arrays::Borrowed::line))
        .collect();
    let rows = spans
        .iter()
        .enumerate()
        .map(|(i, &(a, start, len))| match &lines[a] {
            Ok(Line::Slice(s)) => Ok(Line::Slice(&s[start..start + len])),
            Ok(Line::Strided(s)) => Ok(Line::Strided(s.skip(start, len))),
            Err(e) => Err(at_row(py, e, i)),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let slices: Option<Vec<&[T]>> = rows.iter().map(|l| if let Line::Slice(s) = l { Some(*s) } else { None }).collect();
    Ok(slices.map_or(Rows::Lines(rows), Rows::Ragged))
}

/// What a batch transform or a dataset needs to turn examples into named arrays.
#[derive(Clone)]
pub struct Engine {
    pub mixture: Mixture,
    pub sentinels: ul2_core::Sentinels,
    pub eos_id: Option<i64>,
    pub pad_id: i64,
    pub format: Format,
    pub seed: u64,
    pub wide: bool,
    pub layout: Layout,
    pub options: Options,
    /// Planned raw length of each denoiser.
    pub raw_lengths: Vec<usize>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        specs: Vec<Spec>,
        sentinels: &Bound<'_, PyAny>,
        inputs_length: Option<&Bound<'_, PyAny>>,
        targets_length: Option<&Bound<'_, PyAny>>,
        sequence_length: Option<&Bound<'_, PyAny>>,
        eos_id: Option<&Bound<'_, PyAny>>,
        pad_id: &Bound<'_, PyAny>,
        format: Option<&Bound<'_, PyAny>>,
        seed: &Bound<'_, PyAny>,
        wide: bool,
        options: Options,
    ) -> PyResult<Self> {
        let sentinels = sentinels_arg(sentinels)?;
        let mixture = mixture(specs)?;
        let budget = budget(inputs_length, targets_length, sequence_length)?;
        let eos_id = arrays::optional(eos_id, |e| arrays::count(e, "eos_id"))?.map(|e| e as i64);
        let pad_id_obj = pad_id;
        let pad_id = arrays::count(pad_id, "pad_id")? as i64;
        let format = match format.filter(|f| !f.is_none()) {
            None if matches!(budget, Budget::Decoder { .. }) => Format::Decoder,
            None => Format::Hf,
            Some(f) => {
                let s: String = f.extract().map_err(|_| PyTypeError::new_err(format!("format={}: must be a str", arrays::repr(f))))?;
                py(Format::parse(&s))?
            }
        };
        let family = format.family();
        if (family == Family::Decoder) != matches!(budget, Budget::Decoder { .. }) {
            return Err(PyValueError::new_err(format!(
                "format={:?}: {} formats take {}",
                format!("{format:?}").to_lowercase(),
                if family == Family::Decoder { "decoder-only" } else { "encoder-decoder" },
                if family == Family::Decoder { "sequence_length" } else { "inputs_length (and targets_length)" },
            )));
        }
        let seed = arrays::seed(seed, "seed")?;
        let max = if wide { i64::MAX } else { i64::from(i32::MAX) };
        let dtype_fix = if wide { "give sentinel ids below 2**63" } else { "use dtype=numpy.int64" };
        py(sentinels.check_fits(max, dtype_fix))?;
        if let Some(e) = eos_id {
            py(sentinels.check_id("eos_id", e, max))?;
        }
        py(sentinels.check_id("pad_id", pad_id, max))?;
        for (i, d) in mixture.denoisers().iter().enumerate() {
            for &t in &d.prefix {
                py(sentinels.check_id("prefix", t, max)).map_err(|e| crate::errors::prefixed(pad_id_obj.py(), e, &format!("mixture[{i}]: ")))?;
            }
        }
        let plans = mixture
            .denoisers()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                py(ul2_core::plan_denoiser(d, budget, eos_id.is_some(), &sentinels))
                    .map_err(|e| crate::errors::prefixed(pad_id_obj.py(), e, &format!("mixture[{i}]: ")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let widths = match budget {
            Budget::EncoderDecoder { inputs, targets } => {
                (inputs, targets.unwrap_or_else(|| plans.iter().map(|p| p.targets_length).max().unwrap_or(0)))
            }
            Budget::Decoder { sequence } => (sequence, 0),
        };
        Ok(Self {
            mixture,
            sentinels,
            eos_id,
            pad_id,
            format,
            seed,
            wide,
            layout: Layout { family, widths },
            options,
            raw_lengths: plans.iter().map(|p| p.raw_length).collect(),
        })
    }

    /// `(inputs_length, targets_length, sequence_length)`, as the family has them.
    pub fn budget(&self) -> (Option<usize>, Option<usize>, Option<usize>) {
        let (w0, w1) = self.layout.widths;
        match self.layout.family {
            Family::EncoderDecoder => (Some(w0), Some(w1), None),
            Family::Decoder => (None, None, Some(w0)),
        }
    }

    /// Largest id the outputs hold.
    pub fn max_id(&self) -> i64 {
        if self.wide { i64::MAX } else { i64::from(i32::MAX) }
    }

    pub fn format_name(&self) -> &'static str {
        match self.format {
            Format::Hf => "hf",
            Format::Seqio => "seqio",
            Format::Decoder => "decoder",
            Format::SeqioDecoder => "seqio_decoder",
        }
    }

    pub fn cfg(&self) -> RowConfig<'_> {
        RowConfig { max_raw: &self.raw_lengths, mixture: &self.mixture, sentinels: &self.sentinels, eos_id: self.eos_id, seed: self.seed }
    }

    /// Denoises `source`'s examples (keyed `keys`) into rows and hands the named arrays to
    /// NumPy without a copy. Also returns the fill rate.
    pub fn run<'py, T: ul2_core::Token, S: RowSource<T>>(
        &self,
        py_: Python<'py>,
        source: &S,
        keys: &[u64],
        bins: Bins<impl Fn(usize) -> usize + Sync + Send>,
    ) -> PyResult<(Bound<'py, PyDict>, f64)> {
        if self.wide { self.run_as::<T, i64, S>(py_, source, keys, bins) } else { self.run_as::<T, i32, S>(py_, source, keys, bins) }
    }

    fn run_as<'py, T: ul2_core::Token, O: OutToken + numpy::Element, S: RowSource<T>>(
        &self,
        py_: Python<'py>,
        source: &S,
        keys: &[u64],
        bins: Bins<impl Fn(usize) -> usize + Sync + Send>,
    ) -> PyResult<(Bound<'py, PyDict>, f64)> {
        let cfg = self.cfg();
        let pad = O::from_i64(self.pad_id);
        let (layout, format, options) = (self.layout, self.format, self.options);
        // Upper bound of what the call writes (packed rows hold several examples each).
        let work = keys.len().saturating_mul(layout.widths.0 + layout.widths.1);
        let (fields, fill) = run_detached(py_, work, || {
            let bins = match bins {
                Bins::One => (0..=keys.len()).collect(),
                Bins::Pack(lengths) => ul2_core::pack_bins(&cfg, lengths, keys, layout)?,
                Bins::Given(b) => b,
            };
            let d = ul2_core::denoise_rows(&cfg, source, keys, &bins, layout, pad)?;
            let fill = d.fill_rate();
            Ok((ul2_core::format(d, format, pad, options)?, fill))
        })?;
        let out = PyDict::new(py_);
        for f in fields {
            out.set_item(f.name, f.data.into_pyarray(py_).reshape(f.shape)?)?;
        }
        Ok((out, fill))
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

/// Keys as `u64`, each in `[0, 2**64)`; `n`, when given, is how many there must be.
pub fn keys_arg(keys: &Bound<'_, PyAny>, n: Option<usize>) -> PyResult<Vec<u64>> {
    let count = |len: usize| match n {
        Some(n) if n != len => Err(PyValueError::new_err(format!("keys: {len} keys for {n} rows; give one key per row"))),
        _ => Ok(()),
    };
    if let Some(k) = arrays::u64_array(keys, "keys")? {
        let v = k.values();
        count(v.len())?;
        return Ok(v);
    }
    let (k, shape) = arrays::tokens(keys, "keys", 1)?;
    count(shape[0])?;
    with_tokens!(&k, b => {
        b.values()
            .into_iter()
            .map(|x| {
                let v = ul2_core::Token::to_i64(x);
                u64::try_from(v).map_err(|_| PyValueError::new_err(format!("keys: key {v} is negative; keys must be >= 0")))
            })
            .collect()
    })
}

/// The batch transform: rows in, a dict of NumPy arrays out.
#[pyclass(module = "ul2._ul2", name = "_Collator", frozen)]
pub struct PyCollator {
    engine: Engine,
    next_key: AtomicU64,
    /// Fill rate of the last packed batch (`f64` bits).
    fill_rate: AtomicU64,
}

impl PyCollator {
    /// The configuration, for a dataset built on the same arguments.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

#[pymethods]
impl PyCollator {
    #[new]
    #[pyo3(signature = (specs, sentinels, inputs_length, targets_length, sequence_length, eos_id, pad_id, format, seed, wide, pack, bidirectional_mask))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        specs: Vec<Spec>,
        sentinels: &Bound<'_, PyAny>,
        inputs_length: Option<&Bound<'_, PyAny>>,
        targets_length: Option<&Bound<'_, PyAny>>,
        sequence_length: Option<&Bound<'_, PyAny>>,
        eos_id: Option<&Bound<'_, PyAny>>,
        pad_id: &Bound<'_, PyAny>,
        format: Option<&Bound<'_, PyAny>>,
        seed: &Bound<'_, PyAny>,
        wide: bool,
        pack: bool,
        bidirectional_mask: bool,
    ) -> PyResult<Self> {
        let options = Options { packed: pack, bidirectional_mask, denoiser: false };
        let engine = Engine::new(
            specs, sentinels, inputs_length, targets_length, sequence_length, eos_id, pad_id, format, seed, wide, options,
        )?;
        Ok(Self { engine, next_key: AtomicU64::new(0), fill_rate: AtomicU64::new(0) })
    }

    #[getter]
    fn inputs_length(&self) -> Option<usize> {
        self.engine.budget().0
    }
    #[getter]
    fn targets_length(&self) -> Option<usize> {
        self.engine.budget().1
    }
    #[getter]
    fn sequence_length(&self) -> Option<usize> {
        self.engine.budget().2
    }
    #[getter]
    fn format(&self) -> &'static str {
        self.engine.format_name()
    }
    #[getter]
    fn next_key(&self) -> u64 {
        self.next_key.load(Ordering::Relaxed)
    }
    fn _set_next_key(&self, key: u64) {
        self.next_key.store(key, Ordering::Relaxed);
    }

    /// Fraction of the last batch's output positions holding tokens.
    #[getter]
    fn fill_rate(&self) -> f64 {
        f64::from_bits(self.fill_rate.load(Ordering::Relaxed))
    }

    #[pyo3(signature = (rows, keys=None))]
    fn __call__<'py>(
        &self,
        py_: Python<'py>,
        rows: &Bound<'py, PyAny>,
        keys: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let batch = batch(rows)?;
        let n = match &batch {
            Batch::Dense(_, _) => numpy::PyUntypedArrayMethods::shape(rows.cast::<numpy::PyUntypedArray>()?)[0],
            Batch::Ragged(_, spans) => spans.len(),
        };
        if n == 0 {
            return Err(PyValueError::new_err("rows: empty batch (0 rows)"));
        }
        let keys = match keys.filter(|k| !k.is_none()) {
            None => {
                let start = self
                    .next_key
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| k.checked_add(n as u64))
                    .map_err(|k| {
                        PyValueError::new_err(format!(
                            "keys=None: the running key counter ({k}) would pass 2**64 - 1 with {n} rows; pass keys="
                        ))
                    })?;
                (start..start + n as u64).collect()
            }
            Some(k) => keys_arg(k, Some(n))?,
        };
        let e = &self.engine;
        let packed = e.options.packed;
        let (out, fill) = match &batch {
            Batch::Dense(t, width) => with_tokens!(t, b => {
                let rows = b.rows()?;
                e.run(py_, &rows, &keys, if packed { Bins::Pack(|_| *width) } else { Bins::One })?
            }),
            Batch::Ragged(arrays, spans) => with_tokens!(&arrays[spans[0].0], b0 => {
                let rows = ragged(py_, b0, arrays, spans)?;
                e.run(py_, &rows, &keys, if packed { Bins::Pack(|i| rows.row_len(i)) } else { Bins::One })?
            }),
        };
        self.fill_rate.store(fill.to_bits(), Ordering::Relaxed);
        Ok(out)
    }
}
