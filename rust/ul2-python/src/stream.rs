//! `DenoisingStream`'s native half: the core's [`Stream`] over documents Python pulls.

use std::any::TypeId;

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ul2_core::{Documents, Line, Resume, Stream, Token};

use crate::arrays::{self, with_tokens};
use crate::collate::{items_engine, to_dict};
use crate::detach::run_detached;
use crate::errors::py;

/// `(key, document, offset, pending, position, items)`: a [`Resume`] as plain values.
type ResumeTuple<'py> = (u64, u64, u64, Bound<'py, PyArray1<i64>>, u64, u64);

/// Documents at least this long are copied with the GIL released.
const PUSH_DETACHED: usize = 1 << 16;

/// The core's stream in the documents' dtype: int64 until the first document says otherwise,
/// and widened to int64 when a later one holds a token the dtype cannot (as NumPy promotes a
/// concatenation).
enum Typed {
    /// `true`: no document pushed yet (the first one picks the dtype).
    I64(Stream<i64>, bool),
    I32(Stream<i32>),
    U16(Stream<u16>),
    U32(Stream<u32>),
}

macro_rules! with_stream {
    ($typed:expr, $s:ident => $body:expr) => {
        match $typed {
            Typed::I64($s, _) => $body,
            Typed::I32($s) => $body,
            Typed::U16($s) => $body,
            Typed::U32($s) => $body,
        }
    };
}

#[pyclass(module = "ul2._ul2", name = "_Stream")]
pub struct PyStream {
    /// `None` only while a push changes it.
    stream: Option<Typed>,
}

impl PyStream {
    fn typed(&self) -> &Typed {
        self.stream.as_ref().expect("a stream outside push")
    }
    fn typed_mut(&mut self) -> &mut Typed {
        self.stream.as_mut().expect("a stream outside push")
    }
}

/// `doc` pushed into `stream`, retyped first when it is fresh and `doc` has another dtype, or
/// widened to int64 when a token does not fit.
fn push_typed<U: Token>(py_: Python<'_>, typed: Typed, doc: Line<'_, U>, len: usize) -> (Typed, PyResult<()>) {
    fn into<T: Token, U: Token>(s: Stream<T>, wrap: fn(Stream<U>) -> Typed, back: fn(Stream<T>) -> Typed) -> Typed {
        s.retype::<U>().map_or_else(|s| back(*s), wrap)
    }
    let (id, fresh): (TypeId, fn(Stream<i64>) -> Typed) = (TypeId::of::<U>(), |s| Typed::I64(s, true));
    let typed = match typed {
        Typed::I64(s, true) if id == TypeId::of::<i32>() => into(s, Typed::I32, fresh),
        Typed::I64(s, true) if id == TypeId::of::<u16>() => into(s, Typed::U16, fresh),
        Typed::I64(s, true) if id == TypeId::of::<u32>() => into(s, Typed::U32, fresh),
        other => other,
    };
    let mut typed = match typed {
        Typed::I64(s, _) => Typed::I64(s, false),
        other => other,
    };
    let pushed = with_stream!(&mut typed, s => push_one(py_, s, doc, len));
    match pushed {
        Ok(true) => (typed, Ok(())),
        Ok(false) => {
            let mut wide = match typed {
                Typed::I64(s, _) => Typed::I64(s, false),
                Typed::I32(s) => Typed::I64(s.retype().unwrap_or_else(|_| unreachable!("i32 fits i64")), false),
                Typed::U16(s) => Typed::I64(s.retype().unwrap_or_else(|_| unreachable!("u16 fits i64")), false),
                Typed::U32(s) => Typed::I64(s.retype().unwrap_or_else(|_| unreachable!("u32 fits i64")), false),
            };
            let r = with_stream!(&mut wide, s => push_one(py_, s, doc, len));
            let r =
                r.and_then(|ok| if ok { Ok(()) } else { Err(PyValueError::new_err("documents[i]: a token does not fit int64")) });
            (wide, r)
        }
        Err(e) => (typed, Err(e)),
    }
}

fn push_one<T: Token, U: Token>(py_: Python<'_>, s: &mut Stream<T>, doc: Line<'_, U>, len: usize) -> PyResult<bool> {
    // A copy of the document: releasing the GIL costs more than a short one takes.
    if len < PUSH_DETACHED { py(s.push(doc)) } else { run_detached(py_, 0, || s.push(doc)) }
}

#[pymethods]
impl PyStream {
    #[new]
    #[pyo3(signature = (collator, documents, separator_id))]
    fn new(collator: &Bound<'_, PyAny>, documents: &str, separator_id: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let engine = items_engine(collator)?;
        let documents = py(Documents::parse(documents))?;
        let separator = arrays::optional(separator_id, |s| arrays::count(s, "separator_id"))?.map(|s| s as i64);
        Ok(Self { stream: Some(Typed::I64(py(Stream::new(engine, documents, separator))?, true)) })
    }

    /// Appends one document (a 1-D token array), cutting the samples it completes.
    fn push(&mut self, py_: Python<'_>, document: &Bound<'_, PyAny>) -> PyResult<()> {
        let (t, shape) = arrays::tokens(document, "documents[i]", 1)?;
        let typed = self.stream.take().expect("a stream outside push");
        let (typed, result) = with_tokens!(&t, b => match b.line() {
            Ok(line) => push_typed(py_, typed, line, shape[0]),
            Err(e) => (typed, Err(e)),
        });
        self.stream = Some(typed);
        result
    }

    /// The source is exhausted: the last packed row closes, the rest is the tail.
    fn finish(&mut self) {
        with_stream!(self.typed_mut(), s => s.finish());
    }

    /// Items ready to emit.
    #[getter]
    fn ready(&self) -> usize {
        with_stream!(self.typed(), s => s.ready_items())
    }

    /// The next `n` ready items (fewer when fewer are ready) as a batch dict; `None` if none.
    fn emit<'py>(&mut self, py_: Python<'py>, n: usize) -> PyResult<Option<Bound<'py, PyDict>>> {
        if n == 0 {
            return Err(PyValueError::new_err("batch_size=0: must be >= 1"));
        }
        let out = with_stream!(self.typed_mut(), s => {
            let work = s.engine().work(n);
            run_detached(py_, work, || s.emit(n))?
        });
        match out {
            Some(out) => Ok(Some(to_dict(py_, out.fields)?)),
            None => Ok(None),
        }
    }

    /// Counts: documents, samples, items, tokens, tail, buffered.
    #[getter]
    fn counts<'py>(&self, py_: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = with_stream!(self.typed(), s => s.counts());
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
        with_stream!(self.typed(), s => s.is_finished())
    }

    #[getter]
    fn format(&self) -> &'static str {
        with_stream!(self.typed(), s => s.engine().format().name())
    }

    #[getter]
    fn raw_lengths(&self) -> Vec<usize> {
        with_stream!(self.typed(), s => s.engine().raw_lengths().to_vec())
    }

    /// Where the stream stands: `(key, document, offset, pending, position, items)`.
    fn resume_point<'py>(&self, py_: Python<'py>) -> ResumeTuple<'py> {
        let r = with_stream!(self.typed(), s => s.resume_point());
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
        with_stream!(self.typed_mut(), s => py(s.resume(&r)))
    }
}
