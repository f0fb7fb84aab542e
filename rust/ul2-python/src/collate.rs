//! The batch transform behind `ul2.Collator`.

use std::sync::atomic::{AtomicU64, Ordering};

use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use ul2_core::{Budget, Denoiser, Format, Kind, Mixture, OutToken, RowConfig, Rows, SpanParams};

use crate::arrays::{self, Pick, Tokens, with_tokens};
use crate::detach::run_detached;
use crate::errors::py;
use crate::spans::PySentinels;

/// One denoiser as the Python layer describes it:
/// `(kind, a, b, num_spans, random_roll, prefix, rate)` with `kind` one of
/// `"span"` (`a` = mean span length, `b` = noise density), `"prefix_lm"` (`a` = suffix
/// density) or `"causal"`.
type Spec = (String, f64, f64, Option<usize>, bool, Vec<i64>, f64);

fn mixture(specs: Vec<Spec>) -> PyResult<Mixture> {
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
    sentinels: PyRef<'_, PySentinels>,
    inputs_length: Option<&Bound<'_, PyAny>>,
    targets_length: Option<&Bound<'_, PyAny>>,
    sequence_length: Option<&Bound<'_, PyAny>>,
    eos: bool,
) -> PyResult<Vec<(usize, usize, usize, usize, usize)>> {
    let m = mixture(specs)?;
    let budget = budget(inputs_length, targets_length, sequence_length)?;
    m.denoisers()
        .iter()
        .map(|d| {
            let r = py(ul2_core::plan_denoiser(d, budget, eos, &sentinels.0))?;
            Ok((r.raw_length, r.inputs_length, r.targets_length, r.spans, r.sentinels))
        })
        .collect()
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
    Ragged(Vec<Tokens<'py>>),
}

fn batch<'py>(rows: &Bound<'py, PyAny>) -> PyResult<Batch<'py>> {
    if rows.is_instance_of::<PyList>() || rows.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'py, PyAny>> = rows.try_iter()?.collect::<PyResult<_>>()?;
        let list = items
            .iter()
            .map(|r| arrays::tokens(r, "rows", 1).map(|(t, _)| t))
            .collect::<PyResult<Vec<_>>>()?;
        if let Some((i, t)) = list.iter().enumerate().find(|(_, t)| t.dtype_name() != list[0].dtype_name()) {
            return Err(PyTypeError::new_err(format!(
                "rows[{i}]: dtype {} differs from rows[0]'s {}; give every row the same dtype",
                t.dtype_name(),
                list[0].dtype_name()
            )));
        }
        return Ok(Batch::Ragged(list));
    }
    let (t, shape) = arrays::tokens(rows, "rows", 2)?;
    Ok(Batch::Dense(t, shape[1]))
}

/// Slices of a ragged list whose dtype is that of `_first` (checked equal beforehand).
fn ragged<'a, T: Pick>(_first: &arrays::Borrowed<'_, T>, list: &'a [Tokens<'_>]) -> PyResult<Vec<&'a [T]>> {
    list.iter()
        .map(|t| T::pick(t).ok_or_else(|| PyTypeError::new_err("rows: mixed dtypes")).and_then(|b| b.slice()))
        .collect()
}

/// The batch transform: rows in, a dict of `[rows, width]` NumPy arrays out.
#[pyclass(module = "ul2._ul2", name = "_Collator", frozen)]
pub struct PyCollator {
    mixture: Mixture,
    sentinels: ul2_core::Sentinels,
    inputs_length: usize,
    targets_length: usize,
    eos_id: Option<i64>,
    pad_id: i64,
    format: Format,
    seed: u64,
    wide: bool,
    next_key: AtomicU64,
}

