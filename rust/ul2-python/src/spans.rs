//! The SPEC §7 primitives and `Sentinels`.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use ul2_core::{Overflow, SpanParams};

use crate::arrays::{self, Tokens, with_tokens};
use crate::detach::run_detached;
use crate::errors::py;

/// Sentinel ids: `ids[k]` stands for `<extra_id_k>`.
#[pyclass(module = "ul2", name = "Sentinels", frozen, eq)]
#[derive(PartialEq)]
pub struct PySentinels(pub ul2_core::Sentinels);

fn overflow(on_overflow: &Bound<'_, PyAny>) -> PyResult<Overflow> {
    let s: String = on_overflow.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "on_overflow={}: must be 'error', 'cap' or 't5'",
            arrays::repr(on_overflow)
        ))
    })?;
    py(Overflow::parse(&s))
}

/// The `sentinels` argument, which must be a `ul2.Sentinels`.
pub fn sentinels_arg(obj: &Bound<'_, PyAny>) -> PyResult<ul2_core::Sentinels> {
    obj.cast::<PySentinels>().map(|s| s.get().0.clone()).map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "sentinels={}: expected ul2.Sentinels (Sentinels.t5 or Sentinels.from_ids)",
            arrays::repr(obj)
        ))
    })
}

#[pymethods]
impl PySentinels {
    /// T5's layout: `<extra_id_k> = vocab_size - 1 - k` for `k < count`.
    #[staticmethod]
    #[pyo3(signature = (vocab_size, count=None, *, on_overflow=None, check_collisions=None))]
    fn t5(
        vocab_size: &Bound<'_, PyAny>,
        count: Option<&Bound<'_, PyAny>>,
        on_overflow: Option<&Bound<'_, PyAny>>,
        check_collisions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let vocab = arrays::int(vocab_size, "vocab_size")?;
        let count = arrays::optional(count, |c| arrays::count(c, "count"))?.unwrap_or(100);
        let (o, c) = policies(on_overflow, check_collisions)?;
        py(ul2_core::Sentinels::t5(vocab, count, o, c)).map(Self)
    }

    /// Any ids, in `<extra_id_0>, <extra_id_1>, ...` order.
    #[staticmethod]
    #[pyo3(signature = (ids, *, on_overflow=None, check_collisions=None))]
    fn from_ids(
        ids: &Bound<'_, PyAny>,
        on_overflow: Option<&Bound<'_, PyAny>>,
        check_collisions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let ids = arrays::ids(ids, "ids")?;
        let (o, c) = policies(on_overflow, check_collisions)?;
        py(ul2_core::Sentinels::from_ids(ids, o, c)).map(Self)
    }

    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.0.ids().to_vec().into_pyarray(py)
    }
    #[getter]
    fn count(&self) -> usize {
        self.0.count()
    }
    #[getter]
    fn vocab_size(&self) -> Option<i64> {
        self.0.vocab_size()
    }
    #[getter]
    fn on_overflow(&self) -> &'static str {
        self.0.on_overflow.name()
    }
    #[getter]
    fn check_collisions(&self) -> bool {
        self.0.check_collisions
    }

    fn __len__(&self) -> usize {
        self.0.count()
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.ids().hash(&mut h);
        self.0.on_overflow.name().hash(&mut h);
        self.0.check_collisions.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        let s = &self.0;
        let head = match s.vocab_size() {
            Some(v) if *s == t5_like(s, v) => format!("Sentinels.t5({v}, count={}", s.count()),
            _ => format!("Sentinels.from_ids({:?}", s.ids()),
        };
        format!(
            "{head}, on_overflow='{}', check_collisions={})",
            s.on_overflow.name(),
            if s.check_collisions { "True" } else { "False" }
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>, Bound<'py, PyAny>)> {
        let py = slf.py();
        let s = &slf.get().0;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("on_overflow", s.on_overflow.name())?;
        kwargs.set_item("check_collisions", s.check_collisions)?;
        let functools = py.import("functools")?;
        let (ctor, args) = match s.vocab_size() {
            Some(v) => (slf.get_type().getattr("t5")?, PyTuple::new(py, [v, s.count() as i64])?),
            None => (slf.get_type().getattr("from_ids")?, PyTuple::new(py, [s.ids().to_vec()])?),
        };
        let f = functools.getattr("partial")?.call((ctor,), Some(&kwargs))?;
        Ok((f, args, py.None().into_bound(py)))
    }
}

