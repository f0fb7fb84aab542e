//! Core errors as Python exceptions: every variant is a `ValueError` (overflow a subclass)
//! but a failed allocation (`MemoryError`) and a bug (`RuntimeError`), with the core's
//! message unchanged.

use pyo3::PyErr;
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};

pyo3::create_exception!(
    ul2,
    SentinelOverflowError,
    PyValueError,
    "More noise spans than sentinel ids (on_overflow='error')."
);

/// The orphan rule forbids `From<ul2_core::Error> for PyErr`; this newtype carries it.
pub struct PyUl2Err(pub ul2_core::Error);

impl From<ul2_core::Error> for PyUl2Err {
    fn from(e: ul2_core::Error) -> Self {
        Self(e)
    }
}

impl From<PyUl2Err> for PyErr {
    fn from(PyUl2Err(e): PyUl2Err) -> Self {
        let msg = e.to_string();
        match e {
            ul2_core::Error::SentinelOverflow { .. } => SentinelOverflowError::new_err(msg),
            ul2_core::Error::Internal(_) => PyRuntimeError::new_err(msg),
            ul2_core::Error::OutOfMemory { .. } => PyMemoryError::new_err(msg),
            _ => PyValueError::new_err(msg),
        }
    }
}

/// `Result` with core errors mapped to Python exceptions.
pub fn py<T>(r: ul2_core::Result<T>) -> pyo3::PyResult<T> {
    r.map_err(|e| PyUl2Err(e).into())
}

/// `e` with `prefix` in front of its message, same exception type (e.g. naming which
/// denoiser of a mixture failed).
pub fn prefixed(py: pyo3::Python<'_>, e: PyErr, prefix: &str) -> PyErr {
    let msg = format!("{prefix}{}", e.value(py));
    pyo3::types::PyAnyMethods::call1(e.get_type(py).as_any(), (msg,)).map_or(e, PyErr::from_value)
}
