//! Python bindings of ul2: convert, dispatch, release the GIL. No logic of their own.

// Output arrays are allocated per call and freed when NumPy drops them; glibc returns such
// large blocks to the OS, so every call page-faults fresh memory. mimalloc keeps and reuses
// them (polars ships the same choice).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod arrays;
mod collate;
mod config;
mod dataset;
mod detach;
mod errors;
mod infilling;
mod shards;
mod spans;
mod stream;

/// ul2's native module (private; use the `ul2` package).
#[pyo3::pymodule]
mod _ul2 {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::collate::{_plan, _validate, PyCollator};
    #[pymodule_export]
    use super::dataset::PyDataset;
    #[pymodule_export]
    use super::detach::{_after_fork_in_child, _fail, get_num_threads, set_num_threads};
    #[pymodule_export]
    use super::errors::SentinelOverflowError;
    #[pymodule_export]
    use super::infilling::_infill_layout;
    #[pymodule_export]
    use super::shards::_format_rows;
    #[pymodule_export]
    use super::spans::{_prefix_bounds, PySentinels, apply_mask, noise_mask, plan_span_corruption, prefix_split, span_counts};
    #[pymodule_export]
    use super::stream::PyStream;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
