//! One way into Rust work: release the GIL, run on ul2's own thread pool, map errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

/// The pool and the thread count it was asked for (`None`: `UL2_NUM_THREADS` or all cores).
static POOL: Mutex<(Option<usize>, Option<Arc<ThreadPool>>)> = Mutex::new((None, None));

/// Most threads ul2 starts: beyond the cores they only cost memory and start-up time, and
/// an unbounded count would spawn threads until the OS refuses.
pub const MAX_THREADS: usize = 1024;

fn thread_count(n: usize, arg: &str) -> PyResult<usize> {
    if n == 0 || n > MAX_THREADS {
        return Err(PyValueError::new_err(format!("{arg}={n}: must be in [1, {MAX_THREADS}] (or None for all cores)")));
    }
    Ok(n)
}

fn default_threads() -> PyResult<usize> {
    match std::env::var("UL2_NUM_THREADS") {
        Ok(v) if !v.trim().is_empty() => {
            let n = v
                .trim()
                .parse::<usize>()
                .map_err(|_| PyValueError::new_err(format!("UL2_NUM_THREADS={v:?}: must be an integer in [1, {MAX_THREADS}]")))?;
            thread_count(n, "UL2_NUM_THREADS")
        }
        _ => Ok(std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(MAX_THREADS)),
    }
}

/// The thread count asked for: `set_num_threads`, else `UL2_NUM_THREADS` or all cores.
fn threads() -> PyResult<usize> {
    let asked = POOL.lock().unwrap_or_else(PoisonError::into_inner).0;
    asked.map_or_else(default_threads, Ok)
}

fn pool() -> PyResult<Arc<ThreadPool>> {
    let mut guard = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = &guard.1 {
        return Ok(Arc::clone(p));
    }
    let threads = guard.0.map_or_else(default_threads, Ok)?;
    let p = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ul2-{i}"))
            .build()
            .map_err(|e| PyValueError::new_err(format!("num_threads={threads}: cannot start the thread pool: {e}")))?,
    );
    guard.1 = Some(Arc::clone(&p));
    Ok(p)
}

/// Calling threads that may get an inline pool. rayon never frees a pool's hold on the
/// thread it adopts (~7.6 KB each), so unbounded, 20,000 short-lived Python threads would
/// keep 150 MB; past this many, calls hand their work to the shared pool instead.
const MAX_INLINE_POOLS: usize = 64;

static INLINE_POOLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// With one thread, each calling thread is its own one-worker pool: the work then runs
    /// where the call is, rather than being handed to a pool thread and waited for, which
    /// costs two thread wake-ups per call (tens of microseconds on a busy or virtual
    /// machine). `None` where rayon refuses (the thread already works for another pool) or
    /// [`MAX_INLINE_POOLS`] threads already have one.
    static INLINE: Option<ThreadPool> = INLINE_POOLS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < MAX_INLINE_POOLS).then_some(n + 1))
        .ok()
        .and_then(|_| ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().ok());
}

/// Tokens of work (what a call reads or writes) below which it runs on the calling thread
/// whatever the thread count: handing work to the pool and waiting for it costs two thread
/// wake-ups, tens of microseconds on a busy or virtual machine, which is what one core
/// takes for about this many tokens. Sequential work passes 0.
const INLINE_WORK: usize = 1 << 16;

/// Releases the GIL and runs `f` on ul2's pool (inline with one thread, or for less than
/// [`INLINE_WORK`] tokens of `work`), mapping core errors to Python exceptions. A panic (a
/// bug in ul2) becomes a `RuntimeError` too, so none crosses into Python as a
/// `PanicException`; rayon hands a worker's panic to this thread, and the pool lives on.
pub fn run_detached<T: Send>(py: Python<'_>, work: usize, f: impl FnOnce() -> ul2_core::Result<T> + Send) -> PyResult<T> {
    let inline = (threads()? == 1 || work < INLINE_WORK) && INLINE.with(Option::is_some);
    let shared = if inline { None } else { Some(pool()?) };
    let run = || match &shared {
        Some(pool) => pool.install(f),
        None => INLINE.with(|inline| inline.as_ref().expect("checked on this thread above").install(f)),
    };
    match py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))) {
        Ok(result) => crate::errors::py(result),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(pyo3::exceptions::PyRuntimeError::new_err(format!("internal error (please report): panic: {what}")))
        }
    }
}

/// Drives the internal-error paths for the tests: `"error"` returns the core's
/// `Error::Internal` from the pool, `"panic"` panics on a pool thread.
#[pyfunction]
pub fn _fail(py: Python<'_>, kind: &str) -> PyResult<()> {
    let panic = kind == "panic";
    run_detached(py, usize::MAX, || {
        use rayon::prelude::*;
        (0..4).into_par_iter().try_for_each(|i| {
            assert!(!(panic && i == 3), "forced by _fail");
            if i == 3 { Err(ul2_core::Error::Internal("forced by _fail".into())) } else { Ok(()) }
        })
    })
}

/// Sets the number of threads ul2 uses (`None`: `UL2_NUM_THREADS` or all cores).
#[pyfunction]
#[pyo3(signature = (num_threads=None))]
pub fn set_num_threads(num_threads: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let n = crate::arrays::optional(num_threads, |o| thread_count(crate::arrays::count(o, "num_threads")?, "num_threads"))?;
    *POOL.lock().unwrap_or_else(PoisonError::into_inner) = (n, None);
    Ok(())
}

/// The number of threads ul2 uses now.
#[pyfunction]
pub fn get_num_threads() -> PyResult<usize> {
    threads()
}

/// Forgets the pool without joining it: after `fork()` its threads do not exist in the
/// child (the tokenizers fork handler, done from Python's `os.register_at_fork`).
#[pyfunction]
pub fn _after_fork_in_child() {
    let mut guard = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = guard.1.take() {
        std::mem::forget(p);
    }
}
