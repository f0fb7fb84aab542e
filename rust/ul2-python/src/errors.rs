//! Core errors as Python exceptions: every variant is a `ValueError` (overflow a subclass)
//! but a failed allocation (`MemoryError`) and a bug (`RuntimeError`), with the core's
//! message unchanged.

use pyo3::PyErr;
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyRuntimeError, PyValueError};

pyo3::create_exception!(ul2, SentinelOverflowError, PyValueError, "More noise spans than sentinel ids (on_overflow='error').");

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
        match e.root() {
            ul2_core::Error::SentinelOverflow { .. } => SentinelOverflowError::new_err(msg),
            ul2_core::Error::Internal(_) => PyRuntimeError::new_err(msg),
            ul2_core::Error::OutOfMemory { .. } => PyMemoryError::new_err(msg),
            ul2_core::Error::OutOfRange { .. } => PyIndexError::new_err(msg),
            _ => PyValueError::new_err(msg),
        }
    }
}

/// `Result` with core errors mapped to Python exceptions.
pub fn py<T>(r: ul2_core::Result<T>) -> pyo3::PyResult<T> {
    r.map_err(|e| PyUl2Err(e).into())
}
