//! Lean shards: a dataset's rows before naming, and the named arrays rebuilt from them.

use numpy::{Element, IntoPyArray, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ul2_core::{
    Denoised, DenoisedRows, Family, Field, Fields, Format, Layout, Options, OutToken, SEGMENT_COLUMNS, Segment, Selection,
};

use crate::arrays::{self, Borrowed, Raw, Tokens, with_tokens};
use crate::collate::to_dict;
use crate::detach::run_detached;
use crate::errors::py;

/// `rows` as NumPy arrays (the buffers without a copy): `first` `[rows, width]`, `second`
/// (encoder-decoder only), `segments` `[n, 3]` (denoiser, inputs, targets) and `row_starts`.
pub fn rows_dict(py_: Python<'_>, rows: DenoisedRows) -> PyResult<Bound<'_, PyDict>> {
    fn put<'py, O: Element>(py_: Python<'py>, out: &Bound<'py, PyDict>, d: Denoised<O>) -> PyResult<()> {
        let (w0, w1) = d.widths;
        out.set_item("first", d.first.into_pyarray(py_).reshape([d.rows, w0])?)?;
        if d.family == Family::EncoderDecoder {
            out.set_item("second", d.second.into_pyarray(py_).reshape([d.rows, w1])?)?;
        }
        let n = d.segments.len();
        out.set_item("segments", Segment::table(&d.segments).into_pyarray(py_).reshape([n, SEGMENT_COLUMNS])?)?;
        let starts: Vec<i64> = d.row_starts.iter().map(|&s| s as i64).collect();
        out.set_item("row_starts", starts.into_pyarray(py_))
    }
    let out = PyDict::new(py_);
    match rows {
        DenoisedRows::Int32(d) => put(py_, &out, d)?,
        DenoisedRows::Int64(d) => put(py_, &out, d)?,
    }
    Ok(out)
}

/// The elements of a C-contiguous array argument.
fn contiguous<'a, T: Raw>(b: &'a Borrowed<'_, T>, arg: &str) -> PyResult<&'a [T]> {
    b.slice().ok_or_else(|| PyValueError::new_err(format!("{arg}: expected a C-contiguous array")))
}

/// A 2-D table argument of integers as `i64`, with its shape.
fn table(obj: &Bound<'_, PyAny>, arg: &'static str, ndim: usize) -> PyResult<(Vec<i64>, Vec<usize>)> {
    let (t, shape) = arrays::tokens(obj, arg, ndim)?;
    let values = with_tokens!(&t, b => contiguous(b, arg)?.iter().map(|&v| ul2_core::Token::to_i64(v)).collect());
    Ok((values, shape))
}

/// What every dtype of the rebuild shares: the format, its options and the segment table.
struct Naming {
    format: Format,
    pad: i64,
    options: Options,
    segments: Vec<i64>,
    row_starts: Vec<i64>,
}

fn rebuild<'py, O: OutToken + Raw>(
    py_: Python<'py>,
    n: &Naming,
    first: (&Borrowed<'_, O>, usize),
    second: Option<(&Borrowed<'_, O>, usize)>,
    wrap: fn(Vec<Field<O>>) -> Fields,
) -> PyResult<Bound<'py, PyDict>> {
    if !(0..=O::MAX).contains(&n.pad) {
        return Err(PyValueError::new_err(format!("pad_id={}: does not fit the arrays' dtype", n.pad)));
    }
    let (a, w0) = (contiguous(first.0, "first")?, first.1);
    let (b, w1) = match second {
        Some((b, w1)) => (contiguous(b, "second")?, w1),
        None => (&[][..], 0),
    };
    let layout = Layout { family: n.format.family(), widths: (w0, w1) };
    let fields = run_detached(py_, a.len() + b.len(), || {
        let d = Denoised::from_table(layout, a.to_vec(), b.to_vec(), &n.segments, &n.row_starts)?;
        ul2_core::reformat(d, n.format, O::from_i64(n.pad), n.options)
    })?;
    to_dict(py_, wrap(fields))
}

/// The named arrays of `format` (its outputs `fields`, in the formatter's order) rebuilt
/// from a lean shard's arrays, as the dataset that wrote them names its items.
#[pyfunction]
#[pyo3(signature = (format, pad_id, pack, bidirectional_mask, fields, first, second, segments, row_starts))]
#[allow(clippy::too_many_arguments)] // one per stored array and option, as Python passes them
pub fn _format_rows<'py>(
    py_: Python<'py>,
    format: &Bound<'py, PyAny>,
    pad_id: &Bound<'py, PyAny>,
    pack: &Bound<'py, PyAny>,
    bidirectional_mask: &Bound<'py, PyAny>,
    fields: &Bound<'py, PyAny>,
    first: &Bound<'py, PyAny>,
    second: Option<&Bound<'py, PyAny>>,
    segments: &Bound<'py, PyAny>,
    row_starts: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let name: String =
        format.extract().map_err(|_| PyTypeError::new_err(format!("format={}: must be a str", arrays::repr(format))))?;
    let format = py(Format::parse(&name))?;
    let names: Vec<String> = fields
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("fields={}: must be a list of output names", arrays::repr(fields))))?;
    let mut options = Options {
        packed: arrays::flag(pack, "pack")?,
        bidirectional_mask: arrays::flag(bidirectional_mask, "bidirectional_mask")?,
        denoiser: names.iter().any(|n| n == "denoiser"),
        fields: None,
    };
    options.fields = Some(py(Selection::new(format, options, &names))?);
    let (segments, shape) = table(segments, "segments", 2)?;
    if shape[1] != SEGMENT_COLUMNS {
        return Err(PyValueError::new_err(format!("segments: expected shape [n, 3], got {shape:?}")));
    }
    let (row_starts, _) = table(row_starts, "row_starts", 1)?;
    let naming = Naming { format, pad: arrays::int(pad_id, "pad_id")?, options, segments, row_starts };
    let (first, shape) = arrays::tokens(first, "first", 2)?;
    let second = match (format.family(), second.filter(|s| !s.is_none())) {
        (Family::EncoderDecoder, Some(s)) => Some(arrays::tokens(s, "second", 2)?),
        (Family::EncoderDecoder, None) => {
            return Err(PyValueError::new_err(format!("second: format {name:?} needs the targets buffer")));
        }
        (Family::Decoder, Some(_)) => {
            return Err(PyValueError::new_err(format!("second: format {name:?} has no targets buffer; pass None")));
        }
        (Family::Decoder, None) => None,
    };
    let (w0, w1) = (shape[1], second.as_ref().map_or(0, |(_, s)| s[1]));
    let mismatch = |s: &Tokens<'_>| {
        PyTypeError::new_err(format!("second: dtype {} differs from first's {}", s.dtype_name(), first.dtype_name()))
    };
    match (&first, second.as_ref().map(|(s, _)| s)) {
        (Tokens::I32(a), None) => rebuild(py_, &naming, (a, w0), None, Fields::Int32),
        (Tokens::I32(a), Some(Tokens::I32(b))) => rebuild(py_, &naming, (a, w0), Some((b, w1)), Fields::Int32),
        (Tokens::I64(a), None) => rebuild(py_, &naming, (a, w0), None, Fields::Int64),
        (Tokens::I64(a), Some(Tokens::I64(b))) => rebuild(py_, &naming, (a, w0), Some((b, w1)), Fields::Int64),
        (Tokens::I32(_) | Tokens::I64(_), Some(s)) => Err(mismatch(s)),
        (t, _) => {
            Err(PyTypeError::new_err(format!("first: dtype {} is not an output dtype; expected int32 or int64", t.dtype_name())))
        }
    }
}
