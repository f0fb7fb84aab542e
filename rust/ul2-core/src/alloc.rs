//! Allocations whose size follows from the caller's input: fallible, so that too much is a
//! `MemoryError` naming the argument, never the allocator aborting the process.

use std::mem::MaybeUninit;

use rayon::iter::{IndexedParallelIterator, ParallelExtend, ParallelIterator};
use rayon::slice::ParallelSliceMut;

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

/// A row of [`rows`] being written front to back: each append writes exactly the positions
/// it moves past (and panics rather than pass the row's end).
pub(crate) struct RowOut<'a, O> {
    row: &'a mut [MaybeUninit<O>],
    at: usize,
}

impl<O: Copy> RowOut<'_, O> {
    #[inline]
    pub(crate) fn copy(&mut self, src: &[O]) {
        // (`write_copy_of_slice` is newer than the crate's MSRV; this loop is a memcpy.)
        for (d, &v) in self.row[self.at..self.at + src.len()].iter_mut().zip(src) {
            d.write(v);
        }
        self.at += src.len();
    }

    #[inline]
    pub(crate) fn fill(&mut self, value: O, n: usize) {
        self.row[self.at..self.at + n].fill(MaybeUninit::new(value));
        self.at += n;
    }

    #[inline]
    pub(crate) fn push(&mut self, value: O) {
        self.row[self.at].write(value);
        self.at += 1;
    }

    /// `value` up to position `to` (nothing when already there).
    #[inline]
    pub(crate) fn fill_to(&mut self, value: O, to: usize) {
        self.fill(value, to.saturating_sub(self.at));
    }
}

/// `rows × width` values written in parallel, row `r` front to back by `f(r, out)` and the
/// rest of each row after that `tail`: every value is written once. Filling the buffer first
/// and then writing the rows over it wrote most bytes twice (the buffers' pre-fill was 14% of
/// a T5 call, 22% of a 4096-row one, where it is a pass through memory of its own).
pub(crate) fn rows<O: Copy + Send + Sync>(
    rows: usize,
    width: usize,
    tail: O,
    arg: &'static str,
    f: impl Fn(usize, &mut RowOut<'_, O>) + Sync,
) -> Result<Vec<O>> {
    let len = rows.saturating_mul(width);
    let mut v: Vec<O> = with_capacity(len, arg)?;
    if width > 0 {
        v.spare_capacity_mut()[..len].par_chunks_mut(width).enumerate().for_each(|(r, row)| {
            let mut out = RowOut { row, at: 0 };
            f(r, &mut out);
            let RowOut { row, at } = out;
            row[at..].fill(MaybeUninit::new(tail));
        });
    }
    #[allow(unsafe_code)]
    // SAFETY: each of the first `len` values was written above: in every row, `[0, at)` by
    // `RowOut`'s appends (each writes exactly the positions it advances `at` over, and `at`
    // never passes the row's end, as slicing would panic first), then `[at, width)` by the
    // fill. A panic in `f` leaves this function before the length is set.
    unsafe {
        v.set_len(len);
    }
    Ok(v)
}
