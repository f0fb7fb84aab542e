//! Allocations whose size follows from the caller's input: fallible, so that too much is a
//! `MemoryError` naming the argument, never the allocator aborting the process.

use std::mem::MaybeUninit;

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, ParallelExtend, ParallelIterator};
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

    /// The whole row, its rest filled with `value` first: for writers that need the row as a
    /// slice (its fill is then a second write, but one into a row in cache, not a pass over
    /// the whole buffer before any row is written).
    #[inline]
    pub(crate) fn filled(&mut self, value: O) -> &mut [O] {
        let at = self.at;
        self.fill(value, self.row.len() - at);
        #[allow(unsafe_code)]
        // SAFETY: every value of the row is initialised: `[0, at)` by the appends before,
        // the rest by the fill just above; `MaybeUninit<O>` has `O`'s layout.
        unsafe {
            &mut *(std::ptr::from_mut::<[MaybeUninit<O>]>(self.row) as *mut [O])
        }
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

/// Two `[rows, width]` buffers (`widths`), each value written once, in parallel tasks of
/// `chunk` rows: `row(state, r, a, b)` writes row `r` of each front to back and `tails` fill
/// the rest, with one `init()` state per rayon job and `finish(state)` per task, in row order.
/// The first error in row order wins (each task stops at its first).
#[allow(clippy::too_many_arguments, clippy::type_complexity)] // the one helper behind the batch stage
pub(crate) fn row_pairs<O, S, T, E>(
    rows: usize,
    widths: (usize, usize),
    tails: (O, O),
    chunk: usize,
    args: (&'static str, &'static str),
    init: impl Fn() -> S + Sync + Send,
    row: impl Fn(&mut S, usize, &mut RowOut<'_, O>, &mut RowOut<'_, O>) -> std::result::Result<(), E> + Sync + Send,
    finish: impl Fn(&mut S) -> T + Sync + Send,
) -> Result<std::result::Result<(Vec<O>, Vec<O>, Vec<T>), E>>
where
    O: Copy + Send + Sync,
    T: Send,
    E: Send,
{
    let (w0, w1) = widths;
    let (l0, l1) = (rows.saturating_mul(w0), rows.saturating_mul(w1));
    let (mut a, mut b): (Vec<O>, Vec<O>) = (with_capacity(l0, args.0)?, with_capacity(l1, args.1)?);
    let chunk = chunk.max(1);
    // Each task's rows of both buffers (built by hand: a width may be 0).
    let mut tasks = Vec::with_capacity(rows.div_ceil(chunk));
    let (mut rest_a, mut rest_b) = (&mut a.spare_capacity_mut()[..l0], &mut b.spare_capacity_mut()[..l1]);
    for first in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - first);
        let (ta, ra) = std::mem::take(&mut rest_a).split_at_mut(n * w0);
        let (tb, rb) = std::mem::take(&mut rest_b).split_at_mut(n * w1);
        (rest_a, rest_b) = (ra, rb);
        tasks.push((first, n, ta, tb));
    }
    let done = tasks
        .into_par_iter()
        .map_init(&init, |state, (first, n, ta, tb)| {
            for j in 0..n {
                let mut oa = RowOut { row: &mut ta[j * w0..(j + 1) * w0], at: 0 };
                let mut ob = RowOut { row: &mut tb[j * w1..(j + 1) * w1], at: 0 };
                row(state, first + j, &mut oa, &mut ob)?;
                for (out, tail) in [(oa, tails.0), (ob, tails.1)] {
                    let RowOut { row, at } = out;
                    row[at..].fill(MaybeUninit::new(tail));
                }
            }
            Ok(finish(state))
        })
        .collect::<Vec<std::result::Result<T, E>>>();
    let done = match done.into_iter().collect::<std::result::Result<Vec<T>, E>>() {
        Ok(done) => done,
        Err(e) => return Ok(Err(e)),
    };
    #[allow(unsafe_code)]
    // SAFETY: no task failed, so every row of every task was written: `[0, at)` by `RowOut`'s
    // appends (each writes exactly the positions it advances `at` over, never past the row's
    // end), then `[at, width)` by the tail's fill; the tasks cover all `rows` rows.
    unsafe {
        a.set_len(l0);
        b.set_len(l1);
    }
    Ok(Ok((a, b, done)))
}
