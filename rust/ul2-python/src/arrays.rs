//! User-facing arguments: arrays dispatched by dtype and scalars checked by hand, so every
//! message names the argument (PyO3's own extraction errors do not).

use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyRange, PyTuple};
use ul2_core::{Line, Rows, Strided};

/// A read-only borrow of one array argument (no copy).
pub struct Borrowed<'py, T: Element> {
    array: PyReadonlyArrayDyn<'py, T>,
}

/// Element types read out of raw array memory (any alignment, native byte order).
pub trait Raw: Element + Copy {
    fn read(bytes: &[u8]) -> Self;
}

macro_rules! raw {
    ($($t:ty),*) => {$(
        impl Raw for $t {
            fn read(bytes: &[u8]) -> Self {
                <Self as ul2_core::Token>::from_ne_slice(bytes)
            }
        }
    )*};
}
raw!(i32, i64, u16, u32);

impl Raw for u64 {
    fn read(bytes: &[u8]) -> Self {
        let mut b = [0; 8];
        b.copy_from_slice(bytes);
        Self::from_ne_bytes(b)
    }
}

impl Raw for bool {
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

impl<T: Raw> Borrowed<'_, T> {
    /// The elements as one slice, when C-contiguous and aligned.
    pub fn slice(&self) -> Option<&[T]> {
        // `as_slice` also accepts Fortran order, whose rows are not contiguous.
        let c_order = self.array.is_c_contiguous() || self.array.ndim() <= 1;
        c_order.then(|| self.array.as_slice().ok()).flatten()
    }

    /// The memory that holds every element, element 0's byte offset in it, and each
    /// axis's stride in bytes: how strided, Fortran-order and misaligned arrays are read
    /// in place.
    fn raw(&self) -> (&[u8], usize, Vec<isize>) {
        let (shape, strides) = (self.array.shape(), self.array.strides().to_vec());
        if shape.contains(&0) {
            return (&[], 0, strides);
        }
        let (mut low, mut high) = (0isize, 0isize);
        for (&n, &st) in shape.iter().zip(&strides) {
            let reach = (n as isize - 1) * st;
            if reach < 0 { low += reach } else { high += reach }
        }
        let extent = (high - low) as usize + size_of::<T>();
        // SAFETY: NumPy places every element of an array inside its buffer, so the bytes
        // from the lowest element's address to the end of the highest element are one
        // allocation, alive while the array is borrowed (the borrow holds a reference to
        // it), and the read-only borrow keeps writers that rust-numpy tracks away: the
        // same guarantee `as_slice` gives. Only element bytes are ever read from them.
        let bytes = unsafe { std::slice::from_raw_parts(self.array.data().cast::<u8>().cast_const().offset(low), extent) };
        (bytes, (-low) as usize, strides)
    }

    /// A 1-D array's elements in order, copied (for small arguments: keys, offsets, masks).
    pub fn values(&self) -> Vec<T> {
        if let Some(s) = self.slice() {
            return s.to_vec();
        }
        let (bytes, origin, strides) = self.raw();
        let n = self.array.len();
        (0..n)
            .map(|i| {
                let at = (origin as isize + i as isize * strides[0]) as usize;
                T::read(&bytes[at..at + size_of::<T>()])
            })
            .collect()
    }
}

impl<T: Raw + ul2_core::Token> Borrowed<'_, T> {
    /// A 1-D array's tokens: a slice, or read through its stride.
    pub fn line(&self) -> PyResult<Line<'_, T>> {
        if let Some(s) = self.slice() {
            return Ok(Line::Slice(s));
        }
        let (bytes, origin, strides) = self.raw();
        Ok(Line::Strided(crate::errors::py(Strided::new(bytes, origin, strides[0], self.array.len()))?))
    }

    /// A 2-D array's rows: one C-contiguous block, or each row read through its strides.
    pub fn rows(&self) -> PyResult<Rows<'_, T>> {
        let shape = self.array.shape();
        let (rows, width) = (shape[0], shape[1]);
        if let Some(data) = self.slice() {
            return Ok(Rows::Dense { data, rows, width });
        }
        let (bytes, origin, strides) = self.raw();
        let lines = (0..rows)
            .map(|i| {
                let at = (origin as isize + i as isize * strides[0]) as usize;
                crate::errors::py(Strided::new(bytes, at, strides[1], width)).map(Line::Strided)
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Rows::Lines(lines))
    }
}

