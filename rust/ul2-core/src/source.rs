//! Token ids as callers hold them: slices, or memory read in place through byte strides
//! (NumPy views such as `rows[::2]` or `rows[:, :n]`, Fortran order, misaligned buffers),
//! which are no `&[T]` and are never copied whole.

use std::marker::PhantomData;

use crate::Token;
use crate::alloc::reserve;
use crate::error::{Error, Result, Where};
use crate::index::SampleIndex;

/// `len` token ids in `bytes`, element `i` at byte `origin + i · step` (native byte order,
/// any alignment; `step` may be negative or zero).
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a, T> {
    bytes: &'a [u8],
    origin: usize,
    step: isize,
    len: usize,
    token: PhantomData<T>,
}

impl<'a, T: Token> Strided<'a, T> {
    /// Checks that every element lies inside `bytes`.
    pub fn new(bytes: &'a [u8], origin: usize, step: isize, len: usize) -> Result<Self> {
        let s = Self { bytes, origin, step, len, token: PhantomData };
        let last = origin as i128 + step as i128 * len.saturating_sub(1) as i128;
        let fits = |at: i128| at >= 0 && at + T::BYTES as i128 <= bytes.len() as i128;
        if len > 0 && !(fits(origin as i128) && fits(last)) {
            return Err(Error::Internal(format!(
                "{len} elements of {} bytes from byte {origin} by {step} leave a {}-byte buffer",
                T::BYTES,
                bytes.len()
            )));
        }
        Ok(s)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same memory from element `i` on, `len` elements (checked by the caller).
    #[must_use]
    pub fn skip(&self, i: usize, len: usize) -> Self {
        let origin = (self.origin as isize + self.step * i as isize) as usize;
        Self { origin, len, ..*self }
    }

    /// Appends elements `[start, stop)` to `out`.
    pub fn extend_into(&self, start: usize, stop: usize, out: &mut Vec<T>) {
        let mut at = self.origin as isize + self.step * start as isize;
        out.extend((start..stop).map(|_| {
            let b = at as usize;
            at += self.step;
            T::from_ne_slice(&self.bytes[b..b + T::BYTES])
        }));
    }
}

/// One run of tokens: borrowed as a slice, or read through its strides.
#[derive(Debug, Clone, Copy)]
pub enum Line<'a, T> {
    Slice(&'a [T]),
    Strided(Strided<'a, T>),
}

impl<T: Token> Line<'_, T> {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Slice(s) => s.len(),
            Self::Strided(s) => s.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `[start, stop)`: borrowed from a slice, gathered into `scratch` otherwise.
    pub fn range<'s>(&'s self, start: usize, stop: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        match self {
            Self::Slice(s) => Ok(&s[start..stop]),
            Self::Strided(s) => {
                scratch.clear();
                reserve(scratch, stop - start, "tokens")?;
                s.extend_into(start, stop, scratch);
                Ok(scratch)
            }
        }
    }

    /// Appends elements `[start, stop)` to `out`.
    pub fn extend_into(&self, start: usize, stop: usize, out: &mut Vec<T>) {
        match self {
            Self::Slice(s) => out.extend_from_slice(&s[start..stop]),
            Self::Strided(s) => s.extend_into(start, stop, out),
        }
    }
}

impl<'a, T> From<&'a [T]> for Line<'a, T> {
    fn from(s: &'a [T]) -> Self {
        Self::Slice(s)
    }
}

impl<'a, T> From<&'a Vec<T>> for Line<'a, T> {
    fn from(s: &'a Vec<T>) -> Self {
        Self::Slice(s)
    }
}

