//! `DenoisingDataset`: random access to the examples of a token stream.

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ul2_core::{Corpus, DatasetIndex, Documents, Engine, Line, Token};

use crate::arrays::{self, with_tokens};
use crate::collate::{items_engine, keys_arg, to_dict};
use crate::detach::run_detached;
use crate::errors::py;

/// Sample index and pack index over a borrowed token array.
#[pyclass(module = "ul2._ul2", name = "_Dataset", frozen)]
pub struct PyDataset {
    engine: Engine,
    /// The caller's array, kept alive and borrowed again (without a copy) on every call.
    tokens: Py<PyAny>,
    doc_offsets: Option<Vec<u64>>,
    separator: Option<i64>,
    index: DatasetIndex,
}

fn offsets(obj: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<u64>> {
    if let Some(u) = arrays::u64_array(obj, "doc_offsets")? {
        return Ok(ul2_core::finish_offsets(u.values(), n as u64));
    }
    let (t, _) = arrays::tokens(obj, "doc_offsets", 1)?;
    let v: Vec<i64> = with_tokens!(&t, b => b.values().into_iter().map(Token::to_i64).collect());
    if v.iter().any(|&x| x < 0) {
        return Err(PyValueError::new_err("doc_offsets: offsets must be >= 0"));
    }
    Ok(ul2_core::finish_offsets(v.into_iter().map(|x| x as u64).collect(), n as u64))
}

impl PyDataset {
    fn corpus<'a, T: Token>(&'a self, tokens: Line<'a, T>) -> PyResult<Corpus<'a, T>> {
        py(self.engine.corpus(tokens, self.doc_offsets.as_deref(), self.separator))
    }

    fn sample(&self, k: i64) -> PyResult<usize> {
        let n = self.index.index.len() as i64;
        let k2 = if k < 0 { k + n } else { k };
        if !(0..n).contains(&k2) {
            return Err(PyIndexError::new_err(format!("k={k}: sample index out of range for {n} samples")));
        }
        Ok(k2 as usize)
    }
}

#[pymethods]
impl PyDataset {
    /// `collator` carries the mixture, budget and format (built from the same arguments by
    /// `ul2.DenoisingDataset`), so both read them in one place.
    #[new]
    #[pyo3(signature = (tokens, collator, doc_offsets, documents, separator_id))]
    fn new(
        py_: Python<'_>,
        tokens: &Bound<'_, PyAny>,
        collator: &Bound<'_, PyAny>,
        doc_offsets: Option<&Bound<'_, PyAny>>,
        documents: &Bound<'_, PyAny>,
        separator_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let engine = items_engine(collator)?;
        let documents: String = documents
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("documents={}: must be 'concat' or 'respect'", arrays::repr(documents))))?;
        let documents = py(Documents::parse(&documents))?;
        let (t, shape) = arrays::tokens(tokens, "tokens", 1)?;
        let doc_offsets = arrays::optional(doc_offsets, |o| offsets(o, shape[0]))?;
        let separator = arrays::optional(separator_id, |s| arrays::count(s, "separator_id"))?.map(|s| s as i64);
        let e = &engine;
        let index = with_tokens!(&t, b => {
            let corpus = py(e.corpus(b.line()?, doc_offsets.as_deref(), separator))?;
            run_detached(py_, shape[0], || e.index(&corpus, documents))?
        });
        Ok(Self { engine, tokens: tokens.clone().unbind(), doc_offsets, separator, index })
    }

    fn __len__(&self) -> usize {
        self.index.len()
    }

    #[getter]
    fn targets_length(&self) -> Option<usize> {
        self.engine.widths().1
    }
    #[getter]
    fn format(&self) -> &'static str {
        self.engine.format().name()
    }
    /// Heap bytes of the sample index (and pack index, when packed).
    #[getter]
    fn index_bytes(&self) -> usize {
        self.index.heap_bytes()
    }
    #[getter]
    fn num_samples(&self) -> usize {
        self.index.index.len()
    }
    #[getter]
    fn tail(&self) -> u64 {
        self.index.index.tail
    }
    #[getter]
    fn fill_rate(&self) -> f64 {
        self.index.fill_rate
    }
    #[getter]
    fn raw_lengths(&self) -> Vec<usize> {
        self.engine.raw_lengths().to_vec()
    }
    #[getter]
    fn stream_length(&self, py_: Python<'_>) -> PyResult<u64> {
        let (t, _) = arrays::tokens(self.tokens.bind(py_), "tokens", 1)?;
        with_tokens!(&t, b => Ok(self.corpus(b.line()?)?.stream_len()))
    }

    /// Sample `k`'s raw `(start, stop)` in the stream (joined positions in `concat` mode).
    fn span(&self, k: i64) -> PyResult<(u64, u64)> {
        Ok(self.index.index.span(self.sample(k)?))
    }

    /// Sample `k`'s denoiser (index into the mixture).
    fn denoiser(&self, k: i64) -> PyResult<usize> {
        Ok(self.index.index.denoiser(self.sample(k)?))
    }

    /// Samples held by packed row `r` (`range(k, k + 1)` when not packed).
    fn samples(&self, r: i64) -> PyResult<(usize, usize)> {
        let n = self.__len__() as i64;
        let r2 = if r < 0 { r + n } else { r };
        if !(0..n).contains(&r2) {
            return Err(PyIndexError::new_err(format!("r={r}: row index out of range for {n} rows")));
        }
        Ok(self.index.samples(r2 as usize))
    }

    /// Rows `ids` (samples, or packed rows) as a batch dict.
    fn batch<'py>(&self, py_: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let ids = keys_arg(ids, None)?;
        let (t, _) = arrays::tokens(self.tokens.bind(py_), "tokens", 1)?;
        let out = with_tokens!(&t, b => {
            let corpus = self.corpus(b.line()?)?;
            run_detached(py_, self.engine.work(ids.len()), || self.engine.run_items(&corpus, &self.index, &ids))?
        });
        to_dict(py_, out.fields)
    }

    /// Rows `ids` before naming (what a lean shard stores): `first`, `second`
    /// (encoder-decoder), `segments` and `row_starts`.
    fn denoised<'py>(&self, py_: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let ids = keys_arg(ids, None)?;
        let (t, _) = arrays::tokens(self.tokens.bind(py_), "tokens", 1)?;
        let rows = with_tokens!(&t, b => {
            let corpus = self.corpus(b.line()?)?;
            run_detached(py_, self.engine.work(ids.len()), || self.engine.denoise_items(&corpus, &self.index, &ids))?
        });
        crate::shards::rows_dict(py_, rows)
    }
}