#[pymethods]
impl PyCollator {
    #[new]
    #[pyo3(signature = (specs, sentinels, inputs_length, targets_length, eos_id, pad_id, format, seed, wide))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        specs: Vec<Spec>,
        sentinels: &Bound<'_, PyAny>,
        inputs_length: &Bound<'_, PyAny>,
        targets_length: Option<&Bound<'_, PyAny>>,
        eos_id: Option<&Bound<'_, PyAny>>,
        pad_id: &Bound<'_, PyAny>,
        format: &Bound<'_, PyAny>,
        seed: &Bound<'_, PyAny>,
        wide: bool,
    ) -> PyResult<Self> {
        let sentinels = sentinels
            .cast::<PySentinels>()
            .map_err(|_| PyTypeError::new_err(format!("sentinels={}: expected ul2.Sentinels", arrays::repr(sentinels))))?
            .get()
            .0
            .clone();
        let mixture = mixture(specs)?;
        let inputs = arrays::count(inputs_length, "inputs_length")?;
        let targets = arrays::optional(targets_length, |t| arrays::count(t, "targets_length"))?;
        let eos_id = arrays::optional(eos_id, |e| arrays::count(e, "eos_id"))?.map(|e| e as i64);
        let pad_id = arrays::count(pad_id, "pad_id")? as i64;
        let format: String = format
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("format={}: must be a str", arrays::repr(format))))?;
        let format = py(Format::parse(&format))?;
        let seed = arrays::seed(seed, "seed")?;
        let max = if wide { i64::MAX } else { i64::from(i32::MAX) };
        for (arg, v) in [("eos_id", eos_id.unwrap_or(0)), ("pad_id", pad_id)]
            .into_iter()
            .chain(sentinels.ids().iter().map(|&s| ("sentinels", s)))
        {
            if v > max {
                return Err(PyValueError::new_err(format!("{arg}={v}: does not fit dtype int32; use dtype=numpy.int64")));
            }
        }
        let budget = Budget::EncoderDecoder { inputs, targets };
        let mut planned_targets = 0;
        for d in mixture.denoisers() {
            let row = py(ul2_core::plan_denoiser(d, budget, eos_id.is_some(), &sentinels))?;
            planned_targets = planned_targets.max(row.targets_length);
        }
        Ok(Self {
            mixture,
            sentinels,
            inputs_length: inputs,
            targets_length: targets.unwrap_or(planned_targets),
            eos_id,
            pad_id,
            format,
            seed,
            wide,
            next_key: AtomicU64::new(0),
        })
    }

    #[getter]
    fn inputs_length(&self) -> usize {
        self.inputs_length
    }
    #[getter]
    fn targets_length(&self) -> usize {
        self.targets_length
    }
    #[getter]
    fn next_key(&self) -> u64 {
        self.next_key.load(Ordering::Relaxed)
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
            Batch::Dense(t, _) => with_tokens!(t, b => b.slice()?.len()),
            Batch::Ragged(list) => list.len(),
        };
        let n = match &batch {
            Batch::Dense(_, 0) => rows.cast::<numpy::PyUntypedArray>().map_or(0, |a| numpy::PyUntypedArrayMethods::shape(a)[0]),
            Batch::Dense(_, w) => n / w,
            Batch::Ragged(_) => n,
        };
        if n == 0 {
            return Err(PyValueError::new_err("rows: empty batch (0 rows)"));
        }
        let keys = match keys.filter(|k| !k.is_none()).map(|k| arrays::tokens(k, "keys", 1)).transpose()? {
            None => {
                let start = self.next_key.fetch_add(n as u64, Ordering::Relaxed);
                (start..start + n as u64).collect()
            }
            Some((k, shape)) => {
                if shape[0] != n {
                    return Err(PyValueError::new_err(format!("keys: {} keys for {n} rows; give one key per row", shape[0])));
                }
                with_tokens!(&k, b => {
                    let s = b.slice()?;
                    s.iter()
                        .map(|&x| u64::try_from(ul2_core::Token::to_i64(x)).map_err(|_| {
                            PyValueError::new_err(format!("keys: key {} is negative; keys must be >= 0", ul2_core::Token::to_i64(x)))
                        }))
                        .collect::<PyResult<Vec<u64>>>()?
                })
            }
        };
        if self.wide { self.run::<i64>(py_, &batch, &keys) } else { self.run::<i32>(py_, &batch, &keys) }
    }
}

impl PyCollator {
    fn run<'py, O: OutToken + numpy::Element>(
        &self,
        py_: Python<'py>,
        batch: &Batch<'py>,
        keys: &[u64],
    ) -> PyResult<Bound<'py, PyDict>> {
        let cfg = RowConfig { mixture: &self.mixture, sentinels: &self.sentinels, eos_id: self.eos_id, seed: self.seed };
        let (iw, tw, pad, format) = (self.inputs_length, self.targets_length, O::from_i64(self.pad_id), self.format);
        let fields = match batch {
            Batch::Dense(t, width) => with_tokens!(t, b => {
                let rows = Rows::Dense { data: b.slice()?, width: *width };
                run_detached(py_, || ul2_core::denoise_batch(&cfg, &rows, keys, iw, tw, pad).map(|o| ul2_core::format_enc_dec(o, format, pad)))?
            }),
            Batch::Ragged(list) => with_tokens!(&list[0], b0 => {
                let rows = Rows::Ragged(ragged(b0, list)?);
                run_detached(py_, || ul2_core::denoise_batch(&cfg, &rows, keys, iw, tw, pad).map(|o| ul2_core::format_enc_dec(o, format, pad)))?
            }),
        };
        let out = PyDict::new(py_);
        for f in fields {
            let rows = f.data.len().checked_div(f.width).unwrap_or(keys.len());
            out.set_item(f.name, f.data.into_pyarray(py_).reshape([rows, f.width])?)?;
        }
        Ok(out)
    }
}
