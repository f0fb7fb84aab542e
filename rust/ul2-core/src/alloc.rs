//! Allocations whose size follows from the caller's input: fallible, so that too much is a
//! `MemoryError` naming the argument, never the allocator aborting the process.

use rayon::iter::ParallelExtend;

use crate::error::{Error, Result};

/// An empty `Vec` with room for `capacity` elements, or [`Error::OutOfMemory`] naming
/// `arg` when the memory cannot be had (instead of the allocator aborting the process).
pub(crate) fn with_capacity<T>(capacity: usize, arg: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, capacity, arg)?;
    Ok(v)
}

/// Makes room in `v` for `len` elements in all (scratch reused across rows: after the
/// first rows this is one comparison), or [`Error::OutOfMemory`] naming `arg`.
#[inline]
pub(crate) fn reserve<T>(v: &mut Vec<T>, len: usize, arg: &'static str) -> Result<()> {
    if v.capacity() >= len {
        return Ok(());
    }
    v.try_reserve_exact(len - v.len()).map_err(|_| Error::OutOfMemory { arg, bytes: len.saturating_mul(size_of::<T>()) })
}

/// `len` copies of `value`, written in parallel on the current pool (a serial fill of a
/// batch's output buffers would leave every other thread idle); see [`with_capacity`].
pub(crate) fn filled<T: Clone + Send + Sync>(len: usize, value: T, arg: &'static str) -> Result<Vec<T>> {
    let mut v = with_capacity(len, arg)?;
    v.par_extend(rayon::iter::repeat_n(value, len));
    Ok(v)
}
