//! Text infilling's layout, for the laws in `ul2.stats.infilling` (the denoiser itself runs
//! through the engine like every other).

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use crate::arrays;
use crate::errors::py;

/// Span lengths and gaps, as NumPy arrays.
type Layout<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u32>>);

/// `(spans, gaps)` of example `key`'s text infilling over `length` tokens: span lengths in
/// draw order (0 = an insert) and the clean gaps before, between and after them.
#[pyfunction]
#[pyo3(signature = (length, noise_density, poisson_lambda, *, seed, key))]
pub fn _infill_layout<'py>(
    py_: Python<'py>,
    length: &Bound<'py, PyAny>,
    noise_density: &Bound<'py, PyAny>,
    poisson_lambda: &Bound<'py, PyAny>,
    seed: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
) -> PyResult<Layout<'py>> {
    let length = arrays::count(length, "length")?;
    let r = arrays::real(noise_density, "noise_density")?;
    let lambda = arrays::real(poisson_lambda, "poisson_lambda")?;
    let seed = arrays::seed(seed, "seed")?;
    let key = arrays::seed(key, "key")?;
    let params = py(ul2_core::InfillParams::new(r, lambda, 0))?;
    let mut scratch = ul2_core::InfillScratch::default();
    py(scratch.layout(length, &params, seed, key))?;
    Ok((scratch.spans().to_vec().into_pyarray(py_), scratch.gaps().to_vec().into_pyarray(py_)))
}
