//! Allocations whose size follows from the caller's input: fallible, so that too much is a
//! `MemoryError` naming the argument, never the allocator aborting the process.

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

/// One row of [`rows`], written front to back: appended to the buffer when one thread
/// writes the rows in order, written over its filled slice when several write rows at once.
pub(crate) struct RowOut<'a, O> {
    dst: Dst<'a, O>,
    width: usize,
    at: usize,
}

enum Dst<'a, O> {
    Append(&'a mut Vec<O>),
    Over(&'a mut [O]),
}

impl<O: Copy> RowOut<'_, O> {
    /// Room for `n` more values, or a panic: a row never runs into the next.
    #[inline]
    fn advance(&mut self, n: usize) -> usize {
        let at = self.at;
        assert!(at + n <= self.width, "row of {} written past its end", self.width);
        self.at += n;
        at
    }

    #[inline]
    pub(crate) fn copy(&mut self, src: &[O]) {
        let at = self.advance(src.len());
        match &mut self.dst {
            Dst::Append(v) => v.extend_from_slice(src),
            Dst::Over(row) => row[at..at + src.len()].copy_from_slice(src),
        }
    }

    #[inline]
    pub(crate) fn fill(&mut self, value: O, n: usize) {
        let at = self.advance(n);
        match &mut self.dst {
            Dst::Append(v) => v.extend(std::iter::repeat_n(value, n)),
            Dst::Over(row) => row[at..at + n].fill(value),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, value: O) {
        self.fill(value, 1);
    }

    /// `value` up to position `to` (nothing when already there).
    #[inline]
    pub(crate) fn fill_to(&mut self, value: O, to: usize) {
        self.fill(value, to.saturating_sub(self.at));
    }
}

/// `rows × width` values, row `r` written front to back by `f(r, out)` and the rest of each
/// row after that `tail`. On one thread the rows are appended in order, so each value is
/// written once: filling the buffer first and then writing the rows over it wrote most bytes
/// twice (the buffers' pre-fill was 14% of a T5 call, 22% of a 4096-row one, where it is a
/// pass through memory of its own). On several threads the rows are written in parallel over
/// a buffer filled with `tail` first: safe code cannot share an unfilled buffer between
/// threads, and the core forbids `unsafe`.
pub(crate) fn rows<O: Copy + Send + Sync>(
    rows: usize,
    width: usize,
    tail: O,
    arg: &'static str,
    f: impl Fn(usize, &mut RowOut<'_, O>) + Sync,
) -> Result<Vec<O>> {
    let len = rows.saturating_mul(width);
    if rayon::current_num_threads() > 1 {
        let mut v = filled(len, tail, arg)?;
        if width > 0 {
            v.par_chunks_mut(width).enumerate().for_each(|(r, row)| f(r, &mut RowOut { dst: Dst::Over(row), width, at: 0 }));
        }
        return Ok(v);
    }
    let mut v = with_capacity(len, arg)?;
    for r in 0..rows {
        let mut out = RowOut { dst: Dst::Append(&mut v), width, at: 0 };
        f(r, &mut out);
        out.fill_to(tail, width);
    }
    Ok(v)
}

/// Two `[rows, width]` buffers (`widths`) holding `pad` but where `row(state, r, a, b)`
/// writes row `r` of each, with one `init()` state per rayon job and `finish(state)` per task
/// of `chunk` rows, in row order. On one thread each row is padded as it is appended, just
/// before `row` writes it, in cache; on several the buffers are filled first (see [`rows`]).
/// The error of the lowest row wins (each task stops at its first).
#[allow(clippy::too_many_arguments)] // the batch stage's shape, its state and its arguments' names
pub(crate) fn row_pairs<O, S, T>(
    rows: usize,
    widths: (usize, usize),
    pad: O,
    chunk: usize,
    args: (&'static str, &'static str),
    init: impl Fn() -> S + Sync + Send,
    row: impl Fn(&mut S, usize, &mut [O], &mut [O]) -> Result<()> + Sync + Send,
    finish: impl Fn(&mut S) -> T + Sync + Send,
) -> Result<(Vec<O>, Vec<O>, Vec<T>)>
where
    O: Copy + Send + Sync,
    T: Send,
{
    let (w0, w1) = widths;
    if rayon::current_num_threads() == 1 {
        let (mut a, mut b) = (with_capacity(rows.saturating_mul(w0), args.0)?, with_capacity(rows.saturating_mul(w1), args.1)?);
        let mut state = init();
        for r in 0..rows {
            a.extend(std::iter::repeat_n(pad, w0));
            b.extend(std::iter::repeat_n(pad, w1));
            row(&mut state, r, &mut a[r * w0..], &mut b[r * w1..])?;
        }
        return Ok((a, b, vec![finish(&mut state)]));
    }
    // A width of 0 gets a one-slot stand-in, so that the zip below stays uniform.
    let (c0, c1) = (w0.max(1), w1.max(1));
    let mut a = filled(rows.saturating_mul(c0), pad, args.0)?;
    let mut b = filled(rows.saturating_mul(c1), pad, args.1)?;
    let chunk = chunk.max(1);
    let done = a
        .par_chunks_mut(c0 * chunk)
        .zip(b.par_chunks_mut(c1 * chunk))
        .enumerate()
        .map_init(&init, |state, (c, (ta, tb))| {
            for (j, (ra, rb)) in ta.chunks_mut(c0).zip(tb.chunks_mut(c1)).enumerate() {
                row(state, c * chunk + j, &mut ra[..w0], &mut rb[..w1])?;
            }
            Ok(finish(state))
        })
        .collect::<Vec<Result<T>>>();
    let done = done.into_iter().collect::<Result<Vec<T>>>()?;
    for (v, w) in [(&mut a, w0), (&mut b, w1)] {
        if w == 0 {
            v.clear();
        }
    }
    Ok((a, b, done))
}
