//! Python dicts as the core's named [`Arguments`]: each key is read under its own name with
//! the checks of [`crate::arrays`], so a message names the argument the caller passed.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use ul2_core::{Arguments, Config, Mixture};

use crate::arrays;
use crate::errors::PyUl2Err;

/// A Python error or a core one, so the core's readers can return either.
pub struct ArgError(pub PyErr);

impl From<ul2_core::Error> for ArgError {
    fn from(e: ul2_core::Error) -> Self {
        Self(PyUl2Err(e).into())
    }
}

impl From<PyErr> for ArgError {
    fn from(e: PyErr) -> Self {
        Self(e)
    }
}

impl From<ArgError> for PyErr {
    fn from(ArgError(e): ArgError) -> Self {
        e
    }
}

/// One dict of arguments.
pub struct Args<'py>(Bound<'py, PyDict>);

impl<'py> Args<'py> {
    pub fn new(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        obj.cast::<PyDict>()
            .map(|d| Self(d.clone()))
            .map_err(|_| PyTypeError::new_err(format!("{what}: expected a dict, got {}", arrays::repr(obj))))
    }

    /// The value at `name`, `None` when missing or `None`.
    fn get(&self, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.0.get_item(name)?.filter(|v| !v.is_none()))
    }

    fn read<T>(&self, name: &'static str, f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>) -> Result<Option<T>, ArgError> {
        Ok(self.get(name)?.map(|v| f(&v)).transpose()?)
    }
}

impl Arguments for Args<'_> {
    type Error = ArgError;
    fn real(&self, name: &'static str) -> Result<Option<f64>, ArgError> {
        self.read(name, |v| arrays::real(v, name))
    }
    fn count(&self, name: &'static str) -> Result<Option<usize>, ArgError> {
        self.read(name, |v| arrays::count(v, name))
    }
    fn int(&self, name: &'static str) -> Result<Option<i64>, ArgError> {
        self.read(name, |v| arrays::int(v, name))
    }
    fn seed(&self, name: &'static str) -> Result<Option<u64>, ArgError> {
        self.read(name, |v| arrays::seed(v, name))
    }
    fn flag(&self, name: &'static str) -> Result<Option<bool>, ArgError> {
        self.read(name, |v| arrays::flag(v, name))
    }
    fn text(&self, name: &'static str) -> Result<Option<String>, ArgError> {
        self.read(name, |v| v.extract().map_err(|_| PyTypeError::new_err(format!("{name}={}: must be a str", arrays::repr(v)))))
    }
    fn names(&self, name: &'static str) -> Result<Option<Vec<String>>, ArgError> {
        self.read(name, |v| {
            v.extract().map_err(|_| PyTypeError::new_err(format!("{name}={}: must be a sequence of str", arrays::repr(v))))
        })
    }
    fn ids(&self, name: &'static str) -> Result<Option<Vec<i64>>, ArgError> {
        self.read(name, |v| arrays::ids(v, name))
    }
    fn missing(&self, name: &'static str, expected: &'static str) -> ArgError {
        match self.0.get_item(name) {
            Ok(Some(_)) => ArgError(PyTypeError::new_err(format!("{name}=None: must be {expected}"))),
            _ => ul2_core::Error::Internal(format!("missing argument {name:?}")).into(),
        }
    }
}

/// A mixture from `Mixture.to_dict()["denoisers"]`: one dict per denoiser, with its rate.
pub fn mixture(obj: &Bound<'_, PyAny>) -> PyResult<Mixture> {
    let list = obj.cast::<PyList>().map_err(|_| PyTypeError::new_err("mixture: expected a list of denoiser dicts"))?;
    let entries = list.iter().map(|e| Args::new(&e, "mixture[i]")).collect::<PyResult<Vec<_>>>()?;
    Ok(Mixture::from_arguments(&entries)?)
}

/// The engine's configuration: the mixture's dicts, the sentinels and a dict of the rest.
pub fn config(mixture_obj: &Bound<'_, PyAny>, sentinels: &Bound<'_, PyAny>, options: &Bound<'_, PyAny>) -> PyResult<Config> {
    let mixture = mixture(mixture_obj)?;
    let sentinels = crate::spans::sentinels_arg(sentinels)?;
    Ok(Config::from_arguments(&Args::new(options, "options")?, mixture, sentinels)?)
}