/// A token-id array of one of the supported dtypes.
pub enum Tokens<'py> {
    I32(Borrowed<'py, i32>),
    I64(Borrowed<'py, i64>),
    U16(Borrowed<'py, u16>),
    U32(Borrowed<'py, u32>),
}

/// Runs `$body` with `$slice: &[T]` for the dtype of `$tokens` (monomorphised per dtype).
macro_rules! with_tokens {
    ($tokens:expr, $b:ident => $body:expr) => {
        match $tokens {
            $crate::arrays::Tokens::I32($b) => $body,
            $crate::arrays::Tokens::I64($b) => $body,
            $crate::arrays::Tokens::U16($b) => $body,
            $crate::arrays::Tokens::U32($b) => $body,
        }
    };
}
pub(crate) use with_tokens;

impl Tokens<'_> {
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Self::I32(_) => "int32",
            Self::I64(_) => "int64",
            Self::U16(_) => "uint16",
            Self::U32(_) => "uint32",
        }
    }
}

/// Selects the borrow of dtype `Self` from a [`Tokens`], for ragged lists of one dtype.
pub trait Pick: Raw + ul2_core::Token {
    fn pick<'a, 'py>(t: &'a Tokens<'py>) -> Option<&'a Borrowed<'py, Self>>;
}

macro_rules! pick {
    ($($t:ty => $v:ident),*) => {$(
        impl Pick for $t {
            fn pick<'a, 'py>(t: &'a Tokens<'py>) -> Option<&'a Borrowed<'py, Self>> {
                if let Tokens::$v(b) = t { Some(b) } else { None }
            }
        }
    )*};
}
pick!(i32 => I32, i64 => I64, u16 => U16, u32 => U32);

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// `obj` as a NumPy array; lists, tuples and ranges go through `numpy.asarray`.
pub fn as_array<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PyRange>() {
        let arr = obj.py().import("numpy")?.call_method1("asarray", (obj,))?;
        return Ok(arr.cast_into::<PyUntypedArray>()?);
    }
    Err(PyTypeError::new_err(format!("{arg}: expected a numpy array of integers, got {}", type_name(obj))))
}

/// Borrows `arr`, whose dtype the caller has checked to be `T`'s.
fn borrow<'py, T: Element>(arr: &Bound<'py, PyUntypedArray>, arg: &'static str) -> PyResult<Borrowed<'py, T>> {
    debug_assert!(arr.dtype().is_equiv_to(&numpy::dtype::<T>(arr.py())));
    // SAFETY: `arr` is an array (its type is `PyUntypedArray`) of `T`'s dtype, checked by
    // every caller: a checked cast would look the dtype up a second time, on every row.
    let array = unsafe { arr.cast_unchecked::<PyArrayDyn<T>>() }
        .try_readonly()
        .map_err(|_| PyValueError::new_err(format!("{arg}: array is being written to elsewhere")))?;
    Ok(Borrowed { array })
}

/// Borrows a token-id array of a supported dtype with `ndim` dimensions; returns its shape.
pub fn tokens<'py>(obj: &Bound<'py, PyAny>, arg: &'static str, ndim: usize) -> PyResult<(Tokens<'py>, Vec<usize>)> {
    let arr = as_array(obj, arg)?;
    if arr.ndim() != ndim {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected a {ndim}-D array, got {}-D with shape {:?}",
            arr.ndim(),
            arr.shape()
        )));
    }
    let shape = arr.shape().to_vec();
    let py = obj.py();
    let dtype = arr.dtype();
    let t = if dtype.is_equiv_to(&numpy::dtype::<i32>(py)) {
        Tokens::I32(borrow(&arr, arg)?)
    } else if dtype.is_equiv_to(&numpy::dtype::<i64>(py)) {
        Tokens::I64(borrow(&arr, arg)?)
    } else if dtype.is_equiv_to(&numpy::dtype::<u16>(py)) {
        Tokens::U16(borrow(&arr, arg)?)
    } else if dtype.is_equiv_to(&numpy::dtype::<u32>(py)) {
        Tokens::U32(borrow(&arr, arg)?)
    } else {
        return Err(PyTypeError::new_err(format!(
            "{arg}: dtype {} is not supported; use integers of dtype int32, int64, uint16 or uint32",
            dtype.str()?
        )));
    };
    Ok((t, shape))
}

