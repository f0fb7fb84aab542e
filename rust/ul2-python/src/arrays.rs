//! User-facing arguments: arrays dispatched by dtype and scalars checked by hand, so every
//! message names the argument (PyO3's own extraction errors do not).

use numpy::{Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyRange, PyTuple};

/// A read-only borrow of one array argument (no copy), with the argument's name.
pub struct Borrowed<'py, T: Element> {
    array: PyReadonlyArrayDyn<'py, T>,
    pub arg: &'static str,
}

impl<T: Element> Borrowed<'_, T> {
    /// The elements as one slice; non-contiguous input is refused rather than copied.
    pub fn slice(&self) -> PyResult<&[T]> {
        // `as_slice` also accepts Fortran order, whose rows are not contiguous.
        let c_order = self.array.is_c_contiguous() || self.array.ndim() <= 1;
        c_order.then(|| self.array.as_slice().ok()).flatten().ok_or_else(|| {
            PyValueError::new_err(format!(
                "{}: array is not C-contiguous (a strided view or Fortran order); pass numpy.ascontiguousarray(...)",
                self.arg
            ))
        })
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
pub trait Pick: Element + ul2_core::Token {
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
    Err(PyTypeError::new_err(format!(
        "{arg}: expected a numpy array of integers, got {}",
        type_name(obj)
    )))
}

fn borrow<'py, T: Element>(arr: &Bound<'py, PyUntypedArray>, arg: &'static str) -> PyResult<Borrowed<'py, T>> {
    let array = arr
        .cast::<PyArrayDyn<T>>()?
        .try_readonly()
        .map_err(|_| PyValueError::new_err(format!("{arg}: array is being written to elsewhere")))?;
    Ok(Borrowed { array, arg })
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
    obj.extract::<i64>()
        .map_err(|_| PyValueError::new_err(format!("{arg}={}: out of range for a 64-bit integer", repr(obj))))
}

/// A seed or key: an integer in `[0, 2^64)`.
pub fn seed(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<u64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() && !is_numpy_integer(obj) {
        return Err(PyTypeError::new_err(format!("{arg}={}: must be an int, got {}", repr(obj), type_name(obj))));
    }
    obj.extract::<u64>()
        .map_err(|_| PyValueError::new_err(format!("{arg}={}: must be an int in [0, 2**64)", repr(obj))))
}

/// A real-number argument (int or float; bool refused). Range checks are the core's.
pub fn real(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<f64> {
    let ok = !obj.is_instance_of::<PyBool>()
        && (obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>() || is_numpy_number(obj));
    if !ok {
        return Err(PyTypeError::new_err(format!("{arg}={}: must be a number, got {}", repr(obj), type_name(obj))));
    }
    obj.extract::<f64>()
        .map_err(|_| PyTypeError::new_err(format!("{arg}={}: must be a number", repr(obj))))
}

/// An optional argument: `None` or whatever `f` accepts.
pub fn optional<T>(
    obj: Option<&Bound<'_, PyAny>>,
    f: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>,
) -> PyResult<Option<T>> {
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
    obj.py()
        .import("numpy")
        .and_then(|np| np.getattr(name))
        .and_then(|t| obj.is_instance(&t))
        .unwrap_or(false)
}

pub fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string())
}