impl<'a, T, const N: usize> From<&'a [T; N]> for Line<'a, T> {
    fn from(s: &'a [T; N]) -> Self {
        Self::Slice(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tokens` laid out `step` bytes apart from byte `origin` (any alignment).
    fn spread(tokens: &[i32], origin: usize, step: isize) -> Vec<u8> {
        let n = tokens.len() as isize;
        let size = (origin as isize + (n - 1).max(0) * step.abs()) as usize + 4;
        let mut bytes = vec![0xAB; size + origin];
        for (i, t) in tokens.iter().enumerate() {
            let at = (origin as isize + i as isize * step) as usize;
            bytes[at..at + 4].copy_from_slice(&t.to_ne_bytes());
        }
        bytes
    }

    #[test]
    fn strided_reads_equal_the_slice() {
        let tokens: Vec<i32> = (0..50).map(|i| i * 7 - 3).collect();
        for (origin, step) in [(0, 4), (1, 4), (3, 9), (0, 12), (49 * 8 + 2, -8)] {
            let bytes = spread(&tokens, origin, step);
            let line = Line::Strided(Strided::<i32>::new(&bytes, origin, step, tokens.len()).unwrap());
            let mut scratch = Vec::new();
            assert_eq!(line.range(0, 50, &mut scratch).unwrap(), &tokens[..], "origin {origin} step {step}");
            assert_eq!(line.range(10, 17, &mut scratch).unwrap(), &tokens[10..17]);
            let mut out = vec![1];
            line.extend_into(48, 50, &mut out);
            assert_eq!(out, [1, tokens[48], tokens[49]]);
            let Line::Strided(s) = line else { unreachable!() };
            let tail = Line::Strided(s.skip(5, 3));
            assert_eq!(tail.range(0, 3, &mut scratch).unwrap(), &tokens[5..8]);
        }
    }

    #[test]
    fn strided_views_must_lie_inside_their_bytes() {
        let bytes = [0u8; 16];
        assert!(Strided::<i32>::new(&bytes, 0, 4, 4).is_ok());
        assert!(Strided::<i32>::new(&bytes, 1, 4, 4).is_err());
        assert!(Strided::<i32>::new(&bytes, 12, -4, 4).is_ok());
        assert!(Strided::<i32>::new(&bytes, 8, -4, 4).is_err());
        assert!(Strided::<i32>::new(&bytes, 100, 4, 0).is_ok());
    }
}

/// Rows of token ids, borrowed from the caller without a copy.
#[derive(Debug, Clone)]
pub enum Rows<'a, T> {
    /// A C-contiguous `[rows, width]` array (`rows` is given, as `width` may be 0).
    Dense { data: &'a [T], rows: usize, width: usize },
    /// Ragged rows (e.g. a list of 1-D arrays).
    Ragged(Vec<&'a [T]>),
    /// Rows of which some are read through strides (a strided or Fortran-order 2-D view,
    /// misaligned memory, a list holding such rows).
    Lines(Vec<Line<'a, T>>),
}

impl<T: Token> Rows<'_, T> {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Dense { rows, .. } => *rows,
            Self::Ragged(rows) => rows.len(),
            Self::Lines(rows) => rows.len(),
        }
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Row `i`'s length.
    #[must_use]
    pub fn row_len(&self, i: usize) -> usize {
        match self {
            Self::Dense { width, .. } => *width,
            Self::Ragged(rows) => rows[i].len(),
            Self::Lines(rows) => rows[i].len(),
        }
    }
    /// Row `i`: borrowed, or gathered into `scratch` when read through strides.
    pub fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        match self {
            Self::Dense { data, width, .. } => Ok(&data[i * width..(i + 1) * width]),
            Self::Ragged(rows) => Ok(rows[i]),
            Self::Lines(rows) => rows[i].range(0, rows[i].len(), scratch),
        }
    }
}

/// Where example `i`'s tokens come from.
pub trait RowSource<T>: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Example `i`'s length.
    fn row_len(&self, i: usize) -> usize;
    /// Example `i`'s tokens: borrowed, or gathered into `scratch` when not contiguous.
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]>;
    /// Points a row's error at what the caller passed (by default `rows[i]`).
    fn locate(&self, i: usize, e: Error) -> Error {
        e.at_row(i)
    }
}

impl<T: Token> RowSource<T> for Rows<'_, T> {
    fn len(&self) -> usize {
        Rows::len(self)
    }
    fn row_len(&self, i: usize) -> usize {
        Rows::row_len(self, i)
    }
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        Rows::row(self, i, scratch)
    }
}

/// Samples `ids[i]` of a corpus's index.
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a, T> {
    pub corpus: Corpus<'a, T>,
    pub index: &'a SampleIndex,
    pub ids: &'a [u64],
}

impl<T: Token> RowSource<T> for Samples<'_, T> {
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn row_len(&self, i: usize) -> usize {
        let (start, stop) = self.index.span(self.ids[i] as usize);
        (stop - start) as usize
    }
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        let (start, stop) = self.index.span(self.ids[i] as usize);
        self.corpus.slice(start, stop, scratch)
    }

    /// A bad token is the caller's `tokens` at a stream position, not a row of theirs.
    fn locate(&self, i: usize, e: Error) -> Error {
        let (start, _) = self.index.span(self.ids[i] as usize);
        match e {
            Error::TokenOutOfRange { position, token, reason, .. } => {
                Error::TokenOutOfRange { where_: Where::arg("tokens"), position: start as usize + position, token, reason }
            }
            Error::SentinelCollision { position, token, .. } => {
                Error::SentinelCollision { where_: Where::arg("tokens"), position: start as usize + position, token }
            }
            other => other.at_row(i),
        }
    }
}

/// How samples meet document boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Documents {
    /// Documents are joined into one stream (with `separator` between them when set);
    /// samples may cross boundaries. What does not fill a last sample is the tail.
    Concat,
    /// A sample never crosses a boundary; each document's last sample is shorter.
    Respect,
}

impl Documents {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "concat" => Ok(Self::Concat),
            "respect" => Ok(Self::Respect),
            _ => Err(Error::invalid("documents", format!("{s:?}"), "must be 'concat' or 'respect'")),
        }
    }
}

/// A flat token array split into documents by `doc_offsets` (`[0, …, len]`, non-decreasing).
#[derive(Debug, Clone, Copy)]
pub struct Corpus<'a, T> {
    pub tokens: Line<'a, T>,
    /// `None`: the whole array is one document.
    pub doc_offsets: Option<&'a [u64]>,
    /// Token placed between documents in `Concat` mode (e.g. EOS); `None` joins them as is.
    pub separator: Option<T>,
}

/// Document starts as callers give them: `[0, …, len]`, the starts alone (the final end
/// is appended), or none (one document).
#[must_use]
pub fn finish_offsets(mut starts: Vec<u64>, len: u64) -> Vec<u64> {
    if starts.last().is_some_and(|&l| l < len) {
        starts.push(len);
    }
    if starts.is_empty() {
        starts = vec![0, len];
    }
    starts
}

impl<'a, T: Token> Corpus<'a, T> {
    /// A corpus over `tokens`; `separator` (placed between documents in `Concat` mode) must
    /// be a token of their dtype. `doc_offsets` are checked when the index is built.
    pub fn new(tokens: Line<'a, T>, doc_offsets: Option<&'a [u64]>, separator: Option<i64>) -> Result<Self> {
        let separator = separator
            .map(|s| T::try_from_i64(s).ok_or_else(|| Error::invalid("separator_id", s, "does not fit the dtype of tokens")))
            .transpose()?;
        Ok(Self { tokens, doc_offsets, separator })
    }
}

impl<T: Token> Corpus<'_, T> {
    /// Checks `doc_offsets`: starts at 0, ends at `len(tokens)`, never decreases.
    pub fn validate(&self) -> Result<()> {
        let Some(off) = self.doc_offsets else { return Ok(()) };
        let n = self.tokens.len() as u64;
        if off.first() != Some(&0) || off.last() != Some(&n) {
            return Err(Error::invalid(
                "doc_offsets",
                format!("[{}, …, {}]", off.first().map_or(-1, |&v| v as i64), off.last().map_or(-1, |&v| v as i64)),
                format!("must start at 0 and end at len(tokens)={n}"),
            ));
        }
        if let Some(i) = off.windows(2).position(|w| w[1] < w[0]) {
            return Err(Error::invalid(
                "doc_offsets",
                format!("[…, {}, {}, …]", off[i], off[i + 1]),
                format!("must not decrease (at index {})", i + 1),
            ));
        }
        Ok(())
    }

    fn separators(&self) -> usize {
        match (self.separator, self.doc_offsets) {
            (Some(_), Some(off)) => off.len().saturating_sub(2),
            _ => 0,
        }
    }

    /// Length of the joined stream (`Concat` positions).
    #[must_use]
    pub fn stream_len(&self) -> u64 {
        (self.tokens.len() + self.separators()) as u64
    }

    /// The joined stream's `[start, stop)`: borrowed when no separator falls inside,
    /// gathered into `scratch` otherwise.
    pub fn slice<'s>(&'s self, start: u64, stop: u64, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        let (Some(sep), Some(off)) = (self.separator, self.doc_offsets) else {
            return self.tokens.range(start as usize, stop as usize, scratch);
        };
        if start == stop || off.len() < 2 {
            return Ok(&[]);
        }
        // Document j occupies joined positions [off[j] + j, off[j+1] + j); its separator
        // follows at off[j+1] + j. Start in the last document beginning at or before `start`
        // (empty documents share a position; any of them gives the same slice).
        let mut j = {
            let (mut lo, mut hi) = (0usize, off.len() - 1);
            while hi - lo > 1 {
                let mid = usize::midpoint(lo, hi);
                if off[mid] + mid as u64 <= start { lo = mid } else { hi = mid }
            }
            lo
        };
        let end_of = |j: usize| off[j + 1] + j as u64; // separator position of doc j
        if stop <= end_of(j) {
            let shift = j as u64;
            return self.tokens.range((start - shift) as usize, (stop - shift) as usize, scratch);
        }
        scratch.clear();
        crate::alloc::reserve(scratch, (stop - start) as usize, "tokens")?;
        let mut p = start;
        while p < stop {
            let doc_end = end_of(j);
            if p < doc_end {
                let take = doc_end.min(stop);
                self.tokens.extend_into((p - j as u64) as usize, (take - j as u64) as usize, scratch);
                p = take;
            } else {
                scratch.push(sep); // p == doc_end: the separator after doc j
                p += 1;
                j += 1;
            }
        }
        Ok(scratch)
    }
}