/// A 1-D `uint64` array (keys of `[0, 2**64)`), or `None` for other dtypes.
pub fn u64_array<'py>(obj: &Bound<'py, PyAny>, arg: &'static str) -> PyResult<Option<Borrowed<'py, u64>>> {
    let arr = as_array(obj, arg)?;
    if !arr.dtype().is_equiv_to(&numpy::dtype::<u64>(obj.py())) {
        return Ok(None);
    }
    if arr.ndim() != 1 {
        return Err(PyValueError::new_err(format!("{arg}: expected a 1-D array, got {}-D", arr.ndim())));
    }
    borrow(&arr, arg).map(Some)
}

/// A 1-D bool array (a noise mask).
pub fn mask<'py>(obj: &Bound<'py, PyAny>, arg: &'static str) -> PyResult<Borrowed<'py, bool>> {
    let arr = as_array(obj, arg)?;
    if arr.ndim() != 1 {
        return Err(PyValueError::new_err(format!("{arg}: expected a 1-D array, got {}-D", arr.ndim())));
    }
    if !arr.dtype().is_equiv_to(&numpy::dtype::<bool>(obj.py())) {
        return Err(PyTypeError::new_err(format!("{arg}: dtype {} is not supported; expected bool", arr.dtype().str()?)));
    }
    borrow(&arr, arg)
}

/// A non-negative integer argument (bool and float refused).
pub fn count(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<usize> {
    let v = int(obj, arg)?;
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{arg}={v}: must be >= 0")))
}

/// An integer argument (bool and float refused).
pub fn int(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<i64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() && !is_numpy_integer(obj) {
        return Err(PyTypeError::new_err(format!("{arg}={}: must be an int, got {}", repr(obj), type_name(obj))));
    }
    obj.extract::<i64>().map_err(|_| PyValueError::new_err(format!("{arg}={}: out of range for a 64-bit integer", repr(obj))))
}

/// A `bool` argument (ints refused).
pub fn flag(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<bool> {
    obj.cast::<PyBool>()
        .map(pyo3::types::PyBoolMethods::is_true)
        .map_err(|_| PyTypeError::new_err(format!("{arg}={}: must be True or False", repr(obj))))
}

/// A seed or key: an integer in `[0, 2^64)`.
pub fn seed(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<u64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() && !is_numpy_integer(obj) {
        return Err(PyTypeError::new_err(format!("{arg}={}: must be an int, got {}", repr(obj), type_name(obj))));
    }
    obj.extract::<u64>().map_err(|_| PyValueError::new_err(format!("{arg}={}: must be an int in [0, 2**64)", repr(obj))))
}

/// A real-number argument (int or float; bool refused). Range checks are the core's.
pub fn real(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<f64> {
    let ok = !obj.is_instance_of::<PyBool>()
        && (obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>() || is_numpy_number(obj));
    if !ok {
        return Err(PyTypeError::new_err(format!("{arg}={}: must be a number, got {}", repr(obj), type_name(obj))));
    }
    obj.extract::<f64>().map_err(|_| {
        let msg = format!("{arg}={}: too large for a float", repr(obj));
        if obj.is_instance_of::<PyInt>() { PyValueError::new_err(msg) } else { PyTypeError::new_err(msg) }
    })
}

/// An optional argument: `None` or whatever `f` accepts.
pub fn optional<T>(obj: Option<&Bound<'_, PyAny>>, f: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>) -> PyResult<Option<T>> {
    match obj {
        Some(o) if !o.is_none() => f(o).map(Some),
        _ => Ok(None),
    }
}

/// A sequence of token ids (a prompt, sentinel ids): ints >= 0.
pub fn ids(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<Vec<i64>> {
    let list: Vec<Bound<'_, PyAny>> = obj
        .try_iter()
        .map_err(|_| PyTypeError::new_err(format!("{arg}: expected a sequence of int token ids, got {}", type_name(obj))))?
        .collect::<PyResult<_>>()?;
    list.iter()
        .enumerate()
        .map(|(i, o)| {
            let v = int(o, &format!("{arg}[{i}]"))?;
            if v < 0 {
                return Err(PyValueError::new_err(format!("{arg}[{i}]={v}: token ids must be >= 0")));
            }
            Ok(v)
        })
        .collect()
}

fn is_numpy_integer(obj: &Bound<'_, PyAny>) -> bool {
    numpy_isinstance(obj, "integer")
}

fn is_numpy_number(obj: &Bound<'_, PyAny>) -> bool {
    numpy_isinstance(obj, "integer") || numpy_isinstance(obj, "floating")
}

fn numpy_isinstance(obj: &Bound<'_, PyAny>, name: &str) -> bool {
    obj.py().import("numpy").and_then(|np| np.getattr(name)).and_then(|t| obj.is_instance(&t)).unwrap_or(false)
}

pub fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string())
}
