//! `DenoisingDataset`: random access to the examples of a token stream.

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ul2_core::{Corpus, Documents, Line, SampleIndex, Samples, Token};

use crate::arrays::{self, with_tokens};
use crate::collate::{Bins, Engine, PyCollator, keys_arg};
use crate::detach::run_detached;
use crate::errors::py;

/// Row grouping that never asks for lengths (a dataset's rows are packed at construction).
type NoLengths = fn(usize) -> usize;

/// Sample index and pack index over a borrowed token array.
#[pyclass(module = "ul2._ul2", name = "_Dataset", frozen)]
pub struct PyDataset {
    engine: Engine,
    /// The caller's array, kept alive and borrowed again (without a copy) on every call.
    tokens: Py<PyAny>,
    doc_offsets: Option<Vec<u64>>,
    separator: Option<i64>,
    index: SampleIndex,
    /// Packed: row `r` holds samples `rows[r]..rows[r + 1]`.
    rows: Option<Vec<usize>>,
    fill_rate: f64,
}

fn offsets(obj: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<u64>> {
    if let Some(u) = arrays::u64_array(obj, "doc_offsets")? {
        return Ok(finish_offsets(u.values(), n));
    }
    let (t, _) = arrays::tokens(obj, "doc_offsets", 1)?;
    let v: Vec<i64> = with_tokens!(&t, b => b.values().into_iter().map(Token::to_i64).collect());
    let negative = v.iter().any(|&x| x < 0);
    if negative {
        return Err(PyValueError::new_err("doc_offsets: offsets must be >= 0"));
    }
    Ok(finish_offsets(v.into_iter().map(|x| x as u64).collect(), n))
}

/// Accepts document starts without the final end (a common form) by appending it.
fn finish_offsets(mut v: Vec<u64>, n: usize) -> Vec<u64> {
    if v.last().is_some_and(|&l| l < n as u64) {
        v.push(n as u64);
    }
    if v.is_empty() {
        v = vec![0, n as u64];
    }
    v
}

/// Every sample can be denoised: its lengths are bounded without denoising it.
fn check_samples(cfg: &ul2_core::RowConfig<'_>, index: &SampleIndex) -> ul2_core::Result<()> {
    use rayon::prelude::*;
    // The first failing sample, whatever the scheduling.
    let failure = (0..index.len()).into_par_iter().find_map_first(|k| {
        let (a, b) = index.span(k);
        ul2_core::example_bounds(cfg, (b - a) as usize, k as u64).err().map(|e| ul2_core::Error::Invalid {
            arg: "documents",
            value: "'respect'".into(),
            reason: format!("sample {k} ({} tokens, a document's end) cannot be denoised: {e}", b - a),
        })
    });
    failure.map_or(Ok(()), Err)
}

fn corpus<'a, T: Token>(tokens: Line<'a, T>, doc_offsets: Option<&'a [u64]>, separator: Option<i64>) -> PyResult<Corpus<'a, T>> {
    let separator = match separator {
        None => None,
        Some(s) => Some(
            T::try_from_i64(s)
                .ok_or_else(|| PyValueError::new_err(format!("separator_id={s}: does not fit the dtype of tokens")))?,
        ),
    };
    Ok(Corpus { tokens, doc_offsets, separator })
}

impl PyDataset {
    fn corpus<'a, T: Token>(&'a self, tokens: Line<'a, T>) -> PyResult<Corpus<'a, T>> {
        corpus(tokens, self.doc_offsets.as_deref(), self.separator)
    }

    fn sample(&self, k: i64) -> PyResult<usize> {
        let n = self.index.len() as i64;
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
        let mut engine = collator
            .cast::<PyCollator>()
            .map_err(|_| PyTypeError::new_err("collator: expected ul2._ul2._Collator"))?
            .get()
            .engine()
            .clone();
        // Every dataset batch says which denoiser made each example.
        engine.options.denoiser = true;
        let documents: String = documents
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("documents={}: must be 'concat' or 'respect'", arrays::repr(documents))))?;
        let documents = py(Documents::parse(&documents))?;
        let (t, shape) = arrays::tokens(tokens, "tokens", 1)?;
        let doc_offsets = arrays::optional(doc_offsets, |o| offsets(o, shape[0]))?;
        let separator = arrays::optional(separator_id, |s| arrays::count(s, "separator_id"))?.map(|s| s as i64);
        if let Some(s) = separator {
            py(engine.sentinels.check_id("separator_id", s, engine.max_id()))?;
        }
        let e = &engine;
        let (index, rows, fill_rate) = with_tokens!(&t, b => {
            let corpus = corpus(b.line()?, doc_offsets.as_deref(), separator)?;
            run_detached(py_, shape[0], || {
                let index = SampleIndex::build(&corpus, &e.mixture, &e.raw_lengths, documents, e.seed)?;
                if !e.options.packed {
                    if documents == Documents::Respect {
                        // Documents' short last samples may not fit their denoiser (e.g. fewer
                        // tokens than num_spans needs): say so now, not at some later ds[k].
                        check_samples(&e.cfg(), &index)?;
                    }
                    return Ok((index, None, 0.0));
                }
                let keys: Vec<u64> = (0..index.len() as u64).collect();
                let span = |i: usize| {
                    let (a, b) = index.span(i);
                    (b - a) as usize
                };
                // Bounds are exact but for random_roll, so this is the fill rate (or a hair above).
                let (rows, used) = ul2_core::pack(&e.cfg(), span, &keys, e.layout)?;
                let (w0, w1) = e.layout.widths;
                let fill = used as f64 / ((rows.len().saturating_sub(1)) * (w0 + w1)).max(1) as f64;
                Ok((index, Some(rows), fill))
            })?
        });
        Ok(Self { engine, tokens: tokens.clone().unbind(), doc_offsets, separator, index, rows, fill_rate })
    }

    fn __len__(&self) -> usize {
        self.rows.as_ref().map_or(self.index.len(), |r| r.len().saturating_sub(1))
    }

    #[getter]
    fn targets_length(&self) -> Option<usize> {
        self.engine.budget().1
    }
    #[getter]
    fn format(&self) -> &'static str {
        self.engine.format_name()
    }
    /// Heap bytes of the sample index (and pack index, when packed).
    #[getter]
    fn index_bytes(&self) -> usize {
        self.index.heap_bytes() + self.rows.as_ref().map_or(0, |r| r.capacity() * size_of::<usize>())
    }
    #[getter]
    fn num_samples(&self) -> usize {
        self.index.len()
    }
    #[getter]
    fn tail(&self) -> u64 {
        self.index.tail
    }
    #[getter]
    fn fill_rate(&self) -> f64 {
        self.fill_rate
    }
    #[getter]
    fn raw_lengths(&self) -> Vec<usize> {
        self.engine.raw_lengths.clone()
    }
    #[getter]
    fn stream_length(&self, py_: Python<'_>) -> PyResult<u64> {
        let (t, _) = arrays::tokens(self.tokens.bind(py_), "tokens", 1)?;
        with_tokens!(&t, b => Ok(self.corpus(b.line()?)?.stream_len()))
    }

    /// Sample `k`'s raw `(start, stop)` in the stream (joined positions in `concat` mode).
    fn span(&self, k: i64) -> PyResult<(u64, u64)> {
        Ok(self.index.span(self.sample(k)?))
    }

    /// Sample `k`'s denoiser (index into the mixture).
    fn denoiser(&self, k: i64) -> PyResult<usize> {
        Ok(self.index.denoiser(self.sample(k)?))
    }

    /// Samples held by packed row `r` (`range(k, k + 1)` when not packed).
    fn samples(&self, r: i64) -> PyResult<(usize, usize)> {
        let n = self.__len__() as i64;
        let r2 = if r < 0 { r + n } else { r };
        if !(0..n).contains(&r2) {
            return Err(PyIndexError::new_err(format!("r={r}: row index out of range for {n} rows")));
        }
        let r2 = r2 as usize;
        Ok(self.rows.as_ref().map_or((r2, r2 + 1), |rows| (rows[r2], rows[r2 + 1])))
    }

    /// Rows `ids` (samples, or packed rows) as a batch dict.
    fn batch<'py>(&self, py_: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let n = self.__len__() as u64;
        let ids = keys_arg(ids, None)?;
        if ids.is_empty() {
            return Err(PyValueError::new_err("keys: empty batch (0 keys)"));
        }
        if let Some(&bad) = ids.iter().find(|&&k| k >= n) {
            return Err(PyIndexError::new_err(format!("keys: {bad} is out of range for a dataset of {n} rows")));
        }
        let (samples, bins): (Vec<u64>, Bins<NoLengths>) = match &self.rows {
            None => (ids, Bins::One),
            Some(rows) => {
                let mut samples = Vec::new();
                let mut bins = vec![0];
                for &r in &ids {
                    samples.extend(rows[r as usize] as u64..rows[r as usize + 1] as u64);
                    bins.push(samples.len());
                }
                (samples, Bins::Given(bins))
            }
        };
        let (t, _) = arrays::tokens(self.tokens.bind(py_), "tokens", 1)?;
        with_tokens!(&t, b => {
            let source = Samples { corpus: self.corpus(b.line()?)?, index: &self.index, ids: &samples };
            Ok(self.engine.run(py_, &source, &samples, bins)?.0)
        })
    }
}