fn t5_like(s: &ul2_core::Sentinels, vocab: i64) -> ul2_core::Sentinels {
    ul2_core::Sentinels::t5(vocab, s.count(), s.on_overflow, s.check_collisions).unwrap_or_else(|_| s.clone())
}

fn policies(on_overflow: Option<&Bound<'_, PyAny>>, check_collisions: Option<&Bound<'_, PyAny>>) -> PyResult<(Overflow, bool)> {
    Ok((
        arrays::optional(on_overflow, overflow)?.unwrap_or(Overflow::Error),
        arrays::optional(check_collisions, |c| arrays::flag(c, "check_collisions"))?.unwrap_or(true),
    ))
}

fn span_params(
    noise_density: &Bound<'_, PyAny>,
    mean_span_length: Option<&Bound<'_, PyAny>>,
    num_spans: Option<&Bound<'_, PyAny>>,
    random_roll: Option<&Bound<'_, PyAny>>,
) -> PyResult<SpanParams> {
    let r = arrays::real(noise_density, "noise_density")?;
    let mu = arrays::optional(mean_span_length, |m| arrays::real(m, "mean_span_length"))?.unwrap_or(3.0);
    let n = arrays::optional(num_spans, |n| arrays::count(n, "num_spans"))?;
    let roll = arrays::optional(random_roll, |r| arrays::flag(r, "random_roll"))?.unwrap_or(false);
    py(SpanParams::new(r, mu, n, roll))
}

/// `(N, n)`: noise tokens and noise spans of a `length`-token row, T5's float32 counts.
#[pyfunction]
#[pyo3(signature = (length, noise_density, mean_span_length=None))]
pub fn span_counts(
    length: &Bound<'_, PyAny>,
    noise_density: &Bound<'_, PyAny>,
    mean_span_length: Option<&Bound<'_, PyAny>>,
) -> PyResult<(usize, usize)> {
    let length = arrays::count(length, "length")?;
    py(span_params(noise_density, mean_span_length, None, None)?.counts(length))
}

/// A bool noise mask (`True` = noise) keyed by `(seed, key)`.
#[pyfunction]
#[pyo3(signature = (length, noise_density, mean_span_length=None, *, num_spans=None, random_roll=None, seed=None, key=None))]
#[allow(clippy::too_many_arguments)]
pub fn noise_mask<'py>(
    py_: Python<'py>,
    length: &Bound<'py, PyAny>,
    noise_density: &Bound<'py, PyAny>,
    mean_span_length: Option<&Bound<'py, PyAny>>,
    num_spans: Option<&Bound<'py, PyAny>>,
    random_roll: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
    key: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let length = arrays::count(length, "length")?;
    let params = span_params(noise_density, mean_span_length, num_spans, random_roll)?;
    let seed = arrays::optional(seed, |s| arrays::seed(s, "seed"))?.unwrap_or(0);
    let key = arrays::optional(key, |k| arrays::seed(k, "key"))?.unwrap_or(0);
    let mask = run_detached(py_, 0, || ul2_core::noise_mask(length, &params, seed, key))?;
    Ok(mask.into_pyarray(py_))
}

/// Prefix-LM split point `k`: inputs `tokens[:k]`, targets `tokens[k:]`.
#[pyfunction]
#[pyo3(signature = (length, suffix_density=None, *, seed=None, key=None))]
pub fn prefix_split(
    length: &Bound<'_, PyAny>,
    suffix_density: Option<&Bound<'_, PyAny>>,
    seed: Option<&Bound<'_, PyAny>>,
    key: Option<&Bound<'_, PyAny>>,
) -> PyResult<usize> {
    let length = arrays::count(length, "length")?;
    let r = arrays::optional(suffix_density, |s| arrays::real(s, "suffix_density"))?.unwrap_or(0.5);
    let seed = arrays::optional(seed, |s| arrays::seed(s, "seed"))?.unwrap_or(0);
    let key = arrays::optional(key, |k| arrays::seed(k, "key"))?.unwrap_or(0);
    py(ul2_core::prefix_split(length, r, seed, key))
}

