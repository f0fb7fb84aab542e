//! `DenoisingStream`'s native half: the core's [`Stream`] over documents Python pulls.

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ul2_core::{Documents, Resume, Stream};

use crate::arrays::{self, with_tokens};
use crate::collate::{PyCollator, to_dict};
use crate::detach::run_detached;
use crate::errors::py;

/// `(key, document, offset, pending, position, items)`: a [`Resume`] as plain values.
type ResumeTuple<'py> = (u64, u64, u64, Bound<'py, PyArray1<i64>>, u64, u64);

#[pyclass(module = "ul2._ul2", name = "_Stream")]
pub struct PyStream {
    stream: Stream,
}

#[pymethods]
impl PyStream {
    #[new]
    #[pyo3(signature = (collator, documents, separator_id))]
    fn new(collator: &Bound<'_, PyAny>, documents: &str, separator_id: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let engine = collator
            .cast::<PyCollator>()
            .map_err(|_| PyTypeError::new_err("collator: expected ul2._ul2._Collator"))?
            .get()
            .engine()
            .clone()
            .with_denoiser_field();
        let documents = py(Documents::parse(documents))?;
        let separator = arrays::optional(separator_id, |s| arrays::count(s, "separator_id"))?.map(|s| s as i64);
        Ok(Self { stream: py(Stream::new(engine, documents, separator))? })
    }

    /// Appends one document (a 1-D token array), cutting the samples it completes.
    fn push(&mut self, py_: Python<'_>, document: &Bound<'_, PyAny>) -> PyResult<()> {
        let (t, shape) = arrays::tokens(document, "documents[i]", 1)?;
        let stream = &mut self.stream;
        with_tokens!(&t, b => {
            let line = b.line()?;
            run_detached(py_, shape[0], || stream.push(line))
        })
    }

    /// The source is exhausted: the last packed row closes, the rest is the tail.
    fn finish(&mut self) {
        self.stream.finish();
    }

    /// Items ready to emit.
    #[getter]
    fn ready(&self) -> usize {
        self.stream.ready_items()
    }

    /// The next `n` ready items (fewer when fewer are ready) as a batch dict; `None` if none.
    fn emit<'py>(&mut self, py_: Python<'py>, n: usize) -> PyResult<Option<Bound<'py, PyDict>>> {
        if n == 0 {
            return Err(PyValueError::new_err("batch_size=0: must be >= 1"));
        }
        let stream = &mut self.stream;
        let work = stream.engine().work(n);
        match run_detached(py_, work, || stream.emit(n))? {
            Some(out) => Ok(Some(to_dict(py_, out.fields)?)),
            None => Ok(None),
        }
    }

    /// Counts: documents, samples, items, tokens, tail, buffered.
    #[getter]
    fn counts<'py>(&self, py_: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.stream.counts();
        let d = PyDict::new(py_);
        d.set_item("documents", c.documents)?;
        d.set_item("samples", c.samples)?;
        d.set_item("items", c.items)?;
        d.set_item("tokens", c.tokens)?;
        d.set_item("tail", c.tail)?;
        d.set_item("buffered", c.buffered)?;
        Ok(d)
    }

    #[getter]
    fn finished(&self) -> bool {
        self.stream.is_finished()
    }

    #[getter]
    fn format(&self) -> &'static str {
        self.stream.engine().format().name()
    }

    #[getter]
    fn raw_lengths(&self) -> Vec<usize> {
        self.stream.engine().raw_lengths().to_vec()
    }

    /// Where the stream stands: `(key, document, offset, pending, position, items)`.
    fn resume_point<'py>(&self, py_: Python<'py>) -> ResumeTuple<'py> {
        let r = self.stream.resume_point();
        (r.key, r.document, r.offset, r.pending.into_pyarray(py_), r.position, r.items)
    }

    /// Continues from a [`Self::resume_point`] tuple (a stream that has not started).
    #[pyo3(signature = (key, document, offset, pending, position, items))]
    fn resume(
        &mut self,
        key: &Bound<'_, PyAny>,
        document: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        pending: &Bound<'_, PyAny>,
        position: &Bound<'_, PyAny>,
        items: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let n = |o: &Bound<'_, PyAny>, name: &str| arrays::seed(o, name);
        let (p, _) = arrays::tokens(pending, "state['pending']", 1)?;
        let pending: Vec<i64> = with_tokens!(&p, b => b.values().into_iter().map(ul2_core::Token::to_i64).collect());
        let r = Resume {
            key: n(key, "state['key']")?,
            document: n(document, "state['document']")?,
            offset: n(offset, "state['offset']")?,
            pending,
            position: n(position, "state['position']")?,
            items: n(items, "state['items']")?,
        };
        py(self.stream.resume(&r))
    }
}
