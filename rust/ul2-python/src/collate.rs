//! The batch transform behind `ul2.Collator`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};

use numpy::{IntoPyArray, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use ul2_core::{Bins, Budget, Engine, Field, Fields, KeyCounter, Line, RowSource, Rows, RunningStats, Stats, Token};

use crate::arrays::{self, Pick, Tokens, with_tokens};
use crate::config;
use crate::detach::run_detached;
use crate::errors::py;

/// A plan row: `(raw_length, inputs_length, targets_length, spans, sentinels)`.
type PlanTuple = (usize, usize, usize, usize, usize);

/// Checks a mixture's denoiser dicts the way the batch transform will read them.
#[pyfunction]
pub fn _validate(mixture: &Bound<'_, PyAny>) -> PyResult<()> {
    config::mixture(mixture).map(drop)
}

/// Planned lengths of each denoiser of a mixture, as plain tuples
/// `(raw_length, inputs_length, targets_length, spans, sentinels)`.
#[pyfunction]
pub fn _plan(
    mixture: &Bound<'_, PyAny>,
    sentinels: &Bound<'_, PyAny>,
    budget: &Bound<'_, PyAny>,
    eos: &Bound<'_, PyAny>,
) -> PyResult<Vec<PlanTuple>> {
    let (mixture, sentinels) = (config::mixture(mixture)?, crate::spans::sentinels_arg(sentinels)?);
    let budget = Budget::from_arguments(&config::Args::new(budget, "budget")?)?;
    let eos = arrays::flag(eos, "eos")?;
    mixture
        .denoisers()
        .iter()
        .map(|d| {
            let r = py(ul2_core::plan_denoiser(d, budget, eos, &sentinels))?;
            Ok((r.raw_length, r.inputs_length, r.targets_length, r.spans, r.sentinels))
        })
        .collect()
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
    if let Some(batch) = int_lists(rows)? {
        return Ok(batch);
    }
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
        if let Some((i, (a, ..))) =
            spans.iter().enumerate().find(|(_, (a, ..))| arrays[*a].dtype_name() != arrays[spans[0].0].dtype_name())
        {
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

/// A list of lists of Python ints (the features of a `datasets.Dataset` in its default
/// format) read in one pass into one int64 array and its row spans: the dtype and bytes
/// `numpy.asarray` gives each such row, without a NumPy call per row. `None` when any row
/// is not a non-empty list or holds anything but an int of 64 bits (bools, NumPy scalars,
/// huge ints): those batches take the per-row path, with its messages.
fn int_lists<'py>(rows: &Bound<'py, PyAny>) -> PyResult<Option<Batch<'py>>> {
    let Ok(list) = rows.cast::<PyList>() else { return Ok(None) };
    let mut lists = Vec::with_capacity(list.len());
    let mut spans = Vec::with_capacity(list.len());
    let mut total = 0;
    for row in list.iter() {
        match row.cast_into::<PyList>() {
            Ok(row) if !row.is_empty() => {
                spans.push((0, total, row.len()));
                total += row.len();
                lists.push(row);
            }
            _ => return Ok(None),
        }
    }
    if spans.is_empty() {
        return Ok(None);
    }
    let mut flat: Vec<i64> = Vec::with_capacity(total);
    for row in &lists {
        let (ptr, len) = (row.as_ptr(), row.len());
        // Filled in place, one store per int: the two C-API calls are most of the cost, and
        // a push's capacity check would be a third of what is left.
        let out = &mut flat.spare_capacity_mut()[..len];
        for (i, slot) in out.iter_mut().enumerate() {
            // SAFETY: `ptr` is a live list of `len` items and `i < len`; the GIL is held
            // throughout and no Python code runs in between (exact ints never call
            // `__index__`), so the list and the borrowed item stay as they are.
            let v = unsafe {
                let item = pyo3::ffi::PyList_GetItem(ptr, i as pyo3::ffi::Py_ssize_t);
                if pyo3::ffi::PyLong_CheckExact(item) == 0 {
                    return Ok(None);
                }
                pyo3::ffi::PyLong_AsLongLong(item)
            };
            if v == -1 && PyErr::take(rows.py()).is_some() {
                return Ok(None);
            }
            slot.write(v);
        }
        // SAFETY: the `len` slots after the old length were all written just above.
        unsafe { flat.set_len(flat.len() + len) };
    }
    let (tokens, _) = arrays::tokens(flat.into_pyarray(rows.py()).as_any(), "rows", 1)?;
    Ok(Some(Batch::Ragged(vec![tokens], spans)))
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
    // SAFETY: `view` is a live NumPy array, whose `base` field is null or an owned reference
    // that lives as long as the view; read directly, as `view.base` would cost an attribute
    // lookup per row.
    let base = unsafe {
        let base = (*view.as_array_ptr()).base;
        if base.is_null() {
            return Ok(None);
        }
        Bound::from_borrowed_ptr(row.py(), base)
    };
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

/// The core's outputs as a dict of NumPy arrays, handed over without a copy.
pub fn to_dict(py_: Python<'_>, out: Fields) -> PyResult<Bound<'_, PyDict>> {
    fn put<'py, O: numpy::Element>(py_: Python<'py>, d: &Bound<'py, PyDict>, fields: Vec<Field<O>>) -> PyResult<()> {
        for f in fields {
            d.set_item(f.name, f.data.into_pyarray(py_).reshape(f.shape)?)?;
        }
        Ok(())
    }
    let d = PyDict::new(py_);
    match out {
        Fields::Int32(f) => put(py_, &d, f)?,
        Fields::Int64(f) => put(py_, &d, f)?,
    }
    Ok(d)
}

/// Runs `engine` over `source` with the GIL released and hands the arrays to NumPy.
pub fn run<'py, T: Token, S: RowSource<T>>(
    py_: Python<'py>,
    engine: &Engine,
    source: &S,
    keys: &[u64],
    bins: Bins<impl Fn(usize) -> usize + Sync + Send>,
) -> PyResult<(Bound<'py, PyDict>, f64, Stats)> {
    let out = run_detached(py_, engine.work(keys.len()), || engine.run(source, keys, bins))?;
    Ok((to_dict(py_, out.fields)?, out.fill_rate, out.stats))
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
    next_key: KeyCounter,
    /// Fill rate of the last packed batch (`f64` bits).
    fill_rate: AtomicU64,
    stats: RunningStats,
}

/// The engine of `collator` (a `_Collator` built from the same arguments by the Python
/// class) for a dataset or a stream: its items also say which denoiser made each example.
pub fn items_engine(collator: &Bound<'_, PyAny>) -> PyResult<Engine> {
    let c = collator.cast::<PyCollator>().map_err(|_| PyTypeError::new_err("collator: expected ul2._ul2._Collator"))?;
    Ok(c.get().engine.clone().with_denoiser_field())
}

#[pymethods]
impl PyCollator {
    #[new]
    fn new(mixture: &Bound<'_, PyAny>, sentinels: &Bound<'_, PyAny>, options: &Bound<'_, PyAny>) -> PyResult<Self> {
        let engine = py(Engine::new(config::config(mixture, sentinels, options)?))?;
        Ok(Self { engine, next_key: KeyCounter::default(), fill_rate: AtomicU64::new(0), stats: RunningStats::default() })
    }

    /// Tokens cut so far (what `__call__` checks to warn, without building `stats`).
    #[getter]
    fn cut_tokens(&self) -> u64 {
        self.stats.get().cut_tokens
    }

    /// Counts over every call: rows, raw tokens used, rows and tokens cut, padding.
    #[getter]
    fn stats<'py>(&self, py_: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.stats.get();
        let d = PyDict::new(py_);
        for (k, v) in [
            ("rows", s.rows),
            ("tokens", s.tokens),
            ("cut_rows", s.cut_rows),
            ("cut_tokens", s.cut_tokens),
            ("padding", s.padding),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    #[getter]
    fn inputs_length(&self) -> Option<usize> {
        self.engine.widths().0
    }
    #[getter]
    fn targets_length(&self) -> Option<usize> {
        self.engine.widths().1
    }
    #[getter]
    fn sequence_length(&self) -> Option<usize> {
        self.engine.widths().2
    }
    #[getter]
    fn format(&self) -> &'static str {
        self.engine.format().name()
    }
    #[getter]
    fn next_key(&self) -> u64 {
        self.next_key.next()
    }
    fn _set_next_key(&self, key: u64) {
        self.next_key.set(key);
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
            None => py(self.next_key.take(n))?.collect(),
            Some(k) => keys_arg(k, Some(n))?,
        };
        let e = &self.engine;
        let packed = e.config().pack;
        let (out, fill, stats) = match &batch {
            Batch::Dense(t, width) => with_tokens!(t, b => {
                let rows = b.rows()?;
                run(py_, e, &rows, &keys, if packed { Bins::Pack(|_| *width) } else { Bins::One })?
            }),
            Batch::Ragged(arrays, spans) => with_tokens!(&arrays[spans[0].0], b0 => {
                let rows = ragged(py_, b0, arrays, spans)?;
                run(py_, e, &rows, &keys, if packed { Bins::Pack(|i| rows.row_len(i)) } else { Bins::One })?
            }),
        };
        self.fill_rate.store(fill.to_bits(), Ordering::Relaxed);
        self.stats.add(&stats);
        Ok(out)
    }
}