/// `(lo, hi)`: the inclusive range a prefix-LM split of `length` tokens is drawn from.
#[pyfunction]
pub fn _prefix_bounds(length: &Bound<'_, PyAny>, suffix_density: &Bound<'_, PyAny>) -> PyResult<(usize, usize)> {
    let length = arrays::count(length, "length")?;
    let r = arrays::real(suffix_density, "suffix_density")?;
    Ok(ul2_core::prefix_bounds(length, r))
}

/// `(raw length, targets length)` that fill `inputs_length` exactly (T5's helper, exact).
#[pyfunction]
#[pyo3(signature = (inputs_length, noise_density, mean_span_length=None, *, targets_length=None, prompt_length=None, eos=None))]
pub fn plan_span_corruption(
    inputs_length: &Bound<'_, PyAny>,
    noise_density: &Bound<'_, PyAny>,
    mean_span_length: Option<&Bound<'_, PyAny>>,
    targets_length: Option<&Bound<'_, PyAny>>,
    prompt_length: Option<&Bound<'_, PyAny>>,
    eos: Option<&Bound<'_, PyAny>>,
) -> PyResult<(usize, usize)> {
    let inputs_length = arrays::count(inputs_length, "inputs_length")?;
    let params = span_params(noise_density, mean_span_length, None, None)?;
    let targets_length = arrays::optional(targets_length, |t| arrays::count(t, "targets_length"))?;
    let prompt_length = arrays::optional(prompt_length, |p| arrays::count(p, "prompt_length"))?.unwrap_or(0);
    let eos = arrays::optional(eos, |e| arrays::flag(e, "eos"))?.unwrap_or(true);
    let row = py(ul2_core::plan_span_corruption(inputs_length, &params, targets_length, prompt_length, eos, None))?;
    Ok((row.raw_length, row.targets_length))
}

/// `(inputs, targets)` of `tokens` under `mask` in T5's sentinel layout, EOS appended to
/// both when `eos_id` is given.
#[pyfunction]
#[pyo3(signature = (tokens, mask, sentinels, *, eos_id=None))]
pub fn apply_mask<'py>(
    py_: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    sentinels: &Bound<'py, PyAny>,
    eos_id: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let (toks, _) = arrays::tokens(tokens, "tokens", 1)?;
    let mask = arrays::mask(mask, "mask")?;
    let sentinels = sentinels_arg(sentinels)?;
    let eos = arrays::optional(eos_id, |e| arrays::count(e, "eos_id"))?.map(|e| e as i64);
    let strided_mask;
    let mask = if let Some(m) = mask.slice() {
        m
    } else {
        strided_mask = mask.values();
        &strided_mask
    };
    // Narrow dtypes stay 32-bit; 64-bit and uint32 ids need int64 outputs.
    let wide = matches!(toks, Tokens::I64(_) | Tokens::U32(_));
    with_tokens!(&toks, b => {
        let line = b.line()?;
        let mut gathered = Vec::new();
        let tokens = crate::errors::py(line.range(0, line.len(), &mut gathered))?;
        if wide {
            let (inputs, targets) = run_detached(py_, 0, || ul2_core::apply_mask::<_, i64>(tokens, mask, &sentinels, eos))?;
            Ok((inputs.into_pyarray(py_).into_any(), targets.into_pyarray(py_).into_any()))
        } else {
            let (inputs, targets) = run_detached(py_, 0, || ul2_core::apply_mask::<_, i32>(tokens, mask, &sentinels, eos))?;
            Ok((inputs.into_pyarray(py_).into_any(), targets.into_pyarray(py_).into_any()))
        }
    })
}
